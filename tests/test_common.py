"""scikit-learn's common estimator checks over every skbottleneck estimator.

Small, fast constructors (Keras fits cost ~0.3 s each, mostly tracing the
training step: tiny layers, few epochs, a large learning rate so that the
accuracy checks pass). Each check an estimator cannot pass is listed by
``_expected_failed_checks`` with the reason.
"""

import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbottleneck.incremental import IncrementalClassifier
from skbottleneck.keras_mlp import KerasMLPClassifier

ESTIMATORS = [
    IncrementalClassifier(SGDClassifier(random_state=0), epochs=5, chunk_size=32,
                          random_state=0),
    # early stopping, held-out split, a non-SGD inner model without decision_function
    IncrementalClassifier(GaussianNB(), epochs=2, scale=False, early_stopping=True,
                          n_iter_no_change=1, random_state=0),
    KerasMLPClassifier(hidden_layer_sizes=(8,), epochs=5, learning_rate=0.05,
                       batch_size=32, random_state=0),
    KerasMLPClassifier(hidden_layer_sizes=(8, 4), dropout=0.2, epochs=8, learning_rate=0.05,
                       batch_size=32, early_stopping=True, validation_fraction=0.2,
                       random_state=0),
]

_SGD_WEIGHTS = (
    # as for SGDClassifier itself (scikit-learn lists the same checks for it):
    # a weight of 2 on a row is not the same SGD path as two copies of the
    # row, which are visited at different steps.
    "sample_weight is not equivalent to removing/repeating samples in SGD."
)
_HELD_OUT_WEIGHTS = (
    # early stopping holds out a random share of the rows: repeating rows
    # changes which rows are held out, weighting them does not.
    "early stopping holds out different rows when rows are repeated."
)


def _expected_failed_checks(estimator):
    failed = {}
    if isinstance(estimator, KerasMLPClassifier):
        # mini-batch Adam: a weight of 2 is close to two copies of a row
        # (1e-4 here), not equal to it
        failed["check_sample_weight_equivalence_on_dense_data"] = _SGD_WEIGHTS
        if estimator.early_stopping:
            failed["check_sample_weight_equivalence_on_dense_data"] = _HELD_OUT_WEIGHTS
    if isinstance(estimator, IncrementalClassifier):
        if isinstance(estimator.estimator, SGDClassifier):
            failed["check_sample_weight_equivalence_on_dense_data"] = _SGD_WEIGHTS
            failed["check_sample_weight_equivalence_on_sparse_data"] = _SGD_WEIGHTS
        if estimator.early_stopping:
            failed["check_sample_weight_equivalence_on_dense_data"] = _HELD_OUT_WEIGHTS
    return failed


# GaussianNB's own warning when a class gets zero weight (log of a zero prior)
# in check_classifiers_one_label_sample_weights
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
