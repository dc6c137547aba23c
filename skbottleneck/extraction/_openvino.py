"""The CNN stage on OpenVINO: the transformer's own graph, converted once, cached on disk.

:class:`OpenVINORunner` converts the graph :class:`~._runner.CNNRunner`
compiles (uint8 batches in; preprocessing, the folded CNN, pooling and the
output dtype inside) to OpenVINO, so that OpenVINO runs the preprocessing
and the pooling too: a CNN's graph frozen into a GraphDef, a transformer's
concrete function as it is (:func:`convert_graph` says why). It is compiled for the CPU
with ``PERFORMANCE_HINT=THROUGHPUT`` and ``INFERENCE_PRECISION_HINT=f32``
(OpenVINO would otherwise pick bf16 where the CPU has it), and each batch
is split over the infer requests of an ``AsyncInferQueue``.

Converted models are kept under ``<default cache root>/openvino/<id>/`` (``id``
from the fingerprint, the precision, the library versions and the folder
layout), published whole (:func:`skbottleneck.fileio.atomic_folder`), so
that an interrupted conversion leaves nothing a later process could read.
A process that finds the model there builds no Keras model at all.

On-disk layout (:data:`MODEL_LAYOUT` 2)::

    <cache root>/openvino/
      <id>/                 32 hex digits (model_id)
        model.xml           the OpenVINO graph
        model.bin           its constants (the folded weights), float32
        info.json           what the folder holds: the id's own document
                            (fingerprint, precision, versions, layout),
                            feature_shape, n_folded, weights_sha256 (the
                            folded Keras weights it was converted from),
                            files (size and SHA-256 of model.xml and
                            model.bin) and sha256 (of info.json itself)
      .tmp-*                being written (removed when stale)

Every load checks the folder before it is used (:func:`_load`): info.json
reads and its own digest matches, it describes the model asked for, the
sizes and SHA-256 of ``model.xml`` and ``model.bin`` match it, the weights
digest matches that of the network this process built (when it built one)
and the graph's output has the recorded shape. A folder that fails is
removed and converted again, with a :class:`ConvertedModelWarning` naming
it. The folder is an optimisation: when it cannot be written (read-only,
not a folder, disk full, any error of ``ov.save_model``) the run goes on
with the model in memory and says once why.
"""

import hashlib
import json
import os
import threading
import time
import warnings
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from ..cache import CONVERTED_MODELS_FOLDER
from ..utils import is_keras_model

__all__ = ["OPENVINO_CHECKED", "ConvertedModelWarning", "OpenVINORunner", "model_cache_dir",
           "openvino_available", "resolve_runtime"]

#: Registry backbones whose OpenVINO features were checked equal to
#: TensorFlow's (within 1e-5 relative, random weights, smallest input size:
#: tests/test_openvino.py). ``runtime="auto"`` picks OpenVINO for these only.
OPENVINO_CHECKED = frozenset({
    "convnext_tiny", "densenet121", "densenet169", "densenet201", "efficientnet_b0",
    "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_lite0",
    "efficientnet_lite1", "efficientnet_lite2",
    "efficientnet_v2_b0", "efficientnet_v2_s", "inception_resnet_v2", "inception_v3",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet101", "resnet152",
    "resnet50", "resnet50_v2", "vgg16", "vgg19", "xception",
})

#: Folder, under the cache root, of the converted models.
MODEL_CACHE_FOLDER = CONVERTED_MODELS_FOLDER
#: Layout of a model folder (in its id): folders written before files were
#: digested (layout 1) are never read.
MODEL_LAYOUT = 2
MODEL_FILES = ("model.xml", "model.bin")
#: Converted-model folders this process could not write (warned about once).
_UNWRITABLE = set()


class ConvertedModelWarning(UserWarning):
    """A converted OpenVINO model was damaged (removed and converted again), or
    could not be kept on disk (the run used it from memory)."""

    __module__ = "skbottleneck.extraction"
_PRECISION_HINT = {"INFERENCE_PRECISION_HINT": "f32"}
_core = None
_core_lock = threading.Lock()


def openvino_available():
    """Whether the ``openvino`` package can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def import_openvino():
    """The ``openvino`` module, or an ImportError that says how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise ImportError("runtime='openvino' and precision='int8' need OpenVINO: "
                          "pip install 'skbottleneck[openvino]'.") from e
    return openvino


def _ov_core():
    global _core
    with _core_lock:
        if _core is None:
            _core = import_openvino().Core()
        return _core


def _tf_sees_a_gpu():
    from .._keras import import_tf

    return bool(import_tf().config.list_physical_devices("GPU"))


def resolve_runtime(transformer):
    """What runs the CNN of ``transformer``: ``"tensorflow"`` or ``"openvino"``.

    ``"auto"`` is OpenVINO when it is installed, the backbone is a registry
    backbone in :data:`OPENVINO_CHECKED`, mixed precision is off and
    TensorFlow sees no GPU (a GPU stays TensorFlow's); int8 is OpenVINO's.
    """
    est = transformer
    runtime, int8 = est.runtime, est.precision == "int8"
    if int8 and runtime == "tensorflow":
        raise ValueError("precision='int8' runs on OpenVINO; use runtime='openvino' or "
                         "'auto', or precision='float32' with runtime='tensorflow'.")
    if est.mixed_precision and (runtime == "openvino" or int8):
        raise ValueError("mixed_precision=True runs on TensorFlow (float16 compute, for a "
                         "GPU); use runtime='tensorflow', or mixed_precision=False.")
    if runtime == "openvino" or int8:
        import_openvino()
        return "openvino"
    if runtime == "tensorflow" or est.mixed_precision or not openvino_available():
        return "tensorflow"
    if is_keras_model(est.backbone):
        return "tensorflow"  # a user model: OpenVINO was not checked on it
    from ..backbones import resolve_backbone

    if resolve_backbone(est.backbone).name not in OPENVINO_CHECKED or _tf_sees_a_gpu():
        return "tensorflow"
    return "openvino"


def _version(name):
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - installed without metadata
        return "unknown"


def model_cache_dir():
    """The folder of converted models: ``openvino/`` under the default cache
    root (``$SKBOTTLENECK_CACHE_DIR`` or the per-user cache folder), whatever
    the transformer's ``cache_dir``: a conversion depends on the model and
    the library versions only, so one per machine serves every feature
    cache (and ``cache_dir=None``, which turns off the feature cache only)."""
    from ..cache import get_cache_dir

    return os.path.join(get_cache_dir(None), MODEL_CACHE_FOLDER)


def model_id(fingerprint, precision="float32"):
    """The id of a converted model: the fingerprint (which holds the
    calibration of an int8 model), the precision and the versions of the
    libraries that built, converted and quantised it."""
    doc = {"fingerprint": fingerprint, "precision": precision, "layout": MODEL_LAYOUT,
           "versions": {name: _version(name) for name in ("openvino", "tensorflow", "keras")}}
    if precision == "int8":
        doc["versions"]["nncf"] = _version("nncf")
    doc = json.loads(json.dumps(doc))  # as read back from info.json (tuples as lists)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32], doc


class OpenVINORunner:
    """The transformer's CNN graph on OpenVINO, with :class:`CNNRunner`'s interface.

    Parameters
    ----------
    transformer : CNNFeatureTransformer
        Fitted (``input_size_``, ``fingerprint_`` are read).
    build_tensorflow : callable
        Returns ``(CNNRunner, SHA-256 of its weights)``: the graph to
        convert, called only when the converted model is not cached.
    on_images : callable, default=None
        Called with the number of images of each batch run (the counter of
        :func:`~._runner.cnn_image_count`).
    calibration : ndarray of uint8 or callable, default=None
        For ``precision="int8"`` when the quantised model is not cached yet:
        the calibration images, ``(n, height, width, 3)`` (or a function
        returning them, called only then).

    Attributes
    ----------
    model : keras.Model or None
        The folded Keras model, when it was built in this process (None when
        the converted model came from the disk cache).
    feature_shape : tuple of int
    n_folded : int
    weights_sha256 : str
        SHA-256 of the folded Keras model's weights (recorded at conversion).
    conversion_s : float
        Seconds spent converting (and quantising) in this process; 0.0 when
        the model came from the disk cache.
    path : str or None
        The cached model's folder (None when it is not cacheable: unseeded
        random weights).
    saved : bool
        Whether the converted model is on disk at ``path`` (False when it
        could not be written: see :class:`ConvertedModelWarning`).
    """

    runtime = "openvino"

    def __init__(self, transformer, build_tensorflow, *, on_images=None, calibration=None,
                 known_weights_sha256=None):
        est = transformer
        ov = import_openvino()
        self._build_tensorflow, self._on_images = build_tensorflow, on_images
        self.precision = est.precision
        self.model, self.path, self.conversion_s = None, None, 0.0
        cacheable = est.fingerprint_.get("weights") is not None
        if cacheable:
            key, doc = model_id(est.fingerprint_, est.precision)
            self.path = os.path.join(model_cache_dir(), key)
        self.saved = False
        self._known_weights = known_weights_sha256
        loaded = _load(self.path, doc, est.pooling, known_weights_sha256) if cacheable else None
        if loaded is None:
            t = time.perf_counter()
            ov_model, info = self._convert(est, calibration)
            self.conversion_s = time.perf_counter() - t
            info["conversion_s"] = round(self.conversion_s, 3)
            if cacheable:
                self.saved = _save(self.path, ov_model, doc, info)
            _say(est, f"converted {est.fingerprint_['backbone']} to OpenVINO "
                      f"({self.precision}) in {self.conversion_s:.1f} s"
                      + (f"; saved to {self.path}" if self.saved else ""))
        else:
            ov_model, info = loaded
            self.saved = True
            _say(est, f"OpenVINO model of {est.fingerprint_['backbone']} ({self.precision}) "
                      f"read from {self.path}")
        self.feature_shape = tuple(info["feature_shape"])
        self.n_folded = int(info["n_folded"])
        self.weights_sha256 = info["weights_sha256"]
        compiled = _ov_core().compile_model(ov_model, "CPU", {
            "PERFORMANCE_HINT": "THROUGHPUT", **_PRECISION_HINT})
        self._n_requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue = ov.AsyncInferQueue(compiled, self._n_requests)
        self._queue.set_callback(self._done)
        self._out = {}
        self._lock = threading.Lock()

    def _convert(self, est, calibration):
        """``(model, info)``: converted from the Keras model (int8: quantised from
        the float32 conversion, itself read from the disk cache when there)."""
        from ..backbones import resolve_backbone

        architecture = resolve_backbone(est.backbone).architecture
        if self.precision == "int8":
            from ._int8 import quantize

            f32 = {k: v for k, v in est.fingerprint_.items()
                   if k not in ("precision", "calibration", "quantizer")}
            key, doc = model_id(f32)
            path = os.path.join(model_cache_dir(), key) if f32["weights"] else None
            loaded = _load(path, doc, est.pooling, self._known_weights)
            if loaded is None:
                loaded = self._convert_keras(architecture)
                if path is not None:
                    _save(path, loaded[0], doc, loaded[1])
            images = calibration() if callable(calibration) else calibration
            return (quantize(loaded[0], images, quiet=est.verbose < 2,
                             architecture=architecture), loaded[1])
        return self._convert_keras(architecture)

    def _convert_keras(self, architecture):
        tf_runner, digest = self._build_tensorflow()
        self.model = tf_runner.model
        info = {"feature_shape": list(tf_runner.feature_shape), "n_folded": tf_runner.n_folded,
                "weights_sha256": digest}
        return convert_graph(tf_runner, architecture), info

    def _done(self, request, index):
        self._out[index] = request.get_output_tensor(0).data.copy()

    def __call__(self, images):
        """Features of a uint8 batch ``(n, height, width, 3)``, as a numpy array."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        n = len(images)
        parts = np.array_split(images, min(self._n_requests, n)) if n else [images]
        with self._lock:  # one batch at a time: the queue and its outputs are shared
            self._out = {}
            for i, part in enumerate(parts):
                self._queue.start_async({0: part}, i)
            self._queue.wait_all()
            features = np.concatenate([self._out[i] for i in range(len(parts))])
        if self._on_images is not None:
            self._on_images(n)
        return features

    def run_info(self):
        """What a run's stats record about this CNN."""
        return {"bn_folded": self.n_folded, "runtime": "openvino", "precision": self.precision,
                "conversion_s": self.conversion_s}


def convert_graph(tf_runner, architecture="cnn"):
    """The OpenVINO model of a :class:`CNNRunner`'s compiled graph (uint8 in, features out).

    A CNN's graph is frozen first (its variables made constants of a GraphDef)
    and converted from that; a transformer's concrete function is converted as
    it is. Both give bit-identical features
    (``benchmarks/results/bench_openvino_conversion.md``), but they cost
    differently. Freezing takes 1.7-4.3x the time and 1.8-3.0x the peak memory on
    transformers (DINOv2-B: 30.6 s at 4.6 GiB against 7.2 s at 1.6 GiB), where
    the two compiled models then run at the same speed. Some CNNs run slower
    from the concrete function: EfficientNet-B0 at 15 images/s against 33. A
    graph the GraphDef reader cannot follow (ConvNeXt's nested function calls)
    is converted from the concrete function.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    ov = import_openvino()
    function = tf_runner._fn.get_concrete_function()
    if architecture == "transformer":
        return ov.convert_model(function)
    try:
        frozen = convert_variables_to_constants_v2(function)
        return ov.convert_model(frozen.graph.as_graph_def())
    except Exception:  # noqa: BLE001 - e.g. ConvNeXt: a nested function call the GraphDef
        return ov.convert_model(function)  # reader cannot follow


def _say(est, message):
    if est.verbose:
        print(f"[CNNFeatureTransformer] {message}", flush=True)


def _digest_file(path):
    """``{"size", "sha256"}`` of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return {"size": os.path.getsize(path), "sha256": h.hexdigest()}


def _info_digest(info):
    body = {k: v for k, v in info.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class _Damaged(Exception):
    """Why a model folder cannot be used as it is."""


def _check(path, doc, known_weights):
    """The folder's ``info`` when every check passes; else raise :class:`_Damaged`."""
    try:
        with open(os.path.join(path, "info.json"), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise _Damaged(f"info.json cannot be read ({e})") from e
    if not isinstance(info, dict) or info.get("sha256") != _info_digest(info):
        raise _Damaged("info.json does not match its own SHA-256 (edited or damaged)")
    if {k: info.get(k) for k in doc} != doc:
        raise _Damaged("info.json describes another model than its folder's id")
    files = info.get("files")
    for name in MODEL_FILES:
        recorded = files.get(name) if isinstance(files, dict) else None
        try:
            size = os.path.getsize(os.path.join(path, name))
        except OSError as e:
            raise _Damaged(f"{name} cannot be read ({e})") from e
        if not isinstance(recorded, dict) or recorded.get("size") != size:
            raise _Damaged(f"{name} has {size} bytes, not the {recorded and recorded.get('size')} "
                           "recorded in info.json")
        if _digest_file(os.path.join(path, name))["sha256"] != recorded.get("sha256"):
            raise _Damaged(f"{name} does not match the SHA-256 recorded in info.json")
    if known_weights is not None and info.get("weights_sha256") != known_weights:
        raise _Damaged("it was converted from other weights than the network built here "
                       f"(SHA-256 {str(info.get('weights_sha256'))[:12]}... instead of "
                       f"{known_weights[:12]}...)")
    shape, n_folded = info.get("feature_shape"), info.get("n_folded")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d > 0 for d in shape)
            and isinstance(n_folded, int) and isinstance(info.get("weights_sha256"), str)):
        raise _Damaged("info.json lacks feature_shape, n_folded or weights_sha256")
    return info


def _load(path, doc, pooling, known_weights=None):
    """``(model, info)`` of the converted model folder ``path``, checked (see the
    module's docstring); None when there is none, or when it fails a check (it
    is then removed, with a :class:`ConvertedModelWarning` naming it)."""
    if path is None or not os.path.isdir(path):
        return None
    try:
        info = _check(path, doc, known_weights)
        try:
            model = _ov_core().read_model(os.path.join(path, "model.xml"))
            out = model.outputs[0].get_partial_shape()
            got = [d.get_length() if d.is_static else None for d in out][1:]
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and others
            raise _Damaged(f"OpenVINO cannot read it ({type(e).__name__}: {e})") from e
        shape = info["feature_shape"]
        want = int(np.prod(shape)) if pooling is None else shape[-1]
        if None in got or int(np.prod(got)) != want:
            raise _Damaged(f"its graph gives {got} features per image, not the {want} of the "
                           f"feature shape {shape} recorded in info.json")
    except _Damaged as e:
        warnings.warn(f"The converted OpenVINO model in {path} is not used: {e}. It is removed "
                      "and converted again.", ConvertedModelWarning, stacklevel=4)
        _discard(path)
        return None
    return model, info


def _discard(path):
    from ..fileio import remove_tree

    remove_tree(path)


def _save(path, ov_model, doc, info):
    """Publish the model folder whole (:func:`~skbottleneck.fileio.atomic_folder`);
    whether it is on disk. Any error (read-only, not a folder, disk full, an
    error of ``ov.save_model``) leaves no temporary folder and is said once
    per folder and process (a :class:`ConvertedModelWarning`): the model is
    used from memory."""
    from ..fileio import atomic_folder, remove_stale_tmp

    ov = import_openvino()
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
        remove_stale_tmp(parent)
        with atomic_folder(path) as tmp:
            ov.save_model(ov_model, os.path.join(tmp, "model.xml"), compress_to_fp16=False)
            info = {**doc, **info, "files": {name: _digest_file(os.path.join(tmp, name))
                                             for name in MODEL_FILES}}
            info["sha256"] = _info_digest(info)
            with open(os.path.join(tmp, "info.json"), "w", encoding="utf-8") as f:
                json.dump(info, f, sort_keys=True, indent=1)
    except Exception as e:  # noqa: BLE001 - ov.save_model fails with RuntimeError too
        if isinstance(e, FileExistsError) and os.path.isdir(path):
            return True  # another process published the same model first
        if parent not in _UNWRITABLE:
            _UNWRITABLE.add(parent)
            warnings.warn(
                f"The converted OpenVINO model cannot be kept in {path} ({type(e).__name__}: "
                f"{e}); this run uses it from memory, and the next one converts it again. Set "
                "SKBOTTLENECK_CACHE_DIR to a writable folder to keep it.",
                ConvertedModelWarning, stacklevel=4)
        return False
    return True
