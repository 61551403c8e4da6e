import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from pipeline.reporting.html import markdown_to_html  # noqa: E402

TEXT = """# Title

| strategy | BA |
|---|---|
| vae | 0.800 ± 0.010 [0.750, 0.850] |

![bars](figures/bars.png)
"""


@pytest.fixture
def reports(tmp_path):
    (tmp_path / "figures").mkdir()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar([0, 1], [0.6, 0.8])
    fig.savefig(tmp_path / "figures" / "bars.png")
    plt.close(fig)
    return tmp_path


def test_pictures_are_embedded_and_nothing_is_fetched(reports):
    page = markdown_to_html(TEXT, reports, "t")
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].split(",", 1)[1]) == (reports / "figures" / "bars.png").read_bytes()
    assert "<table>" in page and "<td>0.800 ± 0.010 [0.750, 0.850]</td>" in page  # a table, not a link
    assert "http" not in page.replace("<!DOCTYPE html>", "")  # no external script, font or stylesheet


# (markdown, error): pictures the page could not show
@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("![gone](figures/gone.png)", FileNotFoundError, "gone.png"),  # a figure a stage did not write
        ("![x](../secret.png)", ValueError, "outside"),  # a path out of the reports folder
    ],
)
def test_a_picture_that_cannot_be_embedded_is_an_error_naming_it(reports, text, error, match):
    (reports.parent / "secret.png").write_bytes(b"x")
    with pytest.raises(error, match=match):
        markdown_to_html(text, reports, "t")
