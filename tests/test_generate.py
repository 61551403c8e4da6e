import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.generate import sample_images, synthetic_counts
from pipeline.io.synthetic import SYNTHETIC_DESCRIPTION, read_synthetic, write_manifest, write_synthetic_nifti
from pipeline.models.vae import ConditionalVAE


@pytest.mark.parametrize(
    "counts, ratio, expected",
    [
        ({"a": 100, "b": 10}, 1.0, {"a": 0, "b": 90}),  # balance fully
        ({"a": 100, "b": 10}, 0.5, {"a": 0, "b": 40}),  # half-way
        ({"a": 100, "b": 60}, 0.5, {"a": 0, "b": 0}),  # already above the target: nothing
        ({"a": 100, "b": 10, "c": 30}, 1.0, {"a": 0, "b": 90, "c": 70}),  # several minority classes
    ],
)
def test_synthetic_counts(counts, ratio, expected):
    assert synthetic_counts(counts, ratio) == expected


@pytest.mark.parametrize("sampler", ["prior", "posterior"])
def test_sampling_is_seeded_and_in_range(sampler):
    torch.manual_seed(0)
    vae = ConditionalVAE(2, (1, 16, 16), 2, 4, (4, 8), (2, 2)).eval()
    real = np.random.default_rng(0).uniform(size=(10, 1, 16, 16)).astype(np.float32)
    a = sample_images(vae, 1, 5, 7, 1.0, sampler, real)
    assert a.shape == (5, 1, 16, 16) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, sample_images(vae, 1, 5, 7, 1.0, sampler, real))
    assert not np.array_equal(a, sample_images(vae, 1, 5, 8, 1.0, sampler, real))
    assert sample_images(vae, 1, 0, 7, 1.0, sampler, real).shape == (0, 1, 16, 16)


def test_synthetic_files_say_so_and_round_trip(tmp_path):
    image = np.random.default_rng(0).uniform(size=(1, 8, 8)).astype(np.float32)
    write_synthetic_nifti(tmp_path / "b" / "s0.nii.gz", image)
    write_manifest(
        tmp_path,
        [
            {
                "path": "b/s0.nii.gz",
                "label": "b",
                "sampler": "prior",
                "seed": 0,
                "temperature": 1.0,
                "checkpoint_sha256": "x",
            }
        ],
    )
    header = nib.load(tmp_path / "b" / "s0.nii.gz").header
    assert header["descrip"].tobytes().rstrip(b"\0") == SYNTHETIC_DESCRIPTION[:80]
    data = read_synthetic(tmp_path, ("a", "b"))
    assert data.labels.tolist() == [1] and np.array_equal(data.images[0], image)
