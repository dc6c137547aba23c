"""The ``skbottleneck`` command: extract features, train a head, evaluate, predict.

Run ``skbottleneck --help`` (or ``python -m skbottleneck --help``) for the
list of commands, ``skbottleneck COMMAND --help`` for each one. The typical
session::

    skbottleneck extract photos/ --backbone efficientnet_lite0 --out features.h5
    skbottleneck train features.h5 --head logreg --out model.joblib
    skbottleneck evaluate model.joblib test_photos/ --report report/
    skbottleneck predict model.joblib new_photo.jpg more_photos/

Expected errors (a wrong argument, a missing folder, an unreadable image, a
store of another backbone) print one line, ``skbottleneck: error: ...``, on
stderr and exit with a status scripts can rely on (see :data:`EXIT_CODES`);
``--traceback`` shows the Python traceback as well.

TensorFlow is imported only by the commands that run a CNN, so ``--help``,
``backbones`` and ``cache`` answer at once.
"""

import argparse
import ast
import csv
import glob
import io
import json
import os
import re
import sys
import time
import warnings

import numpy as np

from . import __version__

__all__ = ["main", "EXIT_CODES"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Exit status of the ``skbottleneck`` command.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "runtime failure: an image could not be read (and `--on-error skip` was not "
                  "given), ImageNet weights unavailable offline, disk full, or an unexpected error",
    EXIT_USAGE: "usage error: invalid arguments, a missing input file or folder, a file that is not "
                "a feature store or a model, a store incompatible with the model, an output "
                "that cannot be written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); `extract` resumes where it stopped when rerun",
}

_EXIT_SUMMARY = {
    EXIT_OK: "success",
    EXIT_FAILURE: "runtime failure (an unreadable image, weights unavailable offline, ...)",
    EXIT_USAGE: "usage error (bad arguments, missing files, incompatible store or model, ...)",
    EXIT_INTERRUPTED: "interrupted (rerun `extract` to resume)",
}

HEADS = ("logreg", "sgd", "mlp", "keras-mlp")


class CLIError(Exception):
    """An expected error: printed as one line, exits with ``code``."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ parsing
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        hint = f" (see '{self.prog} --help')"
        raise CLIError(f"{message}{hint}", EXIT_USAGE)


def _input_size(text):
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a size in pixels such as 224 or 150x200 (height x width); got {text!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text!r}")
    return value


def _param(text):
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. alpha=1e-4; got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = {"none": None, "true": True, "false": False}.get(value.lower(), value)
    return key.strip(), parsed


def build_parser():
    """The ``argparse`` parser of the ``skbottleneck`` command."""
    parser = _Parser(
        prog="skbottleneck",
        description="Transfer learning by CNN bottleneck features: turn a folder of images "
                    "into a trained classifier on a laptop.",
        epilog="exit status:\n" + "\n".join(f"  {k:<4} {v}" for k, v in _EXIT_SUMMARY.items())
               + "\n\nRun 'skbottleneck COMMAND --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skbottleneck {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # backbones
    p = sub.add_parser("backbones", help="list the CNN backbones and whether their weights work offline",
                       description="List the registered backbones: default input size, feature "
                                   "size (channels, i.e. features per image with pooling), "
                                   "preprocessing, and whether ImageNet weights are available "
                                   "without network access (bundled, or already downloaded into "
                                   "the Keras cache).")
    p.add_argument("--format", choices=("table", "json"), default="table")

    # extract
    p = sub.add_parser("extract", help="compute CNN features of images into a feature store (HDF5)",
                       description="Compute the CNN features of a class-per-subfolder image folder "
                                   "(or of the images listed in --file-list) and write them, with "
                                   "their labels, to a feature store. Rerunning the same command "
                                   "after an interruption resumes where it stopped.")
    p.add_argument("image_dir", nargs="?", metavar="IMAGE_DIR",
                   help="folder with one subfolder of images per class")
    p.add_argument("--file-list", metavar="FILE",
                   help="text file with one image path per line, optionally followed by a tab "
                        "and its label (relative paths are relative to FILE's folder)")
    p.add_argument("--out", "-o", required=True, metavar="STORE",
                   help="feature store to write, e.g. features.h5")
    p.add_argument("--backbone", "-b", default="efficientnet_lite0",
                   help="backbone name (see `skbottleneck backbones`; default: efficientnet_lite0, "
                        "whose ImageNet weights ship with the package)")
    p.add_argument("--weights", default="imagenet", metavar="imagenet|none|PATH",
                   help="'imagenet' (default), 'none' (random, seeded by --random-state) or a "
                        ".weights.h5/.keras file")
    p.add_argument("--layer", help="name of the backbone layer to take features from (default: the last)")
    p.add_argument("--pooling", choices=("avg", "max", "none"), default="avg",
                   help="global pooling of the feature map; 'none' keeps the whole flattened map")
    p.add_argument("--input-size", type=_input_size, metavar="N|HxW",
                   help="resize images to this size (default: the backbone's)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="dtype of the stored features (float16 halves the disk space)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--random-state", type=int, help="seed of the random weights with --weights none")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--cache-dir", metavar="DIR",
                       help="feature cache folder (default: $SKBOTTLENECK_CACHE_DIR or the user cache)")
    group.add_argument("--no-cache", action="store_true", help="do not use the feature cache")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="'raise' (default): stop at the first unreadable image; 'skip': leave "
                        "unreadable images out and list them in the errors file")
    p.add_argument("--errors-file", metavar="CSV",
                   help="where --on-error skip lists the skipped images (default: STORE.errors.csv)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing store written from other images or another model")
    p.add_argument("--decode-threads", type=_positive_int, metavar="N")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true", help="also print per-stage timings")

    # train
    p = sub.add_parser("train", help="train a classifier head on a feature store, out of core",
                       description="Train a classifier head on the features of a store, reading "
                                   "it in chunks (it may be larger than memory), print the "
                                   "accuracy on held-out rows, and save a scikit-learn Pipeline "
                                   "[CNN features, head] that predicts from image files.")
    p.add_argument("store", metavar="STORE", help="feature store written by `skbottleneck extract`")
    p.add_argument("--head", choices=HEADS, default="logreg",
                   help="logreg: logistic regression (SGD, log loss); sgd: linear SVM (SGD, hinge "
                        "loss); mlp: scikit-learn MLPClassifier; keras-mlp: Keras dense head. "
                        "Default: logreg")
    p.add_argument("--param", "-p", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the head, e.g. -p alpha=1e-4 -p hidden_layer_sizes=(256,) "
                        "(repeatable; values are Python literals)")
    p.add_argument("--epochs", type=_positive_int, help="passes over the training rows")
    p.add_argument("--val-fraction", type=_fraction, default=0.2,
                   help="fraction of the rows held out to measure accuracy (stratified; default 0.2; "
                        "0 trains on all rows)")
    p.add_argument("--chunk-size", type=_positive_int, default=4096, help="rows read at a time")
    p.add_argument("--random-state", type=int, default=0,
                   help="seed of the split, the shuffling and the head")
    p.add_argument("--weights", metavar="PATH",
                   help="the weights file the features were extracted with, when it was a file "
                        "(the store records only its checksum)")
    p.add_argument("--out", "-o", required=True, metavar="MODEL",
                   help="model file to write, e.g. model.joblib")
    p.add_argument("--quiet", "-q", action="store_true")

    # evaluate
    p = sub.add_parser("evaluate", help="classification report, confusion matrix and metrics of a model",
                       description="Evaluate a saved model on a feature store (fast: no CNN) or on "
                                   "a class-per-subfolder image folder, and write a report folder: "
                                   "classification_report.txt, metrics.json, predictions.csv, "
                                   "confusion_matrix.png (and learning_curve.png for Keras heads).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="STORE|IMAGE_DIR")
    p.add_argument("--report", "-r", default="report", metavar="DIR", help="report folder (default: report)")
    p.add_argument("--normalize", choices=("true", "pred", "all", "none"), default="true",
                   help="normalisation of the second confusion-matrix panel "
                        "(default: true, i.e. per true class)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="with an image folder: stop at an unreadable image, or skip it")
    p.add_argument("--quiet", "-q", action="store_true")

    # predict
    p = sub.add_parser("predict", help="predict the class of images",
                       description="Predict the class of image files (folders are searched "
                                   "recursively for images). Unreadable images get an empty "
                                   "prediction and an error message; the exit status is then 1.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("images", nargs="+", metavar="IMAGE|IMAGE_DIR")
    p.add_argument("--proba", action="store_true", help="also print the probability of every class")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--out", "-o", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--verbose", "-v", action="store_true", help="progress bar on stderr")

    # cache
    p = sub.add_parser("cache", help="show or clear the feature cache",
                       description="Show the size of the feature cache per model, or clear it.")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--backbone", help="only the features of this backbone")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder (default: $SKBOTTLENECK_CACHE_DIR or the user cache)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    return parser


# ------------------------------------------------------------------ helpers
def _echo(*args, file=None, **kwargs):
    print(*args, file=file or sys.stdout, flush=True, **kwargs)


def _human_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _check_writable_file(path, what):
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


def _check_writable_dir(path, what):
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{what} {path!r} exists and is not a folder.")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {what} {path!r}: permission denied.")
    return path


def _load_folder(path):
    from .datasets import load_image_folder

    if not os.path.exists(path):
        raise CLIError(f"image folder {path!r} does not exist.")
    if not os.path.isdir(path):
        raise CLIError(f"{path!r} is not a folder.")
    try:
        return load_image_folder(path)
    except ValueError as e:
        raise CLIError(str(e)) from e


def _read_file_list(path):
    if not os.path.isfile(path):
        raise CLIError(f"file list {path!r} does not exist.")
    base = os.path.dirname(os.path.abspath(path))
    paths, labels = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            image, sep, label = line.partition("\t")
            image = os.path.expanduser(image.strip())
            paths.append(image if os.path.isabs(image) else os.path.join(base, image))
            labels.append(label.strip() if sep else None)
    if not paths:
        raise CLIError(f"file list {path!r} names no images.")
    n_labelled = sum(lab is not None for lab in labels)
    if n_labelled not in (0, len(labels)):
        raise CLIError(f"file list {path!r}: {n_labelled} of {len(labels)} lines have a label "
                       "(PATH<tab>LABEL); give a label on every line or on none.")
    return np.asarray(paths), (np.asarray(labels) if n_labelled else None)


def _open_store(path):
    from .store import FeatureStore

    if not os.path.exists(path):
        raise CLIError(f"feature store {path!r} does not exist.")
    if os.path.isdir(path):
        raise CLIError(f"{path!r} is a folder, not a feature store file.")
    try:
        return FeatureStore(path)
    except Exception as e:
        raise CLIError(f"{path!r} is not a readable feature store: {e}") from e


def _load_model(path):
    import joblib

    if not os.path.exists(path):
        raise CLIError(f"model file {path!r} does not exist.")
    if os.path.isdir(path):
        raise CLIError(f"{path!r} is a folder, not a model file.")
    _import_tensorflow_quietly()  # a pickled Keras head imports it while loading
    try:
        model = joblib.load(path)
    except Exception as e:
        raise CLIError(f"{path!r} is not a model file saved by `skbottleneck train` "
                       f"(joblib could not load it: {type(e).__name__}: {e})") from e
    if not hasattr(model, "predict"):
        raise CLIError(f"{path!r} holds a {type(model).__name__}, not a model with predict().")
    return model


def _feature_step(model):
    steps = getattr(model, "steps", None)
    if steps and hasattr(steps[0][1], "extract"):
        return steps[0][1]
    return None


def _list_images(inputs):
    from .datasets import IMAGE_EXTENSIONS

    exts = {"." + e for e in IMAGE_EXTENSIONS}
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, f) for f in sorted(files)
                          if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts]
            if not found:
                raise CLIError(f"folder {item!r} holds no image files "
                               f"({', '.join(sorted(IMAGE_EXTENSIONS))}).")
            paths += found
        elif os.path.exists(item):
            paths.append(item)
        else:
            matches = sorted(glob.glob(item))  # quoted patterns, or shells without globbing
            if not matches:
                raise CLIError(f"image {item!r} does not exist.")
            paths += matches
    return paths


_TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} \d\d:\d\d:\d\d"           # glog-style info / warning lines
    r"|E\d{4} .*(cuInit|cuda|CUDA)"             # probing for a GPU on a machine without one
    r"|To enable the following instructions:)"
)


def _import_tensorflow_quietly():
    """Import TensorFlow and Keras, dropping their C++ start-up chatter from stderr.

    TensorFlow writes oneDNN, CPU-feature and CUDA-probing log lines to file
    descriptor 2 before any Python logging is set up (``TF_CPP_MIN_LOG_LEVEL``
    does not reach them). They are captured here and replayed, less the
    known noise, so that real errors still show.
    """
    if os.environ.get("SKBOTTLENECK_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    import tempfile

    from ._keras import import_keras, import_tf

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr file descriptor (embedded use)
        import_tf(), import_keras()
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            tf = import_tf()
            import_keras()
            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            kept = [line for line in lines if line.strip() and not _TF_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


# ---------------------------------------------------------------- backbones
#: File names (globs) of the no-top ImageNet weights in the Keras cache,
#: from keras/src/applications/*.py (Keras 3).
_KERAS_NOTOP_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet101": "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet152": "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50_v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_resnet_v2": "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "xception": "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    # one file per input size (96, 128, 160, 192, 224; other sizes use 224's)
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_*_no_top.h5",
    "mobilenet_v3_small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    "mobilenet_v3_large": "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet169": "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "densenet201": "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
    **{f"efficientnet_b{i}": f"efficientnetb{i}_notop.h5" for i in range(8)},
    "efficientnet_v2_b0": "efficientnetv2-b0_notop.h5",
    "efficientnet_v2_s": "efficientnetv2-s_notop.h5",
    "convnext_tiny": "convnext_tiny_notop.h5",
}


def _keras_model_dirs():
    """Folders where Keras keeps downloaded weights (same rules as keras.config.keras_home)."""
    dirs = []
    if os.environ.get("KERAS_HOME"):
        dirs.append(os.path.join(os.environ["KERAS_HOME"], "models"))
    dirs.append(os.path.join(os.path.expanduser("~"), ".keras", "models"))
    dirs.append(os.path.join("/tmp", ".keras", "models"))  # Keras' fallback when ~ is read-only
    return dirs


def imagenet_weights_status(backbone):
    """``"bundled"``, ``"cached"`` (in the Keras cache), ``"download"`` or ``"unknown"``."""
    if backbone.offline_weights:
        return "bundled"
    pattern = _KERAS_NOTOP_FILES.get(backbone.name)
    if pattern is None:
        return "unknown"
    for d in _keras_model_dirs():
        if glob.glob(os.path.join(glob.escape(d), pattern)):
            return "cached"
    return "download"


def cmd_backbones(args):
    from .backbones import get_backbone, list_backbones

    rows = []
    for name in list_backbones():
        b = get_backbone(name)
        status = imagenet_weights_status(b)
        rows.append({"name": name, "default_size": b.default_size, "feature_dim": b.feature_dim,
                     "preprocessing": b.preprocessing, "imagenet_weights": status,
                     "imagenet_offline": status in ("bundled", "cached")})
    if args.format == "json":
        _echo(json.dumps(rows, indent=2))
        return EXIT_OK
    legend = {"bundled": "yes (bundled)", "cached": "yes (Keras cache)",
              "download": "no (download)", "unknown": "unknown"}
    table = [("BACKBONE", "SIZE", "FEATURES", "PREPROCESSING", "IMAGENET OFFLINE")]
    table += [(r["name"], str(r["default_size"]), str(r["feature_dim"]), r["preprocessing"],
               legend[r["imagenet_weights"]]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        _echo("  ".join(cell.ljust(w) if i in (0, 3, 4) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    _echo("\nSIZE: default input height and width. FEATURES: features per image with "
          "--pooling avg or max\n(with --pooling none, times the feature map's height x width). "
          "Without ImageNet weights\noffline: --weights none (random) or a .weights.h5/.keras file.")
    return EXIT_OK


# ------------------------------------------------------------------ extract
def _weights_arg(text):
    if text is None or text.lower() in ("none", "null", "random"):
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    if not os.path.isfile(text):
        raise CLIError(f"weights file {text!r} does not exist (--weights takes imagenet, none or a file).")
    return text


def _write_errors(path, failed):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows(failed)


def cmd_extract(args):
    from .backbones import get_backbone
    from .extraction import CNNFeatureTransformer
    from .images import ImageError

    if (args.image_dir is None) == (args.file_list is None):
        raise CLIError("give either IMAGE_DIR or --file-list FILE (exactly one).")
    try:
        get_backbone(args.backbone)
    except ValueError as e:
        raise CLIError(str(e)) from e
    weights = _weights_arg(args.weights)
    out = _check_writable_file(args.out, "feature store")
    errors_file = args.errors_file or out + ".errors.csv"
    if args.on_error == "skip":
        _check_writable_file(errors_file, "errors file")
    if args.image_dir is not None:
        paths, labels = _load_folder(args.image_dir)
    else:
        paths, labels = _read_file_list(args.file_list)
    cache_dir = None if args.no_cache else (args.cache_dir or "auto")
    if cache_dir not in (None, "auto"):
        _check_writable_dir(cache_dir, "cache folder")

    transformer = CNNFeatureTransformer(
        args.backbone, weights=weights, layer=args.layer,
        pooling=None if args.pooling == "none" else args.pooling,
        input_size=args.input_size, batch_size=args.batch_size, dtype=args.dtype,
        cache_dir=cache_dir, on_error=args.on_error, decode_threads=args.decode_threads,
        random_state=args.random_state, verbose=0 if args.quiet else (2 if args.verbose else 1),
    )
    _import_tensorflow_quietly()
    n_classes = "" if labels is None else f" in {len(np.unique(labels))} classes"
    if not args.quiet:
        _echo(f"{len(paths)} images{n_classes}; backbone {args.backbone}, "
              f"weights {args.weights}, writing {out}", file=sys.stderr)
    t0 = time.perf_counter()
    failed = []
    try:
        with warnings.catch_warnings():
            # skipped images are reported below, with the errors file
            warnings.filterwarnings("ignore", message=r"\d+ of \d+ images could not be read")
            store = transformer.extract(paths, labels, store=out, overwrite=args.overwrite)
        failed = list(getattr(transformer, "failed_", []) or [])
    except FileExistsError as e:
        message = str(e.strerror or e).replace("overwrite=True", "--overwrite")
        raise CLIError(message) from e
    except ImageError as e:
        failed = list(getattr(transformer, "failed_", []) or [])
        if args.on_error != "skip" or not failed:
            raise CLIError(f"{e} (--on-error skip leaves unreadable images out; rerunning keeps "
                           "the features already extracted)", EXIT_FAILURE) from e
        # extract() keeps the readable images; it raises only when there are none
        _write_errors(errors_file, failed)
        raise CLIError(f"none of the {len(paths)} images could be read; see {errors_file}",
                       EXIT_FAILURE) from None
    elapsed = time.perf_counter() - t0
    if failed:
        _write_errors(errors_file, failed)
        _echo(f"skbottleneck: warning: {len(failed)} unreadable images were left out; "
              f"listed in {errors_file}", file=sys.stderr)
    stats = getattr(transformer, "extraction_stats_", {}) or {}
    size = os.path.getsize(out) if os.path.exists(out) else 0
    detail = ""
    if stats:
        detail = (f" ({stats.get('n_extracted', 0)} through the CNN, "
                  f"{stats.get('n_cached', 0)} from the cache)")
    _echo(f"wrote {len(store)} images x {store.n_features} features ({args.dtype}) to {out} "
          f"[{_human_bytes(size)}] in {elapsed:.1f} s{detail}")
    return EXIT_OK


# -------------------------------------------------------------------- train
def transformer_from_store(store, weights=None):
    """Rebuild the :class:`CNNFeatureTransformer` that wrote ``store`` (unfitted).

    Uses the store's ``params`` metadata (the transformer's JSON-serialisable
    parameters) when present, else its fingerprint. ``weights`` gives the path
    of a weights file, which the fingerprint records only by checksum.
    """
    from .extraction import CNNFeatureTransformer

    meta = dict(getattr(store, "metadata", {}) or {})
    where = getattr(store, "path", store)
    params = None
    if meta.get("params"):
        try:
            params = json.loads(meta["params"])
        except (TypeError, ValueError):
            params = None
    try:
        fingerprint = json.loads(meta["fingerprint"])
    except (KeyError, TypeError, ValueError):
        raise CLIError(f"the feature store {where} has no model fingerprint in its metadata; "
                       "was it written by CNNFeatureTransformer.extract?") from None
    weights_id = fingerprint.get("weights")
    if params is None:
        params = {key: fingerprint.get(key) for key in ("backbone", "layer", "pooling", "dtype")}
        params["input_size"] = tuple(fingerprint["input_size"])
        params["mixed_precision"] = bool(fingerprint.get("mixed_precision", False))
        if isinstance(weights_id, str) and weights_id.startswith("imagenet"):
            params["weights"] = "imagenet"
        elif isinstance(weights_id, str) and weights_id.startswith("random:"):
            params["weights"] = None
            params["random_state"] = int(weights_id.split(":")[1])
        elif isinstance(weights_id, str) and weights_id.startswith("file:"):
            params["weights"] = "file"  # resolved below
        else:
            params["weights"] = weights_id
    else:
        params = {k: v for k, v in params.items() if k in CNNFeatureTransformer().get_params()}
        if isinstance(params.get("input_size"), list):
            params["input_size"] = tuple(params["input_size"])
    if isinstance(weights_id, str) and weights_id.startswith("model:"):
        raise CLIError(f"the features in {where} come from a user Keras model, which the store "
                       "does not hold; build the Pipeline in Python with that model instead.")
    if weights_id is None:
        raise CLIError(f"the features in {where} come from unseeded random weights, which cannot "
                       "be rebuilt to predict new images; extract again with --random-state.")
    if isinstance(weights_id, str) and weights_id.startswith("file:"):
        if weights is None:
            recorded = params.get("weights")
            if (isinstance(recorded, str) and recorded not in ("file", "imagenet")
                    and os.path.isfile(recorded)):
                weights = recorded
            else:
                raise CLIError(f"the features in {where} were extracted with a weights file "
                               f"(sha256 {weights_id[5:17]}...); give its path with --weights PATH.")
        params["weights"] = weights
    elif weights is not None:
        params["weights"] = weights
    params.update(verbose=0, on_error="raise", cache_dir="auto")
    return CNNFeatureTransformer(**params)


class StoreSubset:
    """Some rows of a :class:`~skbottleneck.FeatureStore`, seen as a store.

    Has the store interface the heads read (``len``, ``n_features``,
    ``labels``, ``read_rows``, ``iter_chunks``), so a head trains out of core
    on the training rows only, with the held-out rows never read.
    """

    _BLOCK_BYTES = 128 * 1024  # neighbouring rows read together when shuffling

    def __init__(self, store, rows):
        self.store = store
        self.rows = np.sort(np.asarray(rows, dtype=np.int64))
        self.n_features = store.n_features
        self.path = getattr(store, "path", None)
        self.metadata = getattr(store, "metadata", {})

    def __len__(self):
        return len(self.rows)

    @property
    def labels(self):
        labels = self.store.labels
        return None if labels is None else np.asarray(labels)[self.rows]

    @property
    def paths(self):
        return np.asarray(self.store.paths)[self.rows]

    def read_rows(self, indices, *, dtype=None):
        return self.store.read_rows(self.rows[np.asarray(indices, dtype=np.int64)], dtype=dtype)

    def iter_chunks(self, chunk_size=1024, *, shuffle=True, random_state=None, dtype=None):
        from sklearn.utils import check_random_state

        order = np.arange(len(self.rows))
        rng = check_random_state(random_state) if shuffle else None
        if shuffle:
            # deal blocks of neighbouring rows in random order, then shuffle within chunks
            block = max(1, min(chunk_size, self._BLOCK_BYTES // (4 * max(1, self.n_features))))
            starts = np.arange(0, len(order), block)
            order = np.concatenate([order[s:s + block] for s in rng.permutation(starts)]) \
                if len(starts) else order
        for start in range(0, len(order), chunk_size):
            idx = np.sort(order[start:start + chunk_size])
            X, y = self.read_rows(idx, dtype=dtype)
            if shuffle:
                perm = rng.permutation(len(idx))
                X, y = X[perm], (None if y is None else y[perm])
            yield X, y


def build_head(name, params=(), *, epochs=None, chunk_size=4096, random_state=0):
    """The classifier head ``name`` with ``params`` set (see ``skbottleneck train --help``)."""
    if name == "keras-mlp":
        from .keras_mlp import KerasMLPClassifier

        head = KerasMLPClassifier()
        defaults = {"random_state": random_state, "epochs": epochs, "verbose": 0,
                    "chunk_size": chunk_size}
    else:
        from sklearn.linear_model import SGDClassifier
        from sklearn.neural_network import MLPClassifier

        from .incremental import IncrementalClassifier

        estimator = {
            "logreg": lambda: SGDClassifier(loss="log_loss", random_state=random_state),
            "sgd": lambda: SGDClassifier(loss="hinge", random_state=random_state),
            "mlp": lambda: MLPClassifier(random_state=random_state),
        }[name]()
        head = IncrementalClassifier(estimator)
        defaults = {"chunk_size": chunk_size, "random_state": random_state, "epochs": epochs,
                    "verbose": 0}
    valid = head.get_params()
    head.set_params(**{k: v for k, v in defaults.items() if k in valid and v is not None})
    settable = {}
    for key, value in params:
        if key in valid:
            settable[key] = value
        elif f"estimator__{key}" in valid:
            settable[f"estimator__{key}"] = value
        else:
            names = sorted(k for k in valid if k != "estimator" and "__" not in k)
            names += sorted(k.split("__", 1)[1] for k in valid if k.startswith("estimator__"))
            raise CLIError(f"the {name} head has no parameter {key!r}; its parameters are: "
                           f"{', '.join(dict.fromkeys(names))}.")
    try:
        head.set_params(**settable)
        # check the values now rather than after minutes of loading
        for est in (head, getattr(head, "estimator", None)):
            if est is not None and hasattr(est, "_validate_params"):
                est._validate_params()
    except ValueError as e:
        raise CLIError(f"invalid --param for the {name} head: {e}") from e
    return head


def _fit_kwargs(head, labels):
    import inspect

    try:
        signature = inspect.signature(head.fit)
    except (TypeError, ValueError):
        return {}
    if "classes" in signature.parameters:
        return {"classes": np.unique(labels)}
    return {}


def cmd_train(args):
    import joblib
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    out = _check_writable_file(args.out, "model file")
    store = _open_store(args.store)
    labels = store.labels
    if labels is None:
        raise CLIError(f"the feature store {args.store!r} holds no labels; extract it from a "
                       "class-per-subfolder folder or a file list with labels.")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise CLIError(f"the feature store {args.store!r} holds a single class ({classes[0]!r}); "
                       "a classifier needs at least two.")
    # Fails early, before training, when the store cannot be predicted from images.
    weights = _weights_arg(args.weights) if args.weights else None
    transformer = transformer_from_store(store, weights=weights)
    head = build_head(args.head, args.param, epochs=args.epochs, chunk_size=args.chunk_size,
                      random_state=args.random_state)
    t0 = time.perf_counter()
    _import_tensorflow_quietly()
    transformer.fit(store)  # builds the CNN once; raises if the store is of another model
    rows = np.arange(len(labels))
    if args.val_fraction > 0:
        stratify = labels if counts.min() >= 2 else None
        n_val = max(len(classes) if stratify is not None else 1,
                    int(round(args.val_fraction * len(rows))))
        if n_val >= len(rows):
            raise CLIError(f"--val-fraction {args.val_fraction} leaves no rows to train on "
                           f"({len(rows)} rows in the store).")
        train_rows, val_rows = train_test_split(rows, test_size=n_val, stratify=stratify,
                                                random_state=args.random_state)
    else:
        train_rows, val_rows = rows, rows[:0]
    if not args.quiet:
        _echo(f"training a {args.head} head on {len(train_rows)} rows x {store.n_features} features "
              f"({len(classes)} classes), {len(val_rows)} rows held out", file=sys.stderr)
    data = StoreSubset(store, train_rows) if len(val_rows) else store
    head.fit(data, **_fit_kwargs(head, labels))
    fit_s = time.perf_counter() - t0
    val_accuracy = None
    if len(val_rows):
        correct = 0
        for X_chunk, y_chunk in StoreSubset(store, val_rows).iter_chunks(args.chunk_size, shuffle=False):
            correct += int(np.sum(np.asarray(head.predict(X_chunk)) == y_chunk))
        val_accuracy = correct / len(val_rows)
    model = Pipeline([("features", transformer), ("head", head)])
    tmp = out + ".tmp"
    joblib.dump(model, tmp)
    os.replace(tmp, out)
    if val_accuracy is not None:
        _echo(f"validation accuracy: {val_accuracy:.4f} ({len(val_rows)} held-out rows)")
    _echo(f"trained in {fit_s:.1f} s; saved the model (CNN features + {args.head} head) to {out}")
    return EXIT_OK


# ----------------------------------------------------------------- evaluate
def cmd_evaluate(args):
    from .report import report

    model = _load_model(args.model)
    out_dir = _check_writable_dir(args.report, "report folder")
    if os.path.isdir(args.data):
        X, y = _load_folder(args.data)
        features = _feature_step(model)
        if features is None:
            raise CLIError(f"the model in {args.model!r} does not start with a CNN feature "
                           "transformer, so it cannot read images; evaluate it on a feature store.")
        features.set_params(on_error=args.on_error, verbose=0 if args.quiet else 1)
    elif os.path.exists(args.data):
        X = _open_store(args.data)
        y = X.labels
        if y is None:
            raise CLIError(f"the feature store {args.data!r} holds no labels to evaluate against.")
    else:
        raise CLIError(f"{args.data!r} does not exist (expected a feature store or an image folder).")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = report(model, X, y, out_dir,
                         normalize=None if args.normalize == "none" else args.normalize)
    for w in caught:
        _echo(f"skbottleneck: warning: {w.message}", file=sys.stderr)
    failed = getattr(_feature_step(model), "failed_", None) if os.path.isdir(args.data) else None
    if failed:
        errors = os.path.join(out_dir, "errors.csv")
        _write_errors(errors, failed)
    width = max(len(c) for c in metrics["classes"])
    _echo(f"accuracy: {metrics['accuracy']:.4f} on {metrics['n_samples']} samples"
          + (f" ({metrics['n_skipped']} unreadable images skipped, see {errors})" if failed else ""))
    _echo(f"balanced accuracy: {metrics['balanced_accuracy']:.4f}")
    _echo("per-class accuracy:")
    for name, v in metrics["per_class"].items():
        acc = "-" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
        _echo(f"  {name:<{width}}  {acc}  ({v['support']} samples)")
    written = ", ".join(os.path.basename(p) for p in metrics["files"].values())
    _echo(f"report written to {out_dir}: {written}")
    return EXIT_OK


# ------------------------------------------------------------------ predict
def cmd_predict(args):
    model = _load_model(args.model)
    if args.out:
        _check_writable_file(args.out, "output file")
    paths = _list_images(args.images)
    features = _feature_step(model)
    if features is None:
        raise CLIError(f"the model in {args.model!r} does not start with a CNN feature transformer, "
                       "so it cannot read images.")
    features.set_params(on_error="skip", verbose=1 if args.verbose else 0)
    if args.batch_size:
        features.set_params(batch_size=args.batch_size)
    head = model[-1]
    classes = getattr(head, "classes_", None)
    if args.proba and not hasattr(head, "predict_proba"):
        raise CLIError(f"the head of {args.model!r} ({type(head).__name__}) gives no "
                       "probabilities; train a logreg, mlp or keras-mlp head for --proba.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failures are reported below, per image
        Xt = model[:-1].transform(np.asarray(paths, dtype=object))
    failed = dict(features.failed_ or [])
    kept = np.asarray(features.kept_)
    predictions = np.asarray(head.predict(Xt)) if len(kept) else np.empty(0)
    proba = np.asarray(head.predict_proba(Xt)) if args.proba and len(kept) else None
    rows = [{"path": p, "prediction": None, "error": failed.get(p)} for p in paths]
    for j, i in enumerate(kept):
        rows[i]["prediction"] = predictions[j].item() if hasattr(predictions[j], "item") else predictions[j]
        if proba is not None:
            rows[i]["proba"] = {str(c): float(v) for c, v in zip(classes, proba[j])}
    buffer = io.StringIO()
    if args.format == "json":
        json.dump(rows, buffer, indent=2)
        buffer.write("\n")
    else:
        writer = csv.writer(buffer, lineterminator="\n")
        proba_cols = [f"proba_{c}" for c in classes] if args.proba else []
        writer.writerow(["path", "prediction", *proba_cols, "error"])
        for row in rows:
            probs = ([f"{row['proba'][str(c)]:.6f}" if "proba" in row else "" for c in classes]
                     if args.proba else [])
            writer.writerow([row["path"], "" if row["prediction"] is None else row["prediction"],
                             *probs, row["error"] or ""])
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            f.write(buffer.getvalue())
    else:
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
    if failed:
        first = next(iter(failed.items()))
        _echo(f"skbottleneck: error: {len(failed)} of {len(paths)} images could not be read "
              f"(e.g. {first[0]}: {first[1]})", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


# -------------------------------------------------------------------- cache
def cmd_cache(args):
    from .store import cache_info, clear_cache, get_cache_dir

    cache_dir = get_cache_dir(args.cache_dir)
    if args.cache_dir and not os.path.isdir(cache_dir):
        raise CLIError(f"cache folder {args.cache_dir!r} does not exist.")
    if args.action == "clear":
        removed = clear_cache(cache_dir, backbone=args.backbone)
        what = f" of backbone {args.backbone}" if args.backbone else ""
        _echo(f"removed the cached features{what} of {len(removed)} models from {cache_dir}, "
              f"freeing {_human_bytes(sum(removed.values()))}")
        return EXIT_OK
    info = cache_info(cache_dir)
    if args.backbone:
        info = {k: v for k, v in info.items() if isinstance(v.get("fingerprint"), dict)
                and v["fingerprint"].get("backbone") == args.backbone}
    if args.format == "json":
        _echo(json.dumps({"cache_dir": cache_dir, "models": info}, indent=2, default=str))
        return EXIT_OK
    _echo(_format_cache_info(info, cache_dir))
    return EXIT_OK


def _format_cache_info(info, cache_dir):
    total = sum(v.get("bytes") or 0 for v in info.values())
    lines = [f"cache folder: {cache_dir}",
             f"{len(info)} models, {sum(v.get('n_entries') or 0 for v in info.values())} images, "
             f"{_human_bytes(total)}"]
    if not info:
        return "\n".join(lines)
    table = [("ID", "IMAGES", "FEATURES", "DISK", "MODEL")]
    for key, v in info.items():
        fp = v.get("fingerprint") if isinstance(v.get("fingerprint"), dict) else {}
        size = fp.get("input_size")
        size = "x".join(map(str, size)) if isinstance(size, (list, tuple)) else str(size or "?")
        model = (f"{fp.get('backbone', '?')} weights={fp.get('weights')} layer={fp.get('layer')} "
                 f"pooling={fp.get('pooling')} size={size} dtype={v.get('storage_dtype')}"
                 if fp else v.get("description", "?"))
        table.append((key, str(v.get("n_entries", 0)), str(v.get("n_features") or "?"),
                      _human_bytes(v.get("bytes") or 0), model))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines.append("")
    for r in table:
        lines.append("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]),
                                r[3].rjust(widths[3]), r[4]]))
    return "\n".join(lines)


# --------------------------------------------------------------------- main
_COMMANDS = {"backbones": cmd_backbones, "extract": cmd_extract, "train": cmd_train,
             "evaluate": cmd_evaluate, "predict": cmd_predict, "cache": cmd_cache}


def _error(message, code):
    message = " ".join(str(message).split()) or "unknown error"
    print(f"skbottleneck: error: {message}", file=sys.stderr, flush=True)
    return code


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"skbottleneck: warning: {message}", file=sys.stderr, flush=True)


def main(argv=None):
    """Run the ``skbottleneck`` command; returns its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success; see :data:`EXIT_CODES`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    show_traceback = "--traceback" in argv or os.environ.get("SKBOTTLENECK_TRACEBACK") == "1"
    argv = [a for a in argv if a != "--traceback"]  # accepted anywhere on the line
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        try:
            args = parser.parse_args(argv)
        except CLIError as e:
            return _error(e, e.code)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        hint = " (rerun the same command to resume; finished batches are kept)" if (
            argv and argv[0] == "extract") else ""
        return _error(f"interrupted{hint}", EXIT_INTERRUPTED)
    except BrokenPipeError:  # e.g. `skbottleneck predict ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:
        if show_traceback:
            import traceback

            traceback.print_exc()
        return _error(_describe(e), _exit_code(e))
    finally:
        warnings.showwarning = previous_showwarning


def _exit_code(exc):
    from .images import ImageError

    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, ImageError):
        return EXIT_FAILURE
    if isinstance(exc, (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return EXIT_USAGE
    if isinstance(exc, (ValueError, TypeError, KeyError)) and type(exc).__module__.split(".")[0] in (
            "builtins", "skbottleneck", "sklearn"):
        return EXIT_USAGE
    return EXIT_FAILURE


def _describe(exc):
    from .images import ImageError

    if isinstance(exc, (CLIError, ImageError)):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename!r} does not exist"
    name = type(exc).__name__
    if name == "WeightsUnavailableError":
        return (f"{exc} On the command line: --weights none --random-state 0, --weights FILE, "
                "or --backbone efficientnet_lite0.")
    known = ("ValueError", "TypeError", "WeightsUnavailableError", "InvalidParameterError",
             "NotFittedError", "OSError", "RuntimeError")
    text = str(exc) if name in known else f"{name}: {exc}"
    if name not in known:
        text += " (rerun with --traceback for details)"
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
