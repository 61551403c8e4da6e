"""The generator contract, once for every registered generator (pipeline.generators.GENERATORS), and what each
must learn: a finding planted in one class."""

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.config import GENERATOR_KINDS, AdversarialConfig, LatentDiffusionConfig, VAEConfig, VAEGANConfig
from pipeline.generators import GENERATORS, Generator, build_generator, load_generator, save_generator
from pipeline.generators.base import best_epochs
from tests.conftest import make_split

CPU = torch.device("cpu")
VAE = VAEConfig(
    latent_size=4,
    channels=(8, 16),
    strides=(2, 2),
    res_units=0,
    reconstruction="bce",
    beta=1.0,
    kl_warmup_epochs=2,
    free_bits=0.0,
    epochs=3,
    patience=0,
    batch_size=8,
    learning_rate=0.005,
    amp=True,  # ignored on CPU
)
VAE_GAN = VAEGANConfig(
    **dataclasses.asdict(VAE) | {"reconstruction": "mse", "beta": 0.1, "epochs": 4, "learning_rate": 0.005},
    discriminator_channels=8,
    discriminator_layers=2,
    discriminator_norm="instance",
    discriminator_learning_rate=0.0005,
    adversarial_weight=1.0,
    feature_matching_weight=1.0,
    adversarial_warmup_epochs=2,
)
LATENT_DIFFUSION = LatentDiffusionConfig(
    **{
        k: v
        for k, v in dataclasses.asdict(VAE_GAN).items()
        if k not in ("latent_size", "strides", "res_units", "upsample")
    }
    | {"reconstruction": "l1", "beta": 1e-6, "kl_warmup_epochs": 0, "channels": (8, 16)},
    latent_channels=3,
    num_res_blocks=1,
    diffusion_channels=(8, 16),
    diffusion_epochs=3,
    diffusion_patience=0,
    diffusion_batch_size=8,
    diffusion_learning_rate=0.001,
    train_timesteps=1000,
    sampling_steps=5,
)
SETTINGS = {"vae": VAE, "vae_gan": VAE_GAN, "latent_diffusion": LATENT_DIFFUSION}  # small settings of every kind


def trained_networks(kind: str, networks: list[str]) -> dict[str, int]:
    """The networks a generator of ``kind`` trains for ``networks`` (its autoencoders), with their epochs."""
    settings = SETTINGS[kind]
    out = dict.fromkeys(networks, settings.epochs)
    if kind == "latent_diffusion":
        out |= {f"diffusion {n}": settings.diffusion_epochs for n in networks}
    return out


def test_every_registered_generator_has_a_name_in_config_and_test_settings():
    assert tuple(GENERATORS) == GENERATOR_KINDS
    assert set(SETTINGS) == set(GENERATORS)
    for kind, cls in GENERATORS.items():
        assert cls.kind == kind and isinstance(SETTINGS[kind], cls.config_class)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_every_generator_refuses_a_shape_its_networks_cannot_take_before_training(kind):
    """check_shape builds an untrained network: 16 px passes; 17 px, which a halving cannot give back, fails."""
    build_generator(kind, (1, 16, 16), ("a", "b"), "per_class", SETTINGS[kind]).check_shape()
    with pytest.raises(ValueError, match="divisible"):
        build_generator(kind, (1, 17, 17), ("a", "b"), "per_class", SETTINGS[kind]).check_shape()


def _data(spatial_dims: int, n: int = 16, seed: int = 0):
    split = make_split(n, size=16, seed=seed)
    if spatial_dims == 3:
        volumes = np.random.default_rng(seed).uniform(0, 0.3, (n, 1, 8, 8, 8)).astype(np.float32)
        volumes[split.labels == 1, :, 2:5, 2:5, 2:5] = 0.9
        split = dataclasses.replace(split, images=volumes)
    return split


@pytest.mark.parametrize("mode", ["conditional", "per_class"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generator_contract(tmp_path, kind, spatial_dims, mode):
    train, val = _data(spatial_dims), _data(spatial_dims, 8, seed=1)
    shape = tuple(train.images.shape[1:])
    settings = SETTINGS[kind]
    if spatial_dims == 3 and isinstance(settings, AdversarialConfig):
        settings = dataclasses.replace(settings, discriminator_layers=1)  # 8-voxel volumes: one halving
    gen = build_generator(kind, shape, train.classes, mode, settings, seed=0)
    assert isinstance(gen, Generator)
    history = gen.fit(train, val, CPU)
    networks = ["conditional"] if mode == "conditional" else list(train.classes)
    trained = trained_networks(kind, networks)
    assert set(best_epochs(history)) == set(trained)
    assert len(history) == sum(trained.values())
    # sample: shape, range, seeded
    a = gen.sample(1, 5, np.random.default_rng(3))
    assert a.shape == (5, *shape) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, gen.sample(1, 5, np.random.default_rng(3)))
    assert not np.array_equal(a, gen.sample(1, 5, np.random.default_rng(4)))
    assert gen.sample(0, 0, np.random.default_rng(0)).shape == (0, *shape)
    # encode / decode / reconstruct
    codes = gen.encode(train.images[:3], 0)
    assert codes.shape[0] == 3 and codes.dtype == np.float64
    assert gen.decode(codes, 0).shape == (3, *shape)
    np.testing.assert_array_equal(gen.reconstruct(train.images[:3], 0), gen.decode(codes, 0))
    # save / reload: the kind dispatches, the samples are identical
    save_generator(tmp_path / "g.pt", gen, {"best_epochs": best_epochs(history)})
    loaded, checkpoint = load_generator(tmp_path / "g.pt")
    assert checkpoint["kind"] == kind and type(loaded) is GENERATORS[kind]
    assert loaded.classes == train.classes and loaded.image_shape == shape
    for label in (0, 1):
        b = loaded.sample(label, 4, np.random.default_rng(9))
        np.testing.assert_array_equal(b, gen.sample(label, 4, np.random.default_rng(9)))
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_same_seed_same_generator(kind):
    train, val = _data(2), _data(2, 8, seed=1)
    settings = dataclasses.replace(SETTINGS[kind], epochs=3)
    runs = []
    for _ in range(2):
        gen = build_generator(kind, (1, 16, 16), train.classes, "conditional", settings, seed=0)
        runs.append((gen.fit(train, val, CPU), gen.state()["models"][0]["state_dict"]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(p, q) for p, q in zip(runs[0][1].values(), runs[1][1].values(), strict=True))


def test_checkpoint_of_another_format_or_kind_is_refused(tmp_path):
    torch.save({"format": "medaug-vae-2"}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="re-run the train_generator stage"):
        load_generator(tmp_path / "old.pt")
    torch.save({"format": "medaug-generator-1", "kind": "dream"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="kind 'dream'"):
        load_generator(tmp_path / "other.pt")


def test_a_discriminator_too_deep_for_the_images_is_refused():
    with pytest.raises(ValueError, match="use at most 1 layers"):
        build_generator("vae_gan", (1, 8, 8), ("a", "b"), "conditional", VAE_GAN)  # 2 layers: 8 -> 2 pixels


def test_unknown_kind_and_mode_are_refused():
    with pytest.raises(ValueError, match="unknown generator 'gan'"):
        build_generator("gan", (1, 16, 16), ("a", "b"), "conditional", VAE)
    with pytest.raises(ValueError, match="mode must be conditional or per_class"):
        build_generator("vae", (1, 16, 16), ("a", "b"), "joint", VAE)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generators_take_colour_images(tmp_path, kind):
    """Three-channel (RGB) images: every generator trains on them, samples them in [0, 1] and reloads alike."""
    train, val = _data(2), _data(2, 8, seed=1)
    tint = np.array([0.9, 0.5, 0.2], np.float32)[:, None, None]  # a different level in each channel
    train, val = (dataclasses.replace(s, images=np.repeat(s.images, 3, axis=1) * tint) for s in (train, val))
    settings = SETTINGS[kind]
    gen = build_generator(kind, (3, 16, 16), train.classes, "conditional", settings, seed=0)
    gen.fit(train, val, CPU)
    a = gen.sample(1, 4, np.random.default_rng(0))
    assert a.shape == (4, 3, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert gen.reconstruct(train.images[:2], 0).shape == (2, 3, 16, 16)
    save_generator(tmp_path / "g.pt", gen, {})
    loaded, _ = load_generator(tmp_path / "g.pt")
    assert loaded.image_shape == (3, 16, 16)
    np.testing.assert_array_equal(loaded.sample(1, 4, np.random.default_rng(0)), a)


@pytest.mark.parametrize("balanced", [False, True])
def test_per_class_balanced_steps_repeat_a_small_class_to_the_largest(monkeypatch, balanced):
    """With ``balanced_steps`` each class's network trains on its own images repeated (whole copies) to about the
    largest class's count, so a minority network takes as many steps an epoch; without, on its images once."""
    train = make_split(20, labels=np.array([0] * 16 + [1] * 4))
    val = make_split(8, seed=1)
    seen: dict[str, np.ndarray] = {}
    fit_network = GENERATORS["vae"].fit_network

    def spy(self, model, data, val_data, device, name):
        seen[name] = np.asarray(data.images)
        return fit_network(self, model, data, val_data, device, name)

    monkeypatch.setattr(GENERATORS["vae"], "fit_network", spy)
    settings = dataclasses.replace(VAE, epochs=1, balanced_steps=balanced)
    build_generator("vae", (1, 16, 16), train.classes, "per_class", settings, seed=0).fit(train, val, CPU)
    np.testing.assert_array_equal(seen["a"], train.images[:16])
    small = train.images[16:]
    np.testing.assert_array_equal(seen["b"], np.concatenate([small] * 4) if balanced else small)
