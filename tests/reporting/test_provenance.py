import subprocess
import sys

import pytest

from pipeline.reporting.provenance import dataset_fingerprint, git_state, lock_fingerprint, provenance, stage_times
from pipeline.runtime import RUN_LOG, run_record, run_stage

LOCK = {
    "schema": "2.0",
    "stages": {
        "preprocess": {
            "cmd": "python -m pipeline.preprocess",
            "deps": [{"path": "data/demo", "md5": "abc.dir", "size": 10, "nfiles": 2}],
        },
        "report": {"cmd": "python -m pipeline.report", "outs": [{"path": "r.md", "md5": "1"}]},
    },
}


def test_the_lock_fingerprint_ignores_the_report_stage_and_sees_every_other():
    other_report = {"stages": LOCK["stages"] | {"report": {"cmd": "x"}}}
    assert lock_fingerprint(LOCK) == lock_fingerprint(other_report)
    changed = {"stages": LOCK["stages"] | {"preprocess": LOCK["stages"]["preprocess"] | {"cmd": "y"}}}
    assert lock_fingerprint(changed) != lock_fingerprint(LOCK)
    assert lock_fingerprint({}) is None


def test_the_dataset_fingerprint_is_dvcs_hash_of_the_data_root():
    assert dataset_fingerprint(LOCK, "data/demo") == {"md5": "abc.dir", "nfiles": 2, "size": 10}
    assert dataset_fingerprint(LOCK, "elsewhere") is None


def test_git_state_names_uncommitted_code(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "notes.txt").write_text("x\n")
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    state = git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["uncommitted"] == []
    (tmp_path / "params.yaml").write_text("a: 2\n")
    (tmp_path / "notes.txt").write_text("y\n")  # not code: not reported
    assert git_state(tmp_path)["uncommitted"] == ["params.yaml"]


def test_stage_times_come_from_the_run_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["preprocess.py"])
    ran = []
    run_stage(lambda: ran.append(1), "pipeline.preprocess")
    record = run_record("python -m  pipeline.preprocess")  # dvc.lock's spacing need not match
    assert ran == [1] and record["command"] == "python -m pipeline.preprocess" and record["seconds"] >= 0
    assert (tmp_path / RUN_LOG).is_dir()
    rows = stage_times(LOCK, tmp_path)
    assert [r["stage"] for r in rows] == ["preprocess"] and rows[0]["device"].startswith(("cpu", "cuda"))


def test_a_failed_stage_leaves_no_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["x"])
    # a training stage reads compute.processes before it runs (one process: it runs here)
    (tmp_path / "params.yaml").write_text(
        "compute:\n  device: cpu\n  deterministic: true\n  processes: 1\n  workers: 1\n"
    )

    def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_stage(fail, "pipeline.train_generator")
    assert run_record("python -m pipeline.train_generator") is None


def test_provenance_without_dvc_lock_or_git_says_so_and_hides_the_salt(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  root: data/demo\npreprocess:\n  id_salt: s3cr3t-salt\n  size: 64\n")
    prov = provenance(tmp_path, "data/demo")
    assert prov["git"] is None and prov["lock_sha256"] is None and prov["dataset"] is None
    assert prov["params"].startswith("data:") and prov["versions"]["torch"].startswith("2.")
    assert "s3cr3t" not in prov["params"] and "size: 64" in prov["params"]


def test_a_stage_dvc_yaml_no_longer_defines_is_left_out(tmp_path):
    # DVC keeps a renamed stage's entry in dvc.lock; the report must not list it as a stage of this pipeline
    (tmp_path / "dvc.yaml").write_text("stages:\n  train_generator:\n    cmd: python -m pipeline.train_generator\n")
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train_vae:\n    cmd: python -m pipeline.train_vae\n"
        "  train_generator:\n    cmd: python -m pipeline.train_generator\n"
    )
    prov = provenance(tmp_path, "data/demo")
    assert [s["stage"] for s in prov["stages"]] == ["train_generator"]
    only_current = {"stages": {"train_generator": {"cmd": "python -m pipeline.train_generator"}}}
    assert prov["lock_sha256"] == lock_fingerprint(only_current)
