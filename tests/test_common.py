"""scikit-learn's common estimator checks over every public skbottleneck estimator.

The estimators are found from ``skbottleneck.__all__``: a new public
estimator without fast constructors below fails
``test_every_public_estimator_is_checked``. Small, fast constructors (Keras
fits cost ~0.3 s each, mostly tracing the training step: tiny layers, few
epochs, a large learning rate so that the accuracy checks pass). Each check
an estimator cannot pass is listed by ``_expected_failed_checks`` with the
reason.

:class:`CNNFeatureTransformer` takes image paths, not a 2-D array, so
scikit-learn runs only its input-free checks on it (its tags say so, as
CountVectorizer's do); the checks that need data are run below on real
image files by their image-path counterparts.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import skbottleneck
from skbottleneck import AugmentedClassifier, CNNFeatureTransformer, ZeroShotClassifier
from skbottleneck.heads import IncrementalClassifier, KerasMLPClassifier

FAST_INSTANCES = {
    IncrementalClassifier: [
        IncrementalClassifier(SGDClassifier(random_state=0), epochs=5, chunk_size=32,
                              random_state=0),
        # early stopping, held-out split, a non-SGD inner model without decision_function
        IncrementalClassifier(GaussianNB(), epochs=2, scale=False, early_stopping=True,
                              n_iter_no_change=1, random_state=0),
    ],
    KerasMLPClassifier: [
        KerasMLPClassifier(hidden_layer_sizes=(8,), epochs=5, learning_rate=0.05,
                           batch_size=32, random_state=0),
        KerasMLPClassifier(hidden_layer_sizes=(8, 4), dropout=0.2, epochs=8,
                           learning_rate=0.05, batch_size=32, early_stopping=True,
                           validation_fraction=0.2, random_state=0),
    ],
    CNNFeatureTransformer: [
        CNNFeatureTransformer("vgg16", weights=None, random_state=0, input_size=32,
                              cache_dir=None),
    ],
    AugmentedClassifier: [
        AugmentedClassifier(CNNFeatureTransformer("vgg16", weights=None, random_state=0,
                                                  input_size=32, cache_dir=None),
                            SGDClassifier(loss="log_loss", random_state=0), augment=2),
    ],
    # image paths in, no training (tests/test_keras_hub.py fits it on tiny presets)
    ZeroShotClassifier: [ZeroShotClassifier("siglip2_base_patch16_224", labels=["a", "b"])],
}
# estimators taking image paths: scikit-learn runs only their input-free checks
IMAGE_ESTIMATORS = (CNNFeatureTransformer, AugmentedClassifier, ZeroShotClassifier)


def _public_estimators():
    found = set()
    for name in skbottleneck.__all__:
        obj = getattr(skbottleneck, name)
        # (ImageViews is a BaseEstimator for get_params/clone only: it has no fit)
        if isinstance(obj, type) and issubclass(obj, BaseEstimator) and hasattr(obj, "fit"):
            found.add(obj)
    return sorted(found, key=lambda cls: cls.__name__)


ESTIMATORS = [est for cls in _public_estimators() for est in FAST_INSTANCES.get(cls, [])]


def test_every_public_estimator_is_checked():
    missing = [cls.__name__ for cls in _public_estimators() if cls not in FAST_INSTANCES]
    assert not missing, f"add fast constructors to FAST_INSTANCES for {missing}"
    assert len(_public_estimators()) >= 3

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
_FLOAT32_ROWS = (
    # the network runs in float32; on some CPUs (AVX2-only AMD EPYC: CI saw
    # 2.8e-7) a row's output depends on its position in the batch by float32
    # rounding, above the check's float64 tolerance (rtol 1e-7)
    "float32 network: a row's probabilities move by float32 rounding with its position."
)


def _expected_failed_checks(estimator):
    failed = {}
    if isinstance(estimator, KerasMLPClassifier):
        # mini-batch Adam: a weight of 2 is close to two copies of a row
        # (1e-4 here), not equal to it
        failed["check_sample_weight_equivalence_on_dense_data"] = _SGD_WEIGHTS
        if estimator.early_stopping:
            failed["check_sample_weight_equivalence_on_dense_data"] = _HELD_OUT_WEIGHTS
        failed["check_methods_sample_order_invariance"] = _FLOAT32_ROWS
        failed["check_methods_subset_invariance"] = _FLOAT32_ROWS
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
# CNNFeatureTransformer's image-path input: scikit-learn says it skips its data checks
@pytest.mark.filterwarnings("ignore:Can't test estimator CNNFeatureTransformer")
@pytest.mark.filterwarnings("ignore:Can't test estimator AugmentedClassifier")
@pytest.mark.filterwarnings("ignore:Can't test estimator ZeroShotClassifier")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ----------------------------------------------- CNNFeatureTransformer on images
# scikit-learn's input-free API checks, run directly (parametrize_with_checks
# stops at the image-path input tag before reaching them)
_API_CHECKS = [
    "check_estimator_cloneable", "check_estimator_repr", "check_valid_tag_types",
    "check_no_attributes_set_in_init", "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order", "check_parameters_default_constructible", "check_get_params_invariance",
    "check_set_params", "check_estimator_tags_renamed",
]


@pytest.mark.parametrize("cls", IMAGE_ESTIMATORS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("check", _API_CHECKS)
def test_image_estimator_api_checks(check, cls):
    est = FAST_INSTANCES[cls][0]
    getattr(estimator_checks, check)(type(est).__name__, clone(est))


@pytest.fixture(scope="module")
def fitted(photo_paths):
    return clone(FAST_INSTANCES[CNNFeatureTransformer][0]).fit(), list(photo_paths[0][:12])


def test_transformer_unfitted_raises_not_fitted(photo_paths):
    with pytest.raises(NotFittedError):
        clone(FAST_INSTANCES[CNNFeatureTransformer][0]).transform(list(photo_paths[0][:2]))


def test_transformer_dict_unchanged_and_fit_idempotent(fitted):
    """check_dict_unchanged / check_fit_idempotent, on image paths."""
    est, paths = fitted
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(est).items()}
    X = est.transform(paths)
    assert vars(est).keys() == before.keys()
    for k, v in vars(est).items():
        assert np.array_equal(v, before[k]) if isinstance(v, np.ndarray) else v == before[k], k
    np.testing.assert_array_equal(clone(est).fit(paths).transform(paths), X)


def test_transformer_subset_and_order_invariance(fitted):
    """check_methods_subset_invariance / check_methods_sample_order_invariance."""
    est, paths = fitted
    X = est.transform(paths)
    order = np.random.RandomState(0).permutation(len(paths))
    np.testing.assert_allclose(est.transform([paths[i] for i in order]), X[order],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est.transform(paths[3:7]), X[3:7], rtol=1e-5, atol=1e-6)


def test_transformer_pickle_and_feature_names(fitted):
    """check_estimators_pickle and the transformer's output feature names."""
    est, paths = fitted
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(paths), est.transform(paths))
    names = est.get_feature_names_out()
    assert len(names) == est.n_features_out_ and names[0] == "vgg16_avg_0"
