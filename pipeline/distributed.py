"""Training on several processes with PyTorch's own engine: torchrun launches them, DistributedDataParallel (DDP)
averages their gradients. One process (``compute.processes: 1``, the default) runs none of this.

- **Launch.** A training stage run with ``compute.processes`` N > 1 and not already under torchrun starts itself
  again as ``python -m torch.distributed.run --standalone --nproc_per_node N -m <stage>`` (:func:`relaunch`, called
  by :func:`pipeline.runtime.run_stage`) and exits with its status. Under torchrun,
  :func:`pipeline.runtime.compute_device` picks :func:`local_device` (``cuda:LOCAL_RANK`` on GPUs, else the CPU)
  and :func:`join` starts the process group: NCCL on GPUs; gloo on the CPU, each rank with
  ``cpu_count // local ranks`` torch threads. Multi-node: run torchrun yourself with its rendezvous flags.
- **Loops.** Every rank holds the whole in-memory split and draws the same seeded order and the same augmentation
  and mixup numbers, so every rank builds the same global batch of ``batch_size`` images, whatever N; each trains on
  its contiguous :func:`shard` of it (batch / N images) in a :func:`wrap`-ped model. This is what a
  ``DistributedSampler`` gives, with an order that does not depend on N. :func:`loss_scale` makes DDP's average of
  the ranks' gradients the gradient of the global batch's mean loss, also for an uneven last batch.
- **Batch norm.** On CUDA, :func:`wrap` turns BatchNorm into SyncBatchNorm (statistics of the global batch). On the
  CPU, torch (2.13) refuses SyncBatchNorm ("expected input tensor to be on GPU"), so each rank normalises with its
  shard's statistics: the one real difference from one process, besides the order of float sums. DDP broadcasts
  rank 0's running statistics at each forward; :func:`sync_buffers` does it before validation.
- **Decisions.** Weights are identical on every rank after each all-reduced step, so validation gives the same
  numbers everywhere; :func:`from_main` still hands every rank rank 0's score, so the kept epoch and early stopping
  cannot differ between ranks.
- **Seeds.** The same seeds on every rank (order, augmentation, mixup, initial weights: DDP also broadcasts rank
  0's). A rank's own stream only where it draws noise for its own images: the VAE's reparameterisation noise
  (:func:`seed_rank`; rank 0 keeps the seed's stream).
- **Outputs.** Every rank runs the whole stage (a stage may train many models, with writes in between); only rank 0
  writes: :mod:`pipeline.io.atomic` builds the other ranks' files and folders in a scratch folder and drops them,
  and :func:`pipeline.runtime.run_stage` writes the run log on rank 0 only. The ranks other than 0 log warnings only
  and their console output is not shown (torchrun's ``--local-ranks-filter 0``).

torch is imported inside the functions: :func:`pipeline.runtime.run_stage` imports this module in every stage.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

__all__ = [
    "TRAINING_STAGES",
    "launched",
    "rank",
    "is_main",
    "world_size",
    "active",
    "relaunch_command",
    "relaunch",
    "local_device",
    "join",
    "finish",
    "wrap",
    "shard",
    "loss_scale",
    "tally",
    "sync_buffers",
    "from_main",
    "sum_over_ranks",
    "seed_rank",
]

# the stages that train a network (and call pipeline.runtime.compute_device): run_stage launches these through
# torchrun when compute.processes > 1; the others always run in one process
TRAINING_STAGES = (
    "pipeline.train_generator",
    "pipeline.train_classifier",
    "pipeline.generate",
    "pipeline.anomaly",
    "pipeline.latent",
)


def launched() -> bool:
    """Whether this process was started by torchrun (which sets ``LOCAL_RANK`` and ``WORLD_SIZE``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    """This process's global rank (0 outside torchrun)."""
    return int(os.environ.get("RANK", 0))


def is_main() -> bool:
    """Whether this process writes outputs: rank 0, or the only process."""
    return rank() == 0


def world_size() -> int:
    """Processes training together: the process group's size, 1 without one."""
    return _group_size() if active() else 1


def _group_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size()


def active() -> bool:
    """Whether a process group of more than one process is running (the loops then shard and average)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return False
    return torch.distributed.get_world_size() > 1


def relaunch_command(module: str, processes: int) -> list[str]:
    """``python -m torch.distributed.run`` running ``module`` on ``processes`` processes of this machine, rank 0's
    output alone on the console, with this process's arguments."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "--local-ranks-filter=0",
        "-m",
        module,
        *sys.argv[1:],
    ]


def relaunch(module: str) -> int | None:
    """When ``module`` is a training stage, ``compute.processes`` > 1 and torchrun did not start this process: run
    the stage through torchrun and return its exit status; otherwise None (run it here)."""
    if module not in TRAINING_STAGES or launched():
        return None
    from pipeline.config import load_section

    processes = load_section("compute").processes
    if processes == 1:
        return None
    return subprocess.run(relaunch_command(module, processes), check=False).returncode


def local_device(device_setting: str) -> str:
    """This rank's device for ``compute.device``: ``cuda:LOCAL_RANK`` for auto (when a GPU is visible) or cuda, else
    cpu."""
    import torch

    if device_setting == "cpu" or (device_setting == "auto" and not torch.cuda.is_available()):
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}"


def join(device) -> None:
    """Under torchrun: start the process group once, NCCL for a CUDA ``device``, gloo for the CPU; on the CPU, share
    the machine's cores between its ranks (torchrun sets ``OMP_NUM_THREADS=1``)."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
    )
    if not is_main():
        logging.getLogger().setLevel(logging.WARNING)


def finish() -> None:
    """End the process group, if one was started."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(model):
    """``model`` in DistributedDataParallel (its BatchNorm layers synchronised on CUDA); ``model`` itself when not
    :func:`active`. Train through what this returns; validate and save ``model`` (the same weights)."""
    if not active():
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def _split(size: int) -> bool:
    """Whether a global batch of ``size`` items is split between the ranks: a batch with fewer items than ranks is
    trained whole by every rank (their identical gradients average to its own)."""
    return size >= world_size()


def shard(batch):
    """This rank's contiguous part of a global batch (a tensor of items or of indices): sizes differ by at most one
    between ranks. The whole batch when not :func:`active` or when it has fewer items than ranks."""
    if not active() or not _split(len(batch)):
        return batch
    return batch.tensor_split(world_size())[rank()]


def loss_scale(size: int, share: float) -> float:
    """The factor on this rank's mean loss that makes DDP's average of the ranks' gradients the gradient of the mean
    loss over the global batch of ``size`` items. ``share``: this rank's part of the global mean's denominator
    (its shard's items / the batch's items; for a weighted mean, the shard's weights / the batch's)."""
    return world_size() * share if _split(size) else 1.0


def tally(size: int, part: int) -> int:
    """How many of a global batch of ``size`` items this rank counts in the epoch's totals (its ``part`` items; 0 on
    the ranks other than 0 when the batch was not split), so that :func:`sum_over_ranks` counts each item once."""
    return part if _split(size) or is_main() else 0


def sync_buffers(model) -> None:
    """Rank 0's buffers (batch norm's running statistics) on every rank: each rank updated its own from its shard
    in the last training step."""
    if not active():
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank; ``value`` itself in one process."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def sum_over_ranks(totals: dict[str, float]) -> dict[str, float]:
    """Each entry summed over the ranks (the same keys on every rank); ``totals`` itself in one process."""
    if not active():
        return totals
    import torch
    import torch.distributed as dist

    keys = sorted(totals)
    values = torch.tensor([totals[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist(), strict=True))


def seed_rank(seed: int) -> None:
    """Seed torch's global generator for this rank's own noise: rank 0 keeps its stream (seeded by ``seed``), each
    other rank gets a stream derived from ``seed`` and its rank. Nothing in one process."""
    if not active() or is_main():
        return
    import numpy as np
    import torch

    torch.manual_seed(int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0]))
