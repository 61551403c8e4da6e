"""Stage ``report``: ``augmentation_report.md`` from the files the earlier stages declared.

It reads the preprocessing summary, the synthetic manifest, the compare stage's metrics and synthetic-ratio
table, and the quality, anomaly and latent stages' metrics; it recomputes nothing. The verdict compares real +
synthetic with real only and with random oversampling on balanced accuracy (paired bootstrap intervals) and on
the recall of each minority class, and says plainly when augmentation did not help.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

from pipeline.config import load_section
from pipeline.io.arrays import read_json
from pipeline.io.atomic import atomic_file
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


def _comparison(metrics: dict, baseline: str, strategy: str, what: str) -> str:
    """One sentence: ``strategy`` against ``baseline`` on balanced accuracy, called a difference only when the 95%
    paired bootstrap interval of the difference excludes zero; the seeds' paired t-test alongside."""
    d = metrics[strategy][f"vs_{baseline}"]["balanced_accuracy"]
    detail = (
        f"{d['difference']:+.3f} [95% CI {d['ci_low']:+.3f}, {d['ci_high']:+.3f}], "
        f"paired bootstrap p = {d['p_bootstrap']:.3f}; over seeds p = {_p(d['p_seeds'])}"
    )
    if d["ci_low"] > 0:
        return f"{what} **helped**: balanced accuracy {detail}."
    if d["ci_high"] < 0:
        return f"{what} **did not help, it hurt**: balanced accuracy {detail}."
    return f"{what} made **no clear difference**: balanced accuracy {detail}."


def _p(p: float) -> str:
    return "n/a" if p != p else f"{p:.3f}"  # NaN: fewer than two seeds or identical results


def verdict(metrics: dict, baseline: str = "real_only", augmented: str = "vae") -> str:
    """Plain words: VAE augmentation against ``baseline`` and against random oversampling when it ran, the
    minority recalls, and which strategy came out best on balanced accuracy."""
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
    ranked = sorted(_strategies(metrics), key=lambda name: -metrics[name]["balanced_accuracy"])
    best = (
        f" Best balanced accuracy: **{ranked[0]}** ({metrics[ranked[0]]['balanced_accuracy']:.3f}), "
        f"then {ranked[1]} ({metrics[ranked[1]]['balanced_accuracy']:.3f})."
        if len(ranked) > 2
        else ""
    )
    return head + (" " + "; ".join(recalls) + "." if recalls else "") + best


def _difference_lines(metrics: dict) -> list[str]:
    """A table of each strategy's paired difference to each baseline, per metric."""
    keys = ["balanced_accuracy", "macro_f1", "auroc"] + [f"recall_{c}" for c in metrics["minority_classes"]]
    lines = [
        "Difference to the baseline (mean over seeds) [95% paired bootstrap interval over test images] "
        "(p: paired bootstrap / paired t-test over seeds):",
        "",
        "| strategy | vs | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for name in _strategies(metrics):
        for base in ("real_only", "oversample"):
            if f"vs_{base}" not in metrics[name]:
                continue
            cells = [metrics[name][f"vs_{base}"][k] for k in keys]
            text = [
                f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                f"(p {_p(d['p_bootstrap'])} / {_p(d['p_seeds'])})"
                for d in cells
            ]
            lines.append(f"| {name} | {base} | " + " | ".join(text) + " |")
    return lines + [""]


def _ratio_lines(rows: list[dict], minorities: list[str]) -> list[str]:
    if len(rows) < 2:
        return []
    keys = ["balanced_accuracy"] + [f"recall_{c}" for c in minorities]
    lines = [
        "## Synthetic-ratio ablation",
        "",
        "The vae strategy with more or fewer synthetic images (ratio: synthetic images per minority class as a "
        "multiple of its gap to the majority; 0 is real_only).",
        "",
        "| ratio | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for row in rows:
        cells = [
            f"{float(row[k]):.3f} [{float(row[k + '_ci_low']):.3f}, {float(row[k + '_ci_high']):.3f}]" for k in keys
        ]
        lines.append(f"| {float(row['ratio']):g} | " + " | ".join(cells) + " |")
    return lines + ["", "![synthetic-ratio curve](figures/synthetic_ratio.png)", ""]


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


def _quality_lines(quality: dict, metrics: dict) -> list[str]:
    if not quality:
        return []
    lines = [
        "## Synthetic data quality",
        "",
        "In the feature space of a classifier trained here on the real training split, against the real training "
        "images: Fréchet distance (FD), and precision/density (synthetic images on the real manifold) and "
        "recall/coverage (the real manifold covered; Naeem et al. 2020). The yardstick row is the same for held-out "
        "real images (validation + test patients): what new real patients score.",
        "",
        "| class | images | FD | precision | recall | density | coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("fd", "precision", "recall", "density", "coverage")
    for name, q in quality["per_class"].items():
        synthetic = " | ".join(f"{q[k]:.3f}" for k in keys)
        held_out = " | ".join(f"{q['held_out_' + k]:.3f}" for k in keys)
        lines.append(f"| {name}: synthetic | {q['synthetic_images']} | {synthetic} |")
        lines.append(f"| {name}: held-out real (yardstick) | {q['held_out_images']} | {held_out} |")
    if "synthetic_only" in metrics:
        lines += [
            "",
            f"Train on synthetic, test on real (synthetic_only): balanced accuracy "
            f"{_fmt(metrics['synthetic_only'], 'balanced_accuracy')}.",
        ]
    memo = quality["memorisation"]
    lines += [
        "",
        f"Memorisation audit: a synthetic image nearer its nearest training image than the "
        f"{quality['copy_quantile']:.0%} quantile of held-out real images' distances is flagged as a near-copy. "
        + "; ".join(
            f"{space}: {m['flagged']} flagged ({m['flagged_fraction']:.1%}), median distance synthetic "
            f"{m['median_synthetic']:.4g} vs held-out real {m['median_held_out']:.4g}"
            for space, m in memo.items()
        )
        + ".",
        "",
        "![memorisation audit](figures/memorisation.png)",
        "",
        "![closest pairs](figures/closest_pairs.png)",
        "",
    ]
    return lines


def _anomaly_lines(anomaly: dict) -> list[str]:
    if not anomaly:
        return []
    per_class = [f"{k.removeprefix('auroc_')} {v:.3f}" for k, v in anomaly.items() if k.startswith("auroc_")]
    by_score = anomaly["by_score"]
    return [
        "## Anomaly detection",
        "",
        f"A VAE trained on the '{anomaly['normal_class']}' class alone scores every test image by how badly it "
        f"reconstructs it ({anomaly['score']} score; threshold chosen on the validation split). Abnormal vs normal "
        f"on the test split: AUROC **{anomaly['auroc']:.3f}**, AUPRC {anomaly['auprc']:.3f} (prevalence "
        f"{anomaly['prevalence']:.3f}); at the threshold, sensitivity {anomaly['sensitivity']:.3f} and specificity "
        f"{anomaly['specificity']:.3f}. AUROC per class against normal: {', '.join(per_class)}. AUROC by score: "
        + ", ".join(f"{name} {v['auroc']:.3f}" for name, v in by_score.items())
        + ".",
        "",
        "![anomaly scores](figures/anomaly_scores.png)",
        "",
        "Highest-scoring test images, what the normal-class VAE makes of them, and where they differ:",
        "",
        "![anomaly maps](figures/anomaly_maps.png)",
        "",
    ]


def _latent_lines(latent: dict) -> list[str]:
    if not latent:
        return []
    lines = [
        "## The VAE as dimensionality reduction",
        "",
        "Unconditional VAEs (never shown the label) against PCA and ICA with as many components; test split.",
        "",
        "| components | MSE VAE | MSE PCA | MSE ICA | logistic regression BA on VAE means | ... on PCA |",
        "|---|---|---|---|---|---|",
    ]
    ba = {(r["components"], r["features"]): r["balanced_accuracy"] for r in latent["classification"]}
    for r in latent["reduction"]:
        n = r["components"]
        lines.append(
            f"| {n} | {r['vae_mse']:.5f} | {r['pca_mse']:.5f} | {r['ica_mse']:.5f} | {ba[n, 'vae']:.3f} | "
            f"{ba[n, 'pca']:.3f} |"
        )
    lines += ["", "Denoising (largest VAE; PSNR in dB and SSIM against the clean test images):", ""]
    lines += ["| noise sd | PSNR noisy | PSNR VAE | SSIM noisy | SSIM VAE |", "|---|---|---|---|---|"]
    for r in latent["denoising"]:
        lines.append(
            f"| {r['noise_sd']:g} | {r['psnr_noisy']:.2f} | {r['psnr_denoised']:.2f} | {r['ssim_noisy']:.3f} | "
            f"{r['ssim_denoised']:.3f} |"
        )
    pictures = {
        "reconstruction error against components": "latent_reduction.png",
        "test latents in 2D, by class": "latent_projection.png",
        "interpolation between real test images, within and across classes": "latent_interpolation.png",
        "traversal of the latent dimensions with the highest KL": "latent_traversal.png",
        "denoising: noisy test images and the VAE's reconstructions": "latent_denoising.png",
    }
    lines += [""] + [f"**{caption}**\n\n![{caption}](figures/{name})\n" for caption, name in pictures.items()]
    return lines


def render_report(
    summary: dict,
    synthetic_rows: list[dict],
    metrics: dict,
    figures: dict[str, str],
    generation: dict | None = None,
    ratio_rows: list[dict] | None = None,
    anomaly: dict | None = None,
    latent: dict | None = None,
    quality: dict | None = None,
) -> str:
    """The Markdown report; ``figures`` maps a caption to a path relative to the report; ``generation`` is the
    generate stage's summary.json; ``ratio_rows`` the compare stage's synthetic_ratio.csv; ``anomaly`` and
    ``latent`` and ``quality`` the metrics.json of those stages."""
    classes = summary["classes"]
    lines = [
        "# medaug augmentation report",
        "",
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
        "Generated from the training split only, as a pool the strategies draw from (sampler: "
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
        "| strategy | "
        + " | ".join(METRICS)
        + " | "
        + " | ".join(f"recall {c}" + (" (minority)" if c in metrics["minority_classes"] else "") for c in classes)
        + " |",
        "|---|" + "---|" * (len(METRICS) + len(classes)),
    ]
    for strategy in _strategies(metrics):
        cells = [_fmt(metrics[strategy], k) for k in METRICS] + [
            _fmt(metrics[strategy], f"recall_{c}") for c in classes
        ]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += [""] + _difference_lines(metrics)
    lines += _ratio_lines(ratio_rows or [], metrics["minority_classes"])
    lines += _quality_lines(quality or {}, metrics)
    lines += _anomaly_lines(anomaly or {})
    lines += _latent_lines(latent or {})
    lines += ["## Pictures", ""]
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
    with open(reports / "synthetic_ratio.csv", encoding="utf-8") as fh:
        ratio_rows = list(csv.DictReader(fh))
    figures = {
        "Real vs synthetic images per class": "figures/real_vs_synthetic.png",
        "Every sampler, per class (8 samples each)": "figures/synthetic_by_sampler.png",
        "Interpolation between two real images of each class": "figures/interpolation.png",
        "VAE training curves": "figures/vae_training.png",
    }
    out = reports / "augmentation_report.md"
    anomaly, latent = read_json(reports / "anomaly" / "metrics.json"), read_json(reports / "latent" / "metrics.json")
    quality = read_json(reports / "quality" / "metrics.json")
    text = render_report(summary, synthetic_rows, metrics, figures, generation, ratio_rows, anomaly, latent, quality)
    with atomic_file(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    logger.info("report written to %s", out)


if __name__ == "__main__":
    main()
