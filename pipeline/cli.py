"""The ``medaug`` command for what is not a pipeline stage (the stages run with ``dvc repro``)."""

from __future__ import annotations

import argparse
import logging
import sys
import webbrowser
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.config import PARAMS_FILE, ConfigError, PreprocessConfig, load_section
from pipeline.io.arrays import SPLITS, write_csv
from pipeline.io.errors import MedaugInputError
from pipeline.io.manifest import ManifestRow, check_manifest, write_class_folder_manifest
from pipeline.io.medmnist import FORMATS, import_medmnist
from pipeline.io.reader import load_image
from pipeline.planning import dataset_plan, load_settings
from pipeline.preparation import pseudonymise, target_channels
from pipeline.preprocess import SPLIT_BY_PATIENT, assign_splits
from pipeline.transforms import extract_slices

__all__ = ["main", "check_data", "import_folder"]

REPORT = Path("reports") / "augmentation_report.html"
ANOMALY_MODEL = Path("models") / "anomaly_vae.pt"


def check_data(root: Path, params_file: Path = PARAMS_FILE) -> list[str]:
    """Validate a dataset folder without running the pipeline; print a summary, return the problems. With a
    params.yaml (``params_file``), also the plan: the patient-level split per class that preprocess will make, the
    imbalance, the synthetic images per class, and every setting that cannot run on this dataset
    (:mod:`pipeline.planning`)."""
    rows, problems = check_manifest(root)
    shapes: Counter[str] = Counter()
    images: list[tuple[ManifestRow, int, str]] = []  # (row, 2D images or volumes it makes, its patient)
    channels: set[int] = set()
    preprocess = load_section("preprocess", params_file) if Path(params_file).is_file() else None
    for row in rows:
        try:
            image = load_image(row.path)
            kind = image.modality or ("image file" if image.source == "image" else "unknown modality")
            shapes[f"{kind} {_describe_shape(image.array.shape)}"] += 1
            made = 1
            if preprocess is not None and preprocess.spatial_dims == 2 and image.array.ndim == 4:
                made = len(extract_slices(image.array, preprocess.slice_policy, preprocess.slices_per_volume))
            # preprocess's pseudonym, so that the split below is the one preprocess will make (never printed)
            patient = row.patient_id or image.patient_id or row.relpath
            images.append((row, made, pseudonymise(patient, preprocess.id_salt) if preprocess else patient))
            channels.add(image.array.shape[0])
            if image.burned_in_annotation:
                problems.append(
                    f"labels.csv line {row.line}: {row.relpath} is flagged BurnedInAnnotation YES (text in the "
                    "pixels may identify the patient); preprocess refuses it unless preprocess.allow_burned_in: true"
                )
        except MedaugInputError as err:
            problems.append(f"labels.csv line {row.line}: {err}")
    labels = Counter(r.label for r in rows)
    patients = {r.patient_id for r in rows if r.patient_id}
    print(
        f"{root}: {len(rows)} images"
        + (f", {len(patients)} patients" if patients else ", patients from DICOM PatientID, else one per file")
    )
    print("classes: " + ", ".join(f"{k} ({v})" for k, v in sorted(labels.items())))
    print("images: " + ", ".join(f"{k} ({v})" for k, v in sorted(shapes.items())))
    if len(labels) < 2:
        problems.append("fewer than two classes: augmentation needs at least two")
    elif preprocess is not None and images:
        problems += _print_plan(images, channels, preprocess, params_file)
    print(f"{len(problems)} problem(s)" + (":" if problems else ""))
    for problem in problems:
        print(f"  - {problem}")
    return problems


def _print_plan(
    images: list[tuple[ManifestRow, int, str]], channels: set[int], cfg: PreprocessConfig, params_file: Path
) -> list[str]:
    """Print what params_file's settings will do with the readable ``images`` (of ``channels``); return what cannot
    work."""
    labels = np.array([row.label for row, made, _ in images for _ in range(made)])
    patients = np.array([patient for _, made, patient in images for _ in range(made)])
    given = [row.split for row, made, _ in images for _ in range(made)]
    site_of = {row.site: pseudonymise(row.site, cfg.id_salt, "S") for row, _, _ in images if row.site}
    sites = [site_of.get(row.site or "", "") for row, made, _ in images for _ in range(made)]
    try:
        split, source = assign_splits(labels, patients, given, sites, cfg)
    except MedaugInputError as err:
        return [f"preprocess will refuse this dataset: {err}"]
    classes = sorted(set(labels))
    splits = {s: {c: int(((split == s) & (labels == c)).sum()) for c in classes} for s in SPLITS}
    shape = (target_channels(cfg.channels, channels), *[cfg.size] * cfg.spatial_dims)  # what preprocess will make
    plan = dataset_plan(splits, load_settings(params_file), shape)
    source = {"labels.csv": "labels.csv's split column", SPLIT_BY_PATIENT: f"{source}, preprocess.seed {cfg.seed}"}.get(
        source, source
    )
    print(f"plan with {params_file} ({source}):")
    for line in plan.describe():
        print(f"  {line}")
    return plan.problems


def _describe_shape(shape: tuple[int, ...]) -> str:
    """``3x250x250 (colour)``: channels first, then the spatial size."""
    kind = {1: "grey", 3: "colour"}.get(shape[0], f"{shape[0]} channels")
    return f"{'x'.join(map(str, shape))} ({kind})"


def import_folder(root: Path, out: Path | None, force: bool) -> int:
    """Write the labels.csv of a folder of class sub-folders; print the images per class."""
    try:
        counts = write_class_folder_manifest(root, out, force=force)
    except MedaugInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out or root / 'labels.csv'}: {sum(counts.values())} images in {len(counts)} classes")
    for label, count in sorted(counts.items()):
        print(f"  {label}: {count}")
    print(f"check the images with `medaug check-data {root}`")
    return 0


def score_images_command(images: list[Path], model: Path, out: Path | None) -> int:
    """Print (and with ``out`` write) the anomaly scores of ``images``; 1 when a file or the model is unusable."""
    from pipeline.anomaly import score_files

    if not model.is_file():
        print(f"error: no anomaly model at {model}: run `dvc repro anomaly` first (or pass --model)", file=sys.stderr)
        return 1
    errors: list[MedaugInputError] = []
    rows = score_files(images, model, errors=errors)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    print(f"{'file':<40} {'slice':>5} {'reconstruction':>15} {'elbo':>12}  call")
    for row in rows:
        call = "ABNORMAL" if row["abnormal"] else "normal"
        print(f"{row['file']:<40} {row['slice']:>5} {row['reconstruction']:>15.4g} {row['elbo']:>12.4g}  {call}")
    if out is not None and rows:
        write_csv(out, rows)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="medaug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check-data", help="validate a dataset folder (labels.csv and every image) and show what params.yaml will do"
    )
    check.add_argument("root", type=Path)
    check.add_argument("--params", type=Path, default=PARAMS_FILE, help=f"default: {PARAMS_FILE} (skipped if absent)")
    imp = sub.add_parser("import-medmnist", help="turn a MedMNIST .npz into a dataset folder (keeps its split)")
    imp.add_argument("npz", type=Path)
    imp.add_argument("out_dir", type=Path)
    imp.add_argument("--format", choices=FORMATS, default="dicom")
    imp.add_argument("--grey", action="store_true", help="convert colour sets to luminance (default: keep RGB)")
    folder = sub.add_parser("import-folder", help="write labels.csv for a folder of class sub-folders of images")
    folder.add_argument("root", type=Path, help="a folder with one sub-folder of images per class")
    folder.add_argument("--out", type=Path, help="where to write the CSV (default ROOT/labels.csv)")
    folder.add_argument("--force", action="store_true", help="replace an existing labels.csv")
    score = sub.add_parser("score", help="anomaly scores of DICOM/NIfTI files (the anomaly stage's model)")
    score.add_argument("images", nargs="+", type=Path, help="DICOM files, DICOM series folders or NIfTI files")
    score.add_argument("--model", type=Path, default=ANOMALY_MODEL, help=f"default: {ANOMALY_MODEL}")
    score.add_argument("--out", type=Path, help="also write the scores to this CSV file")
    report = sub.add_parser("report", help="print the path of the augmentation report (HTML)")
    report.add_argument("--open", action="store_true", help="also open it in the default browser")
    args = parser.parse_args(argv)
    if args.command == "check-data":
        try:
            return 1 if check_data(args.root, args.params) else 0
        except (MedaugInputError, ConfigError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if args.command == "import-medmnist":
        try:
            counts = import_medmnist(args.npz, args.out_dir, args.format, grey=args.grey)
        except MedaugInputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote {sum(counts.values())} images ({counts}) and labels.csv to {args.out_dir}")
        return 0
    if args.command == "import-folder":
        return import_folder(args.root, args.out, args.force)
    if args.command == "score":
        return score_images_command(args.images, args.model, args.out)
    if not REPORT.is_file():
        print(f"no report at {REPORT}: run `make run` (or `dvc repro`) first", file=sys.stderr)
        return 1
    print(REPORT.resolve())
    if args.open:
        webbrowser.open(REPORT.resolve().as_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
