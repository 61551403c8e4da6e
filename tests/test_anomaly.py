"""The anomaly stage: a normal-class VAE finds planted anomalies; thresholds, metrics and `medaug score`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline.anomaly import (
    choose_score_threshold,
    detection_metrics,
    normal_label,
    score_files,
    score_images,
    train_normal_vae,
)
from pipeline.generators import save_generator
from pipeline.generators.vae import VAEGenerator
from pipeline.io.arrays import SplitData
from pipeline.models.vae import ClassVAEs
from pipeline.preprocess import preprocess_dataset
from tests.conftest import TINY_PREPROCESS
from tests.generators.test_vae import CFG

CPU = torch.device("cpu")
SQUARE = 4  # side of the planted bright square


def planted(n_normal: int, n_abnormal: int, seed: int, size: int = 16) -> tuple[SplitData, np.ndarray]:
    """Smooth random gradients (normal, label 0) and the same with a bright square at a random place (abnormal,
    label 1); also each abnormal image's square corner (-1 for normal images)."""
    rng = np.random.default_rng(seed)
    n = n_normal + n_abnormal
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    a, b, c = (rng.uniform(0.1, 0.3, (n, 1, 1)).astype(np.float32) for _ in range(3))
    images = (a + b * ramp[:, None] + c * ramp[None, :])[:, None]
    labels = np.array([0] * n_normal + [1] * n_abnormal)
    corners = np.full((n, 2), -1)
    for i in range(n_normal, n):
        x, y = rng.integers(1, size - SQUARE - 1, 2)
        images[i, 0, x : x + SQUARE, y : y + SQUARE] = 0.95
        corners[i] = x, y
    patients = np.array([f"P{seed}-{i}" for i in range(n)])
    return SplitData(images.astype(np.float32), labels, patients, ("normal", "lesion")), corners


def test_a_planted_anomaly_is_found_and_its_error_map_points_at_it():
    train, _ = planted(160, 20, seed=0)  # the abnormal training images must not matter: the VAE sees normal only
    val, _ = planted(30, 10, seed=1)
    test, corners = planted(40, 20, seed=2)
    cfg = dataclasses.replace(CFG, epochs=25, latent_size=4, batch_size=16)
    generator, history = train_normal_vae(train, val, 0, cfg, CPU)
    model = generator.vaes.models[0]
    assert {h["model"] for h in history} == {"normal"}
    threshold = choose_score_threshold(val.labels != 0, score_images(model, val.images, "bce", CPU)["reconstruction"])
    scores = score_images(model, test.images, "bce", CPU)
    metrics = detection_metrics(test, 0, scores["reconstruction"], threshold)
    assert metrics["auroc"] > 0.95 and metrics["auroc_lesion"] == metrics["auroc"]
    assert metrics["sensitivity"] > 0.8 and metrics["specificity"] > 0.8
    assert scores["elbo"].shape == scores["reconstruction"].shape == (60,)
    hits = 0
    for i in np.flatnonzero(test.labels == 1):
        x, y = np.unravel_index(scores["error_map"][i, 0].argmax(), (16, 16))
        hits += corners[i, 0] <= x < corners[i, 0] + SQUARE and corners[i, 1] <= y < corners[i, 1] + SQUARE
    assert hits >= 18, f"the error map's peak lies on the planted square in only {hits} of 20 images"


def test_threshold_is_chosen_on_the_scores_given():
    is_anomaly = np.array([False, False, False, True, True])
    threshold = choose_score_threshold(is_anomaly, np.array([1.0, 2.0, 3.0, 5.0, 6.0]))
    assert 3.0 < threshold <= 5.0  # separates perfectly
    with pytest.raises(ValueError, match="needs normal and abnormal images"):
        choose_score_threshold(np.zeros(4, dtype=bool), np.arange(4.0))


def test_detection_metrics_match_scikit_learn_for_three_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [30, 10, 8])
    scores = rng.normal(labels.astype(float), 1.0)
    data = SplitData(np.zeros((48, 1, 4, 4), np.float32), labels, np.array(["p"] * 48), ("ok", "b", "c"))
    m = detection_metrics(data, 0, scores, threshold=1.0)
    assert m["auroc"] == pytest.approx(roc_auc_score(labels != 0, scores))
    assert m["auprc"] == pytest.approx(average_precision_score(labels != 0, scores))
    keep = labels != 1
    assert m["auroc_c"] == pytest.approx(roc_auc_score(labels[keep] == 2, scores[keep]))
    assert m["sensitivity"] == pytest.approx(np.mean(scores[labels != 0] >= 1.0))
    assert m["specificity"] == pytest.approx(np.mean(scores[labels == 0] < 1.0))


def test_normal_class_is_the_largest_unless_named():
    data = SplitData(
        np.zeros((5, 1, 4, 4), np.float32), np.array([1, 1, 1, 0, 2]), np.array(["p"] * 5), ("a", "b", "c")
    )
    assert normal_label(data, None) == 1 and normal_label(data, "c") == 2
    with pytest.raises(ValueError, match="anomaly.normal_class 'x' is not a class of this dataset"):
        normal_label(data, "x")


def test_score_files_prepares_a_file_as_preprocess_did(tiny_dataset, tmp_path):
    """`medaug score` on a DICOM of the dataset gives the score of that file's image in the preprocessed split."""
    splits, manifest, _ = preprocess_dataset(tiny_dataset, TINY_PREPROCESS)
    torch.manual_seed(0)
    from pipeline.generators.vae import vae_network

    model = vae_network(tuple(splits["train"].images.shape[1:]), 1, CFG).eval()
    generator = VAEGenerator(tuple(splits["train"].images.shape[1:]), ("normal",), "conditional", CFG)
    generator.vaes = ClassVAEs("conditional", [model]).eval()
    checkpoint = tmp_path / "anomaly_vae.pt"
    extra = {
        "anomaly": {"normal_class": "normal", "score": "reconstruction", "threshold": 100.0},
        "preprocess": dataclasses.asdict(TINY_PREPROCESS),
    }
    save_generator(checkpoint, generator, extra)
    import csv

    with open(tiny_dataset / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    line, row = next((k + 2, r) for k, r in enumerate(rows) if r["path"].endswith(".dcm"))
    entry = next(m for m in manifest if m["labels_csv_line"] == line)
    expected = score_images(model, splits[entry["split"]].images[entry["index"] : entry["index"] + 1], "bce", CPU)
    scored = score_files([tiny_dataset / row["path"]], checkpoint)
    assert len(scored) == 1 and scored[0]["slice"] == 0
    assert scored[0]["reconstruction"] == pytest.approx(float(expected["reconstruction"][0]), rel=1e-5)
    assert scored[0]["abnormal"] == (scored[0]["reconstruction"] >= 100.0)
    with pytest.raises(ValueError, match="is not an anomaly model"):
        plain = tmp_path / "vae.pt"
        save_generator(plain, generator, {})
        score_files([tiny_dataset / row["path"]], plain)
