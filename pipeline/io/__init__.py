"""Shared input/output: reading DICOM/NIfTI, dataset manifests, processed arrays and synthetic images."""
