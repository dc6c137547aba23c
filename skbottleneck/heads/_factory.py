"""The classifier heads by name, and the policy that picks one for a store.

:func:`build_head` builds a head by name, as ``skbottleneck train --head
NAME`` does; :func:`choose_head` decides, as ``train`` does, between the
exact solver (rows read into memory, L-BFGS) and the out-of-core loop, from
the size of the training rows and a memory budget; :func:`fit_head` fits
the head it returns on a store, and :func:`image_pipeline` puts it after a
feature transformer.
"""

import inspect
import os
from typing import NamedTuple

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from ..chunks import parse_bytes
from ..utils import format_bytes
from ._incremental import DEFAULT_ESTIMATOR_PARAMS, IncrementalClassifier
from ._keras_mlp import KerasMLPClassifier

from . import HEADS

__all__ = ["EXACT_C", "EXACT_PARAMS", "HEADS", "HeadChoice", "available_memory", "build_head",
           "choose_head", "exact_logreg", "fit_head", "image_pipeline", "memory_budget"]

#: Parameters of the exact logreg head (``LogisticRegression``) that ``params`` may set.
EXACT_PARAMS = ("C", "class_weight", "max_iter", "tol")
#: Default ``C`` of the exact logreg head (``benchmarks/bench_head_defaults.py``).
EXACT_C = 0.1
#: Bytes of working memory per feature of a training row for the exact solver: the
#: float32 rows read, their standardised copy, and as much again for the solver.
EXACT_BYTES_PER_FEATURE = 4 + 4 + 8


def build_head(name, params=(), *, epochs=None, chunk_size="auto", random_state=0):
    """The classifier head ``name`` with ``params`` set (see ``skbottleneck train --help``).

    Parameters
    ----------
    name : {"logreg", "sgd", "mlp", "keras-mlp"}
        ``"keras-mlp"``: a :class:`~skbottleneck.KerasMLPClassifier`; the
        others an :class:`~skbottleneck.IncrementalClassifier` around a
        log-loss ``SGDClassifier``, a hinge-loss ``SGDClassifier`` or an
        ``MLPClassifier``.
    params : iterable of (str, object), default=()
        Parameters of the head, or of the estimator it wraps (``alpha``
        sets ``estimator__alpha``); checked now, not at ``fit``.
    epochs : int, default=None
        Passes over the training data; None keeps the head's default.
    chunk_size : int or str, default="auto"
        Rows per chunk, or a size in bytes (``"64MiB"``), or ``"auto"``
        (1,024 rows, fewer when wider than 64 MiB); see the heads.
    random_state : int, default=0
        Seed of the head and of the estimator it wraps.

    Returns
    -------
    head : IncrementalClassifier or KerasMLPClassifier
        Not fitted.

    Raises
    ------
    ValueError
        An unknown head name, a parameter the head does not have, or a
        value it refuses.

    Examples
    --------
    >>> head = build_head("sgd", [("alpha", 1e-3)], epochs=3)
    >>> head.epochs, head.estimator.loss, head.estimator.alpha
    (3, 'hinge', 0.001)
    """
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; the heads are: {', '.join(HEADS)}.")
    if name == "keras-mlp":
        head = KerasMLPClassifier()
        defaults = {"random_state": random_state, "epochs": epochs, "verbose": 0,
                    "chunk_size": chunk_size}
    else:
        estimator = {
            "logreg": lambda: SGDClassifier(**DEFAULT_ESTIMATOR_PARAMS, random_state=random_state),
            "sgd": lambda: SGDClassifier(loss="hinge", random_state=random_state),
            "mlp": lambda: MLPClassifier(random_state=random_state),
        }[name]()
        head = IncrementalClassifier(estimator)
        defaults = {"chunk_size": chunk_size, "random_state": random_state, "epochs": epochs,
                    "verbose": 0}
    valid = head.get_params()
    head.set_params(**{k: v for k, v in defaults.items() if k in valid and v is not None})
    settable = {}
    for key, value in params:
        if key in valid:
            settable[key] = value
        elif f"estimator__{key}" in valid:
            settable[f"estimator__{key}"] = value
        else:
            names = sorted(k for k in valid if k != "estimator" and "__" not in k)
            names += sorted(k.split("__", 1)[1] for k in valid if k.startswith("estimator__"))
            raise ValueError(f"the {name} head has no parameter {key!r}; its parameters are: "
                             f"{', '.join(dict.fromkeys(names))}.")
    try:
        head.set_params(**settable)
        # check the values now rather than after minutes of loading
        for est in (head, getattr(head, "estimator", None)):
            if est is not None and hasattr(est, "_validate_params"):
                est._validate_params()
    except ValueError as e:
        raise ValueError(f"invalid --param for the {name} head: {e}") from e
    return head


class HeadChoice(NamedTuple):
    """What :func:`choose_head` decided: the head, its solver, and why."""

    #: Not fitted: a ``Pipeline`` [StandardScaler, LogisticRegression] for
    #: ``"exact"``, else what :func:`build_head` returns.
    head: object
    #: ``"exact"`` (the rows are read into memory) or ``"sgd"`` (out of core).
    solver: str
    #: A phrase for people, e.g. ``"exact (L-BFGS in memory: 39.1 MiB of a 64.0 MiB budget)"``.
    reason: str


def choose_head(data, head="logreg", params=(), *, epochs=None, chunk_size="auto",
                memory_budget="auto", random_state=0):
    """The head ``skbottleneck train`` trains on ``data``: exact when it fits in memory.

    ``head="logreg"`` gets the exact solver (a StandardScaler and a
    ``LogisticRegression(C=0.1)`` fitted by L-BFGS on the rows read into
    memory, :func:`exact_logreg`) when its training rows fit in
    ``memory_budget`` and neither ``epochs`` nor a parameter that only the
    SGD head has asks for the out-of-core loop; otherwise, and for every
    other head, :func:`build_head` (out of core, chunk by chunk).

    Parameters
    ----------
    data : FeatureStore, StoreSubset, array-like or tuple of int
        The training rows (anything with ``len`` and ``n_features``, or an
        array), or their shape ``(n_rows, n_features)``. Nothing is read.
    head : {"logreg", "sgd", "mlp", "keras-mlp"}, default="logreg"
        The head's name (see :func:`build_head`).
    params : iterable of (str, object) or dict, default=()
        Parameters of the head.
    epochs : int, default=None
        Passes over the data of the out-of-core head; given, it asks for it.
    chunk_size : int or str, default="auto"
        Rows per chunk of the out-of-core head (see :func:`build_head`).
    memory_budget : int, str or "auto", default="auto"
        Bytes the exact solver may use (an int or a size such as
        ``"2GiB"``); ``"auto"``: :func:`memory_budget`.
    random_state : int, default=0
        Seed of the head.

    Returns
    -------
    choice : HeadChoice
        ``(head, solver, reason)``; the head is not fitted (see :func:`fit_head`).

    Raises
    ------
    ValueError
        An unknown head, a parameter it does not have, a value it refuses,
        or a memory budget that is not a size.

    Examples
    --------
    >>> choice = choose_head((2000, 1280), memory_budget="64MiB")
    >>> choice.solver, choice.reason
    ('exact', 'exact (L-BFGS in memory: 39.1 MiB of a 64.0 MiB budget)')
    >>> [name for name, _ in choice.head.steps]
    ['scale', 'head']
    >>> choose_head((2000, 1280), memory_budget="16MiB").head.estimator.average
    True
    >>> choose_head((2000, 1280), epochs=5).reason
    'SGD out of core (epochs given)'
    """
    n_rows, n_features = _shape(data)
    params = list(params.items() if isinstance(params, dict) else params)
    solver, reason = _solver(head, params, epochs, n_rows * n_features * EXACT_BYTES_PER_FEATURE,
                             memory_budget)
    if solver == "exact":
        model = exact_logreg(params, random_state=random_state)
    else:
        model = build_head(head, params, epochs=epochs, chunk_size=chunk_size,
                           random_state=random_state)
    return HeadChoice(model, solver, reason)


def _shape(data):
    if isinstance(data, tuple) and len(data) == 2 and all(
            isinstance(n, (int, np.integer)) for n in data):
        return int(data[0]), int(data[1])
    if hasattr(data, "n_features"):
        return len(data), int(data.n_features)
    shape = np.shape(data)
    if len(shape) != 2:
        raise ValueError("choose_head: expected a store, a 2-D array or a shape (n_rows, "
                         f"n_features); got {type(data).__name__} of shape {shape}.")
    return shape


def _solver(head, params, epochs, need, budget):
    if head != "logreg":
        return "sgd", "out of core"
    if epochs is not None:
        return "sgd", "SGD out of core (epochs given)"
    sgd_only = [key for key, _ in params if key not in EXACT_PARAMS]
    if sgd_only:
        return "sgd", f"SGD out of core (parameter {sgd_only[0]} is one only SGD has)"
    budget = memory_budget(budget)
    if need <= budget:
        return "exact", (f"exact (L-BFGS in memory: {format_bytes(need)} of a "
                         f"{format_bytes(budget)} budget)")
    return "sgd", (f"SGD out of core (the rows in memory would take {format_bytes(need)}, over "
                   f"the {format_bytes(budget)} budget)")


def exact_logreg(params=(), *, random_state=0):
    """The exact logreg head: a ``Pipeline`` [StandardScaler, LogisticRegression(C=0.1)].

    Parameters
    ----------
    params : iterable of (str, object), default=()
        Parameters of the ``LogisticRegression``, among :data:`EXACT_PARAMS`.
    random_state : int, default=0
        Seed of the ``LogisticRegression`` (used by none of its L-BFGS fits;
        kept in the saved model).

    Returns
    -------
    head : sklearn.pipeline.Pipeline
        Not fitted; steps ``scale`` and ``head``.

    Raises
    ------
    ValueError
        A parameter it does not have, or a value it refuses.

    Examples
    --------
    >>> exact_logreg([("C", 1.0)]).named_steps["head"].C
    1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classifier = LogisticRegression(C=EXACT_C, max_iter=1000, random_state=random_state)
    settable = dict(params)
    unknown = sorted(set(settable) - set(EXACT_PARAMS))
    if unknown:
        raise ValueError(f"the exact logreg head has no parameter {unknown[0]!r}; its parameters "
                         f"are: {', '.join(EXACT_PARAMS)}.")
    try:
        classifier.set_params(**settable)
        classifier._validate_params()
    except ValueError as e:
        raise ValueError(f"invalid --param for the logreg head: {e}") from e
    return Pipeline([("scale", StandardScaler()), ("head", classifier)])


def fit_head(head, data, y=None):
    """Fit ``head`` on ``data``: in memory for an exact head, chunk by chunk otherwise.

    Parameters
    ----------
    head : estimator
        A head of :func:`choose_head` or :func:`build_head` (or any classifier).
    data : FeatureStore, StoreSubset or array-like
        The training rows; a store gives its own labels.
    y : array-like, default=None
        Labels of an array; None for a store.

    Returns
    -------
    head : estimator
        ``head``, fitted. A head with ``partial_fit`` learns the store out
        of core (``classes=`` all the labels of ``data``); any other reads
        its rows into memory as float32.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.random.default_rng(0).normal(size=(40, 8)), np.repeat([0, 1], 20)
    >>> fit_head(choose_head(X).head, X, y).predict(X[:2]).shape
    (2,)
    """
    is_source = hasattr(data, "n_features") and hasattr(data, "read_rows")
    if is_source and not hasattr(head, "partial_fit"):
        return head.fit(*data.read_rows(np.arange(len(data)), dtype=np.float32))
    if not is_source:
        return head.fit(data, y)
    kwargs = {}
    try:
        if "classes" in inspect.signature(head.fit).parameters:
            kwargs["classes"] = np.unique(np.asarray(data.labels))
    except (TypeError, ValueError):
        pass
    return head.fit(data, **kwargs)


def image_pipeline(transformer, head):
    """A ``Pipeline`` that predicts images: ``features`` (the transformer), then the head.

    An exact head ([scale, head]) is flattened, so that ``named_steps["head"]``
    is the classifier.

    Examples
    --------
    >>> from skbottleneck import CNNFeatureTransformer
    >>> model = image_pipeline(CNNFeatureTransformer("mobilenet_v2"), exact_logreg())
    >>> [name for name, _ in model.steps]
    ['features', 'scale', 'head']
    """
    steps = head.steps if isinstance(head, Pipeline) else [("head", head)]
    return Pipeline([("features", transformer), *steps])


def memory_budget(value="auto"):
    """Bytes the exact solver may use: ``value`` as a size, or a quarter of the memory available.

    Parameters
    ----------
    value : int, str or "auto", default="auto"
        Bytes, or a size such as ``"2GiB"``; ``"auto"`` (or None): a quarter
        of :func:`available_memory`, at least 256 MiB.

    Examples
    --------
    >>> memory_budget("1GiB")
    1073741824
    >>> memory_budget("auto") > 0
    True
    """
    if value is None or str(value).strip().lower() == "auto":
        return max(256 * 2**20, available_memory() // 4)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    try:
        return parse_bytes(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"memory_budget: expected a size such as 2GiB or auto; got {value!r}"
                         ) from e


def available_memory():
    """Bytes of memory available to a new allocation now (Linux: MemAvailable), else 1 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**30
