"""The learning_curve stage: best_classical is chosen on validation records, a remedy the comparison does not train
is refused, and the generator of a share learns from that share's images alone (per_class: only the classes the
share changed, the others' networks reused) and draws what the remedies take."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import pipeline.learning_curve as stage
from pipeline.config import GeneratorConfig
from pipeline.generators import build_generator
from pipeline.io.records import ClassifierRun
from pipeline.worth import minority_share
from tests.conftest import classifier_config, make_split
from tests.generators.test_generators import VAE_GAN
from tests.generators.test_sampling import GEN

CPU = torch.device("cpu")


def _records(folder, val_scores):
    ClassifierRun.write_all(
        folder, [ClassifierRun(s, 1, 1, None, {}, {"balanced_accuracy": v}, {}) for s, v in enumerate(val_scores)]
    )


def test_best_classical_is_the_classical_remedy_best_on_validation(tmp_path):
    for name, scores in {
        "real_only": [0.99, 0.99],
        "classical": [0.7, 0.8],
        "mixup": [0.8, 0.75],
        "vae": [1, 1],
    }.items():
        _records(tmp_path / name, scores)
    strategies = ("real_only", "classical", "mixup", "vae")
    # mixup's mean 0.775 beats classical's 0.75; real_only and vae (synthetic) are no candidates
    assert stage.resolve_remedies(("vae", "best_classical"), tmp_path, strategies) == ["vae", "mixup"]
    assert stage.resolve_remedies(("mixup", "best_classical"), tmp_path, strategies) == ["mixup"]  # once
    with pytest.raises(ValueError, match="train_classifier.strategies does not"):
        stage.resolve_remedies(("smote",), tmp_path, strategies)
    with pytest.raises(ValueError, match="best_classical needs a classical remedy"):
        stage.resolve_remedies(("best_classical",), tmp_path, ("real_only", "vae"))


def _per_patient(n_patients: int, images_each: int, classes, minority_every: int) -> object:
    """Images of ``n_patients`` patients, ``images_each`` each, every ``minority_every``-th patient of class 1."""
    labels = np.repeat([1 if p % minority_every == 0 else 0 for p in range(n_patients)], images_each)
    data = make_split(labels=labels, classes=classes, size=16)
    return dataclasses.replace(data, patients=np.repeat([f"P{p}" for p in range(n_patients)], images_each))


@pytest.mark.parametrize("mode", ["per_class", "conditional"])
def test_a_shares_generator_learns_from_that_share_alone(monkeypatch, mode):
    train = _per_patient(24, 2, ("normal", "lesion"), 3)  # lesion: 8 patients, 16 images; normal 32
    val = _per_patient(12, 1, ("normal", "lesion"), 3)
    part = minority_share(train, 0.5)
    kept = set(part.patients[part.labels == 1].tolist())
    assert len(kept) == 4  # half the lesion patients
    learnt: list = []
    real_build = stage.build_generator

    def spying(*args, **kwargs):  # the real generator, its fit recording what it learns from
        generator = real_build(*args, **kwargs)
        fit = generator.fit

        def recorded(data, *rest, **kw):
            learnt.append(data)
            return fit(data, *rest, **kw)

        generator.fit = recorded
        return generator

    settings = VAE_GAN
    whole = None
    if mode == "per_class":  # train_generator's, on the whole split
        whole = build_generator("vae_gan", (1, 16, 16), train.classes, mode, settings, seed=0)
        whole.fit(train, val, CPU)
    monkeypatch.setattr(stage, "build_generator", spying)
    demand = {"normal": 5, "lesion": 7}
    unchanged = frozenset({0})  # the share keeps every normal image
    synthetic = stage.synthetic_for_share(
        part,
        val,
        demand,
        GeneratorConfig("vae_gan", mode, 0),
        settings,
        GEN,
        classifier_config(),
        CPU,
        whole=whole,
        unchanged=unchanged,
    )
    assert synthetic.counts() == {"normal": 5, "lesion": 7} and set(synthetic.patients.tolist()) == {"synthetic"}
    assert len(learnt) == 1
    (data,) = learnt
    if mode == "per_class":  # only the lesion network is trained, on the share's lesion images
        assert data.classes == ("lesion",) and set(data.patients.tolist()) == kept
    else:  # one network of every class, on the share
        assert data.classes == train.classes and len(data) == len(part)
        assert set(data.patients[data.labels == 1].tolist()) == kept
    assert np.isfinite(np.asarray(synthetic.images)).all()
