"""The one reader: real DICOM and NIfTI files written by the fixtures, and the shared real CT series."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline.demo_data import write_ct_slice
from pipeline.io.errors import NonImageDicomError, UnreadableImageError
from pipeline.io.reader import load_image
from tests.conftest import SHARED_DATA

IDENTITY = {"PatientName": "TEST^PATIENT", "PatientID": "ID123"}


def _uids():
    return {"study": generate_uid(), "series": generate_uid(), "sop": generate_uid()}


def _truncated(path):
    write_ct_slice(path, np.zeros((32, 32)), IDENTITY, _uids(), 0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


def test_dicom_rescale_gives_hounsfield_units(tmp_path):
    hu = np.full((8, 12), -1000.0)
    hu[2:4, 3:9] = 400.0
    write_ct_slice(tmp_path / "a.dcm", hu, IDENTITY, _uids(), 0)
    image = load_image(tmp_path / "a.dcm")
    assert image.array.shape == (1, 12, 8)  # (C, X=columns, Y=rows)
    assert image.modality == "CT"
    np.testing.assert_allclose(image.array[0].T, hu)
    assert image.spacing == (2.5, 2.5)


def test_dicom_without_suffix_and_series_folder(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    uids = _uids()
    for k in range(3):
        write_ct_slice(series / f"IM{k}", np.full((8, 8), float(100 * k)), IDENTITY, {**uids, "sop": generate_uid()}, k)
    image = load_image(series)
    assert image.array.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(image.array[0, 0, 0], [0, 100, 200])  # ordered along the slice axis


def test_monochrome1_is_inverted(tmp_path):
    hu = np.arange(64, dtype=float).reshape(8, 8) * 3 - 100
    write_ct_slice(tmp_path / "m1.dcm", hu, IDENTITY, _uids(), 0)

    ds = pydicom.dcmread(tmp_path / "m1.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    image = load_image(tmp_path / "m1.dcm")
    np.testing.assert_allclose(image.array[0].T, hu.max() + hu.min() - hu)


def test_nifti_2d_and_3d(tmp_path):
    vol = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([0.5, 0.5, 2.0, 1.0])), tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(vol[..., :1], np.eye(4)), tmp_path / "s.nii")
    image = load_image(tmp_path / "v.nii.gz")
    assert image.array.shape == (1, 6, 5, 4) and image.spacing == (0.5, 0.5, 2.0) and image.modality is None
    np.testing.assert_allclose(image.array[0], vol[::-1, ::-1])  # RAS file -> LPS axes: x and y flipped
    assert load_image(tmp_path / "s.nii").array.shape == (1, 6, 5)


@pytest.mark.parametrize(
    "writer, error, message",
    [
        # truncated DICOM: a valid CT slice cut to 60 % of its bytes
        (lambda p: _truncated(p), UnreadableImageError, "may be truncated"),
        # not DICOM at all
        (lambda p: p.write_text("hello"), UnreadableImageError, "not a readable DICOM"),
        # NIfTI with NaN voxels
        (
            lambda p: nib.save(nib.Nifti1Image(np.full((4, 4), np.nan, np.float32), np.eye(4)), p),
            UnreadableImageError,
            "NaN",
        ),
        # 4D NIfTI
        (
            lambda p: nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), p),
            UnreadableImageError,
            "only 2D and 3D",
        ),
    ],
)
def test_bad_files_get_named_errors(tmp_path, writer, error, message):
    name = "bad.nii.gz" if "NaN" in message or "2D" in message else "bad.dcm"
    writer(tmp_path / name)
    with pytest.raises(error, match=message):
        load_image(tmp_path / name)


def test_dicom_without_pixel_data_is_refused(tmp_path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "sr.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "SR"
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(NonImageDicomError, match="without pixel data"):
        load_image(tmp_path / "sr.dcm")


@pytest.mark.skipif(not (SHARED_DATA / "ct_series").is_dir(), reason="../shared/data/ct_series is not present")
def test_real_jpeg2000_ct_series():
    image = load_image(SHARED_DATA / "ct_series" / "example_ct_dicom")
    assert image.array.shape == (1, 512, 512, 20)
    assert image.modality == "CT"
    assert -1100 <= image.array.min() < -900 and 1000 < image.array.max() < 3100  # Hounsfield units
    assert image.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))  # slices 2 mm apart (3 mm thick)


@pytest.mark.skipif(not (SHARED_DATA / "ct_series").is_dir(), reason="../shared/data/ct_series is not present")
def test_real_mr_nifti():
    image = load_image(SHARED_DATA / "ct_series" / "example_mr_sm.nii.gz")
    assert image.array.shape == (1, 117, 91, 20) and image.spacing == pytest.approx((3.0, 3.0, 3.0))


def _series(folder, values, positions, instance_numbers, shape=(8, 8)):
    folder.mkdir()
    uids = _uids()
    for k, (value, z, number) in enumerate(zip(values, positions, instance_numbers, strict=True)):
        path = folder / f"IM{k}"
        write_ct_slice(path, np.full(shape, float(value)), IDENTITY, {**uids, "sop": generate_uid()}, 0)
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [0, 0, z]
        ds.InstanceNumber = number
        ds.save_as(path)


def test_series_is_ordered_along_the_slice_normal_not_by_instance_number(tmp_path):
    # file order, InstanceNumber and position disagree: position along the normal wins
    _series(tmp_path / "s", values=[300, 100, 200], positions=[30.0, 10.0, 20.0], instance_numbers=[1, 2, 3])
    image = load_image(tmp_path / "s")
    np.testing.assert_allclose(image.array[0, 0, 0], [100, 200, 300])
    assert image.spacing == (2.5, 2.5, 10.0)


def test_series_with_a_corrupt_slice_names_it(tmp_path):
    _series(tmp_path / "s", values=[1, 2, 3], positions=[0.0, 1.0, 2.0], instance_numbers=[1, 2, 3])
    data = (tmp_path / "s" / "IM1").read_bytes()
    (tmp_path / "s" / "IM1").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="IM1"):
        load_image(tmp_path / "s")


def test_series_mixing_slice_sizes_is_refused(tmp_path):
    _series(tmp_path / "s", values=[1, 2], positions=[0.0, 1.0], instance_numbers=[1, 2])
    write_ct_slice(tmp_path / "s" / "IM9", np.zeros((6, 6)), IDENTITY, _uids(), 5)
    with pytest.raises(UnreadableImageError, match="different sizes"):
        load_image(tmp_path / "s")


def test_empty_series_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(UnreadableImageError, match="no DICOM file"):
        load_image(tmp_path / "empty")


@pytest.mark.skipif(not (SHARED_DATA / "ct_series").is_dir(), reason="../shared/data/ct_series is not present")
def test_dicom_and_nifti_of_the_same_scan_come_out_alike():
    # example_seg_dicom.nii.gz labels the DICOM series' voxels but is stored LAS while the DICOM is LPS
    ct = load_image(SHARED_DATA / "ct_series" / "example_ct_dicom")
    seg = load_image(SHARED_DATA / "ct_series" / "example_seg_dicom.nii.gz")
    assert ct.array.shape == seg.array.shape
    np.testing.assert_allclose(ct.affine, seg.affine, atol=1e-3)
    labelled = seg.array[0] > 0
    inside_body = (ct.array[0] > -300)[labelled].mean()  # labelled structures lie inside the body
    assert inside_body > 0.95


def test_multiframe_dicom_frames_on_the_last_axis(tmp_path):
    path = tmp_path / "mf.dcm"
    write_ct_slice(path, np.zeros((8, 6)), IDENTITY, _uids(), 0)
    ds = pydicom.dcmread(path)
    frames = np.stack([np.arange(48).reshape(8, 6) + 1000 * k for k in range(3)]).astype(np.uint16)  # (f, rows, cols)
    ds.NumberOfFrames, ds.PixelData = 3, frames.tobytes()
    del ds.ImagePositionPatient, ds.ImageOrientationPatient  # as in most multi-frame exports
    ds.save_as(path)
    image = load_image(path)
    assert image.array.shape == (1, 6, 8, 3)  # (C, X=columns, Y=rows, frames)
    for k in range(3):
        np.testing.assert_allclose(image.array[0, :, :, k].T, frames[k].astype(float) - 1024)  # HU rescale applied
    assert image.spacing == (2.5, 2.5, 5.0)  # pixel spacing and slice thickness


def test_a_file_cut_anywhere_in_its_header_is_a_named_error(tmp_path):
    from pipeline.io.errors import MedaugInputError

    whole = tmp_path / "whole.dcm"
    write_ct_slice(whole, np.zeros((8, 8)), IDENTITY, _uids(), 0)
    data, cut = whole.read_bytes(), tmp_path / "cut.dcm"
    for end in range(0, len(data) - 8 * 8 * 2, 3):  # every few bytes up to the start of the pixels
        cut.write_bytes(data[:end])
        with pytest.raises(MedaugInputError, match=r"cut\.dcm"):
            load_image(cut)
