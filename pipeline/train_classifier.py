"""Stage ``train_classifier``: every remedy for class imbalance, the same classifier trained once per seed for each.

``python -m pipeline.train_classifier`` trains every strategy of ``train_classifier.strategies``, then the ``vae``
strategy at each of ``train_classifier.ablation_ratios``, in one process (data loaded once). The strategies are in
:mod:`pipeline.strategies`; all share architecture, epochs, optimiser, early stopping and seeds. On the
validation split only: the epoch (best balanced accuracy, ties broken by the lower validation loss; early stopping
after ``patience`` epochs without a better one) and, for two classes, the decision threshold on the minority
class's probability. Each chosen model then sees the untouched test split once. Before any training the stage
refuses to go on if a test patient is among the training or validation patients, the patients the VAE learnt
from, or a strategy's training set.

Outputs in ``reports/classifier/<strategy>``, ``reports/classifier/ablation_<ratio>`` and (real_only on a share of
the minority patients, ``train_classifier.learning_curve``) ``reports/classifier/curve_<share>``, each folder
written whole (complete or absent): ``metrics.json`` (mean and standard deviation over seeds, 95% bootstrap
intervals over test images), ``runs.json`` (per seed: epochs, threshold, training counts, test metrics with the
confusion matrix) and ``predictions.npz`` (test labels, every seed's test probabilities and threshold: for the
compare stage's paired tests and the report's curves; validation labels and every seed's validation
probabilities: for the noise of the compare stage's recommendation, which is chosen on the validation split; the
test images' site pseudonyms when labels.csv has a site column).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import TrainClassifierConfig, load_section
from pipeline.io.arrays import ImageArray, SplitData, load_split, write_json, write_npz
from pipeline.io.atomic import atomic_dir
from pipeline.io.records import ClassifierRun, PoolSummary
from pipeline.io.synthetic import read_synthetic
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
from pipeline.planning import check_before_training
from pipeline.runtime import compute_device, run_stage
from pipeline.shifts import SHIFTS, shift_images
from pipeline.strategies import check_no_test_patients, classifier_runs, needs_synthetic, remedy, training_recipe
from pipeline.workers import run_tasks, worker_count
from pipeline.worth import minority_images, minority_share

__all__ = ["train_seed", "summarise_strategy", "run_strategy", "main"]

logger = logging.getLogger(__name__)


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


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: TrainClassifierConfig = load_section("train_classifier")
    paths = load_section("paths")
    check_before_training(paths.processed)  # refuse a dataset these settings cannot run on, before training
    train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
    runs = classifier_runs(cfg)
    synthetic = None
    if needs_synthetic(strategy for _, strategy, _ in runs):
        learnt = np.array(PoolSummary.read(paths.synthetic).generator_patients)
        check_no_test_patients(test, **{"the generator's training data": learnt})
        synthetic = read_synthetic(paths.synthetic, train.classes)
    device = compute_device()
    check_no_test_patients(test, train=train.patients, val=val.patients)
    # real_only on shares of the minority patients too: the minority learning curve (folders curve_<share>)
    trainsets = {1.0: train} | {share: minority_share(train, share) for share in cfg.learning_curve}
    folders = [(name, strategy, ratio, 1.0) for name, strategy, ratio in runs]
    folders += [(f"curve_{share:g}", "real_only", cfg.synthetic_ratio, share) for share in cfg.learning_curve]
    tasks = [(strategy, ratio, seed, share) for _, strategy, ratio, share in folders for seed in cfg.seeds]
    train_one = functools.partial(
        _train_task, trainsets=trainsets, val=val, test=test, synthetic=synthetic, cfg=cfg, device=device
    )
    workers = worker_count(load_section("compute").workers, device, len(tasks))
    results = run_tasks(train_one, tasks, workers, desc="trainings", cost=[_cost(t, cfg) for t in tasks])
    with atomic_dir(Path(paths.reports) / "classifier") as staging:
        for k, (name, strategy, ratio, share) in enumerate(folders):
            seeds = results[k * len(cfg.seeds) : (k + 1) * len(cfg.seeds)]
            for seed in seeds:
                record = seed["record"]
                logger.info(
                    "%s seed %d: test balanced accuracy %.3f", name, record.seed, record.test["balanced_accuracy"]
                )
            summary, records, predictions = summarise_strategy(strategy, ratio, trainsets[share], val, test, cfg, seeds)
            if share < 1:
                summary |= {"minority_share": share, "minority_images": minority_images(trainsets[share].counts())}
            write_npz(staging / name / "predictions.npz", predictions)
            ClassifierRun.write_all(staging / name, records)
            write_json(staging / name / "metrics.json", summary)


def _train_task(task: tuple[str, float, int, float], trainsets: dict[float, SplitData], **kwargs: Any) -> dict:
    """:func:`train_seed` of ``task`` = (strategy, synthetic ratio, seed, minority share) on the training split
    of that share (``trainsets``; 1.0: the whole split)."""
    strategy, ratio, seed, share = task
    return train_seed((strategy, ratio, seed), trainsets[share], **kwargs)


def _cost(task: tuple[str, float, int, float], cfg: TrainClassifierConfig) -> float:
    """A training's rough cost relative to real_only's (its remedy's own, plus its synthetic images): the costliest
    go to the workers first."""
    strategy, ratio, _, _ = task
    chosen = remedy(strategy)
    return chosen.cost + (ratio * (1 + cfg.synthetic_all_classes) if chosen.pool == "added" else 0.0)


if __name__ == "__main__":
    run_stage(main, "pipeline.train_classifier")
