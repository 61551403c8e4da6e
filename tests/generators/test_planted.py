"""Each generator learns a planted finding: class 1 has a bright square at a random place, class 0 none; the
generator's samples of class 1 must show the square and those of class 0 must not."""

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from pipeline.generators import GENERATORS, build_generator
from pipeline.generators.sampling import sample_images
from pipeline.io.arrays import SplitData
from tests.generators.test_generators import CPU, SETTINGS
from tests.generators.test_sampling import GEN

SIZE, SIDE = 16, 4  # image and square side, pixels
SAMPLING = dataclasses.replace(GEN, sampler="posterior", mixture_components=4)  # the pipeline's sampler


def planted_squares(n: int, seed: int) -> SplitData:
    """Dim noise (class 0) and the same with a bright SIDE x SIDE square anywhere inside (class 1)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.uniform(0.0, 0.2, (n, 1, SIZE, SIZE)).astype(np.float32)
    for i in np.flatnonzero(labels == 1):
        r, c = rng.integers(0, SIZE - SIDE + 1, size=2)
        images[i, 0, r : r + SIDE, c : c + SIDE] = 0.9
    return SplitData(images, labels.astype(np.int64), np.array([f"P{i}" for i in range(n)]), ("plain", "square"))


def shows_square(images: np.ndarray) -> np.ndarray:
    """Whether some 3 x 3 window of each image averages at least 0.5 (the square 0.9, the background 0.1)."""
    means = uniform_filter(images[:, 0], size=(1, 3, 3), mode="constant")
    return means.reshape(len(images), -1).max(1) >= 0.5


def test_the_detector_tells_the_toy_classes_apart():
    data = planted_squares(200, seed=5)
    assert shows_square(data.images[data.labels == 1]).all() and not shows_square(data.images[data.labels == 0]).any()


# what each kind needs to learn the toy set in seconds (the rest as SETTINGS), and the sampler the pipeline would
# use with it: VAEs more epochs and a light KL, sampled from a mixture fitted to their codes; latent diffusion
# sampled from its diffusion model
_VAE_TRAINING = {
    "epochs": 40,
    "beta": 0.1,
    "reconstruction": "mse",
    "latent_size": 8,
    "batch_size": 16,
    "kl_warmup_epochs": 5,
}
TRAINING = {
    "vae": (_VAE_TRAINING, SAMPLING),
    "vae_gan": (_VAE_TRAINING, SAMPLING),
    "latent_diffusion": (
        {"epochs": 30, "batch_size": 32, "diffusion_channels": (32, 64), "diffusion_learning_rate": 0.003}
        | {"diffusion_epochs": 60, "diffusion_batch_size": 32, "sampling_steps": 50},
        dataclasses.replace(SAMPLING, sampler="prior"),
    ),
}


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generator_learns_a_planted_finding(kind):
    train, val = planted_squares(240, seed=0), planted_squares(60, seed=1)
    training, sampling = TRAINING[kind]
    settings = dataclasses.replace(SETTINGS[kind], **training)
    gen = build_generator(kind, (1, SIZE, SIZE), train.classes, "conditional", settings, seed=0)
    gen.fit(train, val, CPU)
    shown = {}
    for label in (0, 1):
        real = train.images[train.labels == label]
        images, _ = sample_images(gen, label, 100, seed=3, cfg=sampling, class_images=real)
        shown[label] = shows_square(images).mean()
    assert shown[1] >= 0.8 and shown[0] <= 0.1, f"{kind}: squares in {shown[1]:.0%} of class 1, {shown[0]:.0%} of 0"
