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
from skbottleneck.extraction import ConvertedModelWarning  # noqa: E402
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


def _cnn_backbones():
    """The registry's CNNs. keras-hub presets download their weights by name: their
    OpenVINO features are checked on small local presets (tests/test_keras_hub.py),
    and ``runtime="auto"`` runs them on TensorFlow."""
    from skbottleneck.backbones._keras_hub import HubPreset

    return [n for n in list_backbones() if not isinstance(get_backbone(n).builder, HubPreset)]


#: The built-in CNNs, read at collection, before any test registers a backbone of its own.
CNN_BACKBONES = _cnn_backbones()


@pytest.mark.parametrize("name", [
    n if n in REPRESENTATIVE else pytest.param(n, marks=[pytest.mark.slow, pytest.mark.skipif(
        not ALL, reason="set SKBOTTLENECK_TEST_ALL_BACKBONES=1 to convert every backbone")])
    for n in CNN_BACKBONES
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
    # every registry CNN was checked (a new one must pass the registry test first)
    assert set(CNN_BACKBONES) <= OPENVINO_CHECKED


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
    with pytest.warns(ConvertedModelWarning, match="model.xml has"):
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
    store8 = q.extract(paths, y, store=tmp_path / "int8.h5").features  # fits on paths: calibrates
    f32 = CNNFeatureTransformer("vgg16", **kw).fit()
    store32 = f32.extract(paths, y, store=tmp_path / "f32.h5").features
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
    store8 = q.extract(paths, y, store=tmp_path / "int8.h5").features
    f32 = CNNFeatureTransformer("vgg16", **kw).fit()
    store32 = f32.extract(paths, y, store=tmp_path / "f32.h5").features

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


def test_int8_warns_when_tiny_features_quantise_to_zero_rows(photo_paths, tmp_path):
    """#24: random-weight MobileNetV2 at 32 px has features too small for int8's
    steps: every row came out zero, without a word."""
    pytest.importorskip("nncf")
    paths = photo_paths[0][:8]
    q = CNNFeatureTransformer("mobilenet_v2", weights=None, random_state=0, input_size=32,
                              precision="int8", cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match=r"int8 quantisation gives all-zero features for \d+ "
                                         r"of 8 calibration images"):
        X = q.fit(paths).transform(paths)  # quantised once, at fit
    assert not X.any(axis=1).all()  # the warning is true: some rows are zero


# ------------------------------------------- trust: converted models (#24)
def _flip_exponent_bit(folder):
    """One bit of a float32 weight's exponent in model.bin (x 2**32 or / 2**32)."""
    data = bytearray((folder / "model.bin").read_bytes())
    values = np.frombuffer(bytes(data), dtype="<f4")
    i = int(np.flatnonzero((np.abs(values) > 1e-2) & (np.abs(values) < 10))[0])
    data[4 * i + 3] ^= 0x10  # bit 28: the 5th bit of the exponent
    (folder / "model.bin").write_bytes(bytes(data))


def _move_a_constant(folder):
    """A constant's offset in model.xml moved by 4 bytes (still inside model.bin)."""
    import re

    xml = (folder / "model.xml").read_text()
    m = next(m for m in re.finditer(r'offset="(\d+)" size="(\d+)"', xml) if int(m[2]) > 16)
    moved = f'offset="{int(m[1]) + 4}" size="{int(m[2]) - 4}"'
    (folder / "model.xml").write_text(xml[:m.start()] + moved + xml[m.end():])


def _edit_info(folder):
    """info.json edited by hand: another feature shape (a raw traceback before)."""
    info = json.loads((folder / "info.json").read_text())
    info["feature_shape"] = [d + 1 for d in info["feature_shape"]]
    (folder / "info.json").write_text(json.dumps(info))


@pytest.fixture
def fresh_runners():
    """No runner memoised by an earlier test (each test converts into its own cache root)."""
    from skbottleneck.extraction import _runner

    _runner._MODEL_MEMO.clear()
    yield
    _runner._MODEL_MEMO.clear()


@pytest.fixture(scope="module")
def tiny_expected(tiny, photo_paths):
    return CNNFeatureTransformer(tiny, runtime="tensorflow", cache_dir=None).fit_transform(
        photo_paths[0][:4])


@pytest.mark.parametrize("damage, reason", [
    (_flip_exponent_bit, "model.bin does not match the SHA-256"),
    (_move_a_constant, "model.xml does not match the SHA-256"),
    (_edit_info, "info.json does not match its own SHA-256"),
])
def test_a_damaged_converted_model_is_rebuilt_with_a_warning_naming_its_folder(
        damage, reason, tiny, tiny_expected, photo_paths, tmp_path, monkeypatch, fresh_runners):
    from skbottleneck.extraction._runner import forget_runner

    paths = photo_paths[0][:4]
    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cache" / MODEL_CACHE_FOLDER
    kw = dict(runtime="openvino", cache_dir=None)
    forget_runner(get_runner(CNNFeatureTransformer(tiny, **kw).fit()))
    (folder,) = os.listdir(root)
    damage(root / folder)
    with pytest.warns(ConvertedModelWarning, match=reason) as record:
        est = CNNFeatureTransformer(tiny, **kw).fit()
        runner = get_runner(est)
    assert str(root / folder) in str(record[0].message)
    assert runner.conversion_s > 0 and runner.saved  # converted again, and replaced
    assert_same_features(est.transform(paths), tiny_expected)
    forget_runner(runner)
    if damage is not _edit_info:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvertedModelWarning)
        again = get_runner(CNNFeatureTransformer(tiny, **kw).fit())
    assert again.conversion_s == 0.0  # the rebuilt folder passes its checks
    forget_runner(again)


def test_a_converted_model_of_other_weights_than_the_network_is_rebuilt(tiny, tmp_path,
                                                                         monkeypatch,
                                                                         fresh_runners):
    """A folder whose weights digest is not that of the network built here is not used."""
    from skbottleneck.extraction._openvino import OpenVINORunner
    from skbottleneck.extraction._runner import tensorflow_runner, weights_digest

    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(tmp_path / "cache"))
    est = CNNFeatureTransformer(tiny, runtime="tensorflow", cache_dir=None).fit()

    def build():
        runner = tensorflow_runner(est)
        return runner, weights_digest(runner)

    first = OpenVINORunner(est, build)
    assert first.conversion_s > 0
    digest = first.weights_sha256
    assert OpenVINORunner(est, build, known_weights_sha256=digest).conversion_s == 0.0
    with pytest.warns(ConvertedModelWarning, match="other weights than the network"):
        other = OpenVINORunner(est, build, known_weights_sha256="0" * 64)
    assert other.conversion_s > 0


def _read_only_mount(path):
    """A read-only tmpfs at ``path`` (root stays out of a read-only mount), or None."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                          capture_output=True)
    return path if done.returncode == 0 else None


@pytest.mark.parametrize("where", ["root_is_a_file", "openvino_is_a_file", "read_only"])
def test_an_unwritable_model_cache_never_stops_a_run(where, tiny, tiny_expected, photo_paths,
                                                     tmp_path, monkeypatch, fresh_runners):
    from skbottleneck.extraction._runner import forget_runner

    root = tmp_path / "cache"
    if where == "root_is_a_file":
        root.write_text("a file where the cache root should be")
    elif where == "openvino_is_a_file":
        root.mkdir()
        (root / MODEL_CACHE_FOLDER).write_text("a file")
    elif _read_only_mount(root) is None:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(root))
        with pytest.warns(ConvertedModelWarning, match="cannot be kept in") as record:
            est = CNNFeatureTransformer(tiny, runtime="openvino", cache_dir=None).fit()
            runner = get_runner(est)
            X = est.transform(photo_paths[0][:4])
        assert len([w for w in record if w.category is ConvertedModelWarning]) == 1  # once
        assert not runner.saved
        assert_same_features(X, tiny_expected)
        if root.is_dir():  # nothing left behind
            assert [p.name for p in root.rglob("*")] in ([], [MODEL_CACHE_FOLDER])
        forget_runner(runner)
    finally:
        if where == "read_only":
            subprocess.run(["umount", str(root)], check=False)


DISK_FULL = """
import json, resource, signal, sys, warnings
import keras
import numpy as np
from skbottleneck import CNNFeatureTransformer
from skbottleneck.extraction._runner import get_runner
paths = json.loads(sys.argv[1])
keras.utils.set_random_seed(0)
x = inputs = keras.Input((32, 32, 3))
x = keras.layers.Conv2D(64, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(x))
x = keras.layers.Conv2D(128, 3, strides=2, activation="relu")(x)  # model.bin: 300 KB
model = keras.Model(inputs, x)
expected = CNNFeatureTransformer(model, runtime="tensorflow", cache_dir=None).fit_transform(paths)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))  # a disk full after 64 KiB
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    est = CNNFeatureTransformer(model, runtime="openvino", cache_dir=None).fit()
    X = est.transform(paths)
print(json.dumps({"saved": get_runner(est).saved,
                  "warnings": [str(w.message) for w in caught
                               if type(w.message).__name__ == "ConvertedModelWarning"],
                  "max_diff": float(np.abs(X - expected).max()),
                  "scale": float(np.abs(expected).max())}))
"""


def test_a_full_disk_while_saving_a_converted_model_is_said_and_cleaned(photo_paths, tmp_path):
    """ov.save_model fails with RuntimeError (not OSError) past RLIMIT_FSIZE: the run goes on."""
    env = dict(os.environ, SKBOTTLENECK_CACHE_DIR=str(tmp_path / "cache"))
    paths = [str(p) for p in photo_paths[0][:4]]
    out = subprocess.run([sys.executable, "-c", DISK_FULL, json.dumps(paths)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["saved"] is False
    (message,) = report["warnings"]
    assert str(tmp_path / "cache" / MODEL_CACHE_FOLDER) in message and "from memory" in message
    assert report["max_diff"] <= 1e-4 * report["scale"]
    assert os.listdir(tmp_path / "cache" / MODEL_CACHE_FOLDER) == []  # no .tmp- folder left


def test_cache_clear_and_info_cover_converted_models(tiny, tmp_path, monkeypatch, capsys,
                                                     fresh_runners):
    from skbottleneck.cache import clear_cache, converted_models_info
    from skbottleneck.cli import main
    from skbottleneck.extraction._runner import forget_runner

    root = tmp_path / "cache"
    monkeypatch.setenv("SKBOTTLENECK_CACHE_DIR", str(root))
    est = CNNFeatureTransformer(tiny, runtime="openvino", cache_dir=None).fit()
    forget_runner(get_runner(est))
    (model_id,) = os.listdir(root / MODEL_CACHE_FOLDER)
    info = converted_models_info()
    assert list(info) == [model_id] and info[model_id]["bytes"] > 0
    assert info[model_id]["fingerprint"] == est.fingerprint_
    assert main(["cache", "info"]) == 0
    assert "1 converted OpenVINO models" in capsys.readouterr().out
    assert clear_cache(backbone="resnet50") == {}  # another model's: kept
    assert main(["cache", "clear"]) == 0
    assert "and 1 converted OpenVINO models" in capsys.readouterr().out
    assert os.listdir(root / MODEL_CACHE_FOLDER) == [] and converted_models_info() == {}
    # the Python function too, by fingerprint
    forget_runner(get_runner(CNNFeatureTransformer(tiny, runtime="openvino",
                                                   cache_dir=None).fit()))
    removed = clear_cache(fingerprint=est.fingerprint_)
    assert list(removed) == [f"{MODEL_CACHE_FOLDER}/{model_id}"]
