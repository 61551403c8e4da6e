import dataclasses

import numpy as np
import pytest
import torch

from pipeline.config import TrainClassifierConfig
from pipeline.train_classifier import compare_strategies, fit_classifier, predict_proba
from tests.conftest import make_split

CFG = TrainClassifierConfig(
    strategies=("real_only", "vae"),
    channels=(4, 8, 8, 8),
    blocks_per_level=1,
    epochs=8,
    batch_size=8,
    learning_rate=0.003,
    seeds=(0,),
)


def test_learns_a_visible_difference():
    train, val = make_split(32, seed=0), make_split(16, seed=1)
    model, _ = fit_classifier(train, val, CFG, 0, torch.device("cpu"))
    test = make_split(16, seed=2)
    assert (predict_proba(model, test.images, torch.device("cpu")).argmax(1) == test.labels).mean() >= 0.9


def test_comparison_is_seeded_and_refuses_leaked_test_patients():
    train, val, test = make_split(16, seed=0), make_split(8, seed=1), make_split(8, seed=2)
    val = dataclasses.replace(val, patients=np.array([f"V{i}" for i in range(8)]))
    test = dataclasses.replace(test, patients=np.array([f"T{i}" for i in range(8)]))
    synthetic = make_split(4, seed=3)
    short = dataclasses.replace(CFG, epochs=1)
    a, runs = compare_strategies(train, val, test, synthetic, short, torch.device("cpu"))
    b, _ = compare_strategies(train, val, test, synthetic, short, torch.device("cpu"))
    assert a == b
    assert runs[1]["train_images"] == {"a": 10, "b": 10}  # real (8 + 8) plus synthetic (2 + 2)
    leaked = dataclasses.replace(test, patients=train.patients[:8])
    with pytest.raises(ValueError, match="test patients"):
        compare_strategies(train, val, leaked, synthetic, short, torch.device("cpu"))


def test_thresholds_come_from_validation_and_intervals_are_reported():
    train, val, test = make_split(16, seed=0), make_split(8, seed=1), make_split(12, seed=2)
    val = dataclasses.replace(val, patients=np.array([f"V{i}" for i in range(8)]))
    test = dataclasses.replace(test, patients=np.array([f"T{i}" for i in range(12)]))
    short = dataclasses.replace(CFG, epochs=1)
    summary, runs = compare_strategies(train, val, test, make_split(4, seed=3), short, torch.device("cpu"))
    flipped = dataclasses.replace(test, labels=1 - test.labels)  # other test labels must not move a threshold
    _, runs_flipped = compare_strategies(train, val, flipped, make_split(4, seed=3), short, torch.device("cpu"))
    assert [r["threshold"] for r in runs] == [r["threshold"] for r in runs_flipped]
    assert all(r["threshold"] is not None for r in runs)  # two classes: a threshold, not argmax
    for strategy in ("real_only", "vae"):
        s = summary[strategy]
        assert s["balanced_accuracy_ci_low"] <= s["balanced_accuracy"] <= s["balanced_accuracy_ci_high"]


def test_every_strategy_trains_on_what_it_says():
    from pipeline.train_classifier import STRATEGIES, class_weights, classical_augmentation, oversample

    train = dataclasses.replace(make_split(12, seed=0), labels=np.array([0] * 9 + [1] * 3))  # 9 : 3
    balanced = oversample(train, seed=0)
    assert balanced.counts() == {"a": 9, "b": 9} and np.array_equal(balanced.images[:12], train.images)
    assert set(map(bytes, balanced.images[12:])) <= set(map(bytes, train.images[train.labels == 1]))  # copies only
    assert class_weights(train).tolist() == pytest.approx([12 / (2 * 9), 12 / (2 * 3)])
    augment = classical_augmentation(2, seed=0)
    image = train.images[0]
    outputs = [np.asarray(augment(image)) for _ in range(4)]
    assert all(o.shape == image.shape for o in outputs) and any(not np.allclose(o, image) for o in outputs)
    val = dataclasses.replace(make_split(8, seed=1), patients=np.array([f"V{i}" for i in range(8)]))
    test = dataclasses.replace(make_split(8, seed=2), patients=np.array([f"T{i}" for i in range(8)]))
    cfg = dataclasses.replace(CFG, epochs=1, strategies=STRATEGIES)
    summary, runs = compare_strategies(make_split(16), val, test, make_split(4, seed=3), cfg, torch.device("cpu"))
    assert [r["strategy"] for r in runs] == list(STRATEGIES)
    sizes = {r["strategy"]: sum(r["train_images"].values()) for r in runs}
    assert sizes == {
        "real_only": 16,
        "class_weight": 16,
        "oversample": 16,
        "classical": 16,
        "vae": 20,
        "vae_classical": 20,
    }
    assert all(0 <= summary[s]["balanced_accuracy"] <= 1 for s in STRATEGIES)
