"""The GitHub workflow (.github/workflows/augmentation-report.yml), which only runs on GitHub: checked by actionlint
(with shellcheck on its scripts) and zizmor, and its ``run:`` steps run here on the tiny dataset, so a broken step
fails the suite rather than a pull request.

The "dvc repro (demo data)" step is the shared run itself (tests/project.py, ``shared_pipeline_run``); the "Job
summary" step runs after it in the same project. The install step fetches torch from PyTorch's index, which the
suite cannot reach: its ``make`` target and torch pin are checked instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.project import REPRO_STEP, ROOT, WORKFLOW, dvc_env, run_workflow_step, workflow_step

SUMMARY_STEP = "Job summary"
INSTALL_STEP = "Install (CPU build of torch first, so requirements.lock's torch==2.13.0 pulls no CUDA packages)"


def _tool(name: str) -> str:
    """The tool ``name`` installed beside this Python (the dev extras), else on PATH; skipped when neither has it."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements.lock installs it with the dev extras)")
    return found


def _steps() -> list[dict]:
    jobs = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


def test_every_run_step_is_run_or_checked_by_the_suite():
    """A step added to the workflow gets a test here (run, or checked where it cannot run) before it reaches CI."""
    covered = {REPRO_STEP, SUMMARY_STEP, INSTALL_STEP}
    run_steps = [step.get("name") for step in _steps() if "run" in step]
    assert set(run_steps) <= covered, f"run: steps no test covers: {sorted(set(run_steps) - covered, key=str)}"


def test_actionlint_finds_nothing():
    actionlint = _tool("actionlint")
    done = subprocess.run(
        [actionlint, *sorted(str(p) for p in WORKFLOW.parent.glob("*.y*ml"))],
        cwd=ROOT,
        env=dvc_env(),  # this Python's folder first on PATH: actionlint runs shellcheck from there on run: scripts
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing():
    """zizmor's default persona (every severity): no finding, offline (no look-up of the pinned actions)."""
    zizmor = _tool("zizmor")
    done = subprocess.run(
        [zizmor, "--offline", "--no-progress", str(WORKFLOW.parent)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_step_builds_the_make_target_with_the_locked_torch():
    script = workflow_step(INSTALL_STEP)["run"]
    targets = re.findall(r"^\s*make\s+(\S+)\s*$", script, flags=re.MULTILINE)
    assert targets, f"no make call in the install step:\n{script}"
    locked = re.search(r"^torch==(\S+)$", (ROOT / "requirements.lock").read_text(encoding="utf-8"), re.MULTILINE)
    assert locked and f"torch=={locked[1]} " in script, "the install step's torch is not requirements.lock's"
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for target in targets:  # -n: print what it would run, run nothing; a target make has no rule for fails
        done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"make has no target {target!r}:\n{done.stderr}"


@pytest.mark.slow
def test_repro_step_ran_the_pipeline_and_left_it_up_to_date(shared_run):
    assert "Running stage 'report'" in shared_run.log  # `dvc repro` ran every stage, the last one too
    assert "Data and pipelines are up to date." in shared_run.log  # `dvc status` after it


@pytest.mark.slow
def test_job_summary_step_writes_the_summary_and_every_artifact_path_exists(shared_run, tmp_path):
    """The summary step in the shared run's project, as on a first pull request: no base branch to diff against
    (the project is not a git checkout), so the metrics and plots fall back to this run's own."""
    project, summary = shared_run.project, tmp_path / "step_summary.md"
    shutil.rmtree(project / "dvc_plots", ignore_errors=True)  # what this step writes, not an earlier test
    step = workflow_step(SUMMARY_STEP)
    assert step["env"] == {"BASE": "${{ github.base_ref || 'main' }}"}
    done = run_workflow_step(project, SUMMARY_STEP, BASE="main", GITHUB_STEP_SUMMARY=str(summary))
    assert done.returncode == 0, done.stdout + done.stderr
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## Metrics against origin/main\n") and "(no metrics on origin/main)" in text
    report = (project / "reports/augmentation_report.md").read_text(encoding="utf-8")
    pictures = re.findall(r"!\[([^]]*)\]\([^)]*\)", report)
    assert pictures and "## Verdict" in text and "![" not in text  # the report, every picture named instead
    assert all(f"*(picture: {alt}, in the HTML report)*" in text for alt in pictures)
    upload = next(s for s in _steps() if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    paths = upload["with"]["path"].split()
    assert "dvc_plots/" in paths  # written by this step: `dvc plots show` when there is no base to diff
    for path in paths:
        found = project / path
        assert (found.is_dir() and any(found.iterdir())) if path.endswith("/") else found.is_file(), path
    assert (project / "dvc_plots" / "index.html").is_file()
