"""The package's file I/O, at the bottom: every room that writes files writes them here.

Public within the package (the names have no leading underscore); users
never need them. What it guarantees, for every file the package writes:

* **atomic** (:mod:`._atomic`): a file (:func:`write_file_atomic`) or a
  whole folder (:func:`atomic_folder`), or a file a library writes by name
  (:func:`atomic_file`), is written under a temporary name
  (:func:`tmp_path`, prefix :data:`TMP_PREFIX`) in the folder it will live
  in, fsynced (:func:`fsync_file`, :func:`fsync_tree`), renamed, and the
  folder fsynced (:func:`fsync_dir`); readers see the old content or the
  new one, never a part. :func:`remove_stale_tmp` is the one cleanup of
  what killed writers left; :func:`remove_tree` deletes a folder after
  moving it aside; :func:`named_os_error` turns an ``OSError`` (or HDF5's
  ``RuntimeError``) into one that names the file and keeps its errno.
* **one lock** (:mod:`._lock`): :class:`FileLock`, ``flock`` on a lock
  file, dropped by the operating system when its holder dies.
* **rows at byte offsets** (:mod:`._rows`): positional reads and writes
  of feature rows in HDF5 files without the HDF5 library.
* **shared format pieces** (:mod:`._formats`): the format errors and
  warnings, storage dtypes, canonical JSON, HDF5 attributes.

Each room that uses it documents its own files: the feature cache in
:mod:`skbottleneck.cache`, the dataset store in :mod:`skbottleneck.store`,
converted OpenVINO models in :mod:`skbottleneck.extraction._openvino`.
"""

from ._atomic import (
    STALE_TMP_SECONDS,
    TMP_PREFIX,
    TRASH_MARK,
    atomic_file,
    atomic_folder,
    fdatasync,
    fsync_dir,
    fsync_file,
    fsync_tree,
    listdir,
    named_os_error,
    remove_stale_tmp,
    remove_tree,
    tmp_path,
    unlink_quietly,
    write_file_atomic,
)
from ._formats import (
    STORAGE_DTYPES,
    StoreWarning,
    UnsupportedFormatError,
    attr_value,
    canonical_json,
    check_storage_dtype,
    json_default,
    library_versions,
    output_dtype,
    python_attr,
    read_scalar_attr,
    sha256,
)
from ._lock import FileLock
from ._rows import (
    GAP_BYTES,
    MAX_SPAN_BYTES,
    create_preallocated,
    pread_into,
    pwrite,
    raw_layout,
    read_rows_at,
    read_rows_h5,
    row_offsets,
)

__all__ = [
    "GAP_BYTES", "MAX_SPAN_BYTES", "STALE_TMP_SECONDS", "STORAGE_DTYPES", "TMP_PREFIX",
    "TRASH_MARK", "FileLock", "StoreWarning", "UnsupportedFormatError", "atomic_file",
    "atomic_folder",
    "attr_value", "canonical_json", "check_storage_dtype", "create_preallocated", "fdatasync",
    "fsync_dir", "fsync_file", "fsync_tree", "json_default", "library_versions", "listdir",
    "named_os_error", "output_dtype", "pread_into", "pwrite", "python_attr", "raw_layout",
    "read_rows_at", "read_rows_h5", "read_scalar_attr", "remove_stale_tmp", "remove_tree",
    "row_offsets", "sha256", "tmp_path", "unlink_quietly", "write_file_atomic",
]
