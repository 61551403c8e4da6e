"""Stage ``latent``: the VAE as dimensionality reduction, against PCA and ICA, and a look at its latent space.

For each size in ``latent.sizes`` an unconditional VAE (generator ``vae``: params.yaml's ``vae`` settings,
``latent.epochs`` epochs; it never sees the label, so its codes are fair features) learns the training split. At
the same number of components, scikit-learn's PCA and FastICA are fitted to the same images. Reported, on the test
split: reconstruction MSE per pixel of each method; balanced accuracy of a logistic regression on the VAE means and
on the PCA components; PSNR and SSIM (MONAI metrics) of noisy and of VAE-denoised images against the clean ones.
Pictures (from the largest VAE): a 2D projection of the test latents coloured by class, interpolation strips
between real images within and across classes, and a traversal of the latent dimensions with the highest KL.

Memory: the VAEs read the training split a batch at a time, PCA and FastICA are fitted to at most
:data:`FIT_IMAGES` training images (a seeded random subset beyond that) and transform it a chunk at a time; the test
split, on which every measure is taken (per-image PSNR/SSIM, noise, reconstructions), is read into memory whole.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from monai.metrics import PSNRMetric, SSIMMetric
from sklearn.decomposition import PCA, FastICA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.config import LatentConfig, VAEConfig, load_section
from pipeline.generators.vae import VAEGenerator
from pipeline.io.arrays import ImageArray, SplitData, batches, load_split, write_csv, write_json
from pipeline.models.vae import ConditionalVAE, decode_codes, encode_images, kl_per_dimension
from pipeline.planning import check_before_training
from pipeline.plots import image_grid, latent_projection, reduction_curve
from pipeline.reporting.figures import (
    LATENT_DENOISING,
    LATENT_INTERPOLATION,
    LATENT_PROJECTION,
    LATENT_REDUCTION,
    LATENT_TRAVERSAL,
)
from pipeline.runtime import compute_device, run_stage

__all__ = [
    "train_unconditional_vae",
    "reduction_errors",
    "latent_classification",
    "denoising",
    "main",
]

logger = logging.getLogger(__name__)

FIT_IMAGES = 4096  # at most this many training images fit PCA and ICA (a seeded sample beyond)


def _unlabelled(data: SplitData) -> SplitData:
    return dataclasses.replace(data, labels=np.zeros(len(data), dtype=np.int64), classes=("all",))


def train_unconditional_vae(
    train: SplitData, val: SplitData, size: int, epochs: int, cfg: VAEConfig, device, seed: int = 0
) -> ConditionalVAE:
    """A VAE with ``size`` latent dimensions on every training image, label unseen; best epoch on ``val``."""
    cfg = dataclasses.replace(cfg, latent_size=size, epochs=epochs, kl_warmup_epochs=min(cfg.kl_warmup_epochs, epochs))
    generator = VAEGenerator(tuple(train.images.shape[1:]), (f"latent {size}",), "conditional", cfg, seed)
    generator.fit(_unlabelled(train), _unlabelled(val), device)
    if generator.vaes is None:
        raise RuntimeError("VAEGenerator.fit left no trained network")
    return generator.vaes.network(0)


def _linear_methods(train: np.ndarray, size: int, seed: int) -> dict:
    """PCA and FastICA with ``size`` components fitted to flattened ``train`` images."""
    return {
        "pca": PCA(n_components=size, random_state=seed).fit(train),
        "ica": FastICA(n_components=size, whiten="unit-variance", max_iter=1000, tol=1e-3, random_state=seed).fit(
            train
        ),
    }


def fit_images(train: SplitData, seed: int, most: int = FIT_IMAGES) -> np.ndarray:
    """The flattened training images PCA and ICA are fitted to: all of them, or ``most`` drawn at random (seeded, in
    the split's order) when there are more: their fits hold the images in memory several times over."""
    index = np.arange(len(train))
    if len(train) > most:
        index = np.sort(np.random.default_rng(seed).choice(len(train), most, replace=False))
    return np.asarray(train.images[index]).reshape(len(index), -1)


def reduction_errors(
    model: ConditionalVAE, train: SplitData, test: SplitData, seed: int, device
) -> tuple[dict[str, float], dict]:
    """Test reconstruction MSE per pixel of the VAE (image decoded from its posterior mean) and of PCA and ICA
    with as many components as the VAE has latent dimensions, fitted to the training images; also those fitted
    PCA and ICA."""
    test_images = np.asarray(test.images)  # the split the errors are measured on, whole (module docstring)
    flat_test = test_images.reshape(len(test), -1)
    decoded = decode_codes(model, encode_images(model, test_images, device)[0], device)
    errors = {"vae": float(np.mean((decoded - test_images) ** 2))}
    methods = _linear_methods(fit_images(train, seed), model.latent_size, seed)
    for name, method in methods.items():
        reconstructed = np.clip(method.inverse_transform(method.transform(flat_test)), 0, 1)
        errors[name] = float(np.mean((reconstructed - flat_test) ** 2))
    return errors, methods


def _transformed(method, images: ImageArray, chunk: int = 4096) -> np.ndarray:
    """``method.transform`` of the flattened images, a chunk at a time (row by row the same numbers)."""
    parts = [method.transform(x.reshape(len(x), -1)) for _, x in batches(images, chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, method.n_components_))


def latent_classification(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray
) -> dict[str, float]:
    """Accuracy and balanced accuracy on the test split of a logistic regression (standardised features,
    balanced class weights) fitted to the training features."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced"))
    predicted = clf.fit(train_features, train_labels).predict(test_features)
    return {
        "accuracy": float(accuracy_score(test_labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(test_labels, predicted)),
    }


def _mean(values: object) -> float:
    """The mean of a MONAI metric's values (one per image, as a tensor when the inputs are tensors)."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"expected a tensor of metric values, got {type(values).__name__}")
    return float(values.mean())


@torch.no_grad()
def denoising(
    model: ConditionalVAE, images: np.ndarray, levels: tuple[float, ...], seed: int, device
) -> tuple[list[dict], dict[float, tuple[np.ndarray, np.ndarray]]]:
    """For each noise level: mean PSNR and SSIM (data range 1) against the clean ``images`` of the noisy images
    (Gaussian noise, clipped to [0, 1]) and of the VAE's reconstructions of them; also the first images, noisy
    and denoised, for pictures."""
    spatial_dims = images.ndim - 2
    rng = np.random.default_rng(seed)
    clean = torch.from_numpy(images)
    rows, examples = [], {}
    for level in levels:
        noisy = np.clip(images + rng.normal(0, level, images.shape), 0, 1).astype(np.float32)
        denoised = decode_codes(model, encode_images(model, noisy, device)[0], device)
        row = {"noise_sd": level}
        for name, candidate in (("noisy", noisy), ("denoised", denoised)):
            y = torch.from_numpy(candidate)
            row[f"psnr_{name}"] = _mean(PSNRMetric(max_val=1.0)(y, clean))
            row[f"ssim_{name}"] = _mean(SSIMMetric(spatial_dims=spatial_dims, data_range=1.0)(y, clean))
        rows.append(row)
        examples[level] = (noisy[:8], denoised[:8])
    return rows, examples


def _strip(model: ConditionalVAE, a: np.ndarray, b: np.ndarray, steps: int, device) -> np.ndarray:
    """Images decoded along the straight line between the codes of images ``a`` and ``b``."""
    mu, _ = encode_images(model, np.stack([a, b]), device)
    t = np.linspace(0, 1, steps)[:, None]
    return decode_codes(model, (1 - t) * mu[0] + t * mu[1], device)


def _pictures(model: ConditionalVAE, test: SplitData, cfg: LatentConfig, reports: Path, device) -> None:
    mu, logvar = encode_images(model, test.images, device)
    latent_projection(LATENT_PROJECTION.path(reports), mu, test.labels, test.classes, cfg.tsne)
    # within the first class (its first two images), then from its first image to the first of each other class
    first = {k: np.flatnonzero(test.labels == k) for k in range(len(test.classes)) if (test.labels == k).any()}
    start_class, start = next(iter(first.items()))
    pairs = [(start_class, start[0], start[1])] if len(start) > 1 else []
    pairs += [(k, start[0], idx[0]) for k, idx in first.items() if k != start_class]
    strips = [(f"{test.classes[start_class]} to {test.classes[k]}", (i, j)) for k, i, j in pairs]
    rows = [(title, _strip(model, test.images[i], test.images[j], 8, device)) for title, (i, j) in strips]
    image_grid(LATENT_INTERPOLATION.path(reports), rows, columns=8)
    kl = kl_per_dimension(torch.from_numpy(mu), torch.from_numpy(logvar)).numpy()
    base = mu.mean(0)
    traversal = []
    for dim in np.argsort(-kl, kind="stable")[: cfg.traversal_dims]:
        codes = np.repeat(base[None], 7, axis=0)
        codes[:, dim] = np.linspace(-3, 3, 7)
        traversal.append((f"dimension {dim} (KL {kl[dim]:.2f} nats), -3 to +3", decode_codes(model, codes, device)))
    image_grid(LATENT_TRAVERSAL.path(reports), traversal, columns=7)


def keyed_metrics(reduction: list[dict], classification: list[dict], noise: list[dict]) -> dict:
    """The stage's numbers keyed by latent size (and feature kind, noise level), not in lists: ``dvc metrics
    show/diff`` drops lists, so VAE against PCA would not show there. ``{"reduction": {size: {vae_mse, pca_mse,
    ica_mse}}, "classification": {size: {features: scores}}, "denoising": {noise sd: scores}}``."""
    out: dict = {"reduction": {}, "classification": {}, "denoising": {}}
    for row in reduction:
        out["reduction"][str(row["components"])] = {k: v for k, v in row.items() if k != "components"}
    for row in classification:
        size = out["classification"].setdefault(str(row["components"]), {})
        size[row["features"]] = {k: v for k, v in row.items() if k not in ("components", "features")}
    for row in noise:
        out["denoising"][str(row["noise_sd"])] = {k: v for k, v in row.items() if k != "noise_sd"}
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: LatentConfig = load_section("latent")
    vae_cfg: VAEConfig = load_section("vae")
    seed = load_section("generator").seed
    paths = load_section("paths")
    check_before_training(paths.processed)  # refuse a dataset these settings cannot run on, before training
    train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
    test = dataclasses.replace(test, images=np.asarray(test.images))  # the split every measure is taken on
    device = compute_device()
    pixels = int(np.prod(train.images.shape[1:]))
    if max(cfg.sizes) > min(len(train), FIT_IMAGES, pixels):  # checked before any training, not after smaller sizes
        raise ValueError(
            f"latent.sizes: {max(cfg.sizes)} components need at least as many training images and pixels "
            f"(here {min(len(train), FIT_IMAGES)} images of {pixels} pixels); use smaller sizes"
        )
    reduction, classification, models = [], [], {}
    for size in sorted(set(cfg.sizes)):
        model = models[size] = train_unconditional_vae(train, val, size, cfg.epochs, vae_cfg, device, seed)
        errors, methods = reduction_errors(model, train, test, seed, device)
        reduction.append({"components": size, **{f"{k}_mse": v for k, v in errors.items()}})
        features = {
            "vae": (encode_images(model, train.images, device)[0], encode_images(model, test.images, device)[0]),
            "pca": (_transformed(methods["pca"], train.images), _transformed(methods["pca"], test.images)),
        }
        for name, (train_x, test_x) in features.items():
            scores = latent_classification(train_x, train.labels, test_x, test.labels)
            classification.append({"components": size, "features": name, **scores})
    largest = models[max(models)]
    noise, examples = denoising(largest, np.asarray(test.images), cfg.noise_levels, seed, device)  # read whole above
    out, reports = Path(paths.reports) / "latent", Path(paths.reports)
    write_json(out / "metrics.json", keyed_metrics(reduction, classification, noise))
    write_csv(out / "reduction.csv", reduction)
    reduction_curve(LATENT_REDUCTION.path(reports), reduction)
    denoise_rows = [("clean", test.images[:8])]
    for level, (noisy, denoised) in examples.items():
        denoise_rows += [(f"noise sd {level}", noisy), (f"VAE reconstruction of noise sd {level}", denoised)]
    image_grid(LATENT_DENOISING.path(reports), denoise_rows, columns=8)
    _pictures(largest, test, cfg, reports, device)
    for row in reduction:
        logger.info(
            "%d components: test MSE VAE %.5f, PCA %.5f, ICA %.5f",
            row["components"],
            row["vae_mse"],
            row["pca_mse"],
            row["ica_mse"],
        )


if __name__ == "__main__":
    run_stage(main, "pipeline.latent")
