"""Chunk sources: one re-iterable view of "X" for out-of-core estimators.

The classifier heads accept three kinds of training data:

- an array-like ``X`` (with ``y``), held in memory;
- a :class:`~skbottleneck.FeatureStore`, or any object with an
  ``iter_chunks(chunk_size, *, shuffle, random_state)`` method yielding
  ``(X_chunk, y_chunk)`` (duck-typed: this module never imports the store);
- a ``dask.array`` (with ``y`` as an array or a dask array), read block by
  block through :class:`skbottleneck.distributed.DaskChunks`;
- an iterable of chunks: a list of ``(X_chunk, y_chunk)`` tuples, an object
  whose ``__iter__`` returns a fresh iterator on each call, a callable that
  returns a fresh iterator, or a one-shot iterator/generator (readable once).

:func:`as_chunk_source` turns each into a :class:`ChunkSource`, whose
:meth:`~ChunkSource.iter_chunks` yields ``(X_chunk, y_chunk, w_chunk)``
triples of at most ``chunk_size`` rows (``y_chunk``/``w_chunk`` may be None),
so that memory is bounded by the chunk size, never by the data set. A source
can be split into a training and a held-out part (:meth:`ChunkSource.split`)
for early stopping, reproducibly.

The helpers at the bottom (:func:`validate_chunk`, :func:`discover_classes`,
:func:`check_passes`) are the estimator-side glue shared by
:class:`~skbottleneck.IncrementalClassifier` and
:class:`~skbottleneck.KerasMLPClassifier`.
"""

import numbers

import numpy as np
from scipy import sparse
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, column_or_1d, validate_data

__all__ = [
    "ArrayChunks",
    "ChunkedInputMixin",
    "ChunkSource",
    "IterableChunks",
    "StoreChunks",
    "as_chunk_source",
    "check_passes",
    "discover_classes",
    "is_chunk_source",
    "validate_chunk",
]

_MAX_SEED = np.iinfo(np.int32).max
_BLOCK_BYTES = 128 * 1024  # rows read together when shuffling a store subset


def _seed(random_state):
    """Draw an int seed from anything ``check_random_state`` accepts."""
    return int(check_random_state(random_state).randint(_MAX_SEED))


def is_chunk_source(X):
    """Tell whether ``X`` is a chunk source rather than an array-like.

    Chunk sources are: objects with an ``iter_chunks`` method (a
    FeatureStore), callables, iterators, lists/tuples whose first item is an
    ``(X_chunk, y_chunk)`` tuple with a 2-D ``X_chunk``, and other iterables
    that are not array-like (no ``__array__``, not a list/tuple/str, not
    sparse). Anything else is treated as an array-like and left to
    scikit-learn's validation.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    >>> is_chunk_source(X), is_chunk_source(X.tolist())
    (False, False)
    >>> is_chunk_source([(X, y)]), is_chunk_source(lambda: iter([(X, y)]))
    (True, True)
    """
    if hasattr(X, "iter_chunks") or _is_dask_array(X):
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


def _is_dask_array(X):
    """A ``dask.array.Array`` (told without importing dask)."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "blocks")


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

    With ``shuffle=True`` the rows are permuted as a whole (not only within
    chunks): in memory that is free. Only one chunk is copied at a time.
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

    def iter_chunks(self, *, shuffle=False, random_state=None):
        size = self.chunk_size
        if shuffle:
            base = np.arange(self.X.shape[0]) if self.indices is None else self.indices
            order = check_random_state(random_state).permutation(base)
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
        base = np.arange(self.X.shape[0]) if self.indices is None else self.indices
        train, held_out = _split_indices(base, self.known_labels(), fraction, random_state)
        kwargs = dict(chunk_size=self.chunk_size)
        return (
            ArrayChunks(self.X, self.y, self.sample_weight, indices=train, **kwargs),
            ArrayChunks(self.X, self.y, self.sample_weight, indices=held_out, **kwargs),
        )


class StoreChunks(ChunkSource):
    """Chunks of a FeatureStore (anything with ``iter_chunks``/``read_rows``).

    The whole store, with its own labels, is read through
    ``store.iter_chunks`` (the store decides how to read and shuffle its
    chunks; rows are shuffled again within each chunk here). A subset of
    rows (``indices``, for a held-out split) or labels given from outside
    (``y``) need row numbers, so they are read through
    ``store.read_rows(sorted_rows)``: with ``shuffle=True``, small blocks of
    neighbouring selected rows (128 KiB) are dealt in random order into
    chunks, so that each chunk mixes rows from all over the store.
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

    def _labels(self):
        return self.y if self.y is not None else getattr(self.store, "labels", None)

    def iter_chunks(self, *, shuffle=False, random_state=None):
        rng = check_random_state(random_state)
        if self.indices is None and self.y is None:
            chunks = self.store.iter_chunks(
                self.chunk_size, shuffle=shuffle, random_state=_seed(rng) if shuffle else None
            )
            for X, y in chunks:
                if shuffle:
                    order = rng.permutation(X.shape[0])
                    X, y = X[order], (None if y is None else y[order])
                yield X, y, None
            return
        indices = np.arange(len(self.store)) if self.indices is None else np.sort(self.indices)
        if shuffle:
            # like FeatureStore.iter_chunks: deal small blocks of neighbouring
            # rows in random order into chunks, so that every chunk mixes rows
            # from all over the store (even one sorted by class).
            n_features = max(1, int(getattr(self.store, "n_features", 1) or 1))
            block = max(1, min(self.chunk_size, _BLOCK_BYTES // (4 * n_features)))
            starts = np.arange(0, len(indices), block)
            indices = np.concatenate(
                [indices[s:s + block] for s in rng.permutation(starts)]
            ) if len(starts) else indices
        for start in range(0, len(indices), self.chunk_size):
            rows = np.sort(indices[start:start + self.chunk_size])
            X, y = self.store.read_rows(rows)
            if self.y is not None:
                y = self.y[rows]
            if shuffle:
                perm = rng.permutation(len(rows))
                X, y = X[perm], (None if y is None else y[perm])
            yield X, y, None

    def known_labels(self):
        labels = self._labels()
        if labels is None:
            return None
        labels = np.asarray(labels)
        return labels if self.indices is None else labels[self.indices]

    def split(self, fraction, random_state):
        base = np.arange(len(self.store)) if self.indices is None else self.indices
        train, held_out = _split_indices(base, self.known_labels(), fraction, random_state)
        kwargs = dict(chunk_size=self.chunk_size)
        return (
            StoreChunks(self.store, self.y, indices=train, **kwargs),
            StoreChunks(self.store, self.y, indices=held_out, **kwargs),
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
        seed = _seed(random_state)
        return (
            IterableChunks(self.obj, chunk_size=self.chunk_size, holdout=(fraction, seed, False)),
            IterableChunks(self.obj, chunk_size=self.chunk_size, holdout=(fraction, seed, True)),
        )


def _take_rows(X, y, w, rows):
    if hasattr(X, "iloc"):
        X = X.iloc[rows]
    else:
        X = X[rows]
    return X, (None if y is None else np.asarray(y)[rows]), (None if w is None else np.asarray(w)[rows])


def _unpack(item):
    if isinstance(item, tuple):
        if not 1 <= len(item) <= 3:
            raise ValueError(
                "Each chunk must be (X_chunk, y_chunk), (X_chunk, y_chunk, "
                f"sample_weight_chunk) or X_chunk; got a tuple of {len(item)} items."
            )
        item = item + (None,) * (3 - len(item))
        X, y, w = item
    else:
        X, y, w = item, None, None
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    return X, y, w


def _split_indices(indices, labels, fraction, random_state):
    """Split row indices into (train, held_out), stratified when possible."""
    n = len(indices)
    n_held_out = int(np.ceil(fraction * n))
    if n_held_out < 1 or n - n_held_out < 1:
        raise ValueError(
            f"validation_fraction={fraction} with n_samples={n} leaves {n - n_held_out} "
            f"training and {n_held_out} validation samples; both need at least one."
        )
    seed = _seed(random_state)
    try:
        train, held_out = train_test_split(
            indices, test_size=n_held_out, random_state=seed, stratify=labels
        )
    except ValueError:  # a class too small to stratify, or labels unknown
        train, held_out = train_test_split(indices, test_size=n_held_out, random_state=seed)
    return np.sort(train), np.sort(held_out)


def as_chunk_source(X, y=None, *, sample_weight=None, chunk_size=1024):
    """Wrap ``X`` (array, FeatureStore or chunk iterable) as a :class:`ChunkSource`.

    Parameters
    ----------
    X : array-like, FeatureStore or iterable of chunks
        See the module docstring. Array-likes must already be validated.
    y : array-like of shape (n_samples,), default=None
        Labels for an array, or labels replacing a FeatureStore's own. Must
        be None for an iterable of chunks, which carries its labels.
    sample_weight : array-like of shape (n_samples,), default=None
        Only for arrays (an iterable may yield ``(X, y, w)`` triples).
    chunk_size : int, default=1024
        Rows per chunk for arrays and stores.

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
    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
    if _is_dask_array(X):  # blocks computed one at a time, in shuffled order
        from .distributed import DaskChunks

        if sample_weight is not None:
            raise ValueError("sample_weight is not supported with a dask array.")
        return StoreChunks(DaskChunks(X, y), chunk_size=chunk_size)
    if hasattr(X, "iter_chunks"):
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


# --------------------------------------------------------------- estimator glue
def validate_chunk(estimator, X, y=None, *, reset, require_y=True, **check_params):
    """Validate one chunk of a chunk source like ``validate_data`` would.

    ``reset=True`` (first chunk of a fit) sets ``n_features_in_`` (and
    ``feature_names_in_``); later chunks are checked against them.
    """
    X = validate_data(estimator, X, reset=reset, **check_params)
    if y is None:
        if require_y:
            raise ValueError(
                f"{type(estimator).__name__} needs labels: a chunk came without y. "
                "Pass y, use a FeatureStore with labels, or yield (X_chunk, y_chunk)."
            )
        return X, None
    y = column_or_1d(y, warn=True)
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"A chunk has {X.shape[0]} rows in X but {y.shape[0]} labels in y."
        )
    return X, y


def discover_classes(source, classes=None):
    """The sorted classes: ``classes`` if given, else found in the data.

    Labels known without reading features (arrays, a store's ``labels``) are
    used directly; otherwise one pass reads the chunks' labels.
    """
    if classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1:
            raise ValueError(f"classes must be 1-D; got shape {classes.shape}.")
        found = np.unique(classes)
    else:
        labels = source.known_labels()
        if labels is not None:
            found = np.unique(column_or_1d(labels, warn=True))
        else:
            parts = []
            for _, y, _ in source.iter_chunks(shuffle=False):
                if y is None:
                    raise ValueError(
                        "A chunk came without labels: classes cannot be found. "
                        "Yield (X_chunk, y_chunk) pairs."
                    )
                parts.append(np.unique(column_or_1d(y, warn=True)))
            if not parts:
                raise ValueError("The chunk source yielded no chunks.")
            found = np.unique(np.concatenate(parts))
    check_classification_targets(found)
    return found


def check_passes(source, reasons):
    """Raise when a one-shot source would have to be read more than once.

    ``reasons`` lists why each pass beyond the first is needed.
    """
    if source.reiterable or not reasons:
        return
    raise ValueError(
        "X is a one-shot iterator, which can be read only once, but this fit needs "
        f"more than one pass over it: {'; '.join(reasons)}. Pass a re-iterable "
        "instead (a list of (X_chunk, y_chunk), a FeatureStore, or a function "
        "returning a new iterator), or call partial_fit once per pass."
    )


class ChunkedInputMixin:
    """Input handling shared by the out-of-core classifiers.

    The estimator provides ``chunk_size`` and ``_check_params()`` (keyword
    arguments for ``validate_data``). Arrays are validated once, up front;
    chunks of a FeatureStore or an iterable are validated as they come, the
    first chunk of a fit resetting ``n_features_in_``.
    """

    def _check_params(self):
        raise NotImplementedError

    def _predict_chunk(self, X):
        """Predicted labels of one validated chunk (the estimator provides it)."""
        raise NotImplementedError

    def score(self, X, y=None, sample_weight=None):
        """Mean accuracy on arrays, or on a labelled FeatureStore / chunk iterable.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Test samples; a chunk source supplies its own labels.
        y : array-like of shape (n_samples,), default=None
            True labels for an array X (or replacing a store's labels).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights, for an array X.

        Returns
        -------
        score : float
            Accuracy of ``predict``.
        """
        from sklearn.metrics import accuracy_score
        from sklearn.utils.validation import check_is_fitted

        if not is_chunk_source(X):
            return accuracy_score(y, self.predict(X), sample_weight=sample_weight)
        check_is_fitted(self)
        return self._score_source(as_chunk_source(X, y, sample_weight=sample_weight,
                                                  chunk_size=self.chunk_size))

    def _score_source(self, source):
        """Accuracy over a chunk source, chunk by chunk (weighted when it has weights)."""
        correct = total = 0.0
        for X, y, w in self._chunks(source):
            weights = np.ones(len(y)) if w is None else w
            correct += np.sum(weights * (self._predict_chunk(X) == y))
            total += np.sum(weights)
        return float(correct / total) if total else 0.0

    def _source(self, X, y=None, sample_weight=None, *, reset, require_y=True):
        """Validate an array up front, or wrap a chunk source (checked per chunk)."""
        if is_chunk_source(X):
            return as_chunk_source(X, y, sample_weight=sample_weight, chunk_size=self.chunk_size)
        params = self._check_params()
        if require_y:
            X, y = validate_data(self, X, y, reset=reset, **params)
            check_classification_targets(y)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X)
        else:
            X = validate_data(self, X, reset=reset, **params)
        return as_chunk_source(X, y, sample_weight=sample_weight, chunk_size=self.chunk_size)

    def _chunks(self, source, *, shuffle=False, random_state=None, first_reset=False,
                require_y=True):
        """Yield validated, non-empty ``(X, y, w)`` chunks."""
        reset = first_reset
        params = None if source.validated else self._check_params()
        for X, y, w in source.iter_chunks(shuffle=shuffle, random_state=random_state):
            if not source.validated:
                X, y = validate_chunk(self, X, y, reset=reset, require_y=require_y, **params)
                reset = False
            if X.shape[0]:
                yield X, y, w

    def _collect_classes(self, source):
        """One pass over the labels (also sets ``n_features_in_``)."""
        parts = [np.unique(y) for _, y, _ in self._chunks(source, first_reset=True)]
        if not parts:
            raise ValueError("The training data yielded no rows.")
        return np.unique(np.concatenate(parts))

    def _passes_needed(self, source, classes, epochs, early_stopping, extra=()):
        """Raise if a one-shot source would need more than one pass."""
        needs = []
        if classes is None and source.known_labels() is None:
            needs.append("a pass to find the classes (or pass classes=...)")
        needs.extend(extra)
        needs.append(f"epochs={epochs} training passes")
        if early_stopping:
            needs.append("passes over the held-out rows (early_stopping=True)")
        if len(needs) > 1 or epochs > 1:
            check_passes(source, needs)
