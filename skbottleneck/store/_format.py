"""What a dataset store is on disk, and what goes into one.

Schema names and format version, the root attributes the store reserves,
the normalisation of labels, keys and metadata and their identity hashes
(what a resumed run must match), the disk-space check run before a long
extraction, and the errors of a store being written: each names its file.
"""

import contextlib
import errno
import hashlib
import os
import re
import shutil

import numpy as np

from ..fileio import attr_value, canonical_json, sha256
from ..utils import format_bytes

__all__ = [
    "PARTIAL_SCHEMA",
    "RESERVED_ATTRS",
    "STORE_FORMAT_VERSION",
    "STORE_SCHEMA",
    "SUBSET_OF_ATTR",
    "InsufficientDiskSpaceError",
    "StoreLockedError",
    "check_disk_space",
    "naming_errors",
    "store_os_error",
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

    __module__ = "skbottleneck.store"  # where it is imported from, as tracebacks show it


class StoreLockedError(BlockingIOError):
    """The store is being written by another :class:`StoreWriter`.

    Raised by ``StoreWriter(..., wait=False)`` (or when ``wait`` seconds
    have passed) while another writer, in another process or in this one,
    holds the store's lock file (``<store>.lock``). An :class:`OSError`
    (errno ``EAGAIN``), so that ``except OSError`` still catches it.

    Attributes
    ----------
    path : str
        The store.
    lock_path : str
        Its lock file.
    pid : int or None
        Process id of the writer holding it (None if it could not be read).
    host : str or None
        Host name of that process.
    """

    __module__ = "skbottleneck.store"


#: errno values meaning "the disk (or a file-size limit) is full".
_FULL_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EFBIG", "EDQUOT")
                         if hasattr(errno, name))


def store_os_error(error, *, store, path, doing, resumable=True):
    """``error`` as an :class:`OSError` naming the file of the feature store it concerns.

    Parameters
    ----------
    error : OSError or RuntimeError
        What went wrong; an HDF5 error whose message gives ``errno = N``
        keeps that errno.
    store : str
        The store being written.
    path : str
        The file (or folder) the failed operation was on.
    doing : str
        What failed, completing "could not ... the feature store", e.g.
        ``"write 64 rows to"``.
    resumable : bool, default=True
        Say that what was written is kept and a rerun resumes.

    Returns
    -------
    error : OSError
        Of the same errno (so the same subclass: ``FileNotFoundError``,
        ``PermissionError``...), with attributes ``filename`` (``path``) and
        ``store``. Raise it ``from`` the original.
    """
    code = error.errno if isinstance(error, OSError) else None
    if code is None:
        found = re.search(r"errno = (\d+)", str(error))
        code = int(found.group(1)) if found else None
    hint = ("the disk is full or a file-size limit was reached: free some space, or write the "
            "store elsewhere; " if code in _FULL_ERRNOS else "")
    tail = "what was written so far is kept, and a rerun with the same arguments resumes"
    what = f"could not {doing} the feature store {store}"
    if hint or resumable:
        what += f" ({hint}{tail})" if resumable else f" ({hint.rstrip('; ')})"
    if code is None:
        new = OSError(f"{what}: {path}: {type(error).__name__}: {error}")
    else:
        strerror = getattr(error, "strerror", None) or os.strerror(code)
        new = OSError(code, f"{strerror}: {what}", path)
    new.store = store
    return new


@contextlib.contextmanager
def naming_errors(store, path, doing, resumable=True):
    """Re-raise an :class:`OSError` of the block with :func:`store_os_error` (from it).

    Errors that already name their store (and :class:`StoreLockedError`,
    :class:`InsufficientDiskSpaceError`) pass unchanged.
    """
    try:
        yield
    except OSError as e:
        if hasattr(e, "store") or isinstance(e, (StoreLockedError, InsufficientDiskSpaceError)):
            raise
        raise store_os_error(e, store=store, path=path, doing=doing,
                             resumable=resumable) from e


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
        print(f"[skbottleneck] {what}: {format_bytes(n_bytes)}; {format_bytes(usage.free)} free "
              f"on the disk of {target}", flush=True)
    if required > usage.free:
        err = InsufficientDiskSpaceError(
            errno.ENOSPC,
            f"Not enough disk space in {target}: {what} need {format_bytes(n_bytes)} "
            f"(+{margin:.0%} margin, +{format_bytes(min_free)} kept free) but only "
            f"{format_bytes(usage.free)} is free. Free some space, write elsewhere, reduce the "
            "number of features (e.g. pooling='avg') or store them as float16.",
        )
        err.path, err.required, err.free = target, required, usage.free
        raise err
    return usage.free


def _encode_str(s):
    return s.encode("utf-8", "surrogateescape")


def _hash_strings(values):
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
    return f"{kind}:" + sha256(np.ascontiguousarray(labels).tobytes())


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
        attr_value(v)  # raises TypeError for unsupported values
    canonical_json(metadata)
    return metadata
