"""Slices per second of preprocess's reading step (read, window, resize) against a bare loop of
``pydicom.dcmread(f).pixel_array`` over the same DICOM files, for 1 and for all worker processes.

Usage: .venv/bin/python bench/bench_preprocess.py DATASET_ROOT
(e.g. data/demo after `make run`, or a folder of copies of ../shared/data/ct_series/example_ct_dicom)
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import pydicom

from pipeline.config import load_section
from pipeline.io.manifest import read_manifest
from pipeline.io.reader import is_nifti
from pipeline.preprocess import load_samples


def dicom_files(root: Path) -> list[Path]:
    """Every DICOM file the manifest names, series folders expanded."""
    files = []
    for row in read_manifest(root):
        if row.path.is_dir():
            files += sorted(p for p in row.path.iterdir() if pydicom.misc.is_dicom(p))
        elif not is_nifti(row.path):
            files.append(row.path)
    return files


def main(root: Path) -> None:
    warnings.simplefilter("ignore")
    rows = read_manifest(root)
    files = dicom_files(root)
    start = time.perf_counter()
    for f in files:
        pydicom.dcmread(f).pixel_array  # noqa: B018 - decoding is the point
    bare = len(files) / (time.perf_counter() - start)
    print(f"bare pydicom loop: {len(files)} DICOM files, {bare:.1f} slices/s")
    base = load_section("preprocess")
    for workers in sorted({1, os.cpu_count() or 1}):
        start = time.perf_counter()
        samples, skipped = load_samples(rows, dataclasses.replace(base, workers=workers))
        rate = len(samples) / (time.perf_counter() - start)
        print(
            f"preprocess, workers={workers}: {len(rows)} rows -> {len(samples)} slices, {rate:.1f} slices/s "
            f"({rate / bare:.2f}x the bare loop), {len(skipped)} skipped"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data/demo"))
