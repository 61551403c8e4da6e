"""Training losses of the classifier's imbalance remedies, on ``(B, K)`` logits and ``(B,)`` integer labels.

Each takes the logits as the network gives them and computes in float32 (``logits.float()``), so that they work
under float16 autocast (``train_classifier.amp``). They change training only: prediction uses the raw logits.

- :func:`cross_entropy`: plain or class-weighted cross-entropy (real_only, class_weight and the others);
- :func:`weighted_cross_entropy`: cross-entropy with a weight per image (synthetic images weighed differently);
- :func:`logit_adjusted_cross_entropy`: Menon et al. 2021, "Long-tail learning via logit adjustment";
- :func:`focal_loss`: Lin et al. 2017, "Focal loss for dense object detection" (without the alpha weights);
- :func:`mixed_loss`: a loss of a mixed batch, ``lam`` of it against one set of labels and the rest against the
  other (Balanced-MixUp, Galdran et al. 2021).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from pipeline.io.arrays import SplitData

__all__ = [
    "class_weights",
    "class_prior",
    "Loss",
    "cross_entropy",
    "weighted_cross_entropy",
    "logit_adjusted_cross_entropy",
    "focal_loss",
    "mixed_loss",
]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> mean loss over the batch


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy, each image's term weighted by ``weight[label]`` when given (PyTorch's weighted mean)."""
    return F.cross_entropy(logits.float(), labels, weight=weight)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, sample_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with a weight per image: ``sum_i w_i CE_i / sum_i w_i`` (``train_classifier.synthetic_weight``
    for synthetic images, 1 for real ones)."""
    terms = F.cross_entropy(logits.float(), labels, reduction="none")
    return (terms * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)


def logit_adjusted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Cross-entropy of ``logits + tau * log_prior`` (the logit-adjusted loss of Menon et al. 2021).

    Adding the log prior during training makes the network learn logits from which the prior has been taken out:
    a frequent class has to win by a margin of ``tau * log(prior ratio)``, so the raw logits used at prediction
    favour rare classes as a balanced error needs. ``tau = 0`` is plain cross-entropy.

    Args:
        logits: ``(B, K)`` network outputs.
        labels: ``(B,)`` class indices.
        log_prior: ``(K,)`` log class frequencies of the training split.
        tau: scale of the adjustment, non-negative.
    """
    return F.cross_entropy(logits.float() + tau * log_prior, labels)


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean of ``-(1 - p)^gamma log p``, ``p`` the softmax probability of the true class (Lin et al. 2017, no alpha).

    Images the network already classifies confidently contribute little, so training dwells on the hard ones,
    often of the minority class. ``gamma = 0`` is plain cross-entropy.
    """
    log_p = torch.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()


def mixed_loss(
    loss: Loss, logits: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor, lam: float
) -> torch.Tensor:
    """``lam * loss(logits, labels_a) + (1 - lam) * loss(logits, labels_b)``: the loss of images mixed as
    ``lam * x_a + (1 - lam) * x_b``."""
    return lam * loss(logits, labels_a) + (1 - lam) * loss(logits, labels_b)


def class_weights(data: SplitData) -> torch.Tensor:
    """Inverse-frequency weights n / (K * n_k) for the cross-entropy (scikit-learn's "balanced")."""
    counts = np.bincount(data.labels, minlength=len(data.classes)).astype(np.float32)
    return torch.from_numpy(len(data) / (len(data.classes) * np.maximum(counts, 1)))


def class_prior(data: SplitData) -> torch.Tensor:
    """The class frequencies n_k / n of the split (logit_adjust's prior); a class without images counts as one, so
    that its log prior is finite."""
    counts = np.maximum(np.bincount(data.labels, minlength=len(data.classes)), 1).astype(np.float32)
    return torch.from_numpy(counts / counts.sum())
