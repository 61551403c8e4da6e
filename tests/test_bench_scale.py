"""bench/bench_scale.py measures every stage it lists on a generated demo, and its table reads the measurements."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_tiny_case_measures_every_stage_it_lists(bench, tmp_path, monkeypatch):
    # two of its stages: the harness is the same for each, and the stages themselves run in the pipeline's tests
    monkeypatch.setattr(bench, "STAGES", ("preprocess", "train_generator"))
    project = bench.scratch_project(tmp_path / "project")
    demo = {"n_patients": 24, "slices_per_patient": 2, "minority_fraction": 0.25, "image_size": 64}
    preprocess = {"size": 32, "val_fraction": 0.2, "test_fraction": 0.25}
    row = bench.run_case(project, tmp_path / "dataset", demo, preprocess, epochs=1)
    assert row["images"] == 48 and row["processed MiB"] > 0
    for stage in bench.STAGES:
        seconds, peak = row[stage]
        assert seconds > 0 and peak > 50  # a Python process with numpy imported is larger than 50 MiB
    assert not (tmp_path / "dataset").exists()  # the generated dataset is removed after the case
    text = bench.table({"demo x1": row, "demo x2": row})
    assert "peak demo x2 / demo x1" in text and text.count("1.00") == len(bench.STAGES)
