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

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import TrainClassifierConfig, load_section
from pipeline.io.arrays import SplitData, load_split, write_json, write_npz
from pipeline.io.atomic import atomic_dir
from pipeline.io.records import ClassifierRun, PoolSummary
from pipeline.io.synthetic import read_synthetic
from pipeline.planning import check_before_training
from pipeline.runtime import compute_device, run_stage
from pipeline.strategies import check_no_test_patients, classifier_runs, needs_synthetic, remedy
from pipeline.trainings import summarise_strategy, train_seed
from pipeline.workers import run_tasks, worker_count
from pipeline.worth import minority_images, minority_share

__all__ = ["main"]

logger = logging.getLogger(__name__)


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
