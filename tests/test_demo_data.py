import csv

import numpy as np
import pydicom

from pipeline.demo_data import CLASSES, phantom_volume, plan_patients, write_demo_dataset
from tests.conftest import TINY_DEMO


def test_plan_is_deterministic_and_imbalanced():
    plans = plan_patients(200, 0.125, 0.2, seed=3)
    assert plans == plan_patients(200, 0.125, 0.2, seed=3)
    assert sum(p.label == "nodule" for p in plans) == 25
    assert {p.storage for p in plans} == {"nifti", "dicom_series", "dicom_slices"}


def test_nodule_is_a_local_finding_not_an_intensity_offset():
    normal = phantom_volume(np.random.default_rng(1), 64, 1, nodule=False)[0]
    nodule = phantom_volume(np.random.default_rng(1), 64, 1, nodule=True)[0]
    diff = np.abs(nodule - normal) > 300  # soft tissue replacing lung
    assert 4 <= diff.sum() <= 200  # a few dozen pixels change: a lesion
    assert abs(nodule.mean() - normal.mean()) < 20  # the image as a whole looks alike


def test_dataset_files_labels_and_fake_phi(tiny_dataset):
    with open(tiny_dataset / "labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["label"] for r in rows} == set(CLASSES)
    assert all((tiny_dataset / r["path"]).exists() for r in rows)
    dcm = next(tiny_dataset.glob("dicom/*/slice_000.dcm"))
    ds = pydicom.dcmread(dcm)
    assert ds.PatientName and ds.PatientID.startswith("MRN") and ds.PatientBirthDate  # PHI to be removed later
    assert ds.RescaleIntercept == -1024 and ds.Modality == "CT"


def test_same_seed_same_bytes(tmp_path):
    write_demo_dataset(tmp_path / "a", TINY_DEMO)
    write_demo_dataset(tmp_path / "b", TINY_DEMO)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_sites_are_scanners_that_differ_in_noise_and_contrast_and_one_site_changes_nothing(tmp_path, tiny_dataset):
    from dataclasses import replace

    from pipeline.demo_data import SCANNERS

    plans = plan_patients(200, 0.125, 0.2, seed=3, sites=2)
    assert [(p.label, p.storage) for p in plans] == [(p.label, p.storage) for p in plan_patients(200, 0.125, 0.2, 3)]
    assert {p.site for p in plans} == {0, 1}
    first, second = (phantom_volume(np.random.default_rng(1), 64, 1, False, s)[0] for s in SCANNERS[:2])
    assert np.array_equal(first, phantom_volume(np.random.default_rng(1), 64, 1, nodule=False)[0])
    air = np.s_[:4, :4]  # a corner outside the body: the scanner's noise alone
    assert second[air].std() > 2 * first[air].std() and abs(second.mean() - first.mean()) > 20
    write_demo_dataset(tmp_path / "two", replace(TINY_DEMO, sites=2))
    with open(tmp_path / "two" / "labels.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["site"] for r in rows} == {s.name for s in SCANNERS[:2]}
    with open(tiny_dataset / "labels.csv", encoding="utf-8") as fh:  # one site: labels.csv as before sites existed
        assert TINY_DEMO.sites == 1 and next(csv.reader(fh)) == ["path", "label", "patient_id"]
