"""Selection of synthetic images by a classifier of the real ones (``generate.filter: classifier``).

A synthetic image of class c is kept only when a classifier trained on the real training split gives c a
probability at least as high as it gives the real validation images of class c that it ranks lowest: the threshold
keeps the share ``keep`` (``generate.filter_quantile``) of them. An image that does not show its class's finding is
dropped before it can teach the classifier of the vae strategy that such images belong to the class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pipeline.io.arrays import SplitData
from pipeline.models.classifier import predict_proba

__all__ = ["ClassifierFilter"]


class ClassifierFilter:
    """Per-class probability thresholds of ``model`` on ``val``, and the test of synthetic images against them.

    Example::

        keep = ClassifierFilter(model, val, 0.9, device)  # 90 % of each class's real validation images pass
        mask = keep.accept(label)(images)  # True where the model gives ``label`` at least its threshold
    """

    def __init__(self, model: torch.nn.Module, val: SplitData, keep: float, device: torch.device) -> None:
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.model, self.device = model, device
        proba = predict_proba(model, val.images, device)
        self.thresholds: dict[int, float] = {}
        for label, name in enumerate(val.classes):
            own = proba[val.labels == label, label]
            if len(own) == 0:
                raise ValueError(
                    f"filter classifier: the validation split has no image of class {name} to set its threshold; "
                    "use generate.filter: consistency or none"
                )
            self.thresholds[label] = float(np.quantile(own, 1 - keep))

    def accept(self, label: int) -> Callable[[np.ndarray], np.ndarray]:
        """The test of a batch of images of class ``label``: a boolean per image."""
        threshold = self.thresholds[label]

        def test(images: np.ndarray) -> np.ndarray:
            if len(images) == 0:
                return np.zeros(0, dtype=bool)
            return predict_proba(self.model, images, self.device)[:, label] >= threshold

        return test
