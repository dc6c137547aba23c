"""IncrementalClassifier: partial_fit estimators trained over chunks.

Real data throughout: scikit-learn's digits, and bottleneck features of real
photo patches (scikit-image's bundled photographs) from a real pretrained
CNN (EfficientNet-Lite0, ImageNet weights shipped offline), written to real
HDF5 files: the package's :class:`~skbottleneck.store.FeatureStore` and a
minimal in-test store that only implements the duck-typed protocol.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import Perceptron, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError

from skbottleneck.heads import IncrementalClassifier

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- test data
@functools.lru_cache(maxsize=None)
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "brick",
          "grass", "gravel", "camera", "moon", "hubble_deep_field", "coins", "clock",
          "page", "text", "retina")


@functools.lru_cache(maxsize=None)
def cnn_patch_features(n_per_class=200, size=40):
    """Bottleneck features of real photo patches, one class per photograph.

    Random ``size``-pixel crops (randomly mirrored) of 16 photographs bundled
    with scikit-image, run through EfficientNet-Lite0 with its ImageNet
    weights (shipped in a pip package: no download) and average-pooled to
    1,280 features. Rows are sorted by class, as an extraction of an image
    folder (one sub-folder per class) would write them. Computed once per
    test session (~5 s).
    """
    skimage_data = pytest.importorskip("skimage.data")
    from skimage.color import gray2rgb

    from skbottleneck.backbones import get_backbone

    rng = np.random.default_rng(0)
    patches, labels = [], []
    for name in PHOTOS:
        image = getattr(skimage_data, name)()
        image = gray2rgb(image) if image.ndim == 2 else image[..., :3]
        h, w = image.shape[:2]
        for _ in range(n_per_class):
            r, c = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            patch = image[r:r + size, c:c + size]
            patches.append(patch[:, ::-1] if rng.random() < 0.5 else patch)
            labels.append(name)
    backbone = get_backbone("efficientnet_lite0")
    model = backbone.build(weights="imagenet", input_size=size)
    x = backbone.preprocess(np.stack(patches).astype("float32"))
    features = np.asarray(model.predict(x, batch_size=128, verbose=0))
    if features.ndim == 4:
        features = features.mean(axis=(1, 2))
    return features.astype(np.float32), np.asarray(labels)


def write_feature_store(path, X, y=None, *, block=4096):
    """Write ``X`` (and labels) to a real skbottleneck FeatureStore, blockwise."""
    from skbottleneck.store import StoreWriter

    writer = StoreWriter(path, paths=[f"img_{i:07d}.jpg" for i in range(len(X))],
                         labels=y, n_features=X.shape[1])
    for start in range(0, len(X), block):
        rows = np.arange(start, min(len(X), start + block))
        writer.write_rows(rows, X[rows])
    return writer.finalize()


class H5ChunkStore:
    """The row protocol (:class:`skbottleneck.chunks.RowSource`) and nothing more, over HDF5.

    ``len()``, ``n_features``, ``dtype``, ``shape``, ``labels``,
    ``iter_chunks`` (contiguous chunks, shuffled chunk order) and
    ``read_rows``; it records the rows it serves so
    that tests can see what was read.
    """

    def __init__(self, path):
        self._file = h5py.File(path, "r")
        self._X = self._file["features"]
        self.n_features = self._X.shape[1]
        if "dtype" not in type(self).__dict__:
            self.dtype = self._X.dtype
        labels = self._file.get("labels")
        self.labels = None if labels is None else labels.asstr()[()] \
            if labels.dtype.kind == "O" else (None if labels is None else labels[()])
        self.served = []  # row numbers of every chunk served, in order

    @classmethod
    def write(cls, path, X, y=None, chunk_rows=256):
        with h5py.File(path, "w") as f:
            f.create_dataset("features", data=X, chunks=(min(chunk_rows, len(X)), X.shape[1]))
            if y is not None:
                y = np.asarray(y)
                if y.dtype.kind == "U":
                    f.create_dataset("labels", data=y.astype(object), dtype=h5py.string_dtype())
                else:
                    f.create_dataset("labels", data=y)
        return cls(path)

    def __len__(self):
        return self._X.shape[0]

    @property
    def shape(self):
        return (len(self), self.n_features)

    def _labels(self, rows):
        return None if self.labels is None else self.labels[rows]

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None):
        starts = np.arange(0, len(self), chunk_size)
        if shuffle:
            starts = check_random_state(random_state).permutation(starts)
        for start in starts:
            rows = np.arange(start, min(len(self), start + chunk_size))
            self.served.append(rows)
            yield self._X[start:start + chunk_size], self._labels(rows)

    def read_rows(self, indices, *, dtype=None):
        rows = np.asarray(indices)
        order = np.argsort(rows)
        X = np.empty((len(rows), self.n_features), dtype=dtype or self._X.dtype)
        X[order] = self._X[rows[order]]  # h5py reads increasing indices
        self.served.append(rows.copy())
        return X, self._labels(rows)

    def close(self):
        self._file.close()


@pytest.fixture
def digits_store(tmp_path):
    X, y = digits()
    store = H5ChunkStore.write(tmp_path / "digits.h5", X.astype(np.float32), y)
    yield store
    store.close()


def sgd(**kwargs):
    return SGDClassifier(random_state=0, **kwargs)


# ------------------------------------------------------------------- inputs
def test_fit_on_arrays_learns_digits():
    X, y = digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    clf = IncrementalClassifier(sgd(), chunk_size=128, random_state=0).fit(Xtr, ytr)
    assert clf.score(Xte, yte) > 0.93
    assert clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_iter_ == clf.epochs == 10
    assert isinstance(clf.scaler_, StandardScaler)


def test_default_estimator_is_seeded_log_loss_sgd():
    X, y = digits()
    a = IncrementalClassifier(epochs=2, random_state=3).fit(X, y)
    b = IncrementalClassifier(epochs=2, random_state=3).fit(X, y)
    assert isinstance(a.estimator_, SGDClassifier) and a.estimator_.loss == "log_loss"
    np.testing.assert_array_equal(a.estimator_.coef_, b.estimator_.coef_)
    assert a.predict_proba(X[:3]).shape == (3, 10)


def test_same_random_state_same_model_other_state_other_model():
    X, y = digits()
    fit = functools.partial(IncrementalClassifier(sgd(), epochs=3, chunk_size=100).set_params)
    a = clone(fit(random_state=1)).fit(X, y)
    b = clone(fit(random_state=1)).fit(X, y)
    c = clone(fit(random_state=2)).fit(X, y)
    np.testing.assert_array_equal(a.estimator_.coef_, b.estimator_.coef_)
    assert not np.array_equal(a.estimator_.coef_, c.estimator_.coef_)


def test_unshuffled_fit_equals_manual_partial_fit_loop():
    """Chunking, scaling off: exactly SGDClassifier.partial_fit chunk by chunk."""
    X, y = digits()
    clf = IncrementalClassifier(sgd(), epochs=2, chunk_size=300, shuffle=False,
                                scale=False).fit(X, y)
    manual = sgd()
    for _ in range(2):
        for start in range(0, len(X), 300):
            manual.partial_fit(X[start:start + 300], y[start:start + 300], classes=np.arange(10))
    np.testing.assert_allclose(clf.estimator_.coef_, manual.coef_)


@pytest.mark.parametrize("inner", [MLPClassifier(hidden_layer_sizes=(16,), random_state=0),
                                   GaussianNB(), sgd(loss="log_loss")],
                         ids=["MLPClassifier", "GaussianNB", "SGDClassifier"])
def test_classes_and_sample_weight_are_passed_by_keyword(inner):
    """MLPClassifier.partial_fit(X, y, sample_weight, classes) and
    SGDClassifier.partial_fit(X, y, classes, sample_weight) order them differently."""
    X, y = digits()
    w = np.where(y % 2 == 0, 2.0, 0.5)
    clf = IncrementalClassifier(inner, epochs=1, chunk_size=500, shuffle=False,
                                scale=False).fit(X, y, sample_weight=w)
    manual = clone(inner)
    for start in range(0, len(X), 500):
        part = slice(start, start + 500)
        manual.partial_fit(X[part], y[part], classes=np.arange(10), sample_weight=w[part])
    np.testing.assert_allclose(clf.predict_proba(X), manual.predict_proba(X))


def test_estimator_without_partial_fit_is_refused_clearly():
    X, y = digits()
    with pytest.raises(InvalidParameterError, match="partial_fit"):
        IncrementalClassifier(KNeighborsClassifier()).fit(X, y)


def test_methods_follow_the_inner_estimator():
    hinge = IncrementalClassifier(sgd(loss="hinge"))
    assert not hasattr(hinge, "predict_proba") and hasattr(hinge, "decision_function")
    assert hasattr(IncrementalClassifier(sgd(loss="log_loss")), "predict_proba")
    assert not hasattr(IncrementalClassifier(Perceptron()), "predict_proba")
    nb = IncrementalClassifier(GaussianNB(), scale=False)
    assert hasattr(nb, "predict_proba") and not hasattr(nb, "decision_function")
    X, y = digits()
    nb.fit(X, y)
    assert nb.predict_log_proba(X[:2]).shape == (2, 10)
    assert not hasattr(nb, "decision_function")


def test_tags_follow_the_inner_estimator_and_scaling_respects_positive_only():
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.utils import get_tags

    assert get_tags(IncrementalClassifier(sgd())).input_tags.sparse
    assert not get_tags(IncrementalClassifier(GaussianNB())).input_tags.sparse
    assert get_tags(IncrementalClassifier(MultinomialNB(), scale=False)).input_tags.positive_only
    X, y = digits()
    with pytest.raises(ValueError, match="MultinomialNB needs non-negative features.*scale=False"):
        IncrementalClassifier(MultinomialNB()).fit(X, y)
    clf = IncrementalClassifier(MultinomialNB(), scale=False, epochs=1).fit(X, y)
    assert clf.score(X, y) > 0.85


def test_sparse_input():
    from scipy import sparse

    X, y = digits()
    dense = IncrementalClassifier(sgd(), epochs=2, random_state=0)
    clf = clone(dense).fit(sparse.csr_matrix(X), y)
    assert clf.scaler_.with_mean is False
    assert clf.score(sparse.csr_matrix(X), y) > 0.85


def test_list_of_chunks_and_callable_and_one_shot_generator():
    X, y = digits()
    chunks = [(X[s:s + 200], y[s:s + 200]) for s in range(0, 1500, 200)]
    from_list = IncrementalClassifier(sgd(), epochs=3, random_state=0).fit(chunks)
    from_callable = IncrementalClassifier(sgd(), epochs=3, random_state=0).fit(
        lambda: iter(chunks))
    np.testing.assert_array_equal(from_list.estimator_.coef_, from_callable.estimator_.coef_)
    assert from_list.score(X[1500:], y[1500:]) > 0.85

    one_pass = IncrementalClassifier(sgd(), epochs=1, scale=False, random_state=0)
    one_pass.fit((c for c in chunks), classes=np.arange(10))
    assert one_pass.n_iter_ == 1 and one_pass.score(X[1500:], y[1500:]) > 0.6

    for params, needs in [({"epochs": 2, "scale": False}, "epochs=2"),
                          ({"epochs": 1, "scale": True}, "scaler"),
                          ({"epochs": 1, "scale": False, "classes": None}, "classes")]:
        classes = params.pop("classes", np.arange(10))
        with pytest.raises(ValueError, match=f"one-shot iterator.*{needs}"):
            IncrementalClassifier(sgd(), **params).fit((c for c in chunks), classes=classes)


def test_chunks_with_y_or_sample_weight_arguments_are_refused():
    X, y = digits()
    with pytest.raises(ValueError, match="y must be None"):
        IncrementalClassifier(sgd()).fit([(X, y)], y)


def test_feature_store_fit_predict_score_in_store_order(digits_store):
    X, y = digits()
    clf = IncrementalClassifier(sgd(loss="log_loss"), epochs=3, chunk_size=256,
                                random_state=0)
    clf.fit(digits_store)  # labels from the store
    assert clf.n_features_in_ == 64
    X32 = X.astype(np.float32)  # as stored
    pred = clf.predict(digits_store)
    np.testing.assert_array_equal(pred, clf.predict(X32))
    assert clf.score(digits_store) == pytest.approx(clf.score(X32, y))
    np.testing.assert_allclose(clf.predict_proba(digits_store), clf.predict_proba(X32))
    assert clf.score(X, y) > 0.9


def test_feature_store_with_outside_labels_and_string_classes(tmp_path):
    X, y = digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])[y]
    store = H5ChunkStore.write(tmp_path / "nolabels.h5", X.astype(np.float32))
    assert store.labels is None
    with pytest.raises(ValueError, match="needs labels"):
        IncrementalClassifier(sgd(), epochs=1).fit(store)
    clf = IncrementalClassifier(sgd(), epochs=3, random_state=0).fit(store, names)
    assert set(clf.classes_) == set(names)
    assert clf.score(X, names) > 0.9
    labelled = H5ChunkStore.write(tmp_path / "strings.h5", X.astype(np.float32), names)
    clf2 = IncrementalClassifier(sgd(), epochs=3, random_state=0).fit(labelled)
    assert clf2.predict(labelled).dtype.kind == "U" or clf2.predict(labelled).dtype == object
    assert clf2.score(labelled) > 0.9


def test_wrong_feature_count_is_refused_for_arrays_and_chunks(digits_store):
    X, y = digits()
    clf = IncrementalClassifier(sgd(), epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 10 features, but IncrementalClassifier "
                                         "is expecting 64 features"):
        clf.predict(X[:, :10])
    with pytest.raises(ValueError, match="X has 10 features"):
        clf.predict([(X[:5, :10],)])
    bad = [(X[:100], y[:100]), (X[100:200, :10], y[100:200])]
    with pytest.raises(ValueError, match="X has 10 features"):
        IncrementalClassifier(sgd(), epochs=1).fit(bad)


def test_scaler_is_fitted_incrementally_on_the_training_rows():
    X, y = digits()
    clf = IncrementalClassifier(sgd(), epochs=1, chunk_size=97, random_state=0).fit(X, y)
    reference = StandardScaler().fit(X)
    np.testing.assert_allclose(clf.scaler_.mean_, reference.mean_)
    np.testing.assert_allclose(clf.scaler_.var_, reference.var_, atol=1e-9)
    assert IncrementalClassifier(sgd(), epochs=1, scale=False).fit(X, y).scaler_ is None


def test_partial_fit_needs_classes_first_then_continues():
    X, y = digits()
    clf = IncrementalClassifier(sgd(), scale=False, shuffle=False, chunk_size=2000)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X[:100], y[:100])
    manual = sgd()
    for start in range(0, 1000, 250):
        part = slice(start, start + 250)
        clf.partial_fit(X[part], y[part], classes=np.arange(10))
        manual.partial_fit(X[part], y[part], classes=np.arange(10))
    np.testing.assert_allclose(clf.estimator_.coef_, manual.coef_)
    assert clf.n_iter_ == 4
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X[:10], y[:10], classes=np.arange(5))
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.partial_fit(X[:10, :3], y[:10])


def test_partial_fit_on_a_stream_updates_the_scaler():
    X, y = digits()
    clf = IncrementalClassifier(sgd(), random_state=0)
    stream = ((X[s:s + 100], y[s:s + 100]) for s in range(0, 1500, 100))
    clf.partial_fit(stream, classes=np.arange(10))  # one-shot generator: fine
    np.testing.assert_allclose(clf.scaler_.mean_, X[:1500].mean(axis=0))
    assert clf.score(X[1500:], y[1500:]) > 0.8


def test_early_stopping_keeps_the_best_epoch_and_is_reproducible():
    X, y = digits()
    params = dict(epochs=30, chunk_size=200, early_stopping=True, n_iter_no_change=2,
                  random_state=0)
    clf = IncrementalClassifier(sgd(), **params).fit(X, y)
    scores = clf.validation_scores_
    assert clf.n_iter_ == len(scores) < 30
    assert clf.best_validation_score_ == max(scores)
    best_epoch = int(np.argmax(scores))  # the first best
    assert all(s <= scores[best_epoch] + clf.tol for s in scores[best_epoch + 1:])
    # the kept model is the one of the best epoch: a run stopped right there
    shorter = IncrementalClassifier(sgd(), **{**params, "epochs": best_epoch + 1}).fit(X, y)
    assert shorter.validation_scores_ == scores[:best_epoch + 1]
    np.testing.assert_array_equal(clf.estimator_.coef_, shorter.estimator_.coef_)


def test_early_stopping_on_a_store_holds_out_rows_by_index(tmp_path):
    X, y = digits()
    store = H5ChunkStore.write(tmp_path / "d.h5", X.astype(np.float32), y)
    clf = IncrementalClassifier(sgd(), epochs=2, chunk_size=128, early_stopping=True,
                                validation_fraction=0.2, n_iter_no_change=5,
                                random_state=0).fit(store)
    assert clf.n_iter_ == 2
    # passes: scaler (train rows), then per epoch: train rows, held-out rows
    rows_per_pass, current = [], []
    total = 0
    for rows in store.served:
        current.append(rows)
        total += len(rows)
        if total in (len(X) - int(np.ceil(0.2 * len(X))), int(np.ceil(0.2 * len(X)))):
            rows_per_pass.append(np.concatenate(current))
            current, total = [], 0
    assert len(rows_per_pass) == 5
    train, held_out = np.sort(rows_per_pass[0]), np.sort(rows_per_pass[2])
    assert len(np.intersect1d(train, held_out)) == 0
    np.testing.assert_array_equal(np.union1d(train, held_out), np.arange(len(X)))
    np.testing.assert_array_equal(np.sort(rows_per_pass[1]), train)
    np.testing.assert_array_equal(np.sort(rows_per_pass[3]), train)
    assert not np.array_equal(rows_per_pass[1], rows_per_pass[3])  # reshuffled each epoch
    # stratified: every class is held out in proportion
    assert np.all(np.bincount(y[held_out], minlength=10) >= 30)
    store.close()


class Float16Store(H5ChunkStore):
    """An H5ChunkStore that says its rows are float16 (2 bytes per feature)."""

    dtype = np.dtype(np.float16)


def test_store_subset_is_block_shuffled_with_blocks_sized_from_the_store_dtype(tmp_path):
    from skbottleneck.chunks import (
        StoreChunks, block_bounds, default_block_rows, iter_chunk_positions,
    )

    n_rows, n_features, chunk_size = 3000, 2048, 1024
    X = np.random.RandomState(0).normal(size=(n_rows, n_features)).astype(np.float16)
    store = Float16Store.write(tmp_path / "f16.h5", X, np.arange(n_rows) % 3)
    rows = np.sort(np.random.RandomState(1).choice(n_rows, 2500, replace=False))
    source = StoreChunks(store, indices=rows, chunk_size=chunk_size)
    chunks = list(source.iter_chunks(shuffle=True, random_state=0))
    # 128 KiB blocks of 4 KiB rows: 32 rows, capped at chunk_size // 16 = 64
    block_rows = default_block_rows(n_features * 2, chunk_size)
    assert block_rows == 32
    expected = iter_chunk_positions(block_bounds(len(rows), block_rows), chunk_size,
                                    rng=np.random.RandomState(0))
    for (Xc, yc, _), positions in zip(chunks, expected, strict=True):
        np.testing.assert_array_equal(Xc, X[rows[positions]])
        np.testing.assert_array_equal(yc, rows[positions] % 3)
    for served in store.served:  # each chunk read in row order
        assert np.all(np.diff(served) > 0)
    store.close()


def test_whole_store_rows_are_permuted_once_within_chunks(tmp_path):
    da = pytest.importorskip("dask.array")
    from skbottleneck.chunks import DaskChunks, StoreChunks

    X, y = digits()
    # a store that only shuffles its chunk order: rows permuted within chunks here
    store = H5ChunkStore.write(tmp_path / "d.h5", X.astype(np.float32), y)
    for (Xc, _, _), rows in zip(StoreChunks(store, chunk_size=256).iter_chunks(
            shuffle=True, random_state=0), store.served, strict=True):
        assert not np.array_equal(Xc, X[rows].astype(np.float32))
        np.testing.assert_array_equal(np.sort(Xc, axis=0), np.sort(X[rows], axis=0))
    store.close()
    # DaskChunks shuffles within chunks itself: its chunks come as they are
    dask = DaskChunks(da.from_array(X, chunks=(100, 64)), y)
    source = StoreChunks(dask, chunk_size=128)
    got = list(source.iter_chunks(shuffle=True, random_state=np.random.RandomState(3)))
    seed = np.random.RandomState(3).randint(np.iinfo(np.int32).max)
    for (Xc, yc, _), (Xd, yd) in zip(got, dask.iter_chunks(128, random_state=seed),
                                     strict=True):
        np.testing.assert_array_equal(Xc, Xd)
        np.testing.assert_array_equal(yc, yd)


def test_build_head_by_name_and_its_errors():
    from skbottleneck.heads import HEADS, KerasMLPClassifier, build_head

    assert HEADS == ("logreg", "sgd", "mlp", "keras-mlp")
    head = build_head("logreg", [("alpha", 0.01), ("scale", False)], epochs=2, chunk_size=64)
    assert isinstance(head, IncrementalClassifier)
    assert (head.epochs, head.chunk_size, head.scale, head.random_state) == (2, 64, False, 0)
    assert head.estimator.loss == "log_loss" and head.estimator.alpha == 0.01
    assert isinstance(build_head("keras-mlp", random_state=3), KerasMLPClassifier)
    with pytest.raises(ValueError, match="the sgd head has no parameter 'colour'; its "
                                         "parameters are: chunk_size, .*alpha"):
        build_head("sgd", [("colour", 1)])
    with pytest.raises(ValueError, match="invalid --param for the mlp head: .*epochs"):
        build_head("mlp", [("epochs", 0)])
    with pytest.raises(ValueError, match="unknown head 'forest'"):
        build_head("forest")


def test_early_stopping_on_a_chunk_iterable_holds_out_the_same_rows_every_pass():
    X, y = digits()
    seen = []

    def chunks():
        for start in range(0, len(X), 300):
            yield X[start:start + 300], y[start:start + 300]

    class Recorder(SGDClassifier):
        def partial_fit(self, X, y, classes=None, sample_weight=None):
            seen.append(len(X))
            return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)

    clf = IncrementalClassifier(Recorder(random_state=0), epochs=3, early_stopping=True,
                                n_iter_no_change=5, validation_fraction=0.25,
                                random_state=0).fit(chunks)
    per_epoch = np.array(seen).reshape(3, -1).sum(axis=1)
    assert per_epoch[0] == per_epoch[1] == per_epoch[2]
    assert 0.7 * len(X) < per_epoch[0] < 0.8 * len(X)
    assert len(clf.validation_scores_) == 3


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = digits()
    IncrementalClassifier(sgd(), epochs=2, verbose=1, early_stopping=True,
                          random_state=0).fit(X, y)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "epoch 2/2" in lines[1] and "validation accuracy" in lines[1]


def test_import_does_not_import_tensorflow():
    code = ("import sys, skbottleneck.heads._incremental, skbottleneck.chunks, skbottleneck.heads; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_works_with_the_real_feature_store(tmp_path):
    X, y = digits()
    store = write_feature_store(tmp_path / "digits.h5", X.astype(np.float32), y)
    clf = IncrementalClassifier(sgd(), epochs=3, chunk_size=256, random_state=0).fit(store)
    np.testing.assert_array_equal(clf.predict(store), clf.predict(X))
    assert clf.score(store) > 0.9
    held = IncrementalClassifier(sgd(), epochs=2, early_stopping=True,
                                 random_state=0).fit(store)
    assert len(held.validation_scores_) == 2
    store.close()


# -------------------------------------------------------------------- proofs
@pytest.mark.slow
def test_proof_out_of_core_sgd_matches_in_memory_sgd_on_cnn_features(tmp_path):
    """SGD trained chunk by chunk from an HDF5 FeatureStore of real CNN features
    reaches the test accuracy of SGDClassifier.fit in memory within 1 point."""
    X, y = cnn_patch_features()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    order = np.argsort(ytr, kind="stable")  # stored sorted by class, as extracted
    store = write_feature_store(tmp_path / "train.h5", Xtr[order], ytr[order])
    results = {}
    # the same model, in memory and out of core: raw features ...
    results["raw"] = (
        SGDClassifier(random_state=0).fit(Xtr, ytr).score(Xte, yte),
        IncrementalClassifier(SGDClassifier(random_state=0), epochs=40, scale=False,
                              chunk_size=256, random_state=0).fit(store).score(Xte, yte),
    )
    # ... and standardised (the default scale=True)
    results["scaled"] = (
        make_pipeline(StandardScaler(), SGDClassifier(random_state=0))
        .fit(Xtr, ytr).score(Xte, yte),
        IncrementalClassifier(SGDClassifier(random_state=0), chunk_size=256,
                              random_state=0).fit(store).score(Xte, yte),
    )
    store.close()
    print(json.dumps(results))
    for in_memory, out_of_core in results.values():
        assert out_of_core >= in_memory - 0.01, results
    assert min(min(r) for r in results.values()) > 0.9


# Peak memory of the training alone: the kernel's high-water mark (VmHWM) is
# reset just before (``echo 5 > /proc/self/clear_refs``). Not ru_maxrss: Linux
# carries it over from the forking parent (here a pytest with TensorFlow).
PEAK_RSS_PRELUDE = textwrap.dedent("""
    import json, sys

    def status_kib(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
""")

RSS_SCRIPT = PEAK_RSS_PRELUDE + textwrap.dedent("""
    from sklearn.linear_model import SGDClassifier
    from skbottleneck.heads import IncrementalClassifier
    from skbottleneck.store import FeatureStore

    store = FeatureStore(sys.argv[1])
    _ = store.labels  # row-sized, read once
    clf = IncrementalClassifier(SGDClassifier(random_state=0), epochs=1, chunk_size=512,
                                early_stopping=True, n_iter_no_change=1, random_state=0)
    base = status_kib("VmRSS")
    reset_peak()
    clf.fit(store)
    pred = clf.predict(store)
    print(json.dumps({"base_kib": base, "peak_kib": status_kib("VmHWM"), "rows": len(pred)}))
""")


def peak_rss_of(script, *args):
    """Run ``script`` in a fresh Python; return the JSON it prints last."""
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_proof_peak_memory_is_bounded_by_the_chunk_size(tmp_path):
    """Training over a store 4x bigger costs (almost) no more memory.

    Stores of 40,000 and 160,000 rows x 512 float32 features (78 and 312 MiB,
    ~150 and 600 times a 512-row chunk); each is trained on (scaler pass,
    one epoch, held-out scoring) and predicted in a fresh process, whose peak
    resident memory is compared.
    """
    rng = np.random.default_rng(0)
    n_features = 512
    sizes = {"small": 40_000, "big": 160_000}
    peaks = {}
    for name, n_rows in sizes.items():
        from skbottleneck.store import StoreWriter

        path = tmp_path / f"{name}.h5"
        labels = rng.integers(0, 5, n_rows)
        writer = StoreWriter(path, paths=[f"{i}.jpg" for i in range(n_rows)], labels=labels,
                             n_features=n_features)
        for start in range(0, n_rows, 8192):
            rows = np.arange(start, min(n_rows, start + 8192))
            writer.write_rows(rows, rng.random((len(rows), n_features), dtype=np.float32)
                              + labels[rows, None] * 0.01)
        writer.finalize().close()
        peaks[name] = peak_rss_of(RSS_SCRIPT, path)
        assert peaks[name]["rows"] == n_rows
    extra = {name: (p["peak_kib"] - p["base_kib"]) / 1024 for name, p in peaks.items()}
    growth_mib = extra["big"] - extra["small"]
    extra_data_mib = (sizes["big"] - sizes["small"]) * n_features * 4 / 2**20
    print(json.dumps({"peaks": peaks, "training_mib": extra, "growth_mib": growth_mib,
                      "extra_data_mib": extra_data_mib}))
    # 234 MiB more data (468 MiB as float64) may cost only a few MiB of
    # row-sized bookkeeping (labels, indices, predictions: ~4 MiB).
    assert growth_mib < 20, peaks
    assert extra["big"] < 64, peaks  # a 512-row chunk is 1 MiB (2 MiB as float64)
