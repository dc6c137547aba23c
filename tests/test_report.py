"""skbottleneck.report on real CNN features of real photos."""

import json
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbottleneck import CNNFeatureTransformer
from skbottleneck.report import predict_labels, report

pytest.importorskip("matplotlib")

SMALL = dict(backbone="vgg16", weights=None, random_state=0, input_size=32)


@pytest.fixture(scope="module")
def features(photo_paths):
    """VGG16 (random, seeded) features of the 32 photo patches, and their labels."""
    paths, labels = photo_paths
    cnn = CNNFeatureTransformer(**SMALL)
    return cnn.fit_transform(paths), np.asarray(labels), paths


@pytest.fixture(scope="module")
def fitted(features):
    X, y, _ = features
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
    # train on every other image, report on the rest
    return model.fit(X[::2], y[::2])


def _png_size(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_report_files_and_metrics_match_sklearn(features, fitted, tmp_path):
    X, y, _ = features
    X_test, y_test = X[1::2], y[1::2]
    metrics = report(fitted, X_test, y_test, tmp_path, title="VGG16 random 32px")

    y_pred = fitted.predict(X_test)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_test, y_pred))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_test, y_pred))
    classes = sorted(set(y))
    assert metrics["classes"] == classes
    cm = confusion_matrix(y_test, y_pred, labels=classes)
    assert metrics["confusion_matrix"] == cm.tolist()
    precision, recall, f1, support = precision_recall_fscore_support(y_test, y_pred, labels=classes,
                                                                     zero_division=0)
    for i, c in enumerate(classes):
        per = metrics["per_class"][c]
        assert per["precision"] == pytest.approx(precision[i])
        assert per["f1"] == pytest.approx(f1[i])
        assert per["support"] == support[i] == 4
        # per-class accuracy: fraction of that class predicted correctly
        assert per["accuracy"] == pytest.approx(cm[i, i] / cm[i].sum()) == pytest.approx(recall[i])

    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["accuracy"] == metrics["accuracy"]
    assert on_disk["confusion_matrix"] == cm.tolist()
    assert set(on_disk["files"]) == {"classification_report", "predictions", "confusion_matrix", "metrics",
                                    "html"}

    text = (tmp_path / "classification_report.txt").read_text()
    assert text.startswith("VGG16 random 32px")
    assert "precision" in text and "Per-class accuracy" in text
    for c in classes:
        assert c in text

    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0] == "index,path,true,predicted,correct"
    assert len(rows) == 1 + len(y_test)

    width, height = _png_size(tmp_path / "confusion_matrix.png")
    assert width > 1.6 * height  # counts and normalised panels side by side
    assert not (tmp_path / "learning_curve.png").exists()  # no history_ on this head


def test_counts_only_without_normalize(features, fitted, tmp_path):
    X, y, _ = features
    report(fitted, X[1::2], y[1::2], tmp_path, normalize=None)
    width, height = _png_size(tmp_path / "confusion_matrix.png")
    assert width < 1.4 * height


def test_report_on_image_paths_through_the_pipeline(photo_paths, tmp_path):
    paths, labels = photo_paths
    model = make_pipeline(CNNFeatureTransformer(**SMALL), StandardScaler(),
                          LogisticRegression(max_iter=500))
    model.fit(paths[::2], labels[::2])
    metrics = report(model, paths[1::2], labels[1::2], tmp_path, normalize="pred")
    assert metrics["n_samples"] == len(paths[1::2])
    lines = (tmp_path / "predictions.csv").read_text().splitlines()[1:]
    assert [line.split(",")[1] for line in lines] == [str(p) for p in paths[1::2]]


def test_report_on_a_feature_store_reads_its_labels(photo_paths, tmp_path):
    from sklearn.linear_model import SGDClassifier

    from skbottleneck import IncrementalClassifier

    paths, labels = photo_paths
    cnn = CNNFeatureTransformer(**SMALL)
    store = cnn.extract(paths, labels, store=tmp_path / "features.h5").features
    head = IncrementalClassifier(SGDClassifier(loss="log_loss", random_state=0), epochs=5,
                                 chunk_size=8, random_state=0)
    model = make_pipeline(cnn, head).fit(store)
    metrics = report(model, store, None, tmp_path / "report", chunk_size=5)
    y_pred, kept = predict_labels(model, store, chunk_size=5)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, y_pred))
    assert len(kept) == len(paths)
    lines = (tmp_path / "report" / "predictions.csv").read_text().splitlines()[1:]
    assert lines[0].split(",")[1] == str(paths[0])  # store paths are reported


def test_report_checks_the_store_belongs_to_the_model(photo_paths, tmp_path):
    paths, labels = photo_paths
    cnn = CNNFeatureTransformer(**SMALL)
    store = cnn.extract(paths, labels, store=tmp_path / "a.h5").features
    model = make_pipeline(cnn, StandardScaler(), LogisticRegression(max_iter=200)).fit(paths, labels)
    other = CNNFeatureTransformer(**dict(SMALL, random_state=1)).extract(
        paths, labels, store=tmp_path / "b.h5").features
    with pytest.raises(ValueError, match="different feature spaces"):
        report(model, other, None, tmp_path / "r")
    assert report(model, store, None, tmp_path / "r")["n_samples"] == len(paths)


def test_learning_curve_for_heads_with_history(features, tmp_path):
    keras_mlp = pytest.importorskip("skbottleneck.heads._keras_mlp")
    X, y, _ = features
    head = keras_mlp.KerasMLPClassifier(hidden_layer_sizes=(16,), epochs=4, random_state=0,
                                        verbose=0)
    model = make_pipeline(StandardScaler(), head).fit(X[::2], y[::2])
    metrics = report(model, X[1::2], y[1::2], tmp_path)
    assert "learning_curve" in metrics["files"]
    width, height = _png_size(tmp_path / "learning_curve.png")
    assert width > 300 and height > 200


def test_unreadable_images_skipped_are_counted(photo_paths, tmp_path):
    paths, labels = photo_paths
    model = make_pipeline(CNNFeatureTransformer(**SMALL), StandardScaler(),
                          LogisticRegression(max_iter=500)).fit(paths, labels)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    model.set_params(cnnfeaturetransformer__on_error="skip")
    X = list(paths[:6]) + [str(bad)]
    y = list(labels[:6]) + [labels[0]]
    with pytest.warns(UserWarning, match="could not be read"):
        metrics = report(model, X, y, tmp_path / "r")
    assert metrics["n_samples"] == 6 and metrics["n_skipped"] == 1
    assert "1 unreadable images skipped" in (tmp_path / "r" / "classification_report.txt").read_text()


def test_without_matplotlib(features, fitted, tmp_path, monkeypatch):
    X, y, _ = features
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.warns(UserWarning, match="pip install matplotlib"):
        metrics = report(fitted, X, y, tmp_path / "auto")
    assert "confusion_matrix" not in metrics["files"]
    assert (tmp_path / "auto" / "metrics.json").exists()
    with pytest.raises(ImportError, match="pip install matplotlib"):
        report(fitted, X, y, tmp_path / "required", plots=True)
    metrics = report(fitted, X, y, tmp_path / "none", plots=False)
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == [
        "classification_report.txt", "metrics.json", "predictions.csv", "report.html"]
    assert "Confusion matrix" in (tmp_path / "none" / "report.html").read_text()  # no matplotlib needed


@pytest.mark.parametrize("kwargs, match", [
    (dict(normalize="rows"), "normalize"),
    (dict(plots="yes"), "plots"),
    (dict(max_thumbnails=0), "max_thumbnails"),
    (dict(thumbnail_size=True), "thumbnail_size"),
])
def test_invalid_parameters(features, fitted, tmp_path, kwargs, match):
    X, y, _ = features
    with pytest.raises(ValueError, match=match):
        report(fitted, X, y, tmp_path, **kwargs)


def test_needs_labels(features, fitted, tmp_path):
    X, y, _ = features
    with pytest.raises(ValueError, match="true labels"):
        report(fitted, X, None, tmp_path)
    with pytest.raises(ValueError, match="same length"):
        report(fitted, X, y[:-1], tmp_path)
