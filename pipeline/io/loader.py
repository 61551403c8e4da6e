"""Batches of a split for torch, read from disk as they are needed: a :class:`torch.utils.data.Dataset` over an
image array (a :class:`~pipeline.io.arrays.DiskArray`, a :class:`~pipeline.io.arrays.Rows` view or an ndarray) and
the DataLoader the training loops draw from.

The loader reads one whole batch per call (``__getitems__``: one sorted read of its rows, not one call per image).
On a CPU it reads in the training process (no workers: on a few cores they would take cores from the training, and
the reads are a small share of a step); on CUDA :data:`CUDA_WORKERS` worker processes read ahead into pinned memory
so that copies to the GPU overlap the computation. Either way the batches, and so the training, are the same: which
rows form a batch is decided by the caller's sampler, never by the workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from pipeline.io.arrays import ImageArray

__all__ = ["ImageDataset", "batch_loader", "image_loader", "CUDA_WORKERS"]

CUDA_WORKERS = min(4, max((os.cpu_count() or 1) - 1, 0))  # reader processes per loader on a GPU


class ImageDataset(Dataset):
    """Rows of ``images`` with the same rows of each array in ``columns`` (labels, weights), as tensors;
    ``dataset[[i, j, ...]]`` (what the loader asks for) gives the whole batch, stacked."""

    def __init__(self, images: ImageArray, *columns: np.ndarray) -> None:
        if any(len(c) != len(images) for c in columns):
            raise ValueError(f"{len(images)} images but columns of lengths {[len(c) for c in columns]}")
        self.images, self.columns = images, columns

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([i]))

    def __getitems__(self, index: Sequence[int]) -> tuple[torch.Tensor, ...]:
        rows = np.asarray(index, dtype=np.int64)
        return (torch.from_numpy(np.asarray(self.images[rows])), *(torch.as_tensor(c[rows]) for c in self.columns))


def _whole_batch(batch):
    """The collate function: ``__getitems__`` already stacked the batch."""
    return batch


def batch_loader(
    dataset: ImageDataset,
    batches: Iterable[list[int]],
    device: torch.device,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader giving ``dataset``'s rows for each index list of ``batches`` (a sampler or a list), in order.

    Each pass over a DataLoader draws one number (its workers' base seed) from ``generator``: given the shuffling
    sampler's generator, the draws are those of ``DataLoader(..., shuffle=True, generator=...)``; by default a
    private generator, so that reading batches never moves torch's global random stream."""
    cuda = torch.device(device).type == "cuda"
    workers = CUDA_WORKERS if cuda else 0
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=_whole_batch,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
        generator=torch.Generator() if generator is None else generator,
    )


def image_loader(
    images: ImageArray,
    labels: np.ndarray,
    batch_size: int,
    device: torch.device,
    shuffle: bool = False,
    seed: int = 0,
) -> DataLoader:
    """(images, labels) in batches of ``batch_size``: in order, or shuffled by a generator seeded with ``seed`` (the
    same order as ``DataLoader(TensorDataset(...), batch_size, shuffle=True, generator=...)``)."""
    dataset, order = ImageDataset(images, labels), torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, generator=order) if shuffle else SequentialSampler(dataset)
    return batch_loader(dataset, BatchSampler(sampler, batch_size, drop_last=False), device, order)
