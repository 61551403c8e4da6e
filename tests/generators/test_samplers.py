"""Every registered latent sampler: its contract, and where it draws its codes."""

import numpy as np
import pytest

from pipeline.config import SAMPLER_NAMES
from pipeline.generators.samplers import SAMPLERS, Sampler, make_sampler

CODES = np.random.default_rng(0).normal(size=(30, 3))


def test_every_registered_sampler_has_a_name_in_config():
    assert tuple(SAMPLERS) == SAMPLER_NAMES
    assert all(cls.name == name for name, cls in SAMPLERS.items())


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_contract(name):
    sampler = make_sampler(name, temperature=1.0, mixture_components=2, bootstrap_noise=0.3, seed=0)
    assert isinstance(sampler, Sampler)
    with pytest.raises(RuntimeError, match="fit"):
        sampler.sample(2, np.random.default_rng(0))
    sampler.fit(CODES)
    a = sampler.sample(7, np.random.default_rng(1))
    assert a.shape == (7, 3) and a.dtype == np.float64 and np.isfinite(a).all()
    assert np.array_equal(a, sampler.sample(7, np.random.default_rng(1)))  # every draw from the generator given
    assert not np.array_equal(a, sampler.sample(7, np.random.default_rng(2)))
    assert sampler.sample(0, np.random.default_rng(1)).shape == (0, 3)


@pytest.mark.parametrize("name", [n for n, cls in SAMPLERS.items() if cls.needs_codes])
def test_samplers_draw_from_a_class_of_one_image(name):
    """A class with one training image (a class of 3 images split three ways) still gets codes, near its own."""
    sampler = make_sampler(name, temperature=1.0, mixture_components=8, bootstrap_noise=0.3, seed=0).fit(CODES[:1])
    drawn = sampler.sample(5, np.random.default_rng(0))
    assert drawn.shape == (5, 3) and np.isfinite(drawn).all() and np.abs(drawn - CODES[0]).max() < 2


@pytest.mark.parametrize("name", [n for n, cls in SAMPLERS.items() if cls.needs_codes])
def test_samplers_that_need_real_codes_refuse_none(name):
    with pytest.raises(ValueError, match="needs encoded real images"):
        make_sampler(name).fit(np.zeros((0, 3)))


def test_samplers_draw_their_codes_where_they_should():
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(5, 0.1, (20, 2)), rng.normal(-5, 0.1, (20, 2))])  # two tight clusters
    draw = {
        s: make_sampler(s, mixture_components=2).fit(latents).sample(400, np.random.default_rng(1)) for s in SAMPLERS
    }
    assert abs(np.linalg.norm(draw["prior"], axis=1).mean() - 1.25) < 0.2  # N(0, I) in 2D: mean radius ~1.25
    post = draw["posterior"]
    near_cluster = np.minimum(np.linalg.norm(post - 5, axis=1), np.linalg.norm(post + 5, axis=1))
    assert np.quantile(near_cluster, 0.95) < 1.0  # the mixture found both clusters, not one wide Gaussian
    assert (np.abs(post[:, 0] - 5) < 1).mean() > 0.3 and (np.abs(post[:, 0] + 5) < 1).mean() > 0.3
    assert np.all(np.abs(draw["interpolate"]) <= 5.5)  # on segments between real codes
    assert np.abs(draw["bootstrap"]).min() > 3  # next to a real code, never in the empty middle


def test_temperature_scales_the_spread():
    wide, narrow = (
        make_sampler("prior", temperature=t).fit(CODES).sample(2000, np.random.default_rng(0)) for t in (2.0, 0.5)
    )
    assert 3.5 < wide.std() / narrow.std() < 4.5


def test_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="unknown sampler 'magic'"):
        make_sampler("magic")
