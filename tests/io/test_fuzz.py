"""Bad input never crashes with a traceback: mutated DICOM bytes and headers, mutated NIfTI headers, mutated
image files (PNG, JPEG, GIF, TIFF, BMP) and mutated labels.csv rows go into the reader, the manifest and
``medaug check-data``. Every case ends in success or in one of medaug's named errors (:mod:`pipeline.io.errors`),
within a bounded time, and images whose header declares more than the memory limit are refused before anything is
decoded.

The profile is fixed for CI: derandomized (the same cases on every run), no example database, a deadline
per case and a hard timeout (SIGALRM) that turns a hang into a failure. Each crash the fuzzer found is
kept as an ``@example`` (or a plain test) next to the strategy that found it.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import signal
import struct
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from monai.data import NibabelReader
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from pipeline.cli import check_data, main
from pipeline.demo_data import write_ct_slice
from pipeline.io import reader as reader_module
from pipeline.io.errors import (
    ImageTooLargeError,
    ManifestError,
    MedaugInputError,
    UnreadableImageError,
    UnsupportedGeometryError,
)
from pipeline.io.manifest import check_manifest, read_manifest
from pipeline.io.reader import MAX_IMAGE_BYTES, load_image

# corrupt input makes pydicom, nibabel and numpy warn (truncated elements, invalid values, overflowing casts)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::RuntimeWarning")]
# hypothesis caches what it learns of the source (not examples: database=None) under .hypothesis/ in the
# working directory; keep the repository clean
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "medaug-hypothesis")
HARD_TIMEOUT_S = 20  # a case still running after this is a hang
FUZZ = settings(
    derandomize=True,  # the same cases on every run, so CI is reproducible
    database=None,  # nothing written into the repository
    deadline=timedelta(seconds=5),  # each case takes milliseconds; 5 s leaves room on a busy 2-core machine
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
ABSURD = (0, 1, 2, 3, 255, 256, 32767, 32768, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1)
GARBAGE_TEXT = (
    "",
    "abc",
    "1\\2",
    "nan",
    "inf",
    "-0",
    "1e308",
    "0\\0\\0\\0\\0\\0",
    "1e200\\1e200",
    "1e-300\\1e-300",
    "1\\0\\0\\1\\1e-12\\0",
    "1e300\\0\\0\\0\\1e300\\0",
    "YES",
    "é中\u2028",
    "1\\2\\3\\4\\5\\6\\7",
)


@contextlib.contextmanager
def _within(seconds: float):
    """Fail a case that runs longer than ``seconds`` (hypothesis's deadline only judges cases that return)."""

    def hang(*_):
        raise TimeoutError(f"a case ran for more than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _load_or_named_error(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """Outcome of ``load_image``: "ok" or the named error's class; any other exception fails the test."""
    with _within(HARD_TIMEOUT_S):
        try:
            image = load_image(path, max_bytes)
        except MedaugInputError as err:
            assert str(path.name) in str(err) or str(path) in str(err), f"message does not name the file: {err}"
            event(type(err).__name__)  # the mix of outcomes: pytest --hypothesis-show-statistics
            return type(err).__name__
    assert image.array.dtype == np.float32 and np.isfinite(image.array).all()
    assert image.array.ndim - 1 == len(image.spacing) in (2, 3)
    event("read")
    return "ok"


# --- DICOM ------------------------------------------------------------------------------------------------


def _ct_bytes(frames: int = 1) -> bytes:
    """A small valid CT slice (8 x 8, uint16 with a HU rescale) as written by the demo, ``frames`` frames."""
    uids = {"study": "1.2.826.0.1.1", "series": "1.2.826.0.1.2", "sop": "1.2.826.0.1.3"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ct.dcm"
        write_ct_slice(path, np.arange(64.0).reshape(8, 8) * 10 - 500, {"PatientID": "FUZZ"}, uids, 0)
        data = path.read_bytes()
    if frames == 1:
        return data
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.NumberOfFrames, ds.PixelData = frames, ds.PixelData * frames
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


# Starting points: the demo's uncompressed slice (single- and multi-frame) and pydicom's small test files in
# the compressed transfer syntaxes medaug decodes (RLE, JPEG 2000, JPEG-LS, JPEG baseline, RGB RLE).
DICOM_BASES = {
    "ct": _ct_bytes(),
    "ct_3_frames": _ct_bytes(3),
    **{
        name: Path(get_testdata_file(name)).read_bytes()
        for name in (
            "MR_small_RLE.dcm",
            "MR_small_jp2klossless.dcm",
            "MR_small_jpeg_ls_lossless.dcm",
            "JPEG-lossy.dcm",
            "SC_rgb_rle.dcm",
        )
    },
}

# A mutation is a tuple: ("flip", offset, bit), ("cut", offset), ("insert", offset, bytes),
# ("u32", offset, value) for a tag length (or anything 4 bytes wide), ("u16", offset, value).
# Offsets are taken modulo the length; the 128-byte preamble is skipped (pydicom ignores it).
_offset = st.integers(0, 2**16)
BYTE_MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), _offset, st.integers(0, 7)),
        st.tuples(st.just("cut"), _offset),
        st.tuples(st.just("insert"), _offset, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("u32"), _offset, st.sampled_from((0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 2**20, 12345677))),
        st.tuples(st.just("u16"), _offset, st.sampled_from((0, 1, 0x7FFF, 0x8000, 0xFFFF))),
    ),
    min_size=1,
    max_size=4,
)


def _element_offset(base: str, group: int, element: int) -> int:
    """Where a data element's tag starts in ``DICOM_BASES[base]``, as :func:`_mutate` counts offsets."""
    return DICOM_BASES[base].index(struct.pack("<HH", group, element)) - 128


def _mutate(data: bytes, mutations: list[tuple], skip: int = 128) -> bytes:
    """``data`` with ``mutations`` applied after its first ``skip`` bytes (DICOM's preamble, which pydicom ignores)."""
    out = bytearray(data)
    for kind, offset, *args in mutations:
        at = skip + offset % max(1, len(out) - skip)
        if kind == "flip" and at < len(out):
            out[at] ^= 1 << args[0]
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = args[0]
        elif kind in ("u32", "u16"):
            packed = struct.pack("<I" if kind == "u32" else "<H", args[0])
            out[at : at + len(packed)] = packed
    return bytes(out)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One folder for the whole module: each case overwrites its file (hypothesis runs cases one by one)."""
    return tmp_path_factory.mktemp("fuzz")


@settings(FUZZ, max_examples=600)
@given(base=st.sampled_from(sorted(DICOM_BASES)), mutations=BYTE_MUTATIONS)
# found: a corrupt RLE segment makes pylibjpeg-rle's Rust decoder panic (pyo3 PanicException, a BaseException)
@example(base="MR_small_RLE.dcm", mutations=[("u32", 1512, 12345677)])
# found: a flipped bit in a VR pydicom does not know, raised (NotImplementedError) when the reader first reads
# the element: SOPClassUID, Modality, PatientID
@example(base="ct", mutations=[("u16", _element_offset("ct", 0x0008, 0x0016) + 5, 0)])  # VR and length
@example(base="ct", mutations=[("flip", _element_offset("ct", 0x0008, 0x0060) + 4, 0)])  # VR "CS" -> "BS"
@example(base="ct", mutations=[("flip", _element_offset("ct", 0x0010, 0x0020) + 4, 0)])  # VR "LO" -> "MO"
# found: a flipped bit turns ImageType (0008,0008) into NumberOfFrames (0028,0008) with three values
@example(base="ct", mutations=[("flip", _element_offset("ct", 0x0008, 0x0008), 5)])
def test_mutated_dicom_bytes(scratch, base, mutations):
    path = scratch / "mutated.dcm"
    path.write_bytes(_mutate(DICOM_BASES[base], mutations))
    _load_or_named_error(path)


# Header attributes set to absurd values: the image size fields (each to a number pydicom can store) and the
# geometry/text fields the reader interprets, written raw (any bytes, under their own VR or as LO).
SIZE_FIELDS = ("Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "SamplesPerPixel")
TEXT_FIELDS = (
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "SliceThickness",
    "SpacingBetweenSlices",
    "InstanceNumber",
    "PhotometricInterpretation",
    "Modality",
    "BurnedInAnnotation",
)
HEADER_EDITS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(SIZE_FIELDS), st.sampled_from(ABSURD)),
        st.tuples(st.sampled_from(TEXT_FIELDS), st.sampled_from(GARBAGE_TEXT), st.booleans()),
        st.tuples(st.just("delete"), st.sampled_from(SIZE_FIELDS + TEXT_FIELDS)),
    ),
    min_size=1,
    max_size=4,
)


def _edit_header(data: bytes, edits: list[tuple]) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value, *raw_vr in edits:
        if keyword == "delete":
            if value in ds:
                delattr(ds, value)
            continue
        tag = Tag(tag_for_keyword(keyword))
        if isinstance(value, int):  # NumberOfFrames is IS (text), the others US (16 bits)
            setattr(ds, keyword, str(value) if keyword == "NumberOfFrames" else value & 0xFFFF)
            continue
        raw = value.encode() + b" " * (len(value.encode()) % 2)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag) if raw_vr[0] else "LO", len(raw), raw, 0, False, True)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@settings(FUZZ, max_examples=400)
@given(base=st.sampled_from(sorted(DICOM_BASES)), edits=HEADER_EDITS, mutations=st.one_of(st.just([]), BYTE_MUTATIONS))
# found: ImageOrientationPatient with one value (TypeError: no len()) and with text (ValueError)
@example(base="ct", edits=[("ImageOrientationPatient", "-0", True)], mutations=[])
@example(base="ct", edits=[("ImagePositionPatient", "abc", False)], mutations=[])
# found: empty or text InstanceNumber without geometry (float('') / float(None))
@example(base="ct", edits=[("delete", "ImageOrientationPatient"), ("InstanceNumber", "", True)], mutations=[])
@example(base="ct", edits=[("delete", "ImagePositionPatient"), ("InstanceNumber", "inf", True)], mutations=[])
# found: PixelSpacing with text or one value when the geometry tags are missing
@example(base="ct", edits=[("delete", "ImageOrientationPatient"), ("PixelSpacing", "abc", False)], mutations=[])
@example(
    base="ct", edits=[("delete", "ImagePositionPatient"), ("PixelSpacing", "1\\2\\3\\4\\5\\6\\7", True)], mutations=[]
)
# found: NumberOfFrames that is not a number (int() ValueError)
@example(base="ct_3_frames", edits=[("NumberOfFrames", "abc", False)], mutations=[])
# found: zero pixel spacing and all-zero orientation: a singular affine that MONAI's Orientation cannot use
@example(base="ct", edits=[("PixelSpacing", "0\\0\\0\\0\\0\\0", True)], mutations=[])
@example(base="ct", edits=[("ImageOrientationPatient", "0\\0\\0\\0\\0\\0", True)], mutations=[])
# found: pixel spacing or orientation of 1e200 or more: the affine's column norms overflow in Orientation
@example(base="ct", edits=[("PixelSpacing", "1e200\\1e200", True)], mutations=[])
@example(base="ct", edits=[("ImageOrientationPatient", "1e300\\0\\0\\0\\1e300\\0", True)], mutations=[])
# guard: frames x rows x columns far beyond the memory limit, refused before decoding
@example(base="ct", edits=[("Rows", 65535), ("Columns", 65535), ("NumberOfFrames", 2**31 - 1)], mutations=[])
def test_dicom_headers_with_absurd_values(scratch, base, edits, mutations):
    path = scratch / "edited.dcm"
    path.write_bytes(_mutate(_edit_header(DICOM_BASES[base], edits), mutations))
    _load_or_named_error(path)


SERIES_SLICES = st.lists(
    st.tuples(st.sampled_from(("ct", "ct", "ct_3_frames")), st.one_of(st.just([]), HEADER_EDITS)),
    min_size=2,
    max_size=3,
)


@settings(FUZZ, max_examples=100)
@given(slices=SERIES_SLICES)
# found: Rows missing from one slice (TypeError sorting None with ints)
@example(slices=[("ct", [("delete", "Rows")]), ("ct", [])])
# found: slices alike in Rows/Columns but not in NumberOfFrames (ValueError from np.stack)
@example(slices=[("ct", []), ("ct_3_frames", [])])
def test_series_folder_with_damaged_slices(scratch, slices):
    series = scratch / "series"
    series.mkdir(exist_ok=True)
    for old in series.iterdir():
        old.unlink()
    for k, (base, edits) in enumerate(slices):
        (series / f"slice_{k}.dcm").write_bytes(_edit_header(DICOM_BASES[base], edits) if edits else DICOM_BASES[base])
    _load_or_named_error(series)


def test_multi_valued_rows_in_a_series_is_a_named_error(scratch):
    """found: Rows written with two values made the set of slice shapes unhashable (TypeError)."""
    series = scratch / "two_rows"
    series.mkdir()
    (series / "a.dcm").write_bytes(_edit_header(DICOM_BASES["ct"], [("Rows", "8\\8", False)]))
    (series / "b.dcm").write_bytes(DICOM_BASES["ct"])
    with pytest.raises(UnreadableImageError, match="Rows"):
        load_image(series)


# --- image files ---------------------------------------------------------------------------------------------


def _image_bytes(fmt: str, mode: str) -> bytes:
    """A small valid image file (16 x 12 pixels of a gradient) in ``fmt``, Pillow mode ``mode``."""
    gradient = np.add.outer(np.arange(12), np.arange(16) * 4).astype(np.uint8) * 3
    image = Image.fromarray(np.dstack([gradient, gradient[::-1], 255 - gradient])).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# (suffix, bytes): grey, colour and palette PNG, 16-bit grey and RGBA PNG, grey and colour JPEG, GIF, TIFF and BMP
IMAGE_BASES = {
    "grey.png": _image_bytes("PNG", "L"),
    "rgb.png": _image_bytes("PNG", "RGB"),
    "palette.png": _image_bytes("PNG", "P"),
    "rgba.png": _image_bytes("PNG", "RGBA"),
    "grey16.png": _image_bytes("PNG", "I;16"),
    "grey.jpg": _image_bytes("JPEG", "L"),
    "rgb.jpg": _image_bytes("JPEG", "RGB"),
    "palette.gif": _image_bytes("GIF", "P"),
    "rgb.tif": _image_bytes("TIFF", "RGB"),
    "rgb.bmp": _image_bytes("BMP", "RGB"),
}


@settings(FUZZ, max_examples=200)
@given(base=st.sampled_from(sorted(IMAGE_BASES)), mutations=BYTE_MUTATIONS, suffixed=st.booleans())
# found: reading a GIF's palette for the channel count loaded (decoded) the pixels before the size check
@example(base="palette.gif", mutations=[("cut", 120)], suffixed=False)
# found: a TIFF of 16 x 8388620 pixels whose one strip covers 16 x 12 (Pillow fills the rest): refused by size
@example(base="rgb.tif", mutations=[("u16", 5043, 0x8000), ("u16", 65535, 1), ("u32", 3499, 0xFFFFFFF0)], suffixed=True)
def test_mutated_image_bytes(scratch, base, mutations, suffixed):
    """Whatever the bytes, by suffix or by content (no suffix), an image file reads or raises a named error. The
    limit is 16 MiB: a mutated size field makes images of a billion pixels that Pillow reads as valid (a TIFF whose
    strips cover a corner), which the default limit lets through at seconds a case."""
    path = scratch / (f"mutated_{base}" if suffixed else "mutated_image")
    path.write_bytes(_mutate(IMAGE_BASES[base], mutations, skip=0))
    _load_or_named_error(path, max_bytes=16 * 2**20)


# --- NIfTI ------------------------------------------------------------------------------------------------


def _nifti_bytes() -> bytes:
    """A small valid 3D NIfTI-1 file (int16, 4 x 5 x 3, 1 x 1 x 2 mm), uncompressed."""
    image = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(4, 5, 3), np.diag([1.0, 1.0, 2.0, 1.0]))
    return image.to_bytes()


NIFTI_BASE = _nifti_bytes()
# Absurd dims stay either tiny or far beyond the memory limit: a .nii.gz declaring, say, 1.5 GiB is legal,
# below the limit, and nibabel allocates it before finding the data short (seconds per case).
DIMS = (-1, 0, 1, 2, 7, 8, 9, 32767, -32768)
HEADER_FIELDS = st.one_of(
    st.tuples(st.just("dim"), st.integers(0, 7), st.sampled_from(DIMS)),
    st.tuples(st.just("datatype"), st.sampled_from((0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1536, 2304, 999))),
    st.tuples(st.just("bitpix"), st.sampled_from((0, 1, 7, 8, 16, 999, -1))),
    st.tuples(st.just("vox_offset"), st.sampled_from((0.0, 1.0, 351.0, 353.0, 1e9, -1.0, float("nan"), float("inf")))),
    st.tuples(st.sampled_from(("scl_slope", "scl_inter")), st.sampled_from((0.0, float("nan"), float("inf"), 1e38))),
    st.tuples(st.just("pixdim"), st.integers(0, 7), st.sampled_from((0.0, -1.0, float("nan"), float("inf"), 1e38))),
    st.tuples(st.sampled_from(("qform_code", "sform_code")), st.sampled_from((0, 1, 2, 5, -1, 32767))),
    st.tuples(st.just("srow_x"), st.integers(0, 3), st.sampled_from((0.0, float("nan"), 1e38))),
    st.tuples(st.just("magic"), st.sampled_from((b"ni1", b"xx1", b""))),
    st.tuples(st.just("sizeof_hdr"), st.sampled_from((0, 540, 1 << 24))),
)


def _edit_nifti(edits: list[tuple]) -> bytes:
    """NIFTI_BASE with header fields overwritten in the raw 348-byte header (no validation on the way)."""
    header = np.frombuffer(NIFTI_BASE[:348], dtype=nib.nifti1.header_dtype).copy()
    with np.errstate(all="ignore"):
        for field, *args in edits:
            if len(args) == 2:
                header[field][0][args[0]] = args[1]
            else:
                header[field] = args[0]
    return header.tobytes() + NIFTI_BASE[348:]


@settings(FUZZ, max_examples=500)
@given(
    edits=st.lists(HEADER_FIELDS, min_size=1, max_size=4),
    compressed=st.booleans(),
    mutations=st.one_of(st.just([]), BYTE_MUTATIONS),
)
# found: a NaN pixdim or a zero srow gives a NaN or singular affine (LinAlgError, ValueError in reorientation)
@example(edits=[("pixdim", 1, float("nan")), ("qform_code", 0), ("sform_code", 0)], compressed=False, mutations=[])
@example(edits=[("srow_x", 0, 0.0), ("qform_code", 0), ("sform_code", 1)], compressed=False, mutations=[])
# found: RGB voxels cannot be cast to float32 (TypeError)
@example(edits=[("datatype", 128), ("bitpix", 24), ("dim", 3, 2)], compressed=False, mutations=[])
# guard: 32767^3 voxels declared in a 500-byte file, refused before nibabel allocates them
@example(edits=[("dim", 1, 32767), ("dim", 2, 32767), ("dim", 3, 32767)], compressed=True, mutations=[])
def test_mutated_nifti_headers(scratch, edits, compressed, mutations):
    data = _mutate(_edit_nifti(edits), mutations) if mutations else _edit_nifti(edits)
    path = scratch / ("mutated.nii.gz" if compressed else "mutated.nii")
    path.write_bytes(gzip.compress(data, mtime=0) if compressed else data)
    _load_or_named_error(path)


# --- memory guard --------------------------------------------------------------------------------------------


def _forbid(monkeypatch):
    """Make every pixel decoder fail the test if it is reached."""

    def decoded(*_args, **_kwargs):
        raise AssertionError("pixels were decoded: the size guard must refuse from the header alone")

    monkeypatch.setattr(reader_module, "_decode", decoded)
    monkeypatch.setattr(NibabelReader, "get_data", decoded)


@pytest.mark.parametrize(
    "name, size_gib",
    [
        ("huge.dcm", 65535 * 65535 * 1000 * 4 / 2**30),  # 65535 x 65535 x 1000 frames, a 1 kB file
        ("huge.nii.gz", 32767 * 32767 * 32767 * 4 / 2**30),  # 32767^3 voxels in the header of an empty volume
        ("huge.nii", 20000 * 20000 * 2 * 4 / 2**30),  # 3 GiB as float32, just above the limit
    ],
    ids=["dicom", "nifti_gz", "nifti"],
)
def test_declared_size_beyond_the_limit_is_refused_before_decoding(scratch, monkeypatch, name, size_gib):
    path = scratch / name
    if name.endswith(".dcm"):
        edits = [("Rows", 65535), ("Columns", 65535), ("NumberOfFrames", 1000)]
        path.write_bytes(_edit_header(DICOM_BASES["ct"], edits))
    else:
        dims = (32767, 32767, 32767) if name.endswith(".gz") else (20000, 20000, 2)
        data = _edit_nifti([("dim", k + 1, n) for k, n in enumerate(dims)])
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    _forbid(monkeypatch)
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=rf"{path.name}: the header declares .* {size_gib:.1f} GiB") as err:
        load_image(path)
    assert time.perf_counter() - started < 2.0
    assert f"limit of {MAX_IMAGE_BYTES / 2**30:.1f} GiB" in str(err.value)


def test_the_limit_applies_to_valid_images_and_series(scratch, monkeypatch):
    """A real 8 x 8 x 3-frame image (768 bytes as float32) passes the default limit, not a 512-byte one."""
    path = scratch / "frames.dcm"
    path.write_bytes(DICOM_BASES["ct_3_frames"])
    assert load_image(path).array.shape == (1, 8, 8, 3)
    _forbid(monkeypatch)
    with pytest.raises(ImageTooLargeError, match="8 x 8 x 3 voxels"):
        load_image(path, max_bytes=512)


def test_sagittal_single_slice_is_a_named_error(scratch):
    """found: a valid sagittal (or coronal) single slice crashed MONAI's Orientation: its in-plane axes do not
    project onto the axial plane. medaug orients single slices in the axial plane only, and says so."""
    path = scratch / "sagittal.dcm"
    path.write_bytes(_edit_header(DICOM_BASES["ct"], [("ImageOrientationPatient", "0\\1\\0\\0\\0\\-1", True)]))
    with pytest.raises(UnsupportedGeometryError, match="outside the axial plane"):
        load_image(path)


def test_named_pipe_is_refused_without_blocking(scratch):
    """A row naming a FIFO would block the reader forever on open; it is refused as not a regular file."""
    import os

    fifo = scratch / "pipe.dcm"
    os.mkfifo(fifo)
    with _within(5), pytest.raises(UnreadableImageError, match="not a regular file"):
        load_image(fifo)
    nifti_fifo = scratch / "pipe.nii"
    os.mkfifo(nifti_fifo)
    with _within(5), pytest.raises(UnreadableImageError, match="not a regular file"):
        load_image(nifti_fifo)


# --- labels.csv and check-data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A dataset folder with good, corrupt, huge-declared and odd entries; each case rewrites labels.csv."""
    root = tmp_path_factory.mktemp("fuzz_dataset")
    (root / "good.dcm").write_bytes(DICOM_BASES["ct"])
    (root / "frames.dcm").write_bytes(DICOM_BASES["ct_3_frames"])
    (root / "good.nii").write_bytes(NIFTI_BASE)
    (root / "corrupt.dcm").write_bytes(DICOM_BASES["ct"][:300])
    huge = [("Rows", 65535), ("Columns", 65535), ("NumberOfFrames", 100000)]
    (root / "huge.dcm").write_bytes(_edit_header(DICOM_BASES["ct"], huge))
    (root / "series").mkdir()
    for k in range(2):
        (root / "series" / f"{k}.dcm").write_bytes(DICOM_BASES["ct"])
    (root / "empty_dir").mkdir()
    (root / "loop").symlink_to("loop")  # a symlink loop
    (root / "out.dcm").symlink_to(root.parent)  # a symlink leaving the dataset
    (root / "é中 ü.dcm").write_bytes(DICOM_BASES["ct"])
    return root


PATHS = st.one_of(
    st.sampled_from(
        (
            "good.dcm",
            "frames.dcm",
            "good.nii",
            "corrupt.dcm",
            "huge.dcm",
            "series",
            "empty_dir",
            "loop",
            "out.dcm",
            "é中 ü.dcm",
            "./good.dcm",
            "series/../good.dcm",
            "../good.dcm",
            "../../etc/passwd",
            "/etc/passwd",
            "C:\\data\\x.dcm",
            "",
            " ",
            ".",
            "missing.dcm",
            "x\x00y.dcm",
            "a" * 300,
            "~/good.dcm",
            "labels.csv",
        )
    ),
    st.text(max_size=20),
)
LABELS = st.one_of(
    st.sampled_from(("normal", "nodule", "", " ", "NORMAL", "unknown", "é中\u2028x")), st.text(max_size=8)
)
SPLITS = st.sampled_from(("train", "val", "test", "", "TEST", "holdout"))
HEADERS = st.sampled_from(
    (
        "path,label,patient_id",
        "path,label,patient_id,split",
        "path,label",
        "\ufeffpath,label,patient_id",
        "file,label",
        "",
    )
)
ROWS = st.lists(
    st.tuples(PATHS, LABELS, st.text(max_size=8), SPLITS, st.lists(st.text(max_size=4), max_size=2)), max_size=6
)


def _write_labels(root: Path, header: str, rows: list[tuple], quoted: bool, tail: str) -> None:
    columns = header.lstrip("\ufeff").split(",") if header else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    buffer.write(header + "\n")
    for path, label, patient, split, extra in rows:
        values = {"path": path, "file": path, "label": label, "patient_id": patient, "split": split}
        fields = [values.get(c, "") for c in columns] + extra
        if quoted:
            writer.writerow(fields)
        else:  # as a careless export writes them: commas, quotes and newlines in values break the row
            buffer.write(",".join(fields) + "\n")
    (root / "labels.csv").write_text(buffer.getvalue() + tail, encoding="utf-8", errors="surrogatepass")


@settings(FUZZ, max_examples=300)
@given(
    header=HEADERS,
    rows=ROWS,
    quoted=st.booleans(),
    tail=st.sampled_from(("", "\n\n", "\x00", "a,b,c,d,e,f\n", '"unclosed,normal\n', "\r\n")),
)
# found: a row with more fields than the header (DictReader's None key holds a list: AttributeError on strip)
@example(header="path,label", rows=[("good.dcm", "normal", "", "", ["extra"])], quoted=True, tail="")
# found: a NUL byte, a symlink loop, a name too long (ValueError, RuntimeError, OSError from pathlib)
@example(header="path,label", rows=[("x\x00y.dcm", "normal", "", "", [])], quoted=True, tail="")
@example(header="path,label", rows=[("loop", "normal", "", "", [])], quoted=True, tail="")
@example(header="path,label", rows=[("a" * 300, "normal", "", "", [])], quoted=True, tail="")
def test_mutated_manifest_rows(dataset, header, rows, quoted, tail):
    _write_labels(dataset, header, rows, quoted, tail)
    with _within(HARD_TIMEOUT_S):
        try:
            found, problems = check_manifest(dataset)
        except MedaugInputError:
            found, problems = [], ["refused as a whole"]
        event("usable rows" if found else "no usable row")
        event("problems reported" if problems else "no problem")
        for row in found:  # nothing listed may lead outside the dataset, whatever the path says
            assert row.path.is_relative_to(dataset.resolve()) and row.label and row.relpath
        with contextlib.suppress(MedaugInputError):
            assert read_manifest(dataset) == found and not problems
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with contextlib.suppress(MedaugInputError):
                reported = check_data(dataset)
                assert isinstance(reported, list) and all(isinstance(p, str) for p in reported)
            assert main(["check-data", str(dataset)]) in (0, 1)


def test_line_separators_inside_a_value_stay_in_it(dataset):
    """found: str.splitlines cut a row at U+2028 or U+0085 inside a label, silently truncating the label."""
    (dataset / "labels.csv").write_text("path,label\ngood.dcm,nor\u2028mal\ngood.nii,nod\x85ule\n", encoding="utf-8")
    rows, problems = check_manifest(dataset)
    assert not problems and [(r.label, r.line) for r in rows] == [("nor\u2028mal", 2), ("nod\x85ule", 3)]


def test_line_numbers_count_blank_lines(dataset):
    """Problems name the line of labels.csv as an editor shows it, blank lines included."""
    (dataset / "labels.csv").write_text("path,label\n\ngood.dcm,normal\n\nmissing.dcm,normal\n", encoding="utf-8")
    rows, problems = check_manifest(dataset)
    assert [r.line for r in rows] == [3] and problems == [
        f"labels.csv line 5: file 'missing.dcm' does not exist in {dataset}; fix the path or delete the row"
    ]


def test_field_beyond_the_csv_size_limit_is_a_manifest_error(dataset):
    """found: an unclosed quote followed by 128 kB of text made the csv module raise _csv.Error."""
    (dataset / "labels.csv").write_text('path,label\n"good.dcm,normal\n' + "x" * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="not a readable CSV file"):
        check_manifest(dataset)
