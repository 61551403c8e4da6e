"""Validation reconstruction MSE of the trained generator (any kind with a latent) against PCA with as many
components as the generator has latent dimensions (scikit-learn, fitted on the same training split).

Usage: .venv/bin/python bench/vae_vs_pca.py [PROCESSED_DIR] [VAE_CHECKPOINT] [--sweep 2,4,8,16]

Defaults are the pipeline's outputs (data/processed, models/generator.pt). With ``--sweep`` it instead trains
the generator of params.yaml's ``generator`` section with its settings at each listed latent size and compares
each with PCA of that size.
The VAE reconstructs each validation image from its posterior mean through the decoder of the image's class;
PCA projects onto its components and back.
For BreastMNIST at 28 x 28 (as in the closing note of the VAE issue):

    medaug import-medmnist ../shared/data/breastmnist/breastmnist.npz /tmp/breast --format nifti
    dvc exp run -S data.root=/tmp/breast -S preprocess.size=28 -S preprocess.modality_default=US \\
        -S generator.kind=vae -S 'vae.channels=[32,64]' -S 'vae.strides=[2,2]' -S vae.res_units=2 \\
        -S vae.beta=0.05 -S vae.epochs=100
    .venv/bin/python bench/vae_vs_pca.py
    .venv/bin/python bench/vae_vs_pca.py --sweep 2,4,8,16
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from pipeline.config import load_section
from pipeline.generators import build_generator, load_generator
from pipeline.io.arrays import load_split
from pipeline.runtime import select_device


def vae_reconstructions(generator, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.empty_like(images)
    for label in np.unique(labels):
        keep = labels == label
        out[keep] = generator.reconstruct(images[keep], int(label))
    return out


def compare(vaes, train, val) -> None:
    k = vaes.latent_size
    flat_train, flat_val = train.images.reshape(len(train), -1), val.images.reshape(len(val), -1)
    pca = PCA(n_components=k, random_state=0).fit(flat_train)
    pca_mse = float(((pca.inverse_transform(pca.transform(flat_val)) - flat_val) ** 2).mean())
    vae_mse = float(((vae_reconstructions(vaes, val.images, val.labels) - val.images) ** 2).mean())
    print(
        f"{k:3d} dimensions: validation MSE per pixel VAE {vae_mse:.5f}, PCA {pca_mse:.5f}, VAE/PCA "
        f"{vae_mse / pca_mse:.2f} ({'VAE better' if vae_mse < pca_mse else 'PCA better'}); "
        f"PCA explains {pca.explained_variance_ratio_.sum():.1%} of the training variance"
    )


def main(processed: Path, checkpoint: Path, sweep: list[int]) -> None:
    train, val = load_split(processed, "train"), load_split(processed, "val")
    train, val = (dataclasses.replace(d, images=d.images[:]) for d in (train, val))  # in memory: a small-data study
    print(f"train {train.images.shape}, val {val.images.shape}")
    if not sweep:
        generator, _ = load_generator(checkpoint)
        print(f"{generator.kind} {checkpoint}, mode {generator.mode}")
        compare(generator, train, val)
        return
    gen_cfg = load_section("generator")
    cfg = load_section(gen_cfg.kind)
    print(f"{gen_cfg.kind} settings from params.yaml: {cfg}")
    shape = tuple(train.images.shape[1:])
    for k in sweep:
        settings = dataclasses.replace(cfg, latent_size=k)
        generator = build_generator(gen_cfg.kind, shape, train.classes, gen_cfg.mode, settings, gen_cfg.seed)
        generator.fit(train, val, select_device())
        compare(generator, train, val)


if __name__ == "__main__":
    args = sys.argv[1:]
    sweep = [int(k) for k in args[args.index("--sweep") + 1].split(",")] if "--sweep" in args else []
    paths = [a for i, a in enumerate(args) if a != "--sweep" and (i == 0 or args[i - 1] != "--sweep")]
    main(
        Path(paths[0]) if paths else Path("data/processed"),
        Path(paths[1]) if len(paths) > 1 else Path("models/generator.pt"),
        sweep,
    )
