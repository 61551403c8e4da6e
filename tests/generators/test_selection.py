"""The classifier filter: a classifier of the real images keeps the synthetic images of a class that show it."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.generators.sampling import sample_images
from pipeline.generators.selection import ClassifierFilter
from pipeline.models.classifier import fit_classifier
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
    cfg = dataclasses.replace(GEN, filter="classifier")
    every_other = lambda images: np.arange(len(images)) % 2 == 0  # noqa: E731
    images, counts = sample_images(gen, 1, 10, 0, cfg, real, accept=every_other)
    assert len(images) <= 10 and counts["kept"] == len(images) and counts["dropped"] > 0
    again, _ = sample_images(gen, 1, 10, 0, cfg, real, accept=every_other)
    np.testing.assert_array_equal(images, again)  # seeded
    with pytest.raises(ValueError, match="needs the caller's test"):
        sample_images(gen, 1, 10, 0, cfg, real)
