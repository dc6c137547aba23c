"""One precision from the CNN to the head: a Pipeline's steps checked together.

int8 and float32 features are different feature spaces (a head trained on
one loses points on the other, see ``bench_int8_accuracy``). A store knows
its precision (its fingerprint), a fitted transformer knows its own
(``precision_``), and a head trained on a store records the store's
(``feature_precision_``). :func:`check_pipeline_precision` refuses a model
that puts a head of one precision after a transformer of the other; the
package runs it where it is handed a fitted model (``load_model``,
``predict_on_cluster``, ``report``, the CLI), and a user can call it on a
Pipeline they assemble.
"""

from ._fingerprint import precision_mismatch, store_precision
from ._transformer import CNNFeatureTransformer

__all__ = ["check_pipeline_precision"]


def _steps(model):
    """``(name, step)`` of a model, nested Pipelines flattened; a bare estimator is one step."""
    model = getattr(model, "best_estimator_", model)
    steps = getattr(model, "steps", None)
    if steps is None:
        yield type(model).__name__.lower(), model
        return
    for name, step in steps:
        if hasattr(step, "steps"):
            yield from _steps(step)
        else:
            yield name, step


def check_pipeline_precision(model, X=None):
    """Refuse a model whose head was trained on features of the other precision.

    The features a head sees come from the last
    :class:`CNNFeatureTransformer` before it, or, with none, from ``X``
    when it is a FeatureStore. A head that recorded a
    ``feature_precision_`` (one trained on a FeatureStore) must have been
    trained on features of that precision.

    Parameters
    ----------
    model : estimator
        A Pipeline, a search whose ``best_estimator_`` is one, or a head.
    X : FeatureStore or anything, default=None
        The data the model is about to be applied to; only a store's
        precision is read.

    Returns
    -------
    model : estimator
        ``model`` itself, when the precisions agree.

    Raises
    ------
    ValueError
        When a head's ``feature_precision_`` is not the precision of the
        features it would be given.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skbottleneck import CNNFeatureTransformer, IncrementalClassifier
    >>> head = IncrementalClassifier()
    >>> head.feature_precision_ = "int8"  # as if trained on an int8 FeatureStore
    >>> check_pipeline_precision(make_pipeline(CNNFeatureTransformer("resnet50"), head))
    Traceback (most recent call last):
    ...
    ValueError: The head 'incrementalclassifier' (IncrementalClassifier) was trained on int8 ...
    """
    ours = store_precision(X)
    source = f"the FeatureStore {getattr(X, 'path', X)!s}"
    for name, step in _steps(model):
        if isinstance(step, CNNFeatureTransformer):
            ours = getattr(step, "precision_", step.precision)
            source = f"the step {name!r} before it"
            continue
        theirs = getattr(step, "feature_precision_", None)
        if theirs is not None and ours is not None and theirs != ours:
            raise precision_mismatch(f"The head {name!r} ({type(step).__name__})", theirs,
                                     ours, source)
    return model
