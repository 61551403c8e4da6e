"""Outputs that are complete or absent: written under a temporary name next to their final one and renamed into
place at the end, so that a run killed mid-write never leaves half a file or half a folder under the final name
(nothing that a later ``dvc repro``, or a reader, would take for a result).

``atomic_file`` is for one file, ``atomic_dir`` for a folder built whole (a dataset, the synthetic images)::

    with atomic_file("reports/metrics.csv") as tmp:
        tmp.write_text(text)
    with atomic_dir("data/synthetic") as staging:
        write_images(staging)

A file's temporary name is the final one plus ``.tmp`` (``vae.pt.tmp``): it keeps everything up to the final
name, which some writers record (``torch.save`` names its archive after the file up to the last dot), and the
next write of the same file replaces what a killed run left there, so nothing has to search for leftovers (the
synthetic DICOM writer calls it once per image). A folder is built in ``<name>.tmp-<pid>``; staging folders left
by processes that no longer run are removed before a new one is built. Two processes writing the same file at
once are not supported (``dvc repro`` runs one stage of a project at a time).

In a stage trained on several processes (:mod:`pipeline.distributed`) every rank runs the stage, and only rank 0
writes: on the other ranks both helpers yield a path in a scratch folder of their own and delete it at the end, so
the stage's code writes as in one process and nothing of theirs reaches the outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.distributed import is_main, rank

__all__ = ["atomic_file", "atomic_dir", "remove_stale_staging"]


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write the whole file to; when the block ends without an error the
    file is flushed to disk and renamed to ``path`` (replacing any old one), otherwise it is removed and ``path``
    is left as it was. Writers that pick a format by extension must be told the format (``savefig(format=...)``,
    ``np.savez`` on an open file)."""
    path = Path(path)
    if not is_main():
        with _scratch() as folder:
            yield folder / (path.name + ".tmp")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder ``<path>.tmp-<pid>`` to build the whole folder in; when the block ends without
    an error the old ``path`` is moved aside, the staging folder renamed to ``path`` and the old one deleted, so
    ``path`` is at every moment the old folder, absent, or the new one. On an error the staging folder is removed
    and ``path`` is left as it was. Files inside are not flushed one by one: a killed process loses nothing it
    wrote, only a power cut could."""
    path = Path(path)
    if not is_main():
        with _scratch() as folder:
            (staging := folder / path.name).mkdir()
            yield staging
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    staging, old = _staging(path), _staging(path, "-old")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        _remove(staging)
        raise
    if path.exists() or path.is_symlink():
        os.replace(path, old)
    os.replace(staging, path)
    _remove(old)


def remove_stale_staging(path: str | Path) -> list[Path]:
    """Remove the staging folders of ``path`` (``<path>.tmp-<pid>`` and the old folder ``<path>.tmp-<pid>-old``)
    left by processes that no longer run, and this process's own (an earlier process with the same id); return
    what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(path.name) + r"\.tmp-(\d+)(-old)?")
    removed = []
    for entry in sorted(path.parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match and (int(match.group(1)) == os.getpid() or not _running(int(match.group(1)))):
            _remove(entry)
            removed.append(entry)
    return removed


@contextmanager
def _scratch() -> Iterator[Path]:
    """A folder of this process's own, deleted with what is in it when the block ends (a rank other than 0)."""
    folder = Path(tempfile.mkdtemp(prefix=f"medaug-rank{rank()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _staging(path: Path, tag: str = "") -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}{tag}")


def _running(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would mean this process group
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a zombie (killed, not yet reaped: a container's init may never reap it) runs no more
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc: os.kill found the process
        return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
