"""What the commands read and write: checked before minutes of work start.

Every helper turns a missing, unreadable or wrong kind of file into a
:class:`CLIError` that names it (exit status 2), so that a command fails
at once rather than after extracting or training.
"""

import csv
import glob
import io
import os

import numpy as np

from .._keras import import_tf
from .._model_files import UntrustedModelError, check_model_file
from ..feature_space import FeatureSpaceError
from .._model_files import load_model as _load_model_file
from ..datasets import is_table, list_images, load_image_folder, load_image_table, load_tar_shards
from ..images import ImageError
from ..remote import is_url
from ..store import FeatureStore
from ._output import CLIError

__all__ = ["check_writable_dir", "check_writable_file", "feature_step", "find_images",
           "load_folder", "load_input", "load_model", "open_store", "read_file_list", "weights_arg",
           "write_errors"]


def check_writable_file(path, what):
    """Fail early (before minutes of work) when ``path`` cannot be written."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f"{what} {path!r} is a folder; give a file name.")
    if not os.path.isdir(parent):
        raise CLIError(f"cannot write {what} {path!r}: the folder {parent!r} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CLIError(f"cannot write {what} {path!r}: permission denied.")
    return path


def check_writable_dir(path, what):
    """Fail early when the folder ``path`` cannot be created or written."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{what} {path!r} exists and is not a folder.")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {what} {path!r}: permission denied.")
    return path


def load_input(path, path_column="path", label_column=None):
    """``(paths, labels)`` of IMAGE_DIR: a folder (local or a URL), a table
    (.csv/.parquet) or tar shards (.tar, or a pattern of them)."""
    if is_table(path):
        try:
            if label_column is None:  # "label" when the table has one
                try:
                    return load_image_table(path, path_column, "label")
                except KeyError as e:
                    if "no label column" not in str(e):
                        raise
                    return load_image_table(path, path_column, None)
            return load_image_table(path, path_column, label_column)
        except KeyError as e:
            raise CLIError(e.args[0]) from e
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(str(e)) from e
    if label_column is not None or path_column != "path":
        raise CLIError(f"--path-column and --label-column name the columns of a table "
                       f"(.csv, .parquet); {path!r} is not one.")
    if path.lower().endswith(".tar"):
        shards = sorted(glob.glob(path)) if glob.has_magic(path) and not is_url(path) else [path]
        try:
            return load_tar_shards(shards or [path])
        except (ImageError, ValueError) as e:
            raise CLIError(str(e)) from e
    if is_url(path):
        try:
            return load_image_folder(path)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(str(e)) from e
    return load_folder(path)


def load_folder(path):
    """``(paths, labels)`` of a class-per-subfolder image folder."""
    if not os.path.exists(path):
        raise CLIError(f"image folder {path!r} does not exist.")
    if not os.path.isdir(path):
        raise CLIError(f"{path!r} is not a folder.")
    try:
        return load_image_folder(path)
    except ValueError as e:
        raise CLIError(str(e)) from e


def find_images(inputs):
    """The image files named on the command line (files, folders, patterns)."""
    try:
        return list_images(inputs)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from e


def read_file_list(path):
    """``(paths, labels)`` of a file list: one ``PATH[<tab>LABEL]`` per line."""
    if not os.path.isfile(path):
        raise CLIError(f"file list {path!r} does not exist.")
    base = os.path.dirname(os.path.abspath(path))
    paths, labels = [], []
    with open(path, "rb") as f:
        data = f.read()
    bad = data.find(b"\0")  # a NUL byte, or bytes that are not UTF-8: a binary file
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = e.start if bad < 0 else min(bad, e.start)
    if bad >= 0:
        line_no = data.count(b"\n", 0, bad) + 1
        raise CLIError(f"file list {path!r} is not a text file (line {line_no} holds byte "
                       f"0x{data[bad]:02x}); expected one PATH[<tab>LABEL] per line, in UTF-8.")
    for line in io.StringIO(text, newline=None):  # \n, \r\n or \r, as open() reads them
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        image, sep, label = line.partition("\t")
        paths.append(_listed_path(image, base))
        labels.append(label.strip() if sep else None)
    if not paths:
        raise CLIError(f"file list {path!r} names no images.")
    n_labelled = sum(lab is not None for lab in labels)
    if n_labelled not in (0, len(labels)):
        raise CLIError(f"file list {path!r}: {n_labelled} of {len(labels)} lines have a label "
                       "(PATH<tab>LABEL); give a label on every line or on none.")
    return np.asarray(paths), (np.asarray(labels) if n_labelled else None)


def _listed_path(text, base):
    """The file a line of a file list names: as written, spaces included.

    Blanks around the name are dropped only when the name as written does
    not exist and the name without them does (a stray space before the tab).
    """
    def resolve(name):
        name = os.path.expanduser(name)
        return name if os.path.isabs(name) else os.path.join(base, name)

    exact = resolve(text)
    if text != text.strip() and not os.path.lexists(exact) and os.path.lexists(resolve(text.strip())):
        return resolve(text.strip())
    return exact


def open_store(path):
    """The :class:`~skbottleneck.FeatureStore` at ``path``, open for reading."""
    if not os.path.exists(path):
        raise CLIError(f"feature store {path!r} does not exist.")
    if os.path.isdir(path):
        raise CLIError(f"{path!r} is a folder, not a feature store file.")
    try:
        return FeatureStore(path)
    except Exception as e:
        raise CLIError(f"{path!r} is not a readable feature store: {e}") from e


def load_model(path):
    """The model saved by ``skbottleneck train`` (anything with ``predict``).

    A ``.skops`` file is checked first: one that names a type outside the
    trusted ones is refused before anything from it is imported or run. A
    joblib file is a pickle: loading it runs whatever code it holds.
    """
    if not os.path.exists(path):
        raise CLIError(f"model file {path!r} does not exist.")
    if os.path.isdir(path):
        raise CLIError(f"{path!r} is a folder, not a model file.")
    try:
        fmt = check_model_file(path)
    except UntrustedModelError as e:
        raise CLIError(str(e)) from e
    except ValueError as e:
        raise CLIError(str(e)) from e
    except OSError as e:
        raise CLIError(f"cannot read the model file {path!r}: {e.strerror or e}") from e
    import_tf(quiet=True)  # quiets TensorFlow's start-up logs; a Keras head needs it
    try:
        model = _load_model_file(path)
    except FeatureSpaceError as e:  # a head and its features disagree: say which
        raise CLIError(str(e)) from e
    except Exception as e:
        raise CLIError(f"{path!r} is not a model file saved by `skbottleneck train` "
                       f"({fmt} could not load it: {type(e).__name__}: {e})") from e
    if not hasattr(model, "predict"):
        raise CLIError(f"{path!r} holds a {type(model).__name__}, not a model with predict().")
    return model


def feature_step(model):
    """The CNN feature transformer that starts the Pipeline ``model``, else None."""
    steps = getattr(model, "steps", None)
    if steps and hasattr(steps[0][1], "extract"):
        return steps[0][1]
    return None


def weights_arg(text):
    """The ``weights`` parameter that ``--weights TEXT`` means."""
    if text is None or text.lower() in ("none", "null", "random"):
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    if not os.path.isfile(text):
        raise CLIError(f"weights file {text!r} does not exist (--weights takes imagenet, none or a file).")
    return text


def write_errors(path, failed):
    """Write the ``(path, reason)`` of the images left out, as CSV."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows(failed)
