"""The evaluation report: predict a labelled set, write metrics, tables, figures and a page.

See :mod:`skbottleneck.report` for the files :func:`report` writes.
"""

import csv
import json
import numbers
import os
import warnings

import numpy as np

from ..chunks import is_row_source
from ._figures import history_of, import_matplotlib, plot_confusion_matrix, plot_learning_curve
from ._html import write_evaluation_html

__all__ = ["report", "predict_labels"]

_NORMALIZE_OPTIONS = ("true", "pred", "all", None)


# --------------------------------------------------------------- prediction
def _split_pipeline(model):
    """``(feature_step, rest)`` of a Pipeline whose first step accepts stores, else ``(None, model)``."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) < 2:
        return None, model
    first = steps[0][1]
    if hasattr(first, "extract") and hasattr(first, "n_features_out_"):
        return first, model[1:]
    return None, model


def predict_labels(model, X, *, chunk_size=4096):
    """Predict ``X`` with ``model``, reading a feature store chunk by chunk.

    Parameters
    ----------
    model : fitted classifier
        Any scikit-learn classifier, typically a ``Pipeline`` whose first step
        is a :class:`~skbottleneck.CNNFeatureTransformer`.
    X : sequence of image paths, array of shape (n_samples, n_features) or FeatureStore
        What to predict. A store is checked against the pipeline's feature
        transformer (same backbone, weights, layer, pooling, size) and read
        in chunks of ``chunk_size`` rows, so it may be larger than memory.
    chunk_size : int, default=4096
        Rows per chunk when ``X`` is a store.

    Returns
    -------
    y_pred : ndarray of shape (n_kept,)
        Predicted labels.
    kept : ndarray of int
        Indices of the samples of ``X`` that were predicted: all of them,
        except images skipped by a transformer with ``on_error="skip"``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skbottleneck.report import predict_labels
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> y_pred, kept = predict_labels(LogisticRegression().fit(X, y), X)
    >>> y_pred.tolist(), kept.tolist()
    ([0, 0, 1, 1], [0, 1, 2, 3])
    """
    y_pred, kept, _, _ = _predict(model, X, chunk_size)
    return y_pred, kept


def _predict(model, X, chunk_size, scores=False):
    """``(y_pred, kept, skipped, scores)``: :func:`predict_labels`, the skipped images, the scores.

    ``skipped`` holds the (path, reason) of the images that could not be
    read. Image paths go through the pipeline's feature step with
    ``extract``, whose result says which images were kept; the rest of the
    pipeline predicts from its features. With ``scores=True``, ``scores``
    is :func:`_scores` of the same rows (else None).
    """
    features, rest = _split_pipeline(model)
    kind = _score_kind(model) if scores else None
    if is_row_source(X):
        if features is not None:
            features.transform(X)  # raises if the store holds another model's features
        parts, score_parts = [], []
        for X_chunk, _ in X.iter_chunks(chunk_size, shuffle=False):
            parts.append(np.asarray(rest.predict(X_chunk)))
            if kind is not None:
                score_parts.append(_score_matrix(rest, X_chunk, kind))
        y_pred = np.concatenate(parts) if parts else np.empty(0)
        matrix = np.concatenate(score_parts) if score_parts else None
        return y_pred, np.arange(len(X)), [], _scores(model, kind, matrix, scores)
    if features is None:
        y_pred = np.asarray(model.predict(X))
        matrix = _score_matrix(model, X, kind) if kind is not None and len(y_pred) else None
        return y_pred, np.arange(len(y_pred)), [], _scores(model, kind, matrix, scores)
    with warnings.catch_warnings():
        # warned below, once, by the caller's name
        warnings.filterwarnings("ignore", message=r"\d+ of \d+ images could not be read")
        result = features.extract(X)
    skipped = [(os.fspath(path), reason) for path, reason in result.failed]
    if skipped:
        warnings.warn(
            f"{len(skipped)} of {len(X)} images could not be read and were left out: "
            f"{skipped[0][0]}: {skipped[0][1]}" + (" ..." if len(skipped) > 1 else ""),
            UserWarning, stacklevel=3)
    kept = np.asarray(result.kept)
    y_pred = np.asarray(rest.predict(result.features))
    matrix = _score_matrix(rest, result.features, kind) if kind is not None and len(kept) else None
    return y_pred, kept, skipped, _scores(model, kind, matrix, scores)


def _score_kind(model):
    """``"probability"``, ``"decision function"`` or None: what the model can score classes with."""
    if hasattr(model, "predict_proba"):
        return "probability"
    if hasattr(model, "decision_function"):
        return "decision function"
    return None


def _score_matrix(est, X, kind):
    """Per-class scores of ``X``, shape (n, n_classes): binary decision values made two columns."""
    if kind == "probability":
        return np.asarray(est.predict_proba(X), dtype=float)
    values = np.asarray(est.decision_function(X), dtype=float)
    return np.c_[-values, values] if values.ndim == 1 else values


def _scores(model, kind, matrix, wanted):
    """``{"kind", "classes", "values"}`` (values: rows of ``matrix``) or None when not ``wanted``."""
    if not wanted:
        return None
    classes = getattr(model, "classes_", None)
    if kind is None or matrix is None or classes is None:
        return {"kind": kind if matrix is not None else None, "classes": None, "values": None}
    return {"kind": kind, "classes": list(np.asarray(classes).tolist()), "values": matrix}


# ------------------------------------------------------------------ metrics
def _class_names(labels):
    return [str(c) for c in labels]


def _metrics(y_true, y_pred, labels):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    cm = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {}
    for i, name in enumerate(_class_names(labels)):
        n = int(cm[i].sum())
        per_class[name] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            # fraction of this class's samples predicted correctly
            "accuracy": float(cm[i, i] / n) if n else None,
        }
    return {
        "n_samples": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # mean recall over the classes present (sklearn's balanced_accuracy_score)
        "balanced_accuracy": float(np.mean([v["accuracy"] for v in per_class.values()
                                            if v["accuracy"] is not None])) if len(y_true) else None,
        "macro_f1": float(np.mean(f1)) if len(f1) else None,
        "classes": _class_names(labels),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_axes": "rows: true class, columns: predicted class",
    }



# ------------------------------------------------------------------- report
def _sample_names(X, kept):
    if is_row_source(X):
        paths = getattr(X, "paths", None)
        return None if paths is None else [str(p) for p in np.asarray(paths)[kept]]
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in "fiub":
        return None
    try:
        arr = np.asarray(X, dtype=object)
    except Exception:
        return None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or not all(isinstance(p, (str, os.PathLike)) for p in arr[:1]):
        return None
    return [os.fspath(p) for p in arr[kept]]


def report(model, X, y=None, out_dir="report", *, normalize="true", labels=None,
           plots="auto", title=None, chunk_size=4096, html=True, max_thumbnails=8,
           thumbnail_size=128):
    """Evaluate a fitted classifier on labelled data and write a report folder.

    Parameters
    ----------
    model : fitted classifier
        A scikit-learn classifier or ``Pipeline``, e.g. the one saved by
        ``skbottleneck train``: ``[("features", CNNFeatureTransformer), ("head", ...)]``.
    X : sequence of image paths, array of shape (n_samples, n_features) or FeatureStore
        Samples to predict. A :class:`~skbottleneck.FeatureStore` is read in
        chunks (it may be larger than memory) and checked against the
        pipeline's feature transformer.
    y : array-like of shape (n_samples,), default=None
        True labels. ``None`` takes the labels of the store ``X``.
    out_dir : str or path-like, default="report"
        Folder to write into (created if needed; existing report files are replaced).
    normalize : {"true", "pred", "all"} or None, default="true"
        Normalisation of the second confusion-matrix panel: over the true
        class (rows sum to 1: per-class recall on the diagonal), the
        predicted class (columns sum to 1), or all samples. ``None`` draws
        the counts only.
    labels : array-like, default=None
        Classes in the order of the matrix axes; default: ``model.classes_``
        when it has them, else the sorted union of true and predicted labels.
    plots : {"auto", True, False}, default="auto"
        Draw the PNG figures. ``"auto"`` draws them when matplotlib is
        installed and warns otherwise; ``True`` raises ``ImportError``
        without matplotlib.
    title : str, default=None
        Title written on the figures and at the top of the text report.
    chunk_size : int, default=4096
        Rows per chunk when ``X`` is a store.
    html : bool, default=True
        Also write ``report.html``: one page that opens offline (no
        JavaScript, no network, thumbnails embedded) with the metrics, the
        confusion matrix, per-class precision and recall, and the most
        confident mistakes of each class and of each confusion pair as
        pictures, with their true and predicted labels, probabilities (or
        decision scores) and paths.
    max_thumbnails : int, default=8
        Most pictures per section of ``report.html``, so that the page stays
        small for a large test set (the other mistakes are counted there and
        listed in ``predictions.csv``).
    thumbnail_size : int, default=128
        Longest side of a picture in ``report.html``, in pixels.

    Returns
    -------
    metrics : dict
        What ``metrics.json`` holds: ``accuracy``, ``balanced_accuracy``,
        ``macro_f1``, ``n_samples``, ``classes``, ``per_class`` (precision,
        recall, f1, support and accuracy, the fraction of that class's
        samples predicted correctly), ``confusion_matrix`` (rows: true,
        columns: predicted), ``n_skipped`` and ``skipped_images`` (the
        ``[path, reason]`` of the images that could not be read, with a
        feature transformer set to ``on_error="skip"``) and ``files`` (what
        was written).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skbottleneck.report import report
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.normal(0, 1, (20, 3)), rng.normal(3, 1, (20, 3))]
    >>> y = np.array(["cat"] * 20 + ["dog"] * 20)
    >>> metrics = report(LogisticRegression().fit(X, y), X, y, tmp_dir / "report")
    >>> metrics["accuracy"], metrics["per_class"]["dog"]["support"]
    (1.0, 20)
    >>> sorted(p.name for p in (tmp_dir / "report").iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['classification_report.txt', 'confusion_matrix.png', 'metrics.json', 'predictions.csv',
     'report.html']
    """
    from sklearn.metrics import classification_report

    if normalize not in _NORMALIZE_OPTIONS:
        raise ValueError(
            f"The 'normalize' parameter of report must be one of {_NORMALIZE_OPTIONS}. "
            f"Got {normalize!r} instead."
        )
    if plots not in ("auto", True, False):
        raise ValueError(f"The 'plots' parameter of report must be 'auto', True or False. "
                         f"Got {plots!r} instead.")
    for name, value in (("max_thumbnails", max_thumbnails), ("thumbnail_size", thumbnail_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"The '{name}' parameter of report must be an int >= 1. "
                             f"Got {value!r} instead.")
    from ..feature_space import check_feature_space

    check_feature_space(model, X)  # a head of one feature space on features of another
    if y is None:
        if not is_row_source(X):
            raise ValueError("report needs the true labels y (or a FeatureStore X that holds labels).")
        y = X.labels
    if y is None:
        raise ValueError(f"The FeatureStore {getattr(X, 'path', X)!s} holds no labels; pass y.")
    y = np.asarray(y)
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X and y must have the same length; got {n} samples and {len(y)} labels.")
    matplotlib = import_matplotlib(plots)

    y_pred, kept, skipped, scores = _predict(model, X, chunk_size, scores=bool(html))
    y_true = y[kept]
    if y_pred.dtype.kind != y_true.dtype.kind and y_true.dtype.kind in "US":
        y_pred = y_pred.astype(str)

    if labels is None:
        classes = getattr(model, "classes_", None)
        if classes is not None:
            extra = sorted(set(np.unique(y_true).tolist()) - set(np.asarray(classes).tolist()), key=str)
            labels = list(np.asarray(classes).tolist()) + extra
        else:
            labels = sorted(set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist()), key=str)
    labels = list(labels)
    names = _class_names(labels)

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    metrics = _metrics(y_true, y_pred, labels)
    n_skipped = n - len(kept)
    metrics["n_skipped"] = int(n_skipped)
    metrics["skipped_images"] = [[path, reason] for path, reason in skipped]
    files = {}

    text = classification_report(y_true, y_pred, labels=labels, target_names=names,
                                 digits=3, zero_division=0)
    header = (title + "\n\n") if title else ""
    header += f"{metrics['n_samples']} samples, accuracy {metrics['accuracy']:.4f}"
    if n_skipped:
        header += f" ({n_skipped} unreadable images skipped)"
    per_class = "\n".join(
        f"  {name:>{max(map(len, names))}}  {v['accuracy']:.3f}  ({v['support']} samples)"
        if v["accuracy"] is not None else f"  {name}  -  (no samples)"
        for name, v in metrics["per_class"].items()
    )
    cm_text = _format_matrix(np.asarray(metrics["confusion_matrix"]), names)
    files["classification_report"] = os.path.join(out_dir, "classification_report.txt")
    with open(files["classification_report"], "w", encoding="utf-8") as f:
        f.write(f"{header}\n\n{text}\nPer-class accuracy (fraction of each class predicted "
                f"correctly):\n{per_class}\n\nConfusion matrix (rows: true, columns: "
                f"predicted):\n{cm_text}\n")

    files["predictions"] = os.path.join(out_dir, "predictions.csv")
    sample_names = _sample_names(X, kept)
    with open(files["predictions"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "path", "true", "predicted", "correct"])
        for i, (k, t, p) in enumerate(zip(kept, y_true, y_pred)):
            writer.writerow([int(k), "" if sample_names is None else sample_names[i],
                             t, p, int(t == p)])

    if matplotlib is not None:
        files["confusion_matrix"] = os.path.join(out_dir, "confusion_matrix.png")
        plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), names,
                              files["confusion_matrix"], normalize=normalize,
                              title=title, matplotlib=matplotlib)
        history = history_of(model)
        if history:
            files["learning_curve"] = os.path.join(out_dir, "learning_curve.png")
            plot_learning_curve(history, files["learning_curve"], title=title,
                                matplotlib=matplotlib)

    files["metrics"] = os.path.join(out_dir, "metrics.json")
    if html:
        files["html"] = os.path.join(out_dir, "report.html")
        metrics["scores"] = scores["kind"]
        write_evaluation_html(files["html"], metrics=metrics, y_true=y_true, y_pred=y_pred,
                              kept=kept, sample_paths=sample_names, scores=scores, title=title,
                              max_thumbnails=max_thumbnails, thumbnail_size=thumbnail_size,
                              files=files)
    metrics["files"] = dict(files)
    with open(files["metrics"], "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def _format_matrix(cm, names):
    """The matrix as text: rows ``[i] name``, columns ``[i]`` (narrow whatever the names)."""
    tags = [f"[{i}]" for i in range(len(names))]
    width = max([len(str(cm.max() if cm.size else 0))] + [len(t) for t in tags])
    row_head = max(len(f"{t} {n}") for t, n in zip(tags, names)) if names else 0
    lines = [" " * (row_head + 2) + " ".join(f"{t:>{width}}" for t in tags)]
    for tag, name, row in zip(tags, names, cm):
        lines.append(f"{tag + ' ' + name:<{row_head}}  " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
