"""Dask without a shared file system: the workers read the images from a real
S3 server (moto, on 127.0.0.1) and return their features to the client.

The cluster is a ``distributed.LocalCluster`` of one spawned worker
process with its own HOME, SKBOTTLENECK_CACHE_DIR and TMPDIR under
a folder of the test: whatever the worker writes lands there, where the test
looks. The client's cache is a folder the workers are never told about.
"""

import os

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the Dask tests need dask[distributed]")
pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from distributed import Client, LocalCluster

from _features import assert_same_features
from _servers import s3_filesystem, s3_server
from skbottleneck import CNNFeatureTransformer, FeatureStore, ImageError
from skbottleneck.datasets import load_image_folder, make_photo_folder
from skbottleneck.distributed import detect_shared_cache
from skbottleneck.extraction import open_cache
from skbottleneck.extraction._cluster_worker import sees_probe

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """8 photos uploaded to s3://photos/train/; their URLs, labels and options."""
    folder = make_photo_folder(tmp_path_factory.mktemp("photos"), n_per_class=2,
                               size=(40, 40), random_state=2)
    local, labels = load_image_folder(folder)
    with s3_server() as endpoint:
        fs = s3_filesystem(endpoint)
        fs.mkdir("photos")
        fs.put(os.fspath(folder), "photos/train", recursive=True)
        fs.pipe("photos/bad/broken.jpg", b"not an image at all")
        urls = [f"s3://photos/train/{os.path.relpath(p, folder)}" for p in local]
        yield {"urls": urls, "labels": labels, "local": local, "bucket_url": "s3://photos/bad/",
               "options": {"client_kwargs": {"endpoint_url": endpoint}}}


@pytest.fixture(scope="module")
def workers_root(tmp_path_factory):
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="module")
def client(s3, workers_root):
    """A worker process that sees only its own home, cache and temporary folders."""
    env = {**CREDENTIALS, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "HOME": os.fspath(workers_root / "home"),
           "SKBOTTLENECK_CACHE_DIR": os.fspath(workers_root / "cache"),
           "TMPDIR": os.fspath(workers_root / "tmp")}
    for name in ("home", "cache", "tmp"):
        (workers_root / name).mkdir()
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                           dashboard_address=":0", env=env)
    with cluster, Client(cluster) as c:
        yield c


def _cnn(cache_dir, s3, **kw):
    # batch_size=4: 8 images make two partitions (two tasks)
    return CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0, input_size=32,
                                 batch_size=4, runtime="tensorflow", cache_dir=cache_dir,
                                 storage_options=s3["options"], **kw).fit()


def _cache_files_under(folder):
    """Files of a feature cache (or a task's private one) left under ``folder``."""
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files
                  if f == "fingerprint.json" or "shards" in d.split(os.sep)
                  or "skbottleneck" in os.path.relpath(d, folder))


def test_workers_return_features_the_client_writes_store_and_cache(
        s3, client, workers_root, tmp_path):
    expected = _cnn(None, s3).transform(s3["urls"])  # one process, no cluster
    cnn = _cnn(tmp_path / "client-cache", s3)
    result = cnn.extract(s3["urls"], s3["labels"], store=tmp_path / "features.h5", client=client,
                         shared_cache=False)
    stats = result.stats["cluster"]
    assert stats["shared_cache"] is False
    assert stats["n_extracted"] == 8 and stats["n_partitions"] == 2
    assert stats["bytes_returned"] == 8 * cnn.n_features_out_ * 4
    assert result.stats["n_extracted"] == 0  # the client ran no CNN
    with result.features as store:
        assert_same_features(store.to_numpy(), expected)
        assert list(store.labels) == s3["labels"].tolist()
        assert list(store.paths) == s3["urls"]
    # the client's cache holds every image; the workers kept nothing
    keys = cnn.extract(s3["urls"]).stats
    assert keys["n_cached"] == 8 and keys["n_extracted"] == 0
    assert _cache_files_under(workers_root) == []
    assert _cache_files_under(tmp_path / "client-cache") != []

    again = cnn.extract(s3["urls"], client=client, shared_cache=False)  # served by the cache
    assert again.stats["n_cached"] == 8 and again.stats["n_extracted"] == 0
    assert again.stats["cluster"]["n_extracted"] == 0
    with FeatureStore(tmp_path / "features.h5") as done:
        np.testing.assert_array_equal(again.features, done.to_numpy())


def test_a_run_resumes_from_what_the_client_received(s3, client, workers_root, tmp_path):
    cnn = _cnn(tmp_path / "client-cache", s3)
    missing = "s3://photos/train/no-such-photo.jpg"
    with pytest.raises(ImageError, match="no-such-photo.jpg"):
        # the client hashes every image before sending work: a missing
        # object fails there, naming it, before any task
        cnn.extract([*s3["urls"][:4], missing], client=client, shared_cache=False)
    # a file that is no image hashes fine and fails on the worker, in the
    # second partition: the run fails after the first partition came back
    broken = s3["bucket_url"] + "broken.jpg"
    with pytest.raises(ImageError, match="broken.jpg.*on the Dask worker"):
        cnn.extract([*s3["urls"][:4], broken], client=client, shared_cache=False)
    # run again: the 4 features received are in the client's cache
    skip = _cnn(tmp_path / "client-cache", s3, on_error="skip")
    with pytest.warns(UserWarning, match="1 of 9 images could not be read"):
        again = skip.extract([*s3["urls"], broken], client=client, shared_cache=False)
    assert again.stats["cluster"]["n_cached"] == 4
    assert again.stats["cluster"]["n_extracted"] == 4
    assert [path for path, _ in again.failed] == [broken] and len(again.features) == 8
    assert _cache_files_under(workers_root) == []


def test_auto_asks_the_workers_whether_they_see_the_cache(s3, client, tmp_path):
    cnn = _cnn(tmp_path / "cache", s3)
    cache = open_cache(cnn)
    # this machine's folders are shared with its LocalCluster's workers
    assert detect_shared_cache(client, cache) is True
    assert not [f for f in os.listdir(cache.path) if f.startswith(".probe")]
    result = cnn.extract(s3["urls"][:4], client=client)
    assert result.stats["cluster"]["shared_cache"] is True
    assert result.stats["cluster"]["bytes_returned"] == 0
    # a probe the workers cannot read (another machine's folder) reads False
    seen = client.run(sees_probe, os.fspath(tmp_path / "elsewhere" / ".probe-x"), "x")
    assert len(seen) == 1 and not any(seen.values())


def test_bad_shared_cache_value_is_refused(s3, client, tmp_path):
    cnn = _cnn(tmp_path / "cache", s3)
    with pytest.raises(ValueError, match="shared_cache must be 'auto', True or False; got 'no'"):
        cnn.extract(s3["urls"][:1], client=client, shared_cache="no")
