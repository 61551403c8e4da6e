"""Named errors for bad input. Each message says which file and what to do about it."""

from __future__ import annotations

__all__ = [
    "MedaugInputError",
    "UnreadableImageError",
    "NonImageDicomError",
    "UnsupportedTransferSyntaxError",
    "UnsupportedColourError",
    "BurnedInAnnotationError",
    "ImageTooLargeError",
    "UnsupportedGeometryError",
    "ManifestError",
    "MissingImageError",
    "PathOutsideRootError",
    "DatasetTooSmallError",
    "DatasetShapeError",
]


class MedaugInputError(Exception):
    """Base class of every error about the user's input data."""


class UnreadableImageError(MedaugInputError):
    """A file could not be decoded as DICOM, NIfTI or an image file (corrupt, truncated or an unsupported format)."""


class NonImageDicomError(MedaugInputError):
    """A DICOM object without pixel data (structured report, presentation state, ...)."""


class UnsupportedTransferSyntaxError(UnreadableImageError):
    """A DICOM file whose pixel data is compressed in a transfer syntax without an installed decoder."""


class UnsupportedColourError(UnreadableImageError):
    """An image medaug decodes but cannot use as it stands: transparent pixels, CMYK or more than 3 channels, a
    colour space without a conversion to RGB, or several frames in a plain image file (animated GIF, APNG,
    multi-page TIFF)."""


class BurnedInAnnotationError(MedaugInputError):
    """A DICOM image whose header says identifying text may be burned into its pixels."""


class ImageTooLargeError(MedaugInputError):
    """An image whose header declares more voxels than fit in medaug's memory limit for one image; refused
    before any pixel is read."""


class UnsupportedGeometryError(MedaugInputError):
    """A well-formed image whose geometry medaug cannot orient (a single 2D slice outside the axial plane)."""


class ManifestError(MedaugInputError):
    """labels.csv is missing, malformed, or has rows that cannot be used."""


class MissingImageError(ManifestError):
    """A manifest row names a file that does not exist."""


class PathOutsideRootError(ManifestError):
    """A manifest row names a path outside the dataset folder."""


class DatasetTooSmallError(MedaugInputError):
    """Too few patients or classes to make stratified patient-level splits."""


class DatasetShapeError(MedaugInputError):
    """The dataset's classes and their counts per split cannot work with params.yaml's settings (a class missing
    from a split, too few images of a class for a remedy or filter, an image size the networks cannot take):
    refused before any training, with what to change (:mod:`pipeline.planning`)."""


class InsufficientSpaceError(MedaugInputError):
    """The output would not fit on its disk: refused before anything is written."""
