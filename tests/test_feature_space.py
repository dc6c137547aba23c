"""One identity for a feature space: heads, Pipelines, model files and fitted
transformers refuse features of another model, however equal their widths.

Real ResNet50 and ResNet101 networks (seeded random weights, 32 px), real
photo files, real HDF5 stores and real .skops files.
"""

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

from skbottleneck import (CNNFeatureTransformer, FeatureSpaceError, IncrementalClassifier,
                          KerasMLPClassifier, check_feature_space, load_model, save_model)
from skbottleneck.feature_space import feature_space_of

KW = dict(weights=None, random_state=0, input_size=32, cache_dir=None, runtime="tensorflow")


@pytest.fixture(scope="module")
def spaces(photo_paths, tmp_path_factory):
    """ResNet50 and ResNet101 (both 2,048 features): transformers and stores."""
    paths, y = photo_paths
    tmp = tmp_path_factory.mktemp("spaces")
    r50 = CNNFeatureTransformer("resnet50", **KW).fit()
    r101 = CNNFeatureTransformer("resnet101", **KW).fit()
    assert r50.n_features_out_ == r101.n_features_out_ == 2048
    return (r50, r50.extract(paths, y, store=tmp / "r50.h5").features,
            r101, r101.extract(paths, y, store=tmp / "r101.h5").features)


def test_the_identity_names_what_computed_the_features(spaces):
    r50, store50, r101, store101 = spaces
    assert r50.feature_space_ != r101.feature_space_
    assert r50.feature_space_ == CNNFeatureTransformer("resnet50", **KW).fit().feature_space_
    assert r50.feature_space_.description == "resnet50 (random weights, seed 0), avg pooling, 32x32, float32"
    assert feature_space_of(store50) == r50.feature_space_
    assert feature_space_of(store101) == r101.feature_space_
    other_layer = CNNFeatureTransformer("resnet50", pooling="max", **KW).fit()
    assert other_layer.feature_space_.id != r50.feature_space_.id


@pytest.mark.parametrize("make_head", [
    lambda: IncrementalClassifier(epochs=2, random_state=0),
    lambda: KerasMLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0),
])
def test_a_resnet50_head_refuses_a_resnet101_store(spaces, make_head):
    r50, store50, r101, store101 = spaces
    head = make_head().fit(store50)
    assert head.feature_space_ == r50.feature_space_.as_dict()
    name = type(head).__name__
    for call in (head.predict, head.score, head.partial_fit):
        with pytest.raises(FeatureSpaceError, match=rf"This {name} was trained on features of "
                                                    r"resnet50 .*r101\.h5 gives features of "
                                                    r"resnet101 "):
            call(store101)
    assert head.predict(store50).shape == (len(store50),)


def test_save_model_refuses_a_resnet50_head_after_a_resnet101_transformer(spaces, tmp_path):
    r50, store50, r101, store101 = spaces
    head = IncrementalClassifier(epochs=2, random_state=0).fit(store50)
    wrong = make_pipeline(r101, head)
    with pytest.raises(FeatureSpaceError) as error:
        save_model(wrong, tmp_path / "wrong.skops")
    message = str(error.value)
    assert "resnet50 (random weights, seed 0)" in message and "resnet101" in message
    assert r50.feature_space_.id in message and r101.feature_space_.id in message
    assert "\n" not in message
    assert not (tmp_path / "wrong.skops").exists()
    with pytest.raises(FeatureSpaceError, match="resnet101"):
        check_feature_space(wrong)


def test_a_matching_pipeline_saves_and_loads(spaces, photo_paths, tmp_path):
    paths, y = photo_paths
    r50, store50, _, store101 = spaces
    right = make_pipeline(r50, IncrementalClassifier(epochs=2, random_state=0).fit(store50))
    assert save_model(right, tmp_path / "right.skops") == "skops"
    loaded = load_model(tmp_path / "right.skops")
    assert (loaded.predict(paths[:6]) == right.predict(paths[:6])).all()
    assert loaded[0].feature_space_ == r50.feature_space_
    with pytest.raises(FeatureSpaceError, match="resnet101"):
        loaded[-1].predict(store101)


def test_a_head_trained_in_a_pipeline_learns_its_space_when_saved(spaces, photo_paths, tmp_path):
    """Arrays carry no identity; saving the Pipeline records the transformer's."""
    paths, y = photo_paths
    r50, _, r101, _ = spaces
    pipe = make_pipeline(r50, IncrementalClassifier(epochs=1, random_state=0)).fit(paths, y)
    assert pipe[-1].feature_space_ is None  # trained on arrays
    save_model(pipe, tmp_path / "pipe.skops")
    loaded = load_model(tmp_path / "pipe.skops")
    assert loaded[-1].feature_space_ == r50.feature_space_.as_dict()
    loaded.steps[0] = ("cnn", r101)
    with pytest.raises(FeatureSpaceError, match="resnet50.*resnet101"):
        check_feature_space(loaded)


def test_a_transformer_whose_parameters_changed_after_fit_is_refused(photo_paths):
    paths, _ = photo_paths
    cnn = CNNFeatureTransformer("mobilenet_v2", **KW).fit()
    cnn.transform(paths[:2])
    cnn.set_params(random_state=1)
    with pytest.raises(ValueError, match="parameters changed after fit.*Call fit again"):
        cnn.transform(paths[:2])
    with pytest.raises(ValueError, match="parameters changed after fit"):
        cnn.feature_space_
    assert cnn.fit().transform(paths[:2]).shape == (2, 1280)


def test_a_model_file_claiming_other_weights_is_refused(photo_paths, tmp_path):
    """A .skops file of trusted types only, whose fingerprint_ claims the
    ImageNet model while its parameters build random weights (#24): loading
    it refuses, and nothing reaches a cache under the ImageNet id."""
    import skops.io

    from skbottleneck.extraction._fingerprint import fingerprint

    paths, y = photo_paths
    cnn = CNNFeatureTransformer("efficientnet_lite0", **KW)
    pipe = make_pipeline(cnn, IncrementalClassifier(epochs=1, random_state=0)).fit(paths, y)
    claimed = fingerprint(dict(cnn.get_params(deep=False), weights="imagenet"), cnn.input_size_)
    cnn.fingerprint_ = claimed
    skops.io.dump(pipe, tmp_path / "crafted.skops")  # what save_model would refuse to write
    with pytest.raises(ValueError, match="crafted.skops.*fitted as 'efficientnet_lite0 "
                                         r"\(imagenet\).*random weights, seed 0"):
        load_model(tmp_path / "crafted.skops")
    with pytest.raises(ValueError, match="model file it came from was edited"):
        pipe.predict(paths[:2])


def test_arrays_carry_no_identity(spaces):
    r50, store50, r101, store101 = spaces
    X, y = store50.read_rows(np.arange(len(store50)))[0], store50.labels
    head = IncrementalClassifier(epochs=1, random_state=0).fit(X, y)
    assert head.feature_space_ is None
    assert head.predict(store101).shape == (len(store101),)  # nothing to check against
