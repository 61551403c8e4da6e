"""Stage ``generate``: synthetic minority-class images from the conditional VAE.

Every class smaller than the majority is filled up to ``target_ratio`` x the majority count of the
training split. Latent codes come from the ``prior`` (z ~ N(0, temperature^2 I)) or the class
``posterior`` (a Gaussian fitted to the encoded training images of the class, its spread scaled by the
temperature) and go through the decoder of the class. Images are written as NIfTI files marked as
synthetic and listed with their provenance in a manifest.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import GenerateConfig, load_section
from pipeline.io.arrays import load_split
from pipeline.io.synthetic import write_manifest, write_synthetic_nifti
from pipeline.models.vae import ConditionalVAE, load_vae
from pipeline.plots import image_grid
from pipeline.runtime import file_sha256, select_device

__all__ = ["synthetic_counts", "latent_gaussian", "sample_images", "main"]

logger = logging.getLogger(__name__)


def synthetic_counts(class_counts: dict[str, int], target_ratio: float) -> dict[str, int]:
    """How many images to generate per class: ``round(target_ratio * majority) - count``, never negative;
    the majority class gets none."""
    majority = max(class_counts.values())
    return {
        name: max(0, round(target_ratio * majority) - count) if count < majority else 0
        for name, count in class_counts.items()
    }


@torch.no_grad()
def latent_gaussian(model: ConditionalVAE, images: np.ndarray, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and Cholesky factor of a Gaussian fitted to the posterior means of ``images`` of class ``label``."""
    device = next(model.parameters()).device
    x = torch.from_numpy(images).to(device)
    mu, _ = model.encode_forward(x, torch.full((len(x),), label, device=device))
    mu = mu.double().cpu()
    cov = torch.cov(mu.T).reshape(mu.shape[1], mu.shape[1]) if len(mu) > 1 else torch.zeros(mu.shape[1], mu.shape[1])
    cov = cov + 1e-4 * torch.eye(mu.shape[1], dtype=mu.dtype)  # ridge: fewer images than latent dimensions
    return mu.mean(0), torch.linalg.cholesky(cov)


@torch.no_grad()
def sample_images(
    model: ConditionalVAE, label: int, n: int, seed: int, temperature: float, sampler: str, class_images: np.ndarray
) -> np.ndarray:
    """``n`` images of class ``label`` as float32 ``(n, 1, X, Y)`` in [0, 1]; the same seed gives the same images."""
    if n == 0:
        return np.zeros((0, *model.image_shape), np.float32)
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(n, model.latent_size, generator=generator, dtype=torch.float64) * temperature
    if sampler == "posterior":
        mean, chol = latent_gaussian(model, class_images, label)
        z = mean + eps @ chol.T
    else:
        z = eps
    device = next(model.parameters()).device
    labels = torch.full((n,), label, device=device)
    return model.decode_forward(z.float().to(device), labels).cpu().numpy().astype(np.float32)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: GenerateConfig = load_section("generate")
    paths = load_section("paths")
    train = load_split(paths.processed, "train")
    model, checkpoint = load_vae(paths.vae, select_device())
    if tuple(checkpoint["classes"]) != train.classes:
        raise ValueError(f"{paths.vae} was trained on classes {checkpoint['classes']}, data has {train.classes}")
    checkpoint_sha = file_sha256(paths.vae)
    counts = synthetic_counts(train.counts(), cfg.target_ratio)
    out_dir = Path(paths.synthetic)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    rows, grid = [], []
    for label, name in enumerate(train.classes):
        seed = cfg.seed * 1000 + label  # one stream per class
        real = train.images[train.labels == label]
        images = sample_images(model, label, max(counts[name], 8), seed, cfg.temperature, cfg.sampler, real)
        for k, image in enumerate(tqdm(images[: counts[name]], desc=f"write {name}", unit="image")):
            rel = f"{name}/synthetic_{name}_{k:05d}.nii.gz"
            write_synthetic_nifti(out_dir / rel, image)
            rows.append(
                {
                    "path": rel,
                    "label": name,
                    "sampler": cfg.sampler,
                    "seed": seed,
                    "temperature": cfg.temperature,
                    "checkpoint_sha256": checkpoint_sha,
                }
            )
        grid += [(f"real {name}", real[:8]), (f"synthetic {name}", images[:8])]
    write_manifest(out_dir, rows)
    image_grid(Path(paths.reports) / "figures" / "real_vs_synthetic.png", grid)
    logger.info("generated %s synthetic images into %s", counts, out_dir)


if __name__ == "__main__":
    main()
