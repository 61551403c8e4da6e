"""Generator ``vae_gan``: the VAE of :mod:`pipeline.generators.vae` trained with a discriminator against blur
(the VAE/GAN of Larsen et al. 2016, as in MONAI's AutoencoderKL tutorials).

A MONAI ``PatchDiscriminator`` judges patches of real images against the VAE's reconstructions of them, with
MONAI's least-squares ``PatchAdversarialLoss``. It is class-conditional: the label enters as one-hot channels beside
the image, so a "nodule" reconstruction without a nodule is told apart from a real nodule image, and the decoder is
pushed to draw the finding of the class it is asked for. The VAE's loss gains ``adversarial_weight`` x the
adversarial loss and ``feature_matching_weight`` x the L1 distance between the discriminator's intermediate
features of the real image and of its reconstruction (a learned similarity standing in for a perceptual loss: no
pretrained weights can be downloaded). The discriminator has its own Adam optimiser and learning rate and joins
after ``adversarial_warmup_epochs`` epochs of plain VAE training; the kept epoch (best validation reconstruction +
beta * KL) is chosen among the epochs after that warm-up. Sampling, encoding and the checkpoint are the VAE's (the
discriminator is only needed for training and is not saved).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator

from pipeline import distributed
from pipeline.config import AdversarialConfig, VAEGANConfig
from pipeline.generators.vae import VAEGenerator
from pipeline.models.vae import ConditionalVAE
from pipeline.runtime import adam

__all__ = ["VAEGANGenerator", "label_maps"]


def label_maps(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``x`` with one constant one-hot channel per class appended (the discriminator's view of image and label)."""
    maps = F.one_hot(y.long(), num_classes).to(x.dtype).view(len(y), num_classes, *([1] * (x.ndim - 2)))
    return torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], dim=1)


class VAEGANGenerator(VAEGenerator):
    """:class:`VAEGenerator` plus a class-conditional patch discriminator during training (see the module docstring).

    Example::

        gen = VAEGANGenerator((1, 64, 64), ("nodule", "normal"), "conditional", cfg, seed=0)
        history = gen.fit(train, val, torch.device("cpu"))  # rows gain train_adversarial, train_discriminator, ...
    """

    kind: ClassVar[str] = "vae_gan"
    config_class: ClassVar[type] = VAEGANConfig

    def __init__(self, image_shape, classes, mode, cfg: AdversarialConfig, seed: int = 0) -> None:
        super().__init__(image_shape, classes, mode, cfg, seed)
        smallest = min(self.image_shape[1:])
        if smallest // 2**cfg.discriminator_layers < 3:  # MONAI's patch discriminator ends with two 4-wide kernels
            raise ValueError(
                f"vae_gan.discriminator_layers {cfg.discriminator_layers} halve images of {smallest} pixels below the "
                f"3 its last convolutions need; use at most {max(int(np.log2(smallest / 3)), 0)} layers"
            )

    def _selectable(self, epoch: int) -> bool:
        return epoch >= self.cfg.adversarial_warmup_epochs

    def _warmed_up(self, epoch: int) -> bool:
        return super()._warmed_up(epoch) and self._selectable(epoch)

    def _begin(self, model: ConditionalVAE, device: torch.device, use_amp: bool) -> None:
        cfg = self.cfg
        self.num_labels = model.num_classes
        self.discriminator = PatchDiscriminator(
            spatial_dims=len(self.image_shape) - 1,
            num_layers_d=cfg.discriminator_layers,
            channels=cfg.discriminator_channels,
            in_channels=self.image_shape[0] + self.num_labels,
            out_channels=1,
            norm=cfg.discriminator_norm.upper(),
        ).to(device)
        self.d_optimizer = adam(self.discriminator.parameters(), cfg.discriminator_learning_rate)
        # its own steps through DistributedDataParallel on several processes; the VAE's steps judge with the bare
        # discriminator (the gradients they leave in it are dropped before its step)
        self.d_net = distributed.wrap(self.discriminator)
        self.adversarial = PatchAdversarialLoss(criterion="least_squares")
        self.use_amp = use_amp
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def _judge(
        self, x: torch.Tensor, y: torch.Tensor, discriminator: torch.nn.Module | None = None
    ) -> list[torch.Tensor]:
        with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=self.use_amp):
            return [f.float() for f in (discriminator or self.discriminator)(label_maps(x, y, self.num_labels))]

    def _extra_losses(
        self, x: torch.Tensor, y: torch.Tensor, recon: torch.Tensor, epoch: int
    ) -> dict[str, torch.Tensor]:
        if epoch < self.cfg.adversarial_warmup_epochs:
            return {}
        fake = self._judge(recon, y)
        with torch.no_grad():
            real = self._judge(x, y)
        matching = sum(F.l1_loss(f, r) for f, r in zip(fake[:-1], real[:-1], strict=True)) / max(len(fake) - 1, 1)
        return {
            "adversarial": self.cfg.adversarial_weight
            * self.adversarial(fake[-1], target_is_real=True, for_discriminator=False),
            "feature_matching": self.cfg.feature_matching_weight * matching,
        }

    def _after_step(
        self, x: torch.Tensor, y: torch.Tensor, recon: torch.Tensor, epoch: int, scale: float | None
    ) -> dict[str, float]:
        if epoch < self.cfg.adversarial_warmup_epochs:
            return {}
        fake = self.adversarial(self._judge(recon, y, self.d_net)[-1], target_is_real=False, for_discriminator=True)
        real = self.adversarial(self._judge(x, y, self.d_net)[-1], target_is_real=True, for_discriminator=True)
        loss = 0.5 * (fake + real)
        self.d_optimizer.zero_grad(set_to_none=True)
        self.d_scaler.scale(loss if scale is None else loss * scale).backward()
        self.d_scaler.step(self.d_optimizer)
        self.d_scaler.update()
        return {"discriminator": loss.item()}
