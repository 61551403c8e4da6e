import shutil

import pydicom

from pipeline.cli import main


def test_check_data_accepts_a_good_dataset(tiny_dataset, capsys):
    assert main(["check-data", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "24 patients" in out and "0 problem(s)" in out
    assert "MRN" not in out  # raw patient IDs are never printed


def test_check_data_lists_every_problem(tiny_dataset, tmp_path, capsys):
    root = tmp_path / "bad"
    shutil.copytree(tiny_dataset, root)
    listed = next(line.split(",")[0] for line in (root / "labels.csv").read_text().splitlines() if ".dcm," in line)
    (root / listed).write_bytes(b"not dicom")  # a corrupt copy; the source dataset is untouched
    flagged = sorted((root / "dicom").rglob("*.dcm"))[-1]
    ds = pydicom.dcmread(flagged)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(flagged)
    with open(root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("../escape.dcm,normal,x\nmissing.nii.gz,normal,y\n")
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "4 problem(s)" in out
    assert "outside the dataset folder" in out and "does not exist" in out and "not a readable DICOM" in out
    assert "BurnedInAnnotation YES" in out


def test_check_data_without_manifest(tmp_path, capsys):
    assert main(["check-data", str(tmp_path)]) == 1
    assert "labels.csv not found" in capsys.readouterr().err


def test_report_without_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 1
    assert "make run" in capsys.readouterr().err
