"""Stages ``train_classifier@<strategy>`` and ``ablation@<ratio>``: one remedy for class imbalance, the same
classifier trained once per seed.

``python -m pipeline.train_classifier STRATEGY --out DIR [--ratio R]``. The strategies are in
:mod:`pipeline.strategies`; all share architecture, epochs, optimiser, early stopping and seeds. On the
validation split only: the epoch (best balanced accuracy, ties broken by the lower validation loss; early stopping
after ``patience`` epochs without a better one) and, for two classes, the decision threshold on the minority
class's probability. Each chosen model then sees the untouched test split once. Before any training the stage
refuses to go on if a test patient is among the training or validation patients, the patients the VAE learnt
from, or a strategy's training set.

Outputs in ``DIR``: ``metrics.json`` (mean and standard deviation over seeds, 95% bootstrap intervals over test
images), ``runs.json`` (per seed: epochs, threshold, training counts, test metrics with the confusion matrix) and
``predictions.npz`` (test labels, every seed's test probabilities and threshold: for the compare stage's paired
tests and the report's curves).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.config import TrainClassifierConfig, load_section
from pipeline.io.arrays import SplitData, load_split, read_json, write_json, write_npz
from pipeline.io.synthetic import read_synthetic
from pipeline.metrics import bootstrap_ci, choose_threshold, classification_metrics, minority_classes, summarise_runs
from pipeline.models.classifier import build_classifier
from pipeline.runtime import run_stage, seed_everything, select_device
from pipeline.strategies import Recipe, check_no_test_patients, class_weights, classical_augmentation, training_recipe
from pipeline.transforms import plain_tensors

__all__ = ["fit_classifier", "predict_proba", "run_strategy", "main"]

logger = logging.getLogger(__name__)

NEEDS_SYNTHETIC = ("vae", "vae_classical", "synthetic_only")


@torch.no_grad()
def predict_proba(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    model.eval()
    out = [
        torch.softmax(model(torch.from_numpy(images[i : i + batch]).to(device)).float(), 1).cpu()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out).numpy()


def _validation_score(val: SplitData, proba: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, minus the cross-entropy): compared as a tuple, so the loss breaks ties."""
    metrics = classification_metrics(val.labels, proba, val.classes)
    loss = -np.log(np.clip(proba[np.arange(len(val)), val.labels], 1e-12, None)).mean()
    return metrics["balanced_accuracy"], -float(loss)


def fit_classifier(
    recipe: Recipe, val: SplitData, cfg: TrainClassifierConfig, seed: int, device: torch.device, desc: str = "fit"
) -> tuple[torch.nn.Module, dict]:
    """Train on ``recipe`` for at most ``cfg.epochs``; return the model of the epoch with the best validation
    score and ``{"best_epoch", "epochs_run"}``."""
    seed_everything(seed)
    train = recipe.data
    weight = class_weights(train).to(device) if recipe.weighted else None
    transform = classical_augmentation(train.images.ndim - 2, seed) if recipe.augment else None
    model = build_classifier(
        train.images.shape[1:], len(train.classes), cfg.network, cfg.channels, cfg.blocks_per_level
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    order = torch.Generator().manual_seed(seed)
    best, best_epoch, best_state, stale, epoch = (-1.0, -np.inf), -1, None, 0, -1
    for epoch in tqdm(range(cfg.epochs), desc=desc, unit="epoch", leave=False):
        model.train()
        for batch in torch.randperm(len(labels), generator=order).split(cfg.batch_size):
            x = images[batch]
            if transform is not None:
                with plain_tensors():
                    x = torch.stack([torch.as_tensor(transform(image), dtype=torch.float32) for image in x])
            loss = F.cross_entropy(model(x.to(device)), labels[batch].to(device), weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = _validation_score(val, predict_proba(model, val.images, device))
        if score > best:
            best, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if cfg.patience and stale >= cfg.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    return model, {"best_epoch": best_epoch, "epochs_run": epoch + 1}


def run_strategy(
    strategy: str,
    train: SplitData,
    val: SplitData,
    test: SplitData,
    synthetic: SplitData | None,
    cfg: TrainClassifierConfig,
    device: torch.device,
    ratio: float | None = None,
) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    """Train ``strategy`` with every seed; return its summary, the per-seed records and the test predictions."""
    check_no_test_patients(test, train=train.patients, val=val.patients)
    ratio = cfg.synthetic_ratio if ratio is None else ratio
    counts = train.counts()
    positive = train.classes.index(min(counts, key=counts.get))  # the smallest class, for a binary threshold
    runs, probas, thresholds = [], [], []
    for seed in cfg.seeds:
        recipe = training_recipe(strategy, train, synthetic, ratio, seed)
        check_no_test_patients(test, **{f"the {strategy} training set": recipe.data.patients})
        model, fit = fit_classifier(recipe, val, cfg, seed, device, desc=f"{strategy} seed {seed}")
        threshold = choose_threshold(val.labels, predict_proba(model, val.images, device), positive)
        proba = predict_proba(model, test.images, device)  # the one look at the test split
        metrics = classification_metrics(test.labels, proba, test.classes, threshold, positive)
        probas.append(proba)
        thresholds.append(threshold)
        runs.append(
            {"seed": seed, **fit, "threshold": threshold, "train_images": recipe.data.counts(), "test": metrics}
        )
        logger.info("%s seed %d: test balanced accuracy %.3f", strategy, seed, metrics["balanced_accuracy"])
    minorities = minority_classes(counts)
    ci_keys = ["balanced_accuracy", "macro_f1", "auroc", "accuracy"] + [f"recall_{c}" for c in minorities]
    summary = summarise_runs([r["test"] for r in runs])
    intervals = bootstrap_ci(test.labels, probas, thresholds, test.classes, ci_keys, positive=positive)
    for key, (low, high) in intervals.items():
        summary[f"{key}_ci_low"], summary[f"{key}_ci_high"] = low, high
    summary |= {
        "strategy": strategy,
        "synthetic_ratio": ratio if strategy in ("vae", "vae_classical") else 0.0,
        "seeds": len(cfg.seeds),
        "minority_classes": minorities,
        "threshold": f"chosen on validation for class {train.classes[positive]}" if len(counts) == 2 else "argmax",
    }
    predictions = {
        "labels": test.labels,
        "proba": np.stack(probas),
        "thresholds": np.array([np.nan if t is None else t for t in thresholds]),
        "seeds": np.array(cfg.seeds),
        "positive": np.array(positive),
        "classes": np.array(test.classes),
    }
    return summary, runs, predictions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("strategy", help="one of train_classifier.strategies' choices")
    parser.add_argument("--out", required=True, help="folder for metrics.json, runs.json, predictions.npz")
    parser.add_argument("--ratio", type=float, help="vae strategies: synthetic ratio (default synthetic_ratio)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: TrainClassifierConfig = load_section("train_classifier")
    paths = load_section("paths")
    train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
    synthetic = None
    if args.strategy in NEEDS_SYNTHETIC:
        generation = read_json(Path(paths.synthetic) / "summary.json")
        if "vae_patients" not in generation:
            raise ValueError(f"{paths.synthetic}/summary.json does not list the VAE's patients: re-run train_vae")
        check_no_test_patients(test, **{"the VAE's training data": np.array(generation["vae_patients"])})
        synthetic = read_synthetic(paths.synthetic, train.classes)
    summary, runs, predictions = run_strategy(
        args.strategy, train, val, test, synthetic, cfg, select_device(), ratio=args.ratio
    )
    out = Path(args.out)
    write_npz(out / "predictions.npz", predictions)
    write_json(out / "runs.json", runs)
    write_json(out / "metrics.json", summary)


if __name__ == "__main__":
    run_stage(main, "pipeline.train_classifier")
