"""CNNFeatureTransformer: image paths in, CNN bottleneck features out.

The extraction pipeline overlaps three stages so that the CNN, the only
real cost on a laptop CPU, never waits:

1. decoding + resizing in a small thread pool (Pillow releases the GIL),
   a few batches ahead of the CNN;
2. the CNN as one compiled ``tf.function`` per (model, input size), called
   with ``training=False`` on uint8 batches (preprocessing, pooling and the
   dtype cast run inside the compiled graph), with each batch normalisation
   folded into the convolution before it (:mod:`skbottleneck._fold`);
3. writing features to the on-disk cache / store in a background thread.
"""

import hashlib
import json
import os
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .images import ImageError, load_image

__all__ = ["CNNFeatureTransformer"]

#: Version of the feature format: bump it when a change of this module
#: changes the features computed for the same image and parameters, so that
#: caches written before are not reused.
FEATURE_FORMAT_VERSION = 2  # 2: batch normalisation folded (features move ~1e-6)

# Counts images that went through the CNN in this process (tests and
# benchmarks use it to prove that the cache prevents re-extraction).
_CNN_IMAGE_COUNT = 0
_count_lock = threading.Lock()


def cnn_image_count():
    """Number of images this process has run through a CNN so far."""
    return _CNN_IMAGE_COUNT


def _add_cnn_images(n):
    global _CNN_IMAGE_COUNT
    with _count_lock:
        _CNN_IMAGE_COUNT += n


# Built models are kept per process, keyed by what determines them, so that
# the clones made by GridSearchCV / cross_val_score do not rebuild the CNN.
_MODEL_MEMO = OrderedDict()
_MODEL_MEMO_SIZE = 2


def _is_keras_model(obj):
    # Avoid importing keras for the plain string case.
    return not isinstance(obj, str) and hasattr(obj, "layers") and hasattr(obj, "get_layer")


def _default_decode_threads():
    return max(1, min(4, os.cpu_count() or 1))


class CNNFeatureTransformer(TransformerMixin, BaseEstimator):
    """Extract pretrained-CNN "bottleneck" features from image files.

    Takes a sequence of image paths and returns one row of features per
    image, computed by a CNN pretrained on ImageNet (or your own Keras
    model). Images are decoded, resized and run through the CNN in
    batches, so memory does not grow with the number of images beyond the
    output array; features are cached on disk under a hash of each image's
    content, so a second ``transform`` of the same images (for instance in
    every fold of a ``GridSearchCV``) runs no CNN at all.

    Parameters
    ----------
    backbone : str or keras.Model, default="resnet50"
        Name of a registered backbone (see :func:`skbottleneck.list_backbones`)
        or a Keras model taking ``(height, width, 3)`` images in [0, 255].
    weights : {"imagenet"}, str, path or None, default="imagenet"
        ``"imagenet"``: pretrained weights (downloaded and cached by Keras;
        ``efficientnet_lite0`` ships with the package and needs no download).
        ``None``: random initialisation seeded by ``random_state``. A path to
        a ``.weights.h5`` or ``.keras`` file: your own weights.
    layer : str or None, default=None
        Name of the backbone layer whose output is the feature map. ``None``
        takes the last feature map of the top-less backbone.
    pooling : {"avg", "max"} or None, default="avg"
        Global pooling over the spatial axes. ``None`` flattens the whole map
        (VGG16 at 224: 7 x 7 x 512 = 25,088 features per image).
    input_size : int, (int, int) or None, default=None
        Images are resized to this size (height, width). ``None`` uses the
        backbone's default (224 for most).
    batch_size : int, default=32
        Images per CNN call.
    dtype : {"float32", "float16"}, default="float32"
        Dtype of the features returned and stored.
    cache_dir : str, path, "auto" or None, default="auto"
        Where features are cached. ``"auto"`` uses ``$SKBOTTLENECK_CACHE_DIR``
        or the per-user cache folder; ``None`` disables the cache.
    on_error : {"raise", "skip"}, default="raise"
        What to do with an image that cannot be read. ``"raise"`` raises an
        :class:`~skbottleneck.ImageError` naming the file and the reason.
        ``"skip"`` leaves it out of the output (so fewer rows come back, or
        a store of the readable images from ``extract``), warns, and lists
        it in ``failed_``; ``kept_`` gives the indices of the rows that were
        kept.
    decode_threads : int or None, default=None
        Threads decoding images while the CNN runs. ``None``: ``min(4, cpu_count)``.
    mixed_precision : bool, default=False
        Run the CNN in float16 compute (useful on a GPU; slower on most CPUs).
    random_state : int or None, default=None
        Seed of the random initialisation when ``weights=None``. With
        ``weights=None`` and no seed the features are not reproducible and
        are never cached.
    verbose : int, default=0
        0: silent. 1: a progress bar with images/s. 2: also the time spent
        decoding, in the CNN and writing.

    Attributes
    ----------
    n_features_out_ : int
        Number of features per image.
    feature_shape_ : tuple of int
        Shape of the feature map before pooling/flattening.
    input_size_ : tuple of int
        ``(height, width)`` the images are resized to.
    fingerprint_ : dict
        Everything that determines the features; the cache key of the model.
    failed_ : list of (str, str)
        ``(path, reason)`` of the images the last ``transform`` skipped.
    kept_ : ndarray of int
        Indices (into the last input) of the rows the last ``transform`` returned.
    extraction_stats_ : dict
        Counts and per-stage seconds of the last ``transform``/``extract``;
        ``bn_folded`` is the number of batch normalisation layers folded
        into the convolution before them (see ``fold_batch_norm``).
    cluster_stats_ : dict
        After a ``transform``/``extract`` on a Dask cluster: partitions,
        images per worker, seconds (see
        :func:`skbottleneck.distributed.fill_cache_on_cluster`).

    Examples
    --------
    >>> from skbottleneck import CNNFeatureTransformer
    >>> from skbottleneck.datasets import make_photo_folder, load_image_folder
    >>> folder = make_photo_folder(tmp_dir, n_per_class=2, size=(48, 48))
    >>> paths, labels = load_image_folder(folder)
    >>> cnn = CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0,
    ...                             input_size=32, cache_dir=None)
    >>> cnn.fit_transform(paths).shape[1]
    1280
    """

    _parameter_constraints = {
        "backbone": "no_validation",  # a name (checked by the registry) or a keras.Model
        "weights": [StrOptions({"imagenet"}), str, os.PathLike, None],
        "layer": [str, None],
        "pooling": [StrOptions({"avg", "max"}), None],
        "input_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions({"float32", "float16"})],
        "cache_dir": [str, os.PathLike, None],
        "on_error": [StrOptions({"raise", "skip"})],
        "decode_threads": [Interval(Integral, 1, None, closed="left"), None],
        "mixed_precision": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="resnet50",
        *,
        weights="imagenet",
        layer=None,
        pooling="avg",
        input_size=None,
        batch_size=32,
        dtype="float32",
        cache_dir="auto",
        on_error="raise",
        decode_threads=None,
        mixed_precision=False,
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.input_size = input_size
        self.batch_size = batch_size
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.on_error = on_error
        self.decode_threads = decode_threads
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Resolve the backbone and compute the output size.

        Nothing is learned from ``X``: the CNN is pretrained. ``fit`` builds
        the model (once per process, then reused) to know the feature size.

        Parameters
        ----------
        X : sequence of str or FeatureStore, optional
            Ignored, except that a :class:`~skbottleneck.FeatureStore` is
            checked to hold features of this transformer's model.
        y : ignored

        Returns
        -------
        self : CNNFeatureTransformer
        """
        self.input_size_ = self._resolve_input_size()
        self.fingerprint_ = self._fingerprint()
        runner = self._runner()
        self.feature_shape_ = runner.feature_shape
        self.n_features_out_ = int(np.prod(self.feature_shape_)) if self.pooling is None else int(
            self.feature_shape_[-1]
        )
        if _is_store(X):
            self._check_store(X)
        return self

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Compute the features of the images in ``X``.

        Parameters
        ----------
        X : sequence of str or path-like, or FeatureStore
            Image paths (list, tuple, 1-D array, pandas Series or a one-column
            DataFrame). A :class:`~skbottleneck.FeatureStore` written by this
            model is returned unchanged, so that a ``Pipeline`` can train a
            head out of core from a store and predict from image paths.

        Returns
        -------
        features : ndarray of shape (n_images, n_features_out_)
            One row per image, in input order (minus the skipped ones when
            ``on_error="skip"``).
        """
        check_is_fitted(self, "n_features_out_")
        if _is_store(X):
            self._check_store(X)
            return X
        paths = _check_paths(X)
        self._extract_on_cluster(paths, client=None)
        n = len(paths)
        out = np.empty((n, self.n_features_out_), dtype=self.dtype)
        ok = np.zeros(n, dtype=bool)

        def sink(rows, features):
            out[rows] = features
            ok[rows] = True

        failed = self._extract_into(paths, np.arange(n), sink)
        self.failed_ = failed
        if failed:
            self.kept_ = np.flatnonzero(ok)
            _warn_skipped(failed, n)
            return out[self.kept_]
        self.kept_ = np.arange(n)
        return out

    def extract(self, X, y=None, *, store, overwrite=False, client=None):
        """Write the features of a dataset straight to an on-disk store.

        Features go to disk batch by batch: memory stays flat whatever the
        number of images. An interrupted run (Ctrl-C, a crash, a kill)
        resumes where it stopped when called again with the same arguments.

        Parameters
        ----------
        X : sequence of str or path-like
            Image paths.
        y : array-like of shape (n_images,), optional
            Labels, stored beside the features.
        store : str or path-like
            Path of the store file to write (e.g. ``"features.h5"``).
        overwrite : bool, default=False
            Replace an existing store written with other images or another model.
        client : dask.distributed.Client, optional
            Extract on this Dask cluster (see :mod:`skbottleneck.distributed`);
            also used when called inside ``joblib.parallel_backend("dask")``.

        Returns
        -------
        store : FeatureStore
            The finished store, open for reading. With ``on_error="skip"``
            it holds the readable images only, in order; ``failed_`` and the
            store's ``metadata["skipped_images"]`` (JSON) list the others
            with the reason. Calling again with the same arguments returns
            the same store without reading an image; with ``overwrite=True``
            the unreadable images are tried again.

        Raises
        ------
        ImageError
            An image cannot be read and ``on_error="raise"``, or none can be
            read. The features already extracted are kept for the next call.
        """
        from .store import FeatureStore, StoreWriter, check_disk_space

        if not hasattr(self, "n_features_out_"):
            self.fit()
        paths = _check_paths(X)
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(paths):
                raise ValueError(
                    f"X and y must have the same length; got {len(paths)} paths and {len(y)} labels."
                )
        writer = StoreWriter(
            store,
            paths=[os.fspath(p) for p in paths],
            labels=y,
            n_features=self.n_features_out_,
            dtype=self.dtype,
            metadata=self._store_metadata(),
            overwrite=overwrite,
        )
        rows = np.asarray(writer.missing_rows(), dtype=np.intp)
        if len(rows):
            # on a cluster, the workers fill the shared cache; the rows are
            # then copied from the cache below without running a CNN here
            self._extract_on_cluster(paths[rows], client=client)
            itemsize = np.dtype(self.dtype).itemsize
            check_disk_space(os.path.dirname(os.path.abspath(os.fspath(store))),
                             len(rows) * self.n_features_out_ * itemsize,
                             what=f"features of {len(rows)} images x {self.n_features_out_} x {itemsize} bytes",
                             verbose=self.verbose)
        failed = self._extract_into(paths, rows, writer.write_rows, write_in_background=True)
        if writer.finished:  # a store of the readable images lists the others
            with FeatureStore(writer.path) as done:
                failed = [tuple(f) for f in json.loads(done.metadata.get("skipped_images", "[]"))]
        self.failed_ = failed
        bad = {path for path, _ in failed}
        keep = np.flatnonzero([os.fspath(p) not in bad for p in paths]) if bad else np.arange(len(paths))
        self.kept_ = keep
        if writer.finished or not failed:
            return writer.finalize()
        if len(keep) == 0:
            raise ImageError(failed[0][0], f"{failed[0][1]} (none of the {len(paths)} images "
                                           "could be read; see failed_)")
        # on_error="skip": the store holds the readable images, in order
        store = writer.finalize_subset(keep, metadata={"skipped_images": json.dumps(failed)})
        _warn_skipped(failed, len(paths), where=f" of {store.path}")
        return store

    # ------------------------------------------------------------- pipeline
    def _extract_on_cluster(self, paths, client):
        """Fill the cache from a Dask cluster when one is given or active."""
        from .distributed import active_client  # light: imports dask only if installed and in use

        client = active_client(client)
        if client is None:
            return
        from .distributed import fill_cache_on_cluster

        fill_cache_on_cluster(self, paths, client=client)

    def _extract_into(self, paths, rows, sink, write_in_background=False):
        """Compute features of ``paths[rows]`` and hand them to ``sink(rows, features)``.

        Returns the list of ``(path, reason)`` for images that failed when
        ``on_error="skip"``; raises :class:`ImageError` otherwise.
        """
        stats = {"n_images": len(rows), "n_cached": 0, "n_extracted": 0, "n_failed": 0,
                 "hash_s": 0.0, "decode_s": 0.0, "cnn_s": 0.0, "write_s": 0.0, "wall_s": 0.0}
        self.extraction_stats_ = stats
        t_start = time.perf_counter()
        failed = []
        if len(rows) == 0:
            return failed

        def fail(row, reason):
            path = os.fspath(paths[row])
            if self.on_error == "raise":
                raise ImageError(path, reason)
            failed.append((row, path, reason))

        cache = self._cache()
        writer = ThreadPoolExecutor(max_workers=1) if (cache is not None or write_in_background) else None
        pending_writes = []

        def write(fn, *args):
            if writer is None:
                t = time.perf_counter()
                fn(*args)
                stats["write_s"] += time.perf_counter() - t
                return
            # keep at most a few writes in flight: bounded memory
            while len(pending_writes) >= 4:
                pending_writes.pop(0).result()

            def timed():
                t = time.perf_counter()
                fn(*args)
                stats["write_s"] += time.perf_counter() - t

            pending_writes.append(writer.submit(timed))

        try:
            # 1. content keys and cache hits
            todo_rows = rows
            keys = None
            if cache is not None:
                from .store import file_keys

                t = time.perf_counter()
                key_list = file_keys([paths[r] for r in rows])
                stats["hash_s"] = time.perf_counter() - t
                good = []
                keys = {}
                for r, k in zip(rows, key_list):
                    if isinstance(k, BaseException):
                        fail(r, _reason(k))
                    else:
                        keys[r] = k
                        good.append(r)
                good = np.asarray(good, dtype=np.intp)
                found = cache.lookup([keys[r] for r in good]) if len(good) else np.zeros(0, bool)
                hit_rows = good[found]
                stats["n_cached"] = len(hit_rows)
                for start in range(0, len(hit_rows), 4096):
                    block = hit_rows[start:start + 4096]
                    feats = cache.read([keys[r] for r in block])
                    write(sink, block, feats.astype(self.dtype, copy=False))
                # one CNN pass per distinct content among the misses
                todo_rows = good[~found]
            groups = _group_by_key(todo_rows, keys)
            if cache is not None and len(groups):
                from .store import check_disk_space

                itemsize = np.dtype(self.dtype).itemsize
                check_disk_space(cache.path, len(groups) * self.n_features_out_ * itemsize,
                                 what=f"features of {len(groups)} images x {self.n_features_out_} "
                                 f"x {itemsize} bytes", verbose=self.verbose)

            # 2. decode (thread pool) -> CNN -> sink / cache (writer thread)
            if len(groups):
                self._run_cnn(paths, groups, sink, cache, keys, write, fail, stats)
            for f in pending_writes:
                f.result()
            if cache is not None and stats["n_extracted"]:
                t = time.perf_counter()
                cache.compact()
                stats["write_s"] += time.perf_counter() - t
        finally:
            if writer is not None:
                writer.shutdown(wait=True)
            stats["n_failed"] = len(failed)
            stats["wall_s"] = time.perf_counter() - t_start
        failed = [(path, reason) for _, path, reason in sorted(failed, key=lambda f: f[0])]
        if self.verbose >= 2:
            print(
                "[CNNFeatureTransformer] {n_images} images: {n_cached} cached, {n_extracted} "
                "through the CNN, {n_failed} failed; hash {hash_s:.2f}s, decode {decode_s:.2f}s "
                "(thread time), CNN {cnn_s:.2f}s, write {write_s:.2f}s, wall {wall_s:.2f}s".format(
                    **stats
                ),
                flush=True,
            )
        return failed

    def _run_cnn(self, paths, groups, sink, cache, keys, write, fail, stats):
        runner = None  # built at the first readable image: none when all fail
        height, width = self.input_size_
        batch_size = self.batch_size
        firsts = [g[0] for g in groups]
        n_threads = self.decode_threads or _default_decode_threads()
        decode_time = [0.0]
        time_lock = threading.Lock()

        def decode(row):
            t = time.perf_counter()
            try:
                return load_image(paths[row], (height, width))
            except ImageError as e:
                return e
            finally:
                with time_lock:
                    decode_time[0] += time.perf_counter() - t

        progress = None
        if self.verbose:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(groups), unit="img", desc=f"{self._name()} features",
                            smoothing=0.1, dynamic_ncols=True)
        starts = range(0, len(groups), batch_size)
        prefetch = 2  # batches decoded ahead of the CNN
        with ThreadPoolExecutor(max_workers=n_threads, initializer=_yield_to_the_cnn) as pool:
            submitted = []

            def submit(i):
                submitted.append([pool.submit(decode, r) for r in firsts[starts[i]:starts[i] + batch_size]])

            for i in range(min(prefetch + 1, len(starts))):
                submit(i)
            try:
                for i, start in enumerate(starts):
                    futures = submitted[i]
                    submitted[i] = None
                    if i + prefetch + 1 < len(starts):
                        submit(i + prefetch + 1)
                    batch_groups = groups[start:start + batch_size]
                    images, ok_groups = [], []
                    for g, fut in zip(batch_groups, futures):
                        img = fut.result()
                        if isinstance(img, ImageError):
                            for r in g:
                                fail(r, img.reason)
                        else:
                            images.append(img)
                            ok_groups.append(g)
                    if not images:
                        continue
                    if runner is None:
                        runner = self._runner()
                        stats["bn_folded"] = runner.n_folded
                    t = time.perf_counter()
                    feats = runner(np.stack(images))
                    stats["cnn_s"] += time.perf_counter() - t
                    stats["n_extracted"] += len(images)
                    _add_cnn_images(len(images))
                    if cache is not None:
                        write(cache.write, [keys[g[0]] for g in ok_groups], feats)
                    rows = np.concatenate(ok_groups)
                    sizes = [len(g) for g in ok_groups]
                    write(sink, rows, np.repeat(feats, sizes, axis=0) if len(rows) > len(feats) else feats)
                    if progress is not None:
                        progress.update(len(batch_groups))
            finally:
                for futs in submitted:
                    for f in futs or ():
                        f.cancel()
                if progress is not None:
                    progress.close()
        stats["decode_s"] += decode_time[0]

    # -------------------------------------------------------------- helpers
    def _name(self):
        if _is_keras_model(self.backbone):
            return self.backbone.name
        return self.backbone

    def _backbone_spec(self):
        from .backbones import get_backbone

        return get_backbone(self.backbone)

    def _resolve_input_size(self):
        size = self.input_size
        if size is None:
            if _is_keras_model(self.backbone):
                shape = self.backbone.input_shape
                if shape[1] is None or shape[2] is None:
                    raise ValueError(
                        f"The Keras model {self.backbone.name!r} has no fixed input size "
                        f"(input_shape={shape}); pass input_size."
                    )
                return (int(shape[1]), int(shape[2]))
            size = self._backbone_spec().default_size
        if isinstance(size, Integral):
            return (int(size), int(size))
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(
                f"The 'input_size' parameter of CNNFeatureTransformer must be an int or a "
                f"(height, width) pair of positive ints. Got {self.input_size!r} instead."
            )
        return size

    def _weights_id(self):
        """A string identifying the weights, or None when they are not reproducible."""
        if _is_keras_model(self.backbone):
            h = hashlib.sha256(self.backbone.to_json().encode())
            for w in self.backbone.weights:
                h.update(np.ascontiguousarray(w.numpy()).tobytes())
            return "model:" + h.hexdigest()
        from .backbones import weights_identity

        return weights_identity(self.weights, self.random_state, backbone=self._backbone_spec().name)

    def _fingerprint(self):
        weights_id = self._weights_id()
        if _is_keras_model(self.backbone):
            preprocessing = "none (user model)"
            name = self.backbone.name
        else:
            spec = self._backbone_spec()
            preprocessing = spec.preprocessing
            name = spec.name
        return {
            "backbone": name,
            "weights": weights_id,
            "layer": self.layer,
            "pooling": self.pooling,
            "input_size": list(self.input_size_),
            "preprocessing": preprocessing,
            "resize": "pillow-bilinear-draft",
            "dtype": self.dtype,
            "mixed_precision": bool(self.mixed_precision),
            "feature_format": FEATURE_FORMAT_VERSION,
        }

    def _store_metadata(self):
        """What a store / cache shard records about the model (library versions
        are recorded by the store itself and are not part of its identity)."""
        meta = {k: json.dumps(v) if isinstance(v, (list, dict)) or v is None else v
                for k, v in self.fingerprint_.items()}
        meta["fingerprint"] = json.dumps(self.fingerprint_, sort_keys=True)
        return meta

    def _check_store(self, store):
        meta = getattr(store, "metadata", {}) or {}
        theirs = meta.get("fingerprint")
        if theirs is not None and json.loads(theirs) != self.fingerprint_:
            raise ValueError(
                f"The FeatureStore {getattr(store, 'path', store)!s} holds features of another "
                f"model: {theirs}; this transformer computes {json.dumps(self.fingerprint_, sort_keys=True)}."
            )

    def _cache(self):
        if self.cache_dir is None or self.fingerprint_.get("weights") is None:
            return None
        from .store import FeatureCache, get_cache_dir

        root = get_cache_dir(None if self.cache_dir == "auto" else self.cache_dir)
        return FeatureCache(root, self.fingerprint_, dtype=self.dtype,
                            metadata=self._store_metadata())

    def _runner(self):
        key = None if self.fingerprint_["weights"] is None else (
            json.dumps(self.fingerprint_, sort_keys=True), id(self.backbone) if _is_keras_model(self.backbone) else None
        )
        if key is not None and key in _MODEL_MEMO:
            _MODEL_MEMO.move_to_end(key)
            return _MODEL_MEMO[key]
        runner = _CNNRunner(self)
        if key is not None:
            _MODEL_MEMO[key] = runner
            while len(_MODEL_MEMO) > _MODEL_MEMO_SIZE:
                _MODEL_MEMO.popitem(last=False)
        return runner

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``<backbone>_<pooling>_<i>``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self, "n_features_out_")
        name = self._name()
        if self.layer:
            name = f"{name}_{self.layer}"
        prefix = f"{name}_{self.pooling or 'flat'}"
        return np.asarray([f"{prefix}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


class _CNNRunner:
    """A built Keras model and its compiled call for one fingerprint."""

    def __init__(self, est, fold=True):
        from ._fold import fold_batch_norm
        from ._keras import import_keras, import_tf

        keras = import_keras()
        tf = import_tf()
        height, width = est.input_size_
        if est.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            if _is_keras_model(est.backbone):
                base = est.backbone
                preprocess = None
            else:
                spec = est._backbone_spec()
                base = spec.build(weights=est.weights, input_size=(height, width),
                                  random_state=est.random_state)
                preprocess = spec.preprocess
        finally:
            if est.mixed_precision:
                keras.mixed_precision.set_global_policy("float32")
        if est.layer is not None:
            try:
                layer = base.get_layer(est.layer)
            except ValueError as e:
                names = [lay.name for lay in base.layers]
                raise ValueError(
                    f"The backbone {base.name!r} has no layer named {est.layer!r}. "
                    f"Its layers include: {', '.join(names[-12:])} (and {len(names) - 12} more)."
                ) from e
            base = keras.Model(base.input, layer.output, name=f"{base.name}_{est.layer}")
        shape = tuple(int(s) for s in base.output.shape[1:])
        if len(shape) != 3 and est.pooling is not None:
            raise ValueError(
                f"pooling={est.pooling!r} needs a (height, width, channels) feature map, but "
                f"the output of {base.name!r} has shape {shape}; use pooling=None."
            )
        base, self.n_folded = fold_batch_norm(base) if fold else (base, 0)
        self.model = base
        self.feature_shape = shape
        pooling = est.pooling
        out_dtype = tf.as_dtype(est.dtype)

        def call(x):
            x = tf.cast(x, tf.float32)
            if preprocess is not None:
                x = preprocess(x)
            y = base(x, training=False)
            y = tf.cast(y, tf.float32)
            if pooling == "avg":
                y = tf.reduce_mean(y, axis=[1, 2])
            elif pooling == "max":
                y = tf.reduce_max(y, axis=[1, 2])
            else:
                y = tf.reshape(y, [tf.shape(y)[0], -1])
            return tf.cast(y, out_dtype)

        compiled = tf.function(
            call,
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)],
            reduce_retracing=True,
        )
        self._fn = compiled

    def __call__(self, images):
        return self._fn(images).numpy()


def _yield_to_the_cnn():
    """Lower the priority of a decoding thread (Linux: per-thread nice value).

    The CNN's thread pool runs one shard of each op per core and waits for
    the slowest: a decoding thread that takes a core mid-op stalls the whole
    op. With a lower priority, decoding runs in the gaps between CNN ops
    and in the batches' slack instead. Set SKBOTTLENECK_DECODE_NICE=0 to
    turn it off.
    """
    nice = int(os.environ.get("SKBOTTLENECK_DECODE_NICE", "19"))
    if nice and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:  # pragma: no cover - not permitted: keep the default
            pass


def _warn_skipped(failed, n, where=""):
    """Warn (from the caller of the public method) that images were left out."""
    warnings.warn(
        f"{len(failed)} of {n} images could not be read and were left out{where} "
        f"(see failed_): {failed[0][0]}: {failed[0][1]}" + (" ..." if len(failed) > 1 else ""),
        UserWarning,
        stacklevel=3,
    )


def _reason(exc):
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"{type(exc).__name__}: {exc}"


def _group_by_key(rows, keys):
    """Groups of rows that share the same content (one CNN pass per group)."""
    if keys is None:
        return [np.asarray([r]) for r in rows]
    groups = OrderedDict()
    for r in rows:
        groups.setdefault(keys[r], []).append(r)
    return [np.asarray(g) for g in groups.values()]


def _is_store(X):
    return hasattr(X, "iter_chunks") and hasattr(X, "n_features")


def _check_paths(X):
    """Validate a sequence of image paths; returns an object array of them."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            "CNNFeatureTransformer expects a sequence of image paths (list, array, Series); "
            f"got a single path {os.fspath(X)!r}. Wrap it in a list: [path]."
        )
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):  # one-column DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"CNNFeatureTransformer expects one column of image paths; got a DataFrame "
                f"with {X.shape[1]} columns."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    try:
        arr = np.asarray(X, dtype=object)
    except Exception as e:
        raise TypeError(f"CNNFeatureTransformer expects a sequence of image paths; got {type(X).__name__}.") from e
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"CNNFeatureTransformer expects a 1-D sequence of image paths; got an array of shape {arr.shape}."
        )
    for p in arr:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(
                "CNNFeatureTransformer expects image paths (str or path-like); "
                f"got an element of type {type(p).__name__}: {p!r:.80}."
            )
    return arr
