"""Near-duplicate images: within a store, or the images of one store copied in another.

Two images are near-duplicates when the cosine distance between their
stored features is at most ``threshold``: a re-saved JPEG, a resized or
slightly cropped copy. Every image of the store is a query
(:func:`~skbottleneck.similarity._search.nearest_rows`, which uses the
index beside the searched store when there is one, else scans it exactly);
its ``k`` nearest images closer than ``threshold`` are its copies. Within
one store the pairs are joined into groups (connected components: a copy
of a copy is in the group); across two stores (a test set against a
training set) each pair is an image of the first store and its copy in
the second: leakage, which inflates a test score.
"""

import os
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, validate_params

from ._search import nearest_rows

__all__ = ["DEFAULT_THRESHOLD", "Duplicates", "find_duplicates"]

#: Default cosine distance under which two images are near-duplicates. Measured with
#: EfficientNet-Lite0 (ImageNet weights, 96 px) on scikit-image's photos
#: (tests/test_duplicates.py): a JPEG re-saved at quality 40 is at 0.009 from its
#: original, a copy resized to half its size at 0.077; the nearest *different* picture
#: (another part of the same photo included) at 0.42 or more. Other models and sizes
#: spread features differently: check a few pairs of your own.
DEFAULT_THRESHOLD = 0.1
_QUERY_ROWS = 1024  # images of the store queried at a time


@dataclass
class Duplicates:
    """Near-duplicate pairs, and within one store their groups.

    Attributes
    ----------
    pairs : ndarray of int64 of shape (n_pairs, 2)
        Store rows: within one store ``(a, b)`` with ``a < b``; across two
        stores ``(row in store, row in other)``. Ordered by distance.
    distances : ndarray of float32 of shape (n_pairs,)
        Their cosine distances, at most ``threshold``.
    paths : ndarray of str of shape (n_pairs, 2)
        Their paths.
    groups : list of ndarray of int64
        Within one store: rows of near-identical images, each group of two
        or more, largest first. Across two stores: for each image of
        ``store`` with a copy, ``[its row, rows of its copies in other...]``.
    threshold : float
    n_images : int
        Images of ``store`` examined.
    """

    pairs: np.ndarray
    distances: np.ndarray
    paths: np.ndarray
    groups: list
    threshold: float
    n_images: int

    def to_records(self):
        """One dict per pair: ``row, path, other_row, other_path, distance`` (plain values)."""
        return [{"row": int(a), "path": str(pa), "other_row": int(b), "other_path": str(pb),
                 "distance": float(d)}
                for (a, b), (pa, pb), d in zip(self.pairs, self.paths, self.distances)]


@validate_params(
    {
        "store": [str, os.PathLike, HasMethods(["read_rows"])],
        "other": [None, str, os.PathLike, HasMethods(["read_rows"])],
        "threshold": [Interval(Real, 0, 2, closed="both")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "exact": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def find_duplicates(store, other=None, *, threshold=DEFAULT_THRESHOLD, k=10, exact=False):
    """Near-identical images within a store, or the images of ``store`` copied in ``other``.

    Parameters
    ----------
    store : FeatureStore or str or path-like
        Its images (view 0 of each) are examined.
    other : FeatureStore or str or path-like, default=None
        None: find groups of copies within ``store``. A store of the same
        model (e.g. the training set, ``store`` being the test set): find
        the images of ``store`` that have a near-copy in ``other``.
    threshold : float, default=0.1
        Largest cosine distance (``1 - cos``) between copies.
    k : int, default=10
        Copies looked for per image (the nearest ``k``; a larger group is
        still joined through its members within one store).
    exact : bool, default=False
        Scan the searched store exactly even when it has an index.

    Returns
    -------
    duplicates : Duplicates

    Raises
    ------
    ValueError
        ``store`` and ``other`` hold features of different models or widths.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck import find_duplicates
    >>> from skbottleneck.store import StoreWriter
    >>> X = np.eye(4, dtype=np.float32) + 0.01
    >>> X[3] = X[1] * 2  # image 3 is a copy of image 1 (same direction)
    >>> w = StoreWriter(tmp_dir / "d.h5", paths=["a.jpg", "b.jpg", "c.jpg", "b2.jpg"], n_features=4)
    >>> w.write_rows(np.arange(4), X); store = w.finalize()
    >>> dups = find_duplicates(store)
    >>> dups.groups, dups.paths.tolist()
    ([array([1, 3])], [['b.jpg', 'b2.jpg']])
    """
    from ..store import FeatureStore

    own_store = not hasattr(store, "read_rows")
    own_other = other is not None and not hasattr(other, "read_rows")
    store = FeatureStore(store) if own_store else store
    target = store if other is None else (FeatureStore(other) if own_other else other)
    try:
        _check_same_space(store, target)
        n_views = int(getattr(store, "n_views", 1) or 1)
        rows = np.arange(len(store) // n_views, dtype=np.int64) * n_views
        found = []
        for start in range(0, len(rows), _QUERY_ROWS):
            part = rows[start:start + _QUERY_ROWS]
            Q = store.read_rows(part, dtype=np.float32)[0]
            indices, distances, _, _ = nearest_rows(target, Q, k + (other is None), exact=exact)
            close = distances <= threshold
            if other is None:
                close &= indices != part[:, None]
            q, j = np.nonzero(close)
            found.append((part[q], indices[q, j], distances[q, j]))
        a, b, d = (np.concatenate(x) for x in zip(*found)) if found else (
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        if other is None:  # (a, b) and (b, a): once
            a, b = np.minimum(a, b), np.maximum(a, b)
            _, first = np.unique(np.stack([a, b], axis=1), axis=0, return_index=True)
            a, b, d = a[first], b[first], d[first]
        order = np.lexsort((b, a, d))
        a, b, d = a[order], b[order], d[order].astype(np.float32)
        groups = _components(a, b) if other is None else _copies_of(a, b)
        paths = np.stack([np.asarray(store.paths)[a], np.asarray(target.paths)[b]], axis=1) \
            if len(a) else np.zeros((0, 2), dtype=str)
        return Duplicates(np.stack([a, b], axis=1), d, paths, groups, float(threshold),
                          len(rows))
    finally:
        if own_store:
            store.close()
        if own_other:
            target.close()


def _check_same_space(store, other):
    if store is other:
        return
    if store.n_features != other.n_features:
        raise ValueError(f"The stores {getattr(store, 'path', store)} and "
                         f"{getattr(other, 'path', other)} hold features of different widths "
                         f"({store.n_features} and {other.n_features}): they cannot be compared.")
    ours = (getattr(store, "metadata", {}) or {}).get("fingerprint")
    theirs = (getattr(other, "metadata", {}) or {}).get("fingerprint")
    if ours is not None and theirs is not None and ours != theirs:
        raise ValueError(f"The stores {store.path} and {other.path} hold features of different "
                         f"models ({ours} and {theirs}): extract both with the same model.")


def _components(a, b):
    """Groups of rows joined by the pairs ``(a, b)`` (union-find), largest first."""
    parent = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    groups = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    out = [np.asarray(sorted(g), dtype=np.int64) for g in groups.values()]
    return sorted(out, key=lambda g: (-len(g), g[0]))


def _copies_of(a, b):
    """``[row, copies...]`` per row of the first store that has copies, in row order."""
    out = {}
    for x, y in zip(a.tolist(), b.tolist()):
        out.setdefault(x, [x]).append(y)
    return [np.asarray(out[x], dtype=np.int64) for x in sorted(out)]
