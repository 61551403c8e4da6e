import csv
import dataclasses
import json

import numpy as np
import pytest

from pipeline.compare import (
    RULES,
    StrategyResult,
    compare,
    curve_tables,
    paired_draws,
    pick,
    ratio_table,
    recommend,
    remedy_curves,
    selection_scores,
    standard_error,
    validation_draws,
    write_confusion,
)
from pipeline.config import RULE_NAMES
from pipeline.io.records import ClassifierRun, StaleRecordError
from pipeline.metrics import classification_metrics, summarise_runs
from pipeline.plots import confusion_matrices, roc_pr_curves, strategy_bars
from pipeline.strategies import REMEDIES

LABELS = np.array([0] * 30 + [1] * 10)  # class "b" is the minority
VAL_LABELS = np.array([0] * 300 + [1] * 100)
CLASSES = ("a", "b")


def _predicted(labels: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """Probabilities that put a fraction ``accuracy`` of ``labels`` (at random) on their true class."""
    right = np.random.default_rng(seed).uniform(size=len(labels)) < accuracy
    return np.eye(2)[np.where(right, labels, 1 - labels)] * 0.8 + 0.1


def _run(seed: int, val: dict, test: dict) -> ClassifierRun:
    return ClassifierRun(seed, 0, 1, None, {}, val, test)


def _result(
    name: str, accuracy: float, ratio: float = 0.0, seeds=(0, 1, 2), val=(0.5, 0.5, 0.5), labels=LABELS
) -> StrategyResult:
    """A strategy whose every seed predicts the true class of a fraction ``accuracy`` of the test images, with
    validation balanced accuracies ``val`` (one per seed; its validation predictions are right as often) on 400
    validation images. ``name`` may end in ``_ratio_<r>`` (an ablation run)."""
    probas = [_predicted(labels, accuracy, seed) for seed in seeds]
    val_probas = [_predicted(VAL_LABELS, v, 100 + seed) for seed, v in zip(seeds, val, strict=True)]
    runs = [
        _run(seed, {"balanced_accuracy": v}, classification_metrics(labels, p, CLASSES))
        for seed, p, v in zip(seeds, probas, val, strict=True)
    ]
    summary = summarise_runs([r.test for r in runs])
    for key in ("balanced_accuracy", "recall_b"):
        summary |= {f"{key}_ci_low": summary[key] - 0.1, f"{key}_ci_high": summary[key] + 0.1}
    strategy = name.split("_ratio_")[0]
    summary |= {"strategy": strategy, "synthetic_ratio": ratio, "minority_classes": ["b"], "seeds": 3}
    summary |= {"threshold": "x"}
    predictions = {
        "labels": labels,
        "proba": np.stack(probas),
        "thresholds": np.full(len(seeds), np.nan),
        "seeds": np.array(seeds),
        "positive": np.array(1),
        "classes": np.array(CLASSES),
        "val_labels": VAL_LABELS,
        "val_proba": np.stack(val_probas),
    }
    return StrategyResult(summary, runs, predictions)


def test_each_strategy_is_compared_with_both_baselines_paired():
    results = {"real_only": _result("real_only", 0.6), "oversample": _result("oversample", 0.6)}
    results["vae"] = _result("vae", 0.95, ratio=1.0)
    combined = compare(results)
    assert "vs_real_only" not in combined["real_only"] and "vs_oversample" in combined["real_only"]
    vs = combined["vae"]["vs_real_only"]
    assert vs["balanced_accuracy"]["ci_low"] > 0 and vs["balanced_accuracy"]["p_bootstrap"] < 0.05
    assert set(vs) == {"balanced_accuracy", "macro_f1", "auroc", "worst_recall", "recall_b"}
    assert vs["balanced_accuracy"]["difference"] == pytest.approx(
        combined["vae"]["balanced_accuracy"] - combined["real_only"]["balanced_accuracy"]
    )
    same = combined["oversample"]["vs_real_only"]["balanced_accuracy"]  # identical predictions: no difference
    assert same["difference"] == 0 and same["p_bootstrap"] == 1.0
    assert combined["minority_classes"] == ["b"] and combined["seeds"] == 3


def _remedies(labels=LABELS) -> dict[str, StrategyResult]:
    """oversample best on validation, vae best on test, classical between them."""
    return {
        "real_only": _result("real_only", 0.6, val=(0.70, 0.72, 0.71), labels=labels),
        "oversample": _result("oversample", 0.7, val=(0.90, 0.91, 0.92), labels=labels),
        "classical": _result("classical", 0.8, val=(0.80, 0.80, 0.81), labels=labels),
        "vae": _result("vae", 0.95, ratio=1.0, val=(0.60, 0.62, 0.61), labels=labels),
    }


def test_the_recommendation_is_chosen_on_validation_and_reported_on_test():
    results = _remedies()
    combined = compare(results)
    rec = recommend(results, combined)
    assert rec["remedy"] == "oversample" and rec["chosen_on"] == "validation"  # not vae, the best on test
    assert rec["best_classical"] == "oversample"  # picked the same way among class_weight/oversample/classical/...
    assert rec["test"]["balanced_accuracy"] == combined["oversample"]["balanced_accuracy"]
    assert rec["vs_real_only"]["balanced_accuracy"] == combined["oversample"]["vs_real_only"]["balanced_accuracy"]
    assert "vs_best_classical" not in rec  # the same remedy
    assert rec["validation_balanced_accuracy"]["oversample"] == pytest.approx(0.91)


def test_changing_the_test_labels_does_not_change_the_recommendation_by_any_rule():
    flipped = LABELS.copy()
    flipped[:12] = 1  # other test labels: every test number changes
    chosen: dict[str, list[dict]] = {rule: [] for rule in RULES}
    for labels in (LABELS, flipped, 1 - LABELS):
        results = _remedies(labels)
        draws = paired_draws(results)
        combined = compare(results, draws)
        for rule in RULES:
            chosen[rule].append(recommend(results, combined, draws, rule=rule))
    for rule, recs in chosen.items():
        assert {c["remedy"] for c in recs} == {"oversample"}, rule  # the validation leader by every criterion here
        assert recs[0]["test"] != recs[1]["test"] and recs[0]["rule"] == RULES[rule]  # the test numbers did change


def test_every_rule_is_a_setting_and_says_whether_validation_separates_the_remedies():
    assert tuple(RULES) == RULE_NAMES
    results = _remedies()
    assert recommend(results, compare(results))["validation_separates"]  # oversample 0.91 against real_only 0.71
    results["real_only"] = _result("real_only", 0.6, val=(0.90, 0.92, 0.91))  # now level with oversample
    rec = recommend(results, compare(results))
    assert rec["validation_separates"] is False and rec["validation_best_other"] == "oversample"
    results["real_only"] = _result("real_only", 0.6, val=(0.99, 0.99, 0.99))  # real_only best, clearly
    assert recommend(results, compare(results))["validation_separates"]


def test_the_threshold_free_and_cross_fitted_rules_score_what_they_say():
    results = _remedies()
    for rule in ("crossfit_best", "auroc_best"):
        scores, noise = selection_scores(results, rule)
        assert noise is None and set(scores) == set(results) and all(len(v) == 3 for v in scores.values())
        assert max(scores, key=lambda n: scores[n].mean()) == "oversample"
    crossfit, _ = selection_scores(results, "crossfit_best")
    plain, _ = selection_scores(results, "best")
    assert all(abs(crossfit[n].mean() - plain[n].mean()) < 0.1 for n in results)  # held-out halves: close here


def test_within_one_standard_error_of_the_best_the_simplest_remedy_wins():
    summaries = {n: {"strategy": n, "synthetic_ratio": 0.0} for n in REMEDIES}
    summaries |= {
        "vae_ratio_0.5": {"strategy": "vae", "synthetic_ratio": 0.5},
        "vae": {"strategy": "vae", "synthetic_ratio": 1},
    }
    scores = {n: np.array([0.80, 0.80, 0.80]) for n in summaries}
    scores["mixup"] = np.array([0.84, 0.86, 0.85])  # mean 0.85, standard error 0.0058
    scores["classical"] = np.array([0.845, 0.845, 0.845])  # within one standard error: simpler than mixup
    assert pick(scores, summaries, list(summaries)) == "classical"
    scores["classical"] = np.array([0.84, 0.84, 0.84])  # 0.01 below: outside
    assert pick(scores, summaries, list(summaries)) == "mixup"
    scores["real_only"] = scores["mixup"].copy()  # a tie with real_only: nothing beats the real images
    assert pick(scores, summaries, list(summaries)) == "real_only"
    tie = {"vae": np.array([0.9, 0.9]), "vae_ratio_0.5": np.array([0.9, 0.9])}
    assert pick(tie, summaries, list(tie)) == "vae_ratio_0.5"  # fewer synthetic images


def test_a_lead_within_the_validation_images_noise_goes_to_the_simpler_remedy():
    summaries = {n: {"strategy": n, "synthetic_ratio": 0.0} for n in ("real_only", "oversample")}
    scores = {"real_only": np.array([0.90, 0.91, 0.92]), "oversample": np.array([0.92, 0.93, 0.94])}
    # the same lead of 0.02 on every seed: no seed noise, so the seeds alone call oversample better
    assert pick(scores, summaries, list(scores)) == "oversample"
    rng = np.random.default_rng(0)
    steady = rng.normal(0.91, 0.05, 1000)
    draws = {"real_only": steady, "oversample": steady + 0.02}  # validation resamples move both alike
    assert pick(scores, summaries, list(scores), draws) == "oversample"
    draws["oversample"] = steady + 0.02 + rng.normal(0, 0.03, 1000)  # ... or not: a spread of 0.03 in the lead
    assert standard_error(scores, "oversample", "real_only", draws) == pytest.approx(0.03, abs=0.003)
    assert pick(scores, summaries, list(scores), draws) == "real_only"


def test_validation_draws_are_paired_and_the_recommendation_names_the_validation_best():
    results = _remedies()
    over = results["oversample"]
    results["same"] = StrategyResult(over.summary, over.runs, over.predictions)
    draws = validation_draws(results)
    assert np.array_equal(draws["same"], draws["oversample"]) and len(draws["vae"]) > 900
    assert abs(draws["oversample"].mean() - 0.91) < 0.03 and abs(draws["real_only"].mean() - 0.71) < 0.03
    del results["same"]
    rec = recommend(results, compare(results))
    assert rec["validation_best"] == "oversample" and rec["validation_standard_error"] == 0.0  # chosen = best
    del results["vae"].predictions["val_proba"]
    with pytest.raises(ValueError, match="vae.*no validation predictions.*re-run the train_classifier stage"):
        validation_draws(results)


def test_runs_without_validation_scores_ask_for_train_classifier(tmp_path):
    """A runs.json of an older train_classifier (no validation scores) is refused when read, naming the stage."""
    run = dataclasses.asdict(_remedies()["vae"].runs[0])
    del run["val"]
    (tmp_path / "runs.json").write_text(json.dumps([run]), encoding="utf-8")
    with pytest.raises(StaleRecordError, match="runs.json.*dvc repro train_classifier"):
        ClassifierRun.read_all(tmp_path)


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
        runs = [_run(seed, {}, classification_metrics(labels, p, classes)) for seed, p in enumerate(probas)]
        summary = summarise_runs([r.test for r in runs]) | {"minority_classes": ["b", "c"], "seeds": 2}
        predictions = {"labels": labels, "proba": np.stack(probas), "thresholds": np.full(2, np.nan)}
        predictions |= {"seeds": np.array([0, 1]), "positive": np.array(2), "classes": np.array(classes)}
        results[name] = StrategyResult(summary | {"threshold": "argmax"}, runs, predictions)
    combined = compare(results)
    vs = combined["vae"]["vs_real_only"]
    assert set(vs) == {"balanced_accuracy", "macro_f1", "auroc", "worst_recall", "recall_b", "recall_c"}
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


def _write(folder, result: StrategyResult, minority_images: int) -> None:
    from pipeline.io.arrays import write_json, write_npz

    write_npz(folder / "predictions.npz", result.predictions)
    ClassifierRun.write_all(folder, result.runs)
    write_json(folder / "metrics.json", result.summary | {"minority_images": minority_images})


def test_a_remedys_own_curve_is_paired_with_real_only_on_the_same_images(tmp_path):
    from pipeline.reporting.sections import own_curve_lines

    # real_only: 0.6 on the whole split (40 minority images), 0.55 on half of them (20); vae: 0.95 and 0.58
    results = {"real_only": _result("real_only", 0.6), "vae": _result("vae", 0.95, ratio=1.0)}
    results["mixup"] = _result("mixup", 0.7)  # no point of its own: left out
    curve = {40: results["real_only"], 20: _result("real_only", 0.55)}
    _write(tmp_path / "curve_0.5" / "vae", _result("vae", 0.58, ratio=1.0), 20)
    _write(tmp_path / "curve_0.25" / "vae", _result("vae", 0.9, ratio=1.0), 10)  # no real_only at 10: left out
    own = remedy_curves(results, curve, tmp_path, [0.25, 0.5])
    assert list(own) == ["vae"] and [p["minority_images"] for p in own["vae"]] == [20, 40]
    assert all(0 <= p["minority_recall"] <= 1 for p in own["vae"])  # recall_b, the one minority class
    half = compare({"real_only": curve[20], "vae": _result("vae", 0.58, ratio=1.0)})["vae"]["vs_real_only"]
    assert own["vae"][0]["vs_real_only"]["difference"] == pytest.approx(half["balanced_accuracy"]["difference"])
    whole = compare(results)["vae"]["vs_real_only"]["balanced_accuracy"]
    assert own["vae"][1]["vs_real_only"]["ci_low"] == pytest.approx(whole["ci_low"]) and whole["ci_low"] > 0
    text = "\n".join(own_curve_lines({"learning_curve_remedies": own}))
    assert "| vae | " in text and "20 minority images" in text and "40 minority images" in text
    helps_at_half = own["vae"][0]["vs_real_only"]["ci_low"] > 0
    assert ("not at every size" in text) != helps_at_half  # clear at 40; at 20 only if its interval says so
