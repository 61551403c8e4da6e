"""Training images per second of the ``vae`` generator's loop (train_generator) against a bare PyTorch loop that
trains the same MONAI network (same shapes, batch size, optimiser and loss) on the same tensors; and the images/s
of every registered generator kind with params.yaml's settings for it.

Usage: .venv/bin/python bench/bench_train_generator.py [PROCESSED_DIR] [EPOCHS]

PROCESSED_DIR defaults to data/processed (run `dvc repro` first); the stage's loop is timed as the stage runs
it, validation pass after every epoch included, and images/s counts training images only, so the ratio is
what the stage's extras (validation, best-checkpoint copies, loss logging, progress bar) cost. Both loops run
three times, alternating; the best run of each is compared.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from pipeline.config import load_section
from pipeline.generators import GENERATORS, build_generator
from pipeline.generators.vae import vae_network
from pipeline.io.arrays import load_split
from pipeline.models.vae import kl_divergence, reconstruction_loss
from pipeline.runtime import adam, select_device


def bare_loop(images: torch.Tensor, labels: torch.Tensor, cfg, device: torch.device, epochs: int) -> float:
    """Seconds for ``epochs`` epochs of the plainest training loop of the same network."""
    torch.manual_seed(0)
    model = vae_network(tuple(images.shape[1:]), int(labels.max()) + 1, cfg).to(device).train()
    optimizer = adam(model.parameters(), cfg.learning_rate)  # the stage's optimiser
    images, labels = images.to(device), labels.to(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images), device=device)
        for i in range(0, len(images), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            x, y = images[idx], labels[idx]
            recon, mu, logvar, _ = model(x, y)
            loss = reconstruction_loss(recon, x, cfg.reconstruction) + cfg.beta * kl_divergence(mu, logvar)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def stage_loop(train, val, kind: str, cfg, device) -> float:
    """Seconds for the generator's own ``fit`` (validation included) over ``cfg.epochs`` epochs."""
    generator = build_generator(kind, tuple(train.images.shape[1:]), train.classes, "conditional", cfg)
    start = time.perf_counter()
    generator.fit(train, val, device)
    return time.perf_counter() - start


def main(processed: Path, epochs: int, repeats: int = 3) -> None:
    cfg = dataclasses.replace(load_section("vae"), epochs=epochs, patience=0)
    device = select_device()
    train, val = load_split(processed, "train"), load_split(processed, "val")
    print(f"{device}, {torch.get_num_threads()} threads; train {train.images.shape}, val {len(val)}, {epochs} epochs")
    images, labels = torch.from_numpy(train.images[:]), torch.from_numpy(train.labels)  # the whole split (a bare loop)
    bare_loop(images, labels, cfg, device, 1)  # warm-up (allocator, kernels)
    bare, stage = [], []
    for _ in range(repeats):  # alternate, and keep each one's best: other load on the machine only slows runs down
        bare.append(len(train) * epochs / bare_loop(images, labels, cfg, device, epochs))
        stage.append(len(train) * epochs / stage_loop(train, val, "vae", cfg, device))
    print(f"bare PyTorch loop:  {max(bare):8.1f} training images/s (runs: {', '.join(f'{r:.0f}' for r in bare)})")
    print(
        f"vae generator loop: {max(stage):8.1f} training images/s (runs: {', '.join(f'{r:.0f}' for r in stage)}) "
        f"= {max(stage) / max(bare):.2f}x the bare loop"
    )
    for kind in GENERATORS:  # each kind with its own params.yaml settings (an adversarial warm-up counts as epochs)
        settings = dataclasses.replace(load_section(kind), epochs=epochs, patience=0)
        if hasattr(settings, "adversarial_warmup_epochs"):
            settings = dataclasses.replace(settings, adversarial_warmup_epochs=0)  # time the adversarial epochs
        rate = len(train) * epochs / stage_loop(train, val, kind, settings, device)
        print(f"{kind:18s}: {rate:8.1f} training images/s with params.yaml's {kind} settings")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else Path("data/processed"), int(args[1]) if len(args) > 1 else 5)
