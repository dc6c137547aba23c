"""Evaluation reports and contact sheets: what a person looks at to judge a model.

:func:`report` predicts a labelled set (image paths, a feature array or a
:class:`~skbottleneck.FeatureStore`), then writes what a person and a script
need to judge the model into a folder:

- ``report.html``: one page that opens offline, with the metrics, the
  confusion matrix, per-class precision and recall, and the most confident
  mistakes of each class and of each confusion pair as pictures;
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

:func:`contact_sheet` shows a :class:`~skbottleneck.SimilarityResult` as a
page: each query image beside its nearest stored images.

Figures need matplotlib (an optional dependency); the HTML pages need only
Pillow, through the package's own decoder (:mod:`skbottleneck.images`).
"""

from ._evaluate import predict_labels, report
from ._figures import plot_confusion_matrix, plot_learning_curve
from ._sheet import contact_sheet

__all__ = ["report", "predict_labels", "contact_sheet", "plot_confusion_matrix",
           "plot_learning_curve"]
