"""Cache shard files: building one, validating one, reading rows out of one.

A shard is an immutable HDF5 file holding root attributes
(``schema="skbottleneck.cache_shard"``, ``format_version``,
``fingerprint_id``, ``n_features``, ``storage_dtype``, ``metadata_json``,
the library versions), a dataset ``keys`` (uint8, ``(n, key_length)``) and
a contiguous dataset ``features`` (``(n, d)``, little-endian, uncompressed).
A new shard is built in memory (:func:`shard_image`) and written
atomically by the cache; a merged one is written in place on disk by the
compaction.
"""

import os
import secrets
import threading

import numpy as np

from ._fileio import (
    _library_versions,
    _raw_layout,
    _read_rows_at,
    _read_rows_h5,
    _read_scalar_attr,
)
from ._format import CACHE_FORMAT_VERSION, SHARD_SCHEMA

__all__ = ["ShardVersionError", "open_shard", "read_shard_rows", "set_shard_attrs", "shard_image"]


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
    """

    __slots__ = ("name", "path", "keys", "n_features", "dtype", "offset", "size", "no")

    def __init__(self, name, path, keys, n_features, dtype, offset, size, no=-1):
        self.name, self.path, self.keys = name, path, keys
        self.n_features, self.dtype, self.offset, self.size, self.no = (
            n_features, np.dtype(dtype), offset, size, no)

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
    for k, v in _library_versions().items():
        f.attrs[k] = v


def shard_image(key_arr, feats, **attrs):
    """An in-memory HDF5 shard: its bytes and the features' byte offset.

    Parameters
    ----------
    key_arr : ndarray of uint8, shape (n, key_length)
    feats : ndarray of shape (n, n_features)
        In the storage dtype, little-endian.
    **attrs
        ``fingerprint_id``, ``dtype`` and ``metadata_json`` of
        :func:`set_shard_attrs`.

    Returns
    -------
    image : bytes
    offset : int
    """
    import h5py

    label = f"skbottleneck-shard-{threading.get_ident()}-{secrets.token_hex(4)}.h5"
    f = h5py.File(label, "w", driver="core", backing_store=False)
    try:
        set_shard_attrs(f, n_features=feats.shape[1], **attrs)
        f.create_dataset("keys", data=key_arr)
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
        schema = _read_scalar_attr(fid, "schema")
        version = _read_scalar_attr(fid, "format_version")
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
        layout = _raw_layout(feats)
        offset = None
        if layout is not None and len(layout[1]) == 1:
            offset = int(layout[1][0])
            if offset + n * d * feats.dtype.itemsize > size:
                raise ValueError("the file is shorter than its feature data")
        dtype = feats.dtype
    finally:
        f.close()
    key_list = keys.view(f"V{key_len}").ravel().tolist() if key_len else [b""] * n
    return _Shard(os.path.basename(path), path, key_list, d, dtype, offset, size)


def read_shard_rows(shard, rows, dst, out):
    """``out[dst[i]] = features[rows[i]]`` of one shard.

    Raises
    ------
    FileNotFoundError
        The shard was removed (merged away by a compaction).
    """
    if shard.offset is not None:
        fd = os.open(shard.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            _read_rows_at(fd, shard.offset + rows * shard.row_nbytes, dst, out,
                          shard.row_nbytes, shard.dtype)
        finally:
            os.close(fd)
    else:
        import h5py

        with h5py.File(shard.path, "r") as f:
            _read_rows_h5(f["features"], rows, dst, out)
