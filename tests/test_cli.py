import csv
import shutil

import numpy as np
import pydicom
import pytest

import pipeline.cli as cli
from pipeline.cli import main


def test_check_data_accepts_a_good_dataset(tiny_dataset, capsys):
    assert main(["check-data", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "24 patients" in out and "0 problem(s)" in out
    assert "MRN" not in out  # raw patient IDs are never printed
    assert "x64x64 (grey)" in out and "(colour)" not in out  # channels first in the shapes


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


@pytest.mark.parametrize(
    "shape, shown",
    [
        ((3, 250, 250), "3x250x250 (colour)"),
        ((1, 64, 64, 32), "1x64x64x32 (grey)"),
        ((4, 8, 8), "4x8x8 (4 channels)"),  # what no reader should return, shown as it is
    ],
)
def test_check_data_shows_the_channels(tiny_dataset, monkeypatch, capsys, shape, shown):
    original = cli.load_image

    def load(path):
        image = original(path)
        return type(image)(**{**image.__dict__, "array": np.zeros(shape, np.float32), "modality": "XC"})

    monkeypatch.setattr(cli, "load_image", load)
    main(["check-data", str(tiny_dataset)])
    assert f"images: XC {shown} (" in capsys.readouterr().out


def test_import_medmnist_keeps_colour_unless_grey(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array([[0], [1]], dtype=np.uint8)
    np.savez(tmp_path / "bloodmnist.npz", **arrays)
    for name, extra, samples in (("colour", [], 3), ("grey", ["--grey"], 1)):
        assert main(["import-medmnist", str(tmp_path / "bloodmnist.npz"), str(tmp_path / name), *extra]) == 0
        assert "wrote 6 images" in capsys.readouterr().out
        ds = pydicom.dcmread(tmp_path / name / "train" / "train_00000.dcm")
        assert ds.SamplesPerPixel == samples and ds.Modality == "GM"
    assert main(["import-medmnist", str(tmp_path / "bloodmnist.npz"), str(tmp_path / "png"), "--format", "png"]) == 0
    assert (tmp_path / "png" / "test" / "test_00001.png").is_file()


def test_import_folder_writes_labels_and_counts(tmp_path, capsys):
    for name in ("benign/a.jpg", "benign/b.png", "malignant/c.tif", "malignant/.hidden.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert main(["import-folder", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 images in 2 classes" in out and "benign: 2" in out and "malignant: 1" in out
    with open(tmp_path / "labels.csv", encoding="utf-8") as fh:
        assert [tuple(r.values()) for r in csv.DictReader(fh)] == [
            ("benign/a.jpg", "benign"),
            ("benign/b.png", "benign"),
            ("malignant/c.tif", "malignant"),
        ]
    assert main(["import-folder", str(tmp_path)]) == 1  # labels.csv exists
    assert "--force" in capsys.readouterr().err
    assert main(["import-folder", str(tmp_path), "--force"]) == 0


def test_import_folder_refuses_a_single_class(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.png").write_bytes(b"x")
    assert main(["import-folder", str(tmp_path)]) == 1
    assert "at least two" in capsys.readouterr().err and not (tmp_path / "labels.csv").exists()


def test_check_data_prints_the_plan_of_a_five_class_colour_folder(tmp_path, capsys):
    """What the defaults will do: the split and ratio of each class, the synthetic images it gets, the normal class."""
    from tests.zoo import ZOO, build

    root = build(next(c for c in ZOO if c.name == "colour_five_grades"), tmp_path / "grades")
    assert main(["check-data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "5 classes; majority grade0" in out and "normal class grade0" in out and "0 problem(s)" in out
    grade4 = next(line.split() for line in out.splitlines() if line.strip().startswith("grade4"))
    train, val, test, ratio, synthetic = grade4[1:]
    assert int(val) >= 1 and int(test) >= 1 and ratio.startswith("1:") and int(synthetic) > int(train)


def test_check_data_refuses_what_the_settings_cannot_run_and_says_what_to_change(tmp_path, capsys):
    from tests.zoo import ZOO, build

    root = build(next(c for c in ZOO if c.name == "class_of_three"), tmp_path / "three")
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "remove smote from train_classifier.strategies" in out
