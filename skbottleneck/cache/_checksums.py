"""Checksums of cached rows: one 64-bit checksum per row, verified on every read.

A shard's dataset ``checksums`` (uint64, ``(n,)``, attribute
``algorithm="xxh3_64-key8"``) holds, for row ``i``::

    checksums[i] = XXH3_64(bytes of features[i], little-endian) XOR u64le(keys[i][:8])

The hash catches bytes flipped in the feature data; the XOR with the key's
first 8 bytes ties each row to its key, so a row served under another key
(rows swapped or misplaced) fails too. The index keeps, per shard, the
*digests* ``checksums XOR u64le(keys[:8])``: what XXH3 of each row's bytes
must give, so a read hashes the rows it read and compares two integer
arrays.

Shards written before the checksums existed (no ``checksums`` dataset), or
with an algorithm this version does not know, are read unverified; a
compaction gives their rows checksums.
"""

import numpy as np
import xxhash

__all__ = ["CHECKSUM_ALGORITHM", "ShardChecksumError", "key_words", "row_digests"]

#: The ``algorithm`` attribute of the ``checksums`` dataset.
CHECKSUM_ALGORITHM = "xxh3_64-key8"
#: Name of the dataset of a shard.
CHECKSUM_DATASET = "checksums"


class ShardChecksumError(ValueError):
    """Rows of a shard do not match their checksums: the shard is damaged.

    Parameters
    ----------
    path : str
        The shard file.
    rows : ndarray of int
        Rows that did not match.
    n_rows : int
        Rows that were checked.
    """

    def __init__(self, path, rows, n_rows):
        self.path, self.rows = path, np.asarray(rows)
        shown = ", ".join(str(int(r)) for r in self.rows[:5])
        more = ", ..." if len(self.rows) > 5 else ""
        super().__init__(
            f"{len(self.rows)} of the {n_rows} rows read from {path} do not match their "
            f"checksums (rows {shown}{more}): its feature data was changed after it was written")


def key_words(keys):
    """The first 8 bytes of each key as a little-endian uint64 (zero-padded).

    Parameters
    ----------
    keys : ndarray of uint8, shape (n, key_length), or list of bytes

    Returns
    -------
    words : ndarray of uint64, shape (n,)

    Examples
    --------
    >>> key_words([b"\\x01" + bytes(19), b"\\x00\\x01" + bytes(18)]).tolist()
    [1, 256]
    """
    if not isinstance(keys, np.ndarray):
        keys = [bytes(k) for k in keys]
        key_len = len(keys[0]) if keys else 0
        if any(len(k) != key_len for k in keys):  # pragma: no cover - one length per shard
            keys = [k[:8].ljust(8, b"\0") for k in keys]
            key_len = 8
        keys = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), key_len)
    words = np.zeros((len(keys), 8), np.uint8)
    w = min(8, keys.shape[1])
    words[:, :w] = keys[:, :w]
    return words.view("<u8").ravel().astype(np.uint64)


def row_digests(data, rows=None):
    """XXH3-64 of the bytes of each row of ``data`` (or of ``data[rows]``).

    Parameters
    ----------
    data : ndarray of shape (n, d)
        C-contiguous, in the stored (little-endian) dtype.
    rows : ndarray of int, default=None
        Rows to hash; all when ``None``.

    Returns
    -------
    digests : ndarray of uint64

    Examples
    --------
    >>> x = np.arange(6, dtype="<f4").reshape(2, 3)
    >>> int(row_digests(x)[1]) == xxhash.xxh3_64_intdigest(x[1].tobytes())
    True
    """
    if not data.flags.c_contiguous:  # pragma: no cover - callers pass contiguous arrays
        data = np.ascontiguousarray(data)
    n = len(data) if rows is None else len(rows)
    row_nbytes = data.shape[1] * data.dtype.itemsize if data.ndim == 2 else 0
    h = xxhash.xxh3_64_intdigest
    if row_nbytes == 0 or data.size == 0:
        return np.full(n, h(b""), dtype=np.uint64)
    view = memoryview(data.reshape(-1)).cast("B")
    starts = (np.arange(n) if rows is None else np.asarray(rows, np.int64)) * row_nbytes
    return np.fromiter((h(view[s:s + row_nbytes]) for s in starts.tolist()),
                       dtype=np.uint64, count=n)
