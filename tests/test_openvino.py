"""The OpenVINO runtime (float32 and int8) against TensorFlow, on real photos and real models.

The registry test converts each backbone (15 s to 110 s each on 2 cores,
~20 min for the registry): two representative ones run by default, all of
them with ``SKBOTTLENECK_TEST_ALL_BACKBONES=1``; ``OPENVINO_CHECKED`` (what
``runtime="auto"`` trusts) lists those that passed the full run.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("openvino")

from skbottleneck import CNNFeatureTransformer, list_backbones  # noqa: E402
from skbottleneck.backbones import get_backbone  # noqa: E402
from skbottleneck.extraction import cnn_image_count  # noqa: E402
from skbottleneck.extraction._openvino import (  # noqa: E402
    OPENVINO_CHECKED,
    MODEL_CACHE_FOLDER,
)
from skbottleneck.extraction._runner import get_runner  # noqa: E402

from _features import assert_same_features  # noqa: E402

keras = pytest.importorskip("keras")

#: Run in every test session (the full registry takes ~20 min on 2 cores):
#: depthwise + ReLU6 (the backbone most tests use) and swish +
#: squeeze-excitation with in-model normalisation. ResNet50 is also checked,
#: against the unfolded TensorFlow model, by test_fold.py; ConvNeXt (whose
#: frozen GraphDef does not convert: the concrete function is) takes 90 s.
REPRESENTATIVE = {"mobilenet_v2", "efficientnet_b0"}
ALL = os.environ.get("SKBOTTLENECK_TEST_ALL_BACKBONES") == "1"


def _tiny_model(seed=0):
    """A small Keras model (conversion in well under a second) with a foldable BN."""
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = layers.Conv2D(8, 3, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    return keras.Model(inputs, x, name=f"tiny{seed}")


@pytest.fixture(scope="module")
def tiny():
    return _tiny_model()


@pytest.mark.parametrize("name", [
    n if n in REPRESENTATIVE else pytest.param(n, marks=[pytest.mark.slow, pytest.mark.skipif(
        not ALL, reason="set SKBOTTLENECK_TEST_ALL_BACKBONES=1 to convert every backbone")])
    for n in list_backbones()
])
def test_openvino_features_equal_tensorflow_on_every_registry_backbone(name, photo_paths):
    paths = photo_paths[0][:6]
    size = max(32, get_backbone(name).min_size)
    kw = dict(weights=None, random_state=0, input_size=size, cache_dir=None)
    expected = CNNFeatureTransformer(name, runtime="tensorflow", **kw).fit_transform(paths)
    cnn = CNNFeatureTransformer(name, runtime="openvino", **kw).fit()
    result = cnn.extract(paths)
    assert result.stats["runtime"] == "openvino" and cnn.runtime_ == "openvino"
    assert np.abs(expected).max() > 0
    rel = np.abs(result.features - expected).max() / np.abs(expected).max()
    print(f"{name}: max difference {rel:.1e} of the features' scale")  # pytest -s shows it
    assert_same_features(result.features, expected)
    # the runtime is not part of the fingerprint: float32 features share the cache
    assert cnn.fingerprint_ == CNNFeatureTransformer(name, runtime="tensorflow", **kw).fit(
    ).fingerprint_
    assert name in OPENVINO_CHECKED


def test_auto_picks_openvino_for_checked_backbones_only(tiny):
    kw = dict(weights=None, random_state=0, input_size=32, cache_dir=None)
    assert CNNFeatureTransformer("mobilenet_v2", **kw).fit().runtime_ == "openvino"
    assert CNNFeatureTransformer("mobilenet_v2", runtime="tensorflow", **kw).fit(
    ).runtime_ == "tensorflow"
    # a user's model was not checked: TensorFlow, unless asked for
    assert CNNFeatureTransformer(tiny, cache_dir=None).fit().runtime_ == "tensorflow"
    assert CNNFeatureTransformer(tiny, runtime="openvino", cache_dir=None).fit(
    ).runtime_ == "openvino"
    # mixed precision is TensorFlow's (for a GPU)
    assert CNNFeatureTransformer("mobilenet_v2", mixed_precision=True, **kw).fit(
    ).runtime_ == "tensorflow"
    with pytest.raises(ValueError, match="mixed_precision=True runs on TensorFlow"):
        CNNFeatureTransformer("mobilenet_v2", mixed_precision=True, runtime="openvino",
                              **kw).fit()
    with pytest.raises(ValueError, match="precision='int8' runs on OpenVINO"):
        CNNFeatureTransformer("mobilenet_v2", precision="int8", runtime="tensorflow",
                              **kw).fit(["x.jpg"])
    # every registry backbone was checked (a new one must pass the registry test first)
    assert set(list_backbones()) <= OPENVINO_CHECKED


def test_converted_model_is_cached_and_a_second_process_does_not_convert(photo_paths,
                                                                         tmp_path, monkeypatch):
    paths = [str(p) for p in photo_paths[0][:8]]
    # converted models live under the default cache root (not cache_dir), one per machine
    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(tmp_path / "cache"))
    kw = dict(weights=None, random_state=0, input_size=32, cache_dir=str(tmp_path / "features"))
    cnn = CNNFeatureTransformer("mobilenet_v2", runtime="openvino", **kw).fit()
    result = cnn.extract(paths)
    assert result.stats["conversion_s"] > 0
    folders = os.listdir(tmp_path / "cache" / MODEL_CACHE_FOLDER)
    assert len(folders) == 1 and not folders[0].startswith(".")
    info = json.loads((tmp_path / "cache" / MODEL_CACHE_FOLDER / folders[0] / "info.json")
                      .read_text())
    assert info["fingerprint"] == cnn.fingerprint_ and info["conversion_s"] > 0
    np.save(tmp_path / "expected.npy", result.features)
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from skbottleneck import CNNFeatureTransformer
        from skbottleneck.extraction._runner import get_runner
        cnn = CNNFeatureTransformer("mobilenet_v2", runtime="openvino", verbose=1,
                                    **{kw!r}).fit()
        runner = get_runner(cnn)
        # features of other images than the parent's: its feature cache cannot serve them
        X = cnn.transform(json.loads(sys.argv[1])[::-1])
        np.testing.assert_allclose(X[::-1], np.load(sys.argv[2]), rtol=1e-6, atol=1e-6)
        print(json.dumps({{"conversion_s": runner.conversion_s,
                          "keras_model_built": runner.model is not None}}))
    """)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(paths),
                          str(tmp_path / "expected.npy")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "read from" in out.stdout  # verbose=1 says where the model came from
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"conversion_s": 0.0, "keras_model_built": False}


def test_an_interrupted_or_damaged_conversion_is_redone(tiny, photo_paths, tmp_path,
                                                         monkeypatch):
    paths = photo_paths[0][:4]
    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cache" / MODEL_CACHE_FOLDER
    kw = dict(runtime="openvino", cache_dir=None)
    expected = CNNFeatureTransformer(tiny, runtime="tensorflow", cache_dir=None).fit_transform(
        paths)
    first = CNNFeatureTransformer(tiny, **kw).fit()
    (folder,) = os.listdir(root)
    # a conversion killed before its rename leaves a temporary folder only
    (root / f".tmp-999999-0000-{folder}").mkdir()
    # and a model folder whose bytes were damaged is not used
    (root / folder / "model.xml").write_text("<net>truncated")
    from skbottleneck.extraction._runner import forget_runner

    forget_runner(get_runner(first))
    again = CNNFeatureTransformer(tiny, **kw).fit()
    runner = get_runner(again)
    assert runner.conversion_s > 0  # converted again
    assert_same_features(again.transform(paths), expected)
    assert sorted(n for n in os.listdir(root) if not n.startswith(".tmp-")) == [folder]
    forget_runner(runner)
    assert get_runner(CNNFeatureTransformer(tiny, **kw).fit()).conversion_s == 0.0


def test_int8_is_calibrated_on_the_first_fit_and_is_its_own_feature_space(tiny, photo_paths,
                                                                           tmp_path):
    from skbottleneck.extraction._int8 import CALIBRATION_SIZE

    paths, y = photo_paths
    train, test = paths[:24], paths[24:]
    cache = str(tmp_path / "cache")
    f32 = CNNFeatureTransformer(tiny, cache_dir=cache).fit()
    X32 = f32.transform(train)
    q = CNNFeatureTransformer(tiny, precision="int8", cache_dir=cache).fit(train)
    assert q.runtime_ == "openvino" and q.precision_ == "int8"
    assert q.calibration_["n_images"] == min(CALIBRATION_SIZE, len(train))
    assert q.calibration_["paths"] == [str(p) for p in train[:q.calibration_["n_images"]]]
    assert q.fingerprint_["precision"] == "int8"
    assert q.fingerprint_["calibration"] == q.calibration_["id"]
    # the f32 features are in the same cache folder: int8 computes its own
    before = cnn_image_count()
    X8 = q.transform(train)
    assert cnn_image_count() - before == len(train)
    assert not np.allclose(X8, X32, rtol=1e-3, atol=1e-3 * np.abs(X32).max())
    corr = np.corrcoef(X8.ravel(), X32.ravel())[0, 1]
    assert corr > 0.95, corr
    # transform of test images does not re-calibrate
    fp = dict(q.fingerprint_)
    q.transform(test)
    assert q.fingerprint_ == fp
    # other calibration images: another feature space (another fingerprint)
    other = CNNFeatureTransformer(tiny, precision="int8", cache_dir=cache).fit(test)
    assert other.fingerprint_["calibration"] != q.fingerprint_["calibration"]
    with pytest.raises(ValueError, match="calibrates|fit\\(X\\)"):
        CNNFeatureTransformer(tiny, precision="int8", cache_dir=cache).fit()


def test_a_store_of_one_precision_is_refused_by_the_other(photo_paths, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skbottleneck.extraction import transformer_from_store

    paths, y = photo_paths
    kw = dict(weights=None, random_state=0, input_size=32, cache_dir=str(tmp_path / "cache"))
    q = CNNFeatureTransformer("vgg16", precision="int8", **kw)
    store8 = q.extract(paths, y, store=tmp_path / "int8.h5")  # fits on paths: calibrates
    f32 = CNNFeatureTransformer("vgg16", **kw).fit()
    store32 = f32.extract(paths, y, store=tmp_path / "f32.h5")
    with pytest.raises(ValueError, match="holds int8 features.*precision='float32'"):
        f32.transform(store8)
    with pytest.raises(ValueError, match="holds float32 features"):
        CNNFeatureTransformer("vgg16", precision="int8", **kw).fit(store32)
    with pytest.raises(ValueError, match="holds float32 features.*precision='int8'"):
        q.transform(store32)
    # the store rebuilds its int8 transformer, calibration included, without the CNN
    rebuilt = transformer_from_store(store8)
    assert rebuilt.precision == "int8"
    pipe = make_pipeline(rebuilt, LogisticRegression(max_iter=200)).fit(store8, store8.labels)
    assert pipe[0].precision_ == "int8"
    assert pipe[0].fingerprint_ == q.fingerprint_
    assert (pipe.predict(paths[:8]) == make_pipeline(q, pipe[-1]).predict(paths[:8])).all()
    assert_same_features(pipe[0].transform(paths[:8]), q.transform(paths[:8]))


def test_a_head_trained_on_one_precision_is_refused_with_the_other(photo_paths, tmp_path):
    """Heads record the precision of their training store; every place that
    joins a head to features of the other precision refuses it, by name."""
    from sklearn.pipeline import make_pipeline

    from skbottleneck import IncrementalClassifier, KerasMLPClassifier, report
    from skbottleneck import check_feature_space, load_model, save_model
    from skbottleneck.extraction import transformer_from_store

    paths, y = photo_paths
    kw = dict(weights=None, random_state=0, input_size=32, cache_dir=str(tmp_path / "cache"))
    q = CNNFeatureTransformer("vgg16", precision="int8", **kw)
    store8 = q.extract(paths, y, store=tmp_path / "int8.h5")
    f32 = CNNFeatureTransformer("vgg16", **kw).fit()
    store32 = f32.extract(paths, y, store=tmp_path / "f32.h5")

    heads = [IncrementalClassifier(epochs=2, random_state=0).fit(store8),
             KerasMLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(store8)]
    for head in heads:
        assert head.feature_space_["id"] == q.feature_space_.id
        assert head.feature_space_["description"].endswith(", int8")
        name = type(head).__name__
        for call in (head.predict, head.score, head.partial_fit):
            with pytest.raises(ValueError, match=rf"This {name} was trained on features of "
                                                 r"vgg16.*int8 .*f32\.h5 gives features of "
                                                 r"vgg16.*float32"):
                call(store32)
        assert head.predict(store8).shape == (len(paths),)  # its own precision is fine
        with pytest.raises(ValueError, match="trained on features of.*int8.*float32"):
            report(head, store32, out_dir=tmp_path / "report")
        wrong = make_pipeline(f32, head)
        with pytest.raises(ValueError, match=f"The head '{name.lower()}' \\({name}\\) was "
                                             "trained on.*int8.*'cnnfeaturetransformer'"):
            check_feature_space(wrong)
        with pytest.raises(ValueError, match="int8 and float32 features of one CNN"):
            save_model(wrong, tmp_path / "wrong.skops")
        assert not (tmp_path / "wrong.skops").exists()
        right = make_pipeline(transformer_from_store(store8).fit(store8), head)
        assert check_feature_space(right) is right
        save_model(right, tmp_path / "right.joblib")
        with pytest.warns(UserWarning, match="runs whatever code it holds"):
            loaded = load_model(tmp_path / "right.joblib")
        assert (loaded.predict(paths[:4])
                == right.predict(paths[:4])).all()
    # a head trained on arrays does not know, and is not refused anywhere
    plain = IncrementalClassifier(epochs=1, random_state=0).fit(store32.read_rows(
        np.arange(len(store32)))[0], y)
    assert plain.feature_space_ is None
    assert plain.predict(store8).shape == (len(paths),)
    check_feature_space(make_pipeline(q, plain))
