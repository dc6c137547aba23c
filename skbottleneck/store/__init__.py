"""Dataset stores: the features of one ordered list of images, in one HDF5 file.

:class:`StoreWriter` writes, resumably and safe against a kill at any
moment (``SIGKILL``, power loss with a journaling file system, Ctrl-C),
the features of one ordered list of images (a dataset) to one file;
:class:`FeatureStore` reads it, in shuffled chunks for out-of-core
training or by row indices, and :class:`StoreSubset` shows some of its
rows (a training split) as a store. The feature cache, and its own
layout, are :mod:`skbottleneck.cache`'s; the file helpers both use
(atomic writes, the lock, positional I/O) are :mod:`skbottleneck.fileio`'s.

On-disk layout
--------------
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
:class:`skbottleneck.fileio.FileLock`) before it looks at anything, and keeps it until
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
* A journal file found damaged (truncated, garbage) is reported with a
  :class:`StoreWarning` naming it and moved to ``quarantine/``; its rows
  are treated as missing and written again. A file of another format
  version is refused (:class:`UnsupportedFormatError`), never misread.

Reads of features bypass HDF5 when the layout allows (uncompressed,
allocated): rows are read with ``preadv`` at their byte offsets, sorted,
neighbours in one system call.

Its modules are the stages of a store:

* ``_format``: schema and format version, reserved attributes, labels,
  keys and metadata normalised and hashed, :func:`check_disk_space`, the
  errors of a store being written;
* ``_lock``: the lock file, one writer at a time;
* ``_journal``: the ``.partial`` folder, its manifest and journal;
* ``_data_file``: :class:`DataFile`, ``data.h5``: created with its whole
  structure, checked when a run resumes, rows written at their offsets;
* ``_writer``: :class:`StoreWriter` (and :meth:`StoreWriter.finalize_subset`);
* ``_reader``: :class:`FeatureStore`;
* ``_subset``: :class:`StoreSubset`, some rows of a store seen as a store;
* ``_open``: :func:`open_rows`, a store or a feature file (Parquet, ``.npy``,
  CSV) opened as a row source;
* ``_export``: :meth:`FeatureStore.to_parquet` / :meth:`FeatureStore.to_numpy`
  written to files, streamed in chunks.
"""

from ..fileio import StoreWarning, UnsupportedFormatError
from ._format import InsufficientDiskSpaceError, StoreLockedError, check_disk_space
from ._open import open_rows
from ._reader import FeatureStore
from ._subset import StoreSubset
from ._writer import StoreWriter

__all__ = [
    "FeatureStore",
    "InsufficientDiskSpaceError",
    "StoreLockedError",
    "StoreSubset",
    "StoreWarning",
    "StoreWriter",
    "UnsupportedFormatError",
    "check_disk_space",
    "open_rows",
]
