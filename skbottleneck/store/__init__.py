"""On-disk features: a content-keyed cache and ordered dataset stores.

Two structures, both HDF5 (h5py), both safe against a kill at any moment
(``SIGKILL``, power loss with a journaling file system, Ctrl-C):

* :class:`FeatureCache` (defined in :mod:`skbottleneck.cache`) remembers
  the features of every image ever extracted, under a key of the image
  file's *content* (:func:`file_key`), one folder per model fingerprint.
* :class:`StoreWriter` writes, resumably, the features of one ordered list
  of images (a dataset) to one file; :class:`FeatureStore` reads it, in
  shuffled chunks for out-of-core training or by row indices, and
  :class:`StoreSubset` shows some of its rows (a training split) as a store.

On-disk layout
--------------
Cache (``cache_dir`` is :func:`get_cache_dir`)::

    cache_dir/
      <fingerprint_id>/            16 hex digits, see fingerprint_id()
        fingerprint.json           the fingerprint dict, storage dtype,
                                   metadata (written atomically)
        compact.lock               taken by the process compacting
        shards/
          <time_ns:016x>-<pid>-<rand:08x>.h5   immutable shards
          .tmp-*                   being written (ignored; removed when stale)
        quarantine/                damaged shards, moved aside

A shard holds root attributes ``schema="skbottleneck.cache_shard"``,
``format_version``, ``fingerprint_id``, ``n_features``, ``storage_dtype``,
``metadata_json`` and the library versions; a dataset ``keys`` (uint8,
``(n, key_length)``), a contiguous dataset ``features`` (``(n, d)``,
little-endian float16/32/64, uncompressed) and ``checksums`` (uint64,
``(n,)``, attribute ``algorithm="xxh3_64-key8"``: the XXH3-64 of each
row's bytes XOR the first 8 bytes of its key, verified on every read;
shards written by 0.1 have none and are read unverified).

Dataset store ``features.h5``::

    features.h5                    the finished store (appears at the end)
    features.h5.lock               while a writer is at work: locked by it
                                   (flock), names its pid, host and start
    features.h5.partial/           while it is being written (made at the
                                   first row written)
      manifest.json                what is being written (identity hashes)
      data.h5                      the future features.h5, rows filled in place
      done/<time_ns:016x>-<rand>.npy   journal: rows written (int64), one per call
      quarantine/                  damaged journal files

``features.h5`` has root attributes ``schema="skbottleneck.features"``,
``format_version``, ``n_rows``, ``n_features``, ``storage_dtype``,
``created``, SHA-256 identity hashes (``paths_sha256``, ``labels_sha256``,
``keys_sha256``, ``metadata_sha256``), ``metadata_json``, the library
versions (``numpy_version``, ``h5py_version``, ``hdf5_version``,
``python_version``, ``skbottleneck_version``) and every item of the
caller's ``metadata`` dict (backbone, weights hash, keras version... lists
and dicts as JSON strings). Datasets: ``features`` (``(n, d)``, contiguous
or in full-width row chunks, uncompressed), ``paths`` (UTF-8 strings),
optionally ``labels`` (int64/float64/bool, or UTF-8 strings with attribute
``kind="str"``) and ``keys`` (uint8, ``(n, key_length)``).

One writer at a time
--------------------
A :class:`StoreWriter` takes ``features.h5.lock`` (``flock``, through
:mod:`filelock`) before it looks at anything, and keeps it until
:meth:`StoreWriter.finalize` or :meth:`StoreWriter.close`. A second writer
waits for it (saying once, on stderr, which pid it waits for), or with
``wait=False`` raises :class:`StoreLockedError` naming that pid. Once it
has the lock it sees what the first one left: the finished store (same
arguments: nothing to do; others: :class:`FileExistsError`) or its
partial progress, to resume. The lock dies with its process, so a killed
writer blocks no one. Nothing but the lock file is created before the
first row is written: a writer that is refused (``check_space=True`` and
too little disk space) or closed unused leaves the folder as it was.

Every :class:`OSError` met while writing (creating ``data.h5``, writing
rows, fsync, journal, manifest, the final rename) is re-raised naming the
file and the store, with its errno (a full disk stays ``ENOSPC``, a file
size limit ``EFBIG``) and its cause. A damaged ``data.h5`` is reported by
name (delete the ``.partial`` folder, or pass ``overwrite=True``).

Why a kill cannot leave anything unreadable
-------------------------------------------
HDF5 files are never modified once they have a visible name:

* A cache shard is built in memory, written to ``shards/.tmp-...``,
  fsynced, then renamed (``os.replace``, atomic) to its final name, and the
  folder is fsynced. Readers list only final names: a shard is complete or
  invisible. A kill loses at most the batch being written (its temporary
  file is ignored, and removed by a later :meth:`FeatureCache.compact`).
* :meth:`FeatureCache.compact` writes a merged shard the same way and only
  then deletes its sources: a kill leaves duplicates (same features), which
  the next compaction drops. Readers that listed a deleted source look the
  keys up again. Several processes may write at once: names never collide,
  and a key written twice has the same features.
* ``data.h5`` is created (tmp, fsync, rename) with its whole structure:
  attributes, paths, labels, keys and the ``features`` dataset with its
  storage allocated up front (never filled: sparse on disk). From then on
  HDF5 never writes to it: rows are written with ``pwrite`` at the byte
  offsets of their rows, fsynced, and only then a journal file (tmp, fsync,
  rename) records them as done. A kill mid-batch leaves rows that no
  journal names: they are written again on resume. The HDF5 structure is
  never half-written, so ``data.h5`` is always a valid HDF5 file.
* :meth:`StoreWriter.finalize` renames ``data.h5`` to ``features.h5``
  (atomic; no copy, no extra disk space) and deletes the ``.partial``
  folder. Killed before the rename, the partial folder is intact and
  ``finalize`` runs again; killed after, the store is finished (the next
  :class:`StoreWriter` sees it and removes the left-over folder).
* A cache shard or journal file found damaged (truncated, garbage) is
  reported with a :class:`StoreWarning` naming it and moved to
  ``quarantine/``; its rows are treated as missing and computed again.
  A file of another format version is refused
  (:class:`UnsupportedFormatError`, or ignored with a warning for a cache
  shard), never misread.

Reads of features bypass HDF5 when the layout allows (uncompressed,
allocated): rows are read with ``preadv`` at their byte offsets, sorted,
neighbours in one system call. The cache keeps an in-memory index (key ->
shard, row) per folder and process; a look-up lists ``shards/`` only when
its modification time changed, and opens only the shards it has not seen.

The cache lives in :mod:`skbottleneck.cache`, the low-level file helpers
(atomic writes, positional I/O, preallocated HDF5 datasets) in
:mod:`skbottleneck.cache._fileio`; this package re-exports the public names.
Its modules are the stages of a store:

* ``_format``: schema and format version, reserved attributes, labels,
  keys and metadata normalised and hashed, :func:`check_disk_space`, the
  errors of a store being written;
* ``_lock``: the lock file, one writer at a time;
* ``_journal``: the ``.partial`` folder, its manifest and journal;
* ``_data_file``: ``data.h5``, created with its whole structure, checked
  when a run resumes;
* ``_writer``: :class:`StoreWriter`;
* ``_subset_writer``: :meth:`StoreWriter.finalize_subset`;
* ``_reader``: :class:`FeatureStore`;
* ``_subset``: :class:`StoreSubset`, some rows of a store seen as a store;
* ``_open``: :func:`open_rows`, a store or a feature file (Parquet, ``.npy``,
  CSV) opened as a row source;
* ``_export``: :meth:`FeatureStore.to_parquet` / :meth:`FeatureStore.to_numpy`
  written to files, streamed in chunks.
"""

from ..cache import (
    FeatureCache,
    cache_info,
    clear_cache,
    file_key,
    file_keys,
    fingerprint_id,
    get_cache_dir,
)
from ..cache._fileio import StoreWarning, UnsupportedFormatError
from ._format import InsufficientDiskSpaceError, StoreLockedError, check_disk_space
from ._open import open_rows
from ._reader import FeatureStore
from ._subset import StoreSubset
from ._writer import StoreWriter

__all__ = [
    "open_rows",
    "FeatureCache",
    "FeatureStore",
    "InsufficientDiskSpaceError",
    "StoreLockedError",
    "StoreSubset",
    "StoreWarning",
    "StoreWriter",
    "UnsupportedFormatError",
    "cache_info",
    "check_disk_space",
    "clear_cache",
    "file_key",
    "file_keys",
    "fingerprint_id",
    "get_cache_dir",
]
