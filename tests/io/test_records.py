"""The typed records stages hand each other: what is written is what is read, and a file of another version is
refused with the stage to re-run."""

import json

import pytest

from pipeline.io.records import ClassifierRun, PoolSummary, ProcessedSummary, StaleRecordError

SUMMARY = ProcessedSummary(
    n_files=3, n_images=4, classes=["a", "b"], image_size=[1, 8, 8], splits={"train": {"images": {"a": 3, "b": 1}}}
)


def test_a_record_reads_back_what_was_written_in_field_order(tmp_path):
    path = SUMMARY.write(tmp_path)
    assert ProcessedSummary.read(tmp_path) == SUMMARY and SUMMARY.split_counts("train") == {"a": 3, "b": 1}
    assert list(json.loads(path.read_text())) == ["n_files", "n_images", "classes", "image_size", "channels"] + [
        "spacing_mm",
        "modalities",
        "formats",
        "splits",
        "skipped",
        "split_source",
        "near_twins",
        "flat_images",
        "sites",
    ]
    runs = [ClassifierRun(0, 2, 5, 0.4, {"a": 3}, {"balanced_accuracy": 0.9}, {"balanced_accuracy": 0.8})]
    ClassifierRun.write_all(tmp_path, runs)
    assert ClassifierRun.read_all(tmp_path) == runs


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "is missing: run `dvc repro generate`"),  # not written yet
        ({"generator": "vae"}, "missing"),  # an older generate stage's summary: fields missing
        (
            {"generator": "vae", "mode": "x", "sampler": "p", "demand": {}, "requested": {}, "written": {}}
            | {"filter": [], "filtering": {}, "generator_patients": [], "pool_ratio": 2},
            "unknown fields",
        ),  # newer
    ],
)
def test_a_record_of_another_version_names_the_stage_to_rerun(tmp_path, content, why):
    if content is not None:
        (tmp_path / "summary.json").write_text(json.dumps(content))
    with pytest.raises(StaleRecordError, match=why) as err:
        PoolSummary.read(tmp_path)
    assert "dvc repro generate" in str(err.value)
