"""One backbone entry: how to build it, its preprocessing, its weights' identity.

:class:`Backbone` is what the registry (:mod:`._registry`) holds and what
:meth:`Backbone.from_model` makes of a user's own ``keras.Model``: the
extraction asks every backbone the same questions through it.
"""

import dataclasses
import hashlib
from numbers import Integral

import numpy as np

from .._keras import import_keras
from ..utils import check_seed
from ._build import build_keras, download_timeout, is_download_failure, seeded
from ._efficientnet_lite import LITE_VARIANTS
from ._preprocessing import PREPROCESSING_MODES, preprocess
from ._weights import WeightsUnavailableError, check_weights_file, format_weights_identity

__all__ = ["Backbone"]

#: What a backbone's network is, for its int8 quantisation.
ARCHITECTURES = ("cnn", "transformer")
#: Ids of the ImageNet weights of the bundled builders (not Keras' own).
_BUNDLED_IMAGENET_IDS = {name: v.imagenet_id for name, v in LITE_VARIANTS.items()}


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A CNN backbone: how to build it and how to preprocess its input.

    Obtain instances with :func:`get_backbone`; they are immutable.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"resnet50"``.
    default_size : int
        Input height and width the ImageNet weights were trained at.
    preprocessing : {"caffe", "torch", "tf", "none"}
        Input transformation :meth:`preprocess` applies (the formulas are in
        :mod:`skbottleneck.backbones._preprocessing`).
    feature_dim : int
        Number of channels of the top-less output feature map.
    offline_weights : bool
        Whether ``weights="imagenet"`` works without network access.
    min_size : int, default=32
        Smallest input height and width the architecture accepts.
    builder : str or callable
        ``keras.applications`` attribute that builds the model,
        ``"efficientnet_lite0"`` (``1``, ``2``) for the bundled
        EfficientNet-Lite builders, or a callable (see
        :func:`register_backbone`).
    builder_kwargs : tuple of (str, object) pairs, default=()
        Extra keyword arguments for the builder.
    identity : callable, default=None
        ``identity(weights, random_state) -> str or None``: the weights
        identity (:meth:`weights_identity`); ``None`` uses the standard one.
    poolings : tuple of str, default=()
        Poolings the built model computes itself (passed to the builder as
        ``pooling=``), e.g. ``("cls", "avg", "cls+avg")`` for a vision
        transformer; empty for a CNN, whose feature map the extraction pools.
    default_pooling : str, default="avg"
        What ``pooling="auto"`` of :class:`~skbottleneck.CNNFeatureTransformer`
        means for this backbone.
    description : str, default=""
        One line on the family and the weights' source.
    preprocessing_id : str, default=""
        What the fingerprint records as the preprocessing when it is done
        inside the model (e.g. a keras-hub image converter's scale and
        offset); empty means ``preprocessing``.
    size_multiple : int, default=1
        Input height and width must be multiples of it (a patch size).
    parameters : int or None, default=None
        Number of parameters, when known without building.
    weights_status : callable, default=None
        ``weights_status() -> str`` for ``skbottleneck backbones``
        (:func:`imagenet_weights_status` when None).
    architecture : {"cnn", "transformer"}, default="cnn"
        How ``precision="int8"`` quantises the network: ``"transformer"``
        quantises the matrix products only, keeping layer norms, softmax and
        GELU in float32 (NNCF's ``ModelType.TRANSFORMER``). It also picks
        how the graph is converted to OpenVINO (a transformer's from its
        concrete function, at a third to a half of the peak memory).

    Examples
    --------
    >>> from skbottleneck.backbones import get_backbone
    >>> backbone = get_backbone("resnet50")
    >>> backbone.default_size, backbone.preprocessing, backbone.feature_dim
    (224, 'caffe', 2048)
    """

    name: str
    default_size: int
    preprocessing: str
    feature_dim: int
    offline_weights: bool = False
    min_size: int = 32
    builder: object = dataclasses.field(default="", repr=False)
    builder_kwargs: tuple = dataclasses.field(default=(), repr=False)
    identity: object = dataclasses.field(default=None, repr=False, compare=False)
    poolings: tuple = dataclasses.field(default=(), repr=False)
    default_pooling: str = dataclasses.field(default="avg", repr=False)
    description: str = dataclasses.field(default="", repr=False)
    preprocessing_id: str = dataclasses.field(default="", repr=False)
    size_multiple: int = dataclasses.field(default=1, repr=False)
    parameters: object = dataclasses.field(default=None, repr=False)
    weights_status: object = dataclasses.field(default=None, repr=False, compare=False)
    architecture: str = dataclasses.field(default="cnn", repr=False)

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"The 'preprocessing' of backbone {self.name!r} must be one of "
                f"{PREPROCESSING_MODES}. Got {self.preprocessing!r} instead."
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"The 'architecture' of backbone {self.name!r} must be one of "
                f"{ARCHITECTURES}. Got {self.architecture!r} instead."
            )

    # ------------------------------------------------------------------ input
    def preprocess(self, x):
        """Apply this backbone's input preprocessing to a batch of RGB images.

        Parameters
        ----------
        x : array-like or tf.Tensor of shape (n, height, width, 3)
            RGB values in [0, 255] (converted to float32). A TensorFlow tensor
            stays a tensor, so this can run inside ``tf.function`` or
            ``tf.data`` pipelines; anything else becomes a NumPy array.

        Returns
        -------
        x : numpy.ndarray or tf.Tensor of float32
            A new array/tensor; the input is not modified.

        Examples
        --------
        >>> import numpy as np
        >>> from skbottleneck.backbones import get_backbone
        >>> x = np.full((1, 2, 2, 3), 255.0, dtype="float32")
        >>> get_backbone("inception_v3").preprocess(x)[0, 0, 0]
        array([1., 1., 1.], dtype=float32)
        """
        return preprocess(x, self.preprocessing, name=self.name)

    # ---------------------------------------------------------------- weights
    def weights_identity(self, weights="imagenet", random_state=None):
        """Return a string identifying the weights :meth:`build` would load.

        Same as :func:`weights_identity` with ``backbone=self.name``.

        Parameters
        ----------
        weights : {"imagenet"}, None or path-like, default="imagenet"
            As in :meth:`build`.
        random_state : int or None, default=None
            As in :meth:`build`.

        Returns
        -------
        identity : str or None

        Examples
        --------
        >>> from skbottleneck.backbones import get_backbone
        >>> backbone = get_backbone("vgg16")
        >>> backbone.weights_identity(None, random_state=0)  # doctest: +ELLIPSIS
        'random:0:keras-...'
        >>> get_backbone("vgg16").weights_identity(None) is None
        True
        """
        if self.identity is not None:
            return self.identity(weights, check_seed(random_state))
        random_state = check_seed(random_state)
        imagenet_id = None
        if isinstance(weights, str) and weights == "imagenet" and isinstance(self.builder, str):
            imagenet_id = _BUNDLED_IMAGENET_IDS.get(self.builder)
        return format_weights_identity(weights, random_state, imagenet_id=imagenet_id)

    def resolve_pooling(self, pooling):
        """The pooling a transformer's ``pooling`` parameter means here.

        ``"auto"`` is ``default_pooling``; a CNN offers ``"avg"``, ``"max"``
        and None (flatten), a backbone that pools itself its ``poolings``.

        Examples
        --------
        >>> from skbottleneck.backbones import get_backbone
        >>> get_backbone("resnet50").resolve_pooling("auto")
        'avg'
        >>> get_backbone("dinov2_small").resolve_pooling("auto")
        'cls+avg'
        """
        if pooling == "auto":
            return self.default_pooling
        allowed = self.poolings or ("avg", "max", None)
        if pooling not in allowed:
            raise ValueError(
                f"The 'pooling' parameter for backbone {self.name!r} must be 'auto' or one "
                f"of {allowed}. Got {pooling!r} instead."
            )
        return pooling

    @property
    def preprocessing_description(self):
        """What a fingerprint records as this backbone's preprocessing."""
        return self.preprocessing_id or self.preprocessing

    @classmethod
    def from_model(cls, model):
        """The entry of a user's own ``keras.Model`` (not registered).

        The model is used as it is (``weights`` and ``random_state`` are
        ignored); it takes the images as RGB values in [0, 255]
        (preprocessing ``"none"``), its weights' content is their identity.

        Examples
        --------
        >>> import keras
        >>> from skbottleneck.backbones import Backbone
        >>> inputs = keras.Input((32, 32, 3))
        >>> model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs), name="tiny")
        >>> entry = Backbone.from_model(model)
        >>> entry.name, entry.default_size, entry.feature_dim
        ('tiny', 32, 4)
        >>> entry.weights_identity().startswith("model:")
        True
        """
        shape = tuple(model.input_shape[1:3])
        default = shape[0] if shape[0] is not None and shape[0] == shape[1] else 0
        if default == 0 and None not in shape:
            default = max(shape)
        return cls(
            name=model.name, default_size=default, preprocessing="none",
            feature_dim=int(model.output_shape[-1] or 0), min_size=1,
            builder=_ModelBuilder(model), identity=_ModelBuilder(model).identity,
            preprocessing_id="none (user model)", description="a user's keras.Model",
        )

    # ------------------------------------------------------------------ model
    def _check_input_size(self, input_size):
        """Return ``(height, width)`` from an int, a pair, or None."""
        if input_size is None:
            return (self.default_size, self.default_size)
        if isinstance(input_size, Integral) and not isinstance(input_size, bool):
            size = (input_size, input_size)
        elif isinstance(input_size, (tuple, list)) and len(input_size) == 2 and all(
            isinstance(s, Integral) and not isinstance(s, bool) for s in input_size
        ):
            size = tuple(input_size)
        else:
            raise ValueError(
                f"The 'input_size' of backbone {self.name!r} must be an int (height "
                f"= width), a (height, width) pair of ints, or None. Got "
                f"{input_size!r} instead."
            )
        if min(size) < self.min_size:
            raise ValueError(
                f"The 'input_size' of backbone {self.name!r} must be at least "
                f"{self.min_size} pixels in height and width. Got {input_size!r} "
                "instead."
            )
        if any(s % self.size_multiple for s in size):
            raise ValueError(
                f"The 'input_size' of backbone {self.name!r} must be a multiple of its "
                f"patch size {self.size_multiple} in height and width. Got "
                f"{input_size!r} instead."
            )
        return (int(size[0]), int(size[1]))

    def _build_keras(self, weights, size):
        return build_keras(self.builder, weights, size, self.builder_kwargs)

    def _build_callable(self, weights, size, random_state, pooling):
        kwargs = dict(self.builder_kwargs)
        if self.poolings:
            if pooling not in self.poolings:
                raise ValueError(
                    f"The 'pooling' of backbone {self.name!r} must be one of "
                    f"{self.poolings}. Got {pooling!r} instead."
                )
            kwargs["pooling"] = pooling
        with seeded(random_state if weights is None else None):
            return self.builder(weights=weights, input_size=size,
                                random_state=random_state, **kwargs)

    def build(self, weights="imagenet", input_size=None, random_state=None, pooling=None):
        """Build the backbone without its classifier top.

        Parameters
        ----------
        weights : {"imagenet"}, None or path-like, default="imagenet"
            - ``"imagenet"``: ImageNet-1k weights, downloaded by Keras (and
              cached in ``~/.keras/models``), except for backbones with
              ``offline_weights=True`` whose weights ship with an installed
              package.
            - ``None``: random initialisation, reproducible when
              ``random_state`` is set.
            - a path to a ``.weights.h5`` file (``model.save_weights``; legacy
              ``.h5`` weight files of ``keras.applications`` work too), loaded
              into the freshly built architecture, or to a ``.keras`` file
              (``model.save``), loaded as a whole model.
        input_size : int or (int, int), default=None
            Input height and width: an int for a square input or a
            ``(height, width)`` pair; ``None`` means ``default_size``. Both
            must be at least ``min_size`` (and multiples of ``size_multiple``).
        random_state : int, default=None
            Seed of the random initialisation when ``weights=None`` (set with
            ``keras.utils.set_random_seed``; Python's and NumPy's global
            random states are restored afterwards). Ignored otherwise.
        pooling : str, default=None
            For a backbone that pools itself (``poolings``): one of them.
            Ignored otherwise.

        Returns
        -------
        model : keras.Model
            Input ``(height, width, 3)`` (expects the output of
            :meth:`preprocess`), output the last feature map
            ``(h, w, feature_dim)``, without pooling.

        Raises
        ------
        WeightsUnavailableError
            If the ImageNet weights cannot be downloaded.
        FileNotFoundError
            If ``weights`` is a path that does not exist.
        ValueError
            If ``weights`` is neither "imagenet", None nor a path with a
            supported extension, or ``input_size`` is too small.

        Examples
        --------
        >>> from skbottleneck.backbones import get_backbone
        >>> model = get_backbone("mobilenet_v2").build(
        ...     weights=None, input_size=64, random_state=0)
        >>> model.output_shape
        (None, 2, 2, 1280)
        """
        size = self._check_input_size(input_size)
        random_state = check_seed(random_state)
        if callable(self.builder):
            return self._build_callable(weights, size, random_state, pooling)
        keras = import_keras()

        if weights is None:
            with seeded(random_state):
                return self._build_keras(None, size)

        if isinstance(weights, str) and weights == "imagenet":
            if self.offline_weights:
                return self._build_keras("imagenet", size)
            try:
                with download_timeout():
                    return self._build_keras("imagenet", size)
            except Exception as e:
                if not is_download_failure(e):
                    raise
                offline = ", ".join(
                    repr(n) for n in LITE_VARIANTS
                )
                raise WeightsUnavailableError(
                    f"The ImageNet weights for {self.name!r} could not be downloaded "
                    f"({e}). Alternatives: weights=None (random initialisation, "
                    "reproducible with random_state); a path to a local "
                    "'.weights.h5' or '.keras' file (saved with model.save_weights "
                    "or model.save on a machine with internet access); the downloaded "
                    "file itself, copied into the Keras cache folder "
                    "(~/.keras/models/ unless KERAS_HOME is set); or a backbone whose "
                    f"ImageNet weights work offline: {offline}."
                ) from e

        path, kind = check_weights_file(weights)
        if kind == "keras":
            try:
                model = keras.models.load_model(path, compile=False)
            except Exception as e:
                raise ValueError(
                    f"Could not load the Keras model file {path!r} for backbone "
                    f"{self.name!r}: {e}"
                ) from e
            spatial = tuple(model.input_shape[1:3])
            if any(d is not None and d != s for d, s in zip(spatial, size)):
                raise ValueError(
                    f"The model in {path!r} takes inputs of size {spatial}, but "
                    f"backbone {self.name!r} was asked for input_size={size}."
                )
            return model
        model = self._build_keras(None, size)
        try:
            model.load_weights(path)
        except Exception as e:
            raise ValueError(
                f"Could not load the weights file {path!r} into backbone "
                f"{self.name!r} (include_top=False): {e}"
            ) from e
        return model


class _ModelBuilder:
    """The builder of a user's model: returns it, whatever the weights asked."""

    def __init__(self, model):
        self.model = model

    def __call__(self, **kwargs):
        return self.model

    def __eq__(self, other):
        return isinstance(other, _ModelBuilder) and other.model is self.model

    def __hash__(self):
        return id(self.model)

    def identity(self, weights=None, random_state=None):
        """``"model:"`` + SHA-256 of the architecture and the weights' content."""
        h = hashlib.sha256(self.model.to_json().encode())
        for w in self.model.weights:
            h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
        return "model:" + h.hexdigest()
