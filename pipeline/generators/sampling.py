"""Synthetic images from a trained generator: how many per class, drawn through a latent sampler, optionally
filtered for consistency. Shared by the generate stage (the pool) and the quality stage (fresh samples of every
sampler), so both draw images the same way.

- :func:`synthetic_counts`: the pool size per class;
- :func:`sample_images`: ``n`` images of one class: the sampler fitted to the generator's codes of the class's real
  training images draws codes, the generator decodes them; with ``filter: consistency`` a sample is kept only if
  decoding, re-encoding and decoding it again changes it no more than the same round trip changes real images of
  the class (their ``filter_quantile`` quantile); with ``filter: classifier`` only if a classifier of the real
  images calls it its class (:mod:`pipeline.generators.selection`);
- :func:`interpolation_strip`: decoded images on the line between two real images' codes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from pipeline.config import GenerateConfig
from pipeline.generators.base import Generator
from pipeline.generators.samplers import make_sampler

__all__ = ["synthetic_counts", "sampler_for", "sample_images", "round_trip_error", "interpolation_strip"]

logger = logging.getLogger(__name__)

FILTER_ROUNDS = 20  # rounds of candidates; a generator that fails its own check this often is reported short


def synthetic_counts(class_counts: dict[str, int], pool_ratio: float, every_class: bool = False) -> dict[str, int]:
    """How many images to generate per class: ``ceil(pool_ratio * gap)``, the gap being the class's distance to
    the majority count (so the majority gets none), or, with ``every_class``, at least the class's own count."""
    majority = max(class_counts.values())
    return {
        name: max(math.ceil(pool_ratio * (majority - count) - 1e-9), count if every_class else 0)
        for name, count in class_counts.items()
    }


def sampler_for(generator: Generator, name: str, label: int, class_images: np.ndarray, cfg: GenerateConfig):
    """The sampler ``name`` with ``cfg``'s settings, fitted to ``generator``'s codes of ``class_images``; ``prior``
    is the generator's own (:meth:`~pipeline.generators.base.Generator.prior`: N(0, I) for a VAE, the diffusion
    model for latent_diffusion)."""
    if name == "prior":
        return generator.prior(label, cfg.temperature)
    sampler = make_sampler(
        name,
        temperature=cfg.temperature,
        mixture_components=cfg.mixture_components,
        bootstrap_noise=cfg.bootstrap_noise,
        seed=cfg.seed,
    )
    codes = generator.encode(class_images, label) if sampler.needs_codes else generator.encode(class_images[:1], label)
    return sampler.fit(codes)


def round_trip_error(generator: Generator, images: np.ndarray, label: int) -> np.ndarray:
    """Mean squared difference between each image and its reconstruction."""
    if len(images) == 0:
        return np.zeros(0)
    recon = generator.reconstruct(images, label)
    return ((recon - images) ** 2).reshape(len(images), -1).mean(1).astype(np.float64)


def sample_images(
    generator: Generator,
    label: int,
    n: int,
    seed: int,
    cfg: GenerateConfig,
    class_images: np.ndarray,
    sampler: str | None = None,
    accept: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
    """``n`` images of class ``label`` as float32 ``(n, C, *spatial)`` in [0, 1] and the filter's counts
    (``kept``, ``dropped``); the same seed gives the same images. ``sampler`` overrides ``cfg.sampler``.
    ``filter: classifier`` takes ``accept``, the caller's test of a batch of images (a boolean per image; see
    :class:`pipeline.generators.selection.ClassifierFilter`)."""
    rng = np.random.default_rng(seed)
    draw = sampler_for(generator, sampler or cfg.sampler, label, class_images, cfg)
    if cfg.filter == "none" or n == 0:
        return generator.decode(draw.sample(n, rng), label), {"kept": n, "dropped": 0}
    info: dict = {}
    if cfg.filter == "consistency":
        threshold = float(np.quantile(round_trip_error(generator, class_images, label), cfg.filter_quantile))
        info["threshold_mse"] = threshold

        def accept(images: np.ndarray) -> np.ndarray:
            return round_trip_error(generator, images, label) <= threshold

    elif accept is None:
        raise ValueError(f"filter {cfg.filter} needs the caller's test of each image (accept)")
    kept, dropped = [], 0
    for _ in range(FILTER_ROUNDS):
        missing = n - sum(len(k) for k in kept)
        if missing <= 0:
            break
        candidates = generator.decode(draw.sample(max(2 * missing, 8), rng), label)
        ok = np.asarray(accept(candidates), dtype=bool)
        kept.append(candidates[ok][:missing])
        dropped += int((~ok).sum())
    images = np.concatenate(kept)[:n]
    if len(images) < n:
        logger.warning(
            "class %d: only %d of %d samples passed the %s filter in %d rounds; lower generate.filter_quantile or set "
            "generate.filter: none",
            label,
            len(images),
            n,
            cfg.filter,
            FILTER_ROUNDS,
        )
    return images, {"kept": len(images), "dropped": dropped, **info}


def interpolation_strip(
    generator: Generator, label: int, first: np.ndarray, second: np.ndarray, steps: int = 8
) -> np.ndarray:
    """Decoded images on the straight line between the latent codes of two real images of class ``label``."""
    codes = generator.encode(np.stack([first, second]), label)
    t = np.linspace(0, 1, steps)[:, None]
    return generator.decode((1 - t) * codes[0] + t * codes[1], label)
