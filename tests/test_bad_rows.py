"""Bad rows and bad labels get a clear message or a refusal (issue #24, "Low").

Real stores (HDF5 written by :class:`~skbottleneck.store.StoreWriter`), a
real Parquet feature file, real heads and a real Keras model as backbone.
"""

import re

import numpy as np
import pytest

from skbottleneck import find_similar
from skbottleneck.heads import IncrementalClassifier
from skbottleneck.store import FeatureStore, StoreWriter


def make_store(path, X, labels=None, **kw):
    n, d = X.shape
    w = StoreWriter(path, paths=[f"img{i}.jpg" for i in range(n)], labels=labels,
                    n_features=d, **kw)
    if n:
        w.write_rows(np.arange(n), X)
    return w.finalize()


def features(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b"], n // 2)
    X = rng.normal(size=(n, d)).astype(np.float32) + (y == "b")[:, None] * 3
    return X, y


# ------------------------------------------------------------ non-finite rows
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_incremental_names_store_and_rows(tmp_path, bad):
    X, y = features()
    X[[7, 31]] = bad
    store = make_store(tmp_path / "bad.h5", X, y)
    clf = IncrementalClassifier(epochs=1, chunk_size=8, random_state=0)
    with pytest.raises(ValueError, match=r"bad\.h5.*2 rows hold NaN or infinity \(rows 7, 31"):
        clf.fit(store)


def test_incremental_partial_fit_names_rows(tmp_path):
    X, y = features()
    X[12, 3] = np.inf
    path = make_store(tmp_path / "inf.h5", X, y).path
    clf = IncrementalClassifier(chunk_size=64)
    with pytest.raises(ValueError, match=r"inf\.h5.*1 row holds .*\(row 12; row 12 holds infinity"):
        clf.partial_fit(FeatureStore(path), classes=["a", "b"])


def test_keras_mlp_names_store_and_rows(tmp_path):
    pytest.importorskip("keras")
    from skbottleneck.heads import KerasMLPClassifier

    X, y = features()
    X[3] = np.nan
    store = make_store(tmp_path / "nan.h5", X, y)
    clf = KerasMLPClassifier(hidden_layer_sizes=(4,), epochs=1, random_state=0)
    with pytest.raises(ValueError, match=r"KerasMLPClassifier cannot use .*nan\.h5.*\(row 3; "):
        clf.fit(store)


def test_feature_file_rows_named(tmp_path):
    X, y = features()
    X[5, 0] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, X)
    clf = IncrementalClassifier(epochs=1, random_state=0)
    with pytest.raises(ValueError, match=r"bad\.npy.*\(row 5; row 5 holds NaN"):
        clf.fit(str(path), y)


@pytest.mark.parametrize("in_memory", [True, False])
def test_find_similar_names_store_and_rows(tmp_path, in_memory):
    X, y = features()
    X[25] = np.inf
    store = make_store(tmp_path / "sim.h5", X, y)
    with pytest.raises(ValueError, match=r"find_similar cannot use .*sim\.h5.*\(row 25; "):
        find_similar(store, X[:2], k=3, in_memory=in_memory, chunk_size=8)


# ------------------------------------------------------- empty store, classes
@pytest.mark.parametrize("labels", [True, False])
def test_empty_store_named(tmp_path, labels):
    store = make_store(tmp_path / "empty.h5", np.zeros((0, 4), np.float32),
                       labels=np.array([], dtype=str) if labels else None)
    clf = IncrementalClassifier(epochs=1)
    y = None if labels else []
    with pytest.raises(ValueError, match=r"The FeatureStore .*empty\.h5 holds no rows"):
        clf.fit(store, y)


def test_empty_store_named_by_keras_mlp(tmp_path):
    pytest.importorskip("keras")
    from skbottleneck.heads import KerasMLPClassifier

    store = make_store(tmp_path / "empty.h5", np.zeros((0, 4), np.float32),
                       labels=np.array([], dtype=str))
    with pytest.raises(ValueError, match=r"The FeatureStore .*empty\.h5 holds no rows"):
        KerasMLPClassifier(epochs=1).fit(store, classes=["a", "b"])


def test_partial_fit_unseen_class_named(tmp_path):
    X, y = features()
    clf = IncrementalClassifier().partial_fit(X[:10], y[:10], classes=["a", "b"])
    y2 = y[10:30].astype("<U8")
    y2[4] = "zebra"
    with pytest.raises(ValueError, match=r"not in classes_: \['zebra'\]; classes_ is \['a', 'b'\]"):
        clf.partial_fit(X[10:30], y2)
    store = make_store(tmp_path / "more.h5", X[10:30], y2)
    with pytest.raises(ValueError, match=r"not in classes_: \['zebra'\]; classes_ is \['a', 'b'\]"):
        clf.partial_fit(store)


# ------------------------------------------------------------ float16 overflow
def test_float16_store_refuses_overflow(tmp_path):
    X, _ = features()
    X[9, 2] = 1e6
    with pytest.raises(ValueError, match=r"over\.h5 stores float16 features.*reach 1e\+06.*"
                                         r'dtype="float32"'):
        make_store(tmp_path / "over.h5", X, dtype="float16")
    np.testing.assert_array_equal(make_store(tmp_path / "ok.h5", X).read_rows([9])[0][0], X[9])


def test_float16_transformer_overflow_named(tmp_path):
    from PIL import Image

    from skbottleneck import CNNFeatureTransformer
    from skbottleneck._keras import import_keras

    keras = import_keras()
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1e6)(inputs)  # pixels of 255 become 2.55e8 > 65504
    model = keras.Model(inputs, x, name="huge")
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((32, 32, 3), 100 + i, np.uint8)).save(paths[-1])
    cnn = CNNFeatureTransformer(model, dtype="float16", cache_dir=tmp_path / "cache",
                                batch_size=2).fit()
    with pytest.raises(ValueError, match=r"feature cache .*float16.*65504.*"
                                         r'dtype="float32"'):
        cnn.transform(paths)
    cnn.set_params(cache_dir=None)
    with pytest.raises(ValueError, match=r"f16\.h5 stores float16 features.*65504"):
        cnn.extract(paths, store=tmp_path / "f16.h5")


# ------------------------------------------------------------ mixed labels
def test_mixed_label_types_refused(tmp_path):
    X = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match=r"mixed\.h5 mix numbers \(e\.g\. 1, 2\) and strings "
                                        r"\(e\.g\. '1', 'cat'\)"):
        make_store(tmp_path / "mixed.h5", X, [1, "1", 2, "cat"])
    for labels in (["1", "1", "2", "cat"], [1, 1, 2, 3], np.array([1, 2, 3, 4]),
                   np.array(["a", 1], dtype=object).repeat(2).astype(str)):
        store = make_store(tmp_path / "ok.h5", X, labels, overwrite=True)
        assert list(store.labels) == list(np.asarray(labels))
        store.close()
