"""Generators side by side on one dataset: what params.yaml's default should be, measured.

Usage: .venv/bin/python bench/compare_generators.py [--seeds 0,1,2] [-S key=value ...] [--out reports]
(from the project root)

For each candidate below (a generator kind with its settings), a scratch copy of the project runs the pipeline as
far as the compare and quality stages (``dvc repro compare quality``) with the strategies real_only, oversample
and vae only, and with ``-S`` overrides applied to every candidate (e.g. ``-S data.root=/tmp/breast``). Collected per
candidate: the train_generator stage's wall time (its run log), class fidelity and FD/precision/recall/coverage of
every class's synthetic pool and of every sampler (quality), and the vae strategy's balanced accuracy and minority
recall with its paired differences to real_only and to oversample (compare). Written to
``reports/generators/comparison.json`` and ``reports/figures/generators.png`` (eight synthetic images of each
minority class per candidate under eight real ones); the report shows both in its "Generators" section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from pipeline.io.arrays import load_split, write_json
from pipeline.io.synthetic import read_synthetic
from pipeline.plots import image_grid
from pipeline.runtime import run_record

# name: params overrides (section -> keys). The first is today's generator, the others what replaced it.
CANDIDATES: dict[str, dict[str, dict]] = {
    "vae, conditional (before)": {"generator": {"kind": "vae", "mode": "conditional"}},
    "vae_gan, conditional": {"generator": {"kind": "vae_gan", "mode": "conditional"}},
    "vae_gan, per_class": {"generator": {"kind": "vae_gan", "mode": "per_class"}},
    # the diffusion model is its prior: sampled through it, not through a mixture fitted to its codes
    "latent_diffusion, conditional": {
        "generator": {"kind": "latent_diffusion", "mode": "conditional"},
        "generate": {"sampler": "prior"},
    },
}
STRATEGIES = ["real_only", "oversample", "vae"]


def _params(base: Path, overrides: list[dict], seeds: list[int]) -> dict:
    params = yaml.safe_load(base.read_text(encoding="utf-8"))
    params["train_classifier"] |= {"strategies": STRATEGIES, "ablation_ratios": [], "seeds": seeds}
    for override in overrides:
        for section, values in override.items():
            params[section] |= values
    return params


def _parse_sets(sets: list[str]) -> dict:
    out: dict = {}
    for item in sets:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


def run_candidate(root: Path, work: Path, overrides: list[dict], seeds: list[int]) -> dict:
    """Run the candidate's pipeline in ``work`` (a copy of ``root``); return its numbers."""
    shutil.copytree(root / "pipeline", work / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "dvc.yaml", work)
    params = _params(root / "params.yaml", overrides, seeds)
    data_root = Path(params["data"]["root"])
    if params["data"]["root"] != params["paths"]["demo"] and not data_root.is_absolute():
        params["data"]["root"] = str((root / data_root).resolve())  # a dataset of the project, seen from the copy
    (work / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=work, env=env, check=True)
    start = time.perf_counter()
    done = subprocess.run([*dvc, "repro", "compare", "quality"], cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dvc repro failed in {work}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    record = run_record("python -m pipeline.train_generator", work) or {}
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    quality = json.loads((work / "reports" / "quality" / "metrics.json").read_text())
    vae = metrics["vae"]
    minority = metrics["minority_classes"]
    return {
        "overrides": overrides,
        "pipeline_seconds": round(time.perf_counter() - start, 1),
        "train_generator_seconds": record.get("seconds"),
        "vae_strategy": {
            "balanced_accuracy": vae["balanced_accuracy"],
            **{f"recall_{c}": vae[f"recall_{c}"] for c in minority},
            "vs_real_only": vae["vs_real_only"]["balanced_accuracy"],
            "vs_oversample": vae["vs_oversample"]["balanced_accuracy"],
        },
        "real_only": {k: metrics["real_only"][k] for k in ["balanced_accuracy", *[f"recall_{c}" for c in minority]]},
        "oversample": {k: metrics["oversample"][k] for k in ["balanced_accuracy", *[f"recall_{c}" for c in minority]]},
        "pool_sampler": quality["pool_sampler"],
        "per_class": quality["per_class"],
        "per_sampler": quality["per_sampler"],
        "minority_classes": minority,
        "_work": str(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="classifier seeds, comma-separated")
    parser.add_argument("-S", dest="sets", action="append", default=[], help="params override for every candidate")
    parser.add_argument("--only", action="append", default=[], help="run only these candidates (by name)")
    parser.add_argument("--out", default="reports", help="folder for generators/comparison.json and figures/")
    args = parser.parse_args()
    root = Path.cwd()
    seeds = [int(s) for s in args.seeds.split(",")]
    common = _parse_sets(args.sets)
    results, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="medaug-generators-") as tmp:
        for name, overrides in CANDIDATES.items():
            if args.only and name not in args.only:
                continue
            print(f"--- {name}: {overrides}", flush=True)
            results[name] = run_candidate(root, Path(tmp) / name.replace(" ", "_"), [common, overrides], seeds)
            r = results[name]
            v = r["vae_strategy"]
            print(
                f"{name}: train_generator {r['train_generator_seconds']} s; vae BA {v['balanced_accuracy']:.3f}, "
                f"vs real_only {v['vs_real_only']['difference']:+.3f} [{v['vs_real_only']['ci_low']:+.3f}, "
                f"{v['vs_real_only']['ci_high']:+.3f}], vs oversample {v['vs_oversample']['difference']:+.3f} "
                f"[{v['vs_oversample']['ci_low']:+.3f}, {v['vs_oversample']['ci_high']:+.3f}]",
                flush=True,
            )
            for cls, q in r["per_class"].items():
                fidelity = f"{q['fidelity']:.2f} ({q['held_out_fidelity']:.2f} held out)"
                print(f"  {cls}: fidelity {fidelity}, FD {q['fd']:.1f} ({q['held_out_fd']:.1f})", flush=True)
        first = next(iter(results.values()))
        work = Path(first["_work"])
        params = yaml.safe_load((work / "params.yaml").read_text())
        train = load_split(work / params["paths"]["processed"], "train")
        for cls in first["minority_classes"]:
            label = train.classes.index(cls)
            rows.append((f"real {cls}", train.images[train.labels == label][:8]))
            for name, r in results.items():
                synthetic = read_synthetic(Path(r["_work"]) / params["paths"]["synthetic"], train.classes)
                rows.append((f"{name}: synthetic {cls}", synthetic.images[synthetic.labels == label][:8]))
    for r in results.values():
        del r["_work"]
    out = {
        "measured_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M"),
        "command": "bench/compare_generators.py " + " ".join(sys.argv[1:]),
        "data_root": params["data"]["root"] if "data" in common else "the demo",
        "seeds": seeds,
        "candidates": results,
    }
    target = root / args.out
    write_json(target / "generators" / "comparison.json", out)
    image_grid(target / "figures" / "generators.png", rows)
    print(f"wrote {target}/generators/comparison.json and {target}/figures/generators.png")


if __name__ == "__main__":
    main()
