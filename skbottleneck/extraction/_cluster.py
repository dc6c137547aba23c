"""The CNN stage on a Dask cluster, seen from the client.

:meth:`CNNFeatureTransformer.transform` and
:meth:`~CNNFeatureTransformer.extract` run their CNN on a
``dask.distributed`` cluster when given ``client=`` (``extract``) or when
called inside ``with joblib.parallel_backend("dask"):`` (both; see
:func:`active_client`). The workers then compute every missing feature
vector into the transformer's :class:`~skbottleneck.FeatureCache` when it
is a folder on a file system that the workers and the client share (the
client asks them: :func:`detect_shared_cache`):

1. the client's :meth:`ExtractionEngine.plan` hashes the images, drops
   duplicates and those already cached; the rest is cut, in input order,
   into partitions of a whole number of batches (:func:`default_partition_size`);
2. one task per partition (key prefix ``cnn-features`` on the dashboard)
   runs an engine of its own in the worker process
   (:mod:`._cluster_worker`); the model is built once per worker process;
3. each batch lands in the cache as an immutable shard: a killed worker
   loses at most its batch in flight, and its partition, run again
   elsewhere, finds the batches already written;
4. the client then plans again, finds the rows cached, and copies them to
   the output array or store without running a CNN.

When the workers cannot see the client's cache (Kubernetes, cloud
clusters: nothing shared but object storage), step 3 differs: each task
returns its features with their content keys, and the client writes each
partition to its cache as an immutable shard as the tasks complete (gathered
one by one, so the client's memory holds a partition at a time). A run
interrupted then resumes from the partitions the client received.

Nothing here imports dask or distributed until a client is in use.
"""

import math
import os
import secrets
import sys
import time
import warnings

from ..images import ImageError
from ..remote import is_remote
from ._cluster_worker import extract_partition, sees_probe, worker_spec
from ._engine import ExtractionEngine

__all__ = ["TASK_PREFIX", "active_client", "cluster_path", "default_partition_size",
           "detect_shared_cache", "fill_cache_on_cluster", "run_cnn_on_cluster"]

#: Task key prefix of the extraction partitions (shown by the Dask dashboard).
TASK_PREFIX = "cnn-features"
#: Bounds of the default partition size, in batches.
MAX_BATCHES_PER_PARTITION = 8
PARTITIONS_PER_THREAD = 4


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


def cluster_path(path):
    """``path`` as the workers must be given it: a URL or shard member as is, a
    local path made absolute.

    Examples
    --------
    >>> cluster_path("s3://bucket/cat.jpg")
    's3://bucket/cat.jpg'
    >>> cluster_path("/data/cat.jpg")
    '/data/cat.jpg'
    """
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(path)


def cluster_error(transformer):
    """Why a transformer without a usable cache cannot extract on a cluster."""
    if transformer.cache_dir is None:
        return (
            "Extraction on a Dask cluster needs the feature cache: the client writes the "
            "features the workers return there (or the workers write them there themselves, "
            "when it is a folder they share with the client) and reads them back, and an "
            "interrupted run resumes from it. The transformer has cache_dir=None; pass "
            "cache_dir='auto' or a folder."
        )
    return (
        "Extraction on a Dask cluster needs the feature cache, and features of a random "
        "initialisation without a seed (weights=None, random_state=None) cannot be "
        "reproduced, so they are never cached. Pass random_state=<int> (or real weights)."
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
            stacklevel=5,
        )


def detect_shared_cache(client, cache):
    """Whether every worker of ``client`` sees the folder of ``cache``.

    The client writes a probe file with a random token into the cache
    folder and asks each worker (``client.run``) to read it back under the
    same path; the probe is removed afterwards.

    Parameters
    ----------
    client : dask.distributed.Client
    cache : FeatureCache

    Returns
    -------
    shared : bool
        True when the cluster has workers and all of them read the token;
        False otherwise (the workers then return their features to the
        client; that works for a shared folder too, only with more traffic).
    """
    token = secrets.token_hex(16)
    path = os.path.join(cache.path, f".probe-{token}")
    from ..fileio import unlink_quietly, write_file_atomic

    try:
        write_file_atomic(path, token.encode("ascii"))
    except OSError:
        return False
    try:
        seen = client.run(sees_probe, path, token)
    finally:
        unlink_quietly(path)
    return bool(seen) and all(seen.values())


def _check_shared_cache(shared_cache):
    if isinstance(shared_cache, bool) or (isinstance(shared_cache, str) and shared_cache == "auto"):
        return shared_cache
    raise ValueError(f"shared_cache must be 'auto', True or False; got {shared_cache!r}.")


def _new_stats(plan):
    n_unique = len(plan.groups) + len({plan.keys[r] for r in plan.cached}) if plan.keys else 0
    return {"n_images": len(plan.rows), "n_unique": n_unique, "n_cached": len(plan.cached),
            "n_partitions": 0, "partition_size": 0, "n_extracted": 0, "n_found_by_workers": 0,
            "n_failed": 0, "workers": {}, "hash_s": plan.hash_s, "task_s": 0.0, "cnn_s": 0.0,
            "decode_s": 0.0, "write_s": 0.0, "wall_s": 0.0, "shared_cache": None,
            "bytes_returned": 0, "client_write_s": 0.0}


def run_cnn_on_cluster(engine, plan, *, client, partition_size=None, retries=3,
                       shared_cache="auto"):
    """Have the workers of ``client`` compute the plan's groups into the cache.

    Parameters
    ----------
    engine : ExtractionEngine
        Of a fitted transformer with a cache and reproducible features.
    plan : ExtractionPlan
        From ``engine.plan(paths, hash_all=True)`` (every key known), with
        paths that every worker can read under the same name (absolute
        local paths, or URLs: :func:`cluster_path`).
    client : dask.distributed.Client
    partition_size : int, default=None
        Images per task; None: :func:`default_partition_size`.
    retries : int, default=3
        Times a partition that raised is run again (a partition whose worker
        died is rescheduled by the scheduler).
    shared_cache : {"auto", True, False}, default="auto"
        Whether the workers see the cache folder under the same path. True:
        they write the features there. False: they return them and this
        process writes them to the cache as the tasks complete. ``"auto"``:
        ask the workers (:func:`detect_shared_cache`).

    Returns
    -------
    stats : dict
        ``n_images``, ``n_unique``, ``n_cached`` (found in the cache
        beforehand), ``n_partitions``, ``partition_size``, ``n_extracted``
        (through a CNN on the workers), ``n_found_by_workers`` (already in the
        cache when a partition ran: written by an earlier, killed attempt),
        ``n_failed``, ``workers`` (images per worker address), ``hash_s``,
        ``task_s``, ``cnn_s`` / ``decode_s`` / ``write_s`` (summed over the
        workers), ``wall_s``, ``shared_cache`` (whether the workers wrote
        to the cache themselves), ``bytes_returned`` (features sent back to
        this process) and ``client_write_s`` (its seconds writing them).
    """
    shared_cache = _check_shared_cache(shared_cache)
    if engine.cache is None:
        raise ValueError(cluster_error(engine.transformer))
    _warn_if_forked(client)
    t_start = time.perf_counter()
    stats = _new_stats(plan)
    todo = [g[0] for g in plan.groups]
    if not todo:
        return stats
    if isinstance(shared_cache, str):
        shared_cache = detect_shared_cache(client, engine.cache)
    stats["shared_cache"] = shared_cache
    if not shared_cache:
        engine._check_cache_space(len(todo))  # the client's disk receives them all
    if partition_size is None:
        n_threads = sum(client.nthreads().values())
        partition_size = default_partition_size(len(todo), engine.batch_size, n_threads)
    partition_size = int(partition_size)
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1; got {partition_size}.")
    parts = [[os.fspath(plan.paths[r]) for r in todo[s:s + partition_size]]
             for s in range(0, len(todo), partition_size)]
    stats["n_partitions"], stats["partition_size"] = len(parts), partition_size
    results = _run_partitions(engine, client, parts, retries, stats, shared_cache)
    failed = _collect(stats, parts, results)
    if failed and engine.on_error == "raise":
        order = {os.fspath(plan.paths[r]): i for i, r in reversed(list(enumerate(plan.rows)))}
        path, reason, worker = min(failed, key=lambda f: order[f[0]])
        raise ImageError(path, f"{reason} (on the Dask worker {worker}; {len(failed)} images "
                               "could not be read there)")
    failed_paths = {f[0] for f in failed}
    want = [plan.keys[r] for r in todo if os.fspath(plan.paths[r]) not in failed_paths]
    missing = int((~engine.cache.lookup(want)).sum()) if want and shared_cache else 0
    if missing:
        raise RuntimeError(
            f"The Dask workers reported the features of {len(want)} images written to the cache "
            f"{engine.cache.path}, but {missing} of them are not there for this process: "
            "cache_dir must be a folder that the workers and the client share, under the same path."
        )
    stats["wall_s"] = time.perf_counter() - t_start
    return stats


def _run_partitions(engine, client, parts, retries, stats, shared_cache):
    """Submit one task per partition; gather their results with a progress bar.

    Without a shared cache, each result's features are written to the cache
    as it arrives and dropped (with its future, so that the worker frees
    them): the client holds one partition's features at a time.
    """
    # the parameters travel with each task (a few hundred bytes); no task
    # depends on another, so the scheduler spreads them over all the workers
    spec = worker_spec(engine, return_features=not shared_cache)
    futures = client.map(extract_partition, parts, spec=spec, key=TASK_PREFIX, pure=False,
                         retries=retries)
    index = {f.key: n for n, f in enumerate(futures)}
    pending = {f.key: f for f in futures}
    results = [None] * len(parts)
    progress = None
    if engine.verbose:
        from tqdm.auto import tqdm

        n = sum(len(p) for p in parts)
        print(f"[CNNFeatureTransformer] {n} images in {len(parts)} tasks of {len(parts[0])} "
              f"on the Dask cluster{_dashboard(client)}", flush=True)
        progress = tqdm(total=n, unit="img", desc=f"{engine.name} on Dask", smoothing=0.1,
                        dynamic_ncols=True)
    from distributed import as_completed

    try:
        done = as_completed(futures, loop=client.loop)
        futures = None  # from here only ``pending`` and ``done`` hold the futures
        for future in done:
            result = future.result()  # re-raises a task's error (after its retries)
            n = index[future.key]
            del pending[future.key], future
            if not shared_cache:
                _write_returned(engine.cache, result, stats)
            results[n] = result
            if progress is not None:
                progress.update(len(parts[n]))
    finally:
        if pending:
            client.cancel(list(pending.values()))
        if progress is not None:
            progress.close()
    return results


def _write_returned(cache, result, stats):
    """Write the features a task returned to the client's cache (one immutable
    shard: a run interrupted later finds them) and drop them from ``result``."""
    features = result.pop("features", None)
    keys = result.pop("keys", [])
    if features is None or not keys:
        return
    t = time.perf_counter()
    cache.write(keys, features)
    stats["client_write_s"] += time.perf_counter() - t
    stats["bytes_returned"] += features.nbytes


def _collect(stats, parts, results):
    """Add what the workers did to ``stats``; return ``(path, reason, worker)`` failures."""
    failed = []
    for part, result in zip(parts, results):
        s = result["stats"]
        for name in ("n_extracted", "task_s", "cnn_s", "decode_s", "write_s"):
            stats[name] += s[name]
        stats["n_found_by_workers"] += s["n_cached"]
        stats["workers"][result["worker"]] = stats["workers"].get(result["worker"], 0) + len(part)
        failed.extend((path, reason, result["worker"]) for path, reason in result["failed"])
    stats["n_failed"] = len(failed)
    return failed



def fill_cache_on_cluster(transformer, paths, *, client, partition_size=None, retries=3,
                          shared_cache="auto"):
    """Have the workers of ``client`` compute the features of ``paths`` into the cache.

    What :meth:`CNNFeatureTransformer.transform` and
    :meth:`~CNNFeatureTransformer.extract` do first on a cluster; they then
    copy the rows from the cache without running a CNN.

    Parameters
    ----------
    transformer : CNNFeatureTransformer
        Fitted, with a cache (``cache_dir`` not None) and reproducible
        features (real weights, or ``weights=None`` with a ``random_state``).
    paths : sequence of str or path-like
        Image paths or URLs, readable by the client and by every worker under
        the same name (relative local paths are made absolute here).
    client : dask.distributed.Client
    partition_size, retries, shared_cache :
        See :func:`run_cnn_on_cluster`.

    Returns
    -------
    stats : dict
        See :func:`run_cnn_on_cluster`.

    Raises
    ------
    ValueError
        ``cache_dir=None``, or features that cannot be cached.
    ImageError
        An image could not be read and ``on_error="raise"``.
    RuntimeError
        With ``shared_cache=True``: the workers wrote features that this
        process cannot see (the cache folder is not shared).
    """
    engine = ExtractionEngine(transformer)
    if engine.cache is None:
        raise ValueError(cluster_error(transformer))
    plan = engine.plan([cluster_path(p) for p in paths], hash_all=True)
    return run_cnn_on_cluster(engine, plan, client=client, partition_size=partition_size,
                              retries=retries, shared_cache=shared_cache)
