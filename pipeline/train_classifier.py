"""Stage ``train_classifier``: the same classifier trained with each remedy for class imbalance.

Strategies (``train_classifier.strategies``): ``real_only``; ``class_weight`` (cross-entropy weighted by inverse
class frequency); ``oversample`` (minority images repeated at random up to the majority count); ``classical``
(MONAI random flips, rotations/scaling, intensity changes and, in 2D, elastic deformation, applied on the fly);
``vae`` (real + the generate stage's synthetic images); ``vae_classical`` (both). All share architecture,
epochs, optimiser and seeds. On the validation split only: the epoch
(best balanced accuracy) and, for two classes, the decision threshold on the minority class's probability
(best balanced accuracy). Each chosen model then sees the untouched test split once. The summary gives mean and
standard deviation over seeds and 95% bootstrap confidence intervals over test images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Compose, Rand2DElastic, RandAdjustContrast, RandAffine, RandFlip, RandGaussianNoise
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from pipeline.config import TrainClassifierConfig, load_section
from pipeline.io.arrays import SplitData, load_split, write_json
from pipeline.io.synthetic import read_synthetic
from pipeline.metrics import bootstrap_ci, choose_threshold, classification_metrics, minority_classes, summarise_runs
from pipeline.models.classifier import build_classifier
from pipeline.runtime import seed_everything, select_device
from pipeline.transforms import plain_tensors

__all__ = [
    "STRATEGIES",
    "combine",
    "oversample",
    "class_weights",
    "classical_augmentation",
    "fit_classifier",
    "predict_proba",
    "compare_strategies",
    "main",
]

logger = logging.getLogger(__name__)

STRATEGIES = ("real_only", "class_weight", "oversample", "classical", "vae", "vae_classical")


def oversample(data: SplitData, seed: int) -> SplitData:
    """Every class filled up to the majority count with images of its own drawn at random (with replacement)."""
    rng = np.random.default_rng(seed)
    majority = np.bincount(data.labels).max()
    index = [np.arange(len(data))]
    for k in np.unique(data.labels):
        members = np.flatnonzero(data.labels == k)
        index.append(rng.choice(members, majority - len(members), replace=True))
    index = np.concatenate(index)
    return SplitData(data.images[index], data.labels[index], data.patients[index], data.classes)


def class_weights(data: SplitData) -> torch.Tensor:
    """Inverse-frequency weights n / (K * n_k) for the cross-entropy (scikit-learn's "balanced")."""
    counts = np.bincount(data.labels, minlength=len(data.classes)).astype(np.float32)
    return torch.from_numpy(len(data) / (len(data.classes) * np.maximum(counts, 1)))


def classical_augmentation(spatial_dims: int, seed: int) -> Compose:
    """The classical remedy, from MONAI: random flip, rotation and scaling, contrast and noise, and in 2D an
    elastic deformation; seeded. Applied to one ``(C, *spatial)`` image at a time."""
    transforms = [
        RandFlip(prob=0.5, spatial_axis=0),
        RandAffine(
            prob=0.5,
            rotate_range=[0.26] * (1 if spatial_dims == 2 else 3),
            scale_range=[0.1] * spatial_dims,
            padding_mode="border",
        ),
        RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)),
        RandGaussianNoise(prob=0.2, std=0.02),
    ]
    if spatial_dims == 2:
        transforms.append(Rand2DElastic(spacing=(16, 16), magnitude_range=(0.5, 1.5), prob=0.2, padding_mode="border"))
    augment = Compose(transforms)
    augment.set_random_state(seed)
    return augment


def combine(real: SplitData, synthetic: SplitData) -> SplitData:
    """The training split with the synthetic images appended."""
    return SplitData(
        images=np.concatenate([real.images, synthetic.images]),
        labels=np.concatenate([real.labels, synthetic.labels]),
        patients=np.concatenate([real.patients, synthetic.patients]),
        classes=real.classes,
    )


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    model.eval()
    out = [
        torch.softmax(model(torch.from_numpy(images[i : i + batch]).to(device)), 1).cpu()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out).numpy()


def fit_classifier(
    train: SplitData,
    val: SplitData,
    cfg: TrainClassifierConfig,
    seed: int,
    device: torch.device,
    desc: str = "fit",
    weighted: bool = False,
    augment: bool = False,
) -> tuple[torch.nn.Module, int]:
    """Train for ``cfg.epochs`` (with class-weighted loss and/or classical augmentation when asked); return the
    model of the epoch with the best validation balanced accuracy."""
    seed_everything(seed)
    weight = class_weights(train).to(device) if weighted else None
    transform = classical_augmentation(train.images.ndim - 2, seed) if augment else None
    model = build_classifier(train.images.shape[1:], len(train.classes), cfg.channels, cfg.blocks_per_level).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    dataset = TensorDataset(torch.from_numpy(train.images), torch.from_numpy(train.labels))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    best_score, best_epoch, best_state = -1.0, -1, None
    for epoch in tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False):
        model.train()
        for x, y in loader:
            if transform is not None:
                with plain_tensors():
                    x = torch.stack([torch.as_tensor(transform(image), dtype=torch.float32) for image in x])
            loss = F.cross_entropy(model(x.to(device)), y.to(device), weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = classification_metrics(val.labels, predict_proba(model, val.images, device), val.classes)[
            "balanced_accuracy"
        ]
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    return model, best_epoch


def compare_strategies(
    train: SplitData,
    val: SplitData,
    test: SplitData,
    synthetic: SplitData,
    cfg: TrainClassifierConfig,
    device: torch.device,
) -> tuple[dict, list[dict]]:
    """Train every strategy with every seed; return the per-strategy summary and the per-run records."""
    if set(test.patients) & set(train.patients) or set(test.patients) & set(val.patients):
        raise ValueError("test patients also appear in train or val: refusing to evaluate on leaked data")
    counts = train.counts()
    positive = train.classes.index(min(counts, key=counts.get))  # the smallest class, for a binary threshold
    ci_keys = ["balanced_accuracy", "macro_f1", "auroc", "accuracy"] + [f"recall_{c}" for c in minority_classes(counts)]
    runs, summary = [], {}
    for strategy in cfg.strategies:
        probas, thresholds = [], []
        for seed in cfg.seeds:
            if strategy in ("vae", "vae_classical"):
                data = combine(train, synthetic)
            else:
                data = oversample(train, seed) if strategy == "oversample" else train
            model, epoch = fit_classifier(
                data,
                val,
                cfg,
                seed,
                device,
                desc=f"{strategy} seed {seed}",
                weighted=strategy == "class_weight",
                augment=strategy in ("classical", "vae_classical"),
            )
            threshold = choose_threshold(val.labels, predict_proba(model, val.images, device), positive)
            proba = predict_proba(model, test.images, device)  # the one look at the test split
            metrics = classification_metrics(test.labels, proba, test.classes, threshold, positive)
            probas.append(proba)
            thresholds.append(threshold)
            runs.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "best_epoch": epoch,
                    "threshold": threshold,
                    "train_images": data.counts(),
                    "test": metrics,
                }
            )
            logger.info("%s seed %d: test balanced accuracy %.3f", strategy, seed, metrics["balanced_accuracy"])
        summary[strategy] = summarise_runs([r["test"] for r in runs if r["strategy"] == strategy])
        intervals = bootstrap_ci(test.labels, probas, thresholds, test.classes, ci_keys, positive=positive)
        for key, (low, high) in intervals.items():
            summary[strategy][f"{key}_ci_low"], summary[strategy][f"{key}_ci_high"] = low, high
    summary["minority_classes"] = minority_classes(counts)
    summary["seeds"] = len(cfg.seeds)
    summary["threshold"] = f"chosen on validation for class {train.classes[positive]}" if len(counts) == 2 else "argmax"
    return summary, runs


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: TrainClassifierConfig = load_section("train_classifier")
    paths = load_section("paths")
    train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
    synthetic = read_synthetic(paths.synthetic, train.classes)
    summary, runs = compare_strategies(train, val, test, synthetic, cfg, select_device())
    write_json(Path(paths.reports) / "metrics.json", summary)
    write_json(Path(paths.reports) / "classifier_runs.json", runs)


if __name__ == "__main__":
    main()
