"""Reading a finished dataset store: :class:`FeatureStore`.

Rows are read with ``preadv`` at their byte offsets when the layout allows
(uncompressed, allocated), sorted, neighbours in one system call; through
h5py otherwise. :meth:`FeatureStore.iter_chunks` deals the rows in the
block shuffle of :mod:`skbottleneck.chunks._blocks`.
"""

import errno
import json
import operator
import os

import numpy as np

from ..chunks import RowSourceMixin, check_rows, iter_row_chunks
from ..fileio import (
    UnsupportedFormatError,
    output_dtype,
    python_attr,
    raw_layout,
    read_rows_at,
    read_rows_h5,
    row_offsets,
)
from ._format import STORE_FORMAT_VERSION, STORE_SCHEMA

__all__ = ["FeatureStore"]


#: Row numbers of an index array or boolean mask (the row protocol's check).
check_indices = check_rows


def _read_attrs(f):
    return {k: python_attr(v) for k, v in f.attrs.items()}


def _read_strings(ds):
    """A dataset of UTF-8 strings as an ndarray of str (undecodable bytes kept)."""
    values = ds.asstr(errors="surrogateescape")[()] if len(ds) else []
    return np.asarray(list(values), dtype=str)


def _read_labels(f):
    ds = f.get("labels")
    if ds is None:
        return None
    return _read_strings(ds) if python_attr(ds.attrs.get("kind")) == "str" else ds[()]


def _read_keys(f):
    ds = f.get("keys")
    if ds is None:
        return None
    arr = ds[()]
    return arr.view(f"V{arr.shape[1]}").ravel().tolist() if arr.shape[1] else [b""] * len(arr)


class ClosingMixin:
    """``with`` closes the object (its ``close()``), and so does garbage collection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown, or a failed __init__
            pass


class FeatureStore(RowSourceMixin, ClosingMixin):
    """A finished feature store, open for reading (read-only).

    Serves features larger than memory: :meth:`iter_chunks` for
    out-of-core training, :meth:`read_rows` / indexing for
    cross-validation. Picklable (only the path travels; the file is
    reopened), so it can be handed to joblib workers.

    Parameters
    ----------
    path : str or path-like
        A file written by :class:`StoreWriter`.

    Raises
    ------
    FileNotFoundError
        No such file.
    UnsupportedFormatError
        Not an HDF5 file, not a skbottleneck store, or another format version.

    Attributes
    ----------
    path : str
    n_features : int
    dtype : numpy.dtype
        Storage dtype. Arrays are returned as float32 for float16 storage,
        else in the storage dtype, unless a ``dtype`` is asked for.
    shape : tuple of int
        ``(n_rows, n_features)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.store import StoreWriter, FeatureStore
    >>> w = StoreWriter(tmp_dir / "f.h5", paths=[f"{i}.jpg" for i in range(10)],
    ...                 labels=np.arange(10) % 2, n_features=3)
    >>> w.write_rows(np.arange(10), np.arange(30).reshape(10, 3))
    >>> _ = w.finalize()
    >>> with FeatureStore(tmp_dir / "f.h5") as store:
    ...     print(len(store), store.n_features, store.paths[:2])
    ...     X, y = store.read_rows([3, 1])
    ...     sizes = [len(X) for X, y in store.iter_chunks(4, random_state=0)]
    10 3 ['0.jpg' '1.jpg']
    >>> X
    array([[ 9., 10., 11.],
           [ 3.,  4.,  5.]], dtype=float32)
    >>> sizes
    [4, 4, 2]
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self._file = None
        self._fd = None
        self._open()

    def _open(self):
        import h5py

        if not os.path.exists(self.path):
            raise FileNotFoundError(errno.ENOENT, "No such feature store", self.path)
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise UnsupportedFormatError(
                f"{self.path} is not a readable HDF5 file ({e}); expected a feature store "
                "written by skbottleneck."
            ) from e
        try:
            schema = python_attr(f.attrs.get("schema"))
            version = python_attr(f.attrs.get("format_version"))
            if schema != STORE_SCHEMA:
                raise UnsupportedFormatError(
                    f"{self.path} is not a skbottleneck feature store: its 'schema' attribute "
                    f"is {schema!r}, expected {STORE_SCHEMA!r}."
                )
            if version != STORE_FORMAT_VERSION:
                raise UnsupportedFormatError(
                    f"{self.path} is a feature store of format version {version!r}; this "
                    f"skbottleneck reads version {STORE_FORMAT_VERSION}. Use a matching "
                    "skbottleneck version, or extract the features again."
                )
            ds = f.get("features")
            if ds is None or ds.ndim != 2 or ds.dtype.kind != "f":
                raise UnsupportedFormatError(f"{self.path} has no 2-D float 'features' dataset.")
            self._layout = raw_layout(ds)
        except BaseException:
            f.close()
            raise
        self._file, self._ds = f, ds
        self._n_rows, self.n_features = ds.shape
        self.dtype = ds.dtype.newbyteorder("=")
        self._row_nbytes = self.n_features * ds.dtype.itemsize
        if self._layout is not None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._pid = os.getpid()
        self._cached = {}

    def _check_open(self):
        if self._file is None:
            raise ValueError(f"I/O operation on a closed FeatureStore ({self.path}).")
        if self._pid != os.getpid():  # forked: reopen our own handles
            self._file = None
            self._fd = None
            self._open()

    # -- attributes
    def __len__(self):
        return self._n_rows

    @property
    def metadata(self):
        """Root attributes (format, identity, library versions, caller's metadata).

        Returns
        -------
        metadata : dict
        """
        return dict(self._read_once("metadata", _read_attrs))

    @property
    def skipped_images(self):
        """Images left out of the store, with why: list of ``(path, reason)``.

        Read from the metadata key ``"skipped_images"`` (JSON), which
        :meth:`CNNFeatureTransformer.extract` records when
        ``on_error="skip"`` left images out; ``[]`` when absent.
        """
        value = self.metadata.get("skipped_images")
        if value is None:
            return []
        if isinstance(value, str):
            value = json.loads(value)
        return [tuple(item) for item in value]

    @property
    def n_views(self):
        """Rows per image: the augmented views ``extract(..., augment=...)`` wrote (1 without)."""
        return int(self.metadata.get("n_views", 1))

    @property
    def image_index(self):
        """The image of each row (0, 1, ... in store order; an image's views share it).

        Pass it as ``groups`` to a cross-validation splitter (``GroupKFold``)
        so that the views of one image are never on both sides of a split.
        """
        return np.arange(len(self)) // self.n_views

    @property
    def view_index(self):
        """The view of each row (0: the image itself; all 0 without views)."""
        return np.arange(len(self)) % self.n_views

    @property
    def paths(self):
        """Image paths, one per row (ndarray of str)."""
        return self._read_once("paths", lambda f: _read_strings(f["paths"]))

    @property
    def labels(self):
        """Labels (str or numeric ndarray), or ``None`` when none were stored."""
        return self._read_once("labels", _read_labels)

    @property
    def keys(self):
        """Content keys (list of bytes), or ``None`` when none were stored."""
        return self._read_once("keys", _read_keys)

    def _read_once(self, name, read):
        """``read(h5py_file)``, read on first use and kept."""
        if name not in self._cached:
            self._check_open()
            self._cached[name] = read(self._file)
        return self._cached[name]

    # -- reading
    def _out_dtype(self, dtype):
        return output_dtype(self.dtype) if dtype is None else np.dtype(dtype)

    def _read_into(self, rows, out):
        """``out[i] = features[rows[i]]`` (rows any order, in range)."""
        self._check_open()
        dst = np.arange(len(rows))
        rows = np.asarray(rows, dtype=np.int64)
        if self._layout is not None:
            offsets = row_offsets(rows, self._layout[0], self._layout[1], self._row_nbytes)
            read_rows_at(self._fd, offsets, dst, out, self._row_nbytes,
                          self._ds.dtype.newbyteorder("<"))
        else:
            read_rows_h5(self._ds, rows, dst, out)
        return out

    def read_rows(self, indices, *, dtype=None):
        """Features and labels of arbitrary rows (e.g. a CV split).

        Parameters
        ----------
        indices : array-like of int or bool mask
            Rows, in any order (negative counts from the end).
        dtype : dtype, default=None
            Of the returned features; see :attr:`dtype`.

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        idx = check_indices(indices, self._n_rows)
        X = np.empty((len(idx), self.n_features), dtype=self._out_dtype(dtype))
        self._read_into(idx, X)
        labels = self.labels
        return X, (None if labels is None else labels[idx])

    def __getitem__(self, item):
        """Features of a row (1-D), a slice, an index array or a bool mask."""
        if isinstance(item, tuple):
            if len(item) != 2:
                raise IndexError("a FeatureStore has 2 dimensions.")
            X = self[item[0]]
            return X[..., item[1]]
        if isinstance(item, slice):
            return self.read_rows(np.arange(self._n_rows)[item])[0]
        try:
            i = operator.index(item)
        except TypeError:
            return self.read_rows(item)[0]
        return self.read_rows([i])[0][0]

    def to_numpy(self, path=None, *, dtype=None, chunk_size="64MiB"):
        """All the features in memory, or written to a ``.npy`` file.

        Parameters
        ----------
        path : str or path-like, default=None
            None: return the features. A path: write them there in their
            stored dtype, a chunk at a time (and the labels to
            ``<name>.labels.npy``), atomically; see
            :func:`~skbottleneck.store._export.export_numpy`.
        dtype : dtype, default=None
            Of the returned features (in memory only); see :attr:`dtype`.
        chunk_size : int or str, default="64MiB"
            Rows written at a time (to a file).

        Returns
        -------
        X : ndarray of shape (n_rows, n_features), or the path written (str)
        """
        if path is not None:
            from ._export import export_numpy

            return export_numpy(self, path, chunk_size=chunk_size)
        return self.read_rows(np.arange(self._n_rows), dtype=dtype)[0]

    def to_parquet(self, path, *, chunk_size="16MiB", compression="snappy"):
        """Write the store to a Parquet file, a chunk at a time (bounded memory).

        One row per stored row, in store order, with the columns ``key``
        (content key), ``path``, ``label`` and ``features``
        (``FixedSizeList<float32>``, or ``<float16>`` as stored); one row
        group per chunk; written to a temporary name and renamed.

        Parameters
        ----------
        path : str or path-like
        chunk_size : int or str, default="16MiB"
            Rows per row group (a count, or bytes of stored rows); the
            writer's memory is about 8 times a row group.
        compression : str, default="snappy"

        Returns
        -------
        path : str

        Examples
        --------
        >>> import numpy as np, pyarrow.parquet as pq
        >>> from skbottleneck.store import StoreWriter
        >>> w = StoreWriter(tmp_dir / "s.h5", paths=["a.jpg", "b.jpg"], labels=["cat", "dog"],
        ...                 n_features=3)
        >>> w.write_rows([0, 1], np.ones((2, 3)))
        >>> table = pq.read_table(w.finalize().to_parquet(tmp_dir / "s.parquet"))
        >>> vectors = table["features"].type
        >>> table.column_names, vectors.list_size, str(vectors.value_type)
        (['key', 'path', 'label', 'features'], 3, 'float')
        """
        from ._export import export_parquet

        return export_parquet(self, path, chunk_size=chunk_size, compression=compression)

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None,
                    block_rows=None):
        """Iterate over the features in chunks, each row exactly once.

        With ``shuffle=True`` the rows are cut into blocks of consecutive
        rows (at most 128 KiB each), the blocks are put in a random order
        and dealt into chunks of ``chunk_size`` rows, and the rows of each
        chunk are permuted (the one chunk iterator of the row protocol,
        :func:`~skbottleneck.chunks.iter_row_chunks`):
        every chunk mixes rows from all over the store (a store sorted by
        class still gives mixed chunks), while reads stay sequential
        blocks. Memory holds about one chunk at a time.

        Parameters
        ----------
        chunk_size : int, default=1024
            Rows per chunk (the last one may be smaller).
        shuffle : bool, default=True
            Shuffle as above; ``False`` yields the rows in order.
        random_state : int, RandomState instance or None, default=None
            Seed of the shuffle (:func:`sklearn.utils.check_random_state`):
            an int gives the same chunks every time.
        dtype : dtype, default=None
            Of the yielded features; see :attr:`dtype`.
        block_rows : int, default=None
            Rows per block. Default: 128 KiB worth of stored rows, at most
            ``chunk_size // 16`` (so a chunk mixes 16 or more blocks).

        Yields
        ------
        X : ndarray of shape (n_chunk, n_features)
        y : ndarray of shape (n_chunk,) or None
        """
        return iter_row_chunks(self, chunk_size, shuffle=shuffle, random_state=random_state,
                               dtype=dtype, block_rows=block_rows)

    # -- life cycle
    def close(self):
        """Close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __repr__(self):
        state = "" if self._file is not None else ", closed"
        return (f"FeatureStore({self.path!r}, n_rows={self._n_rows}, n_features={self.n_features}, "
                f"dtype={self.dtype.name}{state})")
