"""The extraction engine: one object that runs a plan through the stages.

::

    image paths --plan--> cached rows ----------------------------> sinks
                    |                                              (array, store)
                    '---> groups of rows, one per distinct content
                            -> DecodePool -> CNNRunner -> Writer -> sinks + cache

:meth:`ExtractionEngine.plan` hashes the images' content (the cache key),
looks the keys up in the cache and groups the missing rows by content, so
that each distinct image goes through the CNN once. :meth:`~ExtractionEngine.run`
copies the cached rows to the sink, then decodes the groups a few batches
ahead (:class:`~._stages.DecodePool`), runs the CNN
(:class:`~._runner.CNNRunner`) and hands each batch to the sink and to the
cache through one background :class:`~._stages.Writer`. On a Dask cluster
the plan's groups are computed by the workers first (:mod:`._cluster`,
each worker running an engine of its own into the shared cache); the plan
made again then finds them cached.

:class:`~skbottleneck.CNNFeatureTransformer`'s ``transform`` and ``extract``,
the Dask workers and the command line all go through this public interface.
"""

import os
import stat
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..cache import FeatureCache, get_cache_dir, known_file_key
from ..images import ImageError
from ..remote import is_remote
from ..store import check_disk_space
from ._fingerprint import model_name, store_metadata
from ._runner import get_runner
from ._stages import DecodePool, RunStats, Writer, content_keys, default_decode_threads
from ._views import derive_view_keys

__all__ = ["ArraySink", "ExtractionEngine", "ExtractionPlan", "ExtractionResult", "open_cache"]

#: Cached rows copied to the sink per read.
CACHE_READ_ROWS = 4096
#: Passes over the work before giving up on a cache that does not serve
#: what was just written to it.
MAX_PASSES = 4


@dataclass
class ExtractionResult:
    """What a run did: what :meth:`~skbottleneck.CNNFeatureTransformer.extract` returns.

    Attributes
    ----------
    features : ndarray, FeatureStore or None
        The features of the rows kept: an ndarray, or the
        :class:`~skbottleneck.FeatureStore` written with ``extract(...,
        store=...)`` (open for reading: ``with result.features as store:``),
        or None (a run that only filled the cache).
    kept : ndarray of int or None
        Indices, into the input, of the rows in ``features``.
    failed : list of (str, str)
        ``(path, reason)`` of the images that could not be read, in input order.
    stats : dict
        Counts and per-stage seconds (see :class:`~._stages.RunStats`); key
        ``"cluster"`` holds what ran on a Dask cluster, when one did.
    y : ndarray or None
        The labels of the kept rows, when labels were given.
    groups : ndarray of int or None
        With augmented views (``extract(..., augment=...)``): the image
        (index into the input) of each row, to keep an image's views on one
        side of a cross-validation split (``GroupKFold``, ``cv.split(X, y,
        groups)``). None without views.
    views : ndarray of int or None
        With augmented views: the view index of each row (0: the image itself).
    """

    features: object = None
    kept: object = None
    failed: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    y: object = None
    groups: object = None
    views: object = None

    def __repr__(self):
        features = self.features  # an array by its shape; a store by its own repr
        if isinstance(features, np.ndarray):
            features = f"<ndarray {features.shape} {features.dtype}>"
        kept = None if self.kept is None else len(self.kept)
        counts = ", ".join(f"{k}={self.stats[k]}" for k in ("n_extracted", "n_cached")
                           if k in self.stats)
        return (f"ExtractionResult(features={features}, kept={kept}, failed={len(self.failed)}"
                + (f", {counts}" if counts else "") + ")")


@dataclass
class ExtractionPlan:
    """Which rows are cached and which go through the CNN.

    Attributes
    ----------
    paths : ndarray of object
        All the input paths (rows index into them).
    rows : ndarray of int
        The rows asked for.
    keys : dict or None
        Row -> content key (None without a cache).
    cached : ndarray of int
        Rows whose features the cache holds.
    groups : list of ndarray
        Rows to compute, grouped by content: one CNN pass per group (its first row).
    failed : list of (int, str)
        ``(row, reason)`` of files that could not be read while hashing.
    hash_s : float
        Seconds spent hashing.
    """

    paths: np.ndarray
    rows: np.ndarray
    keys: dict = None
    cached: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    groups: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    hash_s: float = 0.0

    @property
    def n_to_compute(self):
        return len(self.groups)


class ArraySink:
    """A sink into a pre-allocated ``(n, n_features)`` array; remembers the rows written."""

    def __init__(self, n_rows, n_features, dtype):
        self.out = np.empty((n_rows, n_features), dtype=dtype)
        self.ok = np.zeros(n_rows, dtype=bool)

    def __call__(self, rows, features):
        self.out[rows] = features
        self.ok[rows] = True


def open_cache(transformer):
    """The :class:`~skbottleneck.FeatureCache` of a fitted transformer, or None.

    None when ``cache_dir=None`` or when the features are not reproducible
    (``weights=None`` without a ``random_state``).
    """
    if transformer.cache_dir is None or transformer.fingerprint_.get("weights") is None:
        return None
    root = get_cache_dir(None if transformer.cache_dir == "auto" else transformer.cache_dir)
    return FeatureCache(root, transformer.fingerprint_, dtype=transformer.dtype,
                        metadata=store_metadata(transformer.fingerprint_))


class ExtractionEngine:
    """Runs extraction plans for one fitted :class:`~skbottleneck.CNNFeatureTransformer`.

    Parameters
    ----------
    transformer : CNNFeatureTransformer
        Fitted; its parameters give the model, batch size, threads, dtype.
    cache : FeatureCache, None or "auto", default="auto"
        Where features are looked up and written; ``"auto"``: the
        transformer's own (:func:`open_cache`).
    on_error, verbose : default=None
        Override the transformer's parameters of the same name.
    views : ImageViews or None, default=None
        Compute these augmented views of every image (:class:`~._views.ImageViews`):
        row ``r`` of the plan becomes the sink rows ``r * n_views + v``, and
        each view is cached under its own key (:meth:`~._views.ImageViews.view_keys`).

    Examples
    --------
    >>> from skbottleneck import CNNFeatureTransformer
    >>> from skbottleneck.datasets import make_photo_folder, load_image_folder
    >>> from skbottleneck.extraction import ArraySink, ExtractionEngine
    >>> paths, _ = load_image_folder(make_photo_folder(tmp_dir, n_per_class=1, size=(40, 40)))
    >>> cnn = CNNFeatureTransformer("vgg16", weights=None, random_state=0, input_size=32,
    ...                             cache_dir=tmp_dir / "cache").fit()
    >>> engine = ExtractionEngine(cnn)
    >>> plan = engine.plan(paths)
    >>> len(plan.cached), plan.n_to_compute
    (0, 4)
    >>> sink = ArraySink(len(paths), cnn.n_features_out_, cnn.dtype)
    >>> engine.run(plan, sink).stats["n_extracted"], bool(sink.ok.all())
    (4, True)
    >>> len(engine.plan(paths).cached)   # the second time, all from the cache
    4
    """

    def __init__(self, transformer, *, cache="auto", on_error=None, verbose=None, views=None):
        check_is_fitted(transformer, "n_features_out_")
        self.transformer = transformer
        self.cache = open_cache(transformer) if isinstance(cache, str) and cache == "auto" else cache
        self.on_error = transformer.on_error if on_error is None else on_error
        self.verbose = transformer.verbose if verbose is None else verbose
        self.name = model_name(transformer.backbone)
        self.n_features = transformer.n_features_out_
        self.dtype = transformer.dtype
        self.batch_size = transformer.batch_size
        self.input_size = transformer.input_size_
        self.decode_threads = transformer.decode_threads or default_decode_threads()
        self.storage_options = getattr(transformer, "storage_options", None)
        self.views = views
        self.n_views = 1 if views is None else views.n_views
        self._view_specs = None if views is None else views.key_specs()

    @property
    def runner(self):
        """The :class:`~skbottleneck.extraction.CNNRunner` (built once per process)."""
        return get_runner(self.transformer)

    # ---------------------------------------------------------------- views
    def unit_keys(self, keys):
        """Cache keys of the units of ``keys`` (content keys): ``n_views`` per key."""
        if self.views is None:
            return list(keys)
        return [vk for k in keys for vk in derive_view_keys(k, self._view_specs)]

    def _lookup(self, keys):
        """Which content keys have all their units cached."""
        found = np.asarray(self.cache.lookup(self.unit_keys(keys)), dtype=bool)
        return found if self.views is None else found.reshape(-1, self.n_views).all(axis=1)

    def out_rows(self, groups):
        """The sink rows of the plan rows in ``groups`` (``n_views`` per plan row)."""
        rows = np.concatenate(groups)
        if self.views is None:
            return rows
        return (rows[:, None] * self.n_views + np.arange(self.n_views)).ravel()

    def _spread(self, features, groups):
        """Features of one content per group -> the rows of every copy in ``groups``."""
        counts = [len(g) for g in groups]
        if sum(counts) == len(groups):
            return features
        block = features.reshape(len(groups), self.n_views, -1)
        return np.repeat(block, counts, axis=0).reshape(-1, block.shape[-1])

    # ----------------------------------------------------------------- plan
    def _fail(self, failed, row, path, reason):
        if self.on_error == "raise":
            raise ImageError(os.fspath(path), reason)
        failed.append((row, reason))

    def plan(self, paths, rows=None, *, hash_all=False):
        """Look ``paths[rows]`` up in the cache; group the rest by content.

        Only regular files are planned (a FIFO or a device fails here, before
        anything opens it). A file this process hashed before and that is
        unchanged since (same ``os.stat``) is looked up by its key at once;
        the others are hashed as they are read for decoding (each file is
        read once), unless ``hash_all`` (the Dask client, which must know
        every key before it sends work out).

        Raises :class:`~skbottleneck.ImageError` for a file that cannot be
        read when ``on_error="raise"``.
        """
        import time

        paths = np.asarray(paths, dtype=object)
        rows = np.arange(len(paths), dtype=np.intp) if rows is None else np.asarray(rows, np.intp)
        plan = ExtractionPlan(paths=paths, rows=rows)
        if self.cache is None or len(rows) == 0:
            plan.groups = [np.asarray([r]) for r in rows]
            return plan
        t = time.perf_counter()
        keys, unknown = {}, []
        for r in rows:
            if is_remote(paths[r]):  # no stat to go by: hashed as it is read
                unknown.append(r)
                continue
            try:
                st = os.stat(paths[r])
            except (OSError, ValueError, TypeError) as e:
                self._fail(plan.failed, r, paths[r], _reason(e))
                continue
            reason = _not_a_regular_file(st)
            if reason is not None:
                self._fail(plan.failed, r, paths[r], reason)
                continue
            key = known_file_key(st)
            if key is None:
                unknown.append(r)
            else:
                keys[r] = key
        if hash_all and unknown:
            for r, k in zip(unknown, content_keys([paths[r] for r in unknown],
                                                   self.storage_options)):
                if isinstance(k, BaseException):
                    self._fail(plan.failed, r, paths[r], _reason(k))
                else:
                    keys[r] = k
            unknown = []
        plan.hash_s = time.perf_counter() - t
        known = np.asarray([r for r in rows if r in keys], dtype=np.intp)
        found = self._lookup([keys[r] for r in known]) if len(known) else np.zeros(0, bool)
        plan.keys, plan.cached = keys, known[found]
        groups = _group_by_key(known[~found], keys) + [np.asarray([r]) for r in unknown]
        plan.groups = sorted(groups, key=lambda g: g[0])
        return plan

    # ------------------------------------------------------------------ run
    def run(self, plan, sink=None, *, background=False):
        """Run ``plan``: cached rows and CNN rows to ``sink(rows, features)``.

        Parameters
        ----------
        plan : ExtractionPlan
            From :meth:`plan`.
        sink : callable or None
            Receives ``(rows, features)``; None: only fill the cache.
        background : bool, default=False
            Write to the sink in a background thread (a store on disk).

        Returns
        -------
        result : ExtractionResult
            ``failed`` and ``stats`` (``features`` and ``kept`` are the caller's).
        """
        stats = RunStats(len(plan.rows))
        stats.add_time("hash", plan.hash_s)
        failed = list(plan.failed)
        keys = plan.keys or {}
        writer = Writer(stats, background=self.cache is not None or background)
        try:
            cached = _group_by_key(plan.cached, keys)
            work = self._copy_from_cache(cached, [keys[g[0]] for g in cached], sink, writer, stats)
            work += [(g, keys.get(g[0])) for g in plan.groups]
            if work:
                self._check_cache_space(len(work))
                stats.start_progress(len(work), f"{self.name} features", self.verbose)
            for _ in range(MAX_PASSES):
                if not work:
                    break
                later, again = self._compute(sorted(work, key=lambda w: w[0][0]), plan.paths,
                                             sink, writer, stats, failed)
                writer.flush()  # what was computed is in the cache before it is read back
                work = again + self._copy_from_cache([g for g, _ in later], [k for _, k in later],
                                                     sink, writer, stats)
            else:
                if work:
                    raise RuntimeError(
                        f"The feature cache {self.cache.path} did not serve the features just "
                        f"written for {sum(len(g) for g, _ in work)} images.")
            writer.flush()
            if self.cache is not None and stats.counts["n_extracted"]:
                with stats.timed("write"):
                    self.cache.compact()
        finally:
            writer.close()
            stats.count("n_failed", len(failed))
            stats.close()
        if self.verbose >= 2:
            print(f"[CNNFeatureTransformer] {stats.summary()}", flush=True)
        failed.sort(key=lambda f: f[0])
        return ExtractionResult(failed=[(os.fspath(plan.paths[r]), why) for r, why in failed],
                                stats=stats.as_dict())

    def _copy_from_cache(self, groups, keys, sink, writer, stats):
        """Copy the cached features of ``groups`` (rows sharing ``keys``) to the sink.

        Returns the groups the cache could not serve after all (a shard
        found damaged and quarantined meanwhile): they are computed again.
        """
        missing = []
        for start in range(0, len(groups), CACHE_READ_ROWS):
            part, part_keys = groups[start:start + CACHE_READ_ROWS], keys[start:start + CACHE_READ_ROWS]
            features, found = self.cache.read_available(self.unit_keys(part_keys))
            if self.views is not None:
                found = found.reshape(-1, self.n_views).all(axis=1)
                features = features.reshape(len(part_keys), self.n_views, features.shape[-1])
            missing.extend((g, k) for g, k, hit in zip(part, part_keys, found) if not hit)
            served = [i for i, hit in enumerate(found) if hit]
            stats.count("n_cached", sum(len(part[i]) for i in served))
            if sink is not None and served:
                groups = [part[i] for i in served]
                block = features[served].astype(self.dtype, copy=False)
                block = self._spread(block.reshape(-1, block.shape[-1]), groups)
                writer.submit(sink, self.out_rows(groups), block)
        return missing

    def _check_cache_space(self, n_images):
        if self.cache is None:
            return
        itemsize = np.dtype(self.dtype).itemsize
        n_images *= self.n_views
        check_disk_space(self.cache.path, n_images * self.n_features * itemsize,
                         what=f"features of {n_images} images x {self.n_features} x {itemsize} bytes",
                         verbose=self.verbose)

    def _compute(self, work, paths, sink, writer, stats, failed):
        """Read + decode -> CNN -> sink and cache, batch by batch.

        ``work`` is a list of ``(rows, key)``: rows of one content, the key
        when known (None: hashed as it is read). Returns the work left:
        ``later`` (features found in the cache while reading, or computed
        for a copy earlier in the run: copied from the cache afterwards) and
        ``again`` (copies of a file that changed since it was hashed).
        """
        size = max(1, self.batch_size // self.n_views)  # images per CNN batch
        batches = [work[s:s + size] for s in range(0, len(work), size)]
        decoder = DecodePool(self.decode_threads, self.input_size, stats, cache=self.cache,
                             views=self.views, unit_keys=self.unit_keys,
                             storage_options=self.storage_options)
        runner = None  # built at the first readable image: never when all fail
        later, again, seen = [], [], set()
        loaded = decoder.map_batches([[(paths[g[0]], k) for g, k in batch] for batch in batches])
        try:
            for batch, results in zip(batches, loaded):
                ok = []
                for (g, k), res in zip(batch, results):
                    if res.error is not None:
                        for r in g:
                            self._fail(failed, r, paths[r], res.error.reason)
                        continue
                    if k is not None and res.key != k and len(g) > 1:
                        again.append((g[1:], k))  # rewritten since hashed: its copies were not
                        g = g[:1]
                    if res.image is None or res.key in seen:
                        later.append((g, res.key))
                        continue
                    if res.key is not None:
                        seen.add(res.key)
                    ok.append((g, res.key, res.image))
                if ok:
                    if runner is None:
                        runner = self.runner
                        stats.extra.update(runner.run_info())  # bn_folded, runtime, ...
                    # the previous batch is on disk before this one goes through
                    # the CNN: a kill loses at most the batch in flight
                    writer.flush()
                    with stats.timed("cnn"):
                        images = [img for _, _, img in ok]
                        batch = np.stack(images) if self.views is None else np.concatenate(images)
                        # the views of one image may be many more than a batch: the
                        # CNN's memory stays that of batch_size rows
                        step = max(self.batch_size, 1)
                        features = runner(batch) if len(batch) <= step else np.concatenate(
                            [runner(batch[s:s + step]) for s in range(0, len(batch), step)])
                    stats.count("n_extracted", len(ok))
                    self._deliver(ok, features, sink, writer)
                stats.advance(len(batch))
        finally:
            loaded.close()  # cancels the reading ahead, joins the threads
            if runner is not None:  # as it ended: the batch scheme may be chosen by now
                stats.extra.update(runner.run_info())
        return later, again

    def _deliver(self, ok, features, sink, writer):
        if self.cache is not None:
            writer.submit(self.cache.write, self.unit_keys([key for _, key, _ in ok]), features)
        if sink is not None:  # copies of one content share its rows
            groups = [g for g, _, _ in ok]
            writer.submit(sink, self.out_rows(groups), self._spread(features, groups))


def _group_by_key(rows, keys):
    """Rows grouped by content key, in order of first appearance."""
    groups = OrderedDict()
    for r in rows:
        groups.setdefault(keys[r], []).append(r)
    return [np.asarray(g) for g in groups.values()]


def _not_a_regular_file(st):
    """Why a file with ``os.stat`` result ``st`` is no image file (None when it is
    a regular file): a FIFO or a device would block, or never end, when read."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not an image file"
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
            "a character device" if stat.S_ISCHR(mode) else
            "a block device" if stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"not a regular file: {kind}"


def _reason(exc):
    """The reason a file could not be read, for people."""
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"{type(exc).__name__}: {exc}"
