"""Rebuild the transformer that wrote a feature store, to predict new images."""

import json
import os

from ._fingerprint import precision_of
from ._transformer import CNNFeatureTransformer

__all__ = ["transformer_from_store"]


def _params_from_fingerprint(fingerprint):
    params = {key: fingerprint.get(key) for key in ("backbone", "layer", "pooling", "dtype")}
    params["input_size"] = tuple(fingerprint["input_size"])
    params["mixed_precision"] = bool(fingerprint.get("mixed_precision", False))
    params["precision"] = precision_of(fingerprint)
    return params


def transformer_from_store(store, weights=None):
    """The (unfitted) :class:`CNNFeatureTransformer` that wrote ``store``.

    Parameters
    ----------
    store : FeatureStore
        Written by :meth:`CNNFeatureTransformer.extract`.
    weights : str or path-like, default=None
        The weights file, when the features were extracted with one (the
        store records only its checksum).

    Returns
    -------
    transformer : CNNFeatureTransformer
        Same backbone, weights, layer, pooling, input size, dtype and
        precision, with ``cache_dir="auto"``, ``on_error="raise"`` and
        ``verbose=0``. Fit it on the store (``transformer.fit(store)``): an
        int8 one takes over the store's calibration that way.

    Raises
    ------
    ValueError
        The store records no model, or one that cannot be rebuilt (a user's
        Keras model, unseeded random weights, a weights file not given).
    """
    from ..backbones import parse_weights_identity

    meta = dict(getattr(store, "metadata", {}) or {})
    where = getattr(store, "path", store)
    try:
        fingerprint = json.loads(meta["fingerprint"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"The feature store {where} has no model fingerprint in its metadata; "
                         "was it written by CNNFeatureTransformer.extract?") from None
    params = _params_from_fingerprint(fingerprint)
    kind, value = parse_weights_identity(fingerprint.get("weights"))
    if kind == "model":
        raise ValueError(f"The features in {where} come from a user Keras model, which the "
                         "store does not hold; build the Pipeline in Python with that model, or "
                         "register its builder by name (skbottleneck.register_backbone) and "
                         "extract with that name.")
    if kind == "random" and value is None:
        raise ValueError(f"The features in {where} come from unseeded random weights, which "
                         "cannot be rebuilt to predict new images; extract again with a "
                         "random_state.")
    if kind in ("imagenet", "preset"):  # pretrained: a registry's or a keras-hub preset's
        params["weights"] = "imagenet" if weights is None else weights
    elif kind == "random":
        params["weights"], params["random_state"] = weights, int(value)
    else:  # "file": the store holds only the file's checksum
        if weights is None:
            raise ValueError(f"The features in {where} were extracted with a weights file "
                             f"(sha256 {str(value)[:12]}...); pass weights=PATH.")
        params["weights"] = os.fspath(weights)
    params.update(verbose=0, on_error="raise", cache_dir="auto")
    return CNNFeatureTransformer(**params)
