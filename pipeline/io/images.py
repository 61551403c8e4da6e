"""Plain image files (PNG, JPEG, TIFF, BMP, single-frame GIF) read through Pillow, for the reader.

Only pixels come out: no text chunk, EXIF, XMP, ICC profile or comment is read into the result (EXIF orientation
is not applied either: the pixels are taken as stored). :func:`open_image` opens a file and checks it;
:func:`output_channels` says, before any pixel is decoded, how many channels the image will have (for the size
guard); :func:`pixels_of` decodes an open image to float32 ``(C, X=width, Y=height)`` (the Pillow array transposed,
so that X runs along a row as for DICOM) with C = 1 (grey) or 3 (RGB), values in stored units, and the largest
value the stored samples can take.

Rules for what is not plain grey or RGB (each refused with :class:`UnsupportedColourError` naming the file):

- **alpha** (LA, RGBA, PA, a palette or colour key with transparency): a fully opaque alpha channel is dropped;
  any transparent pixel refuses the image, since transparent pixels have no defined colour;
- **palette** (P): the palette is applied, to grey (L) when every palette entry is grey, else to RGB;
- **CMYK** and other colour spaces without a well-defined conversion (LAB, HSV): refused, convert to RGB first;
  YCbCr is converted to RGB;
- **more than 3 channels** (a TIFF with extra samples that are not alpha): refused;
- **several frames** (animated GIF or PNG, multi-page TIFF): refused; a JPEG's extra MPO pictures (previews,
  depth maps) are not frames, the primary picture is read.

16-bit grey (I;16) keeps its values (max 65535); Pillow reduces 16-bit colour to 8 bits (max 255). 32-bit integer
(I) and float (F) images have no fixed range (max ``None``). Bilevel images (1) become 0/255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.io.errors import ImageTooLargeError, UnreadableImageError, UnsupportedColourError

__all__ = [
    "IMAGE_SUFFIXES",
    "TRANSPARENT",
    "is_image_file",
    "looks_like_image",
    "open_image",
    "output_channels",
    "pixels_of",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".gif")
# Pillow plugins tried: the formats above and nothing else (no plugin that runs an external program, e.g. EPS)
_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF")
_GREY = {"1": 255.0, "L": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}
_GREY_NO_RANGE = ("I", "F")  # 32-bit integers and floats: no fixed range
_COLOUR = ("RGB", "RGBX", "YCbCr")
_ALPHA = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB"}  # mode with alpha -> the mode without it
_TIFF_SAMPLES_PER_PIXEL = 277
TRANSPARENT = (
    "transparent pixels have no defined colour; flatten the image onto a background first "
    "(or remove its row from labels.csv)"
)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has the suffix of an image file medaug reads with Pillow."""
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def looks_like_image(path: Path) -> bool:
    """Whether Pillow recognises the content of ``path`` as one of the image formats medaug reads (a file without
    a known suffix); a file it recognises but cannot open further counts, so that its own error is reported."""
    try:
        with Image.open(path, formats=_FORMATS):
            return True
    except UnidentifiedImageError:
        return False
    except Exception:  # noqa: BLE001 - recognised, then refused (a decompression bomb, a damaged header)
        return True


def open_image(path: Path) -> Image.Image:
    """Open ``path`` with Pillow (header only) and refuse several frames; the caller closes the image."""
    try:
        img = Image.open(path, formats=_FORMATS)
    except Image.DecompressionBombError:
        limit = Image.MAX_IMAGE_PIXELS or 0  # set whenever Pillow raises this (None turns the check off)
        raise ImageTooLargeError(
            f"{path}: more than {2 * limit} pixels, which Pillow refuses as a possible "
            "decompression bomb. Downsample the image first, or remove its row from labels.csv"
        ) from None
    except Exception as err:  # noqa: BLE001 - untrusted bytes: UnidentifiedImageError, SyntaxError, struct.error...
        raise UnreadableImageError(
            f"{path}: not a readable image file ({type(err).__name__}); medaug reads PNG, JPEG, TIFF, BMP and GIF "
            "besides DICOM and NIfTI. Check that the file is complete, or remove its row from labels.csv"
        ) from None
    try:
        frames = 1 if img.format == "MPO" else int(getattr(img, "n_frames", 1))
    except Exception as err:  # noqa: BLE001 - counting GIF frames reads the whole file
        img.close()
        raise UnreadableImageError(f"{path}: the image file is damaged ({type(err).__name__})") from None
    if frames > 1:
        img.close()
        raise UnsupportedColourError(
            f"{path}: an image file with {frames} frames (animated GIF or PNG, multi-page TIFF); medaug reads one "
            "picture a file. Save the frame you want as its own file, or remove the row from labels.csv"
        )
    return img


def _palette_is_grey(img: Image.Image) -> bool:
    """Whether every entry of a loaded image's palette is grey (``getpalette`` loads the pixels)."""
    palette = img.getpalette("RGB") or []
    entries = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return bool((entries == entries[:, :1]).all())


def output_channels(img: Image.Image, path: Path) -> int:
    """Channels of the array :func:`pixels_of` will return (1 or 3; 3 for a palette, which may turn out grey), from
    the header alone (nothing here may load the pixels); refuses modes medaug does not read (module docstring)."""
    mode = img.mode
    if img.format == "TIFF":
        samples = img.tag_v2.get(_TIFF_SAMPLES_PER_PIXEL, 1) if hasattr(img, "tag_v2") else 1
        if isinstance(samples, int) and samples > len(img.getbands()):
            raise UnsupportedColourError(
                f"{path}: a TIFF image with {samples} samples per pixel, more than medaug's 3 colour channels "
                "(and not an alpha channel); save the channels you want as a grey or RGB image first"
            )
    if mode == "CMYK":
        raise UnsupportedColourError(
            f"{path}: a CMYK image (print colours); medaug reads grey and RGB images. Convert it to RGB first"
        )
    if mode in _GREY or mode in _GREY_NO_RANGE or mode in ("LA", "La"):
        return 1
    if mode in _COLOUR or mode in ("RGBA", "RGBa", "P", "PA"):
        return 3
    raise UnsupportedColourError(
        f"{path}: an image in Pillow's colour mode {mode}, which medaug does not read (more than 3 channels, or a "
        "colour space without a defined conversion to RGB); convert it to RGB or greyscale first"
    )


def _without_alpha(img: Image.Image, path: Path) -> Image.Image:
    """``img`` without its alpha channel (or transparency key) when every pixel is opaque; refused otherwise."""
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("LA" if _palette_is_grey(img) else "RGBA")
    elif mode in ("L", "RGB") and "transparency" in img.info:  # a colour key: pixels of that value are transparent
        img = img.convert("LA" if mode == "L" else "RGBA")
    if img.mode not in _ALPHA:
        return img
    low = img.getchannel("A").getextrema()[0]  # one band: (its lowest value, its highest)
    if isinstance(low, tuple) or low < 255:
        raise UnsupportedColourError(f"{path}: {TRANSPARENT}")
    return img.convert(_ALPHA[img.mode])


def pixels_of(img: Image.Image, path: Path) -> tuple[np.ndarray, float | None]:
    """The decoded pixels of an open image as float32 ``(C, X=width, Y=height)`` with C = 1 or 3, in stored units,
    and the largest value the stored samples can take (``None`` for 32-bit integer and float images). The image
    must have been checked by :func:`output_channels` and loaded."""
    img = _without_alpha(img, path)
    if img.mode == "1":
        img = img.convert("L")  # 0/255
    elif img.mode in ("RGBX", "YCbCr"):
        img = img.convert("RGB")
    max_value = _GREY.get(img.mode, 255.0 if img.mode == "RGB" else None)
    array = np.asarray(img)
    if array.ndim == 2:  # (height, width) -> (1, width, height)
        return array.T[None].astype(np.float32), max_value
    return array.transpose(2, 1, 0).astype(np.float32), max_value  # (height, width, 3) -> (3, width, height)
