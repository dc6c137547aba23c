"""The report's figures: confusion matrix and learning curve, as PNG files.

Drawn with matplotlib's object-oriented API on an Agg canvas, so no global
backend is changed and no window ever opens. matplotlib is optional: it is
imported inside :func:`import_matplotlib`, never at import time.
"""

import warnings

import numpy as np

__all__ = ["import_matplotlib", "plot_confusion_matrix", "plot_learning_curve", "history_of",
           "normalized"]


def normalized(cm, normalize):
    cm = cm.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize == "true":
            out = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            out = cm / cm.sum(axis=0, keepdims=True)
        else:
            out = cm / cm.sum()
    return np.nan_to_num(out)


def import_matplotlib(plots):
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
        im = _draw_matrix(axes[1], normalized(np.asarray(cm), normalize), names,
                          label[0].upper() + label[1:], ".2f", vmax=1.0)
        fig.colorbar(im, ax=axes[1], shrink=0.8)
    if title:
        fig.suptitle(title)
    _save(fig, Canvas, path)


def history_of(model):
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
