"""Variational autoencoders built on MONAI's :class:`~monai.networks.nets.VarAutoEncoder`.

:class:`ConditionalVAE` is one VAE whose encoder and decoder see the class label. :class:`ClassVAEs` is what the
VAE generators (:mod:`pipeline.generators.vae`) train and save: either one conditional VAE for all classes
(``mode: conditional``) or one VAE per class (``mode: per_class``, each a ConditionalVAE with a single class),
behind one ``encode``/``decode`` by label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit, UpSample
from monai.networks.nets import VarAutoEncoder
from torch import nn

from pipeline.io.arrays import ImageArray

__all__ = [
    "ConditionalVAE",
    "ClassVAEs",
    "kl_divergence",
    "kl_per_dimension",
    "kl_per_image",
    "reconstruction_error",
    "reconstruction_loss",
    "kl_weight",
    "encode_images",
    "decode_codes",
    "model_args",
    "UPSAMPLE_MODES",
]

# how a decoder level enlarges its feature maps (see ConditionalVAE): the first is the default
UPSAMPLE_MODES = ("resize", "transposed")


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
        res_units: residual units per level (MONAI's ``num_res_units``); 0 = plain convolutions.
        upsample: how each decoder level enlarges its input by its stride. ``resize``: nearest-neighbour
            upsampling, then a convolution (resize-convolution, Odena et al. 2016); ``transposed``: MONAI's strided
            transposed convolution (``VarAutoEncoder``'s own decoder), whose uneven kernel overlap draws a
            checkerboard into the images. Checkpoints written before this argument existed are ``transposed``.

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
        res_units: int = 0,
        upsample: str = "resize",
    ) -> None:
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
        self.upsample = upsample  # read by _get_decode_layer during VarAutoEncoder's constructor
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(in_shape) != spatial_dims + 1:
            raise ValueError(f"in_shape must be (C, *spatial) with {spatial_dims} spatial axes, got {tuple(in_shape)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if latent_size < 1:
            raise ValueError(f"latent_size must be at least 1, got {latent_size}")
        in_channels, *spatial = in_shape
        factor = math.prod(strides)
        if any(size % factor for size in spatial):
            raise ValueError(
                f"image size {tuple(spatial)} is not divisible by the product of the strides {tuple(strides)} "
                f"(= {factor}): the decoder could not give back the input size. Change the strides or preprocess.size"
            )
        super().__init__(
            spatial_dims=spatial_dims,
            in_shape=(in_channels + num_classes, *spatial),
            out_channels=in_channels,
            latent_size=latent_size,
            channels=channels,
            strides=strides,
            use_sigmoid=True,
            use_mean_at_inference=True,
            norm=norm,  # type: ignore[arg-type]  # None: no normalisation layer (MONAI's blocks accept it)
            num_res_units=res_units,
        )
        self.res_units = res_units
        self.num_classes = num_classes
        self.norm_name = norm
        self.image_shape = (in_channels, *spatial)
        self.decodeL = nn.Linear(latent_size + num_classes, self.decodeL.out_features)

    def _get_decode_layer(self, in_channels: int, out_channels: int, strides: int, is_last: bool) -> nn.Sequential:
        """One decoder level: MONAI's transposed convolution for ``upsample="transposed"``, else the feature maps
        enlarged ``strides`` times by nearest-neighbour interpolation and then a stride-1 convolution, with the same
        kernel, activation, normalisation and optional residual unit as MONAI's level."""
        if self.upsample == "transposed":
            return super()._get_decode_layer(in_channels, out_channels, strides, is_last)
        decode = nn.Sequential()
        if strides != 1:
            up = UpSample(
                self.dimensions,
                scale_factor=strides,
                mode="nontrainable",
                pre_conv=None,
                interp_mode="nearest",
                align_corners=None,
            )
            decode.add_module("upsample", up)
        decode.add_module(
            "conv",
            Convolution(
                spatial_dims=self.dimensions,
                in_channels=in_channels,
                out_channels=out_channels,
                strides=1,
                kernel_size=self.up_kernel_size,
                act=self.act,
                norm=self.norm,
                dropout=self.dropout,
                bias=self.bias,
                padding=self.padding,
                conv_only=is_last and self.num_res_units == 0,
            ),
        )
        if self.num_res_units > 0:
            decode.add_module(
                "resunit",
                ResidualUnit(
                    spatial_dims=self.dimensions,
                    in_channels=out_channels,
                    out_channels=out_channels,
                    strides=1,
                    kernel_size=self.kernel_size,
                    subunits=1,
                    act=self.act,
                    norm=self.norm,
                    dropout=self.dropout,
                    bias=self.bias,
                    padding=self.padding,
                    last_conv_only=is_last,
                ),
            )
        return decode

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


class ClassVAEs(nn.Module):
    """The VAE(s) of a run, addressed by class label.

    ``mode="conditional"``: ``models`` holds one :class:`ConditionalVAE` over all classes.
    ``mode="per_class"``: ``models[k]`` is a single-class VAE trained on class ``k`` only.
    """

    def __init__(self, mode: Literal["conditional", "per_class"], models: Sequence[ConditionalVAE]) -> None:
        super().__init__()
        if mode not in ("conditional", "per_class"):
            raise ValueError(f"mode must be conditional or per_class, got {mode!r}")
        if mode == "conditional" and len(models) != 1:
            raise ValueError("mode conditional takes exactly one model")
        self.mode = mode
        self.models = nn.ModuleList(models)  # registers them: parameters, state_dict, .to(), .eval()
        self._networks = list(models)  # the same modules, as their own type (a ModuleList gives nn.Module)

    def network(self, k: int) -> ConditionalVAE:
        """Network ``k`` (``models[k]``)."""
        return self._networks[k]

    @property
    def num_classes(self) -> int:
        return self.network(0).num_classes if self.mode == "conditional" else len(self.models)

    @property
    def latent_size(self) -> int:
        return self.network(0).latent_size

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.network(0).image_shape)

    def model_for(self, label: int) -> tuple[ConditionalVAE, int]:
        """The network that handles class ``label`` and the label value that network expects."""
        if not 0 <= label < self.num_classes:
            raise ValueError(f"class label {label} out of range 0..{self.num_classes - 1}")
        return (self.network(0), label) if self.mode == "conditional" else (self.network(label), 0)

    def encode(self, x: torch.Tensor, label: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of images ``x`` that all belong to class ``label``."""
        model, y = self.model_for(label)
        return model.encode_forward(x, torch.full((len(x),), y, device=x.device))

    def decode(self, z: torch.Tensor, label: int) -> torch.Tensor:
        """Images in [0, 1] decoded from latent codes ``z`` by the decoder of class ``label``."""
        model, y = self.model_for(label)
        return model.decode_forward(z, torch.full((len(z),), y, device=z.device))


_LOSSES = {"bce": F.binary_cross_entropy, "mse": F.mse_loss, "l1": F.l1_loss}


def _loss(kind: str):
    if kind not in _LOSSES:
        raise ValueError(f"reconstruction must be bce, mse or l1, got {kind!r}")
    return _LOSSES[kind]


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction loss summed over pixels, averaged over the batch."""
    return _loss(kind)(recon, x, reduction="sum") / x.shape[0]


def reconstruction_error(recon: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Reconstruction loss of each image, summed over its pixels: shape ``(batch,)``."""
    return _loss(kind)(recon, x, reduction="none").flatten(1).sum(1)


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each image, summed over latent dimensions: shape ``(batch,)``."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each latent dimension, averaged over the batch: shape ``(latent_size,)``."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(0)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dimensions, averaged over the batch. With ``free_bits`` > 0
    each dimension's KL counts as at least ``free_bits`` nats (Kingma et al. 2016), so the optimiser gains
    nothing by pushing a dimension below it and the latent space does not collapse."""
    per_dim = kl_per_dimension(mu, logvar)
    if free_bits > 0:
        per_dim = torch.clamp(per_dim, min=free_bits)
    return per_dim.sum()


def kl_weight(epoch: int, beta: float, warmup_epochs: int) -> float:
    """Linear KL warm-up: beta * min(1, (epoch + 1) / warmup_epochs); ``epoch`` counts from 0."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)


@torch.no_grad()
def encode_images(
    model: ConditionalVAE, images: ImageArray, device, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances of ``images`` (N, C, spatial...) under a single-class (label 0) network,
    in batches, as arrays."""
    model.eval().to(device)
    mus, logvars = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
        mu, logvar = model.encode_forward(x, torch.zeros(len(x), dtype=torch.long, device=device))
        mus.append(mu.cpu().numpy())
        logvars.append(logvar.cpu().numpy())
    return np.concatenate(mus), np.concatenate(logvars)


@torch.no_grad()
def decode_codes(model: ConditionalVAE, codes: np.ndarray, device, batch_size: int = 256) -> np.ndarray:
    """Images in [0, 1] decoded from latent ``codes`` (N, latent_size) by a single-class (label 0) network."""
    model.eval().to(device)
    out = []
    for start in range(0, len(codes), batch_size):
        z = torch.from_numpy(np.ascontiguousarray(codes[start : start + batch_size], dtype=np.float32)).to(device)
        out.append(model.decode_forward(z, torch.zeros(len(z), dtype=torch.long, device=device)).cpu().numpy())
    return np.concatenate(out)


def model_args(model: ConditionalVAE) -> dict:
    """The constructor arguments that rebuild ``model`` (for a self-describing checkpoint)."""
    return {
        "spatial_dims": len(model.image_shape) - 1,
        "in_shape": list(model.image_shape),
        "num_classes": model.num_classes,
        "latent_size": model.latent_size,
        "channels": list(model.channels),
        "strides": list(model.strides),
        "norm": model.norm_name,
        "res_units": model.res_units,
        "upsample": model.upsample,
    }
