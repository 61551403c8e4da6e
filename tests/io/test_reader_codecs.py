"""Compressed DICOM: every lossless transfer syntax a PACS export commonly uses decodes to the same pixels.

Two kinds of fixtures: pydicom's bundled MR_small in four encodings made by other toolkits (uncompressed,
RLE, JPEG 2000 lossless, JPEG-LS lossless), and a generated CT slice compressed here by pydicom (RLE) and
imagecodecs (lossless JPEG, JPEG-LS; pydicom cannot write those), read back through medaug's reader.
"""

from __future__ import annotations

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEGLossless, JPEGLSLossless, RLELossless, generate_uid

from pipeline.demo_data import write_ct_slice
from pipeline.io.errors import UnreadableImageError, UnsupportedTransferSyntaxError
from pipeline.io.reader import load_image

MR_SMALL = ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm")


@pytest.mark.parametrize("name", MR_SMALL)
def test_third_party_compressed_files_decode_to_the_uncompressed_pixels(name):
    reference = load_image(get_testdata_file("MR_small.dcm"))
    image = load_image(get_testdata_file(name))
    assert image.array.shape == reference.array.shape == (1, 64, 64)
    np.testing.assert_array_equal(image.array, reference.array)
    assert image.modality == "MR"


def _ct_slice(tmp_path):
    hu = np.random.default_rng(0).integers(-1000, 2000, (40, 48)).astype(float)
    hu[10:20, 5:30] = 60.0  # a flat region, so the codecs have something to compress
    path = tmp_path / "plain.dcm"
    uids = {"study": generate_uid(), "series": generate_uid(), "sop": generate_uid()}
    write_ct_slice(path, hu, {"PatientName": "X^Y", "PatientID": "X1"}, uids, 0)
    return path, hu


def _encode(ds: pydicom.Dataset, syntax: str) -> None:
    pixels = ds.pixel_array
    if syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
        return
    if syntax == JPEGLossless:
        frame = imagecodecs.ljpeg_encode(pixels, bitspersample=int(ds.BitsStored))
    else:
        frame = imagecodecs.jpegls_encode(pixels, level=0)  # level 0: lossless
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLossless, JPEGLSLossless], ids=lambda s: s.name)
def test_generated_ct_slice_round_trips_through_each_lossless_codec(tmp_path, syntax):
    path, hu = _ct_slice(tmp_path)
    ds = pydicom.dcmread(path)
    _encode(ds, syntax)
    out = tmp_path / "compressed"  # no suffix, as PACS exports often are
    ds.save_as(out, enforce_file_format=True)
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == syntax
    image = load_image(out)
    np.testing.assert_array_equal(image.array[0].T, hu)  # lossless, HU after rescale


def test_unsupported_transfer_syntax_is_named(tmp_path):
    path, _ = _ct_slice(tmp_path)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])  # an MPEG-2 stream is not an image codec
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.save_as(tmp_path / "video.dcm", enforce_file_format=True)
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"video\.dcm.*MPEG2 Main Profile"):
        load_image(tmp_path / "video.dcm")


def test_corrupt_compressed_stream_is_an_input_error(tmp_path):
    path, _ = _ct_slice(tmp_path)
    ds = pydicom.dcmread(path)
    _encode(ds, JPEGLossless)
    ds.PixelData = encapsulate([bytes(ds.PixelData)[16:80]])  # a stream cut short
    ds.save_as(tmp_path / "cut.dcm", enforce_file_format=True)
    with pytest.raises(UnreadableImageError, match=r"cut\.dcm.*could not be decoded"):
        load_image(tmp_path / "cut.dcm")
