"""Typed, validated views of ``params.yaml``.

Each section becomes a frozen dataclass. Stages call :func:`load_section` once in ``main()`` and pass the
fields on to their core functions, which never read ``params.yaml`` themselves. Validation happens here,
with an error that names the key and what is allowed.

A field's comment says what the setting does; its range is the check in ``__post_init__`` (or its ``Literal``).
Why a default is what it is, with the numbers measured, is in docs/measurements.md ("Why the defaults are what
they are"), not here.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

__all__ = [
    "RecommendConfig",
    "RULE_NAMES",
    "ConfigError",
    "DataConfig",
    "PathsConfig",
    "DemoDataConfig",
    "PreprocessConfig",
    "GENERATOR_KINDS",
    "SAMPLER_NAMES",
    "FILTER_NAMES",
    "GeneratorConfig",
    "VAEConfig",
    "VAEGANConfig",
    "LatentDiffusionConfig",
    "GenerateConfig",
    "TrainClassifierConfig",
    "AnomalyConfig",
    "LatentConfig",
    "QualityConfig",
    "STRATEGY_NAMES",
    "SECTIONS",
    "load_section",
    "parse_section",
]

PARAMS_FILE = Path("params.yaml")


class ConfigError(ValueError):
    """A key of params.yaml is missing, unknown or has a value outside what is allowed."""


@dataclass(frozen=True)
class DataConfig:
    root: str  # dataset folder holding labels.csv


@dataclass(frozen=True)
class ComputeConfig:
    device: str  # auto (the first CUDA GPU when there is one, else the CPU) | cpu | cuda | cuda:N
    deterministic: bool  # deterministic kernels (bit-identical CPU runs); false lets cuDNN benchmark the fastest ones
    processes: int = 1  # training processes on this machine (> 1: the training stages run through torchrun, one GPU
    # each with device auto/cuda, else CPU processes; pipeline.distributed)
    workers: int = 0  # processes that run a stage's independent trainings side by side (train_classifier's remedies
    # x seeds), each with its share of the torch threads; 0 = one per core on a CPU (at most 8), one on a GPU
    # (pipeline.workers)

    def __post_init__(self) -> None:
        _check(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            "compute.device",
            "auto, cpu, cuda or cuda:N (N the GPU's index)",
        )
        _check(self.processes >= 1, "compute.processes", "at least 1")
        _check(self.workers >= 0, "compute.workers", "0 (one per core on a CPU) or a positive number")
        _check(
            self.processes == 1 or ":" not in self.device,
            "compute.device",
            "auto, cpu or cuda when compute.processes > 1 (rank r uses cuda:r; cuda:N pins one GPU)",
        )


@dataclass(frozen=True)
class PathsConfig:
    demo: str  # output folder of the demo_data stage
    processed: str  # output folder of the preprocess stage
    generator: str  # checkpoint of the train_generator stage
    anomaly_vae: str  # checkpoint of the normal-class VAE of the anomaly stage
    synthetic: str  # output folder of the generate stage
    reports: str  # report, metrics, plots and figures


@dataclass(frozen=True)
class DemoDataConfig:
    n_patients: int  # patients in the demo dataset
    slices_per_patient: int  # CT slices per patient
    minority_fraction: float  # share of patients with a nodule
    nifti_fraction: float  # share of patients stored as NIfTI volumes
    layout: Literal["mixed", "volumes"]  # mixed: also single DICOM slices; volumes: every patient one volume
    image_size: int  # in-plane matrix of the generated slices
    seed: int  # generator seed
    sites: int = 1  # simulated scanners (pipeline.demo_data.SCANNERS), each patient scanned on one

    def __post_init__(self) -> None:
        _check(self.n_patients >= 6, "demo_data.n_patients", "at least 6")
        _check(self.slices_per_patient >= 1, "demo_data.slices_per_patient", "at least 1")
        _check(0 < self.minority_fraction < 0.5, "demo_data.minority_fraction", "between 0 and 0.5")
        _check(0 <= self.nifti_fraction <= 1, "demo_data.nifti_fraction", "between 0 and 1")
        _check(self.image_size >= 32, "demo_data.image_size", "at least 32")
        _check(1 <= self.sites <= 3, "demo_data.sites", "between 1 and 3 (the simulated scanners)")


@dataclass(frozen=True)
class PreprocessConfig:
    size: int  # output images are size x size (x size for spatial_dims 3)
    spatial_dims: Literal[2, 3]  # 2: volumes become slices (slice_policy); 3: volumes are kept whole
    spacing: tuple[float, ...] | None  # target voxel spacing in mm per axis (<= 0 keeps an axis); None: keep
    modality_default: Literal["CT", "MR", "CR", "DX", "US"]  # modality of files that do not state one
    ct_window: Literal["custom", "lung", "mediastinum", "abdomen", "brain", "bone"]  # CT window preset
    ct_window_level: float  # CT window centre (HU), used when ct_window is custom
    ct_window_width: float  # CT window width (HU), used when ct_window is custom
    slice_policy: Literal["all", "middle", "even"]  # how 3D volumes become 2D images
    slices_per_volume: int  # number of evenly spaced slices for slice_policy even
    val_fraction: float  # share of patients for validation
    test_fraction: float  # share of patients for test
    id_salt: str  # salt of the pseudonymous patient IDs
    on_error: Literal["fail", "skip"]  # unreadable or invalid input: stop, or skip it and record why
    allow_burned_in: bool  # accept DICOMs flagged BurnedInAnnotation YES (text in the pixels may identify)
    max_image_gib: float  # largest image accepted, as float32 in memory; larger header declarations are refused
    workers: int  # processes reading files in parallel; 0 = one per core
    seed: int  # split seed
    # output channels: auto (3 when any image is colour, else 1) | 1 (colour to grey, ITU-R BT.601 luma) | 3 (grey
    # repeated); a default, so checkpoints written before colour support still load
    channels: Literal["auto", 1, 3] = "auto"
    # patient: patients drawn into train/val/test (stratified) | site: one site of labels.csv's site column held out
    # as the test split, the other sites' patients split into train and val
    split_by: Literal["patient", "site"] = "patient"

    def __post_init__(self) -> None:
        # the VAE checks that its strides divide the size (28 for MedMNIST works with strides [2, 2])
        _check(self.size >= 8, "preprocess.size", "at least 8")
        _check(self.ct_window_width > 0, "preprocess.ct_window_width", "positive")
        _check(self.spacing is None or 1 <= len(self.spacing) <= 3, "preprocess.spacing", "null or a list of 1 to 3 mm")
        _check(self.slices_per_volume >= 1, "preprocess.slices_per_volume", "at least 1")
        _check(0 < self.val_fraction < 0.5, "preprocess.val_fraction", "between 0 and 0.5")
        _check(0 < self.test_fraction < 0.5, "preprocess.test_fraction", "between 0 and 0.5")
        _check(bool(self.id_salt), "preprocess.id_salt", "a non-empty string")
        _check(self.max_image_gib > 0, "preprocess.max_image_gib", "positive (GiB)")
        _check(self.workers >= 0, "preprocess.workers", "0 (one per core) or a positive number")


# Choices written once, as the registries' names; the Literal fields below are built from them at run time, which
# mypy cannot follow (hence their `type: ignore[valid-type]`); the validation reads the same tuples.
GENERATOR_KINDS = ("vae", "vae_gan", "latent_diffusion")  # pipeline.generators.GENERATORS (a test checks)
SAMPLER_NAMES = ("prior", "posterior", "interpolate", "bootstrap")  # the registry of pipeline.generators.samplers
# filters of the synthetic pool (pipeline.generators.sampling applies those listed in this order, cheapest first)
FILTER_NAMES = ("consistency", "classifier", "manifold")


@dataclass(frozen=True)
class GeneratorConfig:
    # which generator the train_generator stage trains; its settings: the section of that name
    kind: Literal[GENERATOR_KINDS]  # type: ignore[valid-type]
    mode: Literal["conditional", "per_class"]  # one class-conditional network, or one network per class
    seed: int  # initialisation and shuffling seed


@dataclass(frozen=True)
class TrainingConfig:
    """What the autoencoder training loop of every generator reads (pipeline.generators.vae)."""

    reconstruction: Literal["bce", "mse", "l1"]  # reconstruction loss
    beta: float  # KL weight after warm-up
    kl_warmup_epochs: int  # epochs of linear KL warm-up (0 = none)
    free_bits: float  # minimum KL per latent dimension in the loss, in nats (0 = off)
    epochs: int  # maximum training epochs
    patience: int  # stop after this many epochs without a better validation loss (0 = never)
    batch_size: int  # minibatch size
    learning_rate: float  # Adam learning rate
    amp: bool  # mixed precision on CUDA (ignored on CPU)
    # mode per_class: every class's network takes as many steps an epoch as the largest class's (its images
    # repeated), so a minority's network trains as long as the majority's instead of a few steps an epoch.
    # A default only for checkpoints saved before it existed; params.yaml names it like every key
    balanced_steps: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        section = _section_name(self)
        _check(self.free_bits >= 0, f"{section}.free_bits", "non-negative")
        _check(self.patience >= 0, f"{section}.patience", "0 (off) or a positive number of epochs")
        _check(self.beta >= 0, f"{section}.beta", "non-negative")
        _check(self.kl_warmup_epochs >= 0, f"{section}.kl_warmup_epochs", "non-negative")
        _check(self.epochs >= 1 and self.batch_size >= 1, f"{section}.epochs/batch_size", "at least 1")
        _check(self.learning_rate > 0, f"{section}.learning_rate", "positive")


@dataclass(frozen=True)
class AdversarialConfig(TrainingConfig):
    """The discriminator that trains an autoencoder against blur (pipeline.generators.vae_gan)."""

    discriminator_channels: int  # channels of the PatchDiscriminator's first layer (doubled per layer)
    discriminator_layers: int  # its strided convolution layers (3: a ~34-pixel receptive field)
    discriminator_norm: Literal["instance", "batch"]  # its normalisation; batch norm over the all-real and all-fake
    # batches the discriminator is shown normalises away what tells them apart
    discriminator_learning_rate: float  # its own Adam learning rate
    adversarial_weight: float  # weight of the least-squares adversarial loss in the autoencoder's loss
    feature_matching_weight: float  # weight of the L1 distance between the discriminator's features of real
    # images and of their reconstructions (learned similarity, Larsen et al. 2016)
    adversarial_warmup_epochs: int  # epochs of autoencoder training before the discriminator joins

    def __post_init__(self) -> None:
        super().__post_init__()
        section = _section_name(self)
        _check(self.discriminator_channels >= 1, f"{section}.discriminator_channels", "at least 1")
        _check(self.discriminator_layers >= 1, f"{section}.discriminator_layers", "at least 1")
        _check(self.discriminator_learning_rate > 0, f"{section}.discriminator_learning_rate", "positive")
        _check(self.adversarial_weight >= 0, f"{section}.adversarial_weight", "non-negative")
        _check(self.feature_matching_weight >= 0, f"{section}.feature_matching_weight", "non-negative")
        _check(self.adversarial_warmup_epochs >= 0, f"{section}.adversarial_warmup_epochs", "non-negative")


@dataclass(frozen=True)
class VAEConfig(TrainingConfig):
    latent_size: int  # latent dimension
    channels: tuple[int, ...]  # encoder channels per level
    strides: tuple[int, ...]  # downsampling per level
    res_units: int  # residual units per level (0 = plain convolutions)
    # how the decoder enlarges its feature maps: resize (nearest-neighbour upsampling, then a convolution) |
    # transposed (strided transposed convolution: a checkerboard in the images)
    upsample: Literal["resize", "transposed"] = "resize"

    def __post_init__(self) -> None:
        super().__post_init__()
        section = _section_name(self)
        _check(self.latent_size >= 1, f"{section}.latent_size", "at least 1")
        _check(self.res_units >= 0, f"{section}.res_units", "0 or more")
        _check(len(self.channels) >= 2, f"{section}.channels", "at least two levels")
        _check(len(self.strides) == len(self.channels), f"{section}.strides", "as many entries as channels")


@dataclass(frozen=True)
class VAEGANConfig(VAEConfig, AdversarialConfig):
    """The VAE's settings plus its discriminator's."""


@dataclass(frozen=True)
class LatentDiffusionConfig(AdversarialConfig):
    """A KL autoencoder with a spatial latent (trained like vae_gan) and a diffusion model on its latents."""

    channels: tuple[int, ...]  # autoencoder channels per level; each level after the first halves the image
    latent_channels: int  # channels of the spatial latent
    num_res_blocks: int  # residual blocks per level of the autoencoder
    diffusion_channels: tuple[int, ...]  # the diffusion UNet's channels per level (attention at the last)
    diffusion_epochs: int  # maximum epochs of the diffusion model
    diffusion_patience: int  # its early stopping (0 = never)
    diffusion_batch_size: int
    diffusion_learning_rate: float
    train_timesteps: int  # noise levels of the DDPM schedule
    sampling_steps: int  # DDIM steps when sampling (fewer: faster, coarser)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.reconstruction != "bce", "latent_diffusion.reconstruction", "l1 or mse (its decoder is linear)")
        _check(len(self.channels) >= 2, "latent_diffusion.channels", "at least two levels")
        _check(all(c % 8 == 0 for c in self.channels), "latent_diffusion.channels", "multiples of 8 (group norm)")
        _check(
            len(self.diffusion_channels) >= 2 and all(c % 8 == 0 for c in self.diffusion_channels),
            "latent_diffusion.diffusion_channels",
            "at least two levels, each a multiple of 8",
        )
        _check(self.latent_channels >= 1 and self.num_res_blocks >= 1, "latent_diffusion.latent_channels", ">= 1")
        _check(self.diffusion_epochs >= 1 and self.diffusion_batch_size >= 1, "latent_diffusion.diffusion_*", ">= 1")
        _check(self.diffusion_patience >= 0, "latent_diffusion.diffusion_patience", "0 (off) or more")
        _check(self.diffusion_learning_rate > 0, "latent_diffusion.diffusion_learning_rate", "positive")
        _check(  # the beta schedule (MONAI's LDM tutorials, 0.0015 -> 0.0195) reaches pure noise only with enough steps
            self.train_timesteps >= 500, "latent_diffusion.train_timesteps", "at least 500 (1000 is usual)"
        )
        _check(
            1 <= self.sampling_steps <= self.train_timesteps,
            "latent_diffusion.sampling_steps",
            "between 1 and train_timesteps",
        )


def _section_name(cfg: object) -> str:
    return next((name for name, cls in SECTIONS.items() if cls is type(cfg)), type(cfg).__name__)


@dataclass(frozen=True)
class GenerateConfig:
    pool_margin: float  # images per class beyond what train_classifier's settings take at most (a share of it)
    every_class: bool  # at least as many images of every class as its real training split (the quality stage's)
    sampler: Literal[SAMPLER_NAMES]  # type: ignore[valid-type]  # where latent codes come from
    temperature: float  # scale of the sampling spread
    mixture_components: int  # Gaussians in the posterior sampler's mixture (fewer if the class is small)
    bootstrap_noise: float  # standard deviation of the noise the bootstrap sampler adds to a real latent
    filter: tuple[Literal[FILTER_NAMES], ...]  # type: ignore[valid-type]  # a sample is kept when every listed filter keeps it ([] = all kept):
    # consistency (the generator reproduces it), classifier (a classifier of the real images calls it its class),
    # manifold (inside a real training image's k-NN ball in that classifier's features); see generate.py
    filter_quantile: float  # the share of real images of a class that would pass consistency / classifier
    manifold_k: int  # manifold: a real image's ball reaches its k-th nearest real neighbour of the class
    judge: Literal["classical", "real_only"]  # how the reference classifier of the real images trains (its remedy)
    seed: int  # sampling seed

    def __post_init__(self) -> None:
        _check(0 <= self.pool_margin <= 10, "generate.pool_margin", "between 0 and 10")
        _check(self.temperature > 0, "generate.temperature", "positive")
        _check(self.mixture_components >= 1, "generate.mixture_components", "at least 1")
        _check(self.bootstrap_noise >= 0, "generate.bootstrap_noise", "non-negative")
        _check(0 < self.filter_quantile <= 1, "generate.filter_quantile", "in (0, 1]")
        _check(len(set(self.filter)) == len(self.filter), "generate.filter", "a list without repeats")
        _check(self.manifold_k >= 1, "generate.manifold_k", "at least 1")


STRATEGY_NAMES = (
    "real_only",
    "class_weight",
    "oversample",
    "classical",
    "smote",
    "logit_adjust",
    "focal",
    "mixup",
    "vae",
    "vae_classical",
    "synthetic_only",
)


@dataclass(frozen=True)
class TrainClassifierConfig:
    strategies: tuple[Literal[STRATEGY_NAMES], ...]  # type: ignore[valid-type]  # remedies compared (the train_classifier stage trains each)
    synthetic_ratio: float  # vae strategies: synthetic images per minority class, as a multiple of its gap
    ablation_ratios: tuple[float, ...]  # the vae strategy also trained at these ratios (the ablation curve)
    network: Literal["resnet_small", "resnet18", "densenet121"]  # classifier architecture (MONAI networks)
    channels: tuple[int, ...]  # resnet_small: channels of the four ResNet levels
    blocks_per_level: int  # resnet_small: residual blocks per level
    stem_stride: int  # resnet_small: stride of the first convolution (1 | 2)
    epochs: int  # maximum training epochs, the same for every strategy
    patience: int  # early stopping: epochs without a better validation score (0 = train all epochs)
    batch_size: int  # minibatch size
    learning_rate: float  # Adam learning rate
    seeds: tuple[int, ...]  # one training run per seed and strategy
    amp: bool = True  # mixed precision when a CUDA GPU is used (no effect on CPU)
    # real_only also trained on a seeded share of each minority class's training patients (the minority learning
    # curve that prices the other remedies in real images: pipeline.worth); () = off
    learning_curve: tuple[float, ...] = ()
    shift_stress: bool = True  # also score every classifier on the test split under acquisition shifts
    logit_adjust_tau: float = 1.0  # logit_adjust: training loss CE(logits + tau * log(class prior)); 0 = plain CE
    focal_gamma: float = 2.0  # focal: loss -(1 - p)^gamma log p of the true class; 0 = plain CE
    mixup_alpha: float = 0.2  # mixup (Balanced-MixUp): weight of the instance batch ~ Beta(alpha, 1)
    synthetic_weight: float = 1.0  # vae strategies: loss weight of a synthetic image (a real one weighs 1)
    real_epochs: int = 0  # vae strategies: the last real_epochs epochs (at most epochs - 1) on the real images only
    # vae strategies: every class, the majority included, also gets this multiple of ratio x the largest gap in
    # synthetic images, so that looking synthetic is no sign of the minority (0: only minority classes get them)
    synthetic_all_classes: float = 0.0

    def __post_init__(self) -> None:
        _check(len(self.channels) == 4, "train_classifier.channels", "a list of 4 channel counts")
        _check(self.blocks_per_level >= 1, "train_classifier.blocks_per_level", "at least 1")
        _check(self.stem_stride in (1, 2), "train_classifier.stem_stride", "1 or 2")
        _check(self.epochs >= 1 and self.batch_size >= 1, "train_classifier.epochs/batch_size", "at least 1")
        _check(self.patience >= 0, "train_classifier.patience", "0 (off) or a positive number of epochs")
        _check(self.learning_rate > 0, "train_classifier.learning_rate", "positive")
        _check(len(self.seeds) >= 1, "train_classifier.seeds", "a non-empty list")
        _check(len(set(self.seeds)) == len(self.seeds), "train_classifier.seeds", "a list without repeats")
        _check("real_only" in self.strategies, "train_classifier.strategies", "a list that includes real_only")
        _check(len(set(self.strategies)) == len(self.strategies), "train_classifier.strategies", "without repeats")
        _check(0 < self.synthetic_ratio <= 10, "train_classifier.synthetic_ratio", "in (0, 10]")
        _check(
            all(0 < r <= 10 for r in self.ablation_ratios),
            "train_classifier.ablation_ratios",
            "a list of ratios in (0, 10] (0 is real_only, already in the curve)",
        )
        _check(
            all(0 < f < 1 for f in self.learning_curve) and len(set(self.learning_curve)) == len(self.learning_curve),
            "train_classifier.learning_curve",
            "a list of different shares in (0, 1), e.g. [0.25, 0.5], or []",
        )
        _check(self.logit_adjust_tau >= 0, "train_classifier.logit_adjust_tau", "non-negative")
        _check(self.focal_gamma >= 0, "train_classifier.focal_gamma", "non-negative")
        _check(self.mixup_alpha > 0, "train_classifier.mixup_alpha", "positive")
        _check(0 <= self.synthetic_weight <= 10, "train_classifier.synthetic_weight", "in [0, 10]")
        _check(self.real_epochs >= 0, "train_classifier.real_epochs", "0 (off) or a positive number of epochs")
        _check(0 <= self.synthetic_all_classes <= 10, "train_classifier.synthetic_all_classes", "in [0, 10]")


@dataclass(frozen=True)
class AnomalyConfig:
    normal_class: (
        str | None
    )  # class the anomaly VAE (section vae) learns as normal; None: the largest class of the training split
    score: Literal["reconstruction", "elbo"]  # primary anomaly score (threshold, sensitivity); both are reported
    n_maps: int  # highest-scoring test images shown with their pixel-wise error maps
    epochs: int  # training epochs of the normal-class VAE (the rest of its settings from section vae)

    def __post_init__(self) -> None:
        _check(self.n_maps >= 1, "anomaly.n_maps", "at least 1")
        _check(self.epochs >= 1, "anomaly.epochs", "at least 1")


@dataclass(frozen=True)
class LatentConfig:
    sizes: tuple[int, ...]  # latent sizes at which the VAE is compared with PCA and ICA (same number of components)
    epochs: int  # training epochs of each unconditional VAE (the rest of its settings from section vae)
    noise_levels: tuple[float, ...]  # standard deviations of the Gaussian noise of the denoising test
    tsne: bool  # also project the test latents with t-SNE (PCA always)
    traversal_dims: int  # latent dimensions with the highest KL shown in the traversal

    def __post_init__(self) -> None:
        _check(bool(self.sizes) and min(self.sizes) >= 1, "latent.sizes", "a non-empty list of positive sizes")
        _check(self.epochs >= 1, "latent.epochs", "at least 1")
        _check(all(0 < s < 1 for s in self.noise_levels), "latent.noise_levels", "values between 0 and 1")
        _check(self.traversal_dims >= 1, "latent.traversal_dims", "at least 1")


@dataclass(frozen=True)
class QualityConfig:
    nearest_k: int  # k of the k-nearest-neighbour balls of precision, recall, density and coverage
    copy_quantile: float  # synthetic images nearer a training image than this quantile of held-out real ones: copies

    def __post_init__(self) -> None:
        _check(self.nearest_k >= 1, "quality.nearest_k", "at least 1")
        _check(0 < self.copy_quantile < 0.5, "quality.copy_quantile", "between 0 and 0.5")


# how the compare stage recommends a remedy on the validation split (pipeline.compare.RULES describes each)
RULE_NAMES = ("one_se", "best", "crossfit_one_se", "crossfit_best", "auroc_best")


@dataclass(frozen=True)
class LearningCurveConfig:
    # remedies also trained at each share of train_classifier.learning_curve, a generator trained on that share
    # alone drawing their synthetic images: any of train_classifier.strategies, or best_classical (the remedy without
    # synthetic images, real_only aside, with the highest validation balanced accuracy); () = off
    remedies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = set(STRATEGY_NAMES) | {"best_classical"}
        _check(
            all(r in known for r in self.remedies) and len(set(self.remedies)) == len(self.remedies),
            "learning_curve.remedies",
            f"a list without repeats of {sorted(known)} (real_only's curve is train_classifier.learning_curve), or []",
        )
        _check("real_only" not in self.remedies, "learning_curve.remedies", "remedies other than real_only")


@dataclass(frozen=True)
class RecommendConfig:
    rule: Literal[RULE_NAMES]  # type: ignore[valid-type]  # the selection rule (docs/report.md#the-recommendation)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "compute": ComputeConfig,
    "paths": PathsConfig,
    "demo_data": DemoDataConfig,
    "preprocess": PreprocessConfig,
    "generator": GeneratorConfig,
    "vae": VAEConfig,
    "vae_gan": VAEGANConfig,
    "latent_diffusion": LatentDiffusionConfig,
    "generate": GenerateConfig,
    "train_classifier": TrainClassifierConfig,
    "anomaly": AnomalyConfig,
    "latent": LatentConfig,
    "quality": QualityConfig,
    "recommend": RecommendConfig,
    "learning_curve": LearningCurveConfig,
}

T = TypeVar("T")


def _check(ok: bool, key: str, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"params.yaml: {key} must be {allowed}")


def _convert(key: str, value: Any, annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"params.yaml: {key} is {value!r}; allowed values: {', '.join(map(str, allowed))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"params.yaml: {key} must be a list, got {value!r}")
        return tuple(_convert(f"{key}[{i}]", v, get_args(annotation)[0]) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(get_args(annotation)):
            return None
        if len(options) == 1:
            return _convert(key, value, options[0])
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and type(value) is not annotation:
        raise ConfigError(f"params.yaml: {key} must be of type {annotation.__name__}, got {value!r}")
    return value


def parse_section(name: str, raw: Any, cls: type[T]) -> T:
    """Build the dataclass ``cls`` from the mapping ``raw`` found under ``name`` in params.yaml."""
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: section '{name}' must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigError(f"params.yaml: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}")
    missing = sorted(fields - set(raw))
    if missing:
        raise ConfigError(f"params.yaml: missing key(s) {', '.join(f'{name}.{k}' for k in missing)}")
    values = {k: _convert(f"{name}.{k}", v, hints[k]) for k, v in raw.items()}
    return cls(**values)


def load_section(name: str, params_file: str | Path = PARAMS_FILE) -> Any:
    """Read ``params_file`` and return the validated dataclass of section ``name``."""
    if name not in SECTIONS:
        raise ConfigError(f"unknown params section '{name}'; known: {', '.join(SECTIONS)}")
    with open(params_file, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if name not in params:
        raise ConfigError(f"{params_file}: section '{name}' is missing")
    return parse_section(name, params[name], SECTIONS[name])
