"""Classifier training speed and the wall time of the whole strategy comparison.

Usage: .venv/bin/python bench/bench_classifier.py [PROCESSED_DIR] [EPOCHS] [--comparison]

1. Training images per second of the stage's loop (``fit_classifier`` on the ``real_only`` recipe, validation
   pass after every epoch included) against a bare PyTorch loop that trains the same MONAI network (same shapes,
   batch size, optimiser and loss) on the same tensors; both run three times, alternating, best of each kept.
2. With ``--comparison``: wall time of every ``train_classifier@*``, ``ablation@*`` and ``compare`` stage, run
   by ``dvc repro --force`` one after the other (data/processed and data/synthetic must exist: run ``dvc repro``
   first). Each stage is its own process, so this includes start-up (imports) as a user sees it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.config import load_section
from pipeline.io.arrays import load_split
from pipeline.models.classifier import build_classifier
from pipeline.runtime import select_device
from pipeline.strategies import Recipe
from pipeline.train_classifier import fit_classifier


def bare_loop(images: torch.Tensor, labels: torch.Tensor, cfg, device: torch.device, epochs: int) -> float:
    """Seconds for ``epochs`` epochs of the plainest training loop of the same network."""
    torch.manual_seed(0)
    model = build_classifier(
        tuple(images.shape[1:]), int(labels.max()) + 1, cfg.network, cfg.channels, cfg.blocks_per_level
    )
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    images, labels = images.to(device), labels.to(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images), device=device)
        for i in range(0, len(images), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def stage_loop(train, val, cfg, device) -> float:
    """Seconds for the stage's own loop (``fit_classifier``, validation and best-epoch copies included)."""
    start = time.perf_counter()
    fit_classifier(Recipe(train), val, cfg, 0, device)
    return time.perf_counter() - start


def loop_speed(processed: Path, epochs: int, repeats: int = 3) -> None:
    cfg = dataclasses.replace(load_section("train_classifier"), epochs=epochs, patience=0)
    device = select_device()
    train, val = load_split(processed, "train"), load_split(processed, "val")
    print(f"{device}, {torch.get_num_threads()} threads; {cfg.network}; train {train.images.shape}, {epochs} epochs")
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    bare_loop(images, labels, cfg, device, 1)  # warm-up (allocator, kernels)
    bare, stage = [], []
    for _ in range(repeats):  # alternate, and keep each one's best: other load on the machine only slows runs down
        bare.append(len(train) * epochs / bare_loop(images, labels, cfg, device, epochs))
        stage.append(len(train) * epochs / stage_loop(train, val, cfg, device))
    print(f"bare PyTorch loop:        {max(bare):8.1f} training images/s (runs: {', '.join(f'{r:.0f}' for r in bare)})")
    print(
        f"train_classifier's loop:  {max(stage):8.1f} training images/s (runs: {', '.join(f'{r:.0f}' for r in stage)})"
        f" = {max(stage) / max(bare):.2f}x the bare loop"
    )


def comparison_time() -> None:
    """Run every classifier stage and compare with ``dvc repro --force --single-item``, timing each."""
    listing = subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True, text=True, check=True)
    stages = [s for s in listing.stdout.split() if re.match(r"(train_classifier@|ablation@|compare$)", s)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    total = 0.0
    for stage in stages:
        start = time.perf_counter()
        subprocess.run(["dvc", "repro", "--force", "--single-item", stage], env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{stage:34s} {seconds:7.1f} s")
    print(f"{'whole comparison':34s} {total:7.1f} s ({total / 60:.1f} min)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    loop_speed(Path(args[0]) if args else Path("data/processed"), int(args[1]) if len(args) > 1 else 5)
    if "--comparison" in sys.argv:
        comparison_time()
