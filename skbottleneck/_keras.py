"""The one place where TensorFlow and Keras are imported.

Everything else in skbottleneck calls :func:`import_keras` or
:func:`import_tf` at the moment a model is needed, so that
``import skbottleneck`` stays light (no TensorFlow in ``sys.modules``).
"""

import os

__all__ = ["import_keras", "import_tf"]

_configured = False


def _configure_environment():
    """Quiet TensorFlow's C++ logging before the first import."""
    global _configured
    if _configured:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    _configured = True


def import_tf():
    """Import and return the ``tensorflow`` module."""
    _configure_environment()
    import tensorflow as tf

    return tf


def import_keras():
    """Import and return the ``keras`` module (Keras 3, TensorFlow backend)."""
    _configure_environment()
    import keras

    return keras
