"""Tests for skbottleneck.datasets: real folders written to tmp_path."""

import doctest
import os

import numpy as np
import pytest
from PIL import Image

import skbottleneck.datasets
from skbottleneck.datasets import (PHOTO_NAMES, _load_photo, list_images, load_image_folder,
                                   make_photo_folder, make_photo_regions_split)
from skbottleneck.images import load_image


def _touch_images(root, names):
    for name in names:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.new("RGB", (4, 4)).save(path, format="PNG")


# ---------------------------------------------------------------------- list_images


def test_list_images_files_folders_and_patterns(tmp_path):
    _touch_images(tmp_path, ["photos/b.jpg", "photos/a.png", "photos/sub/c.jpg",
                             "photos/.hidden/d.jpg", "photos/.e.jpg", "photos/notes.txt",
                             "one.PNG", "readme.txt"])
    found = list_images([tmp_path / "photos", tmp_path / "readme.txt",
                         str(tmp_path / "photos" / "*.jpg")])
    # a folder's own files first, then its subfolders'; a named file whatever its
    # extension; a pattern's matches sorted
    assert [os.path.relpath(p, tmp_path) for p in found] == [
        "photos/a.png", "photos/b.jpg", "photos/sub/c.jpg", "readme.txt", "photos/b.jpg"]
    assert list_images(tmp_path / "one.PNG") == [str(tmp_path / "one.PNG")]


def test_list_images_says_what_is_missing(tmp_path):
    _touch_images(tmp_path, ["empty/notes.txt"])
    with pytest.raises(ValueError, match="holds no image files"):
        list_images([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images([tmp_path / "missing_*.jpg"])


# --------------------------------------------------------------- load_image_folder


def test_load_image_folder_layout(tmp_path):
    _touch_images(
        tmp_path,
        [
            "dog/b.jpg",
            "dog/a.PNG",
            "cat/z.jpeg",
            "cat/sub/deeper/a.tif",
            "cat/sub/b.webp",
            "bird/x.bmp",
            "bird/y.gif",
            "bird/.hidden.png",
            "bird/.cache/c.png",
            "dog/readme.txt",
            ".git/objects/o.png",
            "loose.png",
        ],
    )
    paths, labels = load_image_folder(tmp_path)
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    assert rel == [
        "bird/x.bmp",
        "bird/y.gif",
        "cat/sub/b.webp",
        "cat/sub/deeper/a.tif",
        "cat/z.jpeg",
        "dog/a.PNG",
        "dog/b.jpg",
    ]
    assert labels.tolist() == ["bird", "bird", "cat", "cat", "cat", "dog", "dog"]
    assert isinstance(paths, np.ndarray) and paths.dtype.kind == "U"
    assert isinstance(labels, np.ndarray) and labels.dtype.kind == "U"
    assert all(p.startswith(str(tmp_path)) for p in paths)
    for path in paths:
        assert load_image(path).shape == (4, 4, 3)


def test_load_image_folder_str_path_and_extensions(tmp_path):
    _touch_images(tmp_path, ["a/1.jpg", "a/2.png", "b/3.PNG", "b/4.gif"])
    paths, labels = load_image_folder(str(tmp_path), extensions=[".png"])
    assert [os.path.basename(p) for p in paths] == ["2.png", "3.PNG"]
    assert labels.tolist() == ["a", "b"]
    with pytest.warns(UserWarning, match=r"\['b'\]"):
        paths, _ = load_image_folder(tmp_path, extensions="JPG")
    assert [os.path.basename(p) for p in paths] == ["1.jpg"]


@pytest.mark.parametrize("extensions", [[], [""], 3])
def test_load_image_folder_bad_extensions(tmp_path, extensions):
    _touch_images(tmp_path, ["a/1.jpg"])
    with pytest.raises(ValueError, match="extensions must be"):
        load_image_folder(tmp_path, extensions=extensions)


def test_load_image_folder_does_not_follow_folder_links_inside_classes(tmp_path):
    _touch_images(tmp_path / "data", ["a/1.jpg", "b/2.jpg"])
    _touch_images(tmp_path / "elsewhere", ["3.jpg"])
    try:
        os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "a" / "link")
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symbolic links here")
    paths, _ = load_image_folder(tmp_path / "data")
    assert [os.path.basename(p) for p in paths] == ["1.jpg", "2.jpg"]


def test_load_image_folder_is_deterministic(tmp_path):
    names = [f"c{i % 3}/img{i:02d}.jpg" for i in range(12)]
    _touch_images(tmp_path, reversed(names))
    first = load_image_folder(tmp_path)
    second = load_image_folder(tmp_path)
    np.testing.assert_array_equal(first[0], second[0])
    assert list(first[0]) == sorted(first[0])


def test_load_image_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nope")


def test_load_image_folder_file_not_folder(tmp_path):
    _touch_images(tmp_path, ["x.png"])
    with pytest.raises(NotADirectoryError, match="not a directory"):
        load_image_folder(tmp_path / "x.png")


def test_load_image_folder_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="No class subfolders.*no subfolders"):
        load_image_folder(tmp_path)


def test_load_image_folder_images_directly_in_root(tmp_path):
    _touch_images(tmp_path, ["a.jpg", "b.png", ".hidden/c.png"])
    with pytest.raises(ValueError) as info:
        load_image_folder(tmp_path)
    message = str(info.value)
    assert "2 image file(s) directly" in message
    assert "<class name>" in message and "flow_from_directory" in message


def test_load_image_folder_class_folders_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"\['cat', 'dog'\].*no image files.*jpg"):
        load_image_folder(tmp_path)


def test_load_image_folder_warns_about_empty_classes(tmp_path):
    _touch_images(tmp_path, ["cat/1.jpg"])
    (tmp_path / "dog").mkdir()
    with pytest.warns(UserWarning, match=r"\['dog'\].*left out"):
        paths, labels = load_image_folder(tmp_path)
    assert labels.tolist() == ["cat"]


# --------------------------------------------------------------- make_photo_folder


def test_make_photo_folder_layout_and_images(tmp_path):
    root = make_photo_folder(tmp_path / "photos", n_per_class=3, size=(24, 32))
    assert root == tmp_path / "photos"
    paths, labels = load_image_folder(root)
    assert sorted(set(labels)) == ["astronaut", "chelsea", "coffee", "rocket"]
    assert len(paths) == 12
    assert os.path.basename(paths[0]) == "astronaut_000.jpg"
    images = np.stack([load_image(p) for p in paths])
    assert images.shape == (12, 24, 32, 3)
    # real, varied photo content: no flat images, no two identical ones
    assert images.reshape(12, -1).std(axis=1).min() > 5
    assert len({img.tobytes() for img in images}) == 12


def test_make_photo_folder_is_deterministic(tmp_path):
    a = make_photo_folder(tmp_path / "a", classes=["coffee", "retina"], n_per_class=4)
    b = make_photo_folder(tmp_path / "b", classes=["coffee", "retina"], n_per_class=4)
    c = make_photo_folder(tmp_path / "c", classes=["coffee", "retina"], n_per_class=4,
                          random_state=1)
    paths_a, _ = load_image_folder(a)
    paths_b, _ = load_image_folder(b)
    paths_c, _ = load_image_folder(c)
    for pa, pb, pc in zip(paths_a, paths_b, paths_c):
        assert open(pa, "rb").read() == open(pb, "rb").read()
    assert any(open(pa, "rb").read() != open(pc, "rb").read()
               for pa, pc in zip(paths_a, paths_c))


def test_make_photo_folder_png_all_classes(tmp_path):
    root = make_photo_folder(tmp_path / "p", classes=len(PHOTO_NAMES), n_per_class=1,
                             size=16, format="png")
    paths, labels = load_image_folder(root)
    assert sorted(labels) == sorted(PHOTO_NAMES)
    assert all(p.endswith(".png") for p in paths)
    assert all(load_image(p).shape == (16, 16, 3) for p in paths)


def test_make_photo_folder_refuses_non_empty_folder(tmp_path):
    (tmp_path / "old.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        make_photo_folder(tmp_path, n_per_class=1)
    make_photo_folder(tmp_path, n_per_class=1, classes=1, exist_ok=True)
    assert (tmp_path / "old.txt").exists()
    assert (tmp_path / "astronaut" / "astronaut_000.jpg").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classes": ["astronaut", "unicorn"]}, "classes must be"),
        ({"classes": 0}, "classes must be between"),
        ({"classes": ["coffee", "coffee"]}, "distinct"),
        ({"n_per_class": 0}, "n_per_class"),
        ({"size": (0, 4)}, "size must be"),
        ({"size": None}, "size must be"),
        ({"format": "gif"}, "format must be"),
        ({"random_state": "seed"}, "random_state must be"),
    ],
)
def test_make_photo_folder_bad_parameters(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_photo_folder(tmp_path / "x", **kwargs)


@pytest.mark.parametrize("module", ["_folders", "_photos"])
def test_docstring_examples(module):
    import importlib

    result = doctest.testmod(importlib.import_module(f"skbottleneck.datasets.{module}"))
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------- make_photo_regions_split


def test_photo_regions_split_shares_no_pixel_between_train_and_test(tmp_path):
    split = make_photo_regions_split(tmp_path / "split", classes=len(PHOTO_NAMES), n_train=6,
                                     n_test=4, size=(24, 32), format="png")
    train_paths, train_labels = load_image_folder(split.train)
    test_paths, test_labels = load_image_folder(split.test)
    assert len(train_paths) == 6 * len(PHOTO_NAMES) and len(test_paths) == 4 * len(PHOTO_NAMES)
    assert sorted(set(test_labels)) == sorted(PHOTO_NAMES)
    assert set(split.boxes) == set(train_paths) | set(test_paths)
    for name in PHOTO_NAMES:
        photo = _load_photo(name)
        train = [split.boxes[p] for p, y in zip(train_paths, train_labels) if y == name]
        test = [split.boxes[p] for p, y in zip(test_paths, test_labels) if y == name]
        # every training box ends left of the split, every test box starts at or after it
        assert max(b[3] for b in train) <= split.split_x[name] <= min(b[1] for b in test)
        for a in train:
            for b in test:
                assert a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
        # all boxes inside the photo, so the split is a real one
        assert all(0 <= b[1] < b[3] <= photo.shape[1] and 0 <= b[2] < b[4] <= photo.shape[0]
                   for b in train + test)
    # the boxes tell the truth: each file is its box of the photo, resized (and flipped)
    for path in [train_paths[0], test_paths[-1], *test_paths[::7]]:
        name, left, top, right, bottom, flipped = split.boxes[path]
        expected = Image.fromarray(_load_photo(name)).crop((left, top, right, bottom)).resize(
            (32, 24), Image.Resampling.BILINEAR)
        if flipped:
            expected = expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        np.testing.assert_array_equal(load_image(path), np.asarray(expected))
        assert not np.array_equal(load_image(path), np.asarray(expected)[:, ::-1])


def test_photo_regions_split_is_deterministic_and_checks_parameters(tmp_path):
    a = make_photo_regions_split(tmp_path / "a", classes=2, n_train=2, n_test=2, size=16)
    b = make_photo_regions_split(tmp_path / "b", classes=2, n_train=2, n_test=2, size=16)
    files = sorted(p.relative_to(a.train.parent) for p in a.train.parent.rglob("*.jpg"))
    assert len(files) == 8
    assert all((a.train.parent / f).read_bytes() == (b.train.parent / f).read_bytes()
               for f in files)
    with pytest.raises(FileExistsError, match="not empty"):
        make_photo_regions_split(tmp_path / "a", classes=2)
    for kwargs, match in [({"train_fraction": 0.95}, "train_fraction"),
                          ({"n_test": 0}, "n_test"), ({"classes": ["unicorn"]}, "classes")]:
        with pytest.raises(ValueError, match=match):
            make_photo_regions_split(tmp_path / "x", **kwargs)
