"""One remedy's classifier trainings: :func:`train_seed` trains it once for one seed (the model of the best
validation epoch, its threshold, its one look at the test split, and the same look under each acquisition shift),
:func:`summarise_strategy` turns its seeds into a summary with bootstrap intervals and the predictions the compare
stage reads, and :func:`run_strategy` does both in this process. Shared by the stages that train classifiers
(``train_classifier``, ``learning_curve``) and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch

from pipeline.config import TrainClassifierConfig
from pipeline.io.arrays import ImageArray, SplitData
from pipeline.io.records import ClassifierRun
from pipeline.metrics import (
    balanced_accuracy,
    bootstrap_ci,
    choose_threshold,
    classification_metrics,
    minority_classes,
    predict_labels,
    summarise_runs,
)
from pipeline.models.classifier import fit_classifier, predict_proba
from pipeline.shifts import SHIFTS, shift_images
from pipeline.strategies import check_no_test_patients, remedy, training_recipe

__all__ = ["train_seed", "summarise_strategy", "run_strategy", "shifted_test", "validation_keys"]


def validation_keys(classes) -> list[str]:
    """The validation metrics kept in each run's record (``val``)."""
    return ["balanced_accuracy", "macro_f1", "worst_recall"] + [f"recall_{c}" for c in classes]


def _positive(train: SplitData) -> int:
    """The smallest class of the training split: the class whose probability a binary threshold is chosen on."""
    counts = train.counts()
    return train.classes.index(min(counts, key=lambda name: counts[name]))


def train_seed(
    remedy: tuple[str, float, int],
    train: SplitData,
    val: SplitData,
    test: SplitData,
    synthetic: SplitData | None,
    cfg: TrainClassifierConfig,
    device: torch.device,
) -> dict:
    """One training of ``remedy`` = (strategy, synthetic ratio, seed): the model of the best validation epoch, its
    threshold and validation scores, then its one look at the test split. Returns ``{"record", "proba",
    "val_proba", "threshold"}`` (the per-seed record of runs.json, the test and validation probabilities, the
    threshold or None). Everything it needs comes as arguments, so a worker process can run it
    (:func:`pipeline.workers.run_tasks`)."""
    strategy, ratio, seed = remedy
    positive = _positive(train)
    recipe = training_recipe(strategy, train, synthetic, ratio, seed, cfg.synthetic_all_classes)
    check_no_test_patients(test, **{f"the {strategy} training set": recipe.data.patients})
    model, fit = fit_classifier(recipe, val, cfg, seed, device, desc=f"{strategy} seed {seed}")
    val_proba = predict_proba(model, val.images, device)
    threshold = choose_threshold(val.labels, val_proba, positive)
    # the validation scores at that threshold: what the compare stage recommends a remedy by
    val_metrics = classification_metrics(val.labels, val_proba, val.classes, threshold, positive)
    val_metrics = {k: val_metrics[k] for k in validation_keys(val.classes)}
    proba = predict_proba(model, test.images, device)  # the one look at the test split
    metrics = classification_metrics(test.labels, proba, test.classes, threshold, positive)
    # the same look under each acquisition shift of the test images (pipeline.shifts; the same for every remedy)
    shifted = np.zeros((0, *proba.shape), np.float32)
    if cfg.shift_stress:
        shifted = np.stack([predict_proba(model, images, device) for images in shifted_test(test.images).values()])
    shift_ba = {
        name: balanced_accuracy(test.labels, predict_labels(p, threshold, positive))
        for name, p in zip(SHIFTS, shifted, strict=False)
    }
    record = ClassifierRun(seed, fit.best_epoch, fit.epochs_run, threshold, recipe.data.counts(), val_metrics, metrics)
    record = dataclasses.replace(record, shift=shift_ba)
    return {"record": record, "proba": proba, "val_proba": val_proba, "threshold": threshold, "shifted": shifted}


_SHIFTED: dict[str, dict[str, np.ndarray]] = {}  # per process: the shifted test images, by the images' digest


def shifted_test(images: ImageArray) -> dict[str, np.ndarray]:
    """The test images under each of :data:`pipeline.shifts.SHIFTS` (seeded, so every remedy sees the same),
    computed once per process."""
    images = np.asarray(images)
    key = hashlib.sha256(images.tobytes()).hexdigest() + str(images.shape)
    if key not in _SHIFTED:
        _SHIFTED.clear()
        _SHIFTED[key] = {name: shift_images(images, name, seed=0) for name in SHIFTS}
    return _SHIFTED[key]


def summarise_strategy(
    strategy: str,
    ratio: float,
    train: SplitData,
    val: SplitData,
    test: SplitData,
    cfg: TrainClassifierConfig,
    seeds: list[dict],
) -> tuple[dict, list[ClassifierRun], dict[str, np.ndarray]]:
    """The summary (mean and standard deviation over seeds, bootstrap intervals over test images), the per-seed
    records and the test and validation predictions of ``strategy`` from its :func:`train_seed` results, one per
    seed in ``cfg.seeds``'s order."""
    counts, positive = train.counts(), _positive(train)
    runs = [s["record"] for s in seeds]
    probas, thresholds = [s["proba"] for s in seeds], [s["threshold"] for s in seeds]
    minorities = minority_classes(counts)
    ci_keys = ["balanced_accuracy", "macro_f1", "auroc", "accuracy", "worst_recall"]
    ci_keys += [f"recall_{c}" for c in minorities]
    summary: dict[str, Any] = dict(summarise_runs([r.test for r in runs]))
    intervals = bootstrap_ci(test.labels, probas, thresholds, test.classes, ci_keys, positive=positive)
    for key, (low, high) in intervals.items():
        summary[f"{key}_ci_low"], summary[f"{key}_ci_high"] = low, high
    summary |= {
        "strategy": strategy,
        "synthetic_ratio": ratio if remedy(strategy).pool == "added" else 0.0,
        "seeds": len(cfg.seeds),
        "minority_classes": minorities,
        "threshold": f"chosen on validation for class {train.classes[positive]}" if len(counts) == 2 else "argmax",
    }
    predictions = {
        "labels": test.labels,
        "proba": np.stack(probas),
        "thresholds": np.array([np.nan if t is None else t for t in thresholds]),
        "seeds": np.array(cfg.seeds),
        "positive": np.array(positive),
        "classes": np.array(test.classes),
        "val_labels": val.labels,
        "val_proba": np.stack([s["val_proba"] for s in seeds]),
        "shifts": np.array(list(SHIFTS) if cfg.shift_stress else [], dtype=str),
        "shift_proba": np.stack([s["shifted"] for s in seeds]),  # (seeds, shifts, test images, classes)
    }
    if test.sites is not None:  # pseudonyms: the compare stage's metrics per site
        predictions["sites"] = test.sites
    return summary, runs, predictions


def run_strategy(
    strategy: str,
    train: SplitData,
    val: SplitData,
    test: SplitData,
    synthetic: SplitData | None,
    cfg: TrainClassifierConfig,
    device: torch.device,
    ratio: float | None = None,
) -> tuple[dict, list[ClassifierRun], dict[str, np.ndarray]]:
    """Train ``strategy`` with every seed, one after the other in this process; return its summary, the per-seed
    records and the test predictions (:func:`summarise_strategy`)."""
    check_no_test_patients(test, train=train.patients, val=val.patients)
    ratio = cfg.synthetic_ratio if ratio is None else ratio
    seeds = [train_seed((strategy, ratio, seed), train, val, test, synthetic, cfg, device) for seed in cfg.seeds]
    return summarise_strategy(strategy, ratio, train, val, test, cfg, seeds)
