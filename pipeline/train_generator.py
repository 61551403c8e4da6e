"""Stage ``train_generator``: the generator of ``generator.kind`` on the training split.

The generator (:mod:`pipeline.generators`: ``vae``, ``vae_gan``, ``latent_diffusion``) takes its settings from the
params.yaml section named after its kind, and ``generator.mode`` and ``generator.seed``. It learns the training
split, keeps each network's best epoch on the validation split and stops early; this stage saves its
self-describing checkpoint (kind, weights, settings, versions, the pseudonyms of the patients it learnt from), its
per-epoch losses (``generator_training.csv``, for ``dvc plots``) and a picture of them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import GeneratorConfig, load_section
from pipeline.generators import build_generator, save_generator
from pipeline.generators.base import best_epochs
from pipeline.io.arrays import load_split, write_csv
from pipeline.planning import check_before_training
from pipeline.plots import training_curves
from pipeline.reporting.figures import GENERATOR_TRAINING
from pipeline.runtime import compute_device, run_stage, versions
from pipeline.workers import worker_count

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: GeneratorConfig = load_section("generator")
    settings = load_section(cfg.kind)
    paths = load_section("paths")
    check_before_training(paths.processed)  # refuse a dataset these settings cannot run on, before training
    train, val = load_split(paths.processed, "train"), load_split(paths.processed, "val")
    device = compute_device()
    generator = build_generator(cfg.kind, tuple(train.images.shape[1:]), train.classes, cfg.mode, settings, cfg.seed)
    networks = len(train.classes) if cfg.mode == "per_class" else 1  # independent trainings (compute.workers)
    history = generator.fit(train, val, device, worker_count(load_section("compute").workers, device, networks))
    best = best_epochs(history)
    extra = {
        "best_epochs": best,
        "versions": versions(),
        "patients": sorted(set(train.patients.tolist()) | set(val.patients.tolist())),  # pseudonyms it learnt from
    }
    save_generator(paths.generator, generator, extra)
    reports = Path(paths.reports)
    keys = list(dict.fromkeys(k for row in history for k in row if k != "best"))
    write_csv(reports / "generator_training.csv", history, keys)
    panels = {
        "loss (reconstruction + beta KL)": ["train_elbo", "val_elbo"],
        "reconstruction": ["train_reconstruction", "val_reconstruction"],
        "KL": ["train_kl", "val_kl"],
    }
    adversarial = [k for k in ("train_adversarial", "train_feature_matching", "train_discriminator") if k in keys]
    if adversarial:
        panels["adversarial (weighted)"] = adversarial
    if "train_diffusion" in keys:
        panels["diffusion (noise MSE)"] = ["train_diffusion", "val_diffusion"]
    training_curves(GENERATOR_TRAINING.path(reports), history, panels)
    for name, epoch in best.items():
        row = next(h for h in history if h["model"] == name and h["epoch"] == epoch)
        loss = row.get("val_elbo", row.get("val_diffusion"))  # a kind that logs neither: said so, not a crash
        shown = f"{loss:.4g}" if isinstance(loss, int | float) else "not logged"
        logger.info("%s %s on %s: best val loss %s at epoch %d", cfg.kind, name, device, shown, epoch)


if __name__ == "__main__":
    run_stage(main, "pipeline.train_generator")
