"""What a cache folder holds on disk: schema names, format version, file names.

See :mod:`skbottleneck.cache` for the whole layout and why a kill at any
moment cannot leave an unreadable cache.
"""

import os
import re
import secrets
import time

__all__ = ["CACHE_FORMAT_VERSION", "CACHE_SCHEMA", "CONVERTED_MODELS_FOLDER", "KEY_LENGTH",
           "SHARD_SCHEMA"]

#: ``schema`` of ``fingerprint.json``.
CACHE_SCHEMA = "skbottleneck.cache"
#: ``schema`` root attribute of every cache shard.
SHARD_SCHEMA = "skbottleneck.cache_shard"
#: Bumped whenever the cache layout changes; part of the fingerprint id, so a
#: new format lands in a new directory instead of misreading the old one.
#: (The per-row ``checksums`` dataset came without a bump: older versions
#: ignore it, and shards without it are read, unverified.)
CACHE_FORMAT_VERSION = 1
#: Bytes of a content key (a BLAKE2b-160 digest, see :func:`file_key`).
KEY_LENGTH = 20

#: Final names of shards; anything else in ``shards/`` is ignored.
SHARD_RE = re.compile(r"^[0-9a-f]{16}-[0-9]+-[0-9a-f]{8}\.h5$")
#: Names of the per-fingerprint folders (16 hex digits).
ID_RE = re.compile(r"^[0-9a-f]{16}$")
#: Folder of the cache root that holds converted OpenVINO models (written by
#: :mod:`skbottleneck.extraction._openvino`; listed and cleared here).
CONVERTED_MODELS_FOLDER = "openvino"
#: Names of the converted-model folders (32 hex digits).
MODEL_ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: An index entry is ``(shard number << ROW_BITS) | row``.
ROW_BITS = 32


def new_shard_name():
    """A shard name that no other writer can pick: ``<time_ns:016x>-<pid>-<rand:08x>.h5``."""
    return f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(4)}.h5"
