"""Where a backbone's weights come from, and the string that names them.

A backbone is built with ImageNet weights (downloaded by Keras, or bundled
with an installed package), a seeded random initialisation, or a weights or
model file. This module checks weights files, names each kind of weights
with an *identity* string, the part of a feature cache's key and of a
store's fingerprint that says which weights computed the features, reads
such a string back (:func:`parse_weights_identity`), and tells whether the
ImageNet weights of a backbone are available without network access
(:func:`imagenet_weights_status`).

Identities::

    imagenet:keras-<keras version>     ImageNet weights downloaded by Keras
    imagenet:<weight file id>          bundled ImageNet weights
    random:<seed>:keras-<version>      a seeded random initialisation
    file:<sha256 of the file>          a .weights.h5 / .keras file
    model:<hash>                       a user's own Keras model
    preset:<sha256>                    a keras-hub preset (its files' content)
    None                               an unseeded random initialisation

Importing this module does not import TensorFlow.
"""

import glob
import hashlib
import importlib.metadata
import os

from .._keras import import_keras
from ..utils import check_seed

__all__ = [
    "IDENTITY_KINDS",
    "WEIGHT_FILE_EXTENSIONS",
    "WeightsUnavailableError",
    "check_weights_file",
    "file_sha256",
    "format_weights_identity",
    "imagenet_weights_status",
    "keras_version",
    "parse_weights_identity",
]

WEIGHT_FILE_EXTENSIONS = (".weights.h5", ".keras", ".h5", ".hdf5")

#: The kinds of weights an identity names, in :func:`parse_weights_identity`.
IDENTITY_KINDS = ("imagenet", "random", "file", "model", "preset")

#: File names (globs) of the no-top ImageNet weights in the Keras cache,
#: from keras/src/applications/*.py (Keras 3).
_KERAS_NOTOP_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet101": "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet152": "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50_v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_resnet_v2": "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "xception": "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    # one file per input size (96, 128, 160, 192, 224; other sizes use 224's)
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_*_no_top.h5",
    "mobilenet_v3_small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    "mobilenet_v3_large": "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet169": "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet201": "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
    **{f"efficientnet_b{i}": f"efficientnetb{i}_notop.h5" for i in range(8)},
    "efficientnet_v2_b0": "efficientnetv2-b0_notop.h5",
    "efficientnet_v2_s": "efficientnetv2-s_notop.h5",
    "convnext_tiny": "convnext_tiny_notop.h5",
}


class WeightsUnavailableError(RuntimeError):
    """The requested pretrained weights cannot be obtained (e.g. no network).

    Examples
    --------
    >>> from skbottleneck.backbones import WeightsUnavailableError
    >>> issubclass(WeightsUnavailableError, RuntimeError)
    True
    """


def keras_version():
    """The installed Keras version, read without importing Keras when possible."""
    try:
        return importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return import_keras().__version__


def check_weights_file(weights):
    """Validate a weights path; return ``(path, kind)`` with kind ``"keras"`` or ``"weights"``.

    Raises
    ------
    ValueError
        If ``weights`` is not a path with a supported extension.
    FileNotFoundError
        If the file does not exist.
    """
    try:
        path = os.fsdecode(os.fspath(weights))
    except TypeError:
        path = None
    lower = "" if path is None else path.lower()
    if not lower.endswith(WEIGHT_FILE_EXTENSIONS):
        raise ValueError(
            "The 'weights' parameter must be 'imagenet', None, or a path to a "
            "'.weights.h5' file (from model.save_weights) or a '.keras' file (from "
            f"model.save). Got {weights!r} instead."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The weights file {path!r} does not exist.")
    return path, ("keras" if lower.endswith(".keras") else "weights")


def file_sha256(path):
    """The SHA-256 hex digest of a file, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def format_weights_identity(weights="imagenet", random_state=None, *, imagenet_id=None):
    """The identity of ``weights`` (see the module docstring).

    Parameters
    ----------
    weights : {"imagenet"}, None or path-like, default="imagenet"
        As in :meth:`Backbone.build`.
    random_state : int or None, default=None
        Seed of a random initialisation.
    imagenet_id : str, default=None
        Id of bundled ImageNet weights; ``None`` means Keras' own.

    Returns
    -------
    identity : str or None

    Examples
    --------
    >>> format_weights_identity("imagenet", imagenet_id="lite0:v1")
    'imagenet:lite0:v1'
    """
    random_state = check_seed(random_state)
    if weights is None:
        if random_state is None:
            return None
        return f"random:{random_state}:keras-{keras_version()}"
    if isinstance(weights, str) and weights == "imagenet":
        return f"imagenet:{imagenet_id or 'keras-' + keras_version()}"
    path, _ = check_weights_file(weights)
    return f"file:{file_sha256(path)}"


def parse_weights_identity(identity):
    """Read back a weights identity: ``(kind, value)``.

    Parameters
    ----------
    identity : str or None
        What :func:`~skbottleneck.backbones.weights_identity` returned, as a
        store's fingerprint records it.

    Returns
    -------
    kind : {"imagenet", "random", "file", "model", "preset"}
        Which weights: ImageNet, a random initialisation, a weights or model
        file, a user's own Keras model, or a keras-hub preset.
    value : str, int or None
        ``"imagenet"``: where the weights come from (``"keras-<version>"``
        or the id of bundled weights); ``"random"``: the seed, ``None`` for
        an unseeded (not reproducible) initialisation; ``"file"``: the
        file's SHA-256; ``"model"``: the hash of the model's weights.

    Raises
    ------
    ValueError
        If ``identity`` is none of these.

    Examples
    --------
    >>> parse_weights_identity("random:7:keras-3.3.3")
    ('random', 7)
    >>> parse_weights_identity("file:9f86d08")
    ('file', '9f86d08')
    >>> parse_weights_identity(None)
    ('random', None)
    """
    if identity is None:
        return "random", None
    kind, _, value = identity.partition(":") if isinstance(identity, str) else ("", "", "")
    if kind == "random":
        seed = value.partition(":")[0]
        if seed.isdigit():
            return kind, int(seed)
    elif kind in IDENTITY_KINDS and value:
        return kind, value
    raise ValueError(
        "A weights identity must be None, 'imagenet:SOURCE', 'random:SEED:keras-VERSION', "
        f"'file:SHA256', 'model:HASH' or 'preset:SHA256'. Got {identity!r} instead."
    )


def _keras_model_dirs():
    """Folders where Keras keeps downloaded weights (same rules as keras.config.keras_home)."""
    dirs = []
    if os.environ.get("KERAS_HOME"):
        dirs.append(os.path.join(os.environ["KERAS_HOME"], "models"))
    dirs.append(os.path.join(os.path.expanduser("~"), ".keras", "models"))
    dirs.append(os.path.join("/tmp", ".keras", "models"))  # Keras' fallback when ~ is read-only
    return dirs


def imagenet_weights_status(backbone):
    """Whether the ImageNet weights of ``backbone`` work without network access.

    Parameters
    ----------
    backbone : Backbone
        A registered backbone (:func:`~skbottleneck.backbones.get_backbone`).

    Returns
    -------
    status : {"bundled", "cached", "download", "unknown"}
        ``"bundled"``: shipped with an installed package; ``"cached"``:
        already downloaded into the Keras cache (``$KERAS_HOME/models``,
        ``~/.keras/models``); ``"download"``: Keras will download them;
        ``"unknown"``: no known file name.

    Examples
    --------
    >>> from skbottleneck.backbones import get_backbone, imagenet_weights_status
    >>> imagenet_weights_status(get_backbone("efficientnet_lite0"))
    'bundled'
    """
    if backbone.offline_weights:
        return "bundled"
    pattern = _KERAS_NOTOP_FILES.get(backbone.name)
    if pattern is None:
        return "unknown"
    for d in _keras_model_dirs():
        if glob.glob(os.path.join(glob.escape(d), pattern)):
            return "cached"
    return "download"
