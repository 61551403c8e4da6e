import numpy as np
import pytest

from pipeline.transforms import extract_slices, fit_to_size, normalise_intensity, resample_to_spacing, resize_image


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


def test_resampling_keeps_physical_size():
    image = np.zeros((1, 10, 12), np.float32)
    image[0, 2:6, 4:8] = 1.0  # an 8 x 8 mm square at 2 mm spacing
    affine = np.diag([2.0, 2.0, 1.0, 1.0])
    fine = resample_to_spacing(image, affine, (1.0, 1.0))
    assert fine.shape == (1, 19, 23)  # (n - 1) * 2 + 1 samples cover the same extent
    assert abs((fine[0] > 0.5).sum() - 64) <= 16  # still about 8 x 8 mm, now in 1 mm pixels
    volume, affine = np.ones((1, 10, 12, 5), np.float32), np.diag([2.0, 2.0, 3.0, 1.0])
    assert resample_to_spacing(volume, affine, (4.0, 4.0)).shape[1:] == (6, 6, 5)  # no z entry: z kept
    assert resample_to_spacing(volume, affine, (4.0, -1, 1.5)).shape[1:] == (6, 12, 9)  # <= 0 keeps y


def test_fit_to_size_crops_or_pads_when_spacing_matters_and_resizes_otherwise():
    image = np.ones((1, 20, 10), np.float32)
    kept = fit_to_size(image, 16, keep_spacing=True)
    assert kept.shape == (1, 16, 16)
    assert kept[0, :, 3:13].min() == 1.0 and kept[0, :, :3].max() == 0.0  # centred, zero padded, no stretching
    assert fit_to_size(image, 16, keep_spacing=False).min() == 1.0  # stretched to fill


def test_resize_volumes_on_every_axis():
    volume = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    assert resize_image(volume, 16).shape == (1, 16, 16, 16)
