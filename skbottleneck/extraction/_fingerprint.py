"""What determines the features: the fingerprint of a transformer's model.

The fingerprint is a small JSON-able dict (backbone, weights identity,
layer, pooling, input size, preprocessing, dtype, feature-format version).
Two transformers with equal fingerprints compute the same features, so it
keys the feature cache, is recorded in every store, and is checked when a
store is read back by a transformer.

The runtime is not in it: OpenVINO's float32 features equal TensorFlow's
to 1e-5 relative on every registry backbone (``tests/test_openvino.py``),
as close as folding batch normalisation moves them, so both share cache
entries and stores. ``precision="int8"`` features are a space of their
own: their fingerprint adds the precision, the identity of the
calibration images and the quantiser's versions.
"""

import json
import os
from numbers import Integral

from ..feature_space import FeatureSpace, FeatureSpaceError
from ..utils import is_keras_model

__all__ = ["FEATURE_FORMAT_VERSION", "check_store", "check_store_precision", "fingerprint",
           "precision_of", "resolve_input_size", "store_metadata", "weights_id"]

#: Version of the feature format: bump it when a change of the extraction
#: code changes the features computed for the same image and parameters, so
#: that caches written before are not reused.
FEATURE_FORMAT_VERSION = 2  # 2: batch normalisation folded (features move ~1e-6)


def model_name(backbone):
    """The name of a backbone: its registry name, or a Keras model's ``name``."""
    if is_keras_model(backbone):
        return backbone.name
    return os.path.basename(os.path.normpath(backbone)) if os.sep in str(backbone) else backbone


def resolve_input_size(backbone, input_size):
    """``(height, width)`` the images are resized to."""
    size = input_size
    if size is None:
        if is_keras_model(backbone):
            shape = backbone.input_shape
            if shape[1] is None or shape[2] is None:
                raise ValueError(
                    f"The Keras model {backbone.name!r} has no fixed input size "
                    f"(input_shape={shape}); pass input_size."
                )
            return (int(shape[1]), int(shape[2]))
        from ..backbones import resolve_backbone

        size = resolve_backbone(backbone).default_size
    if isinstance(size, Integral):
        return (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            f"The 'input_size' parameter of CNNFeatureTransformer must be an int or a "
            f"(height, width) pair of positive ints. Got {input_size!r} instead."
        )
    return size


def weights_id(backbone, weights, random_state):
    """A string identifying the weights, or None when they are not reproducible."""
    from ..backbones import resolve_backbone

    return resolve_backbone(backbone).weights_identity(weights, random_state)


def fingerprint(params, input_size, calibration=None):
    """The fingerprint of a transformer with parameters ``params`` (``get_params()``).

    ``calibration`` (``precision="int8"``): the ``{"id": ...}`` of the
    calibration images (:func:`~._int8.calibration_set`).
    """
    from ..backbones import resolve_backbone

    backbone = params["backbone"]
    spec = resolve_backbone(backbone)
    preprocessing, name = spec.preprocessing_description, spec.name
    out = {
        "backbone": name,
        "weights": weights_id(backbone, params["weights"], params["random_state"]),
        "layer": params["layer"],
        "pooling": spec.resolve_pooling(params["pooling"]),  # "auto": the backbone's own
        "input_size": list(input_size),
        "preprocessing": preprocessing,
        "resize": "pillow-bilinear-draft",
        "dtype": params["dtype"],
        "mixed_precision": bool(params["mixed_precision"]),
        "feature_format": FEATURE_FORMAT_VERSION,
    }
    if params.get("precision", "float32") == "int8":
        out.update(precision="int8", calibration=calibration["id"],
                   quantizer=quantizer_id(spec.architecture))
    return out


#: How the int8 model is quantised (part of the int8 fingerprint, through
#: ``quantizer_id``). NNCF's defaults gave features whose median cosine to
#: float32 was 0.89-0.93 and cost 5.7 points on the photo task; measured on
#: this AVX2-only CPU (``benchmarks/bench_int8_variants.py``), two settings
#: bring it to 0.98-0.99 (``_int8.quantize`` applies them):
#:
#: - the overflow fix in every layer (7-bit weights): CPUs without VNNI sum
#:   int8 products in 16 bits, which can saturate; NNCF's default guards the
#:   first layer only (photo task: median cosine 0.893 -> 0.954);
#: - depthwise convolutions left in float32 (MobileNets, EfficientNets;
#:   0.954 -> 0.990, for about a fifth of int8's speed-up at 96 px).
QUANTIZATION_SETTINGS = "nncf-default+overflow-fix-all+float-depthwise"
#: The same for a vision transformer (a backbone whose ``architecture`` is
#: ``"transformer"``: the keras-hub presets), with NNCF's transformer scheme
#: (matrix products quantised; layer norms, softmax and GELU in float32).
#: NNCF's default scheme quantises those too: on random-weight DINOv2 (with
#: and without registers), CLIP and SigLIP, tiny and ViT-S-shaped, the lowest
#: cosine of a test image's int8 features to its float32 ones was -0.02 to
#: 0.98 with it, 0.968 to 0.991 with the transformer scheme
#: (``benchmarks/bench_int8_vit.py``).
TRANSFORMER_QUANTIZATION_SETTINGS = "nncf-transformer+overflow-fix-all+float-depthwise"


def quantizer_id(architecture="cnn"):
    """What determines int8 features besides the model and the calibration:
    NNCF's and OpenVINO's versions and the quantisation settings of the
    backbone's ``architecture``."""
    from importlib.metadata import PackageNotFoundError, version

    settings = (TRANSFORMER_QUANTIZATION_SETTINGS if architecture == "transformer"
                else QUANTIZATION_SETTINGS)
    try:
        return f"nncf-{version('nncf')}+openvino-{version('openvino')}+{settings}"
    except PackageNotFoundError:
        return f"nncf-unknown+{settings}"


def precision_of(fingerprint):
    """``"int8"`` or ``"float32"``: the precision of a fingerprint's features."""
    return (fingerprint or {}).get("precision", "float32")


def check_store_precision(store, theirs, ours):
    """Refuse a store of ``theirs`` precision for a transformer of ``ours``."""
    if theirs != ours:
        raise ValueError(
            f"The FeatureStore {getattr(store, 'path', store)!s} holds {theirs} "
            f"features (precision={theirs!r}) and this transformer computes "
            f"{ours} ones (precision={ours!r}): they are different feature spaces, and a head "
            f"trained on one is wrong on the other. Use a transformer with "
            f"precision={theirs!r} (transformer_from_store(store) rebuilds it), "
            f"or extract the images again with this one.")


def store_metadata(fingerprint):
    """What a store / cache shard records about the model (library versions
    are recorded by the store itself and are not part of its identity)."""
    meta = {k: json.dumps(v) if isinstance(v, (list, dict)) or v is None else v
            for k, v in fingerprint.items()}
    meta["fingerprint"] = json.dumps(fingerprint, sort_keys=True)
    return meta


def check_store(store, fingerprint):
    """Refuse a store holding features of another model than ``fingerprint``."""
    meta = getattr(store, "metadata", {}) or {}
    theirs = meta.get("fingerprint")
    if theirs is None or json.loads(theirs) == fingerprint:
        return
    check_store_precision(store, precision_of(json.loads(theirs)), precision_of(fingerprint))
    raise FeatureSpaceError(
        f"The FeatureStore {getattr(store, 'path', store)!s} holds features of "
        f"{FeatureSpace.from_fingerprint(json.loads(theirs))}, and this transformer computes "
        f"features of {FeatureSpace.from_fingerprint(fingerprint)}: they are different feature "
        f"spaces. Use the store's own model (transformer_from_store(store)), or extract the "
        f"images again with this one.")
