"""The in-memory index of a cache folder: which shard and row hold each key.

One index per folder and process (:func:`get_index`), shared by every
:class:`~skbottleneck.cache.FeatureCache` of that folder, so repeated
transforms do not rescan the shards. A look-up lists ``shards/`` only when
its modification time changed, and opens only the shards it has not seen;
a damaged shard (unreadable when opened, or rows not matching their
checksums when read) is moved to ``quarantine/`` with a
:class:`~skbottleneck.store.StoreWarning`.
"""

import os
import threading
import time
import warnings

import numpy as np

from ..fileio import StoreWarning
from ._format import ROW_BITS, SHARD_RE
from ._shards import ShardVersionError, open_shard

__all__ = ["get_index"]


class _CacheIndex:
    """In-memory index ``key -> (shard, row)`` of one cache folder.

    Parameters
    ----------
    directory : str
        The folder of one fingerprint (``cache_dir/<fingerprint_id>``).
    dtype : dtype
        Its storage dtype.

    Attributes
    ----------
    lock : threading.RLock
        Held by every user of the index.
    shards : dict
        ``name -> _Shard`` of the live shards.
    by_no : list
        ``shard number -> _Shard`` (``None`` once removed).
    where : dict
        ``key -> (shard number << 32) | row``.
    n_features : int or None
        Features per row; ``None`` until a shard is indexed.
    n_vanished : int
        Shards listed that were gone when opened (merged away by a
        compaction between the listing and the opening): a reader that
        misses keys after such a race looks again.
    """

    def __init__(self, directory, dtype):
        self.directory = directory
        self.shard_dir = os.path.join(directory, "shards")
        self.dtype = np.dtype(dtype)
        self.lock = threading.RLock()
        self.shards = {}
        self.by_no = []
        self.where = {}
        self.skipped = set()  # names of files ignored (unknown version...)
        self.n_features = None
        self.dir_signature = None  # (device, inode, mtime) of shards/ at the last listing
        self.dir_settled = False
        self.n_vanished = 0

    @property
    def n_live(self):
        return len(self.shards)

    def list_shards(self):
        try:
            return set(os.listdir(self.shard_dir))
        except FileNotFoundError:
            return set()

    def refresh(self):
        """Index shards that appeared since the last look, drop vanished ones.

        The folder is not even listed when its modification time has not
        changed since a listing made more than 2 s after that time (so that
        a coarse timestamp cannot hide a change); Windows always lists.
        """
        try:
            st = os.stat(self.shard_dir)
            signature = (st.st_dev, st.st_ino, st.st_mtime_ns)
        except OSError:
            signature = None
        if signature is not None and signature == self.dir_signature and self.dir_settled:
            return
        now = time.time_ns()
        self.dir_signature = signature
        self.dir_settled = (os.name != "nt" and signature is not None
                            and now - signature[2] > 2_000_000_000)
        listing = self.list_shards()
        gone = [name for name in self.shards if name not in listing]
        if gone:
            # A compaction renames its merged shard into place before deleting
            # the sources, but one listing racing with both may see neither:
            # a second listing, started after the deletion, sees the merged one.
            listing = self.list_shards()
            gone = [name for name in self.shards if name not in listing]
        new = sorted(name for name in listing.difference(self.shards, self.skipped)
                     if SHARD_RE.match(name))
        if gone:
            for name in gone:
                shard = self.shards.pop(name)
                self.by_no[shard.no] = None
            self._rebuild()
        for name in new:
            shard = self._open_shard(name)
            if shard is not None:
                self.add(shard)

    def _rebuild(self):
        self.where = {}
        for shard in self.by_no:
            if shard is not None:
                base = shard.no << ROW_BITS
                self.where.update(zip(shard.keys, range(base, base + len(shard.keys))))

    def add(self, shard):
        """Index a shard (its keys then point to it)."""
        if self.n_features is None:
            self.n_features = shard.n_features
        shard.no = len(self.by_no)
        self.by_no.append(shard)
        self.shards[shard.name] = shard
        base = shard.no << ROW_BITS
        self.where.update(zip(shard.keys, range(base, base + len(shard.keys))))

    def remove(self, names):
        """Forget shards (merged away)."""
        for name in names:
            shard = self.shards.pop(name, None)
            if shard is not None:
                self.by_no[shard.no] = None
        self._rebuild()

    def _open_shard(self, name):
        """Validate and index one shard file; ``None`` if it must be ignored."""
        path = os.path.join(self.shard_dir, name)
        try:  # errors of the file system (permissions, too many open files) are not damage
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        except FileNotFoundError:  # removed by a compaction since the listing
            self.n_vanished += 1
            return None
        except OSError as e:
            self.skipped.add(name)
            warnings.warn(f"Cannot open cache shard {path} ({e}); its entries are treated as "
                          "missing.", StoreWarning, stacklevel=4)
            return None
        try:
            return open_shard(path, size, self.dtype, self.n_features)
        except ShardVersionError as e:
            self.skipped.add(name)
            warnings.warn(f"Ignoring cache shard {path}: {e}. Its entries are treated as missing.",
                          StoreWarning, stacklevel=4)
            return None
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            # the file opened but HDF5 cannot parse it, or it is not a shard: damaged
            if not os.path.exists(path):  # removed by a compaction meanwhile
                self.n_vanished += 1
                return None
            self.quarantine(path, e)
            return None

    def quarantine(self, path, reason, stacklevel=4):
        """Move a damaged shard to ``quarantine/`` (or ignore it), with a warning naming it.

        Never raises: a shard that cannot be moved (read-only folder...) is
        left in place and ignored by this process, and the warning says why.
        """
        name = os.path.basename(path)
        qdir = os.path.join(self.directory, "quarantine")
        target = os.path.join(qdir, name)
        try:
            os.makedirs(qdir, exist_ok=True)
            os.replace(path, target)
            where = f"moved to {target}"
        except FileNotFoundError:  # moved or merged away by another process meanwhile
            where = "removed meanwhile"
        except OSError as e:
            self.skipped.add(name)
            where = (f"left in place and ignored (it could not be moved to the feature cache's "
                     f"quarantine folder {qdir}: {e.strerror or e})")
        warnings.warn(
            f"Cache shard {path} is damaged ({type(reason).__name__}: {reason}); it was "
            f"{where}, and its entries will be computed again.",
            StoreWarning, stacklevel=stacklevel,
        )

    def drop_damaged(self, shard, reason, stacklevel=5):
        """Quarantine an indexed shard found damaged and forget its keys."""
        self.quarantine(shard.path, reason, stacklevel=stacklevel)
        self.skipped.add(shard.name)  # not indexed again if it could not be moved
        self.remove([shard.name])


_indexes = {}  # (realpath, pid) -> _CacheIndex
_indexes_lock = threading.Lock()


def get_index(directory, dtype):
    """The index of ``directory`` in this process (created on first use)."""
    key = (os.path.realpath(directory), os.getpid())
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:
            for k in [k for k in _indexes if k[1] != os.getpid()]:
                del _indexes[k]  # inherited through fork: not ours
            index = _indexes[key] = _CacheIndex(directory, dtype)
        return index
