"""The classifier heads by name, as ``skbottleneck train --head NAME`` builds them."""

from sklearn.linear_model import SGDClassifier
from sklearn.neural_network import MLPClassifier

from ._incremental import DEFAULT_ESTIMATOR_PARAMS, IncrementalClassifier
from ._keras_mlp import KerasMLPClassifier

from . import HEADS

__all__ = ["HEADS", "build_head"]


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
