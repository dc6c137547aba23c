"""Row sources and chunk sources: how training data reaches the out-of-core heads.

:class:`RowSource` is the row protocol ("rows with labels that can be read
in chunks"), implemented by the store, :class:`DaskChunks`, arrays
(:class:`ArrayRows`) and feature files; :func:`is_row_source` tells one,
:func:`iter_row_chunks` is the one chunk iterator over any of them.

:func:`as_chunk_source` wraps arrays (:class:`ArrayChunks`), a
:class:`~skbottleneck.FeatureStore` (:class:`StoreChunks`), a ``dask.array``
(:class:`DaskChunks`) or an iterable of chunks (:class:`IterableChunks`) as
one :class:`ChunkSource`; rows read from disk are shuffled in blocks by
:func:`iter_chunk_positions`, the one block shuffle of the package; chunks
are sized in rows or in bytes by :func:`chunk_rows`.
"""

from ._blocks import BLOCK_BYTES, block_bounds, default_block_rows, iter_chunk_positions
from ._dask import DaskChunks, default_client
from ._feature_files import (
    FEATURE_FILE_SUFFIXES,
    STORE_SUFFIXES,
    CsvRows,
    FeatureFileError,
    NumpyRows,
    ParquetRows,
    is_rows_path,
    labels_path_of,
    open_feature_file,
)
from ._protocol import (
    ArrayRows,
    BlockRowsMixin,
    RowSource,
    RowSourceMixin,
    RowSubset,
    check_finite_rows,
    check_rows,
    check_storable,
    is_row_source,
    iter_row_chunks,
    nonfinite_message,
    nonfinite_rows,
    reading_dtype,
)
from ._sizing import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS, chunk_rows, parse_bytes, row_nbytes_of
from ._sources import (
    ArrayChunks,
    ChunkSource,
    IterableChunks,
    StoreChunks,
    as_chunk_source,
    as_row_source,
    is_chunk_source,
)

__all__ = [
    "BLOCK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CHUNK_ROWS",
    "FEATURE_FILE_SUFFIXES",
    "STORE_SUFFIXES",
    "ArrayChunks",
    "ArrayRows",
    "BlockRowsMixin",
    "ChunkSource",
    "CsvRows",
    "DaskChunks",
    "FeatureFileError",
    "IterableChunks",
    "NumpyRows",
    "ParquetRows",
    "RowSource",
    "RowSourceMixin",
    "RowSubset",
    "StoreChunks",
    "as_chunk_source",
    "as_row_source",
    "block_bounds",
    "check_finite_rows",
    "check_storable",
    "check_rows",
    "chunk_rows",
    "default_block_rows",
    "default_client",
    "is_chunk_source",
    "is_row_source",
    "is_rows_path",
    "iter_chunk_positions",
    "iter_row_chunks",
    "labels_path_of",
    "nonfinite_message",
    "nonfinite_rows",
    "open_feature_file",
    "parse_bytes",
    "reading_dtype",
    "row_nbytes_of",
]
