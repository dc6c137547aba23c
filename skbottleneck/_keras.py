"""The one place where TensorFlow and Keras are imported.

Everything else in skbottleneck calls :func:`import_keras` or
:func:`import_tf` at the moment a model is needed, so that
``import skbottleneck`` stays light (no TensorFlow in ``sys.modules``).
The command line imports with ``import_tf(quiet=True)``, which keeps
TensorFlow's C++ start-up chatter off the terminal.
"""

import os
import re
import sys

__all__ = ["import_keras", "import_tf"]

_configured = False

#: stderr lines of TensorFlow's start-up that are noise, not errors.
_TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} \d\d:\d\d:\d\d"           # glog-style info / warning lines
    r"|E\d{4} .*(cuInit|cuda|CUDA)"             # probing for a GPU on a machine without one
    r"|To enable the following instructions:)"
)


def _configure_environment():
    """Quiet TensorFlow's C++ logging before the first import."""
    global _configured
    if _configured:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    _configured = True


def _import_quietly():
    """Import TensorFlow and Keras, dropping their C++ start-up chatter from stderr.

    TensorFlow writes oneDNN, CPU-feature and CUDA-probing log lines to file
    descriptor 2 before any Python logging is set up (``TF_CPP_MIN_LOG_LEVEL``
    does not reach them). They are captured here and replayed, less the
    known noise, so that real errors still show. ``SKBOTTLENECK_TF_LOGS=1``
    shows them all.
    """
    if os.environ.get("SKBOTTLENECK_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr file descriptor (embedded use)
        import_tf(), import_keras()
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            tf = import_tf()
            import_keras()
            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            kept = [line for line in lines if line.strip() and not _TF_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def import_tf(quiet=False):
    """Import and return the ``tensorflow`` module.

    Parameters
    ----------
    quiet : bool, default=False
        On the first import, also import Keras and list the devices with
        file descriptor 2 captured, then replay what was written there less
        TensorFlow's known start-up noise (oneDNN, CPU features, CUDA
        probing). For command-line tools; set ``SKBOTTLENECK_TF_LOGS=1`` to
        see everything.
    """
    _configure_environment()
    if quiet:
        _import_quietly()
    import tensorflow as tf

    return tf


def import_keras():
    """Import and return the ``keras`` module (Keras 3, TensorFlow backend)."""
    _configure_environment()
    import keras

    return keras
