"""Zero-shot classification with an image-text model (CLIP, SigLIP): no training.

Each class is described by prompts (``templates`` filled with the label);
the class's text embedding is the normalised mean of its prompts' normalised
embeddings (CLIP's prompt ensembling). An image's class scores are the
cosine between its pooled image embedding and each class embedding, times
the model's learned logit scale; ``predict_proba`` is their softmax.
"""

import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..backbones._text import TextEncoder
from ..extraction import CNNFeatureTransformer

__all__ = ["ZeroShotClassifier"]

_TEMPLATES = ("a photo of a {}.",)


def _unit(X):
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1, norms)


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify images by how well label prompts describe them (no training).

    Parameters
    ----------
    backbone : str, default="siglip2_base_patch16_224"
        An image-text keras-hub preset: a registered name or a local preset
        directory holding its tokenizer.
    labels : sequence of str, default=None
        The class names, in the order of ``classes_``. None: the sorted
        unique values of ``y`` given to ``fit``.
    templates : sequence of str, default=("a photo of a {}.",)
        Prompts, each with one ``{}`` where the label goes.
    weights : {"imagenet"} or None, default="imagenet"
        The preset's own weights, or a seeded random initialisation (tests).
    input_size, batch_size, cache_dir, runtime
        As in :class:`~skbottleneck.CNNFeatureTransformer`.
    random_state : int, default=None
        Seed when ``weights=None``.

    Attributes
    ----------
    classes_ : ndarray of str
        The labels.
    transformer_ : CNNFeatureTransformer
        Computes the images' pooled embeddings (``pooling="cls"``).
    text_embeddings_ : ndarray of shape (n_classes, dim)
        Unit class embeddings.
    logit_scale_ : float
        The model's temperature.
    n_features_in_ : int
        Width of the image embeddings ``predict_proba`` also accepts.

    Examples
    --------
    >>> from skbottleneck.heads import ZeroShotClassifier
    >>> clf = ZeroShotClassifier(labels=["cat", "dog"], templates=["a photo of a {}."])
    >>> clf.get_params()["labels"]
    ['cat', 'dog']
    """

    _parameter_constraints = {
        "backbone": [str],
        "labels": ["array-like", None],
        "templates": ["array-like"],
        "weights": [StrOptions({"imagenet"}), None],
        "input_size": [Interval(Integral, 1, None, closed="left"), tuple, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "cache_dir": [str, os.PathLike, None],
        "runtime": [StrOptions({"auto", "tensorflow", "openvino"})],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"), None],
    }

    def __init__(self, backbone="siglip2_base_patch16_224", *, labels=None,
                 templates=_TEMPLATES, weights="imagenet", input_size=None, batch_size=32,
                 cache_dir="auto", runtime="auto", random_state=None):
        self.backbone = backbone
        self.labels = labels
        self.templates = templates
        self.weights = weights
        self.input_size = input_size
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.runtime = runtime
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Record the classes and encode their prompts; nothing is learned.

        Parameters
        ----------
        X : ignored
        y : array-like, default=None
            Labels, used only when ``labels`` is None.

        Returns
        -------
        self : ZeroShotClassifier
        """
        if self.labels is not None:
            classes = np.asarray([str(c) for c in self.labels], dtype=object)
        elif y is not None:
            classes = np.unique(np.asarray(y).astype(str)).astype(object)
        else:
            raise ValueError("ZeroShotClassifier needs labels=[...] or y at fit.")
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"ZeroShotClassifier needs at least two distinct labels. Got "
                             f"{list(classes)} instead.")
        templates = [str(t) for t in self.templates]
        if not templates or any("{}" not in t for t in templates):
            raise ValueError("Each of ZeroShotClassifier's 'templates' needs one '{}' where the "
                             f"label goes. Got {templates} instead.")
        encoder = TextEncoder(self.backbone, weights=self.weights,
                              random_state=self.random_state)
        prompts = [t.format(c) for c in classes for t in templates]
        per_prompt = _unit(encoder.encode(prompts)).reshape(len(classes), len(templates), -1)
        self.text_embeddings_ = _unit(per_prompt.mean(axis=1))
        self.logit_scale_ = encoder.logit_scale
        self.classes_ = classes
        self.transformer_ = CNNFeatureTransformer(
            self.backbone, weights=self.weights, pooling="cls", input_size=self.input_size,
            batch_size=self.batch_size, cache_dir=self.cache_dir, runtime=self.runtime,
            random_state=self.random_state).fit()
        self.n_features_in_ = self.text_embeddings_.shape[1]
        return self

    def _embeddings(self, X):
        X_arr = np.asarray(X) if not isinstance(X, str) else np.asarray([X])
        if X_arr.ndim == 2 and X_arr.dtype.kind in "fiu":
            if X_arr.shape[1] != self.n_features_in_:
                raise ValueError(f"ZeroShotClassifier got image embeddings of {X_arr.shape[1]} "
                                 f"columns; the model's have {self.n_features_in_}.")
            return X_arr
        return self.transformer_.transform(X)

    def decision_function(self, X):
        """Scaled cosine similarities, shape ``(n_images, n_classes)``.

        Parameters
        ----------
        X : sequence of image paths, or array of image embeddings (n, dim)
        """
        check_is_fitted(self, "text_embeddings_")
        return self.logit_scale_ * (_unit(self._embeddings(X)) @ self.text_embeddings_.T)

    def predict_proba(self, X):
        """Softmax of :meth:`decision_function` over the classes."""
        logits = self.decision_function(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The label whose prompts describe each image best."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = False
        return tags
