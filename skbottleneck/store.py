"""On-disk features: a content-keyed cache and ordered dataset stores.

Two structures, both HDF5 (h5py), both safe against a kill at any moment
(``SIGKILL``, power loss with a journaling file system, Ctrl-C):

* :class:`FeatureCache` (defined in :mod:`skbottleneck._cache`) remembers
  the features of every image ever extracted, under a key of the image
  file's *content* (:func:`file_key`), one folder per model fingerprint.
* :class:`StoreWriter` writes, resumably, the features of one ordered list
  of images (a dataset) to one file; :class:`FeatureStore` reads it, in
  shuffled chunks for out-of-core training or by row indices.

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
``(n, key_length)``) and a contiguous dataset ``features`` (``(n, d)``,
little-endian float16/32/64, uncompressed).

Dataset store ``features.h5``::

    features.h5                    the finished store (appears at the end)
    features.h5.partial/           while it is being written
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

The cache lives in :mod:`skbottleneck._cache`, the low-level file helpers
(atomic writes, positional I/O, preallocated HDF5 datasets) in
:mod:`skbottleneck._fileio`; this module re-exports the public names.
"""

import errno
import io
import json
import operator
import os
import shutil
import threading
import time
import warnings

import numpy as np

from ._cache import (
    FeatureCache,
    cache_info,
    clear_cache,
    file_key,
    file_keys,
    fingerprint_id,
    get_cache_dir,
)
from ._fileio import (
    StoreWarning,
    UnsupportedFormatError,
    _attr_value,
    _canonical_json,
    _check_storage_dtype,
    _create_preallocated,
    _fdatasync,
    _fsync_dir,
    _fsync_file,
    _library_versions,
    _listdir,
    _output_dtype,
    _pwrite,
    _python_attr,
    _raw_layout,
    _read_rows_at,
    _read_rows_h5,
    _row_offsets,
    _sha256,
    _tmp_path,
    _unlink_quietly,
    _write_file_atomic,
)

__all__ = [
    "FeatureCache",
    "FeatureStore",
    "InsufficientDiskSpaceError",
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

STORE_SCHEMA = "skbottleneck.features"
STORE_FORMAT_VERSION = 1
PARTIAL_SCHEMA = "skbottleneck.features.partial"

#: Root attributes set by the store itself; a metadata dict may not use them.
RESERVED_ATTRS = frozenset({
    "schema", "format_version", "n_rows", "n_features", "storage_dtype", "created",
    "paths_sha256", "labels_sha256", "keys_sha256", "metadata_sha256", "metadata_json",
})
#: Metadata key of a store written by :meth:`StoreWriter.finalize_subset`:
#: the identity of the full writer it was cut from.
SUBSET_OF_ATTR = "subset_of"
_SUBSET_COPY_BYTES = 32 << 20  # rows copied per step by finalize_subset
_BLOCK_BYTES = 128 * 1024  # rows kept together when iter_chunks shuffles


class InsufficientDiskSpaceError(OSError):
    """The features would not fit on the target disk.

    Attributes
    ----------
    path : str
        Folder whose disk was checked.
    required : int
        Bytes needed, margin included.
    free : int
        Bytes free.
    """


def _fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def check_disk_space(path, n_bytes, *, what=None, margin=0.05, min_free=64 * 2**20, verbose=0):
    """Check, before a long extraction, that its features fit on the disk.

    Parameters
    ----------
    path : str or path-like
        Where the features will be written (a file or folder; need not
        exist yet: its nearest existing parent is checked).
    n_bytes : int
        Size of the features, e.g. ``n_images * n_features * itemsize``.
    what : str, default=None
        What the bytes are, for the messages (e.g. ``"features of 50000
        images x 100352 x 4 bytes"``).
    margin : float, default=0.05
        Extra fraction of ``n_bytes`` required (HDF5 overhead, safety).
    min_free : int, default=64 MiB
        Bytes that must stay free besides.
    verbose : int, default=0
        Print the estimate when > 0.

    Returns
    -------
    free : int
        Free bytes on that disk.

    Raises
    ------
    InsufficientDiskSpaceError
        ``n_bytes * (1 + margin) + min_free`` exceeds the free space.

    Examples
    --------
    >>> from skbottleneck.store import check_disk_space
    >>> free = check_disk_space(tmp_dir, 1000 * 1280 * 4)
    >>> check_disk_space(tmp_dir, 10**18)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skbottleneck.store.InsufficientDiskSpaceError: [Errno 28] Not enough disk space ...
    """
    target = os.path.abspath(os.fspath(path))
    while not os.path.exists(target):
        parent = os.path.dirname(target)
        if parent == target:
            break
        target = parent
    usage = shutil.disk_usage(target)
    required = int(n_bytes * (1 + margin)) + int(min_free)
    what = what or "the features"
    if verbose:
        print(f"[skbottleneck] {what}: {_fmt_bytes(n_bytes)}; {_fmt_bytes(usage.free)} free "
              f"on the disk of {target}", flush=True)
    if required > usage.free:
        err = InsufficientDiskSpaceError(
            errno.ENOSPC,
            f"Not enough disk space in {target}: {what} need {_fmt_bytes(n_bytes)} "
            f"(+{margin:.0%} margin, +{_fmt_bytes(min_free)} kept free) but only "
            f"{_fmt_bytes(usage.free)} is free. Free some space, write elsewhere, reduce the "
            "number of features (e.g. pooling='avg') or store them as float16.",
        )
        err.path, err.required, err.free = target, required, usage.free
        raise err
    return usage.free


# ------------------------------------------------------------- normalisation
def _encode_str(s):
    return s.encode("utf-8", "surrogateescape")


def _hash_strings(values):
    import hashlib

    h = hashlib.sha256(f"{len(values)}\0".encode())
    for v in values:
        h.update(_encode_str(v))
        h.update(b"\0")
    return h.hexdigest()


def _normalize_labels(labels, n):
    """``(array, kind)``: str labels as a str array, numbers as 64-bit."""
    if labels is None:
        return None, None
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"labels must be 1-D with one label per path ({n}); "
                         f"got shape {arr.shape}.")
    if arr.dtype.kind == "O" and n:
        if all(isinstance(v, str) for v in arr):
            arr = arr.astype(str)
        else:
            try:
                arr = np.asarray(arr.tolist())
            except ValueError as e:
                raise TypeError("labels must be all strings or all numbers.") from e
    kind = arr.dtype.kind
    if kind == "U" or (kind == "O" and n == 0):
        return arr.astype(str), "str"
    if kind == "b":
        return arr.astype(bool), "bool"
    if kind == "i":
        return arr.astype(np.int64), "int"
    if kind == "u":
        return arr.astype(np.uint64), "uint"
    if kind == "f":
        return arr.astype(np.float64), "float"
    raise TypeError(f"labels must be strings, integers, floats or booleans; got dtype {arr.dtype}.")


def _hash_labels(labels, kind):
    if labels is None:
        return ""
    if kind == "str":
        return "str:" + _hash_strings(labels.tolist())
    return f"{kind}:" + _sha256(np.ascontiguousarray(labels).tobytes())


def _normalize_keys(keys, n):
    if keys is None:
        return None
    keys = [bytes(k) if isinstance(k, (bytearray, memoryview)) else k for k in keys]
    if len(keys) != n:
        raise ValueError(f"keys must have one key per path ({n}); got {len(keys)}.")
    if n == 0:
        return np.zeros((0, 0), np.uint8)
    if not all(type(k) is bytes for k in keys):
        raise TypeError("keys must be bytes (e.g. from file_key).")
    key_len = len(keys[0])
    if any(len(k) != key_len for k in keys):
        raise ValueError("keys must all have the same length.")
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(n, key_len)


def _check_metadata(metadata):
    metadata = dict(metadata or {})
    clash = sorted(RESERVED_ATTRS & set(metadata))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by the store format.")
    for k, v in metadata.items():
        if not isinstance(k, str):
            raise TypeError(f"metadata keys must be str; got {k!r}.")
        _attr_value(v)  # raises TypeError for unsupported values
    _canonical_json(metadata)
    return metadata


# ------------------------------------------------------------------- writer
class StoreWriter:
    """Crash-safe, resumable writer of a dataset's features to one HDF5 file.

    The store is assembled in ``<path>.partial/`` and appears at ``path``
    only when every row has been written (:meth:`finalize`). A run killed
    at any moment resumes when a writer is created again with the same
    arguments: :meth:`missing_rows` tells what is left. See the module
    docstring for the layout and the crash-safety argument.

    Parameters
    ----------
    path : str or path-like
        The store file to write, e.g. ``"features.h5"``.
    paths : sequence of str or path-like
        The images, one row each, in order.
    labels : array-like of shape (n_rows,), default=None
        Labels (strings or numbers), stored beside the features.
    keys : sequence of bytes, default=None
        Content keys of the images (:func:`file_key`), stored as well.
    n_features : int
        Length of each feature vector.
    dtype : {"float32", "float16", "float64"}, default="float32"
        Storage dtype (float16 halves the file; read back as float32).
    metadata : dict, default=None
        Reproducibility information (backbone, weights hash, layer, library
        versions...) stored as root attributes; must not use the names in
        ``RESERVED_ATTRS``.
    chunk_rows : int, default=None
        ``None`` stores the features contiguously (fastest reads); an int
        stores them in full-width chunks of that many rows.
    overwrite : bool, default=False
        Replace an existing store (at :meth:`finalize`) or discard partial
        progress made for other images, labels, keys, features or metadata,
        instead of raising. A finished store with the same content is
        reused either way.

    Attributes
    ----------
    path : str
        Absolute path of the store.
    partial_dir : str
        ``path + ".partial"``.
    n_rows : int
        Number of rows (paths).

    Raises
    ------
    FileExistsError
        ``path`` exists and holds something else (and ``overwrite=False``).
    ValueError
        Partial progress for other content exists (and ``overwrite=False``).

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.store import StoreWriter
    >>> w = StoreWriter(tmp_dir / "features.h5", paths=["a.jpg", "b.jpg", "c.jpg"],
    ...                 labels=["cat", "dog", "cat"], n_features=4)
    >>> w.missing_rows()
    array([0, 1, 2])
    >>> w.write_rows([2, 0], np.ones((2, 4)))
    >>> w.missing_rows()
    array([1])
    >>> w.write_rows([1], np.zeros((1, 4)))
    >>> store = w.finalize()
    >>> store.read_rows([1, 2])[1]
    array(['dog', 'cat'], dtype='<U3')
    """

    def __init__(self, path, *, paths, labels=None, keys=None, n_features, dtype="float32",
                 metadata=None, chunk_rows=None, overwrite=False):
        self.path = os.path.abspath(os.fspath(path))
        self.partial_dir = self.path + ".partial"
        self._paths = [os.fspath(p) for p in paths]
        for p in self._paths:
            if not isinstance(p, str):
                raise TypeError(f"paths must be str or path-like; got {p!r}.")
        self.n_rows = len(self._paths)
        self.n_features = operator.index(n_features)
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1; got {n_features}.")
        self.dtype = _check_storage_dtype(dtype)
        self._labels, self._labels_kind = _normalize_labels(labels, self.n_rows)
        self._keys = _normalize_keys(keys, self.n_rows)
        self.metadata = _check_metadata(metadata)
        if chunk_rows is not None:
            chunk_rows = operator.index(chunk_rows)
            if chunk_rows < 1:
                raise ValueError(f"chunk_rows must be None or >= 1; got {chunk_rows}.")
        self.chunk_rows = chunk_rows
        self.overwrite = bool(overwrite)
        self._store_dtype = np.dtype(self.dtype).newbyteorder("<")
        self._row_nbytes = self.n_features * self._store_dtype.itemsize
        self._identity = {
            "n_rows": self.n_rows,
            "n_features": self.n_features,
            "storage_dtype": self.dtype,
            "paths_sha256": _hash_strings(self._paths),
            "labels_sha256": _hash_labels(self._labels, self._labels_kind),
            "keys_sha256": "" if self._keys is None else _sha256(self._keys.tobytes()),
            "metadata_sha256": _sha256(_canonical_json(self.metadata)),
        }
        self._lock = threading.Lock()
        self._fd = None
        self._finished = False
        self._done = np.zeros(self.n_rows, dtype=bool)
        self._start()

    # -- setup
    @property
    def _data_path(self):
        return os.path.join(self.partial_dir, "data.h5")

    def _start(self):
        if os.path.exists(self.path):
            diff = self._differences_with_finished()
            if diff and not self.overwrite and self._is_subset_for_this():
                diff = ""
            if not diff:
                self._finished = True
                self._done[:] = True
                # left over by a finalize killed after its rename (possibly half
                # deleted, manifest first): progress of another run is kept
                if self._read_manifest_identity() in (None, self._identity):
                    shutil.rmtree(self.partial_dir, ignore_errors=True)
                return
            if not self.overwrite:
                raise FileExistsError(
                    errno.EEXIST,
                    f"{self.path} already exists and differs from what is being written "
                    f"({diff}). Pass overwrite=True to replace it, or choose another path",
                    self.path,
                )
        try:
            manifest = self._read_manifest()
        except UnsupportedFormatError:
            if not self.overwrite:
                raise
            self._remove_partial()
            manifest = None
        if manifest is not None:
            theirs = manifest.get("identity")
            if manifest.get("format_version") != STORE_FORMAT_VERSION and not self.overwrite:
                raise UnsupportedFormatError(
                    f"{self.partial_dir} holds partial progress in format version "
                    f"{manifest.get('format_version')!r}; this skbottleneck writes version "
                    f"{STORE_FORMAT_VERSION}. Finish it with that version, or pass "
                    "overwrite=True to discard it."
                )
            if theirs != self._identity and not self.overwrite:
                changed = sorted(k for k in self._identity
                                 if (theirs or {}).get(k) != self._identity[k])
                raise ValueError(
                    f"{self.partial_dir} holds partial progress for other content "
                    f"(differs in: {', '.join(changed)}). Pass overwrite=True to discard it "
                    "and start again, or call again with the original arguments to resume."
                )
            if theirs != self._identity or manifest.get("format_version") != STORE_FORMAT_VERSION:
                manifest = None
                self._remove_partial()
        elif os.path.exists(self.partial_dir):
            self._remove_partial()  # killed before its manifest was written: nothing to keep
        if manifest is None:
            os.makedirs(os.path.join(self.partial_dir, "done"), exist_ok=True)
            doc = {"schema": PARTIAL_SCHEMA, "format_version": STORE_FORMAT_VERSION,
                   "path": self.path, "identity": self._identity, "chunk_rows": self.chunk_rows,
                   "metadata": self.metadata}
            _write_file_atomic(os.path.join(self.partial_dir, "manifest.json"),
                               json.dumps(doc, indent=1, sort_keys=True).encode())
        os.makedirs(os.path.join(self.partial_dir, "done"), exist_ok=True)
        if not os.path.exists(self._data_path):
            self._done[:] = False
            self._clear_journal()
            self._create_data_file()
        self._open_data_file()
        self._load_journal()

    def _remove_partial(self):
        shutil.rmtree(self.partial_dir, ignore_errors=True)
        if os.path.exists(self.partial_dir):
            raise OSError(f"Could not remove {self.partial_dir}; delete it by hand.")

    def _read_manifest(self):
        """The manifest, or None if there is none (a partial folder being created
        or deleted: manifest.json is written first and atomically)."""
        path = os.path.join(self.partial_dir, "manifest.json")
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise UnsupportedFormatError(
                f"{path} is unreadable ({e}); delete {self.partial_dir} (or pass overwrite=True)."
            ) from e
        if not isinstance(doc, dict) or doc.get("schema") != PARTIAL_SCHEMA:
            raise UnsupportedFormatError(
                f"{path} is not a skbottleneck partial-store manifest (schema "
                f"{doc.get('schema') if isinstance(doc, dict) else None!r}); delete "
                f"{self.partial_dir} if it is not needed."
            )
        return doc

    def _read_manifest_identity(self):
        try:
            doc = self._read_manifest()
        except UnsupportedFormatError:
            return "?"
        return None if doc is None else doc.get("identity")

    def _differences_with_finished(self):
        """'' if ``path`` is a finished store of the same content, else what differs."""
        try:
            with FeatureStore(self.path) as store:
                attrs = store.metadata
        except (UnsupportedFormatError, OSError) as e:
            return f"not a readable skbottleneck store: {e}"
        changed = [k for k, v in self._identity.items() if attrs.get(k) != v]
        return ", ".join(f"other {k.replace('_sha256', '')}" for k in changed)

    def _is_subset_for_this(self):
        """Whether ``path`` is a store that :meth:`finalize_subset` wrote for these arguments."""
        try:
            with FeatureStore(self.path) as store:
                return store.metadata.get(SUBSET_OF_ATTR) == _canonical_json(self._identity)
        except (UnsupportedFormatError, OSError):
            return False

    def _create_data_file(self):
        import h5py

        tmp = _tmp_path(self.partial_dir, "data.h5")
        try:
            with h5py.File(tmp, "w") as f:
                attrs = {k: _attr_value(v) for k, v in self.metadata.items()}
                for k, v in _library_versions().items():
                    attrs.setdefault(k, v)
                attrs.update(
                    schema=STORE_SCHEMA,
                    format_version=np.int64(STORE_FORMAT_VERSION),
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    metadata_json=_canonical_json(self.metadata),
                    **{k: _attr_value(v) for k, v in self._identity.items()},
                )
                for k in sorted(attrs):
                    f.attrs[k] = attrs[k]
                str_dt = h5py.string_dtype("utf-8")
                ds = f.create_dataset("paths", shape=(self.n_rows,), dtype=str_dt)
                if self.n_rows:
                    ds[:] = np.array([_encode_str(p) for p in self._paths], dtype=object)
                if self._labels is not None:
                    if self._labels_kind == "str":
                        ds = f.create_dataset("labels", shape=(self.n_rows,), dtype=str_dt)
                        if self.n_rows:
                            ds[:] = np.array([_encode_str(v) for v in self._labels.tolist()],
                                             dtype=object)
                    else:
                        ds = f.create_dataset("labels", data=self._labels)
                    ds.attrs["kind"] = self._labels_kind
                if self._keys is not None:
                    f.create_dataset("keys", data=self._keys)
                _create_preallocated(f, "features", (self.n_rows, self.n_features),
                                     self._store_dtype, self.chunk_rows)
            _fsync_file(tmp)
            os.replace(tmp, self._data_path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_dir(self.partial_dir)

    def _open_data_file(self):
        import h5py

        with h5py.File(self._data_path, "r") as f:
            ds = f["features"]
            if ds.shape != (self.n_rows, self.n_features) or ds.dtype != self._store_dtype:
                raise ValueError(f"{self._data_path} does not match its manifest; delete "
                                 f"{self.partial_dir} or pass overwrite=True.")
            layout = _raw_layout(ds)
        if layout is None:  # pragma: no cover - only if the file was altered
            raise ValueError(f"{self._data_path} has an unexpected layout; "
                             f"delete {self.partial_dir}.")
        self._firsts, self._offsets = layout
        self._fd = os.open(self._data_path, os.O_RDWR | getattr(os, "O_BINARY", 0))

    # -- journal
    @property
    def _journal_dir(self):
        return os.path.join(self.partial_dir, "done")

    def _clear_journal(self):
        for name in _listdir(self._journal_dir):
            _unlink_quietly(os.path.join(self._journal_dir, name))

    def _load_journal(self):
        names = sorted(n for n in _listdir(self._journal_dir) if n.endswith(".npy")
                       and not n.startswith("."))
        for name in names:
            path = os.path.join(self._journal_dir, name)
            try:
                with open(path, "rb") as f:
                    rows = np.load(io.BytesIO(f.read()), allow_pickle=False)
                if rows.ndim != 1 or rows.dtype != np.int64 or (
                        len(rows) and (rows.min() < 0 or rows.max() >= self.n_rows)):
                    raise ValueError(f"unexpected content {rows.dtype} {rows.shape}")
            except FileNotFoundError:  # pragma: no cover
                continue
            except Exception as e:  # noqa: BLE001 - damaged journal file
                self._quarantine(path, e)
                continue
            self._done[rows] = True
        if len(names) > 64:  # merge the journal: one file instead of many
            rows = np.flatnonzero(self._done).astype(np.int64)
            self._write_journal(rows)
            for name in names:
                _unlink_quietly(os.path.join(self._journal_dir, name))

    def _quarantine(self, path, reason):
        qdir = os.path.join(self.partial_dir, "quarantine")
        target = os.path.join(qdir, os.path.basename(path))
        try:
            os.makedirs(qdir, exist_ok=True)
            os.replace(path, target)
            where = f"moved to {target}"
        except OSError:  # pragma: no cover
            where = "left in place"
        warnings.warn(
            f"Journal file {path} of the store being written is unreadable "
            f"({type(reason).__name__}: {reason}); it was {where}, and its rows will be "
            "written again.",
            StoreWarning, stacklevel=4,
        )

    def _write_journal(self, rows):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(rows, dtype=np.int64), allow_pickle=False)
        name = f"{time.time_ns():016x}-{os.urandom(4).hex()}.npy"
        _write_file_atomic(os.path.join(self._journal_dir, name), buf.getbuffer())

    # -- public
    def done(self):
        """Which rows have been written.

        Returns
        -------
        done : ndarray of bool, shape (n_rows,)
        """
        return self._done.copy()

    @property
    def finished(self):
        """Whether the store is complete at :attr:`path`."""
        return self._finished

    def missing_rows(self):
        """Rows not written yet (all of them for a new store).

        Returns
        -------
        rows : ndarray of int
        """
        return np.flatnonzero(~self._done)

    def write_rows(self, rows, features):
        """Write feature rows; durable when this returns.

        The rows are written in place in ``data.h5`` and fsynced, then a
        journal file records them. Rows may come in any order, and be
        written again (a resumed run).

        Parameters
        ----------
        rows : array-like of int, shape (n,)
            Row indices (positions in ``paths``).
        features : array-like of shape (n, n_features)
            Converted to the storage dtype.
        """
        rows = np.asarray(rows)
        if rows.size == 0:
            return
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ValueError("rows must be a 1-D array of integers; "
                             f"got {rows.dtype} {rows.shape}.")
        rows = rows.astype(np.int64)
        if rows.min() < 0 or rows.max() >= self.n_rows:
            raise IndexError(f"rows must be in [0, {self.n_rows}); got {rows.min()}..{rows.max()}.")
        features = np.asarray(features)
        if features.shape != (len(rows), self.n_features):
            raise ValueError(f"features must have shape {(len(rows), self.n_features)}; "
                             f"got {features.shape}.")
        feats = np.ascontiguousarray(features, dtype=self._store_dtype)
        with self._lock:
            if self._finished:
                raise RuntimeError(f"{self.path} is already finalized.")
            offsets = _row_offsets(rows, self._firsts, self._offsets, self._row_nbytes)
            order = np.argsort(offsets, kind="stable")
            offs = offsets[order]
            breaks = np.flatnonzero(np.diff(offs) != self._row_nbytes) + 1
            bounds = np.concatenate(([0], breaks, [len(offs)]))
            sorted_in = bool(np.all(order == np.arange(len(order))))
            for g in range(len(bounds) - 1):
                a, b = int(bounds[g]), int(bounds[g + 1])
                block = feats[a:b] if sorted_in else feats[order[a:b]]
                _pwrite(self._fd, block, int(offs[a]))
            _fdatasync(self._fd)
            self._write_journal(np.unique(rows))
            self._done[rows] = True

    def finalize(self):
        """Publish the store at :attr:`path` (an atomic rename; no copy).

        Returns
        -------
        store : FeatureStore
            The finished store, open for reading.

        Raises
        ------
        ValueError
            Some rows have not been written.
        """
        with self._lock:
            if not self._finished:
                missing = self.missing_rows()
                if len(missing):
                    raise ValueError(
                        f"{len(missing)} of the {self.n_rows} rows of {self.path} have not been "
                        f"written yet (first: row {missing[0]}, {self._paths[missing[0]]!r})."
                    )
                os.fsync(self._fd)
                self._publish(self._data_path)
        return FeatureStore(self.path)

    def _publish(self, finished_file):
        """Rename a durable, complete store file onto :attr:`path`; drop the partial folder."""
        os.close(self._fd)
        self._fd = None
        os.replace(finished_file, self.path)
        _fsync_dir(os.path.dirname(self.path))
        self._finished = True
        shutil.rmtree(self.partial_dir, ignore_errors=True)

    def finalize_subset(self, rows, metadata=None):
        """Publish a store of only some rows at :attr:`path` (e.g. the readable images).

        The rows are copied, in order, into a new store file assembled in
        :attr:`partial_dir`, which then replaces :attr:`path` atomically. It
        records what it was cut from, so that a writer created again with
        the same arguments finds it finished (a rerun is a no-op; with
        ``overwrite=True`` it starts again, the left-out rows included).
        Killed during the copy, a rerun resumes it.

        Parameters
        ----------
        rows : array-like of int
            The rows to keep (sorted and deduplicated); each must be written.
        metadata : dict, default=None
            Added to the store's metadata (e.g. which rows were left out, and why).

        Returns
        -------
        store : FeatureStore
            The finished store, open for reading.
        """
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if len(rows) == self.n_rows:
            return self.finalize()
        if len(rows) == 0:
            raise ValueError(f"finalize_subset needs at least one row of {self.path}.")
        if self._finished:
            return FeatureStore(self.path)
        missing = rows[~self._done[rows]]
        if len(missing):
            raise ValueError(
                f"{len(missing)} of the rows to keep in {self.path} have not been written yet "
                f"(first: row {missing[0]}, {self._paths[missing[0]]!r})."
            )
        meta = dict(self.metadata)
        meta.update(metadata or {})
        meta[SUBSET_OF_ATTR] = _canonical_json(self._identity)
        sub = StoreWriter(
            os.path.join(self.partial_dir, "subset.h5"),
            paths=[self._paths[r] for r in rows],
            labels=None if self._labels is None else self._labels[rows],
            keys=None if self._keys is None else [k.tobytes() for k in self._keys[rows]],
            n_features=self.n_features, dtype=self.dtype, metadata=meta,
            chunk_rows=self.chunk_rows, overwrite=True,
        )
        with self._lock:
            offsets = _row_offsets(rows, self._firsts, self._offsets, self._row_nbytes)
            step = max(1, _SUBSET_COPY_BYTES // self._row_nbytes)
            todo = sub.missing_rows()
            for i in range(0, len(todo), step):
                dst = todo[i:i + step]
                block = np.empty((len(dst), self.n_features), dtype=self._store_dtype)
                _read_rows_at(self._fd, offsets[dst], np.arange(len(dst)), block,
                              self._row_nbytes, self._store_dtype)
                sub.write_rows(dst, block)
            sub.finalize().close()
            self._publish(sub.path)
        return FeatureStore(self.path)

    def close(self):
        """Release the file handle (the progress stays on disk)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self):
        return (f"StoreWriter({self.path!r}, n_rows={self.n_rows}, n_features={self.n_features}, "
                f"done={int(self._done.sum())})")


# ------------------------------------------------------------------- reader
class FeatureStore:
    """A finished feature store, open for reading (read-only).

    Serves features larger than memory: :meth:`iter_chunks` for
    out-of-core training, :meth:`read_rows` / indexing for
    cross-validation. Picklable (only the path travels; the file is
    reopened), so it can be handed to joblib workers.

    Parameters
    ----------
    path : str or path-like
        A file written by :class:`StoreWriter`.

    Raises
    ------
    FileNotFoundError
        No such file.
    UnsupportedFormatError
        Not an HDF5 file, not a skbottleneck store, or another format version.

    Attributes
    ----------
    path : str
    n_features : int
    dtype : numpy.dtype
        Storage dtype. Arrays are returned as float32 for float16 storage,
        else in the storage dtype, unless a ``dtype`` is asked for.
    shape : tuple of int
        ``(n_rows, n_features)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.store import StoreWriter, FeatureStore
    >>> w = StoreWriter(tmp_dir / "f.h5", paths=[f"{i}.jpg" for i in range(10)],
    ...                 labels=np.arange(10) % 2, n_features=3)
    >>> w.write_rows(np.arange(10), np.arange(30).reshape(10, 3))
    >>> _ = w.finalize()
    >>> with FeatureStore(tmp_dir / "f.h5") as store:
    ...     print(len(store), store.n_features, store.paths[:2])
    ...     X, y = store.read_rows([3, 1])
    ...     sizes = [len(X) for X, y in store.iter_chunks(4, random_state=0)]
    10 3 ['0.jpg' '1.jpg']
    >>> X
    array([[ 9., 10., 11.],
           [ 3.,  4.,  5.]], dtype=float32)
    >>> sizes
    [4, 4, 2]
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self._file = None
        self._fd = None
        self._open()

    def _open(self):
        import h5py

        if not os.path.exists(self.path):
            raise FileNotFoundError(errno.ENOENT, "No such feature store", self.path)
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise UnsupportedFormatError(
                f"{self.path} is not a readable HDF5 file ({e}); expected a feature store "
                "written by skbottleneck."
            ) from e
        try:
            schema = _python_attr(f.attrs.get("schema"))
            version = _python_attr(f.attrs.get("format_version"))
            if schema != STORE_SCHEMA:
                raise UnsupportedFormatError(
                    f"{self.path} is not a skbottleneck feature store: its 'schema' attribute "
                    f"is {schema!r}, expected {STORE_SCHEMA!r}."
                )
            if version != STORE_FORMAT_VERSION:
                raise UnsupportedFormatError(
                    f"{self.path} is a feature store of format version {version!r}; this "
                    f"skbottleneck reads version {STORE_FORMAT_VERSION}. Use a matching "
                    "skbottleneck version, or extract the features again."
                )
            ds = f.get("features")
            if ds is None or ds.ndim != 2 or ds.dtype.kind != "f":
                raise UnsupportedFormatError(f"{self.path} has no 2-D float 'features' dataset.")
            self._layout = _raw_layout(ds)
        except BaseException:
            f.close()
            raise
        self._file, self._ds = f, ds
        self._n_rows, self.n_features = ds.shape
        self.dtype = ds.dtype.newbyteorder("=")
        self._row_nbytes = self.n_features * ds.dtype.itemsize
        if self._layout is not None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._pid = os.getpid()
        self._cached = {}

    def _check_open(self):
        if self._file is None:
            raise ValueError(f"I/O operation on a closed FeatureStore ({self.path}).")
        if self._pid != os.getpid():  # forked: reopen our own handles
            self._file = None
            self._fd = None
            self._open()

    # -- attributes
    def __len__(self):
        return self._n_rows

    @property
    def shape(self):
        return (self._n_rows, self.n_features)

    @property
    def metadata(self):
        """Root attributes (format, identity, library versions, caller's metadata).

        Returns
        -------
        metadata : dict
        """
        if "metadata" not in self._cached:
            self._check_open()
            self._cached["metadata"] = {k: _python_attr(v) for k, v in self._file.attrs.items()}
        return dict(self._cached["metadata"])

    @property
    def paths(self):
        """Image paths, one per row (ndarray of str)."""
        if "paths" not in self._cached:
            self._check_open()
            ds = self._file["paths"]
            values = ds.asstr(errors="surrogateescape")[()] if len(ds) else []
            self._cached["paths"] = np.asarray(list(values), dtype=str)
        return self._cached["paths"]

    @property
    def labels(self):
        """Labels (str or numeric ndarray), or ``None`` when none were stored."""
        if "labels" not in self._cached:
            self._check_open()
            ds = self._file.get("labels")
            if ds is None:
                labels = None
            elif _python_attr(ds.attrs.get("kind")) == "str":
                values = ds.asstr(errors="surrogateescape")[()] if len(ds) else []
                labels = np.asarray(list(values), dtype=str)
            else:
                labels = ds[()]
            self._cached["labels"] = labels
        return self._cached["labels"]

    @property
    def keys(self):
        """Content keys (list of bytes), or ``None`` when none were stored."""
        if "keys" not in self._cached:
            self._check_open()
            ds = self._file.get("keys")
            if ds is None:
                self._cached["keys"] = None
            else:
                arr = ds[()]
                self._cached["keys"] = (arr.view(f"V{arr.shape[1]}").ravel().tolist()
                                        if arr.shape[1] else [b""] * len(arr))
        return self._cached["keys"]

    # -- reading
    def _out_dtype(self, dtype):
        return _output_dtype(self.dtype) if dtype is None else np.dtype(dtype)

    def _read_into(self, rows, out):
        """``out[i] = features[rows[i]]`` (rows any order, in range)."""
        self._check_open()
        dst = np.arange(len(rows))
        rows = np.asarray(rows, dtype=np.int64)
        if self._layout is not None:
            offsets = _row_offsets(rows, self._layout[0], self._layout[1], self._row_nbytes)
            _read_rows_at(self._fd, offsets, dst, out, self._row_nbytes,
                          self._ds.dtype.newbyteorder("<"))
        else:
            _read_rows_h5(self._ds, rows, dst, out)
        return out

    def _check_indices(self, indices):
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (self._n_rows,):
                raise IndexError(f"boolean index must have shape ({self._n_rows},); "
                                 f"got {idx.shape}.")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise IndexError(f"indices must be a 1-D array of integers or booleans; got "
                             f"{idx.dtype} {idx.shape}.")
        idx = idx.astype(np.int64)
        if idx.min() < -self._n_rows or idx.max() >= self._n_rows:
            raise IndexError(f"index out of range for a store of {self._n_rows} rows.")
        return np.where(idx < 0, idx + self._n_rows, idx)

    def read_rows(self, indices, *, dtype=None):
        """Features and labels of arbitrary rows (e.g. a CV split).

        Parameters
        ----------
        indices : array-like of int or bool mask
            Rows, in any order (negative counts from the end).
        dtype : dtype, default=None
            Of the returned features; see :attr:`dtype`.

        Returns
        -------
        X : ndarray of shape (n_indices, n_features)
        y : ndarray of shape (n_indices,) or None
        """
        idx = self._check_indices(indices)
        X = np.empty((len(idx), self.n_features), dtype=self._out_dtype(dtype))
        self._read_into(idx, X)
        labels = self.labels
        return X, (None if labels is None else labels[idx])

    def __getitem__(self, item):
        """Features of a row (1-D), a slice, an index array or a bool mask."""
        if isinstance(item, tuple):
            if len(item) != 2:
                raise IndexError("a FeatureStore has 2 dimensions.")
            X = self[item[0]]
            return X[..., item[1]]
        if isinstance(item, slice):
            return self.read_rows(np.arange(self._n_rows)[item])[0]
        try:
            i = operator.index(item)
        except TypeError:
            return self.read_rows(item)[0]
        return self.read_rows([i])[0][0]

    def to_numpy(self, dtype=None):
        """All the features in memory.

        Parameters
        ----------
        dtype : dtype, default=None
            See :attr:`dtype`.

        Returns
        -------
        X : ndarray of shape (n_rows, n_features)
        """
        return self.read_rows(np.arange(self._n_rows), dtype=dtype)[0]

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None,
                    block_rows=None):
        """Iterate over the features in chunks, each row exactly once.

        With ``shuffle=True`` the rows are cut into blocks of consecutive
        rows (at most 128 KiB each), the blocks are put in a random order
        and dealt into chunks of ``chunk_size`` rows, and the rows of each
        chunk are permuted: every chunk mixes rows from all over the store
        (a store sorted by class still gives mixed chunks), while reads stay
        sequential blocks. Memory holds about one chunk at a time.

        Parameters
        ----------
        chunk_size : int, default=1024
            Rows per chunk (the last one may be smaller).
        shuffle : bool, default=True
            Shuffle as above; ``False`` yields the rows in order.
        random_state : int, RandomState instance or None, default=None
            Seed of the shuffle (:func:`sklearn.utils.check_random_state`):
            an int gives the same chunks every time.
        dtype : dtype, default=None
            Of the yielded features; see :attr:`dtype`.
        block_rows : int, default=None
            Rows per block. Default: 128 KiB worth of rows, at most
            ``chunk_size // 16`` (so a chunk mixes 16 or more blocks).

        Yields
        ------
        X : ndarray of shape (n_chunk, n_features)
        y : ndarray of shape (n_chunk,) or None
        """
        chunk_size = operator.index(chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
        out_dtype = self._out_dtype(dtype)
        labels = self.labels
        n = self._n_rows
        if not shuffle:
            for lo in range(0, n, chunk_size):
                rows = np.arange(lo, min(n, lo + chunk_size))
                X = self._read_into(rows, np.empty((len(rows), self.n_features), out_dtype))
                yield X, (None if labels is None else labels[lo:lo + len(rows)])
            return
        from sklearn.utils import check_random_state

        rng = check_random_state(random_state)
        if block_rows is None:  # >= 16 blocks per chunk, blocks of <= 128 KiB
            block_rows = min(_BLOCK_BYTES // max(1, self._row_nbytes), chunk_size // 16)
        block_rows = max(1, min(operator.index(block_rows), chunk_size))
        n_blocks = -(-n // block_rows)
        pieces, count = [], 0
        for b in rng.permutation(n_blocks):
            lo, hi = int(b) * block_rows, min(n, (int(b) + 1) * block_rows)
            while lo < hi:
                take = min(hi - lo, chunk_size - count)
                pieces.append(np.arange(lo, lo + take))
                count += take
                lo += take
                if count == chunk_size:
                    yield self._shuffled_chunk(pieces, rng, out_dtype, labels)
                    pieces, count = [], 0
        if pieces:
            yield self._shuffled_chunk(pieces, rng, out_dtype, labels)

    def _shuffled_chunk(self, pieces, rng, out_dtype, labels):
        rows = np.concatenate(pieces)
        rows = rows[rng.permutation(len(rows))]
        X = self._read_into(rows, np.empty((len(rows), self.n_features), out_dtype))
        return X, (None if labels is None else labels[rows])

    # -- life cycle
    def close(self):
        """Close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __repr__(self):
        state = "" if self._file is not None else ", closed"
        return (f"FeatureStore({self.path!r}, n_rows={self._n_rows}, n_features={self.n_features}, "
                f"dtype={self.dtype.name}{state})")
