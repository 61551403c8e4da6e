"""Stage ``preprocess``: dataset folder -> normalised 2D arrays with patient-level splits.

Reads ``labels.csv`` of ``data.root`` through the one reader (:mod:`pipeline.io.reader`), normalises
intensities per modality (CT windowing; photographs by their stored range), brings every image to the dataset's
channels (``preprocess.channels``: grey, or RGB when any image is colour), turns volumes into slices, resizes,
and splits train/val/test
by patient, stratified by class and seeded. Patient identifiers are replaced by salted hashes before
anything is written; the split manifest points back to the user's data by ``labels.csv`` line number.

The images stream through in two passes, so memory holds a batch of images, never a split. Pass 1 reads the rows
in manifest order (``preprocess.workers`` processes) and appends each image's pixels, with the file's own
channels, to a scratch file in the output folder, keeping only their metadata (label, patient, line, modality,
where the pixels lie). The split and the dataset's channels then follow from that metadata, the free disk space is
checked against the split files' size, and pass 2 copies the pixels a chunk at a time into each split's
``<split>_images.npy`` (converted to the dataset's channels), in split order. The scratch file is deleted before the
folder is complete; the folder is built beside the final one and renamed into place (:func:`atomic_dir`), so an
interrupted run leaves nothing under the final name. The checks over the written splits (:func:`near_twins`,
:func:`flat_images`) read them a chunk at a time too.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Generator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from pipeline.config import PreprocessConfig, load_section
from pipeline.io.arrays import (
    SPLITS,
    ArrayWriter,
    DiskArray,
    ImageArray,
    SplitData,
    batches,
    load_split,
    save_split,
    split_paths,
    write_csv,
)
from pipeline.io.atomic import atomic_dir
from pipeline.io.errors import DatasetTooSmallError, InsufficientSpaceError, MedaugInputError
from pipeline.io.manifest import ManifestRow, check_manifest, read_manifest
from pipeline.io.records import ProcessedSummary
from pipeline.plots import image_grid
from pipeline.preparation import Sample, pseudonymise, row_samples, target_channels, to_channels
from pipeline.reporting.figures import SPLIT_TWINS
from pipeline.runtime import run_stage

__all__ = [
    "Sample",
    "pseudonymise",
    "split_by_patient",
    "split_by_site",
    "assign_splits",
    "check_site_columns",
    "check_given_split",
    "iter_samples",
    "load_samples",
    "preprocess_dataset",
    "near_twins",
    "flat_images",
    "check_free_space",
    "main",
]

logger = logging.getLogger(__name__)

TWIN_FRACTION = 0.25  # near_twins: a held-out image this much closer to a training image than is typical is a twin
TWIN_CHUNK_BYTES = 32 * 2**20  # near_twins: about this many bytes of held-out and of training images at once
WRITE_CHUNK_BYTES = 16 * 2**20  # pass 2: about this many bytes of images gathered before each write
SPLIT_BY_PATIENT = "patient-level stratified split"
SCRATCH_NAME = "samples.scratch"  # pass 1's pixels, in reading order; deleted before the output folder is complete


def _checked_classes(labels: np.ndarray, patients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classes and each sample's class index; refuses a dataset of one class, or with a class of fewer than 3
    patients (one each for train, val and test)."""
    classes, class_index = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise DatasetTooSmallError(
            f"only one class ({classes[0] if len(classes) else 'none'}) in the dataset; "
            "augmentation needs at least two classes"
        )
    for name in classes:
        n = len(np.unique(patients[labels == name]))
        if n < 3:
            raise DatasetTooSmallError(
                f"class '{name}' has {n} patient(s); at least 3 are needed (one each for train, val and test). "
                "Add images of this class or merge it with another."
            )
    return classes, class_index


def _fold(class_index: np.ndarray, patients: np.ndarray, n_splits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first of ``n_splits`` (at least 2) class-stratified folds of whole patients: (the rest, the fold)."""
    folds = StratifiedGroupKFold(n_splits=max(2, n_splits), shuffle=True, random_state=seed)
    return next(folds.split(np.zeros(len(class_index)), class_index, patients))


def _check_every_split(split: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> None:
    for name in SPLITS:
        missing = set(classes) - set(labels[split == name])
        if missing:
            raise DatasetTooSmallError(
                f"the {name} split has no patient of class(es) {', '.join(sorted(missing))}; "
                "add patients of that class or change preprocess.seed / the split fractions"
            )


def split_by_patient(
    labels: np.ndarray, patients: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Assign every sample to 'train', 'val' or 'test' so that no patient spans two splits, each split
    holds every class, and class proportions are kept as far as patient groups allow."""
    classes, class_index = _checked_classes(labels, patients)
    split = np.full(len(labels), "train", dtype=object)
    rest, test = _fold(class_index, patients, round(1 / test_fraction), seed)
    split[test] = "test"
    _, val = _fold(class_index[rest], patients[rest], round((1 - test_fraction) / val_fraction), seed)
    split[rest[val]] = "val"
    _give_every_split_every_class(split, labels, patients, SPLITS)
    _check_every_split(split, labels, classes)
    return split.astype(str)


def split_by_site(
    labels: np.ndarray, patients: np.ndarray, sites: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, str]:
    """One site held out as the test split, as the next scanner or hospital would be, and the other sites' patients
    split into train and val as :func:`split_by_patient` does; the splits and the held-out site. The held-out site
    must have every class, and the others two patients of every class; of those that qualify, the one whose share of
    the images is closest to ``test_fraction`` (ties: the first pseudonym). ``sites`` are pseudonyms."""
    classes, class_index = _checked_classes(labels, patients)
    names = sorted(set(sites.tolist()))
    if len(names) < 2:
        raise DatasetTooSmallError(
            f"preprocess.split_by: site holds one site out as the test split, but labels.csv's site column has "
            f"{len(names)} site; add a site or set preprocess.split_by: patient"
        )
    if len(set(zip(patients.tolist(), sites.tolist(), strict=True))) > len(set(patients.tolist())):
        raise DatasetTooSmallError(
            "a patient has images from more than one site in labels.csv's site column; with preprocess.split_by: "
            "site each patient belongs to one site (fix the column, or set split_by: patient)"
        )
    qualify = [
        s
        for s in names
        if set(labels[sites == s]) == set(classes)
        and all(len(set(patients[(sites != s) & (labels == c)])) >= 2 for c in classes)
    ]
    if not qualify:
        table = "; ".join(
            f"{s}: " + ", ".join(f"{c} {int(((sites == s) & (labels == c)).sum())}" for c in classes) for s in names
        )
        raise DatasetTooSmallError(
            "preprocess.split_by: site found no site to hold out as the test split: that site needs an image of "
            f"every class and the other sites two patients of every class. Images per site (pseudonym): {table}. "
            "Add images, or set preprocess.split_by: patient"
        )
    held = min(qualify, key=lambda s: (abs(float(np.mean(sites == s)) - test_fraction), s))
    split = np.where(sites == held, "test", "train").astype(object)
    rest = np.flatnonzero(split == "train")
    # the rest split into train and val as in split_by_patient, whatever share of the images the held-out site has
    _, val = _fold(class_index[rest], patients[rest], round((1 - test_fraction) / val_fraction), seed)
    split[rest[val]] = "val"
    _give_every_split_every_class(split, labels, patients, ("train", "val"))
    _check_every_split(split, labels, classes)
    return split.astype(str), held


def _give_every_split_every_class(
    split: np.ndarray, labels: np.ndarray, patients: np.ndarray, names: tuple[str, ...]
) -> None:
    """Move patients (in place) between the splits ``names`` so that each holds every class that has a patient to
    spare: the stratified folds can leave a class of 3-4 patients out of a split when many classes compete (7
    classes, one of 3 patients: its 3 landed in test, train, train). For each split missing a class, one patient of
    the class moves there from the split of ``names`` holding most of the class's patients (at least 2): a patient
    with images of that class only if there is one, the fewest images first, then the first pseudonym."""
    for name in names:
        for label in np.unique(labels):
            if (labels[split == name] == label).any():
                continue
            held = {s: sorted(set(patients[(split == s) & (labels == label)])) for s in names if s != name}
            donor = max(held, key=lambda s: len(held[s]))
            if len(held[donor]) < 2:
                continue  # nothing to spare: the caller names the class
            rows = {p: labels[patients == p] for p in held[donor]}
            chosen = min(held[donor], key=lambda p: (bool((rows[p] != label).any()), len(rows[p]), p))
            split[patients == chosen] = name


def check_given_split(labels: np.ndarray, patients: np.ndarray, split: np.ndarray) -> np.ndarray:
    """Validate a split fixed by the manifest: no patient in two splits, every class in every split."""
    pairs = set(zip(patients.tolist(), split.tolist(), strict=True))  # one pass, not one scan per patient
    if len(pairs) > len({patient for patient, _ in pairs}):
        raise DatasetTooSmallError(
            "a patient has images in more than one split of labels.csv's split column; "
            "put all images of a patient in one split"
        )
    for name in SPLITS:
        missing = set(labels) - set(labels[split == name])
        if missing:
            raise DatasetTooSmallError(
                f"labels.csv's {name} split has no image of class(es) {', '.join(sorted(missing))}"
            )
    return split


def _try_row(row: ManifestRow, cfg: PreprocessConfig) -> list[Sample] | MedaugInputError:
    """:func:`row_samples`, returning the input error instead of raising it (for worker processes)."""
    try:
        return row_samples(row, cfg)
    except MedaugInputError as err:
        return err


def _one_thread_per_worker() -> None:
    """Worker processes already use every core between them; torch's own thread pool would oversubscribe."""
    torch.set_num_threads(1)


def iter_samples(rows: list[ManifestRow], cfg: PreprocessConfig, skipped: list[dict]) -> Generator[Sample]:
    """Every row's samples in manifest order, read by ``cfg.workers`` processes and handed over as they come (a row's
    samples at a time, not the dataset); the rows skipped are appended to ``skipped`` with their reason
    (``on_error: skip``; with ``fail`` the first bad row raises). Close the iterator (or exhaust it) to stop the
    workers."""
    workers = min(cfg.workers or os.cpu_count() or 1, len(rows))
    if workers > 1:
        # spawn, not fork: torch's thread pools do not survive a fork safely
        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread_per_worker
        )
        results = pool.map(partial(_try_row, cfg=cfg), rows, chunksize=max(1, len(rows) // (8 * workers)))
    else:
        pool, results = None, (_try_row(row, cfg) for row in rows)
    try:
        for row, result in zip(rows, tqdm(results, total=len(rows), desc="preprocess", unit="file"), strict=True):
            if not isinstance(result, MedaugInputError):
                yield from result
            elif cfg.on_error == "fail":
                raise result
            else:
                skipped.append({"labels_csv_line": row.line, "path": row.relpath, "reason": str(result)})
                logger.warning("skipped labels.csv line %d: %s", row.line, result)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def load_samples(rows: list[ManifestRow], cfg: PreprocessConfig) -> tuple[list[Sample], list[dict]]:
    """:func:`iter_samples` gathered in a list, with the rows skipped: every image in memory, for small datasets
    and benchmarks (the stage itself streams them)."""
    skipped: list[dict] = []
    return list(iter_samples(rows, cfg, skipped)), skipped


def _nearest(held: ImageArray, train: ImageArray) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out image's nearest training image (its index) and their Euclidean pixel distance, a block of each at
    a time: the same bits as scikit-learn's ``pairwise_distances_argmin_min`` on the whole flattened arrays.

    scikit-learn computes squared distances as norms plus a matrix product over blocks of
    ``pairwise_dist_chunk_size`` rows of each array (256), each row's norm on its own; blocks here are whole
    multiples of that, starting at multiples of it, so every product is computed over the same blocks. The squared
    distances (float64) are compared, ties kept at the lowest training index as in scikit-learn, and the distance
    taken at the end as it takes it for float32 data: the float32 square root of the squared distance rounded to
    float32."""
    block = sklearn.get_config()["pairwise_dist_chunk_size"]
    row_bytes = max(1, math.prod(train.shape[1:]) * train.dtype.itemsize)
    rows = max(1, TWIN_CHUNK_BYTES // (row_bytes * block)) * block
    nearest = np.zeros(len(held), dtype=np.intp)
    best = np.full(len(held), np.inf)
    for start, held_chunk in batches(held, rows):
        x = held_chunk.reshape(len(held_chunk), -1)
        here = slice(start, start + len(x))
        for train_start, train_chunk in batches(train, rows):
            index, squared = pairwise_distances_argmin_min(
                x, train_chunk.reshape(len(train_chunk), -1), metric_kwargs={"squared": True}
            )
            closer = squared < best[here]  # strictly: an equal distance further on keeps the earlier index
            best[here][closer] = squared[closer]
            nearest[here][closer] = index[closer] + train_start
    return nearest, np.sqrt(best.astype(np.float32)).astype(np.float64)


def near_twins(
    splits: dict[str, SplitData], lines: dict[str, list[int]], fraction: float = TWIN_FRACTION, shown: int = 8
) -> dict:
    """Validation and test images with a near-identical image in the training split: pixel RMS distance to their
    nearest training image below ``fraction`` of the median of those distances. Patient-level splits keep a
    patient's images together only when the patient is known; the same image under two names, or images of one
    patient or lesion without a patient_id, slip through them and make test scores optimistic.

    Returns the rule's threshold, the count per held-out split and how many twins carry another label than their
    training twin, every twin pair closest first (split, index, nearest training index, their labels.csv lines
    in ``lines``, RMS distance, whether the labels agree) and, twins or not, the ``shown`` closest pairs."""
    train = splits["train"]
    features = math.prod(train.images.shape[1:])
    found = {}
    for name in ("val", "test"):
        held = splits[name]
        if len(held) and len(train):  # a chunk of each at a time (_nearest), never a whole split
            nearest, distance = _nearest(held.images, train.images)
            found[name] = (nearest, distance / np.sqrt(features))
    if not found:
        return {"threshold_rms": None, "pairs": [], "closest": []}
    threshold = fraction * float(np.median(np.concatenate([d for _, d in found.values()])))
    every = [
        {
            "split": name,
            "index": int(i),
            "train_index": int(nearest[i]),
            "labels_csv_line": lines[name][i],
            "train_labels_csv_line": lines["train"][nearest[i]],
            "rms": float(distance[i]),
            "same_label": bool(splits[name].labels[i] == train.labels[nearest[i]]),
        }
        for name, (nearest, distance) in found.items()
        for i in range(len(distance))
    ]
    every.sort(key=lambda p: p["rms"])
    pairs = [p for p in every if p["rms"] < threshold]
    counts = {name: sum(p["split"] == name for p in pairs) for name in found}
    return {
        "rule": f"pixel RMS distance to the nearest training image below {fraction:g} x the median",
        "threshold_rms": threshold,
        "held_out_images": {name: len(splits[name]) for name in found},
        "twins": counts,
        "different_label": sum(not p["same_label"] for p in pairs),
        "pairs": pairs,
        "closest": every[:shown],
    }


FLAT_STD = 1 / 255  # flat_images: a line whose intensities vary less than one 8-bit grey level is constant
FLAT_CHUNK = 256  # flat_images: images examined at once


def flat_images(splits: dict[str, SplitData], lines: dict[str, list[int]], shown: int = 20) -> dict:
    """Images that are constant along a spatial axis: every row, or every column (or every line along Z), holds one
    value to within :data:`FLAT_STD` (standard deviation, intensities in [0, 1]) in every channel. Such stripes or
    blank images come from broken exports and resizes (squashed JPEGs, for one); they carry their label into
    training and testing without showing anything. They are counted per split, with the first ``shown`` labels.csv
    lines, and kept: the user decides."""
    found: dict[str, list[int]] = {}
    for name, data in splits.items():
        flat = np.zeros(len(data), dtype=bool)
        for start in range(0, len(data), FLAT_CHUNK):  # a chunk at a time: std's temporaries stay small
            chunk = data.images[start : start + FLAT_CHUNK]
            for axis in range(2, chunk.ndim):  # each spatial axis: its lines' largest spread
                flat[start : start + len(chunk)] |= chunk.std(axis=axis).reshape(len(chunk), -1).max(axis=1) < FLAT_STD
        found[name] = [lines[name][i] for i in np.flatnonzero(flat)]
    every = sorted(line for found_lines in found.values() for line in found_lines)
    return {
        "rule": f"constant along a spatial axis (every line's standard deviation below {FLAT_STD:.3g})",
        "images": {name: len(found_lines) for name, found_lines in found.items()},
        "labels_csv_lines": every[:shown],
    }


@dataclass(frozen=True, slots=True)
class _Record:
    """What pass 1 keeps of an image: its sample's metadata and where its pixels lie in the scratch file."""

    label: str
    patient: str
    line: int
    modality: str
    split: str | None
    source: str
    site: str  # pseudonym, "" without a site column
    shape: tuple[int, ...]  # (C, *spatial) with the file's own channels
    dtype: str
    offset: int  # bytes from the start of the scratch file

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def _read_to_scratch(rows: list[ManifestRow], cfg: PreprocessConfig, scratch: Path) -> tuple[list[_Record], list]:
    """Pass 1: every row's images (:func:`iter_samples`) appended to ``scratch`` as they come, as they are; their
    records, and the rows skipped."""
    records: list[_Record] = []
    skipped: list[dict] = []
    offset = 0
    samples = iter_samples(rows, cfg, skipped)
    try:
        with open(scratch, "wb") as fh:
            for s in samples:
                pixels = np.ascontiguousarray(s.image)
                fh.write(pixels.data)
                records.append(
                    _Record(
                        s.label,
                        s.patient,
                        s.line,
                        s.modality,
                        s.split,
                        s.source,
                        s.site,
                        pixels.shape,
                        pixels.dtype.str,
                        offset,
                    )
                )
                offset += pixels.nbytes
    finally:
        samples.close()  # stops the worker processes when a row fails
    return records, skipped


def _write_images(path: Path, scratch: int, records: list[_Record], image_shape: tuple[int, ...]) -> DiskArray:
    """Pass 2: the images of ``records``, in that order and with ``image_shape[0]`` channels, from the scratch file
    (descriptor ``scratch``) into the float32 ``.npy`` at ``path``, a chunk at a time."""
    rows = max(1, WRITE_CHUNK_BYTES // (math.prod(image_shape) * 4))
    with ArrayWriter(path, (len(records), *image_shape), np.float32) as out:
        for start in range(0, len(records), rows):
            part = records[start : start + rows]
            chunk = np.empty((len(part), *image_shape), np.float32)
            for k, record in enumerate(part):
                raw = os.pread(scratch, record.nbytes, record.offset)
                if len(raw) != record.nbytes:
                    raise OSError(f"{path}: the scratch file of pass 1 ends early; run preprocess again")
                image = np.frombuffer(raw, record.dtype).reshape(record.shape)
                chunk[k] = to_channels(image, image_shape[0])  # float32 as np.stack(..., dtype=float32) made it
            out.append(chunk)
    return DiskArray(path)


def _split_nbytes(labels: np.ndarray, patients: np.ndarray, image_shape: tuple[int, ...]) -> int:
    """Bytes of a split's arrays: float32 images of ``image_shape``, int64 labels and the ``patients`` strings."""
    return len(labels) * (math.prod(image_shape) * 4 + 8) + patients.nbytes


def preprocess_dataset(
    root: Path,
    cfg: PreprocessConfig,
    folder: Path | None = None,
    *,
    destination: Path | None = None,
    free: int | None = None,
) -> tuple[dict[str, SplitData], list[dict], ProcessedSummary]:
    """Core of the stage: write each split's images and labels into ``folder`` (:func:`save_split`'s files) and
    return the splits (images read from those files, :class:`DiskArray`), the split manifest rows and the summary.

    The images stream in two passes through a scratch file in ``folder`` (see the module's docstring), deleted
    before returning or on an error. Free disk space is checked (:func:`check_free_space`, ``free`` bytes or what
    the disk of ``folder`` has, in the name of ``destination``, the folder ``folder`` will become) before reading,
    for the least the rows could make, and again before the split files are written, for their size. Without
    ``folder`` the work is done in a temporary folder and the splits are returned in memory (small datasets and
    tests)."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="medaug-preprocess-") as tmp:
            splits, manifest, summary = preprocess_dataset(root, cfg, Path(tmp), destination=destination, free=free)
            splits = {name: replace(data, images=np.asarray(data.images)) for name, data in splits.items()}
            return splits, manifest, summary
    folder, named = Path(folder), Path(destination or folder)
    if cfg.on_error == "fail":
        rows, problems = read_manifest(root), list[str]()
    else:
        rows, problems = check_manifest(root)
    # each row makes at least one image, written twice (the scratch file, then its split) with one channel or more
    least_channels = 3 if cfg.channels == 3 else 1
    least = len(rows) * (1 + least_channels) * cfg.size**cfg.spatial_dims * 4
    check_free_space(named, least, free, space_of=folder, at_least=True)
    if cfg.split_by == "site":  # before any image is read
        check_site_columns(all(r.site is not None for r in rows), any(r.split for r in rows))
    scratch = folder / SCRATCH_NAME
    try:
        records, skipped = _read_to_scratch(rows, cfg, scratch)
        channels = target_channels(cfg.channels, (r.shape[0] for r in records))
        if not records:
            raise DatasetTooSmallError("no image was read from labels.csv's rows")
        split, split_source = assign_splits(
            np.array([r.label for r in records]),
            np.array([r.patient for r in records]),
            [r.split for r in records],
            [r.site for r in records],
            cfg,
        )
        spatial = {r.shape[1:] for r in records}
        if len(spatial) > 1:
            raise ValueError(f"images of several sizes after resizing: {sorted(spatial)}")
        image_shape = (channels, *spatial.pop())
        classes = tuple(sorted({str(r.label) for r in records}))
        index = {name: np.flatnonzero(split == name) for name in SPLITS}
        labels = {
            name: np.array([classes.index(str(records[i].label)) for i in idx], dtype=np.int64)
            for name, idx in index.items()
        }
        patients = np.array([r.patient for r in records])
        needed = sum(_split_nbytes(labels[name], patients[idx], image_shape) for name, idx in index.items())
        check_free_space(named, needed, free, space_of=folder)
        splits, manifest, lines = _write_splits(folder, scratch, records, index, labels, patients, classes, image_shape)
    finally:
        scratch.unlink(missing_ok=True)
    skipped = [{"reason": p} for p in problems] + skipped
    summary = _summary(cfg, len(rows), records, channels, splits, lines, skipped, split_source)
    return splits, manifest, summary


def _summary(
    cfg: PreprocessConfig,
    n_files: int,
    records: list,
    channels: int,
    splits: dict[str, SplitData],
    lines: dict[str, list[int]],
    skipped: list[dict],
    split_source: str,
) -> ProcessedSummary:
    """The stage's record of what it made (no patient data: counts, settings, labels.csv line numbers)."""
    return ProcessedSummary(
        n_files=n_files,
        n_images=len(records),
        classes=list(splits["train"].classes),
        image_size=[channels] + [cfg.size] * cfg.spatial_dims,
        channels={
            "setting": cfg.channels,
            "used": channels,
            # images whose channels were converted, e.g. {"3 to 1": 12}
            "converted": dict(Counter(f"{r.shape[0]} to {channels}" for r in records if r.shape[0] != channels)),
        },
        spacing_mm=list(cfg.spacing) if cfg.spacing is not None else "as in the files (resized to image_size)",
        modalities=dict(Counter(r.modality for r in records)),
        formats=dict(Counter(r.source for r in {r.line: r for r in records}.values())),
        splits={
            name: {"images": splits[name].counts(), "patients": len(set(splits[name].patients))} for name in SPLITS
        },
        skipped=skipped,
        split_source=split_source,
        sites={name: dict(Counter(data.sites.tolist())) for name, data in splits.items() if data.sites is not None},
        near_twins=near_twins(splits, lines),
        flat_images=flat_images(splits, lines),
    )


def check_site_columns(has_sites: bool, has_split: bool) -> None:
    """``preprocess.split_by: site`` needs labels.csv's site column on every row, and no split column."""
    if not has_sites:
        raise DatasetTooSmallError(
            "preprocess.split_by: site needs a site column in labels.csv (each row's scanner or hospital); "
            "add it or set preprocess.split_by: patient"
        )
    if has_split:
        raise DatasetTooSmallError(
            "labels.csv has a split column and preprocess.split_by is site: only one can choose the test split; "
            "drop the column or set preprocess.split_by: patient"
        )


def assign_splits(
    labels: np.ndarray, patients: np.ndarray, given: list[str | None], sites: list[str], cfg: PreprocessConfig
) -> tuple[np.ndarray, str]:
    """Each sample's split and where it came from: labels.csv's split column when every row gives one (checked),
    one site held out (``preprocess.split_by: site``; ``sites`` are pseudonyms, "" without a site column), else a
    patient-level stratified split."""
    if cfg.split_by == "site":
        check_site_columns(all(sites), any(given))
        split, held = split_by_site(labels, patients, np.array(sites), cfg.val_fraction, cfg.test_fraction, cfg.seed)
        return split, f"site {held} held out as the test split"
    if all(given):
        return check_given_split(labels, patients, np.array(given)), "labels.csv"
    return split_by_patient(labels, patients, cfg.val_fraction, cfg.test_fraction, cfg.seed), SPLIT_BY_PATIENT


def _write_splits(
    folder: Path,
    scratch: Path,
    records: list,
    index: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    patients: np.ndarray,
    classes: tuple[str, ...],
    image_shape: tuple[int, ...],
) -> tuple[dict[str, SplitData], list[dict], dict[str, list[int]]]:
    """Each split's images copied from the scratch file into its files (:func:`save_split`): the splits, the
    manifest rows and each split's labels.csv lines."""
    splits, manifest, lines = {}, [], {}
    fd = os.open(scratch, os.O_RDONLY)
    try:
        for name, idx in index.items():
            chosen = [records[i] for i in idx]
            images = _write_images(split_paths(folder, name)[0], fd, chosen, image_shape)
            sites = np.array([r.site for r in chosen]) if all(r.site for r in records) else None
            splits[name] = SplitData(images, labels[name], patients[idx], classes, sites)
            save_split(folder, name, splits[name], images_written=True)
            manifest += [
                {"split": name, "index": j, "patient": patients[i], "label": r.label, "labels_csv_line": r.line}
                for j, (i, r) in enumerate(zip(idx, chosen, strict=True))
            ]
            lines[name] = [r.line for r in chosen]
    finally:
        os.close(fd)
    return splits, manifest, lines


def _draw_closest(twins: dict, splits: dict[str, SplitData], path: Path) -> None:
    """The held-out images closest to a training image above their nearest training images (twins or not)."""
    closest, cut = twins["closest"], twins["threshold_rms"]
    rows = [("no validation or test images to compare", splits["train"].images[:0])]
    if closest:
        spread = f"RMS {closest[0]['rms']:.3g} to {closest[-1]['rms']:.3g}; twins below {cut:.3g}"
        rows = [
            (
                f"validation/test images closest to a training image ({spread})",
                np.stack([splits[p["split"]].images[p["index"]] for p in closest]),
            ),
            ("their nearest training images", np.stack([splits["train"].images[p["train_index"]] for p in closest])),
        ]
    image_grid(path, rows)


def check_free_space(
    out_dir: Path, nbytes: int, free: int | None = None, space_of: Path | None = None, at_least: bool = False
) -> int:
    """Refuse (:class:`InsufficientSpaceError`, with the numbers) when ``nbytes`` (the files about to be written to
    ``out_dir``) would not fit in ``free`` bytes (default: what the disk holding ``space_of``, or ``out_dir``, has
    free) with a 10 % margin; return the bytes needed. ``at_least``: ``nbytes`` is a lower bound (before reading).
    The new folder is built beside the old one, so the old outputs' space is not counted as free."""
    needed = int(1.1 * nbytes)
    if free is None:
        where = Path(space_of or out_dir).resolve()
        existing = next(p for p in [where, *where.parents] if p.exists())
        free = shutil.disk_usage(existing).free
    if needed > free:
        raise InsufficientSpaceError(
            f"{out_dir}: the processed dataset needs {'at least ' if at_least else ''}{needed / 2**20:,.1f} MiB "
            f"(with a 10 % margin), the disk has {free / 2**20:,.1f} MiB free; free some space, point "
            "paths.processed at a larger disk, or lower preprocess.size"
        )
    return needed


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: PreprocessConfig = load_section("preprocess")
    root = Path(load_section("data").root)
    out_dir = Path(load_section("paths").processed)
    try:
        with atomic_dir(out_dir) as staging:  # built beside out_dir, renamed into place when complete
            _, manifest, summary = preprocess_dataset(root, cfg, staging, destination=out_dir)
            write_csv(staging / "split_manifest.csv", manifest)
            summary.write(staging)
    except MedaugInputError as err:
        about_a_file = not isinstance(err, DatasetTooSmallError | InsufficientSpaceError)  # skipping files won't help
        hint = (
            " (or set preprocess.on_error: skip to leave such files out)"
            if cfg.on_error == "fail" and about_a_file
            else ""
        )
        logger.error("preprocess stopped, nothing was written: %s: %s%s", type(err).__name__, err, hint)
        sys.exit(1)
    logger.info("preprocessed %d images from %d files: %s", summary.n_images, summary.n_files, summary.splits)
    twins = summary.near_twins
    if twins["pairs"]:
        logger.warning(
            "%d validation/test image(s) have a near-identical twin in the training split (%d with another label): "
            "if they are the same patients or lesions, test scores are optimistic; labels.csv lines in %s",
            len(twins["pairs"]),
            twins["different_label"],
            out_dir / "summary.json",
        )
    flat = summary.flat_images
    if any(flat["images"].values()):
        logger.warning(
            "%d image(s) are constant along an axis (stripes or blank: broken exports or resizes?), e.g. labels.csv "
            "lines %s; they are kept, listed in %s (flat_images)",
            sum(flat["images"].values()),
            ", ".join(map(str, flat["labels_csv_lines"][:5])),
            out_dir / "summary.json",
        )
    splits = {name: load_split(out_dir, name) for name in SPLITS}  # where the staging folder's files now are
    _draw_closest(summary.near_twins, splits, SPLIT_TWINS.path(load_section("paths").reports))
    if summary.skipped:
        logger.warning("%d manifest row(s) skipped, listed in %s", len(summary.skipped), out_dir / summary.FILE)


if __name__ == "__main__":
    run_stage(main, "pipeline.preprocess")
