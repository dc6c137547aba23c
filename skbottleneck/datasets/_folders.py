"""Image folders: list a labelled folder or loose images (see :mod:`skbottleneck.datasets`)."""

import glob
import os
import warnings
from pathlib import Path

import numpy as np

from ..remote import is_url, options_for

__all__ = ["IMAGE_EXTENSIONS", "list_images", "load_image_folder"]

#: File extensions :func:`load_image_folder` picks up by default (compared
#: case-insensitively).
IMAGE_EXTENSIONS = ("bmp", "gif", "jpeg", "jpg", "png", "tif", "tiff", "webp")

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


def _local_class_names(root, extensions):
    """Class subfolders of a local folder, and how many images lie loose in it."""
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
    return sorted(class_names), loose_images


def _remote_class_files(root, extensions, storage_options):
    """``{class: sorted relative parts of its images}`` and the loose image count
    of a folder in object storage (fsspec), listed with one recursive listing."""
    from fsspec.core import url_to_fs

    fs, inner = url_to_fs(root, **options_for(root, storage_options))
    inner = inner.rstrip("/")
    try:
        listed = fs.find(inner, withdirs=True, detail=True)
    except (FileNotFoundError, PermissionError) as e:
        raise FileNotFoundError(f"Image folder {root!r} cannot be listed ({e}).") from e
    class_files, loose = {}, 0
    for name, info in listed.items():
        parts = tuple(name[len(inner):].strip("/").split("/"))
        if not parts[0] or any(_is_hidden(p) for p in parts):
            continue
        if info.get("type") == "directory":
            class_files.setdefault(parts[0], [])
        elif len(parts) == 1:
            loose += _has_extension(parts[0], extensions)
        else:
            files = class_files.setdefault(parts[0], [])
            if _has_extension(parts[-1], extensions):
                files.append(parts[1:])
    if not class_files and not loose:
        if not fs.exists(inner):
            raise FileNotFoundError(f"Image folder {root!r} does not exist.")
    return {k: sorted(v) for k, v in class_files.items()}, loose


def load_image_folder(path, *, extensions=None, storage_options=None):
    """List the images of a class-per-subfolder folder and their labels.

    The layout is the one Keras' ``flow_from_directory`` reads: one
    subfolder per class, named after the class, holding that class's image
    files, possibly in nested subfolders (searched recursively; symbolic
    links to folders are not followed inside a class folder).

    Parameters
    ----------
    path : str or os.PathLike
        The root folder, ``path/<class name>/<image files>``: a local
        folder or a folder in object storage (``"s3://bucket/train/"``,
        ``"gs://..."``, ``"az://..."``; any fsspec URL that can be listed),
        whose objects are then listed with one recursive listing.
    extensions : list of str, default=None
        File extensions to keep, with or without the dot, compared
        case-insensitively. ``None`` means :data:`IMAGE_EXTENSIONS`
        (bmp, gif, jpeg, jpg, png, tif, tiff, webp).
    storage_options : dict, default=None
        fsspec options for a URL (credentials, ``{"client_kwargs":
        {"endpoint_url": ...}}``); None: the environment. Pass the same to
        :class:`~skbottleneck.CNNFeatureTransformer` to read the images.

    Returns
    -------
    paths : ndarray of str of shape (n_images,)
        Image paths, ``os.path.join(path, class_name, relative_path)``
        (URLs ``path/class_name/relative_path`` for a remote folder), sorted by class name, then by relative path within the class.
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
    if is_url(root):
        root = root.rstrip("/")
        class_files, loose_images = _remote_class_files(root, extensions, storage_options)
        class_names = sorted(class_files)
    else:
        class_names, loose_images = _local_class_names(root, extensions)
        class_files = {name: _class_files(os.path.join(root, name), extensions)
                       for name in class_names}
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

    join = (lambda *parts: "/".join(parts)) if is_url(root) else os.path.join
    paths, labels, empty = [], [], []
    for name in class_names:
        files = class_files[name]
        if not files:
            empty.append(name)
        paths.extend(join(root, name, *parts) for parts in files)
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


