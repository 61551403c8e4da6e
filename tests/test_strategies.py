import dataclasses

import numpy as np
import pytest
import torch

from pipeline.augment import BalancedMixUp, classical_augmentation
from pipeline.config import STRATEGY_NAMES
from pipeline.models.losses import class_prior, class_weights
from pipeline.strategies import (
    REMEDIES,
    DataLeakError,
    Recipe,
    check_no_test_patients,
    classifier_runs,
    oversample,
    pool_sizes,
    smote,
    synthetic_demand,
    synthetic_take,
    take_synthetic,
    training_recipe,
)
from tests.conftest import classifier_config, make_split

TRAIN = make_split(labels=[0] * 9 + [1] * 3)  # 9 : 3
SYNTHETIC = make_split(labels=[1] * 8 + [0] * 9, prefix="S", seed=3)  # pool: 8 of b, 9 of a


def test_oversample_repeats_minority_images_only():
    balanced = oversample(TRAIN, seed=0)
    assert balanced.counts() == {"a": 9, "b": 9} and np.array_equal(balanced.images[:12], TRAIN.images)
    assert set(map(bytes, balanced.images[12:])) <= set(map(bytes, TRAIN.images[TRAIN.labels == 1]))  # copies only


def test_class_weights_are_inverse_frequency():
    assert class_weights(TRAIN).tolist() == pytest.approx([12 / (2 * 9), 12 / (2 * 3)])


def test_classical_augmentation_changes_images_but_not_their_shape():
    augment = classical_augmentation(2, seed=0)
    batch = torch.from_numpy(TRAIN.images)
    outputs = [augment(batch) for _ in range(4)]
    assert all(o.shape == batch.shape for o in outputs) and any(not torch.allclose(o, batch) for o in outputs)


@pytest.mark.parametrize(
    "strategy, ratio, counts, weighted, augment, loss, mixup",
    [
        ("real_only", 1.0, {"a": 9, "b": 3}, False, False, "ce", False),
        ("class_weight", 1.0, {"a": 9, "b": 3}, True, False, "ce", False),
        ("oversample", 1.0, {"a": 9, "b": 9}, False, False, "ce", False),
        ("classical", 1.0, {"a": 9, "b": 3}, False, True, "ce", False),
        ("smote", 1.0, {"a": 9, "b": 9}, False, False, "ce", False),  # 6 interpolated 'b' images
        ("logit_adjust", 1.0, {"a": 9, "b": 3}, False, False, "logit_adjust", False),  # the real split, another loss
        ("focal", 1.0, {"a": 9, "b": 3}, False, False, "focal", False),
        ("mixup", 1.0, {"a": 9, "b": 3}, False, False, "ce", True),  # balanced batches are drawn while training
        ("vae", 1.0, {"a": 9, "b": 9}, False, False, "ce", False),  # the gap of 6 filled
        ("vae", 0.5, {"a": 9, "b": 6}, False, False, "ce", False),  # half the gap
        ("vae_classical", 1.0, {"a": 9, "b": 9}, False, True, "ce", False),
        ("synthetic_only", 1.0, {"a": 9, "b": 3}, False, False, "ce", False),  # as many as the real split, synthetic
    ],
)
def test_every_strategy_trains_on_what_it_says(strategy, ratio, counts, weighted, augment, loss, mixup):
    recipe = training_recipe(strategy, TRAIN, SYNTHETIC, ratio, seed=0)
    assert recipe.data.counts() == counts and (recipe.weighted, recipe.augment) == (weighted, augment)
    assert (recipe.loss, recipe.mixup) == (loss, mixup)
    real = set(TRAIN.patients)
    if strategy == "synthetic_only":
        assert not set(recipe.data.patients) & real
    elif strategy.startswith("vae"):
        assert len(set(recipe.data.patients) - real) == int(6 * ratio)
    elif strategy == "smote":
        assert set(recipe.data.patients) - real == {f"smote-b-{i}" for i in range(6)}
    assert strategy in REMEDIES


def test_every_registered_remedy_has_a_name_in_config_and_a_rank_of_its_own():
    assert tuple(REMEDIES) == STRATEGY_NAMES  # params.yaml's choices, in the same order
    ranks = [r.simplicity for r in REMEDIES.values()]
    assert sorted(ranks) == list(range(len(ranks))) and REMEDIES["real_only"].simplicity == 0
    assert {n for n, r in REMEDIES.items() if r.pool != "none"} == {"vae", "vae_classical", "synthetic_only"}


def test_a_recipe_names_a_known_loss():
    with pytest.raises(ValueError, match="loss must be one of ce, logit_adjust, focal"):
        Recipe(TRAIN, loss="hinge")
    with pytest.raises(ValueError, match="class weights apply to the cross-entropy only"):
        Recipe(TRAIN, weighted=True, loss="focal")


def _two_image_minority() -> tuple:
    """A majority of 6 images and a minority of exactly 2, a and b: SMOTE with k_neighbors 1."""
    data = make_split(labels=[0] * 6 + [1] * 2, seed=4)
    a, b = data.images[6].ravel().astype(np.float64), data.images[7].ravel().astype(np.float64)
    return data, a, b


def test_smote_interpolates_between_two_minority_images():
    data, a, b = _two_image_minority()
    out = smote(data, seed=0)
    assert out.counts() == {"a": 6, "b": 6}  # balanced to the majority
    assert np.array_equal(out.images[:8], data.images) and np.array_equal(out.patients[:8], data.patients)  # first
    new = out.images[8:].reshape(4, -1).astype(np.float64)
    assert (out.labels[8:] == 1).all() and out.images.dtype == np.float32
    for x in new:
        u = np.dot(x - a, b - a) / np.dot(b - a, b - a)  # the only u for which x = a + u (b - a) can hold
        assert -1e-6 <= u <= 1 + 1e-6 and np.allclose(x, a + u * (b - a), atol=1e-5)  # pixelwise on the segment
    assert len({round(float(np.dot(x - a, b - a)), 3) for x in new}) > 1  # not all the same point


def test_smote_is_seeded_and_names_its_images_apart_from_real_patients():
    data, _, _ = _two_image_minority()
    first, again, other = smote(data, seed=0), smote(data, seed=0), smote(data, seed=1)
    assert np.array_equal(first.images, again.images) and not np.array_equal(first.images, other.images)
    assert first.patients[8:].tolist() == [f"smote-b-{i}" for i in range(4)]


def test_smote_refuses_a_class_of_one_image():
    with pytest.raises(ValueError, match="smote needs at least 2 training images of each class.*class\\(es\\) b"):
        smote(make_split(labels=[0] * 5 + [1]), seed=0)


def test_class_prior_is_the_class_frequency():
    assert class_prior(TRAIN).tolist() == pytest.approx([9 / 12, 3 / 12])


def test_balanced_mixup_draws_each_class_about_equally_often():
    labels = np.array([0] * 90 + [1] * 10)  # 9 : 1
    draws = BalancedMixUp(labels, alpha=0.2, seed=0).balanced_indices(10000)
    share = (labels[draws] == 1).mean()
    assert abs(share - 0.5) < 0.02  # 50 % of the draws from 10 % of the images
    assert len(np.unique(draws[labels[draws] == 1])) == 10 and len(np.unique(draws[labels[draws] == 0])) > 80


def test_balanced_mixup_mixes_a_batch_by_the_hand_formula():
    x_instance, x_balanced = torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), 6.0)
    mixed = BalancedMixUp.mix(x_instance, x_balanced, lam=0.25)
    assert torch.allclose(mixed, torch.full((2, 1, 2, 2), 0.25 * 2 + 0.75 * 6))  # 5.0


def test_balanced_mixup_draws_lam_in_0_1_from_its_own_seeded_stream():
    labels = TRAIN.labels
    draws = [BalancedMixUp(labels, alpha=0.2, seed=0).draw(4) for _ in range(2)]
    assert draws[0][0] == draws[1][0] and np.array_equal(draws[0][1], draws[1][1])  # same seed, same draws
    torch.manual_seed(0), np.random.seed(0)
    mix = BalancedMixUp(labels, alpha=0.2, seed=0)
    lams = [mix.draw(4)[0] for _ in range(2000)]
    after = torch.rand(1).item(), np.random.rand()
    torch.manual_seed(0), np.random.seed(0)
    assert after == (torch.rand(1).item(), np.random.rand())  # the global streams did not move: other strategies' draws
    assert all(0 <= lam <= 1 for lam in lams)
    assert np.mean(lams) == pytest.approx(0.2 / 1.2, abs=0.02)  # the mean of Beta(0.2, 1)
    with pytest.raises(ValueError, match="alpha must be positive"):
        BalancedMixUp(labels, alpha=0.0, seed=0)


def test_each_seed_draws_its_own_share_of_the_pool_and_a_smaller_ratio_a_subset_of_it():
    def drawn(ratio, seed):
        return set(training_recipe("vae", TRAIN, SYNTHETIC, ratio, seed=seed).data.patients) - set(TRAIN.patients)

    pool = {f"S{i}" for i in range(8)}  # the 8 'b' images of the pool
    assert drawn(1.0, 0) <= pool and drawn(0.5, 0) < drawn(1.0, 0)  # nested within a seed
    assert drawn(1.0, 0) == drawn(1.0, 0)  # reproducible
    assert len({frozenset(drawn(1.0, seed)) for seed in range(5)}) > 1  # 6 of 8 differ between seeds
    assert take_synthetic(SYNTHETIC, {"b": 3}).patients.tolist() == ["S0", "S1", "S2"]  # no seed: manifest order


def test_synthetic_all_classes_adds_the_same_count_of_synthetic_images_to_every_class():
    """With all_classes the majority gets synthetic images too (all_classes x ratio x the largest gap, 1/3 x 6 = 2
    here) and every minority class that many beyond its gap: still balanced, and being synthetic is no sign of b."""
    recipe = training_recipe("vae", TRAIN, SYNTHETIC, 1.0, seed=0, all_classes=1 / 3)
    assert recipe.data.counts() == {"a": 11, "b": 11}
    synthetic = recipe.data.select(np.flatnonzero(recipe.synthetic))
    assert synthetic.counts() == {"a": 2, "b": 8} and set(synthetic.patients) <= set(SYNTHETIC.patients)
    assert training_recipe("vae", TRAIN, SYNTHETIC, 1.0, seed=0, all_classes=0.0).data.counts() == {"a": 9, "b": 9}
    with pytest.raises(ValueError, match="synthetic_demand"):
        training_recipe("vae", TRAIN, SYNTHETIC, 1.0, seed=0, all_classes=1.0)  # 12 of b needed, 8 in the pool


@pytest.mark.parametrize(
    "demand, counts, margin, every_class, expected",
    [
        ({"a": 0, "b": 90}, {"a": 100, "b": 10}, 0.0, False, {"a": 0, "b": 90}),  # the demand itself
        ({"a": 0, "b": 90}, {"a": 100, "b": 10}, 0.5, False, {"a": 0, "b": 135}),  # half as many more
        ({"a": 0, "b": 7}, {"a": 100, "b": 93}, 0.5, False, {"a": 0, "b": 11}),  # rounded up: 10.5 -> 11
        ({"a": 0, "b": 90}, {"a": 100, "b": 10}, 0.0, True, {"a": 100, "b": 90}),  # every class its own count
        ({"a": 5, "b": 95}, {"a": 100, "b": 95}, 0.0, True, {"a": 100, "b": 95}),
        ({"a": 120, "b": 95}, {"a": 100, "b": 95}, 0.0, True, {"a": 120, "b": 95}),  # the demand above it
    ],
)
def test_pool_sizes(demand, counts, margin, every_class, expected):
    assert pool_sizes(demand, counts, margin, every_class) == expected


FIVE_GRADES = {"grade0": 486, "grade1": 128, "grade2": 206, "grade3": 194, "grade4": 66}  # a real five-class folder


def test_the_pool_the_demand_sizes_covers_every_training_of_every_remedy():
    """The five-class case that once failed after training (the pool was pool_ratio x the gap, 716 of grade1, a
    vae training took 778): every training of every remedy takes at most the demand, and some training takes it."""
    cfg = classifier_config(
        strategies=tuple(REMEDIES), ablation_ratios=(0.25, 0.5), synthetic_ratio=1.0, synthetic_all_classes=1.0
    )
    demand = synthetic_demand(FIVE_GRADES, cfg)
    assert demand["grade1"] == 778 and demand["grade0"] == 486  # 358 + 420; synthetic_only: the real count
    takes = [synthetic_take(s, FIVE_GRADES, r, cfg.synthetic_all_classes) for _, s, r in classifier_runs(cfg)]
    for name in FIVE_GRADES:
        assert max(take[name] for take in takes) == demand[name]
    grades = tuple(FIVE_GRADES)
    pool = make_split(
        size=4, classes=grades, prefix="S", labels=[k for k, n in enumerate(demand.values()) for _ in range(n)]
    )
    train = make_split(size=4, classes=grades, labels=[k for k, n in enumerate(FIVE_GRADES.values()) for _ in range(n)])
    for _, strategy, ratio in classifier_runs(cfg):  # no training asks for more than the pool holds
        training_recipe(strategy, train, pool, ratio, seed=0, all_classes=cfg.synthetic_all_classes)
    no_vae = dataclasses.replace(cfg, strategies=("real_only", "oversample"), ablation_ratios=())
    assert synthetic_demand(FIVE_GRADES, no_vae) == dict.fromkeys(FIVE_GRADES, 0)  # no remedy needs the pool


def test_too_small_a_pool_names_the_params():
    with pytest.raises(ValueError, match="re-run generate") as short:
        training_recipe("vae", TRAIN, SYNTHETIC, 2.0, seed=0)  # 12 of b needed, 8 in the pool
    for knob in ("generate.filter_quantile", "generate.manifold_k", "generate.filter"):  # a filter may have cut it
        assert knob in str(short.value)
    with pytest.raises(ValueError, match="needs the generate stage"):
        training_recipe("vae", TRAIN, None, 1.0, seed=0)
    assert take_synthetic(SYNTHETIC, {"b": 0}).counts() == {"a": 0, "b": 0}


def test_a_strategy_that_sees_test_patients_is_refused():
    test = make_split(8, prefix="T")
    check_no_test_patients(test, train=TRAIN.patients, vae=np.array(["P1", "S2"]))  # no overlap: fine
    with pytest.raises(DataLeakError, match="1 test patient.*vae"):
        check_no_test_patients(test, train=TRAIN.patients, vae=np.array(["T3"]))
