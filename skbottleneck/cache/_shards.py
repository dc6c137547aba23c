"""Cache shard files: building one, validating one, reading rows out of one.

A shard is an immutable HDF5 file holding root attributes
(``schema="skbottleneck.cache_shard"``, ``format_version``,
``fingerprint_id``, ``n_features``, ``storage_dtype``, ``metadata_json``,
the library versions), a dataset ``keys`` (uint8, ``(n, key_length)``), a
contiguous dataset ``features`` (``(n, d)``, little-endian, uncompressed)
and a dataset ``checksums`` (uint64, ``(n,)``, one per row, see
:mod:`._checksums`), verified whenever rows are read. Shards written before
the checksums existed have no ``checksums``: they are read unverified. A
new shard is built in memory (:func:`shard_image`) and written atomically
by the cache; a merged one is written in place on disk by the compaction.
"""

import os
import secrets
import threading

import numpy as np

from ..fileio import (
    MAX_SPAN_BYTES,
    create_preallocated,
    library_versions,
    raw_layout,
    read_rows_at,
    read_rows_h5,
    read_scalar_attr,
)
from ._checksums import (
    CHECKSUM_ALGORITHM,
    CHECKSUM_DATASET,
    ShardChecksumError,
    key_words,
    row_digests,
)
from ._format import CACHE_FORMAT_VERSION, SHARD_SCHEMA

__all__ = ["ShardChecksumError", "ShardVersionError", "create_checksums", "open_shard",
           "read_shard_rows", "set_shard_attrs", "shard_image"]


class _Shard:
    """One immutable shard file, as indexed.

    Parameters
    ----------
    name, path : str
        File name in ``shards/``, and full path.
    keys : list of bytes
        Key of each row.
    n_features : int
    dtype : numpy.dtype
        Stored dtype of the features (little-endian).
    offset : int or None
        Byte offset of the contiguous features; ``None``: read through h5py.
    size : int
        Bytes of the file.
    no : int, default=-1
        Number given by the index that holds it.
    digests : ndarray of uint64 or None, default=None
        What XXH3-64 of each row's bytes must be (the stored checksums
        XOR the keys' first 8 bytes); ``None``: a shard without checksums,
        read unverified.
    """

    __slots__ = ("name", "path", "keys", "n_features", "dtype", "offset", "size", "no",
                 "digests")

    def __init__(self, name, path, keys, n_features, dtype, offset, size, no=-1, digests=None):
        self.name, self.path, self.keys = name, path, keys
        self.n_features, self.dtype, self.offset, self.size, self.no = (
            n_features, np.dtype(dtype), offset, size, no)
        self.digests = digests

    @property
    def row_nbytes(self):
        return self.n_features * self.dtype.itemsize

    @property
    def key_length(self):
        """Bytes per key (``None`` for a shard without rows)."""
        return len(self.keys[0]) if self.keys else None


class ShardVersionError(ValueError):
    """A shard written in another cache format version (ignored, not damaged)."""


def set_shard_attrs(f, *, fingerprint_id, n_features, dtype, metadata_json):
    """Write the root attributes of a shard into the open h5py file ``f``."""
    f.attrs["schema"] = SHARD_SCHEMA
    f.attrs["format_version"] = np.int64(CACHE_FORMAT_VERSION)
    f.attrs["fingerprint_id"] = fingerprint_id
    f.attrs["n_features"] = np.int64(n_features)
    f.attrs["storage_dtype"] = dtype
    f.attrs["metadata_json"] = metadata_json
    for k, v in library_versions().items():
        f.attrs[k] = v


def create_checksums(f, checksums):
    """The dataset ``checksums`` of the open h5py file ``f`` (uint64, one per row).

    ``checksums`` is an array to store, or an int: the number of rows of a
    dataset allocated now and filled later in place (see
    :func:`~skbottleneck.fileio.create_preallocated`); returns
    then the byte offset of its data.
    """
    if isinstance(checksums, (int, np.integer)):
        offset = create_preallocated(f, CHECKSUM_DATASET, (int(checksums),), "<u8")
        ds = f[CHECKSUM_DATASET]
    else:
        ds = f.create_dataset(CHECKSUM_DATASET, data=np.asarray(checksums, "<u8").reshape(-1))
        offset = None
    ds.attrs["algorithm"] = CHECKSUM_ALGORITHM
    return offset


def shard_image(key_arr, feats, *, checksums=None, **attrs):
    """An in-memory HDF5 shard: its bytes and the features' byte offset.

    Parameters
    ----------
    key_arr : ndarray of uint8, shape (n, key_length)
    feats : ndarray of shape (n, n_features)
        In the storage dtype, little-endian.
    checksums : ndarray of uint64, default=None
        The rows' checksums (:mod:`._checksums`); computed when ``None``.
    **attrs
        ``fingerprint_id``, ``dtype`` and ``metadata_json`` of
        :func:`set_shard_attrs`.

    Returns
    -------
    image : bytes
    offset : int
    """
    import h5py

    if checksums is None:
        checksums = row_digests(feats) ^ key_words(key_arr)
    label = f"skbottleneck-shard-{threading.get_ident()}-{secrets.token_hex(4)}.h5"
    f = h5py.File(label, "w", driver="core", backing_store=False)
    try:
        set_shard_attrs(f, n_features=feats.shape[1], **attrs)
        f.create_dataset("keys", data=key_arr)
        create_checksums(f, checksums)
        ds = f.create_dataset("features", data=feats)
        f.flush()
        offset = ds.id.get_offset()
        image = f.id.get_file_image()
    finally:
        f.close()
    return image, offset


def open_shard(path, size, dtype, n_features=None):
    """Validate the shard file ``path`` (of ``size`` bytes) and read its keys.

    Parameters
    ----------
    path : str
    size : int
        Bytes of the file.
    dtype : numpy.dtype
        Storage dtype the cache expects.
    n_features : int, default=None
        Features per row the cache expects (``None``: any).

    Returns
    -------
    shard : _Shard

    Raises
    ------
    ShardVersionError
        A shard of another format version.
    OSError, KeyError, ValueError, RuntimeError
        Not a readable shard of this cache (damaged, or something else).
    """
    import h5py
    from h5py import h5d, h5s

    # the high-level open (file-name encoding, strong close); then the
    # low-level API, several times faster than h5py's objects
    f = h5py.File(path, "r")
    fid = f.id
    try:
        schema = read_scalar_attr(fid, "schema")
        version = read_scalar_attr(fid, "format_version")
        if schema != SHARD_SCHEMA:
            raise ValueError(f"its 'schema' attribute is {schema!r}, not {SHARD_SCHEMA!r}")
        if version != CACHE_FORMAT_VERSION:
            raise ShardVersionError(
                f"it was written in cache format version {version!r}, and this skbottleneck "
                f"reads version {CACHE_FORMAT_VERSION}")
        keys_ds, feats = h5d.open(fid, b"keys"), h5d.open(fid, b"features")
        if keys_ds.dtype != np.uint8 or len(keys_ds.shape) != 2 or len(feats.shape) != 2:
            raise ValueError(f"unexpected datasets keys {keys_ds.shape} {keys_ds.dtype}, "
                             f"features {feats.shape}")
        n, key_len = keys_ds.shape
        if feats.shape[0] != n:
            raise ValueError(f"{n} keys but {feats.shape[0]} feature rows")
        if feats.dtype != dtype:
            raise ValueError(f"features are {feats.dtype}, this cache stores {dtype}")
        d = feats.shape[1]
        if n_features is not None and d != n_features:
            raise ValueError(f"{d} features per row, the cache has {n_features}")
        keys = np.empty((n, key_len), np.uint8)
        if keys.size:
            keys_ds.read(h5s.ALL, h5s.ALL, keys)
        digests = _read_digests(fid, keys)
        layout = raw_layout(feats)
        offset = None
        if layout is not None and len(layout[1]) == 1:
            offset = int(layout[1][0])
            if offset + n * d * feats.dtype.itemsize > size:
                raise ValueError("the file is shorter than its feature data")
        dtype = feats.dtype
    finally:
        f.close()
    key_list = keys.view(f"V{key_len}").ravel().tolist() if key_len else [b""] * n
    return _Shard(os.path.basename(path), path, key_list, d, dtype, offset, size,
                  digests=digests)


def _read_digests(fid, keys):
    """The digests of the shard's rows (see :class:`_Shard`); ``None`` when unverifiable.

    ``None`` for a shard without a ``checksums`` dataset (written before they
    existed) or with an algorithm this version does not know.

    Raises
    ------
    ValueError
        A ``checksums`` dataset of the wrong shape or type (damage).
    """
    from h5py import h5d, h5s

    if CHECKSUM_DATASET.encode() not in fid:
        return None
    ds = h5d.open(fid, CHECKSUM_DATASET.encode())
    if read_scalar_attr(ds, "algorithm") != CHECKSUM_ALGORITHM:
        return None  # another algorithm (a later version): read unverified
    if ds.dtype.kind != "u" or ds.dtype.itemsize != 8 or ds.shape != (len(keys),):
        raise ValueError(f"unexpected dataset checksums {ds.shape} {ds.dtype} "
                         f"for {len(keys)} rows")
    checksums = np.empty(len(keys), "<u8")
    if len(keys):
        ds.read(h5s.ALL, h5s.ALL, checksums)
    return checksums.astype(np.uint64) ^ key_words(keys)


def read_shard_rows(shard, rows, dst, out, *, verify=True):
    """``out[dst[i]] = features[rows[i]]`` of one shard, checked against its checksums.

    Parameters
    ----------
    shard : _Shard
    rows, dst : ndarray of int
    out : ndarray of shape (n, n_features)
    verify : bool, default=True
        Compare each row read with its checksum (a shard without checksums
        is read unverified).

    Raises
    ------
    FileNotFoundError
        The shard was removed (merged away by a compaction).
    ShardChecksumError
        Rows do not match their checksums (``out[dst]`` is then undefined).
    """
    if not verify or shard.digests is None:
        _read_rows(shard, rows, dst, out)
        return
    if out.dtype == shard.dtype and out.flags.c_contiguous:
        _read_rows(shard, rows, dst, out)  # the stored bytes themselves: hash them there
        _check(shard, rows, row_digests(out, dst))
        return
    # converted (float16 read as float32, another byte order): check the stored
    # bytes, a block at a time
    block = max(1, MAX_SPAN_BYTES // max(1, shard.row_nbytes))
    for a in range(0, len(rows), block):
        r = rows[a:a + block]
        buf = np.empty((len(r), shard.n_features), shard.dtype)
        _read_rows(shard, r, np.arange(len(r)), buf)
        _check(shard, r, row_digests(buf))
        out[dst[a:a + block]] = buf


def _check(shard, rows, digests):
    bad = np.flatnonzero(digests != shard.digests[rows])
    if len(bad):
        raise ShardChecksumError(shard.path, rows[bad], len(rows))


def _read_rows(shard, rows, dst, out):
    if shard.offset is not None:
        fd = os.open(shard.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            read_rows_at(fd, shard.offset + rows * shard.row_nbytes, dst, out,
                          shard.row_nbytes, shard.dtype)
        finally:
            os.close(fd)
    else:
        import h5py

        with h5py.File(shard.path, "r") as f:
            read_rows_h5(f["features"], rows, dst, out)
