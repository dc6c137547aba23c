"""The input preprocessing each backbone's ImageNet weights were trained with.

The modes were read from ``keras/src/applications/*.py`` (Keras 3):

- ``"caffe"`` (VGG16/19, ResNet50/101/152): RGB -> BGR, then subtract the
  ImageNet BGR mean ``(103.939, 116.779, 123.68)``; no scaling.
- ``"torch"`` (DenseNet): ``x / 255``, then subtract the ImageNet mean
  ``(0.485, 0.456, 0.406)`` and divide by the std ``(0.229, 0.224, 0.225)``.
- ``"tf"`` (InceptionV3, Xception, MobileNetV2, ResNet50V2,
  InceptionResNetV2): ``x / 127.5 - 1``.
- ``"none"`` (EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3 and
  EfficientNet-Lite0): the model rescales its [0, 255] input itself, in a
  ``Rescaling``/``Normalization`` layer; ``keras.applications.<x>.
  preprocess_input`` is the identity for these.
"""

import numpy as np

from .._keras import import_tf

__all__ = ["PREPROCESSING_MODES", "preprocess"]

PREPROCESSING_MODES = ("caffe", "torch", "tf", "none")

_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(x, mode, *, name="backbone"):
    """Apply the preprocessing ``mode`` to a batch of RGB images in [0, 255].

    A NumPy array (or anything but a tensor) is copied to float32, never
    modified; a TensorFlow tensor stays a tensor, so this can run in graph
    mode. ``name`` names the backbone in the error message.

    Examples
    --------
    >>> preprocess(np.full((1, 1, 1, 3), 255.0), "tf")[0, 0, 0]
    array([1., 1., 1.], dtype=float32)
    """
    if isinstance(x, np.ndarray) or not hasattr(x, "dtype"):
        x = np.array(x, dtype=np.float32)  # copy: never modify the input
    else:  # a tensor: only tensor operators, valid in graph mode
        x = import_tf().cast(x, "float32")
    if x.shape[-1] != 3:
        raise ValueError(
            f"Backbone {name!r} expects RGB images with 3 channels in the "
            f"last axis. Got an input of shape {tuple(x.shape)} instead."
        )
    if mode == "caffe":
        return x[..., ::-1] - _CAFFE_MEAN_BGR
    if mode == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    if mode == "tf":
        return x / 127.5 - 1.0
    return x
