"""Every training loop and every pipeline stage on the device medaug picks (a CUDA GPU when there is one), timed.

Usage: python bench/bench_stages.py [--out DIR] [--epochs N] [--budget SECONDS]   (from the project root)

1. Runs the demo_data and preprocess stages (their commands from dvc.yaml, without DVC).
2. Trains each registered generator kind and the classifier for ``--epochs`` epochs on the processed demo, with
   mixed precision off and, on CUDA, on; checks that every logged loss is finite and that samples come out finite
   and in range; reports training images/s and the seconds to sample 64 images.
3. Runs the remaining stages of dvc.yaml in order, each timed as a process (start, imports and CUDA start-up
   included), until ``--budget`` seconds have passed since the start (the rest are listed as skipped).

Writes ``DIR/stages.md`` (the tables) and ``DIR/stages.json``, the stages' output in ``DIR/stages.log``, and, when
every stage ran, copies of the headline metrics, the quality metrics and the real-vs-synthetic figure, so a GPU
run's results can be compared with a CPU run's.
On a CPU it runs the same code (mixed precision is CUDA-only, so only "off" is timed); this is the script for a
machine with a GPU, where DVC may not be installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_section  # noqa: E402
from pipeline.generators import GENERATORS, build_generator  # noqa: E402
from pipeline.io.arrays import load_split  # noqa: E402
from pipeline.models.classifier import fit_classifier  # noqa: E402
from pipeline.runtime import device_name, select_device  # noqa: E402
from pipeline.strategies import Recipe  # noqa: E402

FIRST = ("demo_data", "preprocess")
COPIES = {
    "reports/metrics.json": "metrics.json",
    "reports/quality/metrics.json": "quality_metrics.json",
    "reports/figures/real_vs_synthetic.png": "real_vs_synthetic.png",
}


def stages() -> list[tuple[str, str]]:
    """(name, command) of every stage of dvc.yaml, in file order (which is an order DVC could run them in)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return [(name, stage["cmd"]) for name, stage in spec.items()]


def run_stage(name: str, command: str, out: Path) -> dict:
    """Run one stage's command as a process (``python`` is this interpreter); its output goes to ``out/stages.log``."""
    argv = command.split()
    argv[0] = sys.executable if argv[0] == "python" else argv[0]
    start = time.perf_counter()
    with open(out / "stages.log", "a", encoding="utf-8") as log:
        log.write(f"\n===== {name}: {command}\n")
        log.flush()
        rc = subprocess.call(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return {"stage": name, "seconds": round(time.perf_counter() - start, 1), "rc": rc}


def _finite(history: list[dict]) -> bool:
    return all(math.isfinite(v) for row in history for v in row.values() if isinstance(v, float))


def generator_row(kind: str, amp: bool, epochs: int, train, val, device) -> dict:
    """Train ``kind`` (conditional, params.yaml's settings, ``epochs`` epochs of each of its networks, adversarial
    warm-up off so the adversarial step is timed) and sample 64 images of the last class."""
    settings = load_section(kind)
    changes = {"epochs": epochs, "patience": 0, "amp": amp}
    for key, value in {"adversarial_warmup_epochs": 0, "diffusion_epochs": epochs, "diffusion_patience": 0}.items():
        if hasattr(settings, key):
            changes[key] = value
    settings = dataclasses.replace(settings, **changes)
    generator = build_generator(kind, tuple(train.images.shape[1:]), train.classes, "conditional", settings)
    start = time.perf_counter()
    history = generator.fit(train, val, device)
    sync(device)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    images = generator.sample(len(train.classes) - 1, 64, np.random.default_rng(0))
    sync(device)
    sample_s = time.perf_counter() - start
    ok = _finite(history) and bool(np.isfinite(images).all() and images.min() >= -1e-3 and images.max() <= 1 + 1e-3)
    return {
        "loop": kind,
        "amp": amp,
        "images_per_s": round(len(train) * epochs / fit_s, 1),
        "sample_64_s": round(sample_s, 2),
        "finite": ok,
    }


def classifier_row(amp: bool, epochs: int, train, val, device) -> dict:
    cfg = dataclasses.replace(load_section("train_classifier"), epochs=epochs, patience=0, amp=amp)
    start = time.perf_counter()
    _, fit = fit_classifier(Recipe(train), val, cfg, 0, device, desc="classifier")
    sync(device)
    seconds = time.perf_counter() - start
    return {"loop": "classifier", "amp": amp, "images_per_s": round(len(train) * epochs / seconds, 1), "finite": True}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_stages")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=math.inf, help="seconds after which no further stage starts")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    device = select_device()
    header = {
        "device": device_name(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cuda": torch.version.cuda,
        "command": " ".join(sys.argv),
    }
    print(json.dumps(header), flush=True)
    results: dict = {"header": header, "stages": [], "loops": []}

    def save() -> None:
        (args.out / "stages.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        text = f"{json.dumps(header)}\n\n## Training loops\n\n{table(results['loops'])}\n\n## Stages\n\n"
        (args.out / "stages.md").write_text(text + table(results["stages"]) + "\n", encoding="utf-8")

    plan = stages()
    for name, command in plan:
        if name in FIRST:
            results["stages"].append(run_stage(name, command, args.out))
            print(results["stages"][-1], flush=True)
    save()
    processed = ROOT / yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["paths"]["processed"]
    train, val = load_split(processed, "train"), load_split(processed, "val")
    for amp in (False, True) if device.type == "cuda" else (False,):
        for kind in GENERATORS:
            try:
                row = generator_row(kind, amp, args.epochs, train, val, device)
            except Exception as exc:  # noqa: BLE001 - a failing loop is a result; the others still run
                row = {"loop": kind, "amp": amp, "error": f"{type(exc).__name__}: {exc}"[:300]}
            results["loops"].append(row)
            print(row, flush=True)
            save()
        try:
            row = classifier_row(amp, args.epochs, train, val, device)
        except Exception as exc:  # noqa: BLE001
            row = {"loop": "classifier", "amp": amp, "error": f"{type(exc).__name__}: {exc}"[:300]}
        results["loops"].append(row)
        print(row, flush=True)
        save()
    failed = False
    for name, command in plan:
        if name in FIRST:
            continue
        if failed or time.perf_counter() - begin > args.budget:
            results["stages"].append({"stage": name, "seconds": "", "rc": "skipped"})
        else:
            results["stages"].append(run_stage(name, command, args.out))
            failed = results["stages"][-1]["rc"] != 0
        print(results["stages"][-1], flush=True)
        save()
    if not failed:  # the run's headline numbers and its synthetic images, to compare with a CPU run's
        for source, name in COPIES.items():
            if (ROOT / source).is_file() and results["stages"][-1]["rc"] == 0:
                shutil.copy(ROOT / source, args.out / name)
    print(open(args.out / "stages.md", encoding="utf-8").read())
    errors = failed or any("error" in row or not row.get("finite", True) for row in results["loops"])
    return 1 if errors else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
