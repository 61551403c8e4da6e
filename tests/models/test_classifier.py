import dataclasses
import functools

import numpy as np
import pytest
import torch

import pipeline.generators.selection as selection
import pipeline.models.classifier as classifier
from pipeline.models.classifier import NETWORKS, build_classifier, fit_classifier, predict_proba
from pipeline.strategies import training_recipe
from tests.conftest import classifier_config, make_split


@pytest.mark.parametrize(
    "network, shape",
    [
        ("resnet_small", (1, 28, 28)),  # the default, 2D
        ("resnet_small", (1, 16, 16, 16)),  # 3D volumes
        ("resnet_small", (3, 28, 28)),  # colour (RGB)
        ("resnet18", (3, 28, 28)),
        ("resnet18", (1, 28, 28)),  # MedMNIST's baseline architecture at 28 px
        ("densenet121", (1, 32, 32)),  # its smallest size
    ],
)
def test_every_network_maps_images_to_class_logits(network, shape):
    net = build_classifier(shape, num_classes=3, network=network, channels=(4, 8, 8, 8))
    assert net(torch.rand(2, *shape)).shape == (2, 3)
    assert network in NETWORKS


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"network": "vgg"}, "network must be one of"),
        ({"network": "densenet121"}, "at least 32 pixels"),  # 28 px would halve to nothing
        ({"channels": (4, 8)}, "4 ResNet levels"),
        ({"blocks_per_level": 0}, "blocks_per_level"),
        ({"stem_stride": 3}, "stem_stride"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_classifier((1, 28, 28), **{"num_classes": 2, **kwargs})


CPU = torch.device("cpu")
CFG = classifier_config()
TRAIN = make_split(labels=[0] * 18 + [1] * 6)  # 3 : 1
VAL = make_split(8, seed=1, prefix="V")


@functools.cache
def _real_only_weights() -> dict:
    return fit_classifier(training_recipe("real_only", TRAIN, None, 1.0, seed=0), VAL, CFG, 0, CPU)[0].state_dict()


@pytest.mark.parametrize("strategy", ["smote", "logit_adjust", "focal", "mixup"])
def test_every_new_remedy_trains_end_to_end_and_reproducibly(strategy):
    runs = [fit_classifier(training_recipe(strategy, TRAIN, None, 1.0, seed=0), VAL, CFG, 0, CPU) for _ in range(2)]
    (model, fit), (again, _) = runs
    proba = predict_proba(model, VAL.images, CPU)
    assert fit.epochs_run == 2 and proba.shape == (8, 2) and np.allclose(proba.sum(1), 1)
    weights, again = model.state_dict(), again.state_dict()
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
    assert not all(torch.equal(weights[k], w) for k, w in _real_only_weights().items())  # the remedy changed training


def test_mixup_trains_on_the_mixed_batch_against_both_labelings(monkeypatch):
    """fit_classifier mixes each batch with the sampler's balanced indices at its lam, and the loss weighs the
    instance labels by lam and the balanced ones by 1 - lam."""
    seen = []
    draw, mixed = classifier.BalancedMixUp.draw, classifier.mixed_loss

    def spy_draw(self, n):
        lam, other = draw(self, n)
        seen.append({"lam": lam, "other": other})
        return lam, other

    def spy_loss(loss, logits, labels_a, labels_b, lam):
        seen[-1].update(labels_a=labels_a, labels_b=labels_b, loss_lam=lam)
        return mixed(loss, logits, labels_a, labels_b, lam)

    monkeypatch.setattr(classifier.BalancedMixUp, "draw", spy_draw)
    monkeypatch.setattr(classifier, "mixed_loss", spy_loss)
    fit_classifier(training_recipe("mixup", TRAIN, None, 1.0, seed=0), VAL, dataclasses.replace(CFG, epochs=1), 0, CPU)
    assert len(seen) == 3  # 24 images in batches of 8
    for batch in seen:
        assert batch["loss_lam"] == batch["lam"] and 0 <= batch["lam"] <= 1
        assert len(batch["other"]) == len(batch["labels_a"]) == 8
        assert torch.equal(batch["labels_b"], torch.from_numpy(TRAIN.labels[batch["other"]]))


SYNTHETIC = make_split(labels=[1] * 12, prefix="S", seed=5)  # a pool of 12 "b" images


def test_synthetic_images_weigh_synthetic_weight_in_the_loss(monkeypatch):
    seen = []
    weighted = classifier.weighted_cross_entropy

    def spy(logits, labels, sample_weight):
        seen.append(sample_weight)
        return weighted(logits, labels, sample_weight)

    monkeypatch.setattr(classifier, "weighted_cross_entropy", spy)
    recipe = training_recipe("vae", TRAIN, SYNTHETIC, 1.0, seed=0)  # 24 real + 12 synthetic
    assert recipe.synthetic.tolist() == [False] * 24 + [True] * 12
    fit_classifier(recipe, VAL, dataclasses.replace(CFG, epochs=1, synthetic_weight=0.25), 0, CPU)
    weights = torch.cat(seen)
    assert sorted(weights.tolist()) == [0.25] * 12 + [1.0] * 24  # every image once, synthetic ones at 0.25
    seen.clear()
    fit_classifier(recipe, VAL, dataclasses.replace(CFG, epochs=1), 0, CPU)
    assert not seen  # weight 1: the plain mean, as before


def test_two_phase_training_ends_on_the_real_images_only(monkeypatch):
    orders = []
    batches = classifier._batches

    def spy(order, size):
        orders.append(order.clone())
        return batches(order, size)

    monkeypatch.setattr(classifier, "_batches", spy)
    recipe = training_recipe("vae", TRAIN, SYNTHETIC, 1.0, seed=0)
    fit_classifier(recipe, VAL, dataclasses.replace(CFG, epochs=3, real_epochs=1), 0, CPU)
    assert [sorted(o.tolist()) for o in orders] == [list(range(36))] * 2 + [list(range(24))]  # the last: real only
    orders.clear()  # more real epochs than there are: every epoch but the first on real images
    fit_classifier(recipe, VAL, dataclasses.replace(CFG, epochs=3, real_epochs=6), 0, CPU)
    assert [sorted(o.tolist()) for o in orders] == [list(range(36))] + [list(range(24))] * 2


def test_the_reference_classifier_trains_on_augmented_real_images_by_default(monkeypatch):
    """fit_real_classifier (the filters' judge, the quality stage's features) trains with the classical augmentation
    unless asked for the plain real_only recipe, and refuses any remedy that would show it other images."""
    recipes = []
    fit = classifier.fit_classifier

    def spy(recipe, *args, **kwargs):
        recipes.append(recipe)
        return fit(recipe, *args, **kwargs)

    monkeypatch.setattr(selection, "fit_classifier", spy)
    augmented = selection.fit_real_classifier(TRAIN, VAL, CFG, 0, CPU)
    plain = selection.fit_real_classifier(TRAIN, VAL, CFG, 0, CPU, "real_only")
    assert [r.augment for r in recipes] == [True, False]
    assert all(len(r.data) == len(TRAIN) for r in recipes)  # the real training images, nothing added
    weights = plain.state_dict()
    assert weights.keys() == _real_only_weights().keys()
    assert all(torch.equal(weights[k], w) for k, w in _real_only_weights().items())  # real_only: as before
    assert not all(torch.equal(augmented.state_dict()[k], w) for k, w in weights.items())
    with pytest.raises(ValueError, match="classical or real_only"):
        selection.fit_real_classifier(TRAIN, VAL, CFG, 0, CPU, "vae")
