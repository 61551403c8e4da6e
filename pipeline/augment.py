"""Classical augmentation of a whole training batch at once, on the batch's device (CPU or GPU).

The classical remedy of the classifier stages: random flip, rotation and scaling, contrast (gamma) and Gaussian
noise, and in 2D an elastic deformation, with the ranges of MONAI's ``RandFlip``, ``RandAffine``,
``RandAdjustContrast``, ``RandGaussianNoise`` and ``Rand2DElastic``. Instead of one image at a time, each step
draws its parameters for every image of the batch and transforms the chosen images together: the affine with
MONAI's :class:`~monai.networks.layers.AffineTransform` and the elastic warp with MONAI's
:class:`~monai.networks.blocks.Warp` (both ``grid_sample`` on the whole batch), contrast and noise as tensor
arithmetic. All random numbers come from one seeded CPU generator, so a seed gives the same draws on any device.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Warp
from monai.networks.layers import AffineTransform

__all__ = ["BatchAugment", "BalancedMixUp", "classical_augmentation"]


class BatchAugment:
    """Random flip, affine, contrast, noise and (2D) elastic deformation of ``(B, C, *spatial)`` batches.

    Args:
        spatial_dims: 2 or 3.
        seed: seed of the generator every random parameter is drawn from.
        flip_prob: chance of a flip along the first spatial axis.
        affine_prob: chance of a rotation (uniform within +-``rotate`` radians, about each axis in 3D) and a
            scaling (a factor within 1 +- ``scale`` per axis).
        contrast_prob: chance of a gamma change, gamma uniform in ``gamma``, keeping the image's range.
        noise_prob: chance of Gaussian noise, its standard deviation uniform in [0, ``noise_std``].
        elastic_prob: 2D only: chance of an elastic warp, displacements drawn on a grid of control points
            ``elastic_spacing`` pixels apart (normal, scaled by a magnitude uniform in ``elastic_magnitude``
            pixels) and interpolated bicubically.

    Example::

        augment = BatchAugment(spatial_dims=2, seed=0)
        x = augment(torch.rand(32, 1, 64, 64))  # same shape, same device
    """

    def __init__(
        self,
        spatial_dims: int,
        seed: int,
        flip_prob: float = 0.5,
        affine_prob: float = 0.5,
        rotate: float = 0.26,
        scale: float = 0.1,
        contrast_prob: float = 0.3,
        gamma: tuple[float, float] = (0.8, 1.25),
        noise_prob: float = 0.2,
        noise_std: float = 0.02,
        elastic_prob: float = 0.2,
        elastic_spacing: int = 16,
        elastic_magnitude: tuple[float, float] = (0.5, 1.5),
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.generator = torch.Generator().manual_seed(seed)
        self.flip_prob, self.affine_prob, self.contrast_prob, self.noise_prob = (
            flip_prob,
            affine_prob,
            contrast_prob,
            noise_prob,
        )
        self.rotate, self.scale, self.gamma, self.noise_std = rotate, scale, gamma, noise_std
        self.elastic_prob = elastic_prob if spatial_dims == 2 else 0.0
        self.elastic_spacing, self.elastic_magnitude = elastic_spacing, elastic_magnitude
        self.affine = AffineTransform(normalized=True, mode="bilinear", padding_mode="border", align_corners=False)
        with warnings.catch_warnings():  # MONAI notes that it uses PyTorch's grid_sample (its compiled one is absent)
            warnings.simplefilter("ignore", UserWarning)
            self.warp = Warp(mode="bilinear", padding_mode="border")

    def _uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=self.generator)

    def _chosen(self, n: int, prob: float, device: torch.device) -> torch.Tensor:
        """Indices (on ``device``) of the images that get a step applied with probability ``prob``."""
        return torch.nonzero(torch.rand(n, generator=self.generator) < prob).flatten().to(device)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected a (B, C, {self.spatial_dims} spatial axes) batch, got shape {tuple(x.shape)}")
        x = x.float().clone()
        n, device = len(x), x.device
        if len(pick := self._chosen(n, self.flip_prob, device)):
            x[pick] = x[pick].flip(2)
        if len(pick := self._chosen(n, self.affine_prob, device)):
            x[pick] = self.affine(x[pick], self._affine_matrices(len(pick)).to(device))
        if len(pick := self._chosen(n, self.contrast_prob, device)):
            x[pick] = self._contrast(x[pick], self._uniform(*self.gamma, len(pick)).to(device))
        if len(pick := self._chosen(n, self.noise_prob, device)):
            std = _per_image(self._uniform(0.0, self.noise_std, len(pick)), x.ndim)
            x[pick] += (torch.randn(len(pick), *x.shape[1:], generator=self.generator) * std).to(device)
        if len(pick := self._chosen(n, self.elastic_prob, device)):
            x[pick] = self.warp(x[pick], self._displacements(len(pick), x.shape[2:]).to(device))
        return x

    def _affine_matrices(self, n: int) -> torch.Tensor:
        """(n, D, D + 1) rotation-and-scaling matrices about the image centre, in normalised coordinates."""
        d = self.spatial_dims
        angles = self._uniform(-self.rotate, self.rotate, n, 1 if d == 2 else 3)
        scales = self._uniform(1 - self.scale, 1 + self.scale, n, d)
        rotation = torch.eye(d).repeat(n, 1, 1)
        planes = [(0, 1)] if d == 2 else [(1, 2), (0, 2), (0, 1)]
        for k, (i, j) in enumerate(planes):
            c, s = torch.cos(angles[:, k]), torch.sin(angles[:, k])
            step = torch.eye(d).repeat(n, 1, 1)
            step[:, i, i], step[:, i, j], step[:, j, i], step[:, j, j] = c, -s, s, c
            rotation = step @ rotation
        return torch.cat([rotation * scales[:, None, :], torch.zeros(n, d, 1)], dim=2)

    @staticmethod
    def _contrast(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """MONAI's ``AdjustContrast`` per image: ((x - min) / range) ** gamma * range + min."""
        flat = x.flatten(1)
        low = _per_image(flat.min(1).values, x.ndim)
        span = _per_image(flat.max(1).values, x.ndim) - low
        scaled = ((x - low) / (span + 1e-7)).clamp_min(0)
        return scaled ** _per_image(gamma, x.ndim) * span + low

    def _displacements(self, n: int, size: torch.Size) -> torch.Tensor:
        """(n, 2, H, W) displacements in pixels, smooth between control points ``elastic_spacing`` apart."""
        grid = [math.ceil(s / self.elastic_spacing) + 1 for s in size]
        magnitude = _per_image(self._uniform(*self.elastic_magnitude, n), 4)
        coarse = torch.randn(n, 2, *grid, generator=self.generator) * magnitude
        return F.interpolate(coarse, size=tuple(size), mode="bicubic", align_corners=True)


def _per_image(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """One value per image, shaped to broadcast over a batch of ``ndim`` dimensions."""
    return values.view(-1, *[1] * (ndim - 1))


class BalancedMixUp:
    """Balanced-MixUp (Galdran et al. 2021, "Balanced-MixUp for highly imbalanced medical image classification"):
    each training batch (instance-sampled) is mixed with a batch of the same size drawn class-balanced from the
    training split, ``x = lam * x_instance + (1 - lam) * x_balanced`` with ``lam ~ Beta(alpha, 1)`` drawn once per
    batch, and trained on ``lam * loss(y_instance) + (1 - lam) * loss(y_balanced)``
    (:func:`pipeline.models.losses.mixed_loss`). A small ``alpha`` (0.2 in the paper) makes ``lam`` small: mostly
    the balanced image, with a little of the instance image.

    Its own random stream, from ``seed``, leaves the global one (and so the other strategies) untouched.

    Args:
        labels: ``(N,)`` class indices of the training split.
        alpha: the first parameter of the Beta distribution of ``lam``, positive.
        seed: seed of the draws.

    Example::

        mix = BalancedMixUp(train.labels, alpha=0.2, seed=0)
        lam, other = mix.draw(32)  # a weight and 32 indices into the split, each class equally likely
        x = mix.mix(images[batch], images[other], lam)
    """

    def __init__(self, labels: np.ndarray, alpha: float, seed: int) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        labels = np.asarray(labels)
        self.alpha = alpha
        self._rng = np.random.default_rng([seed, 0xBA1A])
        self._members = [np.flatnonzero(labels == k) for k in np.unique(labels)]
        self._sizes = np.array([len(m) for m in self._members])
        self._starts = np.concatenate([[0], np.cumsum(self._sizes)[:-1]])
        self._flat = np.concatenate(self._members)

    def balanced_indices(self, n: int) -> np.ndarray:
        """``n`` indices into the split: a class drawn uniformly among those present, then an image uniformly
        within it (with replacement)."""
        k = self._rng.integers(len(self._members), size=n)
        return self._flat[self._starts[k] + self._rng.integers(0, self._sizes[k])]

    def draw(self, n: int) -> tuple[float, np.ndarray]:
        """One batch's ``lam ~ Beta(alpha, 1)`` and ``n`` class-balanced indices."""
        lam = float(self._rng.beta(self.alpha, 1.0))
        return lam, self.balanced_indices(n)

    @staticmethod
    def mix(x_instance: torch.Tensor, x_balanced: torch.Tensor, lam: float) -> torch.Tensor:
        """``lam * x_instance + (1 - lam) * x_balanced``."""
        return lam * x_instance + (1 - lam) * x_balanced


def classical_augmentation(spatial_dims: int, seed: int) -> BatchAugment:
    """The classical remedy: random flip, rotation and scaling, contrast and noise, and in 2D an elastic
    deformation, with MONAI's ranges (see :mod:`pipeline.augment`); seeded. Applied to a whole ``(B, C, *spatial)``
    batch at once, on its device."""
    return BatchAugment(spatial_dims, seed)
