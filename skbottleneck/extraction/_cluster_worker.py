"""The CNN stage on a Dask worker: what travels with a task, and the task.

A task carries a small spec: an unfitted copy of the client's transformer
(its parameters only; a Keras model given as backbone travels as a file in
the shared cache folder, loaded once per worker process; a keras-hub preset
folder, as its absolute path on the shared file system), the cache it
must write to, and the SHA-256 of the client's weights. The worker fits
its copy (the CNN is built once per worker process and reused by its next
tasks), checks that it built the very same weights, and runs an
:class:`~._engine.ExtractionEngine` of its own: into the shared cache, or,
when the workers cannot see the client's cache (``spec["return_features"]``),
into a cache private to the task, whose features (and content keys) the
task returns to the client, which writes them to its own cache.
"""

import json
import os
import tempfile
import time
from collections import OrderedDict

from sklearn.base import clone

from ..backbones import WeightsUnavailableError
from ..cache import FeatureCache
from ._engine import ExtractionEngine
from ._fingerprint import store_metadata
from ._runner import forget_runner, get_runner, weights_digest

__all__ = ["extract_partition", "sees_probe", "worker_name", "worker_spec"]

_LOADED_MODELS = {}  # model file -> keras.Model, per worker process
_FITTED = OrderedDict()  # what a spec describes -> its fitted transformer, per process
_FITTED_SIZE = 2


def worker_name():
    """The address of the Dask worker running this task (or the pid outside one)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # pragma: no cover - run outside a worker
        return f"pid {os.getpid()}"


def sees_probe(path, token):
    """Whether this process reads ``token`` from the file ``path`` (run on each
    worker by :func:`~._cluster.detect_shared_cache`)."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read() == token
    except (OSError, UnicodeDecodeError):
        return False


def worker_spec(engine, *, return_features=False):
    """What a worker needs to extract like ``engine`` (small, picklable).

    With ``return_features`` the workers cannot see ``engine.cache``: they
    return their features instead of writing them there.
    """
    transformer, cache = engine.transformer, engine.cache
    params = transformer.get_params(deep=False)
    # the cache folder resolved here ("auto" would resolve on each worker),
    # failures returned rather than raised (a raise would be retried), no bars
    params.update(cache_dir=None if return_features else cache.cache_dir, on_error="skip",
                  verbose=0)
    weights = params["weights"]
    if weights is not None and not (isinstance(weights, str) and weights == "imagenet"):
        params["weights"] = os.path.abspath(os.fspath(weights))  # a file on the shared FS
    folder = None
    if isinstance(params["backbone"], str) and os.path.isdir(params["backbone"]):
        folder = params["backbone"] = os.path.abspath(params["backbone"])  # a preset folder
    model_file = None
    if not isinstance(params["backbone"], str):  # a Keras model: shared as a file
        if return_features:
            raise ValueError(
                "A Keras model given as backbone travels to the Dask workers as a file in the "
                f"feature cache {cache.path}, which the workers cannot see. Save the model "
                "(model.save('model.keras')) where every worker can read it under the same "
                "path and pass backbone='model.keras', or give the workers a shared cache_dir.")
        model_file = _save_model(params["backbone"], transformer.fingerprint_, cache)
        params["backbone"] = None
    return {
        "return_features": return_features,
        "transformer": type(transformer)(**params),  # unfitted: parameters only
        "model_file": model_file,
        "backbone_folder": folder,
        "fingerprint": transformer.fingerprint_,
        "cache_root": cache.cache_dir,
        "cache_path": cache.path,
        # the workers check that they built the very same CNN before they
        # write to the cache (another Keras version, another file under the
        # weights path, a seeded initialisation disturbed by another thread...)
        "weights_sha256": weights_digest(engine.runner),
    }


def _save_model(model, fingerprint, cache):
    """Save a Keras model given as backbone into the shared cache folder, once
    (published whole by :func:`~skbottleneck.fileio.atomic_file`: a worker never
    loads a half-written file)."""
    from ..fileio import atomic_file, remove_stale_tmp

    name = fingerprint["weights"].split(":")[-1][:32]
    folder = os.path.join(cache.path, "models")
    path = os.path.join(folder, f"{name}.keras")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        remove_stale_tmp(folder)
        with atomic_file(path) as tmp:  # its name ends with .keras, as Keras wants
            model.save(tmp)
    return path


def _load_model(path):
    """The Keras model saved at ``path``, loaded once per process."""
    model = _LOADED_MODELS.get(path)
    if model is None:
        from .._keras import import_keras

        model = _LOADED_MODELS[path] = import_keras().models.load_model(path, compile=False)
    return model


def extract_partition(paths, spec):
    """Task: compute the features of ``paths`` into the shared cache, or return them.

    Returns a dict: ``failed`` (``(path, reason)``), ``stats``, ``worker``,
    ``pid``; with ``spec["return_features"]`` also ``keys`` (content keys of
    the images read) and ``features`` (their rows, in the cache's dtype;
    None when no image was read).
    """
    if spec.get("return_features"):
        return _extract_and_return(paths, spec)
    if not os.path.exists(os.path.join(spec["cache_path"], "fingerprint.json")):
        raise FileNotFoundError(
            f"The feature cache {spec['cache_path']} does not exist on the Dask worker "
            f"{worker_name()}: cache_dir must be a folder on a file system shared by the "
            "workers and the client, under the same path."
        )
    est = _fitted(spec)
    _check_same_model(est, spec["weights_sha256"])
    # the client's cache (a user model loaded from its file may describe
    # itself a little differently; its weights were just checked equal)
    cache = FeatureCache(spec["cache_root"], spec["fingerprint"], dtype=est.dtype,
                         metadata=store_metadata(spec["fingerprint"]))
    engine = ExtractionEngine(est, cache=cache)
    t = time.perf_counter()
    result = engine.run(engine.plan(paths))
    stats = dict(result.stats)
    stats["task_s"] = time.perf_counter() - t
    return {"failed": result.failed, "stats": stats, "worker": worker_name(), "pid": os.getpid()}


class _RecordingCache(FeatureCache):
    """A feature cache private to one task that remembers the keys written to it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.written = []

    def write(self, keys, features):
        super().write(keys, features)
        self.written.extend(keys)


def _extract_and_return(paths, spec):
    """The task when the workers cannot see the client's cache: the engine runs
    into a cache private to this task (the same decoding, hashing and batching
    as anywhere else; a folder removed at the end), whose rows are returned."""
    est = _fitted(spec)
    _check_same_model(est, spec["weights_sha256"])
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skbottleneck-task-") as tmp:
        cache = _RecordingCache(tmp, spec["fingerprint"], dtype=est.dtype,
                                metadata=store_metadata(spec["fingerprint"]))
        engine = ExtractionEngine(est, cache=cache)
        result = engine.run(engine.plan(paths))
        keys = list(dict.fromkeys(cache.written))
        features = cache.read(keys).astype(cache.dtype, copy=False) if keys else None
    stats = dict(result.stats)
    stats["task_s"] = time.perf_counter() - t
    return {"failed": result.failed, "stats": stats, "worker": worker_name(), "pid": os.getpid(),
            "keys": keys, "features": features}


def _fitted(spec):
    """The spec's transformer, fitted once per worker process (fitting hashes
    the weights file: not a cost to pay per task)."""
    key = (json.dumps(spec["fingerprint"], sort_keys=True), spec["model_file"])
    est = _FITTED.get(key)
    if est is None:
        est = clone(spec["transformer"])
        if spec["model_file"] is not None:
            est.set_params(backbone=_load_model(spec["model_file"]))
        folder = spec.get("backbone_folder")
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(
                f"The backbone folder {folder} (a keras-hub preset) is not on the Dask worker "
                f"{worker_name()}: the workers build the model from its files, under the same "
                "path as the client. Put it on a file system the workers share with the client.")
        try:
            est = _FITTED[key] = est.fit()
        except WeightsUnavailableError as e:  # e.g. a preset by name the worker cannot download
            raise WeightsUnavailableError(f"On the Dask worker {worker_name()}: {e}") from e
        while len(_FITTED) > _FITTED_SIZE:
            _FITTED.popitem(last=False)
    return est


def _check_same_model(est, expected):
    """Refuse to cache features of a model other than the client's."""
    runner = get_runner(est)
    got = weights_digest(runner)
    if got == expected:
        return
    forget_runner(runner)  # so that a retry of the task builds the model again
    _FITTED.clear()
    raise RuntimeError(
        f"The CNN built on the Dask worker {worker_name()} has other weights than the one "
        f"built by the client (SHA-256 {got[:12]}... instead of {expected[:12]}...), so its "
        "features would differ; nothing was written to the cache. Check that the workers "
        "have the same Keras/TensorFlow versions as the client and see the same weights "
        "file under the same path."
    )
