"""Sampler ``interpolate``: a random point on the segment between the codes of two real images of the class."""

from __future__ import annotations

import numpy as np

from pipeline.generators.samplers.base import check_codes

__all__ = ["InterpolateSampler"]


class InterpolateSampler:
    name = "interpolate"
    needs_codes = True

    def __init__(self, **_: object) -> None:
        self.codes: np.ndarray | None = None

    def fit(self, codes: np.ndarray) -> InterpolateSampler:
        self.codes = check_codes(self.name, codes)
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.codes is None:
            raise RuntimeError("fit the interpolate sampler to the class's codes first")
        m = len(self.codes)
        first = rng.integers(m, size=n)
        second = (first + rng.integers(1, max(m, 2), size=n)) % m  # another image when there is one
        t = rng.uniform(size=(n, 1))
        return (1 - t) * self.codes[first] + t * self.codes[second]
