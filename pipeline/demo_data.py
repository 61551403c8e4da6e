"""Stage ``demo_data``: the built-in, deterministic, class-imbalanced CT dataset.

Each patient is a chest-CT-like phantom (body, fat rim, lungs with vessels, heart, spine) over a few
axial slices. Minority patients ("nodule") carry a lobulated soft-tissue nodule in one lung, visible
on all their slices with a size that follows a sphere's cross-section; vessels of similar density make
the task more than an intensity threshold. Most patients are written as DICOM slices (uint16 pixels,
RescaleSlope/Intercept to HU, realistic but fake patient names, IDs and dates so de-identification is
exercised), some as a DICOM series folder row, the rest as one NIfTI volume each.

With ``demo_data.sites`` above 1, each patient is scanned on one of :data:`SCANNERS`, which differ in noise,
reconstruction sharpness and contrast as two hospitals' CT scanners do; labels.csv then has a ``site`` column with
the scanner's (fake, identifying-looking) name, and the DICOM headers its institution.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from pipeline.config import DemoDataConfig, load_section
from pipeline.io.atomic import atomic_dir
from pipeline.runtime import run_stage

__all__ = [
    "CLASSES",
    "SCANNERS",
    "Scanner",
    "PatientPlan",
    "plan_patients",
    "phantom_volume",
    "write_demo_dataset",
    "main",
]

logger = logging.getLogger(__name__)

CLASSES = ("normal", "nodule")
PIXEL_SPACING_MM = 2.5  # in-plane spacing of the generated slices
SLICE_THICKNESS_MM = 5.0
_FIRST = ("JANE", "JOHN", "MARIA", "AHMED", "WEI", "OLGA", "PEDRO", "AMARA", "HANS", "YUKI")
_LAST = ("DOE", "SMITH", "GARCIA", "MUELLER", "NGUYEN", "KOWALSKI", "OKAFOR", "ROSSI", "TANAKA", "SILVA")


@dataclass(frozen=True)
class Scanner:
    """A simulated CT scanner: what differs between the images of two sites."""

    name: str  # the site column's value in labels.csv (identifying-looking on purpose: it must never be output)
    institution: str  # DICOM InstitutionName
    noise_hu: float  # standard deviation of the image noise, HU
    blur: float  # Gaussian sigma of the reconstruction kernel, pixels (larger: softer)
    contrast: float  # HU multiplied by this ...
    offset_hu: float  # ... plus this (calibration drift)


SCANNERS = (
    Scanner("St. Example General Hospital CT-1", "St. Example General Hospital", 15.0, 0.8, 1.0, 0.0),
    Scanner("Northfield Community Clinic CT-2", "Northfield Community Clinic", 40.0, 1.3, 0.85, -40.0),
    Scanner("Harbour View Imaging CT-3", "Harbour View Imaging", 8.0, 0.5, 1.1, 25.0),
)


@dataclass(frozen=True)
class PatientPlan:
    index: int  # 0-based case number
    label: str  # one of CLASSES
    storage: str  # "dicom_slices", "dicom_series" or "nifti"
    site: int = 0  # index into SCANNERS


def plan_patients(
    n_patients: int,
    minority_fraction: float,
    nifti_fraction: float,
    seed: int,
    volumes_only: bool = False,
    sites: int = 1,
) -> list[PatientPlan]:
    """Decide each patient's class, file format and (``sites`` > 1) scanner, deterministically from ``seed``. With
    ``volumes_only`` every patient is one volume (a DICOM series folder or a NIfTI file), as 3D runs need. Scanners
    are drawn last, so the classes and formats do not depend on ``sites``."""
    rng = np.random.default_rng(seed)
    n_minority = max(2, round(n_patients * minority_fraction))
    labels = np.array([CLASSES[1]] * n_minority + [CLASSES[0]] * (n_patients - n_minority))
    rng.shuffle(labels)
    draws = rng.random(n_patients)
    storage = np.where(
        draws < nifti_fraction,
        "nifti",
        np.where(volumes_only | (draws < nifti_fraction + 0.15), "dicom_series", "dicom_slices"),
    )
    site = rng.integers(0, sites, n_patients) if sites > 1 else np.zeros(n_patients, dtype=int)
    rows = zip(labels, storage, site, strict=True)
    return [PatientPlan(i, str(lab), str(st), int(k)) for i, (lab, st, k) in enumerate(rows)]


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0


def phantom_volume(
    rng: np.random.Generator, size: int, n_slices: int, nodule: bool, scanner: Scanner = SCANNERS[0]
) -> np.ndarray:
    """Return HU slices of shape (n_slices, size, size), rows first (DICOM pixel order), as ``scanner`` images them."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    body_ax, body_ay = rng.uniform(0.78, 0.92), rng.uniform(0.58, 0.72)
    lung_ax, lung_ay, lung_dx = rng.uniform(0.22, 0.3), rng.uniform(0.36, 0.46), rng.uniform(0.33, 0.42)
    tissue = rng.uniform(30, 50)
    side = rng.choice([-1.0, 1.0])
    nodule_r = rng.uniform(0.06, 0.1)
    nodule_c = (side * lung_dx + rng.uniform(-0.6, 0.6) * lung_ax * 0.6, rng.uniform(-0.6, 0.6) * lung_ay * 0.6)
    lobes, phase = rng.integers(3, 7), rng.uniform(0, 2 * np.pi)
    slices = []
    for k in range(n_slices):
        dz = k - (n_slices - 1) / 2
        scale = 1.0 + 0.03 * dz
        img = np.full((size, size), -1000.0)
        img[_ellipse(xx, yy, 0, 0.05, body_ax, body_ay)] = -100.0  # fat rim
        img[_ellipse(xx, yy, 0, 0.05, body_ax - 0.06, body_ay - 0.06)] = tissue
        lungs = _ellipse(xx, yy, -lung_dx, -0.05, lung_ax * scale, lung_ay * scale) | _ellipse(
            xx, yy, lung_dx, -0.05, lung_ax * scale, lung_ay * scale
        )
        lungs &= ~_ellipse(xx, yy, 0.08, 0.12, 0.2, 0.18)  # heart
        img[lungs] = -850.0
        for _ in range(rng.integers(6, 15)):  # vessels: small soft-tissue dots inside the lungs
            cy, cx = np.argwhere(lungs)[rng.integers(lungs.sum())] / (size - 1) * 2 - 1
            img[_ellipse(xx, yy, cx, cy, *(2 * [rng.uniform(0.012, 0.025)]))] = tissue
        img[_ellipse(xx, yy, 0, 0.52, 0.1, 0.1)] = 700.0  # vertebral body
        img[_ellipse(xx, yy, 0, 0.52, 0.04, 0.04)] = tissue
        if nodule:
            r = nodule_r * np.sqrt(max(0.4, 1 - (0.3 * dz) ** 2))
            theta = np.arctan2(yy - nodule_c[1], xx - nodule_c[0])
            rad = np.hypot(xx - nodule_c[0], yy - nodule_c[1])
            img[rad <= r * (1 + 0.18 * np.sin(lobes * theta + phase))] = tissue + rng.uniform(-15, 15)
        img = gaussian_filter(img, sigma=scanner.blur) * scanner.contrast + scanner.offset_hu
        img += rng.normal(0, scanner.noise_hu, img.shape)
        slices.append(np.clip(img, -1024, 3071))
    return np.stack(slices)


def _patient_identity(rng: np.random.Generator, scanner: Scanner) -> dict[str, str]:
    birth = date(1940, 1, 1) + timedelta(days=int(rng.integers(0, 18000)))
    study = date(2019, 1, 1) + timedelta(days=int(rng.integers(0, 2000)))
    return {
        "PatientName": f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}",
        "PatientID": f"MRN{rng.integers(1_000_000, 9_999_999)}",
        "PatientBirthDate": birth.strftime("%Y%m%d"),
        "PatientSex": str(rng.choice(["F", "M"])),
        "StudyDate": study.strftime("%Y%m%d"),
        "AccessionNumber": f"ACC{rng.integers(100_000, 999_999)}",
        "InstitutionName": scanner.institution,
        "ReferringPhysicianName": f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}^DR",
    }


def write_ct_slice(path: Path, hu: np.ndarray, identity: Mapping[str, str], uids: Mapping[str, str], k: int) -> None:
    """Write one CT slice (rows x cols HU) as a DICOM file with uint16 pixels and a HU rescale."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(uids["sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    for key, value in identity.items():
        setattr(ds, key, value)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uids["sop"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.Modality, ds.Manufacturer, ds.SeriesDescription = "CT", "medaug demo phantom", "CHEST AXIAL"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "101500", 1, k + 1
    ds.KVP, ds.SliceThickness = 120, SLICE_THICKNESS_MM
    ds.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [
        -hu.shape[1] * PIXEL_SPACING_MM / 2,
        -hu.shape[0] * PIXEL_SPACING_MM / 2,
        k * SLICE_THICKNESS_MM,
    ]
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    ds.PixelData = (np.round(hu) + 1024).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_patient(
    out_dir: Path, plan: PatientPlan, volume: np.ndarray, identity: dict[str, str], seed: int
) -> list[str]:
    """Write one patient's slices in its planned format; return the manifest paths (relative to out_dir)."""
    case = f"case_{plan.index:04d}"
    if plan.storage == "nifti":
        rel = f"nifti/{case}.nii.gz"
        (out_dir / "nifti").mkdir(parents=True, exist_ok=True)
        xyz = np.ascontiguousarray(volume.transpose(2, 1, 0)).astype(np.int16)  # (x=cols, y=rows, z)
        affine = np.diag([-PIXEL_SPACING_MM, -PIXEL_SPACING_MM, SLICE_THICKNESS_MM, 1.0])  # LPS DICOM grid in RAS
        img = nib.Nifti1Image(xyz, affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, out_dir / rel)
        return [rel]
    series_dir = out_dir / "dicom" / case
    series_dir.mkdir(parents=True, exist_ok=True)
    entropy = [seed, plan.index]
    uids = {"study": generate_uid(entropy_srcs=[*map(str, entropy), "study"])}
    uids["series"] = generate_uid(entropy_srcs=[*map(str, entropy), "series"])
    for k, hu in enumerate(volume):
        uids["sop"] = generate_uid(entropy_srcs=[*map(str, entropy), "sop", str(k)])
        write_ct_slice(series_dir / f"slice_{k:03d}.dcm", hu, identity, uids, k)
    if plan.storage == "dicom_series":
        return [f"dicom/{case}"]
    return [f"dicom/{case}/slice_{k:03d}.dcm" for k in range(len(volume))]


def write_demo_dataset(out_dir: Path, cfg: DemoDataConfig) -> dict[str, int]:
    """Generate the demo dataset into ``out_dir``, replacing it: the folder is built beside it and renamed into
    place when complete, so a killed run leaves no partial dataset there. Return image counts per class."""
    plans = plan_patients(
        cfg.n_patients, cfg.minority_fraction, cfg.nifti_fraction, cfg.seed, cfg.layout == "volumes", cfg.sites
    )
    rows, counts = [], dict.fromkeys(CLASSES, 0)
    with atomic_dir(out_dir) as staging:
        for plan in tqdm(plans, desc="demo patients", unit="patient"):
            rng = np.random.default_rng([cfg.seed, plan.index])
            scanner = SCANNERS[plan.site]
            volume = phantom_volume(rng, cfg.image_size, cfg.slices_per_patient, plan.label == CLASSES[1], scanner)
            identity = _patient_identity(rng, scanner)
            for rel in write_patient(staging, plan, volume, identity, cfg.seed):
                rows.append((rel, plan.label, identity["PatientID"], *([scanner.name] if cfg.sites > 1 else [])))
            counts[plan.label] += cfg.slices_per_patient
        with open(staging / "labels.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "patient_id", *(["site"] if cfg.sites > 1 else [])])
            writer.writerows(rows)
    return counts


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: DemoDataConfig = load_section("demo_data")
    out_dir = Path(load_section("paths").demo)
    counts = write_demo_dataset(out_dir, cfg)
    logger.info("demo dataset in %s: %s slices per class", out_dir, counts)


if __name__ == "__main__":
    run_stage(main, "pipeline.demo_data")
