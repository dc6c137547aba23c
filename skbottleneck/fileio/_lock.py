"""The one file lock of the package: ``flock`` on a lock file, dropped when its process dies.

Used by the dataset store (one writer per store, its holder named in the
file) and the feature cache (one compaction per cache folder). The
operating system releases the lock when the holding process exits or is
killed, so a dead holder never blocks the next one.

A holder may delete the lock file while still holding it, just before it
unlocks (:meth:`FileLock.release` with ``unlink=True``). A waiter that had
opened the deleted file then locks a file without a name: :meth:`FileLock.acquire`
checks, after each lock, that the path still names the locked file, and
tries again on the path when it does not, so two processes never both
hold it.
"""

import os
import time

__all__ = ["FileLock"]


def _try_lock(fd):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fd):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """An exclusive lock on the file ``path`` (created if missing; its folder is not).

    Parameters
    ----------
    path : str
        The lock file.

    Attributes
    ----------
    path : str
    fd : int or None
        The open, locked file while held (the holder may write who it is
        into it), else None.

    Examples
    --------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.lock")
    >>> a, b = FileLock(path), FileLock(path)
    >>> a.acquire(timeout=0), b.acquire(timeout=0)
    (True, False)
    >>> a.release(unlink=True)
    >>> b.acquire(timeout=0)
    True
    >>> b.release()
    """

    def __init__(self, path):
        self.path = path
        self.fd = None
        self._pid = None

    @property
    def held(self):
        """Whether this object holds the lock (in this process)."""
        return self.fd is not None and self._pid == os.getpid()

    def acquire(self, timeout=-1, poll=0.05):
        """Take the lock; whether it was taken.

        Parameters
        ----------
        timeout : float, default=-1
            Seconds to wait for another holder: ``0`` tries once, a negative
            number waits as long as it takes.
        poll : float, default=0.05
            Seconds between tries while waiting.

        Raises
        ------
        OSError
            The lock file cannot be created or opened (``FileNotFoundError``
            when its folder does not exist).
        """
        if self.fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this FileLock.")
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
            try:
                _try_lock(fd)
            except OSError:
                os.close(fd)
            else:
                if self._names(fd):
                    self.fd, self._pid = fd, os.getpid()
                    return True
                os.close(fd)  # locked a file its holder had deleted: try the path again
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def _names(self, fd):
        """Whether ``self.path`` still names the open file ``fd``."""
        try:
            st, here = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)

    def release(self, unlink=False):
        """Unlock (nothing if not held, or held by the process this one was forked from).

        With ``unlink=True`` the lock file is deleted first, while still held
        (when it is still the file this lock holds).
        """
        fd, self.fd = self.fd, None
        if fd is None or self._pid != os.getpid():
            return
        try:
            if unlink and self._names(fd):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            try:
                _unlock(fd)
            finally:
                os.close(fd)
