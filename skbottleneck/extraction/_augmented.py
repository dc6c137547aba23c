"""AugmentedClassifier: a head trained on augmented views of the images.

``fit(paths, y)`` extracts ``n_views`` views of every training image (each
view's features cached, so a second ``fit`` runs no CNN) and trains the
head on all of them, labels repeated. Because the views are made inside
``fit``, cross-validation over image paths (``cross_val_score``,
``GridSearchCV``) can never put views of one image on both sides of a
split. ``predict_proba`` averages the head's probabilities over the views
of each test image when ``tta=True`` (test-time augmentation).
"""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from ..images import ImageError
from ..utils import check_paths
from ._transformer import CNNFeatureTransformer
from ._views import ImageViews, check_views

__all__ = ["AugmentedClassifier"]


class AugmentedClassifier(ClassifierMixin, BaseEstimator):
    """Train a classifier head on CNN features of augmented views of each image.

    Parameters
    ----------
    transformer : CNNFeatureTransformer, default=None
        Computes the features (cloned at ``fit``). None:
        ``CNNFeatureTransformer("efficientnet_lite0")`` (ImageNet weights
        shipped with the package).
    head : classifier, default=None
        Trained on the views' features (cloned at ``fit``). None:
        ``make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))``.
    augment : ImageViews or int, default=8
        The views of every image (an int ``n``: ``ImageViews(n_views=n)``).
    tta : bool, default=False
        At predict time, average the head's probabilities over the views of
        each image (test-time augmentation; costs ``n_views`` CNN passes per
        new image). False: predict from the image itself (view 0).

    Attributes
    ----------
    transformer_ : CNNFeatureTransformer
        The fitted transformer.
    head_ : classifier
        The head fitted on the training views.
    classes_ : ndarray
        The class labels.
    n_views_ : int
        Views per training image.

    Examples
    --------
    >>> from skbottleneck import AugmentedClassifier, CNNFeatureTransformer
    >>> from skbottleneck.datasets import make_photo_folder, load_image_folder
    >>> paths, labels = load_image_folder(make_photo_folder(tmp_dir, n_per_class=3,
    ...                                                     size=(48, 48)))
    >>> cnn = CNNFeatureTransformer("efficientnet_lite0", input_size=32,
    ...                             cache_dir=tmp_dir / "cache")
    >>> model = AugmentedClassifier(cnn, augment=4, tta=True).fit(paths, labels)
    >>> model.predict_proba(paths[:2]).shape
    (2, 4)
    """

    _parameter_constraints = {
        "transformer": [HasMethods(["extract", "transform"]), None],
        "head": [HasMethods(["fit", "predict"]), None],
        "augment": [ImageViews, Interval(Integral, 1, None, closed="left")],
        "tta": ["boolean"],
    }

    def __init__(self, transformer=None, head=None, *, augment=8, tta=False):
        self.transformer = transformer
        self.head = head
        self.augment = augment
        self.tta = tta

    def _default_head(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Extract the views of the images ``X`` and train the head on them.

        Parameters
        ----------
        X : sequence of str or path-like
            Image paths.
        y : array-like of shape (n_images,)
            Labels.
        **fit_params : dict
            Passed to the head's ``fit``.

        Returns
        -------
        self : AugmentedClassifier
        """
        views = check_views(self.augment)
        transformer = (CNNFeatureTransformer("efficientnet_lite0") if self.transformer is None
                       else clone(self.transformer))
        self.transformer_ = transformer.fit(X)
        result = self.transformer_.extract(X, y, augment=views)
        head = self._default_head() if self.head is None else clone(self.head)
        self.head_ = head.fit(result.features, result.y, **fit_params)
        self.classes_ = self.head_.classes_
        self.n_views_ = 1 if views is None else views.n_views
        return self

    def _views(self, X, augment):
        """Features of the views of ``X``: ``(n_images * n_views, n_features)``.

        Raises naming the first image that cannot be read (with the
        transformer's ``on_error="skip"`` too): a prediction per image, in
        order, or none.
        """
        paths = check_paths(X)
        result = self.transformer_.extract(paths, augment=augment)
        if result.failed:
            path, reason = result.failed[0]
            raise ImageError(path, f"{reason} (cannot predict an image that cannot be read)")
        return result.features, len(paths)

    def predict_proba(self, X):
        """Class probabilities of each image (averaged over its views when ``tta``).

        Parameters
        ----------
        X : sequence of str or path-like
            Image paths.

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
        """
        check_is_fitted(self, "head_")
        if not self.tta or self.n_views_ == 1:
            return self.head_.predict_proba(self._views(X, None)[0])
        features, n = self._views(X, self.augment)
        proba = self.head_.predict_proba(features)
        return proba.reshape(n, self.n_views_, -1).mean(axis=1)

    def predict(self, X):
        """The most probable class of each image.

        Parameters
        ----------
        X : sequence of str or path-like
            Image paths.

        Returns
        -------
        y : ndarray of shape (n_images,)
        """
        check_is_fitted(self, "head_")
        if not self.tta or self.n_views_ == 1:
            return self.head_.predict(self._views(X, None)[0])
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
