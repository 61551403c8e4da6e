"""The downstream classifier: a small MONAI :class:`~monai.networks.nets.ResNet` (basic blocks, global pooling).

Global average pooling makes it translation invariant, which matters when the finding (a nodule) can
be anywhere in the image and the minority class has few examples.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import ResNet

__all__ = ["build_classifier"]


def build_classifier(
    in_shape: Sequence[int], num_classes: int, channels: Sequence[int], blocks_per_level: int
) -> ResNet:
    """A CNN mapping ``(B, *in_shape)`` images to ``(B, num_classes)`` logits.

    Args:
        in_shape: image shape, channel first, e.g. ``(1, 64, 64)``; 2D or 3D.
        num_classes: number of classes (at least 2).
        channels: channels of the four ResNet levels.
        blocks_per_level: residual blocks in each level.

    Example::

        net = build_classifier((1, 64, 64), num_classes=2, channels=(16, 32, 64, 128), blocks_per_level=1)
        logits = net(torch.rand(8, 1, 64, 64))  # (8, 2)
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if len(channels) != 4:
        raise ValueError(f"channels must list the 4 ResNet levels, got {list(channels)}")
    if blocks_per_level < 1:
        raise ValueError(f"blocks_per_level must be at least 1, got {blocks_per_level}")
    return ResNet(
        block="basic",
        layers=[blocks_per_level] * 4,
        block_inplanes=list(channels),
        spatial_dims=len(in_shape) - 1,
        n_input_channels=in_shape[0],
        num_classes=num_classes,
        conv1_t_size=3,  # small first kernel and stride 1: findings are a few pixels wide
        conv1_t_stride=1,
    )
