"""The vae_gan generator: its discriminator joins after the warm-up, its losses fall, the kept epoch is after it."""

import dataclasses

import numpy as np
import torch

from pipeline.generators.base import best_epochs
from pipeline.generators.vae_gan import VAEGANGenerator, label_maps
from tests.generators.test_generators import CPU, VAE_GAN
from tests.generators.test_planted import SIZE, planted_squares


def test_label_maps_append_one_constant_channel_per_class():
    x = torch.zeros(2, 1, 4, 4)
    out = label_maps(x, torch.tensor([0, 2]), 3)
    assert out.shape == (2, 4, 4, 4)
    assert torch.equal(out[0, 1], torch.ones(4, 4)) and torch.equal(out[1, 3], torch.ones(4, 4))
    assert out[:, 1:].sum() == 2 * 16  # one hot channel per image


def test_warm_up_is_honoured_and_the_losses_fall():
    train, val = planted_squares(96, seed=0), planted_squares(32, seed=1)
    cfg = dataclasses.replace(VAE_GAN, epochs=12, adversarial_warmup_epochs=4, batch_size=16)
    gen = VAEGANGenerator((1, SIZE, SIZE), train.classes, "conditional", cfg, seed=0)
    history = gen.fit(train, val, CPU)
    warm, adversarial = history[:4], history[4:]
    assert all("train_discriminator" not in h and "train_adversarial" not in h for h in warm)
    assert all({"train_discriminator", "train_adversarial", "train_feature_matching"} <= set(h) for h in adversarial)
    assert best_epochs(history)["conditional"] >= 4  # the kept epoch has been trained against the discriminator
    assert adversarial[-1]["train_reconstruction"] < history[0]["train_reconstruction"]
    assert adversarial[-1]["val_elbo"] < history[0]["val_elbo"]
    # the discriminator learns: its least-squares loss falls below 0.25, what outputs of 0.5 everywhere score
    assert np.isfinite([h["train_discriminator"] for h in adversarial]).all()
    assert min(h["train_discriminator"] for h in adversarial) < 0.25


def test_the_discriminator_is_not_saved():
    train = planted_squares(16, seed=0)
    gen = VAEGANGenerator((1, SIZE, SIZE), train.classes, "conditional", dataclasses.replace(VAE_GAN, epochs=3), 0)
    gen.fit(train, train, CPU)
    state = gen.state()
    assert [set(m) for m in state["models"]] == [{"model_args", "state_dict"}]  # the VAE alone
    assert not any("discriminator" in k for m in state["models"] for k in m["state_dict"])


def test_the_discriminator_strides_evenly():
    """Each strided convolution's kernel is a multiple of its stride (4 and 2), so every input pixel is seen by as
    many kernel taps as its neighbour: its gradients do not push a checkerboard into the VAE's images."""
    gen = VAEGANGenerator((1, SIZE, SIZE), ("a", "b"), "conditional", VAE_GAN, seed=0)
    gen._begin(gen._network(2), CPU, use_amp=False)
    convs = [m for m in gen.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert any(c.stride[0] > 1 for c in convs)
    assert all(k % s == 0 for c in convs for k, s in zip(c.kernel_size, c.stride, strict=True) if s > 1)
