"""Some rows of a feature store, seen as a store: :class:`StoreSubset`."""

import numpy as np

from ..chunks import RowSubset

__all__ = ["StoreSubset"]


class StoreSubset(RowSubset):
    """Some rows of a :class:`FeatureStore`, seen as a store.

    A :class:`~skbottleneck.chunks.RowSource` (a
    :class:`~skbottleneck.chunks.RowSubset` with the store's ``paths``,
    ``path`` and ``metadata``), so a head trains out of core on the
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

    @property
    def store(self):
        """The whole store."""
        return self.source

    @property
    def path(self):
        """Path of the whole store (``None`` if it has none)."""
        return getattr(self.store, "path", None)

    @property
    def metadata(self):
        """Metadata of the whole store (dict)."""
        return getattr(self.store, "metadata", {})

    @property
    def paths(self):
        """Image paths of the subset's rows (ndarray of str)."""
        return np.asarray(self.store.paths)[self.rows]

    def __repr__(self):
        return f"StoreSubset({self.store!r}, n_rows={len(self.rows)})"
