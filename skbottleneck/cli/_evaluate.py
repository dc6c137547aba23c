"""``skbottleneck evaluate`` and ``predict``: a saved model on a store, a folder or images."""

import csv
import io
import json
import os
import sys
import warnings

import numpy as np

from ..images import quiet_bomb_warnings
from ..report import report
from ._files import (
    check_writable_dir,
    check_writable_file,
    feature_step,
    find_images,
    load_folder,
    load_model,
    open_store,
    write_errors,
)
from ._output import EXIT_FAILURE, EXIT_OK, CLIError, echo

__all__ = ["cmd_evaluate", "cmd_predict"]


def cmd_evaluate(args):
    """Write the report folder of the model on a store or an image folder; print its summary."""
    model = load_model(args.model)
    out_dir = check_writable_dir(args.report, "report folder")
    if os.path.isdir(args.data):
        X, y = load_folder(args.data)
        features = feature_step(model)
        if features is None:
            raise CLIError(f"the model in {args.model!r} does not start with a CNN feature "
                           "transformer, so it cannot read images; evaluate it on a feature store.")
        features.set_params(on_error=args.on_error, verbose=0 if args.quiet else 1)
    elif os.path.exists(args.data):
        X = open_store(args.data)
        y = X.labels
        if y is None:
            raise CLIError(f"the feature store {args.data!r} holds no labels to evaluate against.")
    else:
        raise CLIError(f"{args.data!r} does not exist (expected a feature store or an image folder).")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_bomb_warnings():  # the image is reported as unreadable, with the reason
            metrics = report(model, X, y, out_dir,
                             normalize=None if args.normalize == "none" else args.normalize,
                             max_thumbnails=args.thumbnails)
    for w in caught:
        echo(f"skbottleneck: warning: {w.message}", file=sys.stderr)
    if args.train_store:
        _warn_of_leaks(model, X, args)
    skipped = metrics["skipped_images"]
    if skipped:
        errors = os.path.join(out_dir, "errors.csv")
        write_errors(errors, skipped)
    width = max(len(c) for c in metrics["classes"])
    echo(f"accuracy: {metrics['accuracy']:.4f} on {metrics['n_samples']} samples"
         + (f" ({metrics['n_skipped']} unreadable images skipped, see {errors})" if skipped else ""))
    echo(f"balanced accuracy: {metrics['balanced_accuracy']:.4f}")
    echo("per-class accuracy:")
    for name, v in metrics["per_class"].items():
        acc = "-" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
        echo(f"  {name:<{width}}  {acc}  ({v['support']} samples)")
    written = ", ".join(os.path.basename(p) for p in metrics["files"].values())
    echo(f"report written to {out_dir}: {written}")
    return EXIT_OK


def _warn_of_leaks(model, X, args):
    """Warn when test images have a near-copy in the training store (``--train-store``)."""
    from ..similarity import nearest_rows

    train = open_store(args.train_store)
    if hasattr(X, "read_rows"):  # a store: its features as stored
        n_views = int(getattr(X, "n_views", 1) or 1)
        rows = np.arange(len(X) // n_views) * n_views
        Q, paths = X.read_rows(rows, dtype=np.float32)[0], np.asarray(X.paths)[rows]
    else:  # image files: their features again (the feature cache has them)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = feature_step(model).set_params(verbose=0).extract(np.asarray(X))
        kept = np.arange(len(X)) if result.kept is None else np.asarray(result.kept)
        Q, paths = np.asarray(result.features, dtype=np.float32), np.asarray(X)[kept]
    if Q.shape[1] != train.n_features:
        raise CLIError(f"the training store {args.train_store!r} holds {train.n_features} "
                       f"features per image; the test images have {Q.shape[1]}: extract both "
                       "with the model's CNN.")
    if not len(Q):
        return
    indices, distances, _, _ = nearest_rows(train, Q, 1)
    leaked = np.flatnonzero(distances[:, 0] <= args.duplicate_threshold)
    if len(leaked):
        first = leaked[np.argmin(distances[leaked, 0])]
        echo(f"skbottleneck: warning: {len(leaked)} of {len(Q)} test images have a near-copy in "
             f"the training store {args.train_store} (cosine distance <= "
             f"{args.duplicate_threshold:g}), e.g. {paths[first]} ~ "
             f"{train.paths[indices[first, 0]]} ({distances[first, 0]:.4f}): the scores may be "
             f"inflated. `skbottleneck duplicates {args.data} {args.train_store}` lists them.",
             file=sys.stderr)


def cmd_predict(args):
    """Print (or write) the prediction of every image; exit 1 if some could not be read."""
    model = load_model(args.model)
    if args.out:
        check_writable_file(args.out, "output file")
    paths = find_images(args.images)
    features = feature_step(model)
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
        result = features.extract(np.asarray(paths, dtype=object))
    failed = dict(result.failed)
    kept = np.asarray(result.kept)
    Xt = model[1:-1].transform(result.features) if len(model) > 2 and len(kept) else result.features
    predictions = np.asarray(head.predict(Xt)) if len(kept) else np.empty(0)
    proba = np.asarray(head.predict_proba(Xt)) if args.proba and len(kept) else None
    rows = [{"path": p, "prediction": None, "error": failed.get(p)} for p in paths]
    for j, i in enumerate(kept):
        rows[i]["prediction"] = predictions[j].item() if hasattr(predictions[j], "item") else predictions[j]
        if proba is not None:
            rows[i]["proba"] = {str(c): float(v) for c, v in zip(classes, proba[j])}
    _write_predictions(rows, classes, args)
    if failed:
        first = next(iter(failed.items()))
        echo(f"skbottleneck: error: {len(failed)} of {len(paths)} images could not be read "
             f"(e.g. {first[0]}: {first[1]})", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _write_predictions(rows, classes, args):
    """Write ``rows`` as CSV or JSON to ``--out`` or stdout."""
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
