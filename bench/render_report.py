"""Render the HTML report in headless Chromium to PNG pages, to look at it as a reader would (offline: the
page must need nothing but itself) and to time the rendering.

Usage: .venv/bin/python bench/render_report.py [REPORT.html] [--out DIR] [--width 1200] [--page-height 2400]

Writes ``DIR/report.png`` (the whole page, up to ``--max-height`` pixels) and ``DIR/page_NN.png`` slices of
``--page-height`` pixels, and prints the page height, the number of embedded pictures and the time Chromium
took. Needs Debian's ``chromium`` (``apt-get install chromium``); exits 2 without it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int, height: int, timeout: float = 120.0) -> float:
    """Chromium's headless screenshot of ``html`` in a ``width`` x ``height`` window, with the network off;
    returns the seconds it took."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--proxy-server=127.0.0.1:9",  # nothing outside the file may load: a fetch would fail visibly
            "--proxy-bypass-list=<-loopback>",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            html.resolve().as_uri(),
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)
        return time.perf_counter() - start


def content_height(png: Path, background: float = 0.98) -> int:
    """The last pixel row that is not page background (white), plus a margin."""
    image = mpimg.imread(png)[..., :3]
    rows = np.flatnonzero((image < background).any(axis=(1, 2)))
    return int(rows[-1]) + 40 if len(rows) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", type=Path, default=Path("reports/augmentation_report.html"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/report"))
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--page-height", type=int, default=2400)
    parser.add_argument("--max-height", type=int, default=30000)
    args = parser.parse_args()
    if find_chromium() is None:
        print("no chromium on PATH: apt-get install chromium", file=sys.stderr)
        sys.exit(2)
    args.out.mkdir(parents=True, exist_ok=True)
    whole = args.out / "report.png"
    seconds = screenshot(args.html, whole, args.width, args.max_height)
    height = content_height(whole)
    image = mpimg.imread(whole)[:height]
    mpimg.imsave(whole, image)
    for k, top in enumerate(range(0, height, args.page_height)):
        mpimg.imsave(args.out / f"page_{k:02d}.png", image[top : top + args.page_height])
    pictures = len(re.findall(r'<img src="data:image/', args.html.read_text(encoding="utf-8")))
    print(
        f"{args.html}: {height} px high at {args.width} px, {pictures} embedded pictures, "
        f"Chromium {seconds:.1f} s; pages in {args.out}"
    )


if __name__ == "__main__":
    main()
