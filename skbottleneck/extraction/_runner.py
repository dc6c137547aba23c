"""The CNN stage: a built Keras model and its compiled call, one per fingerprint.

:class:`CNNRunner` builds the backbone (or takes the user's model), cuts it
at ``layer``, folds its batch normalisations into the convolutions
(:mod:`._fold`) and compiles one ``tf.function`` taking uint8 batches, with
preprocessing, pooling and the output dtype cast inside the graph.

Built runners are kept per process (:func:`get_runner`), keyed by what
determines them, so that the clones GridSearchCV and cross_val_score make,
and the Dask tasks of one worker process, build the CNN once. A
transformer whose ``runtime_`` is ``"openvino"`` gets an
:class:`~._openvino.OpenVINORunner` (the same graph, converted) instead.
"""

import functools
import hashlib
import json
import threading
import weakref
from collections import OrderedDict

import numpy as np

from ..utils import is_keras_model
from ._sub_batches import SPLIT, WHOLE, SchemeChooser, split_graph

__all__ = ["CNNRunner", "cnn_image_count", "forget_runner", "get_runner", "tensorflow_runner",
           "weights_digest"]

_MODEL_MEMO = OrderedDict()
_MODEL_MEMO_SIZE = 2
_memo_lock = threading.Lock()

# Counts images that went through the CNN in this process (tests and
# benchmarks use it to prove that the cache prevents re-extraction).
_CNN_IMAGE_COUNT = 0
_count_lock = threading.Lock()


def cnn_image_count():
    """Number of images this process has run through a CNN so far.

    Examples
    --------
    >>> from skbottleneck.extraction import cnn_image_count
    >>> cnn_image_count() >= 0
    True
    """
    return _CNN_IMAGE_COUNT


def _add_cnn_images(n):
    global _CNN_IMAGE_COUNT
    with _count_lock:
        _CNN_IMAGE_COUNT += n


class CNNRunner:
    """A built Keras model and its compiled call for one fitted transformer.

    Parameters
    ----------
    transformer : CNNFeatureTransformer
        Fitted (``input_size_`` is read); its parameters say what to build.
    fold : bool, default=True
        Fold inference-mode batch normalisation into the convolutions.

    Attributes
    ----------
    model : keras.Model
        The (folded) model cut at ``layer``.
    feature_shape : tuple of int
        Shape of one image's feature map before pooling.
    n_folded : int
        Batch normalisation layers folded away.
    schemes : SchemeChooser
        Whole batches, or on a CPU also sub-batches: the faster is measured
        and kept (:mod:`._sub_batches`).
    """

    def __init__(self, transformer, fold=True):
        from .._keras import import_keras, import_tf
        from ._fold import fold_batch_norm

        est = transformer
        # TensorFlow's C++ start-up lines (oneDNN, CUDA probing) are dropped
        # unless verbose=2 asks for everything
        tf = import_tf(quiet=est.verbose < 2)
        keras = import_keras()
        height, width = est.input_size_
        if est.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            from ..backbones import resolve_backbone

            # one path for every backbone: a registry entry, a keras-hub
            # preset, or a user's keras.Model (Backbone.from_model)
            spec = resolve_backbone(est.backbone)
            pooling = getattr(est, "pooling_", est.pooling)
            base = spec.build(weights=est.weights, input_size=(height, width),
                              random_state=est.random_state, pooling=pooling)
            preprocess = None if spec.preprocessing == "none" else spec.preprocess
            if spec.poolings:  # the model pooled its tokens itself
                pooling = None
        finally:
            if est.mixed_precision:
                keras.mixed_precision.set_global_policy("float32")
        if est.layer is not None:
            base = _cut(keras, base, est.layer)
        shape = tuple(int(s) for s in base.output.shape[1:])
        if len(shape) != 3 and pooling is not None:
            raise ValueError(
                f"pooling={pooling!r} needs a (height, width, channels) feature map, but "
                f"the output of {base.name!r} has shape {shape}; use pooling=None."
            )
        base, self.n_folded = fold_batch_norm(base) if fold else (base, 0)
        self.model = base
        self.feature_shape = shape
        call = _graph(tf, base, preprocess, pooling, tf.as_dtype(est.dtype))
        signature = [tf.TensorSpec([None, height, width, 3], tf.uint8)]
        # the whole-batch graph (also what OpenVINO converts) and, on a CPU,
        # the same graph on sub-batches: the faster is measured and kept
        # functools.partial: TensorFlow counts traces per function code object, so every
        # runner's closure would share one count (and warn of "retracing" after 5 runners);
        # a partial is counted on its own, and each traces once (a fixed signature)
        self._fn = tf.function(functools.partial(call), input_signature=signature,
                               reduce_retracing=True)
        schemes = {WHOLE: self._fn}
        if not tf.config.list_physical_devices("GPU"):
            schemes[SPLIT] = tf.function(functools.partial(split_graph(tf, call)),
                                         input_signature=signature, reduce_retracing=True)
        self.schemes = SchemeChooser(schemes)

    def __call__(self, images):
        """Features of a uint8 batch ``(n, height, width, 3)``, as a numpy array."""
        features = self.schemes(images)
        _add_cnn_images(len(images))
        return features

    def run_info(self):
        """What a run's stats record about this CNN (with the batch scheme in use)."""
        return {"bn_folded": self.n_folded, "runtime": "tensorflow", "precision": "float32",
                **self.schemes.info()}


def _cut(keras, base, layer_name):
    try:
        layer = base.get_layer(layer_name)
    except ValueError as e:
        names = [lay.name for lay in base.layers]
        raise ValueError(
            f"The backbone {base.name!r} has no layer named {layer_name!r}. "
            f"Its layers include: {', '.join(names[-12:])} (and {len(names) - 12} more)."
        ) from e
    return keras.Model(base.input, layer.output, name=f"{base.name}_{layer_name}")


def _graph(tf, base, preprocess, pooling, out_dtype):
    def call(x):
        x = tf.cast(x, tf.float32)
        if preprocess is not None:
            x = preprocess(x)
        y = tf.cast(base(x, training=False), tf.float32)
        if pooling == "avg":
            y = tf.reduce_mean(y, axis=[1, 2])
        elif pooling == "max":
            y = tf.reduce_max(y, axis=[1, 2])
        else:
            y = tf.reshape(y, [tf.shape(y)[0], -1])
        return tf.cast(y, out_dtype)

    return call


def _memo_key(transformer):
    fingerprint = transformer.fingerprint_
    if fingerprint["weights"] is None:  # unseeded random weights: never shared
        return None
    backbone = transformer.backbone
    return (json.dumps(fingerprint, sort_keys=True),
            id(backbone) if is_keras_model(backbone) else None, _runtime(transformer))


def _runtime(transformer):
    return getattr(transformer, "runtime_", "tensorflow")


def _build(transformer):
    if _runtime(transformer) != "openvino":
        return CNNRunner(transformer)
    from ._int8 import calibration_images
    from ._openvino import OpenVINORunner

    def build_tensorflow():
        runner = tensorflow_runner(transformer)
        return runner, weights_digest(runner)

    calibration = getattr(transformer, "calibration_", None)
    return OpenVINORunner(transformer, build_tensorflow, on_images=_add_cnn_images,
                          calibration=None if calibration is None else (
                              lambda: calibration_images(calibration, transformer.input_size_)))


def get_runner(transformer):
    """The :class:`CNNRunner` of a fitted transformer, built once per process.

    The two most recently used runners are kept, keyed by the fingerprint
    (and, for a user's Keras model, the model object) and the runtime.
    """
    key = _memo_key(transformer)
    with _memo_lock:
        if key is not None and key in _MODEL_MEMO:
            _MODEL_MEMO.move_to_end(key)
            return _MODEL_MEMO[key]
    runner = _build(transformer)
    if key is not None:
        with _memo_lock:
            _MODEL_MEMO[key] = runner
            while len(_MODEL_MEMO) > _MODEL_MEMO_SIZE:
                _MODEL_MEMO.popitem(last=False)
    return runner


def tensorflow_runner(transformer):
    """The :class:`CNNRunner` of ``transformer``: the one this process already
    built for it when there is one (an OpenVINO conversion starts from it)."""
    key = _memo_key(transformer)
    if key is not None:
        key = key[:2] + ("tensorflow",)
        with _memo_lock:
            if key in _MODEL_MEMO:
                return _MODEL_MEMO[key]
    return CNNRunner(transformer)


def forget_runner(runner):
    """Drop ``runner`` from the per-process memo (the next use builds it again)."""
    with _memo_lock:
        for key, value in list(_MODEL_MEMO.items()):
            if value is runner:
                del _MODEL_MEMO[key]


_DIGESTS = weakref.WeakKeyDictionary()  # runner -> checksum of its weights


def weights_digest(runner):
    """SHA-256 of a built runner's (folded) weights (memoised per runner; an
    OpenVINO runner's was recorded when its model was converted)."""
    recorded = getattr(runner, "weights_sha256", None)
    if recorded is not None:
        return recorded
    digest = _DIGESTS.get(runner)
    if digest is None:
        h = hashlib.sha256()
        for w in runner.model.weights:
            h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
        digest = _DIGESTS[runner] = h.hexdigest()
    return digest
