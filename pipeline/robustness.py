"""How far the remedies' test results can be trusted beyond the test split as it is: under acquisition shifts of
its images (:mod:`pipeline.shifts`), and as probabilities (calibration). The compare stage reads these from the
classifiers' saved predictions; nothing here trains or looks at the validation split.

- :func:`shift_stress`: per shift and remedy, the test balanced accuracy under the shift (mean over seeds, each at
  its validation threshold), its 95% bootstrap interval over test images and its paired difference to real_only
  (the same resamples and seeds: :func:`pipeline.metrics.paired_difference`).
- :func:`by_site`: per site of the test images (labels.csv's site column, as pseudonyms) and remedy, the same
  balanced accuracy, interval and paired difference to real_only on that site's images alone.
- :func:`calibration`: per remedy, the expected calibration error of its test probabilities (top label, bins of
  1/15; mean over seeds) with its 95% bootstrap interval and its paired difference to real_only, and the
  reliability curve pooled over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.metrics import (
    balanced_accuracy,
    bootstrap_draws,
    calibration_bins,
    expected_calibration_error,
    paired_difference,
    predict_labels,
    resample_counts,
)

__all__ = ["shift_stress", "by_site", "calibration", "BINS"]

BINS = 15  # confidence bins of the calibration error and the reliability diagram

Predictions = Mapping[str, np.ndarray]  # a remedy's predictions.npz (pipeline.train_classifier)


def _thresholds(p: Predictions) -> list[float | None]:
    return [None if np.isnan(t) else float(t) for t in p["thresholds"]]


def _interval(draws: np.ndarray) -> dict[str, float]:
    return {"ci_low": float(np.percentile(draws, 2.5)), "ci_high": float(np.percentile(draws, 97.5))}


def _against(draws: Mapping[str, np.ndarray], per_seed: Mapping[str, np.ndarray], base: str) -> dict[str, dict]:
    """Per remedy: the seed-mean balanced accuracy, its interval over ``draws`` and, but for ``base``, the paired
    difference to ``base``."""
    out: dict[str, dict] = {}
    for name, seeds in per_seed.items():
        out[name] = {"balanced_accuracy": float(np.mean(seeds)), **_interval(draws[name])}
        if name != base:
            out[name]["vs_real_only"] = paired_difference(draws[name], draws[base], seeds, per_seed[base])
    return out


def _draws(labels: np.ndarray, probas: np.ndarray, p: Predictions, classes: list[str]) -> np.ndarray:
    thresholds = _thresholds(p)
    return bootstrap_draws(
        labels, list(probas), thresholds, classes, ["balanced_accuracy"], positive=int(p["positive"])
    )["balanced_accuracy"]


def shift_stress(
    predictions: Mapping[str, Predictions],
    per_seed: Mapping[str, Mapping[str, Sequence[float]]],
    base: str = "real_only",
) -> dict[str, dict[str, dict]]:
    """``{shift: {remedy: {"balanced_accuracy", "ci_low", "ci_high"[, "vs_real_only"]}}}`` from each remedy's
    predictions (``shift_proba``: seeds x shifts x images x classes) and ``per_seed`` (remedy -> shift -> each
    seed's balanced accuracy, as train_classifier recorded it)."""
    first = predictions[base]
    labels, classes = first["labels"], [str(c) for c in first["classes"]]
    out: dict[str, dict[str, dict]] = {}
    for k, shift in enumerate(str(s) for s in first["shifts"]):
        draws = {name: _draws(labels, p["shift_proba"][:, k], p, classes) for name, p in predictions.items()}
        seeds = {name: np.asarray(per_seed[name][shift], dtype=float) for name in predictions}
        out[shift] = _against(draws, seeds, base)
    return out


def by_site(predictions: Mapping[str, Predictions], base: str = "real_only") -> dict[str, dict]:
    """``{site: {"images": {class: n}, "remedies": {remedy: as shift_stress's}}}`` on each site's test images
    (``sites`` in the predictions: pseudonyms); {} when the predictions have no sites. A site without an image of
    every class gets ``"remedies": {}`` and a ``"note"``: its balanced accuracy would average fewer classes."""
    first = predictions[base]
    if "sites" not in first:
        return {}
    labels, sites, classes = first["labels"], first["sites"].astype(str), [str(c) for c in first["classes"]]
    out: dict[str, dict] = {}
    for site in sorted(set(sites.tolist())):
        mask = sites == site
        held = labels[mask]
        entry: dict = {"images": {c: int((held == k).sum()) for k, c in enumerate(classes)}, "remedies": {}}
        if len(np.unique(held)) < len(classes):
            entry["note"] = "not every class has a test image from this site: no balanced accuracy"
        else:
            draws = {name: _draws(held, p["proba"][:, mask], p, classes) for name, p in predictions.items()}
            seeds = {
                name: np.array(
                    [
                        balanced_accuracy(held, predict_labels(q[mask], t, int(p["positive"])))
                        for q, t in zip(p["proba"], _thresholds(p), strict=True)
                    ]
                )
                for name, p in predictions.items()
            }
            entry["remedies"] = _against(draws, seeds, base)
        out[site] = entry
    return out


def _ece_draws(labels: np.ndarray, probas: Sequence[np.ndarray], counts: list[np.ndarray]) -> np.ndarray:
    """The seed-mean calibration error on each resample (``counts``), a block of resamples at a time."""
    block = max(1, 2**22 // max(len(labels), 1))
    parts = []
    for first in range(0, len(counts), block):
        weights = np.stack(counts[first : first + block]).astype(float)
        per_run = [np.asarray(expected_calibration_error(labels, q, BINS, weights)) for q in probas]
        parts.append(np.mean(per_run, axis=0))
    return np.concatenate(parts) if parts else np.zeros(0)


def calibration(
    predictions: Mapping[str, Predictions], base: str = "real_only", n_resamples: int = 1000, seed: int = 0
) -> tuple[dict[str, dict], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per remedy ``{"ece", "ece_ci_low", "ece_ci_high"[, "ece_vs_real_only"]}`` and its reliability curve
    (per bin: images, mean confidence, accuracy; pooled over seeds)."""
    labels = predictions[base]["labels"]
    counts = resample_counts(labels, len(predictions[base]["classes"]), n_resamples, seed)
    draws, per_seed, out, curves = {}, {}, {}, {}
    for name, p in predictions.items():
        probas = list(p["proba"])
        per_seed[name] = np.array([expected_calibration_error(labels, q, BINS) for q in probas])
        draws[name] = _ece_draws(labels, probas, counts)
        n, confidence, accuracy = (
            np.sum(parts, axis=0) for parts in zip(*(calibration_bins(labels, q, BINS) for q in probas), strict=True)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            curves[name] = (n, confidence / n, accuracy / n)
    for name in predictions:
        low, high = _interval(draws[name]).values()
        out[name] = {"ece": float(per_seed[name].mean()), "ece_ci_low": low, "ece_ci_high": high}
        if name != base:
            out[name]["ece_vs_real_only"] = paired_difference(draws[name], draws[base], per_seed[name], per_seed[base])
    return out, curves
