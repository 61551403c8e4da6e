"""Reliability (issue 8): outputs are complete or absent, whenever a run is killed; the same params give the same
results twice, and a different seed changes them.

The end-to-end tests use two runs of the small pipeline: ``reference``, the uninterrupted shared run
(tests/project.py), and ``resumed``: a copy of it whose VAE and synthetic images are deleted (and DVC's cache, so
that nothing is restored without running), whose `dvc repro` is then killed (SIGKILL to its whole process group)
while ``train_generator`` trains, again while ``generate`` writes its images, and then runs to the end. Every output is
deterministic for its params, so "complete" can be checked exactly: each file present under its final name after a
kill is the reference's file, each output folder present holds exactly the reference's files; and the stages that
ran again gave the reference's bits (had they not, every stage after them would have run again and differed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.io.atomic import atomic_dir, atomic_file, remove_stale_staging
from tests.project import KIND, MODE, ROOT, dvc, dvc_env, set_params

# folder outputs of demo_data, preprocess, generate and train_classifier, each written whole
OUTPUT_DIRS = ("data/demo", "data/processed", "data/synthetic", "reports/classifier")
TEMPORARY = re.compile(r"\.tmp(-\d+(-old)?)?(/|$)")  # atomic_file's and atomic_dir's names (pipeline/io/atomic.py)
# the tqdm bars that show train_generator training and generate writing images (of the first class, "nodule")
# (per_class trains the first class's network first: "nodule")
TRAINING, WRITING = f"{KIND} {'conditional' if MODE == 'conditional' else 'nodule'}", "write nodule"


# --- the helpers of pipeline/io/atomic.py ---------------------------------------------------------------------------


def test_atomic_file_replaces_the_file_only_when_the_block_completes(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    with atomic_file(path) as tmp:  # the folder is created
        tmp.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]
    with atomic_file(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old"  # nothing under the final name until the end
    assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_atomic_dir_swaps_the_whole_folder_only_when_the_block_completes(tmp_path):
    path = tmp_path / "synthetic"
    path.mkdir()
    (path / "old.nii.gz").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(path) as staging:
        (staging / "a.nii.gz").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"] and (path / "old.nii.gz").read_text() == "old"
    with atomic_dir(path) as staging:
        (staging / "class").mkdir()
        (staging / "class" / "a.nii.gz").write_text("new")
        assert not (path / "class").exists()  # nothing under the final name until the end
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # no staging or old folder left
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) == ["class", "class/a.nii.gz"]


_KILLED_WRITER = """
import sys, time
from pipeline.io.atomic import atomic_dir, atomic_file
with atomic_dir(sys.argv[1]) as staging, atomic_file(sys.argv[2]) as tmp:
    (staging / "first.nii.gz").write_text("new")
    tmp.write_text("half")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_mid_write_leaves_the_old_outputs_and_the_next_run_removes_its_staging(tmp_path):
    folder, file = tmp_path / "synthetic", tmp_path / "vae.pt"
    folder.mkdir()
    (folder / "old.nii.gz").write_text("old")
    file.write_text("old")
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(folder), str(file)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait()
    assert (folder / "old.nii.gz").read_text() == "old" and not (folder / "first.nii.gz").exists()
    assert file.read_text() == "old"
    stale = tmp_path / f"synthetic.tmp-{writer.pid}"
    assert (stale / "first.nii.gz").is_file()  # the killed writer's staging folder
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        (tmp_path / f"synthetic.tmp-{live.pid}").mkdir()  # a writer still running: its staging is left alone
        assert remove_stale_staging(folder) == [stale]
        live.kill()
    with atomic_file(file) as tmp:  # the next write of the file replaces the killed writer's temporary file
        tmp.write_text("new")
    assert file.read_text() == "new" and not (tmp_path / "vae.pt.tmp").exists()


# --- the pipeline, killed and run twice -----------------------------------------------------------------------------


def _repro_killed_at(project: Path, marker: str, log: Path, timeout: float = 600) -> str:
    """Start `dvc repro` in a process group of its own, send SIGKILL to the whole group (dvc and the stage it runs)
    as soon as ``marker`` shows in the output, and return the output."""
    # PYTHONUNBUFFERED: dvc's own lines ("Running stage ...") reach the log before the kill; the markers are progress
    # bars' labels, so a TQDM_DISABLE of the caller's shell must not reach the stages
    env = {k: v for k, v in dvc_env(PYTHONUNBUFFERED="1").items() if k != "TQDM_DISABLE"}
    with open(log, "wb") as out:
        repro = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            while marker not in log.read_text(errors="replace"):
                assert repro.poll() is None, f"dvc repro ended before {marker!r}:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no {marker!r} after {timeout} s"
                time.sleep(0.02)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(repro.pid, signal.SIGKILL)
            repro.wait()
    return log.read_text(errors="replace")


def _tree(project: Path) -> dict[str, str]:
    """Everything under data/, models/ and reports/, by path relative to ``project``: a file's SHA-256, or "folder"."""
    paths = [path for top in ("data", "models", "reports") for path in sorted((project / top).rglob("*"))]
    return {path.relative_to(project).as_posix(): _digest(path) for path in paths}


def _digest(path: Path) -> str:
    """SHA-256 of a file; of the report, up to its provenance section (when and where it ran differs by run)."""
    if not path.is_file():
        return "folder"
    blob = path.read_bytes()
    if path.name.startswith("augmentation_report."):
        blob = re.split(rb"## Provenance|<h2>Provenance</h2>", blob)[0]
    return hashlib.sha256(blob).hexdigest()


def _incomplete(tree: dict[str, str], reference: dict[str, str]) -> list[str]:
    """Outputs under their final names that are not the complete ones: files and folders that differ from (or are
    not in) the reference, and output folders present, even empty, without everything the reference's holds."""
    final = {path: digest for path, digest in tree.items() if not TEMPORARY.search(path)}
    wrong = [path for path, digest in final.items() if reference.get(path) != digest]
    for folder in OUTPUT_DIRS:
        if folder in final:
            wrong += [f"{path} (missing)" for path in reference if path.startswith(folder + "/") and path not in final]
    return wrong


def _metrics(project: Path) -> dict[str, dict]:
    paths = [project / "reports/metrics.json", *sorted((project / "reports/classifier").glob("*/metrics.json"))]
    return {path.relative_to(project).as_posix(): json.loads(path.read_text()) for path in paths}


def _synthetic_images(tree: dict[str, str]) -> dict[str, str]:
    return {path: digest for path, digest in tree.items() if re.match(r"data/synthetic/.*\.(nii\.gz|dcm)$", path)}


@pytest.fixture(scope="module")
def reference(shared_run) -> Path:
    """An uninterrupted run."""
    return shared_run.project


@pytest.fixture(scope="module")
def resumed(reference, tmp_path_factory) -> dict:
    """A copy of the reference without its generator, synthetic images and DVC cache, its `dvc repro` killed while
    train_generator trains, killed again while generate writes, then run to the end: its project, and the outputs and
    `dvc repro` output after each kill."""
    project = tmp_path_factory.mktemp("resumed") / "project"
    shutil.copytree(reference, project, symlinks=True)
    shutil.rmtree(project / ".dvc" / "cache")  # nothing restored from DVC's cache: what is missing must run
    (project / "models" / "generator.pt").unlink()
    shutil.rmtree(project / "data" / "synthetic")
    run: dict = {"project": project}
    for stage, marker in (("train_generator", TRAINING), ("generate", WRITING)):
        run[f"{stage} log"] = _repro_killed_at(project, marker, project.parent / f"killed_in_{stage}.log")
        run[f"{stage} tree"] = _tree(project)
    run["last log"] = dvc(project, "repro")
    return run


@pytest.mark.slow
def test_a_kill_while_train_generator_trains_leaves_no_half_written_output(reference, resumed):
    log, tree = resumed["train_generator log"], resumed["train_generator tree"]
    assert "Running stage 'train_generator'" in log and "Running stage 'generate'" not in log  # killed there
    assert {"data/processed/train.npz", "data/processed/train_images.npy"} <= set(tree)  # earlier stages finished
    assert "models/generator.pt" not in tree or tree["models/generator.pt"] == _tree(reference)["models/generator.pt"]
    assert not _incomplete(tree, _tree(reference))


@pytest.mark.slow
def test_a_kill_while_generate_writes_leaves_no_half_written_output(reference, resumed):
    log, tree = resumed["generate log"], resumed["generate tree"]
    assert "Running stage 'generate'" in log and "Running stage 'train_classifier" not in log  # killed in generate
    assert "models/generator.pt" in tree  # train_generator, run again, had finished
    assert not _incomplete(tree, _tree(reference))  # data/synthetic absent (or, had it finished, complete)
    assert any(re.fullmatch(r"data/synthetic\.tmp-\d+", path) for path in tree)  # the staging folder it wrote in


@pytest.mark.slow
def test_the_run_resumed_after_the_kills_gives_the_uninterrupted_results(reference, resumed):
    project = resumed["project"]
    log = resumed["last log"]
    assert "Running stage 'generate'" in log and "Running stage 'train_generator'" not in log  # done before the kill
    assert _metrics(project) == _metrics(reference)
    tree = _tree(project)
    assert not [path for path in tree if TEMPORARY.search(path)]  # the killed runs' staging is gone
    assert tree == _tree(reference)  # every output, figures and report included


@pytest.mark.slow
def test_two_runs_with_the_same_params_give_the_same_images_model_and_metrics(reference, resumed):
    first, second = _tree(reference), _tree(resumed["project"])
    images = _synthetic_images(first)
    assert len(images) > 20 and any(p.endswith(".dcm") for p in images) and any(p.endswith(".nii.gz") for p in images)
    assert _synthetic_images(second) == images
    assert second["models/generator.pt"] == first["models/generator.pt"]
    assert _metrics(resumed["project"]) == _metrics(reference)


def _variant(reference: Path, project: Path, override: dict, target: str) -> tuple[Path, str]:
    """A copy of the reference project with ``override`` applied to its params, after `dvc repro target`."""
    shutil.copytree(reference, project, symlinks=True)
    set_params(project, override)
    return project, dvc(project, "repro", target)


@pytest.mark.slow
def test_another_generate_seed_changes_the_synthetic_images(reference, tmp_path):
    project, log = _variant(reference, tmp_path / "seed", {"generate": {"seed": 1}}, "generate")
    assert "Running stage 'generate'" in log and "Running stage 'train_generator'" not in log
    before, after = _synthetic_images(_tree(reference)), _synthetic_images(_tree(project))
    assert before.keys() == after.keys()  # as many images, under the same names
    assert not set(before.values()) & set(after.values())  # none the same


@pytest.mark.slow
def test_other_classifier_seeds_change_the_classifier_metrics(reference, tmp_path):
    override = {"train_classifier": {"seeds": [1]}}
    project, log = _variant(reference, tmp_path / "seeds", override, "train_classifier")
    assert "Running stage 'train_classifier'" in log and "Running stage 'generate'" not in log
    path = "reports/classifier/real_only/metrics.json"
    before, after = _metrics(reference)[path], _metrics(project)[path]
    assert before.keys() == after.keys() and before != after
