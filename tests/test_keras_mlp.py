"""KerasMLPClassifier: a Keras MLP head, in memory and out of core.

Real data: scikit-learn's digits and bottleneck features of real photo
patches from a pretrained CNN (see ``test_incremental.cnn_patch_features``),
real HDF5 feature stores, a real Keras model.
"""

import json
import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skbottleneck.heads import KerasMLPClassifier
from test_incremental import (
    PEAK_RSS_PRELUDE,
    REPO,
    H5ChunkStore,
    cnn_patch_features,
    digits,
    peak_rss_of,
    write_feature_store,
)


def scaled_digits():
    X, y = digits()
    return (X / 16.0).astype(np.float32), y


def small(**kwargs):
    """A quick model for behaviour tests."""
    params = dict(hidden_layer_sizes=(32,), epochs=3, learning_rate=0.01, random_state=0)
    params.update(kwargs)
    return KerasMLPClassifier(**params)


@pytest.fixture(scope="module")
def split_digits():
    X, y = scaled_digits()
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_import_does_not_import_tensorflow():
    code = "import sys, skbottleneck.heads._keras_mlp; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_init_only_stores_parameters_and_clone_works():
    clf = KerasMLPClassifier(hidden_layer_sizes=[64, 16], dropout=0.5)
    assert clf.hidden_layer_sizes == [64, 16] and not hasattr(clf, "model_")
    assert clone(clf).get_params() == clf.get_params()


@pytest.mark.parametrize("params, match", [
    ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes must be a sequence of positive ints"),
    ({"hidden_layer_sizes": (8, "a")}, "hidden_layer_sizes"),
    ({"optimizer": "lbfgs"}, "'optimizer' parameter"),
    ({"activation": "logistic"}, "'activation' parameter"),
    ({"dropout": 1.0}, "'dropout' parameter"),
    ({"batch_size": 0}, "'batch_size' parameter"),
])
def test_bad_parameters_are_refused_at_fit(params, match):
    X, y = scaled_digits()
    clf = KerasMLPClassifier(**params)  # no error yet
    with pytest.raises((ValueError, InvalidParameterError), match=match):
        clf.fit(X[:50], y[:50])


def test_proof_learns_digits(split_digits):
    """A real multiclass task: digits, default parameters, >= 0.9 accuracy."""
    Xtr, Xte, ytr, yte = split_digits
    clf = KerasMLPClassifier(random_state=0).fit(Xtr, ytr)
    assert clf.score(Xte, yte) >= 0.95
    assert clf.model_.output_shape == (None, 10)
    assert len(clf.history_["loss"]) == 20 and clf.history_["loss"][-1] < clf.history_["loss"][0]
    proba = clf.predict_proba(Xte)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(Xte))


def test_same_seed_same_probabilities_other_seed_other_model(split_digits):
    Xtr, Xte, ytr, _ = split_digits
    params = dict(hidden_layer_sizes=(32, 16), dropout=0.2, epochs=3)
    a = KerasMLPClassifier(random_state=7, **params).fit(Xtr, ytr).predict_proba(Xte)
    b = KerasMLPClassifier(random_state=7, **params).fit(Xtr, ytr).predict_proba(Xte)
    c = KerasMLPClassifier(random_state=8, **params).fit(Xtr, ytr).predict_proba(Xte)
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    assert np.abs(a - c).max() > 1e-3


def test_keras_global_random_state_is_untouched(split_digits):
    Xtr, _, ytr, _ = split_digits
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    small(epochs=1).fit(Xtr, ytr)
    assert np.random.random() == expected


def test_binary_and_string_labels(split_digits):
    Xtr, Xte, ytr, yte = split_digits
    names = np.where(ytr < 5, "low", "high")
    clf = small(epochs=5).fit(Xtr, names)
    np.testing.assert_array_equal(clf.classes_, ["high", "low"])
    assert clf.predict_proba(Xte).shape == (len(Xte), 2)
    assert clf.score(Xte, np.where(yte < 5, "low", "high")) > 0.85
    with pytest.raises(ValueError, match="at least 2 classes"):
        small().fit(Xtr, np.full(len(Xtr), "one"))


def test_partial_fit_creates_then_continues(split_digits):
    Xtr, Xte, ytr, yte = split_digits
    clf = small(batch_size=64)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(Xtr, ytr)
    for _ in range(5):
        clf.partial_fit(Xtr, ytr, classes=np.arange(10))
    assert clf.n_iter_ == 5 and len(clf.history_["loss"]) == 5
    assert clf.history_["loss"][-1] < clf.history_["loss"][0]
    assert clf.score(Xte, yte) > 0.9
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(Xtr, ytr, classes=np.arange(3))
    with pytest.raises(ValueError, match="X has 8 features, but KerasMLPClassifier"):
        clf.partial_fit(Xtr[:, :8], ytr)
    with pytest.raises(ValueError, match="labels not in classes_"):
        clf.partial_fit(Xtr[:4], np.array([0, 1, 2, 11]))


def test_partial_fit_with_classes_beyond_those_seen(split_digits):
    Xtr, _, ytr, _ = split_digits
    clf = small().partial_fit(Xtr[ytr < 5], ytr[ytr < 5], classes=np.arange(10))
    assert clf.predict_proba(Xtr[:3]).shape == (3, 10)


def test_store_and_array_give_the_same_model_when_unshuffled(tmp_path, split_digits):
    """Streaming from HDF5 is exactly training on the array, chunk for chunk."""
    Xtr, Xte, ytr, yte = split_digits
    store = H5ChunkStore.write(tmp_path / "d.h5", Xtr, ytr)
    params = dict(shuffle=False, chunk_size=200, batch_size=50, epochs=3)
    from_array = small(**params).fit(Xtr, ytr)
    from_store = small(**params).fit(store)
    np.testing.assert_allclose(from_store.predict_proba(Xte), from_array.predict_proba(Xte),
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(from_store.history_["loss"], from_array.history_["loss"],
                               rtol=1e-5)
    np.testing.assert_array_equal(from_store.predict(store), from_array.predict(Xtr))
    assert from_store.score(store) == pytest.approx(from_array.score(Xtr, ytr))
    store.close()


def test_chunk_iterables_callables_and_one_shot_generators(split_digits):
    Xtr, Xte, ytr, yte = split_digits
    chunks = [(Xtr[s:s + 300], ytr[s:s + 300]) for s in range(0, len(Xtr), 300)]
    a = small(epochs=4).fit(chunks)
    b = small(epochs=4).fit(lambda: iter(chunks))
    np.testing.assert_allclose(a.predict_proba(Xte), b.predict_proba(Xte), atol=1e-6)
    assert a.score(Xte, yte) > 0.85
    one = small(epochs=1).fit(iter(chunks), classes=np.arange(10))
    assert one.n_iter_ == 1
    with pytest.raises(ValueError, match="one-shot iterator.*epochs=2"):
        small(epochs=2).fit(iter(chunks), classes=np.arange(10))
    with pytest.raises(ValueError, match="one-shot iterator.*classes"):
        small(epochs=1).fit(iter(chunks))
    np.testing.assert_array_equal(a.predict([(Xte[:10],), (Xte[10:20],)]), a.predict(Xte[:20]))


def test_early_stopping_restores_the_best_epoch(split_digits):
    Xtr, Xte, ytr, yte = split_digits
    # a learning rate so large that the validation loss soon goes up again
    params = dict(hidden_layer_sizes=(64,), learning_rate=0.05, epochs=40,
                  early_stopping=True, n_iter_no_change=3, random_state=0)
    clf = KerasMLPClassifier(**params).fit(Xtr, ytr)
    val_loss = clf.history_["val_loss"]
    assert clf.n_iter_ == len(val_loss) == len(clf.history_["val_accuracy"]) < 40
    best = int(np.argmin(val_loss))
    assert clf.n_iter_ == best + 1 + 3
    # the kept weights are those of the best epoch: a run stopped right there
    shorter = KerasMLPClassifier(**{**params, "epochs": best + 1}).fit(Xtr, ytr)
    np.testing.assert_allclose(shorter.history_["val_loss"], val_loss[:best + 1], rtol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(Xte), shorter.predict_proba(Xte), atol=1e-6)


def test_pickle_joblib_and_deepcopy_round_trips(tmp_path, split_digits):
    Xtr, Xte, ytr, _ = split_digits
    clf = small(dropout=0.1).fit(Xtr, ytr)
    expected = clf.predict_proba(Xte)
    state = clf.__getstate__()
    assert "model_" not in state and all(isinstance(w, np.ndarray) for w in state["_weights"])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(Xte), expected)
    # the optimizer state travels too: training goes on identically
    clf.partial_fit(Xtr, ytr)
    again.partial_fit(Xtr, ytr)
    np.testing.assert_array_equal(again.predict_proba(Xte), clf.predict_proba(Xte))
    import copy

    np.testing.assert_array_equal(copy.deepcopy(clf).predict_proba(Xte), clf.predict_proba(Xte))
    unfitted = pickle.loads(pickle.dumps(small()))
    assert not hasattr(unfitted, "model_")


def test_joblib_dump_loads_and_predicts_in_a_fresh_process(tmp_path, split_digits):
    Xtr, Xte, ytr, _ = split_digits
    clf = small().fit(Xtr, ytr)
    joblib.dump(clf, tmp_path / "head.joblib")
    np.save(tmp_path / "X.npy", Xte)
    code = textwrap.dedent(f"""
        import sys, joblib, numpy as np
        clf = joblib.load({str(tmp_path / "head.joblib")!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "pred.npy")!r}, clf.predict(X))
        np.save({str(tmp_path / "proba.npy")!r}, clf.predict_proba(X))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), clf.predict(Xte))
    np.testing.assert_allclose(np.load(tmp_path / "proba.npy"), clf.predict_proba(Xte),
                               atol=1e-6)


def test_grid_search_over_a_pipeline(split_digits):
    Xtr, Xte, ytr, yte = split_digits
    pipe = Pipeline([("scale", StandardScaler()), ("head", small(epochs=5, batch_size=32))])
    grid = GridSearchCV(pipe, {"head__hidden_layer_sizes": [(16,), (32, 8)],
                               "head__dropout": [0, 0.5]}, cv=2)
    grid.fit(Xtr[:600], ytr[:600])
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_.named_steps["head"].model_ is not None
    assert grid.score(Xte, yte) > 0.8


def test_verbose_prints_one_line_per_epoch(capsys, split_digits):
    Xtr, _, ytr, _ = split_digits
    small(epochs=2, verbose=1, early_stopping=True).fit(Xtr, ytr)
    lines = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in lines if line.startswith("[KerasMLPClassifier]")]
    assert len(lines) == 2 and "epoch 2/2" in lines[1] and "val_loss" in lines[1]


# -------------------------------------------------------------------- proofs
@pytest.mark.slow
def test_proof_out_of_core_from_a_feature_store_of_cnn_features(tmp_path):
    """Trained from an HDF5 FeatureStore (rows sorted by class, as extracted),
    the MLP matches the same MLP trained on the in-memory array."""
    X, y = cnn_patch_features()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    order = np.argsort(ytr, kind="stable")
    store = write_feature_store(tmp_path / "train.h5", Xtr[order], ytr[order])
    params = dict(hidden_layer_sizes=(256,), epochs=10, chunk_size=512, random_state=0)
    in_memory = KerasMLPClassifier(**params).fit(Xtr, ytr).score(Xte, yte)
    out_of_core = KerasMLPClassifier(**params).fit(store).score(Xte, yte)
    store.close()
    print(json.dumps({"in_memory": in_memory, "out_of_core": out_of_core}))
    assert out_of_core >= in_memory - 0.01
    assert out_of_core > 0.95


KERAS_RSS_SCRIPT = PEAK_RSS_PRELUDE + textwrap.dedent("""
    import numpy as np
    from skbottleneck.heads import KerasMLPClassifier
    from skbottleneck.store import FeatureStore

    store = FeatureStore(sys.argv[1])
    _ = store.labels
    # warm-up on a few rows: TensorFlow's one-off allocations (kernels,
    # tracing) are not what is measured
    X, y = store.read_rows(np.arange(256))
    params = dict(hidden_layer_sizes=(64,), epochs=1, chunk_size=512, random_state=0)
    KerasMLPClassifier(**params).fit(X, y, classes=np.unique(store.labels)).predict(X)
    base = status_kib("VmRSS")
    reset_peak()
    clf = KerasMLPClassifier(**params).fit(store)
    pred = clf.predict(store)
    print(json.dumps({"base_kib": base, "peak_kib": status_kib("VmHWM"), "rows": len(pred)}))
""")


@pytest.mark.slow
def test_proof_peak_memory_is_bounded_by_the_chunk_size(tmp_path):
    """Keras training from a store 4x bigger costs (almost) no more memory."""
    from skbottleneck.store import StoreWriter

    rng = np.random.default_rng(0)
    n_features = 512
    sizes = {"small": 30_000, "big": 120_000}
    peaks = {}
    for name, n_rows in sizes.items():
        path = tmp_path / f"{name}.h5"
        labels = rng.integers(0, 5, n_rows)
        writer = StoreWriter(path, paths=[f"{i}.jpg" for i in range(n_rows)], labels=labels,
                             n_features=n_features)
        for start in range(0, n_rows, 8192):
            rows = np.arange(start, min(n_rows, start + 8192))
            writer.write_rows(rows, rng.random((len(rows), n_features), dtype=np.float32))
        writer.finalize().close()
        peaks[name] = peak_rss_of(KERAS_RSS_SCRIPT, path)
        assert peaks[name]["rows"] == n_rows
    extra = {name: (p["peak_kib"] - p["base_kib"]) / 1024 for name, p in peaks.items()}
    growth_mib = extra["big"] - extra["small"]
    extra_data_mib = (sizes["big"] - sizes["small"]) * n_features * 4 / 2**20
    print(json.dumps({"peaks": peaks, "training_mib": extra, "growth_mib": growth_mib,
                      "extra_data_mib": extra_data_mib}))
    assert growth_mib < 30, peaks  # against 176 MiB more data


# ------------------------------------------------------ sample and class weights
def _imbalanced():
    """Digits 0 (many rows) against 8 (a few): a minority class to weigh."""
    X, y = scaled_digits()
    rng = np.random.default_rng(0)
    zeros = np.flatnonzero(y == 0)
    eights = rng.choice(np.flatnonzero(y == 8), 12, replace=False)
    rows = rng.permutation(np.concatenate([zeros, eights]))
    others = np.setdiff1d(np.flatnonzero(y == 8), eights)
    return X[rows], y[rows], X[others]


def test_weights_of_one_change_nothing(split_digits):
    X_train, X_test, y_train, _ = split_digits
    plain = small().fit(X_train, y_train).predict_proba(X_test)
    ones = small().fit(X_train, y_train, sample_weight=np.ones(len(y_train))).predict_proba(X_test)
    np.testing.assert_array_equal(ones, plain)
    same = small(class_weight={c: 1.0 for c in range(10)}).fit(X_train, y_train)
    np.testing.assert_array_equal(same.predict_proba(X_test), plain)


def test_balanced_class_weight_finds_the_minority_class():
    X, y, X_eights = _imbalanced()
    kwargs = dict(hidden_layer_sizes=(), epochs=2, learning_rate=0.01, random_state=0)
    plain = KerasMLPClassifier(**kwargs).fit(X, y)
    balanced = KerasMLPClassifier(class_weight="balanced", **kwargs).fit(X, y)
    recall_plain = np.mean(plain.predict(X_eights) == 8)
    recall_balanced = np.mean(balanced.predict(X_eights) == 8)
    assert recall_balanced > recall_plain + 0.2, (recall_plain, recall_balanced)
    # "balanced" is scikit-learn's formula, and a dict of it trains the same model
    from sklearn.utils.class_weight import compute_class_weight

    weights = compute_class_weight("balanced", classes=np.array([0, 8]), y=y)
    np.testing.assert_allclose(balanced._class_weights_, weights, rtol=1e-6)
    as_dict = KerasMLPClassifier(class_weight=dict(zip([0, 8], weights)), **kwargs).fit(X, y)
    np.testing.assert_allclose(as_dict.predict_proba(X_eights), balanced.predict_proba(X_eights),
                               rtol=1e-5)


def test_sample_weight_of_zero_leaves_rows_out(split_digits):
    X_train, X_test, y_train, _ = split_digits
    w = (y_train != 3).astype(float)  # the 3s weigh nothing
    clf = small(epochs=5).fit(X_train, y_train, sample_weight=w)
    assert 3 in clf.classes_ and np.mean(clf.predict(X_test) == 3) < 0.02
    assert np.mean(small(epochs=5).fit(X_train, y_train).predict(X_test) == 3) > 0.05


def test_balanced_class_weight_out_of_core(tmp_path):
    """A FeatureStore's labels and a chunk iterable (one extra pass) give the same weights."""
    X, y, _ = _imbalanced()
    store = write_feature_store(tmp_path / "f.h5", X, y)
    from_store = small(class_weight="balanced", epochs=1).fit(store)
    chunks = [(X[i:i + 50], y[i:i + 50]) for i in range(0, len(y), 50)]
    from_chunks = small(class_weight="balanced", epochs=1).fit(chunks)
    from_array = small(class_weight="balanced", epochs=1).fit(X, y)
    np.testing.assert_allclose(from_store._class_weights_, from_array._class_weights_)
    np.testing.assert_allclose(from_chunks._class_weights_, from_array._class_weights_)


def test_class_weight_errors(split_digits):
    X_train, _, y_train, _ = split_digits
    with pytest.raises(ValueError, match="partial_fit does not see"):
        small(class_weight="balanced").partial_fit(X_train, y_train, classes=np.arange(10))
    with pytest.raises(ValueError, match=r"classes not in the data: \[11\]"):
        small(class_weight={11: 2.0}).fit(X_train, y_train)
    with pytest.raises(InvalidParameterError):
        small(class_weight="inverse").fit(X_train, y_train)
    # a dict works with partial_fit, and survives pickling mid-training
    clf = small(class_weight={0: 5.0}).partial_fit(X_train, y_train, classes=np.arange(10))
    clf = pickle.loads(pickle.dumps(clf)).partial_fit(X_train, y_train)
    assert clf.n_iter_ == 2
