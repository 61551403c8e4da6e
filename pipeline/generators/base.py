"""What every generator of :mod:`pipeline.generators` offers, and its self-describing checkpoint.

A generator learns the images of every class of a training split and makes new ones on request. The contract
(:class:`Generator`), for images of shape ``(C, spatial...)`` with values in [0, 1]:

- ``check_shape()``: raise ValueError, before any training, when its networks cannot take its image shape or
  settings (it builds one untrained network);
- ``fit(train, val, device, workers=1)``: learn from the training split, choose the epoch on the validation
  split, stop early; returns the history, one dict per network and epoch (``model``, ``epoch``, losses, ``best``);
  ``workers`` > 1 may train independent networks (one per class) in that many processes side by side;
- ``sample(label, n, rng)``: ``n`` new images of class ``label``, every draw taken from ``rng``;
- ``encode(images, label)`` / ``decode(codes, label)``: the latent codes of images of one class and back (for
  the latent samplers of :mod:`pipeline.generators.samplers`);
- ``reconstruct(images, label)``: ``decode(encode(images))``;
- ``prior(label, temperature)``: the generator's own distribution of codes of class ``label``, as a latent sampler
  (``sample(n, rng)``): N(0, I) for a VAE, the diffusion model for ``latent_diffusion``;
- ``state()`` and ``from_state(state, device)``: everything needed to rebuild it, with its ``kind``, so that
  :func:`pipeline.generators.load_generator` rebuilds any registered kind from its checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from pipeline.io.arrays import ImageArray, SplitData
from pipeline.io.atomic import atomic_file

__all__ = ["Generator", "CHECKPOINT_FORMAT", "one_class", "best_epochs", "write_checkpoint", "read_checkpoint"]

CHECKPOINT_FORMAT = "medaug-generator-1"


@runtime_checkable
class Generator(Protocol):
    """A class-conditional image generator (see the module docstring)."""

    kind: ClassVar[str]
    classes: tuple[str, ...]
    image_shape: tuple[int, ...]

    def check_shape(self) -> None: ...

    def fit(self, train: SplitData, val: SplitData, device: torch.device, workers: int = 1) -> list[dict]: ...

    def sample(self, label: int, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def encode(self, images: ImageArray, label: int) -> np.ndarray: ...

    def decode(self, codes: np.ndarray, label: int) -> np.ndarray: ...

    def reconstruct(self, images: ImageArray, label: int) -> np.ndarray: ...

    def prior(self, label: int, temperature: float = 1.0) -> Any: ...

    def state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> Generator: ...


def one_class(data: SplitData, label: int) -> SplitData:
    """The images of class ``label`` only, relabelled 0 (the data a single-class network learns from)."""
    subset = data.select(data.labels == label)  # images on disk stay there (a view of the class's rows)
    return dataclasses.replace(subset, labels=np.zeros(len(subset), dtype=np.int64), classes=(data.classes[label],))


def best_epochs(history: list[dict]) -> dict[str, int]:
    """The epoch each network of a ``fit`` history kept (its row marked ``best`` last)."""
    out: dict[str, int] = {}
    for row in history:
        if row.get("best"):
            out[row["model"]] = row["epoch"]
    return out


def write_checkpoint(path: str | Path, generator: Generator, extra: dict[str, Any]) -> None:
    """Save ``generator``'s state with its kind and format, plus ``extra`` (versions, patients, ...), written to a
    temporary name first."""
    checkpoint = {"format": CHECKPOINT_FORMAT, "kind": generator.kind, **generator.state(), **extra}
    with atomic_file(path) as tmp:
        torch.save(checkpoint, tmp)


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint dict of :func:`write_checkpoint`, refused with a clear error when it is not one."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"{path} is not a medaug generator checkpoint of format {CHECKPOINT_FORMAT} (found {found!r}); "
            "re-run the train_generator stage"
        )
    return checkpoint
