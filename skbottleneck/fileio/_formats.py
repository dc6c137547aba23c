"""What the package's files share: format errors, storage dtypes, canonical JSON, attributes.

The warnings and errors of unreadable files (shown as
``skbottleneck.store``'s, where users import them), the storage dtypes,
deterministic JSON and its SHA-256, HDF5 attribute conversion and the
library versions written into every file.
"""

import functools
import hashlib
import json
import os
import sys

import numpy as np

__all__ = ["STORAGE_DTYPES", "StoreWarning", "UnsupportedFormatError", "attr_value",
           "canonical_json", "check_storage_dtype", "json_default", "library_versions",
           "output_dtype", "python_attr", "read_scalar_attr", "sha256"]

STORAGE_DTYPES = ("float16", "float32", "float64")


class StoreWarning(UserWarning):
    """A cache shard or journal file was unreadable (or of another format
    version) and has been set aside or ignored.

    The entries it held are treated as missing (computed again); nothing is
    lost but time.
    """

    __module__ = "skbottleneck.store"  # where it is imported from, as tracebacks show it


class UnsupportedFormatError(ValueError):
    """A file is not a skbottleneck store, or was written in a format version
    this skbottleneck does not read."""

    __module__ = "skbottleneck.store"


def json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(
        "fingerprint and metadata values must be JSON-serialisable (str, int, float, bool, "
        f"None, lists and dicts of them); got {obj!r} of type {type(obj).__name__}."
    )


def canonical_json(obj):
    """Deterministic JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False, default=json_default)


def sha256(data):
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


def check_storage_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError as e:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}; got {dtype!r}.") from e
    if name not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}; got {dtype!r}.")
    return name


def output_dtype(stored):
    """Dtype of arrays returned for a storage dtype: float16 is read as float32."""
    return np.dtype(np.float32) if np.dtype(stored) == np.float16 else np.dtype(stored)


@functools.lru_cache(maxsize=1)
def library_versions():
    """Versions of the libraries that wrote a file (root attributes)."""
    from importlib.metadata import PackageNotFoundError, version

    import h5py

    versions = {"numpy_version": np.__version__, "h5py_version": h5py.__version__,
                "hdf5_version": h5py.version.hdf5_version,
                "python_version": sys.version.split()[0]}
    try:
        from .. import __version__

        versions["skbottleneck_version"] = __version__
    except ImportError:  # pragma: no cover
        pass
    # read from the installed metadata: does not import TensorFlow
    for lib in ("tensorflow", "keras", "pillow"):
        try:
            versions[f"{lib}_version"] = version(lib)
        except PackageNotFoundError:  # pragma: no cover
            pass
    return dict(versions)


def attr_value(value):
    """A JSON-like metadata value as an HDF5 attribute (lists/dicts as JSON)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, (float, str)):
        return value
    if value is None or isinstance(value, (list, tuple, dict)):
        return canonical_json(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"metadata values must be str, int, float, bool, None, lists or dicts; got {value!r}."
    )


def python_attr(value):
    """An HDF5 attribute value as a plain Python object."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [python_attr(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_scalar_attr(obj_id, name):
    """A scalar attribute through the low-level API (str, int or float); None if absent."""
    import h5py
    from h5py import h5a, h5t

    if not h5a.exists(obj_id, name.encode()):
        return None
    attr = h5a.open(obj_id, name.encode())
    if attr.get_type().get_class() == h5t.STRING:
        dt = h5py.string_dtype() if attr.get_type().is_variable_str() else attr.dtype
        out = np.empty((), dtype=dt)
        attr.read(out, mtype=h5t.py_create(dt))
    else:
        out = np.empty(attr.shape, dtype=attr.dtype)
        attr.read(out)
    return python_attr(out[()])
