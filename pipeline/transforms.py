"""Image transforms of the preprocess stage, built from MONAI transforms.

All functions take and return channel-first float32 arrays ``(C, X, Y[, Z])`` (see
:mod:`pipeline.io.reader`) and are pure: the input array is never modified.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from monai.transforms import Resize, ScaleIntensityRange, ScaleIntensityRangePercentiles, Transform

__all__ = ["CT_WINDOWS", "ct_window", "intensity_transform", "normalise_intensity", "extract_slices", "resize_image"]


# Common CT display windows as (level, width) in HU.
CT_WINDOWS = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}


def ct_window(name: str, level: float, width: float) -> tuple[float, float]:
    """(level, width) of a named preset, or the given ``level`` and ``width`` for ``custom``."""
    if name == "custom":
        return level, width
    if name not in CT_WINDOWS:
        raise ValueError(f"unknown CT window {name!r}; use custom or one of {', '.join(CT_WINDOWS)}")
    return CT_WINDOWS[name]


def intensity_transform(modality: str, window_level: float, window_width: float) -> Transform:
    """CT: clip the HU window [level - width/2, level + width/2] to [0, 1]; other modalities: the 0.5-99.5
    percentile range of each image to [0, 1] (MR, X-ray and ultrasound have no absolute units)."""
    if modality == "CT":
        low, high = window_level - window_width / 2, window_level + window_width / 2
        return ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    return ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)


def normalise_intensity(array: np.ndarray, modality: str, window_level: float, window_width: float) -> np.ndarray:
    """Map intensities to [0, 1] for ``modality`` (see :func:`intensity_transform`)."""
    out = intensity_transform(modality, window_level, window_width)(array)
    return np.asarray(out, dtype=np.float32)


def extract_slices(array: np.ndarray, policy: Literal["all", "middle", "even"], n: int = 1) -> list[np.ndarray]:
    """Turn a ``(C, X, Y)`` image into ``[image]`` and a ``(C, X, Y, Z)`` volume into 2D slices along Z:
    ``all`` of them, the ``middle`` one, or ``n`` evenly spaced from first to last (``even``)."""
    if array.ndim == 3:
        return [array]
    if array.ndim != 4:
        raise ValueError(f"expected (C, X, Y) or (C, X, Y, Z), got shape {array.shape}")
    depth = array.shape[-1]
    if policy == "middle":
        indices = [depth // 2]
    elif policy == "even":
        indices = np.unique(np.round(np.linspace(0, depth - 1, min(n, depth))).astype(int)).tolist()
    else:
        indices = list(range(depth))
    return [np.ascontiguousarray(array[..., k]) for k in indices]


def resize_image(array: np.ndarray, size: int) -> np.ndarray:
    """Resize the spatial axes of a 2D ``(C, X, Y)`` image to ``size x size`` (area averaging when shrinking)."""
    out = Resize(spatial_size=(size, size), mode="area")(array)
    return np.asarray(out, dtype=np.float32)
