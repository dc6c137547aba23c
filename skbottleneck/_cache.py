"""Content-keyed, crash-safe on-disk cache of CNN features.

The public names are re-exported by :mod:`skbottleneck.store`, whose module
docstring describes the on-disk layout and why it survives a kill at any
moment. This module holds the cache (:class:`FeatureCache`, its
housekeeping functions and the content hashing of image files) and the
low-level file helpers that :mod:`skbottleneck.store` shares: atomic
writes, positional reads and writes of feature rows, HDF5 attribute
conversion.
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

STORAGE_DTYPES = ("float16", "float32", "float64")

_TMP_PREFIX = ".tmp-"
_SHARD_RE = re.compile(r"^[0-9a-f]{16}-[0-9]+-[0-9a-f]{8}\.h5$")
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
#: Temporary files older than this are left-overs of killed writers.
_STALE_TMP_SECONDS = 3600.0
_GAP_BYTES = 64 * 1024  # read through gaps smaller than this (one syscall < 64 KiB)
_MAX_SPAN_BYTES = 4 * 1024 * 1024  # largest temporary buffer of one read
_KEY_MEMO_SIZE = 1 << 18
_ROW_BITS = 32


class StoreWarning(UserWarning):
    """A cache shard or store part was unreadable and has been set aside.

    The entries it held are treated as missing (computed again); nothing is
    lost but time.
    """


class UnsupportedFormatError(ValueError):
    """A file is not a skbottleneck store, or was written in a format version
    this skbottleneck does not read."""


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

    cpus = os.cpu_count() or 1
    if n_jobs is None:
        n_jobs = min(8, cpus + 2)
    elif n_jobs < 0:
        n_jobs = max(1, cpus + 1 + n_jobs)
    n_jobs = max(1, min(int(n_jobs), len(paths)))
    if n_jobs == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(one, paths, chunksize=64))


# ------------------------------------------------------------ low-level files
def _fsync_file(path):
    """Flush a closed file's data to the disk."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path):
    """Make a rename in ``path`` durable (POSIX; a no-op where unsupported)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_path(directory, name):
    return os.path.join(directory, f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")


def _write_file_atomic(path, data):
    """Write ``data`` to ``path`` so that ``path`` is either absent/old or complete.

    The bytes go to a temporary name in the same directory, are fsynced, and
    the file is renamed over ``path`` (atomic on POSIX and Windows), then the
    directory is fsynced.
    """
    directory = os.path.dirname(path) or "."
    tmp = _tmp_path(directory, os.path.basename(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(data).cast("B")
        while len(view):
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(directory)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_stale_tmp(directory, max_age=_STALE_TMP_SECONDS):
    """Delete temporary files of killed writers (older than ``max_age`` s)."""
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for e in entries:
        if e.name.startswith(_TMP_PREFIX):
            try:
                if now - e.stat().st_mtime > max_age:
                    os.unlink(e.path)
            except OSError:
                pass


_io_lock = threading.Lock()  # only for platforms without pread/pwrite


def _pread_into(fd, buf, offset):
    """Fill the writable buffer ``buf`` with bytes of ``fd`` from ``offset``."""
    view = memoryview(buf).cast("B")
    done, total = 0, len(view)
    while done < total:
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - Windows
            with _io_lock:
                os.lseek(fd, offset + done, os.SEEK_SET)
                chunk = os.read(fd, min(total - done, 1 << 30))
            n = len(chunk)
            view[done:done + n] = chunk
        if n == 0:
            raise OSError(errno.EIO, f"unexpected end of file at byte {offset + done}")
        done += n


def _pwrite(fd, data, offset):
    """Write all of ``data`` at ``offset`` of ``fd``."""
    view = memoryview(data).cast("B")
    while len(view):
        if hasattr(os, "pwritev"):
            n = os.pwritev(fd, [view], offset)
        else:  # pragma: no cover - Windows
            with _io_lock:
                os.lseek(fd, offset, os.SEEK_SET)
                n = os.write(fd, view)
        view = view[n:]
        offset += n


def _fdatasync(fd):
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _read_rows_at(fd, offsets, dst, out, row_nbytes, stored_dtype):
    """Read rows at byte ``offsets`` of ``fd`` into ``out[dst]``.

    Rows are sorted by offset. A run of rows back to back both in the file
    and in ``out`` is read straight into ``out`` in one system call; other
    rows closer than 64 KiB are read together (through the gap) into a
    reused buffer of at most 4 MiB and scattered from there.
    """
    n = len(offsets)
    if n == 0:
        return
    d = out.shape[1]
    order = np.argsort(offsets, kind="stable")
    offs = offsets[order]
    dsts = dst[order]
    step = np.diff(offs)
    # split where the gap is large, or rows are not aligned with each other
    # (rows of two different HDF5 chunks)
    breaks = np.flatnonzero((step - row_nbytes > _GAP_BYTES) | (step % row_nbytes != 0)) + 1
    bounds = np.concatenate(([0], breaks, [n])).tolist()
    direct_ok = out.dtype == stored_dtype and out.flags.c_contiguous
    if direct_ok:
        follows = (step == row_nbytes) & (np.diff(dsts) == 1)
    max_rows = max(1, _MAX_SPAN_BYTES // row_nbytes)
    buf = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        if direct_ok and (b - a == 1 or follows[a:b - 1].all()):
            d0 = int(dsts[a])
            _pread_into(fd, out[d0:d0 + b - a], int(offs[a]))
            continue
        while a < b:
            lo = int(offs[a])
            c = a + int(np.searchsorted(offs[a:b], lo + (max_rows - 1) * row_nbytes, side="right"))
            c = max(c, a + 1)
            span_rows = (int(offs[c - 1]) - lo) // row_nbytes + 1
            if buf is None or len(buf) < span_rows:
                buf = np.empty((max(span_rows, min(max_rows, n)), d), dtype=stored_dtype)
            view = buf[:span_rows]
            _pread_into(fd, view, lo)
            out[dsts[a:c]] = view[(offs[a:c] - lo) // row_nbytes]
            a = c


def _read_rows_h5(dataset, rows, dst, out):
    """Same as :func:`_read_rows_at` through h5py (any HDF5 layout)."""
    if len(rows) == 0:
        return
    order = np.argsort(rows, kind="stable")
    srows = rows[order]
    sdst = dst[order]
    breaks = np.flatnonzero(np.diff(srows) > 64) + 1
    bounds = np.concatenate(([0], breaks, [len(srows)]))
    for g in range(len(bounds) - 1):
        a, b = int(bounds[g]), int(bounds[g + 1])
        lo, hi = int(srows[a]), int(srows[b - 1]) + 1
        out[sdst[a:b]] = dataset[lo:hi][srows[a:b] - lo]


def _raw_layout(dataset):
    """Byte extents of an HDF5 dataset's rows, if it can be read without HDF5.

    Returns ``(first_rows, byte_offsets)`` (each extent holds consecutive
    rows stored back to back) for an unfiltered little-endian float dataset
    laid out contiguously or in full-width row chunks, all allocated; else
    ``None`` (read it through h5py).
    """
    from h5py import h5d

    dt = dataset.dtype
    if dt.kind != "f" or dt.byteorder == ">" or dataset.ndim != 2:
        return None
    if dataset.file.userblock_size:
        return None
    n, d = dataset.shape
    row_nbytes = d * dt.itemsize
    dcpl = dataset.id.get_create_plist()
    if dcpl.get_nfilters():
        return None
    layout = dcpl.get_layout()
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if layout == h5d.CONTIGUOUS:
        offset = dataset.id.get_offset()
        if offset is None or dataset.id.get_storage_size() < n * row_nbytes:
            return None
        return np.zeros(1, np.int64), np.array([offset], np.int64)
    if layout == h5d.CHUNKED:
        chunk_rows, chunk_cols = dcpl.get_chunk()
        if chunk_cols != d:
            return None
        n_chunks = -(-n // chunk_rows)
        if dataset.id.get_num_chunks() != n_chunks:
            return None
        firsts = np.empty(n_chunks, np.int64)
        offsets = np.empty(n_chunks, np.int64)
        for i in range(n_chunks):
            info = dataset.id.get_chunk_info(i)
            if info.byte_offset is None or info.size != chunk_rows * row_nbytes:
                return None
            firsts[i] = info.chunk_offset[0]
            offsets[i] = info.byte_offset
        order = np.argsort(firsts)
        return firsts[order], offsets[order]
    return None


def _row_offsets(rows, firsts, offsets, row_nbytes):
    """Byte offset of each row given the extents of :func:`_raw_layout`."""
    if len(firsts) == 1:
        return offsets[0] + rows.astype(np.int64) * row_nbytes
    e = np.searchsorted(firsts, rows, side="right") - 1
    return offsets[e] + (rows - firsts[e]).astype(np.int64) * row_nbytes


# ----------------------------------------------------------------- metadata
def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(
        "fingerprint and metadata values must be JSON-serialisable (str, int, float, bool, "
        f"None, lists and dicts of them); got {obj!r} of type {type(obj).__name__}."
    )


def _canonical_json(obj):
    """Deterministic JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False, default=_json_default)


def _sha256(data):
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def _check_storage_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError as e:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}; got {dtype!r}.") from e
    if name not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}; got {dtype!r}.")
    return name


def _output_dtype(stored):
    """Dtype of arrays returned for a storage dtype: float16 is read as float32."""
    return np.dtype(np.float32) if np.dtype(stored) == np.float16 else np.dtype(stored)


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


def _library_versions():
    """Versions of the libraries that wrote a file (root attributes)."""
    import h5py

    versions = {"numpy_version": np.__version__, "h5py_version": h5py.__version__,
                "hdf5_version": h5py.version.hdf5_version,
                "python_version": sys.version.split()[0]}
    try:
        from . import __version__

        versions["skbottleneck_version"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return versions


def _attr_value(value):
    """A JSON-like metadata value as an HDF5 attribute (lists/dicts as JSON)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, (float, str)):
        return value
    if value is None or isinstance(value, (list, tuple, dict)):
        return _canonical_json(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"metadata values must be str, int, float, bool, None, lists or dicts; got {value!r}."
    )


def _python_attr(value):
    """An HDF5 attribute value as a plain Python object."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray):
        return [_python_attr(v) for v in value.tolist()] if value.dtype.kind in "OSU" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attr_str(attrs, name):
    value = attrs.get(name)
    return _python_attr(value) if value is not None else None


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
        if doc.get("format_version") == CACHE_FORMAT_VERSION and doc.get("storage_dtype") in STORAGE_DTYPES:
            index = _get_index(directory, doc["storage_dtype"])
            with index.lock:
                index.refresh()
                entry.update(n_features=index.n_features, n_entries=len(index.where),
                             n_shards=index.n_live)
        info[os.path.basename(directory)] = entry
    return info


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


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
        raise TypeError(f"fingerprint must be a dict or an id string; got {type(fingerprint).__name__}.")
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
            if backbone is not None and (not isinstance(fp, dict) or fp.get("backbone") != backbone):
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

    @property
    def n_live(self):
        return len(self.shards)

    def list_shards(self):
        try:
            return {e.name: e for e in os.scandir(self.shard_dir) if _SHARD_RE.match(e.name)}
        except FileNotFoundError:
            return {}

    def refresh(self):
        """Index shards that appeared since the last look, drop vanished ones."""
        listing = self.list_shards()
        gone = [name for name in self.shards if name not in listing]
        new = sorted(name for name in listing if name not in self.shards and name not in self.skipped)
        if gone:
            for name in gone:
                shard = self.shards.pop(name)
                self.by_no[shard.no] = None
            self._rebuild()
        for name in new:
            shard = self._open_shard(name, listing[name])
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

    def _open_shard(self, name, entry):
        """Validate and index one shard file; ``None`` if it must be ignored."""
        import h5py

        path = entry.path
        try:
            size = entry.stat().st_size
            with h5py.File(path, "r") as f:
                schema = _attr_str(f.attrs, "schema")
                version = _attr_str(f.attrs, "format_version")
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
                keys_ds, feats = f["keys"], f["features"]
                if keys_ds.dtype != np.uint8 or keys_ds.ndim != 2 or feats.ndim != 2:
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
                if n:
                    keys_ds.read_direct(keys)
                layout = _raw_layout(feats)
                offset = None
                if layout is not None and len(layout[1]) == 1:
                    offset = int(layout[1][0])
                    if offset + n * d * feats.dtype.itemsize > size:
                        raise ValueError("the file is shorter than its feature data")
            key_list = keys.view(f"V{key_len}").ravel().tolist() if key_len else [b""] * n
            return _Shard(name, path, key_list, d, feats.dtype, offset, size)
        except Exception as e:  # noqa: BLE001 - any failure means a damaged file
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
            raise TypeError(f"cache keys must be bytes (e.g. from file_key); got {type(k).__name__}.")
    return keys


def _lock_file(path):
    """Take an exclusive lock on ``path`` without waiting; the fd, or None if busy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        os.close(fd)
        return None
    return fd


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
                if attempt == 0 and (codes < 0).any():
                    index.refresh()
                    get = index.where.get
                    codes = np.fromiter((get(k, -1) for k in keys), dtype=np.int64,
                                        count=len(keys))
                missing = np.flatnonzero(codes < 0)
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
        lock_fd = _lock_file(os.path.join(self.path, "compact.lock"))
        if lock_fd is None:
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


def _create_preallocated(f, name, shape, dtype, chunk_rows=None):
    """Create a dataset whose storage is allocated now and never filled.

    Its rows can then be written in place with :func:`_pwrite` at the byte
    offsets of :func:`_raw_layout`, without the HDF5 library, so the file's
    metadata is never modified again. Returns the byte offset of a
    contiguous dataset (``None`` for chunked or empty ones).
    """
    from h5py import h5d, h5p, h5s, h5t

    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
    if chunk_rows:
        dcpl.set_chunk((int(chunk_rows), shape[1]))
        space = h5s.create_simple(shape, (h5s.UNLIMITED, shape[1]))
    else:
        space = h5s.create_simple(shape, shape)
    dsid = h5d.create(f.id, name.encode(), h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    return None if chunk_rows else dsid.get_offset()
