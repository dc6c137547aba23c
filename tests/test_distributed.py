"""Extraction, training and prediction on a real Dask cluster (2 worker processes).

The cluster is a ``distributed.LocalCluster`` of two spawned worker
processes with one thread each; the "shared file system" is this machine's.
The images are 200 real photo patches (``make_photo_folder``); the CNN is
VGG16 at 32 px with weights saved to a file beside them, as a user with
their own weights on a shared file system would have.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the Dask tests need dask[distributed]")

import dask.array as da
import joblib
from distributed import Client, LocalCluster
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline

from skbottleneck import CNNFeatureTransformer, FeatureStore, ImageError
from skbottleneck.distributed import DaskChunks, active_client, predict_on_cluster
from skbottleneck.extraction import cnn_image_count, open_cache
from skbottleneck.extraction._cluster_worker import extract_partition

from _features import assert_same_features

N_PER_CLASS = 50  # 4 classes: 200 images


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "1",
             "TF_NUM_INTEROP_THREADS": "1"},
    )
    with cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """200 photos, a weights file, and the features of a single-process run."""
    from skbottleneck.backbones import get_backbone
    from skbottleneck.datasets import load_image_folder, make_photo_folder

    root = tmp_path_factory.mktemp("dask")
    folder = make_photo_folder(root / "photos", n_per_class=N_PER_CLASS, size=(48, 48))
    paths, labels = load_image_folder(folder)
    weights = root / "vgg16-32px.weights.h5"
    get_backbone("vgg16").build(weights=None, input_size=(32, 32),
                                random_state=0).save_weights(weights)
    params = {"backbone": "vgg16", "weights": str(weights), "input_size": 32}
    local = CNNFeatureTransformer(**params, cache_dir=root / "local-cache").fit()
    return {"root": root, "paths": paths, "labels": labels, "params": params,
            "X": local.transform(paths)}


def cnn(data, tmp_path, **kw):
    """A fitted transformer with a fresh cache (so the workers have work)."""
    params = dict(data["params"], cache_dir=tmp_path / "cache")
    params.update(kw)
    return CNNFeatureTransformer(**params).fit()


def test_active_client(client):
    assert active_client() is None
    assert active_client(client) is client
    with joblib.parallel_backend("dask"):
        assert active_client().scheduler.address == client.scheduler.address
    assert active_client() is None
    # inside a task on a worker, extraction runs in that worker's process
    assert client.submit(_active_client_in_worker, pure=False).result() is None


def _active_client_in_worker():
    with joblib.parallel_backend("dask"):
        return active_client()


def test_transform_on_cluster_equals_single_process(client, data, tmp_path):
    paths = list(data["paths"])
    dup = tmp_path / "same-bytes-other-name.jpg"
    shutil.copy(paths[3], dup)
    est = cnn(data, tmp_path)
    before = cnn_image_count()
    with joblib.parallel_backend("dask"):
        result = est.extract(paths + [str(dup)])
    X = result.features
    # the features of one process (to float32 rounding: other batches), in
    # input order; no CNN ran here; the copy is the same row, computed once
    assert_same_features(X[:-1], data["X"])
    np.testing.assert_array_equal(X[-1], X[3])
    assert cnn_image_count() == before
    stats = result.stats["cluster"]
    assert stats["n_unique"] == len(paths) and stats["n_extracted"] == len(paths)
    assert stats["n_partitions"] >= 2 and stats["partition_size"] % est.batch_size == 0
    # a second run finds everything in the cache: no task at all
    with joblib.parallel_backend("dask"):
        np.testing.assert_array_equal(est.transform(paths[::-1]), X[:-1][::-1])
        again = est.extract(paths[::-1])
    assert again.stats["n_cached"] == len(paths)
    assert again.stats["cluster"]["n_cached"] == len(paths)
    assert again.stats["cluster"]["n_partitions"] == 0


def test_store_written_by_cluster_trains_like_a_local_one(client, data, tmp_path, capfd):
    from skbottleneck import IncrementalClassifier

    paths, labels = data["paths"], data["labels"]
    train = np.arange(len(paths)) % 4 != 0
    local = cnn(data, tmp_path / "l").extract(paths[train], labels[train],
                                             store=tmp_path / "local.h5").features
    est = cnn(data, tmp_path / "c", verbose=1)
    before = cnn_image_count()
    on_cluster = est.extract(paths[train], labels[train], store=tmp_path / "cluster.h5",
                             client=client).features
    assert cnn_image_count() == before
    assert "on Dask" in capfd.readouterr().err  # the progress bar
    assert_same_features(on_cluster.to_numpy(), local.to_numpy())
    np.testing.assert_array_equal(on_cluster.paths, local.paths)
    np.testing.assert_array_equal(on_cluster.labels, local.labels)

    def accuracy(store):
        head = IncrementalClassifier(SGDClassifier(loss="log_loss", random_state=0),
                                     epochs=5, chunk_size=32, random_state=0)
        return head.fit(FeatureStore(store.path)).score(data["X"][~train], labels[~train])

    acc = accuracy(on_cluster)
    # the same to float32 rounding: at most one test image predicted otherwise
    assert abs(acc - accuracy(local)) <= 1 / (~train).sum() + 1e-9
    assert acc > 0.5  # 4 classes


def _kill_self_after_first_shard(shards_dir, marker):
    """In a worker: SIGKILL this process once it has written a cache shard (its
    name holds the writer's pid), unless another worker was killed already."""
    pid = os.getpid()

    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not os.path.exists(marker):
            try:
                mine = [n for n in os.listdir(shards_dir)
                        if f"-{pid}-" in n and not n.startswith(".")]  # not a .tmp-
            except FileNotFoundError:
                mine = []
            if mine:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return  # the other worker was first
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    threading.Thread(target=watch, daemon=True).start()
    return pid


def test_worker_killed_mid_run_leaves_a_complete_store(client, data, tmp_path):
    paths, labels = data["paths"], data["labels"]
    # partitions of 4 batches of 8: the kill lands inside a partition
    est = cnn(data, tmp_path, batch_size=8)
    cache = open_cache(est)
    marker = str(tmp_path / "killed")
    pids = set(client.run(_kill_self_after_first_shard, os.path.join(cache.path, "shards"),
                          marker).values())
    result = est.extract(paths, labels, store=tmp_path / "features.h5", client=client)
    assert os.path.exists(marker), "no worker was killed"
    stats = result.stats["cluster"]
    assert stats["n_partitions"] >= 4 and stats["partition_size"] == 32
    # the killed partition ran again elsewhere and found its first batch done
    assert stats["n_found_by_workers"] >= 8
    assert stats["n_extracted"] + stats["n_found_by_workers"] == len(paths)
    # complete, in order, each image once, the single-process features
    with result.features as store:
        assert len(store) == len(paths) == len(cache)
        assert_same_features(store.to_numpy(), data["X"])
        np.testing.assert_array_equal(store.paths, paths)
    client.wait_for_workers(2, timeout=120)  # the nanny restarted the killed one
    assert set(client.run(os.getpid).values()) != pids


def test_keras_model_backbone_on_cluster(client, data, tmp_path):
    """A Keras model given as backbone reaches the workers as a file, once."""
    from skbottleneck._keras import import_keras

    keras = import_keras()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=0))(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(16, 3, strides=2)(x), name="tiny")
    paths = data["paths"][:48]
    expected = CNNFeatureTransformer(model, cache_dir=None).fit_transform(paths)
    est = CNNFeatureTransformer(model, cache_dir=tmp_path / "cache", batch_size=8).fit()
    with joblib.parallel_backend("dask"):
        result = est.extract(paths)
    assert_same_features(result.features, expected)
    assert result.stats["cluster"]["n_partitions"] >= 2
    assert len(os.listdir(os.path.join(open_cache(est).path, "models"))) == 1


def test_bad_images_on_cluster(client, data, tmp_path):
    paths = list(data["paths"][:40])
    good = Path(paths[0]).read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 3])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    bad = paths[:10] + [str(truncated)] + paths[10:] + [str(empty)]
    est = cnn(data, tmp_path)
    with joblib.parallel_backend("dask"), pytest.raises(ImageError, match="truncated.jpg") as e:
        est.transform(bad)
    assert "Dask worker" in str(e.value)
    est.set_params(on_error="skip")
    with joblib.parallel_backend("dask"), pytest.warns(UserWarning, match="could not be read"):
        result = est.extract(bad)
    assert_same_features(result.features, data["X"][:40])
    assert [os.path.basename(p) for p, _ in result.failed] == ["truncated.jpg", "empty.jpg"]


def test_refused_without_a_shareable_cache(client, data, tmp_path):
    est = cnn(data, tmp_path, cache_dir=None)
    with pytest.raises(ValueError, match="cache_dir=None"):
        est.extract(data["paths"][:4], store=tmp_path / "f.h5", client=client)
    est = CNNFeatureTransformer("vgg16", weights=None, random_state=None, input_size=32,
                                cache_dir=tmp_path / "cache").fit()
    with joblib.parallel_backend("dask"), pytest.raises(ValueError, match="random_state"):
        est.transform(data["paths"][:4])


def test_seeded_random_weights_give_the_same_features_on_a_worker(client, data, tmp_path):
    est = CNNFeatureTransformer("vgg16", weights=None, random_state=0, input_size=32,
                                cache_dir=tmp_path / "cache").fit()
    with joblib.parallel_backend("dask"):
        X = est.transform(data["paths"][:64])
    assert_same_features(X, data["X"][:64])  # the weights file holds these weights


def test_worker_without_the_cache_folder_says_so(tmp_path):
    spec = {"transformer": None, "cache_path": str(tmp_path / "not-shared")}
    with pytest.raises(FileNotFoundError, match="shared by the workers"):
        extract_partition([], spec)


def test_dask_array_trains_and_predicts_on_cluster(client, data, tmp_path):
    from skbottleneck import IncrementalClassifier, KerasMLPClassifier

    X, y = data["X"], data["labels"]
    Xd = da.from_array(X, chunks=(37, 128))  # uneven row blocks, split columns
    source = DaskChunks(Xd, da.from_array(y, chunks=37))
    assert len(source) == len(X) and source.n_features == X.shape[1]
    # every row exactly once per pass, blocks in a shuffled order
    chunks = list(source.iter_chunks(48, random_state=0))
    assert [len(c) for c, _ in chunks] == [48, 48, 48, 48, 8]
    got = np.concatenate([c for c, _ in chunks])
    assert not np.array_equal(got, X)
    order = np.lexsort(got.T)
    np.testing.assert_array_equal(got[order], X[np.lexsort(X.T)])
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks])[order],
                                  y[np.lexsort(X.T)])
    Xr, yr = source.read_rows([5, 1, 150])
    np.testing.assert_array_equal(Xr, X[[5, 1, 150]])
    np.testing.assert_array_equal(yr, y[[5, 1, 150]])

    head = IncrementalClassifier(SGDClassifier(loss="log_loss", random_state=0), epochs=5,
                                 chunk_size=32, random_state=0).fit(source)
    assert head.score(X, y) > 0.5
    mlp = KerasMLPClassifier(hidden_layer_sizes=(16,), epochs=3, chunk_size=64,
                             random_state=0).fit(source)
    assert mlp.predict(X[:5]).shape == (5,)
    # prediction: a dask array of features, lazily, block by block
    pred = predict_on_cluster(head, Xd)
    np.testing.assert_array_equal(pred.compute(), head.predict(X))
    proba = predict_on_cluster(head, Xd, method="predict_proba").compute()
    np.testing.assert_allclose(proba, head.predict_proba(X))
    # ... or image paths through a whole pipeline, in partitions on the workers
    est = cnn(data, tmp_path)
    model = make_pipeline(est, head)
    paths = data["paths"]
    np.testing.assert_array_equal(predict_on_cluster(model, paths, client=client),
                                  head.predict(X))


def test_without_dask_the_package_works(data, tmp_path):
    """dask/distributed made unimportable: no Dask anywhere, same results."""
    code = textwrap.dedent(f"""
        import sys

        class NoDask:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dask", "distributed"):
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)")

        sys.meta_path.insert(0, NoDask())
        import joblib
        import numpy as np
        from skbottleneck import CNNFeatureTransformer
        from skbottleneck.distributed import active_client

        assert active_client() is None
        with joblib.parallel_backend("threading"):
            assert active_client() is None
        est = CNNFeatureTransformer("vgg16", weights={data["params"]["weights"]!r},
                                    input_size=32, cache_dir={str(tmp_path / "c")!r})
        X = est.fit_transform({[str(p) for p in data["paths"][:6]]!r})
        np.save({str(tmp_path / "X.npy")!r}, X)
        assert "dask" not in sys.modules and "distributed" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert_same_features(np.load(tmp_path / "X.npy"), data["X"][:6])


def test_importing_skbottleneck_distributed_does_not_import_dask():
    code = ("import sys, skbottleneck.distributed as d\n"
            "assert d.active_client() is None\n"
            "assert 'dask' not in sys.modules and 'distributed' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
