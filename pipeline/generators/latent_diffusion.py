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
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn
from tqdm import tqdm

from pipeline import distributed
from pipeline.config import LatentDiffusionConfig
from pipeline.generators.base import one_class
from pipeline.generators.vae_gan import VAEGANGenerator
from pipeline.io.arrays import SplitData
from pipeline.runtime import adam, seed_everything

__all__ = ["LatentDiffusionGenerator", "KLAutoencoder", "DiffusionPrior"]

logger = logging.getLogger(__name__)

_BATCH = 256
_SCHEDULE = {"schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}  # as MONAI's LDM tutorials


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

    name = "prior"
    needs_codes = False

    def __init__(self, generator: LatentDiffusionGenerator, label: int, temperature: float = 1.0) -> None:
        self.generator, self.label, self.temperature = generator, label, temperature

    def fit(self, codes: np.ndarray) -> DiffusionPrior:
        return self

    @torch.no_grad()
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        gen = self.generator
        index, y = (0, self.label) if gen.mode == "conditional" else (self.label, 0)
        unet, stats = gen.unets[index], gen.latent_stats[index]
        shape = gen._trained().models[index].latent_shape
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


class LatentDiffusionGenerator(VAEGANGenerator):
    """Autoencoder(s) with a spatial latent plus diffusion model(s) on it (see the module docstring).

    Example::

        gen = LatentDiffusionGenerator((1, 64, 64), ("nodule", "normal"), "conditional", cfg, seed=0)
        history = gen.fit(train, val, torch.device("cpu"))  # autoencoder rows, then "diffusion ..." rows
        images = gen.sample(0, 8, np.random.default_rng(0))
    """

    kind: ClassVar[str] = "latent_diffusion"
    config_class: ClassVar[type] = LatentDiffusionConfig
    cfg: LatentDiffusionConfig

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
    def _model_args(model: KLAutoencoder) -> dict[str, Any]:
        return dict(model.args)

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
            parts = [(self.vaes.models[0], train, val, "conditional" if len(self.classes) > 1 else self.classes[0])]
        else:
            parts = [
                (self.vaes.models[k], one_class(train, k), one_class(val, k), name)
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
    def _latents(self, autoencoder: KLAutoencoder, images: np.ndarray, device: torch.device) -> torch.Tensor:
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
        y_train, y_val = torch.from_numpy(train.labels).to(device), torch.from_numpy(val.labels).to(device)
        unet = _unet(autoencoder.latent_shape, autoencoder.num_classes, cfg.diffusion_channels).to(device)
        net = distributed.wrap(unet)  # DistributedDataParallel on several processes (trains unet's weights)
        optimizer = adam(unet.parameters(), cfg.diffusion_learning_rate)
        scheduler = DDPMScheduler(num_train_timesteps=cfg.train_timesteps, **_SCHEDULE)
        use_amp = cfg.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        shuffle = torch.Generator().manual_seed(self.seed)
        fixed = torch.Generator().manual_seed(self.seed + 1)  # the same noise and noise levels every validation
        val_noise = torch.randn(z_val.shape, generator=fixed).to(device)
        val_steps = torch.randint(0, cfg.train_timesteps, (len(z_val),), generator=fixed).to(device)

        def noise_loss(z, y, noise, steps, unet=unet):  # training passes net (unet, or unet in DDP)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                predicted = unet(scheduler.add_noise(z, noise, steps), timesteps=steps, class_labels=y)
            return F.mse_loss(predicted.float(), noise)

        rows, best_state, best_val, best_epoch = [], None, math.inf, -1
        for epoch in (bar := tqdm(range(cfg.diffusion_epochs), desc=f"{self.kind} {name}", unit="epoch")):
            unet.train()
            total = 0.0
            for idx in torch.randperm(len(z_train), generator=shuffle).split(cfg.diffusion_batch_size):
                idx = idx.to(device)
                z = z_train[idx]
                noise = torch.randn(z.shape, generator=shuffle).to(device)
                steps = torch.randint(0, cfg.train_timesteps, (len(z),), generator=shuffle).to(device)
                y, counted, scale = y_train[idx], len(z), None
                if distributed.active():  # the same global batch and noise on every rank; this rank's shard of it
                    size = len(z)
                    z, y, noise, steps = (distributed.shard(t) for t in (z, y, noise, steps))
                    counted, scale = distributed.tally(size, len(z)), distributed.loss_scale(size, len(z) / size)
                loss = noise_loss(z, y, noise, steps, net)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{self.kind} {name}: loss {loss.item()} at epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss if scale is None else loss * scale).backward()
                scaler.step(optimizer)
                scaler.update()
                total += loss.item() * counted
            if distributed.active():
                total = distributed.sum_over_ranks({"total": total})["total"]
            unet.eval()
            with torch.no_grad():
                val_loss = sum(
                    noise_loss(
                        z_val[i : i + _BATCH],
                        y_val[i : i + _BATCH],
                        val_noise[i : i + _BATCH],
                        val_steps[i : i + _BATCH],
                    ).item()
                    * len(z_val[i : i + _BATCH])
                    for i in range(0, len(z_val), _BATCH)
                ) / max(len(z_val), 1)
            val_loss = distributed.from_main(val_loss)  # the same on every rank (identical weights); rank 0's decides
            rows.append(
                {"model": name, "epoch": epoch, "train_diffusion": total / len(z_train), "val_diffusion": val_loss}
            )
            bar.set_postfix(train_loss=f"{rows[-1]['train_diffusion']:.4f}", val_loss=f"{val_loss:.4f}")
            if val_loss < best_val:
                best_val, best_epoch = val_loss, epoch
                best_state = {k: v.detach().clone() for k, v in unet.state_dict().items()}
                rows[-1]["best"] = True
            if cfg.diffusion_patience and epoch - best_epoch >= cfg.diffusion_patience:
                logger.info(
                    "%s: stopped early at epoch %d, no better validation loss since %d", name, epoch, best_epoch
                )
                break
        unet.load_state_dict(best_state)
        return unet.eval(), stats, rows

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
    def from_state(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> LatentDiffusionGenerator:
        gen = super().from_state(state, device)
        for autoencoder, entry in zip(gen._trained().models, state["diffusion"], strict=True):
            unet = _unet(autoencoder.latent_shape, autoencoder.num_classes, gen.cfg.diffusion_channels).to(device)
            unet.load_state_dict(entry["state_dict"])
            gen.unets.append(unet.eval())
            gen.latent_stats.append(entry["latent_stats"])
        return gen
