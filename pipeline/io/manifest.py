"""Dataset manifests: ``labels.csv`` with columns ``path,label`` and optional ``patient_id`` and ``split``.

``path`` is relative to the dataset folder and may name a DICOM file, a DICOM series folder or a NIfTI
file. ``split`` (train, val or test), when present, fixes each row's split, so that a published test split
stays the test split. Rows are checked before any image is read: every problem is reported at once,
with its line.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.io.errors import ManifestError, MissingImageError, PathOutsideRootError

__all__ = ["MANIFEST_NAME", "ManifestRow", "check_manifest", "read_manifest", "resolve_inside"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "labels.csv"
REQUIRED_COLUMNS = ("path", "label")
SPLIT_VALUES = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    """One labelled image. ``patient_id`` is the raw identifier: never write it anywhere."""

    line: int  # line number in labels.csv, for messages
    relpath: str  # path as written in the manifest
    path: Path  # resolved path, guaranteed inside the dataset root
    label: str
    patient_id: str
    split: str | None = None  # train, val or test when the manifest fixes it


def resolve_inside(root: Path, relpath: str) -> Path:
    """Resolve ``relpath`` against ``root``; refuse absolute paths and paths (or symlinks) leaving root."""
    if Path(relpath).is_absolute():
        raise PathOutsideRootError(f"'{relpath}' is absolute; write paths relative to the dataset folder {root}")
    resolved = (root / relpath).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise PathOutsideRootError(f"'{relpath}' points outside the dataset folder {root}; move the file inside it")
    return resolved


def check_manifest(root: str | Path) -> tuple[list[ManifestRow], list[str]]:
    """Parse ``root/labels.csv``; return the usable rows and a list of problems (empty when all is well)."""
    root = Path(root)
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise ManifestError(f"{manifest} not found: a dataset folder needs a {MANIFEST_NAME} with columns path,label")
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{manifest} is not UTF-8 text ({err}); save it as UTF-8 CSV") from err
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    if absent:
        raise ManifestError(f"{manifest}: missing column(s) {', '.join(absent)}; found {columns or 'no header'}")
    has_patients = "patient_id" in columns
    if not has_patients:
        logger.warning("%s has no patient_id column: every image is treated as its own patient", manifest)
    rows: list[ManifestRow] = []
    problems: list[str] = []
    seen: dict[Path, int] = {}
    for line, raw in enumerate(reader, start=2):
        raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        relpath, label, split = raw["path"], raw["label"], raw.get("split") or None
        where = f"{manifest.name} line {line}"
        if not relpath or not label:
            problems.append(f"{where}: empty {'path' if not relpath else 'label'}; fill it in or delete the row")
            continue
        if "split" in columns and split not in SPLIT_VALUES:
            problems.append(f"{where}: split is {split!r}; use one of {', '.join(SPLIT_VALUES)} on every row")
            continue
        try:
            path = resolve_inside(root, relpath)
        except PathOutsideRootError as err:
            problems.append(f"{where}: {err}")
            continue
        if not path.exists():
            problems.append(f"{where}: file '{relpath}' does not exist in {root}; fix the path or delete the row")
            continue
        if path in seen:
            problems.append(f"{where}: '{relpath}' is listed again (first on line {seen[path]}); delete one row")
            continue
        seen[path] = line
        patient = raw.get("patient_id", "") if has_patients else relpath
        rows.append(ManifestRow(line, relpath, path, label, patient or relpath, split))
    if not rows and not problems:
        problems.append(f"{manifest}: no rows")
    return rows, problems


def read_manifest(root: str | Path) -> list[ManifestRow]:
    """Like :func:`check_manifest` but raise one error listing every problem."""
    rows, problems = check_manifest(root)
    if problems:
        error = MissingImageError if all("does not exist" in p for p in problems) else ManifestError
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise error(f"{len(problems)} problem(s) in the dataset manifest:\n  {shown}")
    return rows
