"""Peak memory and wall time of the training-side stages as the dataset grows: the demo at 1x, 10x and 50x the
patients, and at 256 px (issue 19's scale benchmark).

Usage: .venv/bin/python bench/bench_scale.py [--scales 1,10,50] [--px 256] [--epochs 2] [--keep]

For each case a scratch copy of the project (bench_memory.py's helpers) generates the demo dataset with the
patients multiplied (or the slices and ``preprocess.size`` at ``--px``), then runs, one at a time and each as its own
process, ``preprocess``, ``train_generator``, ``generate``, ``train_classifier`` (real_only and vae, one seed) and
``quality``, each measured for wall time and the peak RSS of its largest process. Training runs ``--epochs``
epochs (the generator's warm-ups shortened to fit), so the times are per-epoch costs times a few, not the demo's
minutes; the memory is what the point is: flat when a stage streams its data, growing with the dataset when it holds
whole splits in memory. The table ends with each stage's peak at the largest scale over its peak at 1x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_memory import (  # noqa: E402
    GNU_TIME,
    ROOT,
    folder_size,
    measure,
    scratch_folder,
    scratch_project,
    write_params,
)

STAGES = ("preprocess", "train_generator", "generate", "train_classifier", "quality")


def training_overrides(epochs: int) -> dict:
    """Short training for every stage that trains, the rest of params.yaml as it is."""
    warm = max(epochs - 1, 0)
    short = {"epochs": epochs, "kl_warmup_epochs": min(warm, 1)}
    return {
        "vae": short,
        "vae_gan": short | {"adversarial_warmup_epochs": warm},
        "latent_diffusion": short | {"diffusion_epochs": epochs, "adversarial_warmup_epochs": warm},
        "train_classifier": {
            "epochs": epochs,
            "real_epochs": 0,
            "strategies": ["real_only", "vae"],
            "ablation_ratios": [],
            "seeds": [0],
        },
    }


def run_case(project: Path, data: Path, demo: dict, preprocess: dict, epochs: int) -> dict:
    """Generate the demo with ``demo`` overrides into ``data``; measure every stage of :data:`STAGES`."""
    write_params(
        project,
        demo_data=demo,
        preprocess=preprocess,
        paths={"demo": str(data)},
        data={"root": str(data)},
        **training_overrides(epochs),
    )
    shutil.rmtree(project / "data", ignore_errors=True)
    shutil.rmtree(project / "models", ignore_errors=True)
    measure([sys.executable, "-m", "pipeline.demo_data"], project)
    row: dict = {}
    for stage in STAGES:
        row[stage] = measure([sys.executable, "-m", f"pipeline.{stage}"], project)
        print(f"  {stage}: {row[stage][0]:.1f} s, {row[stage][1]:.0f} MiB", file=sys.stderr, flush=True)
    summary = json.loads((project / "data/processed/summary.json").read_text())
    row["images"] = summary["n_images"]
    row["processed MiB"] = folder_size(project / "data/processed")[1]
    shutil.rmtree(data)
    return row


def table(results: dict[str, dict]) -> str:
    """One line per case: images, processed MiB, then wall seconds / peak RSS MiB per stage; and the ratio of each
    stage's peak at the last case of the scale series to its peak at the first."""
    head = f"{'case':14s}{'images':>8s}{'MiB':>8s}" + "".join(f"{s:>22s}" for s in STAGES)
    lines = [head, " " * 30 + "".join(f"{'wall s / peak MiB':>22s}" for _ in STAGES)]
    for name, row in results.items():
        cells = "".join(f"{row[s][0]:>12.1f} / {row[s][1]:>6.0f}" for s in STAGES)
        lines.append(f"{name:14s}{row['images']:>8d}{row['processed MiB']:>8.1f}{cells}")
    scaled = [name for name in results if name.startswith("demo x")]
    if len(scaled) > 1:
        first, last = results[scaled[0]], results[scaled[-1]]
        ratios = "".join(f"{last[s][1] / first[s][1]:>22.2f}" for s in STAGES)
        lines.append(f"{'peak ' + scaled[-1] + ' / ' + scaled[0]:30s}{ratios}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,50", help="patient multipliers of the demo")
    parser.add_argument("--px", type=int, default=256, help="also the demo at this size (0: skip)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of every stage that trains")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and print where it is")
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    patients = params["demo_data"]["n_patients"]
    cases = {f"demo x{s}": ({"n_patients": patients * int(s)}, {}) for s in args.scales.split(",")}
    if args.px:
        cases[f"demo {args.px} px"] = ({"image_size": max(args.px, 128)}, {"size": args.px})
    results = {}
    with scratch_folder("medaug-bench-scale-", args.keep) as scratch:
        project = scratch_project(scratch / "project")
        for name, (demo, preprocess) in cases.items():
            print(f"{name}:", file=sys.stderr, flush=True)
            results[name] = run_case(project, scratch / "dataset", demo, preprocess, args.epochs)
    how = "/usr/bin/time -v" if GNU_TIME.exists() else "getrusage(RUSAGE_CHILDREN)"
    print(f"\npeak RSS of the largest process ({how}); {os.cpu_count()} cores; {args.epochs} training epochs")
    print(table(results))


if __name__ == "__main__":
    main()
