"""Pictures for the report (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["image_grid", "training_curves"]


def image_grid(path: str | Path, rows: Sequence[tuple[str, np.ndarray]], columns: int = 8) -> None:
    """One row per ``(title, images)`` pair; images are ``(N, 1, X, Y)`` in [0, 1], shown radiologically;
    volumes ``(N, 1, X, Y, Z)`` show their middle axial slice."""
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.4 * columns, 1.6 * len(rows)), squeeze=False)
    for (title, images), ax_row in zip(rows, axes, strict=True):
        for k, ax in enumerate(ax_row):
            ax.axis("off")
            if k < len(images):
                image = images[k, 0] if images.ndim == 4 else images[k, 0, :, :, images.shape[-1] // 2]
                ax.imshow(image.T, cmap="gray", vmin=0, vmax=1)  # (X, Y) -> rows = Y
        ax_row[0].set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def training_curves(path: str | Path, history: Sequence[dict], keys: Sequence[str], title: str) -> None:
    """Line plot of ``keys`` of each history record against its ``epoch``."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    for key in keys:
        ax.plot(epochs, [h[key] for h in history], label=key)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
