"""Features out: a store (any row source) written to Parquet or ``.npy``, streamed in chunks.

One row per stored row, in store order. Parquet gets the columns
``key`` (the content key, binary), ``path``, ``label`` and ``features``
(``FixedSizeList<float32>``, or ``<float16>`` as stored), one row group
per chunk, so pandas, pyarrow and DuckDB read it as is and
:class:`~skbottleneck.chunks.ParquetRows` reads it back a row group at a
time. ``.npy`` gets the features (memory-mapped while written) and a
sibling ``<name>.labels.npy`` with the labels. Memory holds one chunk
(``chunk_size``: 16 MiB of stored rows for Parquet, whose encoder needs
about 8 times a row group's bytes; 64 MiB for ``.npy``), whatever the width. Each file is
written to a temporary name in its folder, fsynced and renamed: a reader
never sees half a file.
"""

import os

import numpy as np

from ..fileio import atomic_file
from ..chunks import as_row_source, chunk_rows, labels_path_of

__all__ = ["NUMPY_CHUNK", "PARQUET_CHUNK", "export_numpy", "export_parquet"]

#: Rows per Parquet row group: 16 MiB of stored rows. Encoding a row group of a
#: fixed-size list takes about 8 times its bytes (repetition and definition
#: levels, pages): measured +132 / +212 / +585 MiB of peak RSS at 8 / 16 / 64 MiB
#: on 100,352 float16 features (benchmarks/bench_export.py), at the same speed.
PARQUET_CHUNK = "16MiB"
#: Rows copied at a time into a ``.npy`` (a memory map: no encoding).
NUMPY_CHUNK = "64MiB"


def _stored_dtype(rows):
    """float16 stays float16; other floats become float32 (the vector column's type)."""
    return np.dtype(np.float16) if np.dtype(rows.dtype) == np.float16 else np.dtype(np.float32)


def _chunks(rows, chunk_size, dtype):
    size = chunk_rows(chunk_size, rows.n_features * dtype.itemsize)
    start = 0
    for X, y in rows.iter_chunks(size, shuffle=False, dtype=dtype):
        yield start, X, y
        start += len(X)


def _column(values, type=None):
    """An Arrow array of labels or paths (strings through a Python list)."""
    import pyarrow as pa

    values = np.asarray(values)
    if values.dtype.kind in "USO":
        return pa.array(values.tolist(), type or pa.string())
    return pa.array(values, type)


def _vectors(X, dtype, n_features):
    """The rows of ``X`` as a FixedSizeList array over the same memory (no copy)."""
    import pyarrow as pa

    X = np.ascontiguousarray(X, dtype=dtype)
    values = pa.Array.from_buffers(pa.from_numpy_dtype(dtype), X.size, [None, pa.py_buffer(X)])
    return pa.FixedSizeListArray.from_arrays(values, n_features)


def _key_array(keys, start, stop):
    import pyarrow as pa

    if keys is None:
        return pa.nulls(stop - start, pa.binary())
    return pa.array([bytes(k) for k in keys[start:stop]], pa.binary())


def export_parquet(rows, path, *, chunk_size=PARQUET_CHUNK, compression="snappy"):
    """Write a row source (a store) to a Parquet file, a chunk at a time.

    Parameters
    ----------
    rows : RowSource
        A :class:`FeatureStore` or any row source.
    path : str or path-like
        The Parquet file (replaced atomically if it exists).
    chunk_size : int or str, default="16MiB"
        Rows per row group (a count, or bytes of stored rows); see
        :data:`PARQUET_CHUNK`.
    compression : str, default="snappy"
        Parquet compression (``"none"``, ``"zstd"``...).

    Returns
    -------
    path : str
        The absolute path written.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rows = as_row_source(np.arange(6, dtype=np.float32).reshape(3, 2), ["a", "b", "a"])
    >>> path = export_parquet(rows, tmp_dir / "f.parquet")
    >>> df = pd.read_parquet(path)
    >>> df.columns.tolist(), df["label"].tolist(), df["features"][2].tolist()
    (['key', 'path', 'label', 'features'], ['a', 'b', 'a'], [4.0, 5.0])
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = as_row_source(rows)
    dtype = _stored_dtype(rows)
    keys = getattr(rows, "keys", None)
    paths = getattr(rows, "paths", None)
    labels = rows.labels
    label_type = None
    if labels is not None:
        label_type = _column(np.asarray(labels)[:1]).type if len(labels) else pa.string()
    schema = pa.schema([
        ("key", pa.binary()),
        ("path", pa.string()),
        ("label", label_type or pa.null()),
        ("features", pa.list_(pa.from_numpy_dtype(dtype), rows.n_features)),
    ])
    path = os.path.abspath(os.fspath(path))
    with atomic_file(path) as tmp:
        # dictionaries and min/max statistics only for the small columns: on 100,352
        # floats a row they cost more time than the write itself
        with pq.ParquetWriter(tmp, schema, compression=compression,
                              use_dictionary=["path", "label"],
                              write_statistics=["key", "path", "label"]) as writer:
            for start, X, y in _chunks(rows, chunk_size, dtype):
                stop = start + len(X)
                columns = [
                    _key_array(keys, start, stop),
                    pa.nulls(len(X), pa.string()) if paths is None
                    else _column(np.asarray(paths[start:stop], dtype=str)),
                    pa.nulls(len(X)) if y is None else _column(y, label_type),
                    _vectors(X, dtype, rows.n_features),
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema),
                                   row_group_size=len(X))
            if len(rows) == 0:
                writer.write_table(schema.empty_table())
    return path


def export_numpy(rows, path, *, chunk_size=NUMPY_CHUNK):
    """Write a row source's features to a ``.npy`` file (and its labels beside it).

    The features go to ``path`` in their stored dtype (float16 or float32),
    a chunk at a time; the labels, when
    there are any, to ``<name>.labels.npy``
    (:func:`~skbottleneck.chunks.labels_path_of`), where
    :class:`~skbottleneck.chunks.NumpyRows` finds them.

    Parameters
    ----------
    rows : RowSource
    path : str or path-like
    chunk_size : int or str, default="64MiB"

    Returns
    -------
    path : str

    Examples
    --------
    >>> import numpy as np
    >>> rows = as_row_source(np.ones((3, 2), np.float32), [1, 2, 3])
    >>> path = export_numpy(rows, tmp_dir / "f.npy")
    >>> np.load(path).shape, np.load(tmp_dir / "f.labels.npy").tolist()
    ((3, 2), [1, 2, 3])
    """
    rows = as_row_source(rows)
    dtype = _stored_dtype(rows)
    path = os.path.abspath(os.fspath(path))
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:  # plain writes: a memory map's pages would count as ours
            np.lib.format.write_array_header_1_0(f, {
                "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                "shape": (len(rows), rows.n_features)})
            for _, X, _ in _chunks(rows, chunk_size, dtype):
                f.write(np.ascontiguousarray(X, dtype=dtype).data)
    labels = rows.labels
    if labels is not None:
        labels = np.asarray(labels)
        if labels.dtype == object:
            labels = labels.astype(str)
        with atomic_file(labels_path_of(path)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, labels, allow_pickle=False)
    return path
