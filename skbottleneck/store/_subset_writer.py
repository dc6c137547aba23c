"""Publishing only some rows of a store being written (e.g. the readable images).

The body of :meth:`StoreWriter.finalize_subset`: the kept rows are copied,
in order, into a second store assembled as ``<path>.partial/subset.h5``
(itself written by a :class:`StoreWriter`, so a copy killed midway
resumes), which then replaces ``<path>`` atomically. The published store
records in its metadata (``subset_of``) the identity of the writer it was
cut from, so that a writer created again with the same arguments finds it
finished (:func:`is_subset_for`).
"""

import os

import numpy as np

from ..fileio import UnsupportedFormatError, canonical_json
from ._format import SUBSET_OF_ATTR
from ._reader import FeatureStore

__all__ = ["finalize_subset", "is_subset_for"]

#: Bytes of rows copied per step (each step durable before the next).
_SUBSET_COPY_BYTES = 32 << 20


def is_subset_for(path, identity):
    """Whether ``path`` is a store :func:`finalize_subset` cut from a writer of ``identity``."""
    try:
        with FeatureStore(path) as store:
            return store.metadata.get(SUBSET_OF_ATTR) == canonical_json(identity)
    except (UnsupportedFormatError, OSError):
        return False


def finalize_subset(writer, rows, metadata=None):
    """Publish the store of ``writer`` with only ``rows``; see :meth:`StoreWriter.finalize_subset`.

    Parameters
    ----------
    writer : StoreWriter
    rows : array-like of int
    metadata : dict, default=None

    Returns
    -------
    store : FeatureStore
    """
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    if len(rows) == writer.n_rows:
        return writer.finalize()
    if len(rows) == 0:
        raise ValueError(f"finalize_subset needs at least one row of {writer.path}.")
    if writer.finished:
        return FeatureStore(writer.path)
    missing = rows[~writer._done[rows]]
    if len(missing):
        raise ValueError(
            f"{len(missing)} of the rows to keep in {writer.path} have not been written yet "
            f"(first: row {missing[0]}, {writer._paths[missing[0]]!r})."
        )
    meta = dict(writer.metadata)
    meta.update(metadata or {})
    meta[SUBSET_OF_ATTR] = canonical_json(writer._identity)
    sub = type(writer)(
        os.path.join(writer.partial_dir, "subset.h5"),
        paths=[writer._paths[r] for r in rows],
        labels=None if writer._labels is None else writer._labels[rows],
        keys=None if writer._keys is None else [k.tobytes() for k in writer._keys[rows]],
        n_features=writer.n_features, dtype=writer.dtype, metadata=meta,
        chunk_rows=writer.chunk_rows, overwrite=True,
    )
    try:
        with writer._lock:
            step = max(1, _SUBSET_COPY_BYTES // writer._row_nbytes)
            todo = sub.missing_rows()
            for i in range(0, len(todo), step):
                dst = todo[i:i + step]
                block = np.empty((len(dst), writer.n_features), dtype=writer._store_dtype)
                writer._read_written_rows(rows[dst], block)
                sub.write_rows(dst, block)
            sub.finalize().close()
            writer._publish(sub.path)
    finally:
        sub.close()  # its lock too, whatever happened (a rerun takes it again)
    return FeatureStore(writer.path)
