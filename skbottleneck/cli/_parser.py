"""The ``argparse`` parser of the ``skbottleneck`` command and its argument types.

A usage error raises :class:`CLIError` (one line, exit status 2) instead of
argparse's own exit, so that every error of the command reads the same.
"""

import argparse
import ast

from .. import __version__
from ..heads import HEADS
from ._output import EXIT_SUMMARY, EXIT_USAGE, CLIError

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors raise :class:`CLIError`."""

    def error(self, message):
        hint = f" (see '{self.prog} --help')"
        raise CLIError(f"{message}{hint}", EXIT_USAGE)


_MODEL_FILES = ("model files: a .skops file (skops format) runs no code when it is loaded: "
                "it is refused if it holds any type but skbottleneck's models, scikit-learn "
                "estimators and NumPy arrays. A .joblib file (or any other name) is a pickle: "
                "loading it runs whatever code it holds, so load only model files from a "
                "source you trust.")
_MODEL_HELP = ("model file written by `skbottleneck train`: .skops (runs no code) or .joblib "
               "(a pickle: runs code when loaded; only from a trusted source)")


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


def _chunk_size(text):
    """An int (rows), "auto", or a byte budget such as "64MiB"."""
    from ..chunks import parse_bytes

    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        parse_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected a number of rows, a size such as 64MiB, or auto; got {text!r}") from e
    return text


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text!r}")
    return value


def _distance(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"expected a cosine distance in [0, 2]; got {text!r}")
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
        epilog="exit status:\n" + "\n".join(f"  {k:<4} {v}" for k, v in EXIT_SUMMARY.items())
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
                   help="folder with one subfolder of images per class (local or a URL: "
                        "s3://bucket/train/), a table of images (.csv, .parquet), or a tar "
                        "shard in the WebDataset layout (.tar; a pattern such as "
                        "'shard-*.tar' for several)")
    p.add_argument("--path-column", default="path", metavar="NAME",
                   help="a table's column of image paths (default: path)")
    p.add_argument("--label-column", metavar="NAME",
                   help="a table's column of labels (default: label, when the table has one)")
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
    p.add_argument("--pooling", choices=("auto", "avg", "max", "cls", "cls+avg", "none"),
                   default="auto",
                   help="global pooling of the feature map; 'none' keeps the whole flattened map; "
                        "'auto' (default): the backbone's own (avg for a CNN, cls for CLIP/SigLIP, "
                        "cls+avg for DINOv2)")
    p.add_argument("--input-size", type=_input_size, metavar="N|HxW",
                   help="resize images to this size (default: the backbone's)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="dtype of the stored features (float16 halves the disk space)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--runtime", choices=("auto", "tensorflow", "openvino"), default="auto",
                   help="what runs the CNN: 'openvino' needs pip install 'skbottleneck[openvino]'; "
                        "'auto' (default) picks it where it was checked to give TensorFlow's "
                        "features, TensorFlow otherwise")
    p.add_argument("--precision", choices=("float32", "int8"),
                   help="float32 (default) or 'int8': 'int8' quantises the CNN (OpenVINO + NNCF; measured 2-2.7x TensorFlow's "
                        "transform) calibrated on 64 "
                        "of these images: run it on the training images, then give that store "
                        "to --calibration-store when extracting the test images. int8 features "
                        "are their own feature space (a head of one precision is refused on the "
                        "other) and cost accuracy: see the docs' performance page")
    p.add_argument("--calibration-store", metavar="STORE",
                   help="extract with the model of STORE (an int8 store of the training images: "
                        "its backbone, layer, pooling, input size and calibration), so that "
                        "these images get features in its feature space")
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
    # what --calibration-store takes from its store: a flag moved off its default is refused
    p.set_defaults(model_defaults={dest: p.get_default(dest) for dest in (
        "backbone", "weights", "layer", "pooling", "input_size", "dtype", "random_state")})
    p.add_argument("--no-wait", action="store_true",
                   help="fail at once (exit status 1) if another process is writing the same "
                        "store; by default extract waits for it to finish, then resumes or "
                        "returns at once")
    p.add_argument("--decode-threads", type=_positive_int, metavar="N")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true", help="also print per-stage timings")

    # train
    p = sub.add_parser("train", help="train a classifier head on a feature store, out of core",
                       description="Train a classifier head on the features of a store, reading "
                                   "it in chunks (it may be larger than memory), print the "
                                   "accuracy on held-out rows, and save a scikit-learn Pipeline "
                                   "[CNN features, head] that predicts from image files.",
                       epilog=_MODEL_FILES)
    p.add_argument("store", metavar="STORE", help="feature store written by `skbottleneck extract`")
    p.add_argument("--head", choices=HEADS, default="logreg",
                   help="logreg: logistic regression (exact L-BFGS in memory when the rows fit "
                        "the --memory-budget, else SGD with log loss out of core); sgd: linear SVM "
                        "(SGD, hinge loss); mlp: scikit-learn MLPClassifier; keras-mlp: Keras dense "
                        "head. Default: logreg")
    p.add_argument("--param", "-p", type=_param, action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the head, e.g. -p alpha=1e-4 -p hidden_layer_sizes=(256,) "
                        "(repeatable; values are Python literals)")
    p.add_argument("--epochs", type=_positive_int, help="passes over the training rows")
    p.add_argument("--val-fraction", type=_fraction, default=0.2,
                   help="fraction of the rows held out to measure accuracy (stratified; default 0.2; "
                        "0 trains on all rows)")
    p.add_argument("--chunk-size", type=_chunk_size, default="auto",
                   help="rows read at a time (an int), or a memory budget such as 64MiB; "
                        "auto: 1,024 rows, fewer when that would pass 64 MiB (default)")
    p.add_argument("--memory-budget", default="auto", metavar="SIZE",
                   help="memory the exact logreg solver may use, such as 2GiB (auto: a quarter "
                        "of the memory available; default); over it, logreg trains out of core")
    p.add_argument("--random-state", type=int, default=0,
                   help="seed of the split, the shuffling and the head")
    p.add_argument("--weights", metavar="PATH",
                   help="the weights file the features were extracted with, when it was a file "
                        "(the store records only its checksum)")
    p.add_argument("--out", "-o", required=True, metavar="MODEL",
                   help="model file to write: model.skops (recommended: loading it runs no "
                        "code) or model.joblib (a pickle: loading it runs code)")
    p.add_argument("--quiet", "-q", action="store_true")

    # evaluate
    p = sub.add_parser("evaluate", help="classification report, confusion matrix and metrics of a model",
                       description="Evaluate a saved model on a feature store (fast: no CNN) or on "
                                   "a class-per-subfolder image folder, and write a report folder: "
                                   "report.html (the mistakes as pictures, opens offline), "
                                   "classification_report.txt, metrics.json, predictions.csv, "
                                   "confusion_matrix.png (and learning_curve.png for Keras heads).",
                       epilog=_MODEL_FILES)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("data", metavar="STORE|IMAGE_DIR")
    p.add_argument("--report", "-r", default="report", metavar="DIR", help="report folder (default: report)")
    p.add_argument("--normalize", choices=("true", "pred", "all", "none"), default="true",
                   help="normalisation of the second confusion-matrix panel "
                        "(default: true, i.e. per true class)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="with an image folder: stop at an unreadable image, or skip it")
    p.add_argument("--train-store", metavar="STORE",
                   help="the feature store the model was trained on: warn when test images "
                        "have a near-copy there (train/test leakage; a model file does not "
                        "record its training store)")
    p.add_argument("--duplicate-threshold", type=_distance, default=0.1, metavar="D",
                   help="largest cosine distance of a near-copy for --train-store (default: 0.1)")
    p.add_argument("--thumbnails", type=_positive_int, default=8, metavar="N",
                   help="most pictures per section of report.html (default: 8)")
    p.add_argument("--quiet", "-q", action="store_true")

    # predict
    p = sub.add_parser("predict", help="predict the class of images",
                       description="Predict the class of image files (folders are searched "
                                   "recursively for images). Unreadable images get an empty "
                                   "prediction and an error message; the exit status is then 1.",
                       epilog=_MODEL_FILES)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE|IMAGE_DIR")
    p.add_argument("--proba", action="store_true", help="also print the probability of every class")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--out", "-o", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--verbose", "-v", action="store_true", help="progress bar on stderr")

    # similar
    p = sub.add_parser("similar", help="find the stored images most similar to query images",
                       description="Find the images of a feature store nearest each query image "
                                   "by cosine distance between their CNN features (the query "
                                   "images go through the store's own model, rebuilt from its "
                                   "metadata). Folders are searched recursively for images. A "
                                   "store with an index beside it (`skbottleneck index`) is "
                                   "searched through it, the candidates ranked again by their "
                                   "exact features; without one, a store whose features take "
                                   "more than 256 MiB is read in chunks (bounded memory). Unreadable "
                                   "query images get an error message; the exit status is then 1.")
    p.add_argument("store", metavar="STORE", help="feature store written by `skbottleneck extract`")
    p.add_argument("images", nargs="*", metavar="IMAGE|IMAGE_DIR", help="query images")
    p.add_argument("--text", action="append", metavar="TEXT",
                   help="a text query instead of images (repeatable), for a store of an "
                        "image-text model's features (CLIP, SigLIP)")
    p.add_argument("-k", type=_positive_int, default=5, metavar="K",
                   help="stored images to list per query, nearest first (default: 5)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--method", choices=("auto", "in_memory", "streaming"), default="auto",
                   help="in_memory: scikit-learn's NearestNeighbors on the features read into "
                        "memory; streaming: read the store in chunks, keeping the k best; auto: "
                        "in memory when the features take at most 256 MiB (default)")
    p.add_argument("--chunk-size", type=_chunk_size, default="auto",
                   help="rows read at a time when streaming (an int), or a memory budget such "
                        "as 64MiB; auto: 1,024 rows, fewer when that would pass 64 MiB (default)")
    p.add_argument("--weights", metavar="PATH",
                   help="the weights file the features were extracted with, when it was a file "
                        "(the store records only its checksum)")
    p.add_argument("--exact", action="store_true",
                   help="scan every stored image even when the store has an index "
                        "(`skbottleneck index`)")
    p.add_argument("--html", metavar="SHEET.html",
                   help="also write a contact sheet: each query image beside its neighbours, "
                        "with distances and labels (one file, opens offline)")

    # index
    p = sub.add_parser("index", help="build the approximate similarity index beside a store",
                       description="Build an approximate index (faiss) of the images of a feature "
                                   "store, out of core, in STORE.index/ beside it; `similar` and "
                                   "`duplicates` then use it. Run again after appending images "
                                   "to the store: only the new ones are added. An index of a "
                                   "store whose rows changed is refused: rebuild it.")
    p.add_argument("store", metavar="STORE", help="feature store written by `skbottleneck extract`")
    p.add_argument("--factory", default="auto",
                   help="faiss index_factory string, e.g. IVF1024,PQ128x4fs or Flat; auto: Flat "
                        "under 20,000 images, else IVF with ~sqrt(n) lists + 4-bit PQ (default)")
    p.add_argument("--nprobe", type=_positive_int, help="IVF lists searched per query")
    p.add_argument("--sample-size", type=_positive_int, default=65536,
                   help="rows the index is trained on (default: 65536)")
    p.add_argument("--rebuild", action="store_true", help="build from scratch")
    p.add_argument("--quiet", "-q", action="store_true")

    # duplicates
    p = sub.add_parser("duplicates", help="near-identical images in a store, or copied across two",
                       description="List groups of near-identical images (re-saved, resized, "
                                   "slightly cropped copies) within STORE; with OTHER_STORE, the "
                                   "images of STORE (e.g. a test set) that have a near-copy in "
                                   "OTHER_STORE (e.g. the training set). Uses the index of the "
                                   "searched store when it has one.")
    p.add_argument("store", metavar="STORE", help="feature store written by `skbottleneck extract`")
    p.add_argument("other", metavar="OTHER_STORE", nargs="?",
                   help="a store of the same model to look for copies in")
    p.add_argument("--threshold", "-t", type=_distance, default=0.1, metavar="D",
                   help="largest cosine distance between copies (default: 0.1)")
    p.add_argument("-k", type=_positive_int, default=10, metavar="K",
                   help="copies looked for per image (default: 10)")
    p.add_argument("--exact", action="store_true", help="scan exactly even with an index")
    p.add_argument("--format", choices=("table", "json"), default="table")

    # export
    p = sub.add_parser("export", help="write a feature store to Parquet or NumPy (.npy)",
                       description="Write a feature store to a Parquet file (columns key, path, "
                                   "label, features as a fixed-size list of float32, or float16 "
                                   "as stored) or a .npy (labels beside it in NAME.labels.npy), "
                                   "one row per stored image in store order, a chunk at a time; "
                                   "the file appears whole (temporary name, then rename).")
    p.add_argument("store", metavar="STORE", help="feature store written by `skbottleneck extract`")
    p.add_argument("--to", required=True, metavar="FILE.parquet|FILE.npy",
                   help="the file to write; its suffix picks the format")
    p.add_argument("--chunk-size", type=_chunk_size, default=None,
                   help="rows written at a time (an int), or their size such as 16MiB "
                        "(default: 16MiB for Parquet, one row group; 64MiB for .npy)")

    # cache
    p = sub.add_parser("cache", help="show or clear the feature cache",
                       description="Show the size of the feature cache per model, or clear it.")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--backbone", help="only the features of this backbone")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder (default: $SKBOTTLENECK_CACHE_DIR or the user cache)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    return parser

