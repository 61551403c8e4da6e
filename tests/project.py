"""Scratch copies of the medaug project for the tests that run `dvc repro` as a user does.

``scratch_project`` copies ``pipeline/`` and ``dvc.yaml`` into a temporary folder, writes params.yaml with overrides
(``{"section": {"key": value}}``, applied in order) and runs `dvc init --no-scm`; ``reproduced_project`` then runs
`dvc repro` to the end. ``dvc`` runs DVC there with the test's Python first on PATH (the stages call ``python``).
``shared_pipeline_run`` is the one whole run that several test modules share (the ``shared_run`` fixture): it runs the
GitHub workflow's "dvc repro (demo data)" step as CI does (``run_workflow_step``), so a broken step fails here.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "augmentation-report.yml"  # the pull-request workflow

# A small pipeline: 24 demo patients at 32 px, a few VAE epochs, two classifier epochs and seeds, one ablation ratio,
# two small latent sizes.
_TINY_VAE = {"epochs": 4, "kl_warmup_epochs": 2, "channels": [8, 16], "strides": [2, 2], "latent_size": 8}
_GENERATOR = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["generator"]
KIND, MODE = _GENERATOR["kind"], _GENERATOR["mode"]  # the defaults
TINY = {
    "demo_data": {"n_patients": 24, "slices_per_patient": 2, "minority_fraction": 0.25, "image_size": 64},
    "preprocess": {"size": 32, "val_fraction": 0.2, "test_fraction": 0.25},
    "vae": _TINY_VAE,
    "vae_gan": {**_TINY_VAE, "adversarial_warmup_epochs": 2, "discriminator_channels": 8, "discriminator_layers": 2},
    "train_classifier": {"epochs": 2, "seeds": [0, 1], "channels": [4, 8, 8, 8], "ablation_ratios": [0.5]},
    "latent": {"sizes": [2, 4], "epochs": 2},
    "anomaly": {"epochs": 4},
    "learning_curve": {"remedies": []},  # the shared run turns it on
}
# On top of TINY: real_only and vae (which reads the synthetic images) only, one seed, one classifier epoch and no
# ablation; every stage still runs.
SMALLEST = {
    "train_classifier": {
        **TINY["train_classifier"],
        "strategies": ["real_only", "vae"],
        "ablation_ratios": [],
        "seeds": [0],
        "epochs": 1,
    },
}


def dvc_env(**extra: str) -> dict[str, str]:
    """The environment DVC runs in: this Python's folder first on PATH, no analytics."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", **extra}


def dvc(project: Path, *args: str, ok: bool = True) -> str:
    """Run `dvc <args>` in ``project``; assert it succeeded (``ok``) or failed (``not ok``); return its output."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=dvc_env(), capture_output=True, text=True
    )
    if ok:
        assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    else:
        assert done.returncode != 0, f"dvc {' '.join(args)} should have failed:\n{done.stdout[-3000:]}"
    return done.stdout + done.stderr


def workflow_step(name: str) -> dict:
    """The step named ``name`` of the pull-request workflow's one job (its ``run:`` script, ``env:``, ``with:``)."""
    jobs = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]
    steps = [step for job in jobs.values() for step in job["steps"]]
    found = [step for step in steps if step.get("name") == name]
    assert len(found) == 1, f"{WORKFLOW.name} has {len(found)} steps named {name!r}"
    return found[0]


def activate_script(project: Path) -> Path:
    """``project``/.venv/bin/activate that puts this Python's folder (python, dvc) first on PATH, so that a workflow
    step's ``source .venv/bin/activate`` finds what the tests run with."""
    script = project / ".venv" / "bin" / "activate"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "# written by tests/project.py: the tests' Python environment, as `make` builds .venv in CI\n"
        f"export VIRTUAL_ENV={shlex.quote(sys.prefix)}\n"
        f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"\n',
        encoding="utf-8",
    )
    return script


def run_workflow_step(project: Path, name: str, **env: str) -> subprocess.CompletedProcess:
    """Run the ``run:`` script of the workflow step ``name`` in ``project`` as GitHub runs a step without a
    ``shell:`` (``bash -e``), with ``env`` added (what the step's ``env:`` would set); its output, not checked."""
    script = workflow_step(name)["run"]
    activate_script(project)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-c", script],
        cwd=project,
        env=dvc_env(**env),
        capture_output=True,
        text=True,
    )


def set_params(project: Path, *overrides: dict, base: Path | None = None) -> None:
    """Write ``project``/params.yaml: ``base`` (default: the project's own params.yaml) with ``overrides``."""
    params = yaml.safe_load((base or project / "params.yaml").read_text(encoding="utf-8"))
    for override in overrides:
        for section, values in override.items():
            params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def scratch_project(project: Path, *overrides: dict) -> Path:
    """A copy of the project in ``project`` with ``overrides`` applied to params.yaml, before any `dvc repro`."""
    shutil.copytree(ROOT / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    set_params(project, *overrides, base=ROOT / "params.yaml")
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "config", "core.analytics", "false")
    return project


def reproduced_project(project: Path, *overrides: dict) -> Path:
    """``scratch_project`` after a full `dvc repro`."""
    scratch_project(project, *overrides)
    dvc(project, "repro")
    return project


# --- the shared run -------------------------------------------------------------------------------------------------

# TINY, with a generator that trains 20 epochs, so that a kill sent when its training starts lands during it
# (tests/test_reliability.py kills a copy of the shared run there),
# and the vae remedy's own learning curve (a generator per share)
SHARED = {**TINY, KIND: {**TINY[KIND], "epochs": 20}, "learning_curve": {"remedies": ["vae"]}}
REPRO_STEP = "dvc repro (demo data)"  # the workflow step the shared run runs
CORRUPT = "dicom/corrupt/slice_000.dcm"  # a truncated DICOM in the shared run's source, left out by on_error: skip


@dataclass(frozen=True)
class SharedRun:
    project: Path  # the project folder after `dvc repro` (params SHARED, data.root = source)
    source: Path  # the dataset it read, outside the project
    markers: object  # the PHI markers in the source's headers and labels.csv (tests.phi.Markers)
    log: str  # what the workflow's "dvc repro (demo data)" step printed (`dvc repro`, then `dvc status`)
    source_before: dict  # snapshot() of the source before the run


def shared_pipeline_run(folder: Path, marked_dataset: Path, markers) -> SharedRun:
    """The whole tiny pipeline (``SHARED``) through `dvc repro` as a user runs it on their own data, by the workflow's
    "dvc repro (demo data)" step (its script as CI runs it): the source is a copy of the PHI-marked dataset
    (tests/phi.py) plus one truncated DICOM with its labels.csv row, outside the project and read-only during the
    run; ``preprocess.on_error: skip`` leaves the truncated file out."""
    source = folder / "source"
    shutil.copytree(marked_dataset, source)
    first = sorted((source / "dicom").rglob("*.dcm"))[0]
    (source / CORRUPT).parent.mkdir(parents=True)
    (source / CORRUPT).write_bytes(first.read_bytes()[:400])  # cut inside the header, its markers kept
    with open(source / "labels.csv", "a", encoding="utf-8") as fh:
        patient, site = (markers.new("LO", f"{column} of the truncated file") for column in ("patient_id", "site"))
        fh.write(f"{CORRUPT},normal,{patient},{site}\n")
    before = snapshot(source)
    overrides = {"data": {"root": str(source)}, "preprocess": {"on_error": "skip"}}
    project = scratch_project(folder / "project", SHARED, overrides)
    with read_only(source):
        done = run_workflow_step(project, REPRO_STEP)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"the workflow's {REPRO_STEP!r} step failed:\n{log[-6000:]}"
    return SharedRun(project, source, markers, log, before)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
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
def read_only(root: Path):
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
