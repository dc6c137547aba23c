"""Compaction of a cache folder: many small shards merged into a few big ones.

A merged shard is written under a temporary name, fsynced and renamed into
``shards/`` before its sources are deleted, so a kill leaves at worst
duplicates (same features), which the next compaction drops. A source is
deleted only when each of its rows is in the merged shard or in another
live shard. Each row copied is verified against its checksum and the
checksums are copied with it (rows of shards without checksums get them
now); a source whose rows do not match is quarantined, not merged.
"""

import errno
import os
import warnings

import numpy as np

from ..fileio import (
    MAX_SPAN_BYTES,
    FileLock,
    StoreWarning,
    create_preallocated,
    fsync_dir,
    named_os_error,
    pwrite,
    remove_stale_tmp,
    tmp_path,
    unlink_quietly,
)
from ._checksums import ShardChecksumError, key_words, row_digests
from ._format import KEY_LENGTH, new_shard_name
from ._shards import _Shard, create_checksums, read_shard_rows, set_shard_attrs

__all__ = ["compact"]


def compact(index, shard_attrs, min_shards=16, *, target_bytes=256 * 2**20):
    """Merge the small shards of the folder of ``index``; see :meth:`FeatureCache.compact`.

    Parameters
    ----------
    index : _CacheIndex
        The index of the cache folder.
    shard_attrs : dict
        ``fingerprint_id``, ``dtype`` and ``metadata_json`` of the merged
        shards (see :func:`~skbottleneck.cache._shards.set_shard_attrs`).
    min_shards : int, default=16
    target_bytes : int, default=256 MiB

    Returns
    -------
    n_merged : int
        Number of shards merged away.
    """
    lock_path = os.path.join(index.directory, "compact.lock")
    lock = FileLock(lock_path)
    try:
        taken = lock.acquire(timeout=0)
    except FileNotFoundError:  # the cache was cleared meanwhile: nothing to merge
        return 0
    except OSError as e:
        raise named_os_error(e, "create the feature cache's lock file", lock_path) from e
    if not taken:  # another process is compacting
        return 0
    try:
        remove_stale_tmp(index.shard_dir)
        with index.lock:
            index.refresh()
            # keys of another length (written by an older skbottleneck) are left
            # where they are: a merged shard holds keys of one length
            small = sorted((s for s in index.shards.values() if s.size < target_bytes // 4
                            and s.key_length in (None, KEY_LENGTH)), key=lambda s: s.name)
            if len(small) < max(int(min_shards), 2):
                return 0
            small_names = {s.name for s in small}
            seen = set()
            for s in index.shards.values():
                if s.name not in small_names:
                    seen.update(s.keys)
            n_merged = 0
            for group in _groups(small, target_bytes):
                try:
                    merged, group = _merge_verified(index, group, seen, shard_attrs)
                except FileNotFoundError:
                    index.refresh()  # a source vanished (clear_cache?): stop here
                    break
                except OSError as e:  # names the merged shard (disk full...)
                    warnings.warn(f"Compaction of the cache {index.directory} stopped: {e}",
                                  StoreWarning, stacklevel=3)
                    break
                if not group:
                    continue
                if merged is not None:
                    index.add(merged)
                for s in group:
                    unlink_quietly(s.path)
                index.remove([s.name for s in group])
                n_merged += len(group)
            return n_merged
    finally:
        lock.release()


def _groups(shards, target_bytes):
    """Consecutive runs of ``shards`` of about ``target_bytes`` each."""
    groups, group, group_bytes = [], [], 0
    for s in shards:
        group.append(s)
        group_bytes += s.size
        if group_bytes >= target_bytes:
            groups.append(group)
            group, group_bytes = [], 0
    if group:
        groups.append(group)
    return groups


def _merge_verified(index, group, seen, shard_attrs):
    """Merge ``group``; a source found damaged is quarantined and the rest merged.

    Returns the merged shard (or ``None``) and the sources merged (their
    rows are in it or in ``seen``); no sources when fewer than 2 are left.
    """
    while len(group) >= 2:
        try:
            return _merge(index.shard_dir, group, seen, shard_attrs), group
        except _DamagedSource as e:
            index.drop_damaged(e.shard, e.reason, stacklevel=6)
            group = [s for s in group if s is not e.shard]
    return None, []


class _DamagedSource(Exception):
    """A source shard proved damaged while being copied (nothing was written)."""

    def __init__(self, shard, reason):
        super().__init__(str(reason))
        self.shard, self.reason = shard, reason


def _merge(shard_dir, sources, seen, shard_attrs):
    """Write one merged shard of the rows of ``sources`` whose keys are not in ``seen``.

    Each row copied is checked against its checksum first. Once the merged
    shard is in place, adds the keys of ``sources`` to ``seen``. Returns
    the merged :class:`_Shard`, or ``None`` when every row of ``sources``
    is already in ``seen`` (nothing to copy: the sources hold only
    duplicates).

    Raises
    ------
    _DamagedSource
        Rows of a source do not match their checksums, or cannot be read
        (nothing written).
    OSError
        Writing the merged shard failed (nothing left behind): the message
        names it; ``FileNotFoundError`` also when a source vanished.
    """
    import h5py

    picks = []  # (shard, rows)
    keys = []
    new_seen = set(seen)
    for s in sources:
        rows = [i for i, k in enumerate(s.keys) if k not in new_seen]
        new_seen.update(s.keys)
        if rows:
            picks.append((s, np.asarray(rows, dtype=np.int64)))
            keys.extend(s.keys[i] for i in rows)
    if not keys:
        seen.update(new_seen)
        return None
    d = sources[0].n_features
    key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_LENGTH)
    dtype = np.dtype(shard_attrs["dtype"]).newbyteorder("<")
    row_nbytes = d * dtype.itemsize
    name = new_shard_name()
    final = os.path.join(shard_dir, name)
    tmp = tmp_path(shard_dir, name)
    digests = np.empty(len(keys), np.uint64)
    try:
        try:
            with h5py.File(tmp, "w") as f:
                set_shard_attrs(f, n_features=d, **shard_attrs)
                f.create_dataset("keys", data=key_arr)
                sums_offset = create_checksums(f, len(keys))
                offset = create_preallocated(f, "features", (len(keys), d), dtype)
            fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except (OSError, RuntimeError) as e:  # HDF5's own writes fail as RuntimeError too
            raise named_os_error(e, "write the merged feature cache shard", final) from e
        try:
            pos = 0
            block = max(1, MAX_SPAN_BYTES // max(1, row_nbytes))
            for s, rows in picks:
                for a in range(0, len(rows), block):
                    r = rows[a:a + block]
                    buf = np.empty((len(r), d), dtype=dtype)
                    try:
                        read_shard_rows(s, r, np.arange(len(r)), buf)  # verified
                    except ShardChecksumError as e:
                        raise _DamagedSource(s, e) from e
                    except OSError as e:  # EIO: shorter than its data, unreadable
                        if e.errno != errno.EIO:
                            raise
                        raise _DamagedSource(s, e) from e
                    digests[pos:pos + len(r)] = (row_digests(buf) if s.digests is None
                                                 else s.digests[r])
                    _write(fd, buf, offset + pos * row_nbytes, final)
                    pos += len(r)
            _write(fd, (digests ^ key_words(key_arr)).astype("<u8"), sums_offset, final)
            try:
                os.fsync(fd)
            except OSError as e:
                raise named_os_error(e, "write the merged feature cache shard", final) from e
        finally:
            os.close(fd)
        try:
            os.replace(tmp, final)
        except OSError as e:
            raise named_os_error(e, "write the merged feature cache shard", final) from e
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(shard_dir)
    seen.update(new_seen)
    return _Shard(name, final, keys, d, shard_attrs["dtype"], offset, os.path.getsize(final),
                  digests=digests)


def _write(fd, data, offset, path):
    try:
        pwrite(fd, data, offset)
    except OSError as e:
        raise named_os_error(e, "write the merged feature cache shard", path) from e
