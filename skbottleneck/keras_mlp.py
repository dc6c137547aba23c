"""Today's import path of :class:`~skbottleneck.heads.KerasMLPClassifier`."""

from .heads import KerasMLPClassifier

__all__ = ["KerasMLPClassifier"]
