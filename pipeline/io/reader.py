"""One reader for DICOM files, DICOM series folders and NIfTI files.

Contract: :func:`load_image` returns a :class:`LoadedImage` whose ``array`` is float32 of shape
``(C, X, Y)`` for 2D images or ``(C, X, Y, Z)`` for volumes (C = 1 for grayscale), in MONAI's axis
convention (first spatial axis = DICOM columns), with intensities in physical units where the file
defines them (Hounsfield units for CT after RescaleSlope/Intercept). ``spacing`` has one entry per
spatial axis in mm; ``modality`` is the DICOM Modality or ``None`` when the file does not say.

No other header field is returned: patient identifiers never leave this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from monai.data import NibabelReader, PydicomReader
from monai.data.utils import affine_to_spacing

from pipeline.io.errors import NonImageDicomError, UnreadableImageError

__all__ = ["LoadedImage", "is_nifti", "load_image", "load_dicom", "load_nifti"]

logger = logging.getLogger(__name__)

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class LoadedImage:
    """An image as the pipeline sees it (see the module docstring for the shape contract)."""

    array: np.ndarray  # float32, (C, X, Y) or (C, X, Y, Z)
    spacing: tuple[float, ...]  # mm per spatial axis
    modality: str | None  # DICOM Modality, None if unknown

    @property
    def spatial_dims(self) -> int:
        return self.array.ndim - 1


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def load_image(path: str | Path) -> LoadedImage:
    """Read a DICOM file, a DICOM series folder or a NIfTI file (see the module docstring)."""
    path = Path(path)
    image = load_nifti(path) if is_nifti(path) else load_dicom(path)
    if not np.isfinite(image.array).all():
        raise UnreadableImageError(f"{path}: contains NaN or infinite values; fix or drop this image")
    return image


def load_dicom(path: Path) -> LoadedImage:
    """Read one DICOM file or a folder holding one series (slices stacked along the last axis)."""
    # prune_metadata keeps only geometry tags in MONAI's metadata, so no PHI is carried along.
    reader = PydicomReader(prune_metadata=True)
    try:
        datasets = reader.read(str(path))
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError, IndexError) as err:
        raise UnreadableImageError(
            f"{path}: not a readable DICOM file ({type(err).__name__}: {err}). "
            "Check that the file is complete, or remove its row from labels.csv."
        ) from err
    first = datasets[0] if isinstance(datasets, list) else datasets
    if not any(tag in first for tag in _PIXEL_TAGS):
        kind = first.get("SOPClassUID", "unknown SOP class")
        raise NonImageDicomError(
            f"{path}: DICOM object without pixel data ({getattr(kind, 'name', kind)}); "
            "only image objects can be used, remove its row from labels.csv"
        )
    try:
        array, meta = reader.get_data(datasets)
    except Exception as err:  # decoders raise many types: missing plugin, truncated stream, bad length
        raise UnreadableImageError(
            f"{path}: pixel data could not be decoded ({type(err).__name__}: {err}). "
            "The file may be truncated or use a transfer syntax without an installed decoder."
        ) from err
    array = np.asarray(array, dtype=np.float32)
    if first.get("PhotometricInterpretation") == "MONOCHROME1":  # bright means low values: invert
        array = array.max() + array.min() - array
    spacing = tuple(float(s) for s in np.asarray(meta["spacing"]).ravel()[: array.ndim])
    modality = str(first.get("Modality", "")) or None
    return LoadedImage(array=array[None], spacing=spacing, modality=modality)


def load_nifti(path: Path) -> LoadedImage:
    """Read a 2D or 3D NIfTI file; 4D files are refused."""
    reader = NibabelReader()
    try:
        img = reader.read(str(path))
        array, meta = reader.get_data(img)
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors, ...
        raise UnreadableImageError(
            f"{path}: not a readable NIfTI file ({type(err).__name__}: {err}). Check that the file is complete."
        ) from err
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise UnreadableImageError(
            f"{path}: NIfTI image of shape {array.shape}; only 2D and 3D images are supported, "
            "extract the volume you want first"
        )
    spacing = tuple(float(s) for s in affine_to_spacing(np.asarray(meta["affine"]), r=array.ndim))
    return LoadedImage(array=array[None], spacing=spacing, modality=None)
