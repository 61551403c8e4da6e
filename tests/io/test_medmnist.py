import csv
import hashlib
import itertools

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

import pipeline.io.medmnist as medmnist
from pipeline.config import PreprocessConfig
from pipeline.io.errors import ManifestError
from pipeline.io.medmnist import import_medmnist
from pipeline.io.reader import load_image
from pipeline.preprocess import preprocess_dataset
from tests.conftest import SHARED_DATA, TINY_PREPROCESS

BREAST = SHARED_DATA / "breastmnist" / "breastmnist.npz"


def _npz(path, n=(12, 6, 6), size=8, shape=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, *(shape or (size, size))), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_import_keeps_pixels_labels_and_split(tmp_path, fmt):
    arrays = _npz(tmp_path / "toy.npz")
    counts = import_medmnist(tmp_path / "toy.npz", tmp_path / "out", fmt)
    assert counts == {"train": 12, "val": 6, "test": 6}
    with open(tmp_path / "out" / "labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["split"] for r in rows].count("test") == 6
    first_test = next(r for r in rows if r["split"] == "test")
    assert first_test["label"] == "class_0"
    image = load_image(tmp_path / "out" / first_test["path"])
    np.testing.assert_array_equal(image.array[0].T, arrays["test_images"][0])  # same orientation as DICOM


def test_import_refuses_to_overwrite_and_bad_files(tmp_path):
    _npz(tmp_path / "toy.npz")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("user data")
    with pytest.raises(ManifestError, match="not empty"):
        import_medmnist(tmp_path / "toy.npz", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "user data"
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ManifestError, match="MedMNIST"):
        import_medmnist(tmp_path / "other.npz", tmp_path / "new")


def test_preprocess_honours_the_manifest_split(tmp_path):
    _npz(tmp_path / "toy.npz")
    import_medmnist(tmp_path / "toy.npz", tmp_path / "out", "nifti")
    cfg = PreprocessConfig(**{**TINY_PREPROCESS.__dict__, "size": 16, "modality_default": "US"})
    splits, _, summary = preprocess_dataset(tmp_path / "out", cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "val": 6, "test": 6}
    assert summary.split_source == "labels.csv"


@pytest.mark.skipif(not BREAST.is_file(), reason="../shared/data/breastmnist is not present")
def test_real_breastmnist(tmp_path):
    counts = import_medmnist(BREAST, tmp_path / "breast", "dicom")
    assert counts == {"train": 546, "val": 78, "test": 156}
    with open(tmp_path / "breast" / "labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    train_malignant = sum(r["split"] == "train" and r["label"] == "malignant" for r in rows)
    assert train_malignant == 147  # the documented minority count
    image = load_image(tmp_path / "breast" / rows[0]["path"])
    assert image.modality == "US" and image.array.shape == (1, 28, 28)


def _rows(out):
    with open(out / "labels.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _tree_sha256(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# sha256 over the files import_medmnist wrote before colour support (commit 09e202e; pydicom 3.0.2, nibabel
# 5.4.2) from the grey npz below, with UIDs numbered 1, 2, ... instead of random
GREY_IMPORT_SHA256 = {
    "dicom": "13f360dbcb0f0bee358c324daa1e2954f2735f810f2d6027ae4907c1b1623985",
    "nifti": "96404a75eca85e3f4cccc501086ea8825afc5e64bd82337e3174dac0602cbe3f",
}


@pytest.mark.skipif(
    (pydicom.__version__, nib.__version__) != ("3.0.2", "5.4.2"),
    reason="hashes pinned with pydicom 3.0.2, nibabel 5.4.2",
)
@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_grey_import_is_byte_identical_to_before(tmp_path, monkeypatch, fmt):
    rng = np.random.default_rng(18)
    arrays = {}
    for split, k in zip(("train", "val", "test"), (3, 2, 2), strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, 5, 4), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(tmp_path / "toy.npz", **arrays)
    counter = itertools.count(1)
    monkeypatch.setattr(medmnist, "generate_uid", lambda *a, **k: f"1.2.826.0.1.3680043.8.498.{next(counter)}")
    import_medmnist(tmp_path / "toy.npz", tmp_path / fmt, fmt)
    assert _tree_sha256(tmp_path / fmt) == GREY_IMPORT_SHA256[fmt]


def test_colour_import_to_dicom_keeps_rgb(tmp_path):
    arrays = _npz(tmp_path / "dermamnist.npz", n=(4, 2, 2), shape=(5, 7, 3))  # 5 rows, 7 columns: odd length
    import_medmnist(tmp_path / "dermamnist.npz", tmp_path / "out")
    rows = _rows(tmp_path / "out")
    assert rows[1]["label"] == "basal_cell_carcinoma"  # DermaMNIST's names
    ds = pydicom.dcmread(tmp_path / "out" / rows[0]["path"])
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration) == (3, "RGB", 0)
    assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.Modality) == (5, 7, 8, "XC")
    np.testing.assert_array_equal(ds.pixel_array, arrays["train_images"][0])


@pytest.mark.parametrize("grey", [False, True])
def test_colour_import_to_png(tmp_path, grey):
    arrays = _npz(tmp_path / "toy.npz", n=(2, 2, 2), shape=(5, 7, 3))
    import_medmnist(tmp_path / "toy.npz", tmp_path / "out", "png", grey=grey)
    path = tmp_path / "out" / _rows(tmp_path / "out")[0]["path"]
    with Image.open(path) as png:
        assert (png.mode, png.size) == ("L" if grey else "RGB", (7, 5))
        pixels = np.asarray(png)
    expected = arrays["train_images"][0]
    if grey:  # the luminance of before
        expected = (expected @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
    np.testing.assert_array_equal(pixels, expected)


def test_colour_import_to_nifti_is_a_vector_image(tmp_path):
    arrays = _npz(tmp_path / "toy.npz", n=(2, 2, 2), shape=(5, 7, 3))
    import_medmnist(tmp_path / "toy.npz", tmp_path / "out", "nifti")
    nifti = nib.load(tmp_path / "out" / _rows(tmp_path / "out")[0]["path"])
    assert nifti.shape == (7, 5, 1, 1, 3) and nifti.get_data_dtype() == np.uint8
    assert nifti.header.get_intent()[0] == "vector"
    np.testing.assert_array_equal(
        np.asarray(nifti.dataobj)[:, :, 0, 0, :], arrays["train_images"][0].transpose(1, 0, 2)
    )


def test_grey_option_gives_the_old_luminance_dicom(tmp_path):
    arrays = _npz(tmp_path / "toy.npz", n=(2, 2, 2), shape=(4, 4, 3))
    import_medmnist(tmp_path / "toy.npz", tmp_path / "out", grey=True)
    ds = pydicom.dcmread(tmp_path / "out" / _rows(tmp_path / "out")[0]["path"])
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME2")
    luminance = (arrays["train_images"][0] @ np.array([0.299, 0.587, 0.114])).round()
    np.testing.assert_array_equal(ds.pixel_array, luminance)


def test_images_with_other_channel_counts_are_refused(tmp_path):
    _npz(tmp_path / "toy.npz", n=(2, 2, 2), shape=(4, 4, 4))
    with pytest.raises(ManifestError, match="neither 1 nor 3 channels"):
        import_medmnist(tmp_path / "toy.npz", tmp_path / "out")


@pytest.mark.parametrize("fmt", ["dicom", "nifti", "png"])
def test_colour_import_reads_back_through_the_reader(tmp_path, fmt):
    arrays = _npz(tmp_path / "toy.npz", n=(2, 2, 2), shape=(5, 7, 3))
    import_medmnist(tmp_path / "toy.npz", tmp_path / "out", fmt)
    image = load_image(tmp_path / "out" / _rows(tmp_path / "out")[0]["path"])
    assert image.array.shape == (3, 7, 5)  # (RGB, X = columns, Y = rows)
    np.testing.assert_array_equal(np.transpose(image.array, (2, 1, 0)), arrays["train_images"][0])
