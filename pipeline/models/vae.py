"""Class-conditional variational autoencoder built on MONAI's :class:`~monai.networks.nets.VarAutoEncoder`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import VarAutoEncoder
from torch import nn

__all__ = ["ConditionalVAE", "kl_divergence", "reconstruction_loss", "kl_weight", "save_vae", "load_vae"]


class ConditionalVAE(VarAutoEncoder):
    """A VAE whose encoder and decoder both see the class label (a CVAE).

    The label enters the encoder as one-hot channels concatenated to the image and the decoder as a
    one-hot vector concatenated to the latent code; everything else is MONAI's ``VarAutoEncoder``.

    Args:
        spatial_dims: 2 or 3.
        in_shape: image shape, channel first, e.g. ``(1, 64, 64)``.
        num_classes: number of classes (at least 1).
        latent_size: latent dimension.
        channels: encoder channels per level; the decoder mirrors them.
        strides: downsampling stride per level.
        norm: MONAI normalisation layer name ("batch", "instance", ...) or None for none.

    Example::

        vae = ConditionalVAE(2, (1, 64, 64), num_classes=2, latent_size=16, channels=(16, 32), strides=(2, 2))
        recon, mu, logvar, z = vae(torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 0, 1]))
        samples = vae.sample(torch.tensor([1, 1]), generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_shape: Sequence[int],
        num_classes: int,
        latent_size: int,
        channels: Sequence[int],
        strides: Sequence[int],
        norm: str | None = "batch",
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(in_shape) != spatial_dims + 1:
            raise ValueError(f"in_shape must be (C, *spatial) with {spatial_dims} spatial axes, got {tuple(in_shape)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if latent_size < 1:
            raise ValueError(f"latent_size must be at least 1, got {latent_size}")
        in_channels, *spatial = in_shape
        super().__init__(
            spatial_dims=spatial_dims,
            in_shape=(in_channels + num_classes, *spatial),
            out_channels=in_channels,
            latent_size=latent_size,
            channels=channels,
            strides=strides,
            use_sigmoid=True,
            use_mean_at_inference=True,
            norm=norm if norm is not None else (),
        )
        self.num_classes = num_classes
        self.norm_name = norm
        self.image_shape = (in_channels, *spatial)
        self.decodeL = nn.Linear(latent_size + num_classes, self.decodeL.out_features)

    def _one_hot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y.long(), self.num_classes).to(dtype=torch.float32)

    def encode_forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        maps = self._one_hot(y).to(x.dtype).view(*y.shape, self.num_classes, *([1] * (x.ndim - 2)))
        maps = maps.expand(-1, -1, *x.shape[2:])
        return super().encode_forward(torch.cat([x, maps], dim=1))

    def decode_forward(self, z: torch.Tensor, y: torch.Tensor, use_sigmoid: bool = True) -> torch.Tensor:  # type: ignore[override]
        return super().decode_forward(torch.cat([z, self._one_hot(y).to(z.dtype)], dim=1), use_sigmoid)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode_forward(x, y)
        z = self.reparameterize(mu, logvar)
        return self.decode_forward(z, y, self.use_sigmoid), mu, logvar, z

    @torch.no_grad()
    def sample(
        self, y: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """Decode ``z ~ N(0, temperature^2 I)`` for each label in ``y``; returns images in [0, 1]."""
        device = next(self.parameters()).device
        z = torch.randn(len(y), self.latent_size, generator=generator).to(device) * temperature
        return self.decode_forward(z, y.to(device))


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction loss summed over pixels, averaged over the batch."""
    if kind == "bce":
        loss = F.binary_cross_entropy(recon, x, reduction="sum")
    elif kind == "mse":
        loss = F.mse_loss(recon, x, reduction="sum")
    elif kind == "l1":
        loss = F.l1_loss(recon, x, reduction="sum")
    else:
        raise ValueError(f"reconstruction must be bce, mse or l1, got {kind!r}")
    return loss / x.shape[0]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dimensions, averaged over the batch."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / mu.shape[0]


def kl_weight(epoch: int, beta: float, warmup_epochs: int) -> float:
    """Linear KL warm-up: beta * min(1, (epoch + 1) / warmup_epochs); ``epoch`` counts from 0."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)


def save_vae(path: str | Path, model: ConditionalVAE, classes: Sequence[str], config: dict, extra: dict) -> None:
    """Write a self-describing checkpoint: weights, constructor arguments, class names, config, versions."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": "medaug-cvae-1",
            "state_dict": model.state_dict(),
            "model_args": {
                "spatial_dims": len(model.image_shape) - 1,
                "in_shape": list(model.image_shape),
                "num_classes": model.num_classes,
                "latent_size": model.latent_size,
                "channels": list(model.channels),
                "strides": list(model.strides),
                "norm": model.norm_name,
            },
            "classes": list(classes),
            "config": config,
            **extra,
        },
        path,
    )


def load_vae(path: str | Path, device: torch.device | str = "cpu") -> tuple[ConditionalVAE, dict]:
    """Rebuild a model saved by :func:`save_vae`; returns it in eval mode with the checkpoint dict."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if checkpoint.get("format") != "medaug-cvae-1":
        raise ValueError(f"{path} is not a medaug VAE checkpoint (format {checkpoint.get('format')!r})")
    model = ConditionalVAE(**checkpoint["model_args"]).to(device)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
