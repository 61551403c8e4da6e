import csv

import numpy as np
import pytest

from pipeline.compare import StrategyResult, compare, curve_tables, ratio_table, write_confusion
from pipeline.metrics import classification_metrics, summarise_runs
from pipeline.plots import confusion_matrices, roc_pr_curves, strategy_bars

LABELS = np.array([0] * 30 + [1] * 10)  # class "b" is the minority
CLASSES = ("a", "b")


def _result(name: str, accuracy: float, ratio: float = 0.0, seeds=(0, 1, 2)) -> StrategyResult:
    """A strategy whose every seed predicts the true class of a fraction ``accuracy`` of the test images."""
    probas = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        right = rng.uniform(size=len(LABELS)) < accuracy
        predicted = np.where(right, LABELS, 1 - LABELS)
        probas.append(np.eye(2)[predicted] * 0.8 + 0.1)
    runs = [{"test": classification_metrics(LABELS, p, CLASSES)} for p in probas]
    summary = summarise_runs([r["test"] for r in runs])
    for key in ("balanced_accuracy", "recall_b"):
        summary |= {f"{key}_ci_low": summary[key] - 0.1, f"{key}_ci_high": summary[key] + 0.1}
    summary |= {"strategy": name, "synthetic_ratio": ratio, "minority_classes": ["b"], "seeds": 3, "threshold": "x"}
    predictions = {
        "labels": LABELS,
        "proba": np.stack(probas),
        "thresholds": np.full(len(seeds), np.nan),
        "seeds": np.array(seeds),
        "positive": np.array(1),
        "classes": np.array(CLASSES),
    }
    return StrategyResult(summary, runs, predictions)


def test_each_strategy_is_compared_with_both_baselines_paired():
    results = {"real_only": _result("real_only", 0.6), "oversample": _result("oversample", 0.6)}
    results["vae"] = _result("vae", 0.95, ratio=1.0)
    combined = compare(results)
    assert "vs_real_only" not in combined["real_only"] and "vs_oversample" in combined["real_only"]
    vs = combined["vae"]["vs_real_only"]
    assert vs["balanced_accuracy"]["ci_low"] > 0 and vs["balanced_accuracy"]["p_bootstrap"] < 0.05
    assert set(vs) == {"balanced_accuracy", "macro_f1", "auroc", "recall_b"}
    assert vs["balanced_accuracy"]["difference"] == pytest.approx(
        combined["vae"]["balanced_accuracy"] - combined["real_only"]["balanced_accuracy"]
    )
    same = combined["oversample"]["vs_real_only"]["balanced_accuracy"]  # identical predictions: no difference
    assert same["difference"] == 0 and same["p_bootstrap"] == 1.0
    assert combined["minority_classes"] == ["b"] and combined["seeds"] == 3


def test_results_from_another_test_split_or_seeds_are_refused():
    results = {"real_only": _result("real_only", 0.6), "vae": _result("vae", 0.9, seeds=(0, 1, 5))}
    with pytest.raises(ValueError, match="another test split or seeds"):
        compare(results)


def test_the_ratio_curve_runs_from_real_only_through_the_ablation():
    results = {"real_only": _result("real_only", 0.6), "vae": _result("vae", 0.8, ratio=1.0)}
    results |= {"vae_ratio_2": _result("vae", 0.9, ratio=2.0), "vae_ratio_0.5": _result("vae", 0.7, ratio=0.5)}
    combined = compare(results)
    rows = ratio_table(combined, {2.0: "vae_ratio_2", 0.5: "vae_ratio_0.5"})
    assert [(r["ratio"], r["strategy"]) for r in rows] == [
        (0.0, "real_only"),
        (0.5, "vae_ratio_0.5"),
        (1.0, "vae"),
        (2.0, "vae_ratio_2"),
    ]
    assert rows[2]["balanced_accuracy"] == combined["vae"]["balanced_accuracy"] and "recall_b_ci_high" in rows[0]


def test_several_minority_classes_are_compared_on_each_recall(tmp_path):
    labels = np.array([0] * 20 + [1] * 8 + [2] * 6)
    classes = ("a", "b", "c")
    results = {}
    for name, noise in (("real_only", 2.5), ("vae", 0.5)):  # noise above 1 makes errors
        probas = [np.eye(3)[labels] + np.random.default_rng(s).uniform(0, noise, (34, 3)) for s in (0, 1)]
        probas = [p / p.sum(1, keepdims=True) for p in probas]
        runs = [{"test": classification_metrics(labels, p, classes)} for p in probas]
        summary = summarise_runs([r["test"] for r in runs]) | {"minority_classes": ["b", "c"], "seeds": 2}
        predictions = {"labels": labels, "proba": np.stack(probas), "thresholds": np.full(2, np.nan)}
        predictions |= {"seeds": np.array([0, 1]), "positive": np.array(2), "classes": np.array(classes)}
        results[name] = StrategyResult(summary | {"threshold": "argmax"}, runs, predictions)
    combined = compare(results)
    vs = combined["vae"]["vs_real_only"]
    assert set(vs) == {"balanced_accuracy", "macro_f1", "auroc", "recall_b", "recall_c"}
    assert vs["balanced_accuracy"]["difference"] > 0 and vs["auroc"]["ci_low"] >= 0
    # the curves are class "c" (the smallest, `positive`) against the rest; the matrices are 3 x 3
    curves = curve_tables(results, points=11)
    assert curves["roc"][-1] == {"fpr": 1.0, "real_only": 1.0, "vae": 1.0}
    matrices = write_confusion(tmp_path / "confusion", results)
    assert matrices["vae"].shape == (3, 3) and matrices["vae"].sum() == 2 * len(labels)
    assert matrices["vae"].sum(axis=1).tolist() == [40, 16, 12]  # each true class once per seed
    combined["curves_class"] = "c"
    for name, draw in {
        "bars.png": lambda path: strategy_bars(path, combined),
        "roc_pr.png": lambda path: roc_pr_curves(path, curves, combined),
        "confusion.png": lambda path: confusion_matrices(path, matrices, classes, 2),
    }.items():
        draw(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 5000


def test_curves_have_one_column_per_strategy_and_end_where_they_must(tmp_path):
    results = {"real_only": _result("real_only", 0.6), "vae": _result("vae", 1.0)}
    curves = curve_tables(results, points=11)
    assert [list(curves["roc"][0]), list(curves["pr"][0])] == [
        ["fpr", "real_only", "vae"],
        ["recall", "real_only", "vae"],
    ]
    assert all(row["vae"] == 1.0 for row in curves["roc"])  # a perfect classifier: every positive at no FPR
    assert all(row["vae"] == 1.0 for row in curves["pr"])
    assert curves["roc"][-1]["real_only"] == 1.0 and curves["roc"][5]["real_only"] < 1.0
    tprs = [row["real_only"] for row in curves["roc"]]
    assert tprs == sorted(tprs)  # a ROC curve never goes down


def test_confusion_files_hold_every_seed_and_test_image(tmp_path):
    results = {"real_only": _result("real_only", 0.6), "vae": _result("vae", 1.0)}
    matrices = write_confusion(tmp_path / "confusion", results)
    assert sorted(p.name for p in (tmp_path / "confusion").iterdir()) == ["real_only.csv", "vae.csv"]
    with open(tmp_path / "confusion" / "vae.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(LABELS) and {r["seed"] for r in rows} == {"0", "1", "2"}
    assert all(r["actual"] == r["predicted"] for r in rows)  # the perfect strategy
    assert matrices["vae"].tolist() == [[90, 0], [0, 30]]
    assert matrices["real_only"].sum() == 3 * len(LABELS) and matrices["real_only"][0, 1] > 0
    write_confusion(tmp_path / "confusion", {"vae": results["vae"]})  # a strategy since removed leaves no file
    assert [p.name for p in (tmp_path / "confusion").iterdir()] == ["vae.csv"]
