"""One manifest row to normalised arrays: what the preprocess stage does to every file and ``medaug score`` to a
new one, kept here so that both prepare images alike without one importing the other."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import numpy as np

from pipeline.config import PreprocessConfig
from pipeline.io.errors import BurnedInAnnotationError, UnreadableImageError
from pipeline.io.manifest import ManifestRow
from pipeline.io.reader import load_image
from pipeline.transforms import (
    ct_window,
    extract_slices,
    fit_to_size,
    normalise_intensity,
    resample_to_spacing,
    resize_image,
)

__all__ = ["Sample", "pseudonymise", "row_samples"]


@dataclass
class Sample:
    image: np.ndarray  # (1, S, S) or, for spatial_dims 3, (1, S, S, S); float32 in [0, 1]
    label: str
    patient: str  # pseudonymous ID
    line: int  # labels.csv line of the source row
    modality: str
    split: str | None  # split fixed by the manifest, if any


def pseudonymise(patient_id: str, salt: str) -> str:
    """A stable pseudonym: HMAC-SHA256 of the identifier keyed by ``salt``, shortened."""
    digest = hmac.new(salt.encode("utf-8"), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"P{digest[:12]}"


def row_samples(row: ManifestRow, cfg: PreprocessConfig) -> list[Sample]:
    """Read, normalise, resample and resize one manifest row. With ``spatial_dims: 2`` a volume yields one
    sample per kept slice; with ``spatial_dims: 3`` every row must be a volume and stays whole."""
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
    modality = loaded.modality or cfg.modality_default
    image = loaded.array
    if cfg.spacing is not None:
        image = resample_to_spacing(image, loaded.affine, cfg.spacing)
    parts = [image] if cfg.spatial_dims == 3 else extract_slices(image, cfg.slice_policy, cfg.slices_per_volume)
    if cfg.spacing is None:  # shrink in the file's units first: windowing 64 x 64 pixels, not 512 x 512
        parts = [resize_image(part, cfg.size) for part in parts]
    level, width = ct_window(cfg.ct_window, cfg.ct_window_level, cfg.ct_window_width)
    # one intensity mapping for the whole row, so percentile scaling treats a volume's slices alike
    normalised = normalise_intensity(np.stack(parts, axis=-1), modality, level, width)
    patient = pseudonymise(row.patient_id or loaded.patient_id or row.relpath, cfg.id_salt)
    return [
        Sample(
            np.clip(fit_to_size(normalised[..., k], cfg.size, cfg.spacing is not None), 0.0, 1.0),
            row.label,
            patient,
            row.line,
            modality,
            row.split,
        )
        for k in range(len(parts))
    ]
