"""bench/panel.py's page: each dataset's remedy table, and its learning curve, worth in real images and the remedies'
own curves, from what a run measured."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def panel():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("panel", ROOT / "bench" / "panel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _remedy(test: float, vs: dict | None) -> dict:
    return {"test_balanced_accuracy": test, "ci": [test - 0.03, test + 0.03], "vs_real_only": vs, "auroc": 0.9,
            "test_per_seed": [test], "val_per_seed": [test]}  # fmt: skip


def _run(**extra) -> dict:
    vs = {"difference": 0.05, "ci_low": 0.01, "ci_high": 0.09}
    return {
        "name": "demo", "description": "built-in demo", "train_images": {"nodule": 60, "normal": 420},
        "recommendation": {"remedy": "vae"}, "remedies": {"real_only": _remedy(0.85, None), "vae": _remedy(0.9, vs)},
        "seconds": 300, "machine": "a CPU, 2 cores", "date": "2026-12-07",
    } | extra  # fmt: skip


def test_a_dataset_section_shows_its_curve_worth_and_own_curves(panel):
    point = {"minority_images": 30, "balanced_accuracy": 0.8, "ci_low": 0.75, "ci_high": 0.85}
    own = {"vae": [point | {"vs_real_only": {"difference": 0.02, "ci_low": -0.01, "ci_high": 0.05}}]}
    worth = {"vae": {"helps": True, "sentence": "vae did as much as about 40 more real nodule images would have"}}
    text = "\n".join(
        panel.dataset_section(_run(learning_curve=[point], worth=worth, learning_curve_remedies=own, figure="x.png"))
    )
    assert "regret 0.000" in text and "| vae | 0.900 | 0.900 [0.870, 0.930] | +0.050 [+0.010, +0.090]" in text
    assert "real_only's test BA at 30 images 0.800" in text and "- vae did as much as about 40" in text
    assert "| vae | +0.020 [-0.010, +0.050] |" in text and "![demo: learning curve](x.png)" in text
    bare = "\n".join(panel.dataset_section(_run()))  # a run from before the curve: said so, no crash
    assert "No learning curve" in bare
