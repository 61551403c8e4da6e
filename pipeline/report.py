"""Stage ``report``: ``augmentation_report.md`` and the self-contained ``augmentation_report.html`` (pictures
embedded) from the files the earlier stages declared.

It reads the preprocessing summary, the synthetic manifest, the compare stage's metrics and synthetic-ratio
table, and the quality, anomaly and latent stages' metrics; it recomputes nothing. The verdict compares real +
synthetic with real only and with random oversampling on balanced accuracy (paired bootstrap intervals) and on
the recall of each minority class, and says plainly when augmentation did not help. The provenance section
(commit, dvc.lock fingerprint, dataset hash, versions, stage times) is read when the report is written; dvc.lock
is not a dependency (DVC writes it after the stage), so a new commit alone does not re-run the report.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from pipeline.config import load_section
from pipeline.io.arrays import read_json
from pipeline.io.atomic import atomic_file
from pipeline.io.records import PoolSummary, ProcessedSummary
from pipeline.io.synthetic import MANIFEST_NAME
from pipeline.reporting.figures import (
    CONFUSION_MATRICES,
    GENERATOR_TRAINING,
    INTERPOLATION,
    LATENT_SYNTHETIC,
    REAL_VS_SYNTHETIC,
    ROC_PR,
    STRATEGY_BARS,
    SYNTHETIC_BY_SAMPLER,
)
from pipeline.reporting.html import markdown_to_html
from pipeline.reporting.provenance import provenance
from pipeline.reporting.sections import (
    anomaly_lines,
    calibration_lines,
    classifier_lines,
    data_lines,
    generators_lines,
    imbalance_lines,
    latent_lines,
    p_value,
    picture,
    provenance_lines,
    quality_lines,
    ratio_lines,
    shift_lines,
    site_lines,
    strategies,
    worth_lines,
)
from pipeline.runtime import run_stage

__all__ = ["verdict", "render_report", "main"]

logger = logging.getLogger(__name__)


def _p_is(p: float | None) -> str:
    text = p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _comparison(metrics: dict, baseline: str, strategy: str, what: str) -> str:
    """One sentence: ``strategy`` against ``baseline`` on balanced accuracy, called a difference only when the 95%
    paired bootstrap interval of the difference excludes zero; the seeds' paired t-test alongside."""
    d = metrics[strategy][f"vs_{baseline}"]["balanced_accuracy"]
    detail = (
        f"{d['difference']:+.3f} [95% CI {d['ci_low']:+.3f}, {d['ci_high']:+.3f}], "
        f"paired bootstrap {_p_is(d['p_bootstrap'])}; over seeds {_p_is(d['p_seeds'])}"
    )
    if d["ci_low"] > 0:
        return f"{what} **helped**: balanced accuracy {detail}."
    if d["ci_high"] < 0:
        return f"{what} **did not help, it hurt**: balanced accuracy {detail}."
    return f"{what} made **no clear difference**: balanced accuracy {detail}."


def _winner(metrics: dict, key: str, what: str) -> str:
    """The strategy (ablation ratios included) with the highest ``key``, its interval, and its paired difference
    to real_only."""
    top = max(strategies(metrics), key=lambda name: metrics[name][key])
    s = metrics[top]
    text = f"{what}: **{top}** {s[key]:.3f}"
    if f"{key}_ci_low" in s:
        text += f" [95% CI {s[key + '_ci_low']:.3f}, {s[key + '_ci_high']:.3f}]"
    d = s.get("vs_real_only", {}).get(key)
    if d is not None:
        gain = "a clear gain" if d["ci_low"] > 0 else "within the noise"
        text += f", {d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] against real_only ({gain})"
    elif top == "real_only":
        text += " (no remedy did better than the real images alone)"
    return text + "."


def _gain(d: dict) -> str:
    if d["ci_low"] > 0:
        return "a clear gain"
    return "a clear loss" if d["ci_high"] < 0 else "within the noise"


def recommendation(metrics: dict) -> str | None:
    """The opening sentence: the remedy chosen on the validation split (the compare stage's ``recommendation``),
    its test scores, computed once, and its paired differences to real_only and to the best classical remedy
    picked the same way. None when the compare stage made no recommendation."""
    rec = metrics.get("recommendation")
    if rec is None:
        return None
    name, test = rec["remedy"], rec["test"]
    text = (
        f"**Recommended: {name}** (chosen on the validation split: {rec['rule']}; the test split played no part). "
        f"On the test split it scores balanced accuracy {test['balanced_accuracy']:.3f} "
        f"[95% CI {test['balanced_accuracy_ci_low']:.3f}, {test['balanced_accuracy_ci_high']:.3f}]"
    )
    if "worst_recall" in test:
        text += f", worst class's recall {test['worst_recall']:.3f}"
    top = rec.get("validation_best", name)
    if top != name:
        val = rec["validation_balanced_accuracy"]
        if rec.get("rule_name", "one_se").endswith("one_se"):
            text += (
                f" (on validation {top} scored highest, {val[top]:.3f} against {val[name]:.3f}, within one standard "
                f"error, {rec['validation_standard_error']:.3f}: validation could not tell them apart)"
            )
        else:
            text += (
                f" (the highest validation balanced accuracy was {top}'s, {val[top]:.3f} against {val[name]:.3f}; "
                "the rule ranks by its own criterion)"
            )
    if "vs_real_only" in rec:
        d = rec["vs_real_only"]["balanced_accuracy"]
        text += f"; against real_only {d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] ({_gain(d)})"
    else:
        text += "; no remedy did better on validation than the real images alone" + (
            " beyond the noise" if top != name else ""
        )
    if "vs_best_classical" in rec:
        d = rec["vs_best_classical"]["balanced_accuracy"]
        text += (
            f"; against the best classical remedy, {rec['best_classical']} (picked the same way), "
            f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] ({_gain(d)})"
        )
    if rec.get("validation_separates") is False:
        text += (
            f". **Validation cannot separate the remedies from real_only**: the best other remedy there, "
            f"{rec.get('validation_best_other')}, is within one standard error of real_only, so this split cannot show "
            "whether any remedy helps and the choice between them rests on noise; weigh the test differences below, "
            "and add validation patients before relying on it"
        )
    return f"- {text}."


def verdict(metrics: dict, baseline: str = "real_only", augmented: str = "vae") -> str:
    """Plain words, one bullet each: the remedy recommended on the validation split and its test scores; then,
    marked exploratory, the strategy that did best on the test split and by how much, whether any strategy beat
    ``baseline`` beyond the noise, VAE augmentation against ``baseline`` and against random oversampling when it
    ran, and the minority recalls."""
    lines = [line] if (line := recommendation(metrics)) else []
    if lines:
        lines.append(
            "- *Exploratory (test-split rankings: each pick below looked at the test split, so it is optimistic):*"
        )
    lines += [f"- {_winner(metrics, 'balanced_accuracy', 'Best balanced accuracy (every class weighs the same)')}"]
    lines += [
        f"- {_winner(metrics, f'recall_{c}', f'Best recall of minority class {c!r}')}"
        for c in metrics["minority_classes"]
    ]
    n = len(strategies(metrics))
    if n > 2 and any("a clear gain" in line for line in lines):
        lines.append(
            f"- These are the best of {n} strategies and ratios: the interval of whichever came out on top is "
            "optimistic (it was picked because it did well), so take a clear gain there as a lead to confirm on new "
            "patients, not a result."
        )
    better = [
        name
        for name in strategies(metrics)
        if metrics[name].get(f"vs_{baseline}", {}).get("balanced_accuracy", {}).get("ci_low", 0) > 0
    ]
    lines.append(
        f"- Shown better than {baseline} on balanced accuracy: " + ", ".join(f"**{n}**" for n in better) + "."
        if better
        else f"- **No strategy is shown better than {baseline}** on balanced accuracy (every 95% interval of the "
        "difference reaches zero or lies below it)."
    )
    if augmented not in metrics:
        lines.append("- No VAE strategy was run (train_classifier.strategies): no verdict on VAE augmentation.")
        return "\n".join(lines)
    base, aug = metrics[baseline], metrics[augmented]
    lines.append("- " + _comparison(metrics, baseline, augmented, f"VAE augmentation (against {baseline})"))
    if "oversample" in metrics and "vs_oversample" in aug:
        lines.append("- " + _comparison(metrics, "oversample", augmented, "Against random oversampling, it"))
    recalls = [
        f"recall of minority class '{c}' {base[f'recall_{c}']:.3f} → {aug[f'recall_{c}']:.3f}"
        for c in metrics["minority_classes"]
    ]
    if recalls:
        lines.append(f"- From {baseline} to {augmented}: " + "; ".join(recalls) + ".")
    chosen = metrics.get("recommendation", {}).get("remedy")
    for name in dict.fromkeys(n for n in (chosen, augmented) if n in metrics.get("worth", {})):
        # the recommended remedy on every score (each minority's recall too), vae on balanced accuracy
        worth = metrics["worth"][name]
        said = "; ".join(w["sentence"] for k, w in worth.items() if name == chosen or k == "balanced_accuracy")
        lines.append(f"- In real images (the minority learning curve of {baseline}): {said}.")
    return "\n".join(lines)


def render_report(
    summary: ProcessedSummary,
    synthetic_rows: list[dict],
    metrics: dict,
    figures: dict[str, str],
    generation: PoolSummary | None = None,
    ratio_rows: list[dict] | None = None,
    anomaly: dict | None = None,
    latent: dict | None = None,
    quality: dict | None = None,
    provenance: dict | None = None,
    generators: dict | None = None,
) -> str:
    """The Markdown report; ``figures`` maps a caption to a path relative to the report (``figures/<name>``):
    those of the compare stage (``strategy_bars.png``, ``roc_pr.png``, ``confusion_matrices.png``) and
    ``latent_synthetic.png`` go in their sections, the rest under Pictures. ``summary`` is the preprocess
    stage's record, ``generation`` the generate stage's; ``ratio_rows`` the compare stage's synthetic_ratio.csv;
    ``anomaly``, ``latent`` and ``quality`` the metrics.json of those stages; ``provenance`` from
    :func:`pipeline.reporting.provenance`; ``generators`` the side-by-side measurement of
    ``bench/compare_generators.py``, when there is one."""
    placed = {f.file for f in (STRATEGY_BARS, ROC_PR, CONFUSION_MATRICES, LATENT_SYNTHETIC)}
    names = {Path(path).name for path in figures.values()}
    lines = [
        "# medaug augmentation report",
        "",
        *imbalance_lines(summary),
        "## Verdict",
        "",
        verdict(metrics),
        "",
        f"Means ± standard deviations over {metrics['seeds']} seed(s) [95% bootstrap interval over test images], "
        "evaluated once on the held-out test split (patients never seen by the VAE or any classifier); the epoch "
        "was chosen on the validation split, and so was the decision threshold "
        f"({metrics.get('threshold', 'argmax')}). "
        "A difference is called one only when its 95% paired bootstrap interval excludes zero.",
        "",
    ]
    lines += data_lines(summary, synthetic_rows, generation)
    lines += classifier_lines(metrics, summary.classes, names)
    lines += ratio_lines(ratio_rows or [], metrics["minority_classes"])
    lines += worth_lines(metrics)
    lines += shift_lines(metrics) + site_lines(metrics) + calibration_lines(metrics)
    lines += quality_lines(quality or {}, metrics)
    lines += generators_lines(generators or {})
    if LATENT_SYNTHETIC.file in names:
        lines += picture(LATENT_SYNTHETIC.caption, LATENT_SYNTHETIC.link)
    lines += anomaly_lines(anomaly or {})
    lines += latent_lines(latent or {})
    lines += ["## Pictures", ""]
    for caption, path in figures.items():
        if Path(path).name not in placed:
            lines += picture(caption, path)
    lines += provenance_lines(provenance or {})
    return "\n".join(lines) + "\n"


# the figures the report shows by caption (the others are placed in their sections)
FIGURES = {
    f.caption: f.link
    for f in (
        REAL_VS_SYNTHETIC,
        SYNTHETIC_BY_SAMPLER,
        INTERPOLATION,
        GENERATOR_TRAINING,
        LATENT_SYNTHETIC,
        STRATEGY_BARS,
        ROC_PR,
        CONFUSION_MATRICES,
    )
}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = load_section("paths")
    reports = Path(paths.reports)
    summary = ProcessedSummary.read(paths.processed)
    metrics = read_json(reports / "metrics.json")
    with open(Path(paths.synthetic) / MANIFEST_NAME, encoding="utf-8") as fh:
        synthetic_rows = list(csv.DictReader(fh))
    generation = PoolSummary.read(paths.synthetic)
    with open(reports / "synthetic_ratio.csv", encoding="utf-8") as fh:
        ratio_rows = list(csv.DictReader(fh))
    anomaly, latent = read_json(reports / "anomaly" / "metrics.json"), read_json(reports / "latent" / "metrics.json")
    quality = read_json(reports / "quality" / "metrics.json")
    # a measurement committed with the code (bench/compare_generators.py), not a stage output: shown when present
    comparison = reports / "generators" / "comparison.json"
    generators = read_json(comparison) if comparison.is_file() else None
    prov = provenance(".", load_section("data").root)
    text = render_report(
        summary, synthetic_rows, metrics, FIGURES, generation, ratio_rows, anomaly, latent, quality, prov, generators
    )
    out = reports / "augmentation_report.md"
    with atomic_file(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    page = markdown_to_html(text, reports, "medaug augmentation report")
    with atomic_file(out.with_suffix(".html")) as tmp:
        tmp.write_text(page, encoding="utf-8")
    logger.info("report written to %s and %s", out, out.with_suffix(".html"))


if __name__ == "__main__":
    run_stage(main, "pipeline.report")
