"""Sampler ``prior``: z ~ N(0, temperature^2 I), the VAE's prior (the real codes only give the dimension)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

__all__ = ["PriorSampler"]


class PriorSampler:
    name: ClassVar[str] = "prior"
    needs_codes: ClassVar[bool] = False

    def __init__(self, temperature: float = 1.0, **_: object) -> None:
        self.temperature = temperature
        self.dim: int | None = None

    def fit(self, codes: np.ndarray) -> PriorSampler:
        self.dim = int(np.shape(codes)[1])
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.dim is None:
            raise RuntimeError("fit the prior sampler first (it takes the latent size from the codes)")
        return rng.standard_normal((n, self.dim)) * self.temperature
