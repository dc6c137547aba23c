"""Image bytes from where they live: local files, URLs and object storage, tar shards.

:func:`read_image_bytes` is the one reader of image bytes for the whole
package. A path names one of three things:

- a local file (``"photos/cat.jpg"``), read by
  :func:`skbottleneck.images.read_image_file`;
- a URL that fsspec understands (``"https://host/cat.jpg"``,
  ``"s3://bucket/train/cat/001.jpg"``, ``"gs://..."``, ``"az://..."``),
  read through fsspec with the given ``storage_options`` (the environment
  otherwise: ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ...), transient errors
  retried with backoff;
- a member of an uncompressed tar shard in the WebDataset layout,
  ``"<shard>.tar::<member>"`` (``"s3://bucket/shard-000.tar::000123.jpg"``):
  the member's bytes are read by a ranged read at its offset in the shard,
  found once per shard and process by a pass over the shard's headers
  (:func:`list_shard`); nothing is unpacked to disk.

Whatever the source, a failure is an :class:`~skbottleneck.ImageError`
that names the path (URL, or shard and member): a missing object, access
denied, a connection dropped mid-read. The cache keys of remote images are
the content hashes of the bytes read, exactly as for local files.

fsspec's backends (s3fs, gcsfs, adlfs, aiohttp) are imported by fsspec
when a URL of theirs is first read, never by ``import skbottleneck``.
"""

import json
import os
import re
import tarfile
import threading
import time
from collections import OrderedDict

from .images import ImageError, read_image_file

__all__ = ["SHARD_SEPARATOR", "is_remote", "is_url", "list_shard", "options_for",
           "read_image_bytes", "split_shard_path"]

#: Between a tar shard and the name of one of its members in a row's path.
SHARD_SEPARATOR = "::"
#: Tries of a read that fails with a transient error (a connection reset or
#: dropped mid-read, a timeout, an HTTP 5xx or 429), before it is reported.
READ_TRIES = 4
#: Seconds before the first retry; doubled before each next one.
RETRY_BACKOFF_S = 0.1
#: Shards whose member index a process keeps.
_SHARD_INDEX_SIZE = 256

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_shard_index = OrderedDict()
_filesystems = {}
_fs_lock = threading.Lock()
_shard_lock = threading.Lock()


def is_url(path):
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path.

    Examples
    --------
    >>> from skbottleneck.remote import is_url
    >>> is_url("s3://bucket/cat.jpg"), is_url("https://host/a.png"), is_url("photos/a.png")
    (True, True, False)
    """
    return isinstance(path, str) and _URL.match(path) is not None


def split_shard_path(path):
    """``(shard, member)`` of a path ``"<shard>.tar::<member>"``, or None for any other path.

    Examples
    --------
    >>> from skbottleneck.remote import split_shard_path
    >>> split_shard_path("s3://b/shard-000.tar::000123.jpg")
    ('s3://b/shard-000.tar', '000123.jpg')
    >>> split_shard_path("cat.jpg") is None
    True
    """
    if not isinstance(path, str) or SHARD_SEPARATOR not in path:
        return None
    shard, _, member = path.rpartition(SHARD_SEPARATOR)
    if not shard.lower().endswith(".tar") or not member:
        return None
    return shard, member


def is_remote(path):
    """Whether ``path`` is read otherwise than as one local file (a URL or a shard member)."""
    return is_url(path) or split_shard_path(path) is not None


def options_for(url, storage_options):
    """The fsspec options for ``url``: ``storage_options`` itself, or, when it
    is keyed by protocol (every key a protocol name: ``{"s3": {...}, "https":
    {...}}``), the options of ``url``'s protocol ({} when it has none).

    Examples
    --------
    >>> from skbottleneck.remote import options_for
    >>> options_for("s3://b/a.jpg", {"anon": True})
    {'anon': True}
    >>> both = {"s3": {"anon": True}, "https": {"headers": {"X": "1"}}}
    >>> options_for("s3://b/a.jpg", both), options_for("http://h/a.jpg", both)
    ({'anon': True}, {})
    """
    if not storage_options:
        return {}
    from fsspec.registry import known_implementations, registry

    protocols = set(known_implementations) | set(registry)
    if all(k in protocols and isinstance(v, dict) for k, v in storage_options.items()):
        protocol = url.split("://", 1)[0]
        return dict(storage_options.get(protocol, {}))
    return dict(storage_options)


def _filesystem(url, storage_options):
    """The fsspec filesystem and the path within it of ``url``.

    One filesystem per protocol and options in the process: fsspec's own
    instance cache is per thread, so every new reading thread would open a
    new client (and connection pool) of its own.
    """
    options = options_for(url, storage_options)
    if SHARD_SEPARATOR in url:  # fsspec's chained URLs ("simplecache::s3://...")
        from fsspec.core import url_to_fs

        return url_to_fs(url, **options)
    protocol = url.split("://", 1)[0]
    key = (protocol, json.dumps(options, sort_keys=True, default=repr))
    with _fs_lock:
        fs = _filesystems.get(key)
    if fs is None:
        import fsspec

        fs = fsspec.filesystem(protocol, **options)
        with _fs_lock:
            fs = _filesystems.setdefault(key, fs)
    return fs, fs._strip_protocol(url)


def _protocols(fs):
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _status(exc):
    """The HTTP status carried by an exception of aiohttp or botocore, or None."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _is_transient(exc):
    """Whether a failed read may succeed when tried again."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, ImageError)):
        return False
    status = _status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    name = type(exc).__name__
    return isinstance(exc, (ConnectionError, TimeoutError, EOFError)) or any(
        word in name for word in ("Payload", "Connection", "Timeout", "Disconnect", "Incomplete"))


def _reason(exc, what="object"):
    """Why a remote read failed, for people."""
    status = _status(exc)
    if isinstance(exc, FileNotFoundError) or status == 404:
        return f"no such {what}"
    if isinstance(exc, PermissionError) or status in (401, 403):
        return f"access denied{f' (HTTP {status})' if status else ''}"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image file"
    name = type(exc).__name__
    if "Payload" in name or "Incomplete" in name or isinstance(exc, EOFError):
        return f"truncated read: the connection was closed mid-transfer ({name}: {exc})"
    return f"cannot read {what} ({name}: {exc})"


def _with_retries(read, path, what="object"):
    """``read()``, tried again after transient errors; an ImageError naming ``path`` otherwise."""
    for attempt in range(READ_TRIES):
        try:
            return read()
        except ImageError:
            raise
        except Exception as e:
            if attempt + 1 < READ_TRIES and _is_transient(e):
                time.sleep(RETRY_BACKOFF_S * 2 ** attempt)
                continue
            reason = _reason(e, what)
            if attempt and _is_transient(e):
                reason += f", after {attempt + 1} tries"
            raise ImageError(path, reason) from e


def _read_url(url, storage_options):
    fs, inner = _filesystem(url, storage_options)
    # s3fs asks for the size first (HEAD) to split large objects into
    # concurrent ranges; an image is one GET
    kwargs = {"max_concurrency": 1} if "s3" in _protocols(fs) else {}
    data = _with_retries(lambda: fs.cat_file(inner, **kwargs), url)
    if not data:
        raise ImageError(url, "empty object (0 bytes)")
    return data


def _index_shard(shard, storage_options):
    """``{member: (offset, size)}`` of the regular files of an uncompressed tar shard."""
    def scan(fileobj):
        try:
            with tarfile.open(fileobj=fileobj, mode="r:") as tar:
                return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}
        except tarfile.ReadError as e:
            raise ImageError(shard, "not an uncompressed tar file (a WebDataset shard is a "
                             f"plain .tar; {e})") from e

    if is_url(shard):
        fs, inner = _filesystem(shard, storage_options)

        def read():
            with fs.open(inner, "rb") as f:
                return scan(f)

        return _with_retries(read, shard, "shard")
    try:
        with open(shard, "rb") as f:
            return scan(f)
    except FileNotFoundError as e:
        raise ImageError(shard, "no such shard") from e
    except OSError as e:
        raise ImageError(shard, f"cannot read shard ({e.strerror or e})") from e


def list_shard(shard, storage_options=None):
    """The members of a tar shard, in the order they are stored, with their sizes.

    The shard is read once per process, front to back, keeping each
    member's name, offset and size; :func:`read_image_bytes` then reads any
    member by a ranged read of its own.

    Parameters
    ----------
    shard : str
        Local path or URL of an uncompressed ``.tar`` file.
    storage_options : dict, default=None
        fsspec options for a URL (credentials, ``endpoint_url``...).

    Returns
    -------
    members : dict of str to int
        Member name -> size in bytes, regular files only.

    Raises
    ------
    ImageError
        The shard is missing, unreadable, or not an uncompressed tar file.
    """
    shard = os.fspath(shard)
    with _shard_lock:
        index = _shard_index.get(shard)
        if index is not None:
            _shard_index.move_to_end(shard)
    if index is None:
        index = _index_shard(shard, storage_options)
        with _shard_lock:
            _shard_index[shard] = index
            while len(_shard_index) > _SHARD_INDEX_SIZE:
                _shard_index.popitem(last=False)
    return {name: size for name, (_, size) in index.items()}


def _read_member(path, shard, member, storage_options):
    list_shard(shard, storage_options)
    with _shard_lock:
        where = _shard_index.get(shard, {}).get(member)
    if where is None:
        raise ImageError(path, f"no member {member!r} in shard {shard!r}")
    offset, size = where
    if size == 0:
        raise ImageError(path, "empty member (0 bytes)")
    if is_url(shard):
        fs, inner = _filesystem(shard, storage_options)
        data = _with_retries(lambda: fs.cat_file(inner, start=offset, end=offset + size), path,
                             "shard")
    else:
        try:
            with open(shard, "rb") as f:
                f.seek(offset)
                data = f.read(size)
        except OSError as e:
            raise ImageError(path, f"cannot read shard ({e.strerror or e})") from e
    if len(data) != size:
        raise ImageError(path, f"truncated read: {len(data)} of the member's {size} bytes")
    return data


def read_image_bytes(path, storage_options=None):
    """The bytes of one image, wherever it lives, and the ``os.stat`` of a local file.

    Parameters
    ----------
    path : str or os.PathLike
        A local file, a URL (``https://``, ``s3://``, ``gs://``, ``az://``...)
        or a tar shard member ``"<shard>.tar::<member>"``.
    storage_options : dict, default=None
        fsspec options for URLs (``{"client_kwargs": {"endpoint_url": ...}}``,
        ``{"anon": True}``, credentials...), or such options keyed by
        protocol (``{"s3": {...}, "gs": {...}}``) when URLs of several kinds
        are read (see :func:`options_for`). None: fsspec's defaults and the
        environment.

    Returns
    -------
    data : bytes
    stat : os.stat_result or None
        Of a local file as read (see
        :func:`~skbottleneck.images.read_image_file`); None for a URL or a
        shard member.

    Raises
    ------
    ImageError
        Naming the path: missing, access denied, empty, a truncated read
        (after :data:`READ_TRIES` tries), or unreadable.

    Examples
    --------
    >>> from skbottleneck.remote import read_image_bytes
    >>> p = tmp_dir / "a.bin"
    >>> _ = p.write_bytes(b"not really an image")
    >>> read_image_bytes(str(p))[0]
    b'not really an image'
    >>> read_image_bytes(p.as_uri())
    (b'not really an image', None)
    """
    path = os.fsdecode(os.fspath(path))
    parts = split_shard_path(path)
    if parts is not None:
        return _read_member(path, *parts, storage_options), None
    if is_url(path):
        return _read_url(path, storage_options), None
    return read_image_file(path)
