"""Synthetic images from a trained generator: how many per class, drawn through a latent sampler, optionally
filtered. Shared by the generate stage (the pool) and the quality stage (fresh samples of every sampler), so both
draw images the same way.

- :func:`stream_images`: ``n`` images of one class, handed to the caller a chunk at a time: the sampler fitted to
  the generator's codes of the class's real training images draws codes, the generator decodes them; a sample is
  kept only when every filter of ``generate.filter`` keeps it: ``consistency`` when decoding, re-encoding and
  decoding it again changes it no more than the same round trip changes real images of the class (their
  ``filter_quantile`` quantile); ``classifier`` and ``manifold`` by the caller's tests
  (:mod:`pipeline.generators.selection`); :func:`sample_images`: the same images in one array (a few of them);
- :func:`interpolation_strip`: decoded images on the line between two real images' codes.

Memory is bounded by :data:`CHUNK`, not by the class: the class's real images may be on disk (a
:class:`~pipeline.io.arrays.DiskArray` or :class:`~pipeline.io.arrays.Rows` view) and are read a batch at a time,
and images are decoded, filtered and handed on :data:`CHUNK` at a time. :data:`CHUNK` is a multiple of the
generators' forward batch (256), and a filter sees its candidates in the same batches of 256 as on the whole set,
so chunking changes no bit of the images, of the codes or of the filters' verdicts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import FILTER_NAMES, GenerateConfig
from pipeline.generators.base import Generator
from pipeline.generators.samplers import make_sampler
from pipeline.io.arrays import ImageArray, batches

__all__ = [
    "CHUNK",
    "sampler_for",
    "stream_images",
    "sample_images",
    "round_trip_error",
    "interpolation_strip",
]

logger = logging.getLogger(__name__)

FILTER_ROUNDS = 20  # rounds of candidates; a generator that fails its own check this often is reported short
MAX_CANDIDATES = 4096  # candidates decoded in one round at most (a 64 x 64 image: 16 KiB as float32)
CANDIDATES_PER_IMAGE = 50  # candidates per wanted image at most (or MAX_CANDIDATES, if more): a filter that passes
# fewer than 1 in 50 leaves the pool short rather than decoding without end
CHUNK = 1024  # images decoded, filtered and handed on at a time: a multiple of the generators' forward batch (256)


def sampler_for(generator: Generator, name: str, label: int, class_images: ImageArray, cfg: GenerateConfig):
    """The sampler ``name`` with ``cfg``'s settings, fitted to ``generator``'s codes of ``class_images`` (encoded a
    batch at a time by the generator: they may be on disk); ``prior`` is the generator's own
    (:meth:`~pipeline.generators.base.Generator.prior`: N(0, I) for a VAE, the diffusion model for latent_diffusion).
    """
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


def round_trip_error(generator: Generator, images: ImageArray, label: int) -> np.ndarray:
    """Mean squared difference between each image and its reconstruction, :data:`CHUNK` images at a time."""
    errors = [np.zeros(0)]
    for _, chunk in batches(images, CHUNK):
        recon = generator.reconstruct(chunk, label)
        errors.append(((recon - chunk) ** 2).reshape(len(chunk), -1).mean(1).astype(np.float64))
    return np.concatenate(errors)


def stream_images(
    generator: Generator,
    label: int,
    n: int,
    seed: int,
    cfg: GenerateConfig,
    class_images: ImageArray,
    out: Callable[[np.ndarray], object],
    sampler: str | None = None,
    accept: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    budget: int | None = None,
) -> dict:
    """``n`` images of class ``label``, float32 ``(m, C, *spatial)`` in [0, 1], passed to ``out`` in draw order,
    :data:`CHUNK` at a time (the last chunk fewer); returns the filters' counts. The same seed gives the same images.
    ``sampler`` overrides ``cfg.sampler``. ``accept`` maps each filter of ``cfg.filter`` but ``consistency`` (which
    is built here) to the caller's test of a batch of images, a boolean per image (see
    :mod:`pipeline.generators.selection`).

    Rounds of candidates (at most ``FILTER_ROUNDS``, and at most ``budget`` candidates in all: by default
    ``CANDIDATES_PER_IMAGE`` x ``n`` or ``MAX_CANDIDATES``, whichever is more) go through the listed filters in the
    order of ``FILTER_NAMES``, each testing only what the ones before it kept, until ``n`` pass; the kept set does
    not depend on the order of the list. The counts: ``kept``, ``dropped`` and, with filters, ``candidates`` (drawn),
    ``acceptance_rate`` (the share of candidates that passed every filter) and ``filters``: per filter, the
    candidates it ``tested``, those it ``dropped``, its ``acceptance_rate`` and its threshold (consistency).
    A round's codes are drawn at once (``size`` x latent size, small); its images are decoded and tested
    :data:`CHUNK` at a time, each filter seeing the survivors of the one before in batches of :data:`CHUNK`."""
    rng = np.random.default_rng(seed)
    draw = sampler_for(generator, sampler or cfg.sampler, label, class_images, cfg)
    if not cfg.filter:  # no filter: exactly one draw of n codes
        codes = draw.sample(n, rng)
        for start in range(0, n, CHUNK):
            out(generator.decode(codes[start : start + CHUNK], label))
        return {"kept": n, "dropped": 0}
    tests, thresholds = _filter_tests(generator, label, cfg, class_images, accept or {})
    counts: dict[str, dict] = {name: {"tested": 0, "dropped": 0, **thresholds.get(name, {})} for name in tests}
    budget = max(CANDIDATES_PER_IMAGE * n, MAX_CANDIDATES) if budget is None else budget
    rounds = _Rounds(generator, label, n, budget, draw, rng, tests, counts)
    for chunk in _rebatched(iter(rounds), CHUNK):
        out(chunk)
    for c in counts.values():
        c["acceptance_rate"] = _rate(c["tested"], c["dropped"])
    dropped = sum(c["dropped"] for c in counts.values())
    if rounds.kept < n:
        logger.warning(
            "class %d: only %d of %d samples passed generate.filter %s in %d candidates (%s); %s",
            label,
            rounds.kept,
            n,
            list(cfg.filter),
            rounds.drawn,
            ", ".join(f"{name} dropped {c['dropped']} of {c['tested']}" for name, c in counts.items()),
            _what_to_change(cfg.filter),
        )
    summary = {"kept": rounds.kept, "dropped": dropped, "candidates": rounds.drawn}
    return summary | {"acceptance_rate": _rate(rounds.drawn, dropped), "filters": counts}


@dataclass
class _Rounds:
    """Rounds of candidates of class ``label`` through the filters ``tests`` until ``n`` pass or ``budget``
    candidates were drawn (:func:`stream_images`); iterating gives the kept images of every round in draw order
    (each round tests all its candidates, for ``counts``), tallying ``drawn`` and ``kept``."""

    generator: Generator
    label: int
    n: int
    budget: int
    draw: Any  # the latent sampler
    rng: np.random.Generator
    tests: dict[str, Callable[[np.ndarray], np.ndarray]]
    counts: dict[str, dict]
    drawn: int = 0
    kept: int = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for _ in range(FILTER_ROUNDS):
            missing = self.n - self.kept
            if missing <= 0 or self.drawn >= self.budget:
                break
            size = min(_round_size(missing, self.drawn, self.kept), self.budget - self.drawn)
            codes = self.draw.sample(size, self.rng)
            self.drawn += size
            survivors: Iterable[np.ndarray] = (
                self.generator.decode(codes[start : start + CHUNK], self.label) for start in range(0, size, CHUNK)
            )
            for name, test in self.tests.items():
                survivors = _tested(test, _rebatched(survivors, CHUNK), self.counts[name])
            for chunk in survivors:
                chunk = chunk[: self.n - self.kept]
                self.kept += len(chunk)
                if len(chunk):
                    yield chunk


def sample_images(
    generator: Generator,
    label: int,
    n: int,
    seed: int,
    cfg: GenerateConfig,
    class_images: ImageArray,
    sampler: str | None = None,
    accept: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    budget: int | None = None,
) -> tuple[np.ndarray, dict]:
    """The images of :func:`stream_images` in one float32 array ``(m, C, *spatial)`` (``m`` = ``n`` unless the
    filters left the class short), and the filters' counts: for a few images (pictures, the quality stage's
    samples); a pool streams them instead."""
    parts = [np.zeros((0, *generator.image_shape), np.float32)]
    summary = stream_images(generator, label, n, seed, cfg, class_images, parts.append, sampler, accept, budget)
    return np.concatenate(parts), summary


def _rebatched(chunks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The rows of ``chunks`` again, ``size`` at a time (the last batch fewer): a filter then sees the same batches
    whatever the chunks it is given."""
    waiting: list[np.ndarray] = []
    count = 0
    for chunk in chunks:
        waiting.append(chunk)
        count += len(chunk)
        if count >= size:
            rows = np.concatenate(waiting)
            whole = len(rows) - len(rows) % size
            for start in range(0, whole, size):
                yield rows[start : start + size]
            waiting, count = [rows[whole:]], len(rows) - whole
    if count:
        yield np.concatenate(waiting)


def _tested(
    test: Callable[[np.ndarray], np.ndarray], chunks: Iterable[np.ndarray], counts: dict
) -> Iterator[np.ndarray]:
    """The rows of ``chunks`` that ``test`` keeps, counting what it tested and dropped into ``counts``."""
    for chunk in chunks:
        ok = np.asarray(test(chunk), dtype=bool)
        counts["tested"] += len(chunk)
        counts["dropped"] += int((~ok).sum())
        yield chunk[ok]


def _round_size(missing: int, drawn: int, kept: int) -> int:
    """Candidates to draw for ``missing`` images: twice as many in the first round; then as many as the acceptance
    rate so far says are needed, with a quarter more, between 8 and :data:`MAX_CANDIDATES` (a strict filter that
    keeps a few percent fills the pool in a few rounds instead of running out of them)."""
    if drawn == 0:
        return max(2 * missing, 8)
    rate = max(kept, 1) / drawn
    return int(min(max(np.ceil(1.25 * missing / rate), 8), MAX_CANDIDATES))


def _consistent(generator: Generator, label: int, threshold: float, images: np.ndarray) -> np.ndarray:
    """Whether each image's round trip through the generator errs by at most ``threshold`` (the consistency filter)."""
    return round_trip_error(generator, images, label) <= threshold


def _filter_tests(
    generator: Generator,
    label: int,
    cfg: GenerateConfig,
    class_images: ImageArray,
    accept: Mapping[str, Callable[[np.ndarray], np.ndarray]],
) -> tuple[dict[str, Callable[[np.ndarray], np.ndarray]], dict[str, dict]]:
    """The test of each filter of ``cfg.filter``, in the order of ``FILTER_NAMES``, and the thresholds set here."""
    tests: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    thresholds: dict[str, dict] = {}
    for name in (f for f in FILTER_NAMES if f in cfg.filter):
        if name == "consistency":
            threshold = float(np.quantile(round_trip_error(generator, class_images, label), cfg.filter_quantile))
            thresholds[name] = {"threshold_mse": threshold}
            tests[name] = functools.partial(_consistent, generator, label, threshold)
        elif name in accept:
            tests[name] = accept[name]
        else:
            raise ValueError(f"filter {name} needs the caller's test of each image (accept)")
    return tests, thresholds


def _rate(tested: int, dropped: int) -> float | None:
    return (tested - dropped) / tested if tested else None


def _what_to_change(filters: tuple[str, ...]) -> str:
    """The params that let more samples through the listed filters."""
    knobs = []
    if {"consistency", "classifier"} & set(filters):
        knobs.append("lower generate.filter_quantile (consistency, classifier)")
    if "manifold" in filters:
        knobs.append("raise generate.manifold_k (manifold: larger balls)")
    return ", ".join(knobs + ["or remove a filter from the list generate.filter ([] keeps every sample)"])


def interpolation_strip(
    generator: Generator, label: int, first: np.ndarray, second: np.ndarray, steps: int = 8
) -> np.ndarray:
    """Decoded images on the straight line between the latent codes of two real images of class ``label``."""
    codes = generator.encode(np.stack([first, second]), label)
    t = np.linspace(0, 1, steps)[:, None]
    return generator.decode((1 - t) * codes[0] + t * codes[1], label)
