import numpy as np
import pytest
import torch

from pipeline.strategies import (
    STRATEGIES,
    DataLeakError,
    check_no_test_patients,
    class_weights,
    classical_augmentation,
    oversample,
    take_synthetic,
    training_recipe,
)
from tests.conftest import make_split

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
    "strategy, ratio, counts, weighted, augment",
    [
        ("real_only", 1.0, {"a": 9, "b": 3}, False, False),
        ("class_weight", 1.0, {"a": 9, "b": 3}, True, False),
        ("oversample", 1.0, {"a": 9, "b": 9}, False, False),
        ("classical", 1.0, {"a": 9, "b": 3}, False, True),
        ("vae", 1.0, {"a": 9, "b": 9}, False, False),  # the gap of 6 filled
        ("vae", 0.5, {"a": 9, "b": 6}, False, False),  # half the gap
        ("vae_classical", 1.0, {"a": 9, "b": 9}, False, True),
        ("synthetic_only", 1.0, {"a": 9, "b": 3}, False, False),  # as many as the real split, all synthetic
    ],
)
def test_every_strategy_trains_on_what_it_says(strategy, ratio, counts, weighted, augment):
    recipe = training_recipe(strategy, TRAIN, SYNTHETIC, ratio, seed=0)
    assert recipe.data.counts() == counts and (recipe.weighted, recipe.augment) == (weighted, augment)
    real = set(TRAIN.patients)
    if strategy == "synthetic_only":
        assert not set(recipe.data.patients) & real
    elif strategy.startswith("vae"):
        assert len(set(recipe.data.patients) - real) == int(6 * ratio)
    assert strategy in STRATEGIES


def test_each_seed_draws_its_own_share_of_the_pool_and_a_smaller_ratio_a_subset_of_it():
    def drawn(ratio, seed):
        return set(training_recipe("vae", TRAIN, SYNTHETIC, ratio, seed=seed).data.patients) - set(TRAIN.patients)

    pool = {f"S{i}" for i in range(8)}  # the 8 'b' images of the pool
    assert drawn(1.0, 0) <= pool and drawn(0.5, 0) < drawn(1.0, 0)  # nested within a seed
    assert drawn(1.0, 0) == drawn(1.0, 0)  # reproducible
    assert len({frozenset(drawn(1.0, seed)) for seed in range(5)}) > 1  # 6 of 8 differ between seeds
    assert take_synthetic(SYNTHETIC, {"b": 3}).patients.tolist() == ["S0", "S1", "S2"]  # no seed: manifest order


def test_too_small_a_pool_names_the_params():
    with pytest.raises(ValueError, match="generate.pool_ratio"):
        training_recipe("vae", TRAIN, SYNTHETIC, 2.0, seed=0)  # 12 of b needed, 8 in the pool
    with pytest.raises(ValueError, match="needs the generate stage"):
        training_recipe("vae", TRAIN, None, 1.0, seed=0)
    assert take_synthetic(SYNTHETIC, {"b": 0}).counts() == {"a": 0, "b": 0}


def test_a_strategy_that_sees_test_patients_is_refused():
    test = make_split(8, prefix="T")
    check_no_test_patients(test, train=TRAIN.patients, vae=np.array(["P1", "S2"]))  # no overlap: fine
    with pytest.raises(DataLeakError, match="1 test patient.*vae"):
        check_no_test_patients(test, train=TRAIN.patients, vae=np.array(["T3"]))
