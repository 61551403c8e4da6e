"""The remedies for class imbalance that the ``train_classifier`` stages compare, as training-set recipes.

Each strategy is a training set plus two switches of the shared training loop (class-weighted loss, classical
augmentation on the fly):

- ``real_only``: the real training split;
- ``class_weight``: the real split, loss weighted by inverse class frequency;
- ``oversample``: the real split, minority images repeated at random up to the majority count;
- ``classical``: the real split, classical augmentation on the fly;
- ``vae``: real + ``ratio`` x each minority class's gap to the majority in synthetic images;
- ``vae_classical``: as ``vae``, with classical augmentation;
- ``synthetic_only``: synthetic images only, as many per class as the real split has (train on synthetic,
  test on real).

Each classifier seed draws its own share of the generate stage's pool (a random order of each class's images,
fixed by the seed; a smaller ratio takes a prefix of the order a larger one takes, so it uses a subset of the
same seed's images). Which synthetic images a classifier sees is then part of what varies between seeds, and
the intervals over seeds include it: on the demo, two pools drawn by different generate seeds moved the vae
strategy's difference to real_only from -0.035 to +0.006, more than its interval from one fixed draw showed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.augment import BatchAugment
from pipeline.config import STRATEGY_NAMES
from pipeline.io.arrays import SplitData

__all__ = [
    "STRATEGIES",
    "DataLeakError",
    "Recipe",
    "training_recipe",
    "oversample",
    "class_weights",
    "classical_augmentation",
    "take_synthetic",
    "combine",
    "check_no_test_patients",
]

STRATEGIES = STRATEGY_NAMES


class DataLeakError(ValueError):
    """Images of test patients reached something that learns (a VAE or a classifier)."""


@dataclass(frozen=True)
class Recipe:
    """What one strategy trains on and how."""

    data: SplitData
    weighted: bool = False  # cross-entropy weighted by inverse class frequency
    augment: bool = False  # classical augmentation of each training batch (pipeline.augment)


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


def classical_augmentation(spatial_dims: int, seed: int) -> BatchAugment:
    """The classical remedy: random flip, rotation and scaling, contrast and noise, and in 2D an elastic
    deformation, with MONAI's ranges (see :mod:`pipeline.augment`); seeded. Applied to a whole ``(B, C, *spatial)``
    batch at once, on its device."""
    return BatchAugment(spatial_dims, seed)


def take_synthetic(synthetic: SplitData, wanted: dict[str, int], seed: int | None = None) -> SplitData:
    """``wanted[class]`` synthetic images of each class: the first ones of a random order of the class's images
    drawn from ``seed`` (manifest order when ``seed`` is None); an error naming the params when the generated
    pool is too small."""
    rng = None if seed is None else np.random.default_rng([seed, 0x5EED])
    index = []
    for k, name in enumerate(synthetic.classes):
        members = np.flatnonzero(synthetic.labels == k)
        if len(members) < wanted.get(name, 0):
            raise ValueError(
                f"the synthetic pool has {len(members)} '{name}' images but {wanted[name]} are needed: raise "
                "generate.pool_ratio (or set generate.every_class: true for synthetic_only), or lower "
                "train_classifier.synthetic_ratio / ablation_ratios"
            )
        if rng is not None:
            members = rng.permutation(members)
        index.append(members[: wanted.get(name, 0)])
    index = np.concatenate(index) if index else np.zeros(0, int)
    return SplitData(synthetic.images[index], synthetic.labels[index], synthetic.patients[index], synthetic.classes)


def combine(real: SplitData, synthetic: SplitData) -> SplitData:
    """The training split with the synthetic images appended."""
    return SplitData(
        images=np.concatenate([real.images, synthetic.images]),
        labels=np.concatenate([real.labels, synthetic.labels]),
        patients=np.concatenate([real.patients, synthetic.patients]),
        classes=real.classes,
    )


def training_recipe(strategy: str, train: SplitData, synthetic: SplitData | None, ratio: float, seed: int) -> Recipe:
    """The training set and switches of ``strategy`` (see the module docstring); ``ratio`` is for the vae ones."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    counts = train.counts()
    majority = max(counts.values())
    if strategy in ("vae", "vae_classical", "synthetic_only") and synthetic is None:
        raise ValueError(f"strategy {strategy} needs the generate stage's synthetic images")
    if strategy in ("vae", "vae_classical"):
        gaps = {name: round(ratio * (majority - n)) for name, n in counts.items()}
        return Recipe(combine(train, take_synthetic(synthetic, gaps, seed)), augment=strategy == "vae_classical")
    if strategy == "synthetic_only":
        return Recipe(take_synthetic(synthetic, counts, seed))
    if strategy == "oversample":
        return Recipe(oversample(train, seed))
    return Recipe(train, weighted=strategy == "class_weight", augment=strategy == "classical")


def check_no_test_patients(test: SplitData, **seen: np.ndarray) -> None:
    """Raise :class:`DataLeakError` when a test patient's pseudonym is among the patients some learner saw
    (``seen``: name -> patient pseudonyms, e.g. ``train=..., val=..., vae=...``)."""
    test_patients = set(test.patients.tolist())
    for what, patients in seen.items():
        leaked = test_patients & set(np.asarray(patients).tolist())
        if leaked:
            raise DataLeakError(
                f"{len(leaked)} test patient(s) also appear in {what}: refusing to evaluate on leaked data; "
                "re-run preprocess (patient-level splits) and everything after it"
            )
