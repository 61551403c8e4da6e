"""Selection of synthetic images by a classifier of the real ones (``generate.filter: [classifier, manifold]``).

Both filters judge a synthetic image of class c with the same network, a classifier trained on the real training
split (the generate stage's reference classifier, ``generate.judge``: by default trained with the classical
augmentation, which recognises new patients' real minority images far better than the plain one; measured in
docs/measurements.md):

- :class:`ClassifierFilter` (``classifier``) keeps it only when the classifier gives c a probability at least as
  high as it gives the real validation images of class c that it ranks lowest: the threshold keeps the share
  ``keep`` (``generate.filter_quantile``) of them. An image that does not show its class's finding is dropped
  before it can teach the classifier of the vae strategy that such images belong to the class.
- :class:`ManifoldFilter` (``manifold``) keeps it only when its feature vector (:func:`features`, the input of the
  classifier's last linear layer) lies inside the k-nearest-neighbour ball of at least one real training image of
  class c (``k = generate.manifold_k``): the precision criterion of Naeem et al. 2020, image by image. An image
  the classifier calls c but that looks like no real image of c (off the real manifold) is dropped.

Each filter's ``accept(label)`` is the test of a batch of images of that class, a boolean per image, which
:func:`pipeline.generators.sampling.sample_images` applies to every round of candidates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import pairwise_distances

from pipeline.config import GenerateConfig, TrainClassifierConfig
from pipeline.io.arrays import ImageArray, SplitData
from pipeline.metrics import knn_radii
from pipeline.models.classifier import as_input, fit_classifier, predict_proba
from pipeline.strategies import training_recipe

__all__ = ["fit_real_classifier", "filter_judges", "features", "ClassifierFilter", "ManifoldFilter"]

REAL_BLOCK = 4096  # real images whose distances to a batch of synthetic ones are taken at a time (the same bits)


def fit_real_classifier(
    train: SplitData,
    val: SplitData,
    cfg: TrainClassifierConfig,
    seed: int,
    device: torch.device,
    recipe: str = "classical",
) -> torch.nn.Module:
    """The reference classifier of the real training images that the pool's filters and the quality stage use:
    ``cfg``'s network and budget, trained with the remedy ``recipe`` (``classical``: the real images with MONAI's
    flips, rotations, intensity and elastic changes; ``real_only``: as they are), seeded by ``seed`` (the generate
    stage's: the classifier seeds of the comparison do not touch it). It never sees a synthetic image."""
    if recipe not in ("classical", "real_only"):
        raise ValueError(f"the reference classifier trains with classical or real_only, got {recipe!r}")
    model, _ = fit_classifier(training_recipe(recipe, train, None, 1.0, seed), val, cfg, seed, device, "real")
    return model


@torch.no_grad()
def features(model: torch.nn.Module, images: ImageArray, device, batch_size: int = 256) -> np.ndarray:
    """The input of ``model``'s last linear layer for each image: (N, feature_size)."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0].detach().cpu()))
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            model(as_input(images[start : start + batch_size], device))
    finally:
        hook.remove()
    return torch.cat(captured).numpy().astype(np.float64)


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
                    "drop classifier from generate.filter"
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

    def describe(self, label: int) -> dict[str, float]:
        """For summary.json: the threshold of class ``label``."""
        return {"threshold_probability": self.thresholds[label]}


class ManifoldFilter:
    """The k-nearest-neighbour balls of each class's real training images in ``model``'s feature space, and the test
    of synthetic images against them: an image of class c passes when it lies in at least one ball of class c.

    A class with k or fewer training images uses k = its size less one (``k`` records what each class used); a
    class with a single image has no ball and is an error.

    Args:
        model: the classifier whose last linear layer's input is the feature space (:func:`features`).
        train: the real training split; the balls of class c are those of its images of class c.
        k: the ball of a real image reaches its k-th nearest neighbour among the class's other real images.
        device: where ``model`` runs.

    Example::

        manifold = ManifoldFilter(model, train, 5, device)
        mask = manifold.accept(label)(images)  # True inside some real training image's 5-NN ball
    """

    def __init__(self, model: torch.nn.Module, train: SplitData, k: int, device: torch.device) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.model, self.device = model, device
        train_f = features(model, train.images, device)
        self.real: dict[int, np.ndarray] = {}
        self.radii: dict[int, np.ndarray] = {}
        self.k: dict[int, int] = {}
        for label, name in enumerate(train.classes):
            own = train_f[train.labels == label]
            if len(own) < 2:
                raise ValueError(
                    f"filter manifold: class {name} has {len(own)} training image(s), too few for a nearest-neighbour "
                    "ball; drop manifold from generate.filter"
                )
            self.k[label] = min(k, len(own) - 1)
            self.real[label], self.radii[label] = own, knn_radii(own, self.k[label])

    def accept(self, label: int) -> Callable[[np.ndarray], np.ndarray]:
        """The test of a batch of images of class ``label``: a boolean per image."""
        real, radii = self.real[label], self.radii[label]

        def test(images: np.ndarray) -> np.ndarray:
            if len(images) == 0:
                return np.zeros(0, dtype=bool)
            made = features(self.model, images, self.device)
            inside = np.zeros(len(made), dtype=bool)
            for start in range(0, len(real), REAL_BLOCK):  # (images, block) distances: memory not growing with real
                block = slice(start, start + REAL_BLOCK)
                inside |= (pairwise_distances(made, real[block]) <= radii[None, block]).any(axis=1)
            return inside

        return test

    def describe(self, label: int) -> dict[str, float]:
        """For summary.json: the k used for class ``label`` and the median, smallest and largest radius of its
        balls."""
        radii = self.radii[label]
        return {
            "k": self.k[label],
            "radius_median": float(np.median(radii)),
            "radius_min": float(radii.min()),
            "radius_max": float(radii.max()),
        }


def filter_judges(
    cfg: GenerateConfig, real_classifier: torch.nn.Module, train: SplitData, val: SplitData, device: torch.device
) -> dict[str, ClassifierFilter | ManifoldFilter]:
    """The filters of ``generate.filter`` that judge samples with the reference classifier of the real images."""
    judges: dict[str, ClassifierFilter | ManifoldFilter] = {}
    if "classifier" in cfg.filter:
        judges["classifier"] = ClassifierFilter(real_classifier, val, cfg.filter_quantile, device)
    if "manifold" in cfg.filter:
        judges["manifold"] = ManifoldFilter(real_classifier, train, cfg.manifold_k, device)
    return judges
