"""The processed dataset on disk, read a batch at a time, plus small JSON and CSV helpers.

A split is two files in the processed folder: ``<split>_images.npy`` (a plain ``.npy``, float32 ``(N, C, *spatial)``
in [0, 1]) and ``<split>.npz`` (labels, patient pseudonyms, class names). :func:`load_split` gives the images as a
:class:`DiskArray`: it indexes like a NumPy array of that shape (an int, a slice, an index array or a boolean mask
along the first axis returns an ``ndarray`` of those rows) and reads the rows asked for from the file with
``os.pread``, so a stage holds the batch it works on, not the split. The file is not memory-mapped: pages a mapping
touches stay in the process's resident set until the mapping goes, and a pass over a split would bring the whole
file into it. :class:`Rows` selects and concatenates arrays (disk or memory) without copying their rows, which is how
the classifier's remedies (oversampling, the synthetic images appended) build their training sets.

float32 is kept for the stored images (the narrowest type that keeps them: windowed CT and percentile-scaled values
are not multiples of 1/255 or 1/65535, and float16 would move them by up to 2^-11), so reading a split gives the
values preprocess computed, bit for bit. :class:`ArrayWriter` writes such a file a batch at a time: a stage that
makes images (preprocess, generate) streams them to disk as it goes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.lib.format as npy_format

from pipeline.io.atomic import atomic_file

__all__ = [
    "SPLITS",
    "SplitData",
    "DiskArray",
    "Rows",
    "ArrayWriter",
    "ImageArray",
    "batches",
    "save_split",
    "load_split",
    "split_paths",
    "write_json",
    "write_npz",
    "write_csv",
    "read_json",
]

SPLITS = ("train", "val", "test")
CHUNK_BYTES = 64 * 2**20  # rows per read in batches(): about this many bytes at a time


class DiskArray:
    """The rows of a ``.npy`` file, read on demand (``os.pread``), never the whole file unless asked for.

    ``shape``, ``dtype``, ``ndim``, ``len`` and ``nbytes`` are those of the stored array; ``a[key]`` with ``key`` an
    int, a slice, an integer index array or a boolean mask (optionally followed by more indices, ``a[idx, 0]``)
    returns an ``ndarray``. ``np.asarray(a)`` reads the whole file: for small arrays only. Safe to pickle and to use in
    DataLoader workers (the file is opened once per process).
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = npy_format.read_magic(fh)
            read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            self._offset = fh.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{self.path}: not a C-ordered array of plain values; re-run the stage that wrote it")
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        if not self.shape:
            raise ValueError(f"{self.path}: a scalar, not an array of rows")
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        expected = self._offset + self._row_bytes * self.shape[0]
        if self.path.stat().st_size < expected:
            raise ValueError(
                f"{self.path}: {self.path.stat().st_size} bytes, its header promises {expected}: the file is "
                "truncated; re-run the stage that wrote it"
            )
        self._fd: int | None = None
        self._pid = -1

    ndim = property(lambda self: len(self.shape))
    nbytes = property(lambda self: self._row_bytes * self.shape[0])
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DiskArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_fd", "_pid")} | {"_fd": None, "_pid": -1}

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)  # absent when __init__ raised
        if fd is not None and self._pid == os.getpid():
            os.close(fd)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        """Rows ``start:stop`` into the C-contiguous buffer ``out``."""
        view, want, done = out.reshape(-1).view(np.uint8).data, (stop - start) * self._row_bytes, 0
        while done < want:
            got = os.preadv(self._file(), [view[done:want]], self._offset + start * self._row_bytes + done)
            if got <= 0:
                raise OSError(f"{self.path}: unexpected end of file; re-run the stage that wrote it")
            done += got

    def _rows(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        if not len(index):
            return out
        order = np.argsort(index, kind="stable")
        sorted_index = index[order]
        # runs of consecutive rows (in sorted order) are read with one call each
        breaks = np.flatnonzero(np.diff(sorted_index) != 1) + 1
        if len(breaks) == 0 and np.all(order == np.arange(len(index))):  # already one ascending run
            self._read(int(sorted_index[0]), int(sorted_index[-1]) + 1, out)
            return out
        buffer = np.empty_like(out)
        for run in np.split(np.arange(len(index)), breaks):
            self._read(int(sorted_index[run[0]]), int(sorted_index[run[-1]]) + 1, buffer[run[0] : run[-1] + 1])
        out[order] = buffer
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        return _finish(self._rows(row_index(key, len(self))), key, rest)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, chunk in batches(self, max(1, CHUNK_BYTES // max(self._row_bytes, 1))):
            yield from chunk


class Rows:
    """Rows ``index`` of the arrays ``parts`` stacked along the first axis (all rows, in order, without ``index``),
    read from them when indexed: a view that copies nothing. ``parts`` may be ndarrays, :class:`DiskArray` or
    :class:`Rows`."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __init__(self, parts: Sequence[ImageArray], index: np.ndarray | None = None) -> None:
        parts = [p for p in parts if len(p)] or list(parts[:1])
        if not parts:
            raise ValueError("Rows needs at least one array")
        tail = {tuple(p.shape[1:]) for p in parts}
        if len(tail) > 1:
            raise ValueError(f"cannot stack arrays of row shapes {sorted(tail)}")
        self.parts = list(parts)
        self._starts = np.cumsum([0] + [len(p) for p in parts])
        total = int(self._starts[-1])
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        if self.index is not None and len(self.index) and (self.index.min() < 0 or self.index.max() >= total):
            raise IndexError(f"row index out of range for {total} rows")
        self.shape = (total if self.index is None else len(self.index), *parts[0].shape[1:])
        self.dtype = np.result_type(*[p.dtype for p in parts])

    ndim = property(lambda self: len(self.shape))
    nbytes = property(lambda self: int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize)
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        index = row_index(key, len(self))
        if self.index is not None:
            index = self.index[index]
        part = np.searchsorted(self._starts, index, side="right") - 1
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        for p in np.unique(part):
            where = np.flatnonzero(part == p)
            out[where] = self.parts[p][index[where] - self._starts[p]]
        return _finish(out, key, rest)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        row = max(int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize, 1)
        for _, chunk in batches(self, max(1, CHUNK_BYTES // row)):
            yield from chunk


ImageArray = np.ndarray | DiskArray | Rows


def row_index(key: Any, n: int) -> np.ndarray:
    """``key`` (an int, a slice, an integer array or list, a boolean mask) as the int64 rows it selects of ``n``."""
    if isinstance(key, (int, np.integer)):
        k = int(key) + n if key < 0 else int(key)
        if not 0 <= k < n:
            raise IndexError(f"index {key} is out of range for {n} rows")
        return np.array([k], dtype=np.int64)
    if isinstance(key, slice):
        return np.arange(n, dtype=np.int64)[key]
    if key is Ellipsis:
        return np.arange(n, dtype=np.int64)
    index = np.asarray(key)
    if index.dtype == bool:
        if index.shape != (n,):
            raise IndexError(f"boolean mask of shape {index.shape} for {n} rows")
        return np.flatnonzero(index)
    if index.size and not np.issubdtype(index.dtype, np.integer):
        raise IndexError(f"rows must be selected by int, slice, integer array or mask, got {index.dtype}")
    index = index.astype(np.int64).reshape(-1)
    if len(index) and (index.max() >= n or index.min() < -n):
        raise IndexError(f"row index out of range for {n} rows")
    return np.where(index < 0, index + n, index)


def _finish(rows: np.ndarray, key: Any, rest: tuple) -> np.ndarray:
    """The rows read for ``key`` indexed further by ``rest`` as NumPy would: one row for an int key."""
    if isinstance(key, (int, np.integer)):
        return rows[0][rest] if rest else rows[0]
    return rows[(slice(None), *rest)] if rest else rows


def batches(images: ImageArray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, images[start:start + size])`` for consecutive batches: one batch in memory at a time."""
    for start in range(0, len(images), size):
        yield start, np.asarray(images[start : start + size])


class ArrayWriter:
    """Write a ``.npy`` file of ``shape`` and ``dtype`` a batch of rows at a time (``append``). ``shape[0]`` may be
    None when the count is known only at the end (generate's pool: a filter may leave a class short): the header
    then holds room for any count and :meth:`close` writes the count into it. :meth:`close` checks that every row
    announced came and flushes the file to disk; on an error the file is removed. Write to a temporary path (an
    :func:`~pipeline.io.atomic.atomic_dir` or ``atomic_file``): a killed run leaves no half-written array under its
    final name.

    Example::

        with ArrayWriter(staging / "train_images.npy", (n, 1, 64, 64), np.float32) as out:
            for batch in made:
                out.append(batch)
    """

    held = "the array"  # what the file holds, in error messages

    def __init__(self, path: str | Path, shape: Sequence[int | None], dtype: Any = np.float32) -> None:
        self.path, self.dtype = Path(path), np.dtype(dtype)
        first, rest = shape[0], [int(s) for s in shape[1:] if s is not None]
        if len(rest) != len(shape) - 1:
            raise ValueError(f"{self.path}: only the row count may be left open, got shape {tuple(shape)}")
        self.count = None if first is None else int(first)
        self.shape = (self.count, *rest)
        self.written = 0
        self._fh = open(self.path, "wb")
        # a count of as many digits as any count will have: the header's length does not change when it is filled in
        self._header_size = self._fh.write(self._header(10**18 if self.count is None else self.count))

    def _header(self, count: int, size: int | None = None) -> bytes:
        """NumPy's ``.npy`` (version 1.0) header for ``count`` rows; with ``size``, padded with spaces to that many
        bytes (the reader takes any padding before the newline)."""
        out = io.BytesIO()
        header = {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False}
        npy_format.write_array_header_1_0(out, header | {"shape": (count, *self.shape[1:])})
        raw = out.getvalue()
        if size is None or size == len(raw):
            return raw
        start = len(npy_format.magic(1, 0)) + 2  # the header's text follows the magic string and its uint16 length
        body = raw[start:-1] + b" " * (size - len(raw)) + b"\n"
        return raw[: start - 2] + len(body).to_bytes(2, "little") + body

    def append(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: rows of shape {rows.shape[1:]}, {self.held} holds {self.shape[1:]}")
        if self.count is not None and self.written + len(rows) > self.count:
            raise ValueError(f"{self.path}: more than the {self.count} rows announced")
        self._fh.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.written += len(rows)

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            if self.count is None:
                self._fh.seek(0)
                self._fh.write(self._header(self.written, self._header_size))
                self.count, self.shape = self.written, (self.written, *self.shape[1:])
            if self.written != self.count:
                raise ValueError(f"{self.path}: {self.written} rows written, {self.count} announced")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except BaseException:
            self._fh.close()
            self.path.unlink(missing_ok=True)
            raise
        self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()
        else:
            self._fh.close()
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class SplitData:
    """Images of one split. ``patients`` are pseudonyms, never raw identifiers. ``images`` is float32
    ``(N, C, *spatial)`` in [0, 1]: an ``ndarray``, or a :class:`DiskArray`/:class:`Rows` read a batch at a time."""

    images: ImageArray
    labels: np.ndarray  # int64 (N,), indices into classes
    patients: np.ndarray  # str (N,), pseudonymous patient IDs
    classes: tuple[str, ...]  # class names, index = label
    sites: np.ndarray | None = None  # str (N,), pseudonymous site IDs; None when labels.csv has no site column

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.classes)}

    def select(self, index: np.ndarray) -> SplitData:
        """Rows ``index`` (an index array or a mask): labels and patients copied, images a view (:class:`Rows`)
        when they are on disk."""
        index = row_index(index, len(self))
        images = self.images[index] if isinstance(self.images, np.ndarray) else Rows([self.images], index)
        sites = None if self.sites is None else self.sites[index]
        return SplitData(images, self.labels[index], self.patients[index], self.classes, sites)


def split_paths(folder: str | Path, split: str) -> tuple[Path, Path]:
    """The images file and the labels file of ``split`` in the processed ``folder``."""
    return Path(folder) / f"{split}_images.npy", Path(folder) / f"{split}.npz"


def save_split(folder: str | Path, split: str, data: SplitData, images_written: bool = False) -> None:
    """Write ``split``'s labels file, and its images file unless ``images_written`` (streamed already by an
    :class:`ArrayWriter` to :func:`split_paths`' path)."""
    images_path, labels_path = split_paths(folder, split)
    if not images_written:
        with ArrayWriter(images_path, data.images.shape, np.float32) as out:
            for _, chunk in batches(data.images, max(1, CHUNK_BYTES // max(data.images[0:1].nbytes, 1))):
                out.append(chunk)
    with open(labels_path, "wb") as fh:
        np.savez(
            fh,
            allow_pickle=False,
            labels=data.labels.astype(np.int64, copy=False),
            patients=data.patients.astype(str),
            classes=np.array(data.classes, dtype=str),
            **({} if data.sites is None else {"sites": data.sites.astype(str)}),
        )


def load_split(processed_dir: str | Path, split: str) -> SplitData:
    """``split`` of the processed folder; its images are a :class:`DiskArray` (read a batch at a time)."""
    images_path, labels_path = split_paths(processed_dir, split)
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the preprocess stage (dvc repro preprocess)")
    with np.load(labels_path) as npz:
        labels, patients, classes = npz["labels"], npz["patients"], tuple(str(c) for c in npz["classes"])
        sites = npz["sites"] if "sites" in npz.files else None
    images = DiskArray(images_path)
    if len(images) != len(labels):
        raise ValueError(f"{images_path}: {len(images)} images, {labels_path}: {len(labels)} labels; re-run preprocess")
    return SplitData(images=images, labels=labels, patients=patients, classes=classes, sites=sites)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON through a temporary file renamed into place (never a half-written file)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to an uncompressed ``.npz`` through a temporary file renamed into place."""
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.savez would add .npz to a name
        np.savez(fh, allow_pickle=False, **arrays)  # plain arrays only: np.load reads them without pickles


def write_csv(path: str | Path, rows: list[dict], fields: list[str] | None = None) -> None:
    """Write ``rows`` as CSV with a header (``fields``, default the first row's keys; other keys are left out,
    missing ones left empty) through a temporary file renamed into place."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(rows[0]), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
