"""``skbottleneck train``: a classifier head on a feature store, saved as an image Pipeline."""

import inspect
import sys
import time

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from .._keras import import_tf
from .._model_files import save_model
from ..extraction import transformer_from_store
from ..chunks import chunk_rows
from ..heads import build_head
from ..store import StoreSubset
from ._files import check_writable_file, open_store, weights_arg
from ._output import EXIT_OK, CLIError, echo

__all__ = ["cmd_train"]

# transformer_from_store speaks of parameters; the command line of flags
_API_TO_FLAGS = (("pass weights=PATH", "give its path with --weights PATH"),
                 ("weights=PATH", "--weights PATH"),
                 ("random_state", "--random-state"))


def cmd_train(args):
    """Train on the store minus the held-out rows; print their accuracy; save the Pipeline."""
    out = check_writable_file(args.out, "model file")
    store = open_store(args.store)
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
    transformer = _transformer_from_store(store, weights_arg(args.weights) if args.weights else None)
    try:
        head = build_head(args.head, args.param, epochs=args.epochs, chunk_size=args.chunk_size,
                          random_state=args.random_state)
    except ValueError as e:
        raise CLIError(str(e)) from e
    t0 = time.perf_counter()
    import_tf(quiet=True)
    transformer.fit(store)  # builds the CNN once; raises if the store is of another model
    train_rows, val_rows = _split(labels, counts, args)
    if not args.quiet:
        echo(f"training a {args.head} head on {len(train_rows)} rows x {store.n_features} features "
             f"({len(classes)} classes), {len(val_rows)} rows held out", file=sys.stderr)
    data = StoreSubset(store, train_rows) if len(val_rows) else store
    head.fit(data, **_fit_kwargs(head, labels))
    fit_s = time.perf_counter() - t0
    val_accuracy = None
    if len(val_rows):
        correct = 0
        rows = chunk_rows(args.chunk_size, store.n_features * store.dtype.itemsize)
        for X_chunk, y_chunk in StoreSubset(store, val_rows).iter_chunks(rows, shuffle=False):
            correct += int(np.sum(np.asarray(head.predict(X_chunk)) == y_chunk))
        val_accuracy = correct / len(val_rows)
    model = Pipeline([("features", transformer), ("head", head)])
    fmt = save_model(model, out)
    if val_accuracy is not None:
        echo(f"validation accuracy: {val_accuracy:.4f} ({len(val_rows)} held-out rows)")
    kind = ("skops format: loading it runs no code" if fmt == "skops" else
            "a joblib pickle: loading it runs code, so load it only from a trusted source; "
            "name it .skops for a file that runs none")
    echo(f"trained in {fit_s:.1f} s; saved the model (CNN features + {args.head} head) to {out} "
         f"({kind})")
    return EXIT_OK


def _transformer_from_store(store, weights):
    try:
        return transformer_from_store(store, weights=weights)
    except ValueError as e:
        message = str(e)
        for api, flag in _API_TO_FLAGS:
            message = message.replace(api, flag)
        raise CLIError(message) from e


def _split(labels, counts, args):
    """``(train_rows, val_rows)``: a stratified hold-out of ``--val-fraction`` of the rows."""
    rows = np.arange(len(labels))
    if args.val_fraction == 0:
        return rows, rows[:0]
    stratify = labels if counts.min() >= 2 else None
    n_val = max(len(counts) if stratify is not None else 1,
                int(round(args.val_fraction * len(rows))))
    if n_val >= len(rows):
        raise CLIError(f"--val-fraction {args.val_fraction} leaves no rows to train on "
                       f"({len(rows)} rows in the store).")
    return train_test_split(rows, test_size=n_val, stratify=stratify,
                            random_state=args.random_state)


def _fit_kwargs(head, labels):
    try:
        signature = inspect.signature(head.fit)
    except (TypeError, ValueError):
        return {}
    if "classes" in signature.parameters:
        return {"classes": np.unique(labels)}
    return {}
