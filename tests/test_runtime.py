"""Device choice and determinism from params.yaml's compute section (pipeline.runtime)."""

import pytest
import torch

from pipeline import runtime
from pipeline.config import ComputeConfig, ConfigError, parse_section


@pytest.fixture(autouse=True)
def _restore_compute():
    before = dict(runtime._COMPUTE)
    yield
    runtime._COMPUTE.update(before)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def test_cpu_is_chosen_when_asked_and_named_in_the_run_log():
    assert runtime.select_device("cpu") == torch.device("cpu")
    assert runtime.device_name().startswith("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_asked_for_and_absent_is_an_error_not_a_silent_cpu_run():
    assert runtime.select_device("auto") == torch.device("cpu")
    for setting in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError, match=f"compute.device is {setting}, but this machine has 0 visible"):
            runtime.select_device(setting)


def test_determinism_follows_the_setting():
    runtime.select_device("cpu", deterministic=False)
    runtime.seed_everything(0)
    assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    runtime.select_device("cpu", deterministic=True)
    runtime.seed_everything(0)
    assert not torch.backends.cudnn.benchmark and torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_settings_accepted(device):
    assert (
        parse_section(
            "compute", {"device": device, "deterministic": True, "processes": 1, "workers": 0}, ComputeConfig
        ).device
        == device
    )


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU", "mps"])
def test_other_device_settings_refused(device):
    with pytest.raises(ConfigError, match="compute.device must be auto, cpu, cuda or cuda:N"):
        parse_section("compute", {"device": device, "deterministic": True, "processes": 1, "workers": 0}, ComputeConfig)
