"""Thumbnails of image files as ``data:`` URIs, for HTML pages that open offline.

A thumbnail is decoded with the package's own decoder
(:func:`skbottleneck.images.load_image`: EXIF orientation, colour modes,
alpha and bit depth handled as for the CNN), shrunk to fit a square of
``size`` pixels with its aspect ratio kept (a JPEG is decoded at reduced
scale when it is much larger), and embedded as a base64 JPEG. Embedding keeps
the page one file: it can be moved, mailed or attached to a CI run without a
folder beside it, and can never show a thumbnail of another run.

An image that cannot be read gives no thumbnail but its reason, which the
page shows in a placeholder: a report never fails for a bad image.
"""

import base64
import io
import os

__all__ = ["Thumbnails"]

#: JPEG quality of the embedded thumbnails: ~3-5 KB each at 128 px.
_QUALITY = 82


class Thumbnails:
    """Thumbnails by path, each decoded once.

    Parameters
    ----------
    size : int, default=128
        Longest side of a thumbnail, in pixels. Smaller images keep their size.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "wide.png")
    >>> Image.new("RGB", (400, 100), (0, 128, 255)).save(path)
    >>> thumbs = Thumbnails(size=64)
    >>> uri, reason = thumbs.get(path)
    >>> uri.startswith("data:image/jpeg;base64,"), reason
    (True, None)
    >>> thumbs.get(os.path.join(tmp.name, "missing.jpg"))
    (None, 'no such file')
    >>> tmp.cleanup()
    """

    def __init__(self, size=128):
        self.size = size
        self._done = {}

    def get(self, path):
        """``(data_uri, None)`` for a readable image, ``(None, reason)`` otherwise."""
        key = os.fsdecode(os.fspath(path))
        if key not in self._done:
            self._done[key] = self._make(key)
        return self._done[key]

    def _make(self, path):
        from PIL import Image

        from ..images import ImageError, load_image, read_image_file

        try:
            data, _ = read_image_file(path)
            pixels = load_image(path, self._target(data), data=data)
        except ImageError as e:
            return None, e.reason
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=_QUALITY)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), None

    def _target(self, data):
        """``(height, width)`` fitting ``size`` with the aspect ratio kept; None to decode as is.

        Read from the header only. The decoder applies the EXIF orientation,
        so a rotated image's sides are swapped first.
        """
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # Orientation: a quarter turn
                    width, height = height, width
        except Exception:
            return None  # load_image names what is wrong
        scale = min(1.0, self.size / max(width, height, 1))
        return max(1, round(height * scale)), max(1, round(width * scale))
