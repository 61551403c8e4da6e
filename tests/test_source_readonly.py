"""Source data is read-only to medaug: every file of the input dataset (bytes, mtime) and the list of its
files and folders are the same before and after `dvc repro`, both for a run that fails on a corrupt file
(preprocess.on_error: fail) and for the shared full run that skips it (skip). During the full run the source is
read-only (chmod, and ``chattr +i`` when running as root, whom chmod does not stop), so a write attempt would fail
loudly rather than only show up in the hashes (tests/project.py, ``read_only``).
"""

from __future__ import annotations

import json

import pytest

from tests.project import CORRUPT, SMALLEST, TINY, dvc, scratch_project, snapshot


@pytest.mark.slow
def test_a_skipping_run_leaves_the_source_untouched(shared_run):
    assert len(shared_run.source_before) > 30 and CORRUPT in shared_run.source_before
    summary = json.loads((shared_run.project / "data/processed/summary.json").read_text())
    assert [s["path"] for s in summary["skipped"]] == [CORRUPT]
    assert (shared_run.project / "reports/augmentation_report.md").is_file()  # every stage ran
    assert snapshot(shared_run.source) == shared_run.source_before


@pytest.mark.slow
def test_a_failing_run_leaves_the_source_untouched(shared_run, tmp_path):
    before = snapshot(shared_run.source)
    overrides = {"data": {"root": str(shared_run.source)}, "preprocess": {"on_error": "fail"}}
    failing = scratch_project(tmp_path / "fail", TINY, SMALLEST, overrides)
    output = dvc(failing, "repro", ok=False)
    assert "preprocess stopped, nothing was written" in output and CORRUPT in output
    assert not (failing / "data/processed").exists()
    assert snapshot(shared_run.source) == before
