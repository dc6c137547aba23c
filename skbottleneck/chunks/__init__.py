"""Chunk sources: how training data reaches the out-of-core heads, chunk by chunk.

:func:`as_chunk_source` wraps arrays (:class:`ArrayChunks`), a
:class:`~skbottleneck.FeatureStore` (:class:`StoreChunks`), a ``dask.array``
(:class:`DaskChunks`) or an iterable of chunks (:class:`IterableChunks`) as
one :class:`ChunkSource`; rows read from disk are shuffled in blocks by
:func:`iter_chunk_positions`, the one block shuffle of the package; chunks
are sized in rows or in bytes by :func:`chunk_rows`.
"""

from ._blocks import BLOCK_BYTES, block_bounds, default_block_rows, iter_chunk_positions
from ._dask import DaskChunks, default_client
from ._sizing import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS, chunk_rows, parse_bytes, row_nbytes_of
from ._sources import (
    ArrayChunks,
    ChunkSource,
    IterableChunks,
    StoreChunks,
    as_chunk_source,
    is_chunk_source,
)

__all__ = [
    "BLOCK_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CHUNK_ROWS",
    "ArrayChunks",
    "ChunkSource",
    "DaskChunks",
    "IterableChunks",
    "StoreChunks",
    "as_chunk_source",
    "block_bounds",
    "chunk_rows",
    "default_block_rows",
    "default_client",
    "is_chunk_source",
    "iter_chunk_positions",
    "parse_bytes",
    "row_nbytes_of",
]
