"""Some rows of a feature store, seen as a store: :class:`StoreSubset`."""

import numpy as np

from ._reader import check_indices, iter_chunk_rows

__all__ = ["StoreSubset"]


class StoreSubset:
    """Some rows of a :class:`FeatureStore`, seen as a store.

    Has the interface the heads read (``len``, ``n_features``, ``labels``,
    ``read_rows``, ``iter_chunks``), so a head trains out of core on the
    training rows of a split only: the other rows are never read.

    Parameters
    ----------
    store : FeatureStore
        The whole store (or anything with its interface and a ``dtype``).
    rows : array-like of int
        Rows of ``store`` in the subset, in any order; kept sorted, each
        once (position ``i`` of the subset is its ``i``-th smallest row).

    Attributes
    ----------
    store : FeatureStore
    rows : ndarray of int64
        The rows of ``store``, sorted.
    n_features : int
    dtype : numpy.dtype
        Storage dtype of ``store``.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.store import StoreSubset, StoreWriter
    >>> paths = ["cat1.jpg", "dog1.jpg", "cat2.jpg", "dog2.jpg", "cat3.jpg"]
    >>> writer = StoreWriter(tmp_dir / "pets.h5", paths=paths,
    ...                      labels=[p[:3] for p in paths], n_features=2)
    >>> writer.write_rows(range(5), np.arange(10).reshape(5, 2))
    >>> train = StoreSubset(writer.finalize(), [3, 0, 1])
    >>> len(train), train.paths.tolist(), train.labels.tolist()
    (3, ['cat1.jpg', 'dog1.jpg', 'dog2.jpg'], ['cat', 'dog', 'dog'])
    >>> train.read_rows([2, 0])[0]
    array([[6., 7.],
           [0., 1.]], dtype=float32)
    >>> [len(X) for X, y in train.iter_chunks(2, random_state=0)]
    [2, 1]
    """

    #: iter_chunks already permutes the rows of each chunk: readers need not again.
    shuffles_within_chunks = True

    def __init__(self, store, rows):
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        n = len(store)
        if len(rows) and (rows[0] < 0 or rows[-1] >= n):
            raise IndexError(f"rows of a StoreSubset must be in [0, {n}) for a store of {n} "
                             f"rows; got {rows[0]}..{rows[-1]}.")
        self.store = store
        self.rows = rows
        self.n_features = store.n_features
        self.dtype = np.dtype(store.dtype)

    def __len__(self):
        return len(self.rows)

    @property
    def shape(self):
        return (len(self.rows), self.n_features)

    @property
    def path(self):
        """Path of the whole store (``None`` if it has none)."""
        return getattr(self.store, "path", None)

    @property
    def metadata(self):
        """Metadata of the whole store (dict)."""
        return getattr(self.store, "metadata", {})

    @property
    def labels(self):
        """Labels of the subset's rows, or ``None``."""
        labels = self.store.labels
        return None if labels is None else np.asarray(labels)[self.rows]

    @property
    def paths(self):
        """Image paths of the subset's rows (ndarray of str)."""
        return np.asarray(self.store.paths)[self.rows]

    def read_rows(self, indices, *, dtype=None):
        """Features and labels of positions ``indices`` of the subset.

        Parameters
        ----------
        indices : array-like of int or bool mask
            Positions in the subset (``0 .. len(self) - 1``; negative
            counts from the end), any order.
        dtype : dtype, default=None
            Of the returned features; see :attr:`FeatureStore.dtype`.

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        return self.store.read_rows(self.rows[check_indices(indices, len(self.rows))], dtype=dtype)

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None,
                    block_rows=None):
        """Iterate over the subset's features in chunks, each row exactly once.

        The block shuffle of :meth:`FeatureStore.iter_chunks`, over the
        subset's rows: blocks of neighbouring rows of the subset (sized
        from the store's bytes per row), in a random order, dealt into
        chunks, rows permuted within each chunk.

        Parameters
        ----------
        chunk_size : int, default=1024
        shuffle : bool, default=True
        random_state : int, RandomState instance or None, default=None
        dtype : dtype, default=None
        block_rows : int, default=None
            See :meth:`FeatureStore.iter_chunks`.

        Yields
        ------
        X : ndarray of shape (n_chunk, n_features)
        y : ndarray of shape (n_chunk,) or None
        """
        for positions in iter_chunk_rows(len(self.rows), self.n_features * self.dtype.itemsize,
                                         chunk_size, shuffle=shuffle, random_state=random_state,
                                         block_rows=block_rows):
            yield self.store.read_rows(self.rows[positions], dtype=dtype)

    def __repr__(self):
        return f"StoreSubset({self.store!r}, n_rows={len(self.rows)})"
