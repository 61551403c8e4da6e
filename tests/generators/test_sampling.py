"""Synthetic images from a generator: pool sizes, seeded sampling through every sampler, the no-filter path's single
draw, the consistency filter, interpolation strips, and chunked sampling giving the bits of sampling at once."""

import dataclasses
import zlib

import numpy as np
import pytest

from pipeline.config import GenerateConfig
from pipeline.generators.samplers import SAMPLERS, make_sampler
from pipeline.generators.sampling import (
    CHUNK,
    MAX_CANDIDATES,
    interpolation_strip,
    round_trip_error,
    sample_images,
    sampler_for,
    stream_images,
)
from pipeline.generators.vae import VAEGenerator
from pipeline.io.arrays import DiskArray, Rows
from pipeline.models.vae import ClassVAEs, ConditionalVAE
from tests.generators.test_generators import VAE

GEN = GenerateConfig(
    pool_margin=0.0,
    every_class=False,
    sampler="posterior",
    temperature=1.0,
    mixture_components=2,
    bootstrap_noise=0.3,
    filter=(),
    filter_quantile=0.95,
    manifold_k=5,
    judge="classical",
    seed=0,
)


def untrained(spatial_dims: int = 2, mode: str = "conditional") -> VAEGenerator:
    """A ``vae`` generator with random weights (sampling does not need a trained one)."""
    import torch

    torch.manual_seed(0)
    shape = (1, *[16 if spatial_dims == 2 else 8] * spatial_dims)
    gen = VAEGenerator(shape, ("a", "b"), mode, VAE)
    if mode == "conditional":
        gen.vaes = ClassVAEs("conditional", [ConditionalVAE(spatial_dims, shape, 2, 4, (4, 8), (2, 2))]).eval()
    else:
        networks = [ConditionalVAE(spatial_dims, shape, 1, 4, (4, 8), (2, 2)) for _ in range(2)]
        gen.vaes = ClassVAEs("per_class", networks).eval()
    return gen


@pytest.mark.parametrize("mode", ["conditional", "per_class"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampling_is_seeded_and_in_range(sampler, spatial_dims, mode):
    gen = untrained(spatial_dims, mode)
    shape = gen.image_shape
    real = np.random.default_rng(0).uniform(size=(12, *shape)).astype(np.float32)
    cfg = dataclasses.replace(GEN, sampler=sampler)
    a, stats = sample_images(gen, 1, 5, 7, cfg, real)
    assert a.shape == (5, *shape) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert stats == {"kept": 5, "dropped": 0}
    assert np.array_equal(a, sample_images(gen, 1, 5, 7, cfg, real)[0])
    assert not np.array_equal(a, sample_images(gen, 1, 5, 8, cfg, real)[0])
    assert sample_images(gen, 1, 0, 7, cfg, real)[0].shape == (0, *shape)


def test_without_filters_the_pool_is_one_draw_of_n_codes():
    """``filter: []`` draws exactly the random numbers of one batch of n codes (the pool of earlier versions)."""
    gen, real = untrained(), np.random.default_rng(0).uniform(size=(12, 1, 16, 16)).astype(np.float32)
    images, stats = sample_images(gen, 1, 7, 4, GEN, real)
    codes = sampler_for(gen, GEN.sampler, 1, real, GEN).sample(7, np.random.default_rng(4))
    np.testing.assert_array_equal(images, gen.decode(codes, 1))
    assert stats == {"kept": 7, "dropped": 0}


def test_consistency_filter_keeps_only_samples_like_the_real_ones():
    gen = untrained()
    # "real" images the VAE reproduces almost exactly (its own outputs near the latent origin), so that samples
    # from far out (prior at temperature 4) often change on the decode-encode-decode round trip
    near_origin = make_sampler("prior", temperature=0.1).fit(np.zeros((1, 4))).sample(16, np.random.default_rng(0))
    real = gen.decode(near_origin, 0)
    strict = dataclasses.replace(GEN, sampler="prior", temperature=4.0, filter=("consistency",), filter_quantile=0.5)
    images, stats = sample_images(gen, 0, 6, 3, strict, real)
    consistency = stats["filters"]["consistency"]
    threshold = consistency["threshold_mse"]
    assert len(images) == stats["kept"] <= 6 and stats["dropped"] == consistency["dropped"] > 0
    assert stats["candidates"] == consistency["tested"] and stats["acceptance_rate"] == consistency["acceptance_rate"]
    assert np.all(round_trip_error(gen, images, 0) <= threshold)


def test_interpolation_strip_starts_and_ends_at_the_reconstructions():
    gen = untrained()
    a, b = np.random.default_rng(0).uniform(size=(2, 1, 16, 16)).astype(np.float32)
    strip = interpolation_strip(gen, 1, a, b, steps=5)
    assert strip.shape == (5, 1, 16, 16)
    np.testing.assert_allclose(strip[0], gen.reconstruct(a[None], 1)[0], atol=1e-5)
    np.testing.assert_allclose(strip[-1], gen.reconstruct(b[None], 1)[0], atol=1e-5)


def test_a_strict_filter_fills_the_pool_in_a_few_rounds():
    """A filter that keeps one candidate in twenty (manifold's 5 % on the demo's nodules) still fills the pool: after
    the first round the rounds grow with the acceptance rate seen so far, up to MAX_CANDIDATES."""
    gen, real = untrained(), np.random.default_rng(0).uniform(size=(12, 1, 16, 16)).astype(np.float32)
    rng = np.random.default_rng(1)

    def one_in_twenty(images: np.ndarray) -> np.ndarray:
        return rng.uniform(size=len(images)) < 0.05

    cfg = dataclasses.replace(GEN, filter=("classifier",))
    images, stats = sample_images(gen, 1, 300, 0, cfg, real, accept={"classifier": one_in_twenty})
    assert len(images) == stats["kept"] == 300
    assert 300 / 0.1 < stats["candidates"] <= 300 / 0.05 * 3  # a few rounds, not twice the missing each time


def test_a_filter_that_passes_nothing_stops_at_the_candidate_budget():
    gen, real = untrained(), np.random.default_rng(0).uniform(size=(12, 1, 16, 16)).astype(np.float32)
    cfg = dataclasses.replace(GEN, filter=("classifier",))
    nothing = {"classifier": lambda images: np.zeros(len(images), dtype=bool)}
    images, stats = sample_images(gen, 1, 8, 0, cfg, real, accept=nothing)
    assert len(images) == 0 and stats["candidates"] == MAX_CANDIDATES  # 8 x 50 < MAX_CANDIDATES
    # a caller's own budget (generate's pictures: a few candidates per image shown) replaces the default
    images, stats = sample_images(gen, 1, 8, 0, cfg, real, accept=nothing, budget=400)
    assert len(images) == 0 and stats["candidates"] == 400


# --- a chunk at a time: the same bits as one array --------------------------------------------------------------


def _on_disk(tmp_path, images: np.ndarray) -> Rows:
    """``images`` as a lazy view of a .npy file (how generate passes a class's real images)."""
    np.save(tmp_path / "real.npy", np.concatenate([images, images[:3]]))  # more rows than the view selects
    return Rows([DiskArray(tmp_path / "real.npy")], np.arange(len(images)))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_streamed_chunks_are_the_one_draw_cut_every_chunk_images(tmp_path, sampler):
    """Without filters: the n codes of one draw decoded CHUNK at a time, bit for bit the images of decoding them at
    once, whether the class's real images are in memory or on disk."""
    gen, real = untrained(), np.random.default_rng(0).uniform(size=(300, 1, 16, 16)).astype(np.float32)
    cfg, n = dataclasses.replace(GEN, sampler=sampler), 2 * CHUNK + 100
    chunks: list[np.ndarray] = []
    stats = stream_images(gen, 1, n, 4, cfg, _on_disk(tmp_path, real), chunks.append)
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 100] and stats == {"kept": n, "dropped": 0}
    codes = sampler_for(gen, sampler, 1, real, cfg).sample(n, np.random.default_rng(4))
    np.testing.assert_array_equal(np.concatenate(chunks), gen.decode(codes, 1))
    np.testing.assert_array_equal(np.concatenate(chunks), sample_images(gen, 1, n, 4, cfg, real)[0])


def test_filters_see_chunk_sized_batches_and_keep_the_same_set(tmp_path):
    """With two filters and rounds larger than CHUNK: the first filter tests the decoded candidates CHUNK at a time,
    the second the first's survivors CHUNK at a time (the last batch of a round fewer), the kept images leave in
    chunks of CHUNK, and they are the candidates passing both, in draw order."""
    gen, real = untrained(), np.random.default_rng(0).uniform(size=(40, 1, 16, 16)).astype(np.float32)
    seen: dict[str, list[int]] = {"classifier": [], "manifold": []}
    drawn: list[np.ndarray] = []

    def half(position: int, name: str):
        def test(images: np.ndarray) -> np.ndarray:
            seen[name].append(len(images))
            if name == "classifier":
                drawn.append(images)
            # a pseudo-random half of the images, whatever the (untrained) decoder draws: a pixel's value would pass
            # more or fewer of them depending on how smooth the decoder's output is
            return np.array([zlib.crc32(bytes([position]) + image.tobytes()) % 2 == 1 for image in images], bool)

        return test

    cfg = dataclasses.replace(GEN, filter=("classifier", "manifold"))
    accept = {"classifier": half(0, "classifier"), "manifold": half(1, "manifold")}
    n, chunks = 1500, []
    stats = stream_images(gen, 1, n, 0, cfg, _on_disk(tmp_path, real), chunks.append, accept=accept)
    assert stats["kept"] == n and [len(c) for c in chunks] == [CHUNK, n - CHUNK]
    assert seen["classifier"][:3] == [CHUNK, CHUNK, 2 * n - 2 * CHUNK]  # the first round: 2n candidates
    assert all(size == CHUNK for size in seen["manifold"][:-2]) and seen["manifold"][0] == CHUNK
    candidates = np.concatenate(drawn)
    both = accept["classifier"](candidates) & accept["manifold"](candidates)
    np.testing.assert_array_equal(np.concatenate(chunks), candidates[both][:n])
    assert stats["candidates"] == len(candidates) == stats["filters"]["classifier"]["tested"]


def test_round_trip_error_is_the_same_a_chunk_at_a_time_and_from_disk(tmp_path):
    gen, real = untrained(), np.random.default_rng(0).uniform(size=(CHUNK + 300, 1, 16, 16)).astype(np.float32)
    whole = ((gen.reconstruct(real, 0) - real) ** 2).reshape(len(real), -1).mean(1).astype(np.float64)
    np.testing.assert_array_equal(round_trip_error(gen, _on_disk(tmp_path, real), 0), whole)
    assert round_trip_error(gen, real[:0], 0).shape == (0,)


def test_the_posterior_sampler_draws_the_same_codes_as_in_one_product():
    codes = np.random.default_rng(0).normal(size=(60, 5))
    sampler = make_sampler("posterior", mixture_components=3).fit(codes)
    n, rng = 3 * 1024 + 17, np.random.default_rng(1)
    gmm = sampler.gmm
    component = rng.choice(len(gmm.weights_), size=n, p=gmm.weights_ / gmm.weights_.sum())
    eps = rng.standard_normal((n, codes.shape[1]))
    at_once = gmm.means_[component] + np.einsum("nij,nj->ni", sampler._chol[component], eps)
    np.testing.assert_array_equal(sampler.sample(n, np.random.default_rng(1)), at_once)
