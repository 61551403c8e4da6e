"""One manifest row to normalised arrays: what the preprocess stage does to every file and ``medaug score`` to a
new one, kept here so that both prepare images alike without one importing the other."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipeline.config import PreprocessConfig
from pipeline.io.errors import BurnedInAnnotationError, UnreadableImageError
from pipeline.io.manifest import ManifestRow
from pipeline.io.reader import LoadedImage, load_image
from pipeline.transforms import (
    ct_window,
    extract_slices,
    fit_to_size,
    normalise_intensity,
    resample_to_spacing,
    resize_image,
)

__all__ = ["LUMA", "Sample", "pseudonymise", "row_samples", "target_channels", "to_channels"]

# ITU-R BT.601 luma weights of R, G and B: colour to grey as Pillow's convert("L") and most viewers do it
LUMA = (0.299, 0.587, 0.114)


@dataclass
class Sample:
    image: np.ndarray  # (C, S, S) or, for spatial_dims 3, (C, S, S, S); float32 in [0, 1]; C = 1 grey, 3 RGB
    label: str
    patient: str  # pseudonymous ID
    line: int  # labels.csv line of the source row
    modality: str
    split: str | None  # split fixed by the manifest, if any
    source: str = "dicom"  # the file's kind: dicom | nifti | image (PNG, JPEG, TIFF, ...)
    site: str = ""  # pseudonymous site (scanner, hospital) ID; "" when labels.csv has no site column


def pseudonymise(patient_id: str, salt: str, prefix: str = "P") -> str:
    """A stable pseudonym: HMAC-SHA256 of the identifier keyed by ``salt``, shortened, after ``prefix`` (``P`` for
    patients, ``S`` for sites; a site's message carries its prefix, so one name as a patient and as a site gets two
    unrelated pseudonyms)."""
    message = patient_id if prefix == "P" else f"{prefix}:{patient_id}"
    digest = hmac.new(salt.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:12]}"


def target_channels(setting: str | int, channels: Iterable[int]) -> int:
    """The channels of the processed dataset: ``preprocess.channels`` when 1 or 3; for ``auto``, 3 when any of the
    images' ``channels`` is colour, else 1."""
    if setting != "auto":
        return int(setting)
    return 3 if any(c == 3 for c in channels) else 1


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``image`` (C, ...) with ``channels`` channels: grey repeated into R, G and B, or colour to grey by
    :data:`LUMA`; unchanged when it has them already."""
    if image.shape[0] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=0)
    weights = np.asarray(LUMA, dtype=np.float32).reshape(3, *([1] * (image.ndim - 1)))
    return (image * weights).sum(axis=0, keepdims=True, dtype=np.float32)


def _is_photograph(loaded: LoadedImage) -> bool:
    """Colour images and plain 8-bit image files store display values, not physical units: they are scaled by
    their stored range, never windowed or stretched (stretching each image, or each channel, would change
    its colours and brightness from one image to the next)."""
    return loaded.max_value is not None and (loaded.array.shape[0] == 3 or loaded.max_value <= 255)


def row_samples(row: ManifestRow, cfg: PreprocessConfig) -> list[Sample]:
    """Read, normalise, resample and resize one manifest row. With ``spatial_dims: 2`` a volume yields one
    sample per kept slice; with ``spatial_dims: 3`` every row must be a volume and stays whole.

    Intensities to [0, 1]: CT through the HU window; photographs (colour images, 8-bit image files) divided by
    their stored maximum (255 for 8-bit), the same for every channel; other grey images (MR, X-ray, 16-bit
    image files) from their 0.5-99.5 percentile range. Samples keep the file's channels (1 or 3);
    the preprocess stage brings them to the dataset's channels (:func:`to_channels`)."""
    loaded = load_image(row.path, max_bytes=int(cfg.max_image_gib * 2**30))
    if loaded.burned_in_annotation and not cfg.allow_burned_in:
        raise BurnedInAnnotationError(
            f"{row.path}: the DICOM header flags burned-in annotation (BurnedInAnnotation YES): text in the "
            "pixels may identify the patient. Remove the row, blank the text first, or set "
            "preprocess.allow_burned_in: true if you have checked that it does not."
        )
    if cfg.spatial_dims == 3 and loaded.spatial_dims != 3:
        raise UnreadableImageError(
            f"{row.path}: a 2D image ({'x'.join(map(str, loaded.array.shape[1:]))}) in a 3D run "
            "(preprocess.spatial_dims: 3); list only volumes, or set spatial_dims: 2 to work on slices"
        )
    photograph = _is_photograph(loaded)
    # plain image files say nothing of their modality: OT (other), never the CT default meant for NIfTI
    modality = loaded.modality or ("OT" if loaded.source == "image" else cfg.modality_default)
    image = loaded.array
    if cfg.spacing is not None:
        image = resample_to_spacing(image, loaded.affine, cfg.spacing)
    parts = [image] if cfg.spatial_dims == 3 else extract_slices(image, cfg.slice_policy, cfg.slices_per_volume)
    if cfg.spacing is None:  # shrink in the file's units first: windowing 64 x 64 pixels, not 512 x 512
        parts = [resize_image(part, cfg.size) for part in parts]
    level, width = ct_window(cfg.ct_window, cfg.ct_window_level, cfg.ct_window_width)
    stacked = np.stack(parts, axis=-1)
    if photograph:
        normalised = stacked / np.float32(loaded.max_value)
    else:  # one intensity mapping for the whole row, so percentile scaling treats a volume's slices alike
        normalised = normalise_intensity(stacked, modality, level, width)
    patient = pseudonymise(row.patient_id or loaded.patient_id or row.relpath, cfg.id_salt)
    return [
        Sample(
            np.clip(fit_to_size(normalised[..., k], cfg.size, cfg.spacing is not None), 0.0, 1.0),
            row.label,
            patient,
            row.line,
            modality,
            row.split,
            loaded.source,
            pseudonymise(row.site, cfg.id_salt, "S") if row.site is not None else "",
        )
        for k in range(len(parts))
    ]
