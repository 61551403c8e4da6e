"""The downstream classifier, one of three MONAI networks (2D or 3D):

- ``resnet_small``: a small :class:`~monai.networks.nets.ResNet` (basic blocks, a 3x3 stem of stride 1 or 2, global
  pooling); fast on a CPU. Global average pooling makes it translation invariant, which matters when the finding
  (a nodule) can be anywhere in the image and the minority class has few examples.
- ``resnet18``: MONAI's standard ResNet-18 (the MedMNIST v2 baseline architecture).
- ``densenet121``: MONAI's DenseNet-121; its five halvings need images of at least 32 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import DenseNet121, ResNet, resnet18

from pipeline import distributed
from pipeline.augment import BalancedMixUp, classical_augmentation
from pipeline.config import TrainClassifierConfig
from pipeline.io.arrays import ImageArray, SplitData
from pipeline.io.loader import ImageDataset, batch_loader
from pipeline.metrics import balanced_accuracy
from pipeline.models.losses import (
    Loss,
    class_prior,
    class_weights,
    cross_entropy,
    focal_loss,
    logit_adjusted_cross_entropy,
    mixed_loss,
    weighted_cross_entropy,
)
from pipeline.models.recipe import Recipe
from pipeline.models.training import Fit, Schedule, Step, Trainee, fit
from pipeline.runtime import seed_everything

__all__ = [
    "NETWORKS",
    "REAL_CLASSIFIER",
    "build_classifier",
    "memory_format",
    "on_device",
    "as_input",
    "fit_classifier",
    "predict_proba",
    "load_real_classifier",
]

# the classifier of the real training split that the generate stage trains (its filter) and leaves beside the pool
# it selected, for the quality stage to judge synthetic images with (one training, not two)
REAL_CLASSIFIER = "real_classifier.pt"

NETWORKS = ("resnet_small", "resnet18", "densenet121")


def memory_format(spatial_dims: int, device: torch.device | str) -> torch.memory_format:
    """The classifier's memory layout on ``device``: channels last on a GPU (cuDNN's layout for tensor cores); the
    default layout on a CPU: there oneDNN's channels-last convolutions, though faster, were not deterministic for
    a seed and corrupted the heap at one torch thread (torch 2.13.0; docs/measurements.md), and the default
    layout is deterministic."""
    if torch.device(device).type != "cuda":
        return torch.contiguous_format
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def on_device(model: torch.nn.Module, spatial_dims: int, device: torch.device) -> torch.nn.Module:
    """``model`` moved to ``device`` in :func:`memory_format`'s layout."""
    # (Module.to takes memory_format; torch's type stubs omit it)
    return model.to(device, memory_format=memory_format(spatial_dims, device))  # type: ignore[call-overload]


def as_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images as the classifier's input: a tensor on ``device`` in its memory layout (:func:`memory_format`)."""
    images = torch.as_tensor(images).to(device)
    return images.contiguous(memory_format=memory_format(images.ndim - 2, device))


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
            downsampling) the network runs several times faster on a CPU; the kernel still sees every pixel.

    The network is in the default layout on the CPU; :func:`on_device` moves it to a device in that device's
    layout (:func:`memory_format`).

    Example::

        net = build_classifier((1, 64, 64), num_classes=2, channels=(16, 32, 64, 128), blocks_per_level=1)
        logits = net(torch.rand(8, 1, 64, 64))  # (8, 2)
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    return _network(in_shape, num_classes, network, channels, blocks_per_level, stem_stride)


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


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: ImageArray, device: torch.device, batch: int = 256) -> np.ndarray:
    model.eval()
    out = [
        torch.softmax(model(as_input(images[i : i + batch], device)).float(), 1).cpu()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out).numpy()


def _batches(order: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``order`` in batches of ``size``; a last batch of one image joins the one before it (batch normalisation
    cannot train on one image once a network's last level is 1 pixel: 32-pixel images with a stride-2 stem)."""
    batches = list(order.split(size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _training_loss(recipe: Recipe, cfg: TrainClassifierConfig, device: torch.device) -> Loss:
    """The loss ``recipe.loss`` names, with ``cfg``'s settings and the class frequencies of the recipe's data."""
    if recipe.loss == "logit_adjust":
        log_prior = torch.log(class_prior(recipe.data)).to(device)
        return partial(logit_adjusted_cross_entropy, log_prior=log_prior, tau=cfg.logit_adjust_tau)
    if recipe.loss == "focal":
        return partial(focal_loss, gamma=cfg.focal_gamma)
    return partial(cross_entropy, weight=class_weights(recipe.data).to(device) if recipe.weighted else None)


def _sample_weights(recipe: Recipe, cfg: TrainClassifierConfig, device: torch.device) -> torch.Tensor | None:
    """Each training image's loss weight: ``cfg.synthetic_weight`` for synthetic images, 1 for real ones; None
    (the plain mean) when the recipe has no synthetic images or they weigh 1."""
    if recipe.synthetic is None or cfg.synthetic_weight == 1.0:
        return None
    if recipe.loss != "ce" or recipe.weighted or recipe.mixup:
        raise ValueError("train_classifier.synthetic_weight applies to the plain cross-entropy of the vae strategies")
    weights = np.where(recipe.synthetic, cfg.synthetic_weight, 1.0).astype(np.float32)
    return torch.from_numpy(weights).to(device)


@dataclass(frozen=True)
class _Batch:
    """One training step's images and targets: a global batch, or on several processes this rank's shard of it."""

    x: torch.Tensor  # augmented (and mixed) images
    target: torch.Tensor  # labels
    other: torch.Tensor | None = None  # Balanced-MixUp: the labels of the images mixed in, weighing 1 - lam
    lam: float = 1.0
    weights: torch.Tensor | None = None  # per-image loss weights (synthetic images)

    def loss(self, loss_fn: Loss, logits: torch.Tensor) -> torch.Tensor:
        if self.weights is not None:
            return weighted_cross_entropy(logits, self.target, self.weights)
        if self.other is None:
            return loss_fn(logits, self.target)
        return mixed_loss(loss_fn, logits, self.target, self.other, self.lam)

    def shard(self, loss_fn: Loss) -> tuple[_Batch, float]:
        """This rank's part and its share of the mean loss's denominator: the images, or their weights (per image,
        or per class for the weighted cross-entropy)."""
        part = distributed.shard
        if self.weights is not None:
            share = part(self.weights).sum() / self.weights.sum()
        elif isinstance(loss_fn, partial) and loss_fn.keywords.get("weight") is not None:
            class_weight = loss_fn.keywords["weight"]
            share = class_weight[part(self.target)].sum() / class_weight[self.target].sum()
        else:
            share = len(part(self.target)) / len(self.target)
        other, weights = (None if t is None else part(t) for t in (self.other, self.weights))
        return _Batch(part(self.x), part(self.target), other, self.lam, weights), float(share)


class _ClassifierTraining(Trainee):
    """A classifier on a recipe for :func:`pipeline.models.training.fit`: the recipe's loss on each (augmented,
    mixed) batch; the kept epoch has the best validation balanced accuracy, the cross-entropy breaking ties."""

    monitor = "balanced_accuracy"
    maximize = True

    def __init__(self, recipe: Recipe, val: SplitData, cfg: TrainClassifierConfig, seed: int, device, name: str):
        train = recipe.data
        self.loss_fn = _training_loss(recipe, cfg, device)
        self.transform = classical_augmentation(train.images.ndim - 2, seed) if recipe.augment else None
        self.mixup = BalancedMixUp(train.labels, cfg.mixup_alpha, seed) if recipe.mixup else None
        self.weights = _sample_weights(recipe, cfg, device)  # None unless synthetic images weigh other than real
        self.real = None  # two-phase: the indices of the real images, for the last cfg.real_epochs epochs
        if recipe.synthetic is not None and cfg.real_epochs:
            self.real = torch.from_numpy(np.flatnonzero(~recipe.synthetic))
        model = build_classifier(
            train.images.shape[1:], len(train.classes), cfg.network, cfg.channels, cfg.blocks_per_level, cfg.stem_stride
        )
        super().__init__(on_device(model, train.images.ndim - 2, device), name)
        self.train, self.val, self.cfg, self.device = train, val, cfg, device
        self.labels = torch.from_numpy(train.labels).to(device)
        self.images = ImageDataset(train.images)  # a batch at a time (from disk for a processed split), never all
        self.order = torch.Generator().manual_seed(seed)

    def batches(self, epoch: int):
        cfg, device = self.cfg, self.device
        if self.real is not None and epoch >= max(cfg.epochs - cfg.real_epochs, 1):  # the first epoch is always mixed
            shuffled = self.real[torch.randperm(len(self.real), generator=self.order)]
        else:
            shuffled = torch.randperm(len(self.labels), generator=self.order)
        # every rank draws the same order and the same augmentation and mixup numbers for the whole global batch,
        # then trains on its shard of it (pipeline.distributed): the random streams do not depend on the processes
        batches = _batches(shuffled, cfg.batch_size)
        for batch, (x,) in zip(batches, batch_loader(self.images, [b.tolist() for b in batches], device), strict=True):
            batch, x, lam = batch.to(device), x.to(device, non_blocking=True), 1.0
            mixed: torch.Tensor | None = None
            if self.mixup is not None:  # Balanced-MixUp: a class-balanced batch of the same size mixed in
                lam, other = self.mixup.draw(len(batch))
                x = self.mixup.mix(x, torch.from_numpy(np.asarray(self.train.images[other])).to(device), lam)
                mixed = self.labels[torch.from_numpy(other).to(device)]
            x = x if self.transform is None else self.transform(x)
            weights = None if self.weights is None else self.weights[batch]
            yield _Batch(x, self.labels[batch], mixed, lam, weights)

    def size(self, batch: _Batch) -> int:
        return len(batch.target)

    def shard(self, batch: _Batch) -> tuple[_Batch, float]:
        return batch.shard(self.loss_fn)

    def loss(self, forward, batch: _Batch, epoch: int) -> Step:
        loss = batch.loss(self.loss_fn, forward(as_input(batch.x, self.device)))
        return Step(loss, {"loss": loss})

    def validate(self) -> dict[str, float]:
        proba = predict_proba(self.model, self.val.images, self.device)
        loss = -np.log(np.clip(proba[np.arange(len(self.val)), self.val.labels], 1e-12, None)).mean()
        return {"balanced_accuracy": balanced_accuracy(self.val.labels, proba.argmax(1)), "loss": float(loss)}

    def score(self, values: dict[str, float]) -> tuple[float, float]:
        return values["balanced_accuracy"], -values["loss"]  # compared as a tuple: the loss breaks ties


def fit_classifier(
    recipe: Recipe, val: SplitData, cfg: TrainClassifierConfig, seed: int, device: torch.device, desc: str = "fit"
) -> tuple[torch.nn.Module, Fit]:
    """Train on ``recipe`` for at most ``cfg.epochs``; return the model of the epoch with the best validation
    score and what :func:`pipeline.models.training.fit` did. The recipe's loss trains the network; prediction uses
    its raw logits. With synthetic images in the recipe, each weighs ``cfg.synthetic_weight`` in the loss, and the
    last ``cfg.real_epochs`` epochs (two-phase training; at most all but the first) see the real images only; the
    best epoch is chosen over all."""
    seed_everything(seed)
    trainee = _ClassifierTraining(recipe, val, cfg, seed, device, desc)
    result = fit(trainee, Schedule(cfg.epochs, cfg.learning_rate, cfg.patience, cfg.amp), device, desc, leave=False)
    return trainee.model, result


def load_real_classifier(
    path: str | Path, in_shape: Sequence[int], num_classes: int, cfg: TrainClassifierConfig, device: torch.device
) -> torch.nn.Module:
    """The classifier :func:`pipeline.generators.selection.fit_real_classifier` made, from the weights the generate
    stage saved at ``path``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing: re-run the generate stage (it trains the real-only classifier)")
    model = build_classifier(in_shape, num_classes, cfg.network, cfg.channels, cfg.blocks_per_level, cfg.stem_stride)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return on_device(model, len(in_shape) - 1, device).eval()
