"""The folder of a store being written: its manifest and its journal.

``<store>.partial/`` holds ``manifest.json`` (what is being written: the
identity hashes of the writer's arguments, written first and atomically),
``data.h5`` (the future store) and ``done/``, the journal: one ``.npy``
file of row numbers (int64) per durable :meth:`StoreWriter.write_rows`
call, written atomically. A damaged journal file is moved to
``quarantine/`` with a :class:`~skbottleneck.store.StoreWarning`; its rows
count as not written.
"""

import io
import json
import os
import shutil
import time
import warnings

import numpy as np

from ..fileio import (
    StoreWarning,
    UnsupportedFormatError,
    listdir,
    unlink_quietly,
    write_file_atomic,
)
from ._format import PARTIAL_SCHEMA, STORE_FORMAT_VERSION

__all__ = ["PartialFolder"]

#: Journal files merged into one when a writer finds more than this many.
_MAX_JOURNAL_FILES = 64


class PartialFolder:
    """The ``.partial`` folder of a store being written.

    Parameters
    ----------
    path : str
        The folder (``<store path>.partial``).

    Attributes
    ----------
    path : str
    data_path : str
        ``path/data.h5``.
    journal_dir : str
        ``path/done``.
    """

    def __init__(self, path):
        self.path = path
        self.data_path = os.path.join(path, "data.h5")
        self.journal_dir = os.path.join(path, "done")
        self.manifest_path = os.path.join(path, "manifest.json")

    # -- the folder
    def exists(self):
        return os.path.exists(self.path)

    def remove(self):
        """Delete the folder and everything in it.

        Raises
        ------
        OSError
            It could not be removed.
        """
        shutil.rmtree(self.path, ignore_errors=True)
        if os.path.exists(self.path):
            raise OSError(f"Could not remove {self.path}; delete it by hand.")

    def remove_quietly(self):
        """Delete the folder, ignoring errors (a clean-up after publication)."""
        shutil.rmtree(self.path, ignore_errors=True)

    # -- the manifest
    def read_manifest(self):
        """The manifest, or None if there is none (a partial folder being created
        or deleted: manifest.json is written first and atomically).

        Raises
        ------
        UnsupportedFormatError
            ``manifest.json`` is unreadable or not a partial-store manifest.
        """
        path = self.manifest_path
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise UnsupportedFormatError(
                f"{path} is unreadable ({e}); delete {self.path} (or pass overwrite=True)."
            ) from e
        if not isinstance(doc, dict) or doc.get("schema") != PARTIAL_SCHEMA:
            raise UnsupportedFormatError(
                f"{path} is not a skbottleneck partial-store manifest (schema "
                f"{doc.get('schema') if isinstance(doc, dict) else None!r}); delete "
                f"{self.path} if it is not needed."
            )
        return doc

    def manifest_identity(self):
        """The identity the manifest records; None without one, ``"?"`` if unreadable."""
        try:
            doc = self.read_manifest()
        except UnsupportedFormatError:
            return "?"
        return None if doc is None else doc.get("identity")

    def write_manifest(self, *, store_path, identity, chunk_rows, metadata):
        """Create the folder and its manifest (atomically)."""
        os.makedirs(self.journal_dir, exist_ok=True)
        doc = {"schema": PARTIAL_SCHEMA, "format_version": STORE_FORMAT_VERSION,
               "path": store_path, "identity": identity, "chunk_rows": chunk_rows,
               "metadata": metadata}
        write_file_atomic(self.manifest_path, json.dumps(doc, indent=1, sort_keys=True).encode())

    # -- the journal
    def load_journal(self, done):
        """Set ``done[rows] = True`` for the rows every journal file records.

        Damaged files are quarantined; more than 64 files are merged into one.
        """
        n_rows = len(done)
        names = sorted(n for n in listdir(self.journal_dir) if n.endswith(".npy")
                       and not n.startswith("."))
        for name in names:
            path = os.path.join(self.journal_dir, name)
            try:
                with open(path, "rb") as f:
                    rows = np.load(io.BytesIO(f.read()), allow_pickle=False)
                if rows.ndim != 1 or rows.dtype != np.int64 or (
                        len(rows) and (rows.min() < 0 or rows.max() >= n_rows)):
                    raise ValueError(f"unexpected content {rows.dtype} {rows.shape}")
            except FileNotFoundError:  # pragma: no cover
                continue
            except Exception as e:  # noqa: BLE001 - damaged journal file
                self._quarantine(path, e)
                continue
            done[rows] = True
        if len(names) > _MAX_JOURNAL_FILES:  # merge the journal: one file instead of many
            self.record(np.flatnonzero(done).astype(np.int64))
            for name in names:
                unlink_quietly(os.path.join(self.journal_dir, name))

    def record(self, rows):
        """Add a journal file naming ``rows`` as written (durable when this returns)."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(rows, dtype=np.int64), allow_pickle=False)
        name = f"{time.time_ns():016x}-{os.urandom(4).hex()}.npy"
        write_file_atomic(os.path.join(self.journal_dir, name), buf.getbuffer())

    def _quarantine(self, path, reason):
        qdir = os.path.join(self.path, "quarantine")
        target = os.path.join(qdir, os.path.basename(path))
        try:
            os.makedirs(qdir, exist_ok=True)
            os.replace(path, target)
            where = f"moved to {target}"
        except OSError:  # pragma: no cover
            where = "left in place"
        warnings.warn(
            f"Journal file {path} of the store being written is unreadable "
            f"({type(reason).__name__}: {reason}); it was {where}, and its rows will be "
            "written again.",
            StoreWarning, stacklevel=4,
        )
