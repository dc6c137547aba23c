"""Decode one image file into an RGB ``uint8`` array.

:func:`load_image` is the single place where skbottleneck turns a file on
disk into pixels. It normalises every image the same way (EXIF orientation,
colour mode, alpha, bit depth, size) and turns every kind of failure into an
:class:`ImageError` that names the file, so that a bad file is never replaced
by a silent array of zeros.

The module only needs Pillow and NumPy (no TensorFlow) and :func:`load_image`
changes no global state of Pillow or of :mod:`warnings`, so it is safe to
call from several threads at once. (:func:`quiet_bomb_warnings`, which
changes the warnings filters, is for the one thread that starts a run.)
"""

import contextlib
import io
import os
import stat
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageFile

__all__ = ["ImageError", "MAX_IMAGE_PIXELS", "load_image", "quiet_bomb_warnings",
           "read_image_file"]

#: Largest image, in pixels (width * height of the file), that
#: :func:`load_image` decodes. A larger file raises :class:`ImageError`
#: ("possible decompression bomb") before any pixel is decoded. The default is
#: Pillow's own limit, ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 pixels).
#: Set it to ``None`` to turn this check off. Pillow's own check still applies
#: on top of it: Pillow refuses files over twice ``PIL.Image.MAX_IMAGE_PIXELS``
#: (also reported as an :class:`ImageError`), so to decode bigger images raise
#: both limits. Pillow also warns (``PIL.Image.DecompressionBombWarning``) when
#: it opens a file over its limit, before this check can run; see
#: :func:`quiet_bomb_warnings`.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS

# A JPEG is decoded at a reduced DCT scale (1/2, 1/4 or 1/8) only while the
# decoded image stays at least this many times the target size on both axes.
# Measured on scikit-image's photos saved as JPEG (mean absolute difference
# from a full decode, in gray levels): a margin of 1 (Pillow's own rule, the
# decoded image just >= the target) gives up to 3.9 (chelsea at 32 px, 3.4 for
# astronaut at 64 px); a margin of 2 at most 1.7, usually < 1. Speed, one
# thread: 2000x1500 JPEG -> 224 px 54 img/s full decode, ~100 margin 2, ~170
# margin 1; 1024x768 -> 64 px 128 / ~500 / ~460. A 500x375 JPEG -> 224 px is
# not reduced by either margin (~555 img/s either way).
_DRAFT_MARGIN = 2

_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations whose transposition swaps width and height.
_SWAPS_AXES = {5, 6, 7, 8}

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_WHITE = (255, 255, 255)


class ImageError(ValueError):
    """An image file could not be read or decoded.

    Parameters
    ----------
    path : str
        The file that failed.
    reason : str
        Why it failed, in words (``"no such file"``, ``"empty file (0 bytes)"``,
        ``"truncated or corrupt image data (...)"``, ...).

    Attributes
    ----------
    path : str
        The file that failed.
    reason : str
        Why it failed.

    Examples
    --------
    >>> from skbottleneck.images import ImageError
    >>> err = ImageError("cat.jpg", "empty file (0 bytes)")
    >>> str(err)
    'cat.jpg: empty file (0 bytes)'
    >>> err.path, err.reason
    ('cat.jpg', 'empty file (0 bytes)')
    """

    def __init__(self, path, reason):
        # Both values go to ``args`` so that the error pickles (to and from
        # worker processes) and ``repr`` shows them.
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self):
        return f"{self.path}: {self.reason}"


@contextlib.contextmanager
def quiet_bomb_warnings():
    """Within the block, Pillow's ``DecompressionBombWarning`` is left out when it says nothing.

    Pillow warns when it opens a file of more than ``PIL.Image.MAX_IMAGE_PIXELS``
    pixels, before :func:`load_image` has seen the size. While
    :data:`MAX_IMAGE_PIXELS` is at most Pillow's limit (the default: they are
    equal), :func:`load_image` refuses every such file with an
    :class:`ImageError` that names it, so the warning would only be printed on
    top of that error: this context manager ignores it. When
    :data:`MAX_IMAGE_PIXELS` was raised above Pillow's limit (or set to
    ``None``), the image is decoded and Pillow's warning is left alone.

    It changes the :mod:`warnings` filters of the whole process until the
    block ends (:class:`warnings.catch_warnings` is not thread-safe): enter it
    once, in the thread that starts the work (the command line does, around
    every command), not around each image in a decoding thread. A filter
    added inside the block (``simplefilter("always")``) comes first: enter
    this one after it.
    """
    with warnings.catch_warnings():
        pillow_limit = Image.MAX_IMAGE_PIXELS
        if MAX_IMAGE_PIXELS is not None and pillow_limit is not None and (
                MAX_IMAGE_PIXELS <= pillow_limit):
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        yield


def _check_size(size):
    """Return ``size`` as a ``(height, width)`` tuple of ints, or None."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    try:
        height, width = size
        ok = all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in (height, width)
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "size must be None, a positive int or a (height, width) pair of "
            f"positive ints. Got {size!r} instead."
        )
    return int(height), int(width)


def _orientation(img):
    """EXIF orientation (1-8) of ``img``; 1 when missing or unreadable.

    A broken EXIF block does not make the pixels unusable, so, like image
    viewers, we ignore it rather than fail the whole image.
    """
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
        return value if value in _ORIENTATION_TRANSPOSE else 1
    except Exception:
        return 1


def _draft_jpeg(img, size, orientation):
    """Ask libjpeg for a reduced-scale decode that keeps the target quality.

    ``size`` is the target (height, width) *after* EXIF orientation.
    Pillow's ``draft`` picks the largest scale 1/s (s in 1, 2, 4, 8) with
    ``s <= min(W // w, H // h)``; asking it for ``_DRAFT_MARGIN`` times the
    target keeps the decoded image at least that much larger than the target,
    so that the final bilinear resize still averages over several pixels.
    """
    height, width = size
    if orientation in _SWAPS_AXES:
        height, width = width, height
    img.draft("RGB", (width * _DRAFT_MARGIN, height * _DRAFT_MARGIN))


def _to_8bit(values, mode):
    """Map a gray image of 16/32-bit ints or floats onto 0..255.

    - ``I;16*`` (16-bit files): the full 16-bit range, ``v / 257``.
    - ``I`` (32-bit ints): values within 0..65535 are 16-bit data (how Pillow
      stores many 16-bit PNG/TIFF files) and map as above; any other range is
      stretched linearly from its min..max onto 0..255.
    - ``F`` (floats): values within [0, 1] are scaled by 255, values within
      [0, 255] are kept, any other range is stretched from min..max.
      NaN counts as 0, +-inf as the ends of the range.
    """
    values = np.asarray(values)
    if mode.startswith("I;16"):
        scaled = values.astype(np.float32) / 257.0
    else:
        values = values.astype(np.float64)
        if mode == "F":
            values = np.nan_to_num(values, nan=0.0, posinf=np.inf, neginf=-np.inf)
            finite = values[np.isfinite(values)]
            low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
            values = np.clip(values, low, high)
        else:
            low, high = values.min(), values.max()
        if mode == "F" and low >= 0 and high <= 1:
            scaled = values * 255.0
        elif mode == "F" and low >= 0 and high <= 255:
            scaled = values
        elif mode != "F" and low >= 0 and high <= 65535:
            scaled = values / 257.0
        elif high > low:
            scaled = (values - low) * (255.0 / (high - low))
        else:
            scaled = np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _to_rgb_or_gray(img):
    """Convert a decoded image to mode ``RGB`` or ``L`` (8 bits per channel).

    Transparency (alpha channels, and palette or single-colour transparency)
    is composited onto a white background. Gray images stay ``L`` so that the
    resize runs on one channel; the caller expands them to RGB.
    """
    mode = img.mode
    if mode in ("RGB", "L"):
        if "transparency" not in img.info:
            return img
    elif mode == "1":
        return img.convert("L")
    elif mode.startswith("I") or mode == "F":
        return _to_8bit(img, mode)

    if mode in _ALPHA_MODES or "transparency" in img.info:
        if mode == "La":  # premultiplied LA: Pillow only converts it to LA
            img = img.convert("LA")
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    # P, CMYK (Adobe-inverted CMYK is un-inverted by the JPEG decoder),
    # YCbCr, RGBX, HSV, ...; modes Pillow cannot convert raise ValueError.
    return img.convert("RGB")


def _decode(fp, path, size, draft):
    """Decode the open file ``fp``; Pillow's exceptions propagate."""
    with Image.open(fp) as img:
        if isinstance(img, ImageFile.StubImageFile):  # HDF5, GRIB, BUFR...: no decoder
            raise ImageError(path, f"not an image: a {img.format} file, whose format Pillow "
                                   "recognises but decodes no pixels from")
        width, height = img.size
        limit = MAX_IMAGE_PIXELS
        if limit is not None and width * height > limit:
            raise ImageError(
                path,
                f"image of {width}x{height} = {width * height} pixels is over the "
                f"limit of {limit} pixels (possible decompression bomb; raise "
                "skbottleneck.images.MAX_IMAGE_PIXELS to allow it)",
            )
        if width <= 0 or height <= 0:
            raise ImageError(path, f"image has no pixels ({width}x{height})")

        orientation = None
        if draft and size is not None and img.format == "JPEG":
            # JPEG keeps EXIF before the pixels: reading it decodes nothing.
            orientation = _orientation(img)
            _draft_jpeg(img, size, orientation)
        # Full decode here, inside the caller's ``try``: a truncated or
        # corrupt file fails now rather than giving a partial image.
        img.load()
        if orientation is None:
            orientation = _orientation(img)

        out = _to_rgb_or_gray(img)
        if size is not None:
            target_h, target_w = size
            if orientation in _SWAPS_AXES:
                target_h, target_w = target_w, target_h
            if out.size != (target_w, target_h):
                out = out.resize((target_w, target_h), Image.Resampling.BILINEAR)
        if orientation != 1:
            # Transposing after the resize is the same as before it (with the
            # target swapped) and cheaper on the smaller image.
            out = out.transpose(_ORIENTATION_TRANSPOSE[orientation])
        if out.mode != "RGB":
            out = out.convert("RGB")
        array = np.array(out, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:  # pragma: no cover - defensive
        raise ImageError(path, f"decoded to an unexpected shape {array.shape}")
    return array


def load_image(path, size=None, *, draft=True, data=None):
    """Read an image file as an RGB ``uint8`` array of shape (height, width, 3).

    Parameters
    ----------
    path : str or os.PathLike
        Image file: any format Pillow reads (JPEG, PNG, GIF, BMP, TIFF,
        WebP, ...). Multi-frame files (animated GIF, multi-page TIFF) give
        their first frame.
    size : int or tuple of (int, int), default=None
        Output ``(height, width)``; an int means a square. The image is
        resized to exactly this size with bilinear interpolation (Pillow's,
        which averages over the source pixels when shrinking); the aspect
        ratio is **not** kept, as with
        ``keras.utils.load_img(path, target_size=size)``. ``None`` keeps the
        image's own size.
    draft : bool, default=True
        Let the JPEG decoder decode at 1/2, 1/4 or 1/8 scale when the file is
        much larger than ``size``, which is several times faster. The reduced
        image is always at least twice ``size`` on both axes, so the result
        differs from a full decode by about one gray level on average. Has
        no effect on other formats or when ``size`` is None.
    data : bytes, default=None
        The file's bytes, already read (:func:`read_image_file`): decoded
        instead of opening ``path`` again, which then only names the image.

    Returns
    -------
    image : ndarray of shape (height, width, 3), dtype uint8
        RGB pixels, upright.

    Raises
    ------
    ImageError
        If the file cannot be read or decoded, for whatever reason: missing,
        a directory, permission denied, empty, truncated, not an image,
        corrupt, a colour mode that cannot be converted to RGB, or larger than
        :data:`MAX_IMAGE_PIXELS` (possible decompression bomb). The message
        names the file and the reason; the original exception is chained as
        ``__cause__``.
    ValueError
        If ``size`` is not None, a positive int or a pair of positive ints.

    Notes
    -----
    Every image is normalised the same way:

    - The EXIF ``Orientation`` tag is applied (as
      ``PIL.ImageOps.exif_transpose`` does), so ``size`` refers to the image
      as displayed. A corrupt EXIF block is ignored.
    - Gray, bilevel, palette, CMYK (including Adobe's inverted CMYK JPEGs)
      and YCbCr images are converted to RGB.
    - Transparency (an alpha channel, a transparent palette entry or a
      transparent colour) is composited onto a **white** background.
    - 16-bit gray images (``I;16``) are scaled from 0..65535 to 0..255, not
      clipped; 16-bit RGB(A) PNGs keep their high byte. 32-bit integer
      images with values outside 0..65535 and float images outside
      [0, 1] and [0, 255] are stretched from their min..max onto 0..255.

    Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False (the
    default) for truncated files to be reported; this function never
    changes it.

    A file over ``PIL.Image.MAX_IMAGE_PIXELS`` makes Pillow warn
    (``DecompressionBombWarning``) as it opens it, before the
    :class:`ImageError` this function then raises; this function does not
    touch the warnings filters (that would not be thread-safe): run the
    calls inside :func:`quiet_bomb_warnings` to leave the warning out.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from skbottleneck.images import load_image, ImageError
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "red.png")
    >>> Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(path)
    >>> x = load_image(path)
    >>> x.shape, x.dtype
    ((30, 40, 3), dtype('uint8'))
    >>> x[0, 0].tolist()  # half-transparent red on white
    [255, 127, 127]
    >>> load_image(path, size=(224, 224)).shape
    (224, 224, 3)
    >>> try:
    ...     load_image(os.path.join(tmp.name, "missing.jpg"))
    ... except ImageError as e:
    ...     print(e.reason)
    no such file
    >>> tmp.cleanup()
    """
    path = os.fsdecode(os.fspath(path))
    size = _check_size(size)
    if data is None:
        data, _ = read_image_file(path)  # one open; refuses FIFOs, devices, empty files
    try:
        with io.BytesIO(data) as fp:
            return _decode(fp, path, size, draft)
    except ImageError:
        raise
    except PermissionError as e:
        raise ImageError(path, "permission denied") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(path, f"possible decompression bomb ({e})") from e
    except Image.UnidentifiedImageError as e:
        raise ImageError(
            path, "not an image file, or an image format Pillow cannot read"
        ) from e
    except MemoryError as e:
        raise ImageError(path, "not enough memory to decode the image") from e
    except Exception as e:
        # OSError (truncated data, decoder errors), SyntaxError (bad
        # headers), ValueError, struct.error, EOFError, IndexError, ...
        detail = str(e) or "no details"
        if isinstance(e, OSError) and "truncated" in detail:
            reason = f"truncated image file ({detail})"
        else:
            reason = f"corrupt or unsupported image ({type(e).__name__}: {detail})"
        raise ImageError(path, reason) from e


def read_image_file(path):
    """The bytes of an image file, read with one ``open``, and its ``os.stat``.

    ``fstat`` on the open file comes first: a FIFO, a device or a directory
    is refused before anything is read (reading them would block or never
    end). The bytes are those that :func:`load_image` (``data=``) decodes
    and that the cache hashes, so the two always agree, even when the file
    is rewritten meanwhile.

    Returns
    -------
    data : bytes
    stat : os.stat_result or None
        Of the file as read; None when it changed while it was read (its
        bytes are then a mix no later ``stat`` can name).

    Raises
    ------
    ImageError
        Missing, not a regular file, empty, or unreadable.
    """
    path = os.fsdecode(os.fspath(path))
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not block (fstat says what it is)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as e:
        raise ImageError(path, "no such file") from e
    except IsADirectoryError as e:
        raise ImageError(path, "is a directory, not an image file") from e
    except PermissionError as e:
        raise ImageError(path, "permission denied") from e
    except OSError as e:
        raise ImageError(path, f"cannot access file ({e.strerror or e})") from e
    try:
        before = os.fstat(fd)
        if stat.S_ISDIR(before.st_mode):
            raise ImageError(path, "is a directory, not an image file")
        if not stat.S_ISREG(before.st_mode):
            raise ImageError(path, "not a regular file")
        chunks = []
        while True:  # a regular file: reads never block, whatever O_NONBLOCK says
            chunk = os.read(fd, max(1 << 16, before.st_size + 1))
            if not chunk:
                break
            chunks.append(chunk)
        after = os.fstat(fd)
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from e
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    same = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
        after.st_size, after.st_mtime_ns, after.st_ctime_ns) and before.st_size == len(data)
    return data, (before if same else None)
