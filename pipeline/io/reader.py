"""One reader for DICOM files, DICOM series folders, NIfTI files and plain image files (PNG, JPEG, TIFF, BMP, GIF).

Contract: :func:`load_image` returns a :class:`LoadedImage` whose ``array`` is float32 of shape
``(C, X, Y)`` for 2D images or ``(C, X, Y, Z)`` for volumes, in MONAI's axis convention (first spatial axis =
DICOM columns, an image file's width), reoriented to LPS axes (x to the patient's left, y to posterior, z to
superior: DICOM's own frame, so the usual axial view is ``array[0, :, :, k].T``) so that DICOM and NIfTI files of
the same scan give the same array, with intensities in physical units where the file defines them (Hounsfield
units for CT after RescaleSlope/Intercept). ``spacing`` has one entry per spatial axis in mm; ``modality`` is the
DICOM Modality or ``None`` when the file does not say.

Channels, whatever the format: C = 1 (grey) or C = 3 (colour, in RGB order). Colour DICOM (RGB, YBR_FULL,
YBR_FULL_422 and JPEG 2000's YBR_RCT/ICT, converted by pydicom; PALETTE COLOR, its lookup table applied; planar
configuration 0 or 1; multi-frame, frames on the last spatial axis as for grey), RGB NIfTI (RGB24/RGBA32 voxels, or
a vector intent with 3 components in the 5th dimension) and colour image files give C = 3; everything else C = 1.
Colour values stay in stored units (0..255 for 8-bit samples): ``max_value`` is the largest value the stored
samples can take (2**BitsStored - 1 for colour DICOM, the lookup table's range for palette colour, 255 or 65535
for image files and integer RGB NIfTI) and ``None`` where intensities are physical units or floats (grey DICOM,
float NIfTI, 32-bit integer and float image files): scale a photograph by ``max_value``, window a scan. Alpha:
a fully opaque alpha channel is dropped, any transparent pixel refuses the image; CMYK, more than 3 channels and
several frames in one image file are refused (see :mod:`pipeline.io.images`). ``source`` says which kind of file
it came from: ``"dicom"``, ``"nifti"`` or ``"image"``. An image file has no geometry: 1 mm pixels, DICOM's own axes
(as a DICOM without orientation tags), no modality, no patient; only its pixels are read (no text chunk, EXIF,
XMP, ICC profile or comment).

Files are recognised by content first: a folder is a DICOM series, a ``.nii``/``.nii.gz`` name is NIfTI, a file
pydicom sees as DICOM is DICOM, a file with an image suffix or whose content Pillow recognises is an image file,
and anything else is read as DICOM (whose error then says so).

``patient_id`` is the DICOM PatientID, for grouping images by patient when the dataset gives no
patient column; callers pseudonymise it at once and never write it. ``burned_in_annotation`` says the header
flags text burned into the pixels (BurnedInAnnotation YES). No other header field is returned.

Files are untrusted: whatever their bytes, :func:`load_image` returns or raises one of the named errors of
:mod:`pipeline.io.errors` (never another exception), and an image whose header declares more than
``max_bytes`` (as the float32 array returned, channels counted) is refused before any pixel is read. The header
checks name the attribute, never its value: a damaged header can shift a patient's name into any field.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import torch
from monai.data import MetaTensor, NibabelReader, PydicomReader
from monai.data.utils import affine_to_spacing, to_affine_nd
from monai.transforms import Orientation
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, get_decoder

from pipeline.io.errors import (
    ImageTooLargeError,
    MedaugInputError,
    NonImageDicomError,
    UnreadableImageError,
    UnsupportedColourError,
    UnsupportedGeometryError,
    UnsupportedTransferSyntaxError,
)
from pipeline.io.images import TRANSPARENT, is_image_file, looks_like_image, open_image, output_channels, pixels_of

__all__ = [
    "MAX_IMAGE_BYTES",
    "GeometryPydicomReader",
    "LoadedImage",
    "file_kind",
    "is_nifti",
    "load_image",
    "load_dicom",
    "load_image_file",
    "load_nifti",
    "slice_position",
]

logger = logging.getLogger(__name__)

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# The geometry tags MONAI keeps with prune_metadata: orientation, position, pixel spacing (and their
# multi-frame functional-group twins). Nothing else of the header is ever converted.
_GEOMETRY_TAGS = ("00200037", "00200032", "00280030", "52009229", "52009230")
_SWAP_IJ = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
# Largest image load_image accepts, as the float32 array it returns (decoding needs a few times this at its peak).
# 2 GiB is 512**2 x 2048 voxels, more than any CT series; larger declarations come from damaged headers.
MAX_IMAGE_BYTES = 2 * 1024**3
# Numeric header attributes the reader interprets: how many numbers each holds, and of what kind. Absent or
# empty attributes are allowed (PixelSpacing and the others fall back to defaults).
_NUMERIC_ATTRIBUTES = {
    "Rows": (1, "positive integer"),
    "Columns": (1, "positive integer"),
    "NumberOfFrames": (1, "positive integer"),
    "SamplesPerPixel": (1, "positive integer"),
    "InstanceNumber": (1, "integer"),
    "PixelSpacing": (2, "positive"),
    "SliceThickness": (1, "number"),
    "SpacingBetweenSlices": (1, "number"),
    "ImageOrientationPatient": (6, "number"),
    "ImagePositionPatient": (3, "number"),
}
_VOXEL_MM = (1e-6, 1e6)  # voxel sizes outside this range (a nanometre to a kilometre) come from damaged headers
_MIN_ANGLE = 1e-3  # radians: voxel axes (or a 2D slice and the axial plane) closer than this count as parallel
_SHAPE_ATTRIBUTES = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel")  # must agree between a series' slices
_TEXT_ATTRIBUTES = ("SOPClassUID", "Modality", "PatientID", "PhotometricInterpretation", "BurnedInAnnotation")
# Colour DICOM with 3 samples a pixel that pydicom decodes to RGB (JPEG 2000 undoes YBR_RCT/ICT itself)
_RGB_DICOM = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")
_PALETTE = "PALETTE COLOR"
_NIFTI_RGB = (("R", "G", "B"), ("R", "G", "B", "A"))  # nibabel's RGB24 and RGBA32 voxel types
_NIFTI_VECTOR = 1007  # NIfTI intent code "vector": the 5th dimension holds a vector's components


class GeometryPydicomReader(PydicomReader):
    """MONAI's PydicomReader, keeping only the geometry tags in the metadata.

    The parent converts the whole header to JSON and then prunes it; this builds the pruned dict
    directly, which is a quarter of the reading time for small images and never touches PHI fields.
    """

    def _get_meta_dict(self, img) -> dict:
        meta = {}
        for key in _GEOMETRY_TAGS:
            tag = pydicom.tag.Tag(key)
            if tag in img:
                meta[key] = img[tag].to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1024)
        return meta


@dataclass(frozen=True)
class LoadedImage:
    """An image as the pipeline sees it (see the module docstring for the shape contract)."""

    array: np.ndarray  # float32, (C, X, Y) or (C, X, Y, Z)
    spacing: tuple[float, ...]  # mm per spatial axis
    affine: np.ndarray  # 4 x 4 voxel-to-world (RAS mm) matrix, after reorientation to LPS axes
    modality: str | None  # DICOM Modality, None if unknown
    patient_id: str | None = None  # raw DICOM PatientID: hash it, never write it
    burned_in_annotation: bool = False  # the DICOM header says text (possibly identifying) is in the pixels
    max_value: float | None = None  # largest stored sample value (colour, image files); None: physical units, floats
    source: str = "dicom"  # "dicom", "nifti" or "image" (PNG, JPEG, TIFF, BMP, GIF)

    @property
    def spatial_dims(self) -> int:
        return self.array.ndim - 1


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def file_kind(path: Path) -> str:
    """How :func:`load_image` reads ``path``: ``"nifti"`` (by its name), ``"dicom"`` (a folder, a file pydicom
    recognises, or anything unrecognised, for which the DICOM reader's error is the answer) or ``"image"`` (an
    image suffix, or content Pillow recognises)."""
    if is_nifti(path):
        return "nifti"
    try:
        if not path.is_file() or pydicom.misc.is_dicom(path):
            return "dicom"
    except OSError:  # no permission: the DICOM reader says so
        return "dicom"
    return "image" if is_image_file(path) or looks_like_image(path) else "dicom"


def load_image(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> LoadedImage:
    """Read a DICOM file, a DICOM series folder, a NIfTI file or a plain image file (see the module docstring);
    refuse images that would take more than ``max_bytes`` as float32."""
    path = Path(path)
    loader = {"nifti": load_nifti, "image": load_image_file, "dicom": load_dicom}[file_kind(path)]
    image = loader(path, max_bytes)
    if not np.isfinite(image.array).all():
        raise UnreadableImageError(f"{path}: contains NaN or infinite values; fix or drop this image")
    _check_geometry(image, path)
    return reorient(image)


def _check_size(path: Path, shape: tuple[int, ...], max_bytes: int) -> None:
    """Refuse, before anything is allocated, an image whose declared ``shape`` would not fit in ``max_bytes``
    as float32, or that declares no voxel at all."""
    if 0 in shape:
        raise UnreadableImageError(f"{path}: the header declares an empty image (shape {shape}); the file is damaged")
    size = math.prod(shape) * np.dtype(np.float32).itemsize
    if size > max_bytes:
        raise ImageTooLargeError(
            f"{path}: the header declares {' x '.join(map(str, shape))} voxels, {size / 2**30:.1f} GiB as float32, "
            f"more than medaug's limit of {max_bytes / 2**30:.1f} GiB for one image (preprocess.max_image_gib). "
            "The header may be damaged; otherwise crop or downsample the image first, raise the limit if the "
            "machine has the memory (decoding needs a few times the image), or remove its row from labels.csv"
        )


def _check_geometry(image: LoadedImage, path: Path) -> None:
    """Refuse an affine that orients nothing (voxels of no size or of astronomical size, parallel axes: a damaged
    header) and, since a 2D image is oriented within the axial plane, a single slice lying across it (sagittal or
    coronal). What passes, MONAI's ``Orientation`` can handle."""
    spatial = image.spatial_dims
    axes = image.affine[:3, :spatial]  # world direction x spacing of each array axis
    with np.errstate(all="ignore"):
        sizes = np.linalg.norm(axes, axis=0)
        directions = axes / sizes
    if (
        not np.isfinite(image.affine).all()
        or not np.all((_VOXEL_MM[0] <= sizes) & (sizes <= _VOXEL_MM[1]))
        or np.linalg.svd(directions, compute_uv=False).min() < _MIN_ANGLE
    ):
        raise UnreadableImageError(
            f"{path}: its geometry (pixel spacing, orientation or slice positions) gives voxel axes of no, infinite "
            "or absurd size, or parallel ones; the header is damaged. Fix the geometry tags, or remove its row"
        )
    if spatial == 2 and np.linalg.svd(directions[:2], compute_uv=False).min() < _MIN_ANGLE:
        raise UnsupportedGeometryError(
            f"{path}: a single 2D slice outside the axial plane (sagittal or coronal); medaug orients 2D images in "
            "the axial plane only. List the whole series folder instead (a volume), or remove its row"
        )


_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # (negative, positive) ends of the RAS world axes


def reorient(image: LoadedImage, axcodes: str = "LPS") -> LoadedImage:
    """Flip/permute the array so its axes point to ``axcodes`` (default LPS, DICOM's own frame: x to the
    patient's left, y to posterior, z to superior), whatever the file's orientation, with MONAI's
    ``Orientation``. DICOM and NIfTI of the same scan then come out alike."""
    spatial = image.array.ndim - 1
    # the test MONAI's Orientation makes; most DICOMs are already LPS and then nothing needs to move
    source = nib.orientations.io_orientation(to_affine_nd(spatial, image.affine))
    target = nib.orientations.axcodes2ornt(axcodes[:spatial], labels=_RAS_LABELS)
    if np.array_equal(nib.orientations.ornt_transform(source, target), [[k, 1] for k in range(spatial)]):
        return image
    # no copy: a DICOM series arrives as a transposed view whose axial slices are contiguous in memory
    tensor = MetaTensor(torch.from_numpy(image.array), affine=torch.as_tensor(image.affine))
    out = Orientation(axcodes=axcodes[:spatial], labels=_RAS_LABELS)(tensor)
    assert isinstance(out, MetaTensor)  # Orientation gives back the kind of tensor it is given
    affine = np.asarray(out.affine, dtype=np.float64)
    spacing = tuple(float(s) for s in affine_to_spacing(affine, r=spatial))
    return dataclasses.replace(image, array=out.numpy(), affine=affine, spacing=spacing)


def _read_dataset(reader: GeometryPydicomReader, path: Path) -> pydicom.Dataset:
    try:
        ds = reader.read(str(path))
    except Exception as err:  # noqa: BLE001 - untrusted bytes: pydicom raises struct.error, BytesLengthException, ...
        raise UnreadableImageError(
            f"{path}: not a readable DICOM file ({type(err).__name__}: {err}). "
            "Check that the file is complete, or remove its row from labels.csv."
        ) from err
    has_pixels = any(tag in ds for tag in _PIXEL_TAGS)
    _check_header(ds, path, has_pixels)
    if not has_pixels:
        kind = ds.get("SOPClassUID")
        if kind is None:
            raise UnreadableImageError(
                f"{path}: DICOM file with neither pixel data nor a SOP class: it is probably truncated; "
                "copy it again from the source, or remove its row from labels.csv"
            )
        if "Image Storage" in str(getattr(kind, "name", "")):
            raise UnreadableImageError(
                f"{path}: an image object ({kind.name}) without its pixel data: the file is probably truncated; "
                "copy it again from the source, or remove its row from labels.csv"
            )
        raise NonImageDicomError(
            f"{path}: DICOM object without pixel data ({getattr(kind, 'name', kind)}); "
            "only image objects can be used, remove its row from labels.csv"
        )
    _check_decoder(ds, path)
    return ds


def _attribute_problem(ds: pydicom.Dataset, keyword: str, count: int, kind: str) -> str | None:
    """What is wrong with a numeric header attribute, or None when it is absent, empty or as it should be."""
    try:
        numbers = _numbers(ds, keyword)
    except Exception as err:  # noqa: BLE001 - pydicom converts lazily: unknown VR, text where a number should be
        return f"cannot be read as numbers ({type(err).__name__})"
    if not numbers:
        return None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        return f"does not hold {count} finite number(s)"
    if kind.endswith("integer") and not all(v.is_integer() for v in numbers):
        return "is not an integer"
    if kind.startswith("positive") and not all(v > 0 for v in numbers):
        return "is not positive"
    return None


def _check_header(ds: pydicom.Dataset, path: Path, has_pixels: bool) -> None:
    """Convert and check every header attribute the reader interprets, so a damaged header is one named error
    here rather than a TypeError deep in the geometry code. Messages never quote the values (see module)."""
    for keyword, (count, kind) in _NUMERIC_ATTRIBUTES.items():
        problem = _attribute_problem(ds, keyword, count, kind)
        if problem is None and has_pixels and keyword in ("Rows", "Columns") and not _numbers(ds, keyword):
            problem = "is missing"
        if problem is not None:
            raise UnreadableImageError(
                f"{path}: DICOM attribute {keyword} {problem}; the header is damaged. "
                "Copy the file again from the source, or remove its row from labels.csv"
            )
    for keyword in _TEXT_ATTRIBUTES:
        try:
            str(ds.get(keyword, ""))
        except Exception as err:  # noqa: BLE001 - same lazy conversion as above
            raise UnreadableImageError(
                f"{path}: DICOM attribute {keyword} cannot be read ({type(err).__name__}); the header is damaged. "
                "Copy the file again from the source, or remove its row from labels.csv"
            ) from None


def _numbers(ds: pydicom.Dataset, keyword: str) -> list[float]:
    """The numbers held by a header attribute; ``[]`` when it is absent or empty."""
    value = ds.get(keyword)
    if value is None or isinstance(value, str | bytes) and not value.strip():
        return []
    return [float(v) for v in (value if isinstance(value, MultiValue) else [value])]


def _number(ds: pydicom.Dataset, keyword: str, default: float) -> float:
    """A single-valued numeric attribute (checked by :func:`_check_header`), or ``default`` if absent or empty."""
    numbers = _numbers(ds, keyword)
    return numbers[0] if numbers else default


def _check_decoder(ds: pydicom.Dataset, path: Path) -> None:
    """Refuse, before decoding, pixel data in a transfer syntax pydicom has no working decoder for."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or "PixelData" not in ds:
        return  # implicit little endian (pydicom's default) or float pixel data: always readable
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(
            f"{path}: pixel data in transfer syntax {syntax.name} ({syntax}), which medaug cannot decode "
            "(video and other non-image codecs are not supported); export the images uncompressed or as "
            "JPEG 2000 / JPEG lossless / RLE, or remove the row from labels.csv"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "see pydicom's pixel data handlers"
        raise UnsupportedTransferSyntaxError(
            f"{path}: no decoder installed for transfer syntax {syntax.name} ({syntax}); install one of the "
            f"packages pydicom asks for ({missing}) or reinstall medaug with `make` (requirements.lock)"
        )


def slice_position(ds: pydicom.Dataset, fallback: float) -> float:
    """Position of a slice along its normal (ImagePositionPatient . (row x column direction)); the
    InstanceNumber, then ``fallback``, when the geometry tags are missing."""
    iop, ipp = _numbers(ds, "ImageOrientationPatient"), _numbers(ds, "ImagePositionPatient")
    if len(iop) == 6 and len(ipp) == 3:
        normal = np.cross(np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float))
        return float(np.dot(normal, np.asarray(ipp, dtype=float)))
    return _number(ds, "InstanceNumber", fallback)


def _series_files(path: Path) -> list[Path]:
    """``[path]`` for a file; the DICOM files of a series folder (regular files only: reading a named pipe or
    a device would block)."""
    try:
        if not path.is_dir():
            if not path.is_file():
                raise UnreadableImageError(f"{path}: does not exist or is not a regular file or folder")
            return [path]
        files = sorted(p for p in path.iterdir() if p.is_file() and pydicom.misc.is_dicom(p))
    except OSError as err:  # no permission, a name too long
        raise UnreadableImageError(f"{path}: cannot be read ({type(err).__name__}: {err.strerror or err})") from err
    if not files:
        raise UnreadableImageError(f"{path}: the folder holds no DICOM file; a series folder needs its slices")
    return files


def _dicom_channels(path: Path, samples: int, photometric: str) -> int:
    """Channels of a DICOM image (see the module docstring): 3 for colour and palette colour, 1 for grey."""
    if samples == 1:
        return 3 if photometric == _PALETTE else 1
    if samples == 3 and photometric in _RGB_DICOM:
        return 3
    raise UnsupportedColourError(
        f"{path}: DICOM attributes SamplesPerPixel and PhotometricInterpretation describe pixels medaug does not "
        "read (it reads MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422, YBR_RCT, YBR_ICT and PALETTE COLOR); convert "
        "the image to RGB or greyscale first, or remove its row from labels.csv"
    )


def _decode(
    reader: GeometryPydicomReader, files: list[Path], datasets: list, channels: int = 1
) -> tuple[np.ndarray, dict, float | None]:
    """Pixels of one multi-frame object or of the slices of a series as float32 ``(X, Y)`` or
    ``(X, Y, frames/slices)`` (grey), ``(3, X, Y)`` or ``(3, X, Y, frames/slices)`` (``channels`` 3: RGB, palette
    applied), through MONAI's reader (pydicom converts YBR to RGB); the first object's metadata (affine for
    ``(X, Y)``); and for colour the largest value a sample can take.

    The reader runs with ``swap_ij=False`` and the axes are swapped once at the end: MONAI's per-slice swap
    copies every slice an extra time, and for multi-frame objects it swaps the frame axis into the wrong place.
    """
    arrays, metas = [], []
    max_value = None
    for f, ds in zip(files, datasets, strict=True):
        reader.filenames, reader.has_series = [str(f)], False
        try:
            array, meta = reader.get_data(ds)  # (rows, columns[, 3]) or (frames, rows, columns[, 3])
            if channels == 3:
                array, max_value = _colour_pixels(f, ds, np.asarray(array))
        except MedaugInputError:
            raise
        except BaseException as err:  # decoders raise many types: missing plugin, truncated stream, bad length
            if not isinstance(err, Exception) and type(err).__name__ != "PanicException":
                raise  # KeyboardInterrupt and the like; a Rust decoder's panic (pylibjpeg-rle) is a BaseException
            raise UnreadableImageError(
                f"{f}: pixel data could not be decoded ({type(err).__name__}: {err}). "
                "The file may be truncated or use a transfer syntax without an installed decoder."
            ) from err
        arrays.append(np.asarray(array, dtype=np.float32))
        metas.append(meta)
    if len({a.shape for a in arrays}) > 1:  # headers agreed (load_dicom checks), the decoded pixels do not
        raise UnreadableImageError(f"{files[0].parent}: slices decode to different shapes; one folder, one series")
    if len(arrays) > 1:
        stacked = np.stack(arrays)  # (slices, rows, columns[, 3])
    else:
        stacked = arrays[0]  # (rows, columns[, 3]) or (frames, rows, columns[, 3])
    meta = dict(metas[0])
    meta["affine"] = np.asarray(meta["affine"]) @ _SWAP_IJ  # what swap_ij=True would have given
    return np.transpose(stacked), meta, max_value  # every axis reversed: ([3,] columns, rows[, frames/slices])


def _colour_pixels(path: Path, ds: pydicom.Dataset, array: np.ndarray) -> tuple[np.ndarray, float]:
    """A colour object's decoded pixels as ``(..., rows, columns, 3)`` RGB (palette colour: the lookup table
    applied to the indices) and the largest value a sample can take."""
    if int(_number(ds, "SamplesPerPixel", 1)) == 1:  # palette colour (load_dicom checked the interpretation)
        if array.dtype.kind not in "iu":
            raise UnreadableImageError(f"{path}: palette colour indices that are not integers; the file is damaged")
        array = apply_color_lut(array, ds)
        max_value = float(np.iinfo(array.dtype).max)  # 8- or 16-bit lookup table entries
    else:
        max_value = float(2 ** int(_number(ds, "BitsStored", _number(ds, "BitsAllocated", 8))) - 1)
    if array.shape[-1] != 3:
        raise UnreadableImageError(f"{path}: colour pixel data that decodes to no 3 samples a pixel; it is damaged")
    return array, max_value


def _dicom_affine(first_meta: dict, datasets: list, frames: int = 1) -> np.ndarray:
    """The first slice's affine (RAS world), with the step between slices (or frames) as third column."""
    first = datasets[0]
    affine = np.array(first_meta["affine"], dtype=np.float64)
    if not _numbers(first, "ImageOrientationPatient") or not _numbers(first, "ImagePositionPatient"):
        # no geometry in the file (secondary capture, many exports): take DICOM's own axes as they are
        row_mm, col_mm = _numbers(first, "PixelSpacing") or (1.0, 1.0)
        affine = np.diag([-col_mm, -row_mm, 1.0, 1.0])  # x runs along a row (column spacing), y down the rows
    if len(datasets) > 1:  # LPS positions turned to RAS
        first_pos, last_pos = (
            np.asarray(_numbers(d, "ImagePositionPatient") or (0, 0, 0)) for d in (first, datasets[-1])
        )
        step = (last_pos - first_pos) / (len(datasets) - 1) * np.array([-1.0, -1.0, 1.0])
        affine[:3, 2] = step if np.any(step) else (0.0, 0.0, _number(first, "SliceThickness", 1.0))
    elif frames > 1:  # per-frame positions live in functional groups; assume contiguous axial frames
        thickness = _number(first, "SliceThickness", 1.0)
        affine[:3, 2] = (0.0, 0.0, _number(first, "SpacingBetweenSlices", thickness))
    return affine


def load_dicom(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> LoadedImage:
    """Read one DICOM file (single- or multi-frame), or a folder holding one series: slices ordered along
    the slice normal (InstanceNumber as fallback) and stacked on the last axis, as are frames. Images
    larger than ``max_bytes`` as float32 are refused before their pixels are decoded."""
    reader = GeometryPydicomReader(prune_metadata=True, swap_ij=False)  # no PHI is carried in the metadata
    files = _series_files(path)
    datasets = [_read_dataset(reader, f) for f in files]
    order = [i for _, i in sorted((slice_position(ds, i), i) for i, ds in enumerate(datasets))]
    datasets, files = [datasets[i] for i in order], [files[i] for i in order]
    shapes = {tuple(int(_number(ds, key, 1)) for key in _SHAPE_ATTRIBUTES) for ds in datasets}
    if len(shapes) > 1:
        raise UnreadableImageError(
            f"{path}: slices of different sizes {sorted(shapes)} ({', '.join(_SHAPE_ATTRIBUTES)}); "
            "one folder must hold one series"
        )
    first = datasets[0]
    rows, columns, frames, samples = shapes.pop()
    if frames > 1 and len(datasets) > 1:
        raise UnreadableImageError(f"{path}: a folder of multi-frame objects; list each file as its own row")
    photometric = str(first.get("PhotometricInterpretation", "")).strip().upper()
    channels = _dicom_channels(path, samples, photometric)
    _check_size(path, ((3,) if channels == 3 else ()) + (columns, rows, frames * len(datasets)), max_bytes)
    array, first_meta, max_value = _decode(reader, files, datasets, channels)
    if channels == 1:
        if photometric == "MONOCHROME1":  # bright means low values: invert
            array = array.max() + array.min() - array
        array = array[None]
    affine = _dicom_affine(first_meta, datasets, frames)
    spacing = tuple(float(s) for s in affine_to_spacing(affine, r=array.ndim - 1))
    modality = str(first.get("Modality", "")) or None
    patient = str(first.get("PatientID", "")) or None
    burned_in = any(str(ds.get("BurnedInAnnotation", "")).upper() == "YES" for ds in datasets)
    return LoadedImage(array, spacing, affine, modality, patient, burned_in, max_value, "dicom")


def load_image_file(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> LoadedImage:
    """Read a plain image file (PNG, JPEG, TIFF, BMP, single-frame GIF) through Pillow: pixels only, as a DICOM
    without geometry (1 mm pixels, DICOM's own axes). Refused before decoding when larger than ``max_bytes`` as
    float32; see :mod:`pipeline.io.images` for alpha, palette, CMYK and frames."""
    with open_image(path) as img:
        _check_size(path, (output_channels(img, path), *img.size), max_bytes)
        try:
            img.load()  # Pillow's LOAD_TRUNCATED_IMAGES stays False: a truncated file raises here
            array, max_value = pixels_of(img, path)
        except MedaugInputError:
            raise
        except Exception as err:  # noqa: BLE001 - untrusted bytes: OSError, SyntaxError, ValueError, zlib errors...
            raise UnreadableImageError(
                f"{path}: the image's pixels could not be decoded ({type(err).__name__}); the file may be truncated "
                "or damaged. Copy it again from the source, or remove its row from labels.csv"
            ) from None
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # x along a row, y down the rows, as a DICOM without geometry
    return LoadedImage(array, (1.0, 1.0), affine, None, max_value=max_value, source="image")


def load_nifti(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> LoadedImage:
    """Read a 2D or 3D NIfTI file, grey or colour (RGB24/RGBA32 voxels, or a "vector" intent whose 5th dimension
    holds 3 components: ``(X, Y, 1, 1, 3)`` or ``(X, Y, Z, 1, 3)``); 4D files are refused, as are images larger
    than ``max_bytes`` as float32 (from the header, before the voxels are read)."""
    reader = NibabelReader()
    try:
        if not path.is_file():  # a folder, a named pipe (reading it would block) or nothing
            raise FileNotFoundError(f"{path.name} is not a regular file")
        img = reader.read(str(path))  # the header only: voxels are read by get_data
    except Exception as err:  # nibabel raises ImageFileError, HeaderDataError, EOFError, zlib errors, ...
        raise UnreadableImageError(
            f"{path}: not a readable NIfTI file ({type(err).__name__}: {err}). Check that the file is complete."
        ) from err
    layout = _check_nifti_header(img, path, max_bytes)
    try:
        array, meta = reader.get_data(img)
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors, ...
        raise UnreadableImageError(
            f"{path}: not a readable NIfTI file ({type(err).__name__}: {err}). Check that the file is complete."
        ) from err
    if layout == "grey":
        array, max_value = np.asarray(array, dtype=np.float32)[None], None
    else:
        array, max_value = _nifti_colour(np.asarray(array), layout, path)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4):
        raise UnreadableImageError(
            f"{path}: NIfTI image of shape {array.shape[1:]}; only 2D and 3D images are supported, "
            "extract the volume you want first"
        )
    affine = np.asarray(meta["affine"], dtype=np.float64)
    spacing = tuple(float(s) for s in affine_to_spacing(affine, r=array.ndim - 1))
    return LoadedImage(array, spacing, affine, modality=None, max_value=max_value, source="nifti")


def _nifti_layout(img: nib.Nifti1Image) -> str:
    """``"rgb"`` (RGB24/RGBA32 voxels), ``"vector"`` (intent vector, 3 components in the 5th dimension) or
    ``"grey"`` (anything else, checked further by the caller)."""
    if img.get_data_dtype().names in _NIFTI_RGB:
        return "rgb"
    shape = img.shape
    try:
        vector = int(img.header["intent_code"]) == _NIFTI_VECTOR
    except Exception:  # noqa: BLE001 - a header format without intents
        vector = False
    return "vector" if vector and len(shape) == 5 and shape[3] == 1 and shape[4] in (3, 4) else "grey"


def _nifti_colour(array: np.ndarray, layout: str, path: Path) -> tuple[np.ndarray, float | None]:
    """RGB voxels (a structured array, or ``(X, Y, Z, 1, 3|4)`` vectors) as float32 ``(3, X, Y, Z)``, alpha dropped
    when every voxel is opaque (refused otherwise), and the largest value a sample can take."""
    if layout == "rgb":
        channels = np.stack([array[name] for name in array.dtype.names or ()])
        max_value: float | None = 255.0  # 8-bit fields
    else:
        channels = np.moveaxis(array[:, :, :, 0, :], -1, 0)
        unsigned = array.dtype.kind == "u" and array.dtype.itemsize <= 2
        max_value = float(np.iinfo(array.dtype).max) if unsigned else None
    if len(channels) == 4:
        if max_value is None or not (channels[3] >= max_value).all():
            raise UnsupportedColourError(f"{path}: {TRANSPARENT}")
        channels = channels[:3]
    return channels.astype(np.float32), max_value


def _check_nifti_header(img: nib.Nifti1Image, path: Path, max_bytes: int) -> str:
    """Refuse, from the header alone, voxel types that are neither plain numbers nor RGB, volumes too large for
    ``max_bytes`` and (uncompressed files) voxel data running past the end of the file; return the layout
    (:func:`_nifti_layout`)."""
    dtype = img.get_data_dtype()
    layout = _nifti_layout(img)
    if layout != "rgb" and dtype.kind not in "biuf":
        raise UnreadableImageError(
            f"{path}: NIfTI voxels of type {dtype} (complex or compound); only grey and RGB images are supported"
        )
    _check_size(path, ((3,) if layout == "rgb" else ()) + tuple(int(n) for n in img.shape), max_bytes)
    if path.name.lower().endswith(".nii"):
        end = float(img.header.get_data_offset()) + math.prod(img.shape) * dtype.itemsize
        if not end <= path.stat().st_size:  # "not <=": a NaN offset fails too
            raise UnreadableImageError(
                f"{path}: the header declares {end:.0f} bytes of header and voxels, the file holds "
                f"{path.stat().st_size}: it is truncated or its header is damaged. Copy it again from the source"
            )
    return layout
