"""Turn a MedMNIST-style ``.npz`` into a medaug dataset folder (files + ``labels.csv`` with a ``split`` column).

The npz holds ``{train,val,test}_images`` (N, H, W) or (N, H, W, 3) uint8 and ``{split}_labels`` (N, 1).
Each image becomes one DICOM (secondary capture with the given modality), NIfTI or PNG file; the npz's own
split is kept in the manifest so a published test split stays the test split. MedMNIST has no patient
identifiers, so every image is its own patient.

Colour sets (DermaMNIST, BloodMNIST, RetinaMNIST, PathMNIST) stay colour unless ``grey`` is asked for: 8-bit RGB
Secondary Capture (SamplesPerPixel 3, PhotometricInterpretation RGB, PlanarConfiguration 0), a uint8 NIfTI
with the channels in the 5th dimension ``(X, Y, 1, 1, 3)`` and intent ``vector``, or an RGB PNG. Grey sets are
written exactly as before colour existed.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from tqdm import tqdm

from pipeline.io.errors import ManifestError

__all__ = ["FORMATS", "KNOWN_LABELS", "MODALITIES", "read_medmnist", "import_medmnist"]

# Label names of MedMNIST v2 datasets, after MedMNIST's info.py (the npz itself stores only indices), shortened
# to names fit for folders and columns.
KNOWN_LABELS = {
    "breastmnist": ("malignant", "normal_or_benign"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "dermamnist": (
        "actinic_keratosis_intraepithelial_carcinoma",
        "basal_cell_carcinoma",
        "benign_keratosis_like_lesion",
        "dermatofibroma",
        "melanoma",
        "melanocytic_nevus",
        "vascular_lesion",
    ),
    "bloodmnist": (
        "basophil",
        "eosinophil",
        "erythroblast",
        "immature_granulocyte",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ),
    "retinamnist": ("grade_0", "grade_1", "grade_2", "grade_3", "grade_4"),  # diabetic retinopathy grade
    "pathmnist": (
        "adipose",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth_muscle",
        "normal_colon_mucosa",
        "cancer_associated_stroma",
        "colorectal_adenocarcinoma_epithelium",
    ),
}
# DICOM modality codes: XC external-camera photography (dermoscopy), OP ophthalmic photography (fundus),
# GM general microscopy (blood smear), SM slide microscopy (histology)
MODALITIES = {
    "breastmnist": "US",
    "pneumoniamnist": "DX",
    "dermamnist": "XC",
    "retinamnist": "OP",
    "bloodmnist": "GM",
    "pathmnist": "SM",
}
SPLITS = ("train", "val", "test")
FORMATS = ("dicom", "nifti", "png")
SUFFIXES = {"dicom": ".dcm", "nifti": ".nii.gz", "png": ".png"}
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM's axes in NIfTI's RAS world


def read_medmnist(path: Path, grey: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images uint8 (N, H, W) or (N, H, W, 3), labels int (N,))}``; colour images stay RGB unless
    ``grey``, which converts them to luminance (0.299 R + 0.587 G + 0.114 B, rounded)."""
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
            if images.ndim == 4 and images.shape[-1] == 1:
                images = images[..., 0]
            if images.ndim == 4 and images.shape[-1] != 3:
                raise ManifestError(f"{path}: {split} images {images.shape} have neither 1 nor 3 channels")
            if images.ndim == 4 and grey:  # RGB -> luminance
                images = (images @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
            if images.ndim not in (3, 4) or len(images) != len(labels):
                raise ManifestError(f"{path}: {split} images {images.shape} do not match labels {labels.shape}")
            out[split] = (images.astype(np.uint8), labels.astype(int))
    return out


def _write_dicom(path: Path, image: np.ndarray, modality: str, series_uid: str) -> None:
    """``image`` (rows, columns) grey or (rows, columns, 3) RGB, uint8."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series_uid, series_uid
    ds.Modality, ds.ImageType = modality, ["DERIVED", "SECONDARY"]
    ds.Rows, ds.Columns = image.shape[:2]
    if image.ndim == 3:  # R, G, B of each pixel together
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    data = np.ascontiguousarray(image).tobytes()
    ds.PixelData = data + b"\0" if len(data) % 2 else data  # DICOM values have even length
    ds.save_as(path, enforce_file_format=True)


def _write_nifti(path: Path, image: np.ndarray) -> None:
    """``image`` (rows, columns) grey or (rows, columns, 3) RGB -> (x, y) or (x, y, 1, 1, 3), as the reader
    returns DICOM."""
    if image.ndim == 2:
        nib.save(nib.Nifti1Image(np.ascontiguousarray(image.T), LPS), path)
        return
    vector = np.transpose(image, (1, 0, 2))[:, :, None, None, :]  # (x, y, z = 1, t = 1, RGB)
    nifti = nib.Nifti1Image(np.ascontiguousarray(vector), LPS)
    nifti.header.set_intent("vector")
    nib.save(nifti, path)


def import_medmnist(
    npz_path: Path, out_dir: Path, fmt: Literal["dicom", "nifti", "png"] = "dicom", grey: bool = False
) -> dict[str, int]:
    """Write the dataset folder; return the number of images per split. ``out_dir`` must be new or empty.
    Colour sets stay colour unless ``grey`` (then luminance, as before colour support)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ManifestError(f"{out_dir} is not empty; choose a new folder so that nothing is overwritten")
    name = npz_path.name.split(".")[0].lower()
    data = read_medmnist(npz_path, grey=grey)
    n_classes = max(int(labels.max()) for _, labels in data.values()) + 1
    names = KNOWN_LABELS.get(name, tuple(f"class_{k}" for k in range(n_classes)))
    modality = MODALITIES.get(name, "OT")
    series_uid = generate_uid()
    rows = []
    for split, (images, labels) in data.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(tqdm(list(zip(images, labels, strict=True)), desc=f"import {split}")):
            rel = f"{split}/{split}_{i:05d}{SUFFIXES[fmt]}"
            if fmt == "dicom":
                _write_dicom(out_dir / rel, image, modality, series_uid)
            elif fmt == "nifti":
                _write_nifti(out_dir / rel, image)
            else:  # 8-bit L or RGB, as MedMNIST stores it
                Image.fromarray(np.ascontiguousarray(image)).save(out_dir / rel, format="PNG")
            rows.append((rel, names[label], f"{split}-{i:05d}", split))
    with open(out_dir / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "patient_id", "split"])
        writer.writerows(rows)
    return {split: len(images) for split, (images, _) in data.items()}
