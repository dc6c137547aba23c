"""Which model computed a set of features: one identity for a feature space.

Features are comparable only when one model computed them: the same
backbone, weights, layer, pooling, input size, preprocessing and precision.
A head trained on ResNet50 features is wrong on ResNet101 ones although
both have 2,048 columns, and one trained on float32 features loses points
on int8 ones. A :class:`FeatureSpace` names such a model:

- ``id``, a digest of the transformer's fingerprint (the JSON-able dict of
  everything that determines the features,
  :func:`skbottleneck.extraction.fingerprint`), so two spaces are the same
  exactly when their ids are;
- ``description``, a short line a person can read ("resnet50 (imagenet),
  avg pooling, 224x224, float32").

Who carries one:

- a :class:`~skbottleneck.FeatureStore` (the fingerprint it records) and any
  row source with a ``feature_space`` attribute;
- a fitted :class:`~skbottleneck.CNNFeatureTransformer` (the space of the
  features it computes, computed from its parameters);
- a head (``feature_space_``) trained on a store, or placed after a
  transformer in a Pipeline that :func:`check_feature_space` was asked to
  record (``save_model`` and ``skbottleneck train`` do).

NumPy arrays carry none: a head trained or applied on arrays is not checked.

This module imports nothing of the package's but its lowest room, so that
every room (the store, the heads, the model files) can ask the same
question of the same code.
"""

import dataclasses
import hashlib
import json

__all__ = ["FeatureSpace", "FeatureSpaceError", "check_feature_space", "feature_space_of",
           "pipeline_steps", "space_of_head"]


@dataclasses.dataclass(frozen=True)
class FeatureSpace:
    """The identity of a feature space.

    Parameters
    ----------
    id : str
        16 hex digits of the SHA-256 of the fingerprint's canonical JSON.
    description : str
        Backbone, weights, layer, pooling, input size and precision, in words.

    Examples
    --------
    >>> space = FeatureSpace.from_fingerprint({
    ...     "backbone": "resnet50", "weights": "imagenet:keras-3.15.1", "layer": None,
    ...     "pooling": "avg", "input_size": [224, 224], "dtype": "float32"})
    >>> space.description
    'resnet50 (imagenet), avg pooling, 224x224, float32'
    >>> space == FeatureSpace.from_dict(space.as_dict())
    True
    """

    id: str
    description: str

    @classmethod
    def from_fingerprint(cls, fingerprint):
        """The space of the features a model of this fingerprint computes."""
        canonical = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
        return cls(hashlib.sha256(canonical.encode()).hexdigest()[:16], describe(fingerprint))

    @classmethod
    def from_dict(cls, record):
        """Read back :meth:`as_dict` (what a fitted head keeps in ``feature_space_``)."""
        return cls(str(record["id"]), str(record["description"]))

    def as_dict(self):
        """``{"id", "description"}``: plain strings, which a ``.skops`` file trusts."""
        return {"id": self.id, "description": self.description}

    def __str__(self):
        return f"{self.description} [feature space {self.id}]"


def describe(fingerprint):
    """A short line naming what computed the features of ``fingerprint``."""
    weights = fingerprint.get("weights")
    weights = "unseeded random weights" if weights is None else str(weights).split(":")[0]
    if weights == "random":
        weights = f"random weights, seed {str(fingerprint['weights']).split(':')[1]}"
    parts = [f"{fingerprint.get('backbone')} ({weights})"]
    if fingerprint.get("layer") is not None:
        parts.append(f"layer {fingerprint['layer']}")
    pooling = fingerprint.get("pooling")
    parts.append("no pooling" if pooling is None else f"{pooling} pooling")
    size = fingerprint.get("input_size")
    if size:
        parts.append("x".join(str(s) for s in size))
    parts.append(fingerprint.get("precision", "float32"))
    return ", ".join(parts)


class FeatureSpaceError(ValueError):
    """Features of one space given to something that learned from, or computes, another."""


def feature_space_of(X):
    """The :class:`FeatureSpace` of a row source, or None when it does not say.

    A store gives the one of the fingerprint it records; an object with a
    ``feature_space`` attribute gives that; arrays, lists and stores
    written without a fingerprint give None.
    """
    space = getattr(X, "feature_space", None)
    if isinstance(space, FeatureSpace):
        return space
    meta = getattr(X, "metadata", None)
    theirs = meta.get("fingerprint") if isinstance(meta, dict) else None
    return None if theirs is None else FeatureSpace.from_fingerprint(json.loads(theirs))


def space_of_head(head):
    """The space a fitted head was trained on (its ``feature_space_``), or None."""
    record = getattr(head, "feature_space_", None)
    return None if record is None else FeatureSpace.from_dict(record)


def mismatch(who, trained, given, source):
    """The error of ``who``, trained on ``trained`` features, given ``given`` ones by ``source``."""
    hint = ""
    if trained.description.rsplit(", ", 1)[-1] != given.description.rsplit(", ", 1)[-1]:
        hint = (" (int8 and float32 features of one CNN are different spaces too: "
                "transformer_from_store(store) rebuilds the transformer of a training store)")
    return FeatureSpaceError(
        f"{who} was trained on features of {trained}, but {source} gives features of "
        f"{given}: a head trained on one feature space is wrong on another{hint}. Extract "
        f"the images with the model it was trained on, or train it on these features.")


def pipeline_steps(model):
    """``(name, step)`` of a model, nested Pipelines flattened; a bare estimator is one step."""
    model = getattr(model, "best_estimator_", model)
    steps = getattr(model, "steps", None)
    if steps is None:
        yield type(model).__name__.lower(), model
        return
    for name, step in steps:
        if hasattr(step, "steps"):
            yield from pipeline_steps(step)
        else:
            yield name, step


def _computes(step):
    """The space a fitted feature transformer computes (None for other steps)."""
    if not hasattr(step, "fingerprint_") or not hasattr(step, "transform"):
        return None
    return getattr(step, "feature_space_", None)


def check_feature_space(model, X=None, *, record=False):
    """Refuse a model whose head would see features of another space than it learned.

    The features a head sees come from the last fitted feature transformer
    before it in the Pipeline, or, with none, from ``X`` (a store or any
    row source that names its space). A head that recorded a
    ``feature_space_`` must see features of that space.

    Parameters
    ----------
    model : estimator
        A Pipeline, a search whose ``best_estimator_`` is one, or a head.
    X : FeatureStore, row source or anything, default=None
        The data the model is about to be applied to; only its space is read.
    record : bool, default=False
        Also record, in each step after a transformer that has no
        ``feature_space_`` yet, the transformer's space: it learned inside
        this Pipeline, so from that space. ``save_model`` and
        ``skbottleneck train`` record.

    Returns
    -------
    model : estimator
        ``model`` itself, when every head agrees with its features.

    Raises
    ------
    FeatureSpaceError
        Naming the head, both spaces and where the features come from.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbottleneck import IncrementalClassifier
    >>> head = IncrementalClassifier()
    >>> head.feature_space_ = {"id": "0123456789abcdef", "description": "resnet50 (imagenet), ..."}
    >>> class Store:  # a row source of another space, as a FeatureStore of ResNet101 features
    ...     feature_space = FeatureSpace("fedcba9876543210", "resnet101 (imagenet), ...")
    >>> check_feature_space(make_pipeline(StandardScaler(), head), Store())
    Traceback (most recent call last):
    ...
    skbottleneck.feature_space.FeatureSpaceError: The head 'incrementalclassifier' ...
    """
    ours = feature_space_of(X)
    source = f"the row source {getattr(X, 'path', X)!s}"
    after_transformer = False  # a step that learned inside this Pipeline, from `ours`
    for name, step in pipeline_steps(model):
        computed = _computes(step)
        if computed is not None:
            ours, source, after_transformer = computed, f"the step {name!r} before it", True
            continue
        theirs = space_of_head(step)
        if theirs is None:
            if record and after_transformer and hasattr(step, "fit"):
                step.feature_space_ = ours.as_dict()
            continue
        if ours is not None and theirs.id != ours.id:
            raise mismatch(f"The head {name!r} ({type(step).__name__})", theirs, ours, source)
    return model
