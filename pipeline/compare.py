"""Stage ``compare``: the strategies side by side, with paired tests and the synthetic-ratio curve.

Reads what each ``train_classifier@<strategy>`` and ``ablation@<ratio>`` stage wrote (``metrics.json``,
``runs.json``, ``predictions.npz``) and writes:

- ``metrics.json``: every strategy's summary plus, for each strategy, its difference to ``real_only`` and to
  ``oversample`` on balanced accuracy, macro-F1, AUROC and each minority class's recall, paired over test
  images (same bootstrap resamples of the test split: 95% interval and p-value) and over seeds (paired t-test);
- ``synthetic_ratio.csv`` and ``figures/synthetic_ratio.png``: the ``vae`` strategy's balanced accuracy and
  minority recall against the number of synthetic images (0 = ``real_only``).

It trains nothing; the bootstrap resamples are recomputed from the saved test predictions.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import TrainClassifierConfig, load_section
from pipeline.io.arrays import read_json, write_json
from pipeline.io.atomic import atomic_file
from pipeline.metrics import bootstrap_draws, paired_difference
from pipeline.plots import ratio_curve

__all__ = ["BASELINES", "StrategyResult", "load_result", "compare", "ratio_table", "main"]

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
    with atomic_file(reports / "synthetic_ratio.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ratio_curve(reports / "figures" / "synthetic_ratio.png", rows, combined)
    write_json(reports / "metrics.json", combined)
    logger.info("compared %d strategies and %d ablation ratios", len(cfg.strategies), len(ablation))


if __name__ == "__main__":
    main()
