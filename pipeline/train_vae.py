"""Stage ``train_vae``: a class-conditional VAE on the training split.

Loss = reconstruction + w(epoch) * KL, with the reparameterization trick and a linear KL warm-up
w(epoch) -> beta. The checkpoint of the epoch with the best validation ELBO (full beta) is kept.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from pipeline.config import TrainVAEConfig, load_section
from pipeline.io.arrays import SplitData, load_split
from pipeline.models.vae import ConditionalVAE, kl_divergence, kl_weight, reconstruction_loss, save_vae
from pipeline.plots import training_curves
from pipeline.runtime import seed_everything, select_device, versions

__all__ = ["train_vae", "evaluate_vae", "main"]

logger = logging.getLogger(__name__)


def _loader(data: SplitData, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    dataset = TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def evaluate_vae(model: ConditionalVAE, loader: DataLoader, reconstruction: str, beta: float, device) -> dict:
    """Mean reconstruction, KL and ELBO loss (reconstruction + beta * KL) per image, posterior means as codes."""
    model.eval()
    totals, n = {"reconstruction": 0.0, "kl": 0.0}, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        recon, mu, logvar, _ = model(x, y)
        totals["reconstruction"] += reconstruction_loss(recon, x, reconstruction).item() * len(x)
        totals["kl"] += kl_divergence(mu, logvar).item() * len(x)
        n += len(x)
    out = {k: v / n for k, v in totals.items()}
    out["elbo"] = out["reconstruction"] + beta * out["kl"]
    return out


def train_vae(
    train: SplitData, val: SplitData, cfg: TrainVAEConfig, device: torch.device
) -> tuple[ConditionalVAE, list[dict]]:
    """Train on ``train``, select the epoch on ``val``; return the best model and per-epoch history."""
    seed_everything(cfg.seed)
    shape = train.images.shape[1:]  # (C, X, Y) or (C, X, Y, Z): the VAE is 2D or 3D like the data
    model = ConditionalVAE(len(shape) - 1, shape, len(train.classes), cfg.latent_size, cfg.channels, cfg.strides)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    train_loader = _loader(train, cfg.batch_size, True, cfg.seed)
    val_loader = _loader(val, cfg.batch_size, False, cfg.seed)
    history, best_state, best_val = [], None, math.inf
    for epoch in (bar := tqdm(range(cfg.epochs), desc="train_vae", unit="epoch")):
        weight = kl_weight(epoch, cfg.beta, cfg.kl_warmup_epochs)
        model.train()
        sums, n = {"reconstruction": 0.0, "kl": 0.0}, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            recon, mu, logvar, _ = model(x, y)
            rec, kl = reconstruction_loss(recon, x, cfg.reconstruction), kl_divergence(mu, logvar)
            loss = rec + weight * kl
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"VAE loss is {loss.item()} at epoch {epoch}: lower train_vae.learning_rate or check the inputs"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums["reconstruction"] += rec.item() * len(x)
            sums["kl"] += kl.item() * len(x)
            n += len(x)
        tr = {k: v / n for k, v in sums.items()}  # running means over the epoch, as trained (sampled z)
        tr["elbo"] = tr["reconstruction"] + cfg.beta * tr["kl"]
        va = evaluate_vae(model, val_loader, cfg.reconstruction, cfg.beta, device)
        history.append(
            {
                "epoch": epoch,
                "kl_weight": weight,
                **{f"train_{k}": v for k, v in tr.items()},
                **{f"val_{k}": v for k, v in va.items()},
            }
        )
        bar.set_postfix(train_elbo=f"{tr['elbo']:.1f}", val_elbo=f"{va['elbo']:.1f}")
        if va["elbo"] < best_val:
            best_val, best_state = va["elbo"], {k: v.detach().clone() for k, v in model.state_dict().items()}
            history[-1]["best"] = True
    assert best_state is not None
    model.load_state_dict(best_state)
    return model.eval(), history


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: TrainVAEConfig = load_section("train_vae")
    paths = load_section("paths")
    train, val = load_split(paths.processed, "train"), load_split(paths.processed, "val")
    device = select_device()
    model, history = train_vae(train, val, cfg, device)
    best = min(history, key=lambda h: h["val_elbo"])
    save_vae(
        paths.vae, model, train.classes, dataclasses.asdict(cfg), {"best_epoch": best["epoch"], "versions": versions()}
    )
    reports = Path(paths.reports)
    reports.mkdir(parents=True, exist_ok=True)
    keys = [k for k in history[0] if k != "best"]
    with open(reports / "vae_training.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    training_curves(reports / "figures" / "vae_training.png", history, ["train_elbo", "val_elbo"], "VAE loss (-ELBO)")
    logger.info("VAE trained on %s: best val ELBO loss %.2f at epoch %d", device, best["val_elbo"], best["epoch"])


if __name__ == "__main__":
    main()
