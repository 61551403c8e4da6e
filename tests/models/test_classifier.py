import pytest
import torch

from pipeline.models.classifier import NETWORKS, build_classifier


@pytest.mark.parametrize(
    "network, shape",
    [
        ("resnet_small", (1, 28, 28)),  # the default, 2D
        ("resnet_small", (1, 16, 16, 16)),  # 3D volumes
        ("resnet18", (1, 28, 28)),  # MedMNIST's baseline architecture at 28 px
        ("densenet121", (1, 32, 32)),  # its smallest size
    ],
)
def test_every_network_maps_images_to_class_logits(network, shape):
    net = build_classifier(shape, num_classes=3, network=network, channels=(4, 8, 8, 8))
    assert net(torch.rand(2, *shape)).shape == (2, 3)
    assert network in NETWORKS


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"network": "vgg"}, "network must be one of"),
        ({"network": "densenet121"}, "at least 32 pixels"),  # 28 px would halve to nothing
        ({"channels": (4, 8)}, "4 ResNet levels"),
        ({"blocks_per_level": 0}, "blocks_per_level"),
        ({"stem_stride": 3}, "stem_stride"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_classifier((1, 28, 28), **{"num_classes": 2, **kwargs})
