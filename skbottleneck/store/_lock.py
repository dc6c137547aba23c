"""One writer per store: its lock file, and who holds it.

A :class:`~skbottleneck.store.StoreWriter` holds ``<store>.lock``, locked
with :class:`skbottleneck.fileio.FileLock` (``flock``), from its creation to its
:meth:`~skbottleneck.store.StoreWriter.finalize` or
:meth:`~skbottleneck.store.StoreWriter.close`. The file records the
holder's pid, host and start time (JSON), for the messages of the writers
that find it taken. The operating system drops the lock when its process
dies, so a killed writer never blocks the next one: its lock file stays
behind, unlocked, until the next writer of the store takes it.

The holder deletes the lock file while still holding it, just before it
unlocks. A waiter that had opened the deleted file then gets a lock on a
file without a name; the lock sees that and tries again on the path, so
two writers never both hold the store.

Within one process a second writer of a store that is still open raises
at once (waiting would wait for ourselves).
"""

import errno
import gc
import json
import os
import socket
import sys
import threading
import time

from ..fileio import FileLock
from ._format import StoreLockedError, naming_errors

__all__ = ["StoreLock", "read_only"]

#: Lock files held by this process: path -> pid that took it (a forked child is not the holder).
_HELD_HERE = {}
_HELD_HERE_LOCK = threading.Lock()


class StoreLock:
    """The lock file of one store (``<store>.lock``).

    Parameters
    ----------
    store_path : str
        Absolute path of the store.

    Attributes
    ----------
    store_path : str
    path : str
        ``store_path + ".lock"``.
    """

    def __init__(self, store_path):
        self.store_path = store_path
        self.path = store_path + ".lock"
        self._lock = None
        self._pid = None  # the process that took it (a forked child must not release it)

    @property
    def held(self):
        """Whether this object holds the lock."""
        return self._lock is not None

    def acquire(self, wait=True):
        """Take the lock, waiting for another writer as ``wait`` says.

        Parameters
        ----------
        wait : bool or float, default=True
            ``True``: wait as long as it takes (saying once, on stderr, for
            which writer); ``False``: fail at once; a number: wait at most
            that many seconds.

        Raises
        ------
        StoreLockedError
            Another writer holds it (and ``wait`` did not allow, or ran out).
        OSError
            The lock file could not be created or locked (naming it).
        """
        self._claim_in_process()
        try:
            with naming_errors(self.store_path, self.path, "create or lock the lock file of",
                               resumable=False):
                self._acquire(wait)
        except BaseException:
            self._unclaim()
            raise

    def _claim_in_process(self):
        for attempt in range(2):
            with _HELD_HERE_LOCK:
                if _HELD_HERE.get(self.path) != os.getpid():
                    _HELD_HERE[self.path] = os.getpid()
                    return
            if attempt == 0:
                gc.collect()  # a writer no longer referenced, in a reference cycle, closes
        raise self._locked_error(
            {"pid": os.getpid(), "host": socket.gethostname()},
            f"{self.store_path} is already open for writing by another StoreWriter of this "
            f"process (pid {os.getpid()}). Finish or close() that writer first (a "
            "StoreWriter is a context manager: `with StoreWriter(...) as w:` closes it).",
        )

    def _unclaim(self):
        with _HELD_HERE_LOCK:
            if _HELD_HERE.get(self.path) == os.getpid():
                del _HELD_HERE[self.path]

    def _acquire(self, wait):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)  # the store's folder
        lock = FileLock(self.path)
        if not lock.acquire(timeout=0):
            holder = self.holder()
            if wait is False:
                raise self._locked_error(holder, f"{self.store_path} is being written by "
                                         f"{_describe(holder)}. Wait for it to finish and run "
                                         "again.") from None
            print(f"[skbottleneck] waiting for {self.store_path}: being written by "
                  f"{_describe(holder)}; this writer starts when that one finishes or dies.",
                  file=sys.stderr, flush=True)
            timeout = -1 if wait is True else float(wait)
            if not lock.acquire(timeout=timeout):
                holder = self.holder() or holder
                raise self._locked_error(holder, f"Gave up waiting {timeout:g} s for "
                                         f"{self.store_path}: it is still being written by "
                                         f"{_describe(holder)}. Wait for it to finish and run "
                                         "again.") from None
        self._write_holder(lock.fd)
        self._lock, self._pid = lock, os.getpid()

    def _write_holder(self, fd):
        """Record who holds the lock, in the lock file (its holder's descriptor)."""
        doc = {"pid": os.getpid(), "host": socket.gethostname(),
               "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "store": self.store_path}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(doc).encode())

    def holder(self):
        """What the lock file says of its holder: a dict with ``pid``, ``host``,
        ``since``, or ``{}`` if it cannot be read."""
        for _ in range(10):  # the holder may be writing it right now
            try:
                with open(self.path, "rb") as f:
                    doc = json.loads(f.read().decode("utf-8"))
                if isinstance(doc, dict) and isinstance(doc.get("pid"), int):
                    return doc
            except FileNotFoundError:
                return {}
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        return {}

    def _locked_error(self, holder, message):
        err = StoreLockedError(errno.EAGAIN, message)
        err.path, err.lock_path = self.store_path, self.path
        err.pid, err.host = holder.get("pid"), holder.get("host")
        return err

    def release(self):
        """Delete the lock file and unlock it (nothing if not held, or held by the
        process this one was forked from)."""
        lock, self._lock = self._lock, None
        if lock is None or self._pid != os.getpid():
            return
        try:
            lock.release(unlink=True)
        finally:
            self._unclaim()


def _describe(holder):
    if not holder.get("pid"):
        return "another writer (its lock file names no process yet)"
    text = f"pid {holder['pid']}"
    if holder.get("host") and holder["host"] != socket.gethostname():
        text += f" on host {holder['host']}"
    if holder.get("since"):
        text += f" (since {holder['since']})"
    return text


def read_only(error):
    """Whether an OSError says the folder cannot be written (so nobody writes there)."""
    return error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
