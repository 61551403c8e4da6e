"""The generators medaug can train, behind one interface (:class:`~pipeline.generators.base.Generator`).

A new generator is one file in this package and one line in ``GENERATORS`` (plus its name in
``pipeline.config.GENERATOR_KINDS`` and its section in params.yaml; a test checks the names agree). The
checkpoint names its kind, and :func:`load_generator` rebuilds whichever kind it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from pipeline.generators.base import Generator, read_checkpoint, write_checkpoint
from pipeline.generators.latent_diffusion import LatentDiffusionGenerator
from pipeline.generators.vae import VAEGenerator
from pipeline.generators.vae_gan import VAEGANGenerator

__all__ = ["GENERATORS", "Generator", "GeneratorClass", "build_generator", "save_generator", "load_generator"]


class GeneratorClass(Protocol):
    """What ``GENERATORS`` holds: a generator class, built from its settings or rebuilt from its checkpoint."""

    def __call__(
        self, image_shape: tuple[int, ...], classes: tuple[str, ...], mode: str, cfg: Any, seed: int = 0
    ) -> Generator: ...

    def from_state(self, state: dict[str, Any], device: torch.device | str = "cpu") -> Generator: ...


GENERATORS: dict[str, GeneratorClass] = {
    "vae": VAEGenerator,
    "vae_gan": VAEGANGenerator,
    "latent_diffusion": LatentDiffusionGenerator,
}


def build_generator(
    kind: str, image_shape: tuple[int, ...], classes: tuple[str, ...], mode: str, cfg: Any, seed: int = 0
) -> Generator:
    """An untrained generator of ``kind`` with its settings ``cfg`` (the params.yaml section of that name)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; use one of {', '.join(GENERATORS)}")
    return GENERATORS[kind](image_shape, classes, mode, cfg, seed)


def save_generator(path: str | Path, generator: Generator, extra: dict[str, Any]) -> None:
    """Write ``generator``'s self-describing checkpoint, with ``extra`` (versions, best epochs, patients, ...)."""
    write_checkpoint(path, generator, extra)


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[Generator, dict[str, Any]]:
    """Rebuild the generator saved at ``path``, whatever its kind, on ``device``; also return the checkpoint."""
    checkpoint = read_checkpoint(path, device)
    kind = checkpoint.get("kind")
    if kind not in GENERATORS:
        raise ValueError(f"{path} holds a generator of kind {kind!r}, which this medaug does not know")
    return GENERATORS[kind].from_state(checkpoint, device), checkpoint
