"""Classifier training speed and the wall time of the whole strategy comparison.

Usage: .venv/bin/python bench/bench_classifier.py [PROCESSED_DIR] [EPOCHS] [--comparison]

1. Training images per second of the stage's loop (``fit_classifier``, validation pass after every epoch and
   best-epoch copies included) against a bare PyTorch loop that trains the same MONAI network (same shapes, memory
   layout, batch size, optimiser and loss) on the same tensors, without and with the classical augmentation (the
   bare loop applying the same batched :class:`~pipeline.augment.BatchAugment` to each batch). Each pair runs three
   times, alternating; the best run of each is kept.
2. With ``--comparison``: the seconds of every remedy the ``train_classifier`` stage trains (each strategy and each
   ablation ratio, all seeds), in one process as the stage runs them (data/processed and data/synthetic must exist:
   run ``dvc repro`` first), and their total.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.augment import BatchAugment
from pipeline.config import load_section
from pipeline.io.arrays import load_split
from pipeline.io.synthetic import read_synthetic
from pipeline.models.classifier import as_input, build_classifier, fit_classifier, on_device
from pipeline.runtime import adam, select_device
from pipeline.strategies import Recipe, classifier_runs
from pipeline.trainings import run_strategy


def bare_loop(images: torch.Tensor, labels: torch.Tensor, cfg, device, epochs: int, augment: bool) -> float:
    """Seconds for ``epochs`` epochs of the plainest training loop of the same network."""
    torch.manual_seed(0)
    model = build_classifier(
        tuple(images.shape[1:]),
        int(labels.max()) + 1,
        cfg.network,
        cfg.channels,
        cfg.blocks_per_level,
        cfg.stem_stride,
    )
    model = on_device(model, images.ndim - 2, device).train()
    optimizer = adam(model.parameters(), cfg.learning_rate)  # the stage's optimiser
    transform = BatchAugment(images.ndim - 2, seed=0) if augment else None
    images, labels = images.to(device), labels.to(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images), device=device)
        for i in range(0, len(images), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x = images[idx] if transform is None else transform(images[idx])
            loss = F.cross_entropy(model(as_input(x, device)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def stage_loop(train, val, cfg, device, augment: bool) -> float:
    """Seconds for the stage's own loop (``fit_classifier``, validation and best-epoch copies included)."""
    start = time.perf_counter()
    fit_classifier(Recipe(train, augment=augment), val, cfg, 0, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def loop_speed(processed: Path, epochs: int, repeats: int = 3) -> None:
    cfg = dataclasses.replace(load_section("train_classifier"), epochs=epochs, patience=0)
    device = select_device()
    train, val = load_split(processed, "train"), load_split(processed, "val")
    print(
        f"{device}, {torch.get_num_threads()} threads; {cfg.network} (stem stride {cfg.stem_stride}); "
        f"train {train.images.shape}, {epochs} epochs"
    )
    images, labels = torch.from_numpy(train.images[:]), torch.from_numpy(train.labels)  # the whole split (a bare loop)
    bare_loop(images, labels, cfg, device, 1, False)  # warm-up (allocator, kernels)
    for augment in (False, True):
        bare, stage = [], []
        for _ in range(repeats):  # alternate, keep each one's best: other load on the machine only slows runs down
            bare.append(len(train) * epochs / bare_loop(images, labels, cfg, device, epochs, augment))
            stage.append(len(train) * epochs / stage_loop(train, val, cfg, device, augment))
        what = "with classical augmentation" if augment else "without augmentation"
        print(f"{what}:")
        print(f"  bare PyTorch loop:       {max(bare):8.1f} training images/s (runs: {_runs(bare)})")
        print(
            f"  train_classifier's loop: {max(stage):8.1f} training images/s (runs: {_runs(stage)})"
            f" = {max(stage) / max(bare):.2f}x the bare loop"
        )


def _runs(rates: list[float]) -> str:
    return ", ".join(f"{r:.0f}" for r in rates)


def comparison_time(processed: Path) -> None:
    """Train every remedy of the stage, in its order, in this process, timing each."""
    cfg = load_section("train_classifier")
    paths = load_section("paths")
    device = select_device()
    train, val, test = (load_split(processed, s) for s in ("train", "val", "test"))
    synthetic = read_synthetic(paths.synthetic, train.classes)
    total = 0.0
    for name, strategy, ratio in classifier_runs(cfg):
        start = time.perf_counter()
        run_strategy(strategy, train, val, test, synthetic, cfg, device, ratio=ratio)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:24s} {seconds:7.1f} s")
    print(f"{'whole comparison':24s} {total:7.1f} s ({total / 60:.1f} min, {len(cfg.seeds)} seeds each)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    processed = Path(args[0]) if args else Path("data/processed")
    loop_speed(processed, int(args[1]) if len(args) > 1 else 5)
    if "--comparison" in sys.argv:
        comparison_time(processed)
