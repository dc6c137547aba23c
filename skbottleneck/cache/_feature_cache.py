"""The feature cache: feature vectors stored under the content key of their image.

:class:`FeatureCache` looks keys up, reads and writes rows; the index
(:mod:`._index`), the shard files (:mod:`._shards`) and the compaction
(:mod:`._compaction`) do the work below it.
"""

import errno
import json
import os
import time

import numpy as np

from ..chunks import check_storable
from ..fileio import (
    canonical_json,
    check_storage_dtype,
    json_default,
    named_os_error,
    output_dtype,
    write_file_atomic,
)
from ._checksums import key_words, row_digests
from ._compaction import compact
from ._format import CACHE_FORMAT_VERSION, CACHE_SCHEMA, KEY_LENGTH, ROW_BITS, new_shard_name
from ._index import get_index
from ._keys import check_keys, fingerprint_id
from ._shards import ShardChecksumError, _Shard, read_shard_rows, shard_image

__all__ = ["FeatureCache"]


class FeatureCache:
    """Content-keyed, crash-safe, multi-process cache of feature vectors.

    Features are stored under a key of the image's content
    (:func:`file_key`) in a folder per model fingerprint:
    ``cache_dir/<fingerprint_id>/``. Each :meth:`write` adds one immutable
    HDF5 shard, written to a temporary name, fsynced and renamed into
    ``shards/``: a kill at any moment loses at most the batch being
    written, and several processes can write at once (a key written twice
    holds the same features). :meth:`compact` merges small shards.

    Every row is stored with a 64-bit checksum of its bytes and its key
    (XXH3), verified each time it is read: the cache never serves a row
    whose bytes changed on disk. A damaged shard (unreadable, or rows not
    matching their checksums) is reported (:class:`StoreWarning` naming
    the file), moved to ``quarantine/`` and its keys are reported missing,
    so they are computed again. Shards written by skbottleneck versions
    before the checksums (same format version, no ``checksums`` dataset)
    are still read, unverified; :meth:`compact` gives their rows checksums.
    An ``OSError`` while writing names the file and says it is the feature
    cache, keeping the cause's ``errno``.

    Parameters
    ----------
    cache_dir : str or path-like
        Root cache folder (see :func:`get_cache_dir`).
    fingerprint : dict
        Everything that changes the features: backbone, weights identity,
        layer, pooling, input size, preprocessing, dtype, format version...
        JSON-serialisable; key order does not matter.
    dtype : {"float32", "float16", "float64"}, default="float32"
        Storage dtype. ``"float16"`` halves the disk space; rows are read
        back as float32.
    metadata : dict, default=None
        Reproducibility information (library versions, weights hash...)
        recorded in ``fingerprint.json`` and in every shard.

    Attributes
    ----------
    path : str
        The folder of this fingerprint: ``cache_dir/<fingerprint_id>``.
    fingerprint_id : str
        See :func:`fingerprint_id`.
    n_features : int or None
        Length of the cached vectors; ``None`` while the cache is empty.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.cache import FeatureCache
    >>> cache = FeatureCache(tmp_dir, {"backbone": "mobilenet_v2", "pooling": "avg"})
    >>> keys = [b"a" * 20, b"b" * 20]
    >>> cache.lookup(keys)
    array([False, False])
    >>> cache.write(keys, np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> cache.lookup([b"b" * 20, b"c" * 20])
    array([ True, False])
    >>> cache.read([b"b" * 20, b"a" * 20])
    array([[3., 4., 5.],
           [0., 1., 2.]], dtype=float32)
    """

    def __init__(self, cache_dir, fingerprint, *, dtype="float32", metadata=None):
        self.cache_dir = os.path.abspath(os.fspath(cache_dir))
        self.fingerprint = fingerprint
        self.dtype = check_storage_dtype(dtype)
        self.metadata = dict(metadata or {})
        self.fingerprint_id = fingerprint_id(fingerprint, self.dtype)
        self.path = os.path.join(self.cache_dir, self.fingerprint_id)
        self._metadata_json = canonical_json(self.metadata)
        self._ensure_dirs()

    # -- folders
    def _ensure_dirs(self):
        shard_dir = os.path.join(self.path, "shards")
        try:
            os.makedirs(shard_dir, exist_ok=True)
        except OSError as e:
            raise named_os_error(e, "create the feature cache folder", shard_dir) from e
        fp_json = os.path.join(self.path, "fingerprint.json")
        if not os.path.exists(fp_json):
            doc = {"schema": CACHE_SCHEMA, "format_version": CACHE_FORMAT_VERSION,
                   "fingerprint_id": self.fingerprint_id, "fingerprint": self.fingerprint,
                   "storage_dtype": self.dtype, "metadata": self.metadata,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            data = json.dumps(doc, indent=1, sort_keys=True, default=json_default).encode()
            try:
                write_file_atomic(fp_json, data)
            except OSError as e:
                raise named_os_error(e, "write the feature cache file", fp_json) from e

    @property
    def _index(self):
        return get_index(self.path, self.dtype)

    @property
    def n_features(self):
        index = self._index
        with index.lock:
            if index.n_features is None:
                index.refresh()
            return index.n_features

    def __len__(self):
        index = self._index
        with index.lock:
            index.refresh()
            return len(index.where)

    def __contains__(self, key):
        return bool(self.lookup([key])[0])

    def __repr__(self):
        return f"FeatureCache({self.cache_dir!r}, id={self.fingerprint_id!r}, dtype={self.dtype!r})"

    def __getstate__(self):
        return {"cache_dir": self.cache_dir, "fingerprint": self.fingerprint,
                "dtype": self.dtype, "metadata": self.metadata}

    def __setstate__(self, state):
        self.__init__(state["cache_dir"], state["fingerprint"], dtype=state["dtype"],
                      metadata=state["metadata"])

    # -- reading
    def lookup(self, keys):
        """Which keys have cached features.

        Indexes the shards written (by any process) since the last look:
        one directory listing when nothing changed.

        Parameters
        ----------
        keys : sequence of bytes
            Content keys (:func:`file_key`).

        Returns
        -------
        found : ndarray of bool, shape (n_keys,)
        """
        keys = check_keys(keys)
        index = self._index
        with index.lock:
            index.refresh()
            where = index.where
            return np.fromiter((k in where for k in keys), dtype=bool, count=len(keys))

    def read(self, keys, out=None):
        """Cached features of ``keys``, in the given order, each row verified.

        Rows are grouped by shard and read in sorted order, neighbours in
        one system call; each row is checked against its checksum. A shard
        removed meanwhile by a compaction is looked up again; a shard whose
        rows do not match their checksums is moved to ``quarantine/`` with
        a :class:`StoreWarning` naming it, and its keys are missing from
        then on. Rows of shards written before checksums existed are read
        unverified.

        Parameters
        ----------
        keys : sequence of bytes
            Keys that :meth:`lookup` reported present.
        out : ndarray of shape (n_keys, n_features), default=None
            Where to put the rows; a new array (float32 for float16
            storage, else the storage dtype) when ``None``.

        Returns
        -------
        features : ndarray of shape (n_keys, n_features)

        Raises
        ------
        KeyError
            Some keys are not in the cache (never written, or in a shard
            found damaged by this read).

        See Also
        --------
        read_available : the rows that can be served, without raising.
        """
        keys = check_keys(keys)
        index = self._index
        with index.lock:
            if index.n_features is None:
                index.refresh()
            out = self._check_out(out, len(keys), index)
            pending = np.arange(len(keys))
            damaged = set()
            for attempt in range(8):
                if attempt:
                    # New shards, or a race with compactions: the listing held
                    # a merged shard that a second compaction merged away before
                    # it could be opened. Look again, giving them time to finish.
                    time.sleep(0.002 * (attempt - 1))
                    index.refresh()
                pending, _ = self._fill(index, keys, pending, out, damaged)
                if not len(pending) or all(keys[i] in damaged and keys[i] not in index.where
                                           for i in pending.tolist()):
                    break  # all read, or what is missing was lost with a damaged shard
            if len(pending):
                n_bad = sum(keys[i] in damaged for i in pending.tolist())
                bad = (f"; {n_bad} of them were in a damaged shard, now quarantined "
                       "(see the StoreWarning)" if n_bad else "")
                raise KeyError(
                    f"{len(pending)} of the {len(keys)} keys are not in the cache "
                    f"{self.path} (first: {keys[pending[0]].hex()}){bad}; call lookup() first."
                )
            return out

    def read_available(self, keys, out=None):
        """The cached features of those ``keys`` that can be served, each row verified.

        Like :meth:`read`, but a key that is not in the cache, or whose shard
        proves damaged (rows not matching their checksums: the shard is
        moved to ``quarantine/`` with a :class:`StoreWarning` naming it), is
        reported not found instead of raising: compute its features again.

        Parameters
        ----------
        keys : sequence of bytes
            Content keys (:func:`file_key`).
        out : ndarray of shape (n_keys, n_features), default=None
            Where to put the rows; a new array (float32 for float16
            storage, else the storage dtype) when ``None``.

        Returns
        -------
        features : ndarray of shape (n_keys, n_features)
            Rows of keys not found are undefined. ``n_features`` is 0 while
            the cache is empty (and ``out`` is not given).
        found : ndarray of bool, shape (n_keys,)
            Which rows of ``features`` hold the cached features.

        Examples
        --------
        >>> import numpy as np
        >>> from skbottleneck.cache import FeatureCache
        >>> cache = FeatureCache(tmp_dir, {"backbone": "toy"})
        >>> cache.write([b"a" * 20], np.ones((1, 2), np.float32))
        >>> features, found = cache.read_available([b"b" * 20, b"a" * 20])
        >>> found
        array([False,  True])
        >>> features[found]
        array([[1., 1.]], dtype=float32)
        """
        keys = check_keys(keys)
        index = self._index
        found = np.zeros(len(keys), dtype=bool)
        with index.lock:
            if index.n_features is None:
                index.refresh()
            if index.n_features is None:  # an empty cache
                if out is None:
                    out = np.empty((len(keys), 0), output_dtype(self.dtype))
                return out, found
            out = self._check_out(out, len(keys), index)
            pending = np.arange(len(keys))
            for attempt in range(8):
                vanished = index.n_vanished
                if attempt:
                    # the first look uses the index as it is; keys missing from
                    # it: shards written since? The later ones: a race with
                    # compactions (see read), given time to finish
                    time.sleep(0.002 * (attempt - 1))
                    index.refresh()
                pending, racing = self._fill(index, keys, pending, out, set())
                if not len(pending) or (attempt and not racing
                                        and index.n_vanished == vanished):
                    break
            found[:] = True
            found[pending] = False
            return out, found

    def _check_out(self, out, n, index):
        d = index.n_features or 0
        if out is None:
            return np.empty((n, d), dtype=output_dtype(self.dtype))
        if out.shape != (n, d):
            raise ValueError(f"out must have shape {(n, d)}; got {out.shape}.")
        return out

    @staticmethod
    def _fill(index, keys, pending, out, damaged):
        """Read the rows of ``keys[pending]`` that the index holds into ``out``.

        Returns the positions (of ``pending``) not read: keys missing, in a
        shard removed meanwhile, or in a shard found damaged (quarantined;
        its keys are added to ``damaged``); and whether a shard was removed
        or dropped meanwhile (looking again may find those keys elsewhere).
        Holds ``index.lock``.
        """
        get = index.where.get
        wanted = keys if len(pending) == len(keys) else [keys[i] for i in pending.tolist()]
        codes = np.fromiter((get(k, -1) for k in wanted), dtype=np.int64, count=len(wanted))
        have = codes >= 0
        not_read = [pending[~have]]
        codes, dst = codes[have], pending[have]
        if len(codes) == 0:
            return not_read[0], False
        nos = codes >> ROW_BITS
        rows = codes & ((1 << ROW_BITS) - 1)
        order = np.argsort(nos, kind="stable")
        snos = nos[order]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(snos)) + 1, [len(snos)]))
        racing = False
        for g in range(len(bounds) - 1):
            sel = order[bounds[g]:bounds[g + 1]]
            shard = index.by_no[int(snos[bounds[g]])]
            try:
                if shard is None:
                    raise FileNotFoundError(errno.ENOENT, "shard removed")
                read_shard_rows(shard, rows[sel], dst[sel], out)
            except FileNotFoundError:
                not_read.append(dst[sel])  # merged away meanwhile: look again
                racing = True
            except (ShardChecksumError, OSError) as e:
                if isinstance(e, OSError) and e.errno != errno.EIO:
                    # not damage (permissions, too many open files...): say which file
                    raise named_os_error(e, "read the feature cache shard", shard.path) from e
                # rows not matching their checksums, or the file shorter than
                # its data (truncated since it was indexed), or unreadable
                damaged.update(shard.keys)
                index.drop_damaged(shard, e, stacklevel=5)
                not_read.append(dst[sel])  # perhaps also in another shard
                racing = True
        return np.sort(np.concatenate(not_read)), racing

    # -- writing
    def write(self, keys, features):
        """Add features to the cache: one immutable shard, written atomically.

        Parameters
        ----------
        keys : sequence of bytes
            Content keys (:func:`file_key`), 20 bytes each.
        features : array-like of shape (n_keys, n_features)
            Converted to the storage dtype.

        Raises
        ------
        ValueError
            A key is not 20 bytes long, ``features`` has another shape, or
            another number of features than the cache holds.
        OSError
            The shard could not be written (disk full, no permission...):
            the message names the file and says it is the feature cache;
            the ``errno`` is the cause's (``errno.ENOSPC`` for a full disk),
            which is kept as ``__cause__``. Nothing is left behind.
        """
        keys = check_keys(keys)
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[0] != len(keys):
            raise ValueError(
                f"features must have shape (n_keys, n_features) = ({len(keys)}, ...); "
                f"got {features.shape}."
            )
        for i, k in enumerate(keys):
            if len(k) != KEY_LENGTH:
                raise ValueError(
                    f"cache keys must be {KEY_LENGTH} bytes long (the digests of file_key); "
                    f"key {i} is {len(k)} bytes long: {k[:32]!r}."
                )
        if not keys:
            return
        index = self._index
        d = features.shape[1]
        if index.n_features is None:
            with index.lock:
                index.refresh()
        known = index.n_features
        if known is not None and d != known:
            raise ValueError(f"This cache holds {known} features per image; got {d}.")
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_LENGTH)
        with np.errstate(over="ignore"):  # an overflow is refused just below
            feats = np.ascontiguousarray(features, dtype=np.dtype(self.dtype).newbyteorder("<"))
        check_storable(features, feats, where=f"The feature cache {self.path}")
        digests = row_digests(feats)
        image, offset = shard_image(key_arr, feats, checksums=digests ^ key_words(key_arr),
                                    **self._shard_attrs)
        name = new_shard_name()
        path = os.path.join(self.path, "shards", name)
        try:
            write_file_atomic(path, image)
        except OSError as e:
            if not isinstance(e, FileNotFoundError):
                raise named_os_error(e, "write the feature cache shard", path) from e
            self._ensure_dirs()  # the folder was removed by clear_cache meanwhile
            try:
                write_file_atomic(path, image)
            except OSError as e2:
                raise named_os_error(e2, "write the feature cache shard", path) from e2
        shard = _Shard(name, path, list(keys), d, self.dtype, offset, len(image), digests=digests)
        with index.lock:
            if index.n_features is not None and d != index.n_features:
                return  # pragma: no cover - raced by another writer of another width
            index.add(shard)

    @property
    def _shard_attrs(self):
        """What every shard of this cache records about it (see ``set_shard_attrs``)."""
        return {"fingerprint_id": self.fingerprint_id, "dtype": self.dtype,
                "metadata_json": self._metadata_json}

    # -- compaction
    def compact(self, min_shards=16, *, target_bytes=256 * 2**20):
        """Merge small shards into bigger ones.

        Shards smaller than ``target_bytes / 4`` are copied, row block by
        row block (bounded memory), into merged shards of about
        ``target_bytes`` (duplicate keys kept once); each merged shard is
        written under a temporary name, fsynced and renamed before its
        sources are deleted. Readers that listed a deleted shard look the
        keys up again. One process compacts at a time (a lock file); the
        others return at once. A shard is deleted only once each of its
        rows is in a merged shard or another live one; shards of keys of
        another length than 20 bytes (which an older skbottleneck could
        write) are left as they are. Also deletes temporary files older
        than an hour (left by killed writers). Each row copied is first
        checked against its checksum, and its checksum copied with it (rows
        of shards without checksums get them); a shard whose rows do not
        match is quarantined (:class:`StoreWarning`) instead of merged. A
        failure to write the merged shard (disk full...) stops the
        compaction with a :class:`StoreWarning` naming the file; no row is
        lost.

        Parameters
        ----------
        min_shards : int, default=16
            Do nothing unless at least this many small shards exist.
        target_bytes : int, default=256 MiB
            Size of a merged shard.

        Returns
        -------
        n_merged : int
            Number of shards merged away (0 when nothing was done).
        """
        return compact(self._index, self._shard_attrs, min_shards, target_bytes=target_bytes)
