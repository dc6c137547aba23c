"""Low-level file helpers shared by the feature cache and the dataset store.

Atomic writes (temporary name, fsync, rename, fsync of the folder),
positional reads and writes of feature rows at their byte offsets in an
HDF5 file (bypassing HDF5 for uncompressed, allocated datasets), HDF5
datasets allocated up front, attribute and JSON conversion, and the
format errors and warnings. See :mod:`skbottleneck.store` for how they make
the stores crash-safe.

It lives in the cache package, the lower of the two rooms that use it:
the store imports it from here (the cache never imports the store).
"""

import errno
import functools
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time

import numpy as np

STORAGE_DTYPES = ("float16", "float32", "float64")

_TMP_PREFIX = ".tmp-"  # files being written; readers never look at them
#: Temporary files older than this are left-overs of killed writers.
_STALE_TMP_SECONDS = 3600.0
_GAP_BYTES = 64 * 1024  # read through gaps smaller than this (one syscall < 64 KiB)
_MAX_SPAN_BYTES = 4 * 1024 * 1024  # largest temporary buffer of one read


class StoreWarning(UserWarning):
    """A cache shard or journal file was unreadable (or of another format
    version) and has been set aside or ignored.

    The entries it held are treated as missing (computed again); nothing is
    lost but time.
    """

    __module__ = "skbottleneck.store"  # where it is imported from, as tracebacks show it


class UnsupportedFormatError(ValueError):
    """A file is not a skbottleneck store, or was written in a format version
    this skbottleneck does not read."""

    __module__ = "skbottleneck.store"


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


_H5_ERRNO_RE = re.compile(r"errno = (\d+)(?:, error message = '([^']*)')?")


def _named_os_error(e, what, path):
    """The error ``e`` of writing ``path`` as an ``OSError`` that names it (raise it ``from e``).

    ``what`` says what was being done (``"write the feature cache shard"``).
    The new error keeps the ``errno`` of ``e``, hence its subclass
    (``PermissionError``...; a full disk is still ``errno.ENOSPC``). HDF5
    reports the failures of its own writes as ``RuntimeError`` or
    ``OSError`` with the errno only in the message: that errno is used.

    Examples
    --------
    >>> e = _named_os_error(RuntimeError("Can't close (unable to extend file properly, "
    ...                                  "errno = 28, error message = 'No space left on device')"),
    ...                     "write the merged feature cache shard", "/c/shards/y.h5")
    >>> print(e)
    [Errno 28] Cannot write the merged feature cache shard /c/shards/y.h5: No space left on device
    >>> e.errno == errno.ENOSPC
    True
    """
    code = getattr(e, "errno", None)
    reason = getattr(e, "strerror", None)
    if code is None:
        m = _H5_ERRNO_RE.search(str(e))
        if m:
            code = int(m.group(1))
            reason = m.group(2) or os.strerror(code)
    message = f"Cannot {what} {path}: {reason or e}"
    if code is None:
        return OSError(message)
    return OSError(code, message)


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
    row_nbytes = max(1, dataset.shape[1] * dataset.dtype.itemsize)
    gap = max(1, _GAP_BYTES // row_nbytes)
    max_rows = max(1, _MAX_SPAN_BYTES // row_nbytes)
    order = np.argsort(rows, kind="stable")
    srows = rows[order]
    sdst = dst[order]
    breaks = np.flatnonzero(np.diff(srows) > gap) + 1
    bounds = np.concatenate(([0], breaks, [len(srows)])).tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        while a < b:
            lo = int(srows[a])
            c = max(a + 1, a + int(np.searchsorted(srows[a:b], lo + max_rows - 1, side="right")))
            hi = int(srows[c - 1]) + 1
            out[sdst[a:c]] = dataset[lo:hi][srows[a:c] - lo]
            a = c


def _raw_layout(dataset):
    """Byte extents of an HDF5 dataset's rows, if it can be read without HDF5.

    Parameters
    ----------
    dataset : h5py.Dataset or h5py.h5d.DatasetID

    Returns
    -------
    ``(first_rows, byte_offsets)`` (each extent holds consecutive rows
    stored back to back) for an unfiltered little-endian float 2-D dataset
    laid out contiguously or in full-width row chunks, all allocated, in a
    file without user block; else ``None`` (read it through h5py).
    """
    import h5py
    from h5py import h5d, h5i

    dsid = dataset.id if isinstance(dataset, h5py.Dataset) else dataset
    dt = dsid.dtype
    shape = dsid.shape
    if dt.kind != "f" or dt.byteorder == ">" or len(shape) != 2:
        return None
    if h5i.get_file_id(dsid).get_create_plist().get_userblock():
        return None
    n, d = shape
    row_nbytes = d * dt.itemsize
    dcpl = dsid.get_create_plist()
    if dcpl.get_nfilters():
        return None
    layout = dcpl.get_layout()
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if layout == h5d.CONTIGUOUS:
        offset = dsid.get_offset()
        if offset is None or dsid.get_storage_size() < n * row_nbytes:
            return None
        return np.zeros(1, np.int64), np.array([offset], np.int64)
    if layout == h5d.CHUNKED:
        chunk_rows, chunk_cols = dcpl.get_chunk()
        if chunk_cols != d:
            return None
        n_chunks = -(-n // chunk_rows)
        if dsid.get_num_chunks() != n_chunks:
            return None
        firsts = np.empty(n_chunks, np.int64)
        offsets = np.empty(n_chunks, np.int64)
        for i in range(n_chunks):
            info = dsid.get_chunk_info(i)
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


@functools.lru_cache(maxsize=1)
def _library_versions():
    """Versions of the libraries that wrote a file (root attributes)."""
    from importlib.metadata import PackageNotFoundError, version

    import h5py

    versions = {"numpy_version": np.__version__, "h5py_version": h5py.__version__,
                "hdf5_version": h5py.version.hdf5_version,
                "python_version": sys.version.split()[0]}
    try:
        from .. import __version__

        versions["skbottleneck_version"] = __version__
    except ImportError:  # pragma: no cover
        pass
    # read from the installed metadata: does not import TensorFlow
    for lib in ("tensorflow", "keras", "pillow"):
        try:
            versions[f"{lib}_version"] = version(lib)
        except PackageNotFoundError:  # pragma: no cover
            pass
    return dict(versions)


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
        if value.dtype.kind in "OSU":
            return [_python_attr(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _read_scalar_attr(obj_id, name):
    """A scalar attribute through the low-level API (str, int or float); None if absent."""
    import h5py
    from h5py import h5a, h5t

    if not h5a.exists(obj_id, name.encode()):
        return None
    attr = h5a.open(obj_id, name.encode())
    if attr.get_type().get_class() == h5t.STRING:
        dt = h5py.string_dtype() if attr.get_type().is_variable_str() else attr.dtype
        out = np.empty((), dtype=dt)
        attr.read(out, mtype=h5t.py_create(dt))
    else:
        out = np.empty(attr.shape, dtype=attr.dtype)
        attr.read(out)
    return _python_attr(out[()])


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
