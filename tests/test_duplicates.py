"""Near-duplicate images (:func:`skbottleneck.find_duplicates`, ``skbottleneck duplicates``).

Real photos (scikit-image's), the real EfficientNet-Lite0 with its ImageNet
weights at 96 px, real HDF5 stores; the command runs in-process (its
parser, its output) and, for ``evaluate``, in a subprocess.
"""

import json

import numpy as np
import pytest
from PIL import Image

from skbottleneck import CNNFeatureTransformer, FeatureStore, find_duplicates, find_similar
from skbottleneck.datasets import PHOTO_NAMES

SIZE = 96


def _photo(name):
    import skimage.data

    photo = np.asarray(getattr(skimage.data, name)())
    return Image.fromarray(photo[..., :3] if photo.ndim == 3 else np.stack([photo] * 3, axis=-1))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """``train.h5``: the seven photos (JPEG, 192 px wide). ``test.h5``: a re-saved JPEG
    (quality 40) of chelsea, a copy of coffee resized to half its width, and two photos of
    astronaut and rocket cut differently (crops of other regions: not copies). ``all.h5``:
    both sets in one store."""
    root = tmp_path_factory.mktemp("dups")
    train, test = [], []
    for name in PHOTO_NAMES:
        image = _photo(name)
        w, h = image.size
        train.append(str(root / f"{name}.jpg"))
        image.resize((192, round(192 * h / w))).save(train[-1], quality=90)
    Image.open(train[1]).save(root / "chelsea_resaved.jpg", quality=40)
    coffee = Image.open(train[2])
    coffee.resize((coffee.width // 2, coffee.height // 2)).save(root / "coffee_small.jpg")
    for name in ("astronaut", "rocket"):  # the left third of the photo: another picture
        image = _photo(name)
        image.crop((0, 0, image.width // 3, image.height // 2)).resize((96, 128)).save(
            root / f"{name}_part.jpg")
    test = [str(root / n) for n in ("chelsea_resaved.jpg", "coffee_small.jpg",
                                    "astronaut_part.jpg", "rocket_part.jpg")]
    cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=SIZE)
    cnn.extract(train, list(PHOTO_NAMES), store=root / "train.h5")
    cnn.extract(test, ["chelsea", "coffee", "astronaut", "rocket"], store=root / "test.h5")
    cnn.extract(train + test, list(PHOTO_NAMES) + ["chelsea", "coffee", "astronaut", "rocket"],
                store=root / "all.h5")
    return root, train, test


def test_a_resaved_and_a_resized_copy_are_grouped_a_different_photo_is_not(stores):
    root, train, test = stores
    dups = find_duplicates(root / "all.h5", exact=True)
    assert [g.tolist() for g in dups.groups] == [[1, 7], [2, 8]], dups.to_records()
    assert sorted(dups.pairs.tolist()) == [[1, 7], [2, 8]]
    assert np.all(dups.distances <= 0.1)
    assert dups.n_images == 11
    # the different pictures are far from every other image: a clear margin over 0.1
    with FeatureStore(root / "all.h5") as store:
        parts = store.read_rows([9, 10])[0]
        near = find_similar(store, parts, k=2, exact=True)
    print("copies:", dups.distances, "different photos, nearest other:", near.distances[:, 1])
    assert np.all(near.distances[:, 1] > 0.3), near.distances


def test_test_images_with_a_copy_in_the_training_store(stores):
    root, train, test = stores
    dups = find_duplicates(root / "test.h5", root / "train.h5")
    assert sorted(dups.pairs.tolist()) == [[0, 1], [1, 2]]  # test row -> train row
    assert sorted(map(tuple, dups.paths.tolist())) == [(test[0], train[1]), (test[1], train[2])]
    assert [g.tolist() for g in dups.groups] == [[0, 1], [1, 2]]
    none = find_duplicates(root / "test.h5", root / "train.h5", threshold=0.0005)
    assert len(none.pairs) == 0 and none.groups == []


def test_command_lists_groups_and_leaks(stores, capsys):
    from skbottleneck.cli import main

    root, train, test = stores
    assert main(["duplicates", str(root / "all.h5"), "--exact"]) == 0
    out = capsys.readouterr().out
    assert "2 groups of near-duplicates among 11 images" in out, out
    assert "chelsea_resaved.jpg" in out and "coffee_small.jpg" in out
    assert "astronaut_part" not in out
    assert main(["duplicates", str(root / "test.h5"), str(root / "train.h5"),
                 "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sorted((r["path"], r["other_path"]) for r in records) == [
        (test[0], train[1]), (test[1], train[2])]
    assert all(r["distance"] <= 0.1 for r in records)


def test_stores_of_different_widths_are_refused(stores, tmp_path):
    from skbottleneck.store import StoreWriter

    root, _, _ = stores
    w = StoreWriter(tmp_path / "narrow.h5", paths=["a.jpg"], n_features=8)
    w.write_rows([0], np.ones((1, 8)))
    w.finalize()
    with pytest.raises(ValueError, match="different widths.*1280 and 8"):
        find_duplicates(root / "test.h5", tmp_path / "narrow.h5")


def test_evaluate_warns_of_test_images_copied_from_the_training_store(stores, tmp_path, capsys):
    from skbottleneck.cli import main

    root, train, test = stores
    model = tmp_path / "model.skops"
    assert main(["train", str(root / "train.h5"), "--val-fraction", "0", "--out", str(model),
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), str(root / "test.h5"), "--report", str(tmp_path / "r"),
                 "--train-store", str(root / "train.h5"), "-q"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "near-copy" in line]
    assert len(warning) == 1, err
    assert "2 of 4 test images" in warning[0] and "chelsea_resaved.jpg" in warning[0]
    # a stricter threshold: nothing to say
    assert main(["evaluate", str(model), str(root / "test.h5"), "--report", str(tmp_path / "r"),
                 "--train-store", str(root / "train.h5"), "--duplicate-threshold", "0.001",
                 "-q"]) == 0
    assert "near-copy" not in capsys.readouterr().err
