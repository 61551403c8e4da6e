"""The vae strategy under different training settings, against real_only, on the pipeline's own outputs.

Usage: .venv/bin/python bench/bench_remedies.py [--seeds 0,1,2] [--strategy vae] [--set name:key=value,key=value ...]

Reads data/processed and data/synthetic (run `dvc repro generate` first), trains real_only and the vae strategy
with train_classifier's settings from params.yaml changed as each ``--set`` says (``--set w:synthetic_weight=0.5``;
the key ``pool`` names another synthetic pool folder, e.g. one made with another ``generate.filter``; the key
``strategy`` another remedy, e.g. ``--strategy oversample --set f:strategy=vae,pool=...``),
over ``--seeds`` (default train_classifier.seeds), and prints each one's test balanced accuracy with its 95%
interval and its paired difference to real_only (same bootstrap resamples of the test split), plus the mean
validation balanced accuracy that the compare stage's recommendation would see, and each setting's paired
difference to the first. Trains nothing else; writes nothing. The trainings run side by side in worker processes
as the train_classifier stage runs them (``compute.workers``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.compare import StrategyResult  # noqa: E402
from pipeline.config import load_section  # noqa: E402
from pipeline.io.arrays import load_split  # noqa: E402
from pipeline.io.synthetic import read_synthetic  # noqa: E402
from pipeline.metrics import paired_difference  # noqa: E402
from pipeline.runtime import compute_device  # noqa: E402
from pipeline.trainings import summarise_strategy, train_seed  # noqa: E402
from pipeline.workers import run_tasks, worker_count  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[], help="name:key=value,key=value (train_classifier keys)")
    parser.add_argument("--strategy", default="vae")
    parser.add_argument("--seeds", help="comma-separated classifier seeds")
    args = parser.parse_args()
    cfg = load_section("train_classifier")
    if args.seeds:
        cfg = dataclasses.replace(cfg, seeds=tuple(int(s) for s in args.seeds.split(",")))
    paths = load_section("paths")
    train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
    pools = {paths.synthetic: read_synthetic(paths.synthetic, train.classes)}
    device = compute_device()
    settings = {"default": {}}
    for item in args.set:
        name, _, pairs = item.partition(":")
        settings[name] = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs.split(","))}
    keys = ["balanced_accuracy"]
    runs = {"real_only": ("real_only", None, cfg)}  # name: (strategy, pool folder, settings)
    for name, changes in settings.items():
        pool = str(changes.pop("pool", paths.synthetic))  # another generate stage's output folder
        strategy = changes.pop("strategy", args.strategy)  # another remedy, e.g. oversample beside the vae variants
        if pool not in pools:
            pools[pool] = read_synthetic(pool, train.classes)
        runs[name] = (strategy, pool, dataclasses.replace(cfg, **changes))
    # every training of every setting, side by side in the stage's worker processes (compute.workers)
    tasks = [(name, seed) for name in runs for seed in cfg.seeds]
    train_one = functools.partial(_train, runs=runs, pools=pools, train=train, val=val, test=test, device=device)
    start = time.perf_counter()
    done = run_tasks(train_one, tasks, worker_count(load_section("compute").workers, device, len(tasks)))
    n = len(cfg.seeds)
    results = {
        name: StrategyResult(
            *summarise_strategy(strategy, run_cfg.synthetic_ratio, train, val, test, run_cfg, done[k * n : (k + 1) * n])
        )
        for k, (name, (strategy, _, run_cfg)) in enumerate(runs.items())
    }
    print(f"{len(tasks)} trainings in {time.perf_counter() - start:.0f} s")
    base = results.pop("real_only")
    base_draws = base.draws(keys)
    first = None
    print(
        f"real_only: test {base.summary['balanced_accuracy']:.3f}; validation "
        f"{sum(r['val']['balanced_accuracy'] for r in base.runs) / len(base.runs):.3f}"
    )
    for name, result in results.items():
        draws, per_seed = result.draws(keys)["balanced_accuracy"], result.per_seed("balanced_accuracy")
        d = paired_difference(draws, base_draws["balanced_accuracy"], per_seed, base.per_seed("balanced_accuracy"))
        extra = ""
        if first is None:
            first = (name, draws, per_seed)
        else:
            f = paired_difference(draws, first[1], per_seed, first[2])
            extra = f"; vs {first[0]} {f['difference']:+.3f} [{f['ci_low']:+.3f}, {f['ci_high']:+.3f}]"
        s = result.summary
        val_mean = sum(r["val"]["balanced_accuracy"] for r in result.runs) / len(result.runs)
        print(
            f"{runs[name][0]} {name:14s} test {s['balanced_accuracy']:.3f} [{s['balanced_accuracy_ci_low']:.3f}, "
            f"{s['balanced_accuracy_ci_high']:.3f}] vs real_only {d['difference']:+.3f} [{d['ci_low']:+.3f}, "
            f"{d['ci_high']:+.3f}]{extra}; validation {val_mean:.3f}",
            flush=True,
        )


def _train(task, runs, pools, train, val, test, device) -> dict:
    """One training of a setting with one seed (run by a worker process)."""
    name, seed = task
    strategy, pool, cfg = runs[name]
    synthetic = pools[pool] if pool is not None else None
    return train_seed((strategy, cfg.synthetic_ratio, seed), train, val, test, synthetic, cfg, device)


if __name__ == "__main__":
    main()
