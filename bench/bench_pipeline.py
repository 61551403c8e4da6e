"""Wall time of the whole pipeline with every stage running (`dvc repro --force`), and of each stage.

Usage: .venv/bin/python bench/bench_pipeline.py   (``make bench``; from the project root)

Runs `dvc repro --force` as a user would, timestamps each "Running stage" line DVC prints, and reports each
stage's wall time as a user sees it (process start, imports and DVC's hashing and caching included) beside the
time of the stage's own work (its ``main``, from the run log in ``.medaug/runs``), then the total. The first
lines say when and on what it ran, so a time can be quoted with its machine.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import yaml

from pipeline.runtime import run_record


def machine() -> str:
    """The CPU model, its cores and torch's threads (or the GPU)."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.MULTILINE)
        model = names[0].strip() if names else model
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads{gpu}"


def timed_repro(root: Path) -> tuple[dict[str, float], float]:
    """Run `dvc repro --force` in ``root``; return each stage's wall seconds (from its "Running stage" line to the
    next stage's) and the whole run's."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    start = time.perf_counter()
    starts: dict[str, float] = {}
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--force"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as repro:
        for line in repro.stdout:
            if match := re.match(r"Running stage '([^']+)'", line):
                starts[match.group(1)] = time.perf_counter()
        if repro.wait() != 0:
            raise SystemExit(f"dvc repro failed with exit status {repro.returncode}")
    end = time.perf_counter()
    names = list(starts)
    ends = [starts[n] for n in names[1:]] + [end]
    return {name: stop - starts[name] for name, stop in zip(names, ends, strict=True)}, end - start


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    walls, total = timed_repro(root)
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    print(f"{'stage':24s} {'wall':>8s} {'own work':>9s}")
    for name, seconds in walls.items():
        record = run_record(lock[name]["cmd"], root) if name in lock else None
        own = f"{record['seconds']:7.1f} s" if record else "        -"
        print(f"{name:24s} {seconds:6.1f} s {own}")
    print(f"{'total (dvc repro -f)':24s} {total:6.1f} s  = {total / 60:.1f} min")


if __name__ == "__main__":
    main()
