"""Every dataset shape a team brings (tests/zoo.py) through the whole pipeline on the defaults, made tiny: it ends
with a report whose numbers are finite, or it is refused before any training with a named error that says what to
change, and following that advice gets it to a report."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import yaml

from pipeline.io.arrays import load_split
from tests.zoo import NO_TEST_SPLIT, ZOO, StageFailed, ZooCase, overrides_for, run_pipeline, zoo_project

TRAINING = ("train_generator", "generate", "train_classifier", "anomaly", "latent", "quality")  # stages that train

# case -> (the stage that refuses it, the error's name, words of the message saying what to change, the override
# that follows the advice, or None when only more data helps)
NO_SMOTE = {"train_classifier": {"strategies": [
    "real_only", "class_weight", "oversample", "classical", "logit_adjust", "mixup", "vae", "vae_classical",
    "synthetic_only",
]}}  # fmt: skip
REFUSED = {
    # 3 images, 1 in training: SMOTE has no neighbour to interpolate with
    "class_of_three": (
        "train_generator",
        "DatasetShapeError",
        "remove smote from train_classifier.strategies",
        NO_SMOTE,
    ),
    "seven_classes_1to50": (
        "train_generator",
        "DatasetShapeError",
        "remove smote from train_classifier.strategies",
        NO_SMOTE,
    ),
    # a class of 2 patients cannot be in train, validation and test
    "no_test_patient": ("preprocess", "DatasetTooSmallError", "at least 3 are needed", None),
    # labels.csv's split column puts no image of a class in the test split
    "no_test_split": ("preprocess", "DatasetTooSmallError", "test split has no image of class(es) rare", None),
}


def _numbers(tree, where: str = ""):
    """Every number in a JSON tree, with its path."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, f"{where}.{key}")
    elif isinstance(tree, list):
        for k, value in enumerate(tree):
            yield from _numbers(value, f"{where}[{k}]")
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield where, tree


def run_to_report(project: Path) -> list[warnings.WarningMessage]:
    """Run the project's pipeline; return the warnings it raised (matplotlib's among them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_pipeline(project)
    return caught


def check_report(project: Path, case: ZooCase, caught: list[warnings.WarningMessage]) -> None:
    """The report is there and names every class; every metric is a finite number; the figures drew legibly."""
    classes = sorted(case.counts)
    report = (project / "reports/augmentation_report.md").read_text(encoding="utf-8")
    assert "## Verdict" in report and "**Imbalance.**" in report
    for name in classes:
        assert name in report
    for path in ("reports/metrics.json", "reports/quality/metrics.json", "reports/anomaly/metrics.json",
                 "reports/latent/metrics.json"):  # fmt: skip
        metrics = json.loads((project / path).read_text(encoding="utf-8"))
        bad = [(k, v) for k, v in _numbers(metrics) if not math.isfinite(v)]
        assert not bad, f"{path}: not finite: {bad[:5]}"
    combined = json.loads((project / "reports/metrics.json").read_text(encoding="utf-8"))
    if yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["learning_curve"]["remedies"]:
        own = combined["learning_curve_remedies"]  # a point at the share and the whole split, paired with real_only
        assert own and all(len(points) == len(combined["learning_curve"]) for points in own.values())
    quality = json.loads((project / "reports/quality/metrics.json").read_text(encoding="utf-8"))
    assert set(quality["per_class"]) == set(classes)  # multi-class: every class measured
    anomaly = json.loads((project / "reports/anomaly/metrics.json").read_text(encoding="utf-8"))
    assert f"'{anomaly['normal_class']}' class alone (the normal class" in report
    layout = [str(w.message) for w in caught if "tight_layout" in str(w.message) or "Tight layout" in str(w.message)]
    assert not layout, f"figures too crowded to lay out: {layout[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize("case", [*ZOO, NO_TEST_SPLIT], ids=lambda c: c.name)
def test_every_dataset_shape_reaches_a_report_or_is_refused_before_training(tmp_path, case):
    project = zoo_project(tmp_path, case, overrides_for(case))
    if case.name not in REFUSED:
        check_report(project, case, run_to_report(project))
        if case.fmt == "nifti3d":  # whole volumes, not slices
            assert load_split(project / "data/processed", "train").images.shape[1:] == (1, 16, 16, 16)
        return
    stage, error, advice, fix = REFUSED[case.name]
    with pytest.raises(StageFailed) as failed:
        run_pipeline(project)
    assert failed.value.stage == stage and not set(failed.value.started[:-1]) & set(TRAINING)
    said = " ".join([f"{type(failed.value.error).__name__}: {failed.value.error}", *failed.value.logged])
    assert error in said and advice in said, said
    assert not (project / "models").exists()  # nothing trained
    if fix is not None:  # the advice works
        params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
        for section, values in fix.items():
            params[section].update(values)
        (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        check_report(project, case, run_to_report(project))


def test_zoo_covers_every_shape_the_guide_names():
    """Binary to ten classes, 1:50, a class of three, colour, 16-bit, 3D, many images per patient, integer and
    non-ASCII labels, both manifest layouts."""
    cases = {c.name: c for c in ZOO}
    assert {len(c.counts) for c in ZOO} >= {2, 3, 5, 7, 10}
    assert max(max(c.counts.values()) / min(c.counts.values()) for c in ZOO) >= 50
    assert min(min(c.counts.values()) for c in ZOO) == 3
    assert {c.fmt for c in ZOO} >= {"png", "png16", "mixed", "dicom", "nifti3d"}  # mixed: PNG and JPEG files
    assert any(c.colour for c in ZOO) and any(c.images_per_patient > 1 for c in ZOO)
    labels = [name for c in ZOO for name in c.counts]
    assert any(name.isdigit() for name in labels) and any(not name.isascii() and " " in name for name in labels)
    assert {c.layout for c in ZOO} == {"csv", "folders"} and set(REFUSED) <= {*cases, NO_TEST_SPLIT.name}
