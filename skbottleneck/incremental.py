"""Today's import path of :class:`~skbottleneck.heads.IncrementalClassifier`."""

from .heads import IncrementalClassifier

__all__ = ["IncrementalClassifier"]
