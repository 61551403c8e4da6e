"""Sampler ``posterior``: a Gaussian mixture (scikit-learn) fitted to the class's posterior means, its components'
spread scaled by the temperature (the aggregate posterior, where the decoder has learnt to draw)."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.mixture import GaussianMixture

from pipeline.generators.samplers.base import check_codes

__all__ = ["PosteriorSampler"]

logger = logging.getLogger(__name__)

CODES_PER_COMPONENT = 5  # at most one mixture component per this many codes
CHUNK = 1024  # codes transformed at a time: each needs its component's (d, d) Cholesky factor gathered


class PosteriorSampler:
    name = "posterior"
    needs_codes = True

    def __init__(self, temperature: float = 1.0, mixture_components: int = 4, seed: int = 0, **_: object) -> None:
        self.temperature = temperature
        self.components = mixture_components
        self.seed = seed
        self.gmm: GaussianMixture | None = None

    def fit(self, codes: np.ndarray) -> PosteriorSampler:
        codes = check_codes(self.name, codes)
        if len(codes) == 1:  # a class of one training image: one component at its code, of reg_covar's spread
            logger.warning("posterior sampler: one code to fit, so its samples are near copies of that image")
            codes = np.concatenate([codes, codes])  # scikit-learn fits a mixture to two samples or more
        k = max(1, min(self.components, len(codes) // CODES_PER_COMPONENT))
        self.gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=self.seed).fit(codes)
        self._chol = np.linalg.cholesky(self.gmm.covariances_)  # (k, d, d)
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.gmm is None:
            raise RuntimeError("fit the posterior sampler to the class's codes first")
        weights = self.gmm.weights_ / self.gmm.weights_.sum()
        component = rng.choice(len(weights), size=n, p=weights)
        eps = rng.standard_normal((n, self.gmm.means_.shape[1]))
        # row by row the same sums as over all n at once: the gathered factors, (n, d, d), stay CHUNK rows
        spread = np.empty_like(eps)
        for start in range(0, n, CHUNK):
            rows = slice(start, start + CHUNK)
            spread[rows] = np.einsum("nij,nj->ni", self._chol[component[rows]], eps[rows])
        return self.gmm.means_[component] + self.temperature * spread
