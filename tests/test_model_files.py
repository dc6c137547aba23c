"""skbottleneck._model_files: real Pipelines [CNN features, head] saved as skops and joblib.

Every head ``skbottleneck train`` builds is fitted on real VGG16 (random,
seeded, 32 px) features of real photos, saved, loaded back and asked to
predict the image files again.
"""

import os
import zipfile

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.linear_model import SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from skbottleneck import CNNFeatureTransformer, IncrementalClassifier, KerasMLPClassifier
from skbottleneck._model_files import (
    TRUSTED_TYPES,
    UntrustedModelError,
    check_model_file,
    load_model,
    model_file_format,
    save_model,
)

SMALL = dict(backbone="vgg16", weights=None, random_state=0, input_size=32)


@pytest.fixture(scope="module")
def features(photo_paths):
    paths, labels = photo_paths
    cnn = CNNFeatureTransformer(**SMALL).fit()
    return cnn, cnn.transform(paths), np.asarray(labels), list(paths)


HEADS = {
    "logreg": lambda: IncrementalClassifier(SGDClassifier(loss="log_loss", random_state=0),
                                            epochs=3, random_state=0),
    # MLPClassifier keeps its Adam solver after partial_fit: a type skops does not trust by default
    "mlp": lambda: IncrementalClassifier(MLPClassifier(hidden_layer_sizes=(16,), random_state=0),
                                         epochs=3, random_state=0),
    "mlp-sgd-solver": lambda: IncrementalClassifier(
        MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", random_state=0), epochs=2,
        random_state=0),
    # its __getstate__ keeps the weights and the optimiser state, no Keras object
    "keras-mlp": lambda: KerasMLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0,
                                            verbose=0),
}


@pytest.mark.parametrize("name", list(HEADS))
def test_a_pipeline_round_trips_through_skops(name, features, tmp_path):
    cnn, X, y, paths = features
    head = HEADS[name]().fit(X, y, classes=np.unique(y))
    model = Pipeline([("features", cnn), ("head", head)])
    out = tmp_path / "model.skops"
    assert save_model(model, out) == "skops"
    assert zipfile.is_zipfile(out) and not os.path.exists(f"{out}.tmp{os.getpid()}")
    assert set(skops.io.get_untrusted_types(file=str(out))) <= set(TRUSTED_TYPES)
    assert check_model_file(out) == "skops"

    loaded = load_model(out)
    assert [n for n, _ in loaded.steps] == ["features", "head"]
    assert loaded.named_steps["features"].get_params() == cnn.get_params()
    np.testing.assert_array_equal(loaded.predict(paths), model.predict(paths))
    np.testing.assert_allclose(loaded.predict_proba(paths), model.predict_proba(paths),
                               rtol=0, atol=1e-6)


def test_a_keras_head_keeps_training_where_it_stopped(features, tmp_path):
    """The optimiser state travels too: one more partial_fit gives the same network."""
    _, X, y, _ = features
    head = HEADS["keras-mlp"]().fit(X, y, classes=np.unique(y))
    save_model(head, tmp_path / "head.skops")
    loaded = load_model(tmp_path / "head.skops")
    a = head.partial_fit(X, y).predict_proba(X)
    b = loaded.partial_fit(X, y).predict_proba(X)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_joblib_is_kept_for_other_names(features, tmp_path):
    cnn, X, y, paths = features
    head = HEADS["logreg"]().fit(X, y, classes=np.unique(y))
    model = Pipeline([("features", cnn), ("head", head)])
    out = tmp_path / "model.joblib"
    assert save_model(model, out) == "joblib"
    assert model_file_format(out) == "joblib" and not zipfile.is_zipfile(out)
    np.testing.assert_array_equal(joblib.load(out).predict(paths), model.predict(paths))
    with pytest.warns(UserWarning, match="is a pickle .joblib.: loading it runs whatever code"):
        loaded = load_model(out)  # and says so
    np.testing.assert_array_equal(loaded.predict(paths), model.predict(paths))
    # the content decides, not the name: a skops file named .joblib is read as skops
    save_model(model, tmp_path / "model.skops")
    os.replace(tmp_path / "model.skops", tmp_path / "renamed.joblib")
    assert model_file_format(tmp_path / "renamed.joblib") == "skops"


class Gadget:
    """A type no one trusts."""

    def __init__(self):
        self.value = 1


def test_an_untrusted_type_is_refused_and_named(tmp_path):
    out = tmp_path / "gadget.skops"
    skops.io.dump({"model": Gadget(), "run": os.system}, str(out))
    with pytest.raises(UntrustedModelError) as info:
        load_model(out)
    message = str(info.value)
    assert str(out) in message
    assert f"{__name__}.Gadget" in message and "system" in message  # posix.system / nt.system
    assert info.value.path == str(out) and f"{__name__}.Gadget" in info.value.types


def test_a_pickle_named_skops_is_not_unpickled(tmp_path):
    out = tmp_path / "model.skops"
    joblib.dump(Gadget(), out)
    with pytest.raises(ValueError, match="is named .skops but is not a skops file"):
        load_model(out)
    (tmp_path / "broken.skops").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a skops file"):
        load_model(tmp_path / "broken.skops")
