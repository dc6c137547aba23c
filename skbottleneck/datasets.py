"""Image folders: list a labelled folder or loose images, or build a small folder of real photos.

:func:`load_image_folder` reads the class-per-subfolder layout that Keras'
``flow_from_directory`` and ``image_dataset_from_directory`` use::

    root/
        cat/001.jpg
        cat/more/002.png
        dog/003.jpg

:func:`list_images` finds the images named on a command line: files,
folders searched recursively, or glob patterns.

:func:`make_photo_folder` writes such a folder with patches cut from the
colour photographs bundled with scikit-image, for demos, tests and
benchmarks that need real photo files without a download.
"""

import glob
import os
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils import check_random_state

from .images import _check_size

__all__ = ["IMAGE_EXTENSIONS", "PHOTO_NAMES", "list_images", "load_image_folder",
           "make_photo_folder"]

#: File extensions :func:`load_image_folder` picks up by default (compared
#: case-insensitively).
IMAGE_EXTENSIONS = ("bmp", "gif", "jpeg", "jpg", "png", "tif", "tiff", "webp")

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


def _normalise_extensions(extensions):
    if extensions is None:
        return frozenset(IMAGE_EXTENSIONS)
    if isinstance(extensions, (str, bytes)):
        extensions = [extensions]
    try:
        normalised = {str(ext).lower().lstrip(".") for ext in extensions}
    except TypeError:
        normalised = set()
    if not normalised or "" in normalised:
        raise ValueError(
            "extensions must be None or a non-empty list of file extensions "
            f"such as ['jpg', 'png']. Got {extensions!r} instead."
        )
    return frozenset(normalised)


def _is_hidden(name):
    return name.startswith(".")


def _has_extension(name, extensions):
    return os.path.splitext(name)[1].lower().lstrip(".") in extensions


def _class_files(class_dir, extensions):
    """Relative paths (as tuples of parts) of the images under ``class_dir``.

    Walks subfolders recursively without following symbolic links to
    folders (Keras' ``follow_links=False``); skips hidden files and folders.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        rel = os.path.relpath(dirpath, class_dir)
        parts = () if rel == os.curdir else tuple(Path(rel).parts)
        for name in filenames:
            if not _is_hidden(name) and _has_extension(name, extensions):
                found.append(parts + (name,))
    return sorted(found)


def load_image_folder(path, *, extensions=None):
    """List the images of a class-per-subfolder folder and their labels.

    The layout is the one Keras' ``flow_from_directory`` reads: one
    subfolder per class, named after the class, holding that class's image
    files, possibly in nested subfolders (searched recursively; symbolic
    links to folders are not followed inside a class folder).

    Parameters
    ----------
    path : str or os.PathLike
        The root folder, ``path/<class name>/<image files>``.
    extensions : list of str, default=None
        File extensions to keep, with or without the dot, compared
        case-insensitively. ``None`` means :data:`IMAGE_EXTENSIONS`
        (bmp, gif, jpeg, jpg, png, tif, tiff, webp).

    Returns
    -------
    paths : ndarray of str of shape (n_images,)
        Image paths, ``os.path.join(path, class_name, relative_path)``,
        sorted by class name, then by relative path within the class.
    labels : ndarray of str of shape (n_images,)
        The class (subfolder name) of each image. ``np.unique(labels)``
        gives the classes.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    NotADirectoryError
        If ``path`` is not a directory.
    ValueError
        If ``path`` has no class subfolders (for example when the images
        lie directly in it), or its class subfolders hold no image files.

    Warns
    -----
    UserWarning
        If some class subfolders hold no image files; they are left out.

    Notes
    -----
    Files and folders whose name starts with a dot are skipped. Files are
    listed, not opened: a file with an image extension that cannot be
    decoded is reported later, by :func:`skbottleneck.images.load_image`.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from skbottleneck.datasets import load_image_folder
    >>> tmp = tempfile.TemporaryDirectory()
    >>> for name in ["dog/b.jpg", "cat/x.png", "cat/nested/a.JPG", "dog/notes.txt"]:
    ...     file = os.path.join(tmp.name, name)
    ...     os.makedirs(os.path.dirname(file), exist_ok=True)
    ...     Image.new("RGB", (8, 8)).save(file, format="PNG")
    >>> paths, labels = load_image_folder(tmp.name)
    >>> [os.path.relpath(p, tmp.name) for p in paths]
    ['cat/nested/a.JPG', 'cat/x.png', 'dog/b.jpg']
    >>> labels.tolist()
    ['cat', 'cat', 'dog']
    >>> tmp.cleanup()
    """
    root = os.fspath(path)
    extensions = _normalise_extensions(extensions)
    if not os.path.exists(root):
        raise FileNotFoundError(f"Image folder {root!r} does not exist.")
    if not os.path.isdir(root):
        raise NotADirectoryError(
            f"Image folder {root!r} is a file, not a directory. Expected a folder "
            "with one subfolder per class: <folder>/<class name>/<image files>."
        )

    class_names = []
    loose_images = 0
    with os.scandir(root) as entries:
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            if entry.is_dir():
                class_names.append(entry.name)
            elif _has_extension(entry.name, extensions):
                loose_images += 1
    class_names.sort()
    if not class_names:
        found = (
            f"it holds {loose_images} image file(s) directly, with no class subfolder"
            if loose_images
            else "it has no subfolders"
        )
        raise ValueError(
            f"No class subfolders in image folder {root!r}: {found}. Expected one "
            "subfolder per class, named after the class, holding its images: "
            f"{os.path.join(root, '<class name>', '<image files>')} (the layout of "
            "Keras' flow_from_directory)."
        )

    paths, labels, empty = [], [], []
    for name in class_names:
        files = _class_files(os.path.join(root, name), extensions)
        if not files:
            empty.append(name)
        paths.extend(os.path.join(root, name, *parts) for parts in files)
        labels.extend([name] * len(files))
    ext_list = ", ".join(sorted(extensions))
    if not paths:
        raise ValueError(
            f"Found class subfolders {class_names} in image folder {root!r} but no "
            f"image files in them (looked for the extensions: {ext_list})."
        )
    if empty:
        warnings.warn(
            f"Class subfolder(s) {empty} of image folder {root!r} hold no image "
            f"files (extensions: {ext_list}); they are left out.",
            UserWarning,
            stacklevel=2,
        )
    return np.asarray(paths, dtype=str), np.asarray(labels, dtype=str)


def list_images(inputs, *, extensions=None):
    """List the image files named by files, folders and glob patterns.

    Parameters
    ----------
    inputs : str, os.PathLike or sequence of them
        Each one an image file (kept as given, whatever its extension), a
        folder (searched recursively for image files, hidden files and
        folders skipped, symbolic links to folders not followed), or a
        glob pattern (for quoted patterns, or shells that do not expand
        them).
    extensions : list of str, default=None
        File extensions picked up in folders, as in
        :func:`load_image_folder`; ``None`` means :data:`IMAGE_EXTENSIONS`.

    Returns
    -------
    paths : list of str
        In the order of ``inputs``; a folder's files sorted by name, before
        those of its subfolders (sorted by name); a pattern's matches sorted.

    Raises
    ------
    FileNotFoundError
        If an input is neither an existing file or folder nor a pattern that
        matches one.
    ValueError
        If a folder holds no image files.

    Examples
    --------
    >>> import os, tempfile
    >>> from skbottleneck.datasets import list_images
    >>> tmp = tempfile.TemporaryDirectory()
    >>> for name in ["b.jpg", "sub/a.png", "notes.txt", ".hidden.jpg"]:
    ...     os.makedirs(os.path.dirname(os.path.join(tmp.name, name)), exist_ok=True)
    ...     open(os.path.join(tmp.name, name), "wb").close()
    >>> [os.path.relpath(p, tmp.name) for p in list_images(tmp.name)]
    ['b.jpg', 'sub/a.png']
    >>> tmp.cleanup()
    """
    extensions = _normalise_extensions(extensions)
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]
    paths = []
    for item in map(os.fspath, inputs):
        if os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
                found += [os.path.join(root, f) for f in sorted(files)
                          if not _is_hidden(f) and _has_extension(f, extensions)]
            if not found:
                raise ValueError(f"Folder {item!r} holds no image files "
                                 f"({', '.join(sorted(extensions))}).")
            paths += found
        elif os.path.exists(item):
            paths.append(item)
        else:
            matches = sorted(glob.glob(item))
            if not matches:
                raise FileNotFoundError(f"Image {item!r} does not exist.")
            paths += matches
    return paths


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
    fmt = str(format).lower()
    if fmt not in ("jpeg", "jpg", "png"):
        raise ValueError(f"format must be 'jpeg' or 'png'. Got {format!r} instead.")
    fmt, suffix = ("PNG", ".png") if fmt == "png" else ("JPEG", ".jpg")
    save_options = {"compress_level": 1} if fmt == "PNG" else {"quality": 90}
    try:
        rng = check_random_state(random_state)
    except ValueError as e:
        raise ValueError(
            "random_state must be None, an int or a numpy.random.RandomState. "
            f"Got {random_state!r} instead."
        ) from e

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{str(out_dir)!r} exists and is not a directory.")
    if not exist_ok and out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{str(out_dir)!r} exists and is not empty; pass exist_ok=True to write "
            "into it anyway, or choose a new folder."
        )

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
