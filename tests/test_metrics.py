import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, pairwise_distances, roc_auc_score

from pipeline import metrics
from pipeline.metrics import (
    classification_metrics,
    distance_blocks,
    knn_radii,
    mean_curves,
    minority_classes,
    spans,
    summarise_runs,
)


def test_binary_metrics_match_scikit_learn():
    labels = np.array([0, 0, 0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.3, 0.7], [0.6, 0.4]])
    m = classification_metrics(labels, proba, ("normal", "nodule"))
    pred = proba.argmax(1)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred)) == pytest.approx(0.625)
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, pred)) == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, proba[:, 1]))
    assert m["recall_nodule"] == 0.5 and m["recall_normal"] == 0.75


def test_multiclass_auroc_is_one_vs_rest():
    labels = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[[0, 1, 2, 1, 1, 2]] * 0.8 + 0.2 / 3
    m = classification_metrics(labels, proba, ("a", "b", "c"))
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, proba, multi_class="ovr"))


def test_summary_and_minorities():
    s = summarise_runs([{"x": 1.0}, {"x": 3.0}])
    assert s == {"x": 2.0, "x_std": pytest.approx(np.sqrt(2))}
    assert minority_classes({"a": 10, "b": 3, "c": 10}) == ["b"]


def test_per_class_metrics_auprc_and_confusion_match_scikit_learn():
    from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    labels = rng.integers(3, size=60)
    proba = rng.dirichlet(np.ones(3), size=60) + np.eye(3)[labels] * 0.3
    proba /= proba.sum(1, keepdims=True)
    m = classification_metrics(labels, proba, ("a", "b", "c"))
    precision, recall, f1, _ = precision_recall_fscore_support(labels, proba.argmax(1), zero_division=0)
    for k, name in enumerate("abc"):
        assert m[f"precision_{name}"] == pytest.approx(precision[k]) and m[f"f1_{name}"] == pytest.approx(f1[k])
        assert m[f"recall_{name}"] == pytest.approx(recall[k])
        assert m[f"auprc_{name}"] == pytest.approx(average_precision_score(labels == k, proba[:, k]))
    assert m["confusion_matrix"] == confusion_matrix(labels, proba.argmax(1)).tolist()


def test_threshold_is_chosen_for_balanced_accuracy_and_applied_to_the_minority_class():
    from pipeline.metrics import choose_threshold, predict_labels

    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1])  # class 0 is the minority and the "positive" one
    p0 = np.array([0.35, 0.30, 0.2, 0.1, 0.25, 0.05, 0.15, 0.1])  # the minority never reaches 0.5
    proba = np.stack([p0, 1 - p0], 1)
    assert classification_metrics(labels, proba, ("m", "n"))["recall_m"] == 0.0  # argmax misses it
    threshold = choose_threshold(labels, proba, positive=0)
    assert 0.25 < threshold < 0.30  # between the highest majority score and the lowest minority score
    assert predict_labels(proba, threshold, 0).tolist() == labels.tolist()
    assert classification_metrics(labels, proba, ("m", "n"), threshold, 0)["balanced_accuracy"] == 1.0
    assert choose_threshold(np.array([0, 1, 2]), np.eye(3), positive=0) is None  # several classes: argmax


def test_bootstrap_intervals_use_the_fast_metrics_faithfully():
    from pipeline.metrics import _resample_metrics, bootstrap_ci, predict_labels

    rng = np.random.default_rng(1)
    labels = (rng.random(120) > 0.2).astype(int)
    runs = [np.stack([1 - q, q], 1) for q in (np.clip(labels * 0.4 + rng.random(120) * 0.6, 0, 1) for _ in range(3))]
    full = classification_metrics(labels, runs[0], ("a", "b"), 0.5, 0)
    fast = _resample_metrics(labels, predict_labels(runs[0], 0.5, 0), runs[0], ("a", "b"))
    assert fast == pytest.approx({k: full[k] for k in fast})
    keys = ["balanced_accuracy", "auroc", "recall_a"]
    ci = bootstrap_ci(labels, runs, [0.5] * 3, ("a", "b"), keys, n_resamples=300, positive=0)
    means = {k: np.mean([classification_metrics(labels, p, ("a", "b"), 0.5, 0)[k] for p in runs]) for k in keys}
    for k in keys:
        low, high = ci[k]
        assert low < means[k] < high and high - low < 0.3
    assert ci == bootstrap_ci(labels, runs, [0.5] * 3, ("a", "b"), keys, n_resamples=300, positive=0)  # seeded
    # three classes: the rank-based one-against-the-rest AUROC is scikit-learn's, ties included
    labels3 = rng.integers(0, 3, 90)
    proba3 = np.round(np.eye(3)[labels3] * 0.5 + rng.random((90, 3)), 1)  # rounded: many ties
    proba3 /= proba3.sum(1, keepdims=True)
    full3 = classification_metrics(labels3, proba3, ("a", "b", "c"))
    fast3 = _resample_metrics(labels3, proba3.argmax(1), proba3, ("a", "b", "c"))
    assert fast3 == pytest.approx({k: full3[k] for k in fast3})


@pytest.mark.parametrize("classes", [("a", "b"), ("a", "b", "c")])  # binary; one class against the rest
def test_bootstrap_draws_by_counts_equal_metrics_of_the_resampled_images(classes):
    """A resample is computed as the number of times it draws each image (one matrix product for all of them): the
    same numbers as the metrics of the resampled images themselves, resamples missing a class left out."""
    from pipeline.metrics import _resample_metrics, bootstrap_draws, predict_labels

    rng = np.random.default_rng(4)
    k = len(classes)
    labels = rng.permutation(np.repeat(np.arange(k), [40 - 3 * (k - 1)] + [3] * (k - 1)))  # 3 images a minority class
    runs = [np.round(np.eye(k)[labels] * 0.4 + rng.random((40, k)), 1) for _ in range(2)]  # rounded: ties
    runs = [p / p.sum(1, keepdims=True) for p in runs]
    keys = ["balanced_accuracy", "auroc", "macro_f1", "worst_recall", "accuracy", f"recall_{classes[-1]}"]
    thresholds = [0.5, 0.4] if k == 2 else [None, None]
    draws = bootstrap_draws(labels, runs, thresholds, classes, keys, n_resamples=200, seed=3, positive=1)
    expected = {key: [] for key in keys}
    resampler = np.random.default_rng(3)
    for _ in range(200):
        idx = resampler.integers(40, size=40)
        if len(np.unique(labels[idx])) < k:
            continue
        metrics = [
            _resample_metrics(labels[idx], predict_labels(p, t, 1)[idx], p[idx], classes)
            for p, t in zip(runs, thresholds, strict=True)
        ]
        for key in keys:
            expected[key].append(np.mean([m[key] for m in metrics]))
    assert 150 < len(expected["auroc"]) < 200  # a few resamples miss a minority class and are left out
    for key in keys:
        np.testing.assert_allclose(draws[key], expected[key], rtol=0, atol=1e-12)


def test_bootstrap_draws_are_paired_between_strategies_and_the_paired_test_sees_a_real_difference():
    from scipy.stats import ttest_rel

    from pipeline.metrics import bootstrap_draws, paired_difference

    rng = np.random.default_rng(0)
    labels = np.array([0] * 60 + [1] * 20)
    good = np.stack([1 - labels * 0.8 - rng.uniform(0, 0.1, 80), labels * 0.8 + rng.uniform(0, 0.1, 80)], 1)
    noisy = np.clip(good + rng.normal(0, 0.4, good.shape), 0.01, 1)
    noisy /= noisy.sum(1, keepdims=True)
    draw = lambda p: bootstrap_draws(labels, [p], [None], ("a", "b"), ["balanced_accuracy"], 300)  # noqa: E731
    a, b = draw(good)["balanced_accuracy"], draw(noisy)["balanced_accuracy"]
    same = paired_difference(a, a, np.array([0.9, 0.8]), np.array([0.9, 0.8]))
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0 and same["p_bootstrap"] == 1.0
    assert same["p_seeds"] is None  # no variation between seeds: no t-test (null in metrics.json)
    better = paired_difference(a, b, np.array([0.95, 0.9, 0.92]), np.array([0.7, 0.72, 0.6]))
    assert 0 < better["ci_low"] <= better["ci_high"] and better["p_bootstrap"] < 0.05
    assert better["p_seeds"] == pytest.approx(ttest_rel([0.95, 0.9, 0.92], [0.7, 0.72, 0.6]).pvalue)
    assert better["difference"] == pytest.approx(np.mean([0.25, 0.18, 0.32]))


def test_mean_curves_average_roc_and_interpolated_precision_over_runs():
    labels = np.array([0, 0, 1, 1])
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
    mixed = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])  # one positive ranked below a negative
    grid = np.linspace(0, 1, 5)
    tpr, precision = mean_curves(labels, [perfect], 1, grid)
    assert tpr.tolist() == [1.0] * 5 and precision.tolist() == [1.0] * 5
    tpr, precision = mean_curves(labels, [mixed], 1, grid)
    assert tpr.tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert precision.tolist() == pytest.approx([1, 1, 1, 2 / 3, 2 / 3])  # best precision at recall >= r
    tpr, _ = mean_curves(labels, [perfect, mixed], 1, grid)
    assert tpr.tolist() == [0.75, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "labels, pred",
    [
        ([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 2]),  # three classes, some errors
        ([0, 0, 1, 1], [2, 2, 1, 1]),  # a predicted class absent from the labels
        ([0, 0, 0], [0, 1, 0]),  # a single class present
    ],
)
def test_balanced_accuracy_is_scikit_learns(labels, pred):
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    from pipeline.metrics import balanced_accuracy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(labels, pred)
    assert balanced_accuracy(np.array(labels), np.array(pred)) == pytest.approx(expected)


def test_knn_radii_are_each_point_s_distance_to_its_k_th_nearest_other_point():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(9, 4))
    brute = np.linalg.norm(points[:, None] - points[None], axis=2)
    for k in (1, 3, 8):
        expected = [np.sort(np.delete(row, i))[k - 1] for i, row in enumerate(brute)]  # itself left out
        np.testing.assert_allclose(knn_radii(points, k), expected)
    with pytest.raises(ValueError, match="k must be between 1"):
        knn_radii(points, 9)  # only 8 other points


@pytest.mark.parametrize(
    "n, most, sizes",
    [
        (1026, 1024, [513, 513]),  # no sliver of 2 rows after a full span
        (10, 3, [2, 3, 2, 3]),  # four spans of 2 or 3
        (5, 10, [5]),  # one span
        (0, 4, []),  # nothing to cut
    ],
)
def test_spans_cut_rows_evenly(n, most, sizes):
    cut = spans(n, most)
    assert [s.stop - s.start for s in cut] == sizes
    assert [i for s in cut for i in range(s.start, s.stop)] == list(range(n))


def test_distance_blocks_cover_the_whole_matrix_with_its_numbers():
    rng = np.random.default_rng(5)
    q, r = rng.normal(size=(300, 16)), rng.normal(size=(250, 16))
    whole = np.full((300, 250), np.nan)
    for rows, cols, block in distance_blocks(q, r, rows=120):
        assert block.shape == (rows.stop - rows.start, cols.stop - cols.start) and block.shape[0] <= 120
        whole[rows, cols] = block
    np.testing.assert_allclose(whole, pairwise_distances(q, r), rtol=1e-12)  # BLAS may round blocks in another order
    # prepare: rows read as they are stored, compared as float64 rows
    images = q.astype(np.float32).reshape(300, 1, 4, 4)
    flat = [b for *_, b in distance_blocks(images, images, prepare=lambda x: x.reshape(len(x), -1).astype(float))]
    assert len(flat) == 1 and flat[0].shape == (300, 300)  # 300 rows of 16 values: one block


def test_knn_radii_in_blocks_equal_those_of_the_whole_matrix():
    points = np.random.default_rng(6).normal(size=(700, 8))
    for k in (1, 5):
        np.testing.assert_allclose(knn_radii(points, k, rows=128), knn_radii(points, k), rtol=1e-12)
    assert knn_radii(points, 5).shape == (700,)


def test_block_rows_bound_the_block_for_wide_rows(monkeypatch):
    monkeypatch.setattr(metrics, "CHUNK_BYTES", 8 * 1000 * 50)
    assert metrics.block_rows(1000) == 50 and metrics.block_rows(10) == metrics.BLOCK_ROWS
    assert metrics.block_rows(10**9) == 1


def test_cross_fitting_the_threshold_removes_the_optimism_of_tuning_on_the_scored_images():
    """Probabilities with no signal: a threshold tuned on the images it scores finds a lucky cut (balanced accuracy
    well above 0.5); tuned on one half and scored on the other it does not."""
    from pipeline.metrics import balanced_accuracy, choose_threshold, crossfit_balanced_accuracy, predict_labels

    rng = np.random.default_rng(0)
    tuned, crossfit = [], []
    for _ in range(40):
        labels = np.array([0] * 40 + [1] * 10)
        p1 = rng.uniform(size=50)
        proba = np.stack([1 - p1, p1], axis=1)
        threshold = choose_threshold(labels, proba, 1)
        tuned.append(balanced_accuracy(labels, predict_labels(proba, threshold, 1)))
        crossfit.append(crossfit_balanced_accuracy(labels, proba, 1))
    assert np.mean(tuned) > 0.57 and abs(np.mean(crossfit) - 0.5) < 0.04  # 0.60 and 0.49 here
