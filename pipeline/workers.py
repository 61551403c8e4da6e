"""Independent trainings side by side in worker processes (``compute.workers``), each with its share of the cores.

A small network does not keep two CPU cores busy: its convolutions are too small to split well between threads,
so two trainings with one thread each finish sooner than the same two one after the other with every thread. A
stage with many independent trainings of a small network (train_classifier's remedies x seeds, a ``per_class``
generator's networks in train_generator) hands them to :func:`run_tasks`, which runs them in ``workers`` processes
with ``torch threads // workers`` threads each. What gains depends on the network and the machine: the latent
stage's VAEs gained nothing side by side, so that stage trains them in turn. The timings that decided each case are
in docs/measurements.md ("Why the defaults are what they are").

- **Same results whoever runs a task.** Each task seeds itself and gets its data as arguments; results come back in
  the order of ``tasks``. What changes with the number of workers is the threads per training, and with it the
  order of float sums inside a kernel: a run with ``workers: 1`` (all threads, one training at a time) can differ
  from one with ``workers: 2`` in the last bits, as runs on two machines do; runs with the same setting on the same
  machine are bit-identical.
- **Processes are spawned** (not forked: a fork of a process whose OpenMP pool has run can hang), import torch once
  each, and receive the task's arguments pickled: pass :class:`~pipeline.io.arrays.DiskArray`-backed splits (a
  path, read in the worker), not large in-memory arrays. Their progress bars are off (the caller shows one over the
  tasks) and they log warnings only; an exception in a task is raised here with its traceback.
- **One process** runs the tasks in order in this process: ``workers`` 1, a single task, a GPU (``workers: 0``
  asks for one worker per core on a CPU, at most 8, and one on a GPU), or a stage already running under torchrun
  (``compute.processes`` > 1, whose ranks must train the same tasks in step).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

from pipeline import distributed, runtime

__all__ = ["worker_count", "run_tasks", "state_arrays", "restore_state"]

T = TypeVar("T")
R = TypeVar("R")


AUTO_MOST = 8  # compute.workers 0 starts at most this many: each worker holds its own copy of torch in memory


def worker_count(setting: int, device, tasks: int) -> int:
    """How many processes run ``tasks`` independent trainings on ``device`` for ``compute.workers`` = ``setting``:
    ``setting`` itself when positive, else one per core on a CPU (at most :data:`AUTO_MOST`) and one on a GPU; never
    more than the tasks, and 1 under torchrun."""
    if distributed.launched():
        return 1
    if setting <= 0:
        setting = min(os.cpu_count() or 1, AUTO_MOST) if device.type == "cpu" else 1
    return max(1, min(setting, tasks))


def _start_worker(threads: int, compute: dict[str, Any]) -> None:
    """In a new worker: its torch threads, the parent's device setting and determinism, warnings-only logging."""
    import torch

    torch.set_num_threads(threads)
    runtime.select_device(compute["device"], compute["deterministic"])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@contextmanager
def _quiet_progress():
    """Progress bars off in the processes started inside (tqdm reads ``TQDM_DISABLE`` when it is imported)."""
    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = before


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    desc: str = "tasks",
    cost: Sequence[float] | None = None,
) -> list[R]:
    """``[fn(task) for task in tasks]``, run by ``workers`` processes (:func:`worker_count` decides how many).

    Args:
        fn: a module-level function (workers import it by name); ``functools.partial`` of one is fine.
        tasks: the arguments, one call each; they and the results are pickled between processes.
        workers: the processes to use (1: this process, in order).
        desc: the progress bar's label.
        cost: a relative cost per task: the costliest start first, so that the last to finish is a short one.
    """
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        return [fn(task) for task in tqdm(tasks, desc=desc, unit="task")]
    import torch

    order = sorted(range(len(tasks)), key=lambda i: -cost[i]) if cost is not None else list(range(len(tasks)))
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    results: list[Any] = [None] * len(tasks)
    with (
        ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(threads, runtime.compute_setting())
        ) as pool,
        tqdm(total=len(tasks), desc=f"{desc} ({workers} workers)", unit="task") as bar,
    ):
        with _quiet_progress():  # the workers start as the tasks are submitted
            futures = {pool.submit(fn, tasks[i]): i for i in order}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results


def state_arrays(model) -> dict[str, Any]:
    """``model``'s weights and buffers as numpy arrays: a trained network's result that pickles between processes
    as plain data (torch tensors would travel through shared memory)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def restore_state(model, state: dict[str, Any]) -> None:
    """Load :func:`state_arrays`' ``state`` into ``model`` (same architecture), bit for bit."""
    import torch

    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
