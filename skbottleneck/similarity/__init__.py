"""Similar images: the stored images nearest a query, an index beside a store, near-duplicates.

- :func:`find_similar` (``_search``): the ``k`` stored images nearest each
  query image by cosine distance -- from the approximate index beside the
  store when there is one (candidates re-ranked with the exact stored
  vectors), else by an exact scan, in memory or streamed in chunks.
- :func:`build_index` (``_index``): a faiss index of a store's rows, built
  out of core, kept beside the store with the store's identity, appended to
  when the store gains rows, refused (:class:`StaleIndexError`) when its
  rows changed.
- :func:`find_duplicates` (``_duplicates``): groups of near-identical images
  in a store, or the images of one store with a near-copy in another
  (train/test leakage).
"""

from ._duplicates import DEFAULT_THRESHOLD, Duplicates, find_duplicates
from ._index import SimilarityIndex, StaleIndexError, build_index, index_path, load_index
from ._search import IN_MEMORY_MAX_BYTES, SimilarityResult, find_similar, nearest_rows

__all__ = ["DEFAULT_THRESHOLD", "Duplicates", "IN_MEMORY_MAX_BYTES", "SimilarityIndex",
           "SimilarityResult", "StaleIndexError", "build_index", "find_duplicates", "find_similar",
           "index_path", "load_index", "nearest_rows"]
