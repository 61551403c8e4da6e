import torch

from pipeline.config import TrainVAEConfig
from pipeline.train_vae import train_vae
from tests.conftest import make_split

CFG = TrainVAEConfig(
    latent_size=4,
    channels=(8, 16),
    strides=(2, 2),
    reconstruction="bce",
    beta=1.0,
    kl_warmup_epochs=2,
    epochs=6,
    batch_size=8,
    learning_rate=0.005,
    seed=0,
)


def test_loss_decreases_and_best_epoch_is_kept():
    train, val = make_split(32, seed=0), make_split(16, seed=1)
    model, history = train_vae(train, val, CFG, torch.device("cpu"))
    assert len(history) == CFG.epochs
    assert history[-1]["train_elbo"] < history[0]["train_elbo"]
    assert history[-1]["train_reconstruction"] < history[0]["train_reconstruction"]
    assert sum(h.get("best", False) for h in history) >= 1
    assert not model.training


def test_same_seed_same_model():
    train, val = make_split(16), make_split(8, seed=1)
    short = TrainVAEConfig(**{**CFG.__dict__, "epochs": 2})
    (a, ha), (b, hb) = (
        train_vae(train, val, short, torch.device("cpu")),
        train_vae(train, val, short, torch.device("cpu")),
    )
    assert ha == hb
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
