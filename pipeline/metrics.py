"""Classification metrics on fixed predictions (scikit-learn), decision thresholds chosen on validation,
summaries over seeds with bootstrap confidence intervals, and the k-nearest-neighbour radii of feature sets (the
balls of precision/recall/density/coverage and of the manifold filter).

Distances between two sets of rows come a block at a time (:func:`distance_blocks`): at most :data:`BLOCK_ROWS`
rows of each set, and at most :data:`CHUNK_BYTES` of float64 per side, so memory is bounded by the block, never by
the number of rows (the quality stage compares tens of thousands of images and feature vectors). Each block holds
the numbers the whole matrix would: every distance is scikit-learn's ``pairwise_distances`` of that pair (rows
cut into even spans, never a sliver of one or two rows, which BLAS would multiply by another kernel)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from scipy.stats import ttest_rel
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    pairwise_distances,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "classification_metrics",
    "auroc",
    "choose_threshold",
    "predict_labels",
    "balanced_accuracy",
    "bootstrap_draws",
    "bootstrap_ci",
    "resample_counts",
    "calibration_bins",
    "expected_calibration_error",
    "crossfit_balanced_accuracy",
    "paired_difference",
    "summarise_runs",
    "minority_classes",
    "mean_curves",
    "knn_radii",
    "BLOCK_ROWS",
    "CHUNK_BYTES",
    "spans",
    "distance_blocks",
]

BLOCK_ROWS = 1024  # rows of each set in one block of distances at most (1024 x 1024 float64: 8 MiB)
CHUNK_BYTES = 32 * 2**20  # float64 bytes of one set's rows in a block at most (1024 rows of 64 x 64 pixels)


def minority_classes(counts: dict[str, int]) -> list[str]:
    """Every class with fewer images than the largest one."""
    majority = max(counts.values())
    return [name for name, n in counts.items() if n < majority]


def choose_threshold(labels: np.ndarray, proba: np.ndarray, positive: int) -> float | None:
    """For two classes: the cut-off on P(class ``positive``) that maximises balanced accuracy on these
    (validation) predictions; the midpoint between neighbouring scores, the lower one on ties. ``None`` for
    more classes, which are decided by arg-max."""
    if proba.shape[1] != 2 or len(np.unique(labels)) < 2:
        return None
    scores = proba[:, positive]
    candidates = np.unique(scores)
    cuts = np.concatenate([[0.0], (candidates[:-1] + candidates[1:]) / 2, [1.0]])
    is_positive = labels == positive
    best, best_cut = -1.0, 0.5
    for cut in cuts:
        predicted = scores > cut
        score = (np.mean(predicted[is_positive]) + np.mean(~predicted[~is_positive])) / 2
        if score > best:
            best, best_cut = score, float(cut)
    return best_cut


def predict_labels(proba: np.ndarray, threshold: float | None, positive: int) -> np.ndarray:
    """Arg-max, or for two classes with a ``threshold``: ``positive`` when its probability exceeds it."""
    if threshold is None:
        return proba.argmax(axis=1)
    return np.where(proba[:, positive] > threshold, positive, 1 - positive)


def balanced_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's ``balanced_accuracy_score``, in numpy:
    it runs after every training epoch)."""
    present = np.unique(labels)
    return float(np.mean([(pred[labels == k] == k).mean() for k in present]))


def auroc(labels: np.ndarray, proba: np.ndarray) -> float:
    """AUROC of ``proba`` (N, K) against integer ``labels``: of class 1's probability for two classes, one-vs-rest
    macro for more; NaN when some class has no image (it is undefined)."""
    k = proba.shape[1]
    if len(np.unique(labels)) != k:
        return float("nan")
    if k == 2:
        return float(roc_auc_score(labels, proba[:, 1]))
    return float(roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=list(range(k))))


def classification_metrics(
    labels: np.ndarray, proba: np.ndarray, classes: Sequence[str], threshold: float | None = None, positive: int = 1
) -> dict:
    """Metrics of the predictions ``proba`` (N, K) against integer ``labels`` (N,): accuracy (for comparison with
    published baselines; misleading alone under imbalance), balanced accuracy, macro-F1, the worst class's recall,
    per-class precision/recall/F1, AUROC (one-vs-rest macro for several classes), AUPRC per class (one-vs-rest
    average precision) and the confusion matrix (rows: true class). Labels come from :func:`predict_labels`."""
    pred = predict_labels(proba, threshold, positive)
    ks = list(range(len(classes)))
    out: dict = {
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=ks, average="macro", zero_division=0)),
    }
    out["auroc"] = auroc(labels, proba)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, pred, labels=ks, zero_division=0)
    out["worst_recall"] = float(min(recall[k] for k in ks if (labels == k).any()))
    for k, name in enumerate(classes):
        out[f"precision_{name}"] = float(precision[k])
        out[f"recall_{name}"] = float(recall[k])
        out[f"f1_{name}"] = float(f1[k])
        present = (labels == k).any()
        out[f"auprc_{name}"] = float(average_precision_score(labels == k, proba[:, k])) if present else float("nan")
    out["confusion_matrix"] = confusion_matrix(labels, pred, labels=ks).tolist()
    return out


def _weighted_auroc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of ``scores`` for the ``positive`` images against the rest under each row of ``weights`` (R x n: how
    many times each image is counted, e.g. drawn by a bootstrap resample): the Mann-Whitney U of the weighted
    images, ties counting a half as in the trapezoidal ROC area. One sort for every row."""
    order = np.argsort(scores, kind="stable")
    ordered, w = scores[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # the groups of tied scores
    is_positive = positive[order]
    pos = np.add.reduceat(w * is_positive, starts, axis=1)  # R x groups: weight of positives per score
    neg = np.add.reduceat(w * ~is_positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negatives with a lower score than the group
    return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def _weighted_metrics(
    labels: np.ndarray, pred: np.ndarray, proba: np.ndarray, classes: Sequence[str], weights: np.ndarray
) -> dict[str, np.ndarray]:
    """The scalar metrics of :func:`classification_metrics` (all but AUPRC) under each row of ``weights`` (R x n,
    each image counted that many times; every row must count every class): confusion matrices as one matrix
    product, AUROC by :func:`_weighted_auroc`. Thousands of bootstrap resamples in a few array operations."""
    k = len(classes)
    cm = (weights @ np.eye(k * k)[labels * k + pred]).reshape(-1, k, k)  # R x true x predicted
    support, predicted, hits = cm.sum(2), cm.sum(1), np.diagonal(cm, axis1=1, axis2=2)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits), where=precision + recall > 0)
    out = {
        "accuracy": hits.sum(1) / cm.sum((1, 2)),
        "balanced_accuracy": recall.mean(1),
        "macro_f1": f1.mean(1),
        "worst_recall": recall.min(1),
    }
    if k == 2:
        out["auroc"] = _weighted_auroc(proba[:, 1], labels == 1, weights)
    else:  # one class against the rest, averaged over classes (roc_auc_score's multi_class="ovr", "macro")
        out["auroc"] = np.mean([_weighted_auroc(proba[:, c], labels == c, weights) for c in range(k)], axis=0)
    for i, name in enumerate(classes):
        out[f"precision_{name}"], out[f"recall_{name}"], out[f"f1_{name}"] = precision[:, i], recall[:, i], f1[:, i]
    return out


def _resample_metrics(labels: np.ndarray, pred: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict:
    """:func:`_weighted_metrics` of one set of images, each counted once (floats)."""
    metrics = _weighted_metrics(labels, pred, proba, classes, np.ones((1, len(labels))))
    return {key: float(value[0]) for key, value in metrics.items()}


def bootstrap_draws(
    labels: np.ndarray,
    proba_per_run: Sequence[np.ndarray],
    thresholds: Sequence[float | None],
    classes: Sequence[str],
    keys: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    positive: int = 1,
) -> dict[str, np.ndarray]:
    """The seed-mean of each metric in ``keys`` (any scalar of :func:`classification_metrics` except AUPRC) on
    ``n_resamples`` resamples of the test images with replacement; every run gets the same resample. The
    resamples depend only on ``labels``, ``n_resamples`` and ``seed``, so the draws of two strategies evaluated on
    the same test split are paired element by element. Resamples missing a class are left out. A resample is
    the number of times it draws each image (:func:`_weighted_metrics`), a block of resamples at a time."""
    preds = [predict_labels(p, t, positive) for p, t in zip(proba_per_run, thresholds, strict=True)]
    n, counts = len(labels), resample_counts(labels, len(classes), n_resamples, seed)
    draws: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    block = max(1, 2**22 // max(n, 1))  # resamples per block: at most about 4 M counts (32 MB) at a time
    for first in range(0, len(counts), block):
        weights = np.stack(counts[first : first + block]).astype(float)
        pairs = zip(preds, proba_per_run, strict=True)
        runs = [_weighted_metrics(labels, pred, p, classes, weights) for pred, p in pairs]
        for key in keys:
            draws[key].append(np.mean([r[key] for r in runs], axis=0))
    return {key: np.concatenate(v) if v else np.zeros(0) for key, v in draws.items()}


def resample_counts(labels: np.ndarray, k: int, n_resamples: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """``n_resamples`` resamples of the images with replacement, each as how many times it draws each image;
    resamples missing one of the ``k`` classes are left out (no balanced accuracy or AUROC there). They depend
    only on ``labels``, ``n_resamples`` and ``seed``: two remedies on the same test split get the same ones."""
    rng = np.random.default_rng(seed)
    n, counts = len(labels), []
    for _ in range(n_resamples):
        idx = rng.integers(n, size=n)
        if len(np.unique(labels[idx])) < k:
            continue
        counts.append(np.bincount(idx, minlength=n))
    return counts


def bootstrap_ci(
    labels: np.ndarray,
    proba_per_run: Sequence[np.ndarray],
    thresholds: Sequence[float | None],
    classes: Sequence[str],
    keys: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    positive: int = 1,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of the seed-mean of each metric, from :func:`bootstrap_draws`: the interval is
    about test-set sampling, with the seeds averaged inside it."""
    draws = bootstrap_draws(labels, proba_per_run, thresholds, classes, keys, n_resamples, seed, positive)
    return {key: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for key, v in draws.items()}


def paired_difference(draws: np.ndarray, base_draws: np.ndarray, per_seed: np.ndarray, base_per_seed: np.ndarray):
    """A strategy against a baseline on one metric, paired twice:

    - over test images: ``draws`` and ``base_draws`` come from :func:`bootstrap_draws` on the same test split
      (same resamples); the 95% interval of their difference and a two-sided bootstrap p-value
      (twice the smaller share of differences on either side of zero);
    - over seeds: ``per_seed`` and ``base_per_seed`` are the metric of each seed's model (same seeds, same
      order); a paired t-test (None, null in JSON, with fewer than two seeds or no variation: undefined).
    """
    diff = np.asarray(draws) - np.asarray(base_draws)
    seed_diff = np.asarray(per_seed, float) - np.asarray(base_per_seed, float)
    p_boot = float(min(1.0, 2 * min(np.mean(diff <= 0), np.mean(diff >= 0))))
    p_seeds = None
    if len(seed_diff) > 1 and np.std(seed_diff) > 0:
        p_seeds = float(ttest_rel(per_seed, base_per_seed).pvalue)
    return {
        "difference": float(seed_diff.mean()),
        "ci_low": float(np.percentile(diff, 2.5)),
        "ci_high": float(np.percentile(diff, 97.5)),
        "p_bootstrap": p_boot,
        "p_seeds": p_seeds,
    }


def summarise_runs(runs: Sequence[dict]) -> dict[str, float]:
    """Mean of each numeric metric over runs, and its sample standard deviation as ``<metric>_std``."""
    out: dict[str, float] = {}
    for key, first in runs[0].items():
        if not isinstance(first, int | float):
            continue  # the confusion matrices stay in the per-run records
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def mean_curves(
    labels: np.ndarray, proba_per_run: Sequence[np.ndarray], positive: int, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROC and precision-recall curves of class ``positive`` against the rest, averaged over runs on a common
    ``grid`` (points in [0, 1], ascending): the mean true-positive rate at each false-positive rate of ``grid``,
    and the mean interpolated precision (the best precision at this recall or above) at each recall of ``grid``.
    Curves of several seeds' models, each on the same test images, become one curve per strategy."""
    is_positive = labels == positive
    tprs, precisions = [], []
    for proba in proba_per_run:
        fpr, tpr, _ = roc_curve(is_positive, proba[:, positive])
        tprs.append(np.interp(grid, fpr, tpr))
        precision, recall, _ = precision_recall_curve(is_positive, proba[:, positive])
        order = np.argsort(recall, kind="stable")  # recall ascending, then the best precision to the right
        recall, best = recall[order], np.maximum.accumulate(precision[order][::-1])[::-1]
        precisions.append(best[np.minimum(np.searchsorted(recall, grid), len(recall) - 1)])
    return np.mean(tprs, axis=0), np.mean(precisions, axis=0)


def spans(n: int, most: int) -> list[slice]:
    """``range(n)`` as consecutive slices of at most ``most`` rows, as even as possible (sizes differ by one at most):
    1026 rows by 1024 are 513 + 513, not 1024 + 2."""
    count = -(-n // max(most, 1))
    return [slice(n * i // count, n * (i + 1) // count) for i in range(count)]


def block_rows(row_size: int) -> int:
    """Rows per block of sets whose rows hold ``row_size`` values: :data:`BLOCK_ROWS`, fewer for wide rows (at most
    :data:`CHUNK_BYTES` of float64), at least one."""
    return max(1, min(BLOCK_ROWS, CHUNK_BYTES // (8 * max(row_size, 1))))


def distance_blocks(
    queries, references, prepare: Callable[[np.ndarray], np.ndarray] = np.asarray, rows: int | None = None
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """The Euclidean distances of rows of ``queries`` to rows of ``references`` a block at a time: ``(q, r, block)``,
    ``block = pairwise_distances(prepare(queries[q]), prepare(references[r]))``, for every pair of spans (queries
    outer). Both sets are anything indexed by a slice of rows (an ndarray, a
    :class:`~pipeline.io.arrays.DiskArray`); ``prepare`` turns the rows read into the float64 ``(rows, D)`` that is
    compared. ``rows`` (per set and block) defaults to :func:`block_rows` of a row's size. The references are
    prepared once when they fit in one block, else once per span of queries."""
    row_size = int(np.prod(queries.shape[1:], dtype=np.int64))
    rows = rows or block_rows(row_size)
    ref_spans = spans(len(references), rows)
    whole = prepare(references[ref_spans[0]]) if len(ref_spans) == 1 else None
    for q in spans(len(queries), rows):
        x = prepare(queries[q])
        for r in ref_spans:
            yield q, r, pairwise_distances(x, whole if whole is not None else prepare(references[r]))


def knn_radii(points: np.ndarray, k: int, rows: int | None = None) -> np.ndarray:
    """Each row's Euclidean distance to its k-th nearest neighbour among the other rows of ``points`` (N, D): the
    radius of its k-nearest-neighbour ball (Naeem et al. 2020). Needs ``1 <= k < N``.

    Up to ``rows`` points (default :func:`block_rows`), from their whole distance matrix, as always; more, a block
    of ``rows`` x ``rows`` distances at a time (:func:`distance_blocks`), keeping each row's k + 1 smallest: the same
    numbers up to BLAS's last bit (the whole matrix of a set with itself goes through another BLAS routine, syrk)."""
    n = len(points)
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and the number of points less one ({n - 1}), got {k}")
    rows = rows or block_rows(int(np.prod(points.shape[1:], dtype=np.int64)))
    if n <= rows:
        return np.sort(pairwise_distances(points), axis=1)[:, k]  # column 0 is the point itself
    radii = np.empty(n)
    nearest: dict[int, np.ndarray] = {}  # span start: its rows' k + 1 smallest distances so far
    for q, r, block in distance_blocks(points, points, rows=rows):
        same = np.arange(max(q.start, r.start), min(q.stop, r.stop))
        block[same - q.start, same - r.start] = 0.0  # a point's distance to itself, as for the whole matrix
        kept = np.concatenate([nearest[q.start], block], axis=1) if q.start in nearest else block
        nearest[q.start] = np.partition(kept, k, axis=1)[:, : k + 1] if kept.shape[1] > k + 1 else kept
        if r.stop == n:
            radii[q] = np.partition(nearest.pop(q.start), k, axis=1)[:, k]
    return radii


def calibration_bins(
    labels: np.ndarray, proba: np.ndarray, bins: int = 15, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-label calibration: the predictions grouped by their confidence (the largest probability) into ``bins``
    equal-width bins; per bin the images, the summed confidence and the summed correctness (arg-max right). With
    ``weights`` ``(B, N)`` (each image's count in B resamples) every output gains a leading axis of B."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == labels).astype(float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    onehot = np.zeros((len(labels), bins))
    onehot[np.arange(len(labels)), index] = 1.0
    w = np.ones((1, len(labels))) if weights is None else np.atleast_2d(weights)
    counts, conf, acc = w @ onehot, w @ (onehot * confidence[:, None]), w @ (onehot * correct[:, None])
    return (counts[0], conf[0], acc[0]) if weights is None else (counts, conf, acc)


def expected_calibration_error(
    labels: np.ndarray, proba: np.ndarray, bins: int = 15, weights: np.ndarray | None = None
) -> float | np.ndarray:
    """Expected calibration error (Guo et al. 2017): the image-weighted mean, over confidence bins, of |accuracy -
    mean confidence| (:func:`calibration_bins`); 0 for a calibrated classifier. One value, or one per resample of
    ``weights``."""
    counts, conf, acc = calibration_bins(labels, proba, bins, weights)
    ece = np.abs(acc - conf).sum(axis=-1) / counts.sum(axis=-1)
    return float(ece) if weights is None else ece


def crossfit_balanced_accuracy(labels: np.ndarray, proba: np.ndarray, positive: int, seed: int = 0) -> float:
    """Balanced accuracy with the decision threshold chosen on one half of these (validation) images and scored on
    the other half, both ways round, averaged: not scored on the images that tuned it. Halves stratified by class,
    seeded; arg-max (no threshold) for more than two classes."""
    rng = np.random.default_rng(seed)
    first = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        first[members[: len(members) // 2]] = True
    scores = []
    for tuned in (first, ~first):
        scored = ~tuned
        if not scored.any():
            continue
        threshold = choose_threshold(labels[tuned], proba[tuned], positive)
        scores.append(balanced_accuracy(labels[scored], predict_labels(proba[scored], threshold, positive)))
    return float(np.mean(scores))
