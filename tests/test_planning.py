"""The plan of a dataset under params.yaml's settings: what the pool will hold, and what is refused before training."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.io.errors import DatasetShapeError
from pipeline.planning import dataset_plan, load_settings, refuse_unfit
from pipeline.strategies import pool_sizes, synthetic_demand
from tests.project import ROOT

SETTINGS = load_settings(ROOT / "params.yaml")  # the project's defaults


def splits(train: dict[str, int], val: dict[str, int] | None = None, test: dict[str, int] | None = None) -> dict:
    """Split counts with validation and test a third of train (at least 1) unless given."""
    held = {c: max(1, n // 3) for c, n in train.items()}
    return {"train": train, "val": val or held, "test": test or held}


def with_changes(**sections) -> object:
    """SETTINGS with some fields of some sections replaced: ``with_changes(generate={"filter": ("manifold",)})``."""
    field = {SETTINGS.generator.kind: "generator_settings"}  # the generator's own section, by its params.yaml name
    changed = {field.get(name, name): values for name, values in sections.items()}
    return dataclasses.replace(
        SETTINGS, **{name: dataclasses.replace(getattr(SETTINGS, name), **values) for name, values in changed.items()}
    )


FIVE = {"grade0": 486, "grade1": 128, "grade2": 206, "grade3": 194, "grade4": 66}  # a real five-class colour folder


def test_the_plan_of_five_classes_names_the_imbalance_and_the_pool_the_classifier_takes():
    plan = dataset_plan(splits(FIVE), SETTINGS)
    assert (
        not plan.problems and plan.majority == "grade0" and plan.minorities == ["grade4", "grade1", "grade3", "grade2"]
    )
    assert plan.ratios["grade4"] == pytest.approx(486 / 66) and plan.ratios["grade0"] == 1
    demand = synthetic_demand(FIVE, SETTINGS.train_classifier)
    assert plan.pool == pool_sizes(demand, FIVE, SETTINGS.generate.pool_margin, SETTINGS.generate.every_class)
    assert plan.pool["grade1"] >= 778  # what the vae strategy took when the pool held 716
    assert plan.normal_class == "grade0"  # anomaly.normal_class null: the largest class
    text = "\n".join(plan.describe())
    assert "1:7.36" in text and "grade4" in text and "normal class grade0" in text


@pytest.mark.parametrize(
    "counts, changes, expected",
    [
        # a class with no patient left for the test split
        (splits({"a": 30, "b": 4}, test={"a": 10}), {}, "no image in the test split"),
        # one class only
        ({"train": {"a": 5}, "val": {"a": 2}, "test": {"a": 2}}, {}, "at least two"),
        # smote needs two images of a class to interpolate between
        (splits({"a": 30, "b": 1}), {}, "smote"),
        # ... and is fine without smote in the list
        (splits({"a": 30, "b": 1}), {"train_classifier": {"strategies": ("real_only", "vae")}}, None),
        # the manifold filter needs a neighbour of the class
        (
            splits({"a": 30, "b": 1}),
            {"train_classifier": {"strategies": ("real_only",)}, "generate": {"filter": ("manifold",)}},
            "generate.filter manifold",
        ),
        # an anomaly normal class the data does not have
        (splits({"a": 30, "b": 9}), {"anomaly": {"normal_class": "normal"}}, "anomaly.normal_class 'normal'"),
        # an image size the VAEs' strides cannot halve three times
        (splits({"a": 30, "b": 9}), {"preprocess": {"size": 28}}, "not divisible by the product of the strides"),
        # a patch discriminator whose layers halve 3D images of 8 voxels too often
        (
            splits({"a": 30, "b": 9}),
            {
                "preprocess": {"size": 8},
                "vae_gan": {"strides": (2, 2), "channels": (8, 16)},
                "vae": {"strides": (2, 2), "channels": (8, 16)},
            },
            "vae_gan.discriminator_layers",
        ),
        # densenet121 needs 32 px
        (
            splits({"a": 30, "b": 9}),
            {"preprocess": {"size": 16}, "train_classifier": {"network": "densenet121"}},
            "densenet121",
        ),
    ],
)
def test_what_cannot_run_is_refused_with_what_to_change(counts, changes, expected):
    size = changes.get("preprocess", {}).get("size", 64)
    plan = dataset_plan(counts, with_changes(**changes), image_shape=(1, size, size))
    if expected is None:
        assert plan.problems == []
        refuse_unfit(plan)  # nothing to refuse
        return
    assert any(expected in p for p in plan.problems), plan.problems
    with pytest.raises(DatasetShapeError, match="refused before any training"):
        refuse_unfit(plan)
