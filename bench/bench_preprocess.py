"""Slices per second of preprocess's reading step (read, window, resize) against a bare loop of
``pydicom.dcmread(f).pixel_array`` over the same DICOM files, on one core and on all cores.

Usage: .venv/bin/python bench/bench_preprocess.py [DATASET_ROOT ...]

Without arguments it measures two datasets: ``COPIES`` copies of the real 20-slice CT series of
``../shared/data/ct_series`` (512 x 512, JPEG 2000: decoding dominates, as with PACS exports), written to a
temporary folder, and ``data/demo`` (128 x 128 uncompressed phantoms: per-file overhead dominates) when it exists.
For several workers it reports the wall-clock rate and the rate once the worker processes have started (each
spawned worker imports torch and MONAI, a few seconds that only large datasets amortise).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pydicom

from pipeline.config import load_section
from pipeline.io.manifest import read_manifest
from pipeline.io.reader import is_nifti
from pipeline.preprocess import _one_thread_per_worker, load_samples

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct_series" / "example_ct_dicom"
COPIES = 32


def dicom_files(root: Path) -> list[Path]:
    """Every DICOM file the manifest names, series folders expanded."""
    files = []
    for row in read_manifest(root):
        if row.path.is_dir():
            files += sorted(p for p in row.path.iterdir() if pydicom.misc.is_dicom(p))
        elif not is_nifti(row.path):
            files.append(row.path)
    return files


def _import_pipeline(_: int) -> int:
    import pipeline.preprocess  # noqa: F401 - what a worker pays before its first file

    return 0


def worker_startup(workers: int) -> float:
    """Seconds until ``workers`` spawned processes have imported the preprocess stage."""
    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_one_thread_per_worker) as pool:
        list(pool.map(_import_pipeline, range(workers)))
    return time.perf_counter() - start


def bench(root: Path) -> None:
    rows, files = read_manifest(root), dicom_files(root)
    only_dicom = not any(is_nifti(r.path) for r in rows)
    start = time.perf_counter()
    for f in files:
        pydicom.dcmread(f).pixel_array  # noqa: B018 - decoding is the point
    bare = len(files) / (time.perf_counter() - start)
    print(f"\n{root}: {len(rows)} manifest rows, {len(files)} DICOM files")
    print(f"  bare pydicom loop, 1 core: {bare:.1f} slices/s")
    if not only_dicom:
        print("  (the dataset also holds NIfTI rows, which the bare loop does not read: ratios are indicative)")
    base = load_section("preprocess")
    single = None
    for workers in sorted({1, os.cpu_count() or 1}):
        start = time.perf_counter()
        samples, skipped = load_samples(rows, dataclasses.replace(base, workers=workers))
        seconds = time.perf_counter() - start
        rate = len(samples) / seconds
        line = f"  preprocess, workers={workers}: {len(samples)} slices in {seconds:.1f} s, {rate:.1f} slices/s"
        if workers == 1:
            single = rate
            line += f" = {rate / bare:.2f}x the bare loop"
        else:
            startup = worker_startup(workers)
            line += f" ({rate / single:.2f}x workers=1); worker start-up {startup:.1f} s"
            if seconds > 2 * startup:
                steady = len(samples) / (seconds - startup)
                line += f", after it {steady:.1f} slices/s = {steady / single:.2f}x workers=1"
            else:
                line += ", most of the run: too small a dataset for several workers"
        print(line + (f", {len(skipped)} skipped" if skipped else ""))


def main(roots: list[Path]) -> None:
    warnings.simplefilter("ignore")
    print(f"cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        if not roots:
            if SHARED_CT.is_dir():
                ct = Path(tmp) / "ct_copies"
                lines = ["path,label,patient_id"]
                for k in range(COPIES):
                    shutil.copytree(SHARED_CT, ct / f"ct{k:02d}")
                    lines.append(f"ct{k:02d},{'ab'[k % 2]},p{k}")
                (ct / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
                roots.append(ct)
            if Path("data/demo/labels.csv").is_file():
                roots.append(Path("data/demo"))
        for root in roots:
            bench(root)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
