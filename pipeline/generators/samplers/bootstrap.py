"""Sampler ``bootstrap``: the code of a random real image of the class plus N(0, (noise * temperature)^2 I)."""

from __future__ import annotations

import numpy as np

from pipeline.generators.samplers.base import check_codes

__all__ = ["BootstrapSampler"]


class BootstrapSampler:
    name = "bootstrap"
    needs_codes = True

    def __init__(self, temperature: float = 1.0, bootstrap_noise: float = 0.3, **_: object) -> None:
        self.scale = bootstrap_noise * temperature
        self.codes: np.ndarray | None = None

    def fit(self, codes: np.ndarray) -> BootstrapSampler:
        self.codes = check_codes(self.name, codes)
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.codes is None:
            raise RuntimeError("fit the bootstrap sampler to the class's codes first")
        picked = self.codes[rng.integers(len(self.codes), size=n)]
        return picked + rng.standard_normal(picked.shape) * self.scale
