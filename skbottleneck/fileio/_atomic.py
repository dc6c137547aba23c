"""Files that appear whole or not at all, durably: temporary names, fsync, rename.

A file (:func:`write_file_atomic`) or a whole folder (:func:`atomic_folder`)
is written under a temporary name in the folder it will live in
(:func:`tmp_path`: ``.tmp-<pid>-<random>-<name>``), fsynced, renamed to its
name (atomic on POSIX and Windows) and the folder fsynced, so that a reader
sees the old content or the complete new one, and a kill at any moment
leaves at worst a temporary that :func:`remove_stale_tmp` deletes later.
Readers never look at names starting with :data:`TMP_PREFIX`.
"""

import contextlib
import errno
import os
import re
import secrets
import shutil
import time

__all__ = ["STALE_TMP_SECONDS", "TMP_PREFIX", "TRASH_MARK", "atomic_folder", "fdatasync",
           "fsync_dir", "fsync_file", "fsync_tree", "listdir", "named_os_error",
           "remove_stale_tmp", "remove_tree", "tmp_path", "unlink_quietly", "write_file_atomic"]

#: Prefix of files and folders being written; readers never look at them.
TMP_PREFIX = ".tmp-"
#: Marks a folder moved aside to be deleted (``<name>.trash-<pid>-<random>``).
TRASH_MARK = ".trash-"
#: Temporaries older than this (seconds) are left-overs of killed writers.
STALE_TMP_SECONDS = 3600.0


def fsync_file(path):
    """Flush a closed file's data to the disk."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    """Make a rename in folder ``path`` durable (POSIX; a no-op where unsupported)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsync every file of folder ``path`` (not recursive), then the folder."""
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            fsync_file(full)
    fsync_dir(path)


def fdatasync(fd):
    """Flush an open file's data (``fdatasync`` where there is one, else ``fsync``)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def tmp_path(directory, name):
    """A fresh temporary name for ``name`` in ``directory`` (not created).

    Examples
    --------
    >>> os.path.basename(tmp_path("/c", "x.h5")).startswith(TMP_PREFIX)
    True
    """
    return os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")


def write_file_atomic(path, data):
    """Write ``data`` (bytes-like) to ``path`` so that ``path`` is either old/absent or complete.

    The bytes go to a temporary name in the same folder, are fsynced, and the
    file is renamed over ``path``, then the folder is fsynced
    (:func:`atomic_file`). On any failure the temporary file is removed and
    the error raised.
    """
    with atomic_file(path) as tmp, open(tmp, "xb") as f:
        f.write(memoryview(data).cast("B"))


@contextlib.contextmanager
def atomic_file(path):
    """Publish a file that a library writes by name (skops, joblib, pyarrow) atomically.

    Yields a temporary path beside ``path`` for the writer to fill; when the
    ``with`` block ends without an error the file is fsynced, renamed over
    ``path`` and the folder fsynced. On any error (or an interrupt) the
    temporary file is removed and ``path`` is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with atomic_file(os.path.join(folder, "a.txt")) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("done")
    >>> listdir(folder)
    ['a.txt']
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    tmp = tmp_path(directory, os.path.basename(path))
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(directory)


@contextlib.contextmanager
def atomic_folder(path):
    """Publish a whole folder at ``path`` atomically: yields a temporary folder to fill.

    The temporary folder is created beside ``path``; when the ``with`` block
    ends without an error its files are fsynced and it is renamed to
    ``path``. If ``path`` appeared meanwhile (another process published the
    same folder first) the copy is dropped and ``FileExistsError`` raised.
    On any error the temporary folder is removed and the error raised.

    Examples
    --------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> with atomic_folder(os.path.join(root, "model")) as tmp:
    ...     with open(os.path.join(tmp, "a.txt"), "w") as f:
    ...         _ = f.write("a")
    >>> os.listdir(root)
    ['model']
    """
    parent = os.path.dirname(path) or "."
    tmp = tmp_path(parent, os.path.basename(path))
    os.mkdir(tmp)
    try:
        yield tmp
        fsync_tree(tmp)
        try:
            os.rename(tmp, path)
        except OSError as e:
            if os.path.isdir(path):
                raise FileExistsError(errno.EEXIST, "published meanwhile by another process",
                                      path) from e
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(parent)


def remove_tree(path):
    """Remove folder ``path``: renamed aside first (so that nobody reads a half-removed
    folder), then deleted. Returns whether it was moved away."""
    aside = f"{path}{TRASH_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.rename(path, aside)
    except OSError:
        return False
    shutil.rmtree(aside, ignore_errors=True)
    return True


def unlink_quietly(path):
    """Delete a file, if it can be."""
    try:
        os.unlink(path)
    except OSError:
        pass


def listdir(path):
    """The names in folder ``path``; ``[]`` if it cannot be listed."""
    try:
        return os.listdir(path)
    except OSError:
        return []


def remove_stale_tmp(directory, max_age=STALE_TMP_SECONDS):
    """Delete what killed writers left in ``directory``: temporary files and folders
    older than ``max_age`` seconds, and folders moved aside to be deleted."""
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for e in entries:
        trash = TRASH_MARK in e.name
        if not (trash or e.name.startswith(TMP_PREFIX)):
            continue
        try:
            if not trash and now - e.stat(follow_symlinks=False).st_mtime <= max_age:
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
        except OSError:
            pass


_H5_ERRNO_RE = re.compile(r"errno = (\d+)(?:, error message = '([^']*)')?")


def named_os_error(e, what, path):
    """The error ``e`` of writing ``path`` as an ``OSError`` that names it (raise it ``from e``).

    ``what`` says what was being done (``"write the feature cache shard"``).
    The new error keeps the ``errno`` of ``e``, hence its subclass
    (``PermissionError``...; a full disk is still ``errno.ENOSPC``). HDF5
    reports the failures of its own writes as ``RuntimeError`` or
    ``OSError`` with the errno only in the message: that errno is used.

    Examples
    --------
    >>> e = named_os_error(RuntimeError("Can't close (unable to extend file properly, "
    ...                                 "errno = 28, error message = 'No space left on device')"),
    ...                    "write the merged feature cache shard", "/c/shards/y.h5")
    >>> print(e)
    [Errno 28] Cannot write the merged feature cache shard /c/shards/y.h5: No space left on device
    >>> e.errno == errno.ENOSPC
    True
    """
    code = getattr(e, "errno", None)
    reason = getattr(e, "strerror", None)
    if code is None:
        m = _H5_ERRNO_RE.search(str(e))
        if m:
            code = int(m.group(1))
            reason = m.group(2) or os.strerror(code)
    message = f"Cannot {what} {path}: {reason or e}"
    if code is None:
        return OSError(message)
    return OSError(code, message)
