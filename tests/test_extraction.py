"""CNNFeatureTransformer on real image files with real (small, seeded) Keras models."""

import json
import os
import pickle
import pickletools
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline

from skbottleneck import CNNFeatureTransformer, ExtractionResult, FeatureStore, ImageError
from skbottleneck.extraction import cnn_image_count

# VGG16 at 32 px: builds in a fraction of a second and, unlike the BatchNorm
# backbones, gives well-spread features with random weights.
SMALL = dict(backbone="vgg16", weights=None, random_state=0, input_size=32)
D = 512


def small(**kw):
    params = dict(SMALL)
    params.update(kw)
    return CNNFeatureTransformer(**params)


@pytest.fixture
def images(tmp_path, photo_paths):
    """Eight real photo patches copied to a fresh folder (so edits are private)."""
    paths, _ = photo_paths
    out = []
    for i, p in enumerate(paths[::4][:8]):
        dst = tmp_path / f"img{i}{os.path.splitext(p)[1]}"
        shutil.copy(p, dst)
        out.append(str(dst))
    return out


def test_import_does_not_load_tensorflow():
    code = (
        "import sys, skbottleneck\n"
        "skbottleneck.CNNFeatureTransformer, skbottleneck.list_backbones()\n"
        "skbottleneck.FeatureStore, skbottleneck.IncrementalClassifier, skbottleneck.KerasMLPClassifier\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert 'keras' not in sys.modules, 'keras imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_transform_shape_order_and_dtype(images, tmp_path):
    cnn = small(cache_dir=None).fit(images)
    X = cnn.transform(images)
    assert X.shape == (len(images), D) and X.dtype == np.float32
    assert np.isfinite(X).all() and np.abs(X).sum(axis=1).min() > 0
    # rows follow the input order, whatever the batching
    X_rev = small(cache_dir=None, batch_size=3).fit_transform(images[::-1])
    np.testing.assert_allclose(X_rev[::-1], X, rtol=1e-4, atol=1e-5)
    # same seed, same features; another seed, other features
    np.testing.assert_array_equal(small(cache_dir=None).fit_transform(images), X)
    assert not np.allclose(small(cache_dir=None, random_state=1).fit_transform(images), X)


def test_features_match_the_keras_model_run_directly(images):
    """The pipeline computes exactly what the Keras model computes on the same pixels."""
    from skbottleneck.backbones import get_backbone
    from skbottleneck.images import load_image

    spec = get_backbone("vgg16")
    model = spec.build(weights=None, input_size=(32, 32), random_state=0)
    batch = np.stack([load_image(p, (32, 32)) for p in images]).astype("float32")
    expected = np.asarray(model(spec.preprocess(batch), training=False)).mean(axis=(1, 2))
    got = small(cache_dir=None).fit_transform(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "pooling, layer, n_features",
    [("avg", None, 512), ("max", None, 512), (None, None, 2 * 2 * 512),
     ("avg", "block3_conv3", 256), (None, "block3_conv3", 16 * 16 * 256)],
)
def test_pooling_and_layer(images, pooling, layer, n_features):
    cnn = small(pooling=pooling, layer=layer, input_size=64, cache_dir=None)
    X = cnn.fit_transform(images[:3])
    assert X.shape == (3, n_features) == (3, cnn.n_features_out_)
    names = cnn.get_feature_names_out()
    assert len(names) == n_features
    assert names[0].startswith("vgg16_") and names[0].endswith("_0")


def test_unknown_layer_names_the_layers(images):
    with pytest.raises(ValueError, match="no layer named 'nope'.*block5_pool"):
        small(layer="nope", cache_dir=None).fit(images)


def test_input_size_tuple_and_float16(images):
    cnn = small(input_size=(48, 32), dtype="float16", cache_dir=None)
    X = cnn.fit_transform(images[:2])
    assert X.dtype == np.float16 and X.shape == (2, D)
    assert cnn.input_size_ == (48, 32)


@pytest.mark.parametrize("bad", ["one_image.jpg", b"x.jpg"])
def test_a_bare_string_is_rejected(bad):
    cnn = small(cache_dir=None).fit()
    with pytest.raises(TypeError, match="single path"):
        cnn.transform(bad)


def test_parameters_are_validated_at_fit():
    with pytest.raises(ValueError, match="pooling"):
        small(pooling="mean").fit()
    with pytest.raises(ValueError, match="on_error"):
        small(on_error="ignore").fit()


def test_bad_images_raise_naming_the_file(images, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    cnn = small(cache_dir=None).fit()
    with pytest.raises(ImageError, match="broken.jpg"):
        cnn.transform(images[:2] + [str(bad)])
    missing = str(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="missing.png"):
        small(cache_dir=tmp_path / "c").fit().transform([missing])


@pytest.mark.parametrize("cache", [False, True])
def test_skip_leaves_bad_images_out_and_lists_them(images, tmp_path, cache):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    paths = [images[0], str(bad), images[1], str(empty), str(missing), images[2]]
    cnn = small(on_error="skip", cache_dir=(tmp_path / "cache") if cache else None).fit()
    with pytest.warns(UserWarning, match="3 of 6 images could not be read"):
        X = cnn.transform(paths)
    assert X.shape == (3, D)
    labels = np.arange(6) * 10
    with pytest.warns(UserWarning, match="3 of 6 images could not be read"):
        result = cnn.extract(paths, labels)
    np.testing.assert_array_equal(result.features, X)
    np.testing.assert_array_equal(result.kept, [0, 2, 5])
    np.testing.assert_array_equal(result.y, [0, 20, 50])
    assert [p for p, _ in result.failed] == [str(bad), str(empty), str(missing)]
    assert all(reason for _, reason in result.failed)
    assert result.stats["n_failed"] == 3 and result.stats["n_images"] == 6
    # the good rows are the features of the good images, not zeros
    good = small(cache_dir=None).fit_transform([images[0], images[1], images[2]])
    np.testing.assert_allclose(X, good, rtol=1e-5, atol=1e-6)


def test_cache_runs_each_image_through_the_cnn_once(images, tmp_path):
    cache = tmp_path / "cache"
    cnn = small(cache_dir=cache).fit()
    before = cnn_image_count()
    result = cnn.extract(images)
    X1 = result.features
    assert cnn_image_count() - before == len(images)
    assert result.stats["n_extracted"] == len(images) and result.stats["n_cached"] == 0

    before = cnn_image_count()
    X2 = clone(cnn).fit().transform(images)  # a clone, as GridSearchCV makes
    assert cnn_image_count() == before, "a cached transform must not run the CNN"
    np.testing.assert_array_equal(X1, X2)
    # the cache returns exactly what an uncached run computes
    np.testing.assert_array_equal(X1, small(cache_dir=None).fit_transform(images))

    # renamed and copied files reuse their features; an edited one is re-extracted
    renamed = str(tmp_path / "renamed.jpg")
    os.rename(images[0], renamed)
    copied = str(tmp_path / "copied.jpg")
    shutil.copy(images[1], copied)
    img = np.asarray(Image.open(images[2]).convert("RGB")).copy()
    img[:8] = 255 - img[:8]
    Image.fromarray(img).save(images[2], quality=95)
    before = cnn_image_count()
    X3 = cnn.transform([renamed, copied, images[2], images[3]])
    assert cnn_image_count() - before == 1
    np.testing.assert_array_equal(X3[[0, 1, 3]], X1[[0, 1, 3]])
    assert not np.allclose(X3[2], X1[2])


def test_duplicate_images_in_one_call_go_through_the_cnn_once(images, tmp_path):
    cnn = small(cache_dir=tmp_path / "cache").fit()
    copy = str(tmp_path / "same.jpg")
    shutil.copy(images[0], copy)
    before = cnn_image_count()
    X = cnn.transform([images[0], images[1], copy, images[0]])
    assert cnn_image_count() - before == 2
    np.testing.assert_array_equal(X[0], X[2])
    np.testing.assert_array_equal(X[0], X[3])


def test_model_changes_use_a_separate_cache_entry(images, tmp_path):
    cache = tmp_path / "cache"
    small(cache_dir=cache).fit().transform(images[:2])
    for change in [dict(pooling="max"), dict(random_state=1), dict(input_size=48),
                   dict(layer="block4_conv3")]:
        cnn = small(cache_dir=cache, **change).fit()
        assert cnn.fingerprint_ != small(cache_dir=cache).fit().fingerprint_
        before = cnn_image_count()
        cnn.transform(images[:2])
        assert cnn_image_count() - before == 2, change


def test_random_weights_without_seed_are_never_cached(images, tmp_path):
    cnn = small(cache_dir=tmp_path / "cache", random_state=None).fit()
    before = cnn_image_count()
    cnn.transform(images[:2])
    cnn.transform(images[:2])
    assert cnn_image_count() - before == 4


def test_sklearn_api(images):
    cnn = small(cache_dir=None, pooling="max")
    assert clone(cnn).get_params() == cnn.get_params()
    cnn.set_params(batch_size=4)
    assert cnn.get_params()["batch_size"] == 4
    assert cnn.__sklearn_tags__().input_tags.string
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        cnn.transform(images)
    df = cnn.set_output(transform="pandas").fit_transform(images[:2])
    assert list(df.columns[:2]) == ["vgg16_max_0", "vgg16_max_1"]
    assert df.shape == (2, D)
    import pandas as pd

    X = small(cache_dir=None).fit_transform(pd.Series(images[:2]))
    assert X.shape == (2, D)


def test_pickled_transformer_holds_no_keras_object(images):
    cnn = small(cache_dir=None).fit()
    X = cnn.transform(images[:3])
    blob = pickle.dumps(cnn)
    # no class from keras/tensorflow is referenced by the pickle
    modules = {arg.split(" ")[0] for op, arg, _ in pickletools.genops(blob)
               if op.name == "GLOBAL"} | {
        s for op, s, _ in pickletools.genops(blob) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")}
    assert not any(str(m).startswith(("keras", "tensorflow")) for m in modules)
    code = textwrap.dedent(
        f"""
        import pickle, sys, numpy as np
        cnn = pickle.loads({blob!r})
        assert 'tensorflow' not in sys.modules
        np.save(sys.argv[1], cnn.transform({images[:3]!r}))
        """
    )
    out = os.path.join(os.path.dirname(images[0]), "out.npy")
    subprocess.run([sys.executable, "-c", code, out], check=True)
    np.testing.assert_array_equal(np.load(out), X)


def test_user_keras_model_as_backbone(images, tmp_path):
    from skbottleneck._keras import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    model = keras.Model(inputs, x, name="tiny")
    cnn = CNNFeatureTransformer(model, cache_dir=tmp_path / "cache").fit()
    X = cnn.transform(images[:3])
    assert X.shape == (3, 8) and cnn.get_feature_names_out()[0] == "tiny_avg_0"
    before = cnn_image_count()
    np.testing.assert_array_equal(cnn.transform(images[:3]), X)
    assert cnn_image_count() == before


def test_weights_from_a_file_the_test_saved(images, tmp_path):
    from skbottleneck.backbones import get_backbone

    model = get_backbone("vgg16").build(weights=None, input_size=(32, 32), random_state=3)
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    X = small(weights=str(path), random_state=None, cache_dir=None).fit_transform(images[:2])
    np.testing.assert_allclose(X, small(random_state=3, cache_dir=None).fit_transform(images[:2]),
                               rtol=1e-6)


def test_extract_writes_a_store_equal_to_transform(images, tmp_path):
    labels = np.array(["a", "b"] * 4)
    cnn = small(cache_dir=None)
    result = cnn.extract(images, labels, store=tmp_path / "features.h5")
    assert isinstance(result, ExtractionResult) and result.failed == []
    np.testing.assert_array_equal(result.kept, np.arange(len(images)))
    np.testing.assert_array_equal(result.y, labels)
    assert result.stats["n_extracted"] == len(images)
    with result.features as store:
        assert len(store) == len(images) and store.n_features == D
        X, y = store.read_rows(np.arange(len(images)))
    np.testing.assert_array_equal(X, cnn.transform(images))
    np.testing.assert_array_equal(y, labels)
    # a second call finds the store complete and runs no CNN: the same result, nothing read
    before = cnn_image_count()
    again = cnn.extract(images, labels, store=tmp_path / "features.h5")
    assert cnn_image_count() == before
    assert isinstance(again.features, FeatureStore) and len(again.features) == len(images)
    assert again.stats["n_images"] == again.stats["n_extracted"] == again.stats["n_cached"] == 0
    np.testing.assert_array_equal(again.kept, result.kept)
    np.testing.assert_array_equal(again.y, labels)
    assert again.failed == [] and "FeatureStore(" in repr(again)
    again.features.close()


@pytest.mark.parametrize("cache", [False, True])
def test_extract_with_skip_finishes_a_store_of_the_readable_images(images, tmp_path, cache):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    missing = str(tmp_path / "missing.png")
    paths = [images[0], str(bad), images[1], images[2], missing, images[3]]
    labels = np.array(["a", "b", "c", "d", "e", "f"])
    out = tmp_path / "features.h5"
    cnn = small(on_error="skip", cache_dir=(tmp_path / "cache") if cache else None)
    with pytest.warns(UserWarning, match="2 of 6 images could not be read"):
        result = cnn.extract(paths, labels, store=out)
    store = result.features
    assert [p for p, _ in result.failed] == [str(bad), missing]
    assert store.skipped_images == result.failed
    np.testing.assert_array_equal(result.kept, [0, 2, 3, 5])
    np.testing.assert_array_equal(result.y, ["a", "c", "d", "f"])
    # the readable images, in order, with their labels and their true features
    assert list(store.paths) == [images[0], images[1], images[2], images[3]]
    X, y = store.read_rows(np.arange(4))
    np.testing.assert_array_equal(y, ["a", "c", "d", "f"])
    np.testing.assert_allclose(X, small(cache_dir=None).fit_transform(images[:4]),
                               rtol=1e-5, atol=1e-6)
    skipped = json.loads(store.metadata["skipped_images"])
    assert [p for p, _ in skipped] == [str(bad), missing]
    assert not os.path.exists(str(out) + ".partial")
    store.close()

    # the same call again: the store is finished, no image is read
    before = cnn_image_count()
    again = small(on_error="skip", cache_dir=None).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: nothing was read
        result = again.extract(paths, labels, store=out)
    assert cnn_image_count() == before
    store = result.features
    assert len(store) == 4 and result.failed == store.skipped_images
    assert [p for p, _ in store.skipped_images] == [str(bad), missing]
    np.testing.assert_array_equal(result.kept, [0, 2, 3, 5])
    np.testing.assert_array_equal(result.y, ["a", "c", "d", "f"])
    assert result.stats["n_extracted"] == result.stats["n_cached"] == 0
    store.close()

    # the unreadable file mended: the next call re-extracts the whole list
    shutil.copy(images[4], bad)
    with pytest.warns(UserWarning, match="1 of 6 images could not be read"):
        store = small(on_error="skip", cache_dir=None).extract(paths, labels, store=out,
                                                               overwrite=True).features
    assert len(store) == 5 and str(bad) in list(store.paths)


def test_extract_with_skip_and_nothing_readable_raises(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageError, match="none of the 1 images could be read"):
        small(on_error="skip", cache_dir=None).extract([str(bad)], store=tmp_path / "f.h5")
    assert not (tmp_path / "f.h5").exists()


def test_pipeline_trains_on_a_store_and_predicts_from_paths(photo_paths, tmp_path):
    paths, labels = photo_paths
    cnn = small(cache_dir=tmp_path / "cache")
    store = cnn.extract(paths, labels, store=tmp_path / "features.h5").features
    from skbottleneck import IncrementalClassifier

    pipe = make_pipeline(cnn, IncrementalClassifier(SGDClassifier(random_state=0), epochs=3,
                                                    random_state=0))
    pipe.fit(store)
    assert pipe.predict(paths[:5]).shape == (5,)
    assert set(pipe.predict(paths)) <= set(labels)


def test_sklearn_estimator_checks_that_apply_to_path_input():
    """The API checks of parametrize_with_checks that do not need numeric X."""
    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    est = small(cache_dir=None)
    check_no_attributes_set_in_init("CNNFeatureTransformer", est)
    check_parameters_default_constructible("CNNFeatureTransformer", CNNFeatureTransformer())
    check_get_params_invariance("CNNFeatureTransformer", est)
    check_set_params("CNNFeatureTransformer", est)


_FUZZ_STATE = {}


@given(data=st.one_of(
    st.binary(max_size=2048),
    st.tuples(st.integers(0, 4000), st.binary(min_size=1, max_size=8)),
))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_bytes_as_images_are_reported_never_crash(data, tmp_path_factory):
    """Random bytes, or a real JPEG with a few bytes overwritten or cut: each file
    either gives a feature row or is listed in the result's failed with its path."""
    if "cnn" not in _FUZZ_STATE:
        folder = tmp_path_factory.mktemp("fuzz")
        from skbottleneck.datasets import make_photo_folder

        real = sorted(make_photo_folder(folder / "real", n_per_class=1, size=(40, 40)).rglob("*.jpg"))[0]
        _FUZZ_STATE.update(cnn=small(on_error="skip", cache_dir=None).fit(), dir=folder,
                           jpeg=real.read_bytes(), n=0)
    if isinstance(data, tuple):
        offset, patch = data
        jpeg = _FUZZ_STATE["jpeg"]
        offset %= len(jpeg)
        data = jpeg[:offset] + patch + jpeg[offset + len(patch):] if offset % 2 else jpeg[:offset]
    _FUZZ_STATE["n"] += 1
    path = str(_FUZZ_STATE["dir"] / f"fuzz{_FUZZ_STATE['n']}.jpg")
    with open(path, "wb") as f:
        f.write(data)
    cnn = _FUZZ_STATE["cnn"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cnn.extract([path])
    X, failed = result.features, result.failed
    if len(X):
        assert X.shape == (1, D) and np.isfinite(X).all() and failed == []
    else:
        assert len(failed) == 1 and failed[0][0] == path and failed[0][1]


def test_transform_sets_no_attribute(images, tmp_path):
    """scikit-learn's rule: transform changes nothing on the estimator; the
    attributes it set until 0.1 are gone (what a run did comes from extract)."""
    cnn = small(on_error="skip", cache_dir=tmp_path / "cache").fit()
    before = dict(vars(cnn))
    cnn.transform(images[:3])
    assert vars(cnn).keys() == before.keys()
    for name in ("failed_", "kept_", "extraction_stats_", "cluster_stats_"):
        assert not hasattr(cnn, name)


def test_constraints_refuse_what_cannot_be_rebuilt(images):
    from sklearn.utils import check_random_state

    with pytest.raises(ValueError, match="'random_state' parameter of CNNFeatureTransformer"):
        small(random_state=check_random_state(0)).fit()
    with pytest.raises(ValueError, match="'backbone' parameter of CNNFeatureTransformer"):
        small(backbone=3).fit()


def test_engine_plans_cached_rows_and_runs_a_copy_once(images, tmp_path):
    from skbottleneck.extraction import ArraySink, ExtractionEngine

    dup = tmp_path / "copy.jpg"
    shutil.copy(images[0], dup)
    cnn = small(cache_dir=tmp_path / "cache").fit()
    engine = ExtractionEngine(cnn)
    paths = images[:3] + [str(dup)]
    plan = engine.plan(paths)
    # never hashed by this process: each file is hashed as it is read, once
    assert len(plan.cached) == 0 and plan.n_to_compute == 4
    sink = ArraySink(len(paths), cnn.n_features_out_, cnn.dtype)
    before = cnn_image_count()
    result = engine.run(plan, sink)
    assert cnn_image_count() - before == 3 and sink.ok.all()  # the copy ran once
    np.testing.assert_array_equal(sink.out[0], sink.out[3])
    assert result.stats["n_extracted"] == 3 and result.failed == []
    again = engine.plan(paths)  # the keys are known now: all cached
    assert sorted(again.cached.tolist()) == [0, 1, 2, 3] and again.n_to_compute == 0
    # with the keys known, copies are grouped before anything is read
    shutil.copy(images[4], tmp_path / "new.jpg")
    shutil.copy(images[4], tmp_path / "new-copy.jpg")
    from skbottleneck.cache import file_keys

    file_keys([tmp_path / "new.jpg", tmp_path / "new-copy.jpg"])
    plan = engine.plan([str(tmp_path / "new.jpg"), str(tmp_path / "new-copy.jpg")])
    assert [g.tolist() for g in plan.groups] == [[0, 1]]


def test_a_file_rewritten_after_hashing_is_cached_under_its_new_bytes(images, tmp_path):
    """The bytes hashed are the bytes decoded: a file rewritten between the
    plan (which knew its old key) and its decoding gets the features of its
    new bytes, under the new bytes' key; its former copy keeps the old ones."""
    from skbottleneck.cache import content_key, file_keys
    from skbottleneck.extraction import ArraySink, ExtractionEngine, open_cache

    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    shutil.copy(images[0], a)
    shutil.copy(images[0], b)
    cnn = small(cache_dir=tmp_path / "cache").fit()
    old_key = file_keys([a])[0]
    file_keys([b])
    engine = ExtractionEngine(cnn)
    plan = engine.plan([str(a), str(b)])
    assert [g.tolist() for g in plan.groups] == [[0, 1]]  # one content, planned once
    shutil.copy(images[1], a)  # rewritten after the plan, before the CNN
    sink = ArraySink(2, cnn.n_features_out_, cnn.dtype)
    engine.run(plan, sink)
    reference = small(cache_dir=None).fit()
    new, old = reference.transform([images[1]])[0], reference.transform([images[0]])[0]
    np.testing.assert_allclose(sink.out[0], new, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sink.out[1], old, rtol=1e-5, atol=1e-6)
    cache = open_cache(cnn)
    with open(images[1], "rb") as f:
        new_key = content_key(f.read())
    np.testing.assert_allclose(cache.read([new_key])[0], new, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cache.read([old_key])[0], old, rtol=1e-5, atol=1e-6)
    # a later copy of the old bytes gets the old features, from the cache
    c = tmp_path / "c.jpg"
    shutil.copy(images[0], c)
    before = cnn_image_count()
    np.testing.assert_allclose(cnn.transform([str(c)])[0], old, rtol=1e-5, atol=1e-6)
    assert cnn_image_count() == before


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cache", [False, True])
def test_fifo_and_device_are_refused_never_hang(images, tmp_path, cache):
    """A FIFO (nothing ever writes to it) or a symlink to /dev/zero (endless)
    would block hashing or decoding forever: each is an ImageError naming it."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.jpg"
    os.symlink("/dev/zero", zero)
    cnn = small(cache_dir=(tmp_path / "cache") if cache else None).fit()
    with pytest.raises(ImageError, match="pipe.jpg") as e:
        cnn.transform([images[0], str(fifo)])
    assert "regular file" in str(e.value)
    with pytest.raises(ImageError, match="zero.jpg"):
        cnn.transform([str(zero), images[0]])
    with pytest.warns(UserWarning, match="2 of 4 images could not be read"):
        result = cnn.set_params(on_error="skip").extract([str(fifo), images[0], str(zero),
                                                          images[1]])
    assert [p for p, _ in result.failed] == [str(fifo), str(zero)]
    assert all("regular file" in why for _, why in result.failed)
    np.testing.assert_array_equal(result.kept, [1, 3])


def test_several_transformers_in_one_process_log_no_retracing_warning(photo_paths):
    """TensorFlow counts traces per function code object: every runner's compiled
    closure shared one count, so the 5th transformer in a process logged "5 out of
    the last 9 calls to <function _graph.<locals>.call> triggered tf.function
    retracing". Each runner traces once; nothing is logged."""
    import logging

    import tensorflow as tf

    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    tf.get_logger().addHandler(handler)
    try:
        for seed in range(6):  # weights=None: a runner of its own each
            cnn = small(random_state=seed, cache_dir=None, runtime="tensorflow").fit()
            cnn.transform(photo_paths[0][:3])
            cnn.transform(photo_paths[0][:1])
    finally:
        tf.get_logger().removeHandler(handler)
    assert [m for m in messages if "retracing" in m] == []
