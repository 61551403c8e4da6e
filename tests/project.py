"""Scratch copies of the medaug project for the tests that run `dvc repro` as a user does.

``scratch_project`` copies ``pipeline/`` and ``dvc.yaml`` into a temporary folder, writes params.yaml with overrides
(``{"section": {"key": value}}``, applied in order) and runs `dvc init --no-scm`; ``reproduced_project`` then runs
`dvc repro` to the end. ``dvc`` runs DVC there with the test's Python first on PATH (the stages call ``python``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# A small pipeline: 24 demo patients at 32 px, a few VAE epochs, two classifier epochs and seeds, one ablation ratio,
# two small latent sizes.
TINY = {
    "demo_data": {"n_patients": 24, "slices_per_patient": 2, "minority_fraction": 0.25, "image_size": 64},
    "preprocess": {"size": 32, "val_fraction": 0.2, "test_fraction": 0.25},
    "train_vae": {"epochs": 4, "kl_warmup_epochs": 2, "channels": [8, 16], "strides": [2, 2], "latent_size": 8},
    "train_classifier": {"epochs": 2, "seeds": [0, 1], "channels": [4, 8, 8, 8], "ablation_ratios": [2.0]},
    "latent": {"sizes": [2, 4], "epochs": 2},
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
