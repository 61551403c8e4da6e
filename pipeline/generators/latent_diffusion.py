"""Generator ``latent_diffusion``: a spatial latent that keeps where a lesion is, and a class-conditional diffusion
model that draws new latents (Rombach et al. 2022, as in MONAI's generative tutorials).

1. An autoencoder: MONAI's ``AutoencoderKL``, images of ``(C, X, Y[, Z])`` to a latent of ``latent_channels`` x
   (each spatial size halved once per level after the first), trained like ``vae_gan`` (the same loop: L1
   reconstruction, a small KL weight, the class-conditional patch discriminator with least-squares and feature
   matching losses after an adversarial warm-up; best validation epoch kept, early stopping).
2. A diffusion model: MONAI's ``DiffusionModelUNet`` predicting the noise added to the autoencoder's latents
   (standardised per channel to zero mean and unit variance, the statistics kept), with a DDPM schedule of
   ``train_timesteps`` steps and the class as its class embedding; best validation epoch (noise-prediction MSE at
   fixed noise) kept, early stopping. Sampling runs ``sampling_steps`` DDIM steps (no clipping) from Gaussian
   noise drawn from the caller's generator, so the same seed gives the same images.

``mode: conditional`` trains one autoencoder and one diffusion model over every class; ``per_class`` one of each
per class. The latent samplers see the flattened latent: ``prior`` is the diffusion model (:meth:`prior`),
``posterior``, ``bootstrap`` and ``interpolate`` work on the autoencoder's codes as for a VAE.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, Self, cast

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn

from pipeline.config import LatentDiffusionConfig
from pipeline.generators.base import one_class
from pipeline.generators.vae_gan import VAEGANGenerator
from pipeline.io.arrays import ImageArray, SplitData
from pipeline.models.training import Schedule, Step, Trainee, amp_enabled, fit
from pipeline.runtime import seed_everything

__all__ = ["LatentDiffusionGenerator", "KLAutoencoder", "DiffusionPrior"]

logger = logging.getLogger(__name__)

_BATCH = 256
_SCHEDULE: dict[str, Any] = {
    "schedule": "scaled_linear_beta",
    "beta_start": 0.0015,
    "beta_end": 0.0195,
}  # as MONAI's LDM tutorials


class KLAutoencoder(nn.Module):
    """MONAI's ``AutoencoderKL`` behind the calls the VAE training loop makes: ``forward(x, y)`` gives the
    reconstruction, posterior mean, log-variance and sampled code, codes flattened to ``(n, latent_size)``. One
    autoencoder serves every class it was trained on (the label is not an input: the diffusion model is the
    class-conditional part)."""

    def __init__(
        self,
        image_shape: tuple[int, ...],
        num_classes: int,
        channels: tuple[int, ...],
        latent_channels: int,
        num_res_blocks: int,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = num_classes
        self.args = {
            "image_shape": list(self.image_shape),
            "num_classes": num_classes,
            "channels": list(channels),
            "latent_channels": latent_channels,
            "num_res_blocks": num_res_blocks,
        }
        factor = 2 ** (len(channels) - 1)
        spatial = self.image_shape[1:]
        if any(s % factor for s in spatial):
            raise ValueError(
                f"latent_diffusion.channels has {len(channels)} levels, which halve the image {len(channels) - 1} "
                f"times; images of {'x'.join(map(str, spatial))} are not divisible by {factor}"
            )
        self.latent_shape = (latent_channels, *(s // factor for s in spatial))
        self.latent_size = math.prod(self.latent_shape)
        self.net = AutoencoderKL(
            spatial_dims=len(spatial),
            in_channels=self.image_shape[0],
            out_channels=self.image_shape[0],
            channels=tuple(channels),
            latent_channels=latent_channels,
            num_res_blocks=num_res_blocks,
            attention_levels=(False,) * len(channels),
            norm_num_groups=8,
            with_encoder_nonlocal_attn=False,
            with_decoder_nonlocal_attn=False,
            use_convtranspose=False,  # nearest-neighbour upsampling and a convolution: no checkerboard
        )

    def spatial_encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, sigma = self.net.encode(x)
        return mu, 2 * torch.log(sigma)

    def encode_forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.spatial_encode(x)
        return mu.flatten(1), logvar.flatten(1)

    def decode_forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from flat codes."""
        return self.net.decode(z.view(len(z), *self.latent_shape)).clamp(0, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        mu, logvar = self.spatial_encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.net.decode(z), mu.flatten(1), logvar.flatten(1), z.flatten(1)


def _channel_view(values: list[float], z: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=z.dtype, device=z.device).view(1, -1, *([1] * (z.ndim - 2)))


def _to_unit(z: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
    return (z - _channel_view(stats["mean"], z)) / _channel_view(stats["std"], z)


def _from_unit(z: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
    return z * _channel_view(stats["std"], z) + _channel_view(stats["mean"], z)


def _unet(latent_shape: tuple[int, ...], num_labels: int, channels: tuple[int, ...]) -> DiffusionModelUNet:
    return DiffusionModelUNet(
        spatial_dims=len(latent_shape) - 1,
        in_channels=latent_shape[0],
        out_channels=latent_shape[0],
        channels=tuple(channels),
        attention_levels=(False,) * (len(channels) - 1) + (True,),
        num_res_blocks=1,
        norm_num_groups=8,
        num_head_channels=8,
        num_class_embeds=num_labels,
    )


class DiffusionPrior:
    """The ``prior`` sampler of a latent diffusion generator: DDIM from Gaussian noise (scaled by ``temperature``)
    drawn from the caller's ``rng``, to flat codes the autoencoder decodes."""

    name: ClassVar[str] = "prior"
    needs_codes: ClassVar[bool] = False

    def __init__(self, generator: LatentDiffusionGenerator, label: int, temperature: float = 1.0) -> None:
        self.generator, self.label, self.temperature = generator, label, temperature

    def fit(self, codes: np.ndarray) -> DiffusionPrior:
        return self

    @torch.no_grad()
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        gen = self.generator
        index, y = (0, self.label) if gen.mode == "conditional" else (self.label, 0)
        unet, stats = gen.unets[index], gen.latent_stats[index]
        shape = gen.autoencoder(index).latent_shape
        device = next(unet.parameters()).device
        # no clipping of the predicted clean latent to [-1, 1] (meant for images; latents are not bounded there)
        scheduler = DDIMScheduler(num_train_timesteps=gen.cfg.train_timesteps, clip_sample=False, **_SCHEDULE)
        scheduler.set_timesteps(gen.cfg.sampling_steps)
        out = []
        for start in range(0, n, _BATCH):
            m = min(_BATCH, n - start)
            noise = rng.standard_normal((m, *shape)) * self.temperature
            z = torch.from_numpy(noise).float().to(device)
            labels = torch.full((m,), y, device=device, dtype=torch.long)
            for t in scheduler.timesteps:
                steps = torch.full((m,), int(t), device=device, dtype=torch.long)
                z, _ = scheduler.step(unet(z, timesteps=steps, class_labels=labels), t, z)
            out.append(_from_unit(z, stats).flatten(1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, math.prod(shape)))


class _DiffusionTraining(Trainee):
    """A diffusion model on standardised latents for :func:`pipeline.models.training.fit`: the MSE of the noise it
    predicts at random noise levels; validated at the same noise and noise levels every epoch."""

    monitor = "diffusion"

    def __init__(
        self,
        unet: DiffusionModelUNet,
        name: str,
        latents: dict[str, tuple[torch.Tensor, torch.Tensor]],
        cfg: LatentDiffusionConfig,
        seed: int,
        device: torch.device,
    ) -> None:
        super().__init__(unet, name)
        self.latents, self.cfg, self.device = latents, cfg, device
        self.use_amp = amp_enabled(cfg.amp, device)
        self.scheduler = DDPMScheduler(num_train_timesteps=cfg.train_timesteps, **_SCHEDULE)
        self.shuffle = torch.Generator().manual_seed(seed)  # the batches, their noise and noise levels
        fixed = torch.Generator().manual_seed(seed + 1)  # the same noise and noise levels every validation
        z_val = latents["val"][0]
        self.val_noise = torch.randn(z_val.shape, generator=fixed).to(device)
        self.val_steps = torch.randint(0, cfg.train_timesteps, (len(z_val),), generator=fixed).to(device)

    def batches(self, epoch: int):
        z_train, y_train = self.latents["train"]
        for idx in torch.randperm(len(z_train), generator=self.shuffle).split(self.cfg.diffusion_batch_size):
            idx = idx.to(self.device)
            z = z_train[idx]
            noise = torch.randn(z.shape, generator=self.shuffle).to(self.device)
            steps = torch.randint(0, self.cfg.train_timesteps, (len(z),), generator=self.shuffle).to(self.device)
            yield z, y_train[idx], noise, steps  # the same global batch and noise on every rank

    def loss(self, forward, batch, epoch: int) -> Step:
        z, y, noise, steps = batch
        predicted = forward(self.scheduler.add_noise(z, noise, steps), timesteps=steps, class_labels=y)
        loss = F.mse_loss(predicted.float(), noise)
        return Step(loss, {"diffusion": loss})

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        z_val, y_val = self.latents["val"]
        total = 0.0
        for i in range(0, len(z_val), _BATCH):
            z, noise, steps = z_val[i : i + _BATCH], self.val_noise[i : i + _BATCH], self.val_steps[i : i + _BATCH]
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
                predicted = self.model(
                    self.scheduler.add_noise(z, noise, steps), timesteps=steps, class_labels=y_val[i : i + _BATCH]
                )
            total += F.mse_loss(predicted.float(), noise).item() * len(z)
        return {"diffusion": total / max(len(z_val), 1)}


class LatentDiffusionGenerator(VAEGANGenerator):
    """Autoencoder(s) with a spatial latent plus diffusion model(s) on it (see the module docstring).

    Example::

        gen = LatentDiffusionGenerator((1, 64, 64), ("nodule", "normal"), "conditional", cfg, seed=0)
        history = gen.fit(train, val, torch.device("cpu"))  # autoencoder rows, then "diffusion ..." rows
        images = gen.sample(0, 8, np.random.default_rng(0))
    """

    kind: ClassVar[str] = "latent_diffusion"
    config_class: ClassVar[type] = LatentDiffusionConfig

    def __init__(self, image_shape, classes, mode, cfg: LatentDiffusionConfig, seed: int = 0) -> None:
        super().__init__(image_shape, classes, mode, cfg, seed)
        self.unets: list[DiffusionModelUNet] = []
        self.latent_stats: list[dict[str, list[float]]] = []  # per diffusion model: its latents' channel statistics

    def _network(self, num_classes: int) -> KLAutoencoder:
        cfg = self.cfg
        return KLAutoencoder(self.image_shape, num_classes, cfg.channels, cfg.latent_channels, cfg.num_res_blocks)

    @staticmethod
    def _rebuild(entry: dict[str, Any]) -> KLAutoencoder:
        args = entry["model_args"]
        return KLAutoencoder(
            tuple(args["image_shape"]),
            args["num_classes"],
            tuple(args["channels"]),
            args["latent_channels"],
            args["num_res_blocks"],
        )

    @staticmethod
    def _model_args(model: Any) -> dict[str, Any]:
        return dict(model.args)

    def autoencoder(self, index: int) -> KLAutoencoder:
        """The trained autoencoder ``index`` (the one of ``conditional``, or class ``index``'s)."""
        return cast(KLAutoencoder, self._trained().models[index])

    @property
    def latent_size(self) -> int:
        return self._trained().latent_size

    # ---- training ---------------------------------------------------------------------------------------------

    def fit(self, train: SplitData, val: SplitData, device: torch.device, workers: int = 1) -> list[dict]:
        """The autoencoder(s) as ``vae_gan`` trains them (``workers``: see :meth:`VAEGenerator.fit`), then a
        diffusion model on each one's latents, in turn."""
        history = super().fit(train, val, device, workers)
        self.unets, self.latent_stats = [], []
        if self.mode == "conditional":
            parts = [(self.autoencoder(0), train, val, "conditional" if len(self.classes) > 1 else self.classes[0])]
        else:
            parts = [
                (self.autoencoder(k), one_class(train, k), one_class(val, k), name)
                for k, name in enumerate(self.classes)
            ]
        for autoencoder, tr, va, name in parts:
            seed_everything(self.seed)
            unet, stats, rows = self._fit_diffusion(autoencoder, tr, va, device, f"diffusion {name}")
            self.unets.append(unet)
            self.latent_stats.append(stats)
            history += rows
        return history

    @torch.no_grad()
    def _latents(self, autoencoder: KLAutoencoder, images: ImageArray, device: torch.device) -> torch.Tensor:
        autoencoder.eval()
        parts = [
            autoencoder.spatial_encode(torch.from_numpy(np.ascontiguousarray(images[i : i + _BATCH])).to(device))[0]
            for i in range(0, len(images), _BATCH)
        ]
        return torch.cat(parts).float()

    def _fit_diffusion(
        self, autoencoder: KLAutoencoder, train: SplitData, val: SplitData, device: torch.device, name: str
    ) -> tuple[DiffusionModelUNet, dict[str, list[float]], list[dict]]:
        cfg = self.cfg
        z_train = self._latents(autoencoder, train.images, device)
        # each latent channel to zero mean and unit variance: the noise the schedule adds is on the data's scale
        # (Rombach et al. scale only; this autoencoder's channels sit far from zero)
        dims = [0, *range(2, z_train.ndim)]
        stats = {"mean": z_train.mean(dims).tolist(), "std": z_train.std(dims).clamp_min(1e-6).tolist()}
        z_train, z_val = _to_unit(z_train, stats), _to_unit(self._latents(autoencoder, val.images, device), stats)
        unet = _unet(autoencoder.latent_shape, autoencoder.num_classes, cfg.diffusion_channels).to(device)
        latents = {"train": (z_train, torch.from_numpy(train.labels).to(device))}
        latents["val"] = (z_val, torch.from_numpy(val.labels).to(device))
        trainee = _DiffusionTraining(unet, name, latents, cfg, self.seed, device)
        schedule = Schedule(cfg.diffusion_epochs, cfg.diffusion_learning_rate, cfg.diffusion_patience, cfg.amp)
        result = fit(trainee, schedule, device, desc=f"{self.kind} {name}")
        return unet, stats, result.history

    # ---- sampling ---------------------------------------------------------------------------------------------

    def prior(self, label: int, temperature: float = 1.0) -> DiffusionPrior:
        """The diffusion model of class ``label`` as a latent sampler."""
        if not self.unets:
            raise RuntimeError("the latent_diffusion generator has not been trained (call fit) or loaded")
        if not 0 <= label < len(self.classes):
            raise ValueError(f"class label {label} out of range 0..{len(self.classes) - 1}")
        return DiffusionPrior(self, label, temperature)

    def sample(self, label: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` images of class ``label``: DDIM from noise drawn from ``rng``, decoded."""
        return self.decode(self.prior(label).sample(n, rng), label)

    # ---- checkpoint -------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return super().state() | {
            "diffusion": [
                {"state_dict": unet.state_dict(), "latent_stats": stats}
                for unet, stats in zip(self.unets, self.latent_stats, strict=True)
            ]
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> Self:
        gen = super().from_state(state, device)
        for index, entry in enumerate(state["diffusion"]):
            autoencoder = gen.autoencoder(index)
            unet = _unet(autoencoder.latent_shape, autoencoder.num_classes, gen.cfg.diffusion_channels).to(device)
            unet.load_state_dict(entry["state_dict"])
            gen.unets.append(unet.eval())
            gen.latent_stats.append(entry["latent_stats"])
        return gen
