"""skbottleneck: transfer learning by CNN bottleneck features, the scikit-learn way.

Turn a folder of images into a trained classifier on an ordinary laptop:
:class:`CNNFeatureTransformer` runs images through a pretrained CNN in
batches and caches their features on disk, :class:`FeatureStore` serves
features larger than RAM in chunks, and :class:`IncrementalClassifier` /
:class:`KerasMLPClassifier` train classifier heads on them out of core.

``import skbottleneck`` never imports TensorFlow: it is imported the first
time a model is built.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it; imported on first access so that
# `import skbottleneck` stays light.
_EXPORTS = {
    "CNNFeatureTransformer": "extraction",
    "ExtractionResult": "extraction",
    "AugmentedClassifier": "extraction",
    "ImageViews": "extraction",
    "FeatureStore": "store",
    "FeatureCache": "cache",
    "cache_info": "cache",
    "clear_cache": "cache",
    "get_cache_dir": "cache",
    "IncrementalClassifier": "heads",
    "KerasMLPClassifier": "heads",
    "list_backbones": "backbones",
    "get_backbone": "backbones",
    "register_backbone": "backbones",
    "ZeroShotClassifier": "heads",
    "ImageError": "images",
    "load_image": "images",
    "find_similar": "similarity",
    "SimilarityResult": "similarity",
    "build_index": "similarity",
    "find_duplicates": "similarity",
    "FeatureSpace": "feature_space",
    "FeatureSpaceError": "feature_space",
    "check_feature_space": "feature_space",
    "open_rows": "store",
    "save_model": "_model_files",
    "load_model": "_model_files",
}
_SUBMODULES = {"backbones", "cache", "chunks", "cli", "datasets", "distributed", "extraction",
               "feature_space", "heads", "images", "similarity", "store", "utils"}

# `report` names both a module and its main function: import it eagerly (it
# needs only numpy) so that `skbottleneck.report` is always the function.
from .report import report  # noqa: E402

__all__ = sorted(_EXPORTS) + ["__version__", "datasets", "report"]


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'skbottleneck' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
