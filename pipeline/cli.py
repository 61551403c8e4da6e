"""The ``medaug`` command for what is not a pipeline stage (the stages run with ``dvc repro``)."""

from __future__ import annotations

import argparse
import logging
import sys
import webbrowser
from collections import Counter
from pathlib import Path

from pipeline.io.errors import MedaugInputError
from pipeline.io.manifest import check_manifest
from pipeline.io.medmnist import import_medmnist
from pipeline.io.reader import load_image

__all__ = ["main", "check_data"]

REPORT = Path("reports") / "augmentation_report.md"


def check_data(root: Path) -> list[str]:
    """Validate a dataset folder without running the pipeline; print a summary, return the problems."""
    rows, problems = check_manifest(root)
    shapes: Counter[str] = Counter()
    for row in rows:
        try:
            image = load_image(row.path)
            shapes[f"{image.modality or 'unknown modality'} {'x'.join(map(str, image.array.shape[1:]))}"] += 1
            if image.burned_in_annotation:
                problems.append(
                    f"labels.csv line {row.line}: {row.relpath} is flagged BurnedInAnnotation YES (text in the "
                    "pixels may identify the patient); preprocess refuses it unless preprocess.allow_burned_in: true"
                )
        except MedaugInputError as err:
            problems.append(f"labels.csv line {row.line}: {err}")
    labels = Counter(r.label for r in rows)
    patients = {r.patient_id for r in rows if r.patient_id}
    print(f"{root}: {len(rows)} images" + (f", {len(patients)} patients" if patients else ", patients from DICOM"))
    print("classes: " + ", ".join(f"{k} ({v})" for k, v in sorted(labels.items())))
    print("images: " + ", ".join(f"{k} ({v})" for k, v in sorted(shapes.items())))
    if len(labels) < 2:
        problems.append("fewer than two classes: augmentation needs at least two")
    print(f"{len(problems)} problem(s)" + (":" if problems else ""))
    for problem in problems:
        print(f"  - {problem}")
    return problems


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="medaug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-data", help="validate a dataset folder (labels.csv and every image)")
    check.add_argument("root", type=Path)
    imp = sub.add_parser("import-medmnist", help="turn a MedMNIST .npz into a dataset folder (keeps its split)")
    imp.add_argument("npz", type=Path)
    imp.add_argument("out_dir", type=Path)
    imp.add_argument("--format", choices=("dicom", "nifti"), default="dicom")
    report = sub.add_parser("report", help="print the path of the augmentation report")
    report.add_argument("--open", action="store_true", help="also open it in the default viewer")
    args = parser.parse_args(argv)
    if args.command == "check-data":
        try:
            return 1 if check_data(args.root) else 0
        except MedaugInputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if args.command == "import-medmnist":
        try:
            counts = import_medmnist(args.npz, args.out_dir, args.format)
        except MedaugInputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote {sum(counts.values())} images ({counts}) and labels.csv to {args.out_dir}")
        return 0
    if not REPORT.is_file():
        print(f"no report at {REPORT}: run `make run` (or `dvc repro`) first", file=sys.stderr)
        return 1
    print(REPORT.resolve())
    if args.open:
        webbrowser.open(REPORT.resolve().as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
