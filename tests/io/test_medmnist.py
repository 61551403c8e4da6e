import csv

import numpy as np
import pytest

from pipeline.config import PreprocessConfig
from pipeline.io.errors import ManifestError
from pipeline.io.medmnist import import_medmnist
from pipeline.io.reader import load_image
from pipeline.preprocess import preprocess_dataset
from tests.conftest import SHARED_DATA, TINY_PREPROCESS

BREAST = SHARED_DATA / "breastmnist" / "breastmnist.npz"


def _npz(path, n=(12, 6, 6), size=8):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, size, size), dtype=np.uint8)
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
    assert summary["split_source"] == "labels.csv"


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
