"""Small labelled folders of real photo patches (see :mod:`skbottleneck.datasets`)."""

from numbers import Integral
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils import check_random_state

from ..images import _check_size

__all__ = ["PHOTO_NAMES", "make_photo_folder", "make_photo_regions_split"]

#: Colour photographs bundled with scikit-image (no download needed) that
#: :func:`make_photo_folder` can use as classes. The first four are the
#: default classes.
PHOTO_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
_DEFAULT_CLASSES = PHOTO_NAMES[:4]


def _check_classes(classes):
    if classes is None:
        return list(_DEFAULT_CLASSES)
    if isinstance(classes, Integral) and not isinstance(classes, bool):
        if not 1 <= classes <= len(PHOTO_NAMES):
            raise ValueError(
                f"classes must be between 1 and {len(PHOTO_NAMES)} when it is an "
                f"int. Got {classes} instead."
            )
        return list(PHOTO_NAMES[:classes])
    if isinstance(classes, str):
        classes = [classes]
    classes = list(classes)
    unknown = [c for c in classes if c not in PHOTO_NAMES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            "classes must be None, an int, or a list of distinct names among "
            f"{list(PHOTO_NAMES)}. Got {classes!r} instead."
        )
    return classes


def _load_photo(name):
    try:
        import skimage.data
    except ImportError as e:  # pragma: no cover - scikit-image is a dependency
        raise ImportError(
            "make_photo_folder needs scikit-image for its bundled photos: "
            "pip install scikit-image"
        ) from e
    photo = np.asarray(getattr(skimage.data, name)())
    if photo.ndim == 3 and photo.shape[2] == 4:
        photo = photo[..., :3]
    return photo


def _check_format(format):
    """``(PIL format, suffix, save options)`` of a ``format`` parameter."""
    fmt = str(format).lower()
    if fmt not in ("jpeg", "jpg", "png"):
        raise ValueError(f"format must be 'jpeg' or 'png'. Got {format!r} instead.")
    if fmt == "png":
        return "PNG", ".png", {"compress_level": 1}
    return "JPEG", ".jpg", {"quality": 90}


def _check_rng(random_state):
    try:
        return check_random_state(random_state)
    except ValueError as e:
        raise ValueError(
            "random_state must be None, an int or a numpy.random.RandomState. "
            f"Got {random_state!r} instead."
        ) from e


def _check_out_dir(out_dir, exist_ok):
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{str(out_dir)!r} exists and is not a directory.")
    if not exist_ok and out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{str(out_dir)!r} exists and is not empty; pass exist_ok=True to write "
            "into it anyway, or choose a new folder."
        )
    return out_dir


def make_photo_folder(
    out_dir,
    *,
    classes=None,
    n_per_class=20,
    size=(64, 64),
    format="jpeg",
    random_state=0,
    exist_ok=False,
):
    """Write a small labelled image folder of real photo patches.

    Each class is one of the colour photographs bundled with scikit-image
    (:data:`PHOTO_NAMES`: no download needed). Each image is a patch cut
    from that photo at a random position and scale (its sides are 1/3 to
    2/3 of the largest patch of the output's aspect ratio that fits in the
    photo), flipped left-right half of the time, resized to ``size`` and
    saved in ``out_dir/<class>/``. The patches of one class overlap but are
    all different, so the classes are easy to learn yet not trivial.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to create; :func:`load_image_folder` reads it back.
    classes : int or list of str, default=None
        Photos to use as classes, by name from :data:`PHOTO_NAMES`, or the
        first ``classes`` of them. ``None`` means astronaut, chelsea (a cat),
        coffee and rocket.
    n_per_class : int, default=20
        Images per class.
    size : int or tuple of (int, int), default=(64, 64)
        ``(height, width)`` of every image; an int means a square.
    format : {"jpeg", "png"}, default="jpeg"
        File format: JPEG (quality 90, ``.jpg``) or PNG (``.png``).
    random_state : int, RandomState instance or None, default=0
        Seed of the patch positions, scales and flips. The same seed gives
        byte-identical files.
    exist_ok : bool, default=False
        Write into ``out_dir`` even if it exists and is not empty (files of
        the same name are overwritten; other files are left in place).

    Returns
    -------
    out_dir : pathlib.Path
        The folder written.

    Raises
    ------
    FileExistsError
        If ``out_dir`` exists, is not empty and ``exist_ok`` is False.
    ValueError
        If a parameter is out of range.

    Examples
    --------
    >>> import tempfile
    >>> from skbottleneck.datasets import load_image_folder, make_photo_folder
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = make_photo_folder(tmp.name + "/photos", n_per_class=5, size=32)
    >>> paths, labels = load_image_folder(root)
    >>> len(paths), sorted(set(labels.tolist()))
    (20, ['astronaut', 'chelsea', 'coffee', 'rocket'])
    >>> paths[0].endswith("astronaut_000.jpg")
    True
    >>> tmp.cleanup()
    """
    class_names = _check_classes(classes)
    if (
        not isinstance(n_per_class, Integral)
        or isinstance(n_per_class, bool)
        or n_per_class < 1
    ):
        raise ValueError(
            f"n_per_class must be a positive int. Got {n_per_class!r} instead."
        )
    if size is None:
        raise ValueError(
            "size must be a positive int or a (height, width) pair. Got None instead."
        )
    height, width = _check_size(size)
    fmt, suffix, save_options = _check_format(format)
    rng = _check_rng(random_state)
    out_dir = _check_out_dir(out_dir, exist_ok)

    for name in class_names:
        photo = Image.fromarray(_load_photo(name))
        photo_w, photo_h = photo.size
        # Largest patch of the output's aspect ratio that fits in the photo.
        fit = min(photo_w / width, photo_h / height)
        class_dir = out_dir / name
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            scale = rng.uniform(1 / 3, 2 / 3) * fit
            patch_w = max(1, min(photo_w, round(width * scale)))
            patch_h = max(1, min(photo_h, round(height * scale)))
            left = rng.randint(0, photo_w - patch_w + 1)
            top = rng.randint(0, photo_h - patch_h + 1)
            flip = rng.uniform() < 0.5
            patch = photo.resize(
                (width, height),
                Image.Resampling.BILINEAR,
                box=(left, top, left + patch_w, top + patch_h),
            )
            if flip:
                patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            file = class_dir / f"{name}_{i:03d}{suffix}"
            patch.save(file, format=fmt, **save_options)
    return out_dir


def make_photo_regions_split(
    out_dir,
    *,
    classes=None,
    n_train=20,
    n_test=20,
    size=(64, 64),
    train_fraction=0.6,
    format="jpeg",
    random_state=0,
    exist_ok=False,
):
    """Write a train and a test folder of photo patches from disjoint regions of each photo.

    A harder, honest task than :func:`make_photo_folder`: training patches
    are cut from the left ``train_fraction`` of each photo and test patches
    from the rest, so no test patch shares a pixel with a training patch and
    a test score measures what a model learned about the photo, not what it
    memorised of the patches. Each patch is cropped at a random position,
    with sides of 20% to 40% of the photo's shorter side (the same range in
    both regions, capped by the region's width), flipped left-right half of
    the time, resized to ``size`` and saved as
    ``out_dir/train/<class>/<class>_<i>.jpg`` (``test/`` likewise).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to create, holding ``train/`` and ``test/``;
        :func:`load_image_folder` reads each back.
    classes : int or list of str, default=None
        Photos to use as classes, as in :func:`make_photo_folder`: names from
        :data:`PHOTO_NAMES` or the first ``classes`` of them; None means
        astronaut, chelsea, coffee and rocket.
    n_train : int, default=20
        Training images per class.
    n_test : int, default=20
        Test images per class.
    size : int or tuple of (int, int), default=(64, 64)
        ``(height, width)`` of every image; an int means a square.
    train_fraction : float, default=0.6
        Share of each photo's width, from the left, that training patches
        are cut from; test patches come from the rest. Between 0.2 and 0.8.
    format : {"jpeg", "png"}, default="jpeg"
        File format: JPEG (quality 90, ``.jpg``) or PNG (``.png``).
    random_state : int, RandomState instance or None, default=0
        Seed of the patch positions, sizes and flips. The same seed gives
        byte-identical files.
    exist_ok : bool, default=False
        Write into ``out_dir`` even if it exists and is not empty.

    Returns
    -------
    split : sklearn.utils.Bunch
        ``train`` and ``test``: the two folders (:class:`pathlib.Path`);
        ``boxes``: for every file written (its path as a str), ``(photo,
        left, top, right, bottom, flipped)``, the photo's name, the pixel
        box the patch was cut from (right and bottom excluded) and whether
        it was flipped; ``split_x``: for every photo, the first pixel
        column of the test region.

    Raises
    ------
    FileExistsError
        If ``out_dir`` exists, is not empty and ``exist_ok`` is False.
    ValueError
        If a parameter is out of range.

    See Also
    --------
    make_photo_folder : Patches from anywhere in each photo, one folder.

    Examples
    --------
    >>> import tempfile
    >>> from skbottleneck.datasets import load_image_folder, make_photo_regions_split
    >>> tmp = tempfile.TemporaryDirectory()
    >>> split = make_photo_regions_split(tmp.name, n_train=4, n_test=2, size=32)
    >>> train_paths, train_labels = load_image_folder(split.train)
    >>> test_paths, test_labels = load_image_folder(split.test)
    >>> len(train_paths), len(test_paths)
    (16, 8)
    >>> photo, left, top, right, bottom, flipped = split.boxes[test_paths[0]]
    >>> photo, left >= split.split_x["astronaut"]
    ('astronaut', True)
    >>> all(split.boxes[p][3] <= split.split_x[split.boxes[p][0]] for p in train_paths)
    True
    >>> tmp.cleanup()
    """
    from sklearn.utils import Bunch

    class_names = _check_classes(classes)
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int. Got {value!r} instead.")
    if size is None:
        raise ValueError(
            "size must be a positive int or a (height, width) pair. Got None instead."
        )
    height, width = _check_size(size)
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) or not (
        0.2 <= train_fraction <= 0.8
    ):
        raise ValueError(
            f"train_fraction must be a float between 0.2 and 0.8. Got {train_fraction!r} instead."
        )
    fmt, suffix, save_options = _check_format(format)
    rng = _check_rng(random_state)
    out_dir = _check_out_dir(out_dir, exist_ok)

    boxes, split_x = {}, {}
    for name in class_names:
        photo = Image.fromarray(_load_photo(name))
        photo_w, photo_h = photo.size
        split = int(round(train_fraction * photo_w))
        split_x[name] = split
        regions = (("train", 0, split, n_train), ("test", split, photo_w, n_test))
        for part, x_lo, x_hi, n in regions:
            class_dir = out_dir / part / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # a patch of the output's aspect ratio, 20-40% of the shorter side
                side = rng.uniform(0.2, 0.4) * min(photo_w, photo_h)
                patch_w = max(1, min(x_hi - x_lo, round(side * width / max(height, width))))
                patch_h = max(1, min(photo_h, round(patch_w * height / width)))
                left = x_lo + rng.randint(0, x_hi - x_lo - patch_w + 1)
                top = rng.randint(0, photo_h - patch_h + 1)
                flip = bool(rng.uniform() < 0.5)
                box = (left, top, left + patch_w, top + patch_h)
                # crop first: a resize with box= may read pixels just outside it
                patch = photo.crop(box).resize((width, height), Image.Resampling.BILINEAR)
                if flip:
                    patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                file = class_dir / f"{name}_{i:03d}{suffix}"
                patch.save(file, format=fmt, **save_options)
                boxes[str(file)] = (name, *box, flip)
    return Bunch(train=out_dir / "train", test=out_dir / "test", boxes=boxes, split_x=split_x)
