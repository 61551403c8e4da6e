import numpy as np
import pytest

from pipeline.transforms import extract_slices, normalise_intensity, resize_image


def _volume(depth=10):
    return np.arange(depth, dtype=np.float32)[None, None, None, :] * np.ones((1, 4, 4, depth), np.float32)


@pytest.mark.parametrize(
    "policy, n, expected",
    [
        ("all", 1, list(range(10))),  # every slice
        ("middle", 1, [5]),  # the central slice
        ("even", 3, [0, 4, 9]),  # first, middle, last (rounded)
        ("even", 20, list(range(10))),  # more asked than there are: each slice once
    ],
)
def test_slice_policies(policy, n, expected):
    assert [int(s[0, 0, 0]) for s in extract_slices(_volume(), policy, n)] == expected


def test_2d_images_pass_through_and_bad_rank_is_refused():
    image = np.zeros((1, 4, 4), np.float32)
    assert extract_slices(image, "middle")[0] is image
    with pytest.raises(ValueError, match="expected"):
        extract_slices(np.zeros((4, 4), np.float32), "all")


def test_ct_window_and_percentile_scaling():
    hu = np.array([[[-2000.0, -400.0, 350.0, 3000.0]]], np.float32)
    np.testing.assert_allclose(normalise_intensity(hu, "CT", -400, 1500), [[[0.0, 0.5, 1.0, 1.0]]])
    mr = np.random.default_rng(0).normal(500, 100, (1, 16, 16)).astype(np.float32)
    out = normalise_intensity(mr, "MR", 0, 1)
    assert out.min() == 0.0 and out.max() == 1.0 and 0.3 < np.median(out) < 0.7


def test_resize_keeps_the_mean_when_shrinking():
    image = np.random.default_rng(0).uniform(size=(1, 64, 64)).astype(np.float32)
    small = resize_image(image, 16)
    assert small.shape == (1, 16, 16) and abs(small.mean() - image.mean()) < 1e-3
