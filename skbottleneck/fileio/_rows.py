"""Feature rows at their byte offsets: positional reads and writes, HDF5 layouts.

Rows of an uncompressed, allocated HDF5 dataset are read and written
without the HDF5 library, at the byte offsets :func:`raw_layout` finds
(:func:`read_rows_at`, :func:`pwrite`); :func:`create_preallocated`
allocates such a dataset up front, so that its file's metadata is never
modified again. :func:`read_rows_h5` reads the same rows through h5py for
any other layout. Used by the feature cache's shards and the store's data
file.
"""

import errno
import os
import threading

import numpy as np

__all__ = ["GAP_BYTES", "MAX_SPAN_BYTES", "create_preallocated", "pread_into", "pwrite",
           "raw_layout", "read_rows_at", "read_rows_h5", "row_offsets"]

GAP_BYTES = 64 * 1024  # read through gaps smaller than this (one syscall < 64 KiB)
MAX_SPAN_BYTES = 4 * 1024 * 1024  # largest temporary buffer of one read


_io_lock = threading.Lock()  # only for platforms without pread/pwrite


def pread_into(fd, buf, offset):
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


def pwrite(fd, data, offset):
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


def read_rows_at(fd, offsets, dst, out, row_nbytes, stored_dtype):
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
    breaks = np.flatnonzero((step - row_nbytes > GAP_BYTES) | (step % row_nbytes != 0)) + 1
    bounds = np.concatenate(([0], breaks, [n])).tolist()
    direct_ok = out.dtype == stored_dtype and out.flags.c_contiguous
    if direct_ok:
        follows = (step == row_nbytes) & (np.diff(dsts) == 1)
    max_rows = max(1, MAX_SPAN_BYTES // row_nbytes)
    buf = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        if direct_ok and (b - a == 1 or follows[a:b - 1].all()):
            d0 = int(dsts[a])
            pread_into(fd, out[d0:d0 + b - a], int(offs[a]))
            continue
        while a < b:
            lo = int(offs[a])
            c = a + int(np.searchsorted(offs[a:b], lo + (max_rows - 1) * row_nbytes, side="right"))
            c = max(c, a + 1)
            span_rows = (int(offs[c - 1]) - lo) // row_nbytes + 1
            if buf is None or len(buf) < span_rows:
                buf = np.empty((max(span_rows, min(max_rows, n)), d), dtype=stored_dtype)
            view = buf[:span_rows]
            pread_into(fd, view, lo)
            out[dsts[a:c]] = view[(offs[a:c] - lo) // row_nbytes]
            a = c


def read_rows_h5(dataset, rows, dst, out):
    """Same as :func:`read_rows_at` through h5py (any HDF5 layout)."""
    if len(rows) == 0:
        return
    row_nbytes = max(1, dataset.shape[1] * dataset.dtype.itemsize)
    gap = max(1, GAP_BYTES // row_nbytes)
    max_rows = max(1, MAX_SPAN_BYTES // row_nbytes)
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


def raw_layout(dataset):
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


def row_offsets(rows, firsts, offsets, row_nbytes):
    """Byte offset of each row given the extents of :func:`raw_layout`."""
    if len(firsts) == 1:
        return offsets[0] + rows.astype(np.int64) * row_nbytes
    e = np.searchsorted(firsts, rows, side="right") - 1
    return offsets[e] + (rows - firsts[e]).astype(np.int64) * row_nbytes


def create_preallocated(f, name, shape, dtype, chunk_rows=None):
    """Create a dataset whose storage is allocated now and never filled.

    Its rows can then be written in place with :func:`pwrite` at the byte
    offsets of :func:`raw_layout`, without the HDF5 library, so the file's
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
