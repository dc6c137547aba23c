"""Building a backbone's Keras model: reproducible seeding, bounded downloads.

:meth:`Backbone.build <skbottleneck.backbones.Backbone.build>` decides which
weights to load; the helpers here do the parts that touch Keras and the
process: calling the builder (``keras.applications`` or the bundled
EfficientNet-Lite0/1/2), seeding Keras' initialisers without disturbing other
threads, and giving a download a socket timeout so that a network that drops
packets fails instead of hanging.
"""

import contextlib
import http.client
import random
import socket
import threading
import urllib.error

import numpy as np

from .._keras import import_keras
from ._efficientnet_lite import LITE_BUILDERS

__all__ = ["DOWNLOAD_SOCKET_TIMEOUT", "build_keras", "download_timeout", "is_download_failure",
           "seeded"]

# Per-operation socket timeout while Keras downloads ImageNet weights, so a
# network that silently drops packets fails instead of hanging forever.
DOWNLOAD_SOCKET_TIMEOUT = 60.0

#: Builders that ship with the package (the others are keras.applications').
_BUNDLED_BUILDERS = dict(LITE_BUILDERS)

_SEED_LOCK = threading.Lock()


def build_keras(builder, weights, size, builder_kwargs=()):
    """Call the builder named ``builder`` without its top, for ``(height, width)`` inputs."""
    kwargs = dict(builder_kwargs)
    build = _BUNDLED_BUILDERS.get(builder)
    if build is None:
        build = getattr(import_keras().applications, builder)
    return build(include_top=False, weights=weights, input_shape=(*size, 3), **kwargs)


def is_download_failure(exc):
    """Whether ``exc`` (or what it wraps) is a failed weight download."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (urllib.error.URLError, socket.timeout, ConnectionError,
                            http.client.HTTPException)):
            return True
        message = str(exc)
        if message.startswith("URL fetch failure") or (
            "Incomplete or corrupted file" in message
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def download_timeout(seconds=DOWNLOAD_SOCKET_TIMEOUT):
    """Give socket operations a default timeout while downloading."""
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@contextlib.contextmanager
def seeded(random_state):
    """Seed Keras' initialisers; restore Python's and NumPy's global RNGs after.

    Keras draws the default seed of every initialiser from Python's global
    ``random`` module, which other threads of the process may draw from
    meanwhile (a Dask worker's event loop does, every few milliseconds): the
    weights would then depend on them. During the build Keras draws from a
    private generator instead, seeded like the global one, so the weights
    are the same as in a quiet process, whatever other threads do.
    """
    if random_state is None:
        yield
        return
    keras = import_keras()
    try:  # where Keras 3 draws default seeds (a private module: may move)
        from keras.src.random import seed_generator
    except ImportError:  # pragma: no cover - other Keras layouts: global seeding only
        seed_generator = None
    private = seed_generator is not None and hasattr(seed_generator, "python_random")

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    with _SEED_LOCK:  # one seeded build at a time per process
        keras.utils.set_random_seed(int(random_state))
        if private:
            shared = seed_generator.python_random
            seed_generator.python_random = random.Random(int(random_state))
        try:
            yield
        finally:
            if private:
                seed_generator.python_random = shared
            random.setstate(python_state)
            np.random.set_state(numpy_state)
