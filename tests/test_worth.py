import math

import numpy as np
import pytest
from sklearn.isotonic import isotonic_regression
from sklearn.linear_model import LogisticRegression

from pipeline.metrics import bootstrap_draws, choose_threshold, resample_counts
from pipeline.worth import WorthN, equivalent_n, monotone, score_draws, worth_n, worth_per_class

NS = [10, 20, 40, 80]
CURVE = [0.6, 0.7, 0.8, 0.9]  # linear in log2 n: 0.6 + 0.1 log2(n / 10)


@pytest.mark.parametrize(
    "scores, target, expected, extrapolated, below",
    [
        (CURVE, 0.75, 10 * 2**1.5, False, False),  # between 20 and 40, linear in log n
        (CURVE, 0.8, 40, False, False),  # on a measured point
        ([0.6, 0.7, 0.7, 0.9], 0.7, 20, False, False),  # a level stretch: the smallest n that reaches it
        (CURVE, 0.95, 10 * 2**3.5, True, False),  # beyond the last point: the line through the last two
        ([0.6, 0.7, 0.8, 0.8], 0.85, math.inf, True, False),  # beyond a curve that stopped rising: never
        (CURVE, 0.5, 10, False, True),  # under the first point: clamped to it
        (CURVE, 0.6, 10, False, False),  # on the first point: not under it
    ],
)
def test_equivalent_n_inverts_the_curve_in_log_n(scores, target, expected, extrapolated, below):
    n_star, beyond, under = equivalent_n(NS, np.array(scores), np.float64(target))
    assert float(n_star) == pytest.approx(expected) and bool(beyond) == extrapolated and bool(under) == below


def test_equivalent_n_takes_one_curve_per_row():
    rows = np.array([CURVE, [0.5, 0.6, 0.7, 0.8]])
    n_star, beyond, under = equivalent_n(NS, rows, np.array([0.75, 0.75]))
    assert n_star == pytest.approx([10 * 2**1.5, 10 * 2**2.5]) and not beyond.any() and not under.any()
    n_star, beyond, under = equivalent_n(NS, np.array(CURVE), np.array([0.5, 0.75, 0.95]))  # one curve, 3 targets
    assert n_star == pytest.approx([10, 10 * 2**1.5, 10 * 2**3.5]) and list(beyond) == [False, False, True]
    assert list(under) == [True, False, False]


def test_monotone_is_scikit_learns_isotonic_regression():
    rows = np.random.default_rng(0).random((200, 5))  # mostly out of order
    assert monotone(rows) == pytest.approx(np.array([isotonic_regression(row) for row in rows]))
    assert monotone(np.array(CURVE)) == pytest.approx(CURVE)  # already non-decreasing: kept
    assert monotone(np.array([0.6, 0.8, 0.7, 0.9])) == pytest.approx([0.6, 0.75, 0.75, 0.9])  # a dip pooled


TEST_LABELS = np.repeat([0, 1], 200)  # 200 normal, 200 nodule test images


def _predictions(recalls: list[tuple[float, float]], labels=TEST_LABELS, rng=None) -> dict:
    """A predictions.npz with one seed per ``recalls`` entry, each class's recall exactly that (its first images
    right), or with ``rng`` each image right with that probability; decided by arg-max."""
    k = len(recalls[0])
    proba = []
    for recall in recalls:
        right = np.zeros(len(labels), dtype=bool)
        for c, r in enumerate(recall):
            members = np.flatnonzero(labels == c)
            right[members] = rng.random(len(members)) < r if rng else np.arange(len(members)) < round(r * len(members))
        pred = np.where(right, labels, (labels + 1) % k)
        proba.append(np.eye(k)[pred] * 0.9 + 0.1 / k)
    classes = ["normal", "nodule", "cyst"][:k]
    return {
        "labels": labels,
        "proba": np.stack(proba),
        "thresholds": np.full(len(recalls), np.nan),
        "positive": np.array(1),
        "classes": np.array(classes),
    }


def _exact_curve(seeds: int = 2) -> dict[int, dict]:
    """real_only with balanced accuracy CURVE at NS exactly: normals all right, nodule recall 0.2 ... 0.8."""
    return {n: _predictions([(1.0, 2 * score - 1)] * seeds) for n, score in zip(NS, CURVE, strict=True)}


def test_worth_is_the_exact_inverse_of_a_log_linear_curve():
    result = worth_n(_exact_curve(), _predictions([(1.0, 0.5)] * 2), 10, name="vae", subject="nodule")
    assert result.helps and not result.extrapolated and not result.below_range
    assert result.equivalent_n == pytest.approx(10 * 2**1.5) and result.worth == pytest.approx(10 * 2**1.5 - 10)
    assert result.ci_low <= result.worth <= result.ci_high  # the interval holds the point estimate
    assert result.sentence().startswith("vae did as much as about 18 more real nodule images would have")


def test_beyond_the_largest_point_is_extrapolated_and_flagged():
    result = worth_n(_exact_curve(), _predictions([(1.0, 0.9)] * 2), 80, name="vae")
    assert result.helps and result.extrapolated
    assert result.equivalent_n == pytest.approx(10 * 2**3.5)  # 0.95 on the line through 40 and 80
    assert "extrapolated beyond the largest measured point, 80" in result.sentence()


@pytest.mark.parametrize(
    "recall",
    [
        0.4,  # the same as real_only at n = 20: difference 0
        0.3,  # worse than real_only
    ],
)
def test_a_remedy_that_does_not_beat_real_only_gets_no_number(recall):
    result = worth_n(_exact_curve(), _predictions([(1.0, recall)] * 2), 20, name="vae")
    assert not result.helps and result.worth is None and result.equivalent_n is None and result.ci_low is None
    assert result.sentence().startswith("vae does not help: at 20 real minority images its balanced accuracy")


def test_every_curve_and_the_remedy_share_each_draw():
    """The remedy's predictions are real_only's at 40: on every draw (the same test images, the same seeds) it
    scores what real_only at 40 scores, so N* is 40 on every draw and the interval has no width. Resampled apart,
    the draws would scatter around 40."""
    rng = np.random.default_rng(0)
    curve = {n: _predictions([(0.9, 2 * score - 0.9)] * 3, rng=rng) for n, score in zip(NS, CURVE, strict=True)}
    result = worth_n(curve, curve[40], 20, n_resamples=300)
    assert result.helps and result.equivalent_n == pytest.approx(40)
    assert result.ci_low == pytest.approx(20) and result.ci_high == pytest.approx(20)


def test_score_draws_agree_with_bootstrap_draws():
    """The scores on each resample are the pipeline's: the seed mean of the balanced accuracy is
    bootstrap_draws' (which draws the same resamples from the same labels and seed)."""
    p = _predictions([(0.9, 0.4), (0.8, 0.6)], rng=np.random.default_rng(1))
    names, whole, draws = score_draws(p, resample_counts(p["labels"], 2, 200, seed=3))
    expected = bootstrap_draws(p["labels"], list(p["proba"]), [None, None], ["normal", "nodule"],
                               ["balanced_accuracy", "recall_nodule"], n_resamples=200, seed=3)  # fmt: skip
    assert names == ["balanced_accuracy", "recall_normal", "recall_nodule"]
    assert draws[:, :, 0].mean(1) == pytest.approx(expected["balanced_accuracy"])
    assert draws[:, :, 2].mean(1) == pytest.approx(expected["recall_nodule"])
    assert whole.shape == (2, 3) and draws.shape == (200, 2, 3)


def test_each_minority_class_gets_its_own_worth():
    labels = np.repeat([0, 1, 2], 150)
    curve = {
        n: _predictions([(1.0, 0.2 + 0.2 * i, 0.5)] * 2, labels) for i, n in enumerate(NS)
    }  # the nodule recall rises, the cyst recall stays
    results = worth_per_class(curve, _predictions([(1.0, 0.5, 0.5)] * 2, labels), 10, name="vae")
    assert list(results) == ["balanced_accuracy", "recall_normal", "recall_nodule", "recall_cyst"]
    assert results["recall_nodule"].equivalent_n == pytest.approx(10 * 2**1.5)
    assert not results["recall_cyst"].helps and not results["recall_normal"].helps
    assert results["balanced_accuracy"].helps  # 0.3 more nodule recall is 0.1 more balanced accuracy


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n": 30}, "is not a point of real_only's curve"),  # no real_only at the remedy's n
        ({"curve": {10: None}}, "at least two numbers of images"),  # one point is no curve
        ({"labels": TEST_LABELS[::-1]}, "other test images"),  # real_only scored on other images
        ({"seeds": 3}, "has 2 seeds, the remedy 3"),  # seeds to pair
        ({"classes": np.array(["normal", "cyst"])}, "has classes"),  # real_only of another task
        ({"metric": "recall_tumour"}, "metric must be one of"),
    ],
)
def test_bad_inputs_are_named(change, message):
    curve = _exact_curve()
    for key in ("labels", "classes"):
        if key in change:
            curve[40] = curve[40] | {key: change[key]}
    remedy = _predictions([(1.0, 0.5)] * change.get("seeds", 2))
    with pytest.raises(ValueError, match=message):
        worth_n(change.get("curve", curve), remedy, change.get("n", 10), change.get("metric", "balanced_accuracy"))


def test_a_curve_that_stopped_rising_is_never_reached():
    curve = _exact_curve() | {80: _predictions([(1.0, 0.6)] * 2)}  # 40 and 80 both at 0.8
    result = worth_n(curve, _predictions([(1.0, 0.9)] * 2), 80, name="vae", subject="nodule")
    assert result.helps and result.extrapolated and math.isinf(result.worth) and math.isinf(result.ci_high)
    assert result.sentence().startswith("vae did more than real_only reaches with any number of real nodule images")


def test_the_sentence_rounds_like_speech():
    result = WorthN(
        remedy="vae_classical", metric="balanced_accuracy", n=256, helps=True, difference=0.04,
        difference_ci=(0.01, 0.07), equivalent_n=374.0, worth=118.0, ci_low=61.0, ci_high=212.0,
        extrapolated=True, below_range=False, largest_n=256, subject="nodule",
    )  # fmt: skip
    assert result.sentence() == (
        "vae_classical did as much as about 120 more real nodule images would have (balanced accuracy; "
        "95% CI 61-210; extrapolated beyond the largest measured point, 256)"
    )


# The known answer: the "synthetic" images are extra real images of the minority, so a remedy of 16 real + 16 extra
# images is worth 16. The learner is scikit-learn's logistic regression on the pixels, not the pipeline's CNN
# (fit_classifier): this needs 60 trainings within a few seconds, and the estimator only reads predictions, so
# which learner made them does not matter to it. Each seed draws its own majority and minority images; the
# remedy's extra 16 are other images than real_only's 17th to 32nd, so it is a fair draw, not real_only at 32.
SIDE, BLOB_HEIGHT, MAJORITY, TOY_SEEDS = 12, 1.2, 256, 12
_yy, _xx = np.mgrid[:SIDE, :SIDE] - (SIDE - 1) / 2
BLOB = np.exp(-(_yy**2 + _xx**2) / (2 * 1.2**2)).ravel()  # the minority's faint blob, amid unit pixel noise


def _toy_images(n: int, minority: bool, rng: np.random.Generator) -> np.ndarray:
    """``n`` flattened SIDE x SIDE images of pixel noise; a minority image has the blob added."""
    return rng.normal(0.0, 1.0, (n, SIDE * SIDE)) + (BLOB_HEIGHT * BLOB if minority else 0.0)


def _toy_predictions() -> tuple[dict[int, dict], dict]:
    """real_only's curve at 8, 16, 32 and 64 minority images (against 256 majority ones) and the remedy (16 +
    16 extra real), each seed's threshold chosen on a balanced validation split, scored on 1000 + 1000 test images."""
    rng = np.random.default_rng(0)
    val_x, val_y = np.concatenate([_toy_images(200, False, rng), _toy_images(200, True, rng)]), np.repeat([0, 1], 200)
    test_x, test_y = (
        np.concatenate([_toy_images(1000, False, rng), _toy_images(1000, True, rng)]),
        np.repeat([0, 1], 1000),
    )

    def train(majority: np.ndarray, minority: np.ndarray) -> tuple[np.ndarray, float]:
        x, y = np.concatenate([majority, minority]), np.repeat([0, 1], [len(majority), len(minority)])
        model = LogisticRegression(C=0.01, max_iter=1000).fit(x, y)
        return model.predict_proba(test_x), choose_threshold(val_y, model.predict_proba(val_x), 1)

    runs: dict[int | str, list] = {n: [] for n in (8, 16, 32, 64)} | {"remedy": []}
    for _ in range(TOY_SEEDS):
        majority, minority = _toy_images(MAJORITY, False, rng), _toy_images(80, True, rng)
        for n in (8, 16, 32, 64):
            runs[n].append(train(majority, minority[:n]))
        runs["remedy"].append(train(majority, np.concatenate([minority[:16], minority[64:80]])))
    as_npz = {
        key: {
            "labels": test_y,
            "proba": np.stack([proba for proba, _ in r]),
            "thresholds": np.array([t for _, t in r], dtype=float),
            "positive": np.array(1),
            "classes": np.array(["normal", "blob"]),
        }
        for key, r in runs.items()
    }
    return {n: as_npz[n] for n in (8, 16, 32, 64)}, as_npz["remedy"]


def test_extra_real_images_are_worth_their_count():
    """16 extra real minority images are worth about 16. Tolerance: the 95% interval contains 16 and the point
    estimate is within a factor of 1.5 of it (10.7 to 24, i.e. N* within 27 to 40 for the true 32, a third of a
    doubling either way: the curve's points are doublings apart). The remedy's training sets differ from
    real_only's at 32 by which 16 images they hold, a noise the interval covers through the resampled seeds."""
    curve, remedy = _toy_predictions()
    result = worth_n(curve, remedy, 16, name="extra_real", subject="blob", n_resamples=500)
    assert result.helps and not result.extrapolated and not result.below_range
    assert result.ci_low <= 16 <= result.ci_high
    assert 16 / 1.5 <= result.worth <= 16 * 1.5


def test_minority_share_keeps_whole_patients_nested_and_the_majority_whole():
    from pipeline.io.arrays import SplitData
    from pipeline.worth import minority_images, minority_share

    patients = np.array([f"p{i // 2}" for i in range(200)])  # two images per patient
    labels = np.array([1 if i < 40 else 0 for i in range(200)])  # class "b": 20 patients, 40 images
    train = SplitData(np.zeros((200, 1, 4, 4), np.float32), labels, patients, ("a", "b"))
    half, quarter = minority_share(train, 0.5), minority_share(train, 0.25)
    assert half.counts() == {"a": 160, "b": 20} and quarter.counts() == {"a": 160, "b": 10}
    assert set(quarter.patients[quarter.labels == 1]) < set(half.patients[half.labels == 1])  # nested
    assert minority_images(half.counts()) == 20 and minority_images(train.counts()) == 40
    assert minority_share(train, 0.01).counts()["b"] == 2  # at least one patient
    assert set(minority_share(train, 0.5, seed=1).patients) != set(half.patients)
