"""Plain image files through the one reader (:mod:`pipeline.io.images`): PNG, JPEG, TIFF, BMP and GIF, grey and
colour, 8 and 16 bit, by suffix and by content, and every refusal as a named error naming the file."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageFile

from pipeline.io.errors import ImageTooLargeError, MedaugInputError, UnreadableImageError, UnsupportedColourError
from pipeline.io.reader import file_kind, load_image
from tests.conftest import SHARED_DATA

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, size=(6, 9), dtype=np.uint8)  # (rows, columns)
GREY16 = RNG.integers(0, 65536, size=(6, 9), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
ONE_TRANSPARENT = np.full((6, 9), 255, np.uint8)  # an alpha channel with one pixel (row 2, column 3) transparent
ONE_TRANSPARENT[2, 3] = 0
SMOOTH = np.broadcast_to(np.array([200, 60, 20], np.uint8), (16, 16, 3))  # JPEG keeps a flat colour within a few


def _save(path, pixels, fmt: str | None = None, mode: str | None = None, **options):
    image = Image.fromarray(np.ascontiguousarray(pixels))
    (image.convert(mode) if mode else image).save(path, format=fmt, **options)
    return path


def _palette_image(grey: bool) -> Image.Image:
    image = Image.fromarray((GREY8 % 4).astype(np.uint8), mode="L").convert("P")
    colours = [(k * 60, k * 60, k * 60) if grey else (k * 60, 255 - k * 60, 30) for k in range(4)]
    image.putpalette([v for c in colours for v in c] + [0] * (256 - 4) * 3)
    return image


def as_pillow(array: np.ndarray) -> np.ndarray:
    """A reader array ``(C, X, Y)`` as Pillow's ``(rows, columns[, C])``."""
    return array[0].T if array.shape[0] == 1 else array.transpose(2, 1, 0)


# (case, file name, writer, expected (rows, columns[, 3]) pixels, max_value, tolerance)
READABLE = [
    # 8-bit grey, lossless formats
    ("grey png", "g.png", lambda p: _save(p, GREY8), GREY8, 255, 0),
    ("grey tiff", "g.tif", lambda p: _save(p, GREY8), GREY8, 255, 0),
    ("grey bmp", "g.bmp", lambda p: _save(p, GREY8), GREY8, 255, 0),
    ("grey gif", "g.gif", lambda p: _save(p, GREY8), GREY8, 255, 0),
    # 8-bit grey JPEG of a flat image: lossy, but a flat block survives
    ("grey jpeg", "g.jpg", lambda p: _save(p, SMOOTH[..., 0], quality=95), SMOOTH[..., 0], 255, 2),
    # 16-bit grey keeps its values
    ("grey16 png", "g16.png", lambda p: _save(p, GREY16), GREY16, 65535, 0),
    ("grey16 tiff", "g16.tiff", lambda p: _save(p, GREY16), GREY16, 65535, 0),
    # 8-bit colour
    ("rgb png", "c.png", lambda p: _save(p, RGB8), RGB8, 255, 0),
    ("rgb tiff", "c.tif", lambda p: _save(p, RGB8), RGB8, 255, 0),
    ("rgb bmp", "c.bmp", lambda p: _save(p, RGB8), RGB8, 255, 0),
    ("rgb jpeg", "c.jpeg", lambda p: _save(p, SMOOTH, quality=95), SMOOTH, 255, 3),
    # JPEG in YCbCr (every colour JPEG) decoded to RGB; a YCbCr TIFF converted by Pillow
    (
        "ycbcr tiff",
        "y.tif",
        lambda p: _save(p, RGB8, mode="YCbCr"),
        np.asarray(Image.fromarray(RGB8).convert("YCbCr").convert("RGB")),
        255,
        0,
    ),
    # palette: colour entries -> RGB, grey entries -> grey
    (
        "palette png",
        "p.png",
        lambda p: _palette_image(grey=False).save(p),
        np.asarray(_palette_image(False).convert("RGB")),
        255,
        0,
    ),
    ("grey palette gif", "p.gif", lambda p: _palette_image(grey=True).save(p), (GREY8 % 4) * 60, 255, 0),
    # bilevel -> 0/255
    ("bilevel png", "b.png", lambda p: _save(p, GREY8 > 127, mode="1"), np.where(GREY8 > 127, 255, 0), 255, 0),
    # opaque alpha is dropped
    ("opaque rgba png", "a.png", lambda p: _save(p, np.dstack([RGB8, np.full((6, 9), 255, np.uint8)])), RGB8, 255, 0),
    ("opaque la png", "la.png", lambda p: _save(p, GREY8, mode="LA"), GREY8, 255, 0),
    # 32-bit float and integer TIFF: no fixed range
    ("float tiff", "f.tif", lambda p: _save(p, GREY8.astype(np.float32) / 7), GREY8.astype(np.float32) / 7, None, 1e-6),
    ("int32 tiff", "i.tif", lambda p: _save(p, GREY8.astype(np.int32) * 1000), GREY8.astype(np.int32) * 1000, None, 0),
    # by content: no suffix at all, and a misleading one
    ("png without suffix", "IM0001", lambda p: _save(p, RGB8, fmt="PNG"), RGB8, 255, 0),
    ("tiff without suffix", "IM0002", lambda p: _save(p, GREY16, fmt="TIFF"), GREY16, 65535, 0),
    ("jpeg without suffix", "IM0003", lambda p: _save(p, SMOOTH, fmt="JPEG", quality=95), SMOOTH, 255, 3),
    ("png named .dat", "scan.dat", lambda p: _save(p, GREY8, fmt="PNG"), GREY8, 255, 0),
]


@pytest.mark.parametrize("case, name, write, expected, max_value, tolerance", READABLE, ids=[c[0] for c in READABLE])
def test_image_files_read_to_the_channel_contract(tmp_path, case, name, write, expected, max_value, tolerance):
    write(tmp_path / name)
    assert file_kind(tmp_path / name) == "image"
    image = load_image(tmp_path / name)
    channels = 3 if np.ndim(expected) == 3 else 1
    assert image.array.shape == (channels, expected.shape[1], expected.shape[0])  # (C, X = width, Y = height)
    assert image.array.dtype == np.float32 and image.max_value == max_value
    np.testing.assert_allclose(as_pillow(image.array), expected, rtol=0, atol=tolerance)
    assert image.source == "image" and image.modality is None and image.patient_id is None
    assert image.spacing == (1.0, 1.0) and not image.burned_in_annotation
    np.testing.assert_array_equal(image.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))


def test_a_pixel_at_row_r_column_c_lands_at_x_c_y_r(tmp_path):
    pixels = np.zeros((4, 7, 3), np.uint8)
    pixels[1, 5] = (10, 20, 30)  # row 1, column 5
    image = load_image(_save(tmp_path / "dot.png", pixels))
    assert tuple(image.array[:, 5, 1]) == (10, 20, 30) and image.array.sum() == 60  # R, G, B at [:, c, r]


@pytest.mark.skipif(not (SHARED_DATA / "isic_uda1").is_dir(), reason="../shared/data/isic_uda1 is not present")
def test_a_real_dermoscopy_jpeg():
    path = SHARED_DATA / "isic_uda1" / "images" / "ISIC_0000000.jpg"
    image = load_image(path)
    assert image.array.shape == (3, 250, 250) and image.max_value == 255 and image.source == "image"
    with Image.open(path) as reference:
        np.testing.assert_array_equal(as_pillow(image.array), np.asarray(reference.convert("RGB")))
    assert image.array.std(axis=(1, 2)).min() > 0 and not np.array_equal(image.array[0], image.array[2])  # colour


# --- refusals ----------------------------------------------------------------------------------------------------


def _frames(path, fmt: str):
    frames = [Image.fromarray(np.full((4, 4, 3), 40 * k, np.uint8)) for k in range(3)]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])


def _tiff_with_samples(path, samples: int) -> None:
    """An uncompressed RGB TIFF with ``samples`` samples a pixel (the extra ones unspecified, not alpha): Pillow reads
    its first three channels, medaug refuses it. Written by hand: Pillow cannot write one."""
    height, width = 3, 4
    pixels = RNG.integers(0, 256, size=(height, width, samples), dtype=np.uint8).tobytes()
    bits = struct.pack(f"<{samples}H", *[8] * samples)
    extra = struct.pack(f"<{samples - 3}H", *[0] * (samples - 3))
    bits_at, extra_at = 8, 8 + len(bits)
    data_at = extra_at + len(extra)
    tags = [  # (tag, type SHORT 3 / LONG 4, count, value or offset)
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, samples, bits_at),
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, data_at),
        (277, 3, 1, samples),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),
        (338, 3, samples - 3, extra_at if samples - 3 > 2 else 0),  # extra samples: unspecified
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + b"\0\0\0\0"
    path.write_bytes(b"II*\0" + struct.pack("<I", data_at + len(pixels)) + bits + extra + pixels + ifd)


def _truncated(path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(RGB8).resize((64, 64)).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])


def _transparent_palette(path) -> None:
    image = _palette_image(grey=False)
    image.save(path, transparency=1)  # palette entry 1 is transparent, and is used


# (case, file name, writer, error, message)
REFUSED = [
    # an RGBA PNG with one transparent pixel
    (
        "transparent rgba",
        "t.png",
        lambda p: _save(p, np.dstack([RGB8, ONE_TRANSPARENT])),
        UnsupportedColourError,
        "transparent pixels have no defined colour; flatten",
    ),
    # a palette PNG whose transparent entry is used
    ("transparent palette", "tp.png", _transparent_palette, UnsupportedColourError, "transparent pixels"),
    # an RGB PNG with a colour key (tRNS) that some pixels match
    (
        "colour key",
        "k.png",
        lambda p: _save(p, RGB8, transparency=tuple(int(v) for v in RGB8[0, 0])),
        UnsupportedColourError,
        "transparent",
    ),
    # CMYK JPEG and TIFF
    ("cmyk jpeg", "cmyk.jpg", lambda p: _save(p, RGB8, mode="CMYK"), UnsupportedColourError, "CMYK.*Convert it to RGB"),
    ("cmyk tiff", "cmyk.tif", lambda p: _save(p, RGB8, mode="CMYK"), UnsupportedColourError, "CMYK"),
    # more than 3 channels, the extra ones not alpha
    ("5-channel tiff", "five.tif", lambda p: _tiff_with_samples(p, 5), UnsupportedColourError, "5 samples per pixel"),
    ("4-channel tiff", "four.tif", lambda p: _tiff_with_samples(p, 4), UnsupportedColourError, "4 samples per pixel"),
    # several frames
    ("animated gif", "anim.gif", lambda p: _frames(p, "GIF"), UnsupportedColourError, "3 frames"),
    ("apng", "anim.png", lambda p: _frames(p, "PNG"), UnsupportedColourError, "3 frames"),
    ("multi-page tiff", "pages.tif", lambda p: _frames(p, "TIFF"), UnsupportedColourError, "3 frames"),
    # truncated files
    ("truncated jpeg", "cut.jpg", lambda p: _truncated(p, "JPEG"), UnreadableImageError, "truncated"),
    ("truncated png", "cut.png", lambda p: _truncated(p, "PNG"), UnreadableImageError, "truncated"),
    # not an image at all
    (
        "garbage png",
        "junk.png",
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40)),
        UnreadableImageError,
        "not a readable image",
    ),
]


@pytest.mark.parametrize("case, name, write, error, message", REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_image_files_get_named_errors(tmp_path, case, name, write, error, message):
    write(tmp_path / name)
    with pytest.raises(error, match=message) as raised:
        load_image(tmp_path / name)
    assert isinstance(raised.value, MedaugInputError) and str(tmp_path / name) in str(raised.value)


def test_truncated_images_stay_errors():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the reader never turns it on


def test_size_guard_counts_channels_before_decoding(tmp_path, monkeypatch):
    path = _save(tmp_path / "c.png", RGB8)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded before the size check"))
    with pytest.raises(ImageTooLargeError, match=r"c\.png: the header declares 3 x 9 x 6 voxels"):
        load_image(path, max_bytes=3 * 9 * 6 * 4 - 1)


def test_pillow_decompression_bomb_is_a_named_error(tmp_path, monkeypatch):
    path = _save(tmp_path / "bomb.png", GREY8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 54 pixels > 2 x 10: Pillow refuses at open
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: .*decompression bomb"):
        load_image(path)


def test_a_file_nobody_recognises_is_still_a_dicom_error(tmp_path):
    (tmp_path / "IM0009").write_bytes(b"neither DICOM nor an image" * 10)
    assert file_kind(tmp_path / "IM0009") == "dicom"
    with pytest.raises(UnreadableImageError, match="IM0009: not a readable DICOM"):
        load_image(tmp_path / "IM0009")
