"""``skbottleneck train``: a classifier head on a feature store, saved as an image Pipeline.

``--head logreg`` picks its solver: the exact one (StandardScaler +
``LogisticRegression``, L-BFGS, on the training rows read into memory) when
they fit in the memory budget and nothing asks for the out-of-core loop
(``--epochs``, or a ``--param`` that only SGD has, such as ``alpha``);
otherwise SGD out of core, chunk by chunk. The policy is the library's:
:func:`~skbottleneck.heads.choose_head`.
"""

import sys
import time

import numpy as np
from sklearn.model_selection import train_test_split

from .._keras import import_tf
from .._model_files import save_model
from ..extraction import transformer_from_store
from ..chunks import chunk_rows
from ..heads import choose_head, fit_head, image_pipeline
from ..store import StoreSubset
from ._files import check_writable_file, open_store, weights_arg
from ._output import EXIT_OK, CLIError, echo

__all__ = ["cmd_train"]

# transformer_from_store speaks of parameters; the command line of flags
_API_TO_FLAGS = (("pass weights=PATH", "give its path with --weights PATH"),
                 ("weights=PATH", "--weights PATH"),
                 ("random_state", "--random-state"))
# choose_head speaks of parameters too
_HEAD_TO_FLAGS = (("memory_budget:", "--memory-budget:"), ("(epochs given)", "(--epochs given)"),
                  ("(parameter ", "(--param "))


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
    train_rows, val_rows = _split(labels, counts, args)
    data = StoreSubset(store, train_rows) if len(val_rows) else store
    try:
        head, solver, why = choose_head(
            data, args.head, args.param, epochs=args.epochs, chunk_size=args.chunk_size,
            memory_budget=args.memory_budget, random_state=args.random_state)
    except ValueError as e:
        raise CLIError(_flags(str(e), _HEAD_TO_FLAGS)) from e
    why = _flags(why, _HEAD_TO_FLAGS)
    t0 = time.perf_counter()
    import_tf(quiet=True)
    transformer.fit(store)  # builds the CNN once; raises if the store is of another model
    if not args.quiet:
        echo(f"training a {args.head} head on {len(train_rows)} rows x {store.n_features} features "
             f"({len(classes)} classes), {len(val_rows)} rows held out; solver: {why}",
             file=sys.stderr)
    fit_head(head, data)
    fit_s = time.perf_counter() - t0
    val_accuracy = None
    if len(val_rows):
        correct = 0
        rows = chunk_rows(args.chunk_size, store.n_features * store.dtype.itemsize)
        for X_chunk, y_chunk in StoreSubset(store, val_rows).iter_chunks(rows, shuffle=False):
            correct += int(np.sum(np.asarray(head.predict(X_chunk)) == y_chunk))
        val_accuracy = correct / len(val_rows)
    model = image_pipeline(transformer, head)
    fmt = save_model(model, out)
    if val_accuracy is not None:
        echo(f"validation accuracy: {val_accuracy:.4f} ({len(val_rows)} held-out rows)")
    kind = ("skops format: loading it runs no code" if fmt == "skops" else
            "a joblib pickle: loading it runs code, so load it only from a trusted source; "
            "name it .skops for a file that runs none")
    echo(f"trained in {fit_s:.1f} s; saved the model (CNN features + {args.head} head, {solver} "
         f"solver) to {out} "
         f"({kind})")
    return EXIT_OK


def _transformer_from_store(store, weights):
    try:
        return transformer_from_store(store, weights=weights)
    except ValueError as e:
        raise CLIError(_flags(str(e), _API_TO_FLAGS)) from e


def _flags(message, pairs):
    for api, flag in pairs:
        message = message.replace(api, flag)
    return message


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
