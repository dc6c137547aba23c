"""``precision="int8"``: NNCF post-training quantisation on the user's own images.

The calibration images are :data:`CALIBRATION_SIZE` readable images
spread evenly over the data given to the first ``fit`` (``fit_transform``,
``extract`` of an unfitted transformer): training images, never the
images of a later ``transform``. Their identity (a hash of their content
keys, in order) enters the fingerprint, so that int8 features computed
with other calibration images never share cache entries or stores with
these. The images themselves are kept only until the model is quantised
(and cached on disk); their paths stay in ``calibration_["paths"]``, to
quantise again where the cached model is missing.
"""

import hashlib
import threading
import warnings
from collections import OrderedDict

import numpy as np

from ..cache import content_key
from ..images import ImageError, load_image
from ..remote import read_image_bytes
from ..utils import check_paths

__all__ = ["CALIBRATION_SIZE", "calibration_images", "calibration_set", "quantize"]

#: Images the int8 model is calibrated on (64 were enough on the tasks measured:
#: benchmarks/bench_int8_accuracy.py).
CALIBRATION_SIZE = 64

# calibration id -> images, from fit to the model's quantisation (same process)
_PENDING = OrderedDict()
_PENDING_SIZE = 2
_lock = threading.Lock()


def _read(path, size, storage_options=None):
    data, _ = read_image_bytes(path, storage_options)
    return content_key(data), load_image(path, size, data=data)


def calibration_set(transformer, X):
    """The calibration of an int8 transformer's first ``fit(X)``: ``{"id", "paths", "n_images"}``.

    Reads :data:`CALIBRATION_SIZE` readable images spread evenly over ``X``
    (an unreadable one raises with ``on_error="raise"``, is replaced by
    another with ``"skip"``), keeps them for the quantisation and returns their identity.
    A :class:`~skbottleneck.FeatureStore` of int8 features gives its own
    calibration (recorded in its fingerprint and metadata).
    """
    from ..chunks import is_row_source

    if is_row_source(X):
        return _store_calibration(X)
    if X is None:
        raise ValueError(
            "precision='int8' quantises the CNN on a sample of the training images of the "
            "first fit: call fit(X) (or fit_transform, or extract) with the image paths, "
            "not fit() without them.")
    paths = check_paths(X)
    keys, images, used = [], [], []
    for i in _sample_order(len(paths)):
        if len(images) == CALIBRATION_SIZE:
            break
        path = paths[i]
        try:
            key, image = _read(path, transformer.input_size_, transformer.storage_options)
        except ImageError:
            if transformer.on_error == "raise":
                raise
            continue
        keys.append(key)
        images.append(image)
        used.append(str(path))
    if not images:
        raise ImageError(str(paths[0]) if len(paths) else "<no images>",
                         "none of the images given to fit could be read to calibrate the "
                         "int8 model")
    calibration = {"id": _calibration_id(keys), "paths": used, "n_images": len(used)}
    with _lock:
        _PENDING[calibration["id"]] = np.stack(images)
        while len(_PENDING) > _PENDING_SIZE:
            _PENDING.popitem(last=False)
    return calibration


def _sample_order(n):
    """Positions to calibrate on: :data:`CALIBRATION_SIZE` spread evenly over the
    data (image folders are sorted by class: the first ones would be one class),
    then the others in order, to stand in for unreadable ones."""
    spread = np.unique(np.linspace(0, n - 1, min(n, CALIBRATION_SIZE)).round().astype(int))
    rest = np.setdiff1d(np.arange(n), spread)
    return [int(i) for i in np.concatenate([spread, rest])]


def _calibration_id(keys):
    return hashlib.sha256(b"".join(keys)).hexdigest()[:32]


def _store_calibration(store):
    import json

    from ._fingerprint import check_store_precision, precision_of

    meta = getattr(store, "metadata", {}) or {}
    fingerprint = json.loads(meta.get("fingerprint") or "{}")
    check_store_precision(store, precision_of(fingerprint), "int8")
    paths = json.loads(meta.get("calibration_paths") or "[]")
    return {"id": fingerprint["calibration"], "paths": paths, "n_images": len(paths)}


def calibration_images(calibration, input_size):
    """The calibration images (decoded), for a quantisation.

    Those read by :func:`calibration_set` in this process, else read again
    from ``calibration["paths"]`` and checked to be the same images.
    """
    with _lock:
        images = _PENDING.get(calibration["id"])
    if images is not None and images.shape[1:3] == tuple(input_size):
        return images
    try:
        keys, images = zip(*(_read(p, input_size) for p in calibration["paths"]))
    except ImageError as e:
        raise ValueError(
            f"The int8 model is not cached here and its calibration images cannot be read "
            f"again ({e}); fit a new transformer on the training images.") from e
    if not keys or _calibration_id(keys) != calibration["id"]:
        raise ValueError(
            "The int8 model is not cached here and its calibration images have changed "
            f"since it was calibrated ({len(keys)} read from {calibration['paths'][:1]}...); "
            "fit a new transformer on the training images.")
    return np.stack(images)


def quantize(ov_model, images, quiet=True, architecture="cnn"):
    """``nncf.quantize`` of an OpenVINO model on uint8 ``images`` with the
    settings :data:`~._fingerprint.QUANTIZATION_SETTINGS` names
    (:data:`~._fingerprint.TRANSFORMER_QUANTIZATION_SETTINGS` for an
    ``architecture="transformer"``), one image per calibration sample (batched
    statistics are biased). ``quiet``: without NNCF's progress bars (printed
    on stdout)."""
    import contextlib
    import io
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)
    samples = [images[i:i + 1] for i in range(len(images))]
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE)
    depthwise = nncf.IgnoredScope(types=["GroupConvolution"], validate=False)
    model_type = nncf.ModelType.TRANSFORMER if architecture == "transformer" else None
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        quantized = nncf.quantize(ov_model, nncf.Dataset(samples), subset_size=len(samples),
                                  model_type=model_type, advanced_parameters=advanced,
                                  ignored_scope=depthwise)
    warn_zero_rows(ov_model, quantized, images)
    return quantized


def warn_zero_rows(ov_model, quantized, images):
    """Warn when the int8 model gives all-zero rows where the float32 one does not.

    Features too small for int8's steps (a random-weights network at a small
    input size) quantise to zero: every image would get the same row. Checked
    once, on the calibration images, when the model is quantised.
    """
    import openvino as ov

    core = ov.Core()

    def rows(model):
        compiled = core.compile_model(model, "CPU")
        out = [compiled(images[i:i + 16])[0] for i in range(0, len(images), 16)]
        return np.concatenate(out).reshape(len(images), -1)

    f32, int8 = rows(ov_model), rows(quantized)
    zero = ~np.any(int8, axis=1) & np.any(f32, axis=1)
    if zero.any():
        warnings.warn(
            f"int8 quantisation gives all-zero features for {int(zero.sum())} of {len(images)} "
            f"calibration images whose float32 features are not zero (largest |feature| "
            f"{np.abs(f32[zero]).max():.3g}: smaller than int8's steps), so images like them "
            "get no usable features; use precision='float32' (or weights that give larger "
            "features).", UserWarning, stacklevel=2)
