"""An approximate index of a store's rows, kept beside the store (faiss).

:func:`build_index` reads the store out of core -- a sample of rows to
train the index, then every image's row chunk by chunk -- into a faiss
index (by default IVF + 4-bit product quantisation: ``d / 8`` bytes or
fewer per image instead of ``2 d`` or ``4 d``, so a million 1,280-dim
rows take ~130 MiB), cosine distance as the inner product of unit rows. It is saved
in a folder beside the store, ``features.h5.index/``::

    features.h5.index/
      meta.json              what the index covers: the store's identity, the
                             rows indexed, the faiss factory string, nprobe
      index-<hex>.faiss      the faiss index named by meta.json

Both are written atomically (temporary name, fsync, rename; ``meta.json``
last): a reader sees the old index or the new one, never half of one.

The identity of the store (``meta.json``): its model fingerprint, width,
storage dtype and views, and digests of what the indexed rows hold -- the
SHA-256 of their paths and content keys, and of a sample of 64 of their
feature rows. A store whose indexed rows changed is refused
(:class:`StaleIndexError`); a store that only gained rows at its end
(extracted again with more images: the cache makes the old ones free) is
*appended to*: :func:`build_index` adds only the new rows, and until then
:func:`~skbottleneck.find_similar` scans the new rows exactly.
"""

import datetime
import hashlib
import json
import os
import secrets
from dataclasses import dataclass

import numpy as np

from ..fileio import fsync_dir, remove_stale_tmp, unlink_quietly, write_file_atomic
from ..chunks import chunk_rows

__all__ = ["INDEX_SCHEMA", "SimilarityIndex", "StaleIndexError", "build_index", "index_path",
           "load_index"]

INDEX_SCHEMA = "skbottleneck.similarity_index"
INDEX_FORMAT_VERSION = 1
#: Below this many images ``factory="auto"`` keeps exact vectors (``"Flat"``):
#: product quantisation needs ~10,000 rows to train its 256 centroids.
SMALL_STORE = 20_000
_N_SAMPLED_ROWS = 64  # feature rows hashed into the identity


class StaleIndexError(ValueError):
    """The index beside a store was built for other rows than the store now holds."""


def index_path(store):
    """The index folder of ``store``: ``<store path>.index``."""
    return os.fspath(getattr(store, "path", store)) + ".index"


def _pq_parts(d):
    """Sub-vectors of the 4-bit product quantiser: an even divisor of ``d``, ~``d / 4``, <= 256."""
    target = min(256, d // 4)
    return max([m for m in range(2, target + 1, 2) if d % m == 0], default=0)


def auto_factory(n_images, n_features):
    """The faiss factory string ``factory="auto"`` picks for a store of this size.

    ``"Flat"`` (exact) under :data:`SMALL_STORE` images; else
    ``"IVF{nlist},PQ{m}x4fs"``: ``nlist`` the power of two nearest
    ``sqrt(n_images)``; a 4-bit product quantiser with fast scan, ``m``
    sub-vectors of ~4 dimensions (at most 256: ``m / 2`` bytes per image).
    4 bits rather than faiss's usual 8 because training 256 centroids per
    sub-vector took minutes on a 2-core laptop where 16 take seconds, and
    the candidates are re-ranked exactly anyway
    (``benchmarks/results/bench_similarity.md``).

    Examples
    --------
    >>> auto_factory(1_000_000, 1280), auto_factory(100_000, 512), auto_factory(500, 512)
    ('IVF1024,PQ256x4fs', 'IVF256,PQ128x4fs', 'Flat')
    """
    m = _pq_parts(n_features)
    if n_images < SMALL_STORE or m == 0:
        return "Flat"
    nlist = 1 << int(round(np.log2(np.sqrt(n_images))))
    return f"IVF{nlist},PQ{m}x4fs"


@dataclass
class SimilarityIndex:
    """A faiss index of a store's images (view 0 of each), loaded from beside the store.

    Attributes
    ----------
    path : str
        The index folder (``<store>.index``).
    index : faiss.Index
        Unit rows, inner product; faiss id ``i`` is image ``i`` (store row
        ``i * n_views``).
    meta : dict
        ``meta.json``: the store identity, ``n_images`` indexed, ``factory``,
        ``nprobe``.
    n_new_images : int
        Images the store holds beyond those indexed (appended since).
    n_added : int
        Images the call that returned this index added to it
        (:func:`build_index`; 0 when it was up to date, or loaded).
    """

    path: str
    index: object
    meta: dict
    n_new_images: int = 0
    n_added: int = 0

    @property
    def n_images(self):
        """Images indexed."""
        return int(self.meta["n_images"])

    def search(self, Q_unit, n_candidates, nprobe=None):
        """Image positions (int64, ``(n_queries, n)``) of the nearest candidates; -1 pads."""
        import faiss

        n_candidates = min(n_candidates, self.n_images)
        ivf = faiss.try_extract_index_ivf(self.index) if "IVF" in self.meta["factory"] else None
        if ivf is not None:
            ivf.nprobe = int(nprobe or self.meta["nprobe"])
        _, positions = self.index.search(np.ascontiguousarray(Q_unit, dtype=np.float32),
                                         n_candidates)
        return positions.astype(np.int64, copy=False)


def _identity(store, n_images):
    """What the first ``n_images`` images of ``store`` are: model, width, digests of their rows."""
    meta = store.metadata
    n_views = int(getattr(store, "n_views", 1) or 1)
    n_rows = n_images * n_views
    h = hashlib.sha256(f"{n_rows}\0".encode())
    for p in np.asarray(store.paths)[:n_rows]:
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\0")
    keys = store.keys
    if keys is not None:
        for key in keys[:n_rows]:
            h.update(bytes(key))
    sampled = np.unique(np.linspace(0, n_rows - 1, _N_SAMPLED_ROWS).astype(np.int64)) if n_rows \
        else np.zeros(0, np.int64)
    sample = store.read_rows(sampled, dtype=store.dtype)[0] if len(sampled) else np.zeros(0)
    return {
        "fingerprint": str(meta.get("fingerprint", meta.get("metadata_sha256", ""))),
        "n_features": int(store.n_features),
        "storage_dtype": str(np.dtype(store.dtype)),
        "n_views": n_views,
        "rows_sha256": h.hexdigest(),
        "sample_sha256": hashlib.sha256(np.ascontiguousarray(sample).tobytes()).hexdigest(),
    }


def _read_meta(folder):
    try:
        with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StaleIndexError(f"The index {folder} cannot be read ({e}); build it again with "
                              f"`skbottleneck index STORE --rebuild`.") from e
    if meta.get("schema") != INDEX_SCHEMA or meta.get("format_version") != INDEX_FORMAT_VERSION:
        raise StaleIndexError(
            f"{folder} is not a skbottleneck similarity index of format version "
            f"{INDEX_FORMAT_VERSION} (schema {meta.get('schema')!r}, version "
            f"{meta.get('format_version')!r}); build it again with --rebuild.")
    return meta


def _check_same_rows(store, meta, folder):
    """Raise :class:`StaleIndexError` unless ``store`` starts with the rows ``meta`` indexed;
    return the number of images appended since."""
    n_views = int(getattr(store, "n_views", 1) or 1)
    n_images = len(store) // n_views
    indexed = int(meta["n_images"])
    where = f"The index {folder} was built for {indexed} images of {meta.get('store')}"
    fix = ("; build it again: `skbottleneck index STORE --rebuild` (or build_index(store, "
           "rebuild=True)), or search without it (exact=True).")
    if n_images < indexed:
        raise StaleIndexError(f"{where}; the store now holds {n_images}{fix}")
    ours = _identity(store, indexed)
    changed = [k for k, v in ours.items() if meta["identity"].get(k) != v]
    if changed:
        what = {"fingerprint": "another model", "n_features": "another width",
                "storage_dtype": "another storage dtype", "n_views": "another number of views",
                "rows_sha256": "other paths or image contents in the indexed rows",
                "sample_sha256": "other features in the indexed rows"}
        raise StaleIndexError(f"{where}; the store changed since: "
                              f"{', '.join(what[k] for k in changed)}{fix}")
    return n_images - indexed


def load_index(store):
    """The index beside ``store``, checked against it; ``None`` when there is none.

    Parameters
    ----------
    store : FeatureStore
        Anything else (a :class:`~skbottleneck.store.StoreSubset`...) has
        no index: ``None``.

    Returns
    -------
    index : SimilarityIndex or None

    Raises
    ------
    StaleIndexError
        The store's indexed rows changed since the index was built (another
        model, other images, other features, fewer rows), or the index
        folder is unreadable.
    """
    import faiss

    from ..store import FeatureStore

    if not isinstance(store, FeatureStore):  # a subset or another source: its rows are not
        return None  # those of the file the index stands beside
    folder = index_path(store)
    meta = _read_meta(folder)
    if meta is None:
        return None
    n_new = _check_same_rows(store, meta, folder)
    file = os.path.join(folder, meta["index_file"])
    try:
        index = faiss.read_index(file)
    except RuntimeError as e:
        raise StaleIndexError(f"The index file {file} cannot be read ({e}); build the index "
                              "again with `skbottleneck index STORE --rebuild`.") from e
    if index.ntotal != int(meta["n_images"]):
        raise StaleIndexError(f"The index file {file} holds {index.ntotal} images; its "
                              f"meta.json says {meta['n_images']}: build it again (--rebuild).")
    return SimilarityIndex(folder, index, meta, n_new)


def _unit(X):
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    np.maximum(norms, 1e-30, out=norms)
    X /= norms
    return X


def _train(store, index, n_images, n_views, sample_size, random_state, verbose):
    if index.is_trained:
        return
    rng = np.random.default_rng(random_state)
    positions = np.sort(rng.choice(n_images, size=min(n_images, sample_size), replace=False))
    sample = _unit(store.read_rows(positions * n_views, dtype=np.float32)[0])
    if verbose:
        print(f"[skbottleneck] training the index on {len(sample)} rows", flush=True)
    # One OpenMP thread: faiss trains the product quantiser's many small k-means in
    # parallel, which on a busy 2-core machine took 10x longer than one thread.
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.train(sample)
    finally:
        faiss.omp_set_num_threads(threads)


def build_index(store, *, factory="auto", nprobe=None, sample_size=65536, chunk_size="64MiB",
                rebuild=False, random_state=0, verbose=False):
    """Build the approximate index of a store's images, or add the images appended since.

    Out of core: trained on ``sample_size`` rows drawn at random, then
    filled chunk by chunk; memory holds the sample or one chunk, plus the
    (compressed) index. Saved beside the store (:func:`index_path`).

    Parameters
    ----------
    store : FeatureStore or str or path-like
        Its images (view 0 of each, with augmented views) are indexed.
    factory : str, default="auto"
        A faiss ``index_factory`` string, e.g. ``"IVF1024,PQ64x8"``,
        ``"OPQ64,IVF1024,PQ64x8"``, ``"HNSW32,Flat"``, ``"Flat"`` (exact).
        ``"auto"``: :func:`auto_factory` (``"Flat"`` under 20,000 images;
        IVF with ~sqrt(n) lists + PQ of ~d/8 bytes above).
    nprobe : int, default=None
        IVF lists searched per query (recorded; a search may override it).
        None: ``max(8, nlist // 32)``.
    sample_size : int, default=65536
        Rows the index is trained on.
    chunk_size : int or str, default="64MiB"
        Rows read at a time while filling (rows, or a memory budget).
    rebuild : bool, default=False
        Build from scratch even when an index exists. Without it, an index
        of a store that only gained rows is appended to, an up-to-date one
        is left alone, and a stale one raises :class:`StaleIndexError`.
    random_state : int, default=0
        Seed of the training sample and of faiss's k-means.
    verbose : bool, default=False
        Say what is done, on stdout.

    Returns
    -------
    index : SimilarityIndex

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck import build_index
    >>> from skbottleneck.store import StoreWriter
    >>> X = np.random.default_rng(0).random((300, 64), dtype=np.float32)
    >>> w = StoreWriter(tmp_dir / "f.h5", paths=[f"{i}.jpg" for i in range(300)], n_features=64)
    >>> w.write_rows(np.arange(300), X); store = w.finalize()
    >>> index = build_index(store, factory="IVF4,Flat")
    >>> index.n_images, index.meta["factory"], sorted(os.listdir(index.path))[1]
    (300, 'IVF4,Flat', 'meta.json')
    """
    import faiss

    from ..store import FeatureStore

    opened = not hasattr(store, "read_rows")
    if opened:
        store = FeatureStore(store)
    try:
        folder = index_path(store)
        n_views = int(getattr(store, "n_views", 1) or 1)
        n_images = len(store) // n_views
        existing = None if rebuild else load_index(store)
        if existing is not None and existing.n_new_images == 0:
            return existing
        if existing is not None:
            index, meta, start = existing.index, dict(existing.meta), existing.n_images
        else:
            if n_images == 0:
                raise ValueError(f"The store {store.path} holds no rows to index.")
            spec = auto_factory(n_images, store.n_features) if factory == "auto" else factory
            try:
                index = faiss.index_factory(store.n_features, spec, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as e:
                raise ValueError(f"faiss cannot make an index of {spec!r} for "
                                 f"{store.n_features} features: {e}") from e
            ivf = faiss.try_extract_index_ivf(index) if "IVF" in spec else None
            if ivf is not None:
                ivf.cp.seed = int(random_state)
            meta = {"schema": INDEX_SCHEMA, "format_version": INDEX_FORMAT_VERSION,
                    "factory": spec, "metric": "cosine",
                    "nprobe": int(nprobe or (max(8, ivf.nlist // 32) if ivf is not None else 1))}
            start = 0
            _train(store, index, n_images, n_views, sample_size, random_state, verbose)
        size = chunk_rows(chunk_size, store.n_features * 4)
        for first in range(start, n_images, size):
            positions = np.arange(first, min(n_images, first + size))
            index.add(_unit(store.read_rows(positions * n_views, dtype=np.float32)[0]))
            if verbose:
                print(f"[skbottleneck] indexed {positions[-1] + 1} of {n_images} images",
                      flush=True)
        meta.update(store=store.path, n_images=n_images, identity=_identity(store, n_images),
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    faiss_version=faiss.__version__)
        _save(folder, index, meta)
        return SimilarityIndex(folder, index, meta, 0, n_images - start)
    finally:
        if opened:
            store.close()


def _save(folder, index, meta):
    """Write the index file under a new name, then ``meta.json`` naming it, then the old one goes."""
    import faiss

    os.makedirs(folder, exist_ok=True)
    remove_stale_tmp(folder)  # what a killed build left
    name = f"index-{secrets.token_hex(6)}.faiss"
    write_file_atomic(os.path.join(folder, name), faiss.serialize_index(index))
    meta["index_file"] = name
    write_file_atomic(os.path.join(folder, "meta.json"),
                       json.dumps(meta, indent=2, sort_keys=True).encode())
    for other in os.listdir(folder):  # the index files meta.json no longer names
        if other.startswith("index-") and other.endswith(".faiss") and other != name:
            unlink_quietly(os.path.join(folder, other))
    fsync_dir(folder)
