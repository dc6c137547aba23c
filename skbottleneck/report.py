"""Evaluation report of a fitted classifier: text, JSON and figures in a folder.

:func:`report` predicts a labelled set (image paths, a feature array or a
:class:`~skbottleneck.FeatureStore`), then writes what a person and a script
need to judge the model:

- ``classification_report.txt``: scikit-learn's per-class precision, recall,
  F1 and support, plus overall accuracy;
- ``metrics.json``: the same numbers, per-class accuracy and the confusion
  matrix, for scripts;
- ``predictions.csv``: one row per sample (path when known, true and predicted
  label), to look at the mistakes;
- ``confusion_matrix.png``: counts and a normalised version side by side,
  with class names on labelled axes;
- ``learning_curve.png``: loss and accuracy per epoch, for heads that record a
  training history (``history_``, e.g. :class:`~skbottleneck.KerasMLPClassifier`,
  also as the last step of a ``Pipeline``).

Figures need matplotlib (an optional dependency); they are drawn with its
object-oriented API on an Agg canvas, so no global backend is changed and no
window ever opens.
"""

import csv
import json
import os
import warnings

import numpy as np

from .utils import is_store

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
    y_pred, kept, _ = _predict(model, X, chunk_size)
    return y_pred, kept


def _predict(model, X, chunk_size):
    """``(y_pred, kept, skipped)``: :func:`predict_labels` and the (path, reason) of skipped images.

    Image paths go through the pipeline's feature step with ``extract``,
    whose result says which images were kept; the rest of the pipeline
    predicts from its features.
    """
    features, rest = _split_pipeline(model)
    if is_store(X):
        if features is not None:
            features.transform(X)  # raises if the store holds another model's features
        parts = [np.asarray(rest.predict(X_chunk))
                 for X_chunk, _ in X.iter_chunks(chunk_size, shuffle=False)]
        y_pred = np.concatenate(parts) if parts else np.empty(0)
        return y_pred, np.arange(len(X)), []
    if features is None:
        y_pred = np.asarray(model.predict(X))
        return y_pred, np.arange(len(y_pred)), []
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
    return np.asarray(rest.predict(result.features)), np.asarray(result.kept), skipped


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


def _normalized(cm, normalize):
    cm = cm.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize == "true":
            out = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            out = cm / cm.sum(axis=0, keepdims=True)
        else:
            out = cm / cm.sum()
    return np.nan_to_num(out)


# ------------------------------------------------------------------ figures
def _import_matplotlib(plots):
    if plots is False:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        message = ("matplotlib is not installed, so no figures were drawn; install it with "
                   "`pip install matplotlib` (or `pip install skbottleneck[examples]`).")
        if plots is True:
            raise ImportError(message) from e
        warnings.warn(message, UserWarning, stacklevel=3)
        return None
    return Figure, FigureCanvasAgg


def _save(fig, canvas_cls, path):
    canvas_cls(fig)
    fig.savefig(path, dpi=110)


def _draw_matrix(ax, matrix, names, title, fmt, cmap="Blues", vmax=None):
    n = len(names)
    im = ax.imshow(matrix, interpolation="nearest", cmap=cmap, vmin=0,
                   vmax=vmax if vmax is not None else max(float(matrix.max()), 1e-12))
    ax.set_title(title)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=45 if max(map(len, names), default=0) > 3 else 0,
                       ha="right" if max(map(len, names), default=0) > 3 else "center")
    ax.set_yticklabels(names)
    if n <= 30:
        threshold = (matrix.max() if vmax is None else vmax) / 2.0
        size = 10 if n <= 10 else 7
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=size,
                        color="white" if value > threshold else "black")
    return im


def plot_confusion_matrix(cm, names, path, *, normalize="true", title=None, matplotlib=None):
    """Draw counts and (unless ``normalize`` is None) a normalised matrix into ``path``."""
    Figure, Canvas = matplotlib
    panels = 1 if normalize is None else 2
    n = len(names)
    cell = 0.55 if n > 10 else 0.9
    side = max(4.0, 1.6 + cell * n)
    fig = Figure(figsize=(side * panels + 0.8 * panels, side + 0.6), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    im = _draw_matrix(axes[0], np.asarray(cm), names, "Counts", "d")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    if normalize is not None:
        label = {"true": "normalised over true class (recall)",
                 "pred": "normalised over predicted class (precision)",
                 "all": "normalised over all samples"}[normalize]
        im = _draw_matrix(axes[1], _normalized(np.asarray(cm), normalize), names,
                          label[0].upper() + label[1:], ".2f", vmax=1.0)
        fig.colorbar(im, ax=axes[1], shrink=0.8)
    if title:
        fig.suptitle(title)
    _save(fig, Canvas, path)


def _history_of(model):
    """The training history dict of a head that records one, else None."""
    candidates = [model]
    steps = getattr(model, "steps", None)
    if steps:
        candidates.append(steps[-1][1])
    for est in reversed(candidates):
        history = getattr(est, "history_", None)
        if history is None:
            continue
        history = getattr(history, "history", history)  # a keras History object
        if isinstance(history, dict) and history:
            return {str(k): [float(v) for v in vals] for k, vals in history.items()
                    if np.ndim(vals) == 1 and len(vals)}
    return None


def plot_learning_curve(history, path, *, title=None, matplotlib=None):
    """Draw loss (left) and accuracy-like metrics (right) per epoch into ``path``."""
    Figure, Canvas = matplotlib
    losses = {k: v for k, v in history.items() if "loss" in k}
    others = {k: v for k, v in history.items() if "loss" not in k and k not in ("lr", "learning_rate")}
    panels = [p for p in (losses, others) if p]
    fig = Figure(figsize=(5.2 * len(panels), 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, series, ylabel in zip(axes, panels, ["loss" if losses else "metric", "metric"]):
        for name, values in sorted(series.items()):
            epochs = np.arange(1, len(values) + 1)
            style = "--" if name.startswith("val_") else "-"
            ax.plot(epochs, values, style, marker="o" if len(values) <= 30 else None,
                    markersize=3, label=name)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(ylabel if series is losses else "accuracy / metric")
        ax.grid(True, alpha=0.3)
        ax.legend()
    axes[0].set_title("Loss" if losses else "Metrics")
    if len(panels) == 2:
        axes[1].set_title("Metrics")
    if title:
        fig.suptitle(title)
    _save(fig, Canvas, path)


# ------------------------------------------------------------------- report
def _sample_names(X, kept):
    if is_store(X):
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
           plots="auto", title=None, chunk_size=4096):
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
    ['classification_report.txt', 'confusion_matrix.png', 'metrics.json', 'predictions.csv']
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
    from .feature_space import check_feature_space

    check_feature_space(model, X)  # a head of one feature space on features of another
    if y is None:
        if not is_store(X):
            raise ValueError("report needs the true labels y (or a FeatureStore X that holds labels).")
        y = X.labels
    if y is None:
        raise ValueError(f"The FeatureStore {getattr(X, 'path', X)!s} holds no labels; pass y.")
    y = np.asarray(y)
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X and y must have the same length; got {n} samples and {len(y)} labels.")
    matplotlib = _import_matplotlib(plots)

    y_pred, kept, skipped = _predict(model, X, chunk_size)
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
        history = _history_of(model)
        if history:
            files["learning_curve"] = os.path.join(out_dir, "learning_curve.png")
            plot_learning_curve(history, files["learning_curve"], title=title,
                                matplotlib=matplotlib)

    files["metrics"] = os.path.join(out_dir, "metrics.json")
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
