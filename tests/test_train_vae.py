import dataclasses

import numpy as np
import pytest
import torch

from pipeline.config import TrainVAEConfig
from pipeline.train_vae import train_vae
from tests.conftest import make_split

CFG = TrainVAEConfig(
    mode="conditional",
    latent_size=4,
    channels=(8, 16),
    strides=(2, 2),
    res_units=0,
    reconstruction="bce",
    beta=1.0,
    kl_warmup_epochs=2,
    free_bits=0.0,
    epochs=6,
    patience=0,
    batch_size=8,
    learning_rate=0.005,
    amp=True,  # ignored on CPU
    seed=0,
)
CPU = torch.device("cpu")


@pytest.mark.parametrize("mode", ["conditional", "per_class"])
def test_loss_decreases_and_best_epoch_is_kept(mode):
    train, val = make_split(32, seed=0), make_split(16, seed=1)
    vaes, history = train_vae(train, val, dataclasses.replace(CFG, mode=mode), CPU)
    names = ["conditional"] if mode == "conditional" else list(train.classes)
    assert vaes.mode == mode and len(vaes.models) == len(names)
    for name in names:
        rows = [h for h in history if h["model"] == name]
        assert len(rows) == CFG.epochs
        assert rows[-1]["train_elbo"] < rows[0]["train_elbo"]
        assert rows[-1]["train_reconstruction"] < rows[0]["train_reconstruction"]
        assert sum(h.get("best", False) for h in rows) >= 1
    assert not vaes.training


def test_per_class_networks_learn_their_own_class():
    train, val = make_split(48, seed=0), make_split(16, seed=1)  # class b has a bright square, class a not
    vaes, _ = train_vae(train, val, dataclasses.replace(CFG, mode="per_class", epochs=15), CPU)
    z = torch.zeros(1, CFG.latent_size)
    square = [vaes.decode(z, label)[0, 0, 4:10, 4:10].mean().item() for label in (0, 1)]
    assert square[1] > square[0] + 0.3


def test_same_seed_same_model():
    train, val = make_split(16), make_split(8, seed=1)
    short = dataclasses.replace(CFG, epochs=2)
    (a, ha), (b, hb) = train_vae(train, val, short, CPU), train_vae(train, val, short, CPU)
    assert ha == hb
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_early_stopping_waits_for_the_warm_up_then_stops():
    train, val = make_split(32, seed=0), make_split(16, seed=1)
    val = dataclasses.replace(val, images=np.random.default_rng(9).uniform(size=val.images.shape).astype(np.float32))
    cfg = dataclasses.replace(CFG, epochs=40, patience=2, kl_warmup_epochs=4, learning_rate=0.02)
    _, history = train_vae(train, val, cfg, CPU)  # noise as validation: it stops improving soon
    best = min(h["epoch"] for h in history if h["val_elbo"] == min(r["val_elbo"] for r in history))
    assert len(history) < 40 and len(history) >= cfg.kl_warmup_epochs
    assert history[-1]["epoch"] - best >= cfg.patience


def test_3d_volumes():
    rng = np.random.default_rng(0)
    split = make_split(8)
    volumes = rng.uniform(0, 0.3, (8, 1, 8, 8, 8)).astype(np.float32)
    train = dataclasses.replace(split, images=volumes)
    vaes, history = train_vae(train, train, dataclasses.replace(CFG, epochs=2), CPU)
    assert vaes.image_shape == (1, 8, 8, 8) and len(history) == 2
