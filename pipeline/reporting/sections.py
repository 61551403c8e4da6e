"""Markdown sections of the augmentation report, each from the metrics file of one stage; each returns a list of
lines (empty when the stage's results are absent)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from pipeline.reporting.figures import (
    ANOMALY_MAPS,
    ANOMALY_SCORES,
    CLOSEST_PAIRS,
    CONFUSION_MATRICES,
    GENERATORS,
    LATENT_DENOISING,
    LATENT_INTERPOLATION,
    LATENT_PROJECTION,
    LATENT_REDUCTION,
    LATENT_TRAVERSAL,
    LEARNING_CURVE,
    MEMORISATION,
    RELIABILITY,
    ROC_PR,
    SHIFT_STRESS,
    SPECTRA,
    SPLIT_TWINS,
    STRATEGY_BARS,
    SYNTHETIC_RATIO,
    Figure,
)
from pipeline.shifts import SHIFTS as SHIFT_NAMES

if TYPE_CHECKING:
    from pipeline.io.records import PoolSummary, ProcessedSummary

__all__ = [
    "METRICS",
    "fmt",
    "strategies",
    "p_value",
    "difference_lines",
    "ratio_lines",
    "skipped_lines",
    "generation_lines",
    "quality_lines",
    "generators_lines",
    "anomaly_lines",
    "latent_lines",
    "twin_lines",
    "data_lines",
    "classifier_lines",
    "picture",
    "provenance_lines",
]

METRICS = ("balanced_accuracy", "macro_f1", "auroc", "worst_recall", "accuracy")


def picture(caption: str, path: str) -> list[str]:
    """A captioned picture; ``path`` relative to the report."""
    return [f"**{caption}**", "", f"![{caption}]({path})", ""]


def _image(figure: Figure) -> str:
    """A figure of :mod:`pipeline.reporting.figures` as a Markdown image, its caption as the alternative text."""
    return f"![{figure.caption}]({figure.link})"


def fmt(summary: dict, key: str) -> str:
    """Mean ± standard deviation over seeds, and the 95% bootstrap interval when the summary has one."""
    text = f"{summary[key]:.3f} ± {summary[key + '_std']:.3f}"
    if f"{key}_ci_low" in summary:
        text += f" [{summary[key + '_ci_low']:.3f}, {summary[key + '_ci_high']:.3f}]"
    return text


def strategies(metrics: dict) -> list[str]:
    return [name for name, value in metrics.items() if isinstance(value, dict) and "balanced_accuracy" in value]


def p_value(p: float | None) -> str:
    """``0.012``, ``<0.001`` (a bootstrap p of 0 only means none of the resamples crossed zero), or ``n/a`` for
    None or NaN (fewer than two seeds, or identical results)."""
    if p is None or p != p:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def difference_lines(metrics: dict) -> list[str]:
    """A table of each strategy's paired difference to each baseline, per metric."""
    keys = ["balanced_accuracy", "macro_f1", "auroc"] + [f"recall_{c}" for c in metrics["minority_classes"]]
    lines = [
        "Difference to the baseline (mean over seeds) [95% paired bootstrap interval over test images] "
        "(p: paired bootstrap / paired t-test over seeds):",
        "",
        "| strategy | vs | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for name in strategies(metrics):
        for base in ("real_only", "oversample"):
            if f"vs_{base}" not in metrics[name]:
                continue
            cells = [metrics[name][f"vs_{base}"][k] for k in keys]
            text = [
                f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                f"(p {p_value(d['p_bootstrap'])} / {p_value(d['p_seeds'])})"
                for d in cells
            ]
            lines.append(f"| {name} | {base} | " + " | ".join(text) + " |")
    return lines + [""]


def ratio_lines(rows: list[dict], minorities: list[str]) -> list[str]:
    if len(rows) < 2:
        return []
    keys = ["balanced_accuracy"] + [f"recall_{c}" for c in minorities]
    lines = [
        "## Synthetic-ratio ablation",
        "",
        "The vae strategy with more or fewer synthetic images (ratio: synthetic images per minority class as a "
        "multiple of its gap to the majority, and with train_classifier.synthetic_all_classes every class's shared "
        "synthetic images scaled alike; 0 is real_only).",
        "",
        "| ratio | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for row in rows:
        cells = [
            f"{float(row[k]):.3f} [{float(row[k + '_ci_low']):.3f}, {float(row[k + '_ci_high']):.3f}]" for k in keys
        ]
        lines.append(f"| {float(row['ratio']):g} | " + " | ".join(cells) + " |")
    return lines + ["", _image(SYNTHETIC_RATIO), ""]


def skipped_lines(skipped: list[dict], shown: int = 20) -> list[str]:
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


def generation_lines(generation: PoolSummary | None) -> list[str]:
    if generation is None:
        return []
    kind, filters = generation.generator, generation.filter
    lines = [
        f"Generator: {kind} ({generation.mode}); sampler: {generation.sampler}; "
        f"filters: {', '.join(filters) or 'none'}."
    ]
    shown = {c: f for c, f in generation.filtering.items() if f.get("candidates")}
    if filters and shown:
        applied = list(next(iter(shown.values()))["filters"])  # in the order they were applied
        lines += [
            "",
            "Filtering of the candidates drawn for the pool (each filter tests what the filters before it kept: "
            "dropped of tested, share passed; a sample is kept when every filter keeps it, until the pool is full):",
            "",
            "| Class | Candidates | "
            + " | ".join(f"{name}: dropped" for name in applied)
            + " | Kept | Acceptance rate |",
            "|---|---|" + "---|" * len(applied) + "---|---|",
        ]
        for c, f in shown.items():
            dropped = [f["filters"][name] for name in applied]
            lines.append(
                f"| {c} | {f['candidates']} | "
                + " | ".join(f"{d['dropped']} of {d['tested']} ({_share(d['acceptance_rate'])})" for d in dropped)
                + f" | {f['kept']} | {_share(f['acceptance_rate'])} |"
            )
        balls = {
            c: f["filters"]["manifold"] for c, f in shown.items() if "radius_median" in f["filters"].get("manifold", {})
        }
        if balls:
            lines += [
                "",
                "Manifold filter: median radius of the real training images' balls in the real-only classifier's "
                "features: "
                + ", ".join(f"{c} {m['radius_median']:.3g} (k = {m['k']})" for c, m in balls.items())
                + ".",
            ]
    return lines + [""]


def _share(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.0%}"


def _quality_words(name: str, q: dict) -> str:
    """One sentence: how the class's synthetic images compare with the held-out real yardstick, on fidelity (FD,
    precision) and on diversity (recall). A rule of thumb (within 1.5 times the yardstick's FD, at least half its
    precision and recall), stated with the numbers it used."""
    fidelity = (
        f"class fidelity {q['fidelity']:.2f} vs {q['held_out_fidelity']:.2f}; "
        if "fidelity" in q and "held_out_fidelity" in q
        else ""
    )
    if "too_few" in q:
        return f"{name}: {fidelity}too few images to compare distributions ({q['too_few']})."
    numbers = (
        f"{fidelity}FD {q['fd']:.3g} vs {q['held_out_fd']:.3g}; precision {q['precision']:.2f} vs "
        f"{q['held_out_precision']:.2f}; recall {q['recall']:.2f} vs {q['held_out_recall']:.2f}"
    )
    faithful = q["fd"] <= 1.5 * q["held_out_fd"] and q["precision"] >= 0.5 * q["held_out_precision"]
    if faithful and q["recall"] >= 0.5 * q["held_out_recall"]:
        return (
            f"{name}: the synthetic images are about as close to the training images, and as varied, as new real "
            f"patients ({numbers})."
        )
    if faithful:
        return (
            f"{name}: the synthetic images look like real ones but **cover only part of the real variety** "
            f"({numbers}): too little diversity to stand in for more patients."
        )
    return (
        f"{name}: the synthetic images are **further from the real ones than new real patients are** ({numbers}): "
        "the feature network tells them apart."
    )


def _sampler_lines(per_sampler: dict, pool: str | None) -> list[str]:
    """Per class, one row per sampler: fresh samples' FD and PRDC (lower FD and higher precision/recall are
    closer to the real images); the pool's sampler is marked."""
    if not per_sampler:
        return []
    lines = [
        "",
        "Per sampler (fresh samples, as many per class as its training images; the pool's sampler marked *):",
        "",
        "| class | sampler | images | class fidelity | FD | precision | recall | density | coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    classes = list(dict.fromkeys(c for by_class in per_sampler.values() for c in by_class))
    for name in classes:
        for sampler, by_class in per_sampler.items():
            if name in by_class:
                q = by_class[name]
                keys = ("fidelity", "fd", "precision", "recall", "density", "coverage")
                cells = " | ".join(f"{q[k]:.3f}" if k in q else "–" for k in keys)
                mark = "*" if sampler == pool else ""
                lines.append(f"| {name} | {sampler}{mark} | {q['images']} | {cells} |")
    return lines


def _spectrum_lines(per_class: dict) -> list[str]:
    """The spectral artifact check in words, and its picture."""
    measured = {name: q for name, q in per_class.items() if "spectral" in q}
    if not measured:
        return []
    words = []
    for name, q in measured.items():
        verdict = (
            "within"
            if q["spectral"] <= q["held_out_spectral"]
            else f"{q['spectral'] / max(q['held_out_spectral'], 1e-12):.1f}x"
        )
        words.append(f"{name} {q['spectral']:.3f} vs {q['held_out_spectral']:.3f} ({verdict} the real-vs-real spread)")
    return [
        "",
        "Spectrum (Durall et al. 2020): the mean absolute difference, in log10 power averaged over spatial "
        "frequencies, between the azimuthally averaged power spectra of synthetic and of held-out real images, "
        "beside the same between two halves of the held-out real images (the yardstick): "
        + "; ".join(words)
        + ". A checkerboard from up-convolutions shows as a synthetic curve above the real one at the highest "
        "frequencies, blur as one below.",
        "",
        _image(SPECTRA),
    ]


def quality_lines(quality: dict, metrics: dict) -> list[str]:
    if not quality:
        return []
    lines = [
        "## Synthetic data quality",
        "",
        "Class fidelity: the share of a class's synthetic images that a classifier trained here on the real training "
        "split calls that class (at the threshold it chose on validation), beside the share of real test images of "
        "the class it calls so: an image that shows its class's finding is called that class. In that classifier's "
        "feature space, against the real training images: Fréchet distance (FD), and precision/density (synthetic "
        "images on the real manifold) and recall/coverage (the real manifold covered; Naeem et al. 2020). The "
        "yardstick row is the same for held-out "
        "real images (validation + test patients, near-twins of training images left out): what new real patients "
        "score. Both rows of a class compare as "
        "many images (a random subset of the larger set), since FD and coverage move with the number compared.",
        "",
        "| class | images compared | class fidelity | FD | precision | recall | density | coverage | spectrum |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = ("fidelity", "fd", "precision", "recall", "density", "coverage", "spectral")
    for name, q in quality["per_class"].items():
        synthetic = " | ".join(f"{q[k]:.3f}" if k in q else "–" for k in keys)
        held_out = " | ".join(f"{q['held_out_' + k]:.3f}" if "held_out_" + k in q else "–" for k in keys)
        n = q.get("compared_images", q["synthetic_images"])
        lines.append(f"| {name}: synthetic | {n} of {q['synthetic_images']} | {synthetic} |")
        lines.append(f"| {name}: held-out real (yardstick) | {n} of {q['held_out_images']} | {held_out} |")
    lines += ["", *[f"- {_quality_words(name, q)}" for name, q in quality["per_class"].items()]]
    lines += _spectrum_lines(quality["per_class"])
    lines += _sampler_lines(quality.get("per_sampler", {}), quality.get("pool_sampler"))
    if "synthetic_only" in metrics:
        lines += [
            "",
            f"Train on synthetic, test on real (synthetic_only): balanced accuracy "
            f"{fmt(metrics['synthetic_only'], 'balanced_accuracy')}.",
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
        _image(MEMORISATION),
        "",
        "**The synthetic images closest to a training image, above their nearest training images**",
        "",
        _image(CLOSEST_PAIRS),
        "",
    ]
    return lines


def _interval(d: dict) -> str:
    return f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def generators_lines(comparison: dict) -> list[str]:
    """The generators measured side by side by ``bench/compare_generators.py`` (``reports/generators/
    comparison.json``): per candidate, its minority classes' class fidelity and FD against the held-out yardstick,
    the vae strategy's balanced accuracy with paired differences, and the generator's training time; then their
    pictures. A measurement of the committed candidates, not of this run."""
    candidates = comparison.get("candidates", {})
    if not candidates:
        return []
    lines = [
        "## Generators",
        "",
        f"Measured by `{comparison['command']}` on {comparison['data_root']} ({comparison['measured_utc']} UTC, "
        f"classifier seeds {', '.join(map(str, comparison['seeds']))}): each generator trained, sampled and judged "
        "by the pipeline itself, then the vae strategy (real + synthetic) against real_only and random "
        "oversampling. Differences are paired, with 95% bootstrap intervals over test images.",
        "",
        "| generator | sampler | class | class fidelity (held-out real) | FD (held-out real) | precision | "
        "vae BA | vs real_only | vs oversample | training |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in candidates.items():
        v = c["vae_strategy"]
        for cls in c["minority_classes"]:
            q = c["per_class"][cls]
            seconds = c.get("train_generator_seconds")
            lines.append(
                f"| {name} | {c['pool_sampler']} | {cls} | {q['fidelity']:.2f} ({q['held_out_fidelity']:.2f}) | "
                f"{q['fd']:.1f} ({q['held_out_fd']:.1f}) | {q['precision']:.2f} | {v['balanced_accuracy']:.3f} | "
                f"{_interval(v['vs_real_only'])} | {_interval(v['vs_oversample'])} | "
                f"{'–' if seconds is None else f'{seconds:.0f} s'} |"
            )
    lines += ["", _image(GENERATORS), ""]
    return lines


def anomaly_lines(anomaly: dict) -> list[str]:
    if not anomaly:
        return []
    per_class = [f"{k.removeprefix('auroc_')} {v:.3f}" for k, v in anomaly.items() if k.startswith("auroc_")]
    by_score = anomaly["by_score"]
    return [
        "## Anomaly detection",
        "",
        f"A VAE trained on the '{anomaly['normal_class']}' class alone (the normal class: "
        + ("anomaly.normal_class" if anomaly.get("normal_class_source") == "params" else "the largest training class")
        + f"; every other class, {', '.join(k.removeprefix('auroc_') for k in anomaly if k.startswith('auroc_'))}, "
        "counts as abnormal) scores every test image by how badly it "
        f"reconstructs it ({anomaly['score']} score; threshold chosen on the validation split). Abnormal vs normal "
        f"on the test split: AUROC **{anomaly['auroc']:.3f}**, AUPRC {anomaly['auprc']:.3f} (prevalence "
        f"{anomaly['prevalence']:.3f}); at the threshold, sensitivity {anomaly['sensitivity']:.3f} and specificity "
        f"{anomaly['specificity']:.3f}. AUROC per class against normal: {', '.join(per_class)}. AUROC by score: "
        + ", ".join(f"{name} {v['auroc']:.3f}" for name, v in by_score.items())
        + ".",
        "",
        _image(ANOMALY_SCORES),
        "",
        "Highest-scoring test images, what the normal-class VAE makes of them, and where they differ:",
        "",
        _image(ANOMALY_MAPS),
        "",
    ]


def latent_lines(latent: dict) -> list[str]:
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
    for n, r in sorted(latent["reduction"].items(), key=lambda item: int(item[0])):  # keyed by latent size
        ba = {name: scores["balanced_accuracy"] for name, scores in latent["classification"][n].items()}
        lines.append(
            f"| {n} | {r['vae_mse']:.5f} | {r['pca_mse']:.5f} | {r['ica_mse']:.5f} | {ba['vae']:.3f} | "
            f"{ba['pca']:.3f} |"
        )
    lines += ["", "Denoising (largest VAE; PSNR in dB and SSIM against the clean test images):", ""]
    lines += ["| noise sd | PSNR noisy | PSNR VAE | SSIM noisy | SSIM VAE |", "|---|---|---|---|---|"]
    for level, r in sorted(latent["denoising"].items(), key=lambda item: float(item[0])):
        lines.append(
            f"| {float(level):g} | {r['psnr_noisy']:.2f} | {r['psnr_denoised']:.2f} | {r['ssim_noisy']:.3f} | "
            f"{r['ssim_denoised']:.3f} |"
        )
    pictures = (LATENT_REDUCTION, LATENT_PROJECTION, LATENT_INTERPOLATION, LATENT_TRAVERSAL, LATENT_DENOISING)
    lines += [""] + [f"**{f.caption}**\n\n{_image(f)}\n" for f in pictures]
    return lines


def twin_lines(twins: dict) -> list[str]:
    """The near-duplicate check across splits (preprocess's ``near_twins``): a warning with counts when held-out
    images have a near-identical training image, one line when none has; labels.csv lines stay in summary.json."""
    if not twins.get("threshold_rms"):
        return []
    held = twins["held_out_images"]
    counts = ", ".join(f"{twins['twins'][name]} of {held[name]} {name}" for name in held)
    if not twins["pairs"]:
        return [
            f"Near-duplicates across splits: none (no validation or test image is within {twins['threshold_rms']:.3g} "
            "RMS of a training image, a quarter of the typical distance).",
            "",
        ]
    return [
        f"**Possible leak across splits: {counts} images have a near-identical twin in the training split** "
        f"({twins['rule']}: {twins['threshold_rms']:.3g}; {twins['different_label']} of the pairs carry different "
        "labels). The same image under two names, or images of one patient or lesion without a patient_id in "
        "labels.csv, pass a patient-level split; if these are such, every test score here is optimistic. Their "
        "labels.csv lines are in data/processed/summary.json (near_twins).",
        "",
        _image(SPLIT_TWINS),
        "",
    ]


def flat_lines(flat: dict) -> list[str]:
    """Images constant along an axis (preprocess's ``flat_images``): a warning with counts when there are any,
    nothing otherwise (a clean dataset's report reads as before)."""
    counts = flat.get("images", {})
    if not any(counts.values()):
        return []
    every = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    return [
        f"**{sum(counts.values())} images are constant along an axis** ({every}; {flat['rule']}): stripes or blank "
        "images, usually from a broken export or resize. They show nothing of their class and were kept; check "
        f"them (labels.csv lines {', '.join(map(str, flat['labels_csv_lines'][:10]))}"
        + (", ..." if sum(counts.values()) > 10 else "")
        + "; all counted in data/processed/summary.json, flat_images) and remove them from labels.csv if broken.",
        "",
    ]


def _channel_text(channels: dict | None) -> str:
    """What preprocess did with colour, said when the data is colour or some images were converted (a grey
    dataset's report reads as before)."""
    if not channels or (channels["used"] == 1 and not channels["converted"]):
        return ""
    text = " Images are colour (RGB)." if channels["used"] == 3 else " Images are grey."
    converted = {
        "1 to 3": "grey images repeated into R, G and B",
        "3 to 1": "colour images converted to grey (ITU-R BT.601 luma)",
    }
    done = [f"{n} {converted.get(change, change)}" for change, n in channels["converted"].items()]
    return text + (f" preprocess.channels {channels['setting']}: " + "; ".join(done) + "." if done else "")


def imbalance_lines(summary: ProcessedSummary) -> list[str]:
    """The imbalance in one sentence, for the top of the report: each class's training images, largest first, and
    the majority's images per image of each smaller class."""
    train = summary.splits.get("train", {}).get("images")
    if not train:
        return []
    order = sorted(train, key=lambda c: (-train[c], c))
    majority = order[0]
    ratios = [f"{c} 1:{train[majority] / train[c]:.3g}" for c in order[1:] if 0 < train[c] < train[majority]]
    return [
        f"**Imbalance.** Training images per class: {', '.join(f'{c} {train[c]}' for c in order)}. Majority: "
        f"{majority}" + (f"; majority : minority = {', '.join(ratios)}." if ratios else "; the classes are balanced."),
        "",
    ]


def data_lines(summary: ProcessedSummary, synthetic_rows: list[dict], generation: PoolSummary | None) -> list[str]:
    """Counts per class and split (patients are counted, never named), modalities, skipped rows, and the
    synthetic pool."""
    classes = summary.classes
    lines = [
        "## Data",
        "",
        f"{summary.n_images} images from {summary.n_files} files; modalities: "
        + ", ".join(f"{m} ({n})" for m, n in summary.modalities.items())
        + "."
        + _channel_text(summary.channels),
        "",
        "| split | patients | " + " | ".join(classes) + " |",
        "|---|---|" + "---|" * len(classes),
    ]
    for split, info in summary.splits.items():
        lines.append(f"| {split} | {info['patients']} | " + " | ".join(str(info["images"][c]) for c in classes) + " |")
    lines += ["", f"Splits: {summary.split_source}.", ""]
    if summary.sites:  # labels.csv's site column, by pseudonym
        per_split = "; ".join(
            f"{split} " + ", ".join(f"{site} {n}" for site, n in sorted(found.items()))
            for split, found in summary.sites.items()
        )
        lines += [f"Images per site (pseudonyms): {per_split}.", ""]
    lines += twin_lines(summary.near_twins) + flat_lines(summary.flat_images)
    lines += skipped_lines(summary.skipped)
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
    return lines + generation_lines(generation)


def classifier_lines(metrics: dict, classes: list[str], figures: set[str]) -> list[str]:
    """The metrics table, the paired differences and, for those in ``figures`` (names under ``figures/``), the
    bars, ROC/PR curves and confusion matrices of the compare stage."""
    shown = [k for k in METRICS if all(k in metrics[s] for s in strategies(metrics))]
    lines = [
        "## Classifier on the test split",
        "",
        "| strategy | "
        + " | ".join(shown)
        + " | "
        + " | ".join(f"recall {c}" + (" (minority)" if c in metrics["minority_classes"] else "") for c in classes)
        + " |",
        "|---|" + "---|" * (len(shown) + len(classes)),
    ]
    for strategy in strategies(metrics):
        cells = [fmt(metrics[strategy], k) for k in shown] + [fmt(metrics[strategy], f"recall_{c}") for c in classes]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += [""]
    if STRATEGY_BARS.file in figures:
        lines += picture(STRATEGY_BARS.caption, STRATEGY_BARS.link)
    lines += difference_lines(metrics)
    target = metrics.get("curves_class", "the smallest class")
    if ROC_PR.file in figures:
        lines += picture(ROC_PR.caption.format(target=target), ROC_PR.link)
    if CONFUSION_MATRICES.file in figures:
        lines += picture(CONFUSION_MATRICES.caption, CONFUSION_MATRICES.link)
    return lines


def _stage_table(stages: list[dict]) -> list[str]:
    lines = ["| stage | wall time | device | finished (UTC) |", "|---|---|---|---|"]
    for s in stages:
        if s["seconds"] is None:
            lines.append(f"| {s['stage']} | not run here (outputs from DVC's cache or git) | | |")
        else:
            lines.append(f"| {s['stage']} | {s['seconds']:.0f} s | {s['device']} | {s['finished_utc']} |")
    timed = [s["seconds"] for s in stages if s["seconds"] is not None]
    total = f"{sum(timed) / 60:.1f} min over {len(timed)} of {len(stages)} stages" if timed else "no stage timed"
    return lines + ["", f"Total recorded run time: {total} (report stage excluded)."]


def provenance_lines(prov: dict) -> list[str]:
    """Commit, pipeline and dataset fingerprints, versions, device, stage times and the parameters."""
    if not prov:
        return []
    git = prov["git"]
    if git is None:
        code = "not a git checkout"
    else:
        code = f"commit `{git['commit']}`"
        if git["uncommitted"]:
            code += " **with uncommitted changes** to " + ", ".join(f"`{f}`" for f in git["uncommitted"])
    data = prov["dataset"]
    dataset = (
        f"`{data.get('md5')}` ({data.get('nfiles', '?')} files, {data.get('size', 0) / 2**20:.1f} MiB; DVC's "
        "content hash of data.root)"
        if data
        else "not recorded (preprocess has not run under DVC)"
    )
    lines = [
        "## Provenance",
        "",
        f"- Report generated: {prov['generated_utc']}",
        f"- Code: {code}",
        f"- Pipeline state (SHA-256 of every other stage's dvc.lock entry): `{prov['lock_sha256'] or 'no dvc.lock'}`",
        f"- Dataset fingerprint: {dataset}",
        f"- Device running the report: {prov['device']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        "",
        "Stage run times, as last recorded on this machine (.medaug/runs):",
        "",
        *_stage_table(prov["stages"]),
        "",
        "<details><summary>Parameters (params.yaml)</summary>",
        "",
        "```yaml",
        prov["params"].rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return lines


def _worth_cell(w: dict) -> str:
    """One remedy's worth on one score (compare's ``worth``, :class:`pipeline.worth.WorthN` as JSON), short."""
    if not w["helps"]:
        return "does not help"
    if w["unbounded"]:
        return "more than real_only reaches"
    high = "∞" if w["ci_high"] is None else f"{w['ci_high']:.0f}"
    return f"+{w['worth']:.0f} [{w['ci_low']:.0f}, {high}]" + (" (extrapolated)" if w["extrapolated"] else "")


def worth_lines(metrics: dict) -> list[str]:
    """real_only's minority learning curve and what each remedy's gain is worth in real minority images (compare's
    ``learning_curve`` and ``worth``), a table, sentences for the remedies that help, and the figure."""
    worth, points = metrics.get("worth"), metrics.get("learning_curve", [])
    if not worth:
        return []
    curve = ", ".join(f"{p['minority_images']} images {p['balanced_accuracy']:.3f}" for p in points)
    scores = list(next(iter(worth.values())))
    lines = [
        "## What the gains are worth in real images",
        "",
        "real_only was also trained on seeded shares of each minority class's training patients "
        "(train_classifier.learning_curve): its test balanced accuracy against real minority training images is "
        f"{curve}. "
        "Each remedy's score is read off that curve: how many more real minority images real_only would need to "
        "score as well. Beyond the largest point the curve goes on in a straight line in log images, so those numbers "
        "are extrapolations and marked so; a remedy whose paired interval against real_only reaches zero does not "
        "help and gets no number. 95% bootstrap intervals over test images and seeds.",
        "",
        "| remedy | " + " | ".join(s.replace("_", " ") for s in scores) + " |",
        "|---|" + "---|" * len(scores),
    ]
    for name in (n for n in strategies(metrics) if n in worth):
        lines.append(f"| {name} | " + " | ".join(_worth_cell(worth[name][s]) for s in scores) + " |")
    lines += ["", "Where a remedy helps on balanced accuracy:"]
    helping = [w["balanced_accuracy"]["sentence"] for w in worth.values() if w["balanced_accuracy"]["helps"]]
    lines += [""] + [f"- {s}." for s in helping] if helping else ["", "none: nothing to price."]
    return lines + own_curve_lines(metrics) + ["", _image(LEARNING_CURVE), ""]


def own_curve_lines(metrics: dict) -> list[str]:
    """The remedies retrained at every share with a generator of that share alone (compare's
    ``learning_curve_remedies``, from the learning_curve stage): a table of their gain over real_only trained on the
    same real images, and what its trend says."""
    own = metrics.get("learning_curve_remedies")
    if not own:
        return []
    sizes = sorted({p["minority_images"] for points in own.values() for p in points})
    lines = [
        "",
        "### Each remedy at every share",
        "",
        "These remedies were also trained at every share (learning_curve.remedies), their synthetic images drawn by "
        "a generator trained on that share's images alone: the gain over real_only trained on the same real images, "
        "paired over test images, with its 95% interval (test balanced accuracy).",
        "",
        "| remedy | " + " | ".join(f"{n} minority images" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    notes = []
    for name, points in own.items():
        by_n = {p["minority_images"]: p for p in points}
        cells = []
        for n in sizes:
            vs = by_n[n]["vs_real_only"] if n in by_n else None
            cells.append("–" if vs is None else f"{vs['difference']:+.3f} [{vs['ci_low']:+.3f}, {vs['ci_high']:+.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        clear = [p["minority_images"] for p in points if p["vs_real_only"]["ci_low"] > 0]
        if clear and len(clear) < len(points):
            notes.append(f"{name} helps clearly with {', '.join(map(str, clear))} minority images, not at every size")
        elif clear:
            notes.append(f"{name} helps clearly at every size measured")
        else:
            notes.append(f"{name} helps clearly at no size measured")
    return lines + ["", "; ".join(notes) + "."]


def _clear(d: dict) -> str:
    """A paired difference's sign when its 95% interval excludes zero: ``+`` or ``-``; else ``""``."""
    return "+" if d["ci_low"] > 0 else "-" if d["ci_high"] < 0 else ""


def _scored_cell(entry: dict) -> str:
    """A balanced accuracy and, in brackets, its paired difference to real_only marked by :func:`_clear`."""
    vs = entry.get("vs_real_only")
    return f"{entry['balanced_accuracy']:.3f}" + ("" if vs is None else f" ({vs['difference']:+.3f}{_clear(vs)})")


def shift_lines(metrics: dict) -> list[str]:
    """The shift stress test (compare's ``shift_stress``): each remedy's test balanced accuracy without and under
    each acquisition shift, the difference to real_only marked where it is clear, and what that says."""
    stress = metrics.get("shift_stress")
    if not stress:
        return []
    shifts, names = list(stress), strategies(metrics)
    lines = [
        "## Under acquisition shifts",
        "",
        "The same classifiers on the test images as another scanner or protocol might have made them (fixed, seeded "
        "shifts, the same for every remedy; thresholds from validation as before). Balanced accuracy (mean over "
        "seeds); in brackets the paired difference to real_only, marked + or - where its 95% interval excludes "
        "zero.",
        "",
        "| remedy | no shift | " + " | ".join(SHIFT_NAMES.get(s, s) for s in shifts) + " |",
        "|---|---|" + "---|" * len(shifts),
    ]
    worse: dict[str, list[str]] = {}
    for name in names:
        cells = [f"{metrics[name]['balanced_accuracy']:.3f}"]
        for s in shifts:
            entry = stress[s].get(name)
            if entry is None:
                cells.append("–")
                continue
            vs = entry.get("vs_real_only")
            cells.append(_scored_cell(entry))
            if vs is not None and _clear(vs) == "-":
                worse.setdefault(name, []).append(SHIFT_NAMES.get(s, s))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if worse:
        said = "; ".join(f"**{n}** under {', '.join(s)}" for n, s in worse.items())
        lines += [
            "",
            f"Clearly worse than real_only under a shift: {said}. A gain on the test split as it is may not "
            "carry over to another scanner.",
        ]
    else:
        lines += ["", "No remedy is clearly worse than real_only under any of these shifts."]
    chosen = metrics.get("recommendation", {}).get("remedy")
    if chosen in names and chosen != "real_only":
        held = "is not clearly worse than real_only under any shift" if chosen not in worse else "is among them"
        lines[-1] += f" The recommended remedy, {chosen}, {held}."
    return lines + ["", _image(SHIFT_STRESS), ""]


def site_lines(metrics: dict) -> list[str]:
    """Each remedy's test balanced accuracy per site (compare's ``sites``; labels.csv's site column, named by
    pseudonym), the difference to real_only marked where it is clear, and the sites where a remedy is clearly
    worse."""
    sites = metrics.get("sites")
    if not sites:
        return []
    names = strategies(metrics)
    lines = [
        "## Per site",
        "",
        "The test images of each site (labels.csv's site column; sites are named by pseudonym, as patients are) "
        "scored alone. Balanced accuracy (mean over seeds); in brackets the paired difference to real_only, marked "
        "+ or - where its 95% interval excludes zero. A remedy that helps overall but not at one site may not help "
        "at the next.",
        "",
        "| site | test images | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    worse: dict[str, list[str]] = {}
    for site, entry in sites.items():
        counts = ", ".join(f"{c} {n}" for c, n in entry["images"].items())
        cells = []
        for name in names:
            scored = entry["remedies"].get(name)
            if scored is None:
                cells.append("–")
                continue
            vs = scored.get("vs_real_only")
            cells.append(
                f"{scored['balanced_accuracy']:.3f}" + ("" if vs is None else f" ({vs['difference']:+.3f}{_clear(vs)})")
            )
            if vs is not None and _clear(vs) == "-":
                worse.setdefault(name, []).append(site)
        lines.append(f"| {site} | {counts} | " + " | ".join(cells) + " |")
    notes = [f"{site}: {entry['note']}." for site, entry in sites.items() if "note" in entry]
    lines += ["", *notes] if notes else []
    if worse:
        said = "; ".join(f"**{n}** at {', '.join(s)}" for n, s in worse.items())
        lines += ["", f"Clearly worse than real_only at a site: {said}."]
    else:
        lines += ["", "No remedy is clearly worse than real_only at any site."]
    return lines + [""]


def calibration_lines(metrics: dict) -> list[str]:
    """Each remedy's expected calibration error on the test split with its interval and paired difference to
    real_only, and the reliability diagram."""
    names = [n for n in strategies(metrics) if "ece" in metrics[n]]
    if not names:
        return []
    lines = [
        "## Calibration",
        "",
        "Expected calibration error of the test probabilities (top label, 15 bins; 0 = calibrated, lower is better; "
        "mean over seeds) [95% bootstrap interval; the error grows with resampling noise, so on a small test split "
        "its interval can sit above the estimate]; synthetic images can make a classifier over- or under-confident, "
        "which matters to anyone reading its probabilities rather than its decisions.",
        "",
        "| remedy | ECE | vs real_only |",
        "|---|---|---|",
    ]
    for name in names:
        m = metrics[name]
        vs = m.get("ece_vs_real_only")
        lines.append(
            f"| {name} | {m['ece']:.3f} [{m['ece_ci_low']:.3f}, {m['ece_ci_high']:.3f}] | "
            + ("–" if vs is None else _interval(vs))
            + " |"
        )
    worse = [n for n in names if "ece_vs_real_only" in metrics[n] and metrics[n]["ece_vs_real_only"]["ci_low"] > 0]
    if worse:
        lines += ["", "Clearly less calibrated than real_only: " + ", ".join(f"**{n}**" for n in worse) + "."]
    return lines + ["", _image(RELIABILITY), ""]
