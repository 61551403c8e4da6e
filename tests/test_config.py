import pytest

from pipeline.config import (
    ConfigError,
    GenerateConfig,
    GeneratorConfig,
    TrainClassifierConfig,
    VAEConfig,
    VAEGANConfig,
    load_section,
    parse_section,
)

VAE = {
    "latent_size": 8,
    "channels": [8, 16],
    "strides": [2, 2],
    "res_units": 0,
    "upsample": "resize",
    "reconstruction": "bce",
    "beta": 1.0,
    "kl_warmup_epochs": 2,
    "free_bits": 0.0,
    "epochs": 2,
    "patience": 0,
    "batch_size": 4,
    "learning_rate": 0.001,
    "amp": True,
    "balanced_steps": False,
}


def test_repository_params_are_valid():
    for name in ("data", "paths", "demo_data", "preprocess", "generator", "vae", "vae_gan", "generate"):
        assert load_section(name) is not None
    assert load_section("train_classifier") is not None


def test_lists_become_tuples_and_ints_become_floats():
    cfg = parse_section("vae", {**VAE, "beta": 2}, VAEConfig)
    assert cfg.channels == (8, 16) and isinstance(cfg.beta, float)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reconstruction": "huber"}, "allowed values: bce, mse, l1"),  # Literal outside its choices
        ({"upsample": "deconv"}, "allowed values: resize, transposed"),
        ({"latent_size": "8"}, "vae.latent_size must be of type int"),  # wrong type
        ({"strides": [2]}, "vae.strides must be as many entries as channels"),  # inconsistent lengths
        ({"beta": -1}, "vae.beta must be non-negative"),  # out of range
        ({"unknown": 1}, "unknown key(s) vae.unknown"),  # typo in a key
    ],
)
def test_validation_names_the_key(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_section("vae", {**VAE, **change}, VAEConfig)


GAN = {
    **VAE,
    "discriminator_channels": 8,
    "discriminator_layers": 2,
    "discriminator_norm": "instance",
    "discriminator_learning_rate": 0.0005,
    "adversarial_weight": 1.0,
    "feature_matching_weight": 1.0,
    "adversarial_warmup_epochs": 1,
}


@pytest.mark.parametrize(
    "section, cls, raw, message",
    [
        (
            "generator",
            GeneratorConfig,
            {"kind": "gan", "mode": "conditional", "seed": 0},
            "allowed values: vae, vae_gan",
        ),
        ("generator", GeneratorConfig, {"kind": "vae", "mode": "both", "seed": 0}, "conditional, per_class"),
        ("vae_gan", VAEGANConfig, {**GAN, "beta": -1}, "vae_gan.beta must be non-negative"),  # the VAE's own keys
        ("vae_gan", VAEGANConfig, {**GAN, "adversarial_weight": -1}, "vae_gan.adversarial_weight must be non-negative"),
        ("vae_gan", VAEGANConfig, VAE, "missing key(s) vae_gan.adversarial_warmup_epochs"),
    ],
)
def test_generator_sections_name_their_keys(section, cls, raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_section(section, raw, cls)


def test_only_the_selected_generator_section_is_read(tmp_path):
    """A broken section of a generator kind that is not selected does not stop a run of another kind."""
    import yaml

    params = yaml.safe_load(open("params.yaml"))
    params["generator"]["kind"] = "vae"
    params["vae_gan"] = {"latent_size": "broken"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    kind = load_section("generator", tmp_path / "params.yaml").kind
    assert load_section(kind, tmp_path / "params.yaml").latent_size == params["vae"]["latent_size"]


def test_missing_key_is_reported():
    with pytest.raises(ConfigError, match="missing key"):
        parse_section("generate", {"pool_margin": 0.0}, GenerateConfig)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"strategies": ["vae"]}, "includes real_only"),  # nothing to compare with
        ({"strategies": ["real_only", "smote_x"]}, "allowed values: real_only"),  # unknown strategy
        ({"strategies": ["real_only", "vae", "vae"]}, "without repeats"),  # one DVC stage per name
        ({"ablation_ratios": [0.0]}, "ablation_ratios must be a list of ratios in (0, 10]"),  # 0 is real_only
        ({"network": "vgg16"}, "allowed values: resnet_small, resnet18, densenet121"),
        ({"patience": -1}, "patience must be 0 (off)"),
        ({"seeds": [0, 0]}, "seeds must be a list without repeats"),  # paired tests need distinct seeds
        ({"logit_adjust_tau": -0.5}, "logit_adjust_tau must be non-negative"),  # 0 is plain cross-entropy
        ({"focal_gamma": -1.0}, "focal_gamma must be non-negative"),  # 0 is plain cross-entropy
        ({"mixup_alpha": 0.0}, "mixup_alpha must be positive"),  # Beta(0, 1) is no distribution
        ({"synthetic_weight": -1.0}, "synthetic_weight must be in [0, 10]"),
        ({"real_epochs": -1}, "real_epochs must be 0 (off) or a positive number of epochs"),
        ({"synthetic_all_classes": -0.5}, "synthetic_all_classes must be in [0, 10]"),
    ],
)
def test_classifier_validation_names_the_key(change, message):
    import yaml

    raw = yaml.safe_load(open("params.yaml"))["train_classifier"]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_section("train_classifier", {**raw, **change}, TrainClassifierConfig)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"filter": ["manifold", "manifold"]}, "generate.filter must be a list without repeats"),  # one test twice
        ({"filter": ["classifier", "realism"]}, "generate.filter[1] is 'realism'; allowed values: consistency"),
        ({"filter": "none"}, "generate.filter must be a list"),  # the single-name form of earlier versions
        ({"manifold_k": 0}, "generate.manifold_k must be at least 1"),  # a ball needs a neighbour
        ({"filter_quantile": 0.0}, "generate.filter_quantile must be in (0, 1]"),
    ],
)
def test_generate_validation_names_the_key(change, message):
    import yaml

    raw = yaml.safe_load(open("params.yaml"))["generate"]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_section("generate", {**raw, **change}, GenerateConfig)


@pytest.mark.parametrize(
    "filters",
    [
        [],  # no filter (the default): every sample is kept
        ["classifier"],
        ["classifier", "manifold"],
        ["manifold", "consistency", "classifier"],  # any order
    ],
)
def test_generate_filter_lists_are_accepted(filters):
    import yaml

    raw = yaml.safe_load(open("params.yaml"))["generate"]
    assert parse_section("generate", {**raw, "filter": filters}, GenerateConfig).filter == tuple(filters)


@pytest.mark.parametrize(
    "section, change, message",
    [
        ("anomaly", {"score": "likelihood"}, "anomaly.score is 'likelihood'; allowed values: reconstruction, elbo"),
        ("anomaly", {"n_maps": 0}, "anomaly.n_maps must be at least 1"),
        ("anomaly", {"epochs": 0}, "anomaly.epochs must be at least 1"),
        ("latent", {"sizes": []}, "latent.sizes must be a non-empty list"),  # nothing to compare
        ("latent", {"sizes": [0, 2]}, "latent.sizes must be a non-empty list of positive sizes"),
        ("latent", {"epochs": 0}, "latent.epochs must be at least 1"),
        ("latent", {"noise_levels": [1.5]}, "latent.noise_levels must be values between 0 and 1"),
        ("latent", {"traversal_dims": 0}, "latent.traversal_dims must be at least 1"),
        ("preprocess", {"max_image_gib": 0}, "preprocess.max_image_gib must be positive"),
        ("quality", {"nearest_k": 0}, "quality.nearest_k must be at least 1"),
        ("quality", {"copy_quantile": 0.7}, "quality.copy_quantile must be between 0 and 0.5"),
    ],
)
def test_anomaly_latent_quality_and_size_limit_validation_names_the_key(section, change, message):
    import yaml

    from pipeline.config import SECTIONS

    raw = yaml.safe_load(open("params.yaml"))[section]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_section(section, {**raw, **change}, SECTIONS[section])
