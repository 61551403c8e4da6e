"""The records one stage writes and later stages read, typed: each has one writer and its readers go through
:meth:`Record.read`, which names the stage to re-run when the file is missing or from another version.

- :class:`ProcessedSummary`: the preprocess stage's ``summary.json`` in ``paths.processed``.
- :class:`PoolSummary`: the generate stage's ``summary.json`` in ``paths.synthetic``.
- :class:`ClassifierRun`: one seed's training in train_classifier's ``runs.json`` of each remedy.

The JSON files are the fields in declaration order (``dataclasses.asdict``), so a field added here is a field in
the file, and a reader can rely on every field being there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from pipeline.io.arrays import write_json
from pipeline.io.errors import MedaugInputError

__all__ = ["Record", "StaleRecordError", "ProcessedSummary", "PoolSummary", "ClassifierRun"]


class StaleRecordError(MedaugInputError):
    """A stage's record is missing or was written by another version of the stage: re-run that stage."""


class Record:
    """A JSON file in a stage's output folder (:attr:`FILE`), written by :attr:`WRITER`."""

    FILE: ClassVar[str] = "summary.json"
    WRITER: ClassVar[str] = ""  # the dvc.yaml stage that writes it

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / self.FILE
        write_json(path, dataclasses.asdict(self))  # type: ignore[call-overload]
        return path

    @classmethod
    def read(cls, folder: str | Path) -> Self:
        path = Path(folder) / cls.FILE
        if not path.is_file():
            raise StaleRecordError(f"{path} is missing: run `dvc repro {cls.WRITER}` first")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        try:
            if unknown:
                raise TypeError(f"unknown fields {unknown}")
            return cls(**data)
        except TypeError as err:
            raise StaleRecordError(
                f"{path} is not what this version's {cls.WRITER} stage writes ({err}): run `dvc repro {cls.WRITER}`"
            ) from None


@dataclass(frozen=True)
class ProcessedSummary(Record):
    """What preprocess made of the dataset (no patient data: counts, settings, labels.csv line numbers)."""

    WRITER: ClassVar[str] = "preprocess"

    n_files: int  # labels.csv rows read
    n_images: int  # images made (a volume's slices count one each in 2D)
    classes: list[str]  # class names, index = label
    image_size: list[int]  # (C, X, Y[, Z]) of every image
    channels: dict[str, Any] = field(default_factory=dict)  # {"setting", "used", "converted": {"3 to 1": n}}
    spacing_mm: list[float] | str = "as in the files (resized to image_size)"
    modalities: dict[str, int] = field(default_factory=dict)  # images per DICOM modality (OT for image files)
    formats: dict[str, int] = field(default_factory=dict)  # files per source format (dicom, nifti, image)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> {"images": per class, "patients"}
    skipped: list[dict[str, Any]] = field(default_factory=list)  # rows left out (preprocess.on_error: skip), why
    split_source: str = "patient-level stratified split"  # or "labels.csv", or "site S... held out as the test split"
    near_twins: dict[str, Any] = field(default_factory=dict)  # held-out images with a near-identical training one
    flat_images: dict[str, Any] = field(default_factory=dict)  # images constant along an axis (stripes, blanks)
    sites: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {site pseudonym: images}; {}: no sites

    def split_counts(self, split: str) -> dict[str, int]:
        """Images per class in ``split``."""
        return dict(self.splits[split]["images"])


@dataclass(frozen=True)
class PoolSummary(Record):
    """What generate drew: the generator, the pool's size per class and how the filters went."""

    WRITER: ClassVar[str] = "generate"

    generator: str  # the generator kind
    mode: str  # conditional or per_class
    sampler: str  # the latent sampler the pool was drawn with
    demand: dict[str, int]  # what train_classifier's settings take at most, per class
    requested: dict[str, int]  # images asked of each class
    written: dict[str, int]  # images written per class (fewer when the filters left a class short)
    filter: list[str]  # generate.filter
    filtering: dict[str, dict[str, Any]]  # per class: kept, dropped, candidates, per-filter counts
    generator_patients: list[str]  # pseudonyms the generator learnt from (leak checks downstream)


@dataclass(frozen=True)
class ClassifierRun:
    """One training of a remedy with one seed (train_classifier's ``runs.json`` in each remedy's folder lists them,
    in the order of ``train_classifier.seeds``)."""

    FILE: ClassVar[str] = "runs.json"
    WRITER: ClassVar[str] = "train_classifier"

    seed: int
    best_epoch: int  # the kept epoch (best validation score)
    epochs_run: int  # epochs trained before early stopping
    threshold: float | None  # the positive class's probability threshold chosen on validation; None: argmax
    train_images: dict[str, int]  # training images per class (real and synthetic)
    val: dict[str, Any]  # validation scores at the threshold (what compare recommends by)
    test: dict[str, Any]  # test metrics with the confusion matrix
    shift: dict[str, float] = field(default_factory=dict)  # test balanced accuracy under each acquisition shift

    @classmethod
    def write_all(cls, folder: str | Path, runs: list[ClassifierRun]) -> None:
        write_json(Path(folder) / cls.FILE, [dataclasses.asdict(run) for run in runs])

    @classmethod
    def read_all(cls, folder: str | Path) -> list[ClassifierRun]:
        path = Path(folder) / cls.FILE
        if not path.is_file():
            raise StaleRecordError(f"{path} is missing: run `dvc repro {cls.WRITER}` first")
        try:
            return [cls(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
        except TypeError as err:
            raise StaleRecordError(
                f"{path} is not what this version's {cls.WRITER} stage writes ({err}): run `dvc repro {cls.WRITER}`"
            ) from None
