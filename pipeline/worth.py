""" "Worth N real images": how many real minority training images a remedy's synthetic ones did as much as.

Given real_only's test predictions at several numbers of real minority training images ``n_1 < ... < n_k`` (its
learning curve) and a remedy's test predictions at one of them, ``n``: the number ``N*`` of real minority images at
which real_only would reach the remedy's score, and ``worth = N* - n``. Pure numpy on saved predictions (the
``predictions.npz`` of :mod:`pipeline.train_classifier`); nothing here trains.

- The curve is real_only's score (seed mean) against ``log n``, made non-decreasing by isotonic regression
  (:func:`monotone`: noise cannot make it non-invertible) and linear between the measured points; ``N*`` is the
  smallest ``n`` where it reaches the remedy's score (:func:`equivalent_n`).
- Beyond the largest measured point the curve goes on in a straight line in ``log n`` through its last two points
  (flagged: ``extrapolated``; infinite where the curve has stopped rising); under the smallest, ``N*`` is clamped to
  it (flagged: ``below_range``).
- The remedy must beat real_only at the same ``n`` first: when the 95% interval of their paired difference
  (:func:`pipeline.metrics.paired_difference`) includes 0 or lies below it, the result says "does not help" and
  carries no number. A remedy that helps is worth at least 0 images (``N*`` under ``n`` can only come from the
  monotone fit pooling real_only's point at ``n`` with a higher neighbour).
- The 95% interval comes from the bootstrap: each draw resamples the test images
  (:func:`pipeline.metrics.resample_counts`: the same resample for every curve point and the remedy; each draw the
  mean over the seeds, as everywhere in the report), and recomputes ``N*``.

The score is the balanced accuracy (the headline) or one class's recall (``recall_<class>``, e.g. a minority's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.io.arrays import SplitData
from pipeline.metrics import minority_classes, paired_difference, predict_labels, resample_counts

__all__ = [
    "CURVE_FOLDER",
    "WorthN",
    "equivalent_n",
    "minority_images",
    "minority_share",
    "monotone",
    "score_draws",
    "worth_n",
    "worth_per_class",
]

Predictions = Mapping[str, np.ndarray]  # a predictions.npz (pipeline.train_classifier): labels, proba, thresholds...

# the learning_curve stage's folder under paths.reports: curve_<share>/<remedy>/ (the synthetic remedies' curves)
CURVE_FOLDER = "classifier_curve"


@dataclass(frozen=True)
class WorthN:
    """What a remedy's synthetic images were worth in real minority training images, on one score."""

    remedy: str  # the remedy's name, for the sentence
    metric: str  # "balanced_accuracy" or "recall_<class>"
    n: int  # real minority training images of the remedy (and of real_only at the point it is compared with)
    helps: bool  # the 95% interval of remedy - real_only at n (paired) lies above 0
    difference: float  # remedy - real_only at n (seed means on the whole test split)
    difference_ci: tuple[float, float]  # its 95% bootstrap interval (test images resampled, the seed mean)
    equivalent_n: float | None  # N*: real minority images for real_only to reach the remedy's score (None: no help)
    worth: float | None  # N* - n, at least 0 (None: no help); inf where the extrapolated curve never reaches it
    ci_low: float | None  # 95% bootstrap interval of worth
    ci_high: float | None
    extrapolated: bool  # N* lies beyond the largest measured point (the curve extended in log n)
    below_range: bool  # the remedy's score lies under the curve's smallest point: N* clamped to it
    largest_n: int  # the largest measured point of the curve
    subject: str = "minority"  # what the images are of, for the sentence ("nodule")

    def sentence(self) -> str:
        """The result in plain words, e.g. "vae_classical did as much as about 120 more real nodule images would
        have (balanced accuracy; 95% CI 60-210; extrapolated beyond the largest measured point, 256)"."""
        images = f"real {self.subject} images"
        what = self.metric.replace("_", " ")
        if not self.helps or self.worth is None or self.ci_low is None or self.ci_high is None:
            low, high = self.difference_ci
            return (
                f"{self.remedy} does not help: at {self.n} {images} its {what} is not above real_only's "
                f"(difference {self.difference:+.3f}, 95% CI {low:+.3f} to {high:+.3f})"
            )
        notes = [what, f"95% CI {_about(self.ci_low)}-{_about(self.ci_high)}"]
        if self.extrapolated:
            notes.append(f"extrapolated beyond the largest measured point, {self.largest_n}")
        if self.below_range:
            notes.append("under the curve's smallest point")
        if math.isinf(self.worth):
            head = f"{self.remedy} did more than real_only reaches with any number of {images} (its curve stops rising)"
        else:
            head = f"{self.remedy} did as much as about {_about(self.worth)} more {images} would have"
        return f"{head} ({'; '.join(notes)})"


def _about(x: float) -> str:
    """A count as said aloud: whole numbers under 100, two significant figures above; "unbounded" for inf."""
    if math.isinf(x):
        return "unbounded"
    if abs(x) < 100:
        return str(round(x))
    return f"{round(x, -int(math.floor(math.log10(abs(x)))) + 1):.0f}"


def monotone(scores: np.ndarray) -> np.ndarray:
    """The non-decreasing least-squares fit to ``scores`` (isotonic regression, equal weights), one per row of
    ``(R, k)`` or of one ``(k,)`` curve: at point i, the largest over a <= i of the smallest over b >= i of the
    mean of scores a..b (the max-min formula; O(k^3) per row, for the few points of a learning curve)."""
    y = np.atleast_2d(np.asarray(scores, dtype=float))
    k = y.shape[1]
    total = np.concatenate([np.zeros((len(y), 1)), np.cumsum(y, axis=1)], axis=1)
    length = np.maximum(np.arange(k)[None, :] - np.arange(k)[:, None] + 1, 1)  # a x b: points in a..b
    means = (total[:, None, 1:] - total[:, :k, None]) / length  # rows x a x b, meaningful for a <= b
    fitted = np.stack([means[:, : i + 1, i:].min(axis=2).max(axis=1) for i in range(k)], axis=1)
    return fitted.reshape(np.shape(scores))


def equivalent_n(ns: Sequence[float], scores: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    """The smallest number of images at which a learning curve reaches ``target``.

    Args:
        ns: the measured numbers of images, ascending (at least two).
        scores: the curve's scores at ``ns``, non-decreasing: ``(k,)`` or one row per curve ``(R, k)``.
        target: the score to reach: a scalar or ``(R,)``.

    Returns ``(N*, extrapolated, below_range)``, each of the shape of ``target`` and the rows broadcast: ``N*``
    linear in ``log n`` between the points; beyond the last one on the line through the last two (``extrapolated``;
    inf if they are level); ``ns[0]`` when ``target`` is under the first point (``below_range``).
    """
    x = np.log(np.asarray(ns, dtype=float))
    shape = np.broadcast_shapes(np.shape(scores)[:-1], np.shape(target))
    rows = int(np.prod(shape, dtype=int))
    m = np.broadcast_to(np.asarray(scores, dtype=float), (*shape, len(x))).reshape(rows, len(x))
    y = np.broadcast_to(np.asarray(target, dtype=float), shape).reshape(rows)
    reached = m >= y[:, None]
    first = np.where(reached.any(1), reached.argmax(1), len(x))  # the first point at or above the target
    below = y < m[:, 0]
    lo = np.clip(first - 1, 0, len(x) - 2)  # the segment [lo, lo + 1]: the one crossed, or the last two
    x0, x1, m0, m1 = x[lo], x[lo + 1], m[np.arange(rows), lo], m[np.arange(rows), lo + 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a level or near-level end: inf
        log_n = np.where(m1 > m0, x0 + (y - m0) * (x1 - x0) / (m1 - m0), np.inf)
        n_star = np.exp(np.where(first == 0, x[0], log_n))
    return n_star.reshape(shape), (first == len(x)).reshape(shape), below.reshape(shape)


def score_draws(p: Predictions, counts: Sequence[np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The scores of one set of predictions, per seed: ``(names, whole, draws)`` with ``names`` =
    ``["balanced_accuracy", "recall_<class>", ...]``, ``whole`` ``(seeds, scores)`` on the test split as it is and
    ``draws`` ``(resamples, seeds, scores)`` on each resample of ``counts`` (:func:`pipeline.metrics.
    resample_counts`, every class drawn; the seed mean of ``draws[:, :, 0]`` is :func:`pipeline.metrics.
    bootstrap_draws`' balanced accuracy). Each seed is decided at its own threshold (NaN: arg-max)."""
    labels, classes, positive = p["labels"], [str(c) for c in p["classes"]], int(p["positive"])
    k, n, seeds = len(classes), len(labels), len(p["proba"])
    onehot = np.eye(k)[labels]
    hits = np.concatenate(
        [
            onehot * (predict_labels(proba, None if np.isnan(t) else float(t), positive) == labels)[:, None]
            for proba, t in zip(p["proba"], p["thresholds"], strict=True)
        ],
        axis=1,
    )  # images x (seeds x classes): 1 where the seed's model got the image of that class right

    def scores(weights: np.ndarray) -> np.ndarray:  # (R, images): how often each is counted -> (R, seeds, scores)
        support = (weights @ onehot)[:, None, :]
        recall = (weights @ hits).reshape(len(weights), seeds, k) / np.where(support > 0, support, 1.0)
        return np.concatenate([recall.mean(2, keepdims=True), recall], axis=2)

    block = max(1, 2**22 // max(n, 1))  # resamples per block: at most about 4 M counts at a time
    parts = [scores(np.stack(counts[i : i + block]).astype(float)) for i in range(0, len(counts), block)]
    names = ["balanced_accuracy", *(f"recall_{c}" for c in classes)]
    return names, scores(np.ones((1, n)))[0], np.concatenate(parts) if parts else np.zeros((0, seeds, k + 1))


def _check(curve: Mapping[int, Predictions], remedy: Predictions, n: int) -> None:
    """A ValueError naming what does not fit: the curve, the remedy's n, the test images, classes or seeds."""
    if len(curve) < 2:
        raise ValueError(f"the learning curve needs at least two numbers of images, got {sorted(curve)}")
    if n not in curve:
        raise ValueError(f"n={n} is not a point of real_only's curve {sorted(curve)}: the remedy is compared there")
    labels, seeds = remedy["labels"], len(remedy["proba"])
    for point, p in curve.items():
        if not np.array_equal(p["labels"], labels):
            raise ValueError(f"real_only at n={point} was scored on other test images than the remedy")
        if not np.array_equal(p["classes"], remedy["classes"]):
            raise ValueError(
                f"real_only at n={point} has classes {list(p['classes'])}, the remedy {list(remedy['classes'])}"
            )
        if len(p["proba"]) != seeds:
            raise ValueError(f"real_only at n={point} has {len(p['proba'])} seeds, the remedy {seeds}: pair them")
    missing = set(range(len(remedy["classes"]))) - set(np.unique(labels).tolist())
    if missing:
        raise ValueError(f"the test labels have no image of class {sorted(missing)}: no balanced accuracy")


@dataclass(frozen=True)
class _Curves:
    """Every score of the curve and the remedy, on the test split as it is and on each bootstrap draw."""

    names: list[str]  # the scores: "balanced_accuracy", "recall_<class>", ...
    ns: list[int]  # the curve's numbers of images, ascending
    curve: np.ndarray  # scores x points: real_only's seed mean
    curve_draws: np.ndarray  # draws x scores x points
    remedy: np.ndarray  # seeds x scores
    remedy_draws: np.ndarray  # draws x scores
    base: np.ndarray  # seeds x scores: real_only at the remedy's n
    base_draws: np.ndarray  # draws x scores


def _curves(curve: Mapping[int, Predictions], remedy: Predictions, n: int, n_resamples: int, seed: int) -> _Curves:
    """The scores of every prediction set on the same resamples of the test images, each draw the mean over the
    seeds: as :func:`pipeline.metrics.bootstrap_draws` draws them, so that the remedy's paired difference to
    real_only is the one the rest of the report gives (resampling three seeds as well would widen it by the seeds'
    spread, which the report gives as the SD)."""
    counts = resample_counts(remedy["labels"], len(remedy["classes"]), n_resamples, seed)
    ns = sorted(curve)
    names, remedy_whole, remedy_draws = score_draws(remedy, counts)
    points = [score_draws(curve[point], counts)[1:] for point in ns]

    def seed_mean(draws: np.ndarray) -> np.ndarray:  # (draws, seeds, scores) -> (draws, scores)
        return draws.mean(1)

    base_whole, base_draws = points[ns.index(n)]
    return _Curves(
        names=names,
        ns=ns,
        curve=np.stack([whole.mean(0) for whole, _ in points], axis=1),
        curve_draws=np.stack([seed_mean(draws) for _, draws in points], axis=2),
        remedy=remedy_whole,
        remedy_draws=seed_mean(remedy_draws),
        base=base_whole,
        base_draws=seed_mean(base_draws),
    )


def _worth(c: _Curves, j: int, n: int, name: str, subject: str) -> WorthN:
    """:class:`WorthN` on score ``j`` of ``c``: N* of the remedy's score on real_only's monotone curve, and on
    every draw for the interval; no number unless the remedy beats real_only at ``n``."""
    versus = paired_difference(c.remedy_draws[:, j], c.base_draws[:, j], c.remedy[:, j], c.base[:, j])
    helps = versus["ci_low"] > 0
    n_star, extrapolated, below = equivalent_n(c.ns, monotone(c.curve[j]), c.remedy[:, j].mean())
    draws = np.maximum(equivalent_n(c.ns, monotone(c.curve_draws[:, j]), c.remedy_draws[:, j])[0] - n, 0.0)
    # the interval's ends are draws themselves (not interpolated between two): an infinite draw stays infinite
    return WorthN(
        remedy=name,
        metric=c.names[j],
        n=n,
        helps=helps,
        difference=versus["difference"],
        difference_ci=(versus["ci_low"], versus["ci_high"]),
        equivalent_n=float(n_star) if helps else None,
        worth=max(float(n_star) - n, 0.0) if helps else None,
        ci_low=float(np.percentile(draws, 2.5, method="lower")) if helps else None,
        ci_high=float(np.percentile(draws, 97.5, method="higher")) if helps else None,
        extrapolated=bool(extrapolated) and helps,
        below_range=bool(below) and helps,
        largest_n=c.ns[-1],
        subject=subject,
    )


def worth_per_class(
    curve: Mapping[int, Predictions],
    remedy: Predictions,
    n: int,
    metrics: Sequence[str] | None = None,
    name: str = "remedy",
    subject: str = "minority",
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, WorthN]:
    """:class:`WorthN` of ``remedy`` (its predictions at ``n`` real minority images) on real_only's ``curve``
    (``{n_i: predictions}``, the same test images and number of seeds), for each of ``metrics`` (default: the
    balanced accuracy and every class's recall; e.g. ``["balanced_accuracy", "recall_nodule"]``). ``n_resamples``
    bootstrap draws from ``seed``; ``name`` and ``subject`` word the sentence."""
    _check(curve, remedy, n)
    classes = [str(c) for c in remedy["classes"]]
    names = ["balanced_accuracy", *(f"recall_{c}" for c in classes)]
    for metric in metrics or []:
        if metric not in names:
            raise ValueError(f"metric must be one of {', '.join(names)}, got {metric!r}")
    c = _curves(curve, remedy, n, n_resamples, seed)
    return {metric: _worth(c, names.index(metric), n, name, subject) for metric in metrics or names}


def worth_n(
    curve: Mapping[int, Predictions],
    remedy: Predictions,
    n: int,
    metric: str = "balanced_accuracy",
    name: str = "remedy",
    subject: str = "minority",
    n_resamples: int = 1000,
    seed: int = 0,
) -> WorthN:
    """:class:`WorthN` of ``remedy`` on one score (:func:`worth_per_class` for several)."""
    return worth_per_class(curve, remedy, n, [metric], name, subject, n_resamples, seed)[metric]


def minority_images(counts: dict[str, int]) -> int:
    """Training images of the minority classes (:func:`pipeline.metrics.minority_classes` of ``counts``, images per
    class): the curve's x."""
    return sum(counts[name] for name in minority_classes(counts))


def minority_share(train: SplitData, share: float, seed: int = 0) -> SplitData:
    """``train`` with a seeded ``share`` of each minority class's patients (every class smaller than the largest;
    at least one patient each), the majority class whole: a point of the minority learning curve. One permutation per
    class from ``seed``, so a smaller share keeps a subset of a larger one's patients. A patient's images of other
    classes stay."""
    minorities = minority_classes(train.counts())
    keep = np.ones(len(train), dtype=bool)
    rng = np.random.default_rng(seed)
    for k, name in enumerate(train.classes):
        if name not in minorities:
            continue
        of_class = train.labels == k
        patients = np.array(sorted(set(train.patients[of_class].tolist())))
        kept = patients[rng.permutation(len(patients))[: max(1, math.ceil(share * len(patients)))]]
        keep &= ~(of_class & ~np.isin(train.patients, kept))
    return train.select(keep)
