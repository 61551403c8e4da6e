"""No PHI from DICOM headers or labels.csv reaches anything the ``preprocess`` stage writes or prints.

Every attribute of the DICOM basic application-level confidentiality profile (PS3.15 Annex E, Table E.1-1,
listed in ``tests/data/ps3_15_basic_profile.csv``; the source is named in that file's ``#`` header) that has a
text, date, time, UID, person-name or number-string VR is set to a unique marker in every DICOM file of a small
demo dataset, sequences of the profile get an item holding a marker, and a private block holds more. The stage
then runs as a user runs it (``python -m pipeline.preprocess`` in a project folder with its own params.yaml),
and every file it writes, its stdout and its stderr are searched for every marker, in every spelling a writer could
give it, by :mod:`tests.phi`: it opens zip, gzip, DICOM and PNG files and pickles, and searches a short or
digits-only spelling only where text stands, so that random UIDs, hashes and floats cannot raise a false alarm.
Plain image files (PNG, JPEG, TIFF) carry their own metadata (text chunks, EXIF, XMP, comments): the reader
returns none of it, and grey image files holding markers in every such block go through the stage too.
The same dataset then goes through the whole pipeline (`dvc repro`), and every file of the project folder, DVC's
cache, `dvc metrics show`, `dvc plots show` and the run's log are searched the same way.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml

from pipeline.io.reader import load_image
from tests.phi import Blob, Markers, blobs_of, find_markers, rewrite_labels, text_blob, write_marked_images
from tests.project import dvc

ROOT = Path(__file__).resolve().parents[1]


def run_preprocess(tmp_path: Path, dataset: Path, on_error: str) -> tuple[Path, subprocess.CompletedProcess]:
    """Run the stage in a fresh project folder whose params.yaml points at ``dataset`` and every output path
    inside the project folder; check that it wrote nothing into the dataset folder."""
    before = sorted(dataset.rglob("*"))
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["root"] = str(dataset)
    params["paths"] = {k: str(project / Path(v)) for k, v in params["paths"].items()}
    params["preprocess"].update(size=32, on_error=on_error, workers=1, val_fraction=0.2, test_fraction=0.25)
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pipeline.preprocess"], cwd=project, capture_output=True)
    assert done.returncode == 0, f"preprocess failed:\n{done.stdout.decode()[-3000:]}\n{done.stderr.decode()[-3000:]}"
    assert sorted(dataset.rglob("*")) == before, "preprocess wrote into the dataset folder"
    return project, done


def read_summary(project: Path) -> dict:
    processed = Path(yaml.safe_load((project / "params.yaml").read_text())["paths"]["processed"])
    return json.loads((processed / "summary.json").read_text(encoding="utf-8"))


def n_rows(root: Path) -> int:
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        return len(list(csv.DictReader(fh)))


def assert_no_marker(project: Path, done: subprocess.CompletedProcess, markers: Markers) -> None:
    outputs = [p for p in project.rglob("*") if p.is_file()]
    processed = Path(yaml.safe_load((project / "params.yaml").read_text())["paths"]["processed"])
    splits = {f"{name}{suffix}" for name in ("train", "val", "test") for suffix in (".npz", "_images.npy")}
    assert {p.name for p in processed.iterdir()} >= splits | {"summary.json"}
    blobs = [b for p in outputs for b in blobs_of(p)]
    blobs += [text_blob("stdout", done.stdout), text_blob("stderr", done.stderr)]
    found = find_markers(blobs, markers)
    assert not found, "PHI markers in the stage's outputs:\n" + "\n".join(
        f"  {where}: {', '.join(sorted(hits)[:10])}" + (f" and {len(hits) - 10} more" if len(hits) > 10 else "")
        for where, hits in found.items()
    )


def test_marker_scan_finds_markers_in_dicom_and_npz(marker_dataset, tmp_path):
    """The search itself works: it sees the markers in the input files and in a string array of an npz."""
    root, markers, n_attributes = marker_dataset
    assert n_attributes >= 150 and len(markers.spellings) > 300
    first = next((root / "dicom").rglob("*.dcm"))
    in_dicom = set().union(*find_markers(blobs_of(first), markers).values())
    ds = pydicom.dcmread(first)
    name = str(ds.PatientName).split("^")[0]
    assert any(hit.startswith(name) for hit in in_dicom)
    assert any("ReferringPhysicianName" in hit for hit in in_dicom) and any("private LO" in hit for hit in in_dicom)
    assert ds.BurnedInAnnotation == "NO" and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    np.savez(tmp_path / "leak.npz", patients=np.array(["P1", ds.PatientID]))
    assert find_markers(blobs_of(tmp_path / "leak.npz"), markers)


def test_preprocess_outputs_hold_no_phi(marker_dataset, tmp_path):
    root, markers, _ = marker_dataset
    project, done = run_preprocess(tmp_path, root, on_error="fail")
    summary = read_summary(project)
    assert summary["n_files"] == n_rows(root) and not summary["skipped"]
    assert_no_marker(project, done, markers)


def test_skipped_file_reason_holds_no_phi(marker_dataset, tmp_path):
    """on_error: skip with a truncated file: the reason recorded in summary.json and logged names the file
    by its path, never by a header value. labels.csv has no patient_id column here, so patients are grouped
    by the DICOM PatientID the reader returns."""
    root, markers, _ = marker_dataset
    dataset = tmp_path / "dataset"
    shutil.copytree(root, dataset)
    with open(dataset / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    bad = next(r["path"] for r in rows if r["path"].endswith(".dcm") and r["label"] == "normal")
    blob = (dataset / bad).read_bytes()
    (dataset / bad).write_bytes(blob[: len(blob) - 1500])  # header with all its markers kept, pixel data cut
    assert len(find_markers(blobs_of(dataset / bad), markers)[str(dataset / bad)]) > 200
    rewrite_labels(dataset, lambda row: {k: v for k, v in row.items() if k != "patient_id"})
    project, done = run_preprocess(tmp_path, dataset, on_error="skip")
    summary = read_summary(project)
    assert [s["path"] for s in summary["skipped"]] == [bad], summary["skipped"]
    assert summary["n_files"] == n_rows(dataset) and summary["n_images"] > 0
    assert bad in summary["skipped"][0]["reason"] or Path(bad).name in summary["skipped"][0]["reason"]
    assert_no_marker(project, done, markers)


# every field of what load_image returns: a new field must be added here, after checking that it carries no PHI
LOADED_FIELDS = {
    "array",
    "spacing",
    "affine",
    "modality",
    "patient_id",
    "burned_in_annotation",
    "max_value",
    "source",
}


def test_image_file_metadata_never_reaches_what_the_reader_returns(tmp_path):
    """PNG text chunks (tEXt, zTXt, iTXt), EXIF, XMP, a JPEG comment and TIFF description tags, each holding a marker
    that the search sees in the file, are nowhere in the returned image: its pixels, nor any other field."""
    markers = Markers()
    planted = write_marked_images(tmp_path, markers)
    for path, labels in planted.items():
        assert set().union(*find_markers(blobs_of(path), markers).values()) >= labels, f"unseen markers in {path}"
        image = load_image(path)
        fields = {field.name: getattr(image, field.name) for field in dataclasses.fields(image)}
        assert set(fields) == LOADED_FIELDS
        assert image.patient_id is None and image.modality is None and image.source == "image"
        blobs = [Blob(f"{path.name}: array", image.array.tobytes())]
        blobs += [text_blob(f"{path.name}: {name}", repr(value)) for name, value in fields.items() if name != "array"]
        assert not find_markers(blobs, markers), f"{path.name}: metadata in the loaded image"


def test_preprocess_outputs_hold_no_phi_from_image_file_metadata(marker_dataset, tmp_path):
    """The marker dataset plus grey PNG, JPEG and TIFF files whose metadata blocks hold markers (and whose patient IDs
    and sites in labels.csv are markers): nothing the stage writes or prints holds any of them."""
    root, markers, _ = marker_dataset
    markers = copy.deepcopy(markers)  # the session's markers stay as the shared run knows them
    dataset = tmp_path / "dataset"
    shutil.copytree(root, dataset)
    planted = write_marked_images(dataset / "images", markers)
    with open(dataset / "labels.csv", "a", newline="", encoding="utf-8") as fh:
        for k, path in enumerate(sorted(planted)):
            patient, site = (markers.new("LO", f"{column} of {path.name}") for column in ("patient_id", "site"))
            row = [path.relative_to(dataset).as_posix(), ("normal", "nodule")[k % 2], patient, site]
            csv.writer(fh).writerow(row)
    project, done = run_preprocess(tmp_path, dataset, on_error="fail")
    summary = read_summary(project)
    assert summary["n_files"] == n_rows(dataset) and not summary["skipped"]
    assert_no_marker(project, done, markers)


@pytest.mark.slow
def test_a_whole_dvc_repro_writes_shows_and_logs_no_phi(shared_run):
    """Every stage of the shared run on the marker dataset, DICOM synthetic images included: no marker in any file of
    the project (data/, models/, reports/, dvc.lock, .dvc/ with its cache), in what `dvc metrics show` and
    `dvc plots show` print or write, or in the log of the run."""
    project, markers = shared_run.project, shared_run.markers
    log = shared_run.log
    log += dvc(project, "metrics", "show", "--json")
    log += dvc(project, "plots", "show", "--json")
    log += dvc(project, "plots", "show", "-o", "dvc_plots")

    files = [p for p in project.rglob("*") if p.is_file()]
    names = {p.relative_to(project).as_posix() for p in files}
    expected = {
        "reports/augmentation_report.md",
        "reports/augmentation_report.html",
        "reports/metrics.json",
        "reports/classifier/vae/predictions.npz",
        "models/generator.pt",
        "data/synthetic/summary.json",
        "dvc_plots/index.html",
        "dvc.lock",
    }
    assert expected <= names, sorted(expected - names)
    assert any(n.startswith("data/synthetic/") and n.endswith(".dcm") for n in names), "no synthetic DICOM written"
    assert any(n.startswith(".dvc/cache/") for n in names)
    assert any(n.startswith(".medaug/runs/") for n in names)  # the run log is searched too
    blobs = [b for p in files for b in blobs_of(p)] + [text_blob("dvc output", log)]
    found = find_markers(blobs, markers)
    assert not found, "PHI markers after dvc repro:\n" + "\n".join(
        f"  {where}: {', '.join(sorted(hits)[:10])}" for where, hits in found.items()
    )
