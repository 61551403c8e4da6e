from dataclasses import replace

from pipeline.io.records import PoolSummary, ProcessedSummary
from pipeline.report import render_report, verdict
from pipeline.reporting.sections import imbalance_lines

SUMMARY = ProcessedSummary(
    classes=["nodule", "normal"],
    n_images=10,
    n_files=8,
    image_size=[1, 8, 8],
    modalities={"CT": 10},
    splits={"train": {"patients": 3, "images": {"nodule": 1, "normal": 5}}},
)


def _difference(delta, half_width):
    d = {"difference": delta, "ci_low": delta - half_width, "ci_high": delta + half_width}
    return d | {"p_bootstrap": 0.01 if abs(delta) > half_width else 0.5, "p_seeds": None}


def _metrics(base, aug, std=0.01):
    def row(ba, rec):
        return {
            "balanced_accuracy": ba,
            "balanced_accuracy_std": std,
            "macro_f1": ba,
            "macro_f1_std": std,
            "auroc": ba,
            "auroc_std": std,
            "accuracy": ba,
            "accuracy_std": std,
            "recall_nodule": rec,
            "recall_nodule_std": std,
            "recall_normal": 0.9,
            "recall_normal_std": std,
        }

    vae = row(aug, 0.5)
    keys = ("balanced_accuracy", "macro_f1", "auroc", "recall_nodule")
    vae["vs_real_only"] = {k: _difference(aug - base, 2 * std) for k in keys}
    return {
        "real_only": row(base, 0.2),
        "vae": vae,
        "minority_classes": ["nodule"],
        "seeds": 3,
    }


def test_verdict_says_when_augmentation_did_not_help():
    assert "did not help" in verdict(_metrics(0.8, 0.7))
    assert "helped" in verdict(_metrics(0.7, 0.8)) and "did not" not in verdict(_metrics(0.7, 0.8))
    assert "no clear difference" in verdict(_metrics(0.70, 0.71, std=0.05))  # the interval spans zero
    assert "+0.100 [95% CI +0.080, +0.120], paired bootstrap p = 0.010; over seeds p = n/a" in verdict(
        _metrics(0.7, 0.8)
    )
    assert "recall of minority class 'nodule' 0.200 → 0.500" in verdict(_metrics(0.7, 0.8))


def test_report_has_counts_table_and_pictures():
    summary = SUMMARY
    rows = [{"label": "nodule", "sampler": "posterior"}] * 4
    text = render_report(summary, rows, _metrics(0.7, 0.8), {"Grid": "figures/grid.png"})
    assert "| train | 3 | 1 | 5 |" in text and "nodule: 4" in text and "![Grid](figures/grid.png)" in text
    assert "| vae | 0.800 ± 0.010" in text and "recall nodule (minority)" in text
    assert "| vae | real_only | +0.100 [+0.080, +0.120] (p 0.010 / n/a)" in text
    ratio = [{"ratio": r, "strategy": "vae", "balanced_accuracy": 0.7, "recall_nodule": 0.5} for r in (0, 1)]
    ratio = [
        r | {f"{k}_ci_{e}": 0.1 for k in ("balanced_accuracy", "recall_nodule") for e in ("low", "high")} for r in ratio
    ]
    text = render_report(summary, rows, _metrics(0.7, 0.8), {}, ratio_rows=ratio)
    assert "## Synthetic-ratio ablation" in text and "| 1 | 0.700 [0.100, 0.100] | 0.500 [0.100, 0.100] |" in text
    assert "No input file was skipped." in text


def test_report_lists_skipped_rows_without_reasons():
    summary = replace(
        SUMMARY,
        classes=["a", "b"],
        splits={},
        skipped=[
            {"labels_csv_line": 4, "path": "x/1.dcm", "reason": "/home/DOE_JANE/x/1.dcm: corrupt"},
            {"reason": "labels.csv line 9: file 'y.dcm' does not exist"},
        ],
    )
    metrics = _metrics(0.7, 0.8)
    for m in ("real_only", "vae"):
        metrics[m].update({"recall_a": 0.5, "recall_a_std": 0.0, "recall_b": 0.5, "recall_b_std": 0.0})
    text = render_report(summary, [], metrics, {})
    assert "2 input row(s) were skipped" in text and "labels.csv line 4: `x/1.dcm`" in text
    assert "DOE_JANE" not in text


def test_report_shows_the_anomaly_and_latent_results_it_is_given():
    summary = SUMMARY
    anomaly = {
        "normal_class": "normal",
        "score": "reconstruction",
        "auroc": 0.812,
        "auprc": 0.4,
        "prevalence": 0.1,
        "threshold": 0.01,
        "sensitivity": 0.75,
        "specificity": 0.66,
        "auroc_nodule": 0.812,
        "by_score": {"reconstruction": {"auroc": 0.812, "auprc": 0.4}, "elbo": {"auroc": 0.7, "auprc": 0.3}},
    }
    from pipeline.latent import keyed_metrics

    latent = keyed_metrics(  # the stage's rows, keyed as it writes them
        [{"components": 2, "vae_mse": 0.004, "pca_mse": 0.009, "ica_mse": 0.0095}],
        [
            {"components": 2, "features": "vae", "accuracy": 0.9, "balanced_accuracy": 0.85},
            {"components": 2, "features": "pca", "accuracy": 0.8, "balanced_accuracy": 0.7},
        ],
        [{"noise_sd": 0.1, "psnr_noisy": 20.0, "psnr_denoised": 25.5, "ssim_noisy": 0.5, "ssim_denoised": 0.8}],
    )
    assert latent["reduction"] == {"2": {"vae_mse": 0.004, "pca_mse": 0.009, "ica_mse": 0.0095}}  # no lists
    text = render_report(summary, [], _metrics(0.7, 0.8), {}, anomaly=anomaly, latent=latent)
    assert "AUROC **0.812**" in text and "sensitivity 0.750 and specificity 0.660" in text
    assert "AUROC by score: reconstruction 0.812, elbo 0.700" in text
    assert "| 2 | 0.00400 | 0.00900 | 0.00950 | 0.850 | 0.700 |" in text
    assert "| 0.1 | 20.00 | 25.50 | 0.500 | 0.800 |" in text and "figures/latent_traversal.png" in text
    assert "## Anomaly detection" not in render_report(summary, [], _metrics(0.7, 0.8), {})


def test_verdict_names_the_winner_and_whether_anything_beat_real_only():
    helped = verdict(_metrics(0.7, 0.8))
    assert "Best balanced accuracy (every class weighs the same): **vae** 0.800" in helped
    assert "+0.100 [+0.080, +0.120] against real_only (a clear gain)" in helped
    assert "Shown better than real_only on balanced accuracy: **vae**." in helped
    assert "Best recall of minority class 'nodule': **vae** 0.500" in helped
    assert "best of" not in helped  # two strategies: nothing was picked out of many
    three = _metrics(0.7, 0.8)
    three["oversample"] = dict(three["real_only"])
    assert "the best of 3 strategies and ratios: the interval of whichever came out on top is optimistic" in verdict(
        three
    )
    noise = verdict(_metrics(0.70, 0.71, std=0.05))
    assert "(within the noise)" in noise and "**No strategy is shown better than real_only**" in noise
    hurt = verdict(_metrics(0.8, 0.7))
    assert "**real_only** 0.800" in hurt and "no remedy did better than the real images alone" in hurt


def test_the_verdict_opens_with_the_remedy_chosen_on_validation():
    metrics = _metrics(0.7, 0.8)
    assert verdict(metrics).startswith("- Best balanced accuracy")  # no recommendation made: none claimed
    metrics["recommendation"] = {
        "remedy": "vae",
        "rule": "highest mean validation balanced accuracy",
        "best_classical": "oversample",
        "test": {"balanced_accuracy": 0.8, "balanced_accuracy_ci_low": 0.75, "balanced_accuracy_ci_high": 0.85}
        | {"worst_recall": 0.5},
        "vs_real_only": {"balanced_accuracy": _difference(0.1, 0.02)},
        "vs_best_classical": {"balanced_accuracy": _difference(-0.01, 0.03)},
    }
    text = verdict(metrics)
    assert text.startswith(
        "- **Recommended: vae** (chosen on the validation split: highest mean validation balanced accuracy; the "
        "test split played no part). On the test split it scores balanced accuracy 0.800 [95% CI 0.750, 0.850], "
        "worst class's recall 0.500; against real_only +0.100 [+0.080, +0.120] (a clear gain); against the best "
        "classical remedy, oversample (picked the same way), -0.010 [-0.040, +0.020] (within the noise)."
    )
    assert text.splitlines()[1].startswith("- *Exploratory (test-split rankings")
    metrics["recommendation"] |= {"remedy": "real_only"}
    del metrics["recommendation"]["vs_real_only"]
    assert "no remedy did better on validation than the real images alone;" in verdict(metrics)
    metrics["recommendation"] |= {  # the validation best within one standard error of real_only
        "validation_best": "vae",
        "validation_balanced_accuracy": {"real_only": 0.9, "vae": 0.92},
        "validation_standard_error": 0.03,
    }
    assert (
        "(on validation vae scored highest, 0.920 against 0.900, within one standard error, 0.030: validation could "
        "not tell them apart); no remedy did better on validation than the real images alone beyond the noise;"
    ) in verdict(metrics)


def test_provenance_section_says_what_it_could_not_record():
    prov = {
        "generated_utc": "2026-11-24T06:00:00+00:00",
        "git": {"commit": "a" * 40, "uncommitted": ["params.yaml"]},
        "lock_sha256": "f" * 64,
        "dataset": {"md5": "abc.dir", "nfiles": 2, "size": 3 * 2**20},
        "params": "data:\n  root: data/demo\n",
        "versions": {"torch": "2.13.0", "python": "3.11.7"},
        "device": "cpu (2 cores, 2 torch threads)",
        "stages": [
            {"stage": "train_vae", "seconds": 90.0, "device": "cpu (2 cores)", "finished_utc": "2026-11-24T05:59"},
            {"stage": "generate", "seconds": None, "device": None, "finished_utc": None},
        ],
    }
    text = render_report(SUMMARY, [], _metrics(0.7, 0.8), {}, provenance=prov)
    assert f"commit `{'a' * 40}` **with uncommitted changes** to `params.yaml`" in text
    assert "`abc.dir` (2 files, 3.0 MiB" in text and "torch 2.13.0, python 3.11.7" in text
    assert "| train_vae | 90 s | cpu (2 cores) |" in text and "| generate | not run here" in text
    assert "1.5 min over 1 of 2 stages" in text and "```yaml\ndata:\n  root: data/demo\n```" in text
    prov["git"] = None
    assert "Code: not a git checkout" in render_report(SUMMARY, [], _metrics(0.7, 0.8), {}, provenance=prov)


def test_quality_section_says_in_words_when_synthetic_images_are_off():
    def q(fd, precision, held_fd=10.0, held_precision=0.8, recall=0.5):
        keys = ("fd", "precision", "recall", "density", "coverage")
        own = dict(zip(keys, (fd, precision, recall, 0.5, 0.5), strict=True))
        held = {f"held_out_{k}": v for k, v in zip(keys, (held_fd, held_precision, 0.9, 0.9, 0.9), strict=True)}
        return own | held | {"synthetic_images": 20, "held_out_images": 10}

    quality = {
        "per_class": {"nodule": q(40.0, 0.1), "normal": q(11.0, 0.7), "benign": q(9.0, 0.9, recall=0.1)},
        "per_sampler": {"prior": {"nodule": q(50.0, 0.0) | {"images": 5}}},
        "pool_sampler": "prior",
        "memorisation": {},
        "copy_quantile": 0.01,
    }
    text = render_report(SUMMARY, [], _metrics(0.7, 0.8), {}, quality=quality)
    assert "nodule: the synthetic images are **further from the real ones than new real patients are** (FD 40" in text
    assert "normal: the synthetic images are about as close to the training images, and as varied, as new" in text
    assert "benign: the synthetic images look like real ones but **cover only part of the real variety**" in text
    assert "| nodule | prior* | 5 | – | 50.000 | 0.000 |" in text  # no class fidelity measured: a dash


def test_data_section_warns_of_near_twins_across_splits():
    twins = {
        "rule": "pixel RMS distance to the nearest training image below 0.25 x the median",
        "threshold_rms": 0.036,
        "held_out_images": {"val": 78, "test": 156},
        "twins": {"val": 16, "test": 46},
        "different_label": 5,
        "pairs": [{"split": "test"}] * 62,
    }
    text = render_report(replace(SUMMARY, near_twins=twins), [], _metrics(0.7, 0.8), {})
    assert "**Possible leak across splits: 16 of 78 val, 46 of 156 test images have a near-identical twin" in text
    assert "5 of the pairs carry different labels" in text and "figures/split_twins.png" in text
    none = twins | {"twins": {"val": 0, "test": 0}, "pairs": [], "different_label": 0}
    text = render_report(replace(SUMMARY, near_twins=none), [], _metrics(0.7, 0.8), {})
    assert "Near-duplicates across splits: none" in text and "Possible leak" not in text


def test_data_section_warns_of_images_constant_along_an_axis():
    flat = {"rule": "constant along a spatial axis", "images": {"train": 61, "val": 12, "test": 0}}
    flat["labels_csv_lines"] = list(range(2, 22))
    text = render_report(replace(SUMMARY, flat_images=flat), [], _metrics(0.7, 0.8), {})
    assert "**73 images are constant along an axis** (61 train, 12 val; constant along a spatial axis)" in text
    assert "labels.csv lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ..." in text
    none = flat | {"images": {"train": 0, "val": 0, "test": 0}, "labels_csv_lines": []}
    assert "constant along an axis" not in render_report(replace(SUMMARY, flat_images=none), [], _metrics(0.7, 0.8), {})


def test_generators_section_shows_each_candidate_with_its_paired_differences():
    def diff(d):
        return {"difference": d, "ci_low": d - 0.05, "ci_high": d + 0.05}

    candidate = {
        "pool_sampler": "posterior",
        "minority_classes": ["nodule"],
        "train_generator_seconds": 90.1,
        "per_class": {
            "nodule": {"fidelity": 1.0, "held_out_fidelity": 1.0, "fd": 120.3, "held_out_fd": 151.4, "precision": 0.03}
        },
        "vae_strategy": {"balanced_accuracy": 0.895, "vs_real_only": diff(-0.035), "vs_oversample": diff(-0.026)},
    }
    comparison = {
        "command": "bench/compare_generators.py",
        "data_root": "the demo",
        "measured_utc": "2026-11-30T20:40",
        "seeds": [0, 1, 2],
        "candidates": {"vae_gan, per_class": candidate},
    }
    text = render_report(SUMMARY, [], _metrics(0.7, 0.8), {}, generators=comparison)
    assert "## Generators" in text and "figures/generators.png" in text
    assert (
        "| vae_gan, per_class | posterior | nodule | 1.00 (1.00) | 120.3 (151.4) | 0.03 | 0.895 | "
        "-0.035 [-0.085, +0.015] |" in text
    )
    assert "## Generators" not in render_report(SUMMARY, [], _metrics(0.7, 0.8), {})


def _generation(filters, filtering):
    return PoolSummary("vae_gan", "per_class", "posterior", {}, {}, {}, filters, filtering, [])


def test_synthetic_images_section_shows_what_each_filter_dropped():
    per_filter = {
        "classifier": {"tested": 40, "dropped": 10, "acceptance_rate": 0.75, "threshold_probability": 0.2},
        "manifold": {"tested": 30, "dropped": 6, "acceptance_rate": 0.8, "k": 5, "radius_median": 1.234},
    }
    filtering = {
        "nodule": {"kept": 20, "dropped": 16, "candidates": 40, "acceptance_rate": 0.6, "filters": per_filter},
        "normal": {"kept": 0, "dropped": 0, "candidates": 0, "acceptance_rate": None, "filters": {}},  # none asked
    }
    text = render_report(
        SUMMARY, [], _metrics(0.7, 0.8), {}, generation=_generation(["classifier", "manifold"], filtering)
    )
    assert "filters: classifier, manifold." in text
    assert "| Class | Candidates | classifier: dropped | manifold: dropped | Kept | Acceptance rate |" in text
    assert "| nodule | 40 | 10 of 40 (75%) | 6 of 30 (80%) | 20 | 60% |" in text and "| normal | 0 |" not in text
    assert "nodule 1.23 (k = 5)" in text


def test_synthetic_images_section_without_filters_says_so():
    filtering = {"nodule": {"kept": 20, "dropped": 0}, "normal": {"kept": 0, "dropped": 0}}
    text = render_report(SUMMARY, [], _metrics(0.7, 0.8), {}, generation=_generation([], filtering))
    assert "filters: none." in text and "Candidates" not in text


def test_report_states_the_imbalance_at_the_top():
    """Per-class training counts, the majority, and the majority : minority ratio, before the verdict."""
    text = render_report(SUMMARY, [], _metrics(0.7, 0.8), {})
    assert text.index("**Imbalance.** Training images per class: normal 5, nodule 1.") < text.index("## Verdict")
    five = replace(SUMMARY, splits={"train": {"patients": 9, "images": {"a": 486, "b": 66, "c": 128}}})
    (line, _) = imbalance_lines(five)
    assert "a 486, c 128, b 66" in line and "Majority: a" in line and "c 1:3.8, b 1:7.36" in line


def test_report_shows_the_shift_stress_test_and_calibration_and_says_what_is_clearly_worse():
    metrics = _metrics(0.7, 0.8)
    vs = _difference(-0.1, 0.05)  # clearly below real_only
    metrics["shift_stress"] = {
        "noise_0_05": {
            "real_only": {"balanced_accuracy": 0.65, "ci_low": 0.6, "ci_high": 0.7},
            "vae": {"balanced_accuracy": 0.55, "ci_low": 0.5, "ci_high": 0.6, "vs_real_only": vs},
        }
    }
    metrics["real_only"] |= {"ece": 0.05, "ece_ci_low": 0.03, "ece_ci_high": 0.07}
    metrics["vae"] |= {"ece": 0.2, "ece_ci_low": 0.15, "ece_ci_high": 0.25, "ece_vs_real_only": _difference(0.15, 0.05)}
    text = render_report(SUMMARY, [], metrics, {})
    assert "## Under acquisition shifts" in text and "| remedy | no shift | noise SD 0.05 |" in text
    assert "| vae | 0.800 | 0.550 (-0.100-) |" in text and "**vae** under noise SD 0.05" in text
    assert "| vae | 0.200 [0.150, 0.250] | +0.150 [+0.100, +0.200] |" in text
    assert "Clearly less calibrated than real_only: **vae**." in text
    assert "![" in text.split("## Calibration")[1] and "figures/reliability.png" in text
    plain = render_report(SUMMARY, [], _metrics(0.7, 0.8), {})  # an older compare stage: no sections, no crash
    assert "## Under acquisition shifts" not in plain and "## Calibration" not in plain


def test_a_recommendation_by_another_criterion_does_not_claim_the_one_standard_error_rule():
    metrics = _metrics(0.7, 0.8)
    test = metrics["vae"] | {"balanced_accuracy_ci_low": 0.75, "balanced_accuracy_ci_high": 0.85}
    rec = {"remedy": "vae", "rule": "highest mean validation AUROC over seeds (no threshold)", "test": test}
    rec |= {"validation_best": "real_only", "validation_balanced_accuracy": {"real_only": 0.9, "vae": 0.85}}
    metrics["recommendation"] = rec | {"rule_name": "auroc_best", "validation_standard_error": 0.01}
    text = render_report(SUMMARY, [], metrics, {})
    assert "the highest validation balanced accuracy was real_only's, 0.900 against 0.850" in text
    assert "within one standard error" not in text.split("## Verdict")[1].split("\n- ")[1]
    metrics["recommendation"] |= {"rule_name": "one_se"}
    assert "within one standard error, 0.010" in render_report(SUMMARY, [], metrics, {})
