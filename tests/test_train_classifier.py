import dataclasses

import numpy as np
import pytest
import torch

from pipeline.config import TrainClassifierConfig
from pipeline.train_classifier import compare_strategies, fit_classifier, predict_proba
from tests.conftest import make_split

CFG = TrainClassifierConfig(
    channels=(4, 8, 8, 8), blocks_per_level=1, epochs=8, batch_size=8, learning_rate=0.003, seeds=(0,)
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
