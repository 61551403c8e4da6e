"""PHI markers and the search for them in what medaug writes (used by ``tests/test_privacy.py``).

:class:`Markers` hands out marker values for DICOM attributes and remembers every spelling a writer could give
each of them. :func:`find_markers` searches files for those spellings in a way that finds every real leak and
never reports chance: a spelling that is long and holds letters or separators cannot occur by chance and is
searched everywhere, as raw bytes in UTF-8, UTF-16 and UTF-32; a short or digits-only spelling (a bare ``HHMMSS``
time, a ``YYYYMMDD`` date, an IS number, an age such as ``012Y``) can turn up inside random digits, so it is
searched only where text stands, as a whole token:

- **text** (a file that decodes as UTF-8, a log, a string array of an npz, the strings and numbers of a pickle,
  the text chunks of a PNG, the text fields of a NIfTI header, the text elements of a DICOM file): whole tokens,
  i.e. not glued to a letter, a digit or a decimal point. Two kinds of numbers that every run writes are not
  headers: clock readings of the run itself (a time after a ``20YY-MM-DD`` date: every marker date is in 1901 or
  1902) and DVC's byte counts (``size:`` / ``nfiles:`` in dvc.lock and DVC's ``.dir`` files);
- **UIDs** of DICOM files: whole components (``1.2.3.130546.7`` is found, ``...644130546102`` is a random UID);
- **binary** data (pixel data, numeric arrays, tensor storages, compressed images): only spellings of at least
  8 bytes; the UTF-16 and UTF-32 forms of the short ones are that long.

Containers are opened: zip files (npz, torch checkpoints), gzip files (NIfTI), DICOM files (by content, so DVC's
cache, whose files have no suffix, is searched the same way) and data-URI pictures of an HTML page.
"""

from __future__ import annotations

import base64
import copy
import csv
import gzip
import io
import pickletools
import re
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image, PngImagePlugin
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pipeline.demo_data import write_demo_dataset
from tests.conftest import TINY_DEMO

__all__ = [
    "Markers",
    "Blob",
    "blobs_of",
    "text_blob",
    "find_markers",
    "build_marker_dataset",
    "rewrite_labels",
    "write_marked_images",
]

UID_ROOT = "1.2.826.0.1.3680043.10.999"
ENCODINGS = ("utf-8", "utf-16-le", "utf-32-le")
MIN_BINARY_BYTES = 8  # shorter byte strings turn up by chance in megabytes of pixels and weights
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW"}
# numbers every run writes that are no header value: a clock reading of the run (after a 20YY date) and DVC's counts
NOT_A_HEADER = re.compile(rb"(20\d\d-\d\d-\d\d[T ]|size: |nfiles: |\"size\": |\"nfiles\": )$")


class Markers:
    """Hands out unique marker values fitting a VR and remembers every searchable spelling of each."""

    def __init__(self) -> None:
        self.n = 0
        self.per_vr: dict[str, int] = {}
        self.spellings: dict[str, str] = {}  # text to search for -> which marker it stands for

    def _record(self, marker: str, what: str, *variants: str) -> None:
        label = f"{marker} ({what})"
        for text in (marker, *variants):
            assert text not in self.spellings, f"marker spelling {text} used twice"
            self.spellings[text] = label

    def new(self, vr: str, what: str) -> str:
        self.n += 1
        n, k = self.n, self.per_vr.get(vr, 0)
        self.per_vr[vr] = k + 1
        # dates in 1901 (DA) or 1902 (DT) with day > 12, so day/month and month/day spellings never coincide
        day = date(1901 + (vr == "DT"), 1 + k // 16, 13 + k % 16)
        hh, mm, ss = (21 if vr == "DT" else 13) + k // 60, k % 60, (7 * k + 11) % 60
        frac = f"{424200 + k}"
        if vr == "PN":
            family, given = f"PHIMARK{n:04d}F", f"PHIMARK{n:04d}G"
            self._record(family, f"{what} family name")
            self._record(given, f"{what} given name")
            return f"{family}^{given}"
        if vr == "DA":
            value = day.strftime("%Y%m%d")
            formats = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y")
            self._record(value, what, *(day.strftime(f) for f in formats))
        elif vr == "TM":
            value = f"{hh:02d}{mm:02d}{ss:02d}.{frac}"
            self._record(value, what, f"{hh:02d}:{mm:02d}:{ss:02d}", f"{hh:02d}{mm:02d}{ss:02d}")
        elif vr == "DT":
            value = f"{day:%Y%m%d}{hh:02d}{mm:02d}{ss:02d}.{frac}"
            iso = f"{day:%Y-%m-%d}T{hh:02d}:{mm:02d}:{ss:02d}"
            self._record(value, what, iso, iso.replace("T", " "), f"{day:%Y%m%d}{hh:02d}{mm:02d}{ss:02d}")
        elif vr == "AS":
            value = f"{n % 1000:03d}Y"
            self._record(value, what)
        elif vr == "DS":
            value = f"9{n:04d}.{n:04d}3"
            self._record(value, what)
        elif vr == "IS":
            value = f"9{n:05d}7"
            self._record(value, what)
        elif vr == "UI":
            value = f"{UID_ROOT}.{10000 + n}"
            self._record(value, what)
        elif vr == "UR":
            value = f"http://phimark{n:04d}.example/"
            self._record(f"phimark{n:04d}", what)
        else:  # AE, CS, SH (16 characters at most, CS upper case), LO, LT, ST, UC, UT
            value = f"PHIMARK{n:04d}"
            self._record(value, what)
        return value


KINDS = ("text", "uid", "binary", "container")


@dataclass(frozen=True)
class Blob:
    """Bytes to search, where they come from, and how they are read (:data:`KINDS`): ``text``; ``uid`` (one UID
    a line); ``binary`` (numbers: pixels, arrays, weights); ``container`` (a file whose parts are searched as
    blobs of their own, e.g. a DICOM file holding UIDs or a zip holding string arrays: only the spellings that
    cannot occur by chance are searched in its raw bytes)."""

    where: str
    data: bytes
    kind: str = "binary"

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind


def _chance(spelling: str) -> bool:
    """Whether ``spelling`` could occur by chance among random digits (UIDs, hashes, floats, sizes): digits and
    separators only, or short."""
    return len(spelling) < 10 or re.fullmatch(r"[0-9.:/\- ]+", spelling) is not None


@dataclass(frozen=True)
class _Needle:
    spelling: bytes  # UTF-8
    label: str
    encoded: tuple[bytes, ...]  # UTF-8, UTF-16, UTF-32 forms of at least MIN_BINARY_BYTES bytes
    token: re.Pattern  # the UTF-8 spelling as a whole token of text
    chance: bool


def _needles(markers: Markers) -> list[_Needle]:
    needles = []
    for spelling, label in markers.spellings.items():
        utf8 = spelling.encode()
        encoded = tuple(e for e in (spelling.encode(c) for c in ENCODINGS) if len(e) >= MIN_BINARY_BYTES)
        token = re.compile(rb"(?<![0-9A-Za-z.])" + re.escape(utf8) + rb"(?![0-9A-Za-z]|\.[0-9])")
        needles.append(_Needle(utf8, label, encoded, token, _chance(spelling)))
    return needles


def _found_in(needle: _Needle, blob: Blob) -> bool:
    if blob.kind == "binary" or (blob.kind == "container" and not needle.chance):
        return any(e in blob.data for e in needle.encoded)
    if blob.kind == "uid":  # the spelling as one or more whole components of a UID
        return any(b"." + needle.spelling + b"." in b"." + uid + b"." for uid in blob.data.split(b"\n"))
    if blob.kind == "text":
        if not needle.chance:
            return needle.spelling in blob.data
        return any(
            not NOT_A_HEADER.search(blob.data[max(0, m.start() - 16) : m.start()])
            for m in needle.token.finditer(blob.data)
        )
    return False


def find_markers(blobs: list[Blob], markers: Markers) -> dict[str, set[str]]:
    """{where: markers found there}, empty when no marker is found anywhere."""
    needles = _needles(markers)
    found: dict[str, set[str]] = {}
    for blob in blobs:
        hits = {needle.label for needle in needles if _found_in(needle, blob)}
        if hits:
            found.setdefault(blob.where, set()).update(hits)
    return found


def text_blob(where: str, text: str | bytes) -> Blob:
    """Text such as a log or a command's output."""
    return Blob(where, text.encode("utf-8") if isinstance(text, str) else text, "text")


def blobs_of(path: Path) -> list[Blob]:
    """What to search in the file ``path``: its bytes and, opened by content, what it holds."""
    return _blobs(str(path), path.read_bytes())


def _blobs(where: str, raw: bytes) -> list[Blob]:
    """``raw`` read by its content (a DICOM, PNG, gzip or zip file, UTF-8 text, or else binary numbers)."""
    if raw[128:132] == b"DICM":
        return _dicom_blobs(where, raw)
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        return [Blob(where, raw), *_png_text(where, raw)]
    if raw[:2] == b"\x1f\x8b":
        inner = gzip.decompress(raw)
        return [Blob(where, raw), *_blobs(f"{where} (gunzipped)", inner), *_nifti_text(where, inner)]
    if raw[:4] == b"PK\x03\x04":
        return [Blob(where, raw, "container"), *_zip_blobs(where, raw)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [Blob(where, raw)]
    return _text_blobs(where, text)


def _text_blobs(where: str, text: str) -> list[Blob]:
    """Text; files embedded as base64 data URIs (the report's pictures) are searched as the files they are."""
    uri = r"data:[\w/+.-]+;base64,([A-Za-z0-9+/=]+)"
    blobs = [text_blob(where, re.sub(uri, "data:", text))]
    for k, match in enumerate(re.finditer(uri, text)):
        blobs += _blobs(f"{where} (embedded file {k + 1})", base64.b64decode(match.group(1)))
    return blobs


def _zip_blobs(where: str, raw: bytes) -> list[Blob]:
    """The members of a zip file (npz, torch checkpoint): arrays of strings and pickles as text, the rest by
    content."""
    blobs = []
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        for name in zf.namelist():
            member, inner = zf.read(name), f"{where}:{name}"
            if name.endswith(".npy"):
                array = np.load(io.BytesIO(member), allow_pickle=False)
                if array.dtype.kind in "SU":
                    blobs.append(text_blob(f"{inner} (as text)", "\n".join(array.ravel().astype(str).tolist())))
                else:
                    blobs.append(Blob(inner, member))
            elif name.endswith(".pkl"):
                blobs += [Blob(inner, member, "container"), text_blob(f"{inner} (values)", _pickle_text(member))]
            else:
                blobs += _blobs(inner, member)
    return blobs


def _pickle_text(data: bytes) -> str:
    """Every string and number a pickle holds, one a line (read opcode by opcode: nothing is unpickled)."""
    return "\n".join(
        arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
        for _, arg, _ in pickletools.genops(data)
        if isinstance(arg, str | bytes | int | float)
    )


def _png_text(where: str, raw: bytes) -> list[Blob]:
    with Image.open(io.BytesIO(raw)) as image:
        image.load()
        chunks = "\n".join(f"{k}: {v}" for k, v in image.info.items() if isinstance(v, str | bytes))
    return [text_blob(f"{where} (text chunks)", chunks)] if chunks else []


def _nifti_text(where: str, inner: bytes) -> list[Blob]:
    if len(inner) < 348 or int.from_bytes(inner[:4], "little") != 348:
        return []
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(inner))
    fields = [bytes(header[k].item()) for k in ("descrip", "aux_file", "intent_name", "db_name")]
    return [text_blob(f"{where} (NIfTI header text)", b"\n".join(f.rstrip(b"\0") for f in fields))]


def _dicom_blobs(where: str, raw: bytes) -> list[Blob]:
    """A DICOM file: its bytes (searched for the spellings that cannot occur by chance), the preamble and every
    text element as text, UIDs as UIDs, binary values as binary; sequences and the file meta included."""
    ds = pydicom.dcmread(io.BytesIO(raw), force=True)
    texts, uids, binary = [raw[:128].decode("latin-1")], [], []

    def visit(dataset) -> None:
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    visit(item)
            elif element.VR == "UI":
                values = element.value if element.VM > 1 else [element.value]
                uids.extend(str(v) for v in values if v)
            elif element.VR in BINARY_VRS or element.tag == 0x7FE00010:
                binary.append(element.value if isinstance(element.value, bytes) else b"")
            elif isinstance(element.value, bytes):  # UN and undecoded values
                texts.append(element.value.decode("latin-1"))
            else:
                texts.append(str(element.value))

    visit(ds.file_meta)
    visit(ds)
    return [
        Blob(where, raw, "container"),
        text_blob(f"{where} (text elements)", "\n".join(texts)),
        Blob(f"{where} (UIDs)", "\n".join(uids).encode(), "uid"),
        Blob(f"{where} (binary elements)", b"".join(binary)),
    ]


# --- a dataset whose every DICOM header attribute of PS3.15 holds a marker ----------------------------------------

PROFILE_CSV = Path(__file__).parent / "data" / "ps3_15_basic_profile.csv"
# the tiny demo dataset: DICOM slices and series, and NIfTI volumes (whose patients get a marker ID in labels.csv)
DEMO = TINY_DEMO
# VRs whose value is text a marker can be written into
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
# groups left alone: the command set (0000), the image pixel module (0028: decoding and geometry), digital
# signatures (FFFA) and trailing padding (FFFC)
SKIP_GROUPS = {0x0000, 0x0028, 0xFFFA, 0xFFFC}
FILE_META_GROUP = 0x0002
PER_PATIENT = {0x00100010, 0x00100020, 0x0020000D, 0x0020000E}  # PatientName, PatientID, Study/Series UIDs
PER_FILE = {0x00080018, 0x00020003}  # SOPInstanceUID, MediaStorageSOPInstanceUID (kept equal)


def read_profile() -> list[tuple[int, str, str]]:
    """(tag, keyword, action) rows of the profile CSV, its ``#`` lines skipped."""
    with open(PROFILE_CSV, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    return [(int(r["tag"], 16), r["keyword"], r["action"]) for r in rows]


def fillable_attributes() -> list[tuple[int, str, str]]:
    """(tag, keyword, VR) of the profile attributes that get a marker: text VRs and sequences."""
    kept = []
    for tag, keyword, _ in read_profile():
        vr = dictionary_VR(tag)
        if tag >> 16 not in SKIP_GROUPS and (vr in TEXT_VRS or vr == "SQ"):
            kept.append((tag, keyword, vr))
    return kept


def _set(ds: Dataset, tag: int, vr: str, value) -> None:
    target = ds.file_meta if tag >> 16 == FILE_META_GROUP else ds
    target.add_new(tag, vr, value)


def private_values(markers: Markers) -> dict[int, tuple[str, object]]:
    """Elements of a private creator block (0011,00xx) 'ACME PHI': LO, SH, PN and a sequence holding markers."""
    item = Dataset()
    item.add_new(0x00100020, "LO", markers.new("LO", "PatientID in a private sequence item"))
    item.add_new(0x00100030, "DA", markers.new("DA", "PatientBirthDate in a private sequence item"))
    return {
        0x01: ("LO", markers.new("LO", "private LO")),
        0x02: ("SH", markers.new("SH", "private SH")),
        0x03: ("PN", markers.new("PN", "private PN")),
        0x10: ("SQ", Sequence([item])),
    }


def build_marker_dataset(root: Path) -> tuple[Markers, int]:
    """Write the demo dataset to ``root`` and put a marker into every fillable attribute of every DICOM file
    and into labels.csv's patient_id and site columns; return the markers and the number of attributes filled."""
    write_demo_dataset(root, DEMO)
    markers = Markers()
    attributes = fillable_attributes()
    shared = {
        tag: (vr, markers.new(vr, f"{keyword} ({tag:08X})"))
        for tag, keyword, vr in attributes
        if tag not in PER_PATIENT | PER_FILE
    }
    private = private_values(markers)
    patient_ids = {}
    for case in sorted((root / "dicom").iterdir()):
        per_patient = {
            tag: (vr, markers.new(vr, f"{kw} of {case.name}")) for tag, kw, vr in attributes if tag in PER_PATIENT
        }
        patient_ids[case.name] = per_patient[0x00100020][1]
        for path in sorted(case.glob("*.dcm")):
            ds = pydicom.dcmread(path)
            sop = markers.new("UI", f"SOPInstanceUID of {case.name}/{path.name}")
            values = {**shared, **per_patient, **dict.fromkeys(PER_FILE, ("UI", sop))}
            for tag, (vr, value) in values.items():
                if vr == "SQ":
                    item = Dataset()
                    item.CodeMeaning = value
                    value = Sequence([item])
                _set(ds, tag, vr, value)
            block = ds.private_block(0x0011, "ACME PHI", create=True)
            for offset, (vr, value) in private.items():
                block.add_new(offset, vr, copy.deepcopy(value))
            ds.BurnedInAnnotation = "NO"
            ds.save_as(path, enforce_file_format=True)
    for row in _labels(root):  # NIfTI volumes have no header to mark: their patient ID in labels.csv is one
        case = Path(row["path"]).parts[1]
        patient_ids.setdefault(case, markers.new("LO", f"patient_id of {case}"))
    sites = [markers.new("LO", f"site column value {k}") for k in range(2)]  # two scanners, patients alternating
    cases = sorted(patient_ids)

    def marked(row: dict) -> dict:
        case = Path(row["path"]).parts[1]
        return {**row, "patient_id": patient_ids[case], "site": sites[cases.index(case) % 2]}

    rewrite_labels(root, marked)
    return markers, len(attributes)


def _labels(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def rewrite_labels(root: Path, change) -> None:
    """Rewrite labels.csv, each row through ``change``."""
    rows = [change(row) for row in _labels(root)]
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# --- plain image files whose every metadata block holds a marker ---------------------------------------------------

EXIF_ARTIST, EXIF_IMAGE_DESCRIPTION = 0x013B, 0x010E
TIFF_IMAGE_DESCRIPTION, TIFF_ARTIST, TIFF_XMP = 270, 315, 700


def _exif(markers: Markers, where: str) -> Image.Exif:
    exif = Image.Exif()
    exif[EXIF_ARTIST] = markers.new("PN", f"EXIF Artist of {where}")
    exif[EXIF_IMAGE_DESCRIPTION] = markers.new("LO", f"EXIF ImageDescription of {where}")
    return exif


def _xmp(markers: Markers, where: str) -> bytes:
    creator = markers.new("LO", f"XMP dc:creator of {where}")
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="{creator}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def write_marked_images(folder: Path, markers: Markers, size: int = 16) -> dict[Path, set[str]]:
    """Grey 8-bit images (a gradient) whose every metadata block holds a marker: a PNG with tEXt, zTXt, iTXt and
    eXIf (EXIF) chunks, a JPEG with EXIF, XMP and a comment (COM), a TIFF with ImageDescription, Artist and XMP tags.
    Returns {path: labels of the markers planted in it} (see :class:`Markers`)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.add.outer(np.arange(size), np.arange(size)).astype(np.uint8) * 7
    image = Image.fromarray(pixels)
    planted: dict[Path, set[str]] = {}

    def save(name: str, write) -> None:
        before = set(markers.spellings.values())
        write(folder / name)
        planted[folder / name] = set(markers.spellings.values()) - before

    def png(path: Path) -> None:
        info = PngImagePlugin.PngInfo()
        info.add_text("Author", markers.new("PN", "PNG tEXt Author"))
        info.add_text("Description", markers.new("LO", "PNG zTXt Description"), zip=True)
        info.add_itxt("Comment", markers.new("LT", "PNG iTXt Comment"), lang="en", tkey="Comment", zip=True)
        info.add_itxt("XML:com.adobe.xmp", _xmp(markers, "PNG").decode())
        image.save(path, pnginfo=info, exif=_exif(markers, "PNG"))

    def jpeg(path: Path) -> None:
        comment = markers.new("LT", "JPEG comment (COM)")
        image.save(path, exif=_exif(markers, "JPEG"), xmp=_xmp(markers, "JPEG"), comment=comment, quality=95)

    def tiff(path: Path) -> None:
        tags = {
            TIFF_IMAGE_DESCRIPTION: markers.new("LO", "TIFF ImageDescription"),
            TIFF_ARTIST: markers.new("PN", "TIFF Artist"),
            TIFF_XMP: _xmp(markers, "TIFF"),
        }
        image.save(path, tiffinfo=tags)

    save("marked.png", png)
    save("marked.jpg", jpeg)
    save("marked.tif", tiff)
    return planted
