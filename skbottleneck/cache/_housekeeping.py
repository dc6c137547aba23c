"""Housekeeping of the cache root: what it holds, and deleting it.

:func:`cache_info` describes the cache of each model fingerprint,
:func:`converted_models_info` the converted OpenVINO models kept under the
root; :func:`clear_cache` deletes those of one model, or all of them.
"""

import json
import os

from ..fileio import STORAGE_DTYPES, canonical_json, listdir, remove_stale_tmp, remove_tree
from ._format import CACHE_FORMAT_VERSION, CACHE_SCHEMA, CONVERTED_MODELS_FOLDER, ID_RE, MODEL_ID_RE
from ._index import get_index
from ._keys import get_cache_dir

__all__ = ["cache_info", "clear_cache", "converted_models_info"]


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


def _cache_dirs(root, pattern=ID_RE):
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    return [e.path for e in entries if pattern.match(e.name) and e.is_dir(follow_symlinks=False)]


def _read_model_info(directory):
    try:
        with open(os.path.join(directory, "info.json"), "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def converted_models_info(cache_dir=None):
    """The converted OpenVINO models kept under the cache root (``<root>/openvino/``).

    Converted models are kept under the default root (``cache_dir=None``),
    whatever the transformers' ``cache_dir``: one conversion per machine.

    Parameters
    ----------
    cache_dir : str or path-like, default=None
        Cache folder; see :func:`get_cache_dir`.

    Returns
    -------
    info : dict
        ``{model_id: {...}}`` with, for each model: ``"path"``,
        ``"fingerprint"`` (the dict its info.json records; None if
        unreadable), ``"description"``, ``"precision"`` and ``"bytes"``.

    Examples
    --------
    >>> from skbottleneck.cache import converted_models_info
    >>> converted_models_info(tmp_dir)
    {}
    """
    models = os.path.join(get_cache_dir(cache_dir), CONVERTED_MODELS_FOLDER)
    info = {}
    for directory in _cache_dirs(models, MODEL_ID_RE):
        doc = _read_model_info(directory)
        fp = doc.get("fingerprint") if isinstance(doc.get("fingerprint"), dict) else None
        info[os.path.basename(directory)] = {
            "path": directory, "fingerprint": fp, "description": _describe(fp),
            "precision": doc.get("precision"), "bytes": _dir_bytes(directory)}
    return info


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
    created (16 hex digits) are touched, and the converted OpenVINO models of
    the same models under ``<root>/openvino/`` (32 hex digits; see
    :func:`converted_models_info`).

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
        ``{fingerprint_id: bytes_freed}``, and
        ``{"openvino/<model id>": bytes_freed}`` for converted models.

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

    def wanted(name, fp):
        if isinstance(fingerprint, str) and name != fingerprint:
            return False
        if want_fp is not None and (fp is None or canonical_json(fp) != want_fp):
            return False
        return backbone is None or (isinstance(fp, dict) and fp.get("backbone") == backbone)

    models = os.path.join(root, CONVERTED_MODELS_FOLDER)
    remove_stale_tmp(root)  # left-overs of an interrupted clear_cache
    remove_stale_tmp(models)
    folders = [(os.path.basename(d), d, lambda d=d: (_read_fingerprint_json(d) or {}))
               for d in _cache_dirs(root)]
    folders += [(f"{CONVERTED_MODELS_FOLDER}/{os.path.basename(d)}", d,
                 lambda d=d: _read_model_info(d)) for d in _cache_dirs(models, MODEL_ID_RE)]
    removed = {}
    for name, directory, read in folders:
        if backbone is not None or fingerprint is not None:
            fp = read().get("fingerprint")
            if not wanted(name.rpartition("/")[2], fp if isinstance(fp, dict) else None):
                continue
        size = _dir_bytes(directory)
        if remove_tree(directory):
            removed[name] = size
    return removed
