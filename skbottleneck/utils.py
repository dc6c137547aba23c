"""Validation and formatting helpers shared by the whole package.

Light on purpose: numpy and scikit-learn's validation only, so that every
room of the package (images, extraction, store, cache, heads, CLI) can use
them without importing another room.
"""

import os
from numbers import Integral

import numpy as np

__all__ = [
    "check_paths",
    "check_seed",
    "draw_seed",
    "format_bytes",
    "is_dask_array",
    "is_keras_model",
]

_MAX_SEED = np.iinfo(np.int32).max


def check_seed(random_state, *, name="random_state", owner=None):
    """Validate a seed that must be reproducible across processes.

    Parameters
    ----------
    random_state : int or None
        An int in ``[0, 2**32 - 1]``, or None.
    name : str, default="random_state"
        Name of the parameter, for the error message.
    owner : str, default=None
        Name of the estimator or function, for the error message.

    Returns
    -------
    random_state : int or None

    Raises
    ------
    ValueError
        Anything else (a ``RandomState`` instance cannot be recorded in a
        cache fingerprint or rebuilt on another machine).

    Examples
    --------
    >>> check_seed(3), check_seed(None)
    (3, None)
    """
    if random_state is None or (
        isinstance(random_state, Integral) and not isinstance(random_state, bool)
        and 0 <= random_state < 2**32
    ):
        return None if random_state is None else int(random_state)
    of = f" of {owner}" if owner else ""
    raise ValueError(
        f"The {name!r} parameter{of} must be None or an int in [0, 2**32 - 1]. "
        f"Got {random_state!r} instead."
    )


def draw_seed(random_state):
    """An int seed drawn from anything :func:`sklearn.utils.check_random_state` accepts.

    Examples
    --------
    >>> draw_seed(0) == draw_seed(0)
    True
    """
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(_MAX_SEED))


def format_bytes(n):
    """A byte count for people, in binary units (KiB = 1024 bytes).

    Examples
    --------
    >>> format_bytes(512), format_bytes(3 * 2**20), format_bytes(1.5 * 2**40)
    ('512 B', '3.0 MiB', '1.5 TiB')
    """
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def is_dask_array(X):
    """A ``dask.array.Array``, told without importing dask."""
    return (type(X).__module__.split(".")[0] == "dask" and hasattr(X, "blocks")
            and hasattr(X, "chunks"))


def is_keras_model(obj):
    """A Keras model, told without importing keras."""
    return not isinstance(obj, str) and hasattr(obj, "layers") and hasattr(obj, "get_layer")


def check_paths(X, owner="CNNFeatureTransformer"):
    """Validate a sequence of image paths; return a 1-D object array of them.

    Accepts a list, tuple, 1-D array, pandas Series or one-column DataFrame
    of ``str`` / path-like; refuses a bare path (a common slip) with a hint.

    Examples
    --------
    >>> check_paths(["a.jpg", "b.png"]).tolist()
    ['a.jpg', 'b.png']
    """
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{owner} expects a sequence of image paths (list, array, Series); "
            f"got a single path {os.fspath(X)!r}. Wrap it in a list: [path]."
        )
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):  # one-column DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"{owner} expects one column of image paths; got a DataFrame "
                f"with {X.shape[1]} columns."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    try:
        arr = np.asarray(X, dtype=object)
    except Exception as e:
        raise TypeError(f"{owner} expects a sequence of image paths; got {type(X).__name__}.") from e
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{owner} expects a 1-D sequence of image paths; got an array of shape {arr.shape}."
        )
    for p in arr:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(
                f"{owner} expects image paths (str or path-like); "
                f"got an element of type {type(p).__name__}: {p!r:.80}."
            )
    return arr
