"""One training loop for every network medaug trains: the classifier, the VAEs and VAE-GANs (and the latent
diffusion's autoencoders), and the latent diffusion model.

:func:`fit` owns what is the same for all of them: the device's mixed precision (float16 autocast of the forward
pass and a loss scaler, on CUDA only), DistributedDataParallel on several processes (:mod:`pipeline.distributed`:
each rank trains on its shard of the same global batch), the check that the loss is finite, the epoch's running
means, validation after every epoch, the weights of the best validation epoch, early stopping, the progress bar
and the history. A :class:`Trainee` supplies what differs: its batches, its loss on a batch, what it validates
and which validation value chooses the kept epoch.

History rows, the one schema every trainee writes (``train_generator`` reports them; a new trainee cannot break
the reporting): ``model`` (the trainee's name), ``epoch``, the trainee's :meth:`Trainee.epoch_fields`, then
``train_<key>`` for each value its steps log (means over the epoch's images) and ``val_<key>`` for each value its
validation returns; ``best: True`` on the rows whose weights were kept at the time. :attr:`Trainee.monitor` names
the validation value that chooses the kept epoch (``val_<monitor>`` in the rows).

Example::

    class Regression(Trainee):
        monitor = "mse"

        def batches(self, epoch):
            yield from zip(x.split(8), y.split(8))

        def loss(self, forward, batch, epoch):
            loss = F.mse_loss(forward(batch[0]), batch[1])
            return Step(loss, {"mse": loss})

        def validate(self):
            return {"mse": F.mse_loss(self.model(x_val), y_val).item()}

    result = fit(Regression(model, "toy"), Schedule(epochs=10, learning_rate=1e-3), torch.device("cpu"))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from pipeline import distributed
from pipeline.runtime import adam

__all__ = ["Schedule", "Step", "Trainee", "Fit", "fit", "amp_enabled"]

logger = logging.getLogger(__name__)

Forward = Callable[..., Any]  # the network being trained, called under the loop's autocast (and DDP)


def amp_enabled(amp: bool, device: torch.device) -> bool:
    """Whether the ``amp`` setting takes effect on ``device``: float16 autocast on CUDA; nothing changes on a CPU."""
    return amp and device.type == "cuda"


@dataclass(frozen=True)
class Schedule:
    """How long and how fast :func:`fit` trains."""

    epochs: int  # at most this many passes over the training batches
    learning_rate: float  # Adam's
    patience: int = 0  # stop after this many epochs without a better validation score (0: never stop early)
    amp: bool = False  # mixed precision on CUDA (amp_enabled)


@dataclass
class Step:
    """What a trainee's loss on one batch gives the loop."""

    loss: torch.Tensor  # the batch's (on several processes: this rank's shard's) mean loss, to minimise
    logged: dict[str, torch.Tensor | float] = field(default_factory=dict)  # means over the batch, for the history
    outputs: Any = None  # anything Trainee.after_update needs from the forward pass (e.g. detached outputs)


class Trainee:
    """What :func:`fit` trains. Subclasses set :attr:`model` and :attr:`name` and supply :meth:`batches`,
    :meth:`loss` and :meth:`validate`; the other methods have defaults.

    Args:
        model: the network whose weights the loop's optimiser trains (on its device already).
        name: the history rows' ``model`` value.
    """

    monitor: str = "loss"  # the validation value that chooses the kept epoch
    maximize: bool = False  # whether a larger monitor value is better

    def __init__(self, model: torch.nn.Module, name: str) -> None:
        self.model = model
        self.name = name

    def batches(self, epoch: int) -> Iterable[Any]:
        """The epoch's global batches, on the device (by default tuples of tensors of the batch's items)."""
        raise NotImplementedError

    def size(self, batch: Any) -> int:
        """Items in a global batch."""
        return len(batch[0])

    def shard(self, batch: Any) -> tuple[Any, float]:
        """This rank's part of a global batch and its share of the mean loss's denominator
        (:func:`pipeline.distributed.loss_scale`); by default every tensor of the tuple split alike."""
        part = tuple(distributed.shard(t) if isinstance(t, torch.Tensor) else t for t in batch)
        return part, self.size(part) / self.size(batch)

    def loss(self, forward: Forward, batch: Any, epoch: int) -> Step:
        """The loss on ``batch``, its forward pass through ``forward`` (the network under the loop's autocast)."""
        raise NotImplementedError

    def after_update(self, batch: Any, step: Step, epoch: int, scale: float | None) -> dict[str, float]:
        """Called after each optimiser step (a trainee's own updates, e.g. a discriminator's); ``scale`` is the
        factor on this rank's mean losses on several processes, else None. Returns more values to log."""
        return {}

    def validate(self) -> dict[str, float]:
        """Validation values after an epoch, :attr:`monitor` among them (the network in evaluation mode)."""
        raise NotImplementedError

    def score(self, values: dict[str, float]) -> Any:
        """What the loop keeps the largest of: the monitored value (negated when smaller is better)."""
        value = values[self.monitor]
        return value if self.maximize else -value

    def selectable(self, epoch: int) -> bool:
        """Whether ``epoch``'s weights may be kept (a trainee excludes its warm-up)."""
        return True

    def warmed_up(self, epoch: int) -> bool:
        """Whether early stopping may stop after ``epoch``."""
        return True

    def epoch_fields(self, epoch: int) -> dict[str, float]:
        """Values of the epoch itself for its history row (e.g. a KL weight)."""
        return {}

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """The epoch's training means, with any derived from them."""
        return means


@dataclass(frozen=True)
class Fit:
    """What :func:`fit` did: the history rows (the module docstring's schema), the kept epoch, epochs trained."""

    history: list[dict]
    best_epoch: int
    epochs_run: int


def fit(trainee: Trainee, schedule: Schedule, device: torch.device, desc: str | None = None, leave: bool = True) -> Fit:
    """Train ``trainee.model`` with Adam for at most ``schedule.epochs``, validating after each; the model ends
    with the weights of its best selectable epoch, in evaluation mode. ``desc``: the progress bar's label."""
    model, label = trainee.model, desc or trainee.name
    net = distributed.wrap(model)  # DistributedDataParallel on several processes (trains model's weights), else model
    optimizer = adam(model.parameters(), schedule.learning_rate)
    use_amp = amp_enabled(schedule.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def forward(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            return net(*args, **kwargs)

    history: list[dict] = []
    best, best_state, best_epoch = None, None, -1
    for epoch in (bar := tqdm(range(schedule.epochs), desc=label, unit="epoch", leave=leave)):
        model.train()
        means = _train_epoch(trainee, forward, optimizer, scaler, epoch, label)
        distributed.sync_buffers(model)  # rank 0's batch-norm statistics everywhere: the same validation
        values = distributed.from_main(trainee.validate())  # rank 0's decides (identical weights on every rank)
        row = {"model": trainee.name, "epoch": epoch, **trainee.epoch_fields(epoch)}
        row |= {f"train_{k}": v for k, v in means.items()} | {f"val_{k}": v for k, v in values.items()}
        history.append(row)
        shown = means.get(trainee.monitor, means.get("loss", math.nan))
        bar.set_postfix(train=f"{shown:.4g}", val=f"{values[trainee.monitor]:.4g}")
        score = trainee.score(values)
        if trainee.selectable(epoch) and _improves(score, best):
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            row["best"] = True
        stale = epoch - best_epoch if best_epoch >= 0 else 0
        if schedule.patience and trainee.warmed_up(epoch) and stale >= schedule.patience:
            logger.info("%s: stopped early at epoch %d, no better validation since epoch %d", label, epoch, best_epoch)
            break
    if best_state is None:
        raise ValueError(
            f"{label}: no epoch to keep (no selectable epoch with a finite validation "
            f"{trainee.monitor}); raise the number of epochs or lower the learning rate"
        )
    model.load_state_dict(best_state)
    model.eval()
    return Fit(history, best_epoch, len(history))


def _train_epoch(trainee: Trainee, forward: Forward, optimizer, scaler, epoch: int, label: str) -> dict[str, float]:
    """One pass over the trainee's batches; the means of what its steps logged, over the epoch's images. A
    non-finite loss stops training with ``label`` (what is being trained) named."""
    sums: dict[str, float] = {}
    n = 0
    for batch in trainee.batches(epoch):
        counted, scale = trainee.size(batch), None
        if distributed.active():  # this rank's shard of the global batch (pipeline.distributed)
            size = counted
            batch, share = trainee.shard(batch)
            counted, scale = distributed.tally(size, trainee.size(batch)), distributed.loss_scale(size, share)
        step = trainee.loss(forward, batch, epoch)
        if not torch.isfinite(step.loss):
            raise FloatingPointError(
                f"{label}: loss {step.loss.item()} at epoch {epoch}; lower the learning rate or check the inputs"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(step.loss if scale is None else step.loss * scale).backward()
        scaler.step(optimizer)
        scaler.update()
        logged = step.logged | trainee.after_update(batch, step, epoch, scale)
        for key, value in logged.items():
            value = value.item() if isinstance(value, torch.Tensor) else value
            sums[key] = sums.get(key, 0.0) + value * counted
        n += counted
    if distributed.active():  # the epoch's totals over every rank's shards
        sums = distributed.sum_over_ranks(sums | {"images": n})
        n = int(sums.pop("images"))
    return trainee.summarize({k: v / n for k, v in sums.items()})


def _improves(score: Any, best: Any) -> bool:
    """Whether ``score`` beats ``best`` (None: nothing kept yet); a NaN score never does."""
    values = score if isinstance(score, tuple) else (score,)
    if any(math.isnan(v) for v in values):
        return False
    return best is None or score > best
