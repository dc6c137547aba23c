"""Content-keyed, crash-safe on-disk cache of CNN features.

:class:`FeatureCache` remembers the features of every image ever extracted,
under a key of the image file's *content* (:func:`file_key`), one folder
per model fingerprint (:func:`fingerprint_id`) under the cache root
(:func:`get_cache_dir`); :func:`cache_info` and :func:`clear_cache` look
after the root (the feature folders and the converted OpenVINO models kept
there). Each row is stored with a checksum verified whenever it is read: a
shard whose bytes changed is quarantined and its rows computed again,
never served.

On-disk layout
--------------
::

    cache_dir/
      <fingerprint_id>/            16 hex digits, see fingerprint_id()
        fingerprint.json           the fingerprint dict, storage dtype,
                                   metadata (written atomically)
        compact.lock               taken by the process compacting
        shards/
          <time_ns:016x>-<pid>-<rand:08x>.h5   immutable shards
          .tmp-*                   being written (ignored; removed when stale)
        quarantine/                damaged shards, moved aside
      openvino/<model id>/         converted OpenVINO models, 32 hex digits
                                   (written by skbottleneck.extraction._openvino,
                                   which documents them; listed by
                                   converted_models_info, removed by
                                   clear_cache)

A shard holds root attributes ``schema="skbottleneck.cache_shard"``,
``format_version``, ``fingerprint_id``, ``n_features``, ``storage_dtype``,
``metadata_json`` and the library versions; a dataset ``keys`` (uint8,
``(n, key_length)``), a contiguous dataset ``features`` (``(n, d)``,
little-endian float16/32/64, uncompressed) and ``checksums`` (uint64,
``(n,)``, attribute ``algorithm="xxh3_64-key8"``: the XXH3-64 of each
row's bytes XOR the first 8 bytes of its key, verified on every read;
shards written by 0.1 have none and are read unverified).

Why a kill cannot leave anything unreadable
-------------------------------------------
* A shard is built in memory, written to ``shards/.tmp-...``, fsynced,
  then renamed (atomic) to its final name, and the folder is fsynced
  (:func:`skbottleneck.fileio.write_file_atomic`). Readers list only
  final names: a shard is complete or invisible. A kill loses at most the
  batch being written (its temporary file is ignored, and removed by a
  later :meth:`FeatureCache.compact`).
* :meth:`FeatureCache.compact` (one process at a time per folder:
  ``compact.lock``, a :class:`skbottleneck.fileio.FileLock`) writes a
  merged shard the same way and only then deletes its sources: a kill
  leaves duplicates (same features), which the next compaction drops.
  Readers that listed a deleted source look the keys up again. Several
  processes may write at once: names never collide, and a key written
  twice has the same features.
* A shard found damaged (truncated, garbage, a row whose checksum fails)
  is reported with a :class:`~skbottleneck.store.StoreWarning` naming it
  and moved to ``quarantine/``; its rows are treated as missing and
  computed again. A shard of another format version is ignored with a
  warning, never misread.

The cache keeps an in-memory index (key -> shard, row) per folder and
process; a look-up lists ``shards/`` only when its modification time
changed, and opens only the shards it has not seen.

Modules, in the order a feature vector travels:

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
from ._format import CACHE_FORMAT_VERSION, CACHE_SCHEMA, CONVERTED_MODELS_FOLDER, SHARD_SCHEMA
from ._housekeeping import cache_info, clear_cache, converted_models_info
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
    "CONVERTED_MODELS_FOLDER",
    "SHARD_SCHEMA",
    "FeatureCache",
    "cache_info",
    "clear_cache",
    "converted_models_info",
    "content_key",
    "file_key",
    "file_keys",
    "fingerprint_id",
    "get_cache_dir",
    "known_file_key",
    "remember_file_key",
]
