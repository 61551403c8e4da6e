"""Run-time helpers shared by the training stages: device choice, seeding, hashing, versions."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import monai
import numpy as np
import torch
from monai.utils import set_determinism

__all__ = ["select_device", "seed_everything", "file_sha256", "versions"]


def select_device() -> torch.device:
    """CUDA when available, else the CPU; the same code runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask for deterministic algorithms (bit-identical CPU runs)."""
    set_determinism(seed=seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "monai": str(monai.__version__),
        "numpy": str(np.__version__),
    }
