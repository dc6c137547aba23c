"""A ``dask.array`` as a chunk source, its row blocks computed one at a time.

dask is imported by the methods that need it, never by this module:
``import skbottleneck.chunks`` does not import dask.
"""

import math
import sys
from collections import deque
from itertools import tee

import numpy as np

from ..utils import is_dask_array
from ._protocol import RowSourceMixin, check_rows

__all__ = ["DaskChunks", "default_client"]


def default_client():
    """The default ``dask.distributed`` client, or None (none made, or the package unused).

    Never imports ``distributed`` itself: a client exists only once it is imported.
    """
    if "distributed" not in sys.modules:
        return None
    import distributed

    try:
        return distributed.default_client()
    except ValueError:
        return None


class DaskChunks(RowSourceMixin):
    """A ``dask.array`` as a chunk source for the out-of-core heads.

    :class:`~skbottleneck.IncrementalClassifier` and
    :class:`~skbottleneck.KerasMLPClassifier` read it like a
    :class:`~skbottleneck.FeatureStore`: each epoch computes the row blocks
    of ``X`` one at a time, in a shuffled order (on the cluster when a
    ``dask.distributed`` client exists, the next ``prefetch`` blocks while
    the head learns the current one), deals their rows into chunks of
    ``chunk_size`` rows and shuffles each chunk
    (:func:`~skbottleneck.chunks.iter_chunk_positions` over the dask
    blocks). Memory holds a few blocks, never the whole array.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Features; row blocks of a few thousand rows suit best. Column
        blocks are merged (``rechunk({1: -1})``).
    y : array-like or dask array of shape (n_samples,), default=None
        Labels, computed once (they are small) and kept in memory.
    client : dask.distributed.Client, default=None
        Where to compute the blocks; None: the default client if one
        exists, else dask's local scheduler.
    prefetch : int, default=1
        Blocks computed ahead of the one being read (with a client).

    Attributes
    ----------
    shape : tuple of int
    n_features : int
    dtype : numpy.dtype
    labels : ndarray or None

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from skbottleneck import IncrementalClassifier
    >>> from skbottleneck.chunks import DaskChunks
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(2, size=400)
    >>> X = da.from_array(rng.normal(size=(400, 5)) + y[:, None], chunks=(100, 5))
    >>> clf = IncrementalClassifier(random_state=0).fit(DaskChunks(X, y))
    >>> clf.score(X.compute(), y) > 0.8
    True
    """

    def __init__(self, X, y=None, *, client=None, prefetch=1):
        if not is_dask_array(X):
            raise TypeError(f"DaskChunks expects a dask.array; got {type(X).__name__}.")
        if X.ndim != 2:
            raise ValueError(f"DaskChunks expects a 2-D dask array; got shape {X.shape}.")
        if any(math.isnan(c) for c in X.chunks[0]):
            raise ValueError(
                "The row blocks of X have unknown sizes; call X.compute_chunk_sizes() first."
            )
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        if y is not None and len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels.")
        self.X = X
        self.y = y
        self.client = client
        self.prefetch = int(prefetch)
        self._labels = None
        self._bounds = np.cumsum((0,) + tuple(X.chunks[0]))

    def __len__(self):
        return int(self.X.shape[0])

    @property
    def n_features(self):
        return int(self.X.shape[1])

    @property
    def dtype(self):
        return self.X.dtype

    @property
    def labels(self):
        """The labels as a numpy array (computed on first access), or None."""
        if self.y is None:
            return None
        if self._labels is None:
            y = self.y.compute() if hasattr(self.y, "compute") else self.y
            self._labels = np.asarray(y).ravel()
        return self._labels

    def _blocks(self, order):
        """Yield ``(block_number, ndarray)`` in ``order``, prefetching."""
        client = self.client if self.client is not None else default_client()
        if client is None:
            for b in order:
                yield b, np.asarray(self.X.blocks[int(b)].compute())
            return
        pending = deque()
        for b in order:
            pending.append((b, client.compute(self.X.blocks[int(b)])))
            if len(pending) > self.prefetch:
                b0, fut = pending.popleft()
                yield b0, np.asarray(fut.result())
        while pending:
            b0, fut = pending.popleft()
            yield b0, np.asarray(fut.result())

    def _block_of(self, positions):
        """The block number of each row position."""
        return np.searchsorted(self._bounds, positions, side="right") - 1

    def _block_order(self, chunks):
        """Block numbers in the order the chunks need them, each once."""
        seen = set()
        for positions in chunks:
            for b in np.unique(self._block_of(positions)).tolist():
                if b not in seen:
                    seen.add(b)
                    yield b

    def row_blocks(self):
        """The dask row blocks' boundaries: the blocks the one chunk iterator shuffles."""
        return self._bounds

    def read_chunks(self, chunks, *, dtype=None):
        """Yield ``(X, y)`` for each array of row positions in ``chunks``.

        Each dask block is computed once (the next ``prefetch`` ahead with a
        client) and kept only until all of its rows were dealt.
        """
        labels = self.labels
        out_dtype = self.dtype if dtype is None else np.dtype(dtype)
        chunks, ahead = tee(chunks)
        blocks = self._blocks(self._block_order(ahead))
        held, left = {}, {}  # block number -> its rows; rows not yet dealt
        for positions in chunks:
            which = self._block_of(positions)
            needed = np.unique(which).tolist()
            while not all(b in held for b in needed):
                b, block = next(blocks)
                held[b] = block
                left[b] = block.shape[0]
            X = np.empty((len(positions), self.n_features), dtype=out_dtype)
            for b in needed:
                mask = which == b
                X[mask] = held[b][positions[mask] - self._bounds[b]]
                left[b] -= int(mask.sum())
                if not left[b]:
                    del held[b], left[b]
            yield X, (None if labels is None else labels[positions])

    def read_rows(self, indices, *, dtype=None):
        """Features and labels of arbitrary rows (any order).

        Parameters
        ----------
        indices : array-like of int
        dtype : dtype, default=None

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        idx = check_rows(indices, len(self))
        order = np.argsort(idx, kind="stable")
        X = np.empty((len(idx), self.n_features), dtype=self.dtype if dtype is None else dtype)
        if len(idx):
            X[order] = np.asarray(self.X[idx[order]].compute())
        labels = self.labels
        return X, (None if labels is None else labels[idx])

    def __repr__(self):
        return (f"DaskChunks(n_rows={len(self)}, n_features={self.n_features}, "
                f"n_blocks={len(self._bounds) - 1})")
