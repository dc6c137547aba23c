"""Writing a dataset store, crash-safe and resumable: :class:`StoreWriter`.

The store is assembled in ``<path>.partial/`` (see :mod:`._journal`):
``data.h5`` is created once with its whole HDF5 structure and its feature
storage allocated, rows are then written in place with ``pwrite`` and
recorded in the journal, and :meth:`StoreWriter.finalize` renames the file
into place. :meth:`StoreWriter.finalize_subset` (see :mod:`._subset_writer`)
publishes only some of the rows instead.
"""

import errno
import operator
import os
import threading
import time

import numpy as np

from ..cache._fileio import (
    UnsupportedFormatError,
    _attr_value,
    _canonical_json,
    _check_storage_dtype,
    _create_preallocated,
    _fdatasync,
    _fsync_dir,
    _fsync_file,
    _library_versions,
    _pwrite,
    _raw_layout,
    _read_rows_at,
    _row_offsets,
    _sha256,
    _tmp_path,
    _unlink_quietly,
)
from ._format import (
    STORE_FORMAT_VERSION,
    STORE_SCHEMA,
    _check_metadata,
    _encode_str,
    _hash_labels,
    _hash_strings,
    _normalize_keys,
    _normalize_labels,
)
from ._journal import PartialFolder
from ._reader import ClosingMixin, FeatureStore
from ._subset_writer import finalize_subset, is_subset_for

__all__ = ["StoreWriter"]


class StoreWriter(ClosingMixin):
    """Crash-safe, resumable writer of a dataset's features to one HDF5 file.

    The store is assembled in ``<path>.partial/`` and appears at ``path``
    only when every row has been written (:meth:`finalize`). A run killed
    at any moment resumes when a writer is created again with the same
    arguments: :meth:`missing_rows` tells what is left. See the module
    docstring for the layout and the crash-safety argument.

    Parameters
    ----------
    path : str or path-like
        The store file to write, e.g. ``"features.h5"``.
    paths : sequence of str or path-like
        The images, one row each, in order.
    labels : array-like of shape (n_rows,), default=None
        Labels (strings or numbers), stored beside the features.
    keys : sequence of bytes, default=None
        Content keys of the images (:func:`file_key`), stored as well.
    n_features : int
        Length of each feature vector.
    dtype : {"float32", "float16", "float64"}, default="float32"
        Storage dtype (float16 halves the file; read back as float32).
    metadata : dict, default=None
        Reproducibility information (backbone, weights hash, layer, library
        versions...) stored as root attributes; must not use the names in
        ``RESERVED_ATTRS``.
    chunk_rows : int, default=None
        ``None`` stores the features contiguously (fastest reads); an int
        stores them in full-width chunks of that many rows.
    overwrite : bool, default=False
        Replace an existing store (at :meth:`finalize`) or discard partial
        progress made for other images, labels, keys, features or metadata,
        instead of raising. A finished store with the same content is
        reused either way.

    Attributes
    ----------
    path : str
        Absolute path of the store.
    partial_dir : str
        ``path + ".partial"``.
    n_rows : int
        Number of rows (paths).

    Raises
    ------
    FileExistsError
        ``path`` exists and holds something else (and ``overwrite=False``).
    ValueError
        Partial progress for other content exists (and ``overwrite=False``).

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.store import StoreWriter
    >>> w = StoreWriter(tmp_dir / "features.h5", paths=["a.jpg", "b.jpg", "c.jpg"],
    ...                 labels=["cat", "dog", "cat"], n_features=4)
    >>> w.missing_rows()
    array([0, 1, 2])
    >>> w.write_rows([2, 0], np.ones((2, 4)))
    >>> w.missing_rows()
    array([1])
    >>> w.write_rows([1], np.zeros((1, 4)))
    >>> store = w.finalize()
    >>> store.read_rows([1, 2])[1]
    array(['dog', 'cat'], dtype='<U3')
    """

    def __init__(self, path, *, paths, labels=None, keys=None, n_features, dtype="float32",
                 metadata=None, chunk_rows=None, overwrite=False):
        self.path = os.path.abspath(os.fspath(path))
        self.partial_dir = self.path + ".partial"
        self._partial = PartialFolder(self.partial_dir)
        self._paths = [os.fspath(p) for p in paths]
        for p in self._paths:
            if not isinstance(p, str):
                raise TypeError(f"paths must be str or path-like; got {p!r}.")
        self.n_rows = len(self._paths)
        self.n_features = operator.index(n_features)
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1; got {n_features}.")
        self.dtype = _check_storage_dtype(dtype)
        self._labels, self._labels_kind = _normalize_labels(labels, self.n_rows)
        self._keys = _normalize_keys(keys, self.n_rows)
        self.metadata = _check_metadata(metadata)
        if chunk_rows is not None:
            chunk_rows = operator.index(chunk_rows)
            if chunk_rows < 1:
                raise ValueError(f"chunk_rows must be None or >= 1; got {chunk_rows}.")
        self.chunk_rows = chunk_rows
        self.overwrite = bool(overwrite)
        self._store_dtype = np.dtype(self.dtype).newbyteorder("<")
        self._row_nbytes = self.n_features * self._store_dtype.itemsize
        self._identity = {
            "n_rows": self.n_rows,
            "n_features": self.n_features,
            "storage_dtype": self.dtype,
            "paths_sha256": _hash_strings(self._paths),
            "labels_sha256": _hash_labels(self._labels, self._labels_kind),
            "keys_sha256": "" if self._keys is None else _sha256(self._keys.tobytes()),
            "metadata_sha256": _sha256(_canonical_json(self.metadata)),
        }
        self._lock = threading.Lock()
        self._fd = None
        self._finished = False
        self._done = np.zeros(self.n_rows, dtype=bool)
        self._start()

    # -- setup
    @property
    def _data_path(self):
        return self._partial.data_path

    def _start(self):
        if os.path.exists(self.path):
            diff = self._differences_with_finished()
            if diff and not self.overwrite and is_subset_for(self.path, self._identity):
                diff = ""
            if not diff:
                self._finished = True
                self._done[:] = True
                # left over by a finalize killed after its rename (possibly half
                # deleted, manifest first): progress of another run is kept
                if self._partial.manifest_identity() in (None, self._identity):
                    self._partial.remove_quietly()
                return
            if not self.overwrite:
                raise FileExistsError(
                    errno.EEXIST,
                    f"{self.path} already exists and differs from what is being written "
                    f"({diff}). Pass overwrite=True to replace it, or choose another path",
                    self.path,
                )
        try:
            manifest = self._partial.read_manifest()
        except UnsupportedFormatError:
            if not self.overwrite:
                raise
            self._partial.remove()
            manifest = None
        if manifest is not None:
            theirs = manifest.get("identity")
            if manifest.get("format_version") != STORE_FORMAT_VERSION and not self.overwrite:
                raise UnsupportedFormatError(
                    f"{self.partial_dir} holds partial progress in format version "
                    f"{manifest.get('format_version')!r}; this skbottleneck writes version "
                    f"{STORE_FORMAT_VERSION}. Finish it with that version, or pass "
                    "overwrite=True to discard it."
                )
            if theirs != self._identity and not self.overwrite:
                changed = sorted(k for k in self._identity
                                 if (theirs or {}).get(k) != self._identity[k])
                raise ValueError(
                    f"{self.partial_dir} holds partial progress for other content "
                    f"(differs in: {', '.join(changed)}). Pass overwrite=True to discard it "
                    "and start again, or call again with the original arguments to resume."
                )
            if theirs != self._identity or manifest.get("format_version") != STORE_FORMAT_VERSION:
                manifest = None
                self._partial.remove()
        elif self._partial.exists():
            self._partial.remove()  # killed before its manifest was written: nothing to keep
        if manifest is None:
            self._partial.write_manifest(store_path=self.path, identity=self._identity,
                                         chunk_rows=self.chunk_rows, metadata=self.metadata)
        os.makedirs(self._partial.journal_dir, exist_ok=True)
        if not os.path.exists(self._data_path):
            self._done[:] = False
            self._partial.clear_journal()
            self._create_data_file()
        self._open_data_file()
        self._partial.load_journal(self._done)

    def _differences_with_finished(self):
        """'' if ``path`` is a finished store of the same content, else what differs."""
        try:
            with FeatureStore(self.path) as store:
                attrs = store.metadata
        except (UnsupportedFormatError, OSError) as e:
            return f"not a readable skbottleneck store: {e}"
        changed = [k for k, v in self._identity.items() if attrs.get(k) != v]
        return ", ".join(f"other {k.replace('_sha256', '')}" for k in changed)

    def _create_data_file(self):
        import h5py

        tmp = _tmp_path(self.partial_dir, "data.h5")
        try:
            with h5py.File(tmp, "w") as f:
                attrs = {k: _attr_value(v) for k, v in self.metadata.items()}
                for k, v in _library_versions().items():
                    attrs.setdefault(k, v)
                attrs.update(
                    schema=STORE_SCHEMA,
                    format_version=np.int64(STORE_FORMAT_VERSION),
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    metadata_json=_canonical_json(self.metadata),
                    **{k: _attr_value(v) for k, v in self._identity.items()},
                )
                for k in sorted(attrs):
                    f.attrs[k] = attrs[k]
                str_dt = h5py.string_dtype("utf-8")
                ds = f.create_dataset("paths", shape=(self.n_rows,), dtype=str_dt)
                if self.n_rows:
                    ds[:] = np.array([_encode_str(p) for p in self._paths], dtype=object)
                if self._labels is not None:
                    if self._labels_kind == "str":
                        ds = f.create_dataset("labels", shape=(self.n_rows,), dtype=str_dt)
                        if self.n_rows:
                            ds[:] = np.array([_encode_str(v) for v in self._labels.tolist()],
                                             dtype=object)
                    else:
                        ds = f.create_dataset("labels", data=self._labels)
                    ds.attrs["kind"] = self._labels_kind
                if self._keys is not None:
                    f.create_dataset("keys", data=self._keys)
                _create_preallocated(f, "features", (self.n_rows, self.n_features),
                                     self._store_dtype, self.chunk_rows)
            _fsync_file(tmp)
            os.replace(tmp, self._data_path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_dir(self.partial_dir)

    def _open_data_file(self):
        import h5py

        with h5py.File(self._data_path, "r") as f:
            ds = f["features"]
            if ds.shape != (self.n_rows, self.n_features) or ds.dtype != self._store_dtype:
                raise ValueError(f"{self._data_path} does not match its manifest; delete "
                                 f"{self.partial_dir} or pass overwrite=True.")
            layout = _raw_layout(ds)
        if layout is None:  # pragma: no cover - only if the file was altered
            raise ValueError(f"{self._data_path} has an unexpected layout; "
                             f"delete {self.partial_dir}.")
        self._firsts, self._offsets = layout
        self._fd = os.open(self._data_path, os.O_RDWR | getattr(os, "O_BINARY", 0))

    # -- public
    def done(self):
        """Which rows have been written.

        Returns
        -------
        done : ndarray of bool, shape (n_rows,)
        """
        return self._done.copy()

    @property
    def finished(self):
        """Whether the store is complete at :attr:`path`."""
        return self._finished

    def missing_rows(self):
        """Rows not written yet (all of them for a new store).

        Returns
        -------
        rows : ndarray of int
        """
        return np.flatnonzero(~self._done)

    def write_rows(self, rows, features):
        """Write feature rows; durable when this returns.

        The rows are written in place in ``data.h5`` and fsynced, then a
        journal file records them. Rows may come in any order, and be
        written again (a resumed run).

        Parameters
        ----------
        rows : array-like of int, shape (n,)
            Row indices (positions in ``paths``).
        features : array-like of shape (n, n_features)
            Converted to the storage dtype.
        """
        rows = np.asarray(rows)
        if rows.size == 0:
            return
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ValueError("rows must be a 1-D array of integers; "
                             f"got {rows.dtype} {rows.shape}.")
        rows = rows.astype(np.int64)
        if rows.min() < 0 or rows.max() >= self.n_rows:
            raise IndexError(f"rows must be in [0, {self.n_rows}); got {rows.min()}..{rows.max()}.")
        features = np.asarray(features)
        if features.shape != (len(rows), self.n_features):
            raise ValueError(f"features must have shape {(len(rows), self.n_features)}; "
                             f"got {features.shape}.")
        feats = np.ascontiguousarray(features, dtype=self._store_dtype)
        with self._lock:
            if self._finished:
                raise RuntimeError(f"{self.path} is already finalized.")
            offsets = _row_offsets(rows, self._firsts, self._offsets, self._row_nbytes)
            order = np.argsort(offsets, kind="stable")
            offs = offsets[order]
            breaks = np.flatnonzero(np.diff(offs) != self._row_nbytes) + 1
            bounds = np.concatenate(([0], breaks, [len(offs)]))
            sorted_in = bool(np.all(order == np.arange(len(order))))
            for g in range(len(bounds) - 1):
                a, b = int(bounds[g]), int(bounds[g + 1])
                block = feats[a:b] if sorted_in else feats[order[a:b]]
                _pwrite(self._fd, block, int(offs[a]))
            _fdatasync(self._fd)
            self._partial.record(np.unique(rows))
            self._done[rows] = True

    def finalize(self):
        """Publish the store at :attr:`path` (an atomic rename; no copy).

        Returns
        -------
        store : FeatureStore
            The finished store, open for reading.

        Raises
        ------
        ValueError
            Some rows have not been written.
        """
        with self._lock:
            if not self._finished:
                missing = self.missing_rows()
                if len(missing):
                    raise ValueError(
                        f"{len(missing)} of the {self.n_rows} rows of {self.path} have not been "
                        f"written yet (first: row {missing[0]}, {self._paths[missing[0]]!r})."
                    )
                os.fsync(self._fd)
                self._publish(self._data_path)
        return FeatureStore(self.path)

    def _publish(self, finished_file):
        """Rename a durable, complete store file onto :attr:`path`; drop the partial folder."""
        os.close(self._fd)
        self._fd = None
        os.replace(finished_file, self.path)
        _fsync_dir(os.path.dirname(self.path))
        self._finished = True
        self._partial.remove_quietly()

    def _read_written_rows(self, rows, out):
        """``out[i] = features[rows[i]]`` of rows already written (the lock held)."""
        offsets = _row_offsets(np.asarray(rows, dtype=np.int64), self._firsts, self._offsets,
                               self._row_nbytes)
        _read_rows_at(self._fd, offsets, np.arange(len(rows)), out, self._row_nbytes,
                      self._store_dtype)
        return out

    def finalize_subset(self, rows, metadata=None):
        """Publish a store of only some rows at :attr:`path` (e.g. the readable images).

        The rows are copied, in order, into a new store file assembled in
        :attr:`partial_dir`, which then replaces :attr:`path` atomically. It
        records what it was cut from, so that a writer created again with
        the same arguments finds it finished (a rerun is a no-op; with
        ``overwrite=True`` it starts again, the left-out rows included).
        Killed during the copy, a rerun resumes it.

        Parameters
        ----------
        rows : array-like of int
            The rows to keep (sorted and deduplicated); each must be written.
        metadata : dict, default=None
            Added to the store's metadata (e.g. which rows were left out, and why).

        Returns
        -------
        store : FeatureStore
            The finished store, open for reading.
        """
        return finalize_subset(self, rows, metadata)

    def close(self):
        """Release the file handle (the progress stays on disk)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self):
        return (f"StoreWriter({self.path!r}, n_rows={self.n_rows}, n_features={self.n_features}, "
                f"done={int(self._done.sum())})")
