"""Writing a dataset store, crash-safe and resumable: :class:`StoreWriter`.

The store is assembled in ``<path>.partial/`` (see :mod:`._journal`):
``data.h5`` is created once with its whole HDF5 structure and its feature
storage allocated, rows are then written in place with ``pwrite`` and
recorded in the journal, and :meth:`StoreWriter.finalize` renames the file
into place. :meth:`StoreWriter.finalize_subset` publishes only some of the
rows instead: they are copied, in order, into a second store assembled as
``<path>.partial/subset.h5`` (itself written by a :class:`StoreWriter`, so a
copy killed midway resumes), which then replaces ``<path>`` atomically; it
records (``subset_of``) the identity of the writer it was cut from, so that
a writer created again with the same arguments finds it finished.

One writer at a time: a writer holds ``<path>.lock`` (see :mod:`._lock`)
from its creation to its ``finalize`` or ``close``. Nothing else is
created on disk before the first row is written, so a writer refused for
lack of disk space (``check_space=True``) or closed unused leaves the
folder as it found it.
"""

import errno
import numbers
import operator
import os
import threading

import numpy as np

from ..chunks import check_storable
from ..fileio import UnsupportedFormatError, canonical_json, check_storage_dtype, fsync_dir, sha256
from ._format import (
    STORE_FORMAT_VERSION,
    SUBSET_OF_ATTR,
    _check_metadata,
    _hash_labels,
    _hash_strings,
    _normalize_keys,
    _normalize_labels,
    check_disk_space,
    naming_errors,
)
from ._data_file import DamagedDataFile, DataFile
from ._journal import PartialFolder
from ._lock import StoreLock, read_only
from ._reader import ClosingMixin, FeatureStore

__all__ = ["StoreWriter"]

#: Bytes of rows copied per step of :meth:`StoreWriter.finalize_subset` (each
#: step durable before the next).
_SUBSET_COPY_BYTES = 32 << 20


def is_subset_for(path, identity):
    """Whether ``path`` is a store :func:`finalize_subset` cut from a writer of ``identity``."""
    try:
        with FeatureStore(path) as store:
            return store.metadata.get(SUBSET_OF_ATTR) == canonical_json(identity)
    except (UnsupportedFormatError, OSError):
        return False


class StoreWriter(ClosingMixin):
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
        progress made for other images, labels, keys, features or metadata
        (or a damaged ``data.h5``), instead of raising. A finished store
        with the same content is reused either way.
    wait : bool or float, default=True
        If another writer (another process) is writing this store: ``True``
        waits for it to finish (saying so once on stderr, with its pid),
        then carries on from what it left (a finished store with the same
        content is done); ``False`` raises :class:`StoreLockedError` at
        once; a number waits at most that many seconds. A second writer of
        a store in the same process, while the first is open, raises at
        once whatever ``wait`` says.
    check_space : bool, default=False
        Check, before creating anything, that the rows still to write fit
        on the disk (:func:`check_disk_space`); if not, raise
        :class:`InsufficientDiskSpaceError` and leave the folder as it was.
    verbose : int, default=0
        With ``check_space``, print the size of the rows and the free space.

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
    StoreLockedError
        Another writer is writing the store and ``wait`` does not allow to
        wait for it.
    InsufficientDiskSpaceError
        ``check_space=True`` and the rows would not fit.
    OSError
        Any failure to read or write the store's files names the file and
        the store, and keeps its errno (``ENOSPC``, ``EFBIG``...).

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
                 metadata=None, chunk_rows=None, overwrite=False, wait=True, check_space=False,
                 verbose=0):
        self._data = None  # first: close() works whatever fails below
        self._store_lock = None
        self.path = os.path.abspath(os.fspath(path))
        self.partial_dir = self.path + ".partial"
        self._partial = PartialFolder(self.partial_dir)
        self._paths = [os.fspath(p) for p in paths]
        for p in self._paths:
            if not isinstance(p, str):
                raise TypeError(f"paths must be str or path-like; got {p!r}.")
        self.n_rows = len(self._paths)
        self.n_features = operator.index(n_features)
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1; got {n_features}.")
        self.dtype = check_storage_dtype(dtype)
        _refuse_mixed_labels(labels, self.path)
        self._labels, self._labels_kind = _normalize_labels(labels, self.n_rows)
        self._keys = _normalize_keys(keys, self.n_rows)
        self.metadata = _check_metadata(metadata)
        if chunk_rows is not None:
            chunk_rows = operator.index(chunk_rows)
            if chunk_rows < 1:
                raise ValueError(f"chunk_rows must be None or >= 1; got {chunk_rows}.")
        self.chunk_rows = chunk_rows
        self.overwrite = bool(overwrite)
        if not (isinstance(wait, bool) or (isinstance(wait, (int, float)) and wait >= 0)):
            raise ValueError(f"wait must be True, False or a number of seconds >= 0; got {wait!r}.")
        self.wait = wait
        self._data = DataFile(self._partial.data_path, store_path=self.path, n_rows=self.n_rows,
                              n_features=self.n_features, dtype=self.dtype)
        self._store_dtype = self._data.dtype
        self._row_nbytes = self._data.row_nbytes
        self._identity = {
            "n_rows": self.n_rows,
            "n_features": self.n_features,
            "storage_dtype": self.dtype,
            "paths_sha256": _hash_strings(self._paths),
            "labels_sha256": _hash_labels(self._labels, self._labels_kind),
            "keys_sha256": "" if self._keys is None else sha256(self._keys.tobytes()),
            "metadata_sha256": sha256(canonical_json(self.metadata)),
        }
        self._lock = threading.Lock()
        self._finished = False
        self._closed = False
        self._create_pending = False  # the partial folder is made at the first write
        self._done = np.zeros(self.n_rows, dtype=bool)
        if check_space and not os.path.isdir(os.path.dirname(self.path)):
            self._check_space(verbose)  # nothing there to resume: before making the folder
        self._store_lock = StoreLock(self.path)
        try:
            self._start()
            if self._finished:
                self._store_lock.release()
            elif check_space:
                self._check_space(verbose)
        except BaseException:
            self.close()
            raise

    # -- setup
    def _start(self):
        lock_error = None
        try:
            self._store_lock.acquire(self.wait)
        except OSError as e:  # StoreLockedError included
            if not os.path.exists(self.path) or not read_only(e):
                raise
            lock_error = e  # a read-only folder: fine if the store is finished
        if os.path.exists(self.path):
            diff, finished_identity = self._differences_with_finished()
            if diff and not self.overwrite and is_subset_for(self.path, self._identity):
                diff = ""
            if not diff:
                self._finished = True
                self._done[:] = True
                if lock_error is None:
                    self._remove_leftover(finished_identity)
                return
            if lock_error is not None:
                raise lock_error
            if not self.overwrite:
                raise FileExistsError(
                    errno.EEXIST,
                    f"{self.path} already exists and differs from what is being written "
                    f"({diff}). Pass overwrite=True to replace it, or choose another path",
                    self.path,
                )
        if lock_error is not None:
            raise lock_error
        try:
            manifest = self._partial.read_manifest()
        except UnsupportedFormatError:
            if not self.overwrite:
                raise
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
        if manifest is not None and self._data.exists():
            try:
                self._data.open()
            except DamagedDataFile as e:
                if not self.overwrite:
                    raise e.error from e.__cause__
            else:
                with naming_errors(self.path, self._partial.journal_dir, "read the journal of"):
                    self._partial.load_journal(self._done)
                return
        # nothing to resume (what is there is discarded at the first write)
        self._create_pending = True

    def _differences_with_finished(self):
        """``(what differs, identity)`` of the finished store at ``path``: ``""`` if it
        holds the same content; its identity attributes (None if unreadable)."""
        try:
            with FeatureStore(self.path) as store:
                attrs = store.metadata
        except (UnsupportedFormatError, OSError) as e:
            return f"not a readable skbottleneck store: {e}", None
        changed = [k for k, v in self._identity.items() if attrs.get(k) != v]
        identity = {k: attrs.get(k) for k in self._identity}
        subset_of = attrs.get(SUBSET_OF_ATTR)
        return ", ".join(f"other {k.replace('sha256', '')}" for k in changed), (identity, subset_of)

    def _remove_leftover(self, finished):
        """Remove a partial folder left by a finalize killed after its rename (possibly
        half deleted, manifest first). Progress of another run is kept."""
        if not self._partial.exists():
            return
        theirs = self._partial.manifest_identity()
        identity, subset_of = finished
        if theirs in (None, self._identity, identity) or (
                isinstance(theirs, dict) and canonical_json(theirs) == subset_of):
            self._partial.remove_quietly()

    def _check_space(self, verbose):
        n = int(np.count_nonzero(~self._done))
        if n:
            check_disk_space(os.path.dirname(self.path), n * self._row_nbytes,
                             what=f"features of {n} images x {self.n_features} x "
                                  f"{self._store_dtype.itemsize} bytes", verbose=verbose)

    def _ensure_open(self):
        """Before writing (``self._lock`` held): refuse if closed; create the partial
        folder at the first write."""
        if self._closed or (not self._data.is_open and not self._create_pending):
            raise ValueError(f"This StoreWriter of {self.path} is closed; create a new one "
                             "to resume.")
        if self._create_pending:
            self._create()

    def _create(self):
        """Make the partial folder: manifest, then ``data.h5``."""
        with naming_errors(self.path, self.partial_dir, "create the folder of"):
            if self._partial.exists():
                self._partial.remove()  # another run's progress, or a killed start: discarded
            self._partial.write_manifest(store_path=self.path, identity=self._identity,
                                         chunk_rows=self.chunk_rows, metadata=self.metadata)
        self._done[:] = False
        self._data.create(attrs={"metadata": self.metadata, "identity": self._identity},
                          paths=self._paths, labels=self._labels, labels_kind=self._labels_kind,
                          keys=self._keys, chunk_rows=self.chunk_rows)
        self._data.open()
        self._create_pending = False

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
        with np.errstate(over="ignore"):  # an overflow is refused just below
            feats = np.ascontiguousarray(features, dtype=self._store_dtype)
        check_storable(features, feats, where=self.path)
        with self._lock:
            if self._finished:
                raise RuntimeError(f"{self.path} is already finalized.")
            self._ensure_open()
            self._data.write_rows(rows, feats)
            with naming_errors(self.path, self._partial.journal_dir,
                               "record the rows written in the journal of"):
                self._partial.record(np.unique(rows))
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
                self._ensure_open()  # (created here if there are no rows at all)
                self._data.flush()
                self._publish(self._data.path)
        return FeatureStore(self.path)

    def _publish(self, finished_file):
        """Rename a durable, complete store file onto :attr:`path`; drop the partial
        folder and the lock."""
        self._data.close()  # before the rename (Windows renames no open file)
        try:
            with naming_errors(self.path, finished_file, "publish (rename into place)"):
                os.replace(finished_file, self.path)
        except BaseException:
            self._closed = True  # the partial folder is intact: a new writer resumes
            self._store_lock.release()
            raise
        fsync_dir(os.path.dirname(self.path))
        self._finished = True
        self._partial.remove_quietly()
        self._store_lock.release()

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
        if self.finished:
            return FeatureStore(self.path)
        missing = rows[~self._done[rows]]
        if len(missing):
            raise ValueError(
                f"{len(missing)} of the rows to keep in {self.path} have not been written yet "
                f"(first: row {missing[0]}, {self._paths[missing[0]]!r})."
            )
        meta = dict(self.metadata)
        meta.update(metadata or {})
        meta[SUBSET_OF_ATTR] = canonical_json(self._identity)
        sub = type(self)(
            os.path.join(self.partial_dir, "subset.h5"),
            paths=[self._paths[r] for r in rows],
            labels=None if self._labels is None else self._labels[rows],
            keys=None if self._keys is None else [k.tobytes() for k in self._keys[rows]],
            n_features=self.n_features, dtype=self.dtype, metadata=meta,
            chunk_rows=self.chunk_rows, overwrite=True,
        )
        try:
            with self._lock:
                step = max(1, _SUBSET_COPY_BYTES // self._row_nbytes)
                todo = sub.missing_rows()
                for i in range(0, len(todo), step):
                    dst = todo[i:i + step]
                    block = np.empty((len(dst), self.n_features), dtype=self._store_dtype)
                    self._data.read_rows(rows[dst], block)
                    sub.write_rows(dst, block)
                sub.finalize().close()
                self._publish(sub.path)
        finally:
            sub.close()  # its lock too, whatever happened (a rerun takes it again)
        return FeatureStore(self.path)

    def close(self):
        """Release the file handle and the store's lock (the progress stays on disk).

        Waits for a :meth:`write_rows` in progress in another thread.
        """
        with getattr(self, "_lock", None) or threading.Lock():
            self._closed = True
            if self._data is not None:
                self._data.close()
            if self._store_lock is not None:
                self._store_lock.release()

    def __repr__(self):
        return (f"StoreWriter({self.path!r}, n_rows={self.n_rows}, n_features={self.n_features}, "
                f"done={int(self._done.sum())})")


def _label_kind(value):
    """``"strings"``, ``"booleans"``, ``"numbers"`` or the type's name: what a label is."""
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        return "strings"
    if isinstance(value, (bool, np.bool_)):
        return "booleans"
    if isinstance(value, numbers.Number):
        return "numbers"
    return type(value).__name__


def _refuse_mixed_labels(labels, path):
    """Refuse labels of several kinds (``[1, "1", 2, "cat"]``).

    Stored in one column they would become one type, strings, and merge
    ``1`` with ``"1"`` without a word.
    """
    if labels is None or (isinstance(labels, np.ndarray) and labels.dtype.kind != "O"):
        return
    examples = {}
    for value in np.asarray(labels, dtype=object).ravel():
        seen = examples.setdefault(_label_kind(value), [])
        if len(seen) < 3 and value not in seen:
            seen.append(value)
    if len(examples) > 1:
        kinds = " and ".join(f"{kind} (e.g. {', '.join(map(repr, seen))})"
                             for kind, seen in examples.items())
        raise TypeError(
            f"The labels of {path} mix {kinds}. In one store they would all become strings, "
            "and 1 and '1' one class. Give labels of one type, e.g. [str(v) for v in labels]."
        )

