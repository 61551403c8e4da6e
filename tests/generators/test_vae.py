"""The ``vae`` generator's training: losses, per-class networks, early stopping, 3D."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.generators.vae import VAEGenerator
from pipeline.generators.vae_gan import VAEGANGenerator
from tests.conftest import make_split
from tests.generators.test_generators import CPU, VAE, VAE_GAN

CFG = dataclasses.replace(VAE, epochs=6)


def _fit(train, val, cfg=CFG, mode="conditional", seed=0):
    gen = VAEGenerator(tuple(train.images.shape[1:]), train.classes, mode, cfg, seed)
    return gen, gen.fit(train, val, CPU)


@pytest.mark.parametrize("mode", ["conditional", "per_class"])
def test_loss_decreases_and_best_epoch_is_kept(mode):
    train, val = make_split(32, seed=0), make_split(16, seed=1)
    gen, history = _fit(train, val, mode=mode)
    names = ["conditional"] if mode == "conditional" else list(train.classes)
    assert gen.vaes.mode == mode and len(gen.vaes.models) == len(names)
    for name in names:
        rows = [h for h in history if h["model"] == name]
        assert len(rows) == CFG.epochs
        assert rows[-1]["train_elbo"] < rows[0]["train_elbo"]
        assert rows[-1]["train_reconstruction"] < rows[0]["train_reconstruction"]
        assert sum(h.get("best", False) for h in rows) >= 1
    assert not gen.vaes.training


def test_per_class_networks_learn_their_own_class():
    train, val = make_split(48, seed=0), make_split(16, seed=1)  # class b has a bright square, class a not
    gen, _ = _fit(train, val, dataclasses.replace(CFG, epochs=15), mode="per_class")
    z = np.zeros((1, CFG.latent_size))
    square = [gen.decode(z, label)[0, 0, 4:10, 4:10].mean() for label in (0, 1)]
    assert square[1] > square[0] + 0.3


def test_same_seed_same_model():
    train, val = make_split(16), make_split(8, seed=1)
    short = dataclasses.replace(CFG, epochs=2)
    (a, ha), (b, hb) = _fit(train, val, short), _fit(train, val, short)
    assert ha == hb
    pairs = zip(a.vaes.state_dict().values(), b.vaes.state_dict().values(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)


def test_per_class_networks_trained_side_by_side_equal_those_trained_in_turn():
    """Two worker processes (one thread each) train a per_class generator's networks to the bits that this
    process, at one thread, trains them to in turn; the vae_gan subclass's discriminators included."""
    train, val = make_split(24), make_split(8, seed=1)
    short = dataclasses.replace(VAE_GAN, epochs=2, adversarial_warmup_epochs=1, kl_warmup_epochs=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of two workers gets on any machine
    try:
        fits = []
        for workers in (1, 2):
            gen = VAEGANGenerator(tuple(train.images.shape[1:]), train.classes, "per_class", short, 0)
            fits.append((gen, gen.fit(train, val, CPU, workers)))
    finally:
        torch.set_num_threads(threads)
    (here, history_here), (there, history_there) = fits
    assert history_here == history_there and {h["model"] for h in history_there} == set(train.classes)
    assert there.vaes.mode == "per_class" and not there.vaes.training
    pairs = zip(here.vaes.state_dict().values(), there.vaes.state_dict().values(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)
    z = np.zeros((2, short.latent_size))
    assert np.array_equal(here.decode(z, 1), there.decode(z, 1))


def test_early_stopping_waits_for_the_warm_up_then_stops():
    train, val = make_split(32, seed=0), make_split(16, seed=1)
    val = dataclasses.replace(val, images=np.random.default_rng(9).uniform(size=val.images.shape).astype(np.float32))
    cfg = dataclasses.replace(CFG, epochs=40, patience=2, kl_warmup_epochs=4, learning_rate=0.02)
    _, history = _fit(train, val, cfg)  # noise as validation: it stops improving soon
    best = min(h["epoch"] for h in history if h["val_elbo"] == min(r["val_elbo"] for r in history))
    assert len(history) < 40 and len(history) >= cfg.kl_warmup_epochs
    assert history[-1]["epoch"] - best >= cfg.patience


def test_3d_volumes():
    split = make_split(8)
    volumes = np.random.default_rng(0).uniform(0, 0.3, (8, 1, 8, 8, 8)).astype(np.float32)
    train = dataclasses.replace(split, images=volumes)
    gen, history = _fit(train, train, dataclasses.replace(CFG, epochs=2))
    assert gen.vaes.image_shape == (1, 8, 8, 8) and len(history) == 2


def test_images_of_another_shape_are_refused():
    gen = VAEGenerator((1, 32, 32), ("a", "b"), "conditional", CFG)
    with pytest.raises(ValueError, match="built for"):
        gen.fit(make_split(8), make_split(8), CPU)
