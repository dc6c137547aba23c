"""The row protocol: what "rows with labels, readable in chunks" means.

A :class:`RowSource` is a table of ``len(source)`` rows of ``n_features``
numbers (``dtype``), with an optional label per row. It reads any rows by
number (:meth:`RowSource.read_rows`) and all of them in chunks
(:meth:`RowSource.iter_chunks`). The feature store
(:class:`~skbottleneck.FeatureStore`, :class:`~skbottleneck.store.StoreSubset`),
a ``dask.array`` (:class:`~skbottleneck.chunks.DaskChunks`), arrays in memory
or memory-mapped (:class:`ArrayRows`) and feature files (Parquet, ``.npy``,
CSV: :mod:`skbottleneck.chunks._feature_files`) all implement it, and the
heads, the report and :func:`~skbottleneck.find_similar` read them through
it alone.

:func:`is_row_source` is the one place that asks "is this a row source".
:func:`iter_row_chunks` is the one chunk iterator: the block shuffle of
:func:`~skbottleneck.chunks.iter_chunk_positions` over the source's rows,
each chunk read with ``read_rows``. A source that reads a whole
sequence of chunks better than chunk by chunk (a dask array computes each
of its blocks once) says so with two optional hooks, ``row_blocks()``
(its natural block boundaries) and ``read_chunks(positions, dtype)``.
:class:`RowSourceMixin` gives a source its ``iter_chunks`` from that
iterator.
"""

import operator
from itertools import tee
from typing import Protocol, runtime_checkable

import numpy as np

from ._blocks import block_bounds, default_block_rows, iter_chunk_positions

__all__ = [
    "ArrayRows",
    "BlockRowsMixin",
    "RowSource",
    "RowSourceMixin",
    "RowSubset",
    "check_finite_rows",
    "check_rows",
    "check_storable",
    "is_row_source",
    "iter_row_chunks",
    "nonfinite_message",
    "nonfinite_rows",
    "reading_dtype",
]


@runtime_checkable
class RowSource(Protocol):
    """Rows with labels that can be read in chunks (a structural type).

    Attributes
    ----------
    n_features : int
        Numbers per row.
    dtype : numpy.dtype
        Of the rows as stored (float16 rows are read as float32 unless a
        ``dtype`` is asked for).
    shape : tuple of int
        ``(len(source), n_features)``.
    labels : ndarray of shape (n_rows,) or None
        One label per row, or None when the source has none.

    Examples
    --------
    >>> import numpy as np
    >>> isinstance(ArrayRows(np.zeros((3, 2))), RowSource)
    True
    >>> isinstance(np.zeros((3, 2)), RowSource)  # an array is wrapped first
    False
    """

    n_features: int
    dtype: np.dtype

    def __len__(self) -> int: ...

    @property
    def shape(self) -> tuple: ...

    @property
    def labels(self): ...

    def read_rows(self, indices, *, dtype=None):
        """``(X, y)`` of rows ``indices`` (any order); ``y`` None without labels."""

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None):
        """Yield ``(X_chunk, y_chunk)`` covering every row once."""


def is_row_source(X):
    """Tell whether ``X`` implements the :class:`RowSource` protocol.

    Examples
    --------
    >>> import numpy as np
    >>> is_row_source(ArrayRows(np.zeros((2, 2)))), is_row_source(np.zeros((2, 2)))
    (True, False)
    """
    return not isinstance(X, type) and isinstance(X, RowSource)


def _row_nbytes(source):
    dtype = getattr(source, "dtype", None)
    return int(source.n_features) * np.dtype(np.float32 if dtype is None else dtype).itemsize


def iter_row_chunks(source, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None,
                    block_rows=None):
    """The one chunk iterator: every row of ``source`` once, in block-shuffled chunks.

    With ``shuffle=True`` the rows are cut into blocks of neighbouring rows
    (the source's own ``row_blocks()`` if it has them, else 128 KiB of
    stored rows, at most ``chunk_size // 16``), the blocks taken in a random
    order and dealt into chunks, and each chunk's rows permuted; reads stay
    runs of neighbours and every chunk mixes rows from all over the source.

    Parameters
    ----------
    source : RowSource
    chunk_size : int, default=1024
        Rows per chunk (the last one may be smaller).
    shuffle : bool, default=True
        ``False``: the rows in order.
    random_state : int, RandomState instance or None, default=None
        Seed of the shuffle.
    dtype : dtype, default=None
        Of the yielded features (None: the source's reading dtype).
    block_rows : int, default=None
        Rows per block, instead of the default above.

    Yields
    ------
    X : ndarray of shape (n_chunk, n_features)
    y : ndarray of shape (n_chunk,) or None

    Examples
    --------
    >>> import numpy as np
    >>> rows = ArrayRows(np.arange(20.0).reshape(10, 2), np.arange(10))
    >>> chunks = list(iter_row_chunks(rows, 4, random_state=0))
    >>> [len(y) for X, y in chunks], sorted(np.concatenate([y for X, y in chunks]).tolist())
    ([4, 4, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    chunk_size = operator.index(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
    rng = None
    if shuffle:
        from sklearn.utils import check_random_state

        rng = check_random_state(random_state)
    natural = getattr(source, "row_blocks", None)
    bounds = natural() if natural is not None and block_rows is None else None
    if bounds is None:
        if block_rows is None:
            block_rows = default_block_rows(_row_nbytes(source), chunk_size)
        bounds = block_bounds(len(source), max(1, min(operator.index(block_rows), chunk_size)))
    positions = iter_chunk_positions(bounds, chunk_size, shuffle=shuffle, rng=rng)
    read_chunks = getattr(source, "read_chunks", None)
    if read_chunks is not None:
        yield from read_chunks(positions, dtype=dtype)
        return
    for rows in positions:
        yield source.read_rows(rows, dtype=dtype)


class RowSourceMixin:
    """Gives a row source ``shape`` and ``iter_chunks`` (the one chunk iterator).

    A class using it defines ``__len__``, ``n_features``, ``dtype``,
    ``labels`` and ``read_rows``.
    """

    #: iter_chunks permutes the rows of each chunk itself: readers need not again.
    shuffles_within_chunks = True

    @property
    def shape(self):
        return (len(self), int(self.n_features))

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None,
                    block_rows=None):
        """Iterate over the rows in chunks, each row exactly once.

        See :func:`~skbottleneck.chunks.iter_row_chunks` (blocks of
        neighbouring rows in a random order, dealt into chunks, rows
        permuted within each chunk).

        Parameters
        ----------
        chunk_size : int, default=1024
        shuffle : bool, default=True
        random_state : int, RandomState instance or None, default=None
        dtype : dtype, default=None
        block_rows : int, default=None

        Yields
        ------
        X : ndarray of shape (n_chunk, n_features)
        y : ndarray of shape (n_chunk,) or None
        """
        return iter_row_chunks(self, chunk_size, shuffle=shuffle, random_state=random_state,
                               dtype=dtype, block_rows=block_rows)


def check_rows(indices, n_rows):
    """Row numbers in ``[0, n_rows)`` of an index array or boolean mask.

    Parameters
    ----------
    indices : array-like of int or bool
        Rows in any order (negative counts from the end), or a mask of
        ``n_rows`` booleans.
    n_rows : int

    Returns
    -------
    rows : ndarray of int64

    Raises
    ------
    IndexError
        Not 1-D integers or a mask of that length, or out of range.
    """
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n_rows,):
            raise IndexError(f"boolean index must have shape ({n_rows},); got {idx.shape}.")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise IndexError(f"indices must be a 1-D array of integers or booleans; got "
                         f"{idx.dtype} {idx.shape}.")
    idx = idx.astype(np.int64)
    if idx.min() < -n_rows or idx.max() >= n_rows:
        raise IndexError(f"index out of range for a row source of {n_rows} rows.")
    return np.where(idx < 0, idx + n_rows, idx)


def reading_dtype(stored, dtype=None):
    """The dtype rows are returned in: ``dtype``, else float32 for float16 storage, else as stored."""
    if dtype is not None:
        return np.dtype(dtype)
    stored = np.dtype(stored)
    return np.dtype(np.float32) if stored == np.float16 else stored


class ArrayRows(RowSourceMixin):
    """An array (in memory or an ``np.memmap``) with optional labels, as a row source.

    Parameters
    ----------
    X : ndarray or numpy.memmap of shape (n_rows, n_features)
        Not copied: a memory-mapped array stays on disk, chunks are read
        from it one at a time.
    y : array-like of shape (n_rows,), default=None
        Labels.

    Attributes
    ----------
    n_features : int
    dtype : numpy.dtype
    labels : ndarray or None

    Examples
    --------
    >>> import numpy as np
    >>> rows = ArrayRows(np.arange(6.0).reshape(3, 2), ["a", "b", "a"])
    >>> rows.shape, rows.read_rows([2, 0])[1].tolist()
    ((3, 2), ['a', 'a'])
    """

    def __init__(self, X, y=None):
        if getattr(X, "ndim", None) != 2:
            raise ValueError(f"ArrayRows expects a 2-D array; got {type(X).__name__} of shape "
                             f"{getattr(X, 'shape', None)}.")
        if y is not None:
            y = np.asarray(y).ravel()
            if len(y) != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels.")
        self.X = X
        self._labels = y
        self.n_features = int(X.shape[1])
        self.dtype = np.dtype(X.dtype)

    def __len__(self):
        return int(self.X.shape[0])

    @property
    def labels(self):
        """The labels (ndarray), or None."""
        return self._labels

    def read_rows(self, indices, *, dtype=None):
        """Features and labels of rows ``indices`` (any order; read in row order).

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        idx = check_rows(indices, len(self))
        order = np.argsort(idx, kind="stable")
        X = np.empty((len(idx), self.n_features), dtype=reading_dtype(self.dtype, dtype))
        X[order] = self.X[idx[order]]
        return X, (None if self._labels is None else self._labels[idx])

    def __repr__(self):
        kind = "memmap" if isinstance(self.X, np.memmap) else "array"
        return f"ArrayRows({kind}, n_rows={len(self)}, n_features={self.n_features})"


class RowSubset(RowSourceMixin):
    """Some rows of a row source, seen as a row source (the other rows are never read).

    Parameters
    ----------
    source : RowSource
        The whole source.
    rows : array-like of int
        Rows of ``source`` in the subset, in any order; kept sorted, each
        once (position ``i`` of the subset is its ``i``-th smallest row).
    labels : array-like of shape (len(source),), default=None
        Labels replacing the source's own (one per row of the whole source).

    Attributes
    ----------
    source : RowSource
    rows : ndarray of int64
        The rows of ``source``, sorted.
    n_features : int
    dtype : numpy.dtype

    Examples
    --------
    >>> import numpy as np
    >>> subset = RowSubset(ArrayRows(np.arange(10.0).reshape(5, 2), list("abcde")), [4, 1])
    >>> len(subset), subset.labels.tolist(), subset.read_rows([1])[0].tolist()
    (2, ['b', 'e'], [[8.0, 9.0]])
    """

    def __init__(self, source, rows, labels=None):
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        n = len(source)
        if len(rows) and (rows[0] < 0 or rows[-1] >= n):
            raise IndexError(f"rows of a subset must be in [0, {n}) for a source of {n} "
                             f"rows; got {rows[0]}..{rows[-1]}.")
        if labels is not None and len(labels) != n:
            raise ValueError(f"{len(labels)} labels for a source of {n} rows.")
        self.source = source
        self.rows = rows
        self._labels = None if labels is None else np.asarray(labels)
        self.n_features = int(source.n_features)
        dtype = getattr(source, "dtype", None)
        self.dtype = np.dtype(np.float32 if dtype is None else dtype)

    def __len__(self):
        return len(self.rows)

    @property
    def labels(self):
        """Labels of the subset's rows, or ``None``."""
        labels = self.source.labels if self._labels is None else self._labels
        return None if labels is None else np.asarray(labels)[self.rows]

    def read_rows(self, indices, *, dtype=None):
        """Features and labels of positions ``indices`` of the subset (read in row order).

        Parameters
        ----------
        indices : array-like of int or bool mask
            Positions in the subset (``0 .. len(self) - 1``; negative counts
            from the end), any order.
        dtype : dtype, default=None

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        rows = self.rows[check_rows(indices, len(self.rows))]
        if len(rows) > 1 and np.any(np.diff(rows) < 0):
            order = np.argsort(rows, kind="stable")
            X, y = self.source.read_rows(rows[order], dtype=dtype)
            unsort = np.empty_like(order)
            unsort[order] = np.arange(len(order))
            X, y = X[unsort], (None if y is None else np.asarray(y)[unsort])
        else:
            X, y = self.source.read_rows(rows, dtype=dtype)
        if self._labels is not None:
            y = self._labels[rows]
        return X, y

    def row_blocks(self):
        """The source's own blocks (row groups...) cut to the subset, or None if it has none."""
        natural = getattr(self.source, "row_blocks", None)
        bounds = None if natural is None else natural()
        return None if bounds is None else np.unique(np.searchsorted(self.rows, bounds))

    def read_chunks(self, chunks, *, dtype=None):
        """Yield ``(X, y)`` per array of positions: through the source's ``read_chunks``
        when it has one (each of its blocks read once per pass), else ``read_rows``."""
        read = getattr(self.source, "read_chunks", None)
        if read is None:
            for positions in chunks:
                yield self.read_rows(positions, dtype=dtype)
            return
        mine, theirs = tee(chunks)
        for positions, (X, y) in zip(mine, read((self.rows[p] for p in theirs), dtype=dtype)):
            yield X, (y if self._labels is None else self._labels[self.rows[positions]])

    def __repr__(self):
        return f"{type(self).__name__}({self.source!r}, n_rows={len(self.rows)})"


class BlockRowsMixin(RowSourceMixin):
    """A row source read a block of rows at a time (Parquet row groups, CSV runs of lines).

    A class using it defines ``__len__``, ``n_features``, ``dtype``,
    ``labels``, ``row_blocks()`` (block boundaries ``[0, ..., len]``) and
    ``read_block(b)`` (the rows of block ``b`` as a 2-D array). The one
    chunk iterator shuffles whole blocks and reads each block once per pass,
    holding it only until its rows were dealt; :meth:`read_rows` reads the
    blocks its rows fall in, one at a time.
    """

    def _block_of(self, positions):
        return np.searchsorted(self.row_blocks(), positions, side="right") - 1

    def read_rows(self, indices, *, dtype=None):
        """Features and labels of rows ``indices`` (any order).

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        idx = check_rows(indices, len(self))
        bounds = self.row_blocks()
        X = np.empty((len(idx), self.n_features), dtype=reading_dtype(self.dtype, dtype))
        which = self._block_of(idx)
        for b in np.unique(which).tolist():
            mask = which == b
            X[mask] = self.read_block(b)[idx[mask] - bounds[b]]
        labels = self.labels
        return X, (None if labels is None else labels[idx])

    def read_chunks(self, chunks, *, dtype=None):
        """Yield ``(X, y)`` for each array of row positions, each block read once."""
        bounds, labels = self.row_blocks(), self.labels
        out_dtype = reading_dtype(self.dtype, dtype)
        held, left = {}, {}  # block number -> its rows; rows not yet dealt
        for positions in chunks:
            which = self._block_of(positions)
            X = np.empty((len(positions), self.n_features), dtype=out_dtype)
            for b in np.unique(which).tolist():
                if b not in held:
                    held[b] = self.read_block(b)
                    left[b] = int(bounds[b + 1] - bounds[b])
                mask = which == b
                X[mask] = held[b][positions[mask] - bounds[b]]
                left[b] -= int(mask.sum())
                if not left[b]:
                    del held[b], left[b]
            yield X, (None if labels is None else labels[positions])


# ------------------------------------------------- rows that are not finite
# scikit-learn says only "Input X contains NaN" about a NaN or an infinity,
# naming neither the file nor the row: on the error path, one pass over the
# source finds the rows (a finite source costs nothing).
#: How many bad rows a message names.
SHOWN_BAD_ROWS = 5


def check_storable(features, stored, *, where):
    """Refuse features that a float16 storage turned into infinities (|x| > 65504).

    ``features`` are the rows given, ``stored`` the same rows in the storage
    dtype; ``where`` names the store or cache. A float16 infinity is an
    overflow, whether it came from this conversion or from a CNN that
    computed in float16; other non-finite values are left to the readers
    (:func:`check_finite_rows`).

    Examples
    --------
    >>> import numpy as np
    >>> rows = np.array([[1.0, 7e4]])
    >>> with np.errstate(over="ignore"):
    ...     stored = rows.astype(np.float16)
    >>> check_storable(rows, stored, where="photos.h5")
    Traceback (most recent call last):
    ...
    ValueError: photos.h5 stores float16 features, ... these features reach 70000: ...
    """
    if stored.dtype != np.float16 or not np.isinf(stored).any():
        return
    features = np.asarray(features)
    finite = np.isfinite(features)
    if features.dtype == np.float16 or not finite.any():
        reach = "float16's infinity (they overflowed before they were stored)"
    else:
        reach = f"{float(np.abs(features[finite]).max()):.6g}"
    raise ValueError(
        f"{where} stores float16 features, whose largest magnitude is 65504, but these "
        f"features reach {reach}: {int(np.isinf(stored).sum())} values would be stored as "
        'infinity. Use dtype="float32".'
    )


def nonfinite_rows(source, chunk_rows=4096):
    """Row numbers (in ``source`` order) holding a NaN or an infinity, one pass.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.chunks import ArrayRows
    >>> nonfinite_rows(ArrayRows(np.array([[0.0], [np.nan], [1.0], [np.inf]]))).tolist()
    [1, 3]
    """
    bad = []
    n = len(source)
    for start in range(0, n, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, n), dtype=np.int64)
        X = np.asarray(source.read_rows(rows)[0])
        bad.append(rows[~np.isfinite(X).all(axis=1)])
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def source_name(source):
    """How a message names ``source``: its path, else its type."""
    path = getattr(source, "path", None)
    kind = "FeatureStore" if type(source).__name__ in ("FeatureStore", "StoreSubset") else \
        type(source).__name__
    return f"the {kind} {path!s}" if path is not None else f"the {kind}"


def check_finite_rows(source, *, owner):
    """Raise a ValueError naming ``source`` and its first non-finite rows, if it has any.

    ``owner`` says who refuses them (``"IncrementalClassifier"``,
    ``"find_similar"``).

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.chunks import ArrayRows
    >>> check_finite_rows(ArrayRows(np.ones((2, 2))), owner="me")  # all finite: nothing
    >>> check_finite_rows(ArrayRows(np.array([[1.0, np.nan]])), owner="me")
    Traceback (most recent call last):
    ...
    ValueError: me cannot use the ArrayRows: 1 row holds NaN or infinity (row 0...
    """
    message = nonfinite_message(source, owner=owner)
    if message is not None:
        raise ValueError(message)


def nonfinite_message(source, *, owner):
    """The message of :func:`check_finite_rows`; None when every row is finite."""
    bad = nonfinite_rows(source)
    if not len(bad):
        return None
    X = np.asarray(source.read_rows(bad[:1])[0])
    what = "NaN" if np.isnan(X).any() else "infinity"
    shown = ", ".join(str(int(r)) for r in bad[:SHOWN_BAD_ROWS]) + (", ..." if len(bad) > SHOWN_BAD_ROWS else "")
    plural = "s" if len(bad) > 1 else ""
    return (
        f"{owner} cannot use {source_name(source)}: {len(bad)} row{plural} hold"
        f"{'' if plural else 's'} NaN or infinity (row{plural} {shown}; row {int(bad[0])} "
        f"holds {what}). Features must be finite numbers: extract those images again, or "
        "leave those rows out."
    )
