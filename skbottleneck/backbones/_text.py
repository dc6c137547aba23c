"""The text side of an image-text keras-hub preset (CLIP, SigLIP).

An image-text model maps an image (its ``pooling="cls"`` features, the
pooled image embedding) and a text into one space, where the cosine of the
two says how well the text describes the image. :class:`TextEncoder` turns
texts into that space with the preset's own tokenizer and text tower, and
knows the model's learned logit scale. It serves zero-shot classification
(:class:`~skbottleneck.heads.ZeroShotClassifier`) and text-to-image search
(``find_similar(store, text=...)``), which :func:`text_encoder_for_store`
checks against the feature space a store records.
"""

import json
import threading

import numpy as np

from ..utils import check_seed
from ._build import seeded
from ._registry import resolve_backbone

__all__ = ["TextEncoder", "image_text_family", "text_encoder_for_store"]

_MEMO = {}
_LOCK = threading.Lock()


def image_text_family(entry):
    """``"clip"`` or ``"siglip"`` for an image-text preset entry, else None."""
    family = getattr(entry.builder, "family", None)
    return family if family in ("clip", "siglip") else None


class TextEncoder:
    """Texts into the image embedding space of an image-text preset.

    Parameters
    ----------
    backbone : str
        An image-text keras-hub preset: a registered name
        (``"siglip2_base_patch16_224"``, ``"clip_vit_base_patch16"``) or a
        local preset directory holding its tokenizer.
    weights : {"imagenet"} or None, default="imagenet"
        The preset's weights, or a random initialisation (``random_state``)
        that equals the image side's built with the same seed.
    random_state : int, default=None
        Seed when ``weights=None``.

    Attributes
    ----------
    logit_scale : float
        The model's learned temperature: logits are ``logit_scale * cos``.
    """

    def __init__(self, backbone, weights="imagenet", random_state=None):
        self.entry = resolve_backbone(backbone)
        if image_text_family(self.entry) is None:
            raise ValueError(
                f"Backbone {self.entry.name!r} is not an image-text model: text needs a CLIP "
                "or SigLIP keras-hub preset (e.g. 'siglip2_base_patch16_224', "
                "'clip_vit_base_patch16', or a local directory of one)."
            )
        self.weights, self.random_state = weights, check_seed(random_state)
        key = (self.entry.name, self.entry.weights_identity(weights, self.random_state))
        with _LOCK:
            if key not in _MEMO:
                _MEMO.clear()  # one text tower at a time
                _MEMO[key] = self._load()
            self._backbone, self._preprocessor = _MEMO[key]
        head = getattr(self._backbone, "clip_head", None) or self._backbone.siglip_head
        self.logit_scale = float(np.exp(np.asarray(head.logit_scale)))

    def _load(self):
        from ._keras_hub import import_keras_hub

        keras_hub = import_keras_hub()
        location = self.entry.builder.location()
        with seeded(self.random_state if self.weights is None else None):
            backbone = keras_hub.models.Backbone.from_preset(
                location, load_weights=self.weights is not None)
        classes = {"clip": keras_hub.models.CLIPPreprocessor,
                   "siglip": keras_hub.models.SigLIPPreprocessor}
        preprocessor = classes[image_text_family(self.entry)].from_preset(location)
        return backbone, preprocessor

    def encode(self, texts):
        """Embeddings of ``texts``, shape ``(len(texts), dim)``, float32, not normalised.

        Parameters
        ----------
        texts : str or sequence of str
        """
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        if not texts:
            raise ValueError("TextEncoder.encode got no text.")
        images = np.zeros((len(texts), 1, 1, 3), dtype="float32")  # SigLIP's preprocessor wants some
        inputs = self._preprocessor({"prompts": texts, "images": images})
        embeddings = self._backbone.get_text_embeddings(inputs["token_ids"])
        return np.asarray(embeddings, dtype=np.float32)


def text_encoder_for_store(fingerprint, weights=None, where="the store"):
    """The :class:`TextEncoder` matching a store's feature space, or a clear refusal.

    Parameters
    ----------
    fingerprint : dict or str
        The store's fingerprint (its metadata's ``"fingerprint"``).
    weights : ignored for presets; kept for symmetry with image queries.
    where : str
        The store's path, for messages.

    Raises
    ------
    ValueError
        The store holds features of another kind than an image-text preset's
        pooled image embedding (``pooling="cls"``), or of other weights.
    """
    from ._weights import parse_weights_identity

    if isinstance(fingerprint, str):
        fingerprint = json.loads(fingerprint)
    name = fingerprint.get("backbone")
    try:
        entry = resolve_backbone(name)
    except ValueError:
        entry = None
    if entry is None or image_text_family(entry) is None or fingerprint.get("pooling") != "cls":
        raise ValueError(
            f"Text search needs a store of image-text features (a CLIP or SigLIP keras-hub "
            f"preset, pooling='cls'); {where} holds features of backbone {name!r} with "
            f"pooling={fingerprint.get('pooling')!r}. Extract the images again with e.g. "
            "CNNFeatureTransformer('siglip2_base_patch16_224'), or search by image."
        )
    kind, value = parse_weights_identity(fingerprint.get("weights"))
    encoder_weights, seed = ("imagenet", None) if kind == "preset" else (None, value)
    if kind not in ("preset", "random") or value is None:
        raise ValueError(f"The features in {where} come from weights {fingerprint.get('weights')!r}"
                         ", which a text encoder cannot be matched to.")
    identity = entry.weights_identity(encoder_weights, seed)
    if identity != fingerprint.get("weights"):
        raise ValueError(
            f"The features in {where} were computed with weights {fingerprint.get('weights')!r}; "
            f"the preset {name!r} on this machine has {identity!r}: its text encoder would "
            "not match the stored image embeddings."
        )
    return TextEncoder(name, weights=encoder_weights, random_state=seed)
