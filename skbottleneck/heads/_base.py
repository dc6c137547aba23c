"""What the out-of-core classifier heads share.

:class:`ChunkedHeadMixin` is the glue between a head and its chunk source
(:func:`~skbottleneck.chunks.as_chunk_source`): arrays validated once, up
front; chunks of a FeatureStore, a dask array or an iterable validated as
they come. It also holds the parts of training that both heads run the
same way: the checks of ``fit`` and of the first ``partial_fit``, the
classes, the held-out split and the epoch / early-stopping loop. A head
provides how one epoch trains, how the held-out rows are scored, and how
the best epoch's state is kept and put back.
"""

import numbers
import sys
import time

import numpy as np
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, column_or_1d, validate_data

from ..chunks import (as_chunk_source, is_chunk_source, is_row_source, is_rows_path,
                      nonfinite_message)
from ..feature_space import feature_space_of, mismatch, space_of_head

__all__ = ["SHARED_CONSTRAINTS", "ChunkedHeadMixin", "check_classes", "validate_chunk"]

#: The parameter constraints every head has, with the same meaning.
SHARED_CONSTRAINTS = {
    "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
    "chunk_size": [Interval(numbers.Integral, 1, None, closed="left"), str],
    "shuffle": ["boolean"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
    "tol": [Interval(numbers.Real, 0, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}

NO_ROWS = "The training data yielded no rows."
#: With ``verbose``, an epoch that runs longer than this shows a progress bar.
PROGRESS_DELAY_S = 2.0


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


def check_classes(classes):
    """The sorted, unique ``classes`` given by the user (1-D, classification labels).

    Examples
    --------
    >>> check_classes(["b", "a", "b"]).tolist()
    ['a', 'b']
    """
    classes = np.asarray(classes)
    if classes.ndim != 1:
        raise ValueError(f"classes must be 1-D; got shape {classes.shape}.")
    classes = np.unique(classes)
    check_classification_targets(classes)
    return classes


class ChunkedHeadMixin:
    """Input handling and the training loop shared by the out-of-core heads.

    The head provides the parameters of :data:`SHARED_CONSTRAINTS`,
    ``_check_params()`` (keyword arguments for ``validate_data``),
    ``_predict_chunk(X)``, and for :meth:`_fit_epochs` the hooks
    ``_fit_epoch``, ``_validation_score``, ``_snapshot`` and ``_restore``.
    """

    def _check_params(self):
        raise NotImplementedError

    def _predict_chunk(self, X):
        """Predicted labels of one validated chunk (the estimator provides it)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ input
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

        X = _open_rows_path(X)
        if not is_chunk_source(X):
            return accuracy_score(y, self.predict(X), sample_weight=sample_weight)
        check_is_fitted(self)
        self._track_feature_space(X, reset=False)
        return self._score_source(self._wrap(X, y, sample_weight))

    def _score_source(self, source):
        """Accuracy over a chunk source, chunk by chunk (weighted when it has weights)."""
        correct = total = 0.0
        for X, y, w in self._chunks(source):
            weights = np.ones(len(y)) if w is None else w
            correct += np.sum(weights * (self._predict_chunk(X) == y))
            total += np.sum(weights)
        return float(correct / total) if total else 0.0

    def _chunk_multiple(self):
        """Rows capped by a byte budget are rounded down to a multiple of this."""
        return 1

    def _wrap(self, X, y=None, sample_weight=None):
        """``X`` as a chunk source of ``chunk_size`` (rows, or bytes of rows of ``X``)."""
        return as_chunk_source(X, y, sample_weight=sample_weight, chunk_size=self.chunk_size,
                               multiple_of=self._chunk_multiple())

    def _track_feature_space(self, X, *, reset):
        """Record (``reset``) or check the feature space of a row source's features.

        ``feature_space_`` is the space (:mod:`skbottleneck.feature_space`)
        of the store the head was trained on, None when it was trained on
        arrays or chunks that do not say. Once it is known, features of
        another space are refused: a head trained on ResNet50 features is
        wrong on ResNet101 ones of the same width, and one trained on
        float32 features on int8 ones.
        """
        theirs = feature_space_of(X)
        if reset:
            self.feature_space_ = None if theirs is None else theirs.as_dict()
            return
        ours = space_of_head(self)
        if ours is not None and theirs is not None and ours.id != theirs.id:
            raise mismatch(f"This {type(self).__name__}", ours, theirs,
                           f"the FeatureStore {getattr(X, 'path', X)!s}")

    def _source(self, X, y=None, sample_weight=None, *, reset, require_y=True):
        """Validate an array up front, or wrap a chunk source (checked per chunk).

        A FeatureStore's feature space is recorded (``reset``) or checked
        (:meth:`_track_feature_space`).
        """
        X = _open_rows_path(X)
        self._track_feature_space(X, reset=reset)
        if require_y and is_row_source(X) and len(X) == 0:
            raise ValueError(no_rows_message(X))
        if is_chunk_source(X):
            return self._wrap(X, y, sample_weight)
        params = self._check_params()
        if require_y:
            X, y = validate_data(self, X, y, reset=reset, **params)
            check_classification_targets(y)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X)
        else:
            X = validate_data(self, X, reset=reset, **params)
        return self._wrap(X, y, sample_weight)

    def _chunks(self, source, *, shuffle=False, random_state=None, first_reset=False,
                require_y=True, progress=None):
        """Yield validated, non-empty ``(X, y, w)`` chunks (counted on ``progress``, a tqdm bar)."""
        reset = first_reset
        params = None if source.validated else self._check_params()
        for X, y, w in source.iter_chunks(shuffle=shuffle, random_state=random_state):
            if not source.validated:
                try:
                    X, y = validate_chunk(self, X, y, reset=reset, require_y=require_y,
                                          **params)
                except ValueError as e:
                    _name_nonfinite_rows(self, source, X, e)
                    raise
                reset = False
            if X.shape[0]:
                yield X, y, w
                if progress is not None:
                    progress.update(X.shape[0])

    # -------------------------------------------------------------------- fit
    def _fit_source(self, X, y, sample_weight, classes, extra_passes=()):
        """Check the training data of ``fit``: ``(source, classes, first_reset)``.

        The classes are ``classes`` if given, else the labels known without a
        pass (arrays, a store's ``labels``), else found in one pass over the
        chunks' labels (which sets ``n_features_in_``). ``first_reset`` tells
        whether the next pass must still set ``n_features_in_``.
        ``extra_passes`` names the head's own passes beyond the epochs.
        """
        source = self._source(X, y, sample_weight, reset=True)
        needs = []
        if classes is None and source.known_labels() is None:
            needs.append("a pass to find the classes (or pass classes=...)")
        needs.extend(extra_passes)
        needs.append(f"epochs={self.epochs} training passes")
        if self.early_stopping:
            needs.append("passes over the held-out rows (early_stopping=True)")
        if not source.reiterable and (len(needs) > 1 or self.epochs > 1):
            raise ValueError(
                "X is a one-shot iterator, which can be read only once, but this fit needs "
                f"more than one pass over it: {'; '.join(needs)}. Pass a re-iterable "
                "instead (a list of (X_chunk, y_chunk), a FeatureStore, or a function "
                "returning a new iterator), or call partial_fit once per pass."
            )
        first_reset = not source.validated
        if classes is not None:
            return source, check_classes(classes), first_reset
        labels = source.known_labels()
        if labels is not None:
            return source, check_classes(column_or_1d(labels, warn=True)), first_reset
        parts = [np.unique(y) for _, y, _ in self._chunks(source, first_reset=True)]
        if not parts:
            raise ValueError(NO_ROWS)
        return source, check_classes(np.concatenate(parts)), False

    def _split(self, source, rng):
        """``(train, held_out)``: ``held_out`` is None without early stopping."""
        if not self.early_stopping:
            return source, None
        return source.split(self.validation_fraction, rng)

    def _fit_epochs(self, train, held_out, rng, first_reset):
        """Up to ``epochs`` epochs; with ``held_out``, keep the best and stop early.

        After each epoch the held-out rows are scored (higher is better); an
        epoch improves when its score beats the best by more than ``tol``;
        training stops after ``n_iter_no_change`` epochs without improvement
        and the state of the best epoch is put back. Returns the best score
        (None without ``held_out``).
        """
        best, best_state, no_improvement = -np.inf, None, 0
        for epoch in range(self.epochs):
            progress = self._progress_bar(train, epoch)
            start = time.perf_counter()
            try:
                n_rows, note = self._fit_epoch(train, rng, first_reset, progress=progress)
            finally:
                if progress is not None:
                    progress.close()
            seconds = time.perf_counter() - start
            first_reset = False
            self.n_iter_ += 1
            message = (f"epoch {epoch + 1}/{self.epochs}: {n_rows} rows in {seconds:.1f} s "
                       f"({n_rows / max(seconds, 1e-9):.0f} rows/s){note}")
            if held_out is not None:
                score, note = self._validation_score(held_out)
                message += note
                if score > best + self.tol:
                    best, best_state, no_improvement = score, self._snapshot(), 0
                else:
                    no_improvement += 1
            if self.verbose:
                print(f"[{type(self).__name__}] {message}", file=sys.stderr)
            if held_out is not None and no_improvement >= self.n_iter_no_change:
                break
        if best_state is not None:
            self._restore(best_state)
        return None if best_state is None else best

    def _progress_bar(self, source, epoch):
        """A tqdm bar of the rows of one epoch (rows/s) when ``verbose``, else None.

        It shows up once an epoch has run for :data:`PROGRESS_DELAY_S` seconds
        (a long fit), and is erased when the epoch ends, replaced by the
        epoch's line.
        """
        if not self.verbose:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=source.n_samples, unit="rows", unit_scale=True, smoothing=0.1,
                    desc=f"{type(self).__name__} epoch {epoch + 1}/{self.epochs}",
                    dynamic_ncols=True, leave=False, delay=PROGRESS_DELAY_S)

    def _fit_epoch(self, source, rng, first_reset, progress=None):
        """Train one pass over ``source``: ``(n_rows, note for the epoch's line)``.

        ``progress`` (a tqdm bar or None) is passed to :meth:`_chunks`.
        """
        raise NotImplementedError

    def _validation_score(self, source):
        """Score the held-out rows: ``(score, note)``, higher is better."""
        raise NotImplementedError

    def _snapshot(self):
        """The state to keep from the best epoch."""
        raise NotImplementedError

    def _restore(self, state):
        """Put back a state from :meth:`_snapshot`."""
        raise NotImplementedError

    # ------------------------------------------------------------ partial_fit
    def _first_partial_fit(self, classes):
        """True on the first ``partial_fit`` (``classes`` required); later ones must match."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit: "
                    "the list of every class that will ever be seen."
                )
            return True
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={classes!r} is not the same as on the first call to "
                f"partial_fit or fit: {self.classes_!r}."
            )
        return False


def _name_nonfinite_rows(estimator, source, X, error):
    """When a chunk of a row source holds NaN or inf, raise naming the source and its bad rows.

    scikit-learn's message ("Input X contains NaN") names neither; this one
    pass over the source (on the error path only) finds the rows.
    """
    rows = getattr(source, "store", None)
    try:
        finite = np.isfinite(np.asarray(X, dtype=np.float64)).all()
    except (TypeError, ValueError):  # not numbers: sklearn's message stands
        return
    if finite or not is_row_source(rows):
        return
    message = nonfinite_message(rows, owner=type(estimator).__name__)
    if message is not None:
        raise ValueError(message) from error


def no_rows_message(X):
    """The message of training data without rows, naming the store when there is one."""
    path = getattr(X, "path", None)
    if path is not None:
        return (f"The {type(X).__name__} {path!s} holds no rows: there is nothing to train on. "
                "Was its extraction run, and did every image fail?")
    return NO_ROWS


def _open_rows_path(X):
    """A store or feature file named by its path (``.h5``, ``.parquet``, ``.npy``, ``.csv``), opened."""
    if not is_rows_path(X):
        return X
    from ..store import open_rows

    return open_rows(X)
