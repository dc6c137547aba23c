"""Content-keyed, crash-safe on-disk cache of CNN features.

:class:`FeatureCache` remembers the features of every image ever extracted,
under a key of the image file's *content* (:func:`file_key`), one folder
per model fingerprint (:func:`fingerprint_id`) under the cache root
(:func:`get_cache_dir`); :func:`cache_info` and :func:`clear_cache` look
after the root. The layout, and why a kill at any moment cannot leave an
unreadable cache, are described in :mod:`skbottleneck.store`, which
re-exports these names. Each row is stored with a checksum verified
whenever it is read: a shard whose bytes changed is quarantined and its
rows computed again, never served.

Modules, in the order a feature vector travels:

* ``_fileio``: atomic writes, positional I/O, preallocated HDF5 datasets,
  the format errors and warnings (shared with :mod:`skbottleneck.store`);
* ``_keys``: content keys of files, fingerprint ids, the cache root;
* ``_format``: schema names, format version, shard names;
* ``_checksums``: the checksum of each row, verified on every read;
* ``_shards``: building, validating and reading one shard file;
* ``_index``: the in-memory index ``key -> (shard, row)`` of a folder;
* ``_feature_cache``: :class:`FeatureCache` (look up, read, write);
* ``_compaction``: merging small shards;
* ``_housekeeping``: :func:`cache_info`, :func:`clear_cache`.
"""

from ._feature_cache import FeatureCache
from ._format import CACHE_FORMAT_VERSION, CACHE_SCHEMA, SHARD_SCHEMA
from ._housekeeping import cache_info, clear_cache
from ._keys import (
    content_key,
    file_key,
    file_keys,
    fingerprint_id,
    get_cache_dir,
    known_file_key,
    remember_file_key,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CACHE_SCHEMA",
    "SHARD_SCHEMA",
    "FeatureCache",
    "cache_info",
    "clear_cache",
    "content_key",
    "file_key",
    "file_keys",
    "fingerprint_id",
    "get_cache_dir",
    "known_file_key",
    "remember_file_key",
]
