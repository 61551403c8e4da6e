"""The downstream classifier, one of three MONAI networks (2D or 3D):

- ``resnet_small``: a small :class:`~monai.networks.nets.ResNet` (basic blocks, a 3x3 stem of stride 1 or 2, global
  pooling); fast on a CPU. Global average pooling makes it translation invariant, which matters when the finding
  (a nodule) can be anywhere in the image and the minority class has few examples.
- ``resnet18``: MONAI's standard ResNet-18 (the MedMNIST v2 baseline architecture).
- ``densenet121``: MONAI's DenseNet-121; its five halvings need images of at least 32 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.nets import DenseNet121, ResNet, resnet18

__all__ = ["NETWORKS", "build_classifier", "memory_format", "as_input"]

NETWORKS = ("resnet_small", "resnet18", "densenet121")


def memory_format(spatial_dims: int) -> torch.memory_format:
    """Channels-last layout for 2D/3D convolutions: oneDNN's fast layout on CPUs (about 1.5x the images per second
    of the default layout for ``resnet_small`` at 64 px on 2 cores, bench/bench_classifier.py) and cuDNN's for
    tensor cores."""
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def as_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images as the classifier's input: a tensor on ``device`` in its memory layout (channels last)."""
    images = torch.as_tensor(images).to(device)
    return images.contiguous(memory_format=memory_format(images.ndim - 2))


def build_classifier(
    in_shape: Sequence[int],
    num_classes: int,
    network: str = "resnet_small",
    channels: Sequence[int] = (16, 32, 64, 128),
    blocks_per_level: int = 1,
    stem_stride: int = 1,
) -> torch.nn.Module:
    """A CNN mapping ``(B, *in_shape)`` images to ``(B, num_classes)`` logits.

    Args:
        in_shape: image shape, channel first, e.g. ``(1, 64, 64)``; 2D or 3D.
        num_classes: number of classes (at least 2).
        network: one of :data:`NETWORKS`.
        channels: ``resnet_small`` only: channels of its four levels.
        blocks_per_level: ``resnet_small`` only: residual blocks in each level.
        stem_stride: ``resnet_small`` only: stride of the first 3x3 convolution, 1 or 2. With 2 (ResNet's usual
            downsampling) the network runs about 2.5x faster on a CPU; the kernel still sees every pixel.

    The network's weights are in :func:`memory_format` (channels last); inputs in that layout run fastest.

    Example::

        net = build_classifier((1, 64, 64), num_classes=2, channels=(16, 32, 64, 128), blocks_per_level=1)
        logits = net(torch.rand(8, 1, 64, 64))  # (8, 2)
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    net = _network(in_shape, num_classes, network, channels, blocks_per_level, stem_stride)
    return net.to(memory_format=memory_format(len(in_shape) - 1))


def _network(in_shape, num_classes, network, channels, blocks_per_level, stem_stride) -> torch.nn.Module:
    spatial_dims, in_channels = len(in_shape) - 1, in_shape[0]
    if network == "resnet18":
        return resnet18(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_classes)
    if network == "densenet121":
        if min(in_shape[1:]) < 32:
            raise ValueError(
                f"network densenet121 needs images of at least 32 pixels, got {tuple(in_shape[1:])}: "
                "raise preprocess.size or choose resnet_small/resnet18"
            )
        return DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes)
    if len(channels) != 4:
        raise ValueError(f"channels must list the 4 ResNet levels, got {list(channels)}")
    if blocks_per_level < 1:
        raise ValueError(f"blocks_per_level must be at least 1, got {blocks_per_level}")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
    return ResNet(
        block="basic",
        layers=[blocks_per_level] * 4,
        block_inplanes=list(channels),
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        num_classes=num_classes,
        conv1_t_size=3,  # a small first kernel: findings are a few pixels wide
        conv1_t_stride=stem_stride,
    )
