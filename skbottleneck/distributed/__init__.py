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
