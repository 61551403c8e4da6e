"""Latent samplers: where the codes a generator decodes come from. A new sampler is one file here and one line in
``SAMPLERS`` (and its name in ``pipeline.config.SAMPLER_NAMES``, which a test checks against this registry)."""

from __future__ import annotations

from pipeline.generators.samplers.base import Sampler
from pipeline.generators.samplers.bootstrap import BootstrapSampler
from pipeline.generators.samplers.interpolate import InterpolateSampler
from pipeline.generators.samplers.posterior import PosteriorSampler
from pipeline.generators.samplers.prior import PriorSampler

__all__ = ["SAMPLERS", "Sampler", "make_sampler"]

SAMPLERS: dict[str, type] = {
    "prior": PriorSampler,
    "posterior": PosteriorSampler,
    "interpolate": InterpolateSampler,
    "bootstrap": BootstrapSampler,
}


def make_sampler(name: str, **settings: object) -> Sampler:
    """The sampler ``name`` with ``settings`` (temperature, mixture_components, bootstrap_noise, seed: each sampler
    takes the ones it uses)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**settings)
