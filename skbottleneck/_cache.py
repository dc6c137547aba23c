"""Content-keyed, crash-safe on-disk cache of CNN features.

The public names are re-exported by :mod:`skbottleneck.store`, whose module
docstring describes the on-disk layout and why it survives a kill at any
moment. This module holds the cache (:class:`FeatureCache`), its
housekeeping functions (:func:`cache_info`, :func:`clear_cache`,
:func:`get_cache_dir`) and the content hashing of image files
(:func:`file_key`, :func:`file_keys`).
"""

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._fileio import (
    _MAX_SPAN_BYTES,
    STORAGE_DTYPES,
    StoreWarning,
    UnsupportedFormatError,
    _canonical_json,
    _check_storage_dtype,
    _create_preallocated,
    _fsync_dir,
    _json_default,
    _library_versions,
    _listdir,
    _lock_file,
    _output_dtype,
    _pwrite,
    _raw_layout,
    _read_rows_at,
    _read_rows_h5,
    _read_scalar_attr,
    _remove_stale_tmp,
    _sha256,
    _tmp_path,
    _unlink_quietly,
    _write_file_atomic,
)

__all__ = [
    "FeatureCache",
    "StoreWarning",
    "UnsupportedFormatError",
    "cache_info",
    "clear_cache",
    "file_key",
    "file_keys",
    "fingerprint_id",
    "get_cache_dir",
]

#: ``schema`` of ``fingerprint.json`` and root attribute of every cache shard.
CACHE_SCHEMA = "skbottleneck.cache"
SHARD_SCHEMA = "skbottleneck.cache_shard"
#: Bumped whenever the cache layout changes; part of the fingerprint id, so a
#: new format lands in a new directory instead of misreading the old one.
CACHE_FORMAT_VERSION = 1

_SHARD_RE = re.compile(r"^[0-9a-f]{16}-[0-9]+-[0-9a-f]{8}\.h5$")
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_KEY_MEMO_SIZE = 1 << 18
_ROW_BITS = 32


# --------------------------------------------------------------------- hashing
_key_memo = {}


def file_key(path):
    """Content key of a file: the BLAKE2b-160 digest of its bytes.

    Two files with the same bytes have the same key whatever their names, so
    features cached for an image are found again after it is renamed or
    copied; editing the file changes its key. A file already hashed by this
    process and unchanged since (same device, inode, size, modification and
    change times) is not read again.

    Parameters
    ----------
    path : str or path-like
        The file to hash.

    Returns
    -------
    key : bytes of length 20
        The digest.

    Raises
    ------
    OSError
        The file cannot be opened or read (``FileNotFoundError``,
        ``IsADirectoryError``, ``PermissionError``...).

    Examples
    --------
    >>> from skbottleneck.store import file_key
    >>> p = tmp_dir / "a.bin"
    >>> _ = p.write_bytes(b"hello")
    >>> file_key(p).hex()
    'b5531c7037f06c9f2947132a6a77202c308e8939'
    """
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        memo_key = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns,
                    before.st_ctime_ns)
        digest = _key_memo.get(memo_key)
        if digest is not None:
            return digest
        h = hashlib.blake2b(digest_size=20)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
        digest = h.digest()
        after = os.fstat(f.fileno())
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == memo_key[2:]:
        if len(_key_memo) >= _KEY_MEMO_SIZE:
            _key_memo.clear()
        _key_memo[memo_key] = digest
    return digest


def file_keys(paths, n_jobs=None):
    """Content keys of many files, hashed in a thread pool.

    Parameters
    ----------
    paths : sequence of str or path-like
        The files.
    n_jobs : int, default=None
        Number of threads (hashing releases the GIL). ``None`` uses
        ``min(8, os.cpu_count() + 2)``; ``-1`` one per CPU; ``1`` hashes in
        the calling thread.

    Returns
    -------
    keys : list of (bytes or OSError)
        ``file_key(path)`` for each path, in order; a file that could not be
        read gives the exception instance instead of raising it.

    Examples
    --------
    >>> from skbottleneck.store import file_keys
    >>> p = tmp_dir / "a.bin"
    >>> _ = p.write_bytes(b"hello")
    >>> keys = file_keys([p, tmp_dir / "missing.jpg"])
    >>> keys[0] == file_key(p), type(keys[1]).__name__
    (True, 'FileNotFoundError')
    """
    paths = list(paths)

    def one(p):
        try:
            return file_key(p)
        except (OSError, ValueError, TypeError) as e:
            return e

    # Files this process hashed before and that are unchanged are answered
    # from the memo with one stat() each, without a thread hop: this keeps a
    # fully cached re-transform at tens of thousands of images per second.
    keys = [None] * len(paths)
    todo = []
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except (OSError, ValueError, TypeError):
            todo.append(i)  # file_key reports the error
            continue
        digest = _key_memo.get((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        if digest is None:
            todo.append(i)
        else:
            keys[i] = digest
    if not todo:
        return keys

    cpus = os.cpu_count() or 1
    if n_jobs is None:
        n_jobs = min(8, cpus + 2)
    elif n_jobs < 0:
        n_jobs = max(1, cpus + 1 + n_jobs)
    n_jobs = max(1, min(int(n_jobs), len(todo)))
    if n_jobs == 1:
        computed = [one(paths[i]) for i in todo]
    else:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            computed = list(pool.map(one, [paths[i] for i in todo], chunksize=16))
    for i, key in zip(todo, computed):
        keys[i] = key
    return keys


def fingerprint_id(fingerprint, dtype="float32"):
    """Stable 16-hex-digit id of a model fingerprint: the cache subdirectory.

    The id is the start of the SHA-256 of the canonical JSON (sorted keys) of
    ``{"fingerprint": fingerprint, "storage_dtype": dtype, "format_version":
    CACHE_FORMAT_VERSION}``: the order of the keys does not matter, but
    ``1`` and ``1.0`` are different values.

    Parameters
    ----------
    fingerprint : dict
        Everything that changes the features (backbone, weights, layer,
        pooling, input size, preprocessing, dtype, format version...).
    dtype : {"float32", "float16", "float64"}, default="float32"
        Storage dtype of the cache.

    Returns
    -------
    id : str

    Examples
    --------
    >>> from skbottleneck.store import fingerprint_id
    >>> a = fingerprint_id({"backbone": "resnet50", "pooling": "avg"})
    >>> a == fingerprint_id({"pooling": "avg", "backbone": "resnet50"})
    True
    >>> len(a)
    16
    """
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict; got {type(fingerprint).__name__}.")
    doc = {"fingerprint": fingerprint, "storage_dtype": _check_storage_dtype(dtype),
           "format_version": CACHE_FORMAT_VERSION}
    return _sha256(_canonical_json(doc))[:16]


# -------------------------------------------------------------- cache folders
def get_cache_dir(cache_dir=None):
    """Folder that holds the feature cache.

    Parameters
    ----------
    cache_dir : str or path-like, default=None
        Returned (``~`` expanded) when given. Otherwise the environment
        variable ``SKBOTTLENECK_CACHE_DIR`` if set, else the platform's
        per-user cache folder: ``$XDG_CACHE_HOME/skbottleneck`` or
        ``~/.cache/skbottleneck`` on Linux, ``~/Library/Caches/skbottleneck``
        on macOS, ``%LOCALAPPDATA%\\skbottleneck\\Cache`` on Windows.

    Returns
    -------
    path : str
        Absolute path; the folder is not created.

    Examples
    --------
    >>> from skbottleneck.store import get_cache_dir
    >>> get_cache_dir("/data/features-cache")
    '/data/features-cache'
    """
    if cache_dir is None:
        cache_dir = os.environ.get("SKBOTTLENECK_CACHE_DIR") or None
    if cache_dir is None:
        home = os.path.expanduser("~")
        if sys.platform == "win32":  # pragma: no cover
            base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
            cache_dir = os.path.join(base, "skbottleneck", "Cache")
        elif sys.platform == "darwin":  # pragma: no cover
            cache_dir = os.path.join(home, "Library", "Caches", "skbottleneck")
        else:
            xdg = os.environ.get("XDG_CACHE_HOME", "")
            base = xdg if os.path.isabs(xdg) else os.path.join(home, ".cache")
            cache_dir = os.path.join(base, "skbottleneck")
    return os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))


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
    return ", ".join(f"{k}={_canonical_json(fingerprint[k]).strip(chr(34))}" for k in keys)


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
    return [e.path for e in entries if _ID_RE.match(e.name) and e.is_dir()]


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
    >>> from skbottleneck.store import FeatureCache, cache_info, file_key
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
            "n_quarantined": len(_listdir(os.path.join(directory, "quarantine"))),
        }
        if (doc.get("format_version") == CACHE_FORMAT_VERSION
                and doc.get("storage_dtype") in STORAGE_DTYPES):
            index = _get_index(directory, doc["storage_dtype"])
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
    >>> from skbottleneck.store import FeatureCache, clear_cache
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
        want_fp = _canonical_json(fingerprint)
    elif fingerprint is not None and not isinstance(fingerprint, str):
        raise TypeError("fingerprint must be a dict or an id string; "
                        f"got {type(fingerprint).__name__}.")
    removed = {}
    # left-overs of an interrupted clear_cache
    for name in _listdir(root):
        if name.startswith(".trash-"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    for directory in _cache_dirs(root):
        name = os.path.basename(directory)
        if backbone is not None or fingerprint is not None:
            doc = _read_fingerprint_json(directory) or {}
            fp = doc.get("fingerprint")
            if isinstance(fingerprint, str) and name != fingerprint:
                continue
            if want_fp is not None and (fp is None or _canonical_json(fp) != want_fp):
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


# ------------------------------------------------------------------- the index
class _Shard:
    """One immutable shard file, as indexed."""

    __slots__ = ("name", "path", "keys", "n_features", "dtype", "offset", "size", "no")

    def __init__(self, name, path, keys, n_features, dtype, offset, size, no=-1):
        self.name, self.path, self.keys = name, path, keys
        self.n_features, self.dtype, self.offset, self.size, self.no = (
            n_features, np.dtype(dtype), offset, size, no)

    @property
    def row_nbytes(self):
        return self.n_features * self.dtype.itemsize


class _CacheIndex:
    """In-memory index ``key -> (shard, row)`` of one cache folder.

    Shared by every :class:`FeatureCache` of the same folder in a process,
    so that repeated transforms do not rescan the shards.
    """

    def __init__(self, directory, dtype):
        self.directory = directory
        self.shard_dir = os.path.join(directory, "shards")
        self.dtype = np.dtype(dtype)
        self.lock = threading.RLock()
        self.shards = {}  # name -> _Shard
        self.by_no = []  # shard number -> _Shard or None
        self.where = {}  # key -> (shard number << 32) | row
        self.skipped = set()  # names of files ignored (unknown version...)
        self.n_features = None
        self.dir_signature = None  # (device, inode, mtime) of shards/ at the last listing
        self.dir_settled = False

    @property
    def n_live(self):
        return len(self.shards)

    def list_shards(self):
        try:
            return set(os.listdir(self.shard_dir))
        except FileNotFoundError:
            return set()

    def refresh(self):
        """Index shards that appeared since the last look, drop vanished ones.

        The folder is not even listed when its modification time has not
        changed since a listing made more than 2 s after that time (so that
        a coarse timestamp cannot hide a change); Windows always lists.
        """
        try:
            st = os.stat(self.shard_dir)
            signature = (st.st_dev, st.st_ino, st.st_mtime_ns)
        except OSError:
            signature = None
        if signature is not None and signature == self.dir_signature and self.dir_settled:
            return
        now = time.time_ns()
        self.dir_signature = signature
        self.dir_settled = (os.name != "nt" and signature is not None
                            and now - signature[2] > 2_000_000_000)
        listing = self.list_shards()
        gone = [name for name in self.shards if name not in listing]
        if gone:
            # A compaction renames its merged shard into place before deleting
            # the sources, but one listing racing with both may see neither:
            # a second listing, started after the deletion, sees the merged one.
            listing = self.list_shards()
            gone = [name for name in self.shards if name not in listing]
        new = sorted(name for name in listing.difference(self.shards, self.skipped)
                     if _SHARD_RE.match(name))
        if gone:
            for name in gone:
                shard = self.shards.pop(name)
                self.by_no[shard.no] = None
            self._rebuild()
        for name in new:
            shard = self._open_shard(name)
            if shard is not None:
                self.add(shard)

    def _rebuild(self):
        self.where = {}
        for shard in self.by_no:
            if shard is not None:
                base = shard.no << _ROW_BITS
                self.where.update(zip(shard.keys, range(base, base + len(shard.keys))))

    def add(self, shard):
        if self.n_features is None:
            self.n_features = shard.n_features
        shard.no = len(self.by_no)
        self.by_no.append(shard)
        self.shards[shard.name] = shard
        base = shard.no << _ROW_BITS
        self.where.update(zip(shard.keys, range(base, base + len(shard.keys))))

    def remove(self, names):
        for name in names:
            shard = self.shards.pop(name, None)
            if shard is not None:
                self.by_no[shard.no] = None
        self._rebuild()

    def _open_shard(self, name):
        """Validate and index one shard file; ``None`` if it must be ignored."""
        import h5py
        from h5py import h5d, h5s

        path = os.path.join(self.shard_dir, name)
        try:  # errors of the file system (permissions, too many open files) are not damage
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        except FileNotFoundError:  # removed by a compaction since the listing
            return None
        except OSError as e:
            self.skipped.add(name)
            warnings.warn(f"Cannot open cache shard {path} ({e}); its entries are treated as "
                          "missing.", StoreWarning, stacklevel=4)
            return None
        try:
            # the high-level open (file-name encoding, strong close); then the
            # low-level API, several times faster than h5py's objects
            f = h5py.File(path, "r")
            fid = f.id
            try:
                schema = _read_scalar_attr(fid, "schema")
                version = _read_scalar_attr(fid, "format_version")
                if schema != SHARD_SCHEMA:
                    raise ValueError(f"its 'schema' attribute is {schema!r}, not {SHARD_SCHEMA!r}")
                if version != CACHE_FORMAT_VERSION:
                    self.skipped.add(name)
                    warnings.warn(
                        f"Ignoring cache shard {path}: it was written in cache format version "
                        f"{version!r}, and this skbottleneck reads version {CACHE_FORMAT_VERSION}. "
                        "Its entries are treated as missing.",
                        StoreWarning, stacklevel=4,
                    )
                    return None
                keys_ds, feats = h5d.open(fid, b"keys"), h5d.open(fid, b"features")
                if keys_ds.dtype != np.uint8 or len(keys_ds.shape) != 2 or len(feats.shape) != 2:
                    raise ValueError(f"unexpected datasets keys {keys_ds.shape} {keys_ds.dtype}, "
                                     f"features {feats.shape}")
                n, key_len = keys_ds.shape
                if feats.shape[0] != n:
                    raise ValueError(f"{n} keys but {feats.shape[0]} feature rows")
                if feats.dtype != self.dtype:
                    raise ValueError(f"features are {feats.dtype}, this cache stores {self.dtype}")
                d = feats.shape[1]
                if self.n_features is not None and d != self.n_features:
                    raise ValueError(f"{d} features per row, the cache has {self.n_features}")
                keys = np.empty((n, key_len), np.uint8)
                if keys.size:
                    keys_ds.read(h5s.ALL, h5s.ALL, keys)
                layout = _raw_layout(feats)
                offset = None
                if layout is not None and len(layout[1]) == 1:
                    offset = int(layout[1][0])
                    if offset + n * d * feats.dtype.itemsize > size:
                        raise ValueError("the file is shorter than its feature data")
                dtype = feats.dtype
            finally:
                f.close()
            key_list = keys.view(f"V{key_len}").ravel().tolist() if key_len else [b""] * n
            return _Shard(name, path, key_list, d, dtype, offset, size)
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            # the file opened but HDF5 cannot parse it, or it is not a shard: damaged
            if not os.path.exists(path):  # removed by a compaction meanwhile
                return None
            self.quarantine(path, e)
            return None

    def quarantine(self, path, reason):
        name = os.path.basename(path)
        qdir = os.path.join(self.directory, "quarantine")
        target = os.path.join(qdir, name)
        try:
            os.makedirs(qdir, exist_ok=True)
            os.replace(path, target)
            where = f"moved to {target}"
        except OSError:
            self.skipped.add(name)
            where = "left in place and ignored"
        warnings.warn(
            f"Cache shard {path} is unreadable ({type(reason).__name__}: {reason}); it was "
            f"{where}, and its entries will be computed again.",
            StoreWarning, stacklevel=4,
        )


_indexes = {}
_indexes_lock = threading.Lock()


def _get_index(directory, dtype):
    key = (os.path.realpath(directory), os.getpid())
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:
            for k in [k for k in _indexes if k[1] != os.getpid()]:
                del _indexes[k]  # inherited through fork: not ours
            index = _indexes[key] = _CacheIndex(directory, dtype)
        return index


def _check_keys(keys):
    keys = list(keys)
    for k in keys:
        if type(k) is not bytes:
            if isinstance(k, (bytearray, memoryview)):
                return [bytes(k) for k in keys]
            raise TypeError("cache keys must be bytes (e.g. from file_key); "
                            f"got {type(k).__name__}.")
    return keys


# ------------------------------------------------------------------ the cache
class FeatureCache:
    """Content-keyed, crash-safe, multi-process cache of feature vectors.

    Features are stored under a key of the image's content
    (:func:`file_key`) in a folder per model fingerprint:
    ``cache_dir/<fingerprint_id>/``. Each :meth:`write` adds one immutable
    HDF5 shard, written to a temporary name, fsynced and renamed into
    ``shards/``: a kill at any moment loses at most the batch being
    written, and several processes can write at once (a key written twice
    holds the same features). :meth:`compact` merges small shards. A
    damaged shard is reported (:class:`StoreWarning` naming the file), moved
    to ``quarantine/`` and its keys are reported missing.

    Parameters
    ----------
    cache_dir : str or path-like
        Root cache folder (see :func:`get_cache_dir`).
    fingerprint : dict
        Everything that changes the features: backbone, weights identity,
        layer, pooling, input size, preprocessing, dtype, format version...
        JSON-serialisable; key order does not matter.
    dtype : {"float32", "float16", "float64"}, default="float32"
        Storage dtype. ``"float16"`` halves the disk space; rows are read
        back as float32.
    metadata : dict, default=None
        Reproducibility information (library versions, weights hash...)
        recorded in ``fingerprint.json`` and in every shard.

    Attributes
    ----------
    path : str
        The folder of this fingerprint: ``cache_dir/<fingerprint_id>``.
    fingerprint_id : str
        See :func:`fingerprint_id`.
    n_features : int or None
        Length of the cached vectors; ``None`` while the cache is empty.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.store import FeatureCache
    >>> cache = FeatureCache(tmp_dir, {"backbone": "mobilenet_v2", "pooling": "avg"})
    >>> keys = [b"a" * 20, b"b" * 20]
    >>> cache.lookup(keys)
    array([False, False])
    >>> cache.write(keys, np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> cache.lookup([b"b" * 20, b"c" * 20])
    array([ True, False])
    >>> cache.read([b"b" * 20, b"a" * 20])
    array([[3., 4., 5.],
           [0., 1., 2.]], dtype=float32)
    """

    def __init__(self, cache_dir, fingerprint, *, dtype="float32", metadata=None):
        self.cache_dir = os.path.abspath(os.fspath(cache_dir))
        self.fingerprint = fingerprint
        self.dtype = _check_storage_dtype(dtype)
        self.metadata = dict(metadata or {})
        self.fingerprint_id = fingerprint_id(fingerprint, self.dtype)
        self.path = os.path.join(self.cache_dir, self.fingerprint_id)
        self._metadata_json = _canonical_json(self.metadata)
        self._ensure_dirs()

    # -- folders
    def _ensure_dirs(self):
        os.makedirs(os.path.join(self.path, "shards"), exist_ok=True)
        fp_json = os.path.join(self.path, "fingerprint.json")
        if not os.path.exists(fp_json):
            doc = {"schema": CACHE_SCHEMA, "format_version": CACHE_FORMAT_VERSION,
                   "fingerprint_id": self.fingerprint_id, "fingerprint": self.fingerprint,
                   "storage_dtype": self.dtype, "metadata": self.metadata,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            _write_file_atomic(fp_json, json.dumps(doc, indent=1, sort_keys=True,
                                                   default=_json_default).encode())

    @property
    def _index(self):
        return _get_index(self.path, self.dtype)

    @property
    def n_features(self):
        index = self._index
        with index.lock:
            if index.n_features is None:
                index.refresh()
            return index.n_features

    def __len__(self):
        index = self._index
        with index.lock:
            index.refresh()
            return len(index.where)

    def __contains__(self, key):
        return bool(self.lookup([key])[0])

    def __repr__(self):
        return f"FeatureCache({self.cache_dir!r}, id={self.fingerprint_id!r}, dtype={self.dtype!r})"

    def __getstate__(self):
        return {"cache_dir": self.cache_dir, "fingerprint": self.fingerprint,
                "dtype": self.dtype, "metadata": self.metadata}

    def __setstate__(self, state):
        self.__init__(state["cache_dir"], state["fingerprint"], dtype=state["dtype"],
                      metadata=state["metadata"])

    # -- reading
    def lookup(self, keys):
        """Which keys have cached features.

        Indexes the shards written (by any process) since the last look:
        one directory listing when nothing changed.

        Parameters
        ----------
        keys : sequence of bytes
            Content keys (:func:`file_key`).

        Returns
        -------
        found : ndarray of bool, shape (n_keys,)
        """
        keys = _check_keys(keys)
        index = self._index
        with index.lock:
            index.refresh()
            where = index.where
            return np.fromiter((k in where for k in keys), dtype=bool, count=len(keys))

    def read(self, keys, out=None):
        """Cached features of ``keys``, in the given order.

        Rows are grouped by shard and read in sorted order, neighbours in
        one system call; a shard removed meanwhile by a compaction is
        looked up again.

        Parameters
        ----------
        keys : sequence of bytes
            Keys that :meth:`lookup` reported present.
        out : ndarray of shape (n_keys, n_features), default=None
            Where to put the rows; a new array (float32 for float16
            storage, else the storage dtype) when ``None``.

        Returns
        -------
        features : ndarray of shape (n_keys, n_features)

        Raises
        ------
        KeyError
            Some keys are not in the cache.
        """
        keys = _check_keys(keys)
        index = self._index
        with index.lock:
            for attempt in range(8):
                if attempt or index.n_features is None:
                    index.refresh()
                get = index.where.get
                codes = np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
                missing = np.flatnonzero(codes < 0)
                if len(missing) and attempt < 7:
                    # New shards, or a race with compactions: the listing held
                    # a merged shard that a second compaction merged away before
                    # it could be opened. Look again, giving them time to finish.
                    time.sleep(0.002 * attempt)
                    continue
                if len(missing):
                    raise KeyError(
                        f"{len(missing)} of the {len(keys)} keys are not in the cache "
                        f"{self.path} (first: {keys[missing[0]].hex()}); call lookup() first."
                    )
                d = index.n_features or 0
                if out is None:
                    out = np.empty((len(keys), d), dtype=_output_dtype(self.dtype))
                elif out.shape != (len(keys), d):
                    raise ValueError(f"out must have shape {(len(keys), d)}; got {out.shape}.")
                try:
                    self._read_codes(index, codes, out)
                    return out
                except FileNotFoundError:
                    continue  # a shard was merged away meanwhile: rescan
            raise RuntimeError(f"The cache {self.path} keeps changing under the reader.")

    @staticmethod
    def _read_codes(index, codes, out):
        if len(codes) == 0:
            return
        nos = codes >> _ROW_BITS
        rows = codes & ((1 << _ROW_BITS) - 1)
        order = np.argsort(nos, kind="stable")
        snos = nos[order]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(snos)) + 1, [len(snos)]))
        for g in range(len(bounds) - 1):
            sel = order[bounds[g]:bounds[g + 1]]
            shard = index.by_no[int(snos[bounds[g]])]
            if shard is None:
                raise FileNotFoundError(errno.ENOENT, "shard removed", "")
            if shard.offset is not None:
                fd = os.open(shard.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                try:
                    offsets = shard.offset + rows[sel] * shard.row_nbytes
                    _read_rows_at(fd, offsets, sel, out, shard.row_nbytes, shard.dtype)
                finally:
                    os.close(fd)
            else:
                import h5py

                with h5py.File(shard.path, "r") as f:
                    _read_rows_h5(f["features"], rows[sel], sel, out)

    # -- writing
    def write(self, keys, features):
        """Add features to the cache: one immutable shard, written atomically.

        Parameters
        ----------
        keys : sequence of bytes
            Content keys, all of the same length.
        features : array-like of shape (n_keys, n_features)
            Converted to the storage dtype.
        """
        keys = _check_keys(keys)
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] != len(keys):
            raise ValueError(
                f"features must have shape (n_keys, n_features) = ({len(keys)}, ...); "
                f"got {features.shape}."
            )
        if not keys:
            return
        index = self._index
        d = features.shape[1]
        if index.n_features is None:
            with index.lock:
                index.refresh()
        known = index.n_features
        if known is not None and d != known:
            raise ValueError(f"This cache holds {known} features per image; got {d}.")
        key_len = len(keys[0])
        if key_len == 0 or any(len(k) != key_len for k in keys):
            raise ValueError("cache keys must be non-empty bytes, all of the same length.")
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), key_len)
        feats = np.ascontiguousarray(features, dtype=np.dtype(self.dtype).newbyteorder("<"))
        image, offset = self._shard_image(key_arr, feats)
        name = f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(4)}.h5"
        path = os.path.join(self.path, "shards", name)
        try:
            _write_file_atomic(path, image)
        except FileNotFoundError:  # folder removed by clear_cache meanwhile
            self._ensure_dirs()
            _write_file_atomic(path, image)
        shard = _Shard(name, path, list(keys), d, self.dtype, offset, len(image))
        with index.lock:
            if index.n_features is not None and d != index.n_features:
                return  # pragma: no cover - raced by another writer of another width
            index.add(shard)

    def _shard_image(self, key_arr, feats):
        """An in-memory HDF5 shard: its bytes and the features' byte offset."""
        import h5py

        label = f"skbottleneck-shard-{threading.get_ident()}-{secrets.token_hex(4)}.h5"
        f = h5py.File(label, "w", driver="core", backing_store=False)
        try:
            self._set_shard_attrs(f, feats.shape[1])
            f.create_dataset("keys", data=key_arr)
            ds = f.create_dataset("features", data=feats)
            f.flush()
            offset = ds.id.get_offset()
            image = f.id.get_file_image()
        finally:
            f.close()
        return image, offset

    def _set_shard_attrs(self, f, n_features):
        f.attrs["schema"] = SHARD_SCHEMA
        f.attrs["format_version"] = np.int64(CACHE_FORMAT_VERSION)
        f.attrs["fingerprint_id"] = self.fingerprint_id
        f.attrs["n_features"] = np.int64(n_features)
        f.attrs["storage_dtype"] = self.dtype
        f.attrs["metadata_json"] = self._metadata_json
        for k, v in _library_versions().items():
            f.attrs[k] = v

    # -- compaction
    def compact(self, min_shards=16, *, target_bytes=256 * 2**20):
        """Merge small shards into bigger ones.

        Shards smaller than ``target_bytes / 4`` are copied, row block by
        row block (bounded memory), into merged shards of about
        ``target_bytes`` (duplicate keys kept once); each merged shard is
        written under a temporary name, fsynced and renamed before its
        sources are deleted. Readers that listed a deleted shard look the
        keys up again. One process compacts at a time (a lock file); the
        others return at once. Also deletes temporary files older than an
        hour (left by killed writers).

        Parameters
        ----------
        min_shards : int, default=16
            Do nothing unless at least this many small shards exist.
        target_bytes : int, default=256 MiB
            Size of a merged shard.

        Returns
        -------
        n_merged : int
            Number of shards merged away (0 when nothing was done).
        """
        index = self._index
        try:
            lock_fd = _lock_file(os.path.join(self.path, "compact.lock"))
        except FileNotFoundError:  # the cache was cleared meanwhile: nothing to merge
            return 0
        if lock_fd is None:  # another process is compacting
            return 0
        try:
            _remove_stale_tmp(os.path.join(self.path, "shards"))
            with index.lock:
                index.refresh()
                small = sorted((s for s in index.shards.values() if s.size < target_bytes // 4),
                               key=lambda s: s.name)
                if len(small) < max(int(min_shards), 2):
                    return 0
                small_names = {s.name for s in small}
                seen = set()
                for s in index.shards.values():
                    if s.name not in small_names:
                        seen.update(s.keys)
                groups, group, group_bytes = [], [], 0
                for s in small:
                    group.append(s)
                    group_bytes += s.size
                    if group_bytes >= target_bytes:
                        groups.append(group)
                        group, group_bytes = [], 0
                if group:
                    groups.append(group)
                n_merged = 0
                for group in groups:
                    if len(group) < 2:
                        continue
                    try:
                        merged = self._merge(group, seen)
                    except FileNotFoundError:
                        index.refresh()  # a source vanished (clear_cache?): stop here
                        break
                    except OSError as e:
                        warnings.warn(f"Compaction of the cache {self.path} stopped: {e}",
                                      StoreWarning, stacklevel=2)
                        break
                    if merged is not None:
                        index.add(merged)
                    for s in group:
                        _unlink_quietly(s.path)
                    index.remove([s.name for s in group])
                    n_merged += len(group)
                return n_merged
        finally:
            os.close(lock_fd)

    def _merge(self, sources, seen):
        """Write one merged shard of ``sources`` (keys not in ``seen``)."""
        import h5py

        picks = []  # (shard, rows)
        keys = []
        for s in sources:
            rows = [i for i, k in enumerate(s.keys) if k not in seen]
            seen.update(s.keys)
            if rows:
                picks.append((s, np.asarray(rows, dtype=np.int64)))
                keys.extend(s.keys[i] for i in rows)
        if not keys:
            return None
        d = sources[0].n_features
        key_len = len(keys[0])
        if any(len(k) != key_len for k in keys):
            key_len = max(len(k) for k in keys)  # pragma: no cover - mixed key lengths
            return None
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), key_len)
        dtype = np.dtype(self.dtype).newbyteorder("<")
        row_nbytes = d * dtype.itemsize
        name = f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(4)}.h5"
        shard_dir = os.path.join(self.path, "shards")
        final = os.path.join(shard_dir, name)
        tmp = _tmp_path(shard_dir, name)
        try:
            with h5py.File(tmp, "w") as f:
                self._set_shard_attrs(f, d)
                f.create_dataset("keys", data=key_arr)
                offset = _create_preallocated(f, "features", (len(keys), d), dtype)
            fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
            try:
                pos = 0
                block = max(1, _MAX_SPAN_BYTES // row_nbytes)
                for s, rows in picks:
                    for a in range(0, len(rows), block):
                        r = rows[a:a + block]
                        buf = np.empty((len(r), d), dtype=dtype)
                        self._read_codes_one(s, r, buf)
                        _pwrite(fd, buf, offset + pos * row_nbytes)
                        pos += len(r)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_dir(shard_dir)
        return _Shard(name, final, keys, d, self.dtype, offset, os.path.getsize(final))

    @staticmethod
    def _read_codes_one(shard, rows, out):
        dst = np.arange(len(rows))
        if shard.offset is not None:
            fd = os.open(shard.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                _read_rows_at(fd, shard.offset + rows * shard.row_nbytes, dst, out,
                              shard.row_nbytes, shard.dtype)
            finally:
                os.close(fd)
        else:
            import h5py

            with h5py.File(shard.path, "r") as f:
                _read_rows_h5(f["features"], rows, dst, out)

