"""Dataset manifests: ``labels.csv`` with columns ``path,label`` and optional ``patient_id``, ``split`` and ``site``,
or, without ``labels.csv``, one sub-folder per class.

``path`` is relative to the dataset folder and may name a DICOM file, a DICOM series folder, a NIfTI file or
an image file (PNG, JPEG, TIFF, BMP). ``split`` (train, val or test), when present, fixes each row's split, so
that a published test split stays the test split. ``site`` (scanner, hospital) is treated like ``patient_id``: it
may identify, so only its pseudonym leaves preprocess; it gives per-site test metrics and ``preprocess.split_by:
site``. Rows are checked before any image is read: every problem is
reported at once, with its line. :func:`write_class_folder_manifest` writes the ``labels.csv`` of a folder of
class sub-folders (``medaug import-folder``).
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.io.atomic import atomic_file
from pipeline.io.errors import ManifestError, MissingImageError, PathOutsideRootError

__all__ = [
    "MANIFEST_NAME",
    "ManifestRow",
    "check_manifest",
    "class_folder_rows",
    "read_manifest",
    "resolve_inside",
    "write_class_folder_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "labels.csv"
REQUIRED_COLUMNS = ("path", "label")
SPLIT_VALUES = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    """One labelled image. ``patient_id`` is the raw identifier (never write it anywhere); ``None`` when the
    dataset does not give one, and the image's DICOM PatientID (or else its path) stands in."""

    line: int  # line number in labels.csv, for messages
    relpath: str  # path as written in the manifest
    path: Path  # resolved path, guaranteed inside the dataset root
    label: str
    patient_id: str | None
    split: str | None = None  # train, val or test when the manifest fixes it
    site: str | None = None  # raw scanner / hospital name (never write it anywhere); None without a site column


def resolve_inside(root: Path, relpath: str) -> Path:
    """Resolve ``relpath`` against ``root``; refuse absolute paths and paths (or symlinks) leaving root, and
    (:class:`ManifestError`) names no file can have: a NUL byte, a symlink loop."""
    if Path(relpath).is_absolute():
        raise PathOutsideRootError(f"'{relpath}' is absolute; write paths relative to the dataset folder {root}")
    try:
        resolved = (root / relpath).resolve()
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python 3.11)
        raise ManifestError(f"'{relpath}' is not a usable path ({type(err).__name__}); fix it") from None
    if not resolved.is_relative_to(root.resolve()):
        raise PathOutsideRootError(f"'{relpath}' points outside the dataset folder {root}; move the file inside it")
    return resolved


def check_manifest(root: str | Path) -> tuple[list[ManifestRow], list[str]]:
    """Parse ``root/labels.csv``; return the usable rows and a list of problems (empty when all is well)."""
    root = Path(root)
    manifest = root / MANIFEST_NAME
    try:
        if not manifest.is_file():
            if root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
                logger.info("%s has no %s: one sub-folder per class", root, MANIFEST_NAME)
                try:
                    return class_folder_rows(root), []
                except ManifestError as err:
                    return [], [str(err)]
            raise ManifestError(
                f"{manifest} not found: a dataset folder needs a {MANIFEST_NAME} with columns path,label, "
                "or one sub-folder per class"
            )
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(f"{manifest} is not UTF-8 text ({err}); save it as UTF-8 CSV") from err
    except OSError as err:  # permissions, a folder that cannot be listed, a name too long, ...
        raise ManifestError(f"{manifest} cannot be read ({type(err).__name__}: {err.strerror or err})") from err
    try:
        return _check_rows(root, manifest, text)
    except csv.Error as err:  # a field over the csv module's size limit (an unclosed quote, a binary file)
        raise ManifestError(f"{manifest} is not a readable CSV file ({err}); save it again as UTF-8 CSV") from err


def _check_rows(root: Path, manifest: Path, text: str) -> tuple[list[ManifestRow], list[str]]:
    """:func:`check_manifest` on the text of labels.csv."""
    # newline="": the csv module splits records itself, so line separators such as U+2028 or U+0085 inside a
    # value stay part of it (str.splitlines would cut the row there)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    if absent:
        raise ManifestError(f"{manifest}: missing column(s) {', '.join(absent)}; found {columns or 'no header'}")
    has_patients = "patient_id" in columns
    if not has_patients:
        logger.warning("%s has no patient_id column: DICOM PatientID, else the path, identifies patients", manifest)
    rows: list[ManifestRow] = []
    problems: list[str] = []
    seen: dict[Path, int] = {}
    for record in reader:
        line = reader.line_num  # the record's last line in the file (blank lines and quoted newlines counted)
        where = f"{manifest.name} line {line}"
        if None in record:  # more fields than the header has columns
            problems.append(
                f"{where}: {len(columns) + len(record[None])} fields, the header has {len(columns)}; "
                "put values that contain commas in double quotes"
            )
            continue
        raw = {(k or "").strip(): (v or "").strip() for k, v in record.items()}
        relpath, label, split = raw["path"], raw["label"], raw.get("split") or None
        if not relpath or not label:
            problems.append(f"{where}: empty {'path' if not relpath else 'label'}; fill it in or delete the row")
            continue
        if "site" in columns and not raw["site"]:
            problems.append(f"{where}: empty site; give every row its scanner or hospital, or drop the site column")
            continue
        if "split" in columns and split not in SPLIT_VALUES:
            problems.append(f"{where}: split is {split!r}; use one of {', '.join(SPLIT_VALUES)} on every row")
            continue
        try:
            path = resolve_inside(root, relpath)
            exists = path.exists()
        except ManifestError as err:  # outside the root, a NUL byte, a symlink loop
            problems.append(f"{where}: {err}")
            continue
        except OSError as err:  # a name too long for the file system
            problems.append(
                f"{where}: '{relpath}' is not a usable path ({type(err).__name__}); fix it or delete the row"
            )
            continue
        if not exists:
            problems.append(f"{where}: file '{relpath}' does not exist in {root}; fix the path or delete the row")
            continue
        if path in seen:
            problems.append(f"{where}: '{relpath}' is listed again (first on line {seen[path]}); delete one row")
            continue
        seen[path] = line
        rows.append(ManifestRow(line, relpath, path, label, raw.get("patient_id") or None, split, raw.get("site")))
    if not rows and not problems:
        problems.append(f"{manifest}: no rows")
    return rows, problems


def class_folder_rows(root: Path) -> list[ManifestRow]:
    """Rows of a dataset without labels.csv: one sub-folder per class, each entry in it (a DICOM, NIfTI or
    image file, or a DICOM series folder) one image. Hidden entries are ignored."""
    rows: list[ManifestRow] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for entry in sorted(p for p in class_dir.iterdir() if not p.name.startswith(".")):
            relpath = entry.relative_to(root).as_posix()
            rows.append(ManifestRow(len(rows) + 2, relpath, resolve_inside(root, relpath), class_dir.name, None))
    return rows


def write_class_folder_manifest(root: str | Path, out: str | Path | None = None, force: bool = False) -> Counter[str]:
    """Write the rows of :func:`class_folder_rows` as a ``path,label`` CSV (default ``root/labels.csv``), sorted by
    path; return the number of images per class. Paths are relative to the CSV's folder (posix), so ``out`` must
    lie in ``root`` or a folder above it. Refuses (:class:`ManifestError`) an existing file unless ``force``, and
    a folder with fewer than two classes. Reads no image and writes nothing but ``out`` (through a temporary
    file renamed into place)."""
    root = Path(root)
    out = Path(out) if out is not None else root / MANIFEST_NAME
    if not root.is_dir():
        raise ManifestError(f"{root} is not a folder; give the folder that holds one sub-folder per class")
    try:
        prefix = root.resolve().relative_to(out.parent.resolve())
    except ValueError:
        raise ManifestError(
            f"{out}: paths in a manifest are relative to its folder, so write it in {root} or a folder above it"
        ) from None
    if (out.exists() or out.is_symlink()) and not force:
        raise ManifestError(f"{out} exists; pass --force to replace it, or --out to write another file")
    rows = sorted(((prefix / r.relpath).as_posix(), r.label) for r in class_folder_rows(root))
    counts = Counter(label for _, label in rows)
    if len(counts) < 2:
        found = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items())) or "none"
        raise ManifestError(
            f"{root}: classes with images: {found}; augmentation needs at least two class sub-folders of images"
        )
    with atomic_file(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REQUIRED_COLUMNS)
        writer.writerows(rows)
    return counts


def read_manifest(root: str | Path) -> list[ManifestRow]:
    """Like :func:`check_manifest` but raise one error listing every problem."""
    rows, problems = check_manifest(root)
    if problems:
        error = MissingImageError if all("does not exist" in p for p in problems) else ManifestError
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise error(f"{len(problems)} problem(s) in the dataset manifest:\n  {shown}")
    return rows
