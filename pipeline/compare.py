"""Stage ``compare``: the strategies side by side, with paired tests and the synthetic-ratio curve.

Reads what the ``train_classifier`` stage wrote for each strategy and ablation ratio (``metrics.json``,
``runs.json``, ``predictions.npz``) and writes:

- ``metrics.json``: every strategy's summary plus, for each strategy, its difference to ``real_only`` and to
  ``oversample`` on balanced accuracy, macro-F1, AUROC and each minority class's recall, paired over test
  images (same bootstrap resamples of the test split: 95% interval and p-value) and over seeds (paired t-test);
- ``synthetic_ratio.csv`` and ``figures/synthetic_ratio.png``: the ``vae`` strategy's balanced accuracy and
  minority recall against the number of synthetic images (0 = ``real_only``);
- ``curves/roc.csv`` and ``curves/pr.csv``: each strategy's ROC and precision-recall curve of the smallest class
  against the rest, averaged over seeds on a common grid (one column per strategy, for ``dvc plots``), and
  ``curves/confusion/<strategy>.csv``: one row per seed and test image (actual, predicted);
- ``figures/strategy_bars.png``, ``figures/roc_pr.png``, ``figures/confusion_matrices.png``: the same as pictures.

It trains nothing; the bootstrap resamples are recomputed from the saved test predictions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import TrainClassifierConfig, load_section
from pipeline.io.arrays import read_json, write_csv, write_json
from pipeline.io.atomic import atomic_dir
from pipeline.metrics import bootstrap_draws, mean_curves, paired_difference, predict_labels
from pipeline.plots import confusion_matrices, ratio_curve, roc_pr_curves, strategy_bars
from pipeline.runtime import run_stage

__all__ = ["BASELINES", "StrategyResult", "load_result", "compare", "ratio_table", "curve_tables", "main"]

logger = logging.getLogger(__name__)

BASELINES = ("real_only", "oversample")


@dataclass(frozen=True)
class StrategyResult:
    """One strategy's outputs: its summary, per-seed records and test predictions."""

    summary: dict
    runs: list[dict]
    predictions: dict[str, np.ndarray]

    def draws(self, keys: list[str]) -> dict[str, np.ndarray]:
        p = self.predictions
        thresholds = [None if np.isnan(t) else float(t) for t in p["thresholds"]]
        classes = [str(c) for c in p["classes"]]
        return bootstrap_draws(p["labels"], list(p["proba"]), thresholds, classes, keys, positive=int(p["positive"]))

    def per_seed(self, key: str) -> np.ndarray:
        return np.array([r["test"][key] for r in self.runs])

    def predicted(self) -> list[tuple[int, np.ndarray]]:
        """(seed, predicted labels of the test images) for every seed, with its validation threshold."""
        p = self.predictions
        return [
            (int(seed), predict_labels(proba, None if np.isnan(t) else float(t), int(p["positive"])))
            for seed, proba, t in zip(p["seeds"], p["proba"], p["thresholds"], strict=True)
        ]


def load_result(folder: str | Path) -> StrategyResult:
    folder = Path(folder)
    with np.load(folder / "predictions.npz") as npz:
        predictions = {k: npz[k] for k in npz.files}
    return StrategyResult(read_json(folder / "metrics.json"), read_json(folder / "runs.json"), predictions)


def compare(results: dict[str, StrategyResult]) -> dict:
    """The combined summary (see the module docstring) of ``results`` (name -> result, ``real_only`` included)."""
    first = results["real_only"]
    for name, result in results.items():
        same = np.array_equal(result.predictions["labels"], first.predictions["labels"])
        if not same or not np.array_equal(result.predictions["seeds"], first.predictions["seeds"]):
            raise ValueError(f"{name} was evaluated on another test split or seeds than real_only: re-run dvc repro")
    minorities = first.summary["minority_classes"]
    keys = ["balanced_accuracy", "macro_f1", "auroc"] + [f"recall_{c}" for c in minorities]
    draws = {name: result.draws(keys) for name, result in results.items()}
    combined: dict = {}
    for name, result in results.items():
        entry = {k: v for k, v in result.summary.items() if k not in ("minority_classes", "seeds", "threshold")}
        for base in BASELINES:
            if base in results and base != name:
                entry[f"vs_{base}"] = {
                    key: paired_difference(
                        draws[name][key], draws[base][key], result.per_seed(key), results[base].per_seed(key)
                    )
                    for key in keys
                }
        combined[name] = entry
    combined |= {k: first.summary[k] for k in ("minority_classes", "seeds", "threshold")}
    return combined


def ratio_table(combined: dict, ablation: dict[float, str]) -> list[dict]:
    """The synthetic-ratio curve: ``real_only`` at 0, ``vae`` at its ratio and each ``ablation`` entry
    (ratio -> name in ``combined``), sorted by ratio."""
    points = {0.0: "real_only"} | ({combined["vae"]["synthetic_ratio"]: "vae"} if "vae" in combined else {})
    points |= ablation
    rows = []
    for ratio in sorted(points):
        s = combined[points[ratio]]
        row = {"ratio": ratio, "strategy": points[ratio]}
        for key in ["balanced_accuracy"] + [f"recall_{c}" for c in combined["minority_classes"]]:
            row |= {key: s[key], f"{key}_std": s[f"{key}_std"]}
            row |= {f"{key}_ci_low": s[f"{key}_ci_low"], f"{key}_ci_high": s[f"{key}_ci_high"]}
        rows.append(row)
    return rows


def curve_tables(results: dict[str, StrategyResult], points: int = 101) -> dict[str, list[dict]]:
    """``{"roc": rows, "pr": rows}``: per strategy (a column each), the seed-averaged ROC curve (true-positive rate
    at ``points`` false-positive rates) and precision-recall curve (precision at ``points`` recalls) of the
    smallest training class against the rest, from :func:`pipeline.metrics.mean_curves`."""
    grid = np.linspace(0.0, 1.0, points)
    roc, pr = [{"fpr": round(x, 6)} for x in grid], [{"recall": round(x, 6)} for x in grid]
    for name, result in results.items():
        p = result.predictions
        tpr, precision = mean_curves(p["labels"], list(p["proba"]), int(p["positive"]), grid)
        for k in range(points):
            roc[k][name], pr[k][name] = round(float(tpr[k]), 6), round(float(precision[k]), 6)
    return {"roc": roc, "pr": pr}


def write_confusion(folder: Path, results: dict[str, StrategyResult]) -> dict[str, np.ndarray]:
    """``<strategy>.csv`` in ``folder`` (replaced whole): seed, actual and predicted class of every test image,
    for ``dvc plots``' confusion template. Returns each strategy's confusion matrix summed over seeds."""
    matrices = {}
    with atomic_dir(folder) as staging:
        for name, result in results.items():
            classes, labels = [str(c) for c in result.predictions["classes"]], result.predictions["labels"]
            rows, matrix = [], np.zeros((len(classes), len(classes)), dtype=int)
            for seed, predicted in result.predicted():
                np.add.at(matrix, (labels, predicted), 1)
                rows += [
                    {"seed": seed, "actual": classes[a], "predicted": classes[b]}
                    for a, b in zip(labels, predicted, strict=True)
                ]
            write_csv(staging / f"{name}.csv", rows)
            matrices[name] = matrix
    return matrices


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: TrainClassifierConfig = load_section("train_classifier")
    reports = Path(load_section("paths").reports)
    folder = reports / "classifier"
    results = {name: load_result(folder / name) for name in cfg.strategies}
    ablation: dict[float, str] = {}
    for path in sorted(folder.glob("ablation_*/metrics.json")):
        ratio = read_json(path)["synthetic_ratio"]
        if any(np.isclose(ratio, r) for r in cfg.ablation_ratios):  # folders of ratios since removed are ignored
            ablation[ratio] = f"vae_ratio_{ratio:g}"
            results[ablation[ratio]] = load_result(path.parent)
    combined = compare(results)
    rows = ratio_table(combined, ablation)
    write_csv(reports / "synthetic_ratio.csv", rows)
    figures = reports / "figures"
    ratio_curve(figures / "synthetic_ratio.png", rows, combined)
    strategy_bars(figures / "strategy_bars.png", combined)
    chosen = {name: results[name] for name in cfg.strategies}
    curves = curve_tables(chosen)
    for kind, table in curves.items():
        write_csv(reports / "curves" / f"{kind}.csv", table)
    first = results["real_only"].predictions
    classes = [str(c) for c in first["classes"]]
    combined["curves_class"] = classes[int(first["positive"])]
    roc_pr_curves(figures / "roc_pr.png", curves, combined)
    matrices = write_confusion(reports / "curves" / "confusion", chosen)
    confusion_matrices(figures / "confusion_matrices.png", matrices, classes, combined["seeds"])
    write_json(reports / "metrics.json", combined)
    logger.info("compared %d strategies and %d ablation ratios", len(cfg.strategies), len(ablation))


if __name__ == "__main__":
    run_stage(main, "pipeline.compare")
