"""Pictures for the report (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.io.atomic import atomic_file  # noqa: E402

__all__ = ["image_grid", "training_curves", "ratio_curve"]


def _save(fig: plt.Figure, path: str | Path) -> None:
    """Lay out, save through a temporary file renamed into place (the format from ``path``'s suffix, as
    ``savefig`` would pick it) and close."""
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=80, format=Path(path).suffix.lstrip(".") or matplotlib.rcParams["savefig.format"])
    finally:
        plt.close(fig)


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
    _save(fig, path)


def training_curves(path: str | Path, history: Sequence[dict], panels: dict[str, Sequence[str]]) -> None:
    """One panel per ``title: keys`` entry, each key of the history records plotted against ``epoch``; one
    line per key and per ``model`` when the records name several models (per-class VAEs)."""
    models = list(dict.fromkeys(h.get("model", "") for h in history))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels.items(), strict=True):
        for model in models:
            records = [h for h in history if h.get("model", "") == model]
            for key in keys:
                label = f"{model} {key}" if len(models) > 1 else key
                ax.plot([h["epoch"] for h in records], [h[key] for h in records], label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=7)
    _save(fig, path)


def ratio_curve(path: str | Path, rows: Sequence[dict], combined: dict) -> None:
    """Balanced accuracy and each minority class's recall against the synthetic ratio (rows of
    ``compare.ratio_table``), with 95% bootstrap intervals; random oversampling as a dashed reference."""
    keys = ["balanced_accuracy"] + [f"recall_{c}" for c in combined["minority_classes"]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.5), squeeze=False)
    ratios = np.array([r["ratio"] for r in rows])
    for ax, key in zip(axes[0], keys, strict=True):
        mean = np.array([r[key] for r in rows])
        low, high = np.array([r[f"{key}_ci_low"] for r in rows]), np.array([r[f"{key}_ci_high"] for r in rows])
        ax.errorbar(ratios, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label="vae (real + synthetic)")
        if "oversample" in combined:
            ax.axhline(combined["oversample"][key], color="grey", linestyle="--", label="oversample")
        ax.set_xlabel("synthetic images / minority gap (0 = real only)")
        ax.set_title(key.replace("_", " "))
        ax.legend(fontsize=7)
    _save(fig, path)
