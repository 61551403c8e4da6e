"""The processed dataset on disk: one ``.npz`` per split, plus small JSON and CSV helpers."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.atomic import atomic_file

__all__ = ["SPLITS", "SplitData", "save_split", "load_split", "write_json", "write_npz", "write_csv", "read_json"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitData:
    """Images of one split. ``patients`` are pseudonyms, never raw identifiers."""

    images: np.ndarray  # float32 (N, 1, S, S) in [0, 1]
    labels: np.ndarray  # int64 (N,), indices into classes
    patients: np.ndarray  # str (N,), pseudonymous patient IDs
    classes: tuple[str, ...]  # class names, index = label

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.classes)}


def save_split(path: Path, data: SplitData) -> None:
    np.savez(
        path,
        images=data.images.astype(np.float32, copy=False),  # no in-memory copy of arrays already of that type
        labels=data.labels.astype(np.int64, copy=False),
        patients=data.patients.astype(str),
        classes=np.array(data.classes, dtype=str),
    )


def load_split(processed_dir: str | Path, split: str) -> SplitData:
    with np.load(Path(processed_dir) / f"{split}.npz") as npz:
        return SplitData(
            images=npz["images"],
            labels=npz["labels"],
            patients=npz["patients"],
            classes=tuple(str(c) for c in npz["classes"]),
        )


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON through a temporary file renamed into place (never a half-written file)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to an uncompressed ``.npz`` through a temporary file renamed into place."""
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.savez would add .npz to a name
        np.savez(fh, **arrays)


def write_csv(path: str | Path, rows: list[dict], fields: list[str] | None = None) -> None:
    """Write ``rows`` as CSV with a header (``fields``, default the first row's keys; other keys are left out,
    missing ones left empty) through a temporary file renamed into place."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(rows[0]), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
