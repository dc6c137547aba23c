"""Chunk sources: one re-iterable view of "X" for the out-of-core heads.

The classifier heads accept four kinds of training data:

- an array-like ``X`` (with ``y``), held in memory (:class:`ArrayChunks`);
- a :class:`~skbottleneck.FeatureStore`, or any object with an
  ``iter_chunks(chunk_size, *, shuffle, random_state)`` method yielding
  ``(X_chunk, y_chunk)`` (duck-typed: this room never imports the store)
  (:class:`StoreChunks`);
- a ``dask.array`` (with ``y`` as an array or a dask array), read block by
  block through :class:`~skbottleneck.chunks.DaskChunks`;
- an iterable of chunks: a list of ``(X_chunk, y_chunk)`` tuples, an object
  whose ``__iter__`` returns a fresh iterator on each call, a callable that
  returns a fresh iterator, or a one-shot iterator/generator (readable once)
  (:class:`IterableChunks`).

:func:`as_chunk_source` turns each into a :class:`ChunkSource`, whose
:meth:`~ChunkSource.iter_chunks` yields ``(X_chunk, y_chunk, w_chunk)``
triples of at most ``chunk_size`` rows (``y_chunk``/``w_chunk`` may be None),
so that memory is bounded by the chunk size, never by the data set. A source
can be split into a training and a held-out part (:meth:`ChunkSource.split`)
for early stopping, reproducibly.

Rows read from disk are shuffled by the one block shuffle,
:func:`~skbottleneck.chunks.iter_chunk_positions`. Importing this room
needs numpy only (the store imports it); scipy and scikit-learn are
imported when a source is used.
"""


import numpy as np

from ..utils import draw_seed, is_dask_array
from ._dask import DaskChunks
from ._protocol import ArrayRows, RowSubset, is_row_source, iter_row_chunks
from ._sizing import chunk_rows, row_nbytes_of

__all__ = [
    "ArrayChunks",
    "ChunkSource",
    "IterableChunks",
    "StoreChunks",
    "as_chunk_source",
    "as_row_source",
    "is_chunk_source",
]


def is_chunk_source(X):
    """Tell whether ``X`` is a chunk source rather than an array-like.

    Chunk sources are: row sources (:func:`~skbottleneck.chunks.is_row_source`:
    a FeatureStore, a feature file), dask arrays, callables, iterators, lists/tuples whose
    first item is an ``(X_chunk, y_chunk)`` tuple with a 2-D ``X_chunk``, and
    other iterables that are not array-like (no ``__array__``, not a
    list/tuple/str, not sparse). Anything else is treated as an array-like
    and left to scikit-learn's validation.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    >>> is_chunk_source(X), is_chunk_source(X.tolist())
    (False, False)
    >>> is_chunk_source([(X, y)]), is_chunk_source(lambda: iter([(X, y)]))
    (True, True)
    """
    from scipy import sparse

    if is_row_source(X) or is_dask_array(X):
        return True
    if isinstance(X, (np.ndarray, str, bytes)) or sparse.issparse(X):
        return False
    if hasattr(X, "__array__") or hasattr(X, "__dataframe__"):
        return False
    if isinstance(X, (list, tuple)):
        if not X:
            return False
        first = X[0]
        return (
            isinstance(first, tuple)
            and 1 <= len(first) <= 3
            and len(getattr(first[0], "shape", ())) == 2
        )
    if callable(X):
        return True
    return hasattr(X, "__iter__") or hasattr(X, "__next__")


class ChunkSource:
    """Base class: a re-iterable source of ``(X, y, sample_weight)`` chunks.

    Attributes
    ----------
    chunk_size : int
        Largest number of rows per chunk.
    reiterable : bool
        False for a one-shot iterator (it can be read only once).
    validated : bool
        True when the rows were already checked by ``validate_data`` (arrays);
        False when each chunk must be checked as it comes.
    n_samples : int or None
        Number of rows, or None when unknown before a pass.
    """

    reiterable = True
    validated = False
    n_samples = None

    def __init__(self, chunk_size):
        self.chunk_size = int(chunk_size)

    def iter_chunks(self, *, shuffle=False, random_state=None):
        """Yield ``(X_chunk, y_chunk, w_chunk)``; ``y``/``w`` may be None."""
        raise NotImplementedError

    def known_labels(self):
        """All labels (training and held-out rows) if known without a pass."""
        return None

    def split(self, fraction, random_state):
        """Return ``(train, held_out)`` sources holding out ``fraction`` of rows."""
        raise NotImplementedError


class ArrayChunks(ChunkSource):
    """Chunks of in-memory arrays, optionally restricted to row ``indices``.

    With ``shuffle=True`` the rows are permuted as a whole (not in blocks):
    in memory that is free. Only one chunk is copied at a time.
    """

    validated = True

    def __init__(self, X, y=None, sample_weight=None, *, chunk_size, indices=None):
        super().__init__(chunk_size)
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.indices = indices
        self.n_samples = X.shape[0] if indices is None else len(indices)

    def _take(self, rows):
        def take(a):
            return None if a is None else a[rows]

        return take(self.X), take(self.y), take(self.sample_weight)

    def _rows(self):
        return np.arange(self.X.shape[0]) if self.indices is None else self.indices

    def iter_chunks(self, *, shuffle=False, random_state=None):
        from sklearn.utils import check_random_state

        size = self.chunk_size
        if shuffle:
            order = check_random_state(random_state).permutation(self._rows())
            for start in range(0, len(order), size):
                yield self._take(order[start:start + size])
        elif self.indices is None:
            for start in range(0, self.n_samples, size):
                yield self._take(slice(start, start + size))
        else:
            for start in range(0, self.n_samples, size):
                yield self._take(self.indices[start:start + size])

    def known_labels(self):
        if self.y is None:
            return None
        return self.y if self.indices is None else self.y[self.indices]

    def split(self, fraction, random_state):
        train, held_out = _split_indices(self._rows(), self.known_labels(), fraction,
                                         random_state)
        return tuple(
            ArrayChunks(self.X, self.y, self.sample_weight, indices=rows,
                        chunk_size=self.chunk_size)
            for rows in (train, held_out)
        )


class StoreChunks(ChunkSource):
    """Chunks of a row source (a :class:`~skbottleneck.chunks.RowSource`: a store, a feature file...).

    The whole source, with its own labels, is read through
    ``store.iter_chunks``: the source deals its blocks into chunks and
    permutes each chunk. A source whose ``iter_chunks`` only shuffles the
    chunk order (one without a true ``shuffles_within_chunks`` attribute)
    has the rows of each chunk permuted here.

    A subset of rows (``indices``, for a held-out split) or labels given from
    outside (``y``) are a :class:`~skbottleneck.chunks.RowSubset` read by the
    one chunk iterator, :func:`~skbottleneck.chunks.iter_row_chunks`.
    """

    def __init__(self, store, y=None, *, chunk_size, indices=None):
        super().__init__(chunk_size)
        self.store, self.y, self.indices = store, y, indices
        self.n_samples = len(store) if indices is None else len(indices)
        if y is not None and len(y) != len(store):
            raise ValueError(
                f"y has {len(y)} labels but the FeatureStore has {len(store)} rows; "
                "pass y=None to use the labels stored with the features."
            )

    def iter_chunks(self, *, shuffle=False, random_state=None):
        from sklearn.utils import check_random_state

        rng = check_random_state(random_state)
        if self.indices is None and self.y is None:
            yield from self._whole_store(shuffle, rng)
            return
        rows = np.arange(len(self.store)) if self.indices is None else self.indices
        subset = RowSubset(self.store, rows, labels=self.y)
        for X, y in iter_row_chunks(subset, self.chunk_size, shuffle=shuffle,
                                    random_state=rng if shuffle else None):
            yield X, y, None

    def _whole_store(self, shuffle, rng):
        chunks = self.store.iter_chunks(
            self.chunk_size, shuffle=shuffle, random_state=draw_seed(rng) if shuffle else None
        )
        permute = shuffle and not getattr(self.store, "shuffles_within_chunks", False)
        for X, y in chunks:
            if permute:
                order = rng.permutation(X.shape[0])
                X, y = X[order], (None if y is None else y[order])
            yield X, y, None

    def known_labels(self):
        labels = self.y if self.y is not None else getattr(self.store, "labels", None)
        if labels is None:
            return None
        labels = np.asarray(labels)
        return labels if self.indices is None else labels[self.indices]

    def split(self, fraction, random_state):
        base = np.arange(len(self.store)) if self.indices is None else self.indices
        train, held_out = _split_indices(base, self.known_labels(), fraction, random_state)
        return tuple(
            StoreChunks(self.store, self.y, indices=rows, chunk_size=self.chunk_size)
            for rows in (train, held_out)
        )


class IterableChunks(ChunkSource):
    """Chunks from an iterable, a callable returning an iterator, or an iterator.

    Items may be ``(X, y)``, ``(X, y, sample_weight)``, ``(X,)`` or a bare
    2-D ``X``. Chunks larger than ``chunk_size`` are not split: the caller
    decided their size. The chunk order cannot be shuffled (it is the
    producer's); rows are shuffled within each chunk.

    A held-out split picks rows inside every chunk with a random mask seeded
    by ``(seed, chunk number)``, so it is the same rows on every pass as long
    as the iterable yields the same chunks in the same order each time.
    """

    def __init__(self, obj, *, chunk_size, holdout=None):
        super().__init__(chunk_size)
        self.obj = obj
        self.holdout = holdout  # None or (fraction, seed, keep_held_out: bool)
        self.reiterable = callable(obj) or iter(obj) is not obj
        self._consumed = False

    def _iterator(self):
        if callable(self.obj):
            return iter(self.obj())
        if not self.reiterable:
            if self._consumed:
                raise ValueError(
                    "X is a one-shot iterator that was already read once; pass a "
                    "re-iterable (a list of (X_chunk, y_chunk), a FeatureStore, or a "
                    "function returning a new iterator) to read the data again."
                )
            self._consumed = True
        return iter(self.obj)

    def iter_chunks(self, *, shuffle=False, random_state=None):
        from sklearn.utils import check_random_state

        rng = check_random_state(random_state)
        for i, item in enumerate(self._iterator()):
            X, y, w = _unpack(item)
            if self.holdout is not None:
                fraction, seed, keep_held_out = self.holdout
                held_out = np.random.default_rng([seed, i]).random(X.shape[0]) < fraction
                rows = np.flatnonzero(held_out if keep_held_out else ~held_out)
                if len(rows) == 0:
                    continue
                if len(rows) < X.shape[0]:
                    X, y, w = _take_rows(X, y, w, rows)
            if shuffle:
                X, y, w = _take_rows(X, y, w, rng.permutation(X.shape[0]))
            yield X, y, w

    def split(self, fraction, random_state):
        if self.holdout is not None:
            raise ValueError("This chunk source is already split.")
        seed = draw_seed(random_state)
        return tuple(
            IterableChunks(self.obj, chunk_size=self.chunk_size, holdout=(fraction, seed, keep))
            for keep in (False, True)
        )


def _take_rows(X, y, w, rows):
    X = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
    return X, (None if y is None else np.asarray(y)[rows]), (None if w is None else np.asarray(w)[rows])


def _unpack(item):
    if isinstance(item, tuple):
        if not 1 <= len(item) <= 3:
            raise ValueError(
                "Each chunk must be (X_chunk, y_chunk), (X_chunk, y_chunk, "
                f"sample_weight_chunk) or X_chunk; got a tuple of {len(item)} items."
            )
        X, y, w = item + (None,) * (3 - len(item))
    else:
        X, y, w = item, None, None
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    return X, y, w


def _split_indices(indices, labels, fraction, random_state):
    """Split row indices into (train, held_out), stratified when possible."""
    from sklearn.model_selection import train_test_split

    n = len(indices)
    n_held_out = int(np.ceil(fraction * n))
    if n_held_out < 1 or n - n_held_out < 1:
        raise ValueError(
            f"validation_fraction={fraction} with n_samples={n} leaves {n - n_held_out} "
            f"training and {n_held_out} validation samples; both need at least one."
        )
    seed = draw_seed(random_state)
    try:
        train, held_out = train_test_split(
            indices, test_size=n_held_out, random_state=seed, stratify=labels
        )
    except ValueError:  # a class too small to stratify, or labels unknown
        train, held_out = train_test_split(indices, test_size=n_held_out, random_state=seed)
    return np.sort(train), np.sort(held_out)


def as_chunk_source(X, y=None, *, sample_weight=None, chunk_size=1024, multiple_of=1):
    """Wrap ``X`` (array, FeatureStore, dask array or chunk iterable) as a :class:`ChunkSource`.

    Parameters
    ----------
    X : array-like, FeatureStore, dask array or iterable of chunks
        See the module docstring. Array-likes must already be validated.
    y : array-like of shape (n_samples,), default=None
        Labels for an array, or labels replacing a FeatureStore's own. Must
        be None for an iterable of chunks, which carries its labels.
    sample_weight : array-like of shape (n_samples,), default=None
        Only for arrays (an iterable may yield ``(X, y, w)`` triples).
    chunk_size : int or str, default=1024
        Rows per chunk for arrays and stores: a number of rows, a size in
        bytes (``"64MiB"``) or ``"auto"`` (1,024 rows, fewer when wider than
        64 MiB), sized from the bytes of a row of ``X``; see
        :func:`~skbottleneck.chunks.chunk_rows`.
    multiple_of : int, default=1
        Round rows capped by a byte budget down to a multiple of this.

    Returns
    -------
    source : ChunkSource

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 1])
    >>> source = as_chunk_source(X, y, chunk_size=2)
    >>> [len(Xc) for Xc, yc, wc in source.iter_chunks()]
    [2, 2, 1]
    >>> chunks = as_chunk_source([(X[:3], y[:3]), (X[3:], y[3:])])
    >>> [yc.tolist() for Xc, yc, wc in chunks.iter_chunks()]
    [[0, 1, 0], [1, 1]]
    """
    rows = is_row_source(X)
    iterable = not (is_dask_array(X) or rows) and is_chunk_source(X)
    chunk_size = chunk_rows(chunk_size, None if iterable else row_nbytes_of(X),
                            multiple_of=multiple_of)
    if is_dask_array(X):  # blocks computed one at a time, in shuffled order
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported with a dask array.")
        return StoreChunks(DaskChunks(X, y), chunk_size=chunk_size)
    if rows:
        from sklearn.utils.validation import column_or_1d

        if sample_weight is not None:
            raise ValueError("sample_weight is not supported with a FeatureStore.")
        if y is not None:
            y = column_or_1d(y, warn=True)
        return StoreChunks(X, y, chunk_size=chunk_size)
    if is_chunk_source(X):
        if y is not None:
            raise ValueError(
                "y must be None when X is an iterable of (X_chunk, y_chunk) chunks: "
                f"the labels come with the chunks. Got y of type {type(y).__name__}."
            )
        if sample_weight is not None:
            raise ValueError(
                "sample_weight must be None when X is an iterable of chunks; yield "
                "(X_chunk, y_chunk, sample_weight_chunk) triples instead."
            )
        return IterableChunks(X, chunk_size=chunk_size)
    return ArrayChunks(X, y, sample_weight, chunk_size=chunk_size)


def as_row_source(X, y=None):
    """``X`` as a :class:`~skbottleneck.chunks.RowSource`.

    A row source is returned as it is (or, with ``y``, as a
    :class:`~skbottleneck.chunks.RowSubset` of all its rows carrying those
    labels); a 2-D ndarray or ``np.memmap`` becomes an
    :class:`~skbottleneck.chunks.ArrayRows`; a ``dask.array`` a
    :class:`~skbottleneck.chunks.DaskChunks`. Feature files are opened by
    :func:`skbottleneck.store.open_rows`.

    Examples
    --------
    >>> import numpy as np
    >>> as_row_source(np.zeros((3, 2)), [0, 1, 0])
    ArrayRows(array, n_rows=3, n_features=2)
    """
    if is_row_source(X):
        return X if y is None else RowSubset(X, np.arange(len(X)), labels=np.asarray(y).ravel())
    if is_dask_array(X):
        return DaskChunks(X, y)
    if isinstance(X, np.ndarray):
        return ArrayRows(X, y)
    raise TypeError(
        "Expected a row source (a FeatureStore, a feature file opened with open_rows, "
        f"a 2-D array or a dask array); got {type(X).__name__}."
    )
