"""Tests for skbottleneck.images: real image files written to tmp_path."""

import concurrent.futures
import doctest
import io
import multiprocessing
import os
import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageOps

import skbottleneck.images
from skbottleneck.images import ImageError, load_image


def _photo(name="astronaut"):
    import skimage.data

    return getattr(skimage.data, name)()


def _check_rgb(x, shape):
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.uint8
    assert x.shape == shape
    assert x.flags.writeable


def _write_png16(path, array):
    """Write a 16-bit RGB or RGBA PNG (Pillow cannot write those)."""
    h, w, c = array.shape
    color_type = {3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


@pytest.fixture(scope="module")
def astronaut_jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    Image.fromarray(_photo("astronaut")).save(path, quality=90)
    return path


# --------------------------------------------------------------- good files


def test_rgb_jpeg_native_size(astronaut_jpeg):
    x = load_image(astronaut_jpeg)
    _check_rgb(x, (512, 512, 3))
    assert np.abs(x.astype(int) - _photo("astronaut")).mean() < 3


def test_accepts_str_and_pathlib(astronaut_jpeg):
    np.testing.assert_array_equal(
        load_image(astronaut_jpeg, 32), load_image(str(astronaut_jpeg), (32, 32))
    )


def test_rgb_png_is_lossless(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 256, (13, 17, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    x = load_image(tmp_path / "x.png")
    _check_rgb(x, (13, 17, 3))
    np.testing.assert_array_equal(x, rgb)


def test_resize_to_exact_size_bilinear_aspect_not_kept(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 256, (40, 100, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    x = load_image(tmp_path / "x.png", size=(30, 20))
    _check_rgb(x, (30, 20, 3))
    expected = Image.fromarray(rgb).resize((20, 30), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(x, np.asarray(expected))
    _check_rgb(load_image(tmp_path / "x.png", size=7), (7, 7, 3))


@pytest.mark.parametrize("size", [0, -3, (0, 5), (5,), (1, 2, 3), "32", (2.0, 3), True])
def test_invalid_size_is_a_plain_value_error(tmp_path, size):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match="size must be") as info:
        load_image(tmp_path / "x.png", size=size)
    assert not isinstance(info.value, ImageError)


def _gray_values():
    return np.array([[0, 1, 100, 254, 255]], dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_gray_l_lossless_formats(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    options = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(_gray_values()).save(path, format=fmt, **options)
    x = load_image(path)
    _check_rgb(x, (1, 5, 3))
    for c in range(3):
        np.testing.assert_array_equal(x[..., c], _gray_values())


def test_gray_jpeg_channels_equal(tmp_path):
    gray = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.jpg")
    assert Image.open(tmp_path / "g.jpg").mode == "L"
    x = load_image(tmp_path / "g.jpg", size=(24, 32))
    _check_rgb(x, (24, 32, 3))
    assert (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()


def test_bilevel_mode_1(tmp_path):
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    x = load_image(tmp_path / "b.png")
    _check_rgb(x, (2, 4, 3))
    assert set(np.unique(x)) == {0, 255}
    assert x[0, 1].tolist() == [255, 255, 255] and x[0, 0].tolist() == [0, 0, 0]


def test_rgba_png_composited_on_white(tmp_path):
    rgba = np.array(
        [[[255, 0, 0, 128], [0, 0, 0, 0], [10, 20, 30, 255], [0, 0, 255, 64]]],
        dtype=np.uint8,
    )
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    _check_rgb(x, (1, 4, 3))
    alpha = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)
    assert np.abs(x - expected).max() <= 1
    assert x[0, 1].tolist() == [255, 255, 255]  # fully transparent -> white
    assert x[0, 2].tolist() == [10, 20, 30]  # opaque -> unchanged


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_la_composited_on_white(tmp_path, fmt):
    la = np.array([[[0, 0], [100, 255], [0, 128]]], dtype=np.uint8)
    path = tmp_path / f"la.{fmt.lower()}"
    Image.fromarray(la, mode="LA").save(path, format=fmt)
    assert Image.open(path).mode == "LA"
    x = load_image(path)
    assert x[..., 0].tolist() == [[255, 100, 127]]
    assert (x[..., 0] == x[..., 2]).all()


def _palette_image(mode="P"):
    img = Image.new(mode, (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    for i in range(3):
        img.putpixel((i, 0), i if mode == "P" else (i, 255))
    return img


def test_palette_png_without_transparency(tmp_path):
    _palette_image().save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    x = load_image(tmp_path / "p.png")
    assert x.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_composited_on_white(tmp_path, fmt):
    path = tmp_path / f"p.{fmt.lower()}"
    _palette_image().save(path, format=fmt, transparency=1)  # green is transparent
    with Image.open(path) as img:
        assert img.mode == "P" and "transparency" in img.info
    x = load_image(path)
    assert x.tolist() == [[[255, 0, 0], [255, 255, 255], [0, 0, 255]]]


def test_palette_png_with_partial_alpha_table(tmp_path):
    img = _palette_image()
    img.info["transparency"] = bytes([255, 0, 128])  # tRNS: one alpha per entry
    img.save(tmp_path / "p.png", transparency=bytes([255, 0, 128]))
    x = load_image(tmp_path / "p.png")
    assert x[0, 0].tolist() == [255, 0, 0]
    assert x[0, 1].tolist() == [255, 255, 255]
    assert np.abs(x[0, 2].astype(int) - [127, 127, 255]).max() <= 1


def test_pa_tiff_composited_on_white(tmp_path):
    img = _palette_image("PA")
    img.putpixel((1, 0), (1, 0))  # green, fully transparent
    img.save(tmp_path / "pa.tif")
    assert Image.open(tmp_path / "pa.tif").mode == "PA"
    x = load_image(tmp_path / "pa.tif")
    assert x.tolist() == [[[255, 0, 0], [255, 255, 255], [0, 0, 255]]]


def test_rgb_png_with_transparent_colour(tmp_path):
    rgb = np.array([[[1, 2, 3], [9, 9, 9]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "t.png", transparency=(9, 9, 9))
    x = load_image(tmp_path / "t.png")
    assert x.tolist() == [[[1, 2, 3], [255, 255, 255]]]


def test_premultiplied_rgba_tiff(tmp_path):
    # Pillow writes unassociated alpha (ExtraSamples=2); patch the tag to 1
    # (associated, i.e. premultiplied alpha), which Pillow un-premultiplies.
    premultiplied = np.array([[[128, 0, 0, 128], [0, 0, 0, 0]]], dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(premultiplied, mode="RGBA").save(buffer, format="TIFF")
    entry = struct.pack("<HHII", 338, 3, 1, 2)
    data = buffer.getvalue()
    assert data.count(entry) == 1
    associated = struct.pack("<HHII", 338, 3, 1, 1)
    (tmp_path / "a.tif").write_bytes(data.replace(entry, associated))
    x = load_image(tmp_path / "a.tif")
    assert np.abs(x[0, 0].astype(int) - [255, 127, 127]).max() <= 1
    assert x[0, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    "mode, color", [("La", (64, 128)), ("RGBa", (64, 64, 64, 128))]
)
def test_in_memory_premultiplied_modes(mode, color):
    # Pillow reads no file as "La"/"RGBa"; check the conversion step itself:
    # premultiplied 64 at alpha 128 is 127 straight, over white 127 + 127.
    img = Image.new(mode, (1, 1), color)
    out = skbottleneck.images._to_rgb_or_gray(img)
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out)[0, 0].astype(int) - 191).max() <= 2


def test_cmyk_jpeg_adobe_inverted(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as img:
        assert img.mode == "CMYK" and "adobe" in img.info
        assert img.tile[0].args[0] == "CMYK;I"  # stored inverted, Adobe style
    x = load_image(tmp_path / "c.jpg")
    _check_rgb(x, (16, 16, 3))
    assert np.abs(x.astype(int) - [255, 0, 0]).max() <= 3


def test_cmyk_and_ycbcr_tiff(tmp_path):
    Image.new("CMYK", (2, 2), (0, 255, 0, 0)).save(tmp_path / "c.tif")
    assert load_image(tmp_path / "c.tif")[0, 0].tolist() == [255, 0, 255]
    ycbcr = Image.new("RGB", (2, 2), (30, 200, 90)).convert("YCbCr")
    ycbcr.save(tmp_path / "y.tif")
    assert Image.open(tmp_path / "y.tif").mode == "YCbCr"
    x = load_image(tmp_path / "y.tif")
    assert np.abs(x[0, 0].astype(int) - [30, 200, 90]).max() <= 2


_U16 = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
_U16_AS_8BIT = [[0, 1, 4, 128, 255]]  # v / 257, rounded; not clipped


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_gray_scaled_not_clipped(tmp_path, fmt):
    path = tmp_path / f"g16.{fmt.lower()}"
    Image.fromarray(_U16).save(path, format=fmt)
    assert Image.open(path).mode == "I;16"
    x = load_image(path)
    _check_rgb(x, (1, 5, 3))
    assert x[..., 1].tolist() == _U16_AS_8BIT


def test_16bit_big_endian_tiff(tmp_path):
    big_endian = Image.frombytes("I;16B", (5, 1), _U16.astype(">u2").tobytes())
    big_endian.save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    assert load_image(tmp_path / "b.tif")[..., 0].tolist() == _U16_AS_8BIT


def test_32bit_int_tiff(tmp_path):
    Image.fromarray(_U16.astype(np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert load_image(tmp_path / "i.tif")[..., 2].tolist() == _U16_AS_8BIT
    # a range outside 0..65535 is stretched from min..max
    values = np.array([[-1000, 0, 1000]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "n.tif")
    assert load_image(tmp_path / "n.tif")[..., 0].tolist() == [[0, 128, 255]]


def test_float_tiff(tmp_path):
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(unit).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert load_image(tmp_path / "f.tif")[..., 0].tolist() == [[0, 128, 255]]
    values = np.array([[-5.0, 0.0, 5.0, np.nan]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "g.tif")
    assert load_image(tmp_path / "g.tif")[..., 0].tolist() == [[0, 128, 255, 128]]


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_rgb_png(tmp_path, channels):
    rgb16 = np.array([[[0, 33096, 65535], [65535, 0, 1000]]], dtype=np.uint16)
    if channels == 4:
        rgb16 = np.concatenate([rgb16, np.full((1, 2, 1), 65535, np.uint16)], axis=2)
    _write_png16(tmp_path / "c16.png", rgb16)
    x = load_image(tmp_path / "c16.png")
    _check_rgb(x, (1, 2, 3))
    expected = rgb16[..., :3] / 257.0
    assert np.abs(x - expected).max() <= 1


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    x = load_image(tmp_path / "a.gif")
    assert x[0, 0].tolist() == [255, 0, 0]


# --------------------------------------------------------------- orientation


def _write_oriented_jpeg(path, orientation, size=(40, 20)):
    """A JPEG whose stored left half is red and right half blue."""
    w, h = size
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[:, : w // 2] = (255, 0, 0)
    rgb[:, w // 2 :] = (0, 0, 255)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(rgb).save(path, quality=95, exif=exif)


def test_exif_rotation_applied(tmp_path):
    # Orientation 6: the stored image must be turned 90 degrees clockwise.
    _write_oriented_jpeg(tmp_path / "r.jpg", 6)
    x = load_image(tmp_path / "r.jpg")
    _check_rgb(x, (40, 20, 3))  # displayed portrait
    assert x[2, 10].tolist()[0] > 200 and x[2, 10].tolist()[2] < 50  # red on top
    assert x[37, 10].tolist()[2] > 200 and x[37, 10].tolist()[0] < 50  # blue below
    # size is the displayed (height, width)
    _check_rgb(load_image(tmp_path / "r.jpg", size=(30, 10)), (30, 10, 3))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_match_pillow_exif_transpose(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    _write_oriented_jpeg(path, orientation)
    with Image.open(path) as img:
        reference = ImageOps.exif_transpose(img).convert("RGB")
    np.testing.assert_array_equal(load_image(path), np.asarray(reference))
    resized = np.asarray(reference.resize((12, 8), Image.Resampling.BILINEAR))
    x = load_image(path, size=(8, 12))
    assert np.abs(x.astype(int) - resized).max() <= 2


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_is_ignored(tmp_path):
    rgb = np.full((8, 8, 3), 77, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "e.jpg", exif=b"Exif\x00\x00MM\x00*garbage")
    x = load_image(tmp_path / "e.jpg")
    _check_rgb(x, (8, 8, 3))


def test_exif_rotation_with_draft(tmp_path):
    rgb = np.asarray(Image.fromarray(_photo("chelsea")).resize((800, 400)))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=90, exif=exif)
    fast = load_image(tmp_path / "big.jpg", size=(100, 50), draft=True)
    full = load_image(tmp_path / "big.jpg", size=(100, 50), draft=False)
    _check_rgb(fast, (100, 50, 3))
    assert 0 < np.abs(fast.astype(int) - full).mean() < 2.5


# --------------------------------------------------------------- draft mode


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_draft_close_to_full_decode(tmp_path, name):
    path = tmp_path / f"{name}.jpg"
    Image.fromarray(_photo(name)).save(path, quality=90)
    fast = load_image(path, size=(64, 64), draft=True)
    full = load_image(path, size=(64, 64), draft=False)
    _check_rgb(fast, (64, 64, 3))
    mae = np.abs(fast.astype(int) - full).mean()
    assert 0 < mae < 2.5  # draft was used, and stays within resize tolerance


def test_draft_not_used_when_target_is_large(astronaut_jpeg):
    np.testing.assert_array_equal(
        load_image(astronaut_jpeg, size=(300, 300), draft=True),
        load_image(astronaut_jpeg, size=(300, 300), draft=False),
    )


# --------------------------------------------------------------- bad files


def _assert_image_error(path, match, **kwargs):
    with pytest.raises(ImageError, match=match) as info:
        load_image(path, **kwargs)
    err = info.value
    assert err.path == str(path)
    assert str(path) in str(err)
    assert str(err) == f"{err.path}: {err.reason}"
    return err


def test_missing_file(tmp_path):
    _assert_image_error(tmp_path / "nope.jpg", "no such file")


def test_directory(tmp_path):
    _assert_image_error(tmp_path, "is a directory")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    _assert_image_error(tmp_path / "empty.jpg", r"empty file \(0 bytes\)")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file"
)
def test_permission_denied(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        _assert_image_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_denied_when_opening(tmp_path, monkeypatch):
    # Works under root too: the OS refusal is simulated at the `os.open` call
    # that reads the file (for this file only).
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    real_open = os.open

    def refuse(name, *args, **kwargs):
        if os.fspath(name) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    _assert_image_error(path, "permission denied")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a picture\n" * 20)
    _assert_image_error(tmp_path / "notes.jpg", "not an image file")


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.95])
def test_truncated_jpeg(tmp_path, astronaut_jpeg, fraction):
    data = astronaut_jpeg.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: int(len(data) * fraction)])
    _assert_image_error(tmp_path / "cut.jpg", "truncated")
    _assert_image_error(tmp_path / "cut.jpg", "truncated", size=(32, 32))


def test_truncated_png(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _assert_image_error(tmp_path / "cut.png", "truncated|corrupt")


def test_header_only_png(tmp_path):
    (tmp_path / "h.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    _assert_image_error(tmp_path / "h.png", "truncated|corrupt|not an image")


def test_decompression_bomb_module_limit(tmp_path, monkeypatch):
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(skbottleneck.images, "MAX_IMAGE_PIXELS", 1000)
    err = _assert_image_error(tmp_path / "big.png", "decompression bomb")
    assert "1200" in err.reason and "1000" in err.reason
    monkeypatch.setattr(skbottleneck.images, "MAX_IMAGE_PIXELS", None)
    _check_rgb(load_image(tmp_path / "big.png"), (30, 40, 3))


def test_decompression_bomb_error_from_pillow(tmp_path, monkeypatch):
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(skbottleneck.images, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1200 > 2 * 500
    _assert_image_error(tmp_path / "big.png", "decompression bomb")


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_warning_as_error(tmp_path, monkeypatch):
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(skbottleneck.images, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1000 < 1200 < 2000
    _assert_image_error(tmp_path / "big.png", "decompression bomb")


def test_quiet_bomb_warnings_when_the_image_is_refused(tmp_path, monkeypatch):
    """Pillow warns as it opens the file; the ImageError that follows says it all."""
    import contextlib
    import warnings

    from skbottleneck.images import quiet_bomb_warnings

    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")  # 1200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow warns: 1000 < 1200 < 2000
    monkeypatch.setattr(skbottleneck.images, "MAX_IMAGE_PIXELS", 1000)

    filters = list(warnings.filters)

    def load(quiet):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_bomb_warnings() if quiet else contextlib.nullcontext():
                try:
                    return load_image(tmp_path / "big.png"), caught
                except ImageError as e:
                    return e, caught

    error, caught = load(quiet=False)  # the warning, then the error
    assert isinstance(error, ImageError)
    assert [w.category for w in caught] == [Image.DecompressionBombWarning]
    error, caught = load(quiet=True)
    assert isinstance(error, ImageError) and "decompression bomb" in error.reason
    assert caught == []
    # raised above Pillow's limit, ours lets the image through: Pillow's warning stays
    monkeypatch.setattr(skbottleneck.images, "MAX_IMAGE_PIXELS", 5000)
    image, caught = load(quiet=True)
    _check_rgb(image, (30, 40, 3))
    assert [w.category for w in caught] == [Image.DecompressionBombWarning]
    assert warnings.filters == filters  # the filter ends with the block


def test_image_error_is_value_error_and_pickles():
    err = ImageError("/data/cat.jpg", "empty file (0 bytes)")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ImageError
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))


def test_image_error_crosses_processes(tmp_path):
    missing = str(tmp_path / "missing.jpg")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        with pytest.raises(ImageError) as info:
            pool.submit(load_image, missing).result(timeout=60)
    assert info.value.path == missing and info.value.reason == "no such file"


def test_threads_give_the_same_result(astronaut_jpeg, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    paths = [astronaut_jpeg, tmp_path / "bad.jpg"] * 4

    def load(path):
        try:
            return load_image(path, (32, 32))
        except ImageError as e:
            return e

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(load, paths))
    reference = load_image(astronaut_jpeg, (32, 32))
    for path, result in zip(paths, results):
        if path == astronaut_jpeg:
            np.testing.assert_array_equal(result, reference)
        else:
            assert isinstance(result, ImageError)


# --------------------------------------------------------------- fuzzing


def _valid_files():
    rgb = np.asarray(Image.fromarray(_photo("coffee")).resize((24, 16)))
    files = {}
    for fmt, mode in [("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "RGB"), ("WEBP", "RGB")]:
        buffer = io.BytesIO()
        img = Image.fromarray(rgb).convert(mode)
        img.save(buffer, format=fmt)
        files[fmt] = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(_U16).save(buffer, format="PNG")
    files["PNG16"] = buffer.getvalue()
    return files


_VALID = _valid_files()


@st.composite
def _damaged_files(draw):
    kind = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300))
    data = bytearray(_VALID[draw(st.sampled_from(sorted(_VALID)))])
    if kind == "truncate":
        return bytes(data[: draw(st.integers(1, len(data)))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    i = draw(st.integers(0, len(data)))
    return bytes(data[:i] + draw(st.binary(min_size=1, max_size=40)) + data[i:])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on corrupt tags
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=_damaged_files(), size=st.sampled_from([None, (8, 8), (16, 24)]))
def test_damaged_files_give_an_array_or_image_error(tmp_path, monkeypatch, data, size):
    # A flipped header byte can claim a huge image; keep the fuzzing fast.
    monkeypatch.setattr(skbottleneck.images, "MAX_IMAGE_PIXELS", 4096 * 4096)
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        x = load_image(path, size=size)
    except ImageError as e:
        assert e.path == str(path) and str(path) in str(e) and e.reason
    else:
        assert x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3
        assert x.shape[0] > 0 and x.shape[1] > 0
        if size is not None:
            assert x.shape[:2] == size


def test_modules_do_not_import_tensorflow():
    code = (
        "import sys, skbottleneck.images, skbottleneck.datasets; "
        "sys.exit('tensorflow' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_docstring_examples():
    result = doctest.testmod(skbottleneck.images, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_an_hdf5_file_is_not_an_image_naming_it(tmp_path):
    """Pillow opens an HDF5 file as a stub of 0x0 pixels: "image has no pixels
    (0x0)" said nothing useful about a feature store given as a query image."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ImageError, match=r"features\.h5.*not an image: a HDF5 file"):
        load_image(path, (32, 32))
