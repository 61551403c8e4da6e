"""Stage ``generate``: synthetic minority-class images from the VAE(s).

Every class smaller than the majority gets ``pool_ratio`` x its gap to the majority count of the training split
(the pool the classifier stages draw from) and, with ``every_class``, at least as many images as it has real ones
(for training on synthetic images only). Latent codes come from one of four samplers and go through the decoder
of the class:

- ``prior``: z ~ N(0, temperature^2 I);
- ``posterior``: a Gaussian mixture (scikit-learn) fitted to the posterior means of the class's training
  images, its components' spread scaled by the temperature;
- ``interpolate``: a random point on the segment between the codes of two real images of the class;
- ``bootstrap``: the code of a random real image of the class plus N(0, (bootstrap_noise * temperature)^2 I).

With ``filter: consistency`` a sample is kept only if decoding, re-encoding and decoding it again changes it
no more than the same round trip changes real images of the class (their ``filter_quantile`` quantile); the
numbers kept and dropped go to ``summary.json``. Images are written as NIfTI files marked as synthetic and,
when the source data was DICOM, also as DICOM Secondary Capture files marked SYNTHETIC with new UIDs
(:mod:`pipeline.io.synthetic`); all are listed with their provenance in a manifest. Pictures compare real and
synthetic images for every sampler, and interpolation strips walk between two real images of a class.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from pydicom.uid import generate_uid
from sklearn.mixture import GaussianMixture
from tqdm import tqdm

from pipeline.config import GenerateConfig, load_section
from pipeline.io.arrays import load_split, read_json
from pipeline.io.atomic import atomic_dir
from pipeline.io.synthetic import new_synthetic_uids, write_manifest, write_synthetic_dicom, write_synthetic_nifti
from pipeline.models.vae import ClassVAEs, load_vae
from pipeline.plots import image_grid, latent_projection
from pipeline.runtime import file_sha256, run_stage, select_device

__all__ = [
    "SAMPLERS",
    "synthetic_counts",
    "class_latents",
    "sample_latents",
    "round_trip_error",
    "sample_images",
    "interpolation_strip",
    "main",
]

logger = logging.getLogger(__name__)

SAMPLERS = ("prior", "posterior", "interpolate", "bootstrap")
_BATCH = 256


def synthetic_counts(class_counts: dict[str, int], pool_ratio: float, every_class: bool = False) -> dict[str, int]:
    """How many images to generate per class: ``ceil(pool_ratio * gap)``, the gap being the class's distance to
    the majority count (so the majority gets none), or, with ``every_class``, at least the class's own count."""
    majority = max(class_counts.values())
    return {
        name: max(math.ceil(pool_ratio * (majority - count) - 1e-9), count if every_class else 0)
        for name, count in class_counts.items()
    }


def _device(vaes: ClassVAEs) -> torch.device:
    return next(vaes.parameters()).device


@torch.no_grad()
def class_latents(vaes: ClassVAEs, images: np.ndarray, label: int) -> np.ndarray:
    """Posterior means (float64, ``(n, latent_size)``) of ``images`` of class ``label``."""
    device = _device(vaes)
    out = [
        vaes.encode(torch.from_numpy(images[i : i + _BATCH]).to(device), label)[0].double().cpu()
        for i in range(0, len(images), _BATCH)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, vaes.latent_size))


@torch.no_grad()
def _decode(vaes: ClassVAEs, z: np.ndarray, label: int) -> np.ndarray:
    device = _device(vaes)
    if len(z) == 0:
        return np.zeros((0, *vaes.image_shape), np.float32)
    parts = [
        vaes.decode(torch.from_numpy(z[i : i + _BATCH]).float().to(device), label).cpu().numpy()
        for i in range(0, len(z), _BATCH)
    ]
    return np.concatenate(parts).astype(np.float32)


def sample_latents(
    sampler: str, latents: np.ndarray, n: int, rng: np.random.Generator, cfg: GenerateConfig
) -> np.ndarray:
    """``n`` latent codes from ``sampler`` (see the module docstring), given the real codes ``latents`` of the
    class; the draws come from ``rng`` only, so the same generator state gives the same codes."""
    d = latents.shape[1]
    eps = rng.standard_normal((n, d))
    if sampler == "prior":
        return eps * cfg.temperature
    if len(latents) == 0:
        raise ValueError(f"the {sampler} sampler needs encoded real images of the class; there are none")
    if sampler == "posterior":
        k = max(1, min(cfg.mixture_components, len(latents) // 5))
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=int(rng.integers(2**31)))
        gmm.fit(latents)
        component = rng.choice(k, size=n, p=gmm.weights_ / gmm.weights_.sum())
        chol = np.linalg.cholesky(gmm.covariances_)  # (k, d, d)
        return gmm.means_[component] + cfg.temperature * np.einsum("nij,nj->ni", chol[component], eps)
    if sampler == "interpolate":
        first = rng.integers(len(latents), size=n)
        second = (first + rng.integers(1, max(len(latents), 2), size=n)) % len(latents)  # another image if any
        t = rng.uniform(size=(n, 1))
        return (1 - t) * latents[first] + t * latents[second]
    if sampler == "bootstrap":
        return latents[rng.integers(len(latents), size=n)] + eps * cfg.bootstrap_noise * cfg.temperature
    raise ValueError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")


@torch.no_grad()
def round_trip_error(vaes: ClassVAEs, images: np.ndarray, label: int) -> np.ndarray:
    """Mean squared difference between each image and its reconstruction through the posterior mean."""
    if len(images) == 0:
        return np.zeros(0)
    recon = _decode(vaes, class_latents(vaes, images, label), label)
    return ((recon - images) ** 2).reshape(len(images), -1).mean(1).astype(np.float64)


def sample_images(
    vaes: ClassVAEs,
    label: int,
    n: int,
    seed: int,
    cfg: GenerateConfig,
    class_images: np.ndarray,
    sampler: str | None = None,
) -> tuple[np.ndarray, dict]:
    """``n`` images of class ``label`` as float32 ``(n, C, *spatial)`` in [0, 1] and the filter's counts
    (``kept``, ``dropped``); the same seed gives the same images. ``sampler`` overrides ``cfg.sampler``."""
    sampler = sampler or cfg.sampler
    rng = np.random.default_rng(seed)
    latents = class_latents(vaes, class_images, label) if sampler != "prior" else np.zeros((0, vaes.latent_size))
    if cfg.filter == "none" or n == 0:
        return _decode(vaes, sample_latents(sampler, latents, n, rng, cfg), label), {"kept": n, "dropped": 0}
    threshold = float(np.quantile(round_trip_error(vaes, class_images, label), cfg.filter_quantile))
    kept, dropped = [], 0
    for _ in range(20):  # rounds of candidates; a VAE that fails its own check this often is reported short
        missing = n - sum(len(k) for k in kept)
        if missing <= 0:
            break
        candidates = _decode(vaes, sample_latents(sampler, latents, max(2 * missing, 8), rng, cfg), label)
        ok = round_trip_error(vaes, candidates, label) <= threshold
        kept.append(candidates[ok][:missing])
        dropped += int((~ok).sum())
    images = np.concatenate(kept)[:n]
    if len(images) < n:
        logger.warning("class %d: only %d of %d samples passed the consistency filter", label, len(images), n)
    return images, {"kept": len(images), "dropped": dropped, "threshold_mse": threshold}


def interpolation_strip(
    vaes: ClassVAEs, label: int, first: np.ndarray, second: np.ndarray, steps: int = 8
) -> np.ndarray:
    """Decoded images on the straight line between the latent codes of two real images of class ``label``."""
    codes = class_latents(vaes, np.stack([first, second]), label)
    t = np.linspace(0, 1, steps)[:, None]
    return _decode(vaes, (1 - t) * codes[0] + t * codes[1], label)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: GenerateConfig = load_section("generate")
    paths = load_section("paths")
    train = load_split(paths.processed, "train")
    vaes, checkpoint = load_vae(paths.vae, select_device())
    if tuple(checkpoint["classes"]) != train.classes:
        raise ValueError(f"{paths.vae} was trained on classes {checkpoint['classes']}, data has {train.classes}")
    checkpoint_sha = file_sha256(paths.vae)
    counts = synthetic_counts(train.counts(), cfg.pool_ratio, cfg.every_class)
    out_dir = Path(paths.synthetic)
    source = read_json(Path(paths.processed) / "summary.json")
    as_dicom = source.get("formats", {}).get("dicom", 0) > 0  # DICOM in, DICOM out (NIfTI always)
    modality = max(source["modalities"], key=source["modalities"].get) if source["modalities"] else "OT"
    # the pixel size in mm when preprocess resampled to a fixed spacing on every axis; else none is claimed
    dims, spacing = train.images.ndim - 2, source.get("spacing_mm")
    complete = isinstance(spacing, list) and len(spacing) >= dims and all(v > 0 for v in spacing[:dims])
    dicom_spacing = tuple(float(v) for v in spacing[:dims]) if complete else None
    with atomic_dir(out_dir) as staging:  # built beside out_dir, renamed into place when complete
        rows, grid, by_sampler, strips, filtering, codes = [], [], [], [], {}, []
        for label, name in enumerate(train.classes):
            seed = cfg.seed * 1000 + label  # one stream per class
            real = train.images[train.labels == label]
            images, filtering[name] = sample_images(vaes, label, counts[name], seed, cfg, real)
            # new UIDs, derived from the checkpoint and seed so that a re-run writes identical files
            study_uid, series_uid = new_synthetic_uids(checkpoint_sha, name, str(seed), cfg.sampler)
            for k, image in enumerate(tqdm(images, desc=f"write {name}", unit="image")):
                rel = f"{name}/synthetic_{name}_{k:05d}.nii.gz"
                write_synthetic_nifti(staging / rel, image)
                dicom_rel = f"{name}/synthetic_{name}_{k:05d}.dcm" if as_dicom else ""
                if as_dicom:
                    write_synthetic_dicom(
                        staging / dicom_rel,
                        image,
                        label=name,
                        sampler=cfg.sampler,
                        modality=modality,
                        series_uid=series_uid,
                        study_uid=study_uid,
                        instance_number=k + 1,
                        spacing=dicom_spacing,
                        sop_instance_uid=str(generate_uid(entropy_srcs=[series_uid, str(k)])),
                    )
                rows.append(
                    {
                        "path": rel,
                        "dicom_path": dicom_rel,
                        "label": name,
                        "sampler": cfg.sampler,
                        "seed": seed,
                        "temperature": cfg.temperature,
                        "checkpoint_sha256": checkpoint_sha,
                    }
                )
            # pictures: eight samples of every sampler (a separate stream, so the files above do not depend on it)
            shown = {s: sample_images(vaes, label, 8, seed + 500, cfg, real, sampler=s)[0] for s in SAMPLERS}
            grid += [(f"real {name}", real[:8]), (f"synthetic {name} ({cfg.sampler})", shown[cfg.sampler])]
            by_sampler += [(f"real {name}", real[:8])] + [(f"{s} {name}", shown[s]) for s in SAMPLERS]
            codes += [(class_latents(vaes, real, label), class_latents(vaes, images, label))]
            if len(real) >= 2:
                strips.append((f"{name}: real #0 -> real #1", interpolation_strip(vaes, label, real[0], real[1])))
        write_manifest(staging, rows)
        summary = {
            "mode": checkpoint["mode"],
            "sampler": cfg.sampler,
            "requested": counts,
            "written": {name: sum(r["label"] == name for r in rows) for name in train.classes},
            "filter": cfg.filter,
            "filtering": filtering,
            "vae_patients": checkpoint.get("patients", []),  # pseudonyms the VAE learnt from (leak checks downstream)
        }
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    figures = Path(paths.reports) / "figures"
    image_grid(figures / "real_vs_synthetic.png", grid)
    image_grid(figures / "synthetic_by_sampler.png", by_sampler)
    image_grid(figures / "interpolation.png", strips)
    real_labels = np.concatenate([np.full(len(real), label) for label, (real, _) in enumerate(codes)])
    made_labels = np.concatenate([np.full(len(made), label) for label, (_, made) in enumerate(codes)])
    real_codes, made_codes = np.concatenate([c[0] for c in codes]), np.concatenate([c[1] for c in codes])
    latent_projection(
        figures / "latent_synthetic.png",
        real_codes,
        real_labels,
        train.classes,
        tsne=False,
        synthetic=(made_codes, made_labels),
    )
    logger.info("generated %s synthetic images into %s", summary["written"], out_dir)


if __name__ == "__main__":
    run_stage(main, "pipeline.generate")
