"""The whole pipeline through `dvc repro` on a tiny configuration, in a scratch copy of the project: the shared run
(tests/project.py: a PHI-marked tiny demo dataset outside the project, read-only), and a 3D run."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from pipeline.io.arrays import load_split
from pipeline.reporting.provenance import dataset_fingerprint, lock_fingerprint
from tests.project import ROOT, SMALLEST, TINY, dvc, dvc_env, set_params
from tests.zoo import run_pipeline

# The same pipeline on whole volumes: demo patients as DICOM series / NIfTI volumes, 3D VAEs (one per class,
# bootstrap sampler, consistency filter) and classifier.
TINY_3D = {
    "demo_data": {"layout": "volumes", "slices_per_patient": 8},
    "preprocess": {"spatial_dims": 3, "size": 16},
    "generator": {"mode": "per_class"},
    "generate": {"sampler": "bootstrap", "filter": ["consistency"]},
}


@pytest.fixture(scope="module")
def project(shared_run) -> Path:
    return shared_run.project


@pytest.mark.slow
def test_outputs_exist_with_declared_shapes_and_ranges(project):
    for split in ("train", "val", "test"):
        data = load_split(project / "data/processed", split)
        images = data.images[:]  # the split file read whole (a small project)
        assert data.images.shape[1:] == (1, 32, 32) and 0 <= images.min() and images.max() <= 1
    metrics = json.loads((project / "reports/metrics.json").read_text())
    strategies = yaml.safe_load((project / "params.yaml").read_text())["train_classifier"]["strategies"]
    for strategy in strategies:
        own = json.loads((project / f"reports/classifier/{strategy}/metrics.json").read_text())
        assert 0 <= own["balanced_accuracy"] <= 1 and metrics[strategy]["balanced_accuracy"] == own["balanced_accuracy"]
        assert (
            strategy == "real_only" or -1 <= metrics[strategy]["vs_real_only"]["balanced_accuracy"]["difference"] <= 1
        )
    with open(project / "reports/synthetic_ratio.csv") as fh:
        assert [float(r["ratio"]) for r in csv.DictReader(fh)] == [0.0, 0.5, 1.0]  # real_only, ablation@0.5, vae
    report = (project / "reports/augmentation_report.md").read_text()
    assert "## Verdict" in report and "synthetic_only" in report and "## Synthetic-ratio ablation" in report
    for figure in ("real_vs_synthetic", "synthetic_ratio"):
        assert (project / f"reports/figures/{figure}.png").stat().st_size > 1000


@pytest.mark.slow
def test_dvc_metrics_show_lists_every_strategy(project):
    shown = json.loads(dvc(project, "metrics", "show", "--json"))
    metrics = next(iter(shown.values()))["data"]
    strategies = metrics["reports/metrics.json"]["data"]
    for strategy in ("real_only", "oversample", "vae", "synthetic_only", "vae_ratio_0.5"):
        assert 0 <= strategies[strategy]["balanced_accuracy"] <= 1
    # the source's site column (two marked scanners): per-site test metrics, by pseudonym, in metrics and the report
    sites = strategies["sites"]
    assert len(sites) == 2 and all(site.startswith("S") and len(site) == 13 for site in sites)
    assert sum(sum(entry["images"].values()) for entry in sites.values()) == len(
        load_split(project / "data/processed", "test")
    )
    report = (project / "reports/augmentation_report.md").read_text()
    assert "## Per site" in report and all(site in report for site in sites)
    # real_only's minority learning curve (two shares and the whole split) prices every other remedy
    written = json.loads((project / "reports/metrics.json").read_text())
    curve = written["learning_curve"]  # a list: dvc metrics show leaves it out
    assert len(curve) == 3 and [p["minority_images"] for p in curve] == sorted(p["minority_images"] for p in curve)
    assert isinstance(strategies["worth"]["vae"]["balanced_accuracy"]["difference"], float)  # in dvc metrics
    worth = written["worth"]
    ran = yaml.safe_load((project / "params.yaml").read_text())["train_classifier"]["strategies"]
    assert set(worth) == set(ran) - {"real_only"}
    assert all(isinstance(w["balanced_accuracy"]["sentence"], str) for w in worth.values())
    assert "## What the gains are worth in real images" in report
    assert (project / "reports/figures/learning_curve.png").stat().st_size > 1000
    # the vae remedy's own curve (learning_curve.remedies: [vae]): a generator per share, paired with real_only there
    own = written["learning_curve_remedies"]["vae"]
    assert [p["minority_images"] for p in own] == [p["minority_images"] for p in curve]
    assert all(
        p["vs_real_only"]["ci_low"] <= p["vs_real_only"]["difference"] <= p["vs_real_only"]["ci_high"] for p in own
    )
    share = project / "reports/classifier_curve/curve_0.25/vae"
    assert {p.name for p in share.iterdir()} == {"metrics.json", "runs.json", "predictions.npz"}
    assert "### Each remedy at every share" in report
    assert {"reports/anomaly/metrics.json", "reports/latent/metrics.json", "reports/quality/metrics.json"} <= set(
        metrics
    )
    for name in ("real_only", "vae", "ablation_0.5"):  # every remedy's own files, from the one classifier stage
        assert {p.name for p in (project / "reports/classifier" / name).iterdir()} == {
            "metrics.json",
            "runs.json",
            "predictions.npz",
        }


@pytest.mark.slow
def test_quality_stage_measures_every_class_and_audits_memorisation(project):
    quality = json.loads((project / "reports/quality/metrics.json").read_text())
    assert set(quality["per_class"]) == {"nodule", "normal"}
    for q in quality["per_class"].values():
        assert q["fd"] >= 0 and q["held_out_fd"] >= 0 and q["synthetic_images"] > 0 and q["held_out_images"] > 0
        assert all(0 <= q[p + k] <= 1 for k in ("precision", "recall", "coverage") for p in ("", "held_out_"))
    for space in ("pixels", "features"):
        assert 0 <= quality["memorisation"][space]["flagged_fraction"] <= 1
    report = (project / "reports/augmentation_report.md").read_text()
    assert "## Synthetic data quality" in report and "Memorisation audit" in report
    for figure in ("memorisation", "closest_pairs"):
        assert (project / f"reports/figures/{figure}.png").stat().st_size > 1000


@pytest.mark.slow
def test_anomaly_and_latent_stages_report_their_results(project):
    anomaly = json.loads((project / "reports/anomaly/metrics.json").read_text())
    assert anomaly["normal_class"] == "normal" and 0 <= anomaly["auroc"] <= 1 and 0 <= anomaly["sensitivity"] <= 1
    latent = json.loads((project / "reports/latent/metrics.json").read_text())
    assert list(latent["reduction"]) == ["2", "4"]  # keyed by latent size, so `dvc metrics show` shows them
    assert all(r["vae_mse"] > 0 and r["pca_mse"] > 0 for r in latent["reduction"].values())
    assert {(n, f) for n, by in latent["classification"].items() for f in by} == {
        (n, f) for n in ("2", "4") for f in ("vae", "pca")
    }
    shown = json.loads(dvc(project, "metrics", "show", "--json"))
    assert next(iter(shown.values()))["data"]["reports/latent/metrics.json"]["data"]["reduction"]["4"]["vae_mse"] > 0
    report = (project / "reports/augmentation_report.md").read_text()
    assert "## Anomaly detection" in report and "## The VAE as dimensionality reduction" in report
    for figure in ("anomaly_maps", "anomaly_scores", "latent_projection", "latent_traversal", "latent_denoising"):
        assert (project / f"reports/figures/{figure}.png").stat().st_size > 1000
    plots = dvc(project, "plots", "show", "--json")
    assert "reports/anomaly/roc.csv" in plots and "reports/latent/reduction.csv" in plots


@pytest.mark.slow
def test_html_report_is_self_contained_with_curves_and_provenance(project):
    page = (project / "reports/augmentation_report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 15 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<script" not in page  # opens offline
    report = (project / "reports/augmentation_report.md").read_text()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert f"`{lock_fingerprint(lock)}`" in report  # every stage's dvc.lock entry as it stood, the report aside
    source = yaml.safe_load((project / "params.yaml").read_text())["data"]["root"]
    assert dataset_fingerprint(lock, source)["md5"] in report and "Code: not a git checkout" in report
    assert re.search(r"\| train_generator \| \d+ s \| cpu", report)  # its run here, from the run log
    salt = yaml.safe_load((project / "params.yaml").read_text())["preprocess"]["id_salt"]
    assert salt not in report and salt not in page
    strategies = yaml.safe_load((project / "params.yaml").read_text())["train_classifier"]["strategies"]
    with open(project / "reports/curves/roc.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["fpr", *strategies] and all(float(rows[-1][s]) == 1.0 for s in strategies)
    assert sorted(p.stem for p in (project / "reports/curves/confusion").iterdir()) == sorted(strategies)
    run = [sys.executable, "-m", "dvc", "plots", "show", "--json"]
    plots = json.loads(subprocess.run(run, cwd=project, env=dvc_env(), capture_output=True, text=True).stdout)
    assert not plots.get("errors") and {"classifier_roc", "classifier_pr", "generator_loss"} <= set(plots["data"])
    assert "reports/curves/confusion/vae.csv" in plots["data"]


@pytest.mark.slow
def test_medaug_score_scores_dicom_files_with_the_anomaly_model(project, tmp_path):
    """`medaug score` in the project folder on a DICOM slice and a DICOM series of the dataset: one row per
    slice; a corrupt file is an error naming it, and the exit status says so. (Its files go to ``tmp_path``: the
    shared project is searched for PHI, and a truncated copy of a marked header is not an output of medaug.)"""
    dicom = Path(yaml.safe_load((project / "params.yaml").read_text())["data"]["root"]) / "dicom"
    files = sorted(p for p in dicom.rglob("*.dcm") if p.parent.name != "corrupt")
    series = next(p for p in dicom.iterdir() if p.is_dir() and len(list(p.glob("*.dcm"))) > 1)
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(files[0].read_bytes()[:300])
    scores = tmp_path / "scores.csv"
    run = [sys.executable, "-m", "pipeline.cli", "score", str(files[0]), str(series), "--out", str(scores)]
    done = subprocess.run(run, cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(scores) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 2 and {r["file"] for r in rows} == {str(files[0]), str(series)}
    assert all(float(r["reconstruction"]) > 0 for r in rows) and "normal" in done.stdout.lower()
    failed = subprocess.run(run[:4] + [str(corrupt)], cwd=project, capture_output=True, text=True)
    assert failed.returncode == 1 and "corrupt.dcm" in failed.stderr
    salt = yaml.safe_load((project / "params.yaml").read_text())["preprocess"]["id_salt"]
    import torch

    checkpoint = torch.load(project / "models/anomaly_vae.pt", weights_only=True)  # the pseudonym salt is a secret
    assert checkpoint["preprocess"]["id_salt"] == "not-stored"
    assert salt.encode() not in (project / "models/anomaly_vae.pt").read_bytes()


@pytest.mark.slow
def test_generator_loss_decreases(project):
    with open(project / "reports/generator_training.csv") as fh:
        history = list(csv.DictReader(fh))
    assert float(history[-1]["train_elbo"]) < float(history[0]["train_elbo"])


@pytest.mark.slow
def test_no_test_patient_reaches_a_learner_and_generated_count_matches_the_pool(project):
    import torch

    train, val, test = (load_split(project / "data/processed", s) for s in ("train", "val", "test"))
    assert not set(test.patients) & (set(train.patients) | set(val.patients))
    learnt_from = set(torch.load(project / "models/generator.pt", weights_only=True)["patients"])
    assert learnt_from == set(train.patients) | set(val.patients)  # the generator learnt from train + val only
    generation = json.loads((project / "data/synthetic/summary.json").read_text())
    assert set(generation["generator_patients"]) == learnt_from
    with open(project / "data/synthetic/manifest.csv") as fh:
        rows = list(csv.DictReader(fh))
    counts = train.counts()
    majority = max(counts.values())
    for name, n in counts.items():  # the vae strategy: the gap + the largest gap (synthetic_all_classes 1); every_class
        assert sum(r["label"] == name for r in rows) == max(2 * (majority - n), n)
    assert len(list((project / "data/synthetic").rglob("*.nii.gz"))) == len(rows)
    pool = np.load(project / "data/synthetic/pool_images.npy", mmap_mode="r")  # the pool the stages train on
    assert pool.shape == (len(rows), 1, 32, 32) and pool.dtype == np.float32
    assert len(list((project / "data/synthetic").rglob("*.dcm"))) == len(rows)  # DICOM in, DICOM out
    assert np.array_equal(np.unique([r["checkpoint_sha256"] for r in rows]).size, 1)


@pytest.mark.slow
def test_second_repro_reproduces_nothing(project):
    out = dvc(project, "repro")
    assert "Running stage" not in out and "up to date" in out


@pytest.mark.slow
def test_3d_volumes_run_through_every_stage(tmp_path):
    """Every stage's code in this process (tests/zoo.py's runner: DVC's part is the shared run's), the demo's
    volumes from its own demo_data stage."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ROOT / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    set_params(project, TINY, SMALLEST, TINY_3D, base=ROOT / "params.yaml")
    run_pipeline(project, skip=())
    train = load_split(project / "data/processed", "train")
    assert train.images.shape[1:] == (1, 16, 16, 16)  # whole volumes, not slices
    summary = json.loads((project / "data/processed/summary.json").read_text())
    assert summary["n_images"] == summary["n_files"] == 24  # one image per patient
    synthetic = sorted((project / "data/synthetic").rglob("*.nii.gz"))
    assert synthetic and nib.load(synthetic[0]).shape == (16, 16, 16)
    generation = json.loads((project / "data/synthetic/summary.json").read_text())
    assert generation["mode"] == "per_class" and generation["filter"] == ["consistency"]
    assert sum(generation["written"].values()) == len(synthetic)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert 0 <= metrics["vae"]["balanced_accuracy"] <= 1
