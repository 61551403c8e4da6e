"""Validation reconstruction MSE of the trained VAE against PCA with as many components as the VAE has latent
dimensions (scikit-learn, fitted on the same training split).

Usage: .venv/bin/python bench/vae_vs_pca.py [PROCESSED_DIR] [VAE_CHECKPOINT]

Defaults are the pipeline's outputs (data/processed, models/vae.pt). The VAE reconstructs each validation image
from its posterior mean through the decoder of the image's class; PCA projects onto its components and back.
For BreastMNIST at 28 x 28 (as in the closing note of the VAE issue):

    medaug import-medmnist ../shared/data/breastmnist/breastmnist.npz /tmp/breast --format nifti
    dvc exp run -S data.root=/tmp/breast -S preprocess.size=28 -S 'train_vae.channels=[16,32]' \\
        -S 'train_vae.strides=[2,2]' -S preprocess.modality_default=US
    .venv/bin/python bench/vae_vs_pca.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from pipeline.generate import class_latents
from pipeline.io.arrays import load_split
from pipeline.models.vae import load_vae


@torch.no_grad()
def vae_reconstructions(vaes, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.empty_like(images)
    for label in np.unique(labels):
        keep = labels == label
        z = torch.from_numpy(class_latents(vaes, images[keep], int(label))).float()
        out[keep] = vaes.decode(z, int(label)).numpy()
    return out


def main(processed: Path, checkpoint: Path) -> None:
    train, val = load_split(processed, "train"), load_split(processed, "val")
    vaes, _ = load_vae(checkpoint)
    k = vaes.latent_size
    flat_train, flat_val = train.images.reshape(len(train), -1), val.images.reshape(len(val), -1)
    pca = PCA(n_components=k, random_state=0).fit(flat_train)
    pca_mse = float(((pca.inverse_transform(pca.transform(flat_val)) - flat_val) ** 2).mean())
    vae_mse = float(((vae_reconstructions(vaes, val.images, val.labels) - val.images) ** 2).mean())
    print(f"train {train.images.shape}, val {val.images.shape}; VAE mode {vaes.mode}, {k} latent dimensions")
    print(f"validation reconstruction MSE per pixel: VAE {vae_mse:.5f}, PCA({k}) {pca_mse:.5f}")
    print(f"VAE / PCA = {vae_mse / pca_mse:.2f} ({'VAE better' if vae_mse < pca_mse else 'PCA better'})")
    print(f"PCA({k}) explains {pca.explained_variance_ratio_.sum():.1%} of the training variance")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else Path("data/processed"), Path(args[1]) if len(args) > 1 else Path("models/vae.pt"))
