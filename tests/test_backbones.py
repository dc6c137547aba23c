"""Tests of the backbone registry, the offline EfficientNet-Lite0 and its loader.

Real Keras models throughout: small inputs (32-75 px) and seeded random
weights, except for the EfficientNet-Lite0 ImageNet classifier, whose
predictions on two real photos are the proof that the weight conversion is
right. EfficientNet-Lite1 and Lite2 have their own module,
``test_lite_backbones.py``.
"""

import collections
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import types
import urllib.error
import zipfile

import numpy as np
import pytest

from skbottleneck.backbones import (
    KERAS_HUB_PRESETS,
    PREPROCESSING_MODES,
    EfficientNetLite0,
    UnsafeCheckpointError,
    WeightsUnavailableError,
    get_backbone,
    imagenet_class_names,
    list_backbones,
    load_torch_state_dict,
    parse_weights_identity,
    weights_identity,
)
from skbottleneck.extraction._fold import fold_batch_norm
from skbottleneck.backbones._efficientnet_lite import lite_weights_path

REQUIRED_BACKBONES = [
    "vgg16", "vgg19", "resnet50", "resnet101", "mobilenet_v2",
    "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
    "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s",
    "inception_v3", "xception", "densenet121", "convnext_tiny",
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
]

# Backbones that take more than ~2.5 s to build on 2 CPU cores (~150 s in all):
# built only with SKBOTTLENECK_TEST_ALL_BACKBONES=1. The other members of their
# families are built in each session (efficientnet_b0/b1, densenet121,
# resnet50/101, ...); efficientnet_v2_s and inception_resnet_v2 have none.
ALL_BACKBONES = os.environ.get("SKBOTTLENECK_TEST_ALL_BACKBONES") == "1"
SLOW_TO_BUILD = {
    "densenet169", "densenet201", "efficientnet_b2",
    "efficientnet_b3", "efficientnet_b4", "efficientnet_b5", "efficientnet_b6",
    "efficientnet_b7", "efficientnet_v2_s", "inception_resnet_v2", "resnet152",
}

# keras.applications module whose preprocess_input each backbone must match.
KERAS_PREPROCESS_MODULE = {
    "vgg16": "vgg16", "vgg19": "vgg19", "resnet50": "resnet",
    "resnet101": "resnet", "resnet152": "resnet", "resnet50_v2": "resnet_v2",
    "inception_v3": "inception_v3", "inception_resnet_v2": "inception_resnet_v2",
    "xception": "xception", "mobilenet_v2": "mobilenet_v2",
    "mobilenet_v3_small": "mobilenet_v3", "mobilenet_v3_large": "mobilenet_v3",
    "densenet121": "densenet", "densenet169": "densenet", "densenet201": "densenet",
    "efficientnet_v2_b0": "efficientnet_v2", "efficientnet_v2_s": "efficientnet_v2",
    "convnext_tiny": "convnext",
    **{f"efficientnet_b{i}": "efficientnet" for i in range(8)},
}


@pytest.fixture(scope="module")
def keras():
    from skbottleneck._keras import import_keras

    return import_keras()


@pytest.fixture(scope="module")
def tf():
    from skbottleneck._keras import import_tf

    return import_tf()


def _rgb_batch(shape=(2, 5, 4, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


# --------------------------------------------------------------------------
# EfficientNet-Lite0 ImageNet weights: the correctness proof


def _photo_224(name):
    import skimage.data
    from PIL import Image

    image = getattr(skimage.data, name)()
    return np.asarray(
        Image.fromarray(image).resize((224, 224), Image.BILINEAR), dtype=np.float32
    )


@pytest.fixture(scope="module")
def lite0_classifier():
    return EfficientNetLite0(include_top=True, weights="imagenet")


def test_lite0_imagenet_classifier_recognises_real_photos(lite0_classifier):
    pytest.importorskip("skimage")
    x = np.stack([_photo_224("chelsea"), _photo_224("coffee")])
    probs = np.asarray(lite0_classifier(x, training=False))
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    names = imagenet_class_names()
    top5 = [[names[i] for i in np.argsort(-p)[:5]] for p in probs]
    cat, coffee = np.argmax(probs, axis=1)
    # 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
    assert 281 <= cat <= 285, top5[0]
    # 967 espresso, 968 cup, 504 coffee mug.
    assert coffee in (967, 968, 504), top5[1]
    # Confident, as a correctly converted network is (0.79 and 0.90 here).
    assert probs[0, 281:286].sum() > 0.5, top5[0]
    assert probs[1, [967, 968, 504]].sum() > 0.5, top5[1]


def test_lite0_backbone_matches_classifier_features(lite0_classifier, keras):
    backbone = get_backbone("efficientnet_lite0")
    assert backbone.offline_weights and backbone.preprocessing == "none"
    model = backbone.build(weights="imagenet", input_size=224)
    assert model.output_shape == (None, 7, 7, 1280)
    features = keras.Model(lite0_classifier.input,
                           lite0_classifier.get_layer("top_activation").output)
    x = _rgb_batch((1, 224, 224, 3))
    np.testing.assert_allclose(
        np.asarray(model(backbone.preprocess(x), training=False)),
        np.asarray(features(x, training=False)), rtol=1e-5, atol=1e-5,
    )


def test_lite0_state_dict_has_efficientnet_b0_layout_without_se():
    state = load_torch_state_dict(lite_weights_path("efficientnet_lite0"))
    assert isinstance(state, collections.OrderedDict)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert not any("_se_" in k for k in state)  # Lite: no squeeze-excite
    n_blocks = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    assert n_blocks == 16


def test_lite0_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'weights' argument"):
        EfficientNetLite0(weights="noisy-student")
    with pytest.raises(ValueError, match="'classes' must be 1000"):
        EfficientNetLite0(classes=10)
    with pytest.raises(ValueError, match="at least 32"):
        EfficientNetLite0(include_top=False, weights=None, input_shape=(16, 16, 3))


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[0] == "tench" and names[967] == "espresso"
    assert names[504] == "coffee mug"
    names.append("mutating the copy")
    assert len(imagenet_class_names()) == 1000


# --------------------------------------------------------------------------
# Restricted torch unpickler


class _Shell:
    """An object that unpickles into a call to os.system."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload_in", ["magic", "state_dict"])
def test_unpickler_refuses_os_system(tmp_path, payload_in):
    marker = tmp_path / "pwned"
    payload = _Shell(f"touch {marker}")
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        if payload_in == "magic":
            pickle.dump(payload, f, protocol=2)
        else:
            for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
                pickle.dump(header, f, protocol=2)
            pickle.dump(collections.OrderedDict(w=payload), f, protocol=2)
            pickle.dump([], f, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match=r"Refusing to load the global "
                                                    r"'(posix|os|nt)\.system'"):
        load_torch_state_dict(path)
    assert not marker.exists()
    assert issubclass(UnsafeCheckpointError, pickle.UnpicklingError)


def test_unpickler_refuses_builtins_eval(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Eval(), protocol=2))
    # Protocol 2 writes Python 2's module name, __builtin__.
    with pytest.raises(UnsafeCheckpointError, match=r"'(__builtin__|builtins)\.eval'"):
        load_torch_state_dict(path)


def test_unpickler_rejects_non_checkpoints(tmp_path):
    path = tmp_path / "numbers.pth"
    path.write_bytes(pickle.dumps(42, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="magic number"):
        load_torch_state_dict(path)


@pytest.fixture
def fake_torch(monkeypatch):
    """Importable stand-ins for the torch globals a checkpoint pickle names.

    They let the test write checkpoints in both torch.save layouts without
    torch; the reader under test never imports them.
    """
    torch = types.ModuleType("torch")
    torch_utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - never called
        raise AssertionError("the reader must not call torch")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = torch_utils
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", torch_utils)
    return torch


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, np.ascontiguousarray(array).ravel()


class _Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, shape, stride)

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return (rebuild, self.args + (False, collections.OrderedDict()))


def _write_checkpoint(path, state, storages, zip_format, torch):
    def persistent_id(obj):
        if isinstance(obj, _Storage):
            kind = torch.FloatStorage if obj.array.dtype == np.float32 else (
                torch.LongStorage)
            return ("storage", kind, obj.key, "cpu", obj.array.size)
        return None

    body = io.BytesIO()
    pickler = pickle.Pickler(body, protocol=2)
    pickler.persistent_id = persistent_id
    pickler.dump(state)
    if zip_format:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            archive.writestr("archive/version", "3\n")
            for storage in storages:
                archive.writestr(f"archive/data/{storage.key}",
                                 storage.array.tobytes())
        return
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(body.getvalue())
        pickle.dump([s.key for s in storages], f, protocol=2)
        for storage in storages:
            f.write(struct.pack("<q", storage.array.size))
            f.write(storage.array.tobytes())


@pytest.mark.parametrize("zip_format", [False, True], ids=["legacy", "zip"])
def test_unpickler_reads_strided_tensors(tmp_path, fake_torch, zip_format):
    data = np.arange(12, dtype=np.float32)
    weights = _Storage("0", data)
    counter = _Storage("1", np.array([7], dtype=np.int64))
    state = collections.OrderedDict([
        ("conv.weight", _Tensor(weights, 0, (2, 3), (3, 1))),
        ("conv.weight_t", _Tensor(weights, 0, (3, 2), (1, 3))),  # a transpose
        ("tail", _Tensor(weights, 6, (2, 3), (3, 1))),  # an offset view
        ("bn.num_batches_tracked", _Tensor(counter, 0, (), ())),
    ])
    path = tmp_path / "model.pth"
    _write_checkpoint(path, state, [weights, counter], zip_format, fake_torch)

    loaded = load_torch_state_dict(path)
    assert list(loaded) == list(state)
    np.testing.assert_array_equal(loaded["conv.weight"], data[:6].reshape(2, 3))
    np.testing.assert_array_equal(loaded["conv.weight_t"], data[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(loaded["tail"], data[6:].reshape(2, 3))
    assert loaded["bn.num_batches_tracked"] == 7
    assert loaded["bn.num_batches_tracked"].dtype == np.int64


def test_unpickler_rejects_out_of_bounds_tensors(tmp_path, fake_torch):
    storage = _Storage("0", np.arange(12, dtype=np.float32))
    state = collections.OrderedDict(w=_Tensor(storage, 0, (5, 3), (3, 1)))
    path = tmp_path / "model.pth"
    _write_checkpoint(path, state, [storage], False, fake_torch)
    with pytest.raises(pickle.UnpicklingError, match="needs 15 elements"):
        load_torch_state_dict(path)


# --------------------------------------------------------------------------
# Preprocessing: identical to keras.applications' own preprocess_input


@pytest.mark.parametrize("name", sorted(KERAS_PREPROCESS_MODULE))
def test_preprocess_matches_keras_applications(name, keras):
    import importlib

    module = importlib.import_module(
        f"keras.applications.{KERAS_PREPROCESS_MODULE[name]}")
    x = _rgb_batch()
    original = x.copy()
    expected = np.asarray(module.preprocess_input(x.copy()))
    got = get_backbone(name).preprocess(x)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(x, original)  # input left untouched


@pytest.mark.parametrize("mode,name", [
    ("caffe", "vgg16"), ("torch", "densenet121"), ("tf", "inception_v3"),
    ("none", "efficientnet_b0"),
])
def test_preprocess_families_in_tf_function(mode, name, keras, tf):
    import importlib

    backbone = get_backbone(name)
    assert backbone.preprocessing == mode
    module = importlib.import_module(
        f"keras.applications.{KERAS_PREPROCESS_MODULE[name]}")
    x = _rgb_batch()
    expected = np.asarray(module.preprocess_input(x.copy()))

    graph_fn = tf.function(backbone.preprocess,
                           input_signature=[tf.TensorSpec([None, None, None, 3],
                                                          tf.uint8)])
    x_uint8 = x.astype(np.uint8)
    np.testing.assert_allclose(
        graph_fn(tf.constant(x_uint8)).numpy(),
        np.asarray(module.preprocess_input(x_uint8.astype(np.float32))),
        rtol=1e-6, atol=1e-5,
    )
    eager = backbone.preprocess(tf.constant(x))
    assert tf.is_tensor(eager)
    np.testing.assert_allclose(eager.numpy(), expected, rtol=1e-6, atol=1e-5)


def test_preprocess_known_values():
    pixel = np.array([[[[255.0, 0.0, 127.5]]]], dtype=np.float32)
    caffe = get_backbone("resnet50").preprocess(pixel)[0, 0, 0]
    np.testing.assert_allclose(caffe, [127.5 - 103.939, 0 - 116.779, 255 - 123.68],
                               rtol=1e-6)
    torch = get_backbone("densenet121").preprocess(pixel)[0, 0, 0]
    np.testing.assert_allclose(
        torch, [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.5 - 0.406) / 0.225],
        rtol=1e-5)
    np.testing.assert_allclose(get_backbone("xception").preprocess(pixel)[0, 0, 0],
                               [1.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(
        get_backbone("efficientnet_lite0").preprocess(pixel), pixel)
    with pytest.raises(ValueError, match="3 channels"):
        get_backbone("vgg16").preprocess(np.zeros((1, 4, 4, 1)))


# --------------------------------------------------------------------------
# Registry


def test_list_backbones_has_the_documented_names():
    names = list_backbones()
    assert set(REQUIRED_BACKBONES) <= set(names)
    assert names == sorted(names)
    assert list_backbones("vgg*") == ["vgg16", "vgg19"]
    for name in names:
        backbone = get_backbone(name)
        assert backbone.name == name
        assert backbone.preprocessing in PREPROCESSING_MODES
        assert backbone.min_size <= backbone.default_size
    assert [n for n in names if get_backbone(n).offline_weights] == [
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert {"dinov2_small", "siglip2_base_patch16_224", "clip_vit_base_patch16"} <= set(names)


def test_register_backbone_is_the_path_of_built_ins_and_users(keras):
    """A user's builder goes through register_backbone like the built-ins; a
    name is not taken twice; a keras.Model is an entry of the same kind."""
    from skbottleneck import CNNFeatureTransformer, register_backbone
    from skbottleneck.backbones import Backbone, resolve_backbone

    assert get_backbone("resnet50").builder == "ResNet50"

    def tiny(weights, input_size, random_state):
        inputs = keras.Input((*input_size, 3))
        x = keras.layers.Conv2D(6, 3, strides=2)(inputs)
        return keras.Model(inputs, keras.layers.Conv2D(5, 3)(x), name="tiny")

    entry = register_backbone("_test_tiny", tiny, default_size=32, preprocessing="tf",
                              feature_dim=5, overwrite=True)
    assert get_backbone("_test_tiny") is entry and "_test_tiny" in list_backbones("_test*")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("_test_tiny", tiny, default_size=32)
    # what int8 quantises it as: a CNN unless said otherwise (keras-hub presets)
    assert entry.architecture == "cnn"
    assert get_backbone("dinov2_small").architecture == "transformer"
    with pytest.raises(ValueError, match="'architecture' of backbone '_test_rnn'.*Got 'rnn'"):
        register_backbone("_test_rnn", tiny, default_size=32, architecture="rnn")
    assert "_test_rnn" not in list_backbones()
    a = entry.build(weights=None, random_state=3)
    b = entry.build(weights=None, random_state=3)
    assert [np.array_equal(np.asarray(u), np.asarray(v))
            for u, v in zip(a.weights, b.weights)] == [True] * len(a.weights)
    assert entry.weights_identity(None, 3).startswith("random:3:")

    cnn = CNNFeatureTransformer("_test_tiny", weights=None, random_state=3, cache_dir=None)
    cnn.fit()
    assert cnn.n_features_out_ == 5 and cnn.pooling_ == "avg"
    assert cnn.fingerprint_["preprocessing"] == "tf"

    model = tiny(None, (32, 32), None)
    user = resolve_backbone(model)
    assert isinstance(user, Backbone) and user.name == "tiny" and user.default_size == 32
    assert user.build(weights="ignored") is model
    assert user.weights_identity().startswith("model:")
    with pytest.raises(ValueError, match="'pooling'.*'cls'"):
        CNNFeatureTransformer("_test_tiny", pooling="cls", weights=None, cache_dir=None).fit()


def test_default_sizes():
    sizes = {n: get_backbone(n).default_size for n in list_backbones()}
    assert sizes["inception_v3"] == sizes["xception"] == 299
    assert [sizes[f"efficientnet_b{i}"] for i in range(8)] == [
        224, 240, 260, 300, 380, 456, 528, 600]
    assert sizes["efficientnet_v2_s"] == 384
    assert [sizes[f"efficientnet_lite{i}"] for i in range(3)] == [224, 240, 260]
    assert sizes["convnext_tiny"] == sizes["resnet50"] == 224


def test_backbone_is_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        get_backbone("vgg16").default_size = 32


def test_unknown_backbone_lists_available_names():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet-50'") as info:
        get_backbone("resnet-50")
    message = str(info.value)
    assert "Did you mean 'resnet50'?" in message
    for name in REQUIRED_BACKBONES:
        assert name in message
    with pytest.raises(ValueError, match="Unknown backbone"):
        get_backbone(None)


@pytest.mark.parametrize("name,size,message", [
    ("xception", 70, "at least 71"),
    ("inception_v3", 74, "at least 75"),
    ("vgg16", 31, "at least 32"),
    ("vgg16", (64, 16), "at least 32"),
    ("vgg16", 32.0, "must be an int"),
    ("vgg16", True, "must be an int"),
])
def test_build_rejects_small_or_bad_input_size(name, size, message):
    with pytest.raises(ValueError, match=message):
        get_backbone(name).build(weights=None, input_size=size)


def test_build_rejects_bad_weights_and_random_state(tmp_path):
    backbone = get_backbone("vgg16")
    with pytest.raises(ValueError, match="'imagenet', None, or a path"):
        backbone.build(weights="imagenet21k", input_size=32)
    with pytest.raises(ValueError, match="'imagenet', None, or a path"):
        backbone.build(weights=tmp_path / "weights.npz", input_size=32)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        backbone.build(weights=tmp_path / "missing.weights.h5", input_size=32)
    with pytest.raises(ValueError, match="'random_state' parameter"):
        backbone.build(weights=None, input_size=32, random_state=-1)


def test_random_weights_are_reproducible_with_a_seed():
    backbone = get_backbone("mobilenet_v3_small")
    state_before = np.random.get_state()[1].copy()
    a = backbone.build(weights=None, input_size=32, random_state=0)
    b = backbone.build(weights=None, input_size=32, random_state=0)
    c = backbone.build(weights=None, input_size=32, random_state=1)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc)
               for wa, wc in zip(a.get_weights(), c.get_weights()))
    # The global NumPy random state is restored after seeding Keras.
    np.testing.assert_array_equal(np.random.get_state()[1], state_before)
    assert a.output_shape == (None, 1, 1, backbone.feature_dim)


def test_non_square_input_size():
    model = get_backbone("resnet50").build(weights=None, input_size=(32, 64),
                                           random_state=0)
    assert model.input_shape == (None, 32, 64, 3)
    assert model.output_shape == (None, 1, 2, 2048)


def test_weights_from_files_give_identical_outputs(tmp_path):
    backbone = get_backbone("mobilenet_v2")
    source = backbone.build(weights=None, input_size=32, random_state=3)
    x = backbone.preprocess(_rgb_batch((2, 32, 32, 3)))
    expected = np.asarray(source(x, training=False))

    weights_path = tmp_path / "mobilenet.weights.h5"
    source.save_weights(weights_path)
    from_weights = backbone.build(weights=weights_path, input_size=32)
    np.testing.assert_array_equal(np.asarray(from_weights(x, training=False)),
                                  expected)

    model_path = tmp_path / "mobilenet.keras"
    source.save(model_path)
    from_model = backbone.build(weights=str(model_path), input_size=32)
    np.testing.assert_allclose(np.asarray(from_model(x, training=False)), expected,
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="takes inputs of size"):
        backbone.build(weights=model_path, input_size=64)

    sha = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    assert backbone.weights_identity(weights_path) == f"file:{sha}"


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_file_of_another_architecture_fails_clearly(tmp_path):
    path = tmp_path / "vgg.weights.h5"
    get_backbone("vgg16").build(weights=None, input_size=32).save_weights(path)
    with pytest.raises(ValueError, match="Could not load the weights file"):
        get_backbone("resnet50").build(weights=path, input_size=32)


def test_weights_identity():
    from importlib.metadata import version

    keras_version = version("keras")
    assert weights_identity("imagenet") == f"imagenet:keras-{keras_version}"
    assert weights_identity(None, random_state=7) == f"random:7:keras-{keras_version}"
    assert weights_identity(None) is None
    assert get_backbone("resnet50").weights_identity() == (
        f"imagenet:keras-{keras_version}")
    assert get_backbone("efficientnet_lite0").weights_identity("imagenet") == (
        "imagenet:efficientnet-lite0-57934424:v1")


def test_parse_weights_identity_reads_what_weights_identity_writes(tmp_path):
    assert parse_weights_identity(weights_identity(None, random_state=7)) == ("random", 7)
    assert parse_weights_identity(weights_identity(None)) == ("random", None)
    assert parse_weights_identity(weights_identity("imagenet", backbone="efficientnet_lite0")) == (
        "imagenet", "efficientnet-lite0-57934424:v1")
    kind, source = parse_weights_identity(weights_identity("imagenet"))
    assert kind == "imagenet" and source.startswith("keras-")
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"abc")
    assert parse_weights_identity(weights_identity(path)) == (
        "file", hashlib.sha256(b"abc").hexdigest())
    assert parse_weights_identity("model:0123abcd") == ("model", "0123abcd")
    for bad in ("", "imagenet", "random:x:keras-3", "other:1", 3):
        with pytest.raises(ValueError, match="weights identity must be"):
            parse_weights_identity(bad)


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
def test_imagenet_download_failure_names_the_alternatives(monkeypatch):
    """No network: a WeightsUnavailableError, fast, that says what to do."""
    import keras.src.utils.file_utils as file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    try:
        get_backbone("mobilenet_v2").build(weights="imagenet", input_size=32)
    except WeightsUnavailableError as e:
        message = str(e)
        assert isinstance(e, RuntimeError)
        assert e.__cause__ is not None
    else:  # pragma: no cover - the weights are already in ~/.keras/models
        pytest.skip("The mobilenet_v2 ImageNet weights are cached locally.")
    assert "ImageNet weights for 'mobilenet_v2' could not be downloaded" in message
    assert "Name or service not known" in message
    assert "weights=None" in message
    assert ".weights.h5" in message and ".keras" in message
    assert "'efficientnet_lite0'" in message


def test_import_does_not_import_tensorflow():
    code = ("import sys, skbottleneck.backbones as b; b.list_backbones(); "
            "b.get_backbone('vgg16').preprocess([[[[0, 0, 0]]]]); "
            "b.imagenet_class_names(); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.slow, pytest.mark.skipif(
        not ALL_BACKBONES, reason="set SKBOTTLENECK_TEST_ALL_BACKBONES=1 to build every backbone")])
    if n in SLOW_TO_BUILD else n
    for n in list_backbones() if n not in KERAS_HUB_PRESETS  # tests/test_keras_hub.py
])
def test_every_backbone_builds_with_random_weights(name):
    backbone = get_backbone(name)
    size = max(32, backbone.min_size)
    model = backbone.build(weights=None, input_size=size, random_state=0)
    assert model.input_shape == (None, size, size, 3)
    assert len(model.output_shape) == 4
    assert model.output_shape[-1] == backbone.feature_dim
    x = backbone.preprocess(_rgb_batch((2, size, size, 3)))
    out = np.asarray(model(x, training=False))
    assert np.isfinite(out).all()

    # Batch normalisation folded into the convolutions computes the same
    # function. Random statistics first: with the initial ones (mean 0,
    # variance 1) a fold on the wrong axis would go unnoticed.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            for w in layer.weights:
                kind = w.path.rsplit("/", 1)[-1]
                low, high = (0.5, 2.0) if kind == "moving_variance" else (0.5, 1.5)
                values = (rng.uniform(low, high, w.shape) if kind in ("moving_variance", "gamma")
                          else rng.normal(0, 0.1, w.shape))
                w.assign(values.astype("float32"))
    expected = np.asarray(model(x, training=False))
    folded, n_folded = fold_batch_norm(model)
    assert (n_folded > 0) == (name not in ("vgg16", "vgg19", "convnext_tiny")), n_folded
    got = np.asarray(folded(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
