"""The HTML report as Chromium draws it, offline: the embedded pictures appear (a test picture of a colour
nothing else on the page has must show up in the screenshot). Skipped where Chromium is not installed
(`apt-get install chromium`; .ci/run installs it when it can)."""

import shutil
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from pipeline.reporting.html import markdown_to_html
from tests.project import ROOT

pytestmark = pytest.mark.skipif(
    not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")), reason="no chromium"
)


def test_chromium_shows_the_embedded_picture_and_the_table(tmp_path):
    (tmp_path / "figures").mkdir()
    square = np.zeros((60, 90, 3))
    square[..., 0] = 1.0  # pure red: nothing else on the page is
    mpimg.imsave(tmp_path / "figures" / "red.png", square)
    text = "# Report\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![red](figures/red.png)\n"
    page = tmp_path / "report.html"
    page.write_text(markdown_to_html(text, tmp_path, "t"), encoding="utf-8")
    (tmp_path / "figures" / "red.png").unlink()  # the page must not need the file any more
    out = tmp_path / "shots"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "render_report.py"), str(page), "--out", str(out), "--max-height", "800"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "1 embedded pictures" in result.stdout
    shot = mpimg.imread(out / "page_00.png")[..., :3]
    red = (shot[..., 0] > 0.9) & (shot[..., 1] < 0.1) & (shot[..., 2] < 0.1)
    assert red.sum() >= 60 * 90 * 0.9  # the whole picture, at 1 CSS pixel per pixel
    assert (shot < 0.5).any(axis=2).sum() > 50  # and dark text (the heading and table)
