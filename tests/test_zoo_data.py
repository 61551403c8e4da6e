"""The zoo's datasets (tests/zoo.py) come out as specified: the manifest's rows, labels, per-class counts, patients
and splits, and every image readable with the expected channels and dimensions. No training."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import pytest

from pipeline.io.manifest import check_manifest, class_folder_rows, read_manifest
from pipeline.io.reader import load_image
from tests.zoo import NO_TEST_SPLIT, ZOO, ZOO_TINY, StageFailed, build, overrides_for, run_pipeline, zoo_project

CASES = [*ZOO, NO_TEST_SPLIT]


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_zoo_is_small_and_named_uniquely():
    assert len({case.name for case in ZOO}) == len(ZOO)
    assert sum(sum(case.counts.values()) for case in ZOO) <= 1000


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_reads_as_specified(tmp_path, case):
    root = build(case, tmp_path / "data")
    if case.layout == "folders":
        assert not (root / "labels.csv").exists()
        rows = class_folder_rows(root)
        assert check_manifest(root) == (rows, [])
    else:
        rows = read_manifest(root)
        assert all(row.relpath.isascii() for row in rows)
        patients = {label: {row.patient_id for row in rows if row.label == label} for label in case.counts}
        assert {label: len(ids) for label, ids in patients.items()} == {
            label: math.ceil(count / case.images_per_patient) for label, count in case.counts.items()
        }
    assert Counter(row.label for row in rows) == Counter(case.counts)
    assert {row.label for row in rows} == set(case.counts)  # labels exactly as given (integers, spaces, umlauts)
    if case.split is not None:
        splits = Counter((row.label, row.split) for row in rows)
        assert splits == Counter({(lab, s): n for lab, parts in case.split.items() for s, n in parts.items() if n})
    else:
        assert all(row.split is None for row in rows)
    spatial = 3 if case.fmt == "nifti3d" else 2
    for row in rows:
        image = load_image(row.path)
        assert image.array.shape[0] == (3 if case.colour else 1), row.relpath
        assert image.spatial_dims == spatial, row.relpath
        assert image.array.shape[1:3] == (case.size, case.size), row.relpath
        assert image.array.std() > 0, row.relpath
    if case.fmt == "dicom":
        assert image.modality == "CT" and -1100 < image.array.min() < image.array.max() < 1000  # HU
    if case.fmt == "png16":
        assert image.max_value == 65535 and image.array.max() > 255


@pytest.mark.parametrize(
    "case", [ZOO[0], *(c for c in ZOO if c.fmt in ("dicom", "nifti3d", "mixed"))], ids=lambda case: case.name
)
def test_build_is_deterministic(tmp_path, case):
    assert _digest(build(case, tmp_path / "one")) == _digest(build(case, tmp_path / "two"))


def test_overrides_and_tiny_params(tmp_path):
    assert overrides_for(next(c for c in ZOO if c.fmt == "nifti3d")) == {"preprocess": {"spatial_dims": 3, "size": 16}}
    assert overrides_for(ZOO[0]) == {}
    with pytest.raises(KeyError, match="vae.epoch"):
        zoo_project(tmp_path, ZOO[0], {"vae": {"epoch": 3}})
    assert ZOO_TINY["compute"] == {"workers": 1}


def test_run_pipeline_names_the_failed_stage(tmp_path):
    """no_test_patient's rare class has two patients: preprocess stops (sys.exit) with a logged message."""
    import yaml

    case = next(c for c in ZOO if c.name == "no_test_patient")
    project = zoo_project(tmp_path, case)
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    assert params["data"]["root"] == str(tmp_path / "data") and params["preprocess"]["size"] == 16
    cwd = Path.cwd()
    with pytest.raises(StageFailed) as failed:
        run_pipeline(project)
    assert Path.cwd() == cwd
    assert failed.value.stage == "preprocess" and failed.value.started == ["preprocess"]
    assert isinstance(failed.value.error, SystemExit) and failed.value.__cause__ is failed.value.error
    assert any("rare" in message for message in failed.value.logged), failed.value.logged
