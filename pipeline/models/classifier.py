"""The downstream classifier, one of three MONAI networks (2D or 3D):

- ``resnet_small``: a small :class:`~monai.networks.nets.ResNet` (basic blocks, a 3x3 stride-1 stem, global
  pooling); fast on a CPU. Global average pooling makes it translation invariant, which matters when the finding
  (a nodule) can be anywhere in the image and the minority class has few examples.
- ``resnet18``: MONAI's standard ResNet-18 (the MedMNIST v2 baseline architecture).
- ``densenet121``: MONAI's DenseNet-121; its five halvings need images of at least 32 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import DenseNet121, ResNet, resnet18

__all__ = ["NETWORKS", "build_classifier"]

NETWORKS = ("resnet_small", "resnet18", "densenet121")


def build_classifier(
    in_shape: Sequence[int],
    num_classes: int,
    network: str = "resnet_small",
    channels: Sequence[int] = (16, 32, 64, 128),
    blocks_per_level: int = 1,
) -> torch.nn.Module:
    """A CNN mapping ``(B, *in_shape)`` images to ``(B, num_classes)`` logits.

    Args:
        in_shape: image shape, channel first, e.g. ``(1, 64, 64)``; 2D or 3D.
        num_classes: number of classes (at least 2).
        network: one of :data:`NETWORKS`.
        channels: ``resnet_small`` only: channels of its four levels.
        blocks_per_level: ``resnet_small`` only: residual blocks in each level.

    Example::

        net = build_classifier((1, 64, 64), num_classes=2, channels=(16, 32, 64, 128), blocks_per_level=1)
        logits = net(torch.rand(8, 1, 64, 64))  # (8, 2)
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
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
    return ResNet(
        block="basic",
        layers=[blocks_per_level] * 4,
        block_inplanes=list(channels),
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        num_classes=num_classes,
        conv1_t_size=3,  # small first kernel and stride 1: findings are a few pixels wide
        conv1_t_stride=1,
    )
