"""Train any ``partial_fit`` classifier over chunks: arrays, FeatureStores, streams.

:class:`IncrementalClassifier` is a meta-estimator in the spirit of
dask-ml's ``Incremental``: it clones a scikit-learn classifier that has
``partial_fit`` (SGDClassifier, MLPClassifier, Perceptron,
PassiveAggressiveClassifier, the naive Bayes models...) and feeds it the
training data one chunk at a time, for several epochs, so that a feature
set larger than memory can be learned with memory bounded by the chunk size.
"""

import copy

import numpy as np
from scipy import sparse
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils._tags import get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..utils import draw_seed
from ._base import NO_ROWS, SHARED_CONSTRAINTS, ChunkedHeadMixin, check_classes

__all__ = ["DEFAULT_ESTIMATOR_PARAMS", "IncrementalClassifier"]

#: Parameters of the default estimator, ``SGDClassifier(**DEFAULT_ESTIMATOR_PARAMS)``:
#: a logistic regression by averaged SGD, with ``alpha=1e-3`` (scikit-learn's
#: default is 1e-4). In 10 epochs, on EfficientNet-Lite0 features of three real
#: tasks, its mean accuracy over seeds is at or above an exact
#: ``LogisticRegression(C=0.1)``'s, where scikit-learn's defaults fall 1.3
#: points short on Fashion-MNIST (``benchmarks/bench_head_defaults.py``).
DEFAULT_ESTIMATOR_PARAMS = {"loss": "log_loss", "alpha": 1e-3, "average": True}


def _scaler_partial_fit(scaler, X):
    """``scaler.partial_fit(X)`` in row slices whose float64 copies are no bigger than ``X``.

    ``partial_fit`` computes the variance over float64 copies of its whole
    input (a float32 chunk would take twice its size, several times over);
    fed in slices of ``X.nbytes`` float64 bytes, the scaler pass costs about
    one chunk more, whatever the dtype. A float64 chunk is passed whole,
    exactly as before; the mean and variance merged over slices are the
    same up to rounding.
    """
    if sparse.issparse(X) or X.dtype.itemsize >= 8:
        scaler.partial_fit(X)
        return
    rows = max(1, X.nbytes // max(1, 8 * X.shape[1]))
    for start in range(0, X.shape[0], rows):
        scaler.partial_fit(X[start:start + rows])


def _inner_has(attr):
    """``available_if`` check: the fitted (else the given) inner estimator has ``attr``."""

    def check(self):
        estimator = getattr(self, "estimator_", None)
        if estimator is None:
            estimator = self.estimator
        if estimator is None:
            estimator = SGDClassifier(loss="log_loss")
        getattr(estimator, attr)  # raises AttributeError with the inner message
        return True

    return check


class IncrementalClassifier(ChunkedHeadMixin, ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Fit a ``partial_fit`` classifier chunk by chunk, for several epochs.

    The training data may be an in-memory array, a
    :class:`~skbottleneck.FeatureStore` (read chunk by chunk, never loaded
    whole) or any iterable of ``(X_chunk, y_chunk)`` pairs. Each epoch
    passes over every training row once, in an order shuffled reproducibly
    (chunk order and rows within chunks). Peak memory is a few chunks,
    whatever the size of the data.

    Parameters
    ----------
    estimator : estimator object, default=None
        A classifier with ``partial_fit``; it is cloned into ``estimator_``.
        None means ``SGDClassifier(loss="log_loss", alpha=1e-3, average=True)``
        (:data:`DEFAULT_ESTIMATOR_PARAMS`: averaged SGD, which comes within a
        point of an exact logistic regression) seeded from ``random_state``.
        Set the inner estimator's own ``random_state`` too for reproducible
        results.
    epochs : int, default=10
        Passes over the training data in :meth:`fit` (fewer with early
        stopping).
    chunk_size : int or str, default="auto"
        Chunk read at a time from an array or a FeatureStore (chunks from an
        iterable keep the size they come with): the unit of memory use. An
        int is a number of rows; a size such as ``"64MiB"`` is the most
        bytes of features a chunk holds (as many rows as fit); ``"auto"``
        is 1,024 rows, or fewer so that a chunk is at most 64 MiB (167 rows
        of un-pooled ResNet50 features). Working memory is a few chunks
        (the chunk read, its scaled copy, the inner estimator's own copy if
        it casts) plus the estimator's state.
    shuffle : bool, default=True
        Shuffle the rows every epoch (whole arrays; chunk order and rows
        within chunks for a FeatureStore; rows within chunks for an iterable,
        whose chunk order is its own).
    scale : bool, default=True
        Standardise the features with a :class:`~sklearn.preprocessing.StandardScaler`
        fitted incrementally in a first pass over the training chunks
        (``scaler_``) and applied to every chunk. SGD-type models need scaled
        features to converge; turn it off for models that need non-negative
        or raw inputs (MultinomialNB) or data already scaled.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, score accuracy on them
        after each epoch and stop when it has not improved by at least
        ``tol`` for ``n_iter_no_change`` epochs; the estimator of the best
        epoch is kept.
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping. Arrays and FeatureStores
        hold out rows by index (stratified by label when possible); an
        iterable of chunks holds out a random share of every chunk, the same
        rows on every pass.
    n_iter_no_change : int, default=3
        Epochs without improvement before stopping.
    tol : float, default=1e-4
        Smallest validation accuracy gain that counts as an improvement.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling, the held-out split and the default estimator.
    verbose : int, default=0
        Print one line per epoch when positive.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator``.
    scaler_ : StandardScaler or None
        The fitted scaler when ``scale=True``, else None.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` was a DataFrame with string column names.
    feature_space_ : dict or None
        ``{"id", "description"}`` of the feature space
        (:mod:`skbottleneck.feature_space`) of the FeatureStore the head was
        trained on, or of the transformer before it in a Pipeline saved by
        :func:`~skbottleneck.save_model`; None for arrays, which carry no
        identity. Features of another space (another backbone, layer,
        pooling, input size, weights or precision) are refused by
        ``predict``, ``score`` and ``partial_fit``, and a Pipeline putting
        the head after a transformer of another space by
        :func:`~skbottleneck.feature_space.check_feature_space`.
    n_iter_ : int
        Epochs run by the last :meth:`fit`, plus one per later
        :meth:`partial_fit` call.
    validation_scores_ : list of float or None
        Validation accuracy after each epoch (early stopping), else None.
    best_validation_score_ : float or None
        Best validation accuracy (early stopping), else None.

    See Also
    --------
    skbottleneck.KerasMLPClassifier : A Keras MLP head that also trains out of core.

    Notes
    -----
    ``fit`` needs several passes over the data (classes discovery when
    ``classes`` is not given and the labels are not known up front, the
    scaler pass, the epochs, validation); a one-shot generator can only be
    used when one pass is enough (``epochs=1``, ``scale=False``,
    ``classes=...``, no early stopping), otherwise a ``ValueError`` says
    which pass needs it. Pass a function returning a new generator instead.

    In :meth:`partial_fit` the scaler (``scale=True``) is updated with every
    chunk before that chunk is used, so a stream can be learned in one pass.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import SGDClassifier
    >>> from sklearn.model_selection import train_test_split
    >>> from skbottleneck import IncrementalClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    >>> clf = IncrementalClassifier(SGDClassifier(random_state=0), chunk_size=256,
    ...                             random_state=0)
    >>> clf.fit(X_train, y_train).score(X_test, y_test) > 0.9
    True

    The same from chunks produced on demand, never all in memory at once (a
    function returning a new iterator can be read once per epoch):

    >>> def chunks():
    ...     for start in range(0, len(X_train), 300):
    ...         yield X_train[start:start + 300], y_train[start:start + 300]
    >>> clf.fit(chunks).score(X_test, y_test) > 0.9
    True
    >>> clf.predict(X_test[:4]).shape, clf.n_iter_
    ((4,), 10)
    """

    _parameter_constraints = {
        **SHARED_CONSTRAINTS,
        "estimator": [HasMethods(["partial_fit"]), None],
        "scale": ["boolean"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        epochs=10,
        chunk_size="auto",
        shuffle=True,
        scale=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=3,
        tol=1e-4,
        random_state=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.epochs = epochs
        self.chunk_size = chunk_size
        self.shuffle = shuffle
        self.scale = scale
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ setup
    def _make_estimator(self, random_state):
        if self.estimator is None:
            return SGDClassifier(**DEFAULT_ESTIMATOR_PARAMS,
                                 random_state=draw_seed(random_state))
        return clone(self.estimator)

    def _check_scale(self):
        if self.scale and get_tags(self.estimator_).input_tags.positive_only:
            raise ValueError(
                f"{type(self.estimator_).__name__} needs non-negative features, but "
                "scale=True standardises them (negative values). Set scale=False."
            )

    def _inner_tags(self):
        try:
            return get_tags(self._make_estimator(random_state=0))
        except Exception:  # not an estimator: fit will say so
            return None

    def _check_params(self):
        return dict(
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            ensure_all_finite=not self.__sklearn_tags__().input_tags.allow_nan,
        )

    def _transform(self, X):
        return X if self.scaler_ is None else self.scaler_.transform(X)

    def _partial_fit_chunk(self, X, y, w):
        kwargs = {"classes": self.classes_}
        if w is not None:
            kwargs["sample_weight"] = w
        try:
            self.estimator_.partial_fit(self._transform(X), y, **kwargs)
        except ValueError as e:  # sklearn's "classes should include all valid labels"
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            if not len(unknown):
                raise
            raise ValueError(
                f"y holds labels not in classes_: {unknown[:10].tolist()!r}; classes_ is "
                f"{self.classes_.tolist()!r}. The classes are fixed by the first call to "
                "partial_fit (classes=...) or by fit: pass every class that will ever be seen."
            ) from e

    # -------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, *, classes=None, sample_weight=None):
        """Fit the estimator for ``epochs`` passes over the training chunks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Training data: an array (with ``y``), a FeatureStore (its labels
            are used when ``y`` is None), a re-iterable of ``(X_chunk,
            y_chunk)`` pairs or a callable returning an iterator of them.
        y : array-like of shape (n_samples,), default=None
            Labels, for an array (or to replace a FeatureStore's labels).
        classes : array-like of shape (n_classes,), default=None
            All classes; found in the data when None (a pass over the labels
            unless they are known up front).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights, for an array X; passed on by keyword.

        Returns
        -------
        self : IncrementalClassifier
            The fitted estimator.
        """
        rng = check_random_state(self.random_state)
        self._rng = rng  # goes on in partial_fit: each call shuffles anew
        self.estimator_ = self._make_estimator(rng)
        self._check_scale()
        source, self.classes_, first_reset = self._fit_source(
            X, y, sample_weight, classes,
            extra_passes=["a pass to fit the scaler (scale=True)"] if self.scale else [],
        )
        train, held_out = self._split(source, rng)
        self.scaler_ = None
        if self.scale:
            self.scaler_ = self._fit_scaler(train, first_reset)
            first_reset = False
        self.n_iter_ = 0
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = self._fit_epochs(train, held_out, rng, first_reset)
        return self

    # the hooks of ChunkedHeadMixin._fit_epochs
    def _fit_epoch(self, source, rng, first_reset, progress=None):
        n_rows = 0
        for X, y, w in self._chunks(source, shuffle=self.shuffle, random_state=draw_seed(rng),
                                    first_reset=first_reset, progress=progress):
            self._partial_fit_chunk(X, y, w)
            n_rows += X.shape[0]
        if n_rows == 0:
            raise ValueError(NO_ROWS)
        return n_rows, ""

    def _validation_score(self, source):
        score = self._score_source(source)
        self.validation_scores_.append(score)
        return score, f", validation accuracy {score:.4f}"

    def _snapshot(self):
        return copy.deepcopy(self.estimator_)

    def _restore(self, state):
        self.estimator_ = state

    def _fit_scaler(self, source, first_reset):
        scaler = None
        for X, _, _ in self._chunks(source, first_reset=first_reset):
            if scaler is None:
                scaler = StandardScaler(with_mean=not sparse.issparse(X))
            _scaler_partial_fit(scaler, X)
        if scaler is None:
            raise ValueError(NO_ROWS)
        return scaler

    def _predict_chunk(self, X):
        return self.estimator_.predict(self._transform(X))

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y=None, *, classes=None, sample_weight=None):
        """Train on the given data for one more pass, keeping what was learned.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            The data of this step (see :meth:`fit`). A one-shot generator is fine.
        y : array-like of shape (n_samples,), default=None
            Labels for an array X.
        classes : array-like of shape (n_classes,), default=None
            All classes that will ever be seen. Required on the first call
            (before any :meth:`fit`); must match ``classes_`` afterwards.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights for an array X.

        Returns
        -------
        self : IncrementalClassifier
            The updated estimator.
        """
        first_call = self._first_partial_fit(classes)
        if first_call:
            rng = self._rng = check_random_state(self.random_state)
            self.estimator_ = self._make_estimator(rng)
            self._check_scale()
            self.classes_ = check_classes(classes)
            self.scaler_ = None
            self.n_iter_ = 0
            self.validation_scores_ = self.best_validation_score_ = None
        else:
            rng = self._rng
        source = self._source(X, y, sample_weight, reset=first_call)
        chunks = self._chunks(
            source, shuffle=self.shuffle, random_state=draw_seed(rng),
            first_reset=first_call and not source.validated,
        )
        for Xc, yc, wc in chunks:
            if self.scale:
                if self.scaler_ is None:
                    self.scaler_ = StandardScaler(with_mean=not sparse.issparse(Xc))
                _scaler_partial_fit(self.scaler_, Xc)
            self._partial_fit_chunk(Xc, yc, wc)
        self.n_iter_ += 1
        return self

    # ---------------------------------------------------------------- predict
    def _map_chunks(self, X, method):
        """Apply ``estimator_.<method>`` chunk by chunk and concatenate."""
        check_is_fitted(self)
        source = self._source(X, None, None, reset=False, require_y=False)
        func = getattr(self.estimator_, method)
        parts = [
            func(self._transform(Xc))
            for Xc, _, _ in self._chunks(source, require_y=False)
        ]
        if not parts:
            raise ValueError("X yielded no rows to predict.")
        return np.concatenate(parts)

    def predict(self, X):
        """Predict class labels, chunk by chunk.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Samples; a FeatureStore or chunk iterable is read in order
            (unshuffled) and never loaded whole.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels, in the order of the rows.
        """
        return self._map_chunks(X, "predict")

    @available_if(_inner_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities, chunk by chunk (if the inner estimator has them).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_``.
        """
        return self._map_chunks(X, "predict_proba")

    @available_if(_inner_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba` (if the inner estimator has it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Samples.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        return self._map_chunks(X, "predict_log_proba")

    @available_if(_inner_has("decision_function"))
    def decision_function(self, X):
        """Confidence scores, chunk by chunk (if the inner estimator has them).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            As returned by the inner estimator's ``decision_function``.
        """
        return self._map_chunks(X, "decision_function")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self._inner_tags()
        if inner is not None:
            tags.input_tags.sparse = inner.input_tags.sparse
            tags.input_tags.allow_nan = inner.input_tags.allow_nan
            tags.input_tags.positive_only = inner.input_tags.positive_only
            tags.non_deterministic = inner.non_deterministic
            if inner.classifier_tags is not None:
                tags.classifier_tags.poor_score = inner.classifier_tags.poor_score
                tags.classifier_tags.multi_class = inner.classifier_tags.multi_class
        return tags
