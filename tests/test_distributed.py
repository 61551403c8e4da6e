"""Training on two CPU processes (pipeline.distributed): torchrun with gloo against one process with the same global
batch, and a stage run with compute.processes: 2 writing its outputs once.

Tolerances, and why:
- The first steps of networks without batch norm and sampling noise (classifiers with augmentation, Balanced-MixUp
  and class weights; the VAE and the VAE-GAN decoding posterior means), over a global batch of 8 and an uneven last
  batch of 5 (shards 3 + 2): weights within rtol 1e-4, atol 1e-5 of one process. Only the order of float sums
  differs (measured: at most 3e-8 for the classifiers and the VAE, 7e-6 for the VAE-GAN, whose discriminator's
  Adam step divides by small gradients); averaging the ranks' mean losses without the shard weighting moves
  weights by 2e-3 to 9e-3.
- Full trainings with batch norm: on the CPU torch refuses SyncBatchNorm, so each rank normalises with its shard's
  statistics (8 images instead of 16), and each rank draws its own reparameterisation noise. The classifier's
  validation and test balanced accuracy within 0.05 (one image of a class in 24; measured: equal, 1.0), the VAE's
  best validation loss within 5 % (measured: 1.0 %; one process with 1 or 2 torch threads alone differs by 0.4 %).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline import distributed
from pipeline.config import ComputeConfig, ConfigError, parse_section
from pipeline.generators import load_generator
from pipeline.io.atomic import atomic_dir, atomic_file
from pipeline.runtime import RUN_LOG
from tests.project import ROOT, TINY, dvc, dvc_env, scratch_project


def _fit(out, *launcher: str) -> dict:
    """tests/distributed_fit.py run by ``launcher`` (none: one process), one torch thread per process (what each of
    two ranks gets on 2 cores; it also keeps the reference from competing with itself)."""
    env = dvc_env(OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", *launcher, "tests.distributed_fit", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    torchrun = ("torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m")
    return _fit(folder / "one.json"), _fit(folder / "two.json", *torchrun)


def test_two_processes_ran_under_gloo_without_sync_batch_norm(one_and_two):
    one, two = one_and_two
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert "expected input tensor to be on GPU" in two["sync_batch_norm_on_cpu"]  # hence per-rank BN statistics


@pytest.mark.parametrize(
    "network",
    [
        "classifier classical",  # augmentation drawn for the global batch, whatever the processes
        "classifier mixup",  # Balanced-MixUp's draws and two label sets
        "classifier class_weight",  # a weighted mean: shares by the shard's class weights
        "vae",  # the autoencoder loop
        "vae_gan",  # plus the discriminator, in DDP with its own optimiser
    ],
)
def test_first_steps_average_the_gradient_of_the_global_batch(one_and_two, network):
    one, two = (np.array(run["first_steps"][network]) for run in one_and_two)
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-5)


def test_trainings_give_the_metrics_of_one_process(one_and_two):
    one, two = (run["trainings"] for run in one_and_two)
    for split in ("val", "test"):
        key = f"classifier_{split}_balanced_accuracy"
        assert one[key] >= 0.9  # it learned: the comparison means something
        assert abs(two[key] - one[key]) <= 0.05, (key, one[key], two[key])
    assert two["vae_best_val_elbo"] == pytest.approx(one["vae_best_val_elbo"], rel=0.05)


def test_other_ranks_build_their_outputs_aside_and_drop_them(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with atomic_file(tmp_path / "out" / "metrics.json") as tmp:
        tmp.write_text("{}")
        assert tmp_path not in tmp.parents
    with atomic_dir(tmp_path / "pool") as staging:
        (staging / "image.nii").write_bytes(b"x")
        scratch = staging.parent
    assert list(tmp_path.iterdir()) == [] and not scratch.exists()


def test_the_relaunch_runs_the_stage_module_through_torchrun(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_generator.py", "--flag"])
    command = distributed.relaunch_command("pipeline.train_generator", 4)
    assert command[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=4" in command
    assert command[-3:] == ["-m", "pipeline.train_generator", "--flag"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.relaunch("pipeline.train_generator") is None  # already under torchrun: runs here


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"processes": 0}, "compute.processes must be at least 1"),  # no process
        ({"processes": 2, "device": "cuda:1"}, "compute.device must be auto, cpu or cuda when"),  # one pinned GPU
        ({"workers": -1}, "compute.workers must be 0"),  # fewer than none
    ],
)
def test_process_settings_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_section(
            "compute", {"device": "auto", "deterministic": True, "processes": 1, "workers": 0} | values, ComputeConfig
        )


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="tells two ranks from one by their torch threads")
def test_a_stage_on_two_processes_writes_its_outputs_once(tmp_path):
    project = scratch_project(
        tmp_path, TINY, {"generator": {"kind": "vae"}}, {"compute": {"device": "cpu", "processes": 2}}
    )
    dvc(project, "repro", "train_generator")
    generator, _ = load_generator(project / "models" / "generator.pt", torch.device("cpu"))
    assert generator.sample(0, 2, np.random.default_rng(0)).shape == (2, *generator.image_shape)
    rows = (project / "reports" / "generator_training.csv").read_text(encoding="utf-8").splitlines()
    networks = 1 if generator.mode == "conditional" else len(generator.classes)
    assert len(rows) == 1 + networks * TINY["vae"]["epochs"]  # a header and one row per network and epoch
    leftovers = [p for folder in ("models", "reports") for p in (project / folder).rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    records = [json.loads(p.read_text()) for p in (project / RUN_LOG).glob("*.json")]
    stage = [r for r in records if "pipeline.train_generator" in r["command"]]
    assert len(stage) == 1  # rank 0's record, the launcher writes none
    assert f"{max(1, os.cpu_count() // 2)} torch threads" in stage[0]["device"]  # a rank's share of the cores
