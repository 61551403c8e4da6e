"""The remedies for class imbalance that the ``train_classifier`` stages compare, as training-set recipes.

Each strategy is a :class:`Remedy` in the registry :data:`REMEDIES`: its simplicity rank (the recommendation's
tie-break), whether and how it trains on the synthetic pool (which also sizes the pool, :func:`synthetic_demand`),
its training cost, and how it builds its training set plus a few switches of the shared training loop (the loss,
classical augmentation on the fly, Balanced-MixUp). A new remedy is one :func:`register` call. Every one trains the
same network with the same epochs and seeds:

- ``real_only``: the real training split;
- ``class_weight``: the real split, loss weighted by inverse class frequency;
- ``oversample``: the real split, minority images repeated at random up to the majority count;
- ``classical``: the real split, classical augmentation on the fly;
- ``smote``: the real split, each minority class filled up to the majority count by SMOTE (Chawla et al. 2002) on
  pixels (:func:`smote`);
- ``logit_adjust``: the real split, trained on the logit-adjusted cross-entropy (Menon et al. 2021,
  :func:`pipeline.models.losses.logit_adjusted_cross_entropy`), ``train_classifier.logit_adjust_tau``;
- ``focal``: the real split, trained on the focal loss (Lin et al. 2017, :func:`pipeline.models.losses.focal_loss`),
  ``train_classifier.focal_gamma``;
- ``mixup``: the real split, each batch mixed with a class-balanced batch (Balanced-MixUp, Galdran et al. 2021,
  :class:`pipeline.augment.BalancedMixUp`), ``train_classifier.mixup_alpha``;
- ``vae``: real + ``ratio`` x each minority class's gap to the majority in synthetic images, and with
  ``all_classes`` (``train_classifier.synthetic_all_classes``) > 0 every class, the majority included,
  ``all_classes`` x ``ratio`` x the largest gap more: a classifier shown synthetic images of the minority only can
  learn that the generator's look (e.g. missing fine detail of real scans) means
  "minority" and call real minority images, which have that detail, the majority;
- ``vae_classical``: as ``vae``, with classical augmentation;
- ``synthetic_only``: synthetic images only, as many per class as the real split has (train on synthetic,
  test on real).

Each classifier seed draws its own share of the generate stage's pool (a random order of each class's images,
fixed by the seed; a smaller ratio takes a prefix of the order a larger one takes, so it uses a subset of the
same seed's images). Which synthetic images a classifier sees is then part of what varies between seeds, and
the intervals over seeds include it (how much the pool's draw moves a result: docs/measurements.md).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.config import TrainClassifierConfig
from pipeline.io.arrays import ImageArray, Rows, SplitData
from pipeline.models.recipe import Recipe

__all__ = [
    "REMEDIES",
    "Remedy",
    "Inputs",
    "register",
    "remedy",
    "needs_synthetic",
    "classifier_runs",
    "synthetic_take",
    "synthetic_demand",
    "pool_sizes",
    "DataLeakError",
    "Recipe",
    "training_recipe",
    "oversample",
    "smote",
    "take_synthetic",
    "combine",
    "check_no_test_patients",
]


class DataLeakError(ValueError):
    """Images of test patients reached something that learns (a VAE or a classifier)."""


def oversample(data: SplitData, seed: int) -> SplitData:
    """Every class filled up to the majority count with images of its own drawn at random (with replacement)."""
    rng = np.random.default_rng(seed)
    majority = np.bincount(data.labels).max()
    index = [np.arange(len(data))]
    for k in np.unique(data.labels):
        members = np.flatnonzero(data.labels == k)
        index.append(rng.choice(members, majority - len(members), replace=True))
    return data.select(np.concatenate(index))  # images on disk stay there: rows picked as the batches are read


def smote(data: SplitData, seed: int) -> SplitData:
    """Every class filled up to the majority count with SMOTE images (Chawla et al. 2002; imbalanced-learn's
    :class:`~imblearn.over_sampling.SMOTE`, ``random_state=seed``): each new image is ``a + u (b - a)``, ``a`` a
    random image of its class, ``b`` one of the ``k`` nearest images of the same class to ``a`` in pixel space,
    ``u`` uniform in [0, 1], with ``k = min(5, smallest class count - 1)``.

    It interpolates the flattened pixels of whole images. That is what SMOTE is defined as: a point on the segment
    between two samples of one class; the images are small (64 px in the demo, 28-64 px for MedMNIST), so their
    pixels are the samples' features. Interpolating a classifier's features instead would need a decoder to turn
    the new features back into images for the network to train on (as the vae strategies' generator does).

    The real images come first and unchanged; the new ones follow with patient pseudonyms
    ``smote-<class>-<i>``, which cannot collide with the real ``P<hex>`` pseudonyms.

    Raises:
        ValueError: a class has a single image (SMOTE needs a neighbour of the same class).
    """
    from imblearn.over_sampling import SMOTE  # imported here: only this strategy needs imbalanced-learn

    counts = np.bincount(data.labels, minlength=len(data.classes))
    single = [data.classes[k] for k in np.flatnonzero(counts == 1)]
    if single:
        raise ValueError(
            f"strategy smote needs at least 2 training images of each class, but class(es) {', '.join(single)} "
            "have 1: SMOTE interpolates between an image and a neighbour of its own class; use oversample, or more data"
        )
    k = min(5, int(counts[counts > 0].min()) - 1)
    flat, labels = SMOTE(k_neighbors=k, random_state=seed).fit_resample(
        np.asarray(data.images).reshape(len(data), -1), data.labels
    )
    new_images, new_labels = flat[len(data) :], labels[len(data) :]  # SMOTE returns the input first, unchanged
    made: Counter[int] = Counter()
    patients = []
    for y in new_labels:
        patients.append(f"smote-{data.classes[y]}-{made[y]}")
        made[y] += 1
    return SplitData(
        images=stack([data.images, new_images.reshape(-1, *data.images.shape[1:]).astype(data.images.dtype)]),
        labels=np.concatenate([data.labels, new_labels.astype(data.labels.dtype)]),
        patients=np.concatenate([data.patients, np.array(patients, dtype=str)]),
        classes=data.classes,
    )


def classifier_runs(cfg: TrainClassifierConfig) -> list[tuple[str, str, float]]:
    """(output folder name, strategy, synthetic ratio) of every remedy the train_classifier stage trains: each
    strategy (its ratio ``synthetic_ratio``, used by the vae ones), then the vae strategy at each ablation ratio
    (``ablation_<ratio>``)."""
    strategies = [(s, s, cfg.synthetic_ratio) for s in cfg.strategies]
    return strategies + [(f"ablation_{r}", "vae", r) for r in cfg.ablation_ratios]


def synthetic_take(strategy: str, counts: dict[str, int], ratio: float, all_classes: float = 0.0) -> dict[str, int]:
    """How many synthetic images of each class one training of ``strategy`` takes from the pool, for a training
    split of ``counts`` images per class (:meth:`Remedy.take`)."""
    return remedy(strategy).take(counts, ratio, all_classes)


def _take(pool: str, counts: dict[str, int], ratio: float, all_classes: float) -> dict[str, int]:
    """The synthetic images per class of a remedy whose ``pool`` is ``added``: ``ratio`` x the class's gap to the
    majority plus, for every class alike, ``all_classes`` x ``ratio`` x the largest gap; ``only``: as many as the
    real split has; ``none``: none."""
    if pool == "added":
        majority = max(counts.values())
        shared = round(all_classes * ratio * (majority - min(counts.values())))  # for every class alike
        return {name: round(ratio * (majority - n)) + shared for name, n in counts.items()}
    if pool == "only":
        return dict(counts)
    return {name: 0 for name in counts}


def synthetic_demand(counts: dict[str, int], cfg: TrainClassifierConfig) -> dict[str, int]:
    """The synthetic images of each class that the train_classifier stage needs at most in one training, over
    every remedy it trains (:func:`classifier_runs`): what the generate stage's pool must hold. The one place this is
    decided: the generate stage sizes the pool with it and each training takes its :func:`synthetic_take` of it."""
    takes = [
        synthetic_take(strategy, counts, ratio, cfg.synthetic_all_classes)
        for _, strategy, ratio in classifier_runs(cfg)
    ]
    return {name: max([take[name] for take in takes], default=0) for name in counts}


def pool_sizes(
    demand: Mapping[str, int], class_counts: Mapping[str, int], margin: float = 0.0, every_class: bool = False
) -> dict[str, int]:
    """How many images to generate per class: the class's ``demand`` (what the classifier stage takes at most,
    :func:`synthetic_demand`) plus a ``margin`` share on top (rounded up), or, with
    ``every_class``, at least the class's own count of real training images (``class_counts``)."""
    return {
        name: max(math.ceil(demand.get(name, 0) * (1 + margin) - 1e-9), count if every_class else 0)
        for name, count in class_counts.items()
    }


def take_synthetic(synthetic: SplitData, wanted: dict[str, int], seed: int | None = None) -> SplitData:
    """``wanted[class]`` synthetic images of each class: the first ones of a random order of the class's images
    drawn from ``seed`` (manifest order when ``seed`` is None); an error naming the params when the generated
    pool is too small."""
    rng = None if seed is None else np.random.default_rng([seed, 0x5EED])
    parts: list[np.ndarray] = []
    for k, name in enumerate(synthetic.classes):
        members = np.flatnonzero(synthetic.labels == k)
        if len(members) < wanted.get(name, 0):
            raise ValueError(
                f"the synthetic pool has {len(members)} '{name}' images but {wanted[name]} are needed. The generate "
                "stage sizes the pool to what train_classifier's settings need (synthetic_demand), so either "
                "generate.filter left the class short (generate's warning, summary.json's filtering: lower "
                "generate.filter_quantile, raise generate.manifold_k or remove a filter from the list "
                "generate.filter), or the pool was made for other train_classifier settings: re-run generate "
                "(dvc repro)"
            )
        if rng is not None:
            members = rng.permutation(members)
        parts.append(members[: wanted.get(name, 0)])
    return synthetic.select(np.concatenate(parts) if parts else np.zeros(0, int))


def combine(real: SplitData, synthetic: SplitData) -> SplitData:
    """The training split with the synthetic images appended."""
    return SplitData(
        images=stack([real.images, synthetic.images]),
        labels=np.concatenate([real.labels, synthetic.labels]),
        patients=np.concatenate([real.patients, synthetic.patients]),
        classes=real.classes,
    )


@dataclass(frozen=True)
class Inputs:
    """What a remedy builds its recipe from: the real training split, the generate stage's pool (None when no
    remedy needs it), the synthetic ratio and the share every class gets (``added`` remedies), and the seed."""

    train: SplitData
    synthetic: SplitData | None
    ratio: float
    seed: int
    all_classes: float = 0.0

    def pool(self) -> SplitData:
        """The generate stage's pool; an error when it was not read (no remedy of the run trains on it)."""
        if self.synthetic is None:
            raise ValueError("this remedy trains on synthetic images, but the synthetic pool was not read")
        return self.synthetic


@dataclass(frozen=True)
class Remedy:
    """One remedy for class imbalance: everything the pipeline needs of it, in one place. The train_classifier stage
    trains it (``build``, ``cost``), generate sizes the pool by what it takes (``pool``, :meth:`take`), and compare
    recommends the simplest remedy within the noise of the best (``simplicity``) and sets the classical ones
    (``pool`` none, not real_only) against the others. A new remedy is one :func:`register` call (and its name in
    ``config.STRATEGY_NAMES``, which params.yaml is checked against; a test keeps the two alike)."""

    name: str
    simplicity: int  # rank from the simplest (0: real_only); ties between remedies go to the lower rank
    pool: Literal["none", "added", "only"]  # synthetic images it trains on: none | added to the real split (a
    # ratio of each class's gap, plus the all-classes share) | only (as many per class as the real split has)
    cost: float  # a training's work relative to real_only's, besides its synthetic images (the costliest go first)
    build: Callable[[Inputs], Recipe]  # its training set and the training loop's switches

    def take(self, counts: dict[str, int], ratio: float, all_classes: float = 0.0) -> dict[str, int]:
        """The synthetic images of each class one training takes from the pool (``counts``: the real split's)."""
        return _take(self.pool, counts, ratio, all_classes)


REMEDIES: dict[str, Remedy] = {}


def register(new: Remedy) -> Remedy:
    """Add ``new`` to :data:`REMEDIES` (its name must be new); returns it."""
    if new.name in REMEDIES:
        raise ValueError(f"a remedy named {new.name!r} is registered already")
    REMEDIES[new.name] = new
    return new


def remedy(name: str) -> Remedy:
    """The registered remedy ``name``; ValueError naming the registered ones when there is none."""
    if name not in REMEDIES:
        raise ValueError(f"unknown strategy {name!r}; use one of {', '.join(REMEDIES)}")
    return REMEDIES[name]


def _with_synthetic(inputs: Inputs, augment: bool) -> Recipe:
    """The real split with the remedy's share of the pool appended (the vae strategies)."""
    wanted = _take("added", inputs.train.counts(), inputs.ratio, inputs.all_classes)
    data = combine(inputs.train, take_synthetic(inputs.pool(), wanted, inputs.seed))
    is_synthetic = np.arange(len(data)) >= len(inputs.train)  # combine appends the synthetic images
    return Recipe(data, augment=augment, synthetic=is_synthetic)


def _synthetic_only(inputs: Inputs) -> Recipe:
    return Recipe(take_synthetic(inputs.pool(), _take("only", inputs.train.counts(), 1.0, 0.0), inputs.seed))


for _remedy in (  # in config.STRATEGY_NAMES's order; the module docstring says what each does
    Remedy("real_only", 0, "none", 1.0, lambda i: Recipe(i.train)),
    Remedy("class_weight", 1, "none", 1.0, lambda i: Recipe(i.train, weighted=True)),
    Remedy("oversample", 4, "none", 1.0, lambda i: Recipe(oversample(i.train, i.seed))),
    Remedy("classical", 6, "none", 1.5, lambda i: Recipe(i.train, augment=True)),
    Remedy("smote", 5, "none", 1.0, lambda i: Recipe(smote(i.train, i.seed))),
    Remedy("logit_adjust", 2, "none", 1.0, lambda i: Recipe(i.train, loss="logit_adjust")),
    Remedy("focal", 3, "none", 1.0, lambda i: Recipe(i.train, loss="focal")),
    Remedy("mixup", 7, "none", 1.0, lambda i: Recipe(i.train, mixup=True)),
    Remedy("vae", 8, "added", 1.0, functools.partial(_with_synthetic, augment=False)),
    Remedy("vae_classical", 9, "added", 1.5, functools.partial(_with_synthetic, augment=True)),
    Remedy("synthetic_only", 10, "only", 1.0, _synthetic_only),
):
    register(_remedy)


def training_recipe(
    strategy: str, train: SplitData, synthetic: SplitData | None, ratio: float, seed: int, all_classes: float = 0.0
) -> Recipe:
    """The training set and switches of ``strategy`` (:data:`REMEDIES`); ``ratio`` and ``all_classes`` are for the
    remedies that add synthetic images."""
    chosen = remedy(strategy)
    if chosen.pool != "none" and synthetic is None:
        raise ValueError(f"strategy {strategy} needs the generate stage's synthetic images")
    return chosen.build(Inputs(train, synthetic, ratio, seed, all_classes))


def needs_synthetic(strategies) -> bool:
    """Whether any of ``strategies`` trains on the generate stage's pool."""
    return any(remedy(s).pool != "none" for s in strategies)


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


def stack(parts: list[ImageArray]) -> ImageArray:
    """``parts`` one after the other: concatenated when all are in memory, else a :class:`Rows` view (no copy)."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return Rows(parts)
