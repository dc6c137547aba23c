"""The data file of a store being written: ``<store>.partial/data.h5``.

It is created once (temporary name, fsync, rename) with its whole HDF5
structure: root attributes, paths, labels, keys, and the ``features``
dataset with its storage allocated up front and never filled (sparse on
disk). Rows are then written at their byte offsets, without HDF5, so the
file's structure is never modified again; :func:`open_data_file` checks
that structure when a run resumes.
"""

import os
import time

import numpy as np

from ..fileio import (
    attr_value,
    canonical_json,
    create_preallocated,
    fsync_dir,
    fsync_file,
    library_versions,
    raw_layout,
    tmp_path,
    unlink_quietly,
)
from ._format import STORE_FORMAT_VERSION, STORE_SCHEMA, _encode_str, store_os_error

__all__ = ["DamagedDataFile", "create_data_file", "open_data_file"]


class DamagedDataFile(Exception):
    """``data.h5`` is not what its manifest says; ``error`` is what to raise."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def create_data_file(writer):
    """Create ``writer``'s data file (in its partial folder, which exists).

    Parameters
    ----------
    writer : StoreWriter

    Raises
    ------
    OSError
        Naming the file and the store; an errno HDF5 reports (e.g. ``EFBIG``
        when the file cannot be extended) is kept.
    """
    import h5py

    path = writer._partial.data_path
    tmp = tmp_path(writer.partial_dir, "data.h5")
    try:
        with h5py.File(tmp, "w") as f:
            attrs = {k: attr_value(v) for k, v in writer.metadata.items()}
            for k, v in library_versions().items():
                attrs.setdefault(k, v)
            attrs.update(
                schema=STORE_SCHEMA,
                format_version=np.int64(STORE_FORMAT_VERSION),
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                metadata_json=canonical_json(writer.metadata),
                **{k: attr_value(v) for k, v in writer._identity.items()},
            )
            for k in sorted(attrs):
                f.attrs[k] = attrs[k]
            str_dt = h5py.string_dtype("utf-8")
            n = writer.n_rows
            ds = f.create_dataset("paths", shape=(n,), dtype=str_dt)
            if n:
                ds[:] = np.array([_encode_str(p) for p in writer._paths], dtype=object)
            if writer._labels is not None:
                if writer._labels_kind == "str":
                    ds = f.create_dataset("labels", shape=(n,), dtype=str_dt)
                    if n:
                        ds[:] = np.array([_encode_str(v) for v in writer._labels.tolist()],
                                         dtype=object)
                else:
                    ds = f.create_dataset("labels", data=writer._labels)
                ds.attrs["kind"] = writer._labels_kind
            if writer._keys is not None:
                f.create_dataset("keys", data=writer._keys)
            create_preallocated(f, "features", (n, writer.n_features), writer._store_dtype,
                                 writer.chunk_rows)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        unlink_quietly(tmp)
        # HDF5 reports a failed write (disk full...) as a RuntimeError giving the errno
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "errno = " in str(e)):
            raise store_os_error(e, store=writer.path, path=path,
                                 doing="create the data file of") from e
        raise
    fsync_dir(writer.partial_dir)


def open_data_file(writer):
    """Check ``writer``'s data file and open it for writing rows.

    Parameters
    ----------
    writer : StoreWriter

    Returns
    -------
    fd : int
        Open read-write.
    layout : tuple
        ``(firsts, offsets)`` of the features (see ``raw_layout``).

    Raises
    ------
    DamagedDataFile
        Not an HDF5 file, or not of the manifest's shape and dtype (its
        ``error`` names the file and says what to do).
    OSError
        The system refused to open it (naming the file and the store).
    """
    import h5py

    path = writer._partial.data_path
    advice = f"delete {writer.partial_dir} to start again, or pass overwrite=True"
    try:
        with h5py.File(path, "r") as f:
            ds = f["features"]
            shape, dtype, layout = ds.shape, ds.dtype, raw_layout(ds)
    except (OSError, KeyError) as e:
        if getattr(e, "errno", None) is not None:  # the system's, not HDF5's: not damage
            raise store_os_error(e, store=writer.path, path=path, doing="open the data file of",
                                 resumable=False) from e
        raise DamagedDataFile(OSError(
            f"{path}, the data file of the feature store {writer.path} being written, is "
            f"damaged ({type(e).__name__}: {e}); {advice}."
        )) from e
    expected = (writer.n_rows, writer.n_features)
    if shape != expected or dtype != writer._store_dtype:
        raise DamagedDataFile(ValueError(
            f"{path} holds features of shape {shape} and dtype {dtype}, not {expected} "
            f"{writer._store_dtype} as its manifest says; {advice}."))
    if layout is None:  # pragma: no cover - only if the file was altered
        raise DamagedDataFile(ValueError(f"{path} has an unexpected layout; {advice}."))
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise store_os_error(e, store=writer.path, path=path, doing="open the data file of",
                             resumable=False) from e
    return fd, layout
