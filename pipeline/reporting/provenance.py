"""Where a report's numbers come from: code commit, parameters, the pipeline's state in dvc.lock, the dataset's
fingerprint, package versions, device and stage run times. Nothing here reads image files or DICOM headers:
the dataset is identified by DVC's content hash of ``data.root``, never by its contents."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from pipeline.runtime import device_name, run_record, versions

__all__ = [
    "PACKAGES",
    "git_state",
    "lock_fingerprint",
    "dataset_fingerprint",
    "shown_params",
    "package_versions",
    "provenance",
]

# besides runtime.versions() (python, torch, monai, numpy: what the checkpoints record)
PACKAGES = ("scipy", "scikit-learn", "pydicom", "nibabel", "matplotlib", "dvc")
# what decides the results besides the data: a change here that is not committed is reported as such
CODE = ("pipeline", "params.yaml", "dvc.yaml", "pyproject.toml", "requirements.lock")


def git_state(root: Path) -> dict | None:
    """``{"commit", "uncommitted"}``: the checked-out commit and the code/parameter files that differ from it;
    ``None`` outside a git checkout or without git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--", *CODE)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "uncommitted": sorted(line[3:] for line in status.splitlines())}


def _lock(root: Path) -> dict:
    """dvc.lock, less the entries of stages that dvc.yaml no longer defines (DVC keeps a removed or renamed
    stage's entry in dvc.lock; it describes no output of this pipeline)."""
    path = root / "dvc.lock"
    lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.is_file() else {}
    pipeline = root / "dvc.yaml"
    if pipeline.is_file() and "stages" in lock:
        defined = (yaml.safe_load(pipeline.read_text(encoding="utf-8")) or {}).get("stages", {})
        lock = lock | {"stages": {name: e for name, e in lock["stages"].items() if name in defined}}
    return lock


def lock_fingerprint(lock: dict, own_stage: str = "report") -> str | None:
    """SHA-256 of every stage's dvc.lock entry (commands, dependency and output hashes, parameters) except
    ``own_stage``'s, whose entry DVC writes only after the report exists: two reports with the same fingerprint
    come from identical inputs, code and intermediate results."""
    stages = {name: entry for name, entry in lock.get("stages", {}).items() if name != own_stage}
    if not stages:
        return None
    return hashlib.sha256(json.dumps(stages, sort_keys=True).encode()).hexdigest()


def dataset_fingerprint(lock: dict, data_root: str) -> dict | None:
    """DVC's content hash of the dataset folder (the preprocess stage's ``data_root`` dependency): md5, number
    of files and bytes; ``None`` before preprocess has run under DVC."""
    for dep in lock.get("stages", {}).get("preprocess", {}).get("deps", []):
        if Path(dep["path"]) == Path(data_root):
            return {key: dep[key] for key in ("md5", "nfiles", "size") if key in dep}
    return None


def shown_params(path: Path) -> str:
    """params.yaml as YAML, with the pseudonym salt (``preprocess.id_salt``, a secret) replaced."""
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "id_salt" in params.get("preprocess", {}):
        params["preprocess"]["id_salt"] = "<secret, not shown>"
    return yaml.safe_dump(params, sort_keys=False)


def package_versions() -> dict[str, str]:
    """:func:`pipeline.runtime.versions` and the installed version of each of ``PACKAGES``."""
    found = versions()
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def stage_times(lock: dict, root: Path, own_stage: str = "report") -> list[dict]:
    """Per stage of dvc.lock: its last recorded run on this machine (seconds, device, finishing time), or
    ``None`` values when its outputs came from DVC's cache or git instead."""
    rows = []
    for name, entry in lock.get("stages", {}).items():
        if name != own_stage:
            record = run_record(entry.get("cmd", ""), root) or {}
            rows.append({"stage": name} | {k: record.get(k) for k in ("seconds", "device", "finished_utc")})
    return rows


def provenance(root: str | Path, data_root: str, params_file: str = "params.yaml") -> dict:
    """Everything :func:`pipeline.reporting.sections.provenance_lines` shows, for the project in ``root``."""
    root = Path(root)
    lock = _lock(root)
    params = root / params_file
    return {
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(root),
        "lock_sha256": lock_fingerprint(lock),
        "dataset": dataset_fingerprint(lock, data_root),
        "params": shown_params(params) if params.is_file() else "",
        "versions": package_versions(),
        "device": device_name(),
        "stages": stage_times(lock, root),
    }
