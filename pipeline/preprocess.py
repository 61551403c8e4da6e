"""Stage ``preprocess``: dataset folder -> normalised 2D arrays with patient-level splits.

Reads ``labels.csv`` of ``data.root`` through the one reader (:mod:`pipeline.io.reader`), normalises
intensities per modality (CT windowing; photographs by their stored range), brings every image to the dataset's
channels (``preprocess.channels``: grey, or RGB when any image is colour), turns volumes into slices, resizes,
and splits train/val/test
by patient, stratified by class and seeded. Patient identifiers are replaced by salted hashes before
anything is written; the split manifest points back to the user's data by ``labels.csv`` line number.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from pipeline.config import PreprocessConfig, load_section
from pipeline.io.arrays import SPLITS, SplitData, save_split, write_csv, write_json
from pipeline.io.atomic import atomic_dir
from pipeline.io.errors import DatasetTooSmallError, InsufficientSpaceError, MedaugInputError
from pipeline.io.manifest import ManifestRow, check_manifest, read_manifest
from pipeline.plots import image_grid
from pipeline.preparation import Sample, pseudonymise, row_samples, target_channels, to_channels
from pipeline.runtime import run_stage

__all__ = [
    "Sample",
    "pseudonymise",
    "split_by_patient",
    "check_given_split",
    "load_samples",
    "preprocess_dataset",
    "near_twins",
    "flat_images",
    "check_free_space",
    "main",
]

logger = logging.getLogger(__name__)

TWIN_FRACTION = 0.25  # near_twins: a held-out image this much closer to a training image than is typical is a twin


def split_by_patient(
    labels: np.ndarray, patients: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Assign every sample to 'train', 'val' or 'test' so that no patient spans two splits, each split
    holds every class, and class proportions are kept as far as patient groups allow."""
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
    split = np.full(len(labels), "train", dtype=object)
    test_folds = StratifiedGroupKFold(n_splits=max(2, round(1 / test_fraction)), shuffle=True, random_state=seed)
    rest, test = next(test_folds.split(np.zeros(len(labels)), class_index, patients))
    split[test] = "test"
    val_splits = max(2, round((1 - test_fraction) / val_fraction))
    val_folds = StratifiedGroupKFold(n_splits=val_splits, shuffle=True, random_state=seed)
    _, val = next(val_folds.split(np.zeros(len(rest)), class_index[rest], patients[rest]))
    split[rest[val]] = "val"
    for name in SPLITS:
        missing = set(classes) - set(labels[split == name])
        if missing:
            raise DatasetTooSmallError(
                f"the {name} split has no patient of class(es) {', '.join(sorted(missing))}; "
                "add patients of that class or change preprocess.seed / the split fractions"
            )
    return split.astype(str)


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


def load_samples(rows: list[ManifestRow], cfg: PreprocessConfig) -> tuple[list[Sample], list[dict]]:
    """Every row's samples in manifest order, read by ``cfg.workers`` processes, and the rows skipped with
    their reason (``on_error: skip``; with ``fail`` the first bad row raises)."""
    workers = min(cfg.workers or os.cpu_count() or 1, len(rows))
    if workers > 1:
        # spawn, not fork: torch's thread pools do not survive a fork safely
        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread_per_worker
        )
        results = pool.map(partial(_try_row, cfg=cfg), rows, chunksize=max(1, len(rows) // (8 * workers)))
    else:
        pool, results = None, (_try_row(row, cfg) for row in rows)
    samples, skipped = [], []
    try:
        for row, result in zip(rows, tqdm(results, total=len(rows), desc="preprocess", unit="file"), strict=True):
            if not isinstance(result, MedaugInputError):
                samples += result
            elif cfg.on_error == "fail":
                raise result
            else:
                skipped.append({"labels_csv_line": row.line, "path": row.relpath, "reason": str(result)})
                logger.warning("skipped labels.csv line %d: %s", row.line, result)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return samples, skipped


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
    flat = train.images.reshape(len(train), -1)
    found = {}
    for name in ("val", "test"):
        held = splits[name]
        if len(held) and len(train):
            nearest, distance = pairwise_distances_argmin_min(held.images.reshape(len(held), -1), flat)
            found[name] = (nearest, distance / np.sqrt(flat.shape[1]))
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
    blank images come from broken exports and resizes (about a fifth of ISIC UDA-1's squashed JPEGs are vertical
    stripes); they carry their label into training and testing without showing anything. They are counted per
    split, with the first ``shown`` labels.csv lines, and kept: the user decides."""
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


def preprocess_dataset(root: Path, cfg: PreprocessConfig) -> tuple[dict[str, SplitData], list[dict], dict]:
    """Core of the stage: return the split arrays, the split manifest rows and the summary."""
    if cfg.on_error == "fail":
        rows, problems = read_manifest(root), []
    else:
        rows, problems = check_manifest(root)
    samples, skipped = load_samples(rows, cfg)
    channels = target_channels(cfg.channels, (s.image.shape[0] for s in samples))
    converted = Counter(f"{s.image.shape[0]} to {channels}" for s in samples if s.image.shape[0] != channels)
    for sample in samples:
        sample.image = to_channels(sample.image, channels)
    skipped = [{"reason": p} for p in problems] + skipped
    labels = np.array([s.label for s in samples])
    patients = np.array([s.patient for s in samples])
    fixed = all(s.split for s in samples)
    if fixed:
        split = check_given_split(labels, patients, np.array([s.split for s in samples]))
    else:
        split = split_by_patient(labels, patients, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    classes = tuple(sorted({str(label) for label in labels}))
    splits, manifest, lines = {}, [], {}
    for name in SPLITS:
        idx = np.flatnonzero(split == name)
        splits[name] = SplitData(
            images=np.stack([samples[i].image for i in idx], dtype=np.float32),  # one copy, not two
            labels=np.array([classes.index(labels[i]) for i in idx], dtype=np.int64),
            patients=patients[idx],
            classes=classes,
        )
        manifest += [
            {"split": name, "index": j, "patient": patients[i], "label": labels[i], "labels_csv_line": samples[i].line}
            for j, i in enumerate(idx)
        ]
        lines[name] = [samples[i].line for i in idx]
    summary = {
        "n_files": len(rows),
        "n_images": len(samples),
        "classes": list(classes),
        "image_size": [channels] + [cfg.size] * cfg.spatial_dims,
        "channels": {
            "setting": cfg.channels,
            "used": channels,
            "converted": dict(converted),  # images whose channels were converted, e.g. {"3 to 1": 12}
        },
        "spacing_mm": list(cfg.spacing) if cfg.spacing is not None else "as in the files (resized to image_size)",
        "modalities": dict(Counter(s.modality for s in samples)),
        "formats": dict(Counter(s.source for s in {s.line: s for s in samples}.values())),
        "splits": {
            name: {"images": splits[name].counts(), "patients": len(set(splits[name].patients))} for name in SPLITS
        },
        "skipped": skipped,
        "split_source": "labels.csv" if fixed else "patient-level stratified split",
        "near_twins": near_twins(splits, lines),
        "flat_images": flat_images(splits, lines),
    }
    return splits, manifest, summary


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


def check_free_space(out_dir: Path, splits: dict[str, SplitData], free: int | None = None) -> int:
    """Refuse (:class:`InsufficientSpaceError`, with the numbers) when the split files would not fit in ``free`` bytes
    (default: what the disk holding ``out_dir`` has free) with a 10 % margin; return the bytes they need. The new
    folder is built beside the old one, so the old outputs' space is not counted as free."""
    needed = int(1.1 * sum(d.images.nbytes + d.labels.nbytes + d.patients.nbytes for d in splits.values()))
    if free is None:
        existing = next(p for p in [out_dir.resolve(), *out_dir.resolve().parents] if p.exists())
        free = shutil.disk_usage(existing).free
    if needed > free:
        raise InsufficientSpaceError(
            f"{out_dir}: the processed dataset needs {needed / 2**20:,.1f} MiB (with a 10 % margin), the disk has "
            f"{free / 2**20:,.1f} MiB free; free some space, point paths.processed at a larger disk, or lower "
            "preprocess.size"
        )
    return needed


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: PreprocessConfig = load_section("preprocess")
    root = Path(load_section("data").root)
    out_dir = Path(load_section("paths").processed)
    try:
        splits, manifest, summary = preprocess_dataset(root, cfg)
        check_free_space(out_dir, splits)
    except MedaugInputError as err:
        hint = " (or set preprocess.on_error: skip to leave such files out)" if cfg.on_error == "fail" else ""
        logger.error("preprocess stopped, nothing was written: %s%s", err, hint)
        sys.exit(1)
    with atomic_dir(out_dir) as staging:  # built beside out_dir, renamed into place when complete
        for name, data in splits.items():
            save_split(staging, name, data)
        write_csv(staging / "split_manifest.csv", manifest)
        write_json(staging / "summary.json", summary)
    logger.info("preprocessed %d images from %d files: %s", summary["n_images"], summary["n_files"], summary["splits"])
    twins = summary["near_twins"]
    if twins["pairs"]:
        logger.warning(
            "%d validation/test image(s) have a near-identical twin in the training split (%d with another label): "
            "if they are the same patients or lesions, test scores are optimistic; labels.csv lines in %s",
            len(twins["pairs"]),
            twins["different_label"],
            out_dir / "summary.json",
        )
    flat = summary["flat_images"]
    if any(flat["images"].values()):
        logger.warning(
            "%d image(s) are constant along an axis (stripes or blank: broken exports or resizes?), e.g. labels.csv "
            "lines %s; they are kept, listed in %s (flat_images)",
            sum(flat["images"].values()),
            ", ".join(map(str, flat["labels_csv_lines"][:5])),
            out_dir / "summary.json",
        )
    _draw_closest(summary["near_twins"], splits, Path(load_section("paths").reports) / "figures" / "split_twins.png")
    if summary["skipped"]:
        logger.warning("%d manifest row(s) skipped, listed in %s", len(summary["skipped"]), out_dir / "summary.json")


if __name__ == "__main__":
    run_stage(main, "pipeline.preprocess")
