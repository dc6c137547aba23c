"""scikit-learn's common estimator checks over every skbottleneck estimator.

One small, fast constructor per estimator; each check it cannot pass is
listed in ``EXPECTED_FAILED_CHECKS`` with the reason.
"""

import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbottleneck.incremental import IncrementalClassifier
from skbottleneck.keras_mlp import KerasMLPClassifier

ESTIMATORS = [
    IncrementalClassifier(SGDClassifier(random_state=0), epochs=5, chunk_size=32,
                          random_state=0),
    KerasMLPClassifier(hidden_layer_sizes=(8,), epochs=5, learning_rate=0.05,
                       batch_size=32, random_state=0),
]

EXPECTED_FAILED_CHECKS = {
    "IncrementalClassifier": {},
    "KerasMLPClassifier": {},
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
