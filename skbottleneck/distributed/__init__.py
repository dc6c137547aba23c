"""Scaling out on a Dask cluster: the same objects, many machines.

Three pieces, all optional (``pip install skbottleneck[dask]``); importing
this module imports neither dask nor distributed.

**Extraction.** :meth:`CNNFeatureTransformer.transform` and
:meth:`~CNNFeatureTransformer.extract` run their CNN on a
``dask.distributed`` cluster when given ``client=`` (``extract``) or when
called inside ``with joblib.parallel_backend("dask"):`` (both; see
:func:`active_client`). :func:`fill_cache_on_cluster` then has the workers
compute every missing feature vector for the transformer's
:class:`~skbottleneck.FeatureCache`. Two deployments:

- **a shared file system** (NFS, Lustre, CephFS...) holding the cache
  folder under the same path everywhere: the workers write the features
  into the cache themselves;
- **nothing shared but object storage** (Kubernetes, cloud clusters): the
  workers read the images from URLs, return the features with their
  content keys, and the client writes each partition to its own cache as
  it arrives (gathered one at a time: bounded memory).

``shared_cache="auto"`` (the default of ``extract`` and
:func:`fill_cache_on_cluster`) asks the workers whether they see a probe
file in the cache folder (:func:`detect_shared_cache`); True or False
says it. Either way:

1. the client hashes the images (:func:`~skbottleneck.cache.file_keys`;
   a local run reads every file once too), drops duplicates and those
   already cached, and cuts the rest, in input order, into partitions of a
   whole number of batches (:func:`default_partition_size`);
2. one task per partition (key prefix ``cnn-features`` on the dashboard)
   runs an :class:`~skbottleneck.extraction.ExtractionEngine` of its own in
   the worker process; the model is built once per worker process and
   reused by all its partitions (:func:`~skbottleneck.extraction.get_runner`);
   only the transformer's parameters travel with each task (a Keras model
   given as backbone is saved once into the shared cache folder and loaded
   once per worker). Before writing or returning anything, each worker
   checks that its model has the same weights as the client's (SHA-256);
3. each batch (shared cache) or each partition received (no shared cache)
   lands in the cache as an immutable shard (temporary name, fsync, atomic
   rename): a killed worker or an interrupted run loses at most the work in
   flight, and a partition run again finds the finished work in the cache.
   Writers never collide and a key written twice holds the same features,
   so the result is complete and duplicate-free whatever dies;
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

The extraction side is the CNN stage of the extraction engine (it lives
in :mod:`skbottleneck.extraction`, ``_cluster``); the training side is a
chunk source (:mod:`skbottleneck.chunks`); this package gathers them with
the prediction helper, under one name.
"""

from ..chunks import DaskChunks
from ..extraction import (
    TASK_PREFIX,
    active_client,
    default_partition_size,
    detect_shared_cache,
    fill_cache_on_cluster,
    run_cnn_on_cluster,
)
from ._predict import predict_on_cluster

__all__ = [
    "DaskChunks",
    "TASK_PREFIX",
    "active_client",
    "default_partition_size",
    "detect_shared_cache",
    "fill_cache_on_cluster",
    "predict_on_cluster",
    "run_cnn_on_cluster",
]
