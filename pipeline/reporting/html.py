"""The Markdown report as one self-contained HTML page: tables rendered, every picture embedded as a data URI,
no external script, font or stylesheet, so it opens offline and survives being mailed or archived."""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

from markdown_it import MarkdownIt

__all__ = ["markdown_to_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1.5em; color: #1b1b1b; line-height: 1.45; }
h1 { border-bottom: 2px solid #3465a4; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .15em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .85em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; margin: .5em 0; }
code, pre { background: #f4f4f4; font-size: .85em; }
pre { padding: .8em; overflow-x: auto; }
details { margin: 1em 0; }
"""

_IMG = re.compile(r'<img src="([^"]+)"')


def _data_uri(src: str, base: Path) -> str:
    """``src`` (relative to ``base``, inside it) as a ``data:`` URI; a missing or escaping picture is an error
    naming it, so a report never ships with a broken image."""
    path = (base / html.unescape(src)).resolve()
    if not path.is_relative_to(base.resolve()):
        raise ValueError(f"the report refers to {src}, outside {base}: pictures must live under the reports folder")
    if not path.is_file():
        raise FileNotFoundError(f"the report shows {src} but {path} does not exist: re-run `dvc repro`")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def markdown_to_html(text: str, base: str | Path, title: str) -> str:
    """The page for the Markdown ``text`` whose picture paths are relative to the folder ``base``."""
    body = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    body = _IMG.sub(lambda m: f'<img src="{_data_uri(m.group(1), Path(base))}"', body)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
