"""Synthetic DICOM, NIfTI and PNG: real files written by the writers, read back with the project's reader,
pydicom, nibabel and Pillow."""

from __future__ import annotations

import csv
import hashlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
)

import pipeline
from pipeline.io.arrays import DiskArray
from pipeline.io.reader import load_image
from pipeline.io.synthetic import (
    COLOUR_MAX_VALUE,
    DICOM_MAX_VALUE,
    POOL_IMAGES,
    SYNTHETIC_DESCRIPTION,
    PoolWriter,
    SyntheticPoolError,
    load_synthetic_nifti,
    new_synthetic_uids,
    read_synthetic,
    write_manifest,
    write_synthetic_dicom,
    write_synthetic_nifti,
    write_synthetic_png,
)

# secondary capture has no patient geometry; MONAI says so before the project's reader supplies DICOM's own axes
pytestmark = pytest.mark.filterwarnings("ignore:PydicomReader. ImageOrientationPatient:UserWarning")

QUANTUM = 1.0 / DICOM_MAX_VALUE

# identifying or dating attributes a synthetic image must never carry a value for
FORBIDDEN = (
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "IssuerOfPatientID",
    "MilitaryRank",
    "EthnicGroup",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "RequestingPhysician",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstanceCreationDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "AcquisitionDateTime",
    "StudyDescription",
    "RequestAttributesSequence",
    "ReferencedStudySequence",
    "ReferencedPatientSequence",
    "SourceImageSequence",
    "FrameOfReferenceUID",
)


def _write(path, image, uids=None, **kwargs):
    study, series = uids or new_synthetic_uids()
    args = {"label": "pneumonia", "sampler": "prior", "modality": "CT", "instance_number": 1} | kwargs
    write_synthetic_dicom(path, image, series_uid=series, study_uid=study, **args)


def test_2d_round_trip_through_the_reader(tmp_path):
    image = np.random.default_rng(0).random((1, 12, 8))  # X = 12 columns, Y = 8 rows
    image[0, 0, 0], image[0, -1, -1] = 0.0, 1.0
    _write(tmp_path / "s.dcm", image, spacing=(0.5, 0.8))
    loaded = load_image(tmp_path / "s.dcm")
    assert loaded.array.shape == image.shape
    np.testing.assert_allclose(loaded.array, image, rtol=0, atol=QUANTUM)
    assert loaded.array[0, 0, 0] == 0.0 and loaded.array[0, -1, -1] == pytest.approx(1.0, abs=1e-6)
    assert loaded.spacing == pytest.approx((0.5, 0.8))
    assert loaded.modality == "CT"
    assert loaded.patient_id == "SYNTHETIC" and not loaded.burned_in_annotation

    ds = pydicom.dcmread(tmp_path / "s.dcm")
    assert (ds.Rows, ds.Columns) == (8, 12)
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.5]  # (row spacing = Y, column spacing = X)
    np.testing.assert_array_equal(ds.pixel_array, np.round(image[0].T * DICOM_MAX_VALUE))
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 0)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert float(ds.RescaleSlope) == pytest.approx(QUANTUM) and float(ds.RescaleIntercept) == 0.0


def test_3d_is_one_multi_frame_file_and_round_trips(tmp_path):
    image = np.random.default_rng(1).random((1, 6, 5, 4))
    _write(tmp_path / "v.dcm", image, modality="MR", spacing=(0.5, 0.7, 2.5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.dcm"]  # no temporary file left behind
    loaded = load_image(tmp_path / "v.dcm")
    assert loaded.array.shape == image.shape
    np.testing.assert_allclose(loaded.array, image, rtol=0, atol=QUANTUM)
    assert loaded.spacing == pytest.approx((0.5, 0.7, 2.5))
    assert loaded.modality == "MR"

    ds = pydicom.dcmread(tmp_path / "v.dcm")
    assert ds.SOPClassUID == MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    assert int(ds.NumberOfFrames) == 4 and (ds.Rows, ds.Columns) == (5, 6)
    for k in range(4):  # frame k holds the axial slice image[0, :, :, k].T
        np.testing.assert_array_equal(ds.pixel_array[k], np.round(image[0, :, :, k].T * DICOM_MAX_VALUE))
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("SliceLocationVector")
    assert [float(v) for v in ds.SliceLocationVector] == [0.0, 2.5, 5.0, 7.5]


def test_without_spacing_no_geometry_is_written(tmp_path):
    _write(tmp_path / "s.dcm", np.full((1, 4, 3), 0.25))
    _write(tmp_path / "v.dcm", np.full((1, 4, 3, 2), 0.75))
    for name, ndim in (("s.dcm", 2), ("v.dcm", 3)):
        ds = pydicom.dcmread(tmp_path / name)
        assert "PixelSpacing" not in ds and "SpacingBetweenSlices" not in ds and "SliceLocationVector" not in ds
        assert load_image(tmp_path / name).spacing == (1.0,) * ndim
    assert pydicom.dcmread(tmp_path / "v.dcm").FrameIncrementPointer == pydicom.tag.Tag("PageNumberVector")
    np.testing.assert_allclose(load_image(tmp_path / "v.dcm").array, 0.75, atol=QUANTUM)


def test_header_says_synthetic(tmp_path):
    _write(tmp_path / "s.dcm", np.zeros((1, 4, 4)), label="nodule", sampler="posterior", modality="US")
    ds = pydicom.dcmread(tmp_path / "s.dcm")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == SecondaryCaptureImageStorage == ds.file_meta.MediaStorageSOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ConversionType == "SYN"
    assert ds.SeriesDescription == "SYNTHETIC nodule (posterior sampler, medaug VAE)"
    for text in (ds.ImageComments, ds.DerivationDescription):
        assert "SYNTHETIC" in text and "VAE" in text and "not acquired from any patient" in text
    assert ds.Modality == "US" and ds.BurnedInAnnotation == "NO"
    assert ds.Manufacturer == "medaug" and ds.SoftwareVersions
    assert int(ds.SeriesNumber) == 9001 and int(ds.InstanceNumber) == 1


def test_uids_are_valid_and_a_series_shares_its_uid(tmp_path):
    uids = new_synthetic_uids()
    assert uids[0] != uids[1] and new_synthetic_uids() != uids
    _write(tmp_path / "1.dcm", np.zeros((1, 4, 4)), uids, instance_number=1)
    _write(tmp_path / "2.dcm", np.zeros((1, 4, 4)), uids, instance_number=2)
    first, second = (pydicom.dcmread(tmp_path / n) for n in ("1.dcm", "2.dcm"))
    for ds in (first, second):
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert UID(uid).is_valid
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == uids
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert (int(first.InstanceNumber), int(second.InstanceNumber)) == (1, 2)


def test_no_patient_data(tmp_path):
    _write(tmp_path / "v.dcm", np.zeros((1, 4, 4, 3)), spacing=(1.0, 1.0, 1.0))
    ds = pydicom.dcmread(tmp_path / "v.dcm")
    assert str(ds.PatientName) == "SYNTHETIC" and ds.PatientID == "SYNTHETIC"
    for keyword in FORBIDDEN:
        assert keyword not in ds or ds[keyword].value in ("", None, []), keyword
    assert not any(element.tag.is_private for element in ds)


def test_long_label_fits_the_description_and_overwrites_atomically(tmp_path):
    path = tmp_path / "s.dcm"
    _write(path, np.zeros((1, 4, 4)), label="a\\b" + "x" * 100)
    _write(path, np.ones((1, 4, 4)), label="c")  # overwrite in place
    ds = pydicom.dcmread(path)
    assert ds.SeriesDescription == "SYNTHETIC c (prior sampler, medaug VAE)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.dcm"]
    np.testing.assert_allclose(load_image(path).array, 1.0, atol=QUANTUM)
    _write(tmp_path / "long.dcm", np.zeros((1, 4, 4)), label="a\\b" + "x" * 100)
    description = pydicom.dcmread(tmp_path / "long.dcm").SeriesDescription
    assert description.startswith("SYNTHETIC a/b") and len(description) == 64


@pytest.mark.parametrize(
    "image, spacing",
    [
        (np.zeros((4, 4)), None),  # no channel axis
        (np.zeros((2, 4, 4)), None),  # two channels
        (np.zeros((4, 4, 4)), None),  # four channels (RGBA is not written)
        (np.zeros((1, 4, 4, 2, 2)), None),  # 4D
        (np.full((1, 4, 4), np.nan), None),
        (np.zeros((1, 4, 4)), (1.0, 1.0, 1.0)),  # spacing of the wrong length
        (np.zeros((1, 4, 4)), (1.0, 0.0)),
    ],
)
def test_bad_input_is_refused_and_nothing_written(tmp_path, image, spacing):
    with pytest.raises(ValueError):
        _write(tmp_path / "bad.dcm", image, spacing=spacing)
    assert list(tmp_path.iterdir()) == []


def test_values_outside_unit_range_are_clipped(tmp_path):
    _write(tmp_path / "s.dcm", np.array([[[-0.5, 0.5], [1.5, 1.0]]]))
    np.testing.assert_allclose(load_image(tmp_path / "s.dcm").array, [[[0.0, 0.5], [1.0, 1.0]]], atol=QUANTUM)


def test_synthetic_files_say_so_and_round_trip(tmp_path):
    image = np.random.default_rng(0).uniform(size=(1, 8, 8)).astype(np.float32)
    write_synthetic_nifti(tmp_path / "b" / "s0.nii.gz", image)
    write_manifest(
        tmp_path,
        [
            {
                "path": "b/s0.nii.gz",
                "label": "b",
                "sampler": "prior",
                "seed": 0,
                "temperature": 1.0,
                "checkpoint_sha256": "x",
            }
        ],
    )
    with PoolWriter(tmp_path, image.shape) as pool:
        pool.append(image[None])
    header = nib.load(tmp_path / "b" / "s0.nii.gz").header
    assert header["descrip"].tobytes().rstrip(b"\0") == SYNTHETIC_DESCRIPTION[:80]
    data = read_synthetic(tmp_path, ("a", "b"))
    assert data.labels.tolist() == [1] and np.array_equal(data.images[0], image)


# --- grey output is byte-identical to the writers before colour support ---------------------------------------

# sha256 of the files the writers made before colour support (commit 09e202e), with pydicom 3.0.2 and nibabel
# 5.4.2: another version of either may write other bytes (implementation version, header defaults), so the pin
# is checked only with those
GREY_SHA256 = {
    "g2.dcm": "0942a8a41ee7fd860df524e6599e4641a88ac17076f57ddf8bf67c655c563261",
    "g2.nii": "47d047ad71330fd7ef057388378ae76410ca0f2d0d490ec95724a12b5b9e249a",
    "g3.dcm": "0180cf3666c909ca364d2daf9996bc8688f3d35eba1750ce94d33dd07ddc0a98",
    "g3.nii": "92c2cda91da6ec8e6a227811075c02f09367ab8b92e8380c7315dd72663c7a11",
}


@pytest.mark.skipif(
    (pydicom.__version__, nib.__version__) != ("3.0.2", "5.4.2"),
    reason="hashes pinned with pydicom 3.0.2, nibabel 5.4.2",
)
def test_grey_files_are_byte_identical_to_before(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "__version__", "test")
    rng = np.random.default_rng(18)
    images = {"g2": rng.random((1, 6, 5)).astype(np.float32), "g3": rng.random((1, 4, 3, 2)).astype(np.float32)}
    for name, image in images.items():
        write_synthetic_nifti(tmp_path / f"{name}.nii", image)
        fixed = {"series_uid": "1.2.3.4", "study_uid": "1.2.3.5", "sop_instance_uid": "1.2.3.6", "modality": "CT"}
        header = {"label": "b", "sampler": "prior", "instance_number": 1, "spacing": (0.5,) * (image.ndim - 1)}
        write_synthetic_dicom(tmp_path / f"{name}.dcm", image, **fixed, **header)
    assert {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in GREY_SHA256} == GREY_SHA256


# --- colour ---------------------------------------------------------------------------------------------------


def _colour(shape, seed=0):
    """A random RGB image with each channel's corner marked, so a swapped channel or axis shows."""
    image = np.random.default_rng(seed).random(shape).astype(np.float32)
    image[:, 0, 0] = np.array([1.0, 0.0, 0.0]).reshape((3,) + (1,) * (len(shape) - 3))  # red at x = 0, y = 0
    image[:, -1, 0] = np.array([0.0, 1.0, 0.0]).reshape((3,) + (1,) * (len(shape) - 3))  # green at the last x
    return image


def test_colour_2d_dicom_is_rgb_secondary_capture(tmp_path):
    image = _colour((3, 7, 5))  # X = 7 columns, Y = 5 rows: odd pixel data length, padded
    _write(tmp_path / "c.dcm", image, spacing=(0.5, 0.8))
    ds = pydicom.dcmread(tmp_path / "c.dcm")
    assert ds.SOPClassUID == SecondaryCaptureImageStorage == ds.file_meta.MediaStorageSOPClassUID
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration) == (3, "RGB", 0)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
    assert "RescaleSlope" not in ds and "RescaleIntercept" not in ds and "WindowCenter" not in ds
    assert (ds.Rows, ds.Columns) == (5, 7)
    rgb = ds.pixel_array  # (rows, columns, 3)
    np.testing.assert_array_equal(rgb, np.round(np.transpose(image, (2, 1, 0)) * COLOUR_MAX_VALUE))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[0, 6].tolist() == [0, 255, 0]  # array[:, x, y] at row y, col x
    assert ds.ConversionType == "SYN" and "SYNTHETIC" in ds.ImageComments and ds.PatientID == "SYNTHETIC"


def test_colour_3d_dicom_is_multi_frame_true_colour(tmp_path):
    image = _colour((3, 6, 5, 4), seed=1)
    _write(tmp_path / "v.dcm", image, modality="US", spacing=(0.5, 0.7, 2.5))
    ds = pydicom.dcmread(tmp_path / "v.dcm")
    assert ds.SOPClassUID == MultiFrameTrueColorSecondaryCaptureImageStorage
    assert int(ds.NumberOfFrames) == 4 and (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (5, 6, 3)
    for k in range(4):  # frame k holds image[:, :, :, k] as (rows, columns, RGB)
        expected = np.round(np.transpose(image[:, :, :, k], (2, 1, 0)) * COLOUR_MAX_VALUE)
        np.testing.assert_array_equal(ds.pixel_array[k], expected)
    assert [float(v) for v in ds.SliceLocationVector] == [0.0, 2.5, 5.0, 7.5]


@pytest.mark.parametrize(
    "shape, stored",
    [
        ((3, 6, 5), (6, 5, 1, 1, 3)),  # 2D: Z = 1
        ((3, 6, 5, 4), (6, 5, 4, 1, 3)),  # 3D
    ],
)
def test_colour_nifti_is_a_vector_image_and_round_trips(tmp_path, shape, stored):
    image = _colour(shape)
    write_synthetic_nifti(tmp_path / "c.nii.gz", image)
    nifti = nib.load(tmp_path / "c.nii.gz")
    assert nifti.shape == stored and nifti.get_data_dtype() == np.float32
    assert nifti.header.get_intent() == ("vector", (), "SYNTHETIC")
    assert nifti.header["descrip"].tobytes().rstrip(b"\0") == SYNTHETIC_DESCRIPTION[:80]
    assert np.array_equal(np.asarray(nifti.dataobj)[1, 0, 0, 0], image[:, 1, 0, ...].reshape(3, -1)[:, 0])
    np.testing.assert_array_equal(load_synthetic_nifti(tmp_path / "c.nii.gz"), image)


def test_grey_nifti_keeps_its_marking(tmp_path):
    write_synthetic_nifti(tmp_path / "g.nii.gz", np.zeros((1, 4, 4), np.float32))
    header = nib.load(tmp_path / "g.nii.gz").header
    assert header["intent_name"].tobytes().rstrip(b"\0") == b"SYNTHETIC" and header["intent_code"] == 0


def test_read_synthetic_reads_colour(tmp_path):
    images = [_colour((3, 6, 5), seed=k) for k in range(2)]
    rows = []
    for k, image in enumerate(images):
        write_synthetic_nifti(tmp_path / "b" / f"s{k}.nii.gz", image)
        rows.append({"path": f"b/s{k}.nii.gz", "label": "b", "png_path": f"b/s{k}.png"})
    write_manifest(tmp_path, rows)
    with PoolWriter(tmp_path, (3, 6, 5)) as pool:
        pool.append(np.stack(images))
    with open(tmp_path / "manifest.csv", encoding="utf-8") as fh:
        assert next(csv.reader(fh))[:3] == ["path", "dicom_path", "png_path"]
    data = read_synthetic(tmp_path, ("a", "b"))
    assert data.images.shape == (2, 3, 6, 5) and np.array_equal(data.images, np.stack(images))


# --- the pool in one array ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, chunks",
    [
        ((1, 8, 8), [3, 0, 5]),  # grey 2D, appended in uneven chunks (an empty one too)
        ((3, 6, 5), [2]),  # colour 2D
        ((1, 4, 4, 3), [1, 1]),  # grey 3D
        ((1, 8, 8), []),  # an empty pool
    ],
)
def test_pool_holds_the_values_of_the_nifti_files_in_manifest_order(tmp_path, shape, chunks):
    rng = np.random.default_rng(0)
    made = [rng.uniform(size=(n, *shape)).astype(np.float32) for n in chunks]
    rows = []
    with PoolWriter(tmp_path, shape) as pool:
        for chunk in made:
            for image in chunk:
                rows.append({"path": f"b/s{len(rows)}.nii.gz", "label": "b"})
                write_synthetic_nifti(tmp_path / rows[-1]["path"], image)
            pool.append(chunk)
    write_manifest(tmp_path, rows)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["manifest.csv", POOL_IMAGES]  # no .part
    data = read_synthetic(tmp_path, ("a", "b"))
    assert isinstance(data.images, DiskArray) and data.images.shape == (len(rows), *shape)
    assert data.images.dtype == np.float32 and data.labels.tolist() == [1] * len(rows)
    for k, row in enumerate(rows):  # bit for bit what the NIfTI file holds (float32, no scaling)
        assert np.array_equal(data.images[k], load_synthetic_nifti(tmp_path / row["path"]))


def test_pool_writer_refuses_images_of_another_shape_and_leaves_nothing_on_error(tmp_path):
    with pytest.raises(ValueError, match="the pool holds"), PoolWriter(tmp_path, (1, 4, 4)) as pool:
        pool.append(np.zeros((2, 1, 4, 5), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "pool_rows, message",
    [
        (None, "pool_images.npy is missing.*re-run generate"),  # a folder written before the pool file
        (2, "holds 2 images, .*manifest.csv lists 3; re-run generate"),  # out of step with the manifest
    ],
)
def test_read_synthetic_refuses_a_missing_or_mismatched_pool(tmp_path, pool_rows, message):
    write_manifest(tmp_path, [{"path": f"b/s{k}.nii.gz", "label": "b"} for k in range(3)])
    if pool_rows is not None:
        with PoolWriter(tmp_path, (1, 4, 4)) as pool:
            pool.append(np.zeros((pool_rows, 1, 4, 4), np.float32))
    with pytest.raises(SyntheticPoolError, match=message):
        read_synthetic(tmp_path, ("a", "b"))


def test_colour_png_round_trips_with_pillow(tmp_path):
    image = _colour((3, 7, 5))
    write_synthetic_png(tmp_path / "c.png", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]  # no temporary file left behind
    with Image.open(tmp_path / "c.png") as png:
        assert (png.format, png.mode, png.size) == ("PNG", "RGB", (7, 5))  # size is (width = X, height = Y)
        rgb = np.asarray(png)
        text = png.text
    np.testing.assert_array_equal(rgb, np.round(np.transpose(image, (2, 1, 0)) * COLOUR_MAX_VALUE))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[0, 6].tolist() == [0, 255, 0]
    assert text["Description"] == SYNTHETIC_DESCRIPTION.decode()
    assert "not acquired from any patient" in text["Comment"] and text["Software"].startswith("medaug")


def test_grey_png_is_16_bit(tmp_path):
    image = np.random.default_rng(2).random((1, 7, 5))
    image[0, 0, 0], image[0, 1, 0] = -0.5, 2.0  # clipped
    write_synthetic_png(tmp_path / "g.png", image)
    with Image.open(tmp_path / "g.png") as png:
        assert png.size == (7, 5) and png.mode.startswith("I")
        grey = np.asarray(png)
        assert "SYNTHETIC" in png.text["Description"]
    expected = np.round(np.clip(image[0], 0, 1).T * DICOM_MAX_VALUE)
    np.testing.assert_array_equal(grey, expected)
    assert grey[0, 0] == 0 and grey[0, 1] == DICOM_MAX_VALUE


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((3, 4, 4, 2)), "2D"),  # a volume
        (np.zeros((1, 4, 4, 2)), "2D"),  # a grey volume
        (np.zeros((4, 4, 4)), "C = 1"),  # four channels
        (np.full((3, 4, 4), np.nan), "NaN"),
    ],
)
def test_png_refuses_bad_input_and_writes_nothing(tmp_path, image, message):
    with pytest.raises(ValueError, match=message):
        write_synthetic_png(tmp_path / "bad.png", image)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["c.dcm", "c.png"])
def test_colour_files_read_back_through_the_reader(tmp_path, name):
    image = _colour((3, 7, 5))
    if name.endswith(".dcm"):
        _write(tmp_path / name, image, modality="XC")
    else:
        write_synthetic_png(tmp_path / name, image)
    loaded = load_image(tmp_path / name)
    assert loaded.array.shape == (3, 7, 5) and loaded.max_value == COLOUR_MAX_VALUE
    np.testing.assert_allclose(loaded.array / COLOUR_MAX_VALUE, image, rtol=0, atol=0.5 / COLOUR_MAX_VALUE + 1e-6)
