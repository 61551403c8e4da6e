"""Robustness of the remedies' results: the shift stress test and calibration, on predictions whose answer is
known."""

import numpy as np

from pipeline.metrics import expected_calibration_error
from pipeline.robustness import calibration, shift_stress

LABELS = np.array([0] * 60 + [1] * 40)


def _proba(right: float, confidence: float, seed: int) -> np.ndarray:
    """Predictions right on a share ``right`` of the images, each with probability ``confidence`` on its call."""
    rng = np.random.default_rng(seed)
    called = np.where(rng.uniform(size=len(LABELS)) < right, LABELS, 1 - LABELS)
    proba = np.full((len(LABELS), 2), 1 - confidence)
    proba[np.arange(len(LABELS)), called] = confidence
    return proba


def _predictions(right_clean: float, right_shifted: float, confidence: float = 0.9) -> dict:
    seeds = (0, 1)
    return {
        "labels": LABELS,
        "classes": np.array(["a", "b"]),
        "positive": np.array(1),
        "thresholds": np.full(len(seeds), np.nan),
        "proba": np.stack([_proba(right_clean, confidence, s) for s in seeds]),
        "shifts": np.array(["noise_0_05"]),
        "shift_proba": np.stack([_proba(right_shifted, confidence, 10 + s)[None] for s in seeds]),
    }


def _per_seed(predictions: dict) -> dict:
    from pipeline.metrics import balanced_accuracy

    return {"noise_0_05": [balanced_accuracy(LABELS, p[0].argmax(1)) for p in predictions["shift_proba"]]}


def test_a_remedy_that_holds_under_a_shift_is_told_apart_from_one_that_breaks():
    preds = {"real_only": _predictions(0.9, 0.55), "robust": _predictions(0.9, 0.9)}
    stress = shift_stress(preds, {name: _per_seed(p) for name, p in preds.items()})
    real, robust = stress["noise_0_05"]["real_only"], stress["noise_0_05"]["robust"]
    assert real["balanced_accuracy"] < 0.65 < 0.85 < robust["balanced_accuracy"]
    assert robust["vs_real_only"]["ci_low"] > 0 and "vs_real_only" not in real
    assert real["ci_low"] <= real["balanced_accuracy"] <= real["ci_high"]


def test_calibration_error_is_the_gap_between_confidence_and_accuracy():
    right = _proba(0.9, 0.9, 0)
    accuracy = (right.argmax(1) == LABELS).mean()
    assert np.isclose(expected_calibration_error(LABELS, right), abs(accuracy - 0.9))  # one bin holds every image
    preds = {"real_only": _predictions(0.9, 0.9, confidence=0.9), "overconfident": _predictions(0.7, 0.7, 0.99)}
    ece, curves = calibration(preds)
    assert ece["real_only"]["ece"] < 0.1 < 0.25 < ece["overconfident"]["ece"]
    assert ece["overconfident"]["ece_vs_real_only"]["ci_low"] > 0
    counts, confidence, acc = curves["overconfident"]
    assert (
        counts.sum() == 2 * len(LABELS)
        and np.isclose(confidence[counts > 0], 0.99).all()
        and acc[counts > 0].max() < 0.8
    )


def test_a_remedy_that_fails_at_one_site_is_seen_there_and_not_at_the_other():
    from pipeline.robustness import by_site

    sites = np.where(np.arange(len(LABELS)) % 2 == 0, "Sa", "Sb")
    good, poor = _proba(0.95, 0.9, 0), _proba(0.5, 0.9, 1)
    mixed = np.where((sites == "Sa")[:, None], good, poor)  # right at site Sa, a coin at Sb

    def preds(proba):
        return {**_predictions(0.9, 0.9), "proba": np.stack([proba, proba]), "sites": sites}

    scored = by_site({"real_only": preds(good), "fragile": preds(mixed)})
    assert set(scored) == {"Sa", "Sb"} and scored["Sa"]["images"] == {"a": 30, "b": 20}
    at_a, at_b = (scored[s]["remedies"]["fragile"] for s in ("Sa", "Sb"))
    assert abs(at_a["vs_real_only"]["difference"]) < 1e-9 and at_b["vs_real_only"]["ci_high"] < 0
    assert at_b["balanced_accuracy"] < 0.7 < 0.8 < scored["Sb"]["remedies"]["real_only"]["balanced_accuracy"]
    one_class = {**preds(good), "sites": np.where(LABELS == 0, "Sa", "Sb")}
    alone = by_site({"real_only": one_class})["Sa"]
    assert alone["remedies"] == {} and "note" in alone
    assert by_site({"real_only": _predictions(0.9, 0.9)}) == {}
