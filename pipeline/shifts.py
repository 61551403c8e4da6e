"""Acquisition shifts for the stress test: the test split as another scanner or protocol might have made it.

Each shift is a fixed, seeded transform of images in [0, 1] (``(N, C, *spatial)``), built from MONAI transforms and
the same for every remedy, so the remedies' scores under a shift are paired image by image:

- ``gamma_0_7`` / ``gamma_1_5``: contrast (MONAI ``AdjustContrast``, gamma 0.7 or 1.5: brighter or darker
  mid-tones);
- ``gain_0_8``: a lower intensity scale (x 0.8), as a detector's gain;
- ``noise_0_05``: Gaussian noise of standard deviation 0.05 (``RandGaussianNoise``, seeded), as a lower dose;
- ``blur_1px``: Gaussian smoothing of sigma 1 pixel (``GaussianSmooth``), as a softer reconstruction kernel;
- ``half_resolution``: down to half the pixels and back (``Resize``, area then (tri)linear), as a coarser matrix.

Results are clipped to [0, 1], the range the classifier was trained on. A CT window shift is not among them: the
preprocessed images are already windowed, and the window's cut-off cannot be undone from them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SHIFTS", "shift_images"]

# name (a metrics key) -> what it does, in the report's words
SHIFTS = {
    "gamma_0_7": "gamma 0.7",
    "gamma_1_5": "gamma 1.5",
    "gain_0_8": "intensity x0.8",
    "noise_0_05": "noise SD 0.05",
    "blur_1px": "blur 1 px",
    "half_resolution": "half resolution",
}


def _per_image(transform: Callable, images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(transform(image)) for image in images]).astype(np.float32)


def _half_resolution(images: np.ndarray) -> np.ndarray:
    from monai.transforms import Resize

    full = images.shape[2:]
    down = Resize(spatial_size=[max(1, s // 2) for s in full], mode="area")
    up = Resize(spatial_size=list(full), mode="bilinear" if len(full) == 2 else "trilinear")
    return _per_image(lambda image: up(down(image)), images)


def _noise(images: np.ndarray, seed: int) -> np.ndarray:
    from monai.transforms import RandGaussianNoise

    noise = RandGaussianNoise(prob=1.0, mean=0.0, std=0.05, sample_std=False)  # SD 0.05 exactly
    noise.set_random_state(seed)
    return _per_image(noise, images)


def shift_images(images: np.ndarray, shift: str, seed: int = 0) -> np.ndarray:
    """``images`` (float, [0, 1], ``(N, C, *spatial)``) under acquisition shift ``shift`` (one of :data:`SHIFTS`),
    clipped to [0, 1]; the same ``seed`` gives the same noise."""
    from monai.transforms import AdjustContrast, GaussianSmooth  # MONAI (and torch) only where images are shifted

    images = np.asarray(images, dtype=np.float32)
    if shift == "gamma_0_7":
        out = _per_image(AdjustContrast(0.7), images)
    elif shift == "gamma_1_5":
        out = _per_image(AdjustContrast(1.5), images)
    elif shift == "gain_0_8":
        out = images * 0.8  # ScaleIntensity(factor=-0.2) per image: the same product
    elif shift == "noise_0_05":
        out = _noise(images, seed)
    elif shift == "blur_1px":  # every image's channels as the channels of one image: smoothed each on its own
        out = np.asarray(GaussianSmooth(sigma=1.0)(images.reshape(-1, *images.shape[2:]))).reshape(images.shape)
    elif shift == "half_resolution":
        out = _half_resolution(images)
    else:
        raise ValueError(f"unknown shift {shift!r}; choose from {', '.join(SHIFTS)}")
    return np.clip(out, 0.0, 1.0)
