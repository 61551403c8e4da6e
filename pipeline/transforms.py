"""Image transforms of the preprocess stage, built from MONAI transforms.

All functions take and return channel-first float32 arrays ``(C, X, Y[, Z])`` (see
:mod:`pipeline.io.reader`) and are pure: the input array is never modified.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import contextmanager
from typing import Literal, TypeVar

import numpy as np
import torch
from monai.data import MetaTensor, get_track_meta, set_track_meta
from monai.transforms import (
    Resize,
    ResizeWithPadOrCrop,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacing,
    Transform,
)

__all__ = [
    "plain_tensors",
    "CT_WINDOWS",
    "ct_window",
    "intensity_transform",
    "normalise_intensity",
    "resample_to_spacing",
    "extract_slices",
    "fit_to_size",
    "resize_image",
]


F = TypeVar("F", bound=Callable[..., np.ndarray])


@contextmanager
def plain_tensors():
    """Run MONAI transforms on plain tensors, without MetaTensor bookkeeping: for arrays that carry no
    metadata worth keeping it slows resizing and windowing a small image several-fold
    (bench/bench_preprocess.py measures it)."""
    previous = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(previous)


def _without_metadata(func: F) -> F:
    """:func:`plain_tensors` around ``func`` (these functions return bare arrays)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plain_tensors():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


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


@_without_metadata
def normalise_intensity(array: np.ndarray, modality: str, window_level: float, window_width: float) -> np.ndarray:
    """Map intensities to [0, 1] for ``modality`` (see :func:`intensity_transform`)."""
    out = intensity_transform(modality, window_level, window_width)(array)
    return np.asarray(out, dtype=np.float32)


def resample_to_spacing(array: np.ndarray, affine: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Resample ``array`` (whose voxel-to-world matrix is ``affine``) to ``spacing`` mm per spatial axis with
    MONAI's ``Spacing`` (bilinear). Missing trailing entries and entries <= 0 keep that axis's spacing, so
    ``(1.0, 1.0)`` resamples a volume in-plane only."""
    spatial = array.ndim - 1
    pixdim = [float(v) for v in spacing[:spatial]] + [0.0] * max(0, spatial - len(spacing))
    tensor = MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), affine=torch.as_tensor(affine))
    out = Spacing(pixdim=pixdim, mode="bilinear", padding_mode="border")(tensor)
    return np.asarray(out.numpy(), dtype=np.float32)


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


@_without_metadata
def resize_image(array: np.ndarray, size: int) -> np.ndarray:
    """Resize every spatial axis of ``(C, X, Y[, Z])`` to ``size``: area averaging when shrinking, linear
    interpolation when any axis grows."""
    spatial = array.shape[1:]
    target = (size,) * len(spatial)
    if spatial == target:
        return np.asarray(array, dtype=np.float32)
    if all(t <= s for t, s in zip(target, spatial, strict=True)):
        mode = "area"
    else:
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
    out = Resize(spatial_size=target, mode=mode)(torch.as_tensor(np.ascontiguousarray(array)))  # what MONAI does
    return np.asarray(out, dtype=np.float32)


@_without_metadata
def fit_to_size(array: np.ndarray, size: int, keep_spacing: bool) -> np.ndarray:
    """Bring every spatial axis to ``size``: centre crop/zero-pad when the spacing must be kept (images
    resampled to a target spacing), otherwise :func:`resize_image`."""
    if not keep_spacing:
        return resize_image(array, size)
    out = ResizeWithPadOrCrop(spatial_size=(size,) * (array.ndim - 1), mode="constant")(
        torch.as_tensor(np.ascontiguousarray(array))
    )
    return np.asarray(out, dtype=np.float32)
