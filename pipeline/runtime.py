"""Run-time helpers shared by the stages: device choice, seeding, hashing, versions, and the run log.

torch and MONAI are imported only by the helpers that need them (seconds per process): every stage
calls :func:`run_stage`, and the stages that use neither (demo data, compare, report) should not pay for them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TypedDict

from pipeline import distributed
from pipeline.io.errors import MedaugInputError

__all__ = [
    "RUN_LOG",
    "select_device",
    "compute_device",
    "compute_setting",
    "device_name",
    "seed_everything",
    "adam",
    "file_sha256",
    "versions",
    "run_stage",
    "run_record",
]

# Where each stage notes its last wall time and device (read by the report's provenance section). Not a DVC output:
# a stage whose outputs DVC restores from its cache has no fresh record, and the report says so.
RUN_LOG = Path(".medaug") / "runs"


class _Compute(TypedDict):
    device: str  # auto | cpu | cuda | cuda:N
    deterministic: bool


# Set by select_device from params.yaml's compute section (the stage's device and determinism); the defaults are
# what a process that never reads it gets: the first GPU when there is one, deterministic kernels.
_COMPUTE: _Compute = {"device": "auto", "deterministic": True}


def select_device(device: str | None = None, deterministic: bool | None = None):
    """The torch device of ``device`` (``compute.device``: auto, cpu, cuda or cuda:N; default: the last setting, at
    first auto = CUDA when available, else the CPU), remembered with ``deterministic`` (``compute.deterministic``)
    for :func:`seed_everything` and :func:`device_name`. A GPU asked for and not visible is a clear error, never a
    silent fall-back to the CPU."""
    import torch

    if device is not None:
        _COMPUTE["device"] = device
    if deterministic is not None:
        _COMPUTE["deterministic"] = deterministic
    setting = _COMPUTE["device"]
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(setting)
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = chosen.index or 0
        if index >= count:
            raise RuntimeError(
                f"compute.device is {setting}, but this machine has {count} visible CUDA GPU(s); "
                "set compute.device: auto or cpu (or a GPU index below the count)"
            )
        torch.cuda.set_device(index)  # so that AMP, cudnn and device_name() all mean this GPU
    return chosen


def compute_device():
    """:func:`select_device` as params.yaml's ``compute`` section asks (what every stage that runs torch calls)."""
    from pipeline.config import load_section

    cfg = load_section("compute")
    if not distributed.launched():
        return select_device(cfg.device, cfg.deterministic)
    device = select_device(distributed.local_device(cfg.device), cfg.deterministic)  # one of torchrun's processes
    distributed.join(device)
    return device


def compute_setting() -> dict:
    """The device setting and determinism :func:`select_device` last took (what a worker process repeats)."""
    return dict(_COMPUTE)


def device_name() -> str:
    """What :func:`select_device` gives, in words: the GPU's name, or the CPU and its core count; for a process that
    never imported torch, the CPU."""
    torch = sys.modules.get("torch")
    if torch is None:
        return f"cpu ({os.cpu_count()} cores, no torch)"
    if _COMPUTE["device"] != "cpu" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(torch.cuda.current_device())})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; with ``compute.deterministic`` (the default) ask for deterministic algorithms
    (bit-identical CPU runs), otherwise let cuDNN benchmark and pick the fastest kernels (GPU only)."""
    import torch
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    deterministic = _COMPUTE["deterministic"]
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def adam(params, lr: float):
    """Adam with its fused kernel (one kernel for every parameter, on CPU and CUDA), faster than the default
    per-tensor loop (docs/measurements.md)."""
    import torch

    return torch.optim.Adam(params, lr=lr, fused=True)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Python's version and the installed torch, MONAI and NumPy versions (what checkpoints record)."""
    return {"python": platform.python_version(), **{name: version(name) for name in ("torch", "monai", "numpy")}}


def _command_key(command: str) -> str:
    return hashlib.sha1(" ".join(command.split()).encode()).hexdigest()[:16]


def run_stage(main: Callable[[], None], module: str) -> None:
    """Run a stage's ``main`` (``python -m <module> args...``) and, when it returns, write its command, wall time,
    device and finishing time (UTC) to ``RUN_LOG``; a failed stage leaves its previous record. A training stage with
    ``compute.processes`` > 1 runs through torchrun instead (:func:`pipeline.distributed.relaunch`): every process
    runs ``main``, rank 0 alone writes outputs and the run log."""
    status = distributed.relaunch(module)
    if status is not None:
        sys.exit(status)
    start = time.perf_counter()
    try:
        main()
    except MedaugInputError as err:  # the input or the settings: a message saying what to change, no traceback
        logging.getLogger(module).error("%s stopped: %s: %s", module, type(err).__name__, err)
        sys.exit(1)
    finally:
        distributed.finish()
    if not distributed.is_main():
        return
    command = " ".join(["python -m " + module, *sys.argv[1:]])
    record = {
        "command": command,
        "seconds": round(time.perf_counter() - start, 1),
        "device": device_name(),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RUN_LOG.mkdir(parents=True, exist_ok=True)
    (RUN_LOG / f"{_command_key(command)}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def run_record(command: str, root: str | Path = ".") -> dict | None:
    """The run log's record of ``command`` (a stage's ``cmd`` as in dvc.lock) under ``root``, if any."""
    path = Path(root) / RUN_LOG / f"{_command_key(command)}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
