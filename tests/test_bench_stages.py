"""bench/bench_stages.py, the script run on a machine with a GPU, keeps working where it can be tested: on a CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from pipeline.generators import GENERATORS
from tests.conftest import make_split

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_stages", ROOT / "bench" / "bench_stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stages_are_dvc_yamls_in_order(bench):
    names = [name for name, _ in bench.stages()]
    assert names[:2] == list(bench.FIRST) and "train_generator" in names and names[-1] == "report"
    assert all(command.startswith("python -m pipeline.") for _, command in bench.stages())


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_every_generator_loop_runs_and_reports_finite_losses(bench, kind):
    train, val = make_split(24, size=32), make_split(8, size=32, seed=1, prefix="V")
    row = bench.generator_row(kind, False, 1, train, val, CPU)
    assert row["finite"] is True and row["images_per_s"] > 0 and row["loop"] == kind


def test_classifier_loop_and_table(bench):
    row = bench.classifier_row(False, 1, make_split(24, size=32), make_split(8, size=32, seed=1, prefix="V"), CPU)
    assert row["images_per_s"] > 0
    text = bench.table([row, {"loop": "x", "error": "E"}])
    assert text.splitlines()[0] == "| loop | amp | images_per_s | finite | error |"
    assert text.splitlines()[-1] == "| x |  |  |  | E |"
