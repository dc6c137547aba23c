"""Feature files as row sources: Parquet, NumPy ``.npy`` and CSV.

Features made elsewhere (or exported by :meth:`FeatureStore.to_parquet`
/ :meth:`FeatureStore.to_numpy`) are read in chunks through the row
protocol, with the same block shuffle and bounded memory as a store:

- :class:`ParquetRows`: a ``FixedSizeList<float>`` vector column (default
  ``features``) and optional ``label``/``key``/``path`` columns, read one
  row group at a time;
- :class:`NumpyRows`: a 2-D ``.npy`` memory-mapped, its labels from an
  argument or a sibling ``<name>.labels.npy``;
- :class:`CsvRows`: one row per line, the label first then the features
  (the layout seed 004 wrote), read a run of lines at a time.

pyarrow is imported by the Parquet reader only.
"""

import os

import numpy as np

from ._protocol import ArrayRows, BlockRowsMixin

__all__ = [
    "FEATURE_FILE_SUFFIXES",
    "STORE_SUFFIXES",
    "CsvRows",
    "FeatureFileError",
    "NumpyRows",
    "ParquetRows",
    "is_rows_path",
    "labels_path_of",
    "open_feature_file",
]

#: Suffixes of the feature files :func:`open_feature_file` reads.
FEATURE_FILE_SUFFIXES = (".parquet", ".pq", ".npy", ".csv")
#: Suffixes of a feature store (HDF5, opened by :func:`skbottleneck.store.open_rows`).
STORE_SUFFIXES = (".h5", ".hdf5")


def is_rows_path(X):
    """Tell whether ``X`` names a feature store or a feature file (by its suffix).

    Examples
    --------
    >>> is_rows_path("features.parquet"), is_rows_path("cat.jpg"), is_rows_path(["a.h5"])
    (True, False, False)
    """
    if not isinstance(X, (str, os.PathLike)):
        return False
    suffix = os.path.splitext(os.fspath(X))[1].lower()
    return suffix in STORE_SUFFIXES + FEATURE_FILE_SUFFIXES


class FeatureFileError(ValueError):
    """A feature file that cannot be read as rows of features (names the file, column, row)."""


class _FeatureFile:
    """``close()`` (and ``with``) for a feature file; it is also closed when collected."""

    def close(self):
        """Let go of the file (a Parquet reader, a memory map)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ParquetRows(_FeatureFile, BlockRowsMixin):
    """A Parquet file of feature vectors as a row source.

    Parameters
    ----------
    path : str or path-like
    vector_column : str, default="features"
        A ``FixedSizeList`` of float16, float32 or float64.
    label_column, key_column, path_column : str, default="label", "key", "path"
        Read when present (labels, content keys, image paths).

    Attributes
    ----------
    path : str
    n_features : int
    dtype : numpy.dtype
        Of the vector values as stored.
    labels, keys, paths : ndarray or None

    Examples
    --------
    >>> import numpy as np, pyarrow as pa, pyarrow.parquet as pq
    >>> vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 2)
    >>> pq.write_table(pa.table({"features": vectors, "label": ["a", "b", "a"]}),
    ...                tmp_dir / "f.parquet")
    >>> rows = ParquetRows(tmp_dir / "f.parquet")
    >>> rows.shape, rows.read_rows([2])[0].tolist(), rows.labels.tolist()
    ((3, 2), [[4.0, 5.0]], ['a', 'b', 'a'])
    """

    def __init__(self, path, *, vector_column="features", label_column="label",
                 key_column="key", path_column="path"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = os.fspath(path)
        self.vector_column = vector_column
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as e:
            raise FeatureFileError(f"{self.path} is not a readable Parquet file ({e}).") from e
        schema = self._file.schema_arrow
        names = schema.names
        if vector_column not in names:
            raise FeatureFileError(
                f"{self.path} has no vector column {vector_column!r}: expected a "
                f"FixedSizeList<float32> column of features; its columns are {names}. "
                "Pass vector_column= to name it.")
        field = schema.field(vector_column)
        if not pa.types.is_fixed_size_list(field.type) or not pa.types.is_floating(
                field.type.value_type):
            raise FeatureFileError(
                f"Column {vector_column!r} of {self.path} is {field.type}; expected a "
                "fixed-size list of floats (FixedSizeList<float32>).")
        self.n_features = int(field.type.list_size)
        self.dtype = np.dtype(field.type.value_type.to_pandas_dtype())
        meta = self._file.metadata
        self._bounds = np.cumsum([0] + [meta.row_group(i).num_rows
                                        for i in range(meta.num_row_groups)]).astype(np.int64)
        self.labels = self._column(label_column, names)
        self.keys = self._column(key_column, names)
        self.paths = self._column(path_column, names)

    def _column(self, name, names):
        if name is None or name not in names:
            return None
        column = self._file.read(columns=[name]).column(0)
        if column.null_count == len(column) and len(column):  # written without them
            return None
        return column.to_numpy(zero_copy_only=False)

    def close(self):
        """Close the Parquet reader."""
        self._file.close()

    def __len__(self):
        return int(self._bounds[-1])

    def row_blocks(self):
        """Row-group boundaries: a row group is read whole, once per pass."""
        return self._bounds

    def read_block(self, b):
        """The vectors of row group ``b`` as an ndarray (n_rows, n_features)."""
        column = self._file.read_row_group(int(b), columns=[self.vector_column]).column(0)
        if column.null_count:
            row = int(self._bounds[b]) + int(np.flatnonzero(
                column.is_null().to_numpy(zero_copy_only=False))[0])
            raise FeatureFileError(f"Row {row} of {self.path} has no vector (null) in column "
                                   f"{self.vector_column!r}.")
        values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return values.reshape(-1, self.n_features)

    def __repr__(self):
        return f"ParquetRows({self.path!r}, n_rows={len(self)}, n_features={self.n_features})"


def labels_path_of(path):
    """The sibling file of a ``.npy`` that holds its labels: ``features.npy`` -> ``features.labels.npy``."""
    root, _ = os.path.splitext(os.fspath(path))
    return root + ".labels.npy"


class NumpyRows(_FeatureFile, ArrayRows):
    """A 2-D ``.npy`` file, memory-mapped, as a row source.

    Parameters
    ----------
    path : str or path-like
    labels : array-like or "auto", default="auto"
        One per row; ``"auto"``: read from the sibling ``<name>.labels.npy``
        when there is one, else none.

    Examples
    --------
    >>> import numpy as np
    >>> np.save(tmp_dir / "f.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    >>> rows = NumpyRows(tmp_dir / "f.npy", labels=[0, 1, 0])
    >>> rows.shape, rows.read_rows([1])
    ((3, 2), (array([[2., 3.]], dtype=float32), array([1])))
    """

    def __init__(self, path, labels="auto"):
        self.path = os.fspath(path)
        try:
            X = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FeatureFileError(f"{self.path} is not a readable .npy file ({e}).") from e
        if X.ndim != 2 or X.dtype.kind not in "fiu":
            raise FeatureFileError(f"{self.path} holds a {X.dtype} array of shape {X.shape}; "
                                   "expected a 2-D array of numbers (rows of features).")
        if isinstance(labels, str) and labels == "auto":
            sibling = labels_path_of(self.path)
            labels = np.load(sibling, allow_pickle=False) if os.path.exists(sibling) else None
        super().__init__(X, labels)
        self.paths = None

    def __repr__(self):
        return f"NumpyRows({self.path!r}, n_rows={len(self)}, n_features={self.n_features})"


class CsvRows(_FeatureFile, BlockRowsMixin):
    """A CSV of features, one row per line, the label first (seed 004's layout).

    Opening reads the file once, a line at a time, for the labels and
    where each run of ``block_rows`` lines starts; rows are then parsed a
    run at a time (memory: one run of lines). A header line is recognised
    (its feature cells are not numbers) and skipped.

    Parameters
    ----------
    path : str or path-like
    label_column : int or None, default=0
        Position of the label; None: every column is a feature.
    block_rows : int, default=64
        Lines parsed together.
    dtype : dtype, default=numpy.float32

    Examples
    --------
    >>> _ = (tmp_dir / "f.csv").write_text("cat,1,2\\ndog,3,4\\ncat,5,6\\n")
    >>> rows = CsvRows(tmp_dir / "f.csv")
    >>> rows.shape, rows.labels.tolist(), rows.read_rows([1])[0].tolist()
    ((3, 2), ['cat', 'dog', 'cat'], [[3.0, 4.0]])
    """

    def __init__(self, path, *, label_column=0, block_rows=64, dtype=np.float32):
        self.path = os.fspath(path)
        self.label_column = label_column
        self.dtype = np.dtype(dtype)
        self.paths = None
        offsets, labels, n_features, self._header = [], [], None, 0
        with open(self.path, "rb") as f:
            offset = 0
            for number, line in enumerate(f):
                start, offset = offset, offset + len(line)
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                n_cells = line.count(b",") + 1  # counted, not split: lines of 100,352 cells
                if number == 0 and not _is_number(_cell(line, 1 if label_column == 0 else 0)):
                    self._header = 1
                    continue
                if n_features is None:
                    n_features = n_cells - (label_column is not None)
                if n_cells - (label_column is not None) != n_features:
                    raise FeatureFileError(
                        f"Line {number + 1} of {self.path} has {n_cells} cells; the first "
                        f"row has {n_features + (label_column is not None)}.")
                if len(labels) % block_rows == 0:
                    offsets.append(start)
                labels.append(None if label_column is None else
                              _cell(line, label_column).decode("utf-8", "surrogateescape"))
            offsets.append(offset)
        if n_features is None:
            raise FeatureFileError(f"{self.path} holds no rows of features.")
        self.n_features = n_features
        self._offsets = np.asarray(offsets, dtype=np.int64)
        n = len(labels)
        self._bounds = np.append(np.arange(0, n, block_rows, dtype=np.int64), np.int64(n))
        self.labels = None if label_column is None else _as_label_array(labels)

    def __len__(self):
        return int(self._bounds[-1])

    def row_blocks(self):
        """Runs of ``block_rows`` lines: each parsed once per pass."""
        return self._bounds

    def read_block(self, b):
        """The features of run ``b`` of lines as an ndarray (n_rows, n_features)."""
        with open(self.path, "rb") as f:
            f.seek(self._offsets[b])
            data = f.read(int(self._offsets[b + 1] - self._offsets[b]))
        out = np.empty((int(self._bounds[b + 1] - self._bounds[b]), self.n_features), self.dtype)
        lines = [line for line in data.splitlines() if line.strip()]
        for i, line in enumerate(lines):
            cells = line.split(b",")
            if self.label_column is not None:
                del cells[self.label_column]
            try:
                out[i] = np.array(cells, dtype=self.dtype)
            except ValueError:
                original = line.split(b",")
                column = next(j for j, c in enumerate(original)
                              if j != self.label_column and not _is_number(c))
                row = int(self._bounds[b]) + i
                raise FeatureFileError(
                    f"{self.path}, row {row} (line {row + 1 + self._header}), column {column}: "
                    f"{original[column].decode(errors='replace')!r} is not a number.") from None
        return out

    def __repr__(self):
        return f"CsvRows({self.path!r}, n_rows={len(self)}, n_features={self.n_features})"


def _cell(line, column):
    """Cell ``column`` of a CSV line (bytes), splitting no further than needed."""
    cells = line.split(b",", column + 1)
    return cells[column] if column < len(cells) else b""


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _as_label_array(labels):
    """Labels as ints or floats when they all are numbers, else as str."""
    for kind in (int, float):
        try:
            return np.asarray([kind(v) for v in labels])
        except ValueError:
            pass
    return np.asarray(labels, dtype=str)


def open_feature_file(path, **options):
    """A feature file as a row source, chosen by its suffix (``.parquet``/``.pq``, ``.npy``, ``.csv``).

    Parameters
    ----------
    path : str or path-like
    **options
        Passed to :class:`ParquetRows`, :class:`NumpyRows` or :class:`CsvRows`.

    Returns
    -------
    rows : RowSource
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such feature file: {os.fspath(path)}")
    if suffix in (".parquet", ".pq"):
        return ParquetRows(path, **options)
    if suffix == ".npy":
        return NumpyRows(path, **options)
    if suffix == ".csv":
        return CsvRows(path, **options)
    raise ValueError(f"{os.fspath(path)}: not a feature file; expected one of "
                     f"{', '.join(FEATURE_FILE_SUFFIXES)} (or an .h5 feature store).")
