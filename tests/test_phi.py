"""The PHI search of :mod:`tests.phi`: every kind of planted leak is found, wherever a writer could put it, and the
digits of a marker inside random UIDs, hashes, floats, pixels, clock readings and DVC's byte counts are not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from tests.phi import Markers, blobs_of, find_markers, text_blob


@pytest.fixture
def markers() -> Markers:
    m = Markers()
    m.values = {vr: m.new(vr, f"a {vr}") for vr in ("PN", "LO", "DA", "TM", "DT", "UI", "IS", "DS", "AS", "SH")}
    return m


def write_dicom(path: Path, uid: str = "1.2.3.4", **elements) -> Path:
    """A small Secondary Capture file; ``elements`` set keyword -> value (bytes for PixelData)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, uid
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 4, 4, 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
    ds.PixelData = bytes(32)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def found(path: Path, markers: Markers) -> set[str]:
    return set().union(*find_markers(blobs_of(path), markers).values())


def labels_of(markers: Markers, vr: str) -> set[str]:
    value = markers.values[vr]
    return {label for label in markers.spellings.values() if label.startswith(value.split("^")[0])}


def test_every_spelling_of_a_marker_is_recorded(markers):
    tm = markers.values["TM"]  # HHMMSS.ffffff: also HH:MM:SS and HHMMSS
    assert {s for s, label in markers.spellings.items() if label.startswith(tm)} == {
        tm,
        f"{tm[:2]}:{tm[2:4]}:{tm[4:6]}",
        tm[:6],
    }
    assert len([label for label in markers.spellings.values() if label.startswith(markers.values["DA"])]) == 6


def _time_with_colons(tm: str) -> str:
    return f"{tm[:2]}:{tm[2:4]}:{tm[4:6]}"


# (case, file name, writer of the file holding one leak of the marker value it is given, the marker's VR)
PLANTED = [
    # a family name in a JSON summary
    ("name in json", "summary.json", lambda p, v: p.write_text(json.dumps({"who": v.split("^")[0]})), "PN"),
    # a patient ID as a CSV cell
    ("ID in csv", "manifest.csv", lambda p, v: p.write_text(f"path,patient\na.dcm,{v}\n"), "LO"),
    # a date reformatted day first in a Markdown report
    ("date in markdown", "report.md", lambda p, v: p.write_text(f"Scanned {v[6:]}/{v[4:6]}/{v[:4]}."), "DA"),
    # a time without its fraction, as a JSON string
    ("bare time in json", "t.json", lambda p, v: p.write_text(json.dumps({"t": v[:6]})), "TM"),
    # a time with colons in a log line
    ("clock time in a log", "run.log", lambda p, v: p.write_text(f"acquired at {_time_with_colons(v)}\n"), "TM"),
    # a source UID copied into a synthetic DICOM's reference
    ("UID in a DICOM element", "syn.dcm", lambda p, v: write_dicom(p, ReferencedSOPInstanceUID=v), "UI"),
    # a time used as a component of a new UID
    ("time as a UID component", "syn.dcm", lambda p, v: write_dicom(p, uid=f"1.2.3.{v[:6]}.7"), "TM"),
    # a private tag's value in a DICOM text element
    ("private value in DICOM", "syn.dcm", lambda p, v: write_dicom(p, ImageComments=v), "SH"),
    # an IS number in an npz string array
    ("number in npz strings", "train.npz", lambda p, v: np.savez(p, ids=np.array(["a", v])), "IS"),
    # a date in a torch checkpoint's pickled config
    ("date in a checkpoint", "vae.pt", lambda p, v: torch.save({"config": {"when": v}}, p), "DA"),
    # an age in a PNG text chunk
    ("age in a PNG", "figure.png", lambda p, v: _png(p, {"Comment": f"age {v}"}), "AS"),
    # a patient ID in a compressed iTXt chunk of a PNG (only decompressed text shows it)
    ("ID in a compressed PNG iTXt", "photo.png", lambda p, v: _png_itxt(p, v), "LO"),
    # a name as the EXIF Artist of a JPEG
    ("name in JPEG EXIF", "photo.jpg", lambda p, v: _jpeg_exif(p, v), "PN"),
    # a date-time without its fraction in a NIfTI header description
    ("date-time in NIfTI", "syn.nii.gz", lambda p, v: _nifti(p, v[:14]), "DT"),
    # a decimal in a picture embedded in an HTML report
    ("DS in an embedded PNG", "report.html", lambda p, v: p.write_text(_html_with_png(p, {"x": v})), "DS"),
]


def _png(path: Path, text: dict[str, str]) -> None:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, format="PNG", pnginfo=info)


def _png_itxt(path: Path, text: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Comment", text, zip=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, format="PNG", pnginfo=info)


def _jpeg_exif(path: Path, artist: str) -> None:
    exif = Image.Exif()
    exif[0x013B] = artist  # Artist
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="JPEG", exif=exif)


def _nifti(path: Path, description: str) -> None:
    image = nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4))
    image.header["descrip"] = description.encode()
    nib.save(image, path)


def _html_with_png(path: Path, text: dict[str, str]) -> str:
    import base64

    picture = path.with_suffix(".png")
    _png(picture, text)
    encoded = base64.b64encode(picture.read_bytes()).decode()
    picture.unlink()
    return f'<html><body><img src="data:image/png;base64,{encoded}"></body></html>'


@pytest.mark.parametrize("case, name, write, vr", PLANTED, ids=[c[0] for c in PLANTED])
def test_a_planted_leak_is_found(case, name, write, vr, markers, tmp_path):
    write(tmp_path / name, markers.values[vr])
    assert found(tmp_path / name, markers) & labels_of(markers, vr), f"{case}: not found"


def test_a_leak_in_output_text_is_found(markers):
    blob = text_blob("stdout", f"INFO reading {markers.values['PN'].split('^')[1]}")
    assert find_markers([blob], markers)


def _digits(markers: Markers) -> list[str]:
    """The spellings a random number could hold: digits only (a time's HHMMSS, a date's YYYYMMDD, an IS)."""
    return [s for s in markers.spellings if s.isdigit()]


def test_random_uids_hashes_and_floats_holding_a_markers_digits_are_not_reported(markers, tmp_path):
    digits = _digits(markers)
    assert {markers.values["TM"][:6], markers.values["DA"], markers.values["IS"]} <= set(digits)
    rng = np.random.default_rng(0)
    for k, spelling in enumerate(digits):
        uid = f"1.2.826.0.1.3680043.8.498.{rng.integers(10**9)}{spelling}{rng.integers(10**9)}"
        # pixels whose bytes hold the digits of a short marker: runs of 6-7 digit bytes turn up in megabytes of
        # pixels and weights (8 or more, about once in 2**64 places, are searched there too: text burnt into pixels)
        short = spelling.encode() if len(spelling) < 8 else b""
        pixels = (rng.bytes(8) + short + rng.bytes(32))[:32]
        dicom = write_dicom(tmp_path / f"syn{k}.dcm", uid=uid, SeriesInstanceUID=uid + ".1", PixelData=pixels)
        md5 = hashlib.md5(spelling.encode()).hexdigest()
        hexed = md5[:8] + spelling + md5[8:]  # a hash with the digits inside
        lock = tmp_path / f"dvc{k}.lock"
        lock.write_text(f"outs:\n- path: a.png\n  md5: {hexed}\n  size: {spelling}\n  nfiles: {spelling}\n")
        metrics = tmp_path / f"metrics{k}.json"
        metrics.write_text(json.dumps({"auroc": float(f"0.{spelling}"), "run": f"2026-11-30T{_clock(spelling)}"}))
        arrays = tmp_path / f"arrays{k}.npz"
        np.savez(arrays, images=np.frombuffer(pixels, np.uint8), patients=np.array([hexed, md5]))
        for path in (dicom, lock, metrics, arrays):
            assert not find_markers(blobs_of(path), markers), f"false alarm in {path.name} ({spelling})"
    log = text_blob("log", f"finished_utc 2026-11-30 {_clock(markers.values['TM'][:6])}")
    assert not find_markers([log], markers)  # a clock reading of the run that happens to equal a marker time


def _clock(spelling: str) -> str:
    return f"{spelling[:2]}:{spelling[2:4]}:{spelling[4:6]}" if len(spelling) >= 6 else spelling
