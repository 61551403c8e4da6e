"""Stage ``anomaly``: a VAE that has only seen normal images flags the images it reconstructs badly.

One VAE (generator ``vae``: params.yaml's ``vae`` settings and ``generator.seed``) learns the training images of
the normal class (``anomaly.normal_class``; by default the largest class). Every validation and test image is then
scored by how far it lies from what that VAE can produce: ``reconstruction``, the mean squared error per pixel of
the image decoded from its posterior mean (not BCE: its floor is the image's own entropy, so bright lesions would
score as *more* normal), and ``elbo``, the image's training loss (reconstruction loss plus the KL of its posterior:
the negative ELBO at the posterior mean). ``anomaly.score`` picks the primary score; both are reported. The
threshold on the primary score is the one that maximises sensitivity + specificity on the validation split
(Youden's J), applied unchanged to the test split. Each test image also gets a pixel-wise error map |x -
reconstruction|.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from pipeline.config import AnomalyConfig, PreprocessConfig, VAEConfig, load_section
from pipeline.generators import load_generator, save_generator
from pipeline.generators.base import one_class
from pipeline.generators.vae import VAEGenerator
from pipeline.io.arrays import ImageArray, SplitData, batches, load_split, write_json
from pipeline.io.atomic import atomic_file
from pipeline.io.errors import MedaugInputError
from pipeline.models.vae import (
    ConditionalVAE,
    decode_codes,
    encode_images,
    kl_per_image,
    reconstruction_error,
)
from pipeline.planning import check_before_training
from pipeline.plots import anomaly_maps, anomaly_scores
from pipeline.reporting.figures import ANOMALY_MAPS, ANOMALY_SCORES
from pipeline.runtime import compute_device, run_stage, versions

__all__ = [
    "normal_label",
    "score_images",
    "reconstruction_maps",
    "choose_score_threshold",
    "detection_metrics",
    "train_normal_vae",
    "score_files",
    "main",
]

logger = logging.getLogger(__name__)
SCORES = ("reconstruction", "elbo")
SALT_NOT_STORED = "not-stored"  # stands in for preprocess.id_salt in the checkpoint


def normal_label(data: SplitData, normal_class: str | None) -> int:
    """The label of ``normal_class``, or of the largest class of ``data`` when it is ``None``."""
    if normal_class is None:
        counts = np.bincount(data.labels, minlength=len(data.classes))
        return int(counts.argmax())
    if normal_class not in data.classes:
        raise ValueError(
            f"anomaly.normal_class {normal_class!r} is not a class of this dataset ({', '.join(data.classes)}); "
            "set it to one of them, or to null for the largest class"
        )
    return data.classes.index(normal_class)


def train_normal_vae(
    train: SplitData, val: SplitData, normal: int, cfg: VAEConfig, device, seed: int = 0
) -> tuple[VAEGenerator, list[dict]]:
    """One single-class VAE on the ``normal`` class of ``train``, its epoch chosen on that class of ``val``."""
    generator = VAEGenerator(tuple(train.images.shape[1:]), (train.classes[normal],), "conditional", cfg, seed)
    history = generator.fit(one_class(train, normal), one_class(val, normal), device)
    return generator, history


def _scored_batches(model, images: ImageArray, batch_size: int, device, skip=None):
    """``(start, x, recon, mu, logvar)`` tensors per batch of ``batch_size`` images read in order (a split on disk is
    never all in memory); batches for which ``skip(start, size)`` is true are not computed."""
    for start, chunk in batches(images, batch_size):
        if skip is not None and skip(start, len(chunk)):
            continue
        mu, logvar = encode_images(model, chunk, device, batch_size)
        decoded = decode_codes(model, mu, device, batch_size)
        yield start, torch.from_numpy(chunk), torch.from_numpy(decoded), torch.from_numpy(mu), torch.from_numpy(logvar)


@torch.no_grad()
def score_images(
    model: ConditionalVAE, images: ImageArray, reconstruction: str, device, batch_size: int = 256, maps: bool = True
) -> dict[str, np.ndarray]:
    """Per image: ``reconstruction``, the mean squared error per pixel between the image and its decoding from the
    posterior mean; ``elbo``, the training reconstruction loss (``reconstruction``: bce, mse or l1, summed over
    pixels) plus the posterior's KL to the prior, i.e. the negative ELBO at the posterior mean; with ``maps``, also
    ``decoded`` (the reconstruction) and ``error_map`` (|x - reconstruction|), shaped like the images (N, C,
    spatial...): arrays the size of the images, so the stage asks for a few (:func:`reconstruction_maps`)."""
    parts: dict[str, list[np.ndarray]] = {"reconstruction": [], "elbo": [], "decoded": [], "error_map": []}
    for _, x, recon, mu, logvar in _scored_batches(model, images, batch_size, device):
        parts["reconstruction"].append((recon - x).pow(2).flatten(1).mean(1).numpy())
        parts["elbo"].append((reconstruction_error(recon, x, reconstruction) + kl_per_image(mu, logvar)).numpy())
        if maps:
            parts["decoded"].append(recon.numpy())
            parts["error_map"].append((x - recon).abs().numpy())
    wanted = parts if maps else ("reconstruction", "elbo")
    return {k: np.concatenate(parts[k]) if parts[k] else np.zeros(0, np.float32) for k in wanted}


@torch.no_grad()
def reconstruction_maps(
    model: ConditionalVAE, images: ImageArray, rows: np.ndarray, device, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """``decoded`` and ``error_map`` of :func:`score_images` for the images ``rows`` only, in that order: computed in
    the batches :func:`score_images` used, those without one of the rows skipped (the same numbers)."""
    rows = np.asarray(rows, dtype=np.int64)
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def skip(start: int, size: int) -> bool:
        return not np.any((rows >= start) & (rows < start + size))

    for start, x, recon, _, _ in _scored_batches(model, images, batch_size, device, skip):
        for i in rows[(rows >= start) & (rows < start + len(x))]:
            found[int(i)] = recon[i - start].numpy(), (x[i - start] - recon[i - start]).abs().numpy()
    shape = (0, *images.shape[1:])
    return {
        "decoded": np.stack([found[int(i)][0] for i in rows]) if len(rows) else np.zeros(shape, np.float32),
        "error_map": np.stack([found[int(i)][1] for i in rows]) if len(rows) else np.zeros(shape, np.float32),
    }


def choose_score_threshold(is_anomaly: np.ndarray, scores: np.ndarray) -> float:
    """The cut-off maximising sensitivity + specificity - 1 (Youden's J) on these (validation) scores; an image
    is called abnormal when its score is at least the cut-off."""
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError("the validation split needs normal and abnormal images to choose an anomaly threshold")
    fpr, tpr, thresholds = roc_curve(is_anomaly, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], np.max(scores)))  # roc_curve's first threshold is +inf


def detection_metrics(data: SplitData, normal: int, scores: np.ndarray, threshold: float) -> dict:
    """AUROC and AUPRC of ``scores`` for abnormal (every class but ``normal``) against normal, per other class
    against normal, and sensitivity/specificity at ``threshold``."""
    is_anomaly = data.labels != normal
    called = scores >= threshold
    metrics = {
        **_separation(is_anomaly, scores),
        "prevalence": float(is_anomaly.mean()),
        "threshold": threshold,
        "sensitivity": float(called[is_anomaly].mean()),
        "specificity": float((~called[~is_anomaly]).mean()),
    }
    for label, name in enumerate(data.classes):
        keep = (data.labels == label) | ~is_anomaly
        if label != normal and (data.labels == label).any():
            metrics[f"auroc_{name}"] = float(roc_auc_score(data.labels[keep] == label, scores[keep]))
    return metrics


def _separation(is_anomaly: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "auroc": float(roc_auc_score(is_anomaly, scores)),
        "auprc": float(average_precision_score(is_anomaly, scores)),
    }


def _write_scores(path: Path, data: SplitData, scores: dict[str, np.ndarray], threshold: float, primary: str) -> None:
    """One row per test image: index, class, both scores and whether it is called abnormal (no patient IDs)."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "label", *SCORES, "abnormal"])
        for i in range(len(data)):
            values = [f"{scores[s][i]:.6g}" for s in SCORES]
            writer.writerow([i, data.classes[data.labels[i]], *values, int(scores[primary][i] >= threshold)])


def _write_roc(path: Path, is_anomaly: np.ndarray, scores: np.ndarray) -> None:
    fpr, tpr, _ = roc_curve(is_anomaly, scores)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["fpr", "tpr"])
        writer.writerows(zip(np.round(fpr, 6), np.round(tpr, 6), strict=True))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: AnomalyConfig = load_section("anomaly")
    vae_cfg: VAEConfig = load_section("vae")
    seed = load_section("generator").seed
    preprocess: PreprocessConfig = load_section("preprocess")
    paths = load_section("paths")
    check_before_training(paths.processed)  # refuse a dataset these settings cannot run on, before training
    train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
    normal = normal_label(train, cfg.normal_class)
    device = compute_device()
    vae_cfg = dataclasses.replace(
        vae_cfg, epochs=cfg.epochs, kl_warmup_epochs=min(vae_cfg.kl_warmup_epochs, cfg.epochs)
    )
    generator, history = train_normal_vae(train, val, normal, vae_cfg, device, seed)
    model = _network(generator)
    val_scores = score_images(model, val.images, vae_cfg.reconstruction, device, maps=False)
    threshold = choose_score_threshold(val.labels != normal, val_scores[cfg.score])
    test_scores = score_images(model, test.images, vae_cfg.reconstruction, device, maps=False)
    metrics = {
        "normal_class": train.classes[normal],
        "normal_class_source": "params" if cfg.normal_class is not None else "largest training class",
        "score": cfg.score,
        **detection_metrics(test, normal, test_scores[cfg.score], threshold),
        "by_score": {s: _separation(test.labels != normal, test_scores[s]) for s in SCORES},
    }
    extra = {
        "anomaly": {"normal_class": train.classes[normal], "score": cfg.score, "threshold": threshold},
        # `medaug score` prepares new files the same way; the pseudonym salt is a secret and scoring never needs it
        "preprocess": {**dataclasses.asdict(preprocess), "id_salt": SALT_NOT_STORED},
        "best_epoch": min(history, key=lambda h: h["val_elbo"])["epoch"],
        "versions": versions(),
    }
    save_generator(paths.anomaly_vae, generator, extra)
    out = Path(paths.reports) / "anomaly"
    write_json(out / "metrics.json", metrics)
    _write_scores(out / "scores.csv", test, test_scores, threshold, cfg.score)
    _write_roc(out / "roc.csv", test.labels != normal, test_scores[cfg.score])
    reports = Path(paths.reports)
    anomaly_scores(
        ANOMALY_SCORES.path(reports), test.labels, test.classes, normal, test_scores[cfg.score], threshold, cfg.score
    )
    top = np.argsort(-test_scores[cfg.score], kind="stable")[: cfg.n_maps]
    top_maps = reconstruction_maps(model, test.images, top, device)
    titles = [f"{test.classes[test.labels[i]]}\n{test_scores[cfg.score][i]:.4g}" for i in top]
    anomaly_maps(
        ANOMALY_MAPS.path(reports),
        test.images[top],
        top_maps["decoded"],
        top_maps["error_map"],
        titles,
    )
    logger.info(
        "anomaly (%s vs the rest, %s score): test AUROC %.3f, sensitivity %.3f, specificity %.3f",
        train.classes[normal],
        cfg.score,
        metrics["auroc"],
        metrics["sensitivity"],
        metrics["specificity"],
    )


def load_anomaly_model(path: str | Path, device="cpu") -> tuple[ConditionalVAE, dict]:
    """The normal-class VAE of an ``anomaly`` run and its checkpoint (threshold, preprocess settings)."""
    generator, checkpoint = load_generator(path, device)
    if "anomaly" not in checkpoint or not isinstance(generator, VAEGenerator):
        raise ValueError(f"{path} is not an anomaly model (written by the anomaly stage); run `dvc repro anomaly`")
    return _network(generator), checkpoint


def _network(generator: VAEGenerator) -> ConditionalVAE:
    """The one VAE of the anomaly stage's generator (a single class, the normal one)."""
    if generator.vaes is None:
        raise ValueError("the anomaly VAE has not been trained")
    return generator.vaes.network(0)


def score_files(
    files: list[Path], model_path: str | Path, device="cpu", errors: list[MedaugInputError] | None = None
) -> list[dict]:
    """Anomaly scores of DICOM/NIfTI/image ``files`` (or DICOM series folders) with the model of an ``anomaly`` run,
    each read and prepared as ``preprocess`` prepared the training data (a volume gives one row per slice in a
    2D run). One dict per image: file, slice, both scores and ``abnormal`` at the run's threshold. A file that
    cannot be read raises its named input error, or with an ``errors`` list is appended to it and skipped (the
    model is loaded once for all files)."""
    # imported here: only `medaug score` reads files; the anomaly stage itself works on the preprocessed arrays
    from pipeline.io.errors import UnreadableImageError
    from pipeline.io.manifest import ManifestRow
    from pipeline.preparation import row_samples, to_channels

    model, checkpoint = load_anomaly_model(model_path, device)
    raw = checkpoint["preprocess"]
    cfg = PreprocessConfig(**{**raw, "spacing": None if raw["spacing"] is None else tuple(raw["spacing"])})
    settings = checkpoint["anomaly"]
    reconstruction = checkpoint["config"]["reconstruction"]
    rows = []
    for path in files:
        row = ManifestRow(line=0, relpath=str(path), path=Path(path).resolve(), label="", patient_id=None)
        try:
            # the model's channels, as preprocess brought the training images to them (grey or RGB)
            images = np.stack([to_channels(s.image, model.image_shape[0]) for s in row_samples(row, cfg)])
            images = images.astype(np.float32, copy=False)
            if images.shape[1:] != model.image_shape:
                raise UnreadableImageError(
                    f"{path}: prepared as {images.shape[1:]}, the model expects {model.image_shape}"
                )
        except MedaugInputError as err:
            if errors is None:
                raise
            errors.append(err)
            continue
        scores = score_images(model, images, reconstruction, device)
        for k in range(len(images)):
            rows.append(
                {
                    "file": str(path),
                    "slice": k,
                    **{s: float(scores[s][k]) for s in SCORES},
                    "abnormal": bool(scores[settings["score"]][k] >= settings["threshold"]),
                }
            )
    return rows


if __name__ == "__main__":
    run_stage(main, "pipeline.anomaly")
