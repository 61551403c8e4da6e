"""Independent tasks in worker processes (pipeline.workers): results in task order, whoever ran them, errors
raised here, each worker with its share of the threads, the parent's device setting and no progress bars."""

from __future__ import annotations

import functools
import os
import pickle

import numpy as np
import pytest
import torch

from pipeline import runtime, workers
from pipeline.workers import run_tasks, worker_count

CPU = torch.device("cpu")


def _describe(task: int, offset: int = 0) -> dict:
    """What a task sees: its value, its process, torch's threads, the device setting, tqdm's switch."""
    return {
        "value": task * task + offset,
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        "compute": runtime.compute_setting(),
        "tqdm_disable": os.environ.get("TQDM_DISABLE"),
    }


def _fail_on_three(task: int) -> int:
    if task == 3:
        raise ValueError(f"task {task} is bad")
    return task


@pytest.mark.parametrize(
    ("setting", "device", "tasks", "expected"),
    [
        (3, "cpu", 10, 3),  # as many as asked
        (3, "cpu", 2, 2),  # never more than the tasks
        (0, "cpu", 100, min(os.cpu_count() or 1, workers.AUTO_MOST)),  # 0: one per core on a CPU, at most 8
        (0, "cuda", 100, 1),  # ... one on a GPU
        (1, "cpu", 100, 1),  # 1: in this process
    ],
)
def test_worker_count(setting, device, tasks, expected):
    assert worker_count(setting, torch.device(device), tasks) == expected


def test_under_torchrun_the_tasks_run_in_this_process(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert worker_count(4, CPU, 10) == 1


def test_two_workers_give_the_results_of_one_process_in_task_order():
    tasks = [5, 1, 4, 2, 3]
    fn = functools.partial(_describe, offset=7)
    here = run_tasks(fn, tasks, 1)
    there = run_tasks(fn, tasks, 2, cost=[1, 5, 2, 4, 3])  # submitted costliest first, returned in task order
    assert [r["value"] for r in there] == [r["value"] for r in here] == [t * t + 7 for t in tasks]
    assert {r["pid"] for r in here} == {os.getpid()}
    assert os.getpid() not in {r["pid"] for r in there} and len({r["pid"] for r in there}) <= 2


def test_workers_share_the_threads_and_repeat_the_device_setting_without_progress_bars():
    before = runtime.compute_setting()
    runtime.select_device("cpu", False)
    try:
        seen = run_tasks(_describe, [1, 2], 2)
    finally:
        runtime.select_device(before["device"], before["deterministic"])
    assert {r["threads"] for r in seen} == {max(1, torch.get_num_threads() // 2)}
    assert all(r["compute"] == {"device": "cpu", "deterministic": False} for r in seen)
    assert {r["tqdm_disable"] for r in seen} == {"1"}


def test_a_failing_task_raises_here_with_its_message():
    with pytest.raises(ValueError, match="task 3 is bad"):
        run_tasks(_fail_on_three, [1, 2, 3, 4], 2)
    with pytest.raises(ValueError, match="task 3 is bad"):
        run_tasks(_fail_on_three, [1, 2, 3, 4], 1)


def test_the_parent_keeps_its_progress_bar_setting(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with workers._quiet_progress():
        assert os.environ["TQDM_DISABLE"] == "1"
    assert "TQDM_DISABLE" not in os.environ
    monkeypatch.setenv("TQDM_DISABLE", "0")
    with workers._quiet_progress():
        pass
    assert os.environ["TQDM_DISABLE"] == "0"


def test_a_network_state_passes_as_arrays_bit_for_bit():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    net(torch.rand(2, 1, 8, 8))  # batch-norm statistics and their counter (an integer buffer) move too
    state = workers.state_arrays(net)
    assert all(isinstance(v, np.ndarray) for v in state.values())
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    workers.restore_state(other, pickle.loads(pickle.dumps(state)))
    pairs = zip(net.state_dict().values(), other.state_dict().values(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)
