"""What a latent sampler is: ``fit(codes)`` on the latent codes of one class's real images, then
``sample(n, rng)`` new codes, every draw taken from ``rng`` (pythae's samplers, with the generator outside)."""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = ["Sampler", "check_codes"]


@runtime_checkable
class Sampler(Protocol):
    """Latent codes of one class: fitted to real codes ``(n, d)``, drawing new ones ``(n, d)``."""

    name: ClassVar[str]
    needs_codes: ClassVar[bool]  # False: it ignores the real codes (the prior)

    def fit(self, codes: np.ndarray) -> Sampler: ...

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...


def check_codes(name: str, codes: np.ndarray) -> np.ndarray:
    """``codes`` as a float64 (n, d) array, refused when there is none to fit to."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2:
        raise ValueError(f"the {name} sampler takes codes of shape (n, latent_size), got {codes.shape}")
    if len(codes) == 0:
        raise ValueError(f"the {name} sampler needs encoded real images of the class; there are none")
    return codes
