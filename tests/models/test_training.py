"""The one training loop (pipeline.models.training.fit) on a toy trainee whose validation values are scripted."""

import math

import pytest
import torch

from pipeline.models.training import Schedule, Step, Trainee, fit

CPU = torch.device("cpu")


class Toy(Trainee):
    """A linear layer fitting y = 2x; validation returns the scripted ``values`` one epoch after another."""

    monitor = "mse"

    def __init__(self, values, warm_up=0, loss_scale=1.0):
        torch.manual_seed(0)
        super().__init__(torch.nn.Linear(1, 1), "toy")
        self.values, self.warm_up, self.loss_scale = iter(values), warm_up, loss_scale
        self.x = torch.linspace(-1, 1, 16)[:, None]

    def batches(self, epoch):
        yield from zip(self.x.split(4), (2 * self.x).split(4), strict=True)

    def loss(self, forward, batch, epoch):
        x, y = batch
        loss = torch.nn.functional.mse_loss(forward(x), y) * self.loss_scale
        return Step(loss, {"mse": loss})

    def validate(self):
        return {"mse": next(self.values)}

    def selectable(self, epoch):
        return epoch >= self.warm_up

    def warmed_up(self, epoch):
        return epoch >= self.warm_up


def test_keeps_the_best_epoch_and_stops_after_patience():
    trainee = Toy([0.5, 0.3, 0.4, 0.35, 0.1])
    result = fit(trainee, Schedule(epochs=5, learning_rate=0.01, patience=2), CPU)
    assert (result.best_epoch, result.epochs_run) == (1, 4)  # epochs 2 and 3 no better: stop after epoch 3
    rows = result.history
    assert [row.get("best", False) for row in rows] == [True, True, False, False]
    assert set(rows[0]) == {"model", "epoch", "train_mse", "val_mse", "best"} and rows[0]["model"] == "toy"
    assert not trainee.model.training  # handed back in evaluation mode


def test_the_kept_weights_are_the_best_epochs():
    trainee = Toy([0.1, 0.9, 0.9])
    kept = {}

    def validate():
        kept.setdefault(len(kept), {k: v.clone() for k, v in trainee.model.state_dict().items()})
        return {"mse": next(trainee.values)}

    trainee.validate = validate
    fit(trainee, Schedule(epochs=3, learning_rate=0.1), CPU)
    assert all(torch.equal(v, kept[0][k]) for k, v in trainee.model.state_dict().items())


def test_a_warm_up_is_never_kept_nor_stopped_in():
    result = fit(Toy([0.1, 0.2, 0.5, 0.4, 0.45], warm_up=2), Schedule(epochs=5, learning_rate=0.01, patience=1), CPU)
    assert result.best_epoch == 3 and result.epochs_run == 5


def test_a_non_finite_loss_stops_with_the_trainee_named():
    with pytest.raises(FloatingPointError, match="vae toy: loss nan at epoch 0"):
        fit(Toy([0.1], loss_scale=math.nan), Schedule(epochs=1, learning_rate=0.01), CPU, desc="vae toy")


def test_no_finite_validation_says_what_to_change():
    with pytest.raises(ValueError, match="toy: no epoch to keep.*raise the number of epochs"):
        fit(Toy([math.nan, math.nan]), Schedule(epochs=2, learning_rate=0.01), CPU)
