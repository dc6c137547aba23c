"""The data file of a store being written: ``<store>.partial/data.h5``.

It is created once (temporary name, fsync, rename) with its whole HDF5
structure: root attributes, paths, labels, keys, and the ``features``
dataset with its storage allocated up front and never filled (sparse on
disk). Rows are then written at their byte offsets, without HDF5, so the
file's structure is never modified again. :class:`DataFile` is that file:
its path, shape and layout, the descriptor rows are written through, and
the checks of its structure when a run resumes.
"""

import os
import time

import numpy as np

from ..fileio import (
    attr_value,
    canonical_json,
    create_preallocated,
    fdatasync,
    fsync_dir,
    fsync_file,
    library_versions,
    pwrite,
    raw_layout,
    read_rows_at,
    row_offsets,
    tmp_path,
    unlink_quietly,
)
from ._format import STORE_FORMAT_VERSION, STORE_SCHEMA, _encode_str, naming_errors, store_os_error

__all__ = ["DamagedDataFile", "DataFile"]


class DamagedDataFile(Exception):
    """``data.h5`` is not what its manifest says; ``error`` is what to raise."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


class DataFile:
    """``data.h5`` of a store being written: created whole once, then rows written in place.

    Parameters
    ----------
    path : str
        ``<store>.partial/data.h5``.
    store_path : str
        The store it becomes (named in errors).
    n_rows, n_features : int
    dtype : numpy.dtype
        Storage dtype, little-endian.

    Attributes
    ----------
    path, store_path : str
    shape : tuple of int
    dtype : numpy.dtype
    row_nbytes : int
    """

    def __init__(self, path, *, store_path, n_rows, n_features, dtype):
        self.path = path
        self.store_path = store_path
        self.shape = (int(n_rows), int(n_features))
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.row_nbytes = self.shape[1] * self.dtype.itemsize
        self._fd = None
        self._layout = None  # (firsts, offsets) of the features' storage

    @property
    def is_open(self):
        """Whether rows can be written (the file is open)."""
        return self._fd is not None

    def exists(self):
        return os.path.exists(self.path)

    def create(self, *, attrs, paths, labels, labels_kind, keys, chunk_rows):
        """Create the file with its whole structure (temporary name, fsync, rename).

        Parameters
        ----------
        attrs : dict
            Root attributes (the caller's metadata and the store's identity);
            the schema, format version, creation time and library versions
            are added.
        paths : list of str
        labels : ndarray or None
        labels_kind : str
            ``"str"`` or the numeric kind of ``labels``.
        keys : ndarray of uint8 or None
        chunk_rows : int or None
            HDF5 chunk of the features.

        Raises
        ------
        OSError
            Naming the file and the store; an errno HDF5 reports (e.g. ``EFBIG``
            when the file cannot be extended) is kept.
        """
        import h5py

        directory = os.path.dirname(self.path)
        tmp = tmp_path(directory, os.path.basename(self.path))
        try:
            with h5py.File(tmp, "w") as f:
                root = {k: attr_value(v) for k, v in attrs["metadata"].items()}
                for k, v in library_versions().items():
                    root.setdefault(k, v)
                root.update(
                    schema=STORE_SCHEMA,
                    format_version=np.int64(STORE_FORMAT_VERSION),
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    metadata_json=canonical_json(attrs["metadata"]),
                    **{k: attr_value(v) for k, v in attrs["identity"].items()},
                )
                for k in sorted(root):
                    f.attrs[k] = root[k]
                self._write_index(f, paths, labels, labels_kind, keys)
                create_preallocated(f, "features", self.shape, self.dtype, chunk_rows)
            fsync_file(tmp)
            os.replace(tmp, self.path)
        except BaseException as e:
            unlink_quietly(tmp)
            # HDF5 reports a failed write (disk full...) as a RuntimeError giving the errno
            if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "errno = " in str(e)):
                raise store_os_error(e, store=self.store_path, path=self.path,
                                     doing="create the data file of") from e
            raise
        fsync_dir(directory)

    def _write_index(self, f, paths, labels, labels_kind, keys):
        """The paths, labels and keys datasets."""
        import h5py

        str_dt = h5py.string_dtype("utf-8")
        n = self.shape[0]
        ds = f.create_dataset("paths", shape=(n,), dtype=str_dt)
        if n:
            ds[:] = np.array([_encode_str(p) for p in paths], dtype=object)
        if labels is not None:
            if labels_kind == "str":
                ds = f.create_dataset("labels", shape=(n,), dtype=str_dt)
                if n:
                    ds[:] = np.array([_encode_str(v) for v in labels.tolist()], dtype=object)
            else:
                ds = f.create_dataset("labels", data=labels)
            ds.attrs["kind"] = labels_kind
        if keys is not None:
            f.create_dataset("keys", data=keys)

    def open(self):
        """Check the file's structure and open it for writing rows.

        Raises
        ------
        DamagedDataFile
            Not an HDF5 file, or not of the expected shape and dtype (its
            ``error`` names the file and says what to do).
        OSError
            The system refused to open it (naming the file and the store).
        """
        import h5py

        advice = (f"delete {os.path.dirname(self.path)} to start again, or pass "
                  "overwrite=True")
        try:
            with h5py.File(self.path, "r") as f:
                ds = f["features"]
                shape, dtype, layout = ds.shape, ds.dtype, raw_layout(ds)
        except (OSError, KeyError) as e:
            if getattr(e, "errno", None) is not None:  # the system's, not HDF5's: not damage
                raise store_os_error(e, store=self.store_path, path=self.path,
                                     doing="open the data file of", resumable=False) from e
            raise DamagedDataFile(OSError(
                f"{self.path}, the data file of the feature store {self.store_path} being "
                f"written, is damaged ({type(e).__name__}: {e}); {advice}."
            )) from e
        if shape != self.shape or dtype != self.dtype:
            raise DamagedDataFile(ValueError(
                f"{self.path} holds features of shape {shape} and dtype {dtype}, not "
                f"{self.shape} {self.dtype} as its manifest says; {advice}."))
        if layout is None:  # pragma: no cover - only if the file was altered
            raise DamagedDataFile(ValueError(f"{self.path} has an unexpected layout; {advice}."))
        try:
            self._fd = os.open(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except OSError as e:
            raise store_os_error(e, store=self.store_path, path=self.path,
                                 doing="open the data file of", resumable=False) from e
        self._layout = layout

    def _offsets(self, rows):
        return row_offsets(np.asarray(rows, dtype=np.int64), *self._layout, self.row_nbytes)

    def write_rows(self, rows, feats):
        """Write ``feats`` (storage dtype, C order) at rows ``rows``; durable on return.

        Rows next to each other on disk go in one ``pwrite``; then ``fdatasync``.
        """
        offsets = self._offsets(rows)
        order = np.argsort(offsets, kind="stable")
        offs = offsets[order]
        breaks = np.flatnonzero(np.diff(offs) != self.row_nbytes) + 1
        bounds = np.concatenate(([0], breaks, [len(offs)]))
        sorted_in = bool(np.all(order == np.arange(len(order))))
        with naming_errors(self.store_path, self.path, f"write {len(rows)} rows to"):
            for g in range(len(bounds) - 1):
                a, b = int(bounds[g]), int(bounds[g + 1])
                block = feats[a:b] if sorted_in else feats[order[a:b]]
                pwrite(self._fd, block, int(offs[a]))
            fdatasync(self._fd)

    def read_rows(self, rows, out):
        """``out[i] = features[rows[i]]`` of rows already written."""
        with naming_errors(self.store_path, self.path, "read rows back from"):
            read_rows_at(self._fd, self._offsets(rows), np.arange(len(rows)), out,
                          self.row_nbytes, self.dtype)
        return out

    def flush(self):
        """``fsync`` the file (before it is published)."""
        with naming_errors(self.store_path, self.path, "flush"):
            os.fsync(self._fd)

    def close(self):
        """Close the descriptor (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
