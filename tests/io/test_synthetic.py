"""Synthetic DICOM: real pydicom files written by the writer, read back with the project's reader."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
)

from pipeline.io.reader import load_image
from pipeline.io.synthetic import (
    DICOM_MAX_VALUE,
    SYNTHETIC_DESCRIPTION,
    new_synthetic_uids,
    read_synthetic,
    write_manifest,
    write_synthetic_dicom,
    write_synthetic_nifti,
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
    header = nib.load(tmp_path / "b" / "s0.nii.gz").header
    assert header["descrip"].tobytes().rstrip(b"\0") == SYNTHETIC_DESCRIPTION[:80]
    data = read_synthetic(tmp_path, ("a", "b"))
    assert data.labels.tolist() == [1] and np.array_equal(data.images[0], image)
