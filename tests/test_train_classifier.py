import dataclasses
import functools

import numpy as np
import pytest
import torch

from pipeline.models.classifier import fit_classifier, predict_proba
from pipeline.strategies import DataLeakError, Recipe
from pipeline.trainings import run_strategy, train_seed
from pipeline.workers import run_tasks
from tests.conftest import classifier_config, make_split

CPU = torch.device("cpu")
CFG = classifier_config(strategies=("real_only", "vae"), stem_stride=1, epochs=8)
SHORT = dataclasses.replace(CFG, epochs=1)
TRAIN, VAL, TEST = make_split(16, seed=0), make_split(8, seed=1, prefix="V"), make_split(12, seed=2, prefix="T")
SYNTHETIC = make_split(16, seed=3, prefix="S")


def test_a_last_batch_of_one_image_trains_where_the_last_level_is_one_pixel():
    """33 images of 32 px in batches of 32 with a stride-2 stem: the network's last level is 1 x 1, where batch
    normalisation cannot train on a batch of one."""
    cfg = dataclasses.replace(SHORT, stem_stride=2, batch_size=32)
    _, fit = fit_classifier(Recipe(make_split(33, size=32)), make_split(8, size=32, seed=1, prefix="V"), cfg, 0, CPU)
    assert fit.epochs_run == 1


def test_learns_a_visible_difference():
    model, fit = fit_classifier(Recipe(make_split(32)), VAL, CFG, 0, CPU)
    assert (predict_proba(model, TEST.images, CPU).argmax(1) == TEST.labels).mean() >= 0.9
    assert fit.epochs_run == 8 and 0 <= fit.best_epoch < 8


def test_early_stopping_stops_after_patience_epochs_without_progress(monkeypatch):
    import pipeline.models.classifier as classifier

    scores = iter([(0.5, 1.0), (0.7, 0.9), (0.7, 0.95), (0.6, 0.5), (0.9, 0.1)])  # (BA, val loss) per epoch
    validate = lambda self: dict(zip(("balanced_accuracy", "loss"), next(scores), strict=True))  # noqa: E731
    monkeypatch.setattr(classifier._ClassifierTraining, "validate", validate)
    _, fit = fit_classifier(Recipe(make_split(32)), VAL, dataclasses.replace(CFG, epochs=5, patience=2), 0, CPU)
    assert (fit.best_epoch, fit.epochs_run) == (1, 4)  # epochs 2 and 3 are no better (a tie loses on loss): stop


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    a = run_strategy("vae", TRAIN, VAL, TEST, SYNTHETIC, SHORT, CPU)
    b = run_strategy("vae", TRAIN, VAL, TEST, SYNTHETIC, SHORT, CPU)
    c = run_strategy("vae", TRAIN, VAL, TEST, SYNTHETIC, dataclasses.replace(SHORT, seeds=(1,)), CPU)
    assert a[0] == b[0] and np.array_equal(a[2]["proba"], b[2]["proba"])
    assert not np.array_equal(a[2]["proba"], c[2]["proba"])


def test_thresholds_come_from_validation_and_intervals_are_reported():
    summary, runs, predictions = run_strategy("real_only", TRAIN, VAL, TEST, None, SHORT, CPU)
    flipped = dataclasses.replace(TEST, labels=1 - TEST.labels)  # other test labels must not move a threshold
    _, runs_flipped, _ = run_strategy("real_only", TRAIN, VAL, flipped, None, SHORT, CPU)
    assert [r.threshold for r in runs] == [r.threshold for r in runs_flipped]
    assert all(r.threshold is not None for r in runs)  # two classes: a threshold, not argmax
    assert summary["balanced_accuracy_ci_low"] <= summary["balanced_accuracy"] <= summary["balanced_accuracy_ci_high"]
    assert predictions["proba"].shape == (1, 12, 2) and np.array_equal(predictions["labels"], TEST.labels)
    assert runs[0].train_images == {"a": 8, "b": 8} and summary["strategy"] == "real_only"


@pytest.mark.parametrize(
    "where",
    [
        "train",  # a test patient's images in the training split
        "val",  # ... in the validation split
        "synthetic",  # ... smuggled in with a strategy's training data
    ],
)
def test_a_strategy_that_sees_test_data_fails(where):
    train, val, synthetic = TRAIN, VAL, SYNTHETIC
    if where == "train":
        train = dataclasses.replace(TRAIN, patients=np.array(["T0"] + list(TRAIN.patients[1:])))
    elif where == "val":
        val = dataclasses.replace(VAL, patients=np.array(["T5"] + list(VAL.patients[1:])))
    else:
        synthetic = dataclasses.replace(SYNTHETIC, patients=TEST.patients[np.arange(16) % 12])
    with pytest.raises(DataLeakError, match="test patient"):
        run_strategy("synthetic_only", train, val, TEST, synthetic, SHORT, CPU)


def test_several_minority_classes_work():
    classes = ("a", "b", "c")
    train = make_split(classes=classes, labels=[0] * 12 + [1] * 6 + [2] * 3)
    val = make_split(9, classes=classes, seed=1, prefix="V")
    test = make_split(12, classes=classes, seed=2, prefix="T")
    synthetic = make_split(classes=classes, labels=[1] * 6 + [2] * 9, seed=3, prefix="S")
    summary, runs, _ = run_strategy("vae", train, val, test, synthetic, dataclasses.replace(CFG, epochs=4), CPU)
    assert runs[0].train_images == {"a": 12, "b": 12, "c": 12} and runs[0].threshold is None  # argmax
    assert summary["minority_classes"] == ["b", "c"] and "recall_c_ci_low" in summary
    assert 0 <= summary["auroc"] <= 1 and np.array(runs[0].test["confusion_matrix"]).shape == (3, 3)


def test_trainings_in_worker_processes_match_this_process_at_the_same_threads():
    """The stage hands each (strategy, ratio, seed) to a worker: the same numbers as training here, given the
    worker's share of the threads (pipeline.workers)."""
    tasks = [("real_only", 1.0, 0), ("vae", 1.0, 0), ("vae", 1.0, 1)]
    train = make_split(labels=[0] * 12 + [1] * 6)  # b is 6 short: the vae tasks add 6 synthetic b images
    train_one = functools.partial(
        train_seed, train=train, val=VAL, test=TEST, synthetic=SYNTHETIC, cfg=SHORT, device=CPU
    )
    there = run_tasks(train_one, tasks, 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 2))
    try:
        here = [train_one(task) for task in tasks]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(here, there, strict=True):
        assert a["record"] == b["record"] and a["threshold"] == b["threshold"]
        assert np.array_equal(a["proba"], b["proba"])
    assert [r["record"].train_images for r in here] == [{"a": 12, "b": 6}] + [{"a": 12, "b": 12}] * 2


def test_the_shift_stress_test_scores_every_shift_and_can_be_switched_off():
    _, runs, predictions = run_strategy("real_only", TRAIN, VAL, TEST, None, SHORT, CPU)
    assert list(runs[0].shift) == list(predictions["shifts"]) and predictions["shift_proba"].shape == (1, 6, 12, 2)
    _, runs, predictions = run_strategy(
        "real_only", TRAIN, VAL, TEST, None, dataclasses.replace(SHORT, shift_stress=False), CPU
    )
    assert runs[0].shift == {} and len(predictions["shifts"]) == 0 and predictions["shift_proba"].shape[1] == 0
