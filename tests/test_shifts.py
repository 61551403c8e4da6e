"""The acquisition shifts of the stress test: fixed, seeded, in range, and each a real change of the images."""

import numpy as np
import pytest

from pipeline.shifts import SHIFTS, shift_images

IMAGES = {
    "grey 2D": np.random.default_rng(0).uniform(0.1, 0.9, (5, 1, 16, 16)).astype(np.float32),
    "colour 2D": np.random.default_rng(1).uniform(0.1, 0.9, (5, 3, 16, 16)).astype(np.float32),
    "3D": np.random.default_rng(2).uniform(0.1, 0.9, (3, 1, 8, 8, 8)).astype(np.float32),
}


@pytest.mark.parametrize("kind", list(IMAGES))
@pytest.mark.parametrize("shift", list(SHIFTS))
def test_each_shift_changes_the_images_the_same_way_every_time(kind, shift):
    images = IMAGES[kind]
    out = shift_images(images, shift)
    assert out.shape == images.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert np.abs(out - images).mean() > 0.005  # a change, not the identity
    assert np.array_equal(out, shift_images(images, shift))  # seeded: every remedy sees the same images


def test_the_shifts_do_what_they_say():
    images = np.full((2, 1, 8, 8), 0.5, np.float32)
    images[:, :, :4], images[:, :, 6:] = 0.2, 0.9  # dark, mid-grey (rows 4-5) and bright
    assert np.allclose(shift_images(images, "gain_0_8"), images * 0.8)
    mid = {gamma: shift_images(images, gamma)[:, :, 4:6].mean() for gamma in ("gamma_0_7", "gamma_1_5")}
    assert mid["gamma_0_7"] > 0.5 > mid["gamma_1_5"]  # brighter and darker mid-tones
    noisy = shift_images(images, "noise_0_05") - images
    assert 0.03 < noisy.std() < 0.07 and not np.array_equal(shift_images(images, "noise_0_05", seed=1), noisy + images)
    blurred = shift_images(images, "blur_1px")
    assert blurred[0, 0, 3, 4] > 0.2 and blurred[0, 0, 4, 4] < 0.5  # the edge between dark and mid-grey is softened


def test_an_unknown_shift_is_named():
    with pytest.raises(ValueError, match="unknown shift 'rotate'.*gamma_0_7"):
        shift_images(IMAGES["grey 2D"], "rotate")
