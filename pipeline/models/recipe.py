"""What the classifier's training loop (:func:`pipeline.models.classifier.fit_classifier`) trains on and how: a
:class:`Recipe` names the training set and a few switches of the loop (the loss, its class weights, classical
augmentation on the fly, Balanced-MixUp, which images are synthetic). The remedies of :mod:`pipeline.strategies`
build recipes; the model layer reads them and knows nothing of the remedies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.io.arrays import SplitData

__all__ = ["LOSSES", "Recipe"]

LOSSES = ("ce", "logit_adjust", "focal")  # the training losses a recipe can name (pipeline.models.losses)


@dataclass(frozen=True)
class Recipe:
    """What one strategy trains on and how."""

    data: SplitData
    weighted: bool = False  # cross-entropy weighted by inverse class frequency
    augment: bool = False  # classical augmentation of each training batch (pipeline.augment)
    loss: str = "ce"  # training loss, one of LOSSES: cross-entropy, logit-adjusted cross-entropy or focal loss
    mixup: bool = False  # Balanced-MixUp: each batch mixed with a class-balanced one (BalancedMixUp)
    synthetic: np.ndarray | None = None  # (N,) True where data's image is synthetic (the vae strategies)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss != "ce" and self.weighted:
            raise ValueError(f"the class weights apply to the cross-entropy only, not to loss {self.loss!r}")
