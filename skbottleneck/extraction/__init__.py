"""Extraction: image paths -> decode -> CNN -> features, cached and stored.

- :class:`CNNFeatureTransformer` (``_transformer``): the scikit-learn
  estimator; parameters and the fitted description of the model;
- :class:`ExtractionEngine` (``_engine``): plans a run (which rows are
  cached, which go through the CNN) and runs it through the stages of
  ``_stages`` (decode pool, background writer, timing and progress) and
  the CNN of ``_runner`` (one compiled model per fingerprint and process,
  batch norms folded by ``_fold``), into sinks: an array, a store, the cache;
- ``_fingerprint``: what determines the features (the cache key, a store's identity);
  ``_precision``: a Pipeline's head and transformer of one precision;
- ``_views``: augmented views of an image (:class:`ImageViews`), each cached
  under its own key; ``_augmented``: :class:`AugmentedClassifier`, a head
  trained on the views (test-time augmentation at predict);
- ``_cluster`` / ``_cluster_worker``: the CNN stage on a Dask cluster.
"""

from ._augmented import AugmentedClassifier
from ._cluster import (
    TASK_PREFIX,
    active_client,
    default_partition_size,
    detect_shared_cache,
    fill_cache_on_cluster,
    run_cnn_on_cluster,
)
from ._engine import ArraySink, ExtractionEngine, ExtractionPlan, ExtractionResult, open_cache
from ._fingerprint import FEATURE_FORMAT_VERSION
from ._from_store import transformer_from_store
from ._openvino import ConvertedModelWarning
from ._runner import CNNRunner, cnn_image_count, get_runner
from ._transformer import CNNFeatureTransformer
from ._views import ImageViews

__all__ = [
    "ArraySink",
    "AugmentedClassifier",
    "CNNFeatureTransformer",
    "CNNRunner",
    "ConvertedModelWarning",
    "ExtractionEngine",
    "ExtractionPlan",
    "ExtractionResult",
    "FEATURE_FORMAT_VERSION",
    "ImageViews",
    "TASK_PREFIX",
    "active_client",
    "cnn_image_count",
    "default_partition_size",
    "detect_shared_cache",
    "fill_cache_on_cluster",
    "get_runner",
    "open_cache",
    "run_cnn_on_cluster",
    "transformer_from_store",
]
