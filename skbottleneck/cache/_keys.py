"""Keys of the cache: content keys of image files, fingerprint ids, the cache folder.

A cached feature vector is found by the *content* of its image file
(:func:`file_key`), in the folder of the model that computed it
(:func:`fingerprint_id`), under the cache root (:func:`get_cache_dir`).
"""

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from ..fileio import canonical_json, check_storage_dtype, sha256
from ._format import CACHE_FORMAT_VERSION, KEY_LENGTH

__all__ = ["check_keys", "content_key", "file_key", "file_keys", "fingerprint_id", "get_cache_dir",
           "known_file_key", "remember_file_key"]

_KEY_MEMO_SIZE = 1 << 18
#: ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) -> digest`` of files
#: this process hashed.
_key_memo = {}


def file_key(path):
    """Content key of a file: the BLAKE2b-160 digest of its bytes.

    Two files with the same bytes have the same key whatever their names, so
    features cached for an image are found again after it is renamed or
    copied; editing the file changes its key. A file already hashed by this
    process and unchanged since (same device, inode, size, modification and
    change times) is not read again.

    Parameters
    ----------
    path : str or path-like
        The file to hash.

    Returns
    -------
    key : bytes of length 20
        The digest.

    Raises
    ------
    OSError
        The file cannot be opened or read (``FileNotFoundError``,
        ``IsADirectoryError``, ``PermissionError``...).

    Examples
    --------
    >>> from skbottleneck.cache import file_key
    >>> p = tmp_dir / "a.bin"
    >>> _ = p.write_bytes(b"hello")
    >>> file_key(p).hex()
    'b5531c7037f06c9f2947132a6a77202c308e8939'
    """
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        memo_key = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns,
                    before.st_ctime_ns)
        digest = _key_memo.get(memo_key)
        if digest is not None:
            return digest
        h = hashlib.blake2b(digest_size=KEY_LENGTH)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
        digest = h.digest()
        after = os.fstat(f.fileno())
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == memo_key[2:]:
        if len(_key_memo) >= _KEY_MEMO_SIZE:
            _key_memo.clear()
        _key_memo[memo_key] = digest
    return digest


def file_keys(paths, n_jobs=None):
    """Content keys of many files, hashed in a thread pool.

    Parameters
    ----------
    paths : sequence of str or path-like
        The files.
    n_jobs : int, default=None
        Number of threads (hashing releases the GIL). ``None`` uses
        ``min(8, os.cpu_count() + 2)``; ``-1`` one per CPU; ``1`` hashes in
        the calling thread.

    Returns
    -------
    keys : list of (bytes or OSError)
        ``file_key(path)`` for each path, in order; a file that could not be
        read gives the exception instance instead of raising it.

    Examples
    --------
    >>> from skbottleneck.cache import file_keys
    >>> p = tmp_dir / "a.bin"
    >>> _ = p.write_bytes(b"hello")
    >>> keys = file_keys([p, tmp_dir / "missing.jpg"])
    >>> keys[0] == file_key(p), type(keys[1]).__name__
    (True, 'FileNotFoundError')
    """
    paths = list(paths)

    def one(p):
        try:
            return file_key(p)
        except (OSError, ValueError, TypeError) as e:
            return e

    # Files this process hashed before and that are unchanged are answered
    # from the memo with one stat() each, without a thread hop: this keeps a
    # fully cached re-transform at tens of thousands of images per second.
    keys = [None] * len(paths)
    todo = []
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except (OSError, ValueError, TypeError):
            todo.append(i)  # file_key reports the error
            continue
        digest = _key_memo.get((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        if digest is None:
            todo.append(i)
        else:
            keys[i] = digest
    if not todo:
        return keys

    cpus = os.cpu_count() or 1
    if n_jobs is None:
        n_jobs = min(8, cpus + 2)
    elif n_jobs < 0:
        n_jobs = max(1, cpus + 1 + n_jobs)
    n_jobs = max(1, min(int(n_jobs), len(todo)))
    if n_jobs == 1:
        computed = [one(paths[i]) for i in todo]
    else:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            computed = list(pool.map(one, [paths[i] for i in todo], chunksize=16))
    for i, key in zip(todo, computed):
        keys[i] = key
    return keys


def fingerprint_id(fingerprint, dtype="float32"):
    """Stable 16-hex-digit id of a model fingerprint: the cache subdirectory.

    The id is the start of the SHA-256 of the canonical JSON (sorted keys) of
    ``{"fingerprint": fingerprint, "storage_dtype": dtype, "format_version":
    CACHE_FORMAT_VERSION}``: the order of the keys does not matter, but
    ``1`` and ``1.0`` are different values.

    Parameters
    ----------
    fingerprint : dict
        Everything that changes the features (backbone, weights, layer,
        pooling, input size, preprocessing, dtype, format version...).
    dtype : {"float32", "float16", "float64"}, default="float32"
        Storage dtype of the cache.

    Returns
    -------
    id : str

    Examples
    --------
    >>> from skbottleneck.cache import fingerprint_id
    >>> a = fingerprint_id({"backbone": "resnet50", "pooling": "avg"})
    >>> a == fingerprint_id({"pooling": "avg", "backbone": "resnet50"})
    True
    >>> len(a)
    16
    """
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict; got {type(fingerprint).__name__}.")
    doc = {"fingerprint": fingerprint, "storage_dtype": check_storage_dtype(dtype),
           "format_version": CACHE_FORMAT_VERSION}
    return sha256(canonical_json(doc))[:16]


def get_cache_dir(cache_dir=None):
    """Folder that holds the feature cache.

    Parameters
    ----------
    cache_dir : str or path-like, default=None
        Returned (``~`` expanded) when given. Otherwise the environment
        variable ``SKBOTTLENECK_CACHE_DIR`` if set, else the platform's
        per-user cache folder: ``$XDG_CACHE_HOME/skbottleneck`` or
        ``~/.cache/skbottleneck`` on Linux, ``~/Library/Caches/skbottleneck``
        on macOS, ``%LOCALAPPDATA%\\skbottleneck\\Cache`` on Windows.

    Returns
    -------
    path : str
        Absolute path; the folder is not created.

    Examples
    --------
    >>> from skbottleneck.cache import get_cache_dir
    >>> get_cache_dir("/data/features-cache")
    '/data/features-cache'
    """
    if cache_dir is None:
        cache_dir = os.environ.get("SKBOTTLENECK_CACHE_DIR") or None
    if cache_dir is None:
        home = os.path.expanduser("~")
        if sys.platform == "win32":  # pragma: no cover
            base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
            cache_dir = os.path.join(base, "skbottleneck", "Cache")
        elif sys.platform == "darwin":  # pragma: no cover
            cache_dir = os.path.join(home, "Library", "Caches", "skbottleneck")
        else:
            xdg = os.environ.get("XDG_CACHE_HOME", "")
            base = xdg if os.path.isabs(xdg) else os.path.join(home, ".cache")
            cache_dir = os.path.join(base, "skbottleneck")
    return os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))


def check_keys(keys):
    """``keys`` as a list of ``bytes`` (bytearray and memoryview converted).

    Raises
    ------
    TypeError
        A key is not bytes-like.
    """
    keys = list(keys)
    for k in keys:
        if type(k) is not bytes:
            if isinstance(k, (bytearray, memoryview)):
                return [bytes(k) for k in keys]
            raise TypeError("cache keys must be bytes (e.g. from file_key); "
                            f"got {type(k).__name__}.")
    return keys


def content_key(data):
    """The content key of bytes already read: what :func:`file_key` computes from a file.

    Examples
    --------
    >>> from skbottleneck.cache import content_key, file_key
    >>> p = tmp_dir / "a.bin"
    >>> _ = p.write_bytes(b"hello")
    >>> content_key(b"hello") == file_key(p)
    True
    """
    return hashlib.blake2b(data, digest_size=KEY_LENGTH).digest()


def _stat_id(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def known_file_key(st):
    """The key of an unchanged file this process hashed before (from its ``os.stat``), or None."""
    return _key_memo.get(_stat_id(st))


def remember_file_key(st, key):
    """Remember that the file whose ``os.stat`` is ``st`` has content key ``key``
    (nothing when ``st`` is None)."""
    if st is None:
        return
    if len(_key_memo) >= _KEY_MEMO_SIZE:
        _key_memo.clear()
    _key_memo[_stat_id(st)] = key
