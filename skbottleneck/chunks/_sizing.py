"""Chunk sizes in rows or in bytes: how many rows the heads read at a time.

A chunk is the unit of memory of the out-of-core heads. Counted in rows,
its size in bytes grows with the feature width (1,024 rows of un-pooled
ResNet50 features, 100,352 floats each, are 392 MiB); counted in bytes it
does not. :func:`chunk_rows` turns a ``chunk_size`` -- a row count, a byte
budget such as ``"64MiB"``, or ``"auto"`` -- into rows for a given width.
"""

import numbers
import re

import numpy as np

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CHUNK_ROWS",
    "chunk_rows",
    "parse_bytes",
    "row_nbytes_of",
]

#: Rows per chunk of ``chunk_size="auto"`` when they fit in :data:`DEFAULT_CHUNK_BYTES`.
DEFAULT_CHUNK_ROWS = 1024
#: Largest chunk of ``chunk_size="auto"``, in bytes of the features as computed on.
DEFAULT_CHUNK_BYTES = 64 * 2**20

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")


def parse_bytes(text):
    """Bytes of a size such as ``"64MiB"``, ``"500 MB"``, ``"1.5GiB"`` or ``"4096"``.

    Units: B, kB, MB, GB (powers of 1,000) and KiB, MiB, GiB (powers of
    1,024), case-insensitive.

    Parameters
    ----------
    text : str
        The size.

    Returns
    -------
    n_bytes : int

    Raises
    ------
    ValueError
        If ``text`` is not a positive size with a known unit.

    Examples
    --------
    >>> parse_bytes("64MiB"), parse_bytes("1.5 kB"), parse_bytes("4096")
    (67108864, 1500, 4096)
    """
    match = _BYTES.match(str(text).lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(
            "chunk_size must be a number of rows (an int), 'auto', or a size in bytes "
            f"such as '64MiB' or '500MB' (units B, kB, MB, GB, KiB, MiB, GiB). Got {text!r} "
            "instead."
        )
    n_bytes = int(float(match.group(1)) * _UNITS[match.group(2)])
    if n_bytes < 1:
        raise ValueError(f"chunk_size must be at least 1 byte. Got {text!r} instead.")
    return n_bytes


def chunk_rows(chunk_size, row_nbytes, *, multiple_of=1):
    """Rows per chunk for ``chunk_size`` and rows of ``row_nbytes`` bytes.

    Parameters
    ----------
    chunk_size : int or str
        An int is a number of rows, used as is. A size in bytes (``"64MiB"``,
        see :func:`parse_bytes`) is the most bytes a chunk may hold: as many
        rows as fit, at least one. ``"auto"``: :data:`DEFAULT_CHUNK_ROWS`
        (1,024) rows, or fewer when they would take more than
        :data:`DEFAULT_CHUNK_BYTES` (64 MiB).
    row_nbytes : int or None
        Bytes of one row as computed on (``n_features * itemsize``; a
        float16 store read as float32 counts 4 bytes a feature). None when
        unknown: a byte budget then gives :data:`DEFAULT_CHUNK_ROWS`.
    multiple_of : int, default=1
        When a byte budget caps the rows, round them down to a multiple of
        this (a Keras head's ``batch_size``: no short batch in the middle of
        an epoch), but never below ``multiple_of`` rows: a chunk holds at
        least one batch, even if that is over the budget.

    Returns
    -------
    rows : int

    Examples
    --------
    >>> chunk_rows(256, 401_408)                       # rows, as given
    256
    >>> chunk_rows("auto", 2048 * 4)                   # narrow rows: 1,024 of them
    1024
    >>> chunk_rows("auto", 100_352 * 4)                # un-pooled ResNet50: 64 MiB of rows
    167
    >>> chunk_rows("auto", 100_352 * 4, multiple_of=128)
    128
    >>> chunk_rows("8MiB", 100_352 * 4)
    20
    """
    if isinstance(chunk_size, numbers.Integral) and not isinstance(chunk_size, bool):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
        return int(chunk_size)
    if not isinstance(chunk_size, str):
        raise ValueError(
            "chunk_size must be a number of rows (an int), 'auto', or a size in bytes such "
            f"as '64MiB'. Got {chunk_size!r} of type {type(chunk_size).__name__} instead."
        )
    auto = chunk_size.strip().lower() == "auto"
    budget = DEFAULT_CHUNK_BYTES if auto else parse_bytes(chunk_size)
    if row_nbytes is None:
        return DEFAULT_CHUNK_ROWS
    rows = max(1, budget // max(1, int(row_nbytes)))
    if auto and rows >= DEFAULT_CHUNK_ROWS:
        return DEFAULT_CHUNK_ROWS
    multiple_of = max(1, int(multiple_of))
    return max(multiple_of, rows // multiple_of * multiple_of)


def row_nbytes_of(X):
    """Bytes of one row of ``X`` as the heads compute on it, or None when unknown.

    Arrays and dask arrays: ``n_features * itemsize``; sparse matrices: their
    stored bytes per row; a store (anything with ``n_features``): its
    features as read, float16 counting as float32.

    Examples
    --------
    >>> import numpy as np
    >>> row_nbytes_of(np.zeros((3, 10))), row_nbytes_of(np.zeros((3, 10), np.float32))
    (80, 40)
    """
    from scipy import sparse

    if sparse.issparse(X):
        X = X.tocsr() if not hasattr(X, "indices") else X
        n_rows = max(1, X.shape[0])
        return max(1, (X.data.nbytes + X.indices.nbytes) // n_rows)
    shape = getattr(X, "shape", None)
    n_features = getattr(X, "n_features", None)
    if n_features is None and shape is not None and len(shape) == 2:
        n_features = shape[1]
    if n_features is None:
        return None
    dtype = getattr(X, "dtype", None)
    try:
        itemsize = np.dtype(np.float32 if dtype is None else dtype).itemsize
    except TypeError:  # a DataFrame's dtypes: counted as float64
        itemsize = 8
    return int(n_features) * max(4, itemsize)
