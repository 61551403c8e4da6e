"""Colour DICOM through the one reader: the real files of ../shared/data/color_dicom (each pinned against pydicom's
own colour conversion and a few literal pixels), pydicom's bundled colour test files, and small colour series
written by the tests. Contract: ``(3, X=columns, Y=rows[, frames])`` in RGB order, stored units, ``max_value``."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from pipeline.io.errors import ImageTooLargeError, MedaugInputError, UnsupportedColourError
from pipeline.io.reader import load_image
from tests.conftest import SHARED_DATA

COLOR_DICOM = SHARED_DATA / "color_dicom"
needs_shared = pytest.mark.skipif(not COLOR_DICOM.is_dir(), reason="../shared/data/color_dicom is not present")


def _rgb(ds: pydicom.Dataset) -> np.ndarray:
    """Stored RGB samples, pydicom's decoding without any colour conversion."""
    return pixel_array(ds, raw=True)


def _ybr(ds: pydicom.Dataset) -> np.ndarray:
    """YBR samples as stored, turned to RGB by pydicom's own conversion."""
    return convert_color_space(pixel_array(ds, raw=True), "YBR_FULL", "RGB")


def _palette(ds: pydicom.Dataset) -> np.ndarray:
    """Palette indices through the file's lookup table."""
    return apply_color_lut(ds.pixel_array, ds)


def as_pydicom(array: np.ndarray) -> np.ndarray:
    """A reader array ``(3, X, Y[, frames])`` in pydicom's layout ``([frames,] rows, columns, 3)``."""
    return np.transpose(array)


# (file, shape read, reference conversion, a colourful pixel (x, y[, frame]) and its RGB value, max_value)
COLOR_FILES = [
    # ultrasound, RGB uncompressed
    ("US1_UNCR.dcm", (3, 640, 480), _rgb, (18, 153), (255, 255, 0), 255),
    # the same image in JPEG 2000 lossless (YBR_RCT, undone by the decoder)
    ("US1_J2KR.dcm", (3, 640, 480), lambda ds: ds.pixel_array, (18, 153), (255, 255, 0), 255),
    # RGB, planar configuration 0 (RGBRGB...)
    ("color-px.dcm", (3, 256, 120), _rgb, (123, 96), (16, 64, 248), 255),
    # RGB, planar configuration 1 (RRR...GGG...BBB...)
    ("color-pl.dcm", (3, 256, 120), _rgb, (123, 96), (16, 64, 248), 255),
    # palette colour, 16-bit lookup table entries
    ("OBXXXX1A.dcm", (3, 800, 600), _palette, (789, 96), (23040, 52480, 65280), 65535),
    # the same, RLE
    ("OBXXXX1A_rle.dcm", (3, 800, 600), _palette, (789, 96), (23040, 52480, 65280), 65535),
    # RGB uncompressed
    ("examples_rgb_color.dcm", (3, 320, 240), _rgb, (10, 78), (255, 255, 0), 255),
    # JPEG baseline, YBR_FULL_422, 30 frames on the last axis
    ("examples_ybr_color.dcm", (3, 320, 240, 30), _ybr, (190, 20, 0), (73, 143, 119), 255),
    # JPEG extended, YBR_FULL
    ("JPEGExtended_3s_1f_u_08_08.dcm", (3, 768, 576), _ybr, (120, 44), (220, 146, 15), 255),
    # JPEG lossless, RGB, 2 frames
    ("JPEGLosslessP14SV1_3s_2f_u_08_08.dcm", (3, 1024, 768, 2), _rgb, (90, 40, 0), (255, 132, 0), 255),
]


@needs_shared
@pytest.mark.parametrize("name, shape, reference, where, rgb, max_value", COLOR_FILES, ids=[c[0] for c in COLOR_FILES])
def test_colour_dicom_reads_to_rgb(name, shape, reference, where, rgb, max_value):
    image = load_image(COLOR_DICOM / name)
    assert image.array.shape == shape and image.array.dtype == np.float32
    assert image.max_value == max_value and image.source == "dicom" and image.modality == "US"
    assert image.spacing == (1.0,) * (len(shape) - 1)
    assert tuple(image.array[(slice(None), *where)]) == rgb  # channel order R, G, B
    expected = reference(pydicom.dcmread(COLOR_DICOM / name))
    np.testing.assert_array_equal(as_pydicom(image.array), expected)


@needs_shared
@pytest.mark.parametrize(
    "first, second",
    [
        ("color-px.dcm", "color-pl.dcm"),  # planar configurations 0 and 1
        ("US1_UNCR.dcm", "US1_J2KR.dcm"),  # uncompressed and lossless JPEG 2000
        ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"),  # palette colour, uncompressed and RLE
    ],
)
def test_pairs_of_the_same_pixels_read_identically(first, second):
    np.testing.assert_array_equal(load_image(COLOR_DICOM / first).array, load_image(COLOR_DICOM / second).array)


@needs_shared
def test_the_size_guard_counts_the_three_channels():
    """Palette colour has one stored sample a pixel but three channels out: 3 x 800 x 600 float32 = 5.76 MB."""
    path = COLOR_DICOM / "OBXXXX1A.dcm"
    with pytest.raises(ImageTooLargeError, match="3 x 800 x 600 x 1 voxels"):
        load_image(path, max_bytes=3 * 800 * 600 * 4 - 1)
    assert load_image(path, max_bytes=3 * 800 * 600 * 4).array.shape == (3, 800, 600)


# pydicom's bundled test files: run without ../shared/data
BUNDLED = [
    # RLE, RGB, 16 bits a sample
    ("SC_rgb_rle_16bit.dcm", (3, 100, 100), 65535),
    # RLE, RGB, 2 frames
    ("SC_rgb_rle_2frame.dcm", (3, 100, 100, 2), 255),
    # uncompressed YBR_FULL_422
    ("SC_ybr_full_422_uncompressed.dcm", (3, 100, 100), 255),
]


@pytest.mark.parametrize("name, shape, max_value", BUNDLED, ids=[b[0] for b in BUNDLED])
def test_bundled_colour_files(name, shape, max_value):
    path = get_testdata_file(name)
    image = load_image(path)
    assert image.array.shape == shape and image.max_value == max_value
    np.testing.assert_array_equal(as_pydicom(image.array), pydicom.dcmread(path).pixel_array)  # RGB, as pydicom


def _rgb_slice(path, rgb: np.ndarray, position: float, series: str, photometric: str = "RGB") -> None:
    """An axial RGB secondary capture slice of ``rgb`` (rows, columns, 3) uint8 at z = ``position``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = meta.MediaStorageSOPClassUID, generate_uid(), series
    ds.Modality, ds.PatientID = "OT", "COLOUR"
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, position]
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_colour_series_folder_stacks_slices_on_the_last_axis(tmp_path):
    rng = np.random.default_rng(0)
    slices = rng.integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)  # (slice, row, column, RGB)
    series = generate_uid()
    for k in (2, 0, 1):  # written out of order
        _rgb_slice(tmp_path / f"IM{k}", slices[k], position=2.0 * k, series=series)
    image = load_image(tmp_path)
    assert image.array.shape == (3, 5, 4, 3) and image.spacing == (0.5, 0.5, 2.0)
    assert tuple(image.array[:, 4, 1, 2]) == tuple(slices[2, 1, 4])  # row 1, column 4 of slice 2 at [:, 4, 1, 2]
    np.testing.assert_array_equal(image.array, np.transpose(slices))


def test_three_samples_that_are_no_colour_space_medaug_reads_are_refused(tmp_path):
    _rgb_slice(tmp_path / "odd.dcm", np.zeros((4, 5, 3), np.uint8), 0.0, generate_uid(), photometric="MONOCHROME2")
    with pytest.raises(UnsupportedColourError, match="odd.dcm") as err:
        load_image(tmp_path / "odd.dcm")
    assert isinstance(err.value, MedaugInputError) and "YBR_FULL_422" in str(err.value)  # lists what it reads


# --- RGB NIfTI ---------------------------------------------------------------------------------------------------

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # a NIfTI affine already in the reader's LPS axes: nothing is flipped


def _rgb24(channels: np.ndarray) -> np.ndarray:
    """``(3|4, X, Y[, Z])`` uint8 as nibabel's RGB24 / RGBA32 structured voxels."""
    fields = "RGBA"[: len(channels)]
    voxels = np.zeros(channels.shape[1:], dtype=[(f, "u1") for f in fields])
    for name, channel in zip(fields, channels, strict=True):
        voxels[name] = channel
    return voxels


@pytest.mark.parametrize("shape", [(3, 5, 4), (3, 5, 4, 2)], ids=["2d", "3d"])
def test_rgb24_nifti_reads_to_three_channels(tmp_path, shape):
    channels = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    nib.save(nib.Nifti1Image(_rgb24(channels), LPS), tmp_path / "rgb.nii.gz")
    assert nib.load(tmp_path / "rgb.nii.gz").header["datatype"] == 128  # RGB24 on disk
    image = load_image(tmp_path / "rgb.nii.gz")
    assert image.array.shape == shape and image.max_value == 255 and image.source == "nifti"
    np.testing.assert_array_equal(image.array, channels)


def test_rgba32_nifti_drops_an_opaque_alpha_and_refuses_a_transparent_one(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, size=(4, 5, 4), dtype=np.uint8)
    rgba[3] = 255
    nib.save(nib.Nifti1Image(_rgb24(rgba), LPS), tmp_path / "opaque.nii")
    np.testing.assert_array_equal(load_image(tmp_path / "opaque.nii").array, rgba[:3])
    rgba[3, 1, 2] = 0
    nib.save(nib.Nifti1Image(_rgb24(rgba), LPS), tmp_path / "clear.nii")
    with pytest.raises(UnsupportedColourError, match=r"clear\.nii: transparent pixels"):
        load_image(tmp_path / "clear.nii")


def _vector_nifti(path, image: np.ndarray, affine: np.ndarray) -> None:
    """What the synthetic writer writes for colour: ``(3, X, Y[, Z])`` as ``(X, Y, Z, 1, 3)``, intent vector."""
    volume = image if image.ndim == 4 else image[..., None]
    nifti = nib.Nifti1Image(np.moveaxis(volume, 0, -1)[:, :, :, None, :], affine)
    nifti.header.set_intent("vector")
    nib.save(nifti, path)


@pytest.mark.parametrize("shape", [(3, 6, 5), (3, 6, 5, 3)], ids=["2d", "3d"])
def test_vector_nifti_round_trips(tmp_path, shape):
    image = np.random.default_rng(3).random(shape, dtype=np.float32)
    _vector_nifti(tmp_path / "lps.nii.gz", image, LPS)
    loaded = load_image(tmp_path / "lps.nii.gz")
    assert loaded.array.shape == shape and loaded.max_value is None and loaded.source == "nifti"
    np.testing.assert_array_equal(loaded.array, image)
    # with an identity (RAS) affine each channel is reoriented exactly as the same channel written as grey NIfTI
    _vector_nifti(tmp_path / "ras.nii.gz", image, np.eye(4))
    for k in range(3):
        nib.save(nib.Nifti1Image(image[k], np.eye(4)), tmp_path / f"grey{k}.nii.gz")
        grey = load_image(tmp_path / f"grey{k}.nii.gz").array[0]
        np.testing.assert_array_equal(load_image(tmp_path / "ras.nii.gz").array[k], grey)


def test_uint8_vector_nifti_has_a_fixed_range(tmp_path):
    image = np.random.default_rng(4).integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    _vector_nifti(tmp_path / "u8.nii", image, LPS)
    loaded = load_image(tmp_path / "u8.nii")
    assert loaded.max_value == 255
    np.testing.assert_array_equal(loaded.array, image)
