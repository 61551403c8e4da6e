import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.config import GenerateConfig
from pipeline.generate import (
    SAMPLERS,
    interpolation_strip,
    round_trip_error,
    sample_images,
    sample_latents,
    synthetic_counts,
)
from pipeline.io.synthetic import SYNTHETIC_DESCRIPTION, read_synthetic, write_manifest, write_synthetic_nifti
from pipeline.models.vae import ClassVAEs, ConditionalVAE


@pytest.mark.parametrize(
    "counts, ratio, every_class, expected",
    [
        ({"a": 100, "b": 10}, 1.0, False, {"a": 0, "b": 90}),  # the gap to the majority
        ({"a": 100, "b": 10}, 0.5, False, {"a": 0, "b": 45}),  # half the gap
        ({"a": 100, "b": 10}, 2.0, False, {"a": 0, "b": 180}),  # twice the gap: room for a ratio ablation
        ({"a": 100, "b": 93}, 0.5, False, {"a": 0, "b": 4}),  # rounded up: 3.5 -> 4
        ({"a": 100, "b": 10, "c": 30}, 1.0, False, {"a": 0, "b": 90, "c": 70}),  # several minority classes
        ({"a": 100, "b": 10}, 1.0, True, {"a": 100, "b": 90}),  # every class at least its own count
        ({"a": 100, "b": 95}, 1.0, True, {"a": 100, "b": 95}),
    ],
)
def test_synthetic_counts(counts, ratio, every_class, expected):
    assert synthetic_counts(counts, ratio, every_class) == expected


GEN = GenerateConfig(
    pool_ratio=1.0,
    every_class=False,
    sampler="posterior",
    temperature=1.0,
    mixture_components=2,
    bootstrap_noise=0.3,
    filter="none",
    filter_quantile=0.95,
    seed=0,
)


def _vaes(spatial_dims=2, mode="conditional"):
    torch.manual_seed(0)
    shape = (1, *[16 if spatial_dims == 2 else 8] * spatial_dims)
    if mode == "conditional":
        return ClassVAEs("conditional", [ConditionalVAE(spatial_dims, shape, 2, 4, (4, 8), (2, 2))]).eval()
    return ClassVAEs("per_class", [ConditionalVAE(spatial_dims, shape, 1, 4, (4, 8), (2, 2)) for _ in range(2)]).eval()


@pytest.mark.parametrize("mode", ["conditional", "per_class"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampling_is_seeded_and_in_range(sampler, spatial_dims, mode):
    vaes = _vaes(spatial_dims, mode)
    shape = vaes.image_shape
    real = np.random.default_rng(0).uniform(size=(12, *shape)).astype(np.float32)
    cfg = dataclasses.replace(GEN, sampler=sampler)
    a, stats = sample_images(vaes, 1, 5, 7, cfg, real)
    assert a.shape == (5, *shape) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert stats == {"kept": 5, "dropped": 0}
    assert np.array_equal(a, sample_images(vaes, 1, 5, 7, cfg, real)[0])
    assert not np.array_equal(a, sample_images(vaes, 1, 5, 8, cfg, real)[0])
    assert sample_images(vaes, 1, 0, 7, cfg, real)[0].shape == (0, *shape)


def test_samplers_draw_their_codes_where_they_should():
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(5, 0.1, (20, 2)), rng.normal(-5, 0.1, (20, 2))])  # two tight clusters
    draw = {s: sample_latents(s, latents, 400, np.random.default_rng(1), GEN) for s in SAMPLERS}
    assert abs(np.linalg.norm(draw["prior"], axis=1).mean() - 1.25) < 0.2  # N(0, I) in 2D: mean radius ~1.25
    near_cluster = np.minimum(
        np.linalg.norm(draw["posterior"] - 5, axis=1), np.linalg.norm(draw["posterior"] + 5, axis=1)
    )
    assert np.quantile(near_cluster, 0.95) < 1.0  # the mixture found both clusters, not one wide Gaussian
    assert (np.abs(draw["posterior"][:, 0] - 5) < 1).mean() > 0.3 and (
        np.abs(draw["posterior"][:, 0] + 5) < 1
    ).mean() > 0.3
    assert np.all(np.abs(draw["interpolate"]) <= 5.5)  # on segments between real codes
    assert np.abs(draw["bootstrap"]).min() > 3  # next to a real code, never in the empty middle


def test_consistency_filter_keeps_only_samples_like_the_real_ones():
    vaes = _vaes()
    # "real" images the VAE reproduces almost exactly (its own outputs near the latent origin), so that samples
    # from far out (prior at temperature 4) often change on the decode-encode-decode round trip
    near_origin = sample_latents(
        "prior", np.zeros((0, 4)), 16, np.random.default_rng(0), dataclasses.replace(GEN, temperature=0.1)
    )
    real = vaes.decode(torch.from_numpy(near_origin).float(), 0).detach().numpy()
    strict = dataclasses.replace(GEN, sampler="prior", temperature=4.0, filter="consistency", filter_quantile=0.5)
    images, stats = sample_images(vaes, 0, 6, 3, strict, real)
    threshold = stats["threshold_mse"]
    assert len(images) == stats["kept"] <= 6 and stats["dropped"] > 0
    assert np.all(round_trip_error(vaes, images, 0) <= threshold)


def test_interpolation_strip_starts_and_ends_at_the_reconstructions():
    vaes = _vaes()
    a, b = np.random.default_rng(0).uniform(size=(2, 1, 16, 16)).astype(np.float32)
    strip = interpolation_strip(vaes, 1, a, b, steps=5)
    recon = [vaes.decode(vaes.encode(torch.from_numpy(x[None]), 1)[0], 1).detach().numpy()[0] for x in (a, b)]
    assert strip.shape == (5, 1, 16, 16)
    np.testing.assert_allclose(strip[0], recon[0], atol=1e-5)
    np.testing.assert_allclose(strip[-1], recon[1], atol=1e-5)


def test_synthetic_files_say_so_and_round_trip(tmp_path):
    image = np.random.default_rng(0).uniform(size=(1, 8, 8)).astype(np.float32)
    write_synthetic_nifti(tmp_path / "b" / "s0.nii.gz", image)
    write_manifest(
        tmp_path,
        [
            {
                "path": "b/s0.nii.gz",
                "label": "b",
                "sampler": "prior",
                "seed": 0,
                "temperature": 1.0,
                "checkpoint_sha256": "x",
            }
        ],
    )
    header = nib.load(tmp_path / "b" / "s0.nii.gz").header
    assert header["descrip"].tobytes().rstrip(b"\0") == SYNTHETIC_DESCRIPTION[:80]
    data = read_synthetic(tmp_path, ("a", "b"))
    assert data.labels.tolist() == [1] and np.array_equal(data.images[0], image)
