"""Stage ``compare``: the strategies side by side, with paired tests and the synthetic-ratio curve.

Reads what the ``train_classifier`` stage wrote for each strategy and ablation ratio (``metrics.json``,
``runs.json``, ``predictions.npz``) and writes:

- ``metrics.json``: every strategy's summary plus, for each strategy, its difference to ``real_only`` and to
  ``oversample`` on balanced accuracy, macro-F1, AUROC, the worst class's recall and each minority class's recall,
  paired over test images (same bootstrap resamples of the test split: 95% interval and p-value) and over seeds
  (paired t-test); and ``recommendation``: the remedy chosen on the validation split alone (see :func:`recommend`)
  with its test metrics, computed once, and its paired differences to real_only and to the best classical remedy;
- ``synthetic_ratio.csv`` and ``figures/synthetic_ratio.png``: the ``vae`` strategy's balanced accuracy and
  minority recall against the number of synthetic images (0 = ``real_only``);
- ``curves/roc.csv`` and ``curves/pr.csv``: each strategy's ROC and precision-recall curve of the smallest class
  against the rest, averaged over seeds on a common grid (one column per strategy, for ``dvc plots``), and
  ``curves/confusion/<strategy>.csv``: one row per seed and test image (actual, predicted);
- ``figures/strategy_bars.png``, ``figures/roc_pr.png``, ``figures/confusion_matrices.png``: the same as pictures.

It trains nothing; the bootstrap resamples are recomputed from the saved test predictions.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import TrainClassifierConfig, load_section
from pipeline.io.arrays import read_json, write_csv, write_json
from pipeline.io.atomic import atomic_dir
from pipeline.io.records import ClassifierRun
from pipeline.metrics import (
    auroc,
    bootstrap_draws,
    crossfit_balanced_accuracy,
    mean_curves,
    paired_difference,
    predict_labels,
)
from pipeline.plots import (
    confusion_matrices,
    learning_curve,
    ratio_curve,
    reliability_diagram,
    roc_pr_curves,
    shift_curves,
    strategy_bars,
)
from pipeline.reporting.figures import (
    CONFUSION_MATRICES,
    LEARNING_CURVE,
    RELIABILITY,
    ROC_PR,
    SHIFT_STRESS,
    STRATEGY_BARS,
    SYNTHETIC_RATIO,
)
from pipeline.robustness import by_site, calibration, shift_stress
from pipeline.runtime import run_stage
from pipeline.shifts import SHIFTS
from pipeline.strategies import remedy
from pipeline.worth import CURVE_FOLDER, WorthN, minority_images, worth_per_class

__all__ = [
    "BASELINES",
    "StrategyResult",
    "load_result",
    "compare",
    "paired_draws",
    "validation_scores",
    "validation_draws",
    "standard_error",
    "pick",
    "recommend",
    "ratio_table",
    "curve_tables",
    "main",
]

logger = logging.getLogger(__name__)

BASELINES = ("real_only", "oversample")


@dataclass(frozen=True)
class StrategyResult:
    """One strategy's outputs: its summary, per-seed records and test predictions."""

    summary: dict
    runs: list[ClassifierRun]
    predictions: dict[str, np.ndarray]

    def draws(self, keys: list[str]) -> dict[str, np.ndarray]:
        p = self.predictions
        thresholds = [None if np.isnan(t) else float(t) for t in p["thresholds"]]
        classes = [str(c) for c in p["classes"]]
        return bootstrap_draws(p["labels"], list(p["proba"]), thresholds, classes, keys, positive=int(p["positive"]))

    def per_seed(self, key: str) -> np.ndarray:
        return np.array([r.test[key] for r in self.runs])

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
    return StrategyResult(read_json(folder / "metrics.json"), ClassifierRun.read_all(folder), predictions)


def _keys(results: dict[str, StrategyResult]) -> list[str]:
    """The metrics compared between remedies: balanced accuracy, macro-F1, AUROC, the worst class's recall and
    each minority class's recall."""
    minorities = results["real_only"].summary["minority_classes"]
    return ["balanced_accuracy", "macro_f1", "auroc", "worst_recall"] + [f"recall_{c}" for c in minorities]


def paired_draws(results: dict[str, StrategyResult]) -> dict[str, dict[str, np.ndarray]]:
    """Each result's bootstrap draws of :func:`_keys` over the same resamples of the test split (the costly part
    of comparing: computed once, for :func:`compare` and :func:`recommend` alike)."""
    keys = _keys(results)
    return {name: result.draws(keys) for name, result in results.items()}


def _paired(results: dict[str, StrategyResult], draws: dict, name: str, base: str, keys: list[str]) -> dict:
    """``name`` against ``base`` on each of ``keys``, paired over test resamples and over seeds."""
    return {
        key: paired_difference(
            draws[name][key], draws[base][key], results[name].per_seed(key), results[base].per_seed(key)
        )
        for key in keys
    }


def compare(results: dict[str, StrategyResult], draws: dict | None = None) -> dict:
    """The combined summary (see the module docstring) of ``results`` (name -> result, ``real_only`` included);
    ``draws`` from :func:`paired_draws`, computed here when not given."""
    first = results["real_only"]
    for name, result in results.items():
        same = np.array_equal(result.predictions["labels"], first.predictions["labels"])
        if not same or not np.array_equal(result.predictions["seeds"], first.predictions["seeds"]):
            raise ValueError(f"{name} was evaluated on another test split or seeds than real_only: re-run dvc repro")
    keys = _keys(results)
    draws = paired_draws(results) if draws is None else draws
    combined: dict = {}
    for name, result in results.items():
        entry = {k: v for k, v in result.summary.items() if k not in ("minority_classes", "seeds", "threshold")}
        for base in BASELINES:
            if base in results and base != name:
                entry[f"vs_{base}"] = _paired(results, draws, name, base, keys)
        combined[name] = entry
    combined |= {k: first.summary[k] for k in ("minority_classes", "seeds", "threshold")}
    return combined


def validation_scores(results: dict[str, StrategyResult]) -> dict[str, np.ndarray]:
    """Each result's per-seed balanced accuracy on the validation split, as train_classifier recorded it (at the
    threshold chosen on validation). Nothing here reads a test prediction."""
    scores = {}
    for name, result in results.items():
        scores[name] = np.array([run.val["balanced_accuracy"] for run in result.runs], dtype=float)
    return scores


def validation_draws(results: dict[str, StrategyResult]) -> dict[str, np.ndarray]:
    """Each result's seed-mean validation balanced accuracy (at each seed's threshold) on the same bootstrap
    resamples of the validation split (:func:`pipeline.metrics.bootstrap_draws`), so that two remedies' draws are
    paired: the spread of their difference is how much the choice between them rests on which validation images
    there happen to be. Reads validation predictions only."""
    draws, first = {}, None
    for name, result in results.items():
        p = result.predictions
        if "val_proba" not in p:
            raise ValueError(
                f"{name}'s predictions.npz has no validation predictions: re-run the train_classifier stage"
            )
        if first is not None and not np.array_equal(p["val_labels"], first):
            raise ValueError(f"{name} was chosen on another validation split than the others: re-run dvc repro")
        first = p["val_labels"]
        thresholds = [None if np.isnan(t) else float(t) for t in p["thresholds"]]
        classes = [str(c) for c in p["classes"]]
        keys, positive = ["balanced_accuracy"], int(p["positive"])
        one = bootstrap_draws(p["val_labels"], list(p["val_proba"]), thresholds, classes, keys, positive=positive)
        draws[name] = one["balanced_accuracy"]
    return draws


def simplicity(summary: dict) -> tuple[int, float]:
    """Sort key of a remedy from the simplest: its registered rank (:class:`pipeline.strategies.Remedy`), then
    fewer synthetic images."""
    return remedy(summary["strategy"]).simplicity, float(summary.get("synthetic_ratio", 0.0))


def standard_error(
    scores: dict[str, np.ndarray], best: str, name: str, draws: dict[str, np.ndarray] | None = None
) -> float:
    """Standard error of the difference between ``best``'s and ``name``'s mean validation score: over seeds (the
    paired per-seed differences), and, given ``draws`` (:func:`validation_draws`), over validation images too
    (the spread of the paired bootstrap differences), the two variances added."""
    diff = scores[best] - scores[name]
    variance = float(diff.var(ddof=1) / len(diff)) if len(diff) > 1 else 0.0
    if draws is not None:
        variance += float(np.var(draws[best] - draws[name]))
    return float(np.sqrt(variance))


def pick(
    scores: dict[str, np.ndarray],
    summaries: dict[str, dict],
    candidates: list[str],
    draws: dict[str, np.ndarray] | None = None,
) -> str:
    """The candidate with the highest mean validation score over seeds; when others lie within one standard error
    of it (the one-standard-error rule of model selection; :func:`standard_error`, over seeds and, given
    ``draws``, over validation images), the simplest of them."""
    means = {name: float(scores[name].mean()) for name in candidates}
    best = max(candidates, key=lambda name: means[name])
    near = [n for n in candidates if means[n] >= means[best] - standard_error(scores, best, n, draws)]
    return min(near, key=lambda name: (simplicity(summaries[name]), name))


def _classical(strategy: str) -> bool:
    """A remedy without synthetic images, other than real_only itself."""
    return strategy != "real_only" and remedy(strategy).pool == "none"


# what each selection rule (params: recommend.rule) recommends by; a test ties these to config.RULE_NAMES
RULES = {
    "one_se": "highest mean validation balanced accuracy over seeds; the simplest remedy within one standard error "
    "of it (over seeds and validation images)",
    "best": "highest mean validation balanced accuracy over seeds",
    "crossfit_one_se": "validation balanced accuracy with the threshold chosen on one half of the validation images "
    "and scored on the other (both ways); the simplest remedy within one standard error of the highest mean over "
    "seeds (over seeds)",
    "crossfit_best": "highest mean validation balanced accuracy over seeds with the threshold chosen on one half of "
    "the validation images and scored on the other (both ways)",
    "auroc_best": "highest mean validation AUROC over seeds (no threshold)",
}


def selection_scores(results: dict[str, StrategyResult], rule: str) -> tuple[dict[str, np.ndarray], dict | None]:
    """Per remedy, one validation score per seed by ``rule``'s criterion (higher is better), and the paired
    validation draws its standard error counts (None: over seeds only). Reads validation predictions only."""
    if rule in ("one_se", "best"):
        return validation_scores(results), validation_draws(results) if rule == "one_se" else None
    scores = {}
    for name, result in results.items():
        p = result.predictions
        labels, positive = p["val_labels"], int(p["positive"])
        if rule.startswith("crossfit"):
            scores[name] = np.array([crossfit_balanced_accuracy(labels, q, positive) for q in p["val_proba"]])
        else:
            scores[name] = np.array([auroc(labels, q) for q in p["val_proba"]])
    return scores, None


def choose(rule: str, results: dict[str, StrategyResult], candidates: list[str]) -> str:
    """The remedy ``rule`` recommends among ``candidates`` (:data:`RULES`)."""
    scores, noise = selection_scores(results, rule)
    if rule.endswith("one_se"):
        return pick(scores, {name: results[name].summary for name in candidates}, candidates, noise)
    return max(candidates, key=lambda name: (float(scores[name].mean()), name))


def _separation(scores: dict[str, np.ndarray], noise: dict | None) -> dict:
    others = [name for name in scores if name != "real_only"]
    if "real_only" not in scores or not others:
        return {"validation_separates": True}
    other = max(others, key=lambda name: float(scores[name].mean()))
    gap = abs(float(scores[other].mean() - scores["real_only"].mean()))
    return {
        "validation_best_other": other,
        "validation_separates": gap > standard_error(scores, other, "real_only", noise),
    }


def recommend(
    results: dict[str, StrategyResult], combined: dict, draws: dict | None = None, rule: str = "one_se"
) -> dict:
    """The remedy to use, chosen on the validation split only (:func:`pick` among every strategy and ratio that
    ran), and the best classical remedy (no synthetic images, not real_only) picked the same way; then the
    recommended remedy's test metrics from ``combined`` and its paired differences, over the same bootstrap
    resamples of the test split (``draws`` from :func:`paired_draws`, computed here when not given), to real_only
    and to that classical remedy."""
    scores, noise = validation_scores(results), validation_draws(results)
    remedy = choose(rule, results, list(results))
    classical = [n for n, r in results.items() if _classical(r.summary["strategy"])]
    best_classical = choose(rule, results, classical) if classical else None
    top = max(results, key=lambda name: float(scores[name].mean()))
    keys = ["balanced_accuracy", "worst_recall"] + [f"recall_{c}" for c in combined["minority_classes"]]
    draws = paired_draws(results) if draws is None else draws
    out: dict = {
        "remedy": remedy,
        "chosen_on": "validation",
        "rule": RULES[rule],
        "rule_name": rule,
        "validation_balanced_accuracy": {name: round(float(v.mean()), 6) for name, v in scores.items()},
        "validation_best": top,
        "validation_standard_error": round(standard_error(scores, top, remedy, noise), 6),
        # the best other remedy on validation, and whether validation tells it from real_only (beyond one standard
        # error); when not, the split cannot show whether any remedy helps
        **_separation(scores, noise),
        "best_classical": best_classical,
        "test": {
            k: combined[remedy][k]
            for key in keys
            for k in (key, f"{key}_std", f"{key}_ci_low", f"{key}_ci_high")
            if k in combined[remedy]
        },
    }
    for label, base in (("vs_real_only", "real_only"), ("vs_best_classical", best_classical)):
        if base is not None and base != remedy:
            out[label] = _paired(results, draws, remedy, base, keys)
    return out


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


def _robustness(results: dict[str, StrategyResult], combined: dict, reports: Path) -> None:
    """Each remedy's test results under acquisition shifts, per site and its calibration (pipeline.robustness), into
    ``combined`` and their figures."""
    predictions = {name: r.predictions for name, r in results.items()}
    shifts = [str(s) for s in predictions["real_only"].get("shifts", [])]  # none: train_classifier.shift_stress off
    per_seed = {name: {s: [run.shift[s] for run in r.runs] for s in shifts} for name, r in results.items()}
    if shifts:
        combined["shift_stress"] = shift_stress(predictions, per_seed)
    shift_curves(SHIFT_STRESS.path(reports), combined.get("shift_stress", {}), combined, SHIFTS)
    sites = by_site(predictions)
    if sites:
        combined["sites"] = sites
    ece, curves = calibration(predictions)
    for name, entry in ece.items():
        combined[name] |= entry
    reliability_diagram(RELIABILITY.path(reports), curves, len(results["real_only"].predictions["classes"]))


def _json(w: WorthN) -> dict:
    """A :class:`WorthN` as strict JSON (an infinite worth, where real_only's curve never gets there, as null with
    ``unbounded``) with its sentence."""
    out = dataclasses.asdict(w)
    unbounded = w.worth is not None and math.isinf(w.worth)
    for key in ("worth", "equivalent_n", "ci_low", "ci_high"):
        if isinstance(out[key], float) and math.isinf(out[key]):
            out[key] = None
    return out | {"unbounded": unbounded, "sentence": w.sentence()}


def _point(metrics: dict, n: int) -> dict:
    """A learning-curve point: ``n`` minority training images, the test balanced accuracy with its interval and the
    minority classes' mean recall."""
    recalls = [metrics[f"recall_{c}"] for c in metrics.get("minority_classes", []) if f"recall_{c}" in metrics]
    return (
        {"minority_images": n}
        | {
            k: metrics[f"balanced_accuracy{s}"]
            for k, s in (("balanced_accuracy", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))
        }
        | {"minority_recall": float(np.mean(recalls)) if recalls else None}
    )


def _worth(
    results: dict[str, StrategyResult], combined: dict, folder: Path, reports: Path, shares: Sequence[float]
) -> None:
    """real_only's minority learning curve (train_classifier's ``curve_<share>`` runs and the whole split) and, for
    every other remedy, what its gain is worth in real minority images (:mod:`pipeline.worth`), into ``combined``
    (``learning_curve``, ``worth``), ``reports/learning_curve.csv`` and its figure."""
    base = results["real_only"]
    n_full = minority_images(base.runs[0].train_images)
    curve = {n_full: base}
    for share in shares:
        if (folder / f"curve_{share:g}" / "metrics.json").is_file():
            point = load_result(folder / f"curve_{share:g}")
            n = minority_images(point.runs[0].train_images)
            if n < n_full:  # a share that kept every minority patient (a tiny class) is no point below the whole
                curve.setdefault(n, point)
    points = [_point(curve[n].summary, n) for n in sorted(curve)] if len(curve) > 1 else []
    remedies = {name: _point(r.summary, n_full) for name, r in results.items() if name != "real_only"}
    worth: dict[str, dict] = {}
    if points:
        minorities = combined["minority_classes"]
        subject = minorities[0] if len(minorities) == 1 else "minority"
        metrics = ["balanced_accuracy"] + [f"recall_{c}" for c in minorities]
        predictions = {n: r.predictions for n, r in curve.items()}
        for name, r in results.items():
            if name != "real_only":
                found = worth_per_class(predictions, r.predictions, n_full, metrics, name=name, subject=subject)
                worth[name] = {metric: _json(w) for metric, w in found.items()}
        combined["learning_curve"] = points
        combined["worth"] = worth
    own = remedy_curves(results, curve, folder.parent / CURVE_FOLDER, shares) if points else {}
    if own:
        combined["learning_curve_remedies"] = own
    rows = [{"remedy": "real_only"} | p for p in points] + [{"remedy": k} | p for k, p in remedies.items()]
    rows += [{"remedy": k} | p for k, own_points in own.items() for p in own_points[:-1]]  # the last: in remedies
    write_csv(
        reports / "learning_curve.csv",
        rows,
        ["remedy", "minority_images", "balanced_accuracy", "ci_low", "ci_high", "minority_recall"],
    )
    headline = {name: w["balanced_accuracy"] for name, w in worth.items()}
    learning_curve(LEARNING_CURVE.path(reports), points, remedies if points else {}, headline, own)


def remedy_curves(
    results: dict[str, StrategyResult], curve: dict[int, StrategyResult], folder: Path, shares: Sequence[float]
) -> dict[str, list[dict]]:
    """The learning_curve stage's points (``folder``: reports/classifier_curve, ``curve_<share>/<remedy>``) of
    each remedy, and its whole-split point last: per point the minority training images, its test balanced
    accuracy with its interval and its paired difference to real_only trained on the same images
    (``vs_real_only``: difference, ci_low, ci_high). Remedies without a point at any share are left out."""
    out: dict[str, list[dict]] = {}
    for name, result in results.items():
        if name == "real_only":
            continue
        found = []
        for share in shares:
            path = folder / f"curve_{share:g}" / name
            if (path / "metrics.json").is_file():
                point = load_result(path)
                n = int(point.summary["minority_images"])
                if n in curve:  # beside real_only trained on the same images
                    found.append((n, point))
        if not found:
            continue
        n_full = max(curve)
        found.append((n_full, result))
        out[name] = []
        for n, point in sorted(found, key=lambda item: item[0]):
            vs = compare({"real_only": curve[n], name: point})[name]["vs_real_only"]["balanced_accuracy"]
            difference = {k: vs[k] for k in ("difference", "ci_low", "ci_high")}
            out[name].append(_point(point.summary, n) | {"vs_real_only": difference})
    return out


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
    draws = paired_draws(results)
    combined = compare(results, draws)
    rule = load_section("recommend").rule
    combined["recommendation"] = recommend(results, combined, draws, rule)
    logger.info("recommended (on validation): %s", combined["recommendation"]["remedy"])
    rows = ratio_table(combined, ablation)
    write_csv(reports / "synthetic_ratio.csv", rows)
    ratio_curve(SYNTHETIC_RATIO.path(reports), rows, combined)
    synthetic = {name for name, r in results.items() if remedy(r.summary["strategy"]).pool != "none"}
    strategy_bars(STRATEGY_BARS.path(reports), combined, synthetic)
    chosen = {name: results[name] for name in cfg.strategies}
    curves = curve_tables(chosen)
    for kind, table in curves.items():
        write_csv(reports / "curves" / f"{kind}.csv", table)
    first = results["real_only"].predictions
    classes = [str(c) for c in first["classes"]]
    combined["curves_class"] = classes[int(first["positive"])]
    roc_pr_curves(ROC_PR.path(reports), curves, combined)
    matrices = write_confusion(reports / "curves" / "confusion", chosen)
    confusion_matrices(CONFUSION_MATRICES.path(reports), matrices, classes, combined["seeds"])
    _robustness(chosen, combined, reports)
    _worth(chosen, combined, folder, reports, cfg.learning_curve)
    write_json(reports / "metrics.json", combined)
    logger.info("compared %d strategies and %d ablation ratios", len(cfg.strategies), len(ablation))


if __name__ == "__main__":
    run_stage(main, "pipeline.compare")
