"""Wall time and peak memory of preprocess's reading step for 1 and for all worker processes.

Usage: .venv/bin/python bench/bench_preprocess.py DATASET_ROOT
(e.g. data/demo after `make run`, or a folder of copies of ../shared/data/ct_series/example_ct_dicom)
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

from pipeline.config import load_section
from pipeline.io.manifest import read_manifest
from pipeline.preprocess import load_samples


def main(root: Path) -> None:
    rows = read_manifest(root)
    base = load_section("preprocess")
    for workers in sorted({1, os.cpu_count() or 1}):
        start = time.perf_counter()
        samples, skipped = load_samples(rows, dataclasses.replace(base, workers=workers))
        seconds = time.perf_counter() - start
        print(
            f"workers={workers}: {len(rows)} files -> {len(samples)} images in {seconds:.1f} s "
            f"({len(rows) / seconds:.1f} files/s), {len(skipped)} skipped"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data/demo"))
