"""Scaling out on a Dask cluster: the same objects, many machines.

Three pieces, all optional (``pip install skbottleneck[dask]``); importing
this module imports neither dask nor distributed.

**Extraction.** :meth:`CNNFeatureTransformer.transform` and
:meth:`~CNNFeatureTransformer.extract` run their CNN on a
``dask.distributed`` cluster when given ``client=`` (``extract``) or when
called inside ``with joblib.parallel_backend("dask"):`` (both; see
:func:`active_client`). :func:`fill_cache_on_cluster` then has the workers
compute every missing feature vector into the transformer's
:class:`~skbottleneck.FeatureCache`, which must be a folder on a file
system that the workers and the client share (NFS, Lustre, CephFS...):

1. the client hashes the images (:func:`~skbottleneck.store.file_keys`;
   a local run reads every file once too), drops duplicates and those
   already cached, and cuts the rest, in input order, into partitions of a
   whole number of batches (:func:`default_partition_size`);
2. one task per partition (key prefix ``cnn-features`` on the dashboard)
   runs the transformer's own batched pipeline in the worker process;
   the model is built once per worker process and reused by all its
   partitions (the per-process model memo of :mod:`~skbottleneck.extraction`);
   only the transformer's parameters travel with each task (a Keras model
   given as backbone is saved once into the shared cache folder and loaded
   once per worker). Before writing, each worker checks that its model has
   the same weights as the client's (SHA-256);
3. each batch lands in the cache as an immutable shard (temporary name,
   fsync, atomic rename): a killed worker loses at most its batch in flight,
   and its partition, run again by the scheduler elsewhere, finds the
   batches already written and computes only the others. Writers never
   collide and a key written twice holds the same features, so the result is
   complete and duplicate-free whatever dies;
4. the client then copies the rows from the cache into the output array or
   the :class:`~skbottleneck.FeatureStore`, in input order, without running
   a CNN.

Images that cannot be read are reported by the workers; with
``on_error="raise"`` the client raises an :class:`~skbottleneck.ImageError`
naming the first one (in input order) and the worker that failed on it.

**Training.** Training a head is sequential (``partial_fit`` chunk after
chunk), so it runs on the client and streams its data: a
:class:`~skbottleneck.FeatureStore` on the shared file system, or a
``dask.array`` wrapped in :class:`DaskChunks` (blocks computed on the
cluster, in shuffled order, the next one while the head learns the current
one), like dask-ml's ``Incremental``.

**Prediction.** :func:`predict_on_cluster` applies a fitted estimator or
pipeline to partitions of a large input on the workers, in parallel.
"""

import hashlib
import math
import os
import sys
import time
import uuid
import warnings
import weakref
from collections import deque

import numpy as np

__all__ = [
    "DaskChunks",
    "active_client",
    "default_partition_size",
    "fill_cache_on_cluster",
    "predict_on_cluster",
]

#: Task key prefix of the extraction partitions (shown by the Dask dashboard).
TASK_PREFIX = "cnn-features"
#: Bounds of the default partition size, in batches.
MAX_BATCHES_PER_PARTITION = 8
PARTITIONS_PER_THREAD = 4
_FITTED = ("input_size_", "fingerprint_", "feature_shape_", "n_features_out_")


# ------------------------------------------------------------------- clients
def _in_worker():
    """True inside a task running on a Dask worker."""
    worker = sys.modules.get("distributed.worker")
    if worker is None:
        return False
    try:
        worker.get_worker()
    except ValueError:
        return False
    return True


def active_client(client=None):
    """The Dask client extraction should run on, or None to run locally.

    Parameters
    ----------
    client : dask.distributed.Client, default=None
        Returned as is when given.

    Returns
    -------
    client : dask.distributed.Client or None
        ``client`` if given; else the client of the active joblib backend
        when it is Dask (inside ``with joblib.parallel_backend("dask"):`` or
        ``joblib.parallel_config(backend="dask")``); else None. Also None
        inside a task already running on a Dask worker (for instance a fold
        of ``GridSearchCV`` dispatched by joblib to the cluster): that task
        extracts in its own process rather than waiting on tasks of its own.

    Notes
    -----
    Never imports dask or distributed: when ``distributed`` was not
    imported, no Dask backend can be active and None comes back at once.

    Examples
    --------
    >>> from skbottleneck.distributed import active_client
    >>> active_client() is None
    True
    """
    if client is not None:
        return client
    if "distributed" not in sys.modules:
        return None
    parallel = sys.modules.get("joblib.parallel")
    if parallel is None:  # pragma: no cover - sklearn imports joblib
        return None
    backend, _ = parallel.get_active_backend()
    if type(backend).__name__ != "DaskDistributedBackend":
        return None
    if _in_worker():
        return None
    return getattr(backend, "client", None)


# ---------------------------------------------------------------- extraction
def default_partition_size(n_images, batch_size, n_threads):
    """Images per extraction task: a whole number of batches.

    About ``PARTITIONS_PER_THREAD`` (4) partitions per worker thread, so
    that the load balances and a lost partition costs little, but between 1
    and ``MAX_BATCHES_PER_PARTITION`` (8) batches, so that the scheduler's
    cost per task (a few milliseconds) stays negligible beside the CNN
    (a batch of 32 takes 0.3 s to several seconds on a CPU).

    Parameters
    ----------
    n_images : int
        Images to extract.
    batch_size : int
        The transformer's batch size.
    n_threads : int
        Worker threads of the cluster (0 when none has joined yet).

    Returns
    -------
    partition_size : int

    Examples
    --------
    >>> default_partition_size(200, 32, 2)
    32
    >>> default_partition_size(100_000, 32, 16)
    256
    """
    n_batches = max(1, math.ceil(n_images / batch_size))
    per = math.ceil(n_batches / (PARTITIONS_PER_THREAD * max(1, n_threads)))
    return batch_size * max(1, min(MAX_BATCHES_PER_PARTITION, per))


def _cluster_error(transformer):
    if transformer.cache_dir is None:
        return (
            "Extraction on a Dask cluster needs the feature cache: the workers write the "
            "features there and this process reads them back, so it must be a folder on a "
            "file system shared by the workers and the client (NFS, Lustre...). The "
            "transformer has cache_dir=None; pass cache_dir='/shared/path/cache'."
        )
    return (
        "Extraction on a Dask cluster needs the feature cache, and features of a random "
        "initialisation without a seed (weights=None, random_state=None) cannot be "
        "reproduced, so they are never cached. Pass random_state=<int> (or real weights)."
    )


_DIGESTS = weakref.WeakKeyDictionary()  # built model -> checksum of its weights


def _weights_digest(runner):
    """SHA-256 of a built model's weights (memoised per model)."""
    digest = _DIGESTS.get(runner)
    if digest is None:
        h = hashlib.sha256()
        for w in runner.model.weights:
            h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
        digest = _DIGESTS[runner] = h.hexdigest()
    return digest


def _worker_spec(transformer, cache):
    """What a worker needs to rebuild the fitted transformer (small, picklable)."""
    params = transformer.get_params(deep=False)
    # the cache folder resolved here ("auto" would resolve on each worker),
    # failures returned rather than raised (a raise would be retried), no bars
    params.update(cache_dir=cache.cache_dir, on_error="skip", verbose=0)
    weights = params.get("weights")
    if weights is not None and not (isinstance(weights, str) and weights == "imagenet"):
        params["weights"] = os.path.abspath(os.fspath(weights))  # a file on the shared FS
    model_file = None
    if not isinstance(params["backbone"], str):  # a Keras model: shared as a file
        model_file = _save_model(params["backbone"], transformer.fingerprint_, cache)
        params["backbone"] = None
    return {
        "params": params,
        "model_file": model_file,
        "fitted": {name: getattr(transformer, name) for name in _FITTED},
        "cache_path": cache.path,
        # the workers check that they built the very same CNN before they
        # write to the cache (another Keras version, another file under the
        # weights path, a seeded initialisation disturbed by another thread...)
        "weights_sha256": _weights_digest(transformer._runner()),
    }


def _save_model(model, fingerprint, cache):
    """Save a Keras model given as backbone into the shared cache folder, once."""
    name = fingerprint["weights"].split(":")[-1][:32]
    path = os.path.join(cache.path, "models", f"{name}.keras")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".tmp-{uuid.uuid4().hex}.keras")
        try:
            model.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


_LOADED_MODELS = {}  # model file -> keras.Model, per worker process


def _load_model(path):
    """The Keras model saved at ``path``, loaded once per process."""
    model = _LOADED_MODELS.get(path)
    if model is None:
        from ._keras import import_keras

        model = _LOADED_MODELS[path] = import_keras().models.load_model(path, compile=False)
    return model


def _worker_name():
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # pragma: no cover - run outside a worker
        return f"pid {os.getpid()}"


def _extract_partition(paths, spec):
    """Task: compute the features of ``paths`` into the shared cache."""
    from .extraction import CNNFeatureTransformer

    if not os.path.exists(os.path.join(spec["cache_path"], "fingerprint.json")):
        raise FileNotFoundError(
            f"The feature cache {spec['cache_path']} does not exist on the Dask worker "
            f"{_worker_name()}: cache_dir must be a folder on a file system shared by the "
            "workers and the client, under the same path."
        )
    params = dict(spec["params"])
    if spec["model_file"] is not None:
        params["backbone"] = _load_model(spec["model_file"])
    est = CNNFeatureTransformer(**params)
    for name, value in spec["fitted"].items():
        setattr(est, name, value)
    _check_same_model(est, spec["weights_sha256"])
    t = time.perf_counter()
    failed = est._extract_into(np.asarray(paths, dtype=object), np.arange(len(paths)),
                               _discard)
    stats = dict(est.extraction_stats_)
    stats["task_s"] = time.perf_counter() - t
    return {"failed": failed, "stats": stats, "worker": _worker_name(), "pid": os.getpid()}


def _discard(rows, features):
    pass


def _check_same_model(est, expected):
    """Refuse to cache features of a model other than the client's."""
    from . import extraction

    runner = est._runner()
    got = _weights_digest(runner)
    if got == expected:
        return
    # forget it, so that a retry of the task builds the model again
    for key, value in list(extraction._MODEL_MEMO.items()):
        if value is runner:
            del extraction._MODEL_MEMO[key]
    raise RuntimeError(
        f"The CNN built on the Dask worker {_worker_name()} has other weights than the one "
        f"built by the client (SHA-256 {got[:12]}... instead of {expected[:12]}...), so its "
        "features would differ; nothing was written to the cache. Check that the workers "
        "have the same Keras/TensorFlow versions as the client and see the same weights "
        "file under the same path."
    )


def _dashboard(client):
    """``"; dashboard: <link>"`` when the scheduler runs one, else ``""``."""
    try:
        services = client.scheduler_info(n_workers=0).get("services", {})
    except Exception:  # noqa: BLE001 - informative only
        return ""
    return f"; dashboard: {client.dashboard_link}" if "dashboard" in services else ""


def _warn_if_forked(client):
    """LocalCluster workers forked from a process that imported TensorFlow hang."""
    if "tensorflow" not in sys.modules or getattr(client, "cluster", None) is None:
        return
    import dask

    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "fork":
        warnings.warn(
            "The local Dask cluster forks its workers from this process, which has imported "
            "TensorFlow: TensorFlow is not fork-safe. Set "
            "dask.config.set({'distributed.worker.multiprocessing-method': 'spawn'}) before "
            "creating the cluster.",
            RuntimeWarning,
            stacklevel=4,
        )


def fill_cache_on_cluster(transformer, paths, *, client, partition_size=None, retries=3):
    """Have the workers of ``client`` compute the features of ``paths`` into the cache.

    Called by :meth:`CNNFeatureTransformer.transform` and
    :meth:`~CNNFeatureTransformer.extract` when :func:`active_client`
    returns a client; they then copy the rows from the cache without running
    a CNN. See the module docstring for how the work is split and why a
    killed worker leaves a complete, duplicate-free result.

    Parameters
    ----------
    transformer : CNNFeatureTransformer
        Fitted. Its ``cache_dir`` must be on a file system shared by the
        workers and the client, and its features reproducible (real weights,
        or ``weights=None`` with a ``random_state``).
    paths : sequence of str or path-like
        Image paths, readable by the client and by every worker under the
        same name (relative paths are made absolute here).
    client : dask.distributed.Client
        Where to run.
    partition_size : int, default=None
        Images per task; None: :func:`default_partition_size`.
    retries : int, default=3
        Times a partition that raised is run again (a partition whose worker
        died is rescheduled by the scheduler, up to its
        ``distributed.scheduler.allowed-failures``, 3 by default).

    Returns
    -------
    stats : dict
        Also set as ``transformer.cluster_stats_``: ``n_images``,
        ``n_unique``, ``n_cached`` (found in the cache beforehand),
        ``n_partitions``, ``partition_size``, ``n_extracted`` (through a CNN
        on the workers), ``n_found_by_workers`` (already in the cache when a
        partition ran: written by an earlier, killed attempt), ``n_failed``, ``workers``
        (images per worker address), ``hash_s`` (client), ``task_s`` (time
        in the partitions), ``cnn_s`` / ``decode_s`` / ``write_s`` (all summed
        over the workers) and ``wall_s``.

    Raises
    ------
    ValueError
        ``cache_dir=None``, or features that cannot be cached.
    ImageError
        An image could not be read and ``on_error="raise"``.
    RuntimeError
        The workers wrote features that this process cannot see (the cache
        folder is not shared).
    """
    from sklearn.utils.validation import check_is_fitted

    from .extraction import _reason
    from .images import ImageError
    from .store import file_keys

    check_is_fitted(transformer, "n_features_out_")
    cache = transformer._cache()
    if cache is None:
        raise ValueError(_cluster_error(transformer))
    _warn_if_forked(client)
    t_start = time.perf_counter()
    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    stats = {"n_images": len(paths), "n_unique": 0, "n_cached": 0, "n_partitions": 0,
             "partition_size": 0, "n_extracted": 0, "n_found_by_workers": 0, "n_failed": 0,
             "workers": {},
             "hash_s": 0.0, "task_s": 0.0, "cnn_s": 0.0, "decode_s": 0.0, "write_s": 0.0,
             "wall_s": 0.0}
    transformer.cluster_stats_ = stats

    # 1. content keys (unreadable files fail here), duplicates, cache hits
    keys = file_keys(paths)
    stats["hash_s"] = time.perf_counter() - t_start
    first = {}
    for i, (p, k) in enumerate(zip(paths, keys)):
        if isinstance(k, BaseException):
            if transformer.on_error == "raise":
                raise ImageError(p, _reason(k))
            continue  # the local pass reports it in failed_
        first.setdefault(k, i)
    unique = list(first.items())
    stats["n_unique"] = len(unique)
    found = cache.lookup([k for k, _ in unique]) if unique else np.zeros(0, bool)
    stats["n_cached"] = int(found.sum())
    todo = [(k, i) for (k, i), hit in zip(unique, found) if not hit]
    if not todo:
        stats["wall_s"] = time.perf_counter() - t_start
        return stats

    # 2. one task per partition
    if partition_size is None:
        n_threads = sum(client.nthreads().values())
        partition_size = default_partition_size(len(todo), transformer.batch_size, n_threads)
    partition_size = int(partition_size)
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1; got {partition_size}.")
    parts = [[paths[i] for _, i in todo[s:s + partition_size]]
             for s in range(0, len(todo), partition_size)]
    stats["n_partitions"], stats["partition_size"] = len(parts), partition_size
    # the parameters travel with each task (a few hundred bytes; a Keras model
    # given as backbone goes through a file in the shared cache folder and is
    # loaded once per worker). No task depends on another, so the scheduler
    # spreads them over all the workers.
    spec = _worker_spec(transformer, cache)
    futures = client.map(_extract_partition, parts, spec=spec, key=TASK_PREFIX, pure=False,
                         retries=retries)
    index = {f.key: n for n, f in enumerate(futures)}
    results = [None] * len(parts)
    progress = None
    if transformer.verbose:
        from tqdm.auto import tqdm

        print(f"[CNNFeatureTransformer] {len(todo)} images in {len(parts)} tasks of "
              f"{partition_size} on the Dask cluster{_dashboard(client)}", flush=True)
        progress = tqdm(total=len(todo), unit="img", desc=f"{transformer._name()} on Dask",
                        smoothing=0.1, dynamic_ncols=True)
    from distributed import as_completed

    try:
        for future in as_completed(futures, loop=client.loop):
            result = future.result()  # re-raises a task's error (after its retries)
            n = index[future.key]
            results[n] = result
            if progress is not None:
                progress.update(len(parts[n]))
    finally:
        if any(r is None for r in results):
            client.cancel(futures)
        if progress is not None:
            progress.close()

    # 3. what the workers did, what failed
    failed = []
    for part, result in zip(parts, results):
        s = result["stats"]
        for name in ("n_extracted", "task_s", "cnn_s", "decode_s", "write_s"):
            stats[name] += s[name]
        stats["n_found_by_workers"] += s["n_cached"]
        stats["workers"][result["worker"]] = stats["workers"].get(result["worker"], 0) + len(part)
        failed.extend((path, reason, result["worker"]) for path, reason in result["failed"])
    stats["n_failed"] = len(failed)
    if failed and transformer.on_error == "raise":
        order = {p: i for i, p in reversed(list(enumerate(paths)))}
        path, reason, worker = min(failed, key=lambda f: order[f[0]])
        raise ImageError(path, f"{reason} (on the Dask worker {worker}; {len(failed)} images "
                               "could not be read there)")
    failed_paths = {f[0] for f in failed}
    want = [k for k, i in todo if paths[i] not in failed_paths]
    missing = int((~cache.lookup(want)).sum()) if want else 0
    if missing:
        raise RuntimeError(
            f"The Dask workers reported the features of {len(want)} images written to the cache "
            f"{cache.path}, but {missing} of them are not there for this process: cache_dir must "
            "be a folder that the workers and the client share, under the same path."
        )
    stats["wall_s"] = time.perf_counter() - t_start
    return stats


# ------------------------------------------------------------------ training
def _is_dask_array(X):
    return (type(X).__module__.split(".")[0] == "dask" and hasattr(X, "blocks")
            and hasattr(X, "chunks"))


def _default_client():
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


class DaskChunks:
    """A ``dask.array`` as a chunk source for the out-of-core heads.

    :class:`~skbottleneck.IncrementalClassifier` and
    :class:`~skbottleneck.KerasMLPClassifier` read it like a
    :class:`~skbottleneck.FeatureStore`: each epoch computes the row blocks
    of ``X`` one at a time, in a shuffled order (on the cluster when a
    ``dask.distributed`` client exists, the next ``prefetch`` blocks while
    the head learns the current one), deals their rows into chunks of
    ``chunk_size`` rows and shuffles each chunk. Memory holds a few blocks,
    never the whole array.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Features; row blocks of a few thousand rows suit best. Column
        blocks are merged (``rechunk({1: -1})``).
    y : array-like or dask array of shape (n_samples,), default=None
        Labels, computed once (they are small) and kept in memory.
    client : dask.distributed.Client, default=None
        Where to compute the blocks; None: the default client if one
        exists, else dask's local scheduler.
    prefetch : int, default=1
        Blocks computed ahead of the one being read (with a client).

    Attributes
    ----------
    shape : tuple of int
    n_features : int
    labels : ndarray or None

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from skbottleneck import IncrementalClassifier
    >>> from skbottleneck.distributed import DaskChunks
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(2, size=400)
    >>> X = da.from_array(rng.normal(size=(400, 5)) + y[:, None], chunks=(100, 5))
    >>> clf = IncrementalClassifier(random_state=0).fit(DaskChunks(X, y))
    >>> clf.score(X.compute(), y) > 0.8
    True
    """

    def __init__(self, X, y=None, *, client=None, prefetch=1):
        if not _is_dask_array(X):
            raise TypeError(f"DaskChunks expects a dask.array; got {type(X).__name__}.")
        if X.ndim != 2:
            raise ValueError(f"DaskChunks expects a 2-D dask array; got shape {X.shape}.")
        if any(math.isnan(c) for c in X.chunks[0]):
            raise ValueError(
                "The row blocks of X have unknown sizes; call X.compute_chunk_sizes() first."
            )
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        if y is not None and len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels.")
        self.X = X
        self.y = y
        self.client = client
        self.prefetch = int(prefetch)
        self._labels = None
        bounds = np.cumsum((0,) + tuple(X.chunks[0]))
        self._bounds = bounds

    def __len__(self):
        return int(self.X.shape[0])

    @property
    def shape(self):
        return (len(self), self.n_features)

    @property
    def n_features(self):
        return int(self.X.shape[1])

    @property
    def dtype(self):
        return self.X.dtype

    @property
    def labels(self):
        """The labels as a numpy array (computed on first access), or None."""
        if self.y is None:
            return None
        if self._labels is None:
            y = self.y.compute() if hasattr(self.y, "compute") else self.y
            self._labels = np.asarray(y).ravel()
        return self._labels

    def _blocks(self, order):
        """Yield ``(block_number, ndarray)`` in ``order``, prefetching."""
        client = self.client if self.client is not None else _default_client()
        if client is None:
            for b in order:
                yield b, np.asarray(self.X.blocks[int(b)].compute())
            return
        pending = deque()
        for b in order:
            pending.append((b, client.compute(self.X.blocks[int(b)])))
            if len(pending) > self.prefetch:
                b0, fut = pending.popleft()
                yield b0, np.asarray(fut.result())
        while pending:
            b0, fut = pending.popleft()
            yield b0, np.asarray(fut.result())

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None):
        """Yield ``(X_chunk, y_chunk)`` covering every row once.

        Parameters
        ----------
        chunk_size : int, default=1024
            Rows per chunk (the last one may be smaller).
        shuffle : bool, default=True
            Blocks in a random order, rows shuffled within each chunk;
            ``False``: rows in order.
        random_state : int, RandomState instance or None, default=None
            Seed of the shuffle.

        Yields
        ------
        X : ndarray of shape (n_chunk, n_features)
        y : ndarray of shape (n_chunk,) or None
        """
        from sklearn.utils import check_random_state

        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
        rng = check_random_state(random_state)
        labels = self.labels
        n_blocks = len(self._bounds) - 1
        order = rng.permutation(n_blocks) if shuffle else np.arange(n_blocks)
        buf_X, buf_rows, count = [], [], 0

        def emit(X, rows):
            if shuffle:
                perm = rng.permutation(len(rows))
                X, rows = X[perm], rows[perm]
            return X, (None if labels is None else labels[rows])

        for b, block in self._blocks(order):
            lo = self._bounds[b]
            rows = np.arange(lo, lo + block.shape[0])
            start = 0
            while start < block.shape[0]:
                take = min(chunk_size - count, block.shape[0] - start)
                buf_X.append(block[start:start + take])
                buf_rows.append(rows[start:start + take])
                count += take
                start += take
                if count == chunk_size:
                    yield emit(np.concatenate(buf_X), np.concatenate(buf_rows))
                    buf_X, buf_rows, count = [], [], 0
        if count:
            yield emit(np.concatenate(buf_X), np.concatenate(buf_rows))

    def read_rows(self, indices):
        """Features and labels of arbitrary rows (any order).

        Parameters
        ----------
        indices : array-like of int

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        X = np.empty((len(idx), self.n_features), dtype=self.X.dtype)
        if len(idx):
            X[order] = np.asarray(self.X[idx[order]].compute())
        labels = self.labels
        return X, (None if labels is None else labels[idx])

    def __repr__(self):
        return (f"DaskChunks(n_rows={len(self)}, n_features={self.n_features}, "
                f"n_blocks={len(self._bounds) - 1})")


# ---------------------------------------------------------------- prediction
def _apply_partition(X, estimator, method):
    return getattr(estimator, method)(X)


def _apply_to_block(block, estimator, method):
    return getattr(estimator, method)(block)


def predict_on_cluster(estimator, X, *, client=None, method="predict", partition_size=None):
    """Apply a fitted estimator to a large input, in parallel on a Dask cluster.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        For instance ``make_pipeline(CNNFeatureTransformer(...), head)``:
        each worker then runs the CNN on its partition of image paths (its
        model built once per worker process; features from and to the
        transformer's cache as on one machine).
    X : dask.array, or sequence of image paths / array-like
        A dask array (features) gives a lazy dask array back, computed
        block by block with ``map_blocks``. Anything else is cut into
        partitions of ``partition_size`` rows, one task each, and the
        results come back as one numpy array, in input order.
    client : dask.distributed.Client, default=None
        Needed for a non-dask ``X``; None: :func:`active_client`, else the
        default client.
    method : str, default="predict"
        ``"predict"``, ``"predict_proba"``, ``"decision_function"``,
        ``"transform"``...
    partition_size : int, default=None
        Rows per task for a non-dask ``X``; None: about 4 partitions per
        worker thread, at most 4096 rows each.

    Returns
    -------
    result : ndarray, or dask.array for a dask ``X``

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skbottleneck.distributed import predict_on_cluster
    >>> X = np.random.RandomState(0).normal(size=(100, 3))
    >>> clf = LogisticRegression().fit(X, X[:, 0] > 0)
    >>> y = predict_on_cluster(clf, da.from_array(X, chunks=25))
    >>> bool((y.compute() == clf.predict(X)).all())
    True
    """
    if not hasattr(estimator, method):
        raise AttributeError(f"{type(estimator).__name__} has no method {method!r}.")
    if _is_dask_array(X):
        if X.ndim == 2 and len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        probe = getattr(estimator, method)(np.zeros((1,) + X.shape[1:], dtype=X.dtype))
        probe = np.asarray(probe)
        if probe.ndim == 1:
            return X.map_blocks(_apply_to_block, estimator, method, dtype=probe.dtype,
                                drop_axis=list(range(1, X.ndim)) if X.ndim > 1 else None,
                                meta=probe[:0])
        chunks = (X.chunks[0],) + tuple((s,) for s in probe.shape[1:])
        return X.map_blocks(_apply_to_block, estimator, method, dtype=probe.dtype, chunks=chunks,
                            meta=probe[:0])

    client = active_client(client) or _default_client()
    if client is None:
        raise ValueError("predict_on_cluster needs a dask.distributed client for a non-dask X: "
                         "pass client=..., or create a Client first.")
    n = len(X)
    if partition_size is None:
        threads = max(1, sum(client.nthreads().values()))
        partition_size = max(1, min(4096, math.ceil(n / (PARTITIONS_PER_THREAD * threads))))
    rows = X.iloc if hasattr(X, "iloc") else X  # pandas: by position
    parts = [rows[s:s + partition_size] for s in range(0, n, partition_size)]
    # the estimator travels with each task (a fitted head and the transformer's
    # parameters: small; the CNN is built once per worker process), so that no
    # task waits on data held by one worker and the scheduler spreads them
    futures = client.map(_apply_partition, parts, estimator=estimator, method=method,
                         key=f"{method}-partition", pure=False, retries=3)
    results = client.gather(futures)
    for part, res in zip(parts, results):
        if len(res) != len(part):
            raise ValueError(
                f"{type(estimator).__name__}.{method} returned {len(res)} rows for a partition "
                f"of {len(part)} (images skipped with on_error='skip'?); rows must match."
            )
    return np.concatenate([np.asarray(r) for r in results]) if results else np.zeros(0)
