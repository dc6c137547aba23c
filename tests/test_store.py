"""StoreWriter / FeatureStore on real HDF5 files, with real processes killed mid-run.

Features are synthetic and deterministic (``_store_worker.synthetic_features``),
so an interrupted-then-resumed run must give the same bits as an
uninterrupted one.
"""

import doctest
import errno
import importlib
import json
import os
import pickle
import pkgutil
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings

import h5py
import numpy as np
import pytest

import skbottleneck.store as store_module
import skbottleneck.store._writer as writer_module
from _store_worker import METADATA, dataset, fingerprint, synthetic_features
from skbottleneck.cache import FeatureCache
from skbottleneck.cache._index import _indexes
from skbottleneck.store import (
    FeatureStore,
    InsufficientDiskSpaceError,
    StoreLockedError,
    StoreSubset,
    StoreWarning,
    StoreWriter,
    UnsupportedFormatError,
    check_disk_space,
)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_store_worker.py")
N, D = 120, 48


def reference(n=N, d=D, dtype="float32"):
    """Features, paths, labels and keys of an uninterrupted run."""
    paths, labels, keys = dataset(n)
    X = synthetic_features(keys, d).astype(dtype)
    return X, paths, labels, keys


def make_store(path, X, *, labels=None, paths=None, **kw):
    n, d = X.shape
    paths = [f"{i}.jpg" for i in range(n)] if paths is None else paths
    w = StoreWriter(path, paths=paths, labels=labels, n_features=d, **kw)
    w.write_rows(np.arange(n), X)
    return w.finalize()


# ------------------------------------------------------------ kill and resume
def start_extract(tmp_path, *extra, sleep=0.02, dtype="float32"):
    args = ["extract", "--store", tmp_path / "features.h5", "--cache", tmp_path / "cache",
            "--n", N, "--d", D, "--batch", 8, "--sleep", sleep, "--dtype", dtype, *extra]
    return subprocess.Popen(
        [sys.executable, WORKER, *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc, pattern, timeout=30):
    """Read the worker's lines until one matches ``pattern``; all the lines."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"worker ended before {pattern!r}: {lines}\n{proc.stderr.read()}")
        lines.append(line.strip())
        if re.fullmatch(pattern, line.strip()):
            return lines
    raise AssertionError(f"no {pattern!r} within {timeout}s: {lines}")


class LineReader:
    """The lines of a worker's stream, read by a thread: wait for one with a timeout."""

    def __init__(self, stream):
        self.seen, self._lines = [], queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} within {timeout}s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"stream ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def all(self, timeout=30):
        """Every line, once the stream has ended."""
        while not self.seen or self.seen[-1] is not None:
            self.seen.append(self._lines.get(timeout=timeout))
        return "\n".join(self.seen[:-1])


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def check_consistent(tmp_path, dtype="float32"):
    """After a kill: the store is finished and right, or absent with its parts;
    the cache holds only right features. No damaged file anywhere."""
    X, paths, labels, keys = reference(dtype=dtype)
    path = tmp_path / "features.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if path.exists():
            with FeatureStore(path) as store:
                assert np.array_equal(store.read_rows(np.arange(N), dtype=dtype)[0], X)
        else:
            assert not (tmp_path / "features.h5.partial").exists() or (
                tmp_path / "features.h5.partial" / "manifest.json").exists()
        _indexes.clear()  # look at it as a new process would
        cache = FeatureCache(tmp_path / "cache", fingerprint(D), dtype=dtype)
        present = [k for k, f in zip(keys, cache.lookup(keys)) if f]
        if present:
            got = cache.read(present)
            assert np.array_equal(got.astype(dtype), synthetic_features(present, D).astype(dtype))
        return len(present)


def check_complete(tmp_path, dtype="float32"):
    X, paths, labels, keys = reference(dtype=dtype)
    assert not (tmp_path / "features.h5.partial").exists()
    with FeatureStore(tmp_path / "features.h5") as store:
        assert store.dtype == np.dtype(dtype)
        got = store.read_rows(np.arange(N), dtype=dtype)[0]
        assert got.tobytes() == X.tobytes()  # bit for bit
        assert store.paths.tolist() == paths
        assert store.labels.tolist() == labels.tolist()
        assert store.keys == keys
        assert store.metadata["weights_hash"] == METADATA["weights_hash"]
    assert check_consistent(tmp_path, dtype) == N


@pytest.mark.parametrize("kill_at", ["BATCH 0", "BATCH 6", "FINALIZE", "RENAME-BEFORE",
                                     "RENAME-AFTER"])
def test_killed_at_a_point_resumes_to_identical_features(tmp_path, kill_at):
    pause = "--pause-after" if kill_at == "RENAME-AFTER" else "--pause-before"
    proc = start_extract(tmp_path, pause, 10)
    lines = wait_for(proc, kill_at)
    kill(proc)
    n_cached = check_consistent(tmp_path)
    if kill_at.startswith("BATCH"):
        assert not (tmp_path / "features.h5").exists()
        assert n_cached >= 8 * int(kill_at.split()[1])
    if kill_at == "RENAME-AFTER":
        assert (tmp_path / "features.h5").exists()
        assert (tmp_path / "features.h5.partial").exists()  # killed before the clean-up
    if kill_at in ("FINALIZE", "RENAME-BEFORE"):
        assert not (tmp_path / "features.h5").exists()
    args = ["extract", "--store", tmp_path / "features.h5", "--cache", tmp_path / "cache",
            "--n", N, "--d", D]
    out = subprocess.run([sys.executable, WORKER, *map(str, args)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    started = int(out.stdout.split()[1])
    if kill_at.startswith("BATCH"):
        n_done = int(kill_at.split()[1]) + 1
        assert started <= N - 8 * n_done  # resumed, not restarted
    else:
        assert started == 0
    check_complete(tmp_path)
    assert lines[0] == f"START {N}"


def test_killed_repeatedly_at_random_moments(tmp_path):
    """Four kills after random delays, then a run to the end; float16 storage."""
    rng = np.random.default_rng(12345)
    n_kills = 0
    for attempt in range(4):
        proc = start_extract(tmp_path, sleep=0.05, dtype="float16")
        wait_for(proc, r"START \d+")
        time.sleep(float(rng.uniform(0.0, 0.25)))
        n_kills += proc.poll() is None
        kill(proc)
        check_consistent(tmp_path, dtype="float16")
    assert n_kills >= 3
    proc = start_extract(tmp_path, sleep=0.0, dtype="float16")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "DONE" in out, err
    check_complete(tmp_path, dtype="float16")


# ------------------------------------------------------------- writer rules
def test_resume_in_process_and_refusals(tmp_path):
    X, paths, labels, keys = reference()
    path = tmp_path / "f.h5"
    args = dict(paths=paths, labels=labels, keys=keys, n_features=D, metadata=METADATA)
    w = StoreWriter(path, **args)
    assert w.missing_rows().tolist() == list(range(N)) and not w.done().any()
    w.write_rows([5, 3, 4, 100], X[[5, 3, 4, 100]])
    w.write_rows(np.arange(10, 20), X[10:20])
    with pytest.raises(ValueError, match=r"106 of the 120 rows .* not been written"):
        w.finalize()
    w.close()  # as if the process died here
    # other content: refused, not silently mixed
    for change in (dict(labels=labels[::-1]), dict(paths=paths[::-1]),
                   dict(metadata={**METADATA, "weights_hash": "1" * 16}), dict(n_features=D + 1),
                   dict(keys=keys[::-1]), dict(dtype="float16")):
        with pytest.raises(ValueError, match=r"partial progress for other content"):
            StoreWriter(path, **{**args, **change})
    w = StoreWriter(path, **args)
    assert len(w.missing_rows()) == N - 14 and w.done()[[3, 4, 5, 100]].all()
    with pytest.raises(ValueError, match="shape"):
        w.write_rows([0, 1], X[:1])
    with pytest.raises(IndexError):
        w.write_rows([N], X[:1])
    w.write_rows(w.missing_rows(), X[w.missing_rows()])
    store = w.finalize()
    assert np.array_equal(store.to_numpy(), X) and not os.path.exists(w.partial_dir)
    store.close()
    # a finished store with the same content: nothing to do
    again = StoreWriter(path, **args)
    assert again.finished and len(again.missing_rows()) == 0 and again.done().all()
    assert np.array_equal(again.finalize().read_rows([7])[0], X[[7]])
    # a finished store with other content: refused, unless overwrite=True
    with pytest.raises(FileExistsError, match="already exists and differs.*other labels"):
        StoreWriter(path, **{**args, "labels": labels[::-1]})
    w = StoreWriter(path, **{**args, "labels": labels[::-1]}, overwrite=True)
    assert len(w.missing_rows()) == N
    with FeatureStore(path) as old:  # still the old one until finalize
        assert old.labels[0] == labels[0]
    w.write_rows(np.arange(N), X)
    with w.finalize() as new:
        assert new.labels[0] == labels[-1]
    # partial progress of other content is discarded with overwrite=True
    w = StoreWriter(tmp_path / "g.h5", **args)
    w.write_rows([0], X[:1])
    w.close()
    w = StoreWriter(tmp_path / "g.h5", **{**args, "paths": paths[::-1]}, overwrite=True)
    assert len(w.missing_rows()) == N
    # not a store at all
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(FileExistsError, match="not a readable skbottleneck store"):
        StoreWriter(tmp_path / "junk.h5", **args)
    with pytest.raises(ValueError, match="reserved"):
        StoreWriter(tmp_path / "h.h5", **{**args, "metadata": {"schema": "x"}})


def test_partial_progress_of_another_format_version_is_refused(tmp_path):
    X, paths, labels, keys = reference()
    w = StoreWriter(tmp_path / "f.h5", paths=paths, n_features=D)
    w.write_rows([0, 1], X[:2])
    w.close()
    manifest = tmp_path / "f.h5.partial" / "manifest.json"
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(doc, format_version=2)))
    with pytest.raises(UnsupportedFormatError, match="format version 2"):
        StoreWriter(tmp_path / "f.h5", paths=paths, n_features=D)
    manifest.write_text("{ not json")
    with pytest.raises(UnsupportedFormatError, match="unreadable"):
        StoreWriter(tmp_path / "f.h5", paths=paths, n_features=D)
    w = StoreWriter(tmp_path / "f.h5", paths=paths, n_features=D, overwrite=True)
    assert len(w.missing_rows()) == N  # discarded, started again


def test_damaged_journal_file_is_reported_and_its_rows_redone(tmp_path):
    X, paths, labels, keys = reference()
    path = tmp_path / "f.h5"
    w = StoreWriter(path, paths=paths, n_features=D)
    w.write_rows(np.arange(8), X[:8])
    w.write_rows(np.arange(8, 16), X[8:16])
    w.close()
    journal = sorted((tmp_path / "f.h5.partial" / "done").iterdir())
    journal[1].write_bytes(journal[1].read_bytes()[:20])  # truncated
    with pytest.warns(StoreWarning, match=re.escape(str(journal[1]))):
        w = StoreWriter(path, paths=paths, n_features=D)
    assert w.missing_rows()[:8].tolist() == list(range(8, 16))
    w.write_rows(w.missing_rows(), X[w.missing_rows()])
    with w.finalize() as store:
        assert np.array_equal(store.to_numpy(), X)


def test_a_partial_store_is_always_valid_hdf5(tmp_path):
    X, paths, labels, keys = reference()
    w = StoreWriter(tmp_path / "f.h5", paths=paths, labels=labels, n_features=D, chunk_rows=7)
    w.write_rows(np.arange(0, N, 3), X[::3])
    with h5py.File(tmp_path / "f.h5.partial" / "data.h5", "r") as f:
        assert f["features"].shape == (N, D) and f["features"].chunks == (7, D)
        assert np.array_equal(f["features"][::3], X[::3])
    w.write_rows(w.missing_rows(), X[w.missing_rows()])
    with w.finalize() as store:
        idx = np.random.default_rng(0).permutation(N)
        assert np.array_equal(store.read_rows(idx)[0], X[idx])


# ------------------------------------------------------- one writer at a time
def test_a_second_writer_waits_for_the_first_then_finds_the_store_finished(tmp_path):
    """Two real processes extract into one store at once: the second says once which
    pid it waits for, waits, then finds the store finished (nothing left to write). A
    third, with other images, gets the FileExistsError of a store that differs. No raw
    FileNotFoundError, no stale .partial, no lock file left."""
    store, go = tmp_path / "features.h5", tmp_path / "go"
    first = start_extract(tmp_path, "--pause-before", 60, "--go", go)
    second = other = None
    try:
        wait_for(first, "RENAME-BEFORE")  # every row written; in finalize, the lock held
        second = start_extract(tmp_path, sleep=0.0)
        other = start_extract(tmp_path, "--n", N - 1, sleep=0.0)
        check_one_waits_for_the_other(tmp_path, first, second, other)
    finally:
        for proc in (first, second, other):
            if proc is not None:
                kill(proc)
    check_complete(tmp_path)  # no .partial beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "features.h5", "go"]


def check_one_waits_for_the_other(tmp_path, first, second, other):
    store, go = tmp_path / "features.h5", tmp_path / "go"
    second_err, other_err = LineReader(second.stderr), LineReader(other.stderr)
    waiting = re.escape(f"waiting for {store}: being written by pid {first.pid}")
    second_err.expect(waiting)
    other_err.expect(waiting)
    assert not store.exists()
    go.touch()  # the first one finishes
    assert first.wait(timeout=60) == 0
    assert second.wait(timeout=60) == 0 and other.wait(timeout=60) != 0
    second_out = second.stdout.read()
    assert second_out.split()[:2] == ["START", "0"] and "DONE" in second_out  # nothing missing
    assert sum("waiting for" in line for line in second_err.all().splitlines()) == 1
    other_text = other_err.all()
    assert "FileExistsError" in other_text and "overwrite=True" in other_text
    assert "FileNotFoundError" not in other_text + second_err.all()


def test_a_writer_told_not_to_wait_names_the_holder_and_a_killed_holder_blocks_no_one(tmp_path):
    X, paths, labels, keys = reference()
    store, lock = tmp_path / "features.h5", tmp_path / "features.h5.lock"
    args = dict(paths=paths, labels=labels, keys=keys, n_features=D, metadata=METADATA)
    first = start_extract(tmp_path, "--pause-before", 60)
    try:
        wait_for(first, "RENAME-BEFORE")  # the lock held, in finalize
        check_refused_while_held(store, lock, first.pid, args)
    finally:
        kill(first)  # SIGKILL while holding the lock
    assert lock.exists()  # left behind, but the system dropped its lock
    w = StoreWriter(store, **args, wait=False)  # no waiting for a dead process
    assert len(w.missing_rows()) == 0  # its rows were all durable
    w.finalize().close()
    check_complete(tmp_path)
    assert not lock.exists()


def check_refused_while_held(store, lock, pid, args):
    assert json.loads(lock.read_text())["pid"] == pid
    t0 = time.monotonic()
    with pytest.raises(StoreLockedError) as info:
        StoreWriter(store, **args, wait=False)
    assert time.monotonic() - t0 < 5  # at once
    e = info.value
    assert isinstance(e, BlockingIOError) and isinstance(e, OSError) and e.errno == errno.EAGAIN
    assert e.pid == pid and e.path == str(store) and e.lock_path == str(lock)
    assert str(store) in str(e) and f"being written by pid {pid}" in str(e)
    t0 = time.monotonic()
    with pytest.raises(StoreLockedError, match=r"Gave up waiting 0.3 s for .*: it is still "
                                               f"being written by pid {pid}"):
        StoreWriter(store, **args, wait=0.3)
    assert time.monotonic() - t0 >= 0.3


def test_a_second_writer_in_the_same_process_is_refused_at_once(tmp_path):
    path = tmp_path / "f.h5"
    w = StoreWriter(path, paths=["a", "b", "c"], n_features=4)
    w.write_rows([0], np.ones((1, 4)))
    for wait in (True, False, 10):  # never waits for itself
        with pytest.raises(StoreLockedError, match="another StoreWriter of this process") as info:
            StoreWriter(path, paths=["a", "b", "c"], n_features=4, wait=wait)
        assert info.value.pid == os.getpid()
    w.close()
    assert sorted(os.listdir(tmp_path)) == ["f.h5.partial"]  # the lock file went with it
    with pytest.raises(ValueError, match="closed"):
        w.write_rows([1], np.ones((1, 4)))
    with StoreWriter(path, paths=["a", "b", "c"], n_features=4) as w:
        assert w.missing_rows().tolist() == [1, 2]
        w.write_rows([1, 2], np.ones((2, 4)))
        w.finalize().close()
    assert sorted(os.listdir(tmp_path)) == ["f.h5"]
    with pytest.raises(ValueError, match="wait must be"):
        StoreWriter(path, paths=["a"], n_features=4, wait=-1)


def test_a_refused_extraction_leaves_the_folder_as_it_was(tmp_path):
    d = 10**9  # 4 GB rows
    n = int(shutil.disk_usage(tmp_path).free / (4 * d) * 2) + 10  # twice the free space
    paths = [f"{i}.jpg" for i in range(n)]
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(InsufficientDiskSpaceError, match=f"in {re.escape(str(tmp_path))}: "
                                                         f"features of {n} images"):
        StoreWriter(tmp_path / "f.h5", paths=paths, n_features=d, check_space=True)
    assert os.listdir(tmp_path) == ["other.txt"]
    with pytest.raises(InsufficientDiskSpaceError):
        StoreWriter(tmp_path / "new" / "f.h5", paths=paths, n_features=d, check_space=True)
    assert os.listdir(tmp_path) == ["other.txt"]
    # a writer closed before its first row leaves nothing either
    w = StoreWriter(tmp_path / "g.h5", paths=paths[:3], n_features=4, check_space=True)
    w.close()
    assert os.listdir(tmp_path) == ["other.txt"]
    # a resumed store needs room for its missing rows only
    w = StoreWriter(tmp_path / "g.h5", paths=paths[:3], n_features=4)
    w.write_rows([0, 1], np.ones((2, 4)))
    w.close()
    with StoreWriter(tmp_path / "g.h5", paths=paths[:3], n_features=4, check_space=True,
                     verbose=1) as w:
        assert w.missing_rows().tolist() == [2]


def test_a_damaged_data_file_is_named_and_overwrite_starts_again(tmp_path):
    X, paths, labels, keys = reference()
    path, data = tmp_path / "f.h5", tmp_path / "f.h5.partial" / "data.h5"
    for damage in ("zeroed", "truncated"):
        w = StoreWriter(path, paths=paths, n_features=D, overwrite=True)
        w.write_rows(np.arange(8), X[:8])
        w.close()
        if damage == "zeroed":
            with open(data, "r+b") as f:
                f.write(b"\0" * 4096)  # the superblock
        else:
            data.write_bytes(data.read_bytes()[:3000])
        with pytest.raises(OSError) as info:
            StoreWriter(path, paths=paths, n_features=D)
        message = str(info.value)
        assert str(data) in message and str(path) in message and "damaged" in message
        assert f"delete {tmp_path / 'f.h5.partial'}" in message and "overwrite=True" in message
        assert isinstance(info.value.__cause__, OSError)  # HDF5's, kept
    w = StoreWriter(path, paths=paths, n_features=D, overwrite=True)
    assert len(w.missing_rows()) == N  # started again
    w.write_rows(np.arange(N), X)
    with w.finalize() as store:
        assert np.array_equal(store.to_numpy(), X)


@pytest.mark.parametrize("at", ["create", "rows"])
def test_a_full_disk_names_the_store_file_and_keeps_the_errno(tmp_path, at):
    """A child process under RLIMIT_FSIZE (SIGXFSZ ignored): creating data.h5, or writing
    rows past the limit, fails with EFBIG naming the file and the store; a rerun
    without the limit resumes from what was written."""
    n, d, store = 200, 1024, tmp_path / "f.h5"
    out = subprocess.run(
        [sys.executable, WORKER, *map(str, ["fill", "--store", store, "--cache", tmp_path / "c",
                                            "--n", n, "--d", d, "--batch", 8,
                                            "--limit", 300_000, "--at", at])],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    err = json.loads(out.stdout.splitlines()[-1])
    assert err["errno"] == errno.EFBIG, err
    assert err["filename"] == str(tmp_path / "f.h5.partial" / "data.h5")
    assert err["store"] == str(store)
    assert f"the feature store {store}" in err["message"] and "disk is full" in err["message"]
    paths, labels, keys = dataset(n)
    feats = synthetic_features(keys, d)
    w = StoreWriter(store, paths=paths, labels=labels, n_features=d)
    assert len(w.missing_rows()) == (n if at == "create" else n - 8)
    w.write_rows(w.missing_rows(), feats[w.missing_rows()])
    with w.finalize() as done:
        assert np.array_equal(done.to_numpy(), feats)


def test_store_errors_keep_their_errno_and_cause(tmp_path):
    """A store that cannot be written names itself, and stays the OSError it was."""
    (tmp_path / "file").write_text("not a folder")
    store = tmp_path / "file" / "f.h5"
    with pytest.raises(FileExistsError) as info:  # os.makedirs' own error for this
        StoreWriter(store, paths=["a"], n_features=4)
    e = info.value
    assert e.errno == errno.EEXIST and e.filename == str(store) + ".lock" and e.store == str(store)
    assert f"the lock file of the feature store {store}" in str(e)
    assert isinstance(e.__cause__, FileExistsError) and "rerun" not in str(e)
    # the final rename fails (a folder where the store goes): named, kept, resumable
    store = tmp_path / "f.h5"
    (store / "in-the-way").mkdir(parents=True)
    w = StoreWriter(store, paths=["a"], n_features=4, overwrite=True)
    w.write_rows([0], np.ones((1, 4)))
    with pytest.raises(OSError) as info:
        w.finalize()
    e = info.value
    assert e.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST) and e.store == str(store)
    assert e.filename == str(tmp_path / "f.h5.partial" / "data.h5") and "rerun" in str(e)
    assert type(e) is type(e.__cause__) and "publish" in str(e)
    shutil.rmtree(store)
    with StoreWriter(store, paths=["a"], n_features=4) as w:
        assert len(w.missing_rows()) == 0
        w.finalize().close()
    assert sorted(os.listdir(tmp_path)) == ["f.h5", "file"]
    if os.geteuid() == 0:
        return  # root may write anywhere: no read-only folder to try
    folder = tmp_path / "ro"
    folder.mkdir()
    make_store(folder / "done.h5", np.ones((2, 4), np.float32))
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as info:
            StoreWriter(folder / "f.h5", paths=["a"], n_features=4)
        assert f"feature store {folder / 'f.h5'}" in str(info.value)
        assert isinstance(info.value.__cause__, PermissionError)
        # a finished store in a read-only folder: nothing to write, nothing to lock
        assert StoreWriter(folder / "done.h5", paths=["0.jpg", "1.jpg"], n_features=4).finished
    finally:
        folder.chmod(0o700)


# -------------------------------------------------------------------- reader
@pytest.mark.parametrize("labels", [
    None,
    np.array(["cat", "dög", "🐦", ""] * 5),
    np.arange(20) % 3,
    np.linspace(0, 1, 20),
    np.arange(20) % 2 == 0,
    [f"c{i % 2}" for i in range(20)],
], ids=["none", "str", "int", "float", "bool", "list-of-str"])
def test_labels_paths_keys_round_trip(tmp_path, labels):
    X = np.random.default_rng(0).standard_normal((20, 5)).astype(np.float32)
    paths = [f"/images/ä/{i}.jpg" for i in range(19)] + ["/images/bad-\udcff.jpg"]
    keys = [bytes([i]) * 20 for i in range(19)] + [b"\x00" * 20]
    w = StoreWriter(tmp_path / "f.h5", paths=paths, labels=labels, keys=keys, n_features=5)
    w.write_rows(np.arange(20), X)
    store = pickle.loads(pickle.dumps(w.finalize()))
    assert store.paths.tolist() == paths and store.paths.dtype.kind == "U"
    assert store.keys == keys
    if labels is None:
        assert store.labels is None and store.read_rows([1])[1] is None
    else:
        expected = np.asarray(labels)
        assert store.labels.dtype.kind == expected.dtype.kind
        assert store.labels.tolist() == expected.tolist()
        assert store.read_rows([3, 1])[1].tolist() == expected[[3, 1]].tolist()


def test_indexing(tmp_path):
    X = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    store = make_store(tmp_path / "f.h5", X, labels=np.arange(50))
    assert len(store) == 50 and store.shape == (50, 4) and store.n_features == 4
    assert np.array_equal(store[3], X[3])
    assert np.array_equal(store[-1], X[-1])
    assert np.array_equal(store[5:40:3], X[5:40:3])
    assert np.array_equal(store[::-1], X[::-1])
    assert np.array_equal(store[[4, 4, 0, -2]], X[[4, 4, 0, -2]])
    mask = X[:, 0] % 3 == 0
    assert np.array_equal(store[mask], X[mask])
    assert np.array_equal(store[2:6, 1], X[2:6, 1])
    assert np.array_equal(store[[]], X[[]])
    X2, y2 = store.read_rows(np.array([9, 2]), dtype=np.float64)
    assert X2.dtype == np.float64 and y2.tolist() == [9, 2]
    with pytest.raises(IndexError):
        store[[50]]
    with pytest.raises(IndexError):
        store[[0.5]]
    assert np.array_equal(store.to_numpy(), X)
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.read_rows([0])
    # an empty store
    empty = make_store(tmp_path / "e.h5", np.zeros((0, 4), np.float32), labels=[])
    assert len(empty) == 0 and list(empty.iter_chunks()) == [] and empty.to_numpy().shape == (0, 4)


def test_stores_of_another_layout_are_read_through_hdf5(tmp_path):
    """A store re-packed by another tool (compressed) still reads, via h5py."""
    X = np.random.default_rng(0).standard_normal((300, 20)).astype(np.float32)
    make_store(tmp_path / "a.h5", X, labels=np.arange(300)).close()
    with h5py.File(tmp_path / "a.h5", "r") as f, h5py.File(tmp_path / "b.h5", "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for name in ("paths", "labels"):
            f.copy(name, g)
        g.create_dataset("features", data=f["features"][()], compression="gzip", chunks=(16, 20))
    with FeatureStore(tmp_path / "b.h5") as store:
        assert store._layout is None  # not readable at byte offsets
        idx = np.random.default_rng(1).permutation(300)
        assert np.array_equal(store.read_rows(idx)[0], X[idx])
        assert np.array_equal(store[idx[:5]], X[idx[:5]])
        rows = np.concatenate([y for _, y in store.iter_chunks(50, random_state=0)])
        assert sorted(rows.tolist()) == list(range(300))


def test_float16_store(tmp_path):
    X = np.random.default_rng(0).standard_normal((1000, 256)).astype(np.float32) * 50
    s32 = make_store(tmp_path / "a.h5", X)
    s16 = make_store(tmp_path / "b.h5", X, dtype="float16", chunk_rows=32)
    assert s16.dtype == np.float16 and s32.dtype == np.float32
    got = s16.read_rows(np.arange(1000))[0]
    assert got.dtype == np.float32
    assert np.array_equal(got, X.astype(np.float16).astype(np.float32))
    assert s16.to_numpy(dtype=np.float16).dtype == np.float16
    assert os.path.getsize(tmp_path / "b.h5") < 0.6 * os.path.getsize(tmp_path / "a.h5")


def test_iter_chunks_covers_every_row_once_reproducibly(tmp_path):
    n = 1000
    X = np.repeat(np.arange(n, dtype=np.float32)[:, None], 8, axis=1)
    labels = np.repeat(np.arange(10), n // 10)  # sorted by class, like an image folder
    with make_store(tmp_path / "f.h5", X, labels=labels) as store:

        def one_pass(**kw):
            chunks = list(store.iter_chunks(64, **kw))
            rows = np.concatenate([c[0][:, 0] for c in chunks]).astype(int)
            for Xc, yc in chunks:
                assert np.array_equal(labels[Xc[:, 0].astype(int)], yc)  # y matches X
                assert (Xc == Xc[:, :1]).all()
            return rows, [len(c[0]) for c in chunks], chunks

        rows, sizes, _ = one_pass(shuffle=False)
        assert rows.tolist() == list(range(n)) and sizes == [64] * 15 + [40]
        a, sizes, chunks = one_pass(random_state=0)
        assert sorted(a.tolist()) == list(range(n))  # every row exactly once
        assert sizes == [64] * 15 + [40]
        assert np.array_equal(one_pass(random_state=0)[0], a)  # reproducible
        assert not np.array_equal(one_pass(random_state=1)[0], a)  # seed matters
        # None draws from NumPy's global RandomState (whatever seeded it last):
        # two passes differ
        assert not np.array_equal(one_pass(random_state=None)[0], one_pass(random_state=None)[0])
        rng = np.random.RandomState(3)
        assert not np.array_equal(one_pass(random_state=rng)[0], one_pass(random_state=rng)[0])
        # chunks of a class-sorted store mix the classes
        assert min(len(np.unique(yc)) for _, yc in chunks[:-1]) >= 4
        small_blocks = list(store.iter_chunks(64, random_state=0, block_rows=1))
        assert sorted(np.concatenate([c[0][:, 0] for c in small_blocks]).tolist()) == list(range(n))
        with pytest.raises(ValueError, match="chunk_size"):
            next(store.iter_chunks(0))


def chunks_of_release_0_1(n, row_nbytes, chunk_size, seed, block_rows=None):
    """The rows of each chunk as skbottleneck 0.1's ``iter_chunks`` dealt them."""
    rng = np.random.RandomState(seed)
    if block_rows is None:
        block_rows = min(128 * 1024 // max(1, row_nbytes), chunk_size // 16)
    block_rows = max(1, min(block_rows, chunk_size))
    pieces, count, chunks = [], 0, []
    for b in rng.permutation(-(-n // block_rows)):
        lo, hi = int(b) * block_rows, min(n, (int(b) + 1) * block_rows)
        while lo < hi:
            take = min(hi - lo, chunk_size - count)
            pieces.append(np.arange(lo, lo + take))
            count, lo = count + take, lo + take
            if count == chunk_size:
                rows = np.concatenate(pieces)
                chunks.append(rows[rng.permutation(len(rows))])
                pieces, count = [], 0
    if pieces:
        rows = np.concatenate(pieces)
        chunks.append(rows[rng.permutation(len(rows))])
    return chunks


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_iter_chunks_deals_the_same_chunks_as_before_for_a_seed(tmp_path, dtype):
    """A seed gives the chunks it gave before the store became a package
    (blocks sized from the stored bytes per row: 16 rows of float32, 32 of float16)."""
    n, d = 600, 2048
    X = np.zeros((n, d), np.float32)
    X[:, 0] = np.arange(n)
    row_nbytes = d * np.dtype(dtype).itemsize
    with make_store(tmp_path / "f.h5", X, labels=np.arange(n), dtype=dtype) as store:
        for chunk_size, block_rows, seed in ((512, None, 0), (100, None, 1), (64, 5, 2),
                                             (64, 1000, 3)):
            got = [y for _, y in store.iter_chunks(chunk_size, random_state=seed,
                                                   block_rows=block_rows)]
            want = chunks_of_release_0_1(n, row_nbytes, chunk_size, seed, block_rows)
            assert [g.tolist() for g in got] == [w.tolist() for w in want]
            for (Xc, yc), w in zip(store.iter_chunks(chunk_size, random_state=seed,
                                                     block_rows=block_rows), want):
                assert np.array_equal(Xc[:, 0], w)


def test_skipped_images(tmp_path):
    X = np.ones((3, 2), np.float32)
    with make_store(tmp_path / "a.h5", X) as store:
        assert store.skipped_images == []
    skipped = [["/data/bad.jpg", "ImageError: cannot identify image file"],
               ["/data/gone.jpg", "FileNotFoundError: no such file"]]
    w = StoreWriter(tmp_path / "b.h5", paths=["a.jpg", "bad.jpg", "gone.jpg", "d.jpg"],
                    n_features=2)
    w.write_rows([0, 3], X[:2])
    with w.finalize_subset([0, 3], metadata={"skipped_images": json.dumps(skipped)}) as store:
        assert store.skipped_images == [tuple(s) for s in skipped]
    with FeatureStore(tmp_path / "b.h5") as store:  # read back from disk
        assert store.skipped_images == [tuple(s) for s in skipped]
        assert pickle.loads(pickle.dumps(store)).skipped_images == store.skipped_images


# --------------------------------------------------------------- StoreSubset
class RecordingStore(FeatureStore):
    """A FeatureStore that remembers which rows it read from disk."""

    def _open(self):
        super()._open()
        self.rows_read = []

    def _read_into(self, rows, out):
        self.rows_read.append(np.array(rows, dtype=np.int64))
        return super()._read_into(rows, out)


def class_sorted_store(path, n=2000, d=64, dtype="float32"):
    X = np.zeros((n, d), np.float32)
    X[:, 0] = np.arange(n)  # each row says which it is
    labels = np.repeat(np.arange(20), n // 20)  # sorted by class, like an image folder
    make_store(path, X, labels=labels, dtype=dtype).close()
    return RecordingStore(path), labels


def test_store_subset_reads_each_of_its_rows_once_and_no_other(tmp_path):
    store, labels = class_sorted_store(tmp_path / "f.h5")
    rows = np.random.default_rng(0).choice(len(store), 700, replace=False)
    sub = StoreSubset(store, rows)
    keep = np.sort(rows)
    assert len(sub) == 700 and sub.n_features == 64 and sub.shape == (700, 64)
    assert np.array_equal(sub.rows, keep) and sub.dtype == np.float32
    assert np.array_equal(sub.labels, labels[keep])
    assert sub.paths.tolist() == [f"{i}.jpg" for i in keep]
    assert sub.path == store.path and sub.metadata["n_rows"] == 2000
    for kw in ({"random_state": 0}, {"shuffle": False}):
        store.rows_read.clear()
        chunks = list(sub.iter_chunks(64, **kw))
        assert [len(X) for X, _ in chunks] == [64] * 10 + [60]
        seen = np.concatenate([X[:, 0] for X, _ in chunks]).astype(int)
        assert sorted(seen.tolist()) == keep.tolist()  # each row of the subset once
        for X, y in chunks:
            assert np.array_equal(y, labels[X[:, 0].astype(int)])  # y matches X
        read = np.concatenate(store.rows_read)
        assert len(read) == 700 and set(read.tolist()) == set(keep.tolist())  # no other row
    assert np.array_equal(seen, keep)  # shuffle=False: in order
    X, y = sub.read_rows([3, 0])
    assert X[:, 0].tolist() == [keep[3], keep[0]]
    assert y.tolist() == labels[[keep[3], keep[0]]].tolist()
    mask = np.zeros(700, bool)
    mask[[1, 5]] = True
    assert sub.read_rows(mask)[0][:, 0].tolist() == [keep[1], keep[5]]
    with pytest.raises(IndexError, match=r"\[0, 2000\)"):
        StoreSubset(store, [0, 2000])
    with pytest.raises(ValueError, match="chunk_size"):
        next(sub.iter_chunks(0))
    assert pickle.loads(pickle.dumps(sub)).read_rows([0])[0][0, 0] == keep[0]
    store.close()


def test_store_subset_shuffle_is_deterministic_and_mixes_blocks(tmp_path):
    store, labels = class_sorted_store(tmp_path / "f.h5")
    sub = StoreSubset(store, np.arange(0, 2000, 2))  # every other row: 1000 rows

    def order(**kw):
        return [X[:, 0].astype(int) for X, _ in sub.iter_chunks(100, **kw)]

    a = order(random_state=0)
    assert all(np.array_equal(u, v) for u, v in zip(a, order(random_state=0)))  # a seed repeats
    assert not np.array_equal(np.concatenate(a), np.concatenate(order(random_state=1)))
    # blocks of 100 // 16 = 6 neighbouring rows of the subset, dealt from all over it
    for chunk in a:
        assert len(np.unique(labels[chunk])) >= 5  # a class-sorted store gives mixed chunks
        assert len(np.unique(chunk // 12)) >= 16  # rows from 16 blocks or more
    assert not np.array_equal(np.sort(a[0]), a[0])  # rows permuted within a chunk


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_store_subset_of_every_row_deals_the_chunks_of_its_store(tmp_path, dtype):
    """The subset sizes its blocks from the store's real bytes per row."""
    store, _ = class_sorted_store(tmp_path / "f.h5", n=1000, d=2048, dtype=dtype)
    sub = StoreSubset(store, np.arange(len(store)))  # blocks of 16 rows (float32), 32 (float16)
    pairs = list(zip(store.iter_chunks(512, random_state=7), sub.iter_chunks(512, random_state=7)))
    assert len(pairs) == 2
    for (Xa, ya), (Xb, yb) in pairs:
        assert np.array_equal(Xa, Xb) and np.array_equal(ya, yb)
    store.close()


def test_iter_chunks_memory_is_bounded_by_the_chunk(tmp_path):
    n, d, chunk = 8000, 256, 100
    X = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)  # 8 MB
    store = make_store(tmp_path / "f.h5", X, labels=np.arange(n) % 7)
    del X
    store.labels  # loaded once, n integers
    chunk_bytes = chunk * d * 4  # 100 KB
    for shuffle in (True, False):
        tracemalloc.start()
        total = 0
        for Xc, yc in store.iter_chunks(chunk, shuffle=shuffle, random_state=0):
            total += len(Xc)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert total == n
        # the store is 80 chunks; memory stays within a few chunks (+ the 4 MiB read buffer cap)
        assert peak < 6 * chunk_bytes + 256 * 1024, (shuffle, peak)


def test_refuses_foreign_and_other_version_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        FeatureStore(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="not a readable HDF5 file"):
        FeatureStore(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["features"] = np.zeros((2, 2))
    with pytest.raises(UnsupportedFormatError, match="not a skbottleneck feature store"):
        FeatureStore(tmp_path / "other.h5")
    make_store(tmp_path / "v.h5", np.zeros((2, 3), np.float32)).close()
    for version in (2, 0):
        with h5py.File(tmp_path / "v.h5", "r+") as f:
            f.attrs["format_version"] = version
        with pytest.raises(UnsupportedFormatError, match=f"format version {version}; this "
                                                          "skbottleneck reads version 1"):
            FeatureStore(tmp_path / "v.h5")
    # a truncated store is refused, not misread
    make_store(tmp_path / "t.h5", np.ones((100, 50), np.float32)).close()
    with open(tmp_path / "t.h5", "r+b") as f:
        f.truncate(os.path.getsize(tmp_path / "t.h5") // 2)
    with pytest.raises(UnsupportedFormatError, match="not a readable HDF5 file"):
        FeatureStore(tmp_path / "t.h5")


def test_store_metadata_attributes(tmp_path):
    meta = {"backbone": "resnet50", "weights_hash": "ab12", "layer": None,
            "input_size": [224, 224], "keras_version": "3.15.1", "mixed": True, "n": 3}
    store = make_store(tmp_path / "f.h5", np.zeros((3, 2), np.float32), metadata=meta)
    m = store.metadata
    assert m["schema"] == "skbottleneck.features" and m["format_version"] == 1
    assert m["backbone"] == "resnet50" and m["keras_version"] == "3.15.1"
    assert m["input_size"] == "[224,224]" and m["layer"] == "null" and m["mixed"] is True
    assert m["numpy_version"] == np.__version__ and m["h5py_version"] == h5py.__version__
    assert m["skbottleneck_version"] and m["n_rows"] == 3 and m["storage_dtype"] == "float32"
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert f["features"].compression is None


def test_check_disk_space(tmp_path, monkeypatch, capsys):
    free = check_disk_space(tmp_path / "not" / "yet" / "there.h5", 1000, verbose=1)
    assert free > 0 and "free" in capsys.readouterr().out
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: usage._replace(free=10 * 2**30))  # 10 GiB free
    check_disk_space(tmp_path, 5 * 2**30)
    n_images, n_features = 50_000, 100_352  # ResNet50 un-pooled: 20 GB
    with pytest.raises(InsufficientDiskSpaceError) as info:
        check_disk_space(tmp_path, n_images * n_features * 4,
                         what=f"features of {n_images} images x {n_features} x 4 bytes")
    e = info.value
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC
    assert e.free == 10 * 2**30 and e.required > n_images * n_features * 4
    assert "18.7 GiB" in str(e) and "10.0 GiB is free" in str(e) and "50000 images" in str(e)


def test_doctests(tmp_path):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    modules = [store_module] + [importlib.import_module(f"skbottleneck.store.{m.name}")
                                for m in pkgutil.iter_modules(store_module.__path__)]
    tests = [test for module in modules for test in finder.find(module)]
    assert sum(len(test.examples) for test in tests) >= 25  # every module looked at
    for i, test in enumerate(tests):
        test.globs["tmp_dir"] = tmp_path / str(i)
        test.globs["tmp_dir"].mkdir()
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


# ------------------------------------------------------------ finalize_subset
def test_finalize_subset_copies_the_kept_rows_and_resumes_after_a_crash(tmp_path, monkeypatch):
    paths, labels, keys = dataset(50)
    d = 24
    feats = synthetic_features(keys, d)
    out = tmp_path / "subset.h5"
    kwargs = dict(paths=paths, labels=labels, keys=keys, n_features=d, metadata=METADATA)
    keep = np.setdiff1d(np.arange(50), [3, 17, 18, 49])
    writer = StoreWriter(out, **kwargs)
    writer.write_rows(keep, feats[keep])  # rows 3, 17, 18, 49 never come
    with pytest.raises(ValueError, match="have not been written"):
        writer.finalize_subset([0, 3])

    # crash in the middle of the copy (4 rows per step; the third step fails)
    monkeypatch.setattr(writer_module, "_SUBSET_COPY_BYTES", 4 * d * 4)
    real_write_rows, calls, crash = StoreWriter.write_rows, [], [True]

    def failing_write_rows(self, rows, features):
        if self.path.endswith(os.path.join(".partial", "subset.h5")):
            calls.append(len(rows))
            if crash[0] and len(calls) == 3:
                raise OSError("simulated crash")
        return real_write_rows(self, rows, features)

    monkeypatch.setattr(StoreWriter, "write_rows", failing_write_rows)
    with pytest.raises(OSError, match="simulated crash"):
        writer.finalize_subset(keep, metadata={"skipped_images": "[]"})
    writer.close()
    assert not out.exists()

    # a new writer with the same arguments resumes: only the rest is copied
    calls.clear()
    crash[0] = False
    writer = StoreWriter(out, **kwargs)
    assert list(writer.missing_rows()) == [3, 17, 18, 49]
    store = writer.finalize_subset(keep, metadata={"skipped_images": "[]"})
    assert sum(calls) == len(keep) - 8  # two steps of 4 rows were already durable
    assert not os.path.exists(str(out) + ".partial")
    X, y = store.read_rows(np.arange(len(keep)))
    np.testing.assert_array_equal(X, feats[keep])
    np.testing.assert_array_equal(y, labels[keep])
    assert list(store.paths) == [paths[i] for i in keep]
    assert list(store.keys) == [keys[i] for i in keep]
    store.close()

    # the same arguments again: finished, nothing to write
    again = StoreWriter(out, **kwargs)
    assert again.finished and len(again.missing_rows()) == 0
    # other arguments: the subset store is not taken for theirs
    other_paths, _, _ = dataset(51)
    with pytest.raises(FileExistsError):
        StoreWriter(out, paths=other_paths, n_features=d, metadata=METADATA)
