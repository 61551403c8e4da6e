"""The whole pipeline on every public dataset beside the project, one command, and the results page it writes:

    .venv/bin/python bench/panel.py                      # every dataset, then docs/results.md
    .venv/bin/python bench/panel.py --only breastmnist   # one dataset (the page lists every finished one)
    .venv/bin/python bench/panel.py --write-only         # rewrite docs/results.md from the finished runs

Datasets (``../shared/data``, see its README; a dataset whose files are absent is skipped, said so):

- ``demo``: the built-in demo (the project's own generator), defaults;
- ``breastmnist``: MedMNIST v2 BreastMNIST on its official splits (imported as PNG files), 32 px;
- ``breastmnist_1to10``: the same with the malignant training images cut to 1:10 of the benign ones (a seeded
  share; validation and test untouched);
- ``isic_uda1``: ISIC UDA-1 dermoscopy, colour JPEGs, the 401 lesion images, 64 px, a patient-level split.

Each dataset runs in its own scratch project under ``--work`` (default ``/tmp/medaug-panel``): this project's
``dvc.yaml``, a copy of ``pipeline/`` and ``params.yaml`` with the dataset's overrides, ``dvc init --no-scm``,
``dvc repro``. What each run measured (remedies' test scores with intervals, the recommendation, the remedies'
validation scores, the learning curves and worth in real images, the wall-clock time) goes to
``<work>/<name>/panel.json``; ``docs/results.md`` is written from those files, so its numbers are the runs' own,
with each run's learning-curve picture copied to ``docs/results/<name>_learning_curve.png``. Nothing in the source
folders is modified.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from pipeline.compare import RULES, choose, load_result  # noqa: E402
from pipeline.io.medmnist import import_medmnist  # noqa: E402
from pipeline.io.records import ClassifierRun  # noqa: E402
from pipeline.reporting.sections import own_curve_lines  # noqa: E402
from pipeline.strategies import REMEDIES  # noqa: E402

# the published MedMNIST v2 reference (its paper, ResNet-18 at 28 px), for BreastMNIST's rows
MEDMNIST_REFERENCE = "MedMNIST v2 reference (ResNet-18, 28 px): AUC 0.901, ACC 0.863"


def _demo(work: Path) -> dict | None:
    return {}


def _breastmnist(work: Path, cut: float | None = None) -> dict | None:
    npz = SHARED / "breastmnist" / "breastmnist.npz"
    if not npz.is_file():
        return None
    data = work / "data_source"
    if not (data / "labels.csv").is_file():
        shutil.rmtree(data, ignore_errors=True)
        import_medmnist(npz, data, "png")
        if cut is not None:
            _cut_minority(data / "labels.csv", "malignant", cut, seed=0)
    return {"data": {"root": str(data)}, "preprocess": {"size": 32}}


def _cut_minority(labels_csv: Path, minority: str, ratio: float, seed: int) -> None:
    """Keep a seeded share of ``minority``'s training rows: ``ratio`` x the other training rows (whole patients:
    MedMNIST's images are each their own patient)."""
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    train_minority = [i for i, r in enumerate(rows) if r["split"] == "train" and r["label"] == minority]
    others = sum(r["split"] == "train" and r["label"] != minority for r in rows)
    keep = set(np.random.default_rng(seed).permutation(train_minority)[: max(1, round(ratio * others))].tolist())
    kept = [r for i, r in enumerate(rows) if i not in train_minority or i in keep]
    with open(labels_csv, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)


def _isic(work: Path) -> dict | None:
    root = SHARED / "isic_uda1"
    if not (root / "labels.csv").is_file():
        return None
    return {"data": {"root": str(root)}, "preprocess": {"size": 64}}


DATASETS = {
    "demo": (_demo, "built-in demo: chest-CT-like phantoms, nodule 1:7, 64 px"),
    "breastmnist": (_breastmnist, "BreastMNIST, official splits, malignant 1:2.7, 32 px"),
    "breastmnist_1to10": (
        lambda work: _breastmnist(work, cut=0.1),
        "BreastMNIST, malignant training images cut to 1:10, 32 px",
    ),
    "isic_uda1": (_isic, "ISIC UDA-1 dermoscopy, colour JPEGs, malignant 1:2.3, 64 px"),
}


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the stages call `python`
    return env


def run_dataset(name: str, work: Path) -> dict | None:
    """Run the pipeline on dataset ``name`` in ``work/name``; return (and write to panel.json) what it measured."""
    project = work / name
    project.mkdir(parents=True, exist_ok=True)
    overrides = DATASETS[name][0](project)
    if overrides is None:
        print(f"{name}: its files are not in {SHARED}; skipped", flush=True)
        return None
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    # the code as it is now (the stages run `python -m pipeline.<stage>` from the project: this copy, not later edits)
    shutil.rmtree(project / "pipeline", ignore_errors=True)
    shutil.copytree(ROOT / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")), overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    if not (project / ".dvc").is_dir():
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project, check=True)
    started = time.perf_counter()
    with open(project / "repro.log", "w", encoding="utf-8") as log:
        done = subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "report"],  # report's ancestors: demo_data only for the demo
            cwd=project,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - started
    if done.returncode:
        print(f"{name}: dvc repro failed (exit {done.returncode}); see {project / 'repro.log'}", flush=True)
        return None
    result = collect(project, name, seconds)
    (project / "panel.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _remedy_order(folder: Path) -> tuple[int, str]:
    """The registry's order (pipeline.strategies.REMEDIES), then by name."""
    names = list(REMEDIES)
    return (names.index(folder.name) if folder.name in names else len(names), folder.name)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def collect(project: Path, name: str, seconds: float) -> dict:
    """What a finished run measured, from its own output files."""
    metrics = json.loads((project / "reports" / "metrics.json").read_text(encoding="utf-8"))
    summary = json.loads((project / "data" / "processed" / "summary.json").read_text(encoding="utf-8"))
    remedies = {}
    for folder in sorted((project / "reports" / "classifier").iterdir(), key=_remedy_order):
        if not (folder / "runs.json").is_file() or folder.name.startswith(("ablation_", "curve_")):
            continue  # the ablation's and real_only's learning-curve runs are no remedies of the table
        runs = ClassifierRun.read_all(folder)
        row = metrics.get(folder.name, {})
        remedies[folder.name] = {
            "test_balanced_accuracy": row.get("balanced_accuracy"),
            "ci": [row.get("balanced_accuracy_ci_low"), row.get("balanced_accuracy_ci_high")],
            "vs_real_only": row.get("vs_real_only", {}).get("balanced_accuracy"),
            "auroc": row.get("auroc"),
            "test_per_seed": [r.test["balanced_accuracy"] for r in runs],
            "val_per_seed": [r.val["balanced_accuracy"] for r in runs],
        }
    return {
        "name": name,
        "description": DATASETS[name][1],
        "train_images": summary["splits"]["train"]["images"],
        "recommendation": metrics.get("recommendation", {}),
        "remedies": remedies,
        # real_only's minority learning curve, what each remedy's gain is worth in real images, and the remedies'
        # own curves (a generator per share): as the compare stage wrote them
        "learning_curve": metrics.get("learning_curve", []),
        "worth": {n: w["balanced_accuracy"] for n, w in metrics.get("worth", {}).items()},
        "learning_curve_remedies": metrics.get("learning_curve_remedies", {}),
        "seconds": round(seconds),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


# ---- selection rules (issue 39): what each would have recommended, from the run's validation predictions --------


def rule_picks(project: Path) -> dict[str, str]:
    """What each selection rule of the compare stage (pipeline.compare.RULES) recommends on a finished run: the
    same functions the stage runs, blind to the test split."""
    folders = [f for f in sorted((project / "reports" / "classifier").iterdir()) if (f / "runs.json").is_file()]
    results = {f.name: load_result(f) for f in folders if not f.name.startswith(("ablation_", "curve_"))}
    return {rule: choose(rule, results, list(results)) for rule in RULES}


def regret_table(results: list[dict]) -> list[str]:
    """Per rule: its pick and regret (test BA of the test-best remedy minus the pick's) on each dataset, the mean
    regret, and the datasets where its pick is clearly worse than real_only on test (CI of the difference < 0)."""
    rules = list(results[0]["rule_picks"])
    lines = [
        "| rule | " + " | ".join(r["name"] for r in results) + " | mean regret | clearly below real_only |",
        "|---|" + "---|" * (len(results) + 2),
    ]
    for rule in rules:
        cells, regrets, below = [], [], []
        for r in results:
            test = {n: v["test_balanced_accuracy"] for n, v in r["remedies"].items()}
            chosen = r["rule_picks"][rule]
            regret = max(test.values()) - test[chosen]
            regrets.append(regret)
            cells.append(f"{chosen} ({regret:+.3f})")
            vs = r["remedies"][chosen]["vs_real_only"]
            if vs is not None and vs["ci_high"] < 0:
                below.append(r["name"])
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {np.mean(regrets):.3f} | {', '.join(below) or 'none'} |")
    return lines


# ---- the page ---------------------------------------------------------------------------------------------------


def _ci(values) -> str:
    low, high = values
    return "" if low is None else f" [{low:.3f}, {high:.3f}]"


def dataset_section(r: dict) -> list[str]:
    rec = r["recommendation"]
    test = {n: v["test_balanced_accuracy"] for n, v in r["remedies"].items()}
    best = max(test, key=test.__getitem__)
    chosen = rec.get("remedy")
    counts = ", ".join(f"{c} {n}" for c, n in r["train_images"].items())
    lines = [
        f"## {r['name']}",
        "",
        f"{r['description']}. Training images: {counts}. Whole pipeline: {r['seconds'] / 60:.1f} min "
        f"({r['machine']}, {r['date']}).",
        "",
        f"Recommended (validation): **{chosen}**, test balanced accuracy {test[chosen]:.3f}; the test-best remedy "
        f"is {best} ({test[best]:.3f}): regret {test[best] - test[chosen]:.3f}.",
        "",
        "| remedy | validation BA | test BA [95% CI] | vs real_only [95% CI] | AUROC |",
        "|---|---|---|---|---|",
    ]
    for name, v in r["remedies"].items():
        vs = v["vs_real_only"]
        diff = "" if vs is None else f"{vs['difference']:+.3f} [{vs['ci_low']:+.3f}, {vs['ci_high']:+.3f}]"
        lines.append(
            f"| {name} | {np.mean(v['val_per_seed']):.3f} | {v['test_balanced_accuracy']:.3f}{_ci(v['ci'])} | "
            f"{diff} | {v['auroc']:.3f} |"
        )
    if r["name"].startswith("breastmnist"):
        lines += ["", f"{MEDMNIST_REFERENCE} (accuracy, not balanced accuracy: not the same number)."]
    return lines + worth_lines(r) + [""]


def worth_lines(r: dict) -> list[str]:
    """real_only's learning curve, what each helping remedy is worth in real minority images, each remedy's gain at
    every share (the report's own table) and the learning-curve picture copied beside the page."""
    curve = r.get("learning_curve") or []
    if not curve:
        return ["", "No learning curve (train_classifier.learning_curve was off, or the minority too small)."]
    points = ", ".join(f"{p['minority_images']} images {p['balanced_accuracy']:.3f}" for p in curve)
    lines = ["", f"Learning curve: real_only's test BA at {points}."]
    helping = [w["sentence"] for w in r.get("worth", {}).values() if w.get("helps")]
    lines += (
        ["", "Worth in real minority images:", ""] + [f"- {s}." for s in helping]
        if helping
        else [
            "",
            "Worth in real minority images: no remedy helps clearly, so none is priced.",
        ]
    )
    lines += own_curve_lines({"learning_curve_remedies": r.get("learning_curve_remedies", {})})
    if r.get("figure"):
        lines += ["", f"![{r['name']}: learning curve]({r['figure']})"]
    return lines


def write_page(results: list[dict], out: Path) -> None:
    lines = [
        "# Results on public data",
        "",
        "Written by `bench/panel.py` (one command, see its docstring) from the runs' own output files: the whole",
        "pipeline with the defaults of `params.yaml` (only the data and the image size changed), one scratch project",
        "per dataset. Balanced accuracy (BA) on each dataset's test split, mean over the seeds with a 95% bootstrap",
        "interval over test images; differences to real_only are paired. The recommendation is chosen on the",
        "validation split alone; regret is the test BA of the best remedy on test minus the recommended one's.",
        "Each dataset also has real_only's minority learning curve (trained on a quarter and a half of the minority",
        "patients), what each helping remedy is worth in real minority images, and the synthetic and best classical",
        "remedies retrained at every share with a generator of that share alone (docs/report.md).",
        "",
    ]
    for r in results:
        lines += dataset_section(r)
    lines += [
        "## Selection rules",
        "",
        "What each candidate rule would have recommended on each dataset (in brackets: its regret), computed from",
        "the same runs' validation predictions (no rule looks at the test split).",
        "",
        *regret_table(results),
        "",
    ]
    out.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(DATASETS), help="run these datasets only")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medaug-panel"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--write-only", action="store_true", help="only rewrite the page from finished runs")
    args = parser.parse_args()
    if not args.write_only:
        for name in args.only or list(DATASETS):
            print(f"{name}: running", flush=True)
            run_dataset(name, args.work)
    results = []
    for name in DATASETS:
        path, project = args.work / name / "panel.json", args.work / name
        if not path.is_file() and (project / "reports" / "metrics.json").is_file():  # finished, not yet collected
            seconds = sum(json.loads(f.read_text())["seconds"] for f in (project / ".medaug" / "runs").glob("*.json"))
            path.write_text(json.dumps(collect(project, name, seconds), indent=2) + "\n", encoding="utf-8")
        if path.is_file():
            # collected again from the run's files (the page's code may be newer than the run), its time kept
            stored = json.loads(path.read_text(encoding="utf-8"))
            result = collect(project, name, stored["seconds"]) | {k: stored[k] for k in ("machine", "date")}
            result["rule_picks"] = rule_picks(args.work / name)
            figure = project / "reports" / "figures" / "learning_curve.png"
            if figure.is_file():  # the picture beside the page, named after the dataset
                copied = args.out.parent / "results" / f"{name}_learning_curve.png"
                copied.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(figure, copied)
                result["figure"] = copied.relative_to(args.out.parent).as_posix()
            results.append(result)
    if results:
        write_page(results, args.out)
        print(f"wrote {args.out} ({len(results)} dataset(s))")


if __name__ == "__main__":
    main()
