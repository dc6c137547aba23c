"""``report.html``: the evaluation report as one page, with the mistakes as pictures.

The page holds the headline metrics, the confusion matrix (a table whose
off-diagonal cells link to their section), per-class precision and recall,
then for each class its most confident mistakes and a section per confusion
pair (true class -> predicted class, most frequent first). Each picture
section shows at most ``max_thumbnails`` images, so the page stays small
however large the test set: the rest are counted and are in
``predictions.csv``.
"""

import base64
import os

import numpy as np

from ._page import card, common_folder, esc, fmt, page
from ._thumbs import Thumbnails

__all__ = ["write_evaluation_html"]

#: Confusion pairs given a section of their own, most frequent first.
MAX_PAIR_SECTIONS = 50
#: Larger matrices are left to confusion_matrix.png and metrics.json.
MAX_MATRIX_CLASSES = 60
#: Unreadable images listed by path and reason.
MAX_SKIPPED_LISTED = 200

_SCORE_NOTES = {
    "probability": "Confidence is the model's predicted probability (predict_proba).",
    "decision function": "The model gives no probabilities: scores are its decision_function "
                         "values (higher is more confident; not probabilities).",
    None: "The model gives neither probabilities nor decision scores: mistakes are shown in "
          "input order.",
}


class _Mistakes:
    """The wrong predictions, most confident first, and how to caption them."""

    def __init__(self, y_true, y_pred, scores):
        self.true = np.asarray([str(v) for v in y_true], dtype=object)
        self.pred = np.asarray([str(v) for v in y_pred], dtype=object)
        self.kind = scores["kind"] if scores and scores["values"] is not None else None
        wrong = np.flatnonzero(self.true != self.pred)
        self.p_pred = self.p_true = None
        if self.kind is not None:
            values = np.asarray(scores["values"], dtype=float)
            column = {str(c): j for j, c in enumerate(scores["classes"])}
            rows = np.arange(len(self.true))
            pred_col = np.array([column.get(v, -1) for v in self.pred])
            true_col = np.array([column.get(v, -1) for v in self.true])
            self.p_pred = np.where(pred_col >= 0, values[rows, np.maximum(pred_col, 0)], np.nan)
            self.p_true = np.where(true_col >= 0, values[rows, np.maximum(true_col, 0)], np.nan)
            # most confident first; ties (and unscored) in input order
            key = np.nan_to_num(self.p_pred[wrong], nan=-np.inf)
            wrong = wrong[np.lexsort((wrong, -key))]
        self.order = wrong

    def of(self, true=None, pred=None):
        """Positions of the mistakes of true class ``true`` (and predicted ``pred``), in order."""
        keep = np.ones(len(self.order), dtype=bool)
        if true is not None:
            keep &= self.true[self.order] == true
        if pred is not None:
            keep &= self.pred[self.order] == pred
        return self.order[keep]

    def caption(self, i, index):
        lines = [f'<span class="t">true: {esc(self.true[i])}</span>',
                 f'<span class="p">predicted: {esc(self.pred[i])}</span>']
        if self.kind is not None:
            name = "p" if self.kind == "probability" else "score"
            digits = 3 if self.kind == "probability" else 2
            lines.append(f"{name} {fmt(_num(self.p_pred[i]), digits)}"
                         f" (true {fmt(_num(self.p_true[i]), digits)})")
        lines.append(f"sample {int(index)}")
        return lines


def _num(value):
    return None if np.isnan(value) else float(value)


def write_evaluation_html(path, *, metrics, y_true, y_pred, kept, sample_paths, scores,
                          title=None, max_thumbnails=8, thumbnail_size=128, files=None):
    """Write the evaluation page to ``path``; return the number of ``<img>`` it holds.

    ``sample_paths`` (one per predicted sample, or None when the samples
    were features) name the images; ``kept`` their index in the input.
    ``scores`` is ``{"kind", "classes", "values"}`` from the report's
    prediction, or None.
    """
    thumbs = Thumbnails(thumbnail_size)
    mistakes = _Mistakes(y_true, y_pred, scores)
    names = metrics["classes"]
    anchors = {name: f"class-{i}" for i, name in enumerate(names)}
    heading = title or "Evaluation report"
    folder = "" if sample_paths is None else common_folder(sample_paths)
    where = f" Paths below are relative to {esc(folder)}." if folder else ""
    parts = [f"<h1>{esc(heading)}</h1>",
             f'<p class="sub">{metrics["n_samples"]} samples, {len(names)} classes, '
             f"{len(mistakes.order)} mistakes. {esc(_SCORE_NOTES[mistakes.kind])}{where}</p>",
             '<nav><a href="#metrics">Metrics</a><a href="#matrix">Confusion matrix</a>'
             '<a href="#per-class">Per class</a><a href="#mistakes">Mistakes by class</a>'
             '<a href="#pairs">Confusion pairs</a>'
             + ('<a href="#skipped">Unreadable images</a>' if metrics["n_skipped"] else "")
             + "</nav>",
             _headline(metrics, len(mistakes.order)),
             f'<div class="side"><div>{_matrix(metrics, anchors)}</div>'
             f"<div>{_per_class(metrics, mistakes, anchors)}</div></div>"]
    n_img = 0

    def cards(positions):
        nonlocal n_img
        shown = positions[:max_thumbnails]
        out = []
        for i in shown:
            path = None if sample_paths is None else sample_paths[i]
            out.append(card(thumbs, path, mistakes.caption(i, kept[i]),
                            shown_path=os.path.relpath(path, folder) if folder else None))
        n_img += sum('<img ' in c for c in out)
        if len(positions) > len(shown):
            out.append(f'<div class="more">and {len(positions) - len(shown)} more '
                       "(predictions.csv)</div>")
        return '<div class="cards">' + "".join(out) + "</div>"

    parts.append('<h2 id="mistakes">Most confident mistakes, by true class</h2>')
    perfect = []
    for name in names:
        wrong = mistakes.of(true=name)
        if not len(wrong):
            perfect.append(f'<span id="{anchors[name]}">{esc(name)}</span>')
            continue
        per = metrics["per_class"][name]
        parts.append(f'<h3 id="{anchors[name]}">{esc(name)}: {len(wrong)} of {per["support"]} '
                     f"wrong (recall {fmt(per['recall'])})</h3>")
        parts.append(cards(wrong))
    if perfect:
        parts.append(f'<p class="note">No mistakes: {", ".join(perfect)}.</p>')

    pairs = _pairs(metrics)
    parts.append('<h2 id="pairs">Confusion pairs</h2>')
    if not pairs:
        parts.append('<p class="note">No confusions.</p>')
    elif len(pairs) > MAX_PAIR_SECTIONS:
        parts.append(f'<p class="note">The {MAX_PAIR_SECTIONS} most frequent of {len(pairs)} '
                     "pairs; the others are in predictions.csv.</p>")
    for count, i, j in pairs[:MAX_PAIR_SECTIONS]:
        parts.append(f'<h3 id="pair-{i}-{j}">{esc(names[i])} &rarr; {esc(names[j])}: '
                     f"{count} image{'s' if count != 1 else ''}</h3>")
        parts.append(cards(mistakes.of(true=names[i], pred=names[j])))

    parts.append(_skipped(metrics))
    parts.append(_files(path, files or {}))
    with open(path, "w", encoding="utf-8") as f:
        f.write(page(heading, "\n".join(parts), thumbnail_size=thumbnail_size))
    return n_img


def _headline(metrics, n_wrong):
    tiles = [("accuracy", fmt(metrics["accuracy"])),
             ("balanced accuracy", fmt(metrics["balanced_accuracy"])),
             ("macro F1", fmt(metrics["macro_f1"])),
             ("samples", str(metrics["n_samples"])),
             ("mistakes", str(n_wrong))]
    if metrics["n_skipped"]:
        tiles.append(("unreadable, skipped", str(metrics["n_skipped"])))
    inner = "".join(f'<div class="tile"><b>{value}</b><span>{esc(label)}</span></div>'
                    for label, value in tiles)
    return f'<h2 id="metrics">Metrics</h2><div class="tiles">{inner}</div>'


def _matrix(metrics, anchors):
    names = metrics["classes"]
    head = '<h2 id="matrix">Confusion matrix</h2>'
    if len(names) > MAX_MATRIX_CLASSES:
        return (head + f'<p class="note">{len(names)} classes: too many for a table here; see '
                "confusion_matrix.png and metrics.json.</p>")
    cm = np.asarray(metrics["confusion_matrix"])
    totals = cm.sum(axis=1)
    rows = ['<tr><th class="name">true \\ predicted</th>'
            + "".join(f'<th class="col">{esc(n)}</th>' for n in names) + "<th>total</th></tr>"]
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            share = cm[i, j] / totals[i] if totals[i] else 0.0
            color = "#fff" if share > 0.55 else ("#9aa5b1" if not cm[i, j] else "inherit")
            value = str(cm[i, j])
            if i != j and cm[i, j]:
                value = f'<a href="#pair-{i}-{j}" style="color:{color}">{value}</a>'
            css = "diag" if i == j else ""
            cells.append(f'<td class="{css}" title="{share:.1%} of {esc(name)}"'
                         f' style="background:rgba(33,102,172,{0.85 * share:.3f});color:{color}">'
                         f"{value}</td>")
        rows.append(f'<tr><th class="name"><a href="#{anchors[name]}">{esc(name)}</a></th>'
                    + "".join(cells) + f"<td>{totals[i]}</td></tr>")
    return (head + '<p class="note">Rows: true class, columns: predicted class; shaded by the '
            "share of the row. A number off the diagonal links to its images.</p>"
            f'<table class="cm">{"".join(rows)}</table>')


def _per_class(metrics, mistakes, anchors):
    rows = ['<tr><th class="name">class</th><th>precision</th><th>recall</th><th>F1</th>'
            "<th>support</th><th>mistakes</th></tr>"]
    for name, v in metrics["per_class"].items():
        bar = (f'<span class="bar" style="width:{60 * v["recall"]:.0f}px"></span>'
               if v["support"] else "")
        rows.append(f'<tr><td class="name"><a href="#{anchors[name]}">{esc(name)}</a></td>'
                    f"<td>{fmt(v['precision'])}</td><td>{fmt(v['recall'])}{bar}</td>"
                    f"<td>{fmt(v['f1'])}</td><td>{v['support']}</td>"
                    f"<td>{len(mistakes.of(true=name))}</td></tr>")
    return f'<h2 id="per-class">Per class</h2><table>{"".join(rows)}</table>'


def _pairs(metrics):
    """``(count, true_index, pred_index)`` of every confusion, most frequent first."""
    cm = np.asarray(metrics["confusion_matrix"])
    pairs = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm))
             if i != j and cm[i, j]]
    return sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))


def _skipped(metrics):
    skipped = metrics["skipped_images"]
    if not skipped:
        return ""
    rows = "".join(f'<tr><td class="name">{esc(p)}</td><td class="name">{esc(r)}</td></tr>'
                   for p, r in skipped[:MAX_SKIPPED_LISTED])
    more = (f'<p class="note">and {len(skipped) - MAX_SKIPPED_LISTED} more (metrics.json).</p>'
            if len(skipped) > MAX_SKIPPED_LISTED else "")
    return (f'<h2 id="skipped">Unreadable images ({len(skipped)}, left out of the metrics)</h2>'
            f'<table><tr><th class="name">path</th><th class="name">reason</th></tr>{rows}'
            f"</table>{more}")


def _files(path, files):
    """Links to the report's other files, and the learning curve embedded."""
    out = []
    curve = files.get("learning_curve")
    if curve and os.path.exists(curve):
        with open(curve, "rb") as f:
            uri = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
        out.append(f'<h2 id="learning-curve">Learning curve</h2><img src="{uri}" '
                   'alt="learning curve" style="max-width:100%">')
    here = os.path.dirname(os.path.abspath(path))
    links = [f'<a href="{esc(os.path.relpath(p, here))}">{esc(os.path.basename(p))}</a>'
             for p in files.values() if os.path.abspath(p) != os.path.abspath(path)]
    if links:
        out.append('<h2 id="files">Files</h2><p>' + " &middot; ".join(links) + "</p>")
    return "\n".join(out)
