"""CNNFeatureTransformer: image paths in, CNN bottleneck features out.

The estimator holds the parameters and the fitted description of the
model (its fingerprint, input and output sizes); the work is done by an
:class:`~._engine.ExtractionEngine` (decode pool -> CNN -> sinks and cache),
locally or with its CNN stage on a Dask cluster (:mod:`._cluster`).
``transform`` and ``extract`` set no attribute: what a run did comes back
from :meth:`~CNNFeatureTransformer.extract` as an :class:`ExtractionResult`.
"""

import json
import os
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..backbones import resolve_backbone
from ..chunks import is_row_source
from ..feature_space import FeatureSpace, FeatureSpaceError, describe
from ..images import ImageError, quiet_bomb_warnings
from ..store import FeatureStore, StoreWriter
from ..utils import check_paths
from ._cluster import active_client, cluster_error, cluster_path, run_cnn_on_cluster
from ._engine import ArraySink, ExtractionEngine, ExtractionResult
from ._fingerprint import check_store, fingerprint, model_name, resolve_input_size, store_metadata
from ._int8 import calibration_set
from ._openvino import resolve_runtime
from ._runner import get_runner
from ._views import check_views, check_views_fit

__all__ = ["CNNFeatureTransformer"]

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
    pooling : {"auto", "avg", "max", "cls", "cls+avg"} or None, default="auto"
        Global pooling over the spatial axes. ``None`` flattens the whole map
        (VGG16 at 224: 7 x 7 x 512 = 25,088 features per image). ``"auto"``:
        the backbone's default (``"avg"`` for a CNN; for keras-hub vision
        transformers ``"cls"``, the pooled image embedding of CLIP/SigLIP,
        and ``"cls+avg"`` for DINOv2, its linear-probe recipe: class token
        concatenated with the mean of the patch tokens). ``"cls"`` and
        ``"cls+avg"`` are for transformers only.
    input_size : int, (int, int) or None, default=None
        Images are resized to this size (height, width). ``None`` uses the
        backbone's default (224 for most).
    batch_size : int, default=32
        Images per CNN call.
    dtype : {"float32", "float16"}, default="float32"
        Dtype of the features returned and stored.
    cache_dir : str, path, "auto" or None, default="auto"
        Where features are cached. ``"auto"`` uses ``$SKBOTTLENECK_CACHE_DIR``
        or the per-user cache folder; ``None`` disables the cache. Models
        converted to OpenVINO are kept in the default folder whatever this says.
    on_error : {"raise", "skip"}, default="raise"
        What to do with an image that cannot be read. ``"raise"`` raises an
        :class:`~skbottleneck.ImageError` naming the file and the reason.
        ``"skip"`` leaves it out of the output (so fewer rows come back, or
        a store of the readable images from ``extract``) and warns;
        :meth:`extract` returns which images were left out and why.
    decode_threads : int or None, default=None
        Threads decoding images while the CNN runs. ``None``: ``min(4, cpu_count)``.
        Remote images are read by 16 I/O threads of their own, ahead of decoding.
    storage_options : dict or None, default=None
        fsspec options for image URLs (``s3://``, ``gs://``, ``az://``,
        ``https://``...): credentials, ``{"client_kwargs": {"endpoint_url":
        ...}}``, ``{"anon": True}``. None: fsspec's defaults and the
        environment (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``...). Keyed by
        protocol (``{"s3": {...}, "https": {...}}``) when URLs of several
        kinds are read. They change
        where images are read, not the features: the cache key is the
        content of the bytes read, the same as for a local copy.
    mixed_precision : bool, default=False
        Run the CNN in float16 compute (useful on a GPU; slower on most CPUs).
    runtime : {"auto", "tensorflow", "openvino"}, default="auto"
        What runs the CNN. ``"openvino"``: OpenVINO on the CPU (``pip install
        skbottleneck[openvino]``), faster than TensorFlow on most CPUs, with
        the same features (see the performance guide); converted once and
        kept on disk. ``"auto"``: OpenVINO when it is installed, the backbone
        is a registry one it was checked on and TensorFlow sees no GPU
        (and ``mixed_precision=False``); TensorFlow otherwise.
    precision : {"float32", "int8"}, default="float32"
        ``"int8"``: run an int8 model quantised (OpenVINO + NNCF) on a sample
        of the images of the first ``fit(X)`` (64, spread over X): faster,
        but it *changes the features*: a feature space of their own,
        never mixed with float32 ones (cache and stores are kept apart).
        Train the head on int8 features.
    random_state : int in [0, 2**32 - 1] or None, default=None
        Seed of the random initialisation when ``weights=None`` (an int, so
        that the features can be cached and rebuilt elsewhere). With
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
        Computed from the parameters at ``fit`` and checked against them before
        every run: a transformer whose parameters changed after ``fit`` (or a
        model file whose ``fingerprint_`` was edited) is refused.
    feature_space_ : FeatureSpace
        The identity of the features it computes (``fingerprint_``'s digest
        and a short description), what heads record and check
        (:mod:`skbottleneck.feature_space`).
    runtime_, precision_ : str
        What runs the CNN (``"tensorflow"`` or ``"openvino"``) and the
        precision of the features (``"float32"`` or ``"int8"``).
    calibration_ : dict or None
        int8: ``id`` (of the calibration images' content, in the
        fingerprint), ``paths`` and ``n_images``. None for float32.

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
        "backbone": [str, HasMethods(["get_layer"])],  # a registry name, or a keras.Model
        "weights": [StrOptions({"imagenet"}), str, os.PathLike, None],
        "layer": [str, None],
        "pooling": [StrOptions({"auto", "avg", "max", "cls", "cls+avg"}), None],
        "input_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions({"float32", "float16"})],
        "cache_dir": [str, os.PathLike, None],
        "on_error": [StrOptions({"raise", "skip"})],
        "decode_threads": [Interval(Integral, 1, None, closed="left"), None],
        "storage_options": [dict, None],
        "mixed_precision": ["boolean"],
        "runtime": [StrOptions({"auto", "tensorflow", "openvino"})],
        "precision": [StrOptions({"float32", "int8"})],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="resnet50",
        *,
        weights="imagenet",
        layer=None,
        pooling="auto",
        input_size=None,
        batch_size=32,
        dtype="float32",
        cache_dir="auto",
        on_error="raise",
        decode_threads=None,
        storage_options=None,
        mixed_precision=False,
        runtime="auto",
        precision="float32",
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
        self.storage_options = storage_options
        self.mixed_precision = mixed_precision
        self.runtime = runtime
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Resolve the backbone and compute the output size.

        Nothing is learned from ``X``: the CNN is pretrained. ``fit`` builds
        the model (once per process, then reused) to know the feature size.
        With ``precision="int8"``, the model is quantised on the first
        images of ``X`` (training images).

        Parameters
        ----------
        X : sequence of str or FeatureStore, optional
            Ignored for float32, except that a :class:`~skbottleneck.FeatureStore`
            is checked to hold features of this transformer's model. int8:
            the calibration images (64 readable ones spread over X), or a store
            of int8 features whose calibration is taken over.
        y : ignored

        Returns
        -------
        self : CNNFeatureTransformer
        """
        self.input_size_ = resolve_input_size(self.backbone, self.input_size)
        self.pooling_ = resolve_backbone(self.backbone).resolve_pooling(self.pooling)
        self.runtime_, self.precision_ = resolve_runtime(self), self.precision
        self.calibration_ = calibration_set(self, X) if self.precision == "int8" else None
        self.fingerprint_ = fingerprint(self.get_params(deep=False), self.input_size_,
                                        self.calibration_)
        self.feature_shape_ = get_runner(self).feature_shape
        self.n_features_out_ = int(np.prod(self.feature_shape_)) if self.pooling_ is None else int(
            self.feature_shape_[-1]
        )
        if is_row_source(X):
            check_store(X, self.fingerprint_)
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
            ``on_error="skip"``; :meth:`extract` tells which).
        """
        check_is_fitted(self, "n_features_out_")
        if is_row_source(X):
            check_store(X, self._checked_fingerprint())
            return X
        return self._extract_in_memory(check_paths(X), None, cluster=None).features

    def extract(self, X, y=None, *, store=None, augment=None, overwrite=False, wait=True,
                client=None, shared_cache="auto"):
        """Compute the features of a dataset, into memory or straight to a store on disk.

        With ``store``, features go to disk batch by batch: memory stays
        flat whatever the number of images, and an interrupted run (Ctrl-C,
        a crash, a kill) resumes where it stopped when called again with
        the same arguments. Fits the transformer first if needed.

        Parameters
        ----------
        X : sequence of str or path-like
            Image paths.
        y : array-like of shape (n_images,), optional
            Labels: stored beside the features, or returned for the kept rows.
        store : str or path-like, default=None
            Path of the store file to write (e.g. ``"features.h5"``). None:
            return the features in memory.
        augment : ImageViews, int or None, default=None
            Also compute augmented views of every image (an int ``n``:
            ``ImageViews(n_views=n)``). Each image then gives ``n_views``
            consecutive rows (view 0 the image itself), its label repeated;
            ``result.groups`` / ``store.image_index`` say which image each row
            is, for cross-validation that keeps an image's views on one side
            (``GroupKFold``). Each view's features are cached, so a second
            call runs no CNN. :class:`~skbottleneck.AugmentedClassifier` does
            all this inside ``fit``, and averages over the views at predict time.
        overwrite : bool, default=False
            Replace an existing store written with other images or another model.
        wait : bool or float, default=True
            When another process is writing the same store: wait for it
            (saying which process), then find the store it finished. False:
            raise :class:`~skbottleneck.store.StoreLockedError` at once; a
            number: wait at most that many seconds.
        client : dask.distributed.Client, optional
            Run the CNN on this Dask cluster (see :mod:`skbottleneck.distributed`);
            also used when called inside ``joblib.parallel_backend("dask")``.
        shared_cache : {"auto", True, False}, default="auto"
            With a Dask cluster: whether its workers see ``cache_dir`` under the
            same path. True: they write the features there; False (Kubernetes,
            cloud clusters): they return them and this process writes its
            cache and store as on one machine; ``"auto"``: ask the workers
            (a probe file). See :doc:`/user_guide/scaling_out`.

        Returns
        -------
        result : ExtractionResult
            ``features``: the rows of the readable images, in order: an
            ndarray, or with ``store`` the finished
            :class:`~skbottleneck.FeatureStore`, open for reading
            (``fs = cnn.extract(X, y, store=path).features``, or ``with
            ... .features as fs:``). ``kept``: their indices into ``X``;
            ``y``: their labels; ``failed``: ``(path, reason)`` of the
            others; ``stats``: counts and seconds per stage (``"cluster"``
            when it ran on Dask); ``groups`` and ``views`` with ``augment``.
            A store written with ``on_error="skip"`` holds the readable
            images only, in order; ``store.skipped_images`` lists the others
            with the reason. Calling again with the same arguments returns
            the same store without reading an image (``failed`` from
            ``store.skipped_images``, ``stats`` counting no image); with
            ``overwrite=True`` the unreadable images are tried again.

        Raises
        ------
        ImageError
            An image cannot be read and ``on_error="raise"``, or none can be
            read. The features already extracted to a store are kept for the
            next call.
        """
        if not hasattr(self, "n_features_out_"):
            self.fit(X)
        paths = check_paths(X)
        views = check_views(augment)
        check_views_fit(views, store, len(paths), self.n_features_out_, self.dtype)  # at once
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(paths):
                raise ValueError(
                    f"X and y must have the same length; got {len(paths)} paths and {len(y)} labels."
                )
        cluster = {"client": client, "shared_cache": shared_cache}
        if store is None:
            return self._extract_in_memory(paths, y, cluster=cluster, views=views)
        return self._extract_to_store(paths, y, store, overwrite=overwrite, wait=wait,
                                      cluster=cluster, views=views)

    # ------------------------------------------------------------- identity
    @property
    def feature_space_(self):
        """The :class:`~skbottleneck.feature_space.FeatureSpace` of the features computed."""
        check_is_fitted(self, "n_features_out_")
        return FeatureSpace.from_fingerprint(self._checked_fingerprint())

    def _checked_fingerprint(self):
        """``fingerprint_``, once it is shown to be what the parameters build.

        The fingerprint keys the feature cache and the converted-model cache
        that every cache on the machine shares, while the network is built
        from the parameters: a stored fingerprint that disagrees with them
        (``set_params`` after ``fit``, or an edited model file) would file
        one model's features under another's name. It is never trusted:
        it is computed again and compared.
        """
        ours = fingerprint(self.get_params(deep=False),
                           resolve_input_size(self.backbone, self.input_size),
                           getattr(self, "calibration_", None))
        if ours != self.fingerprint_:
            raise FeatureSpaceError(
                f"This CNNFeatureTransformer was fitted as {describe(self.fingerprint_)!r}, "
                f"but its parameters now build {describe(ours)!r}: its parameters changed "
                f"after fit (set_params), or the model file it came from was edited. Call "
                f"fit again (fingerprint_ stored: {json.dumps(self.fingerprint_, sort_keys=True)};"
                f" from the parameters: {json.dumps(ours, sort_keys=True)}).")
        return ours

    # ------------------------------------------------------------- the runs
    def _run(self, paths, rows, sink, *, background=False, cluster=None, views=None):
        """Plan and run ``paths[rows]`` on an engine (its CNN stage on Dask when active).

        ``cluster``: ``{"client": ..., "shared_cache": ...}`` as given to
        ``extract`` (None: the active joblib client, if any).
        """
        self._checked_fingerprint()
        engine = ExtractionEngine(self, views=views)
        cluster_stats = None
        cluster = cluster or {}
        shared_cache = cluster.get("shared_cache", "auto")
        client = active_client(cluster.get("client"))
        if client is not None and views is not None:
            raise ValueError("extract(augment=...) does not run on a Dask cluster yet; "
                             "call it without a client.")
        if client is not None:
            if engine.cache is None:
                raise ValueError(cluster_error(self))
            shared = engine.plan([cluster_path(p) for p in paths], rows, hash_all=True)
            cluster_stats = run_cnn_on_cluster(engine, shared, client=client,
                                               shared_cache=shared_cache)
        # Pillow warns about a decompression bomb before our ImageError says it
        with quiet_bomb_warnings():
            result = engine.run(engine.plan(paths, rows), sink, background=background)
        if cluster_stats is not None:
            result.stats["cluster"] = cluster_stats
        return result

    def _extract_in_memory(self, paths, y, *, cluster, views=None):
        n, v = len(paths), 1 if views is None else views.n_views
        sink = ArraySink(n * v, self.n_features_out_, self.dtype)
        result = self._run(paths, np.arange(n), sink, cluster=cluster, views=views)
        if result.failed:
            result.kept = np.flatnonzero(sink.ok[::v])
            result.features = sink.out[_view_rows(result.kept, v)]
            _warn_skipped(result.failed, n)
        else:
            result.kept, result.features = np.arange(n), sink.out
        result.y = None if y is None else np.repeat(y[result.kept], v)
        if views is not None:
            result.groups, result.views = _view_index(result.kept, v)
        return result

    def _extract_to_store(self, paths, y, store, *, overwrite, wait, cluster, views=None):
        v = 1 if views is None else views.n_views
        metadata = store_metadata(self.fingerprint_)
        calibration = getattr(self, "calibration_", None)  # None: float32, or fitted before 0.3
        if calibration is not None:  # to quantise again where the model is not cached
            metadata["calibration_paths"] = json.dumps(calibration["paths"])
        if views is not None:  # n_views consecutive rows per image
            metadata.update(augment=views.describe(), n_views=v)
        # the writer takes the store's lock, then checks that the missing
        # rows fit on the disk before it creates anything
        writer = StoreWriter(
            store,
            paths=[os.fspath(p) for p in paths for _ in range(v)],
            labels=None if y is None else np.repeat(y, v),
            n_features=self.n_features_out_,
            dtype=self.dtype,
            metadata=metadata,
            overwrite=overwrite,
            wait=wait,
            check_space=True,
            verbose=self.verbose,
        )
        with writer:  # closed, and its lock released, whatever happens
            # the views of an image are written together: missing whole
            rows = np.unique(np.asarray(writer.missing_rows(), dtype=np.intp) // v)
            result = self._run(paths, rows, writer.write_rows, background=True, cluster=cluster,
                               views=views)
            failed = result.failed
            if writer.finished:  # a store of the readable images lists the others
                with FeatureStore(writer.path) as done:
                    failed = done.skipped_images
            bad = {path for path, _ in failed}
            keep = (np.flatnonzero([os.fspath(p) not in bad for p in paths]) if bad
                    else np.arange(len(paths)))
            if writer.finished or not failed:
                out = writer.finalize()
            elif len(keep) == 0:
                error = ImageError(failed[0][0], f"{failed[0][1]} (none of the {len(paths)} "
                                                 "images could be read)")
                error.failed = failed  # every image, with its reason
                raise error
            else:  # on_error="skip": the store holds the readable images, in order
                out = writer.finalize_subset(_view_rows(keep, v),
                                             metadata={"skipped_images": json.dumps(failed)})
                _warn_skipped(failed, len(paths), where=f" of {out.path}")
        result.features, result.kept, result.failed = out, keep, failed
        result.y = None if y is None else np.repeat(y[keep], v)
        if views is not None:
            result.groups, result.views = _view_index(keep, v)
        return result

    # -------------------------------------------------------------- helpers
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
        name = model_name(self.backbone)
        if self.layer:
            name = f"{name}_{self.layer}"
        prefix = f"{name}_{self.pooling_ or 'flat'}"
        return np.asarray([f"{prefix}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


def _view_rows(images, n_views):
    """The rows of ``images`` (indices) when each has ``n_views`` consecutive rows."""
    images = np.asarray(images, dtype=np.intp)
    if n_views == 1:
        return images
    return (images[:, None] * n_views + np.arange(n_views)).ravel()


def _view_index(images, n_views):
    """``(groups, views)``: the image and the view of each row of ``images``' views."""
    return np.repeat(images, n_views), np.tile(np.arange(n_views), len(images))


def _warn_skipped(failed, n, where=""):
    """Warn (from the caller of the public method) that images were left out."""
    warnings.warn(
        f"{len(failed)} of {n} images could not be read and were left out{where} "
        f"(see the result of extract()): {failed[0][0]}: {failed[0][1]}"
        + (" ..." if len(failed) > 1 else ""),
        UserWarning,
        stacklevel=4,
    )
