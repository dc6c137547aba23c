"""A Keras multilayer perceptron head with the scikit-learn classifier API.

:class:`KerasMLPClassifier` trains a small dense network (Keras 3,
TensorFlow backend) on bottleneck features held in memory, in a
:class:`~skbottleneck.FeatureStore` or in any iterable of chunks, streaming
chunks into a compiled training step, never loading a store whole.

Importing this module does not import TensorFlow; the first ``fit`` does.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..utils import draw_seed
from ._base import NO_ROWS, SHARED_CONSTRAINTS, ChunkedHeadMixin, check_classes
from ._keras_network import ACTIVATIONS, OPTIMIZERS, build_network, hidden_sizes

__all__ = ["KerasMLPClassifier"]

_EPS = 1e-7  # Keras' epsilon: probabilities are clipped to [eps, 1 - eps] in the loss


class KerasMLPClassifier(ChunkedHeadMixin, ClassifierMixin, BaseEstimator):
    """Multilayer perceptron classifier in Keras, trained in memory or out of core.

    A stack of ``Dense`` layers (with optional ``Dropout``) ending in a
    softmax over the classes, trained with sparse categorical cross-entropy.
    ``fit`` accepts an array, a :class:`~skbottleneck.FeatureStore` or an
    iterable of ``(X_chunk, y_chunk)`` pairs: chunks of ``chunk_size`` rows
    are fed to a compiled TensorFlow step that runs the mini-batches of a
    chunk in one call, so only a chunk is in memory at a time and the
    per-batch Python overhead of ``model.fit``/``train_on_batch`` is avoided.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(256,)
        Units of each hidden layer; ``()`` gives a softmax (multinomial
        logistic) regression.
    activation : {"relu", "tanh", "sigmoid", "elu", "selu", "gelu", "silu", \
"swish", "linear"}, default="relu"
        Activation of the hidden layers.
    dropout : float in [0, 1), default=0.0
        Dropout rate after each hidden layer (during training only).
    learning_rate : float, default=1e-3
        Learning rate of the optimizer.
    optimizer : {"adam", "adamw", "nadam", "rmsprop", "sgd", "adagrad"}, default="adam"
        Keras optimizer, with its default settings apart from the learning rate.
    epochs : int, default=20
        Passes over the training data in :meth:`fit`.
    batch_size : int, default=128
        Rows per gradient step.
    chunk_size : int or str, default="auto"
        Chunk read at a time from an array or a FeatureStore (chunks of an
        iterable keep their own size); each chunk is one call of the compiled
        training step: the unit of memory use. An int is a number of rows; a
        size such as ``"64MiB"`` is the most bytes of features a chunk holds
        (as many rows as fit, rounded down to a multiple of ``batch_size``,
        at least one batch); ``"auto"`` is 1,024 rows, or fewer so that a
        chunk is at most 64 MiB (128 rows of un-pooled ResNet50 features
        with ``batch_size=128``). Working memory is about two chunks (the
        chunk read and its copy as a tensor) plus the network, its gradients
        and the optimizer's state (Adam: three times the weights).
    shuffle : bool, default=True
        Shuffle the rows every epoch (as :class:`~skbottleneck.IncrementalClassifier`
        does: whole arrays; chunk order and rows within chunks for a store;
        rows within chunks for an iterable).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, compute the validation
        loss after each epoch (weighted like the training loss), stop when it has not decreased by at least
        ``tol`` for ``n_iter_no_change`` epochs, and restore the weights of
        the best epoch (like ``keras.callbacks.EarlyStopping(
        restore_best_weights=True)`` on ``val_loss``).
    validation_fraction : float, default=0.1
        Share of rows held out when ``early_stopping=True``.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    tol : float, default=1e-4
        Smallest decrease of the validation loss that counts as improvement.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, ``{label: weight}``; classes not
        listed weigh 1. ``"balanced"`` weighs each class by
        ``n_samples / (n_classes * count)`` (as scikit-learn does), from the
        training labels: known without a pass for arrays and a
        FeatureStore, one extra pass over the labels for a chunk iterable.
        Multiplies ``sample_weight``. ``partial_fit`` takes a dict only.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, the dropout masks, the shuffling and
        the held-out split. With an int, two fits give the same model (on a
        CPU). Keras' global seeds are never touched.
    verbose : int, default=0
        Print one line per epoch when positive.

    Attributes
    ----------
    model_ : keras.Model
        The trained network (a ``keras.Sequential``); its output is the
        class probabilities.
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
    history_ : dict of str to list of float
        Per epoch, like ``keras.callbacks.History.history``: ``"loss"`` and
        ``"accuracy"`` (training, with dropout), and with early stopping
        ``"val_loss"`` and ``"val_accuracy"``. :meth:`partial_fit` appends.
    n_iter_ : int
        Epochs run by the last :meth:`fit`, plus one per later :meth:`partial_fit`.

    See Also
    --------
    skbottleneck.IncrementalClassifier : Out-of-core training of scikit-learn models.
    sklearn.neural_network.MLPClassifier : scikit-learn's own MLP.

    Notes
    -----
    Pickling (``pickle``, ``joblib.dump``, ``copy.deepcopy``) stores the
    model's variables (weights, dropout seed states) and the optimizer state
    as NumPy arrays, not the Keras model; unpickling rebuilds the network
    from the parameters and sets them back, so that a model round-trips
    (and training goes on identically) without any global Keras patching.

    The features are not scaled: put a ``StandardScaler`` in front for
    arrays whose columns have very different scales.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from skbottleneck import KerasMLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X / 16, y, random_state=0)
    >>> clf = KerasMLPClassifier(hidden_layer_sizes=(64,), random_state=0)
    >>> clf.fit(X_train, y_train).score(X_test, y_test) > 0.9
    True
    >>> clf.predict_proba(X_test[:2]).shape
    (2, 10)
    >>> sorted(clf.history_), len(clf.history_["loss"])
    (['accuracy', 'loss'], 20)
    """

    _parameter_constraints = {
        **SHARED_CONSTRAINTS,
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(ACTIVATIONS)],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(OPTIMIZERS)],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(256,),
        activation="relu",
        dropout=0.0,
        learning_rate=1e-3,
        optimizer="adam",
        epochs=20,
        batch_size=128,
        chunk_size="auto",
        shuffle=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        tol=1e-4,
        class_weight=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.epochs = epochs
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self):
        return dict(accept_sparse=False, dtype=[np.float32, np.float64])

    # ---------------------------------------------------------------- network
    def _build(self, n_features, n_classes, seed):
        """Create ``model_``, its optimizer and the compiled training step."""
        self.model_, self._optimizer, self._train_chunk = build_network(
            n_features, n_classes, seed, hidden_layer_sizes=self.hidden_layer_sizes,
            activation=self.activation, dropout=self.dropout, optimizer=self.optimizer,
            learning_rate=self.learning_rate,
        )

    def _encode(self, y):
        """Labels -> int32 positions in ``classes_`` (unknown labels raise)."""
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        bad = self.classes_[idx] != y
        if np.any(bad):
            raise ValueError(
                f"y contains labels not in classes_: {np.unique(y[bad])[:10]!r}; "
                f"classes_ is {self.classes_!r}."
            )
        return idx.astype(np.int32)

    def _proba(self, X):
        """Class probabilities (float64, rows sum to 1) of a validated chunk."""
        proba = np.asarray(self.model_(np.asarray(X, dtype=np.float32), training=False),
                           dtype=np.float64)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    # ---------------------------------------------------------------- training
    def _chunk_multiple(self):
        return self.batch_size

    def _epoch(self, source, rng, first_reset, progress=None):
        """One pass of training steps over ``source``; appends its loss and accuracy."""
        chunks = self._chunks(
            source, shuffle=self.shuffle, random_state=draw_seed(rng), first_reset=first_reset,
            progress=progress,
        )
        loss = correct = 0.0
        n_rows = 0
        for X, y, w in chunks:
            if getattr(self, "model_", None) is None:
                self._build(X.shape[1], len(self.classes_), self._init_seed)
            X = np.ascontiguousarray(X, dtype=np.float32)
            idx = self._encode(y)
            weights = self._class_weights_[idx]
            if w is not None:
                weights = weights * np.asarray(w, dtype=np.float32)
            chunk_loss, chunk_correct = self._train_chunk(X, idx, weights, self.batch_size)
            loss += float(chunk_loss)
            correct += float(chunk_correct)
            n_rows += X.shape[0]
        if n_rows == 0:
            raise ValueError(NO_ROWS)
        self.history_["loss"].append(loss / n_rows)
        self.history_["accuracy"].append(correct / n_rows)
        return n_rows

    def _evaluate(self, source):
        """Loss and accuracy on a held-out source, chunk by chunk.

        The loss is weighted as in training (class and sample weights, a
        weighted mean), so that early stopping keeps the best epoch of the
        objective being trained; the accuracy is not weighted.
        """
        loss = correct = total_weight = 0.0
        n_rows = 0
        for X, y, w in self._chunks(source):
            proba = self._proba(X)
            idx = self._encode(y)
            weights = self._class_weights_[idx].astype(np.float64)
            if w is not None:
                weights = weights * np.asarray(w, dtype=np.float64)
            p = np.clip(proba[np.arange(len(idx)), idx], _EPS, 1 - _EPS)
            loss -= float(np.sum(weights * np.log(p)))
            total_weight += float(np.sum(weights))
            correct += float(np.sum(np.argmax(proba, axis=1) == idx))
            n_rows += len(idx)
        return loss / max(total_weight, _EPS), correct / max(n_rows, 1)

    def _set_classes(self, classes):
        if len(classes) < 2:
            raise ValueError(
                "KerasMLPClassifier needs at least 2 classes to learn from; got 1 class: "
                f"{classes!r}."
            )
        self.classes_ = classes

    def _class_weight_vector(self, source):
        """float32 weight of each class of ``classes_`` from ``class_weight``."""
        weights = np.ones(len(self.classes_), dtype=np.float32)
        if self.class_weight is None:
            return weights
        if isinstance(self.class_weight, str):  # "balanced"
            from sklearn.utils.class_weight import compute_class_weight

            labels = source.known_labels()
            if labels is None:  # a chunk iterable: one pass over its labels
                labels = np.concatenate([y for _, y, _ in self._chunks(source)])
            return compute_class_weight("balanced", classes=self.classes_,
                                        y=np.asarray(labels)).astype(np.float32)
        known = set(self.classes_.tolist())
        unknown = [c for c in self.class_weight if c not in known]
        if unknown:
            raise ValueError(f"class_weight names classes not in the data: {unknown!r}; "
                             f"classes_ is {self.classes_!r}.")
        for i, c in enumerate(self.classes_.tolist()):
            weights[i] = self.class_weight.get(c, 1.0)
        return weights

    def _reset(self, rng):
        hidden_sizes(self.hidden_layer_sizes)  # fail early on a bad value
        self._rng = rng  # goes on in partial_fit: each call shuffles anew
        self.model_ = None
        self._init_seed = draw_seed(rng)
        self.n_iter_ = 0
        self.history_ = {"loss": [], "accuracy": []}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, classes=None, sample_weight=None):
        """Train a new network for ``epochs`` passes over the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Training data: an array (with ``y``), a FeatureStore (its labels
            are used when ``y`` is None), a re-iterable of ``(X_chunk,
            y_chunk)`` pairs or a callable returning an iterator of them.
        y : array-like of shape (n_samples,), default=None
            Labels for an array X (or replacing a FeatureStore's labels).
        classes : array-like of shape (n_classes,), default=None
            All classes; found in the data when None.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row in the loss, for an array X (chunk iterables
            may yield ``(X, y, sample_weight)`` triples instead).

        Returns
        -------
        self : KerasMLPClassifier
            The fitted estimator.
        """
        rng = check_random_state(self.random_state)
        self._reset(rng)
        source, classes, first_reset = self._fit_source(X, y, sample_weight, classes)
        self._set_classes(classes)
        self._class_weights_ = self._class_weight_vector(source)
        train, held_out = self._split(source, rng)
        if held_out is not None:
            self.history_.update(val_loss=[], val_accuracy=[])
        self._fit_epochs(train, held_out, rng, first_reset)
        return self

    # the hooks of ChunkedHeadMixin._fit_epochs
    def _fit_epoch(self, source, rng, first_reset, progress=None):
        n_rows = self._epoch(source, rng, first_reset, progress)
        return n_rows, f", loss {self.history_['loss'][-1]:.4f}"

    def _validation_score(self, source):
        val_loss, val_accuracy = self._evaluate(source)
        self.history_["val_loss"].append(val_loss)
        self.history_["val_accuracy"].append(val_accuracy)
        return -val_loss, f", val_loss {val_loss:.4f}, val_accuracy {val_accuracy:.4f}"

    def _snapshot(self):
        return self.model_.get_weights()

    def _restore(self, state):
        self.model_.set_weights(state)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, *, classes=None, sample_weight=None):
        """Train for one pass over the given data, creating the network if needed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            The data of this step (see :meth:`fit`). A one-shot generator is fine.
        y : array-like of shape (n_samples,), default=None
            Labels for an array X.
        classes : array-like of shape (n_classes,), default=None
            All classes that will ever be seen: required on the first call,
            must match ``classes_`` afterwards.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row in the loss.

        Returns
        -------
        self : KerasMLPClassifier
            The updated estimator.
        """
        if isinstance(self.class_weight, str):
            raise ValueError(
                "class_weight='balanced' needs the labels of the whole training set, which "
                "partial_fit does not see; pass a dict, e.g. from "
                "sklearn.utils.class_weight.compute_class_weight."
            )
        first_call = self._first_partial_fit(classes)
        if first_call:
            rng = check_random_state(self.random_state)
            self._reset(rng)
            self._set_classes(check_classes(classes))
            self._class_weights_ = self._class_weight_vector(None)
        source = self._source(X, y, sample_weight, reset=first_call)
        self._epoch(source, self._rng, first_call and not source.validated)
        self.n_iter_ += 1
        return self

    # -------------------------------------------------------------- inference
    def predict_proba(self, X):
        """Class probabilities, chunk by chunk.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Samples; a FeatureStore or chunk iterable is read in order and
            never loaded whole.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities (float64), columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        source = self._source(X, reset=False, require_y=False)
        parts = [self._proba(Xc) for Xc, _, _ in self._chunks(source, require_y=False)]
        if not parts:
            raise ValueError("X yielded no rows to predict.")
        return np.concatenate(parts)

    def predict(self, X):
        """Predict class labels, chunk by chunk.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), FeatureStore or iterable of chunks
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The most probable class of each row.
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _predict_chunk(self, X):
        return self.classes_[np.argmax(self._proba(X), axis=1)]

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        optimizer = state.pop("_optimizer", None)
        state.pop("_train_chunk", None)
        if model is not None:
            # all variables, dropout seed-generator states included
            state["_weights"] = [np.asarray(v) for v in model.variables]
            state["_optimizer_state"] = [np.asarray(v) for v in optimizer.variables]
            state["_n_features_built"] = int(model.input_shape[-1])
        elif "classes_" in state:
            state["model_"] = None
        return state

    def __setstate__(self, state):
        state = dict(state)
        weights = state.pop("_weights", None)
        optimizer_state = state.pop("_optimizer_state", None)
        n_features = state.pop("_n_features_built", None)
        super().__setstate__(state)
        if weights is not None:
            self._build(n_features, len(self.classes_), self._init_seed)
            for variable, value in zip(self.model_.variables, weights):
                variable.assign(value)
            for variable, value in zip(self._optimizer.variables, optimizer_state):
                variable.assign(value)
