"""Selection of synthetic images: the classifier filter (a classifier of the real images keeps the synthetic images of
a class that show it), the manifold filter (it keeps those inside a real training image's k-NN ball in that
classifier's features) and their combination in the sampling rounds."""

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import pairwise_distances

from pipeline.generators import selection
from pipeline.generators.sampling import sample_images
from pipeline.generators.selection import ClassifierFilter, ManifoldFilter, features
from pipeline.io.arrays import SplitData
from pipeline.models.classifier import build_classifier, fit_classifier
from pipeline.strategies import Recipe
from tests.conftest import make_split
from tests.generators.test_sampling import GEN, untrained
from tests.test_train_classifier import CFG

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def real_classifier():
    train, val = make_split(80, seed=0), make_split(40, seed=1, prefix="V")  # class b: a bright square
    model, _ = fit_classifier(Recipe(train), val, dataclasses.replace(CFG, epochs=10), 0, CPU)
    return model, val


def test_the_filter_drops_images_of_the_wrong_class_and_keeps_the_right_ones(real_classifier):
    """A toy pool of "class b" images, half of them really class a: >= 90 % of those dropped, >= 80 % of the true
    ones kept."""
    model, val = real_classifier
    pool = make_split(200, seed=7, prefix="S")  # labels alternate a, b: the a ones are the mislabelled half
    test = ClassifierFilter(model, val, keep=0.95, device=CPU).accept(1)
    kept = test(pool.images)
    wrong, right = pool.labels == 0, pool.labels == 1
    assert kept[wrong].mean() <= 0.1 and kept[right].mean() >= 0.8, (kept[wrong].mean(), kept[right].mean())


def test_the_threshold_keeps_the_asked_share_of_real_validation_images(real_classifier):
    model, val = real_classifier
    selection = ClassifierFilter(model, val, keep=0.75, device=CPU)
    for label in (0, 1):
        share = selection.accept(label)(val.images[val.labels == label]).mean()
        assert share == pytest.approx(0.75, abs=0.06)
    with pytest.raises(ValueError, match="keep must be in"):
        ClassifierFilter(model, val, keep=0.0, device=CPU)


def test_a_class_missing_from_validation_is_a_named_error(real_classifier):
    model, val = real_classifier
    only_a = dataclasses.replace(
        val,
        images=val.images[val.labels == 0],
        labels=val.labels[val.labels == 0],
        patients=val.patients[val.labels == 0],
    )
    with pytest.raises(ValueError, match="no image of class b"):
        ClassifierFilter(model, only_a, keep=0.9, device=CPU)


def test_sample_images_keeps_only_what_the_test_accepts_and_counts_the_rest():
    gen, real = untrained(), make_split(8).images
    cfg = dataclasses.replace(GEN, filter=("classifier",))
    every_other = {"classifier": lambda images: np.arange(len(images)) % 2 == 0}
    images, counts = sample_images(gen, 1, 10, 0, cfg, real, accept=every_other)
    assert len(images) <= 10 and counts["kept"] == len(images) and counts["dropped"] > 0
    assert counts["filters"]["classifier"]["dropped"] == counts["dropped"]
    again, _ = sample_images(gen, 1, 10, 0, cfg, real, accept=every_other)
    np.testing.assert_array_equal(images, again)  # seeded
    with pytest.raises(ValueError, match="filter classifier needs the caller's test"):
        sample_images(gen, 1, 10, 0, cfg, real)


@pytest.mark.parametrize("network, shape", [("resnet_small", (1, 16, 16)), ("densenet121", (1, 32, 32))])
def test_features_are_what_the_last_linear_layer_maps_to_the_logits(network, shape):
    torch.manual_seed(0)
    model = build_classifier(shape, 3, network, (4, 8, 8, 8), 1).eval()
    images = np.random.default_rng(6).uniform(size=(5, *shape)).astype(np.float32)
    feats = features(model, images, "cpu")
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert feats.shape == (5, last.in_features)
    with torch.no_grad():
        logits = model(torch.from_numpy(images))
        assert torch.allclose(last(torch.from_numpy(feats).float()), logits, atol=1e-5)


def pixel_features() -> torch.nn.Module:
    """A stub feature network: its last linear layer's input, the feature vector, is the flattened image."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()


def clustered(n: int, centre: float, seed: int) -> np.ndarray:
    """``n`` 2 x 2 images whose pixels scatter around ``centre`` (a cluster in the 4-dimensional pixel space)."""
    return np.random.default_rng(seed).normal(centre, 0.03, (n, 1, 2, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def toy_train() -> SplitData:
    """Real training images: class a clustered around 0.8, class b around 0.2."""
    images = np.concatenate([clustered(40, 0.8, 0), clustered(40, 0.2, 1)])
    labels = np.repeat([0, 1], 40)
    return SplitData(images, labels, np.array([f"P{i}" for i in range(80)]), ("a", "b"))


def test_the_manifold_filter_keeps_class_b_images_near_real_ones_and_drops_far_ones(toy_train):
    """A toy pool of "class b" images, half in the real class b cluster and half far outside it: >= 90 % of the
    outside ones dropped, >= 80 % of the inside ones kept."""
    manifold = ManifoldFilter(pixel_features(), toy_train, k=5, device=CPU)
    test = manifold.accept(1)
    inside, outside = test(clustered(100, 0.2, 2)), test(clustered(100, 0.5, 3))
    assert inside.mean() >= 0.8 and outside.mean() <= 0.1, (inside.mean(), outside.mean())
    assert not test(clustered(20, 0.8, 4)).any()  # class a's real cluster is off class b's manifold
    assert manifold.describe(1)["k"] == 5 and manifold.describe(1)["radius_median"] > 0


@pytest.mark.parametrize("label", [0, 1])
def test_a_copy_of_a_real_training_image_is_always_kept(toy_train, label):
    test = ManifoldFilter(pixel_features(), toy_train, k=1, device=CPU).accept(label)
    assert test(toy_train.images[toy_train.labels == label]).all()  # at distance 0 from its own ball's centre


def test_the_manifold_test_over_blocks_of_real_images_is_the_test_over_all(toy_train, monkeypatch):
    """The distances to the real images are taken REAL_BLOCK real images at a time: the same verdicts (and bits)."""
    manifold = ManifoldFilter(pixel_features(), toy_train, k=3, device=CPU)
    made = np.concatenate([clustered(50, 0.2, 5), clustered(50, 0.35, 6)])
    real, radii = manifold.real[1], manifold.radii[1]
    at_once = (pairwise_distances(features(manifold.model, made, CPU), real) <= radii[None, :]).any(axis=1)
    assert 0 < at_once.sum() < len(made)  # some in, some out
    monkeypatch.setattr(selection, "REAL_BLOCK", 7)  # 40 real images of class b: 6 blocks, the last smaller
    np.testing.assert_array_equal(manifold.accept(1)(made), at_once)


def test_the_manifold_balls_are_the_k_nearest_neighbour_radii_of_the_class(toy_train):
    manifold = ManifoldFilter(pixel_features(), toy_train, k=3, device=CPU)
    own = toy_train.images[toy_train.labels == 1].reshape(40, -1).astype(np.float64)
    distances = np.linalg.norm(own[:, None] - own[None], axis=2)
    np.testing.assert_allclose(manifold.radii[1], np.sort(distances, axis=1)[:, 3], rtol=1e-6)
    bigger = ManifoldFilter(pixel_features(), toy_train, k=10, device=CPU)
    assert (bigger.radii[1] >= manifold.radii[1]).all()  # a larger k widens every ball


def test_a_small_class_uses_a_smaller_k_and_a_single_image_is_a_named_error(toy_train):
    keep = np.r_[np.arange(40), 40, 41, 42]  # class b: three images
    small = dataclasses.replace(toy_train, images=toy_train.images[keep], labels=toy_train.labels[keep])
    assert ManifoldFilter(pixel_features(), small, k=5, device=CPU).k == {0: 5, 1: 2}
    keep = np.r_[np.arange(40), 40]
    single = dataclasses.replace(toy_train, images=toy_train.images[keep], labels=toy_train.labels[keep])
    with pytest.raises(ValueError, match="class b has 1 training image"):
        ManifoldFilter(pixel_features(), single, k=5, device=CPU)
    with pytest.raises(ValueError, match="k must be at least 1"):
        ManifoldFilter(pixel_features(), toy_train, k=0, device=CPU)


def _by_pixel(position: int, modulus: int):
    """A deterministic stub test: an image passes when a digit of one of its pixels is not a multiple of
    ``modulus`` (about 1 - 1/modulus of random images pass; two such tests are independent)."""
    return lambda images: np.round(images.reshape(len(images), -1)[:, position] * 1e4) % modulus != 0


def test_combined_filters_keep_an_image_only_when_every_filter_accepts_it():
    gen, real = untrained(), make_split(8).images
    tests = {"classifier": _by_pixel(0, 2), "manifold": _by_pixel(1, 2)}
    seen = []
    logged = {**tests, "classifier": lambda images: seen.append(images) or tests["classifier"](images)}
    cfg = dataclasses.replace(GEN, filter=("classifier", "manifold"))
    images, counts = sample_images(gen, 1, 12, 0, cfg, real, accept=logged)
    candidates = np.concatenate(seen)  # the classifier test, applied first, sees every candidate
    both = tests["classifier"](candidates) & tests["manifold"](candidates)
    assert len(images) == 12 and tests["classifier"](images).all() and tests["manifold"](images).all()
    assert counts["candidates"] == len(candidates) and counts["filters"]["classifier"]["tested"] == len(candidates)
    classifier, manifold = counts["filters"]["classifier"], counts["filters"]["manifold"]
    assert manifold["tested"] == classifier["tested"] - classifier["dropped"]  # only what the classifier kept
    assert counts["dropped"] == classifier["dropped"] + manifold["dropped"] == len(candidates) - both.sum()
    assert counts["acceptance_rate"] == pytest.approx(both.mean())
    # each image that passed one test only is left out: the kept images are those passing both, in draw order
    first_rounds = candidates[both][: len(images)]
    np.testing.assert_array_equal(images, first_rounds)


def test_the_order_of_the_list_does_not_change_the_pool():
    gen, real = untrained(), make_split(8).images
    tests = {"classifier": _by_pixel(0, 2), "manifold": _by_pixel(1, 3)}
    one = sample_images(gen, 1, 10, 5, dataclasses.replace(GEN, filter=("classifier", "manifold")), real, accept=tests)
    other = sample_images(
        gen, 1, 10, 5, dataclasses.replace(GEN, filter=("manifold", "classifier")), real, accept=tests
    )
    np.testing.assert_array_equal(one[0], other[0])
    assert one[1] == other[1]
    consistency_too = dataclasses.replace(GEN, filter=("manifold", "consistency", "classifier"))
    applied = sample_images(gen, 1, 10, 5, consistency_too, real, accept=tests)[1]["filters"]
    assert list(applied) == ["consistency", "classifier", "manifold"]  # cheapest first, whatever the list's order


def test_the_manifold_filter_in_a_trained_classifier_s_features(real_classifier):
    """On the features of a classifier trained on real images, the toy pool's mislabelled "class b" images fall off
    class b's manifold and the true ones on it; a copy of a training image is kept."""
    model, _ = real_classifier
    train, pool = make_split(80, seed=0), make_split(200, seed=7, prefix="S")
    test = ManifoldFilter(model, train, k=5, device=CPU).accept(1)
    kept = test(pool.images)
    wrong, right = pool.labels == 0, pool.labels == 1
    assert kept[wrong].mean() <= 0.1 and kept[right].mean() >= 0.8, (kept[wrong].mean(), kept[right].mean())
    assert test(train.images[train.labels == 1]).all()
