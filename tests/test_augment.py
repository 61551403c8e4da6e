"""Batched classical augmentation (pipeline/augment.py): each step does what it says on a whole batch, seeded."""

from __future__ import annotations

import pytest
import torch

from pipeline.augment import BatchAugment

OFF = {"flip_prob": 0.0, "affine_prob": 0.0, "contrast_prob": 0.0, "noise_prob": 0.0, "elastic_prob": 0.0}


def only(step: str, **settings) -> BatchAugment:
    """An augmentation that applies ``step`` (a ``*_prob`` name) to every image and nothing else."""
    return BatchAugment(2, seed=0, **{**OFF, step: 1.0, **settings})


def dots(n: int = 8, size: int = 32) -> torch.Tensor:
    """Dark images with one bright 3x3 square off the centre."""
    x = torch.zeros(n, 1, size, size)
    x[:, :, 6:9, 20:23] = 1.0
    return x


def centroid(x: torch.Tensor) -> torch.Tensor:
    """(n, 2) intensity centroids, in pixels from the image centre."""
    size = x.shape[-1]
    grid = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    mass = x.sum((1, 2, 3))
    return torch.stack([(x.sum((1, 3)) * grid).sum(1) / mass, (x.sum((1, 2)) * grid).sum(1) / mass], 1)


def test_shape_dtype_and_input_are_kept_and_a_seed_repeats_its_draws():
    x = torch.rand(16, 1, 32, 32)
    before = x.clone()
    a, b, c = BatchAugment(2, seed=0)(x), BatchAugment(2, seed=0)(x), BatchAugment(2, seed=1)(x)
    assert a.shape == x.shape and a.dtype == torch.float32 and torch.equal(x, before)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_mirrors_the_first_spatial_axis():
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(only("flip_prob")(x), x.flip(2))


def test_affine_without_range_is_the_identity_and_a_rotation_keeps_the_distance_to_the_centre():
    x = dots()
    assert torch.allclose(only("affine_prob", rotate=0.0, scale=0.0)(x), x, atol=1e-5)
    rotated = only("affine_prob", rotate=0.26, scale=0.0)(x)
    before, after = centroid(x).norm(dim=1), centroid(rotated).norm(dim=1)
    assert torch.allclose(before, after, atol=0.3)  # the dot turned about the centre
    assert (centroid(rotated) - centroid(x)).norm(dim=1).max() > 0.5  # and it did turn


def test_contrast_keeps_each_images_range_and_gamma_one_changes_nothing():
    x = torch.rand(8, 1, 16, 16) * torch.linspace(0.2, 1.0, 8).view(8, 1, 1, 1)
    assert torch.allclose(only("contrast_prob", gamma=(1.0, 1.0))(x), x, atol=1e-5)
    y = only("contrast_prob", gamma=(0.5, 0.5))(x)
    assert torch.allclose(y.amin((1, 2, 3)), x.amin((1, 2, 3)), atol=1e-5)
    assert torch.allclose(y.amax((1, 2, 3)), x.amax((1, 2, 3)), atol=1e-5)
    assert (y.mean((1, 2, 3)) > x.mean((1, 2, 3))).all()  # gamma < 1 brightens


def test_noise_has_at_most_the_configured_spread():
    x = torch.full((64, 1, 32, 32), 0.5)
    spread = (only("noise_prob", noise_std=0.05)(x) - x).std((1, 2, 3))
    assert spread.max() <= 0.06 and spread.mean() > 0.01


def test_elastic_warp_is_smooth_and_small():
    x = dots(4)
    assert torch.allclose(only("elastic_prob", elastic_magnitude=(0.0, 0.0))(x), x, atol=1e-5)
    warped = only("elastic_prob")(x)
    moved = (centroid(warped) - centroid(x)).norm(dim=1)
    assert not torch.allclose(warped, x) and moved.max() < 5  # a few pixels at most


@pytest.mark.parametrize("step, prob", [("flip_prob", 0.5), ("noise_prob", 0.2)])
def test_each_step_touches_about_its_share_of_the_batch(step, prob):
    x = torch.rand(2000, 1, 4, 4)
    changed = (only(step, **{step: prob})(x) != x).flatten(1).any(1).float().mean()
    assert abs(changed - prob) < 0.05


def test_volumes_are_augmented_in_3d():
    x = torch.rand(4, 1, 8, 8, 8)
    y = BatchAugment(3, seed=0, affine_prob=1.0)(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    with pytest.raises(ValueError, match="spatial"):
        BatchAugment(3, seed=0)(torch.rand(4, 1, 8, 8))
