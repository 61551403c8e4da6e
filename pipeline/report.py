"""Stage ``report``: ``augmentation_report.md`` from the files the earlier stages declared.

It reads the preprocessing summary, the synthetic manifest and the classifier metrics; it recomputes
nothing. The verdict compares real + synthetic with real only on balanced accuracy and on the recall
of each minority class, and says plainly when augmentation did not help.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

from pipeline.config import load_section
from pipeline.io.arrays import read_json
from pipeline.io.synthetic import MANIFEST_NAME

__all__ = ["verdict", "render_report", "main"]

logger = logging.getLogger(__name__)

METRICS = ("balanced_accuracy", "macro_f1", "auroc", "accuracy")


def _fmt(summary: dict, key: str) -> str:
    """Mean ± standard deviation over seeds, and the 95% bootstrap interval when the summary has one."""
    text = f"{summary[key]:.3f} ± {summary[key + '_std']:.3f}"
    if f"{key}_ci_low" in summary:
        text += f" [{summary[key + '_ci_low']:.3f}, {summary[key + '_ci_high']:.3f}]"
    return text


def _strategies(metrics: dict) -> list[str]:
    return [name for name, value in metrics.items() if isinstance(value, dict) and "balanced_accuracy" in value]


def _comparison(metrics: dict, baseline: str, augmented: str, what: str) -> str:
    """One sentence: ``augmented`` against ``baseline`` on balanced accuracy, called a difference only when it
    exceeds the larger spread between seeds."""
    base, aug = metrics[baseline], metrics[augmented]
    delta = aug["balanced_accuracy"] - base["balanced_accuracy"]
    noise = max(base["balanced_accuracy_std"], aug["balanced_accuracy_std"])
    if abs(delta) <= noise:
        return (
            f"{what} made **no clear difference**: balanced accuracy changed by {delta:+.3f}, "
            f"within the spread between seeds (±{noise:.3f})."
        )
    if delta > 0:
        return f"{what} **helped**: balanced accuracy rose by {delta:+.3f} (spread between seeds ±{noise:.3f})."
    return f"{what} **did not help**: balanced accuracy fell by {delta:+.3f} (spread between seeds ±{noise:.3f})."


def verdict(metrics: dict, baseline: str = "real_only", augmented: str = "vae") -> str:
    """Plain words: VAE augmentation against ``baseline`` (and against random oversampling when it ran), the
    minority recalls, the intervals, and which strategy came out best."""
    if augmented not in metrics:
        return "No VAE strategy was run (train_classifier.strategies), so there is no verdict on VAE augmentation."
    base, aug = metrics[baseline], metrics[augmented]
    head = _comparison(metrics, baseline, augmented, f"VAE augmentation (against {baseline})")
    if "oversample" in metrics:
        head += " " + _comparison(metrics, "oversample", augmented, "Against random oversampling, VAE augmentation")
    recalls = [
        f"recall of minority class '{c}' {base[f'recall_{c}']:.3f} → {aug[f'recall_{c}']:.3f}"
        for c in metrics["minority_classes"]
    ]
    intervals = [
        f"{name} [{m['balanced_accuracy_ci_low']:.3f}, {m['balanced_accuracy_ci_high']:.3f}]"
        for name, m in ((baseline, base), (augmented, aug))
        if "balanced_accuracy_ci_low" in m
    ]
    ci = f" 95% bootstrap intervals of balanced accuracy: {', '.join(intervals)}." if len(intervals) == 2 else ""
    ranked = sorted(_strategies(metrics), key=lambda name: -metrics[name]["balanced_accuracy"])
    best = (
        f" Best balanced accuracy: **{ranked[0]}** ({metrics[ranked[0]]['balanced_accuracy']:.3f}), "
        f"then {ranked[1]} ({metrics[ranked[1]]['balanced_accuracy']:.3f})."
        if len(ranked) > 2
        else ""
    )
    return head + (" " + "; ".join(recalls) + "." if recalls else "") + ci + best


def _skipped_lines(skipped: list[dict], shown: int = 20) -> list[str]:
    """Where each skipped manifest row is (line and relative path, no reasons: those name full paths and
    stay in summary.json)."""
    if not skipped:
        return ["No input file was skipped."]
    where = [
        f"- labels.csv line {s['labels_csv_line']}: `{s['path']}`" if "path" in s else "- a manifest problem"
        for s in skipped[:shown]
    ]
    more = [f"- ... and {len(skipped) - shown} more"] if len(skipped) > shown else []
    return [
        f"**{len(skipped)} input row(s) were skipped** (reasons in the preprocessing summary.json):",
        "",
        *where,
        *more,
    ]


def _generation_lines(generation: dict) -> list[str]:
    if not generation:
        return []
    lines = [f"VAE mode: {generation['mode']}; filter: {generation['filter']}."]
    if generation["filter"] != "none":
        lines += [
            "Consistency filter (samples kept / dropped): "
            + ", ".join(f"{c}: {f['kept']} / {f['dropped']}" for c, f in generation["filtering"].items() if f["kept"])
            + "."
        ]
    return lines + [""]


def render_report(
    summary: dict, synthetic_rows: list[dict], metrics: dict, figures: dict[str, str], generation: dict | None = None
) -> str:
    """The Markdown report; ``figures`` maps a caption to a path relative to the report; ``generation`` is the
    generate stage's summary.json."""
    classes = summary["classes"]
    lines = [
        "# medaug augmentation report",
        "",
        "## Verdict",
        "",
        verdict(metrics),
        "",
        f"Means ± standard deviations over {metrics['seeds']} seed(s) [95% bootstrap interval over test images], "
        "evaluated once on the held-out test split (patients never seen in training or validation); epoch and "
        f"decision threshold ({metrics.get('threshold', 'argmax')}) chosen on the validation split.",
        "",
        "## Data",
        "",
        f"{summary['n_images']} images from {summary['n_files']} files; modalities: "
        + ", ".join(f"{m} ({n})" for m, n in summary["modalities"].items())
        + ".",
        "",
        "| split | patients | " + " | ".join(classes) + " |",
        "|---|---|" + "---|" * len(classes),
    ]
    for split, info in summary["splits"].items():
        lines.append(f"| {split} | {info['patients']} | " + " | ".join(str(info["images"][c]) for c in classes) + " |")
    lines += ["", f"Splits: {summary.get('split_source', 'patient-level stratified split')}.", ""]
    lines += _skipped_lines(summary.get("skipped", []))
    generated = Counter(r["label"] for r in synthetic_rows)
    samplers = sorted({r["sampler"] for r in synthetic_rows}) or ["none"]
    lines += [
        "",
        "## Synthetic images",
        "",
        "Generated for training only (sampler: "
        + ", ".join(samplers)
        + "): "
        + (", ".join(f"{c}: {generated[c]}" for c in classes if generated[c]) or "none")
        + ".",
        "",
    ]
    lines += _generation_lines(generation or {})
    lines += [
        "## Classifier on the test split",
        "",
        "| strategy | " + " | ".join(METRICS) + " | " + " | ".join(f"recall {c}" for c in classes) + " |",
        "|---|" + "---|" * (len(METRICS) + len(classes)),
    ]
    for strategy in _strategies(metrics):
        cells = [_fmt(metrics[strategy], k) for k in METRICS] + [
            _fmt(metrics[strategy], f"recall_{c}") for c in classes
        ]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += ["", "## Pictures", ""]
    lines += [f"**{caption}**\n\n![{caption}]({path})\n" for caption, path in figures.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = load_section("paths")
    reports = Path(paths.reports)
    summary = read_json(Path(paths.processed) / "summary.json")
    metrics = read_json(reports / "metrics.json")
    with open(Path(paths.synthetic) / MANIFEST_NAME, encoding="utf-8") as fh:
        synthetic_rows = list(csv.DictReader(fh))
    generation = read_json(Path(paths.synthetic) / "summary.json")
    figures = {
        "Real vs synthetic images per class": "figures/real_vs_synthetic.png",
        "Every sampler, per class (8 samples each)": "figures/synthetic_by_sampler.png",
        "Interpolation between two real images of each class": "figures/interpolation.png",
        "VAE training curves": "figures/vae_training.png",
    }
    out = reports / "augmentation_report.md"
    out.write_text(render_report(summary, synthetic_rows, metrics, figures, generation), encoding="utf-8")
    logger.info("report written to %s", out)


if __name__ == "__main__":
    main()
