import csv
from pathlib import Path

import numpy as np
import pytest

from pipeline.io.arrays import SplitData
from pipeline.io.errors import DatasetTooSmallError
from pipeline.preprocess import flat_images, near_twins, preprocess_dataset, pseudonymise, split_by_patient
from tests.conftest import SHARED_DATA, TINY_DEMO, TINY_PREPROCESS


def _labels(n_patients=40, per_patient=3, minority_every=5):
    patients = np.repeat([f"p{i}" for i in range(n_patients)], per_patient)
    labels = np.array(["rare" if int(p[1:]) % minority_every == 0 else "common" for p in patients])
    return labels, patients


def test_split_keeps_patients_together_and_every_class_everywhere():
    labels, patients = _labels()
    split = split_by_patient(labels, patients, 0.15, 0.2, seed=0)
    for p in np.unique(patients):
        assert len(set(split[patients == p])) == 1
    for name in ("train", "val", "test"):
        assert set(labels[split == name]) == {"rare", "common"}
    assert 0.1 < (split == "test").mean() < 0.3
    assert (split == split_by_patient(labels, patients, 0.15, 0.2, seed=0)).all()
    assert (split != split_by_patient(labels, patients, 0.15, 0.2, seed=1)).any()


def test_class_with_too_few_patients_is_refused():
    labels, patients = _labels(n_patients=10, minority_every=5)  # 2 rare patients
    with pytest.raises(DatasetTooSmallError, match="class 'rare' has 2 patient"):
        split_by_patient(labels, patients, 0.15, 0.2, seed=0)


def test_single_class_is_refused():
    with pytest.raises(DatasetTooSmallError, match="only one class"):
        split_by_patient(np.array(["a"] * 6), np.array(list("abcdef")), 0.15, 0.2, seed=0)


def test_split_by_site_holds_one_whole_site_out_as_test_and_splits_the_rest_by_patient():
    from pipeline.preprocess import split_by_site

    labels, patients = _labels(n_patients=60)
    sites = np.where(np.char.str_len(patients) == 2, "Sx", np.where(np.char.endswith(patients, "1"), "Sy", "Sz"))
    split, held = split_by_site(labels, patients, sites, 0.25, 0.35, seed=0)
    assert set(sites[split == "test"]) == {held} and held not in set(sites[split != "test"])
    assert (split[sites == held] == "test").all()
    for p in np.unique(patients):
        assert len(set(split[patients == p])) == 1
    for name in ("train", "val", "test"):
        assert set(labels[split == name]) == {"rare", "common"}
    share = float(np.mean(sites == held))
    assert all(abs(share - 0.35) <= abs(float(np.mean(sites == s)) - 0.35) for s in ("Sx", "Sy", "Sz"))


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        (lambda patients: np.full(len(patients), "Sa"), "has 1 site"),
        (lambda patients: np.where(np.arange(len(patients)) % 2 == 0, "Sa", "Sb"), "more than one site"),
        (lambda patients: np.where(np.isin(patients, ["p0", "p5", "p10", "p15"]), "Sa", "Sb"), "no site to hold out"),
    ],
)
def test_split_by_site_refuses_what_cannot_be_held_out_and_says_what_to_change(sites, message):
    from pipeline.preprocess import split_by_site

    labels, patients = _labels(n_patients=40)  # rare: p0, p5, ... (8 patients)
    with pytest.raises(DatasetTooSmallError, match=message) as err:
        split_by_site(labels, patients, sites(patients), 0.25, 0.35, seed=0)
    assert "split_by" in str(err.value)


def test_split_by_site_is_refused_before_any_image_is_read(tiny_dataset, monkeypatch):
    from dataclasses import replace

    import pipeline.preparation

    def unread(*args, **kwargs):
        raise AssertionError("an image was read")

    monkeypatch.setattr(pipeline.preparation, "load_image", unread)
    with pytest.raises(DatasetTooSmallError, match="needs a site column"):
        preprocess_dataset(tiny_dataset, replace(TINY_PREPROCESS, split_by="site"))


def test_sites_reach_the_splits_as_pseudonyms_and_split_by_site_tests_on_one(tmp_path):
    from dataclasses import replace

    from pipeline.demo_data import SCANNERS, write_demo_dataset

    root = tmp_path / "demo"
    write_demo_dataset(root, replace(TINY_DEMO, n_patients=40, sites=2))
    names = {s.name for s in SCANNERS[:2]}
    splits, _, summary = preprocess_dataset(root, TINY_PREPROCESS)
    pseudonyms = {pseudonymise(n, TINY_PREPROCESS.id_salt, "S") for n in names}
    assert set(np.concatenate([s.sites for s in splits.values()])) == pseudonyms
    assert set(summary.sites["test"]) == pseudonyms  # a patient-level split tests on both scanners
    assert not any(n in repr(summary) or n in repr(splits) for n in names)
    splits, _, summary = preprocess_dataset(root, replace(TINY_PREPROCESS, split_by="site"))
    (held,) = set(splits["test"].sites)
    assert held in summary.split_source and held not in set(splits["train"].sites) | set(splits["val"].sites)
    assert pseudonymise("x", "salt", "S") != "S" + pseudonymise("x", "salt")[1:]


def test_pseudonyms_are_stable_salted_and_not_the_id():
    assert pseudonymise("MRN123", "s1") == pseudonymise("MRN123", "s1")
    assert pseudonymise("MRN123", "s1") != pseudonymise("MRN123", "s2")
    assert "MRN123" not in pseudonymise("MRN123", "s1")


def test_preprocess_tiny_dataset(tiny_dataset):
    splits, manifest, summary = preprocess_dataset(tiny_dataset, TINY_PREPROCESS)
    with open(tiny_dataset / "labels.csv", encoding="utf-8") as fh:
        raw_ids = {r["patient_id"] for r in csv.DictReader(fh)}
    total = 0
    for data in splits.values():
        assert data.images.shape[1:] == (1, 32, 32) and data.images.dtype == np.float32
        assert 0.0 <= data.images.min() and data.images.max() <= 1.0
        assert not raw_ids & set(data.patients)
        total += len(data)
    assert total == summary.n_images == 48  # 24 patients x 2 slices, volumes expanded
    assert not set(splits["test"].patients) & (set(splits["train"].patients) | set(splits["val"].patients))
    assert not raw_ids & {str(v) for row in manifest for v in row.values()}


def test_given_split_refuses_a_patient_in_two_splits():
    from pipeline.preprocess import check_given_split

    labels = np.array(["a", "b"] * 3)
    patients = np.array(["p1", "p1", "p2", "p3", "p4", "p5"])
    split = np.array(["train", "test", "train", "val", "test", "val"])
    with pytest.raises(DatasetTooSmallError, match="more than one split"):
        check_given_split(labels, patients, split)


def _with_bad_rows(tiny_dataset, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    listed = next(line.split(",")[0] for line in (root / "labels.csv").read_text().splitlines() if ".dcm," in line)
    (root / listed).write_bytes(b"corrupt")
    with open(root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("missing.dcm,normal,x\n")
    return root, listed


def test_on_error_fail_names_the_file(tiny_dataset, tmp_path):
    from pipeline.io.errors import ManifestError

    root, _ = _with_bad_rows(tiny_dataset, tmp_path)
    with pytest.raises(ManifestError, match="missing.dcm"):
        preprocess_dataset(root, TINY_PREPROCESS)


def test_on_error_skip_records_each_skipped_row(tiny_dataset, tmp_path):
    import dataclasses

    root, corrupt = _with_bad_rows(tiny_dataset, tmp_path)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    cfg = dataclasses.replace(TINY_PREPROCESS, on_error="skip")
    splits, _, summary = preprocess_dataset(root, cfg)
    reasons = [s["reason"] for s in summary.skipped]
    assert len(reasons) == 2
    assert any("missing.dcm" in r for r in reasons) and any("not a readable DICOM" in r for r in reasons)
    assert summary.n_images == 48 - 1  # one corrupt slice left out
    assert before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}  # source untouched


def test_ct_window_presets():
    from pipeline.transforms import ct_window

    assert ct_window("lung", 0, 1) == (-600.0, 1500.0)
    assert ct_window("custom", -400, 1500) == (-400, 1500)
    with pytest.raises(ValueError, match="unknown CT window"):
        ct_window("liver", 0, 1)


def test_stage_stops_with_a_message_not_a_traceback(tiny_dataset, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    with open(root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("missing.dcm,normal,x\n")
    params = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "params.yaml", encoding="utf-8"))
    params["data"]["root"] = str(root)
    params["paths"]["processed"] = str(tmp_path / "processed")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.preprocess"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "preprocess stopped" in done.stderr and "missing.dcm" in done.stderr and "on_error: skip" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "processed").exists()


def test_parallel_reading_gives_the_same_result(tiny_dataset):
    import dataclasses

    one, _, summary_one = preprocess_dataset(tiny_dataset, TINY_PREPROCESS)
    two, _, summary_two = preprocess_dataset(tiny_dataset, dataclasses.replace(TINY_PREPROCESS, workers=2))
    assert summary_one == summary_two
    for name in one:
        assert np.array_equal(one[name].images, two[name].images)
        assert np.array_equal(one[name].patients, two[name].patients)


@pytest.mark.skipif(not (SHARED_DATA / "ct_series").is_dir(), reason="../shared/data/ct_series is not present")
def test_real_ct_series_becomes_windowed_slices(tmp_path):
    import dataclasses
    import shutil

    from pipeline.io.manifest import read_manifest
    from pipeline.preprocess import row_samples

    shutil.copytree(SHARED_DATA / "ct_series" / "example_ct_dicom", tmp_path / "ct")
    (tmp_path / "labels.csv").write_text("path,label,patient_id\nct,chest,anon\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ct").iterdir()}
    cfg = dataclasses.replace(TINY_PREPROCESS, size=64, ct_window="mediastinum")  # -125..225 HU
    samples = row_samples(read_manifest(tmp_path)[0], cfg)
    assert len(samples) == 20 and all(s.image.shape == (1, 64, 64) and s.modality == "CT" for s in samples)
    middle = samples[10].image
    assert middle.min() == 0.0 and middle.max() > 0.95  # air below and bone above the window
    assert 0.05 < (middle == 0.0).mean() < 0.9  # air around the body, tissue inside
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "ct").iterdir()}


def test_class_folders_without_manifest_group_by_dicom_patient_id(tiny_dataset, tmp_path):
    import shutil

    import pydicom

    root = tmp_path / "by_class"
    with open(tiny_dataset / "labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for k, row in enumerate(rows):  # every image into <label>/, named without patient information
        source = tiny_dataset / row["path"]
        target = root / row["label"] / f"img{k:03d}{''.join(source.suffixes)}"
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    splits, _, summary = preprocess_dataset(root, TINY_PREPROCESS)
    assert summary.n_images == 48 and summary.classes == ["nodule", "normal"]
    # slices of one DICOM patient (same PatientID, different files) never straddle splits
    by_patient = {}
    for path in root.rglob("*.dcm"):
        by_patient.setdefault(str(pydicom.dcmread(path, stop_before_pixels=True).PatientID), []).append(path)
    assert any(len(files) > 1 for files in by_patient.values())
    seen = {name: set(data.patients) for name, data in splits.items()}
    assert not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    assert sum(len(s) for s in seen.values()) < 48  # files were grouped into patients


@pytest.mark.skipif(not (SHARED_DATA / "ct_series").is_dir(), reason="../shared/data/ct_series is not present")
def test_target_spacing_gives_pixels_of_that_size(tmp_path):
    import dataclasses
    import shutil

    from pipeline.io.manifest import read_manifest
    from pipeline.preprocess import row_samples

    (tmp_path / "labels.csv").write_text("path,label,patient_id\nct,chest,anon\n", encoding="utf-8")
    shutil.copytree(SHARED_DATA / "ct_series" / "example_ct_dicom", tmp_path / "ct")
    row = read_manifest(tmp_path)[0]
    cfg = dataclasses.replace(TINY_PREPROCESS, size=128, slice_policy="middle")
    resized = row_samples(row, cfg)[0].image[0]  # whole 500 mm field of view squeezed into 128 pixels
    at_4mm = row_samples(row, dataclasses.replace(cfg, spacing=(4.0, 4.0)))[0].image[0]
    assert at_4mm.shape == resized.shape == (128, 128)
    body = [(img > 0.3).any(axis=1).sum() * mm for img, mm in ((resized, 512 * 0.98 / 128), (at_4mm, 4.0))]
    assert 250 < body[0] and abs(body[0] - body[1]) < 12  # the body (above -700 HU) is as wide in mm either way
    assert (at_4mm[0] == 0).all() and (at_4mm[-1] == 0).all()  # 500 mm < 128 x 4 mm: zero margins, no crop


def test_3d_run_keeps_volumes_whole_and_refuses_2d_rows(tmp_path, tiny_dataset):
    import dataclasses

    from pipeline.config import DemoDataConfig
    from pipeline.demo_data import write_demo_dataset
    from pipeline.io.errors import UnreadableImageError

    write_demo_dataset(tmp_path / "vol", DemoDataConfig(**{**TINY_DEMO.__dict__, "layout": "volumes"}))
    cfg = dataclasses.replace(TINY_PREPROCESS, spatial_dims=3, size=16)
    splits, _, summary = preprocess_dataset(tmp_path / "vol", cfg)
    assert summary.n_images == 24 and summary.image_size == [1, 16, 16, 16]
    assert all(data.images.shape[1:] == (1, 16, 16, 16) for data in splits.values())
    with pytest.raises(UnreadableImageError, match=r"slice_000\.dcm: a 2D image .*spatial_dims: 3"):
        preprocess_dataset(tiny_dataset, cfg)  # the mixed layout lists single DICOM slices


def test_burned_in_annotation_is_refused_unless_allowed(tmp_path):
    import dataclasses

    import pydicom

    from pipeline.demo_data import write_demo_dataset
    from pipeline.io.errors import BurnedInAnnotationError

    root = tmp_path / "data"
    write_demo_dataset(root, TINY_DEMO)
    flagged = sorted((root / "dicom").rglob("*.dcm"))[0]
    ds = pydicom.dcmread(flagged)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(flagged)
    with pytest.raises(BurnedInAnnotationError, match=rf"{flagged.name}: .*burned-in annotation"):
        preprocess_dataset(root, TINY_PREPROCESS)
    _, _, summary = preprocess_dataset(root, dataclasses.replace(TINY_PREPROCESS, on_error="skip"))
    assert [s["path"] for s in summary.skipped] == [flagged.relative_to(root).as_posix()]
    _, _, summary = preprocess_dataset(root, dataclasses.replace(TINY_PREPROCESS, allow_burned_in=True))
    assert summary.skipped == [] and summary.n_images == 48


def test_max_image_gib_refuses_larger_images_naming_the_file_and_the_param(tiny_dataset, tmp_path):
    """One 64 x 64 x 8 volume (128 KiB as float32) beside the demo's 64 x 64 (x 2) images and a limit of 64 KiB:
    the volume is refused before decoding, naming the file and the param; with on_error: skip the rest goes on."""
    import dataclasses
    import shutil

    import nibabel as nib

    from pipeline.io.errors import ImageTooLargeError

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    volume = np.random.default_rng(0).uniform(-1000, 400, (64, 64, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), root / "big.nii.gz")
    with open(root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("big.nii.gz,normal,MRN-BIG\n")
    limit = dataclasses.replace(TINY_PREPROCESS, max_image_gib=64 / 2**20)
    with pytest.raises(ImageTooLargeError, match=r"big\.nii\.gz: .*64 x 64 x 8 .*\(preprocess\.max_image_gib\)"):
        preprocess_dataset(root, limit)
    _, _, summary = preprocess_dataset(root, dataclasses.replace(limit, on_error="skip"))
    assert [s["path"] for s in summary.skipped] == ["big.nii.gz"] and summary.n_images == 48


def _split(images, labels):
    return SplitData(np.asarray(images, np.float32), np.asarray(labels), np.array(["p"] * len(labels)), ("a", "b"))


def test_near_twins_across_splits_are_found_with_their_lines_and_labels():
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(30, 1, 8, 8))
    val, test = rng.uniform(size=(10, 1, 8, 8)), rng.uniform(size=(10, 1, 8, 8))
    test[3] = train[7] + 0.001  # the same picture, re-saved
    val[0] = train[2]  # an exact copy, labelled otherwise
    splits = {
        "train": _split(train, [0] * 30),
        "val": _split(val, [1] + [0] * 9),
        "test": _split(test, [0] * 10),
    }
    lines = {name: list(range(100 * k, 100 * k + len(s))) for k, (name, s) in enumerate(splits.items())}
    twins = near_twins(splits, lines)
    assert twins["twins"] == {"val": 1, "test": 1} and twins["different_label"] == 1
    first, second = twins["pairs"]
    assert (first["split"], first["index"], first["train_index"], first["rms"]) == ("val", 0, 2, 0.0)
    assert first["labels_csv_line"] == 100 and first["train_labels_csv_line"] == 2 and not first["same_label"]
    assert (second["split"], second["index"], second["train_index"], second["same_label"]) == ("test", 3, 7, True)
    assert second["labels_csv_line"] == 203 and len(twins["closest"]) == 8


def test_distinct_images_have_no_twins():
    rng = np.random.default_rng(1)
    splits = {
        name: _split(rng.uniform(size=(n, 1, 8, 8)), [0] * n) for name, n in (("train", 30), ("val", 8), ("test", 8))
    }
    lines = {name: list(range(len(s))) for name, s in splits.items()}
    twins = near_twins(splits, lines)
    assert twins["pairs"] == [] and twins["twins"] == {"val": 0, "test": 0} and twins["threshold_rms"] > 0


def _photo_dataset(root: Path, colour_every: int) -> Path:
    """12 patients per class of 16 x 16 PNG photographs: class "red" a red square on grey, class "plain" grey;
    every ``colour_every``-th file RGB (the others the same picture in grey, 'L')."""
    from PIL import Image

    rows = ["path,label,patient_id"]
    for k in range(24):
        label = "red" if k % 2 else "plain"
        rgb = np.full((16, 16, 3), 128, np.uint8)
        if label == "red":
            rgb[4:8, 2:6] = (255, 0, 0)  # rows 4-7, columns 2-5
        picture = Image.fromarray(rgb)
        if k % colour_every:
            picture = picture.convert("L")
        picture.save(root / f"img{k}.png")
        rows.append(f"img{k}.png,{label},patient{k}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(("setting", "channels"), [("auto", 3), (1, 1), (3, 3)])
def test_photographs_keep_their_colours_or_become_grey_by_the_stated_rule(tmp_path, setting, channels):
    """Colour PNGs beside grey ones: auto keeps colour, 1 converts by BT.601 luma, 3 repeats grey; photographs are
    scaled by 255 (never CT-windowed, though modality_default is CT) and the conversions are counted."""
    from dataclasses import replace

    root = _photo_dataset(tmp_path, colour_every=3)  # 8 colour files, 16 grey
    cfg = replace(TINY_PREPROCESS, size=16, channels=setting)
    splits, _, summary = preprocess_dataset(root, cfg)
    assert summary.channels["used"] == channels and summary.image_size == [channels, 16, 16]
    assert summary.formats == {"image": 24} and summary.modalities == {"OT": 24}
    expected = {"auto": {"1 to 3": 16}, 1: {"3 to 1": 8}, 3: {"1 to 3": 16}}[setting]
    assert summary.channels["converted"] == expected
    images = np.concatenate([s.images for s in splits.values()])
    labels = np.concatenate([[s.classes[i] for i in s.labels] for s in splits.values()])
    assert images.shape[1] == channels
    np.testing.assert_allclose(images[:, :, 0, 0], 128 / 255, atol=1e-6)  # grey background: scaled, not stretched
    # the red square at rows 4-7, columns 2-5 is array[:, x=2..5, y=4..7]; grey files hold its luma
    luma = round(0.299 * 255 + 0.587 * 0 + 0.114 * 0) / 255  # Pillow's convert("L") of (255, 0, 0): 76
    red = images[labels == "red"][:, :, 3, 5]
    if channels == 1:
        assert np.allclose(red, luma, atol=1 / 255)
    else:
        colour = [np.allclose(px, [1, 0, 0]) for px in red]  # files stored in colour
        grey = [np.allclose(px, luma, atol=1e-6) for px in red]  # files stored grey, repeated into R, G, B
        assert sum(colour) >= 1 and sum(colour) + sum(grey) == len(red)


def test_images_constant_along_an_axis_are_counted_with_their_lines():
    """Stripes (every row the same) and blank images are flagged; an image with any structure in both directions,
    or 8-bit noise within one grey level, is not."""
    rng = np.random.default_rng(0)
    textured = rng.uniform(0.2, 0.8, (4, 1, 8, 8)).astype(np.float32)
    stripes = np.repeat(rng.uniform(size=(1, 1, 8, 1)), 8, axis=3).astype(np.float32)  # constant along Y
    blank = np.full((1, 3, 8, 8), 0.5, np.float32) + rng.uniform(0, 0.5 / 255, (1, 3, 8, 8)).astype(np.float32)
    splits = {
        "train": _split(np.concatenate([textured[:2], stripes]), np.array([0, 1, 1])),
        "val": _split(textured[2:3], np.array([0])),
        "test": _split(textured[3:], np.array([1])),
    }
    lines = {"train": [2, 3, 4], "val": [5], "test": [6]}
    found = flat_images(splits, lines)
    assert found["images"] == {"train": 1, "val": 0, "test": 0} and found["labels_csv_lines"] == [4]
    colour = {"train": SplitData(blank, np.array([0]), np.array(["p"]), ("a", "b"))}
    assert flat_images(colour, {"train": [9]})["labels_csv_lines"] == [9]


def test_a_dataset_larger_than_the_free_disk_space_is_refused_before_writing(tmp_path):
    from pipeline.io.errors import InsufficientSpaceError
    from pipeline.preprocess import check_free_space

    nbytes = 100 * 64 * 64 * 4 + 100 * 8  # 100 float32 images of 64 x 64 and their labels: 1.6 MB
    out = tmp_path / "not" / "yet" / "processed"
    needed = check_free_space(out, nbytes)  # this disk has room; the folder need not exist yet
    assert needed >= nbytes and not out.exists()
    with pytest.raises(InsufficientSpaceError, match=r"needs 1.7 MiB .* the disk has 0.8 MiB free.*paths.processed"):
        check_free_space(out, nbytes, free=nbytes // 2)
    with pytest.raises(InsufficientSpaceError, match=r"needs at least 1.7 MiB"):
        check_free_space(out, nbytes, free=nbytes // 2, at_least=True)


def test_preprocess_streams_into_the_folder_and_leaves_only_the_split_files(tiny_dataset, tmp_path):
    """With a folder, the splits are written there (images read back from disk, a chunk at a time), the same as the
    in-memory result, and pass 1's scratch file is gone."""
    from pipeline.io.arrays import DiskArray, load_split

    in_memory, manifest, summary = preprocess_dataset(tiny_dataset, TINY_PREPROCESS)
    on_disk, manifest_disk, summary_disk = preprocess_dataset(tiny_dataset, TINY_PREPROCESS, tmp_path)
    assert summary_disk == summary and manifest_disk == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{name}{suffix}" for name in ("train", "val", "test") for suffix in (".npz", "_images.npy")
    )
    for name, data in on_disk.items():
        assert isinstance(data.images, DiskArray)
        stored = load_split(tmp_path, name)
        assert np.array_equal(np.asarray(stored.images), in_memory[name].images)
        assert np.array_equal(stored.labels, in_memory[name].labels) and stored.classes == in_memory[name].classes


@pytest.mark.parametrize(
    ("free", "message"),
    [
        (100_000, r"needs at least 0\.2 MiB"),  # below one image per row (24 rows), twice: refused before reading
        (300_000, r"needs 0\.4 MiB"),  # room for that, not for the 96 slices: refused before writing the splits
    ],
)
def test_preprocess_refuses_a_full_disk_before_writing_the_splits(tmp_path, free, message):
    """24 volumes of 4 slices (2D run): 24 images at least before reading, 96 of 32 x 32 after it."""
    from pipeline.config import DemoDataConfig
    from pipeline.demo_data import write_demo_dataset
    from pipeline.io.errors import InsufficientSpaceError

    volumes = {**TINY_DEMO.__dict__, "layout": "volumes", "slices_per_patient": 4}
    write_demo_dataset(tmp_path / "vol", DemoDataConfig(**volumes))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InsufficientSpaceError, match=r"data/processed: the processed dataset " + message):
        preprocess_dataset(tmp_path / "vol", TINY_PREPROCESS, out, destination=Path("data/processed"), free=free)
    assert list(out.iterdir()) == []  # no split file, and the scratch file removed


def test_near_twins_over_chunks_give_scikit_learns_pairs_and_distances_bit_for_bit(tmp_path, monkeypatch):
    """Held-out and training images read a block of 256 at a time from disk (3 training blocks, 2 held-out ones):
    the same nearest indices and distances as one pairwise_distances_argmin_min call on the whole arrays, ties
    (a training image stored twice, in two blocks) going to the lowest index."""
    from sklearn.metrics import pairwise_distances_argmin_min

    import pipeline.preprocess as preprocess
    from pipeline.io.arrays import ArrayWriter, DiskArray

    rng = np.random.default_rng(0)
    train = rng.uniform(size=(600, 1, 8, 8)).astype(np.float32)
    held = rng.uniform(size=(300, 1, 8, 8)).astype(np.float32)
    train[520] = train[10]  # the same image in the first and the last block
    held[270] = train[10] + 0.001
    held[3] = train[599]
    arrays = {}
    for name, images in (("train", train), ("held", held)):
        with ArrayWriter(tmp_path / f"{name}.npy", images.shape) as out:
            out.append(images)
        arrays[name] = DiskArray(tmp_path / f"{name}.npy")
    monkeypatch.setattr(preprocess, "TWIN_CHUNK_BYTES", 1)  # the least: one block of 256 rows
    nearest, distance = preprocess._nearest(arrays["held"], arrays["train"])
    expected_nearest, expected_distance = pairwise_distances_argmin_min(held.reshape(300, -1), train.reshape(600, -1))
    assert np.array_equal(nearest, expected_nearest) and np.array_equal(distance, expected_distance)
    assert nearest[270] == 10 and nearest[3] == 599


def test_split_gives_every_split_a_class_of_three_patients_among_seven():
    """Seven classes, the smallest of 3 patients (1:50): the stratified folds alone left it out of validation."""
    counts = {"c0": 150, "c1": 60, "c2": 40, "c3": 25, "c4": 15, "c5": 8, "c6": 3}
    labels = np.array([name for name, n in counts.items() for _ in range(n)])
    patients = np.array([f"p{i:03d}" for i in range(len(labels))])
    split = split_by_patient(labels, patients, 0.15, 0.25, seed=0)
    for name in ("train", "val", "test"):
        assert set(labels[split == name]) == set(counts)
    assert (np.bincount(np.unique(split[labels == "c0"], return_inverse=True)[1]) > 20).all()  # c0 still spread
