"""Vision transformers from keras-hub presets: DINOv2, CLIP, SigLIP.

Each preset of :data:`PRESETS` is registered with
:func:`~skbottleneck.backbones.register_backbone` under its keras-hub name
(``"dinov2_small"``, ``"siglip2_base_patch16_224"``,
``"clip_vit_base_patch16"``, ...); a local preset directory (what
``save_to_preset(dir)`` writes: ``config.json``, ``model.weights.h5``,
``image_converter.json``) is an entry too, resolved by
:func:`preset_directory_backbone` when it is given as the backbone's name.

What a built model computes (input: RGB values in [0, 255] at the input
size, already resized by the package's decoder):

- preprocessing: the preset's own image converter's ``x * scale + offset``,
  inside the model;
- ``pooling="cls"``: the class token (DINOv2), the model's pooled image
  embedding (CLIP: projected class token; SigLIP: attention-pooling head),
  the embedding that image-text similarity uses;
- ``pooling="avg"``: the mean of the patch tokens (after the final layer
  norm);
- ``pooling="cls+avg"`` (DINOv2's default): both, concatenated: the linear
  probe recipe of the DINOv2 paper;
- ``pooling=None``: all tokens, flattened.

Weights identity: ``"preset:<sha256>"`` over the preset's ``config.json``,
``image_converter.json`` and ``model.weights.h5`` (the files' content, never
the preset's name), or ``"random:<seed>:keras-<version>:config-<sha256>"``
for ``weights=None``. keras-hub is imported only when a model is built.

Their entries have ``architecture="transformer"``: ``precision="int8"``
quantises them with NNCF's transformer scheme (matrix products only).
"""

import functools
import json
import os
import re

import numpy as np

from .._keras import import_keras
from ._backbone import Backbone
from ._build import download_timeout
from ._registry import add_backbone_resolver, register_backbone
from ._weights import WeightsUnavailableError, file_sha256, keras_version

__all__ = ["PRESETS", "HubPreset", "import_keras_hub", "is_preset_directory",
           "preset_directory_backbone", "preset_files", "preset_weights_status"]

#: Files of a preset that determine its features (the tokenizer does not).
_IDENTITY_FILES = ("config.json", "image_converter.json", "model.weights.h5")

_POOLINGS = {"dinov2": ("cls", "avg", "cls+avg", None), "clip": ("cls", "avg", None),
             "siglip": ("cls", "avg", None)}
_DEFAULT_POOLING = {"dinov2": "cls+avg", "clip": "cls", "siglip": "cls"}
_CLASSES = {"DINOV2Backbone": "dinov2", "CLIPBackbone": "clip", "SigLIPBackbone": "siglip"}


class HubPreset:
    """A keras-hub preset as a registry builder: ``preset`` is a name or a directory."""

    def __init__(self, preset, family, handle=None):
        self.preset, self.family, self.handle = preset, family, handle

    def __repr__(self):
        return f"HubPreset({self.preset!r})"

    def __eq__(self, other):
        return isinstance(other, HubPreset) and other.preset == self.preset

    def __hash__(self):
        return hash(self.preset)

    # ------------------------------------------------------------- location
    def local_dir(self):
        """The preset's folder on this machine, or None (not downloaded)."""
        if os.path.isdir(self.preset):
            return self.preset
        if self.handle is None:
            return None
        owner, model, framework, variation, version = self.handle[len("kaggle://"):].split("/")
        root = os.environ.get("KAGGLEHUB_CACHE",
                              os.path.join(os.path.expanduser("~"), ".cache", "kagglehub"))
        path = os.path.join(root, "models", owner, model, framework, variation, version)
        return path if os.path.isfile(os.path.join(path, "config.json")) else None

    def location(self):
        """A folder with the preset's files: local, or downloaded now.

        Raises
        ------
        WeightsUnavailableError
            If the preset is not on this machine and cannot be downloaded.
        """
        path = self.local_dir()
        if path is not None:
            return path
        keras_hub = import_keras_hub()
        from keras_hub.src.utils.preset_utils import get_file

        try:
            with download_timeout():
                for name in _IDENTITY_FILES:
                    config = get_file(self.preset, name)
        except Exception as e:
            raise WeightsUnavailableError(
                f"The keras-hub preset {self.preset!r} is not on this machine and could not "
                f"be downloaded from {self.handle} (keras-hub {keras_hub.__version__}: "
                f"{type(e).__name__}: {e}). Alternatives: a local preset directory as the "
                "backbone (backbone='/path/to/preset', written by "
                "keras_hub.models.Backbone.from_preset(...).save_to_preset(dir) on a machine "
                "with internet access, or the Kaggle download copied under "
                "$KAGGLEHUB_CACHE/models/); or a backbone whose ImageNet weights work "
                "offline: 'efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2'."
            ) from e
        return os.path.dirname(config)

    # ------------------------------------------------------------- identity
    def identity(self, weights, random_state):
        """The weights identity (module docstring)."""
        _check_weights(self.preset, weights)
        location = self.location()
        if weights is None:
            if random_state is None:
                return None
            config = _digest(os.path.join(location, "config.json"))
            return f"random:{random_state}:keras-{keras_version()}:config-{config}"
        return "preset:" + preset_digest(location)

    # ---------------------------------------------------------------- build
    def __call__(self, *, weights, input_size, random_state=None, pooling="cls"):
        _check_weights(self.preset, weights)
        keras_hub, keras = import_keras_hub(), import_keras()
        location = self.location()
        kwargs = {"image_shape": (*input_size, 3)} if self.family == "dinov2" else {}
        backbone = keras_hub.models.Backbone.from_preset(
            location, load_weights=weights is not None, **kwargs)
        converter = keras_hub.layers.ImageConverter.from_preset(location)
        if self.family != "dinov2":
            native = tuple(backbone.vision_encoder.image_shape[:2])
            if native != tuple(input_size):
                raise ValueError(
                    f"The keras-hub preset {self.preset!r} takes images of size {native} "
                    f"(its position embeddings are fixed). Got input_size={input_size} "
                    "instead; leave input_size=None."
                )
        inputs = keras.Input((*input_size, 3), name="images")
        x = inputs
        if converter.scale is not None:
            x = x * np.asarray(converter.scale, dtype="float32")
        if converter.offset is not None:
            x = x + np.asarray(converter.offset, dtype="float32")
        cls, tokens, patches = _outputs(self.family, backbone, x, keras)
        ops = keras.ops
        outputs = {
            "cls": cls,
            "avg": None if patches is None else ops.mean(patches, axis=1),
            None: tokens,
        }
        if self.family == "dinov2":
            outputs["cls+avg"] = ops.concatenate([cls, outputs["avg"]], axis=-1)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.path.normpath(self.preset)))
        suffix = (pooling or "tokens").replace("+", "_")
        return keras.Model(inputs, outputs[pooling], name=f"{name}_{suffix}")


def _outputs(family, backbone, x, keras):
    """(pooled embedding, all tokens, patch tokens) of ``backbone`` on ``x``."""
    if family == "dinov2":
        tokens = backbone({"images": x})
        return tokens[:, 0], tokens, tokens[:, 1 + int(backbone.num_register_tokens):]
    encoder = backbone.vision_encoder
    if family == "clip":
        tokens = encoder({"images": x})
        cls = backbone.vision_projection(backbone.vision_pooler(tokens))
        return cls, tokens, tokens[:, 1:]
    # SigLIP: no class token; the head pools the normalised patch tokens
    token_model = keras.Model(encoder.inputs, encoder.post_layer_norm.output)
    tokens = token_model({"images": x})
    return encoder({"images": x}), tokens, tokens


def _check_weights(preset, weights):
    if not (weights is None or (isinstance(weights, str) and weights == "imagenet")):
        raise ValueError(
            f"The 'weights' of keras-hub preset {preset!r} must be 'imagenet' (the preset's "
            f"own pretrained weights) or None (random, from its config). Got {weights!r} "
            "instead."
        )


def import_keras_hub():
    """Import keras-hub (after Keras, so that it picks TensorFlow's backend)."""
    import_keras()
    try:
        import keras_hub
    except ImportError as e:  # pragma: no cover - a dependency
        raise ImportError(
            "keras-hub backbones need the 'keras-hub' package: pip install keras-hub"
        ) from e
    return keras_hub


def _digest(path):
    return file_sha256(path) if os.path.isfile(path) else "absent"


@functools.lru_cache(maxsize=32)
def _cached_digest(path, size, mtime_ns):
    return file_sha256(path)


def preset_digest(location):
    """SHA-256 over the content of a preset's identity files."""
    import hashlib

    h = hashlib.sha256()
    for name in _IDENTITY_FILES:
        path = os.path.join(location, name)
        if os.path.isfile(path):
            st = os.stat(path)
            h.update(f"{name}:{_cached_digest(path, st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()


def preset_files(location):
    """``{name: bytes}`` of a preset folder's files (for ``skbottleneck backbones``)."""
    return {name: os.path.getsize(os.path.join(location, name))
            for name in sorted(os.listdir(location))
            if os.path.isfile(os.path.join(location, name))}


def preset_weights_status(builder):
    """``"local"`` (preset directory), ``"cached"`` (downloaded) or ``"download"``."""
    if os.path.isdir(builder.preset):
        return "local"
    return "cached" if builder.local_dir() is not None else "download"


def is_preset_directory(path):
    """Whether ``path`` is a folder holding a keras-hub preset."""
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(
        os.path.join(os.fspath(path), "config.json"))


def _preprocessing_id(location):
    path = os.path.join(location, "image_converter.json")
    if not os.path.isfile(path):
        return "keras-hub image converter: none"
    with open(path) as f:
        config = json.load(f).get("config", {})
    return (f"keras-hub image converter: x*{config.get('scale')}+{config.get('offset')} "
            "(in the model; the decoder resizes)")


def preset_directory_backbone(path):
    """The :class:`~skbottleneck.backbones.Backbone` of a local keras-hub
    preset folder, or None when ``path`` is not one.

    Raises
    ------
    ValueError
        If the folder's ``config.json`` names a model class that is not a
        supported image backbone (DINOv2, CLIP, SigLIP).
    """
    if not is_preset_directory(path):
        return None
    path = os.path.abspath(os.fspath(path))
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    family = _CLASSES.get(config.get("class_name"))
    if family is None:
        raise ValueError(
            f"The keras-hub preset in {path!r} is a {config.get('class_name')!r}; image "
            f"backbones supported: {', '.join(sorted(_CLASSES))}."
        )
    inner = config["config"]
    vision = inner if family == "dinov2" else inner["vision_encoder"]["config"]
    size, patch = int(vision["image_shape"][0]), int(vision["patch_size"])
    dim = int(vision["hidden_dim"])
    if family == "dinov2":
        dim *= 2
    elif family == "clip":
        dim = int(inner["projection_dim"])
    return _entry(path, HubPreset(path, family), size, patch, dim, None,
                  _preprocessing_id(path))


def _entry(name, builder, size, patch, dim, parameters, preprocessing_id, register=False):
    kwargs = dict(
        default_size=size, preprocessing="none", feature_dim=dim, min_size=patch,
        size_multiple=patch, identity=builder.identity, poolings=_POOLINGS[builder.family],
        default_pooling=_DEFAULT_POOLING[builder.family], parameters=parameters,
        preprocessing_id=preprocessing_id, architecture="transformer",
        weights_status=functools.partial(preset_weights_status, builder),
        description=f"keras-hub {builder.family} preset ({builder.handle or name})",
    )
    if register:
        return register_backbone(name, builder, **kwargs)
    return Backbone(name=name, builder=builder, **kwargs)


#: name -> (family, Kaggle handle, native size, patch size, features of the
#: default pooling, parameters); from keras-hub 0.32's preset tables.
PRESETS = {
    "dinov2_small": ("dinov2", "keras/dinov2/keras/dinov2_small/1", 224, 14, 768, 22_582_656),
    "dinov2_base": ("dinov2", "keras/dinov2/keras/dinov2_base/1", 224, 14, 1536, 87_632_640),
    "dinov2_large": ("dinov2", "keras/dinov2/keras/dinov2_large/1", 224, 14, 2048,
                     305_771_520),
    "dinov2_giant": ("dinov2", "keras/dinov2/keras/dinov2_giant/1", 224, 14, 3072,
                     1_138_585_088),
    "dinov2_with_registers_small": (
        "dinov2", "keras/dinov2/keras/dinov2_with_registers_small/1", 224, 14, 768,
        22_584_192),
    "dinov2_with_registers_base": (
        "dinov2", "keras/dinov2/keras/dinov2_with_registers_base/1", 224, 14, 1536,
        87_635_712),
    "clip_vit_base_patch16": ("clip", "keras/clip/keras/clip_vit_base_patch16/3", 224, 16, 512,
                              149_620_934),
    "clip_vit_base_patch32": ("clip", "keras/clip/keras/clip_vit_base_patch32/3", 224, 32, 512,
                              151_277_363),
    "clip_vit_large_patch14": ("clip", "keras/clip/keras/clip_vit_large_patch14/3", 224, 14,
                               768, 427_616_770),
    "siglip_base_patch16_224": ("siglip", "keras/siglip/keras/siglip_base_patch16_224/1", 224,
                                16, 768, 203_156_230),
    "siglip2_base_patch16_224": ("siglip", "keras/siglip/keras/siglip2_base_patch16_224/1",
                                 224, 16, 768, 375_188_230),
    "siglip2_so400m_patch14_224": (
        "siglip", "keras/siglip/keras/siglip2_so400m_patch14_224/1", 224, 14, 1152,
        1_135_463_922),
}

for _name, (_family, _handle, _size, _patch, _dim, _params) in PRESETS.items():
    _entry(_name, HubPreset(_name, _family, "kaggle://" + _handle), _size, _patch, _dim,
           _params, f"keras-hub image converter of preset {_name} (in the model)",
           register=True)
add_backbone_resolver(preset_directory_backbone)

