"""Augmented views of an image, each a fixed, seeded transformation.

Bottleneck features are computed once, ahead of training, which is why
they are said to rule out data augmentation. :class:`ImageViews` lifts that:
``n_views`` deterministic views per image (view 0 the image itself, the
others flipped, cropped at a few scales and slightly colour-jittered) go
through the CNN once each, and each view's features are cached under the
image's content key combined with the view's own description, so a second
``fit``, or every fold of a grid search, runs no CNN.

A view is the same transformation for every image (view 3 is, say, "flip,
crop 85% at (0.07, 0.11), brightness 1.04"): it depends on ``random_state``
and the view's index only, so it can be written down, cached and
reproduced elsewhere.
"""

import hashlib
import json
import os
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, validate_params

from ..images import load_image

__all__ = ["ImageViews", "check_views", "check_views_fit", "derive_view_keys"]

#: Bump when the rendering of a view changes (the view keys change with it).
VIEWS_FORMAT_VERSION = 1


class ImageViews(BaseEstimator):
    """The augmented views to compute for every image.

    View 0 is the image itself (its features are the plain features,
    shared with the cache of a plain ``transform``). Views 1 to
    ``n_views - 1`` cycle through the crop ``scales`` (the fraction of each
    side kept), with a horizontal flip on every other view, a seeded crop
    position and a seeded brightness, contrast and saturation factor in
    ``[1 - jitter, 1 + jitter]``.

    Parameters
    ----------
    n_views : int, default=8
        Views per image, the image itself included.
    flip : bool, default=True
        Flip odd views left-right.
    scales : tuple of float in (0, 1], default=(1.0, 0.85, 0.7)
        Fractions of the image's width and height kept by the crops, used in turn.
    jitter : float in [0, 0.5], default=0.1
        Largest relative change of brightness, contrast and saturation.
    random_state : int, default=0
        Seed of the crop positions and colour factors.

    Examples
    --------
    >>> from skbottleneck import ImageViews
    >>> views = ImageViews(n_views=4, random_state=0)
    >>> views.view(0)
    {'identity': True}
    >>> sorted(views.view(1))
    ['brightness', 'contrast', 'crop', 'flip', 'saturation']
    """

    _parameter_constraints = {
        "n_views": [Interval(Integral, 1, None, closed="left")],
        "flip": ["boolean"],
        "scales": [tuple, list],
        "jitter": [Interval(Real, 0, 0.5, closed="both")],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
    }

    def __init__(self, n_views=8, *, flip=True, scales=(1.0, 0.85, 0.7), jitter=0.1,
                 random_state=0):
        self.n_views = n_views
        self.flip = flip
        self.scales = scales
        self.jitter = jitter
        self.random_state = random_state

    def _validate(self):
        self._validate_params()
        scales = tuple(float(s) for s in self.scales)
        if not scales or not all(0 < s <= 1 for s in scales):
            raise ValueError(f"The 'scales' parameter of ImageViews must be a non-empty tuple "
                             f"of fractions in (0, 1]. Got {self.scales!r} instead.")
        return scales

    def view(self, index):
        """The transformation of view ``index``, as a JSON-able dict."""
        return self._view(index, None if index == 0 else self._validate())

    def _view(self, index, scales):
        """:meth:`view` with the parameters checked once by the caller (``scales``):
        ``describe`` and ``key_specs`` of many views cost a seeded draw each."""
        if index == 0:
            return {"identity": True}
        rng = np.random.default_rng([int(self.random_state), int(index)])
        scale = scales[(index - 1) // 2 % len(scales)] if self.flip else scales[
            (index - 1) % len(scales)]
        x0, y0 = rng.uniform(0, 1 - scale, size=2) if scale < 1 else (0.0, 0.0)
        factors = rng.uniform(1 - self.jitter, 1 + self.jitter, size=3)
        return {
            "flip": bool(self.flip and index % 2 == 1),
            "crop": [round(float(x0), 4), round(float(y0), 4), scale],
            "brightness": round(float(factors[0]), 4),
            "contrast": round(float(factors[1]), 4),
            "saturation": round(float(factors[2]), 4),
        }

    def _views(self, start=0, stop=None):
        scales = self._validate()
        return [self._view(i, scales) for i in range(start, self.n_views if stop is None
                                                     else stop)]

    def describe(self):
        """Every view's transformation: a JSON string (recorded in stores)."""
        return json.dumps({"version": VIEWS_FORMAT_VERSION, "views": self._views()},
                          sort_keys=True)

    def key_specs(self):
        """What each view adds to an image's content key (bytes; view 0 adds nothing)."""
        return [json.dumps([VIEWS_FORMAT_VERSION, view], sort_keys=True).encode()
                for view in self._views(1)]

    def view_keys(self, key):
        """The cache keys of the views of the image whose content key is ``key``."""
        return derive_view_keys(key, self.key_specs())

    def render(self, path, size, data=None):
        """The views of one image file: ``uint8`` array ``(n_views, height, width, 3)``.

        View 0 is :func:`~skbottleneck.images.load_image` of the file at
        ``size``, exactly; the others are cut from the full decode.
        """
        from PIL import Image, ImageEnhance

        height, width = size
        out = np.empty((self.n_views, height, width, 3), dtype=np.uint8)
        out[0] = load_image(path, size, data=data)
        if self.n_views == 1:
            return out
        full = Image.fromarray(load_image(path, None, data=data))
        w, h = full.size
        for i, spec in enumerate(self._views(1), start=1):
            x0, y0, scale = spec["crop"]
            box = (x0 * w, y0 * h, (x0 + scale) * w, (y0 + scale) * h)
            img = full.resize((width, height), Image.Resampling.BILINEAR, box=box)
            if spec["flip"]:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img = ImageEnhance.Brightness(img).enhance(spec["brightness"])
            img = ImageEnhance.Contrast(img).enhance(spec["contrast"])
            img = ImageEnhance.Color(img).enhance(spec["saturation"])
            out[i] = np.asarray(img, dtype=np.uint8)
        return out


def derive_view_keys(key, specs):
    """``[key]`` and one key per view spec of :meth:`ImageViews.key_specs`, of ``key``'s length."""
    return [key] + [hashlib.blake2b(key + b"\0view\0" + spec, digest_size=len(key)).digest()
                    for spec in specs]


@validate_params({"augment": [ImageViews, Interval(Integral, 1, None, closed="left"), None]},
                 prefer_skip_nested_validation=True)
def check_views(augment):
    """``augment`` as :class:`ImageViews` (an int is ``ImageViews(n_views=augment)``), or None.

    One view (the image itself) is no augmentation: None.
    """
    views = ImageViews(n_views=int(augment)) if isinstance(augment, Integral) else augment
    if views is None:
        return None
    views._validate()
    return None if views.n_views == 1 else views


def check_views_fit(views, store, n_images, n_features, dtype):
    """Refuse at once the views of a new ``store`` that cannot fit on its disk.

    Run before anything is computed: describing a million views (recorded in
    the store) takes minutes, after which the writer's own check refused them.
    A store that exists, or is partly written, is left to the writer's check
    (it counts only the rows missing).

    Raises
    ------
    skbottleneck.store.InsufficientDiskSpaceError
        ``n_images * n_views`` rows of ``n_features`` do not fit.
    """
    if views is None or store is None:
        return
    store = os.fspath(store)
    if os.path.exists(store) or os.path.exists(store + ".partial"):
        return
    from ..store import check_disk_space

    itemsize = np.dtype(dtype).itemsize
    n_rows = n_images * views.n_views
    check_disk_space(os.path.dirname(os.path.abspath(store)), n_rows * n_features * itemsize,
                     what=f"features of {n_images} images x {views.n_views} views x "
                          f"{n_features} x {itemsize} bytes")
