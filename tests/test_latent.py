"""The latent stage: the VAE against PCA/ICA on data whose answer is known, features, denoising metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.io.arrays import SplitData
from pipeline.latent import denoising, latent_classification, reduction_errors, train_unconditional_vae
from tests.generators.test_vae import CFG

CPU = torch.device("cpu")


def blob_on_a_circle(n: int, seed: int, size: int = 16) -> SplitData:
    """A Gaussian blob whose centre moves around a circle: one latent angle, but a curve in pixel space that no
    two-dimensional linear subspace holds. Label: which half of the circle."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    grid = np.arange(size, dtype=np.float32)
    cx, cy = size / 2 + 4.5 * np.cos(angle), size / 2 + 4.5 * np.sin(angle)
    images = np.exp(
        -((grid[None, :, None] - cx[:, None, None]) ** 2 + (grid[None, None, :] - cy[:, None, None]) ** 2) / 4
    )
    labels = (angle > np.pi).astype(np.int64)
    return SplitData(images[:, None].astype(np.float32), labels, np.array([f"P{i}" for i in range(n)]), ("a", "b"))


def test_on_a_nonlinear_manifold_the_vae_beats_pca_and_ica_at_two_components():
    train, val, test = blob_on_a_circle(400, 0), blob_on_a_circle(80, 1), blob_on_a_circle(100, 2)
    cfg = dataclasses.replace(CFG, batch_size=32, learning_rate=0.005, kl_warmup_epochs=5, beta=0.1)
    model = train_unconditional_vae(train, val, size=2, epochs=40, cfg=cfg, device=CPU)
    errors, methods = reduction_errors(model, train, test, seed=0, device=CPU)
    assert set(methods) == {"pca", "ica"} and methods["pca"].n_components_ == 2
    assert errors["vae"] < 0.6 * errors["pca"] and errors["vae"] < 0.6 * errors["ica"], errors


def test_latent_classification_scores_separable_and_random_features():
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 2, 200), rng.integers(0, 2, 100)
    separable = latent_classification(
        y_train[:, None] + rng.normal(0, 0.1, (200, 3)), y_train, y_test[:, None] + rng.normal(0, 0.1, (100, 3)), y_test
    )
    assert separable == {"accuracy": 1.0, "balanced_accuracy": 1.0}
    noise = latent_classification(rng.normal(size=(200, 3)), y_train, rng.normal(size=(100, 3)), y_test)
    assert 0.3 < noise["balanced_accuracy"] < 0.7


def test_denoising_reports_psnr_and_ssim_of_noisy_and_reconstructed_images():
    data = blob_on_a_circle(12, 3)
    model = train_unconditional_vae(data, data, size=2, epochs=1, cfg=CFG, device=CPU)
    rows, examples = denoising(model, data.images, (0.05, 0.2), seed=7, device=CPU)
    assert [r["noise_sd"] for r in rows] == [0.05, 0.2]
    assert rows[0]["psnr_noisy"] > rows[1]["psnr_noisy"] and rows[0]["ssim_noisy"] > rows[1]["ssim_noisy"]
    rng = np.random.default_rng(7)  # the same noise, drawn as the function draws it, for an exact PSNR
    noisy = np.clip(data.images + rng.normal(0, 0.05, data.images.shape), 0, 1).astype(np.float32)
    mse = ((noisy - data.images) ** 2).reshape(12, -1).mean(1)
    assert rows[0]["psnr_noisy"] == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-4)
    assert examples[0.05][0].shape == examples[0.05][1].shape == (8, 1, 16, 16)
    assert all(0 <= r["ssim_denoised"] <= 1 and np.isfinite(r["psnr_denoised"]) for r in rows)
