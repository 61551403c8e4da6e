"""Run-time helpers shared by the stages: device choice, seeding, hashing, versions, and the run log.

torch and MONAI are imported only by the helpers that need them (about 2.5 s per process together): every stage
calls :func:`run_stage`, and the stages that use neither (demo data, compare, report) should not pay for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

__all__ = [
    "RUN_LOG",
    "select_device",
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


def select_device():
    """CUDA when available, else the CPU; the same code runs on both."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name() -> str:
    """What :func:`select_device` gives, in words: the GPU's name, or the CPU and its core count; for a process that
    never imported torch, the CPU."""
    torch = sys.modules.get("torch")
    if torch is None:
        return f"cpu ({os.cpu_count()} cores, no torch)"
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask for deterministic algorithms (bit-identical CPU runs)."""
    import torch
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def adam(params, lr: float):
    """Adam with its fused kernel (one kernel for every parameter, on CPU and CUDA): on 2 CPU cores a step of the
    demo classifier takes 0.5 ms instead of the default per-tensor loop's 1.3 ms."""
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
    device and finishing time (UTC) to ``RUN_LOG``; a failed stage leaves its previous record."""
    start = time.perf_counter()
    main()
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
