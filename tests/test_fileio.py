"""The I/O room: atomic files and folders, the one lock, the one stale cleanup."""

import os
import subprocess
import sys
import time

import pytest

from skbottleneck.fileio import (
    TMP_PREFIX,
    FileLock,
    atomic_folder,
    named_os_error,
    remove_stale_tmp,
    write_file_atomic,
)


def test_write_file_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.bin"
    write_file_atomic(str(path), b"old")
    write_file_atomic(str(path), b"new content")
    assert path.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_atomic_folder_publishes_or_leaves_nothing(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError, match="save failed"):
        with atomic_folder(str(target)) as tmp:
            (open(os.path.join(tmp, "half.bin"), "wb")).close()
            raise RuntimeError("save failed")  # not an OSError: still cleaned up
    assert os.listdir(tmp_path) == []
    with atomic_folder(str(target)) as tmp:
        with open(os.path.join(tmp, "x.txt"), "w") as f:
            f.write("x")
    assert os.listdir(tmp_path) == ["model"] and (target / "x.txt").read_text() == "x"
    with pytest.raises(FileExistsError):  # published first by another process
        with atomic_folder(str(target)) as tmp:
            with open(os.path.join(tmp, "y.txt"), "w") as f:
                f.write("y")
    assert os.listdir(tmp_path) == ["model"] and os.listdir(target) == ["x.txt"]


def test_remove_stale_tmp_removes_old_files_folders_and_trash_only(tmp_path):
    old_file, old_dir = tmp_path / f"{TMP_PREFIX}1-a-x.h5", tmp_path / f"{TMP_PREFIX}1-b-m"
    new_file, trash = tmp_path / f"{TMP_PREFIX}2-c-y.h5", tmp_path / "m.trash-1-ab"
    kept = tmp_path / "shard.h5"
    for p in (old_file, new_file, kept):
        p.write_bytes(b"x")
    for p in (old_dir, trash):
        p.mkdir()
        (p / "model.bin").write_bytes(b"x")
    hour_ago = time.time() - 7200
    for p in (old_file, old_dir):
        os.utime(p, (hour_ago, hour_ago))
    remove_stale_tmp(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted([new_file.name, kept.name])


HOLD = """
import sys, time
from skbottleneck.fileio import FileLock
lock = FileLock(sys.argv[1])
assert lock.acquire(timeout=0)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release(unlink=True)
"""


def _holder(path, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_file_lock_excludes_another_process_and_dies_with_it(tmp_path):
    path = tmp_path / "x.lock"
    p = _holder(path, 30)
    lock = FileLock(str(path))
    assert lock.acquire(timeout=0) is False
    assert lock.acquire(timeout=0.2) is False
    p.kill()  # the operating system drops a killed holder's lock
    p.wait()
    assert lock.acquire(timeout=5) and lock.held
    lock.release()


def test_file_lock_waiter_follows_a_lock_file_deleted_by_its_holder(tmp_path):
    path = tmp_path / "x.lock"
    p = _holder(path, 0.5)  # deletes the file it locked, then unlocks
    lock = FileLock(str(path))
    assert lock.acquire(timeout=10)
    # what it holds is the file the path names, not the deleted one
    assert os.fstat(lock.fd).st_ino == os.stat(path).st_ino
    other = FileLock(str(path))
    assert other.acquire(timeout=0) is False
    lock.release(unlink=True)
    assert not path.exists()
    p.wait()


def test_named_os_error_names_the_file_and_keeps_errno():
    e = named_os_error(PermissionError(13, "Permission denied"), "write the shard", "/c/x.h5")
    assert isinstance(e, PermissionError) and "/c/x.h5" in str(e)
