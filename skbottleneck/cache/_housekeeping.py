"""Housekeeping of the cache root: what it holds, and deleting it.

:func:`cache_info` describes the cache of each model fingerprint;
:func:`clear_cache` deletes those of one model, or all of them.
"""

import json
import os
import secrets
import shutil

from ..fileio import STORAGE_DTYPES, canonical_json, listdir
from ._format import CACHE_FORMAT_VERSION, CACHE_SCHEMA, ID_RE
from ._index import get_index
from ._keys import get_cache_dir

__all__ = ["cache_info", "clear_cache"]


def _read_fingerprint_json(directory):
    try:
        with open(os.path.join(directory, "fingerprint.json"), "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == CACHE_SCHEMA else None


_DESCRIPTION_KEYS = ("backbone", "weights", "layer", "pooling", "input_size", "preprocessing",
                     "dtype")


def _describe(fingerprint):
    if not isinstance(fingerprint, dict):
        return "unknown model (fingerprint.json missing or unreadable)"
    keys = [k for k in _DESCRIPTION_KEYS if k in fingerprint]
    keys += sorted(k for k in fingerprint if k not in _DESCRIPTION_KEYS)
    return ", ".join(f"{k}={canonical_json(fingerprint[k]).strip(chr(34))}" for k in keys)


def _dir_bytes(directory):
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _cache_dirs(root):
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    return [e.path for e in entries if ID_RE.match(e.name) and e.is_dir()]


def cache_info(cache_dir=None):
    """What the feature cache holds, per model fingerprint.

    Parameters
    ----------
    cache_dir : str or path-like, default=None
        Cache folder; see :func:`get_cache_dir`.

    Returns
    -------
    info : dict
        ``{fingerprint_id: {...}}`` with, for each model: ``"path"``,
        ``"fingerprint"`` (the dict), ``"description"`` (one line:
        ``"backbone=resnet50, layer=..., pooling=avg, ..."``),
        ``"storage_dtype"``, ``"n_features"``, ``"n_entries"`` (distinct
        images), ``"n_shards"``, ``"bytes"`` (on disk, everything included)
        and ``"n_quarantined"`` (damaged files set aside).

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.cache import FeatureCache, cache_info
    >>> cache = FeatureCache(tmp_dir, {"backbone": "toy", "pooling": "avg"})
    >>> cache.write([b"k" * 20], np.ones((1, 4), np.float32))
    >>> [(v["description"], v["n_entries"], v["n_shards"]) for v in cache_info(tmp_dir).values()]
    [('backbone=toy, pooling=avg', 1, 1)]
    """
    root = get_cache_dir(cache_dir)
    info = {}
    for directory in _cache_dirs(root):
        doc = _read_fingerprint_json(directory) or {}
        fp = doc.get("fingerprint")
        entry = {
            "path": directory,
            "fingerprint": fp,
            "description": _describe(fp),
            "storage_dtype": doc.get("storage_dtype"),
            "format_version": doc.get("format_version"),
            "n_features": None,
            "n_entries": 0,
            "n_shards": 0,
            "bytes": _dir_bytes(directory),
            "n_quarantined": len(listdir(os.path.join(directory, "quarantine"))),
        }
        if (doc.get("format_version") == CACHE_FORMAT_VERSION
                and doc.get("storage_dtype") in STORAGE_DTYPES):
            index = get_index(directory, doc["storage_dtype"])
            with index.lock:
                index.refresh()
                entry.update(n_features=index.n_features, n_entries=len(index.where),
                             n_shards=index.n_live)
        info[os.path.basename(directory)] = entry
    return info


def clear_cache(cache_dir=None, *, backbone=None, fingerprint=None):
    """Delete cached features: those of one model, or all of them.

    A cache is removed by renaming its folder aside first (readers then see
    it gone at once) and deleting it afterwards. Only folders that the cache
    created (16 hex digits) are touched.

    Parameters
    ----------
    cache_dir : str or path-like, default=None
        Cache folder; see :func:`get_cache_dir`.
    backbone : str, default=None
        Remove the caches whose fingerprint has this ``"backbone"``.
    fingerprint : dict or str, default=None
        Remove the caches of this fingerprint dict (any storage dtype), or
        the one with this fingerprint id (a key of :func:`cache_info`).
        With neither ``backbone`` nor ``fingerprint``, everything goes.

    Returns
    -------
    removed : dict
        ``{fingerprint_id: bytes_freed}``.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.cache import FeatureCache, clear_cache
    >>> cache = FeatureCache(tmp_dir, {"backbone": "toy"})
    >>> cache.write([b"k" * 20], np.ones((1, 4), np.float32))
    >>> list(clear_cache(tmp_dir, backbone="toy")) == [cache.fingerprint_id]
    True
    >>> len(cache)
    0
    """
    root = get_cache_dir(cache_dir)
    want_fp = None
    if isinstance(fingerprint, dict):
        want_fp = canonical_json(fingerprint)
    elif fingerprint is not None and not isinstance(fingerprint, str):
        raise TypeError("fingerprint must be a dict or an id string; "
                        f"got {type(fingerprint).__name__}.")
    removed = {}
    # left-overs of an interrupted clear_cache
    for name in listdir(root):
        if name.startswith(".trash-"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    for directory in _cache_dirs(root):
        name = os.path.basename(directory)
        if backbone is not None or fingerprint is not None:
            doc = _read_fingerprint_json(directory) or {}
            fp = doc.get("fingerprint")
            if isinstance(fingerprint, str) and name != fingerprint:
                continue
            if want_fp is not None and (fp is None or canonical_json(fp) != want_fp):
                continue
            if backbone is not None and (not isinstance(fp, dict)
                                         or fp.get("backbone") != backbone):
                continue
        size = _dir_bytes(directory)
        trash = os.path.join(root, f".trash-{name}-{secrets.token_hex(4)}")
        try:
            os.replace(directory, trash)
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed[name] = size
    return removed
