"""A zoo of small generated datasets, of every shape a team brings, and an in-process pipeline runner.

``ZOO`` lists the cases (:class:`ZooCase`): two to ten classes, imbalance up to 1:50, a class of three images, a
class with too few patients for a test split, 8-bit, 16-bit, colour, JPEG, DICOM and 3D NIfTI files, many images per
patient, integer and non-ASCII labels, ``labels.csv`` or class sub-folders. :func:`build` writes one into a folder;
every class has a visible, class-specific feature (its count and size of bright discs, in colour also their hue) on
a smooth noisy background, drawn from a generator seeded by the case's name, so a case comes out the same bytes
every time.

:func:`zoo_project` builds a case and a scratch project that reads it (``ZOO_TINY``: the project's defaults made
tiny; :func:`overrides_for` gives the per-case settings a case needs, e.g. 3D for ``volumes3d``), and
:func:`run_pipeline` runs that project's stages of ``dvc.yaml`` in order in this process, without DVC, raising
:class:`StageFailed` (which stage, the error, the errors it logged) when one fails.
"""

from __future__ import annotations

import colorsys
import contextlib
import csv
import importlib
import logging
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml
from PIL import Image
from pydicom.uid import generate_uid
from scipy.ndimage import gaussian_filter

from pipeline.demo_data import write_ct_slice
from tests.project import ROOT, set_params

__all__ = [
    "FORMATS",
    "LAYOUTS",
    "NO_TEST_SPLIT",
    "ZOO",
    "ZOO_TINY",
    "StageFailed",
    "ZooCase",
    "build",
    "overrides_for",
    "run_pipeline",
    "zoo_project",
]

# png: 8-bit | png16: 16-bit grey PNG (values 0..40000) | jpeg | mixed: PNG and JPEG files alternating (the
# images of one dataset in both) | dicom: one single-frame CT slice a file (uint16, HU by RescaleSlope/Intercept) |
# nifti3d: one 3D NIfTI volume (int16 HU) a file
FORMATS = ("png", "png16", "jpeg", "mixed", "dicom", "nifti3d")
LAYOUTS = ("csv", "folders")  # labels.csv (path,label,patient_id[,split]) | one sub-folder per class, no labels.csv
SPLITS = ("train", "val", "test")
PNG16_MAX = 40000  # the brightest value of a png16 image
HU_RANGE = (-1000.0, 400.0)  # DICOM and NIfTI: background near air/lung, discs near soft tissue and bone
PIXEL_MM = 1.5  # DICOM PixelSpacing is demo_data's; NIfTI voxels are PIXEL_MM in-plane, SLICE_MM apart
SLICE_MM = 2.5


@dataclass(frozen=True)
class ZooCase:
    name: str
    counts: dict[str, int]  # images per class in the whole dataset; label strings are used exactly as given
    images_per_patient: int = 1  # consecutive images of a class share a patient (the class's last may have fewer)
    fmt: str = "png"  # one of FORMATS
    colour: bool = False  # RGB images (png, jpeg, mixed only)
    layout: str = "csv"  # one of LAYOUTS
    split: dict[str, dict[str, int]] | None = None  # class -> {"train": n, "val": n, "test": n}: a split column
    size: int = 24  # source image side in pixels (nifti3d: size x size x max(8, size // 2) voxels)

    def __hash__(self) -> int:  # the dict fields are not hashable; the name identifies a case
        return hash(self.name)


ZOO: list[ZooCase] = [
    # the plain case: two classes, about 3:1, 8-bit grey PNG, one image per patient; class sub-folders named with
    # spaces and non-ASCII letters
    ZooCase("binary_unicode_labels", {"kein Befund": 40, "Läsion groß": 14}, layout="folders"),
    # seven classes, the largest 50 times the smallest (150:3), small images
    ZooCase(
        "seven_classes_1to50",
        {"c0": 150, "c1": 60, "c2": 40, "c3": 25, "c4": 15, "c5": 8, "c6": 3},
        size=16,
    ),
    # a class of three images, one a patient: one patient for each of train, val and test, no more
    ZooCase("class_of_three", {"common": 30, "rare": 3}),
    # "rare" has two patients of three images: one cannot be in each of train, val and test
    ZooCase("no_test_patient", {"common": 30, "rare": 6}, images_per_patient=3),
    # a five-grade fundus folder scaled down: class sub-folders, no labels.csv, colour PNG and JPEG files mixed
    ZooCase(
        "colour_five_grades",
        {"grade0": 49, "grade1": 21, "grade2": 19, "grade3": 13, "grade4": 7},
        fmt="mixed",
        colour=True,
        layout="folders",
    ),
    # 16-bit grey PNG (values 0..40000, as X-ray exports), three classes labelled by integers written as strings
    ZooCase("grey16_integer_labels", {"0": 30, "1": 12, "2": 8}, fmt="png16"),
    # one 3D NIfTI volume an image (run with overrides_for: preprocess.spatial_dims 3)
    ZooCase("volumes3d", {"normal": 14, "finding": 8}, fmt="nifti3d"),
    # single-frame CT DICOMs, six to a patient: 8 and 3 patients
    ZooCase("many_per_patient", {"normal": 48, "finding": 18}, fmt="dicom", images_per_patient=6),
    # ten classes with spaces in their names, 24 down to 6 images, small images
    ZooCase("ten_classes", {f"class {k}": 24 - 2 * k for k in range(10)}, size=16),
]

# Not in ZOO: labels.csv fixes the split, and the rare class has no patient in test (its two patients of three
# images are in train and val).
NO_TEST_SPLIT = ZooCase(
    "no_test_split",
    {"common": 30, "rare": 6},
    images_per_patient=3,
    split={"common": {"train": 18, "val": 6, "test": 6}, "rare": {"train": 3, "val": 3, "test": 0}},
)


# --- images ---------------------------------------------------------------------------------------------------------


def _seed(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _background(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth, noisy background in [0, 1]: a gentle gradient, blotches, pixel noise, about 0.2-0.4."""
    size = shape[0]
    smooth = gaussian_filter(rng.normal(size=shape), sigma=max(1.0, size / 6))
    smooth *= 0.06 / max(float(smooth.std()), 1e-6)
    ramp = np.linspace(-0.05, 0.05, shape[1])
    ramp = ramp.reshape([1, -1] + [1] * (len(shape) - 2)) * rng.choice([-1.0, 1.0])
    return 0.3 + smooth + ramp + rng.normal(0.0, 0.02, shape)


def _discs(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> np.ndarray:
    """Soft mask (0..1) of class ``k``'s discs (spheres in 3D): 1 + k % 3 of them, of radius growing with k // 3."""
    size = shape[0]
    n, radius = 1 + k % 3, max(1.2, size * (0.08 + 0.05 * (k // 3)))
    grids = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    centres: list[np.ndarray] = []
    for _ in range(n):
        for _ in range(50):  # apart from the others when there is room, else where it falls
            low = np.minimum(radius + 0.5, (np.array(shape) - 1) / 2)
            centre = rng.uniform(low, np.array(shape) - 1 - low)
            if all(np.linalg.norm(centre - c) >= 2 * radius + 1 for c in centres):
                break
        centres.append(centre)
    mask = np.zeros(shape)
    for centre in centres:
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)))
        mask = np.maximum(mask, np.clip(radius + 0.5 - distance, 0.0, 1.0))  # a one-pixel soft edge
    return mask


def _image(rng: np.random.Generator, k: int, n_classes: int, shape: tuple[int, ...], colour: bool) -> np.ndarray:
    """Class ``k``'s image in [0, 1]: ``shape`` (grey) or ``shape + (3,)`` (colour: a fundus-like orange background,
    discs of a hue set by k)."""
    background, mask = _background(rng, shape), _discs(rng, shape, k)
    brightness = rng.uniform(0.8, 0.95)
    if not colour:
        return np.clip(background + mask * (brightness - background), 0.0, 1.0)
    tint = np.array([1.0, 0.55, 0.3])  # a reddish-orange retina
    disc = np.array(colorsys.hsv_to_rgb(k / n_classes, 0.85, brightness))
    rgb = background[..., None] * tint * 1.6 + rng.normal(0.0, 0.01, (*shape, 3))
    return np.clip(rgb + mask[..., None] * (disc - rgb), 0.0, 1.0)


def _write(path: Path, pixels: np.ndarray, fmt: str, patient: str, uids: dict[str, str], k: int) -> None:
    """Write ``pixels`` ([0, 1]; rows x cols [x 3], or x, y, z for nifti3d) as ``fmt`` at ``path``."""
    if fmt in ("png", "jpeg"):
        image = Image.fromarray(np.round(pixels * 255).astype(np.uint8))
        image.save(path, **({"quality": 95} if fmt == "jpeg" else {}))
    elif fmt == "png16":
        Image.fromarray(np.round(pixels * PNG16_MAX).astype(np.uint16)).save(path)
    elif fmt == "dicom":
        hu = HU_RANGE[0] + pixels * (HU_RANGE[1] - HU_RANGE[0])
        identity = {"PatientID": patient, "PatientName": f"ZOO^{patient}", "StudyDate": "20240101"}
        write_ct_slice(path, hu, identity, uids, k)  # uint16, RescaleIntercept -1024, slope 1, modality CT
    elif fmt == "nifti3d":
        hu = np.round(HU_RANGE[0] + pixels * (HU_RANGE[1] - HU_RANGE[0])).astype(np.int16)
        image = nib.Nifti1Image(hu, np.diag([-PIXEL_MM, -PIXEL_MM, SLICE_MM, 1.0]))  # LPS voxel axes, as demo_data
        image.header.set_xyzt_units("mm")
        nib.save(image, path)
    else:
        raise ValueError(f"unknown format {fmt!r}")


# --- datasets -------------------------------------------------------------------------------------------------------


def _check(case: ZooCase) -> None:
    """Refuse a case the builder cannot write as asked."""
    if case.fmt not in FORMATS or case.layout not in LAYOUTS:
        raise ValueError(f"{case.name}: fmt must be one of {FORMATS}, layout one of {LAYOUTS}")
    if case.colour and case.fmt not in ("png", "jpeg", "mixed"):
        raise ValueError(f"{case.name}: colour only for png, jpeg and mixed files")
    if len(case.counts) < 2 or min(case.counts.values()) < 1 or case.images_per_patient < 1 or case.size < 8:
        raise ValueError(f"{case.name}: two classes or more, an image each, a patient an image, 8 px at least")
    if case.layout == "folders":
        if case.split is not None or case.images_per_patient != 1:
            raise ValueError(f"{case.name}: class folders have no labels.csv, so no split and no patients")
        bad = [label for label in case.counts if "/" in label or label.startswith(".") or label.strip() != label]
        if bad:
            raise ValueError(f"{case.name}: labels {bad} cannot be folder names")
    if case.split is not None:
        for label, count in case.counts.items():
            parts = case.split.get(label, {})
            if set(parts) != set(SPLITS) or sum(parts.values()) != count:
                raise ValueError(f"{case.name}: split of {label!r} must give train, val and test summing to {count}")


def _suffix(case: ZooCase, n: int) -> tuple[str, str]:
    """(suffix, format) of the ``n``th image of the case (mixed: PNG and JPEG alternating)."""
    fmt = ("png", "jpeg")[n % 2] if case.fmt == "mixed" else case.fmt
    return {"png": ".png", "png16": ".png", "jpeg": ".jpg", "dicom": ".dcm", "nifti3d": ".nii.gz"}[fmt], fmt


def build(case: ZooCase, root: Path) -> Path:
    """Write ``case``'s dataset into ``root`` (created if needed) and return ``root``. With layout csv, images are
    ``class_<index>/img_<n>.<suffix>`` (ASCII names whatever the labels) listed in labels.csv; with layout folders,
    ``<label>/img_<n>.<suffix>``."""
    _check(case)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(_seed(case.name))
    depth = max(8, case.size // 2)
    rows = []
    n = 0
    for k, (label, count) in enumerate(case.counts.items()):
        folder = label if case.layout == "folders" else f"class_{k:02d}"
        (root / folder).mkdir(exist_ok=True)
        splits = [s for s in SPLITS for _ in range(case.split[label][s])] if case.split else [None] * count
        for i in range(count):
            patient = f"{case.name}-c{k:02d}-p{i // case.images_per_patient:03d}"
            suffix, fmt = _suffix(case, n)
            relpath = f"{folder}/img_{n:05d}{suffix}"
            shape = (case.size, case.size, depth) if fmt == "nifti3d" else (case.size, case.size)
            pixels = _image(rng, k, len(case.counts), shape, case.colour)
            uids = {part: generate_uid(entropy_srcs=[case.name, patient, part]) for part in ("study", "series")}
            uids["sop"] = generate_uid(entropy_srcs=[case.name, str(n), "sop"])
            _write(root / relpath, pixels, fmt, patient, uids, i % case.images_per_patient)
            rows.append([relpath, label, patient] + ([splits[i]] if case.split else []))
            n += 1
    if case.layout == "csv":
        with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "patient_id"] + (["split"] if case.split else []))
            writer.writerows(rows)
    return root


# --- projects -------------------------------------------------------------------------------------------------------

# The project's defaults made tiny: 16 px, two-level VAEs of 2 epochs, one classifier epoch and seed, one small
# latent size, one anomaly epoch, one training at a time.
_TINY_VAE = {"channels": [8, 16], "strides": [2, 2], "latent_size": 4, "epochs": 2, "kl_warmup_epochs": 1}
ZOO_TINY: dict[str, dict] = {
    "preprocess": {"size": 16},
    "vae": _TINY_VAE,
    "vae_gan": {**_TINY_VAE, "adversarial_warmup_epochs": 1, "discriminator_channels": 8, "discriminator_layers": 2},
    # the shift stress test and the learning curve run in the shared run (tests/project.py); here they would only cost
    # time
    "train_classifier": {
        "epochs": 1,
        "seeds": [0],
        "channels": [4, 8, 8, 8],
        "shift_stress": False,
        "learning_curve": [],
    },
    "latent": {"sizes": [2], "epochs": 1},
    "anomaly": {"epochs": 1},
    "compute": {"workers": 1},
    "learning_curve": {"remedies": []},
}


def _check_keys(*overrides: dict) -> None:
    """Refuse an override whose section or key params.yaml does not have (a misspelt key would fail later, in
    the stage that loads the section)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    unknown = [
        f"{section}.{key}"
        for override in overrides
        for section, values in override.items()
        for key in values
        if key not in params.get(section, {})
    ]
    if unknown:
        raise KeyError(f"not in params.yaml: {', '.join(unknown)}")


_check_keys(ZOO_TINY)


def overrides_for(case: ZooCase) -> dict[str, dict]:
    """The settings ``case`` needs on top of ``ZOO_TINY`` (nifti3d: 3D models at 16 voxels a side), or tries there
    (seven_classes_1to50: the learning curves)."""
    if case.fmt == "nifti3d":
        return {"preprocess": {"spatial_dims": 3, "size": 16}}
    if case.name == "seven_classes_1to50":  # the learning curves on six minority classes (a generator of the share)
        return {"train_classifier": {"learning_curve": [0.5]}, "learning_curve": {"remedies": ["vae"]}}
    return {}


def zoo_project(tmp: Path, case: ZooCase, *overrides: dict) -> Path:
    """Build ``case`` in ``tmp``/data and a project reading it in ``tmp``/project (``pipeline/``, ``dvc.yaml`` and
    params.yaml: the project's, then ``ZOO_TINY``, ``data.root``, ``overrides``; no `dvc init`). Pass
    ``overrides_for(case)`` among ``overrides`` where the case needs it. Returns the project folder."""
    tmp = Path(tmp)
    data = build(case, tmp / "data")
    project = tmp / "project"
    project.mkdir(parents=True)
    shutil.copytree(ROOT / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    _check_keys(*overrides)
    set_params(project, ZOO_TINY, {"data": {"root": str(data)}}, *overrides, base=ROOT / "params.yaml")
    return project


class StageFailed(Exception):
    """Stage ``stage`` raised ``error`` (an exception or the SystemExit of ``sys.exit``); ``logged`` holds the
    messages logged at level ERROR or above while it ran, ``started`` the stages run so far, ``stage`` last."""

    def __init__(
        self, stage: str, error: BaseException, logged: list[str] | None = None, started: list[str] | None = None
    ):
        self.stage, self.error, self.logged = stage, error, list(logged or [])
        self.started = list(started or [stage])  # the stages run_pipeline started, this one last
        detail = f"{type(error).__name__}: {error}"
        super().__init__(f"stage {stage} failed ({detail})" + "".join(f"\n  logged: {m}" for m in self.logged))


class _ErrorRecords(logging.Handler):
    """Collects the messages of the records of level ERROR and above that reach it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _stage_modules(project: Path) -> list[tuple[str, str]]:
    """(stage, module) of each stage of ``project``/dvc.yaml, in its order, from ``cmd: python -m <module>``."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    found = []
    for stage, spec in stages.items():
        words = str(spec["cmd"]).split()
        if len(words) != 3 or words[:2] != ["python", "-m"] or not words[2].startswith("pipeline."):
            raise ValueError(f"dvc.yaml stage {stage}: cmd {spec['cmd']!r} is not 'python -m pipeline.<module>'")
        found.append((stage, words[2]))
    return found


def run_pipeline(project: Path, skip: tuple[str, ...] = ("demo_data",)) -> list[str]:
    """Run every stage of ``project``/dvc.yaml but those in ``skip``, in order, in this process (each module's
    ``main()`` with ``project`` as working directory); return the stages started. A stage that raises or exits
    raises :class:`StageFailed` (chained from the original), the stages started so far on ``.started``."""
    project = Path(project)
    started: list[str] = []
    for stage, module in _stage_modules(project):
        if stage in skip:
            continue
        started.append(stage)
        records = _ErrorRecords()
        root_logger = logging.getLogger()
        root_logger.addHandler(records)
        try:
            with contextlib.chdir(project):
                importlib.import_module(module).main()
        except (Exception, SystemExit) as err:
            raise StageFailed(stage, err, records.messages, started) from err
        finally:
            root_logger.removeHandler(records)
    return started
