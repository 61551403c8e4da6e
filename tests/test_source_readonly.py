"""Source data is read-only to medaug: every file of the input dataset (bytes, mtime) and the list of its
files and folders are the same before and after `dvc repro` in a scratch copy of the project, both for a
run that fails on a corrupt file (preprocess.on_error: fail) and for a full run that skips it (skip). During
the full run the source is read-only (chmod, and ``chattr +i`` when running as root, whom chmod does not
stop), so a write attempt would fail loudly rather than only show up in the hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.demo_data import write_demo_dataset
from tests.conftest import TINY_DEMO
from tests.project import SMALLEST, TINY, dvc, scratch_project

CORRUPT = "dicom/corrupt/slice_000.dcm"


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``root`` (and root itself): its SHA-256 (files) or kind, and its mtime in ns."""
    entries = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        if path.is_symlink():
            kind = f"symlink to {os.readlink(path)}"
        elif path.is_file():
            kind = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            kind = "folder"
        entries[path.relative_to(root).as_posix()] = (kind, info.st_mtime_ns)
    return entries


@contextmanager
def _read_only(root: Path):
    """Make every file and folder under ``root`` read-only; undo it afterwards, whatever happens."""
    paths = [root, *root.rglob("*")]
    modes = {path: path.stat().st_mode for path in paths}
    immutable = False
    try:
        for path in paths:
            path.chmod(modes[path] & ~0o222)
        if os.geteuid() == 0:  # root writes through any mode bits; the immutable attribute stops root too
            immutable = (
                shutil.which("chattr") is not None and subprocess.run(["chattr", "-R", "+i", str(root)]).returncode == 0
            )
            if not immutable:
                warnings.warn("running as root without chattr: the source is read-only by mode bits only", stacklevel=2)
        with pytest.raises(PermissionError):  # the protection is real: a write attempt fails loudly
            (root / "probe.txt").write_text("written")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-R", "-i", str(root)], check=True)
        for path in paths:
            path.chmod(modes[path])


def _scratch_project(project: Path, source: Path, on_error: str) -> Path:
    """A scratch copy of the project reading ``source`` (outside it) with the smallest pipeline params (every
    stage runs, in about 45 s on 2 CPU cores)."""
    overrides = {"data": {"root": str(source)}, "preprocess": {"on_error": on_error}}
    return scratch_project(project, TINY, SMALLEST, overrides)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The tiny demo dataset (DICOM slices and series, NIfTI volumes, PHI-like headers) plus one truncated
    DICOM with its own labels.csv row."""
    root = tmp_path_factory.mktemp("source") / "dataset"
    write_demo_dataset(root, TINY_DEMO)
    first = sorted((root / "dicom").rglob("*.dcm"))[0]
    (root / CORRUPT).parent.mkdir(parents=True)
    (root / CORRUPT).write_bytes(first.read_bytes()[:400])  # cut inside the header
    with open(root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write(f"{CORRUPT},normal,MRN-CORRUPT\n")
    return root


@pytest.mark.slow
def test_failing_and_skipping_runs_leave_the_source_untouched(source, tmp_path):
    before = _snapshot(source)
    assert len(before) > 30 and CORRUPT in before

    failing = _scratch_project(tmp_path / "fail", source, on_error="fail")
    output = dvc(failing, "repro", ok=False)
    assert "preprocess stopped, nothing was written" in output and CORRUPT in output
    assert not (failing / "data/processed").exists()
    assert _snapshot(source) == before

    skipping = _scratch_project(tmp_path / "skip", source, on_error="skip")
    with _read_only(source):
        dvc(skipping, "repro")
    summary = json.loads((skipping / "data/processed/summary.json").read_text())
    assert [s["path"] for s in summary["skipped"]] == [CORRUPT]
    assert (skipping / "reports/augmentation_report.md").is_file()  # every stage ran
    assert _snapshot(source) == before
