"""Turn a MedMNIST-style ``.npz`` into a medaug dataset folder (files + ``labels.csv`` with a ``split`` column).

The npz holds ``{train,val,test}_images`` (N, H, W) or (N, H, W, 3) uint8 and ``{split}_labels`` (N, 1).
Each image becomes one DICOM (secondary capture with the given modality) or NIfTI file; the npz's own
split is kept in the manifest so a published test split stays the test split. MedMNIST has no patient
identifiers, so every image is its own patient.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from tqdm import tqdm

from pipeline.io.errors import ManifestError

__all__ = ["KNOWN_LABELS", "MODALITIES", "read_medmnist", "import_medmnist"]

# Label names of MedMNIST v2 datasets, from MedMNIST's info.py (the npz itself stores only indices).
KNOWN_LABELS = {"breastmnist": ("malignant", "normal_or_benign"), "pneumoniamnist": ("normal", "pneumonia")}
MODALITIES = {"breastmnist": "US", "pneumoniamnist": "DX"}
SPLITS = ("train", "val", "test")


def read_medmnist(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images uint8 (N, H, W), labels int (N,))}``; colour images are converted to grey."""
    try:
        npz = np.load(path)
    except (OSError, ValueError) as err:
        raise ManifestError(f"{path}: not a readable .npz file ({err})") from err
    out = {}
    with npz:
        for split in SPLITS:
            if f"{split}_images" not in npz or f"{split}_labels" not in npz:
                raise ManifestError(f"{path}: missing '{split}_images' or '{split}_labels'; is this a MedMNIST file?")
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"].reshape(-1)
            if images.ndim == 4:  # RGB -> luminance
                images = (images[..., :3] @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
            if images.ndim != 3 or len(images) != len(labels):
                raise ManifestError(f"{path}: {split} images {images.shape} do not match labels {labels.shape}")
            out[split] = (images.astype(np.uint8), labels.astype(int))
    return out


def _write_dicom(path: Path, image: np.ndarray, modality: str, series_uid: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series_uid, series_uid
    ds.Modality, ds.ImageType = modality, ["DERIVED", "SECONDARY"]
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(image).tobytes()
    ds.save_as(path, enforce_file_format=True)


def import_medmnist(npz_path: Path, out_dir: Path, fmt: Literal["dicom", "nifti"] = "dicom") -> dict[str, int]:
    """Write the dataset folder; return the number of images per split. ``out_dir`` must be new or empty."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ManifestError(f"{out_dir} is not empty; choose a new folder so that nothing is overwritten")
    name = npz_path.name.split(".")[0].lower()
    data = read_medmnist(npz_path)
    n_classes = max(int(labels.max()) for _, labels in data.values()) + 1
    names = KNOWN_LABELS.get(name, tuple(f"class_{k}" for k in range(n_classes)))
    modality = MODALITIES.get(name, "OT")
    series_uid = generate_uid()
    rows = []
    for split, (images, labels) in data.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(tqdm(list(zip(images, labels, strict=True)), desc=f"import {split}")):
            rel = f"{split}/{split}_{i:05d}" + (".dcm" if fmt == "dicom" else ".nii.gz")
            if fmt == "dicom":
                _write_dicom(out_dir / rel, image, modality, series_uid)
            else:  # (rows, cols) -> (x, y), as the reader returns DICOM
                lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM's axes in NIfTI's RAS world
                nib.save(nib.Nifti1Image(np.ascontiguousarray(image.T), lps), out_dir / rel)
            rows.append((rel, names[label], f"{split}-{i:05d}", split))
    with open(out_dir / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "patient_id", "split"])
        writer.writerows(rows)
    return {split: len(images) for split, (images, _) in data.items()}
