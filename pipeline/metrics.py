"""Classification metrics on fixed predictions (scikit-learn), and their summary over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score, roc_auc_score

__all__ = ["classification_metrics", "summarise_runs", "minority_classes"]


def minority_classes(counts: dict[str, int]) -> list[str]:
    """Every class with fewer images than the largest one."""
    majority = max(counts.values())
    return [name for name, n in counts.items() if n < majority]


def classification_metrics(labels: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Balanced accuracy, macro-F1, AUROC (one-vs-rest macro for several classes) and per-class recall of the
    arg-max prediction of ``proba`` (N, K) against integer ``labels`` (N,)."""
    pred = proba.argmax(axis=1)
    ks = list(range(len(classes)))
    out = {
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=ks, average="macro", zero_division=0)),
    }
    if len(np.unique(labels)) == len(classes):
        if len(classes) == 2:
            out["auroc"] = float(roc_auc_score(labels, proba[:, 1]))
        else:
            out["auroc"] = float(roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=ks))
    else:
        out["auroc"] = float("nan")
    recalls = recall_score(labels, pred, labels=ks, average=None, zero_division=0)
    out.update({f"recall_{name}": float(r) for name, r in zip(classes, recalls, strict=True)})
    return out


def summarise_runs(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over runs, and its sample standard deviation as ``<metric>_std``."""
    out: dict[str, float] = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out
