"""Classifier heads that train on bottleneck features in memory or out of core.

:class:`IncrementalClassifier` feeds any scikit-learn ``partial_fit``
classifier chunk by chunk; :class:`KerasMLPClassifier` trains a Keras MLP
the same way. Both read their data through :mod:`skbottleneck.chunks` and
share their parameters, checks and epoch / early-stopping loop
(``heads/_base.py``). :func:`build_head` builds one by name (:data:`HEADS`);
:func:`choose_head` picks the exact solver or the out-of-core loop for a
store and a memory budget, as ``skbottleneck train`` does.
:class:`ZeroShotClassifier` needs no training: an image-text model compares
the images with label prompts.

Importing this package does not import TensorFlow; a Keras head's first
``fit`` does.
"""

import importlib

#: Names accepted by :func:`build_head` (and ``skbottleneck train --head``).
HEADS = ("logreg", "sgd", "mlp", "keras-mlp")

# name -> module; imported on first use, so that the command line's parser
# (which needs HEADS) does not pay for scikit-learn
_LAZY = {"IncrementalClassifier": "_incremental", "KerasMLPClassifier": "_keras_mlp",
         "ZeroShotClassifier": "_zero_shot",
         **{name: "_factory" for name in ("HeadChoice", "build_head", "choose_head", "fit_head",
                                          "image_pipeline", "memory_budget",
                                          "available_memory", "exact_logreg")}}

__all__ = ["HEADS", "HeadChoice", "IncrementalClassifier", "KerasMLPClassifier",
           "ZeroShotClassifier", "available_memory", "build_head", "choose_head",
           "exact_logreg", "fit_head", "image_pipeline", "memory_budget"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
