"""The latent_diffusion generator: a spatial latent, the adversarial warm-up honoured, its losses falling, the
diffusion model as its prior, bad settings refused."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, LatentDiffusionConfig
from pipeline.generators.base import best_epochs
from pipeline.generators.latent_diffusion import DiffusionPrior, KLAutoencoder, LatentDiffusionGenerator
from pipeline.generators.sampling import sampler_for
from tests.generators.test_generators import CPU, LATENT_DIFFUSION
from tests.generators.test_planted import SIZE, planted_squares
from tests.generators.test_sampling import GEN


def test_the_latent_is_spatial():
    autoencoder = KLAutoencoder((1, 16, 16), 2, (8, 16, 16), latent_channels=3, num_res_blocks=1)
    assert autoencoder.latent_shape == (3, 4, 4) and autoencoder.latent_size == 48
    with pytest.raises(ValueError, match="not divisible by 4"):
        KLAutoencoder((1, 18, 18), 2, (8, 16, 16), latent_channels=3, num_res_blocks=1)


def test_warm_up_is_honoured_and_the_losses_fall():
    train, val = planted_squares(96, seed=0), planted_squares(32, seed=1)
    cfg = dataclasses.replace(
        LATENT_DIFFUSION,
        epochs=10,
        adversarial_warmup_epochs=4,
        batch_size=16,
        diffusion_epochs=15,
        diffusion_batch_size=16,
    )
    gen = LatentDiffusionGenerator((1, SIZE, SIZE), train.classes, "conditional", cfg, seed=0)
    history = gen.fit(train, val, CPU)
    autoencoder = [h for h in history if h["model"] == "conditional"]
    diffusion = [h for h in history if h["model"] == "diffusion conditional"]
    assert len(autoencoder) == 10 and len(diffusion) == 15
    assert all("train_discriminator" not in h for h in autoencoder[:4])
    assert all(
        {"train_discriminator", "train_adversarial", "train_feature_matching"} <= set(h) for h in autoencoder[4:]
    )
    assert best_epochs(history)["conditional"] >= 4
    assert autoencoder[-1]["val_reconstruction"] < autoencoder[0]["val_reconstruction"]
    # the noise prediction learns: below the MSE of predicting zeros (1, the noise's variance)
    assert diffusion[-1]["train_diffusion"] < diffusion[0]["train_diffusion"]
    assert min(h["val_diffusion"] for h in diffusion) < 0.5


def test_the_prior_sampler_is_the_diffusion_model():
    train = planted_squares(16, seed=0)
    gen = LatentDiffusionGenerator((1, SIZE, SIZE), train.classes, "per_class", LATENT_DIFFUSION, seed=0)
    gen.fit(train, train, CPU)
    prior = sampler_for(gen, "prior", 1, train.images[train.labels == 1], GEN)
    assert isinstance(prior, DiffusionPrior)
    codes = prior.sample(3, np.random.default_rng(0))
    assert codes.shape == (3, gen.latent_size) and np.array_equal(codes, prior.sample(3, np.random.default_rng(0)))
    # colder noise, other codes; the other class's model, other codes
    assert not np.array_equal(codes, gen.prior(1, 0.5).sample(3, np.random.default_rng(0)))
    assert not np.array_equal(codes, gen.prior(0).sample(3, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="out of range"):
        gen.prior(2)


def test_settings_it_cannot_use_are_refused():
    with pytest.raises(ConfigError, match="latent_diffusion.reconstruction"):
        dataclasses.replace(LATENT_DIFFUSION, reconstruction="bce")
    with pytest.raises(ConfigError, match="latent_diffusion.sampling_steps"):
        dataclasses.replace(LATENT_DIFFUSION, sampling_steps=1001)
    with pytest.raises(ConfigError, match="latent_diffusion.train_timesteps"):
        dataclasses.replace(LATENT_DIFFUSION, train_timesteps=100, sampling_steps=5)
    with pytest.raises(ConfigError, match="latent_diffusion.channels"):
        dataclasses.replace(LATENT_DIFFUSION, channels=(12, 16))
    assert isinstance(LATENT_DIFFUSION, LatentDiffusionConfig)


def test_the_autoencoder_decodes_by_resize_convolution():
    """No transposed convolution (its uneven kernel overlap draws a checkerboard): AutoencoderKL upsamples by
    nearest-neighbour interpolation and a convolution."""
    autoencoder = KLAutoencoder((1, 16, 16), 2, (8, 16, 16), latent_channels=3, num_res_blocks=1)
    layers = list(autoencoder.modules())
    assert not any(isinstance(m, torch.nn.ConvTranspose2d | torch.nn.ConvTranspose3d) for m in layers)
    assert sum(isinstance(m, torch.nn.Upsample) for m in layers) == 2
