"""Shared fixtures: small real DICOM/NIfTI datasets written to a temporary folder, and small splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import DemoDataConfig, PreprocessConfig, TrainClassifierConfig
from pipeline.demo_data import write_demo_dataset
from pipeline.io.arrays import SplitData

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# a pytest-xdist worker trains with its share of the cores (the stages' subprocesses take their own)
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, torch.get_num_threads() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

TINY_DEMO = DemoDataConfig(
    n_patients=24,
    slices_per_patient=2,
    minority_fraction=0.25,
    nifti_fraction=0.25,
    layout="mixed",
    image_size=64,
    seed=0,
)
TINY_PREPROCESS = PreprocessConfig(
    size=32,
    spatial_dims=2,
    spacing=None,
    modality_default="CT",
    ct_window="custom",
    ct_window_level=-400,
    ct_window_width=1500,
    slice_policy="all",
    slices_per_volume=5,
    val_fraction=0.2,
    test_fraction=0.25,
    id_salt="test-salt",
    on_error="fail",
    allow_burned_in=False,
    max_image_gib=2.0,
    workers=1,
    seed=0,
)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A demo dataset of 24 patients (DICOM slices, DICOM series, NIfTI volumes) with labels.csv."""
    root = tmp_path_factory.mktemp("tiny_demo")
    write_demo_dataset(root, TINY_DEMO)
    return root


@pytest.fixture(scope="session")
def marker_dataset(tmp_path_factory):
    """The tiny demo dataset with a PHI marker in every PS3.15 attribute of every DICOM header and in every
    patient_id of labels.csv: (root, markers, number of attributes marked). See tests/phi.py."""
    from tests.phi import build_marker_dataset

    root = tmp_path_factory.mktemp("phi") / "dataset"
    markers, n_attributes = build_marker_dataset(root)
    return root, markers, n_attributes


# the test modules that use the shared run (below): under pytest-xdist they go to one worker, which makes the run once
SHARED_RUN_MODULES = {
    f"tests/{path.name}" for path in Path(__file__).parent.glob("test_*.py") if "shared_run" in path.read_text()
}


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs two pytest-xdist workers: each test is a unit of work of its own, but the modules of the
    shared run go to one worker together (xdist's ``loadgroup`` marks do not reach its scheduler under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "shared_run" if module in SHARED_RUN_MODULES else nodeid

    return SharedRunTogether(config, log)


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, marker_dataset):
    """The one `dvc repro` of the whole tiny pipeline that the end-to-end, privacy, read-only-source and reliability
    tests share (tests/project.py, ``shared_pipeline_run``)."""
    from tests.project import shared_pipeline_run

    root, markers, _ = marker_dataset
    return shared_pipeline_run(tmp_path_factory.mktemp("shared"), root, markers)


def make_split(
    n: int = 24,
    size: int = 16,
    classes: tuple[str, ...] = ("a", "b"),
    seed: int = 0,
    prefix: str = "P",
    labels: np.ndarray | None = None,
) -> SplitData:
    """Random images where class k >= 1 has a bright square at its own place: enough signal for a model to
    learn something. Patients are ``<prefix>0``, ``<prefix>1``, ...; ``labels`` overrides the round robin."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(classes) if labels is None else np.asarray(labels)
    n = len(labels)
    images = rng.uniform(0, 0.3, (n, 1, size, size)).astype(np.float32)
    for k in range(1, len(classes)):
        images[labels == k, :, 4 * k : 4 * k + 6, 4:10] = 0.9
    return SplitData(images, labels.astype(np.int64), np.array([f"{prefix}{i}" for i in range(n)]), classes)


def classifier_config(**changes) -> TrainClassifierConfig:
    """A tiny classifier's settings (4-8 channels, batch 8, one seed) with ``changes``."""
    return TrainClassifierConfig(
        **{
            "strategies": ("real_only",),
            "synthetic_ratio": 1.0,
            "ablation_ratios": (),
            "network": "resnet_small",
            "channels": (4, 8, 8, 8),
            "blocks_per_level": 1,
            "stem_stride": 2,
            "epochs": 2,
            "patience": 0,
            "batch_size": 8,
            "learning_rate": 0.003,
            "seeds": (0,),
        }
        | changes
    )
