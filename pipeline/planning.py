"""What the pipeline will do with a dataset, and whether it can: decided before any training.

:func:`dataset_plan` takes the images of each class in each split (the preprocess stage's ``summary.json``) and
the settings of params.yaml (:class:`Settings`), and returns a :class:`Plan`: the classes, the majority and each
minority with its imbalance ratio, the synthetic images each class will get (the pool,
:func:`pipeline.strategies.synthetic_demand`), and the problems: every setting that cannot work with this dataset,
each saying what to change. :func:`refuse_unfit` raises :class:`~pipeline.io.errors.DatasetShapeError` listing
them all. Every stage that trains calls it first (:func:`check_before_training`), so a dataset the settings cannot
handle is refused within seconds of `dvc repro` reaching training, not after minutes of it; ``medaug check-data``
prints the plan before any stage runs.

The check reads the whole of params.yaml, not only the keys the calling stage lists in dvc.yaml: it changes no
output, it can only refuse, so DVC need not re-run a stage when a key only the check reads changes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import (
    PARAMS_FILE,
    AnomalyConfig,
    GenerateConfig,
    GeneratorConfig,
    PreprocessConfig,
    QualityConfig,
    TrainClassifierConfig,
    VAEConfig,
    load_section,
)
from pipeline.generators import build_generator
from pipeline.generators.vae import VAEGenerator
from pipeline.io.arrays import SPLITS
from pipeline.io.errors import DatasetShapeError
from pipeline.io.records import ProcessedSummary
from pipeline.strategies import pool_sizes, synthetic_demand

__all__ = ["Settings", "Plan", "load_settings", "dataset_plan", "refuse_unfit", "check_before_training"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The params.yaml sections a plan reads."""

    preprocess: PreprocessConfig
    generator: GeneratorConfig
    generator_settings: Any  # the section named generator.kind (VAEConfig, VAEGANConfig, LatentDiffusionConfig)
    generate: GenerateConfig
    train_classifier: TrainClassifierConfig
    vae: VAEConfig  # the anomaly and latent stages' VAEs
    anomaly: AnomalyConfig
    quality: QualityConfig


def load_settings(params_file: str | Path = PARAMS_FILE) -> Settings:
    """The sections of ``params_file`` a plan reads (the generator's own section: the one generator.kind names)."""
    generator = load_section("generator", params_file)
    return Settings(
        preprocess=load_section("preprocess", params_file),
        generator=generator,
        generator_settings=load_section(generator.kind, params_file),
        generate=load_section("generate", params_file),
        train_classifier=load_section("train_classifier", params_file),
        vae=load_section("vae", params_file),
        anomaly=load_section("anomaly", params_file),
        quality=load_section("quality", params_file),
    )


@dataclass(frozen=True)
class Plan:
    """What the settings will do with a dataset of ``splits`` (split -> class -> images)."""

    splits: dict[str, dict[str, int]]
    pool: dict[str, int]  # synthetic images the generate stage will make per class
    normal_class: str | None  # the anomaly stage's normal class (None: anomaly.normal_class is not a class)
    problems: list[str] = field(default_factory=list)  # what cannot work, each with what to change

    @property
    def classes(self) -> list[str]:
        return list(self.splits["train"])

    @property
    def majority(self) -> str:
        train = self.splits["train"]
        return max(train, key=train.__getitem__)

    @property
    def ratios(self) -> dict[str, float]:
        """The majority's training images per image of each class (1 for the majority), as in "1:9"."""
        train = self.splits["train"]
        top = train[self.majority]
        return {name: (top / n if n else math.inf) for name, n in train.items()}

    @property
    def minorities(self) -> list[str]:
        """Every class with fewer training images than the majority, the smallest first."""
        train = self.splits["train"]
        return sorted((c for c in train if train[c] < train[self.majority]), key=lambda c: (train[c], c))

    def describe(self) -> list[str]:
        """The plan in lines of text (``medaug check-data``; the end of :class:`DatasetShapeError`'s message)."""
        train = self.splits["train"]
        width = max(len(c) for c in self.classes)
        lines = [f"{len(self.classes)} classes; majority {self.majority} ({train[self.majority]} training images)"]
        lines.append(f"  {'class':<{width}}  {'train':>6} {'val':>5} {'test':>5}  {'ratio':>8}  {'synthetic':>9}")
        for c in self.classes:
            ratio = "majority" if c == self.majority else f"1:{self.ratios[c]:.3g}"
            counts = " ".join(f"{self.splits[s].get(c, 0):>{w}}" for s, w in zip(SPLITS, (6, 5, 5), strict=True))
            lines.append(f"  {c:<{width}}  {counts}  {ratio:>8}  {self.pool.get(c, 0):>9}")
        normal = self.normal_class if self.normal_class is not None else "(not a class)"
        lines.append(f"anomaly detection: normal class {normal}, every other class abnormal")
        return lines


def dataset_plan(
    splits: dict[str, dict[str, int]], settings: Settings, image_shape: tuple[int, ...] | None = None
) -> Plan:
    """The :class:`Plan` of a dataset with ``splits`` (split -> class -> images; a class missing from a split's
    mapping counts as 0 there) of images of ``image_shape`` (channels first; None: the networks are not checked)
    under ``settings``."""
    classes = sorted(set().union(*(set(splits.get(s, {})) for s in SPLITS)))
    full = {s: {c: int(splits.get(s, {}).get(c, 0)) for c in classes} for s in SPLITS}
    train = full["train"]
    pool: dict[str, int] = {}
    if len(classes) >= 2 and min(train.values()) > 0:
        demand = synthetic_demand(train, settings.train_classifier)
        pool = pool_sizes(demand, train, settings.generate.pool_margin, settings.generate.every_class)
    normal = settings.anomaly.normal_class
    if normal is None and classes:
        # the anomaly stage's choice: the first largest class, in class order
        normal = max(train, key=train.__getitem__)
    normal = normal if normal in classes else None
    problems = _problems(full, settings)
    if image_shape is not None and len(classes) >= 2:
        problems += _network_problems(tuple(image_shape), tuple(classes), settings)
    return Plan(full, pool, normal, problems)


def _problems(splits: dict[str, dict[str, int]], settings: Settings) -> list[str]:
    """Every reason the settings cannot run on a dataset of ``splits``, each saying what to change."""
    train = splits["train"]
    classes = list(train)
    if len(classes) < 2:
        return [f"{len(classes)} class(es) ({', '.join(classes) or 'none'}): augmentation needs at least two"]
    problems = []
    for split in SPLITS:
        empty = [c for c in classes if splits[split][c] == 0]
        if empty:
            problems.append(
                f"class(es) {', '.join(empty)} have no image in the {split} split: every class needs a patient in "
                "train, val and test; add patients of that class, merge it with another, or give labels.csv a "
                "split column that puts one in each"
            )
    if problems:
        return problems
    clf, generate = settings.train_classifier, settings.generate
    single = [c for c in classes if train[c] < 2]
    if single and "smote" in clf.strategies:
        problems.append(
            f"class(es) {', '.join(single)} have 1 training image: the smote strategy interpolates between two "
            "images of a class; remove smote from train_classifier.strategies, or add images"
        )
    if single and "manifold" in generate.filter:
        problems.append(
            f"class(es) {', '.join(single)} have 1 training image: generate.filter manifold needs a nearest "
            "neighbour of the class; remove manifold from generate.filter, or add images"
        )
    if settings.anomaly.normal_class is not None and settings.anomaly.normal_class not in classes:
        problems.append(
            f"anomaly.normal_class {settings.anomaly.normal_class!r} is not a class of this dataset "
            f"({', '.join(classes)}); set it to one of them, or to null for the largest class"
        )
    return problems


def _network_problems(image_shape: tuple[int, ...], classes: tuple[str, ...], settings: Settings) -> list[str]:
    """What the networks' own checks say of ``image_shape``: the generator of generator.kind and the anomaly and
    latent stages' VAEs are built (untrained, milliseconds) and refuse what they cannot take; the classifier's
    densenet121 needs 32 px."""
    kind, problems = settings.generator.kind, []
    builds = {
        f"the generator ({kind}, section {kind})": lambda: build_generator(
            kind, image_shape, classes, settings.generator.mode, settings.generator_settings
        ).check_shape(),
        "the anomaly and latent stages' VAEs (section vae)": lambda: VAEGenerator(
            image_shape, ("any",), "conditional", settings.vae
        ).check_shape(),
    }
    for what, build in builds.items():
        try:
            build()
        except ValueError as err:
            problems.append(f"{what} cannot take images of {'x'.join(map(str, image_shape))}: {err}")
    if settings.train_classifier.network == "densenet121" and min(image_shape[1:]) < 32:
        problems.append(
            f"train_classifier.network densenet121 needs images of at least 32 px (preprocess.size is "
            f"{min(image_shape[1:])}): use resnet_small, or raise preprocess.size"
        )
    return problems


def refuse_unfit(plan: Plan) -> None:
    """Raise :class:`DatasetShapeError` listing every problem of ``plan``; nothing when it has none."""
    if plan.problems:
        listed = "\n".join(f"  - {p}" for p in plan.problems)
        raise DatasetShapeError(
            f"this dataset cannot run with these settings ({len(plan.problems)} problem(s)), refused before "
            f"any training:\n{listed}\n" + "\n".join(plan.describe())
        )


def check_before_training(processed: str | Path, params_file: str | Path = PARAMS_FILE) -> Plan:
    """The plan of the preprocessed dataset in ``processed`` (its ``summary.json``) under ``params_file``;
    :class:`DatasetShapeError` (:func:`refuse_unfit`) when the settings cannot run on it."""
    summary = ProcessedSummary.read(processed)
    splits = {name: summary.split_counts(name) for name in SPLITS}
    plan = dataset_plan(splits, load_settings(params_file), tuple(summary.image_size))
    refuse_unfit(plan)
    return plan
