"""FeatureCache and its housekeeping, on real HDF5 files and real processes.

Features are synthetic and deterministic (``_store_worker.synthetic_features``):
no TensorFlow here.
"""

import doctest
import importlib
import os
import pkgutil
import pickle
import re
import shutil
import subprocess
import sys
import time
import warnings

import h5py
import numpy as np
import pytest

import skbottleneck.cache as cache_package
import skbottleneck.store
from _store_worker import fingerprint, synthetic_features, synthetic_key
from skbottleneck.cache import (
    FeatureCache,
    cache_info,
    clear_cache,
    file_key,
    file_keys,
    fingerprint_id,
    get_cache_dir,
)
from skbottleneck.cache._index import _indexes
from skbottleneck.cache._shards import shard_image
from skbottleneck.store import StoreWarning

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_store_worker.py")
D = 32


def keys_of(ids):
    return [synthetic_key(int(i)) for i in ids]


def new_process_view(cache):
    """The same cache as a freshly started process sees it (no in-memory index)."""
    _indexes.clear()
    return FeatureCache(cache.cache_dir, cache.fingerprint, dtype=cache.dtype)


def shard_files(cache):
    d = os.path.join(cache.path, "shards")
    return sorted(os.path.join(d, n) for n in os.listdir(d) if not n.startswith("."))


def run_worker(*args, **popen_kw):
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen_kw)


def finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{out}\n{err}"
    return out


# ------------------------------------------------------------------- hashing
def test_file_key_follows_content_not_name(tmp_path):
    a = tmp_path / "a.jpg"
    a.write_bytes(b"\xff\xd8 some jpeg bytes" * 1000)
    key = file_key(a)
    assert isinstance(key, bytes) and len(key) == 20
    b = tmp_path / "b.jpg"
    shutil.copy(a, b)
    assert file_key(b) == key  # a copy
    c = tmp_path / "renamed.jpg"
    os.rename(b, c)
    assert file_key(c) == key  # a rename
    assert file_key(str(a)) == key


def test_file_key_sees_an_edit_even_with_the_same_size_and_mtime(tmp_path):
    p = tmp_path / "img.png"
    p.write_bytes(b"A" * 5000)
    key = file_key(p)
    st = os.stat(p)
    time.sleep(0.01)
    p.write_bytes(b"B" * 5000)  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back
    assert file_key(p) != key


def test_file_key_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        file_key(tmp_path / "nope.jpg")
    with pytest.raises(IsADirectoryError if os.name != "nt" else PermissionError):
        file_key(tmp_path)


def test_file_keys_threads_and_returns_errors(tmp_path):
    paths = []
    for i in range(40):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(bytes([i % 7]) * (1000 + 37 * i))
        paths.append(p)
    paths.insert(5, tmp_path / "missing.bin")
    for n_jobs in (1, 4, -1, None):
        keys = file_keys(paths, n_jobs=n_jobs)
        assert isinstance(keys[5], FileNotFoundError)
        assert keys[:5] + keys[6:] == [file_key(p) for p in paths[:5] + paths[6:]]
    assert file_keys([]) == []


# --------------------------------------------------------------- fingerprints
def test_fingerprint_ids_and_folders(tmp_path):
    fp = {"backbone": "resnet50", "weights": "imagenet", "layer": None, "pooling": "avg",
          "input_size": [224, 224], "dtype": "float32", "format": 1}
    same = dict(reversed(list(fp.items())))
    other = dict(fp, pooling="max")
    a, b, c = (FeatureCache(tmp_path, f) for f in (fp, same, other))
    assert a.fingerprint_id == b.fingerprint_id == fingerprint_id(fp)
    assert a.path == b.path and os.path.isdir(a.path)
    assert c.path != a.path
    assert FeatureCache(tmp_path, fp, dtype="float16").path != a.path
    assert fingerprint_id({"size": np.int64(3)}) == fingerprint_id({"size": 3})
    # tuples are lists in JSON
    assert fingerprint_id({"s": (1, 2)}) == fingerprint_id({"s": [1, 2]})
    with pytest.raises(TypeError, match="JSON"):
        fingerprint_id({"f": object()})
    with pytest.raises(ValueError, match="dtype"):
        FeatureCache(tmp_path, fp, dtype="int8")
    # separate folders hold separate entries
    a.write(keys_of([1]), np.ones((1, 4), np.float32))
    assert a.lookup(keys_of([1]))[0] and not c.lookup(keys_of([1]))[0]
    assert sorted(os.listdir(tmp_path)) == sorted({a.fingerprint_id, c.fingerprint_id,
                                                   fingerprint_id(fp, "float16")})


def test_get_cache_dir(monkeypatch, tmp_path):
    assert get_cache_dir(tmp_path / "x") == str(tmp_path / "x")
    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(tmp_path / "env"))
    assert get_cache_dir() == str(tmp_path / "env")
    monkeypatch.delenv("SKBOTTLENECK_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert get_cache_dir() == str(tmp_path / "xdg" / "skbottleneck")
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert get_cache_dir() == str(tmp_path / "home" / ".cache" / "skbottleneck")
    assert not os.path.exists(get_cache_dir())  # not created


# ------------------------------------------------------------------ basics
def test_write_lookup_read(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D), metadata={"keras_version": "3.x"})
    assert cache.n_features is None and len(cache) == 0
    keys = keys_of(range(50))
    X = synthetic_features(keys, D)
    assert not cache.lookup(keys).any()
    for a in range(0, 50, 8):
        cache.write(keys[a:a + 8], X[a:a + 8])
    assert cache.n_features == D and len(cache) == 50
    order = np.random.default_rng(0).permutation(50)
    query = [keys[i] for i in order] + keys_of([999])
    assert cache.lookup(query).tolist() == [True] * 50 + [False]
    assert np.array_equal(cache.read(query[:-1]), X[order])
    assert cache.read([]).shape == (0, D) and cache.lookup([]).shape == (0,)
    out = np.zeros((3, D), np.float32)
    assert cache.read(keys[:3], out=out) is out and np.array_equal(out, X[:3])
    with pytest.raises(KeyError, match="1 of the 2 keys"):
        cache.read([keys[0], synthetic_key(999)])
    with pytest.raises(ValueError, match="features per image"):
        cache.write(keys_of([100]), np.ones((1, D + 1)))
    with pytest.raises(ValueError, match="shape"):
        cache.write(keys_of([100, 101]), np.ones((1, D)))
    with pytest.raises(TypeError, match="bytes"):
        cache.lookup(["abc"])
    assert keys[3] in cache
    # what a new process sees
    fresh = new_process_view(cache)
    assert len(fresh) == 50 and np.array_equal(fresh.read(query[:-1]), X[order])
    # picklable (for joblib workers)
    again = pickle.loads(pickle.dumps(cache))
    assert again.path == cache.path and np.array_equal(again.read(keys[:2]), X[:2])
    # shards carry their format and reproducibility metadata
    with h5py.File(shard_files(cache)[0], "r") as f:
        assert f.attrs["schema"] == "skbottleneck.cache_shard"
        assert f.attrs["format_version"] == 1
        assert "keras_version" in f.attrs["metadata_json"]
        assert f.attrs["numpy_version"] == np.__version__
        assert f["features"].chunks is None and f["features"].compression is None


def test_write_refuses_a_key_of_another_length(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    with pytest.raises(ValueError, match=r"must be 20 bytes long.*key 1 is 16 bytes long"):
        cache.write([synthetic_key(0), b"x" * 16], np.ones((2, D)))
    with pytest.raises(ValueError, match=r"must be 20 bytes long.*key 0 is 0 bytes long"):
        cache.write([b""], np.ones((1, D)))
    with pytest.raises(ValueError, match=r"must be 20 bytes long.*key 0 is 32 bytes long"):
        cache.write([b"k" * 32], np.ones((1, D)))
    assert len(cache) == 0 and shard_files(cache) == []  # nothing written


def test_float16_storage(tmp_path):
    keys = keys_of(range(10))
    X = synthetic_features(keys, D) * 100
    cache = FeatureCache(tmp_path, fingerprint(D), dtype="float16")
    cache.write(keys, X)
    got = cache.read(keys)
    assert got.dtype == np.float32
    assert np.array_equal(got, X.astype(np.float16).astype(np.float32))
    with h5py.File(shard_files(cache)[0], "r") as f:
        assert f["features"].dtype == np.float16
    assert np.array_equal(new_process_view(cache).read(keys[::-1]), got[::-1])


def test_compaction_merges_and_keeps_every_key_once(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(100))
    X = synthetic_features(keys, D)
    for a in range(0, 100, 5):
        cache.write(keys[a:a + 5], X[a:a + 5])
    cache.write(keys[:30], X[:30])  # duplicates
    assert len(shard_files(cache)) == 21
    assert cache.compact(min_shards=50) == 0  # too few
    # a left-over of a killed writer: ignored, and removed once stale
    tmp = os.path.join(cache.path, "shards", ".tmp-123-abcd-x.h5")
    open(tmp, "wb").write(b"partial")
    assert len(cache) == 100
    os.utime(tmp, (time.time() - 7200,) * 2)
    assert cache.compact(min_shards=2) == 21
    assert not os.path.exists(tmp)
    files = shard_files(cache)
    assert len(files) == 1
    with h5py.File(files[0], "r") as f:
        assert len(f["keys"]) == 100
    order = np.random.default_rng(1).permutation(100)
    assert np.array_equal(cache.read([keys[i] for i in order]), X[order])
    assert np.array_equal(new_process_view(cache).read(keys), X)
    # small target: several merged shards, none bigger than needed
    for a in range(100, 160, 4):
        k = keys_of(range(a, a + 4))
        cache.write(k, synthetic_features(k, D))
    n_before = len(shard_files(cache))
    assert cache.compact(min_shards=2, target_bytes=40_000) == 15
    assert 1 < len(shard_files(cache)) < n_before
    assert len(cache) == 160
    k = keys_of(range(160))
    assert np.array_equal(cache.read(k), synthetic_features(k, D))


def test_compaction_keeps_every_entry_even_of_keys_of_another_length(tmp_path):
    """Shards of 16-byte keys (as an older skbottleneck could write) among
    20-byte ones: compaction never deletes a shard whose rows it did not copy."""
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(60))
    for a in range(0, 60, 4):
        cache.write(keys[a:a + 4], synthetic_features(keys[a:a + 4], D))
    old_keys = [k[:16] for k in keys_of(range(1000, 1016))]
    old_X = synthetic_features(old_keys, D)
    for a in (0, 8):  # two shards of 16-byte keys, written as the cache writes its own
        image, _ = shard_image(
            np.frombuffer(b"".join(old_keys[a:a + 8]), np.uint8).reshape(8, 16), old_X[a:a + 8],
            fingerprint_id=cache.fingerprint_id, dtype=cache.dtype, metadata_json="{}")
        name = f"{a:016x}-1-0000000{a // 8}.h5"
        with open(os.path.join(cache.path, "shards", name), "wb") as f:
            f.write(image)
    fresh = new_process_view(cache)
    assert len(fresh) == 60 + 16
    assert fresh.compact(min_shards=2) == 15  # the 15 shards of 20-byte keys
    for view in (fresh, new_process_view(cache)):
        assert len(view) == 60 + 16
        assert np.array_equal(view.read(keys), synthetic_features(keys, D))
        assert np.array_equal(view.read(old_keys), old_X)
    assert len(shard_files(cache)) == 3  # one merged, the two old ones left as they were
    assert fresh.compact(min_shards=2) == 0  # nothing left to merge
    assert len(new_process_view(cache)) == 60 + 16


def test_reader_survives_compaction_by_another_process(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(40))
    for a in range(0, 40, 4):
        cache.write(keys[a:a + 4], synthetic_features(keys[a:a + 4], D))
    reader = new_process_view(cache)
    assert reader.lookup(keys).all()  # index now lists the 10 small shards
    finish(run_worker("compact", "--cache", tmp_path, "--d", D))
    assert len(shard_files(cache)) == 1  # the shards the reader knows are gone
    assert np.array_equal(reader.read(keys[::-1]), synthetic_features(keys[::-1], D))


def test_index_sees_other_processes_after_the_folder_settled(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    cache.write(keys_of([0]), synthetic_features(keys_of([0]), D))
    shards = os.path.join(cache.path, "shards")
    os.utime(shards, (time.time() - 60,) * 2)  # last change long ago
    assert cache.lookup(keys_of([0, 1])).tolist() == [True, False]
    assert cache._index.dir_settled  # the next look skips the listing...
    finish(run_worker("write", "--cache", tmp_path, "--d", D, "--first", 1, "--last", 2))
    assert cache.lookup(keys_of([0, 1])).tolist() == [True, True]  # ...unless it changed


def test_shards_of_another_layout_are_read_through_hdf5(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(20))
    cache.write(keys[:10], synthetic_features(keys[:10], D))
    src = shard_files(cache)[0]
    # a shard rewritten by another tool: compressed, chunked
    with h5py.File(src, "r") as f, h5py.File(os.path.join(cache.path, "shards", "x.h5"), "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        g["keys"] = f["keys"][()]
        g.create_dataset("features", data=f["features"][()], compression="gzip", chunks=(3, D))
    os.replace(os.path.join(cache.path, "shards", "x.h5"), src)
    cache.write(keys[10:], synthetic_features(keys[10:], D))
    fresh = new_process_view(cache)
    order = np.random.default_rng(0).permutation(20)
    query = [keys[i] for i in order]
    assert np.array_equal(fresh.read(query), synthetic_features(query, D))
    assert fresh.compact(min_shards=2) == 2
    assert np.array_equal(fresh.read(query), synthetic_features(query, D))


# ------------------------------------------------------------- damaged files
def _damage(path, how):
    if how == "truncated":
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    elif how == "garbage":
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).bytes(4096))
    elif how == "empty":
        open(path, "wb").close()
    elif how == "foreign-hdf5":
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "foreign-hdf5"])
def test_damaged_shard_is_reported_quarantined_and_recomputed(tmp_path, how):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(30))
    X = synthetic_features(keys, D)
    for a in range(0, 30, 10):
        cache.write(keys[a:a + 10], X[a:a + 10])
    bad = shard_files(cache)[1]
    _damage(bad, how)
    fresh = new_process_view(cache)
    with pytest.warns(StoreWarning, match=re.escape(bad)):
        found = fresh.lookup(keys)
    bad_keys = [k for k, f in zip(keys, found) if not f]
    assert len(bad_keys) == 10 and found.sum() == 20
    quarantined = os.path.join(cache.path, "quarantine", os.path.basename(bad))
    assert os.path.exists(quarantined) and not os.path.exists(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once, not on every look
        assert fresh.lookup(keys).sum() == 20
        good = [k for k, f in zip(keys, found) if f]
        assert np.array_equal(fresh.read(good), synthetic_features(good, D))
        # "re-extraction" puts them back
        fresh.write(bad_keys, synthetic_features(bad_keys, D))
        assert fresh.lookup(keys).all()
        assert np.array_equal(fresh.read(keys), X)
        assert cache_info(tmp_path)[cache.fingerprint_id]["n_quarantined"] == 1


def test_shard_of_another_format_version_is_ignored_not_misread(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(10))
    cache.write(keys[:5], synthetic_features(keys[:5], D))
    cache.write(keys[5:], synthetic_features(keys[5:], D))
    newer = shard_files(cache)[0]
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 2
    fresh = new_process_view(cache)
    with pytest.warns(StoreWarning, match=r"format version 2.*reads version 1"):
        assert fresh.lookup(keys).tolist() == [False] * 5 + [True] * 5
    assert os.path.exists(newer)  # left alone for the version that wrote it


# ---------------------------------------------------- checksums of the rows
def _feature_extent(path):
    """Byte offset of the contiguous features of a shard, and bytes per row."""
    with h5py.File(path, "r") as f:
        ds = f["features"]
        return ds.id.get_offset(), ds.shape[1] * ds.dtype.itemsize


def _flip_feature_bit(path, row, byte=0, bit=0):
    """Flip one bit of one feature of a real shard, in place (header left intact)."""
    offset, row_nbytes = _feature_extent(path)
    with open(path, "r+b") as f:
        f.seek(offset + row * row_nbytes + byte)
        value = f.read(1)[0]
        f.seek(offset + row * row_nbytes + byte)
        f.write(bytes([value ^ (1 << bit)]))


def _rewrite_without_checksums(path):
    """The shard as an skbottleneck before the checksums wrote it (same format version)."""
    tmp = path + ".old"
    with h5py.File(path, "r") as f, h5py.File(tmp, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        g["keys"] = f["keys"][()]
        g["features"] = f["features"][()]
    os.replace(tmp, path)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("reader", ["read", "read_available"])
def test_flipped_bits_in_feature_data_are_caught_quarantined_and_recomputed(tmp_path, reader,
                                                                            dtype):
    """One bit flipped inside a real shard's feature data (its header intact, so
    opening it finds nothing wrong) is caught when the row is read: never served."""
    cache = FeatureCache(tmp_path, fingerprint(D), dtype=dtype)
    keys = keys_of(range(30))
    X = synthetic_features(keys, D).astype(dtype).astype(np.float32)
    for a in range(0, 30, 10):
        cache.write(keys[a:a + 10], X[a:a + 10])
    bad = shard_files(cache)[1]
    with h5py.File(bad, "r") as f:
        bad_keys = [bytes(k) for k in f["keys"][()]]
    _flip_feature_bit(bad, row=4, byte=1, bit=3)
    fresh = new_process_view(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fresh.lookup(keys).all()  # the damage is not in the header
    order = np.random.default_rng(0).permutation(30)
    query = [keys[i] for i in order]
    with pytest.warns(StoreWarning, match=re.escape(bad) + ".*do not match their checksums"):
        if reader == "read":
            with pytest.raises(KeyError, match=r"10 of the 30 keys.*damaged shard"):
                fresh.read(query)
        else:
            got, found = fresh.read_available(query)
            assert found.tolist() == [k not in bad_keys for k in query]
            assert np.array_equal(got[found], X[order][found])
    quarantined = os.path.join(cache.path, "quarantine", os.path.basename(bad))
    assert os.path.exists(quarantined) and not os.path.exists(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once
        found = fresh.lookup(keys)
        assert found.tolist() == [k not in bad_keys for k in keys]
        good = [k for k in keys if k not in bad_keys]
        assert np.array_equal(fresh.read(good), synthetic_features(good, D).astype(dtype))
        fresh.write(bad_keys, synthetic_features(bad_keys, D))  # computed again
        assert np.array_equal(fresh.read(keys), X)
        assert np.array_equal(new_process_view(cache).read(keys), X)


def test_a_shard_truncated_after_it_was_indexed_is_quarantined_not_raised(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(20))
    cache.write(keys[:10], synthetic_features(keys[:10], D))
    cache.write(keys[10:], synthetic_features(keys[10:], D))
    assert cache.lookup(keys).all()  # indexed, by this process
    path = shard_files(cache)[0]
    offset, row_nbytes = _feature_extent(path)
    with open(path, "r+b") as f:
        f.truncate(offset + 3 * row_nbytes)
    with pytest.warns(StoreWarning, match=re.escape(path) + ".*unexpected end of file"):
        with pytest.raises(KeyError, match="10 of the 20 keys.*damaged shard"):
            cache.read(keys)
    got, found = cache.read_available(keys)
    assert found.sum() == 10
    assert np.array_equal(got[found], synthetic_features([k for k, f in zip(keys, found) if f], D))
    assert os.path.exists(os.path.join(cache.path, "quarantine", os.path.basename(path)))


def test_a_damaged_shard_that_cannot_be_moved_is_ignored_and_the_warning_says_why(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(10))
    cache.write(keys, synthetic_features(keys, D))
    (path,) = shard_files(cache)
    _flip_feature_bit(path, row=0)
    blocker = os.path.join(cache.path, "quarantine")
    open(blocker, "w").close()  # a file where the quarantine folder goes
    fresh = new_process_view(cache)
    with pytest.warns(StoreWarning, match=re.escape(path) + r".*left in place and ignored \(it "
                      r"could not be moved to the feature cache's quarantine folder "
                      + re.escape(blocker)):
        with pytest.raises(KeyError, match="damaged shard"):
            fresh.read(keys)
    assert os.path.exists(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ignored from then on by this process
        assert not fresh.lookup(keys).any()
        assert not fresh.read_available(keys)[1].any()


def test_a_key_swapped_with_another_in_a_shard_is_caught(tmp_path):
    """The checksum ties a row to its key: keys reordered on disk would serve
    another image's features under a key; the read catches it."""
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(8))
    cache.write(keys, synthetic_features(keys, D))
    path = shard_files(cache)[0]
    with h5py.File(path, "r+") as f:  # same dataset, same place: only two rows swapped
        k = f["keys"][()]
        f["keys"][0], f["keys"][1] = k[1], k[0]
    fresh = new_process_view(cache)
    with pytest.warns(StoreWarning, match=re.escape(path)):
        got, found = fresh.read_available(keys)
    assert not found.any()
    assert not fresh.lookup(keys).any()


def test_read_available(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(6))
    X = synthetic_features(keys, D)
    got, found = cache.read_available(keys)  # an empty cache
    assert got.shape == (6, 0) and not found.any()
    cache.write(keys[:4], X[:4])
    query = [keys[5], keys[2], keys[0], keys[4], keys[2]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, found = new_process_view(cache).read_available(query)
    assert found.tolist() == [False, True, True, False, True]
    assert got.shape == (5, D) and got.dtype == np.float32
    assert np.array_equal(got[found], X[[2, 0, 2]])
    out = np.zeros((5, D), np.float32)
    assert cache.read_available(query, out=out)[0] is out
    with pytest.raises(ValueError, match="shape"):
        cache.read_available(query, out=np.zeros((5, D + 1), np.float32))
    # another process writes the missing ones: seen without a lookup first
    finish(run_worker("write", "--cache", tmp_path, "--d", D, "--first", 4, "--last", 6))
    assert cache.read_available(query)[1].all()
    got, found = cache.read_available([])
    assert got.shape == (0, D) and found.shape == (0,)


def test_old_shards_without_checksums_are_read_and_compaction_gives_them_checksums(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(20))
    X = synthetic_features(keys, D)
    for a in range(0, 20, 5):
        cache.write(keys[a:a + 5], X[a:a + 5])
    for path in shard_files(cache):
        _rewrite_without_checksums(path)
    fresh = new_process_view(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(fresh.read(keys[::-1]), X[::-1])
        assert fresh.read_available(keys)[1].all()
        assert fresh.compact(min_shards=2) == 4
    (merged,) = shard_files(cache)
    with h5py.File(merged, "r") as f:
        assert f["checksums"].shape == (20,) and f["checksums"].dtype == np.uint64
        assert f["checksums"].attrs["algorithm"] == "xxh3_64-key8"
        row = [bytes(k) for k in f["keys"][()]].index(keys[7])
    assert np.array_equal(new_process_view(cache).read(keys), X)
    # from now on those rows are verified
    _flip_feature_bit(merged, row=row, byte=2)
    fresh = new_process_view(cache)
    with pytest.warns(StoreWarning, match=re.escape(merged)):
        assert not fresh.read_available(keys)[1].any()


def test_compaction_verifies_each_row_and_keeps_the_checksums(tmp_path):
    cache = FeatureCache(tmp_path, fingerprint(D))
    keys = keys_of(range(25))
    X = synthetic_features(keys, D)
    for a in range(0, 25, 5):
        cache.write(keys[a:a + 5], X[a:a + 5])
    files = shard_files(cache)
    stored = {}
    for path in files:
        with h5py.File(path, "r") as f:
            stored.update(zip((bytes(k) for k in f["keys"][()]), f["checksums"][()].tolist()))
    bad = files[2]
    _flip_feature_bit(bad, row=3, byte=0, bit=7)
    fresh = new_process_view(cache)
    with pytest.warns(StoreWarning, match=re.escape(bad)):
        assert fresh.compact(min_shards=2) == 4  # the 4 good shards
    assert os.path.exists(os.path.join(cache.path, "quarantine", os.path.basename(bad)))
    (merged,) = shard_files(cache)
    with h5py.File(merged, "r") as f:
        merged_keys = [bytes(k) for k in f["keys"][()]]
        assert f["checksums"][()].tolist() == [stored[k] for k in merged_keys]  # copied
    assert sorted(merged_keys) == sorted(keys[:10] + keys[15:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        view = new_process_view(cache)
        assert view.lookup(keys).tolist() == [not 10 <= i < 15 for i in range(25)]
        assert np.array_equal(view.read(merged_keys), synthetic_features(merged_keys, D))


_DISK_FULL_CHILD = r"""
import json, os, resource, signal, sys, warnings
import numpy as np
from skbottleneck.cache import FeatureCache

root, d = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = 256 * 1024
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
report = {}

def describe(e):
    return {"type": type(e).__name__, "errno": e.errno, "message": str(e),
            "cause_errno": getattr(e.__cause__, "errno", None)}

fp = {"backbone": "disk-full", "d": d}
cache = FeatureCache(os.path.join(root, "cache"), fp)
keys = [i.to_bytes(4, "little") + bytes(16) for i in range(400)]
X = np.ones((400, d), np.float32)
try:  # 400 rows of d float32: more than the limit
    cache.write(keys, X)
except OSError as e:
    report["write"] = describe(e)
for a in range(0, 320, 80):  # 4 shards under the limit, which a merged one exceeds
    cache.write(keys[a:a + 80], X[a:a + 80])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    report["n_merged"] = cache.compact(min_shards=2)
report["compact_warnings"] = [str(w.message) for w in caught]
report["n_entries"] = len(cache)
report["left"] = sorted(os.listdir(os.path.join(cache.path, "shards")))
report["shards_dir"] = os.path.join(cache.path, "shards")
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
try:  # a new cache folder: fingerprint.json cannot be written
    FeatureCache(os.path.join(root, "cache"), dict(fp, other=1))
except OSError as e:
    report["fingerprint"] = describe(e)
print(json.dumps(report))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ")
def test_a_full_disk_names_the_cache_file_and_leaves_nothing_behind(tmp_path):
    """Writes fail for real (RLIMIT_FSIZE in a child process: EFBIG, as a full
    disk gives ENOSPC): the error names the cache file, keeps errno and cause."""
    import errno
    import json

    d = 256  # 1 KiB per row
    proc = subprocess.run([sys.executable, "-c", _DISK_FULL_CHILD, str(tmp_path), str(d)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    shards_dir = report["shards_dir"]
    w = report["write"]
    assert (w["type"], w["errno"], w["cause_errno"]) == ("OSError", errno.EFBIG, errno.EFBIG)
    assert re.fullmatch(r"\[Errno 27\] Cannot write the feature cache shard "
                        + re.escape(shards_dir) + r"/[0-9a-f]{16}-\d+-[0-9a-f]{8}\.h5: "
                        r"File too large", w["message"]), w["message"]
    # the compaction stopped with a warning naming the merged shard; nothing lost
    assert report["n_merged"] == 0 and report["n_entries"] == 320
    (msg,) = report["compact_warnings"]
    assert "Cannot write the merged feature cache shard " + shards_dir + "/" in msg, msg
    assert "File too large" in msg
    assert len(report["left"]) == 4 and not any(n.startswith(".tmp") for n in report["left"])
    fp = report["fingerprint"]
    assert (fp["errno"], fp["cause_errno"]) == (errno.EFBIG, errno.EFBIG)
    assert "Cannot write the feature cache file " in fp["message"]
    assert fp["message"].split(": ")[0].endswith("fingerprint.json")
    assert not [n for n in os.listdir(os.path.dirname(shards_dir)) if n.startswith(".tmp")]


# ----------------------------------------------------------------- processes
def test_concurrent_writers_compactors_and_readers(tmp_path):
    """Four writers with overlapping keys, a compactor and a reader, all at once."""
    universe = 240
    procs = [run_worker("write", "--cache", tmp_path, "--d", D, "--first", 40 * i,
                        "--last", 40 * i + 120, "--seed", i, "--batch", 6,
                        "--compact-every", 5 if i % 2 else 0) for i in range(4)]
    procs.append(run_worker("compact", "--cache", tmp_path, "--d", D, "--seconds", 2))
    procs.append(run_worker("read", "--cache", tmp_path, "--d", D, "--seconds", 2,
                            "--universe", universe))
    outs = [finish(p) for p in procs]
    assert all(o.startswith("DONE") for o in outs)
    cache = new_process_view(FeatureCache(tmp_path, fingerprint(D)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keys = keys_of(range(universe))
        assert cache.lookup(keys).all() and len(cache) == universe
        assert np.array_equal(cache.read(keys), synthetic_features(keys, D))
        cache.compact(min_shards=2)
        # every key exactly once on disk now
        n_rows = 0
        for path in shard_files(cache):
            with h5py.File(path, "r") as f:
                n_rows += len(f["keys"])
        assert n_rows == universe
        assert np.array_equal(new_process_view(cache).read(keys), synthetic_features(keys, D))


@pytest.mark.parametrize("method", ["read", "read_available"])
def test_read_survives_a_merged_shard_merged_again_before_it_is_opened(tmp_path, monkeypatch,
                                                                       method):
    """A reader's listing holds a compaction's merged shard, which a second
    compaction merges away before the reader opens it: read() and
    read_available() look again instead of calling the keys missing (a race
    seen once in CI)."""
    finish(run_worker("write", "--cache", tmp_path, "--d", D, "--first", 0, "--last", 20,
                      "--batch", 10))  # shards A and B
    reader = new_process_view(FeatureCache(tmp_path, fingerprint(D)))
    keys = keys_of(range(20))
    assert reader.lookup(keys).all()  # indexes A and B
    finish(run_worker("compact", "--cache", tmp_path, "--d", D))  # A + B -> C
    finish(run_worker("write", "--cache", tmp_path, "--d", D, "--first", 20, "--last", 30,
                      "--batch", 10))  # shard E
    index = reader._index
    open_shard, raced = index._open_shard, []

    def racing_open_shard(name):
        if not raced:  # between the listing and the opening: C + E -> D
            raced.append(name)
            finish(run_worker("compact", "--cache", tmp_path, "--d", D))
        return open_shard(name)

    monkeypatch.setattr(index, "_open_shard", racing_open_shard)
    if method == "read":
        assert np.array_equal(reader.read(keys), synthetic_features(keys, D))
    else:
        got, found = reader.read_available(keys)
        assert found.all() and np.array_equal(got, synthetic_features(keys, D))
    assert raced


# -------------------------------------------------------------- housekeeping
def test_cache_info_and_clear_cache(tmp_path):
    fa, fb = fingerprint(D), dict(fingerprint(D), backbone="other")
    a, b = FeatureCache(tmp_path, fa), FeatureCache(tmp_path, fb, dtype="float16")
    for cache, ids in ((a, range(12)), (b, range(5))):
        k = keys_of(ids)
        cache.write(k[:6], synthetic_features(k[:6], D))
        cache.write(k[6:], synthetic_features(k[6:], D))
    (tmp_path / "not-a-cache").mkdir()
    (tmp_path / "notes.txt").write_text("keep me")
    info = cache_info(tmp_path)
    assert set(info) == {a.fingerprint_id, b.fingerprint_id}
    ia = info[a.fingerprint_id]
    assert (ia["n_entries"], ia["n_shards"], ia["n_features"]) == (12, 2, D)
    assert ia["bytes"] > 12 * D * 4 and ia["storage_dtype"] == "float32"
    assert ia["fingerprint"] == fa
    assert ia["description"].startswith("backbone=synthetic, layer=pool")
    assert info[b.fingerprint_id]["n_entries"] == 5
    assert cache_info(tmp_path / "nowhere") == {}

    removed = clear_cache(tmp_path, backbone="other")
    assert list(removed) == [b.fingerprint_id] and removed[b.fingerprint_id] > 0
    assert len(b) == 0 and len(a) == 12
    b.write(keys_of([1]), np.ones((1, D)))  # a cache cleared under a live object still works
    assert len(b) == 1
    assert clear_cache(tmp_path, fingerprint=dict(reversed(list(fa.items())))) == {
        a.fingerprint_id: info[a.fingerprint_id]["bytes"]}
    assert list(clear_cache(tmp_path, fingerprint=b.fingerprint_id)) == [b.fingerprint_id]
    a.write(keys_of([1]), np.ones((1, D)))
    assert list(clear_cache(tmp_path)) == [a.fingerprint_id]
    assert sorted(os.listdir(tmp_path)) == ["not-a-cache", "notes.txt"]


def test_doctests(tmp_path):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    modules = [cache_package] + [importlib.import_module(f"skbottleneck.cache.{m.name}")
                                 for m in pkgutil.iter_modules(cache_package.__path__)]
    tests = [test for module in modules for test in finder.find(module)]
    assert sum(len(test.examples) for test in tests) >= 20
    for i, test in enumerate(tests):
        test.globs["tmp_dir"] = tmp_path / str(i)
        test.globs["tmp_dir"].mkdir()
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_each_room_documents_its_own_files():
    """The cache documents its layout; the store neither documents nor re-exports it."""
    for name in ("FeatureCache", "cache_info", "clear_cache", "file_key", "file_keys",
                 "fingerprint_id", "get_cache_dir"):
        assert not hasattr(skbottleneck.store, name)
    assert "compact.lock" in cache_package.__doc__ and "quarantine/" in cache_package.__doc__
    assert "compact.lock" not in skbottleneck.store.__doc__
    assert "features.h5.partial/" in skbottleneck.store.__doc__

def test_cache_info_names_a_file_given_as_the_cache_folder(tmp_path, capsys):
    from skbottleneck.cli import main

    path = tmp_path / "features.h5"
    path.write_bytes(b"not a folder")
    assert main(["cache", "info", "--cache-dir", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "does not exist" not in err
