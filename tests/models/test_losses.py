import math

import pytest
import torch

from pipeline.models.losses import (
    cross_entropy,
    focal_loss,
    logit_adjusted_cross_entropy,
    mixed_loss,
    weighted_cross_entropy,
)

LOGITS = torch.tensor([[2.0, 0.0]])
PRIOR = torch.tensor([0.75, 0.25])


@pytest.mark.parametrize(
    "label, tau, expected",
    [
        # -log softmax([2 + log .75, 0 + log .25])[1] = log(.75 e^2 + .25) - log .25 = 3.1427361
        (1, 1.0, math.log(math.exp(2) * 0.75 + 0.25) - math.log(0.25)),
        (1, 0.0, math.log(1 + math.exp(2))),  # tau 0: plain cross-entropy, 2.1269280
        (0, 1.0, math.log(math.exp(2) * 0.75 + 0.25) - math.log(math.exp(2) * 0.75)),  # the frequent class's label
    ],
)
def test_logit_adjustment_adds_tau_log_prior_to_the_logits(label, tau, expected):
    loss = logit_adjusted_cross_entropy(LOGITS, torch.tensor([label]), torch.log(PRIOR), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_logit_adjustment_hand_computed_number():
    loss = logit_adjusted_cross_entropy(LOGITS, torch.tensor([1]), torch.log(PRIOR), tau=1.0)
    assert loss.item() == pytest.approx(3.1427361, rel=1e-6)  # the rare class must beat the frequent one by log 3
    assert loss.item() > cross_entropy(LOGITS, torch.tensor([1])).item()  # a rare label's loss grows


def test_focal_loss_with_gamma_0_is_cross_entropy():
    logits, labels = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]), torch.tensor([2, 1])
    assert focal_loss(logits, labels, gamma=0.0).item() == pytest.approx(cross_entropy(logits, labels).item())


def test_focal_loss_down_weights_confident_images_by_one_minus_p_squared():
    p = math.e / (math.e + 1)  # softmax([1, 0])[0] = 0.7310586
    loss = focal_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), gamma=2.0)
    assert loss.item() == pytest.approx(-((1 - p) ** 2) * math.log(p), rel=1e-6)  # 0.0226581
    assert loss.item() == pytest.approx(0.0226581, rel=1e-5)


def test_mixed_loss_weighs_the_two_labelings_by_lam():
    loss = mixed_loss(cross_entropy, LOGITS, torch.tensor([0]), torch.tensor([1]), lam=0.3)
    # 0.3 * -log softmax([2, 0])[0] + 0.7 * -log softmax([2, 0])[1]
    assert loss.item() == pytest.approx(0.3 * math.log(1 + math.exp(-2)) + 0.7 * math.log(1 + math.exp(2)))
    assert loss.item() == pytest.approx(1.5269280, rel=1e-6)


@pytest.mark.parametrize(
    "loss",
    [
        lambda logits, y: cross_entropy(logits, y),
        lambda logits, y: logit_adjusted_cross_entropy(logits, y, torch.log(PRIOR), 1.0),
        lambda logits, y: focal_loss(logits, y, 2.0),
    ],
    ids=["ce", "logit_adjust", "focal"],
)
def test_losses_are_float32_on_half_precision_logits(loss):
    """Under float16 autocast (train_classifier.amp) the network's logits are half precision."""
    out = loss(torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float16), torch.tensor([1, 0]))
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_weighted_cross_entropy_is_the_weighted_mean_of_the_terms():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1])
    terms = [math.log(1 + math.exp(2)), math.log(1 + math.exp(-1))]  # 2.1269280, 0.3132617
    loss = weighted_cross_entropy(logits, labels, torch.tensor([0.5, 1.0]))
    assert loss.item() == pytest.approx((0.5 * terms[0] + terms[1]) / 1.5)
    assert weighted_cross_entropy(logits, labels, torch.ones(2)).item() == pytest.approx(cross_entropy(logits, labels))
