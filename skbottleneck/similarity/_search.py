"""Image similarity search: the stored images nearest a query image, by cosine distance.

:func:`find_similar` turns the query images into features with the
transformer the store was written with (rebuilt from the store's metadata,
:func:`~skbottleneck.extraction.transformer_from_store`; the feature cache
makes a query image already seen free), then finds the ``k`` stored images
nearest each one by cosine distance, ``1 - cos``:

- *from the index* beside the store (:func:`~skbottleneck.build_index`),
  when there is one: it proposes ``n_candidates`` images per query, whose
  exact stored vectors are read (``read_rows``) and ranked again exactly;
  images appended to the store since the index was built are scanned
  exactly and merged in;
- *in memory* (``exact=True``, or no index), with scikit-learn's
  ``NearestNeighbors(metric="cosine")``, when the stored features fit in
  :data:`IN_MEMORY_MAX_BYTES`;
- *streaming* otherwise: the store is read one chunk of rows at a time,
  each chunk's cosine distances to the queries are computed and merged into
  a running top-``k``; memory holds one chunk, its distances to the queries
  and the ``k`` best so far -- ``O(chunk_size * (n_features + n_queries))``,
  whatever the size of the store.

The exact searches give the same neighbours in the same order, ties (equal
distances, as between copies of one image) ordered by store row. (One
exception: when exactly tied rows straddle the ``k``-th place,
``NearestNeighbors`` may keep another of them than the streaming search,
which keeps the lowest rows.) The index gives the exact distances of the
neighbours it finds; it may miss some (recall@10 0.999 at 100,000
synthetic rows with 100 candidates, 1.000 at a million with 1,000 -- 100
gave 0.60 there: ``benchmarks/results/bench_similarity.md``).

The search itself (:func:`nearest_rows`) takes query features, so that
other ways of making queries (text, feature files) reuse it.
"""

import os
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params

from ..chunks import chunk_rows, is_row_source, nonfinite_message
from ..utils import check_paths

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
    method : {"index", "in_memory", "streaming"}
        How the search ran: from the index beside the store, or exactly.
    n_chunks : int
        Reads of the store's features: 1 in memory, one per chunk streaming,
        one per batch of queries re-ranked from the index.
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
        "images": ["array-like", str, os.PathLike, None],
        "k": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [None, Interval(Integral, 1, None, closed="left"), str],
        "in_memory": ["boolean", StrOptions({"auto"})],
        "transformer": [None, HasMethods(["fit", "extract"])],
        "weights": [None, str, os.PathLike],
        "exact": ["boolean"],
        "n_candidates": [None, Interval(Integral, 1, None, closed="left")],
        "text": [None, str, "array-like"],
    },
    prefer_skip_nested_validation=True,
)
def find_similar(store, images=None, k=5, *, chunk_size=None, in_memory="auto", transformer=None,
                 weights=None, exact=False, n_candidates=None, text=None):
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
        Give either ``images`` or ``text``.
    k : int, default=5
        Neighbours per query (fewer when the store holds fewer images).
    chunk_size : int or str, default=None
        Rows read at a time when streaming: a number of rows, or a memory
        budget such as ``"16MiB"`` (:func:`~skbottleneck.chunks.chunk_rows`).
        None: ``"auto"``, 1,024 rows or 64 MiB, whichever is fewer.
    in_memory : bool or "auto", default="auto"
        How an exact search runs (``exact=True``, no index, or the images
        appended since the index was built). True: read the stored features
        into memory and search them with ``NearestNeighbors(metric="cosine")``;
        False: stream over the store in chunks; ``"auto"``: in memory when
        the features take at most :data:`IN_MEMORY_MAX_BYTES` (256 MiB) as
        float32.
    transformer : CNNFeatureTransformer, default=None
        Computes the query images' features. None: the one that wrote the
        store, rebuilt from its metadata
        (:func:`~skbottleneck.extraction.transformer_from_store`). An
        unfitted transformer is fitted on the store; either way it must
        compute the store's features (else ``ValueError``).
    weights : str or path-like, default=None
        The weights file the store was extracted with, when it was a file
        (the store records only its checksum); ignored with ``transformer``.
    exact : bool, default=False
        True: scan every stored image, even when an index exists beside the
        store. False: use the index when there is one
        (:func:`~skbottleneck.build_index`).
    n_candidates : int, default=None
        With an index: images it proposes per query, re-ranked with their
        exact stored vectors. None: ``max(100, 10 * k, min(2000, n_images // 1000))``:
        100 at 100,000 images (recall@10 0.999 measured), 1,000 at a million
        (recall@10 1.000, where 100 gave 0.60).
    text : str or sequence of str, default=None
        Text queries (``"a red bicycle"``), for a store of an image-text
        model's features (a CLIP or SigLIP keras-hub preset, ``pooling="cls"``):
        each text becomes a query vector in the image space through the
        preset's text encoder (:class:`~skbottleneck.backbones.TextEncoder`),
        then the search is the same. A store of another feature space is
        refused (``ValueError``).

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
    StaleIndexError
        The index beside the store was built for other rows than it holds
        now (build it again, or pass ``exact=True``).
    ValueError
        Query features of another width than the store's (or a 1-D array),
        a transformer of another model than the store's, or a
        ``chunk_size`` that is neither rows nor a size in bytes.

    See Also
    --------
    sklearn.neighbors.NearestNeighbors : the in-memory search.
    build_index : the approximate index ``find_similar`` uses when it exists.

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
    from ..store import open_rows

    opened = not is_row_source(store)
    if opened:
        store = open_rows(store)
    try:
        if (images is None) == (text is None):
            raise ValueError("find_similar needs either images or text=, not both and not "
                             "neither.")
        if text is not None:
            queries, Q, failed = _text_features(store, text)
        else:
            queries, Q, failed = _query_features(store, images, transformer, weights)
        try:
            indices, distances, method, n_chunks = nearest_rows(
                store, Q, k, chunk_size=chunk_size, in_memory=in_memory, exact=exact,
                n_candidates=n_candidates)
        except ValueError as e:  # sklearn's "Input contains NaN": name the store's rows
            message = nonfinite_message(store, owner="find_similar")
            if message is None:
                raise
            raise ValueError(message) from e
        stored_labels = store.labels
        return SimilarityResult(
            queries=queries, indices=indices, distances=distances,
            paths=_row_names(store)[indices],
            labels=None if stored_labels is None else np.asarray(stored_labels)[indices],
            failed=failed, method=method, n_chunks=n_chunks)
    finally:
        if opened and hasattr(store, "close"):  # an array opened as rows has nothing to close
            store.close()


def nearest_rows(store, Q, k, *, chunk_size=None, in_memory="auto", exact=False,
                 n_candidates=None):
    """The ``k`` stored images nearest each row of the query features ``Q``.

    The search of :func:`find_similar` once the queries are features:
    from the index beside ``store`` unless ``exact`` or there is none, else
    exact (in memory or streamed). Returns ``(indices, distances, method,
    n_chunks)`` as the fields of :class:`SimilarityResult`.
    """
    from ._index import load_index

    size = chunk_rows("auto" if chunk_size is None else chunk_size, store.n_features * 4)
    n_views = int(getattr(store, "n_views", 1) or 1)
    rows = np.arange(len(store) // n_views, dtype=np.int64) * n_views  # view 0 of each image
    k = min(k, len(rows))
    index = None if exact else load_index(store)
    if len(Q) == 0 or k == 0:
        return np.zeros((len(Q), 0), np.int64), np.zeros((len(Q), 0), np.float32), "streaming", 0
    if index is not None:
        n_candidates = n_candidates or max(100, 10 * k, min(2000, index.n_images // 1000))
        indices, distances, n_chunks = _search_index(store, index, Q, k, n_candidates)
        short = np.flatnonzero(np.any(indices < 0, axis=1))  # fewer candidates than k: rare
        if len(short):
            part = _search_exact(store, rows[:index.n_images], Q[short], k, in_memory, size)
            indices[short], distances[short] = part[0], part[1]
            n_chunks += part[2]
        new_rows = rows[index.n_images:]  # appended since the index was built
        if len(new_rows):
            extra = _search_exact(store, new_rows, Q, min(k, len(new_rows)), in_memory, size)
            indices, distances = _sorted(np.concatenate([distances, extra[1]], axis=1),
                                         np.concatenate([indices, extra[0]], axis=1))
            indices, distances, n_chunks = indices[:, :k], distances[:, :k], n_chunks + extra[2]
        return indices, distances, "index", n_chunks
    if in_memory == "auto":
        in_memory = len(rows) * store.n_features * 4 <= IN_MEMORY_MAX_BYTES
    indices, distances, n_chunks = _search_exact(store, rows, Q, k, in_memory, size)
    return indices, distances, "in_memory" if in_memory else "streaming", n_chunks


def _search_exact(store, rows, Q, k, in_memory, size):
    """Exact top-``k`` among ``rows``: ``(indices, distances, n_chunks)``."""
    if in_memory == "auto":
        in_memory = len(rows) * store.n_features * 4 <= IN_MEMORY_MAX_BYTES
    if in_memory:
        return (*_search_in_memory(store, rows, Q, k), 1)
    return _search_streaming(store, rows, Q, k, size)


#: Queries whose candidates are read and re-ranked together (bounds the memory
#: of the re-ranking: QUERY_BATCH * n_candidates * n_features floats).
QUERY_BATCH = 64


def _search_index(store, index, Q, k, n_candidates):
    """Candidates from ``index``, re-ranked with the exact stored vectors."""
    n_views = int(getattr(store, "n_views", 1) or 1)
    Q_unit = _unit_rows(Q.copy())
    positions = index.search(Q_unit, n_candidates)
    k = min(k, positions.shape[1])
    out_rows = np.zeros((len(Q), k), np.int64)
    out = np.zeros((len(Q), k), np.float32)
    n_reads = 0
    for start in range(0, len(Q), QUERY_BATCH):
        part = positions[start:start + QUERY_BATCH]
        valid = part >= 0
        unique, inverse = np.unique(part[valid], return_inverse=True)
        X_unit = _unit_rows(store.read_rows(unique * n_views, dtype=np.float32)[0])
        n_reads += 1
        slots = np.zeros(part.shape, np.int64)
        slots[valid] = inverse
        cos = np.einsum("qcd,qd->qc", X_unit[slots], Q_unit[start:start + QUERY_BATCH])
        distances = np.clip(1 - cos, 0, 2).astype(np.float32)
        distances[~valid] = np.inf
        rows, distances = _sorted(distances, np.where(valid, part * n_views, -1))
        out_rows[start:start + QUERY_BATCH] = rows[:, :k]
        out[start:start + QUERY_BATCH] = distances[:, :k]
    return out_rows, out, n_reads


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


def _text_features(store, text):
    """``(query texts, their embeddings in the store's image space, [])``."""
    from ..backbones._text import text_encoder_for_store

    texts = [text] if isinstance(text, str) else [str(t) for t in text]
    fingerprint = (getattr(store, "metadata", {}) or {}).get("fingerprint")
    if fingerprint is None:
        raise ValueError(f"The feature store {getattr(store, 'path', store)} records no model; "
                         "text search needs one of an image-text model.")
    encoder = text_encoder_for_store(fingerprint, where=str(getattr(store, "path", "the store")))
    return np.asarray(texts, dtype=str), encoder.encode(texts), []


def _transformer_for(store, transformer, weights):
    """The transformer of the query images, fitted and checked against ``store``."""
    from ..extraction import transformer_from_store
    from ..extraction._fingerprint import check_store

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
