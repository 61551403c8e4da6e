"""A remedy registered here, and nowhere else, flows through the whole pipeline: trained by train_classifier, paired
and ranked by compare, weighed by the recommendation, drawn in the bars and written up in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pipeline.config as config
from pipeline.io.arrays import SplitData
from pipeline.strategies import REMEDIES, Inputs, Recipe, Remedy, combine, register
from tests.zoo import ZooCase, run_pipeline, zoo_project

NAME = "mirror_minority"


def _mirror_minority(inputs: Inputs) -> Recipe:
    """The real split and, once more, every image of its smallest class mirrored left to right."""
    train = inputs.train
    counts = train.counts()
    smallest = train.classes.index(min(counts, key=counts.get))
    own = train.select(train.labels == smallest)
    mirrored = SplitData(np.flip(np.asarray(own.images), axis=-1).copy(), own.labels, own.patients, own.classes)
    return Recipe(combine(train, mirrored))


@pytest.fixture
def toy_remedy(monkeypatch):
    """The toy remedy in the registry (and its name among params.yaml's choices) for one test."""
    toy = register(Remedy(NAME, simplicity=len(REMEDIES), pool="none", cost=1.0, build=_mirror_minority))
    monkeypatch.setattr(config, "STRATEGY_NAMES", (*config.STRATEGY_NAMES, NAME))
    yield toy
    del REMEDIES[NAME]


@pytest.mark.slow
def test_a_remedy_registered_in_a_test_reaches_the_report(tmp_path, toy_remedy):
    case = ZooCase("toy_remedy", {"normal": 30, "finding": 12})
    project = zoo_project(tmp_path, case, {"train_classifier": {"strategies": ["real_only", NAME, "vae"]}})
    run_pipeline(project)
    runs = json.loads((project / f"reports/classifier/{NAME}/runs.json").read_text(encoding="utf-8"))
    train = runs[0]["train_images"]
    real_only = json.loads((project / "reports/classifier/real_only/runs.json").read_text(encoding="utf-8"))
    assert train["finding"] == 2 * real_only[0]["train_images"]["finding"]  # its minority images, twice
    metrics = json.loads((project / "reports/metrics.json").read_text(encoding="utf-8"))
    assert 0 <= metrics[NAME]["vs_real_only"]["balanced_accuracy"]["difference"] + 1 <= 2  # paired by compare
    assert NAME in metrics["recommendation"]["validation_balanced_accuracy"]  # weighed by the recommendation
    assert metrics["recommendation"]["best_classical"] == NAME  # no synthetic images: a classical remedy
    report = (project / "reports/augmentation_report.md").read_text(encoding="utf-8")
    assert report.count(NAME) >= 2 and (project / "reports/figures/strategy_bars.png").stat().st_size > 1000
