"""The one block shuffle: how every chunk source orders its rows.

Rows on disk are read fastest in runs of neighbours, and a head learns
best from chunks that mix rows from all over the data set (a store sorted
by class must still give mixed chunks). Both hold when the rows are cut
into small *blocks* of neighbouring rows (:data:`BLOCK_BYTES` each, sized
from the real bytes per row), the blocks are taken in a random order and
dealt into chunks, and the rows of each chunk are permuted.

:func:`iter_chunk_positions` is that shuffle, for any blocks (fixed-size
blocks of a store, or the blocks a ``dask.array`` comes in); the store,
the store subsets, the heads' chunk sources and Dask all use it.
"""

import operator

import numpy as np

__all__ = ["BLOCK_BYTES", "block_bounds", "default_block_rows", "iter_chunk_positions"]

#: Bytes of neighbouring rows read together when shuffling.
BLOCK_BYTES = 128 * 1024
#: A chunk mixes at least this many blocks (when it has that many rows).
MIN_BLOCKS_PER_CHUNK = 16


def default_block_rows(row_nbytes, chunk_size):
    """Rows per block: :data:`BLOCK_BYTES` worth of rows, at most ``chunk_size // 16``.

    Parameters
    ----------
    row_nbytes : int
        Bytes of one row as stored (``n_features * dtype.itemsize``).
    chunk_size : int
        Rows per chunk.

    Examples
    --------
    >>> default_block_rows(2048 * 4, 1024)   # 2,048 float32 features: 16 rows = 128 KiB
    16
    >>> default_block_rows(100_352 * 2, 1024)  # wider than a block: one row per block
    1
    """
    rows = min(BLOCK_BYTES // max(1, int(row_nbytes)), int(chunk_size) // MIN_BLOCKS_PER_CHUNK)
    return max(1, min(rows, int(chunk_size)))


def block_bounds(n_rows, block_rows):
    """Boundaries ``[0, b, 2b, ..., n_rows]`` of blocks of ``block_rows`` rows.

    Examples
    --------
    >>> block_bounds(10, 4).tolist()
    [0, 4, 8, 10]
    """
    block_rows = max(1, operator.index(block_rows))
    return np.append(np.arange(0, n_rows, block_rows, dtype=np.int64), np.int64(n_rows))


def iter_chunk_positions(bounds, chunk_size, *, shuffle=True, rng=None):
    """Yield the positions of each chunk: every position in ``[0, bounds[-1])`` once.

    Parameters
    ----------
    bounds : array-like of int
        Block boundaries, increasing, from 0 (block ``b`` is positions
        ``bounds[b]:bounds[b + 1]``); see :func:`block_bounds`.
    chunk_size : int
        Positions per chunk (the last chunk may have fewer).
    shuffle : bool, default=True
        Blocks in a random order, dealt into chunks, positions permuted
        within each chunk. ``False``: positions in order.
    rng : numpy.random.RandomState
        Draws the shuffle (needed when ``shuffle=True``).

    Yields
    ------
    positions : ndarray of int64

    Examples
    --------
    >>> import numpy as np
    >>> chunks = list(iter_chunk_positions(block_bounds(10, 2), 4, rng=np.random.RandomState(0)))
    >>> [len(c) for c in chunks], sorted(np.concatenate(chunks).tolist()) == list(range(10))
    ([4, 4, 2], True)
    """
    chunk_size = operator.index(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
    bounds = np.asarray(bounds, dtype=np.int64)
    n = int(bounds[-1]) if len(bounds) else 0
    if not shuffle:
        for lo in range(0, n, chunk_size):
            yield np.arange(lo, min(n, lo + chunk_size), dtype=np.int64)
        return
    pieces, count = [], 0
    for b in rng.permutation(len(bounds) - 1):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        while lo < hi:
            take = min(hi - lo, chunk_size - count)
            pieces.append(np.arange(lo, lo + take, dtype=np.int64))
            count += take
            lo += take
            if count == chunk_size:
                rows = np.concatenate(pieces)
                yield rows[rng.permutation(len(rows))]
                pieces, count = [], 0
    if pieces:
        rows = np.concatenate(pieces)
        yield rows[rng.permutation(len(rows))]
