"""Augmented views: seeded and distinct, cached per view, kept on one side of a split."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score

from skbottleneck import AugmentedClassifier, CNNFeatureTransformer, FeatureStore, ImageViews
from skbottleneck.extraction import cnn_image_count
from skbottleneck.images import load_image

from _features import assert_same_features


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    # real ImageNet weights: random-weight backbones map views alike
    return CNNFeatureTransformer("efficientnet_lite0", input_size=32,
                                 cache_dir=tmp_path_factory.mktemp("cache")).fit()


@pytest.fixture(scope="module")
def data(photo_paths):
    paths, labels = photo_paths
    return list(paths[::2]), np.asarray(labels[::2])  # 4 classes x 4 images


def test_views_are_seeded_distinct_and_start_with_the_image(photo_paths):
    path = photo_paths[0][0]
    views = ImageViews(n_views=6, random_state=3)
    a, b = views.render(path, (40, 40)), views.render(path, (40, 40))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], load_image(path, (40, 40)))
    assert a.shape == (6, 40, 40, 3) and a.dtype == np.uint8
    for i in range(6):
        for j in range(i):
            assert np.abs(a[i].astype(int) - a[j]).mean() > 1, (i, j)
    other = ImageViews(n_views=6, random_state=4).render(path, (40, 40))
    np.testing.assert_array_equal(other[0], a[0])
    assert all(np.abs(other[i].astype(int) - a[i]).mean() > 0.5 for i in range(1, 6))
    assert views.view_keys(b"k" * 16)[0] == b"k" * 16
    assert len(set(views.view_keys(b"k" * 16))) == 6
    assert views.view_keys(b"k" * 16)[1:] != ImageViews(n_views=6, random_state=4).view_keys(
        b"k" * 16)[1:]


@pytest.mark.parametrize("bad, match", [
    (dict(scales=(0.0,)), "scales"), (dict(jitter=0.9), "jitter"), (dict(n_views=0), "n_views")])
def test_bad_views_are_refused(bad, match, data, cnn):
    with pytest.raises(ValueError, match=match):
        cnn.extract(data[0][:1], augment=ImageViews(**bad))


def test_views_cached_view0_is_the_plain_feature(cnn, data):
    paths, labels = data
    plain = cnn.transform(paths)
    before = cnn_image_count()
    result = cnn.extract(paths, labels, augment=3)
    assert cnn_image_count() - before == 3 * len(paths)
    assert result.features.shape == (3 * len(paths), cnn.n_features_out_)
    assert_same_features(result.features[::3], plain)  # other batches: float32 rounding
    np.testing.assert_array_equal(result.groups, np.repeat(np.arange(len(paths)), 3))
    np.testing.assert_array_equal(result.views, np.tile([0, 1, 2], len(paths)))
    np.testing.assert_array_equal(result.y, np.repeat(labels, 3))
    assert np.abs(result.features[1] - result.features[0]).max() > 1e-3

    before = cnn_image_count()  # a second extraction, reordered: no CNN, same rows
    again = cnn.extract(paths[::-1], augment=3)
    assert cnn_image_count() == before
    np.testing.assert_array_equal(again.features.reshape(len(paths), 3, -1)[::-1],
                                  result.features.reshape(len(paths), 3, -1))


def test_views_to_a_store_with_a_view_index(cnn, data, tmp_path):
    paths, labels = data
    expected = cnn.extract(paths, labels, augment=3).features
    store = cnn.extract(paths, labels, augment=3, store=tmp_path / "views.h5").features
    with FeatureStore(store.path) as s:
        assert len(s) == 3 * len(paths) and s.n_views == 3
        np.testing.assert_array_equal(s.image_index, np.repeat(np.arange(len(paths)), 3))
        np.testing.assert_array_equal(s.view_index, np.tile([0, 1, 2], len(paths)))
        np.testing.assert_array_equal(s.labels, np.repeat(labels, 3))
        np.testing.assert_allclose(s.to_numpy(), expected)
        assert len(ImageViews(n_views=3).describe()) and "augment" in s.metadata


def test_unreadable_image_leaves_out_all_its_views(cnn, data, tmp_path):
    paths, labels = data
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    skip = CNNFeatureTransformer(**{**cnn.get_params(), "on_error": "skip"}).fit()
    with pytest.warns(UserWarning, match="could not be read"):
        result = skip.extract(paths[:2] + [str(bad)] + paths[2:4], augment=2)
    assert [p for p, _ in result.failed] == [str(bad)]
    np.testing.assert_array_equal(result.kept, [0, 1, 3, 4])
    np.testing.assert_array_equal(result.groups, np.repeat([0, 1, 3, 4], 2))
    np.testing.assert_array_equal(result.features,
                                  cnn.extract(paths[:4], augment=2).features)


def test_group_splits_keep_views_on_one_side(cnn, data):
    paths, labels = data
    result = cnn.extract(paths, labels, augment=3)
    for train, test in GroupKFold(n_splits=4).split(result.features, result.y, result.groups):
        assert not set(result.groups[train]) & set(result.groups[test])


def test_augmented_classifier_cv_runs_no_cnn_twice_and_tta_averages(cnn, data):
    paths, labels = data
    model = AugmentedClassifier(cnn, LogisticRegression(C=0.1, max_iter=500), augment=3,
                                tta=True)
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    first = cross_val_score(model, paths, labels, cv=cv)
    before = cnn_image_count()
    np.testing.assert_array_equal(cross_val_score(model, paths, labels, cv=cv), first)
    assert cnn_image_count() == before  # every view of every fold from the cache

    model.fit(paths, labels)
    assert model.n_views_ == 3 and list(model.classes_) == sorted(set(labels))
    views = cnn.extract(paths, augment=3).features
    manual = model.head_.predict_proba(views).reshape(len(paths), 3, -1).mean(axis=1)
    np.testing.assert_allclose(model.predict_proba(paths), manual)
    np.testing.assert_array_equal(model.predict(paths), model.classes_[manual.argmax(axis=1)])
    model.set_params(tta=False)
    np.testing.assert_allclose(model.predict_proba(paths),
                               model.head_.predict_proba(cnn.transform(paths)))


@pytest.mark.parametrize("tta", [False, True])
def test_augmented_classifier_never_drops_a_prediction(cnn, data, tmp_path, tta):
    """#24.5: with on_error="skip", [good, bad, good] gave 2 predictions (tta=False):
    zipped with the inputs, the bad image took another image's class."""
    from skbottleneck import ImageError

    paths, labels = data
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    skip = CNNFeatureTransformer(**{**cnn.get_params(), "on_error": "skip"})
    model = AugmentedClassifier(skip, LogisticRegression(C=0.1, max_iter=500), augment=2,
                                tta=tta).fit(paths, labels)
    assert len(model.predict(paths[:2])) == 2
    for method in (model.predict, model.predict_proba):
        with pytest.raises(ImageError, match="broken.jpg"), \
                pytest.warns(UserWarning, match="could not be read"):
            method([paths[0], str(bad), paths[1]])


def test_views_more_than_a_batch_go_through_the_cnn_a_batch_at_a_time(cnn, data):
    """#24: all the views of an image made one CNN batch (20,000 views peaked at
    5.2 GB); now batch_size rows at a time (benchmarks/bench_augment_memory.py)."""
    paths, _ = data
    params = {**cnn.get_params(), "cache_dir": None}
    got = CNNFeatureTransformer(**{**params, "batch_size": 2}).fit().extract(
        paths[:2], augment=5).features
    want = CNNFeatureTransformer(**{**params, "batch_size": 32}).fit().extract(
        paths[:2], augment=5).features
    assert got.shape == (10, cnn.n_features_out_)
    assert_same_features(got, want)


def test_views_that_cannot_fit_on_the_disk_are_refused_at_once(cnn, data, tmp_path):
    """#24: augment=10**6 into a store was refused by the disk check only after
    92 s (the views were described first); now before any work."""
    import shutil
    import time

    from skbottleneck.store import InsufficientDiskSpaceError

    paths, _ = data
    row = cnn.n_features_out_ * 4
    n_views = max(10**5, 2 * shutil.disk_usage(tmp_path).free // (len(paths) * row) + 1)
    t0 = time.perf_counter()
    with pytest.raises(InsufficientDiskSpaceError, match=rf"{len(paths)} images x {n_views} views"):
        cnn.extract(paths, store=tmp_path / "views.h5", augment=n_views)
    assert time.perf_counter() - t0 < 10
    assert list(tmp_path.iterdir()) == []  # nothing written
