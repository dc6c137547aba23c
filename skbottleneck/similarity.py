"""Image similarity search: the stored images nearest a query image, by cosine distance.

:func:`find_similar` turns the query images into features with the
transformer the store was written with (rebuilt from the store's metadata,
:func:`~skbottleneck.extraction.transformer_from_store`; the feature cache
makes a query image already seen free), then finds the ``k`` stored images
nearest each one by cosine distance, ``1 - cos``:

- *in memory*, with scikit-learn's ``NearestNeighbors(metric="cosine")``,
  when the stored features fit in :data:`IN_MEMORY_MAX_BYTES`;
- *streaming* otherwise: the store is read one chunk of rows at a time,
  each chunk's cosine distances to the queries are computed and merged into
  a running top-``k``; memory holds one chunk, its distances to the queries
  and the ``k`` best so far -- ``O(chunk_size * (n_features + n_queries))``,
  whatever the size of the store.

Both give the same neighbours in the same order, ties (equal distances, as
between copies of one image) ordered by store row. (One exception: when
exactly tied rows straddle the ``k``-th place, ``NearestNeighbors`` may keep
another of them than the streaming search, which keeps the lowest rows.)
"""

import os
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params

from .chunks import chunk_rows, is_row_source
from .utils import check_paths

__all__ = ["IN_MEMORY_MAX_BYTES", "SimilarityResult", "find_similar"]

#: ``in_memory="auto"`` searches in memory when the stored features (as
#: float32) take at most this many bytes, and streams over the store otherwise.
IN_MEMORY_MAX_BYTES = 256 * 2**20


@dataclass
class SimilarityResult:
    """The stored images nearest each query image, nearest first.

    Attributes
    ----------
    queries : ndarray of str of shape (n_queries,) or None
        The query images (those that could be read, in the order given);
        ``None`` when the queries were given as features.
    indices : ndarray of int64 of shape (n_queries, k)
        Rows of the store: ``store.paths[indices]`` are the neighbours.
    distances : ndarray of float32 of shape (n_queries, k)
        Cosine distances, ``1 - cos`` (0: the same direction), in ``[0, 2]``,
        increasing along each row.
    paths : ndarray of str of shape (n_queries, k)
        The stored images' paths.
    labels : ndarray of shape (n_queries, k) or None
        Their labels; ``None`` when the store holds none.
    failed : list of (str, str)
        ``(path, reason)`` of query images that could not be read (only with
        a transformer of ``on_error="skip"``; by default an unreadable query
        image raises :class:`~skbottleneck.ImageError`).
    method : {"in_memory", "streaming"}
        How the search ran.
    n_chunks : int
        Reads of the store's features: 1 in memory, one per chunk streaming.
    """

    queries: object
    indices: np.ndarray
    distances: np.ndarray
    paths: np.ndarray
    labels: object
    failed: list = field(default_factory=list)
    method: str = "streaming"
    n_chunks: int = 0

    def to_records(self):
        """One dict per (query, neighbour): ``query, rank, distance, row, path, label``.

        Plain Python values (``rank`` from 1), ready for ``json.dumps`` or a
        ``pandas.DataFrame``.

        Returns
        -------
        records : list of dict
        """
        records = []
        for q in range(self.indices.shape[0]):
            query = None if self.queries is None else str(self.queries[q])
            for r in range(self.indices.shape[1]):
                label = None if self.labels is None else self.labels[q, r]
                records.append({
                    "query": query, "rank": r + 1,
                    "distance": float(self.distances[q, r]),
                    "row": int(self.indices[q, r]),
                    "path": str(self.paths[q, r]),
                    "label": label.item() if hasattr(label, "item") else label,
                })
        return records


@validate_params(
    {
        "store": [str, os.PathLike, HasMethods(["read_rows"])],
        "images": ["array-like", str, os.PathLike],
        "k": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [None, Interval(Integral, 1, None, closed="left"), str],
        "in_memory": ["boolean", StrOptions({"auto"})],
        "transformer": [None, HasMethods(["fit", "extract"])],
        "weights": [None, str, os.PathLike],
    },
    prefer_skip_nested_validation=True,
)
def find_similar(store, images, k=5, *, chunk_size=None, in_memory="auto", transformer=None,
                 weights=None):
    """Find the ``k`` stored images nearest each query image, by cosine distance.

    Parameters
    ----------
    store : FeatureStore or str or path-like
        A store written by :meth:`CNNFeatureTransformer.extract` (a path is
        opened and closed again). With augmented views, only view 0 of each
        image (the image itself) is searched: an image is found once, never
        through one of its crops.
    images : str, path-like, sequence of those, or array of shape (n_queries, n_features)
        The query images; or their features, computed by the store's model.
    k : int, default=5
        Neighbours per query (fewer when the store holds fewer images).
    chunk_size : int or str, default=None
        Rows read at a time when streaming: a number of rows, or a memory
        budget such as ``"16MiB"`` (:func:`~skbottleneck.chunks.chunk_rows`).
        None: ``"auto"``, 1,024 rows or 64 MiB, whichever is fewer.
    in_memory : bool or "auto", default="auto"
        True: read the stored features into memory and search them with
        ``NearestNeighbors(metric="cosine")``; False: stream over the store
        in chunks; ``"auto"``: in memory when the features take at most
        :data:`IN_MEMORY_MAX_BYTES` (256 MiB) as float32.
    transformer : CNNFeatureTransformer, default=None
        Computes the query images' features. None: the one that wrote the
        store, rebuilt from its metadata
        (:func:`~skbottleneck.extraction.transformer_from_store`). An
        unfitted transformer is fitted on the store; either way it must
        compute the store's features (else ``ValueError``).
    weights : str or path-like, default=None
        The weights file the store was extracted with, when it was a file
        (the store records only its checksum); ignored with ``transformer``.

    Returns
    -------
    result : SimilarityResult
        Per query: store rows, cosine distances, paths and labels, nearest first.

    Raises
    ------
    ImageError
        A query image cannot be read (the message names it).
    FileNotFoundError
        No store at ``store``.
    ValueError
        Query features of another width than the store's (or a 1-D array),
        a transformer of another model than the store's, or a
        ``chunk_size`` that is neither rows nor a size in bytes.

    See Also
    --------
    sklearn.neighbors.NearestNeighbors : the in-memory search.

    Examples
    --------
    A crop of a photo finds the photo it was cut from:

    >>> import skimage.data
    >>> from PIL import Image
    >>> from skbottleneck import CNNFeatureTransformer, find_similar
    >>> names = ["astronaut", "chelsea", "coffee", "rocket"]
    >>> paths = [str(tmp_dir / f"{name}.jpg") for name in names]
    >>> for name, path in zip(names, paths):
    ...     Image.fromarray(getattr(skimage.data, name)()).resize((96, 96)).save(path)
    >>> cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=96)
    >>> _ = cnn.extract(paths, names, store=tmp_dir / "photos.h5")
    >>> crop = Image.fromarray(skimage.data.chelsea()).crop((45, 30, 405, 270))
    >>> crop.save(tmp_dir / "crop.jpg")
    >>> result = find_similar(tmp_dir / "photos.h5", tmp_dir / "crop.jpg", k=3)
    >>> result.labels.tolist()
    [['chelsea', ...]]
    >>> bool(result.paths[0, 0] == paths[1]), result.distances.shape, result.method
    (True, (1, 3), 'in_memory')
    """
    from .store import open_rows

    opened = not is_row_source(store)
    if opened:
        store = open_rows(store)
    try:
        size = chunk_rows("auto" if chunk_size is None else chunk_size, store.n_features * 4)
        queries, Q, failed = _query_features(store, images, transformer, weights)
        n_views = int(getattr(store, "n_views", 1) or 1)
        rows = np.arange(len(store) // n_views, dtype=np.int64) * n_views  # view 0 of each image
        k = min(k, len(rows))
        if in_memory == "auto":
            in_memory = len(rows) * store.n_features * 4 <= IN_MEMORY_MAX_BYTES
        if len(Q) == 0 or k == 0:
            indices, distances, n_chunks = (np.zeros((len(Q), 0), np.int64),
                                            np.zeros((len(Q), 0), np.float32), 0)
        elif in_memory:
            indices, distances = _search_in_memory(store, rows, Q, k)
            n_chunks = 1
        else:
            indices, distances, n_chunks = _search_streaming(store, rows, Q, k, size)
        stored_labels = store.labels
        return SimilarityResult(
            queries=queries, indices=indices, distances=distances,
            paths=_row_names(store)[indices],
            labels=None if stored_labels is None else np.asarray(stored_labels)[indices],
            failed=failed, method="in_memory" if in_memory else "streaming",
            n_chunks=n_chunks)
    finally:
        if opened and hasattr(store, "close"):  # an array opened as rows has nothing to close
            store.close()


def _row_names(store):
    """The image path of each stored row, or its row number when the source has no paths."""
    paths = getattr(store, "paths", None)
    return np.arange(len(store)).astype(str) if paths is None else np.asarray(paths)


def _query_features(store, images, transformer, weights):
    """``(query paths or None, features (n, n_features) float32, failed)``."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    try:
        kind, ndim = (lambda a: (a.dtype.kind, a.ndim))(np.asarray(images))
    except (TypeError, ValueError):  # ragged: not features
        kind, ndim = "O", 1
    if ndim == 2 and kind in "fiu":  # features, not paths
        Q = np.asarray(images, dtype=np.float32)
        if Q.shape[1] != store.n_features:
            raise ValueError(f"find_similar got query features of {Q.shape[1]} columns; the "
                             f"store {getattr(store, 'path', '')} holds {store.n_features}.")
        return None, Q, []
    if ndim == 1 and kind in "fiu":
        raise ValueError("find_similar got a 1-D array of numbers; give query features as a 2-D "
                         "array of shape (n_queries, n_features) (one query: "
                         "features.reshape(1, -1)), or image paths.")
    paths = check_paths(images, owner="find_similar")
    transformer = _transformer_for(store, transformer, weights)
    result = transformer.extract(paths)
    kept = np.arange(len(paths)) if result.kept is None else np.asarray(result.kept)
    Q = np.asarray(result.features, dtype=np.float32)
    if len(kept) == 0:  # none could be read (on_error="skip")
        Q = np.zeros((0, store.n_features), dtype=np.float32)
    return np.asarray([os.fspath(p) for p in paths[kept]], dtype=str), Q, list(result.failed)


def _transformer_for(store, transformer, weights):
    """The transformer of the query images, fitted and checked against ``store``."""
    from .extraction import transformer_from_store
    from .extraction._fingerprint import check_store

    if transformer is None:
        transformer = transformer_from_store(store, weights=weights)
    if hasattr(transformer, "fingerprint_"):
        check_store(store, transformer.fingerprint_)
    else:
        transformer.fit(store)  # builds the CNN; refuses a store of another model
    return transformer


def _unit_rows(X):
    """``X`` with rows scaled to unit norm, in place (zero rows stay zero)."""
    from sklearn.preprocessing import normalize

    return normalize(X, copy=False)


def _cosine_distances(Q_unit, X_unit):
    """``1 - cos`` clipped to ``[0, 2]``, as scikit-learn's ``cosine_distances``."""
    D = Q_unit @ X_unit.T
    D *= -1
    D += 1
    return np.clip(D, 0, 2, out=D)


def _sorted(distances, rows):
    """Each row's columns ordered by (distance, store row)."""
    order = np.lexsort((rows, distances), axis=-1)
    return (np.take_along_axis(rows, order, axis=1),
            np.take_along_axis(distances, order, axis=1))


def _search_in_memory(store, rows, Q, k):
    from sklearn.neighbors import NearestNeighbors

    X = store.read_rows(rows, dtype=np.float32)[0]
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(X)
    distances, positions = nn.kneighbors(Q)
    return _sorted(distances.astype(np.float32, copy=False), rows[positions])


def _search_streaming(store, rows, Q, k, size):
    """Running top-``k`` over chunks of ``size`` rows: ``(indices, distances, n_chunks)``."""
    Q_unit = _unit_rows(Q.copy())
    best_rows = np.zeros((len(Q), 0), dtype=np.int64)
    best = np.zeros((len(Q), 0), dtype=np.float32)
    n_chunks = 0
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        X_unit = _unit_rows(store.read_rows(chunk, dtype=np.float32)[0])
        n_chunks += 1
        distances = np.concatenate([best, _cosine_distances(Q_unit, X_unit)], axis=1)
        candidates = np.concatenate([best_rows, np.broadcast_to(chunk, (len(Q), len(chunk)))],
                                    axis=1)
        candidates, distances = _sorted(distances, candidates)
        best_rows, best = candidates[:, :k].copy(), distances[:, :k].copy()
        del X_unit, distances, candidates  # before the next chunk is read
    return best_rows, best, n_chunks
