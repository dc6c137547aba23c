"""Tar shards in the WebDataset layout: the images of ``.tar`` files and their labels.

A WebDataset shard is a plain tar file whose members are grouped into
samples by their name up to the first dot of the file name:
``000123.jpg`` and ``000123.cls`` are the image and the label of sample
``000123``. Each image member becomes one row whose path is
``"<shard>::<member>"`` (:data:`skbottleneck.remote.SHARD_SEPARATOR`),
which every reader of images in the package reads by a ranged read of the
shard: nothing is unpacked to disk.
"""

import json
import os
import posixpath
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..images import ImageError
from ..remote import SHARD_SEPARATOR, list_shard, read_image_bytes
from ._folders import IMAGE_EXTENSIONS

__all__ = ["LABEL_EXTENSIONS", "load_tar_shards"]

#: Label members, in order of preference when a sample has several.
LABEL_EXTENSIONS = ("cls", "txt", "json")
_LABEL_READ_THREADS = 16


def _sample_key(member):
    """``("dir/000123", "jpg")`` of ``"dir/000123.jpg"`` (WebDataset: the name up to its first dot)."""
    folder, name = posixpath.split(member)
    stem, dot, ext = name.partition(".")
    return posixpath.join(folder, stem), ext.lower() if dot else ""


def _label(data, ext, path):
    text = data.decode("utf-8").strip()
    if ext != "json":
        return text
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ImageError(path, f"label member is not valid JSON ({e})") from e
    if isinstance(value, dict):
        if "label" not in value:
            raise ImageError(path, f"JSON label has no 'label' key (keys: {sorted(value)})")
        value = value["label"]
    return str(value)


def load_tar_shards(shards, *, storage_options=None, on_error="raise"):
    """The image members of tar shards (WebDataset layout) and their labels.

    Parameters
    ----------
    shards : str, os.PathLike or sequence of them
        Uncompressed ``.tar`` files, local or URLs (``s3://bucket/shard-000.tar``).
        Read once here, front to back, for the members' names and offsets.
    storage_options : dict, default=None
        fsspec options for URLs; give the same to
        :class:`~skbottleneck.CNNFeatureTransformer` to read the images.
    on_error : {"raise", "skip"}, default="raise"
        A sample with no image member (``000007.bin``, ``notes.md``):
        ``"raise"`` raises an :class:`~skbottleneck.ImageError` naming the
        shard and member; ``"skip"`` leaves it out with a warning.

    Returns
    -------
    paths : ndarray of object of shape (n_images,)
        ``"<shard>::<member>"`` of each image member, in shard order, then
        member order.
    labels : ndarray of str of shape (n_images,) or None
        Each image's label: the text of its ``.cls`` or ``.txt`` member, or
        its ``.json`` member's ``"label"`` (or the JSON value itself). None
        when no sample has a label.

    Raises
    ------
    ImageError
        A shard is missing or not an uncompressed tar file; a member is not
        an image (``on_error="raise"``); a label member cannot be read.
    ValueError
        Some samples have a label and others none.

    Examples
    --------
    >>> import io, tarfile
    >>> from skbottleneck.datasets import load_tar_shards
    >>> shard = tmp_dir / "shard-000.tar"
    >>> with tarfile.open(shard, "w") as tar:
    ...     for name, data in [("000.jpg", b"..."), ("000.cls", b"3"), ("001.jpg", b"..."),
    ...                        ("001.cls", b"5")]:
    ...         info = tarfile.TarInfo(name); info.size = len(data)
    ...         tar.addfile(info, io.BytesIO(data))
    >>> paths, labels = load_tar_shards(shard)
    >>> [p.split("::")[1] for p in paths], labels.tolist()
    (['000.jpg', '001.jpg'], ['3', '5'])
    """
    if isinstance(shards, (str, os.PathLike)):
        shards = [shards]
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'. Got {on_error!r} instead.")
    paths, label_paths, skipped = [], [], []
    for shard in map(os.fspath, shards):
        samples = {}
        for member in list_shard(shard, storage_options):
            key, ext = _sample_key(member)
            samples.setdefault(key, []).append((ext, member))
        for key, members in samples.items():
            images = [m for ext, m in members if ext in IMAGE_EXTENSIONS]
            labels = {ext: m for ext, m in members if ext in LABEL_EXTENSIONS}
            if not images:
                others = [m for ext, m in members if ext not in LABEL_EXTENSIONS] or [
                    m for _, m in members]
                path = f"{shard}{SHARD_SEPARATOR}{others[0]}"
                reason = (f"not an image member: sample {key!r} has no member with an image "
                          f"extension ({', '.join(IMAGE_EXTENSIONS)})")
                if on_error == "raise":
                    raise ImageError(path, reason)
                skipped.append(f"{path}: {reason}")
                continue
            label = next((labels[e] for e in LABEL_EXTENSIONS if e in labels), None)
            for image in images:
                paths.append(f"{shard}{SHARD_SEPARATOR}{image}")
                label_paths.append(None if label is None else f"{shard}{SHARD_SEPARATOR}{label}")
    if skipped:
        warnings.warn(f"{len(skipped)} shard members left out: " + "; ".join(skipped[:5]),
                      UserWarning, stacklevel=2)
    if not paths:
        raise ValueError(f"No image members in the shards {[os.fspath(s) for s in shards]}.")
    n_labelled = sum(p is not None for p in label_paths)
    if n_labelled == 0:
        return np.asarray(paths, dtype=object), None
    if n_labelled != len(paths):
        first = paths[label_paths.index(None)]
        raise ValueError(f"{n_labelled} of {len(paths)} images in the shards have a label "
                         f"(.cls, .txt or .json member); {first!r} has none.")

    def read_label(path):
        return _label(read_image_bytes(path, storage_options)[0], path.rpartition(".")[2], path)

    distinct = list(dict.fromkeys(label_paths))
    with ThreadPoolExecutor(max_workers=_LABEL_READ_THREADS) as pool:
        values = dict(zip(distinct, pool.map(read_label, distinct)))
    return np.asarray(paths, dtype=object), np.asarray([values[p] for p in label_paths])
