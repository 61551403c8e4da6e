"""Stage ``train_vae``: the VAE(s) on the training split.

``mode: conditional`` trains one class-conditional VAE on every class; ``mode: per_class`` trains one VAE per
class on that class's images only (class-specific VAE augmentation). Loss = reconstruction + w(epoch) * KL,
with the reparameterization trick, a linear KL warm-up w(epoch) -> beta and optional free bits. Each network
keeps the checkpoint of its epoch with the best validation loss (reconstruction + beta * KL) and stops early
after ``patience`` epochs without improvement (never during the warm-up). On CUDA the forward pass runs in
mixed precision (``amp``); on CPU everything is float32 and deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from pipeline.config import TrainVAEConfig, load_section
from pipeline.io.arrays import SplitData, load_split, write_csv
from pipeline.models.vae import ClassVAEs, ConditionalVAE, kl_divergence, kl_weight, reconstruction_loss, save_vae
from pipeline.plots import training_curves
from pipeline.runtime import adam, run_stage, seed_everything, select_device, versions

__all__ = ["train_vae", "fit_vae", "evaluate_vae", "vae_network", "one_class", "main"]

logger = logging.getLogger(__name__)


def _loader(data: SplitData, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    dataset = TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def evaluate_vae(model: ConditionalVAE, loader: DataLoader, reconstruction: str, beta: float, device) -> dict:
    """Mean reconstruction loss, KL and their sum reconstruction + beta * KL per image (the negative ELBO
    for beta 1), with the posterior means as codes."""
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


def fit_vae(
    model: ConditionalVAE, train: SplitData, val: SplitData, cfg: TrainVAEConfig, device: torch.device, name: str
) -> list[dict]:
    """Train one network in place (ending with its best validation epoch's weights); return its history."""
    model.to(device)
    optimizer = adam(model.parameters(), cfg.learning_rate)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    train_loader = _loader(train, cfg.batch_size, True, cfg.seed)
    val_loader = _loader(val, max(cfg.batch_size, 256), False, cfg.seed)  # no gradients: bigger batches are cheaper
    history, best_state, best_val, best_epoch = [], None, math.inf, -1
    for epoch in (bar := tqdm(range(cfg.epochs), desc=f"train_vae {name}", unit="epoch")):
        weight = kl_weight(epoch, cfg.beta, cfg.kl_warmup_epochs)
        model.train()
        sums, n = {"reconstruction": 0.0, "kl": 0.0}, 0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                recon, mu, logvar, _ = model(x, y)
            # the losses in float32 (binary cross-entropy is not safe in half precision)
            recon, mu, logvar = recon.float(), mu.float(), logvar.float()
            rec = reconstruction_loss(recon, x, cfg.reconstruction)
            loss = rec + weight * kl_divergence(mu, logvar, cfg.free_bits)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"VAE loss is {loss.item()} at epoch {epoch} ({name}): lower train_vae.learning_rate "
                    "or check the inputs"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sums["reconstruction"] += rec.item() * len(x)
            sums["kl"] += kl_divergence(mu.detach(), logvar.detach()).item() * len(x)  # the true KL, no free bits
            n += len(x)
        tr = {k: v / n for k, v in sums.items()}  # running means over the epoch, as trained (sampled z)
        tr["elbo"] = tr["reconstruction"] + cfg.beta * tr["kl"]
        va = evaluate_vae(model, val_loader, cfg.reconstruction, cfg.beta, device)
        history.append(
            {
                "model": name,
                "epoch": epoch,
                "kl_weight": weight,
                **{f"train_{k}": v for k, v in tr.items()},
                **{f"val_{k}": v for k, v in va.items()},
            }
        )
        bar.set_postfix(train_loss=f"{tr['elbo']:.1f}", val_loss=f"{va['elbo']:.1f}")
        if va["elbo"] < best_val:
            best_val, best_epoch = va["elbo"], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history[-1]["best"] = True
        warmed_up = epoch + 1 >= cfg.kl_warmup_epochs
        if cfg.patience and warmed_up and epoch - best_epoch >= cfg.patience:
            logger.info(
                "%s: stopped early at epoch %d, no better validation loss since epoch %d", name, epoch, best_epoch
            )
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return history


def vae_network(shape: tuple[int, ...], num_classes: int, cfg: TrainVAEConfig) -> ConditionalVAE:
    """A VAE of ``cfg``'s architecture for images of ``shape`` (C, X, Y) or (C, X, Y, Z): 2D or 3D like the data."""
    return ConditionalVAE(
        len(shape) - 1, shape, num_classes, cfg.latent_size, cfg.channels, cfg.strides, res_units=cfg.res_units
    )


def one_class(data: SplitData, label: int) -> SplitData:
    """The images of class ``label`` only, relabelled 0 (the data a single-class VAE learns from)."""
    keep = data.labels == label
    return dataclasses.replace(
        data,
        images=data.images[keep],
        labels=np.zeros(int(keep.sum()), dtype=np.int64),
        patients=data.patients[keep],
        classes=(data.classes[label],),
    )


def train_vae(
    train: SplitData, val: SplitData, cfg: TrainVAEConfig, device: torch.device
) -> tuple[ClassVAEs, list[dict]]:
    """Train the VAE(s) of ``cfg.mode`` on ``train``, select epochs on ``val``; return them with the history
    (one row per network and epoch; ``model`` names the class, or ``conditional``)."""
    seed_everything(cfg.seed)
    shape = tuple(train.images.shape[1:])
    if cfg.mode == "conditional":
        model = vae_network(shape, len(train.classes), cfg)
        history = fit_vae(model, train, val, cfg, device, "conditional")
        return ClassVAEs("conditional", [model]).eval(), history
    models, history = [], []
    for label, name in enumerate(train.classes):
        seed_everything(cfg.seed)  # each class's network starts from the same seed, whatever the class order
        model = vae_network(shape, 1, cfg)
        history += fit_vae(model, one_class(train, label), one_class(val, label), cfg, device, name)
        models.append(model)
    return ClassVAEs("per_class", models).eval(), history


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: TrainVAEConfig = load_section("train_vae")
    paths = load_section("paths")
    train, val = load_split(paths.processed, "train"), load_split(paths.processed, "val")
    device = select_device()
    vaes, history = train_vae(train, val, cfg, device)
    best = {
        name: min((h for h in history if h["model"] == name), key=lambda h: h["val_elbo"])
        for name in dict.fromkeys(h["model"] for h in history)
    }
    extra = {
        "best_epochs": {name: h["epoch"] for name, h in best.items()},
        "versions": versions(),
        "patients": sorted(set(train.patients.tolist()) | set(val.patients.tolist())),  # pseudonyms it learnt from
    }
    save_vae(paths.vae, vaes, train.classes, dataclasses.asdict(cfg), extra)
    reports = Path(paths.reports)
    keys = [k for k in history[0] if k != "best"]
    write_csv(reports / "vae_training.csv", history, keys)
    panels = {
        "loss (reconstruction + beta KL)": ["train_elbo", "val_elbo"],
        "reconstruction": ["train_reconstruction", "val_reconstruction"],
        "KL": ["train_kl", "val_kl"],
    }
    training_curves(reports / "figures" / "vae_training.png", history, panels)
    for name, h in best.items():
        logger.info("VAE %s on %s: best val loss %.2f at epoch %d", name, device, h["val_elbo"], h["epoch"])


if __name__ == "__main__":
    run_stage(main, "pipeline.train_vae")
