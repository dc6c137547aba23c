"""CNN backbones for bottleneck features: registry, preprocessing, weights.

The room is layered, lowest first: ``_weights`` (where weights come from,
the identity string that names them, the Keras cache), ``_preprocessing``
(each backbone's input scaling), ``_torch_pickle`` and ``_efficientnet_lite``
(the bundled EfficientNet-Lite0/1/2 and their weight files), ``_build`` (calling a
builder: seeding, bounded downloads), ``_registry`` (the :class:`Backbone`
table, :func:`register_backbone`, :func:`list_backbones`,
:func:`get_backbone`) and ``_keras_hub`` (DINOv2, CLIP and SigLIP presets of
keras-hub, registered through :func:`register_backbone`).

Importing this package does not import TensorFlow or keras-hub; they are
imported when a model is built.

Examples
--------
>>> from skbottleneck.backbones import get_backbone, list_backbones
>>> "resnet50" in list_backbones()
True
>>> backbone = get_backbone("efficientnet_lite0")
>>> backbone.default_size, backbone.feature_dim, backbone.offline_weights
(224, 1280, True)
"""

from ._efficientnet_lite import EfficientNetLite0, EfficientNetLite1, EfficientNetLite2
from ._imagenet_classes import imagenet_class_names
from ._registry import (
    PREPROCESSING_MODES,
    Backbone,
    WeightsUnavailableError,
    add_backbone_resolver,
    get_backbone,
    list_backbones,
    register_backbone,
    resolve_backbone,
    weights_identity,
)
from ._keras_hub import PRESETS as KERAS_HUB_PRESETS  # registers the presets
from ._text import TextEncoder
from ._torch_pickle import UnsafeCheckpointError, load_torch_state_dict
from ._weights import imagenet_weights_status, parse_weights_identity

__all__ = [
    "Backbone",
    "EfficientNetLite0",
    "EfficientNetLite1",
    "EfficientNetLite2",
    "KERAS_HUB_PRESETS",
    "PREPROCESSING_MODES",
    "TextEncoder",
    "UnsafeCheckpointError",
    "WeightsUnavailableError",
    "add_backbone_resolver",
    "get_backbone",
    "imagenet_class_names",
    "imagenet_weights_status",
    "list_backbones",
    "load_torch_state_dict",
    "parse_weights_identity",
    "register_backbone",
    "resolve_backbone",
    "weights_identity",
]
