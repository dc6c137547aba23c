"""Whole pipelines: GridSearchCV that extracts once, joblib round trips in a fresh
process, and an extraction into a store that survives SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skbottleneck import CNNFeatureTransformer, IncrementalClassifier, KerasMLPClassifier
from skbottleneck.extraction import cnn_image_count

from _features import assert_same_features

SMALL = dict(backbone="vgg16", weights=None, random_state=0, input_size=32)


def test_grid_search_over_heads_runs_each_image_through_the_cnn_once(photo_paths, tmp_path):
    paths, labels = photo_paths
    pipe = Pipeline([
        ("features", CNNFeatureTransformer(**SMALL, cache_dir=tmp_path / "cache")),
        ("scale", StandardScaler()),
        ("head", LogisticRegression(max_iter=500)),
    ])
    grid = {"head": [LogisticRegression(C=0.1, max_iter=500), SGDClassifier(random_state=0),
                     KerasMLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0)]}
    search = GridSearchCV(pipe, grid, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    before = cnn_image_count()
    search.fit(paths, labels)
    assert cnn_image_count() - before == len(paths)  # 3 folds x 3 heads + refit: still once each
    assert search.best_score_ > 0.5  # real photo classes, 4 of them: well above chance

    before = cnn_image_count()
    scores = cross_val_score(pipe, paths, labels, cv=3)
    assert cnn_image_count() == before and scores.mean() > 0.5


@pytest.mark.parametrize("head", ["keras", "incremental"])
def test_fitted_pipeline_round_trips_through_joblib_in_a_fresh_process(photo_paths, tmp_path, head):
    paths, labels = photo_paths
    train, new = slice(0, None, 2), slice(1, None, 2)
    est = (KerasMLPClassifier(hidden_layer_sizes=(32,), epochs=5, random_state=0) if head == "keras"
           else IncrementalClassifier(SGDClassifier(random_state=0), epochs=3, random_state=0))
    pipe = Pipeline([("features", CNNFeatureTransformer(**SMALL, cache_dir=None)), ("head", est)])
    pipe.fit(paths[train], labels[train])
    expected = pipe.predict(paths[new])
    model_path = tmp_path / "model.joblib"
    joblib.dump(pipe, model_path)
    code = textwrap.dedent(
        """
        import json, sys, joblib
        model = joblib.load(sys.argv[1])
        print(json.dumps(model.predict(json.loads(sys.argv[2])).tolist()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code, str(model_path), json.dumps(list(paths[new]))],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == expected.tolist()


_EXTRACT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from skbottleneck import CNNFeatureTransformer
    paths = sys.argv[1].split(",")
    labels = np.arange(len(paths)) % 3
    cnn = CNNFeatureTransformer("vgg16", weights=None, random_state=0, input_size=32,
                                batch_size=4, cache_dir=sys.argv[3] if sys.argv[3] != "-" else None)
    cnn.extract(paths, labels, store=sys.argv[2])
    print("done")
    """
)


def _done_rows(store):
    done = f"{store}.partial/done"
    return len(os.listdir(done)) if os.path.isdir(done) else 0


@pytest.mark.parametrize("cache", [False, True])
def test_extraction_killed_repeatedly_resumes_to_identical_features(photo_paths, tmp_path, cache):
    from skbottleneck import FeatureStore

    paths = list(photo_paths[0])
    store = tmp_path / "features.h5"
    cache_dir = str(tmp_path / "cache") if cache else "-"
    args = [sys.executable, "-c", _EXTRACT, ",".join(paths), str(store), cache_dir]
    kills = 0
    for target in (1, 4):  # SIGKILL once this many batches are on disk
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _done_rows(store) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert not store.exists() or FeatureStore(store)  # never an unreadable store
    assert kills >= 2, "the extraction finished before it could be killed"
    assert not store.exists()
    subprocess.run(args, check=True, capture_output=True)  # resume to the end
    X, y = FeatureStore(store).read_rows(np.arange(len(paths)))
    reference = CNNFeatureTransformer(**SMALL, batch_size=4, cache_dir=None).fit()
    assert_same_features(X, reference.transform(paths))
    np.testing.assert_array_equal(y, np.arange(len(paths)) % 3)


_TRANSFORM = textwrap.dedent(
    """
    import sys
    import numpy as np
    from skbottleneck import CNNFeatureTransformer
    paths = sys.argv[1].split(",")
    cnn = CNNFeatureTransformer("vgg16", weights=None, random_state=0, input_size=32,
                                batch_size=4, cache_dir=sys.argv[2]).fit()
    np.save(sys.argv[3], cnn.transform(paths))
    """
)


def test_four_processes_extracting_overlapping_sets_into_one_cache(photo_paths, tmp_path):
    from skbottleneck import FeatureCache

    paths = list(photo_paths[0])
    cache_dir = tmp_path / "cache"
    subsets = [paths[i * 6:i * 6 + 14] for i in range(4)]  # each overlaps its neighbours
    procs = [subprocess.Popen([sys.executable, "-c", _TRANSFORM, ",".join(s), str(cache_dir),
                               str(tmp_path / f"out{i}.npy")], stderr=subprocess.DEVNULL)
             for i, s in enumerate(subsets)]
    assert all(p.wait(timeout=300) == 0 for p in procs)

    single = CNNFeatureTransformer(**SMALL, batch_size=4, cache_dir=None).fit()
    for i, subset in enumerate(subsets):
        assert_same_features(np.load(tmp_path / f"out{i}.npy"), single.transform(subset))
    # every image: exactly one readable row in the cache, a single process's features
    cnn = CNNFeatureTransformer(**SMALL, batch_size=4, cache_dir=cache_dir).fit()
    cache = FeatureCache(cache_dir, cnn.fingerprint_, dtype="float32")
    cache.compact(min_shards=1)
    from skbottleneck.cache import file_keys

    covered = sorted({p for s in subsets for p in s})
    keys = file_keys(covered)
    assert cache.lookup(keys).all() and len(cache) == len(set(keys))
    assert_same_features(cache.read(keys), single.transform(covered))
    before = cnn_image_count()
    cnn.transform(covered)
    assert cnn_image_count() == before


_SLOW_THIRD_BATCH = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from skbottleneck import CNNFeatureTransformer
    from skbottleneck._keras import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    marker = sys.argv[3]
    calls = [0]

    def signal_and_stall(x):
        calls[0] += 1
        if calls[0] == 3:  # the third batch: say so, then take (nearly) forever
            with open(marker, "w") as f:
                f.write("3")
            time.sleep(120)
        return x

    class SlowOnTheThirdBatch(keras.layers.Layer):
        def call(self, x):
            y = tf.py_function(signal_and_stall, [x], tf.float32)
            y.set_shape(x.shape)
            return y

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.GlorotUniform(seed=0))(inputs)
    model = keras.Model(inputs, SlowOnTheThirdBatch()(x), name="slow")
    cnn = CNNFeatureTransformer(model, batch_size=2, cache_dir=sys.argv[4] if sys.argv[4] != "-" else None)
    paths = sys.argv[1].split(",")
    cnn.extract(paths, np.arange(len(paths)), store=sys.argv[2])
    """
)


@pytest.mark.parametrize("cache", [False, True])
def test_a_kill_loses_at_most_the_batch_in_flight(photo_paths, tmp_path, cache):
    """SIGKILL while the third batch is in the CNN: the first two batches are
    on disk (journalled), so a rerun extracts only the batch that was in flight."""
    paths = list(photo_paths[0][:8])
    store, marker = tmp_path / "features.h5", tmp_path / "third-batch"
    cache_dir = str(tmp_path / "cache") if cache else "-"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_THIRD_BATCH, ",".join(paths),
                             str(store), str(marker), cache_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert marker.exists(), proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)  # the moment the third batch entered the CNN
    proc.wait()
    # batches 1 and 2 are journalled (one journal file per batch written): only
    # the batch in flight and the one not yet started are left to do, no batch
    # was waiting in a write queue
    assert _done_rows(store) == 2
    assert not store.exists()
