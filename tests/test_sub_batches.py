"""TensorFlow's CNN stage on whole batches or sub-batches: same features, the faster kept."""

import numpy as np
import pytest

from skbottleneck import CNNFeatureTransformer
from skbottleneck.extraction import get_runner
from skbottleneck.extraction._sub_batches import (
    MIN_ROWS,
    SPLIT,
    TRIAL_CALLS,
    WHOLE,
    SchemeChooser,
)
from skbottleneck.images import load_image

from _features import assert_same_features

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def vgg(photo_paths):
    """A fitted TensorFlow transformer (VGG16 keeps different photos apart) and its runner."""
    cnn = CNNFeatureTransformer("vgg16", weights=None, random_state=0, input_size=32,
                                runtime="tensorflow", cache_dir=None, batch_size=8).fit()
    return cnn, get_runner(cnn)


@pytest.fixture(scope="module")
def batch(photo_paths):
    paths, _ = photo_paths
    return np.stack([load_image(p, (32, 32)).astype("uint8") for p in paths[:13]])


def test_sub_batches_give_the_whole_batch_features(vgg, batch):
    _, runner = vgg
    schemes = runner.schemes.schemes
    if len(schemes) == 1:  # a GPU: whole batches only
        assert list(schemes) == [WHOLE]
        pytest.skip("TensorFlow sees a GPU: batches run whole")
    assert list(schemes) == [WHOLE, SPLIT]
    whole = schemes[WHOLE](batch).numpy()
    split = schemes[SPLIT](batch).numpy()  # 13 rows: sub-batches of 3, 3, 3 and 4
    assert split.shape == whole.shape == (13, 512)
    assert_same_features(split, whole)
    # not a degenerate comparison: the photos' features differ from one another
    assert np.abs(whole[1:] - whole[:1]).max() > 100 * np.abs(split - whole).max()
    # fewer images than sub-batches: the batch runs whole (no empty tensor reaches the CNN)
    assert_same_features(schemes[SPLIT](batch[:3]).numpy(), whole[:3])


def test_the_runner_measures_both_then_keeps_one(vgg, tmp_path):
    from skbottleneck.datasets import load_image_folder, make_photo_folder

    cnn, runner = vgg
    runner.schemes.warmup_images = 8  # the first batch runs whole, untimed
    paths, _ = load_image_folder(make_photo_folder(tmp_path, n_per_class=20, size=(32, 32),
                                                   random_state=0))
    n_calls = 1 + 2 * TRIAL_CALLS + 1  # warm-up, then alternating: split traces, both timed
    assert len(paths) >= 8 * n_calls
    result = cnn.extract(paths[:8 * n_calls])
    stats = result.stats
    assert stats["tf_scheme"] in (WHOLE, SPLIT)
    assert stats["tf_scheme"] == runner.schemes.chosen
    measured = stats["tf_scheme_ms_per_image"]
    assert set(measured) == {WHOLE, SPLIT}
    assert all(len(t) == TRIAL_CALLS for t in runner.schemes.timings.values())
    assert stats["tf_scheme"] == min(measured, key=measured.get)
    # the scheme kept computes what the other does
    assert_same_features(cnn.transform(paths[:16]), result.features[:16])


def test_the_faster_scheme_is_kept_and_small_batches_run_whole(vgg, batch):
    """A scheme doing the work twice is slower, and is not chosen."""
    _, runner = vgg
    fn = runner.schemes.schemes[WHOLE]
    chooser = SchemeChooser({"once": fn, "twice": lambda x: (fn(x), fn(x))[1]},
                            warmup_images=3 * len(batch))
    for _ in range(5):
        chooser(batch[:MIN_ROWS - 1])  # too small to time: runs "once", untimed
    chooser(batch)  # still warming up: 35 images seen before it, 39 needed
    assert chooser.chosen is None and chooser.timings == {"once": [], "twice": []}
    for _ in range(2 * TRIAL_CALLS + 1):  # "twice" traces, then both are timed in turn
        out = chooser(batch)
    assert chooser.chosen == "once"
    assert chooser.info()["tf_scheme"] == "once"
    assert len(chooser.timings["twice"]) == TRIAL_CALLS
    assert_same_features(out, fn(batch).numpy())
    # once chosen, nothing more is timed
    chooser(batch)
    assert len(chooser.timings["once"]) == TRIAL_CALLS
