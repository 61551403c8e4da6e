"""Wall time of each stage of the demo pipeline and of the whole run (forced, single stages in order).

Usage: .venv/bin/python bench/bench_pipeline.py   (from the project root, with the venv's bin on PATH)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

STAGES = ["demo_data", "preprocess", "train_vae", "generate", "train_classifier", "report"]


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    stages = list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    assert stages == STAGES, f"dvc.yaml stages changed: {stages}"
    times = {}
    for stage in STAGES:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
        times[stage] = time.perf_counter() - start
    print(f"cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, cuda: {torch.cuda.is_available()}")
    for stage, seconds in times.items():
        print(f"{stage:18s} {seconds:7.1f} s")
    print(f"{'total':18s} {sum(times.values()):7.1f} s")


if __name__ == "__main__":
    main()
