"""Stage ``quality``: how close the synthetic images are to real ones, and whether they copy training images.

Features come from a network trained by this pipeline, never downloaded: the classifier of ``train_classifier``
(same network and budget) trained on the real training split with the remedy ``generate.judge`` (by default the
classical augmentation: a weak reference makes every fidelity look alike), seeded by ``generate.seed``, which the
generate stage trains and saves beside the pool (it is also the judge of the ``classifier`` and ``manifold`` filters of
``generate.filter``; the fresh samples per sampler skip those two filters, since filtered ones would pass that judge
by construction); an image's feature vector is the input of that network's last linear layer
(:func:`pipeline.generators.selection.features`). Per class, on those features:

- **Fréchet distance** (FD, the formula of FID) between the synthetic images and the real training images, beside
  the same distance between held-out real images (validation + test, patients the VAE never saw, less the
  near-twins of training images that preprocess found) and the training images: a synthetic FD near that
  baseline means "as close as new real patients are";
- **precision, recall, density, coverage** (Naeem et al. 2020, k nearest neighbours): precision/density, how
  much of the synthetic set lies on the real manifold; recall/coverage, how much of the real manifold it covers.

The same FD and PRDC **per sampler**: fresh samples of every sampler of the generate stage (as many per class as
the class has training images, at most ``PER_SAMPLER_MAX``, from a random stream apart from the pool's),
so a user can see which sampler to choose before training any classifier on it.

**Class fidelity**: the share of synthetic images of class c that this classifier calls c, at the decision
threshold chosen on the validation split (for two classes, on the smaller class's probability, as the classifier
stage does; argmax otherwise), beside the same share of the test split's real images of class c (val chose the
threshold, so it is no yardstick). An image that shows its class's finding is called that class; a blurred one
is not, or is called whatever class the classifier gives to images it does not recognise, which the other
classes' fidelity then shows.

The **memorisation audit** takes every synthetic image's distance to its nearest training image, in pixels (root
mean square difference) and in features, against the same distance from each held-out real image; a synthetic
image closer than the ``quality.copy_quantile`` quantile of the held-out distances is flagged as a near-copy.

Memory is bounded by batches and blocks, not by the number of images: images are read from disk a batch at a time
(features, predictions, the pixel audit's rows), class subsets are views of their rows (``SplitData.select``), and
distances come a block of rows at a time (:func:`pipeline.metrics.distance_blocks`) into running minima, counts and
nearest neighbours; only the feature vectors (N x feature size) of every set are held whole. Time: every synthetic
and held-out image is compared with every training image, so the stage judges at most :data:`JUDGED_MAX` of each (a
seeded random sample beyond that, said in ``metrics.json`` under ``sampled``): its time then grows with the training
split, not with its square.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from pipeline.config import GenerateConfig, QualityConfig, TrainClassifierConfig, load_section
from pipeline.generators import Generator, load_generator
from pipeline.generators.samplers import SAMPLERS
from pipeline.generators.sampling import sample_images
from pipeline.generators.selection import features
from pipeline.io.arrays import ImageArray, Rows, SplitData, load_split, write_json
from pipeline.io.records import ProcessedSummary
from pipeline.io.synthetic import read_synthetic
from pipeline.metrics import choose_threshold, distance_blocks, knn_radii, predict_labels
from pipeline.models.classifier import REAL_CLASSIFIER, load_real_classifier, predict_proba
from pipeline.planning import check_before_training
from pipeline.plots import distance_histograms, image_grid, spectrum_curves
from pipeline.reporting.figures import CLOSEST_PAIRS, MEMORISATION, SPECTRA
from pipeline.runtime import compute_device, run_stage

__all__ = [
    "frechet_distance",
    "prdc",
    "nearest_distances",
    "memorisation",
    "pixel_rows",
    "image_features",
    "ClassCaller",
    "class_quality",
    "sampler_quality",
    "held_out_without_twins",
    "main",
]

logger = logging.getLogger(__name__)

MIN_IMAGES = 3  # FD and PRDC of a class need this many of its images in each set compared
JUDGED_MAX = 5000  # synthetic and held-out images judged at most (a seeded sample beyond)
PER_SAMPLER_MAX = 500  # fresh samples per sampler and class at most (FD and PRDC settle well before this)
FEATURE_ROWS = 16 * 256  # images per call of features(): a multiple of its batch (256), so the same batches


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between the Gaussians fitted to feature sets a and b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)  # (without disp=, which SciPy 1.18 removed)
    if not np.isfinite(root).all():  # a singular product: nudge both covariances, as FID implementations do
        eps = 1e-6 * np.eye(len(cov_a))
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real)
    return float(max(value, 0.0))


def radial_spectrum(images: ImageArray) -> np.ndarray:
    """Each image's azimuthally averaged power spectrum (Durall et al. 2020, "Watch your up-convolution"), ``(N,
    R)`` in log10: of a ``(C, X, Y)`` image (a volume's middle axial slice), its channels averaged and its mean
    removed, ``|FFT|^2`` averaged over rings of equal spatial frequency from 1 cycle per image to the corners of
    the spectrum (``R`` rings: 23 for 32 x 32 images, past Nyquist's 16 along an axis). Strided transposed
    convolutions leave a peak at the highest rings (a checkerboard of period 2 sits at the corners); blur a
    trough. Read :data:`FEATURE_ROWS` images at a time."""
    shape = images.shape[2:4]
    fx, fy = np.meshgrid(np.fft.fftfreq(shape[0]) * shape[0], np.fft.fftfreq(shape[1]) * shape[1], indexing="ij")
    ring = np.rint(np.hypot(fx, fy)).astype(np.int64).ravel()
    rings = int(ring.max())  # to the corners: a checkerboard of period 2 sits at (X/2, Y/2)
    onehot = (ring[:, None] == np.arange(1, rings + 1)[None, :]).astype(np.float64)
    onehot /= onehot.sum(axis=0, keepdims=True)  # a ring's mean
    out = np.empty((len(images), rings))
    for start in range(0, len(images), FEATURE_ROWS):
        part = np.asarray(images[start : start + FEATURE_ROWS], dtype=np.float64)
        if part.ndim == 5:
            part = part[..., part.shape[-1] // 2]
        grey = part.mean(axis=1)
        grey -= grey.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.fft2(grey)) ** 2
        out[start : start + len(part)] = np.log10(power.reshape(len(part), -1) @ onehot + 1e-12)
    return out


def spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The mean absolute difference of two sets' mean log10 spectra (:func:`radial_spectrum`), over the rings:
    0.3 is a factor of 2 in power on average."""
    return float(np.abs(a.mean(axis=0) - b.mean(axis=0)).mean())


def spectral_quality(held: np.ndarray, synthetic: np.ndarray, seed: int = 0) -> dict[str, float]:
    """``spectral``: the distance of the synthetic spectra to half of the held-out real ones; ``held_out_spectral``,
    its yardstick: the distance between that half and the other half of the real ones, as many spectra on each
    side (a seeded split, and as many synthetic ones drawn): what two samples of real images differ by."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(held))
    half = len(held) // 2
    first, second = held[order[:half]], held[order[half : 2 * half]]
    drawn = synthetic[np.sort(rng.choice(len(synthetic), min(half, len(synthetic)), replace=False))]
    return {"spectral": spectral_distance(drawn, second), "held_out_spectral": spectral_distance(first, second)}


def prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` features (Naeem et al. 2020): each
    point's ball reaches its k-th nearest neighbour within its own set."""
    real_radius, fake_radius = knn_radii(real, k), knn_radii(fake, k)
    fake_inside = np.zeros(len(fake), bool)  # in some real point's ball
    real_reached = np.zeros(len(real), bool)  # some fake point's ball holds it
    nearest_fake = np.full(len(real), np.inf)
    inside = np.int64(0)  # (real, fake) pairs with the fake point in the real one's ball
    for rows, cols, cross in distance_blocks(real, fake):  # (real, fake) blocks
        inside_real = cross <= real_radius[rows, None]
        fake_inside[cols] |= inside_real.any(axis=0)
        inside += inside_real.sum()
        real_reached[rows] |= (cross <= fake_radius[None, cols]).any(axis=1)
        nearest_fake[rows] = np.minimum(nearest_fake[rows], cross.min(axis=1))
    return {
        "precision": float(fake_inside.mean()),
        "recall": float(real_reached.mean()),
        "density": float(inside / (k * len(fake))),
        "coverage": float((nearest_fake <= real_radius).mean()),
    }


def nearest_distances(queries, references, prepare=np.asarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the Euclidean distance to its nearest reference row and that row's index (the first one
    on a tie), from blocks of :func:`~pipeline.metrics.distance_blocks` (``prepare``: see there)."""
    best = np.full(len(queries), np.inf)
    nearest = np.zeros(len(queries), np.int64)
    for rows, cols, distances in distance_blocks(queries, references, prepare):
        column = distances.argmin(axis=1)
        value = distances[np.arange(len(distances)), column]
        better = value < best[rows]  # strictly: an earlier block keeps a tie, as argmin over the whole row would
        best[rows] = np.where(better, value, best[rows])
        nearest[rows] = np.where(better, column + cols.start, nearest[rows])
    return best, nearest


def memorisation(synthetic, held_out, train, quantile: float, prepare=np.asarray) -> dict:
    """Nearest-training-image distances of ``synthetic`` and of ``held_out`` rows (feature vectors, or images with
    ``prepare`` = :func:`pixel_rows`), the near-copy threshold (``quantile`` of the held-out distances) and which
    synthetic rows fall below it. The sets may be on disk: rows are read a block at a time."""
    to_train, nearest = nearest_distances(synthetic, train, prepare)
    baseline, _ = nearest_distances(held_out, train, prepare)
    threshold = float(np.quantile(baseline, quantile))
    return {
        "synthetic": to_train,
        "nearest": nearest,
        "held_out": baseline,
        "threshold": threshold,
        "flagged": to_train < threshold,
    }


def class_quality(
    train_f: np.ndarray, held_f: np.ndarray, synth_f: np.ndarray, k: int, seed: int = 0
) -> dict[str, float]:
    """FD and PRDC against the training features, of the synthetic features and, as the yardstick, of the held-out
    real features (keys ``held_out_...``). Both sets are first cut to the same size (a seeded random subset of the
    larger, ``compared_images``): FD falls and coverage rises with the number of images compared, so a large
    synthetic pool would otherwise look better than a small held-out set for its size alone."""
    rng = np.random.default_rng(seed)
    n = min(len(held_f), len(synth_f))
    synth_f, held_f = (f[np.sort(rng.choice(len(f), n, replace=False))] for f in (synth_f, held_f))
    out: dict[str, float] = {"compared_images": n}
    for prefix, other in (("", synth_f), ("held_out_", held_f)):
        out[f"{prefix}fd"] = frechet_distance(other, train_f)
        scores = prdc(train_f, other, min(k, len(train_f) - 1, len(other) - 1))
        out |= {f"{prefix}{name}": value for name, value in scores.items()}
    return out


def per_class_quality(
    sets: dict[str, SplitData],
    feats: dict[str, np.ndarray],
    spectra: dict[str, np.ndarray],
    test: SplitData,
    caller: ClassCaller,
    k: int,
) -> dict[str, dict]:
    """Every class's entry of the quality metrics: its image counts, class fidelity of its synthetic images and of
    its real ``test`` images (when it has some), and :func:`class_quality` (FD, PRDC) and :func:`spectral_quality`
    (of the ``held`` and ``synth`` rows' ``spectra``) when each of ``sets`` (``train``, ``held``, ``synth``, with
    their ``feats``) holds :data:`MIN_IMAGES` images of it; else ``too_few`` says why not (a class of a few images
    is listed, not dropped)."""
    train, synthetic = sets["train"], sets["synth"]
    out = {}
    for label, name in enumerate(train.classes):
        pick = {key: feats[key][d.labels == label] for key, d in sets.items()}
        entry: dict[str, object] = {"synthetic_images": len(pick["synth"]), "held_out_images": len(pick["held"])}
        for key, images in (
            ("fidelity", synthetic.select(synthetic.labels == label).images),
            ("held_out_fidelity", test.select(test.labels == label).images),
        ):
            if len(images):
                entry[key] = caller.fidelity(images, label)
        counts = {key: len(v) for key, v in pick.items()}
        if min(counts.values()) < MIN_IMAGES:
            entry["too_few"] = (
                f"FD and precision/recall need {MIN_IMAGES} images of the class in each set: training "
                f"{counts['train']}, held-out real {counts['held']}, synthetic {counts['synth']}"
            )
            logger.warning("class %s: %s", name, entry["too_few"])
        else:
            entry |= class_quality(pick["train"], pick["held"], pick["synth"], k)
            entry |= spectral_quality(
                spectra["held"][sets["held"].labels == label], spectra["synth"][synthetic.labels == label]
            )
        out[name] = entry
    return out


def sampler_quality(
    generator: Generator,
    cfg: GenerateConfig,
    train: SplitData,
    train_f: np.ndarray,
    model,
    device,
    k: int,
    most: int,
    caller: ClassCaller | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{sampler: {class: {fd, precision, recall, density, coverage, images[, fidelity]}}}`` of fresh samples against
    the class's training features (``train_f``, rows of ``train``); class fidelity when a ``caller`` is given."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for sampler in SAMPLERS:
        out[sampler] = {}
        for label, name in enumerate(train.classes):
            real, own = train.select(train.labels == label).images, train_f[train.labels == label]
            seed = cfg.seed * 1000 + label + 700  # not the pool's stream (seed * 1000 + label) nor the pictures'
            images, _ = sample_images(generator, label, min(len(real), most), seed, cfg, real, sampler=sampler)
            if min(len(images), len(own)) < MIN_IMAGES:
                continue
            made = features(model, images, device)
            scores = prdc(own, made, min(k, len(own) - 1, len(made) - 1))
            out[sampler][name] = {"images": len(images), "fd": frechet_distance(made, own), **scores}
            if caller is not None:
                out[sampler][name]["fidelity"] = caller.fidelity(images, label)
    return out


def held_out_without_twins(val: SplitData, test: SplitData, twins: dict) -> SplitData:
    """Validation and test images together, less those preprocess found to be near-twins of a training image
    (``summary.json``'s ``near_twins``): a yardstick of new patients must not hold copies of training images, or
    it sets the near-copy threshold inside the copies and makes real images look closer than new patients are.
    The images are a view of the two splits' rows (:class:`~pipeline.io.arrays.Rows`), not a copy."""
    keep = {"val": np.ones(len(val), bool), "test": np.ones(len(test), bool)}
    for pair in twins.get("pairs", []):
        keep[pair["split"]][pair["index"]] = False
    parts = [(data, keep[name]) for name, data in (("val", val), ("test", test))]
    return SplitData(
        Rows([val.images, test.images], np.flatnonzero(np.concatenate([keep["val"], keep["test"]]))),
        np.concatenate([d.labels[k] for d, k in parts]),
        np.concatenate([d.patients[k] for d, k in parts]),
        val.classes,
    )


class ClassCaller:
    """The class a classifier calls each image, at the threshold chosen on validation (``choose_threshold``: for two
    classes on the smaller class's probability; argmax for more)."""

    def __init__(self, model: torch.nn.Module, val: SplitData, positive: int, device) -> None:
        self.model, self.positive, self.device = model, positive, device
        self.threshold = choose_threshold(val.labels, predict_proba(model, val.images, device), positive)

    def __call__(self, images: ImageArray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0, dtype=np.int64)
        return predict_labels(predict_proba(self.model, images, self.device), self.threshold, self.positive)

    def fidelity(self, images: ImageArray, label: int) -> float:
        """The share of ``images`` called ``label`` (NaN for none)."""
        return float(np.mean(self(images) == label)) if len(images) else float("nan")


def pixel_rows(images: np.ndarray) -> np.ndarray:
    """Images as float64 rows scaled so that the Euclidean distance of two rows is the images' root mean square
    difference (the ``prepare`` of the pixel audit's blocks)."""
    return images.reshape(len(images), -1).astype(np.float64) / np.sqrt(images[0].size)


def image_features(model: torch.nn.Module, images: ImageArray, device) -> np.ndarray:
    """:func:`~pipeline.generators.selection.features` of ``images`` (on disk or in memory), :data:`FEATURE_ROWS`
    images at a time into one float64 array: the same batches of 256, without a float32 copy of every feature."""
    if len(images) <= FEATURE_ROWS:
        return features(model, images, device)

    def part(start: int) -> np.ndarray:
        return features(model, Rows([images], np.arange(start, min(start + FEATURE_ROWS, len(images)))), device)

    first = part(0)
    out = np.empty((len(images), first.shape[1]))
    out[: len(first)] = first
    for start in range(FEATURE_ROWS, len(images), FEATURE_ROWS):
        rows = part(start)
        out[start : start + len(rows)] = rows
    return out


def at_most(data: SplitData, most: int, seed: int) -> SplitData:
    """``data`` itself up to ``most`` images, else ``most`` of them drawn at random without replacement (seeded), in
    their order, as a view (:meth:`SplitData.select`)."""
    if len(data) <= most:
        return data
    return data.select(np.sort(np.random.default_rng(seed).choice(len(data), most, replace=False)))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: QualityConfig = load_section("quality")
    clf_cfg: TrainClassifierConfig = load_section("train_classifier")
    paths = load_section("paths")
    check_before_training(paths.processed)  # refuse a dataset these settings cannot run on, before training
    train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
    twins = ProcessedSummary.read(paths.processed).near_twins
    sets, sampled, test_real = judged_sets(train, val, test, read_synthetic(paths.synthetic, train.classes), twins)
    device = compute_device()
    model = load_real_classifier(  # the generate stage's real-only classifier (it also filtered the pool)
        Path(paths.synthetic) / REAL_CLASSIFIER, train.images.shape[1:], len(train.classes), clf_cfg, device
    )
    feats = {name: image_features(model, d.images, device) for name, d in sets.items()}
    counts = train.counts()
    caller = ClassCaller(model, val, train.classes.index(min(counts, key=counts.__getitem__)), device)
    spectra = {key: radial_spectrum(sets[key].images) for key in ("held", "synth")}
    per_class = per_class_quality(sets, feats, spectra, test_real, caller, cfg.nearest_k)
    gen_cfg: GenerateConfig = load_section("generate")
    # fresh samples as the generator draws them, less the classifier and manifold filters: judged by this same
    # classifier's features, filtered ones would pass by construction
    gen_cfg = dataclasses.replace(gen_cfg, filter=tuple(f for f in gen_cfg.filter if f == "consistency"))
    generator, checkpoint = load_generator(paths.generator, device)
    by_sampler = sampler_quality(
        generator, gen_cfg, train, feats["train"], model, device, cfg.nearest_k, PER_SAMPLER_MAX, caller=caller
    )
    audits = {
        "pixels": memorisation(sets["synth"].images, sets["held"].images, train.images, cfg.copy_quantile, pixel_rows),
        "features": memorisation(feats["synth"], feats["held"], feats["train"], cfg.copy_quantile),
    }
    summary = memorisation_summary(audits)
    write_json(
        Path(paths.reports) / "quality" / "metrics.json",
        {
            "per_class": per_class,
            "per_sampler": by_sampler,
            "pool_sampler": gen_cfg.sampler,
            "generator": checkpoint["kind"],
            "fidelity_threshold": caller.threshold,
            "memorisation": summary,
            "copy_quantile": cfg.copy_quantile,
            **({"sampled": sampled} if sampled else {}),  # only when a set had more than JUDGED_MAX images
        },
    )
    _draw(Path(paths.reports), sets, spectra, audits)
    _log(per_class, summary, len(sets["synth"]))


def judged_sets(
    train: SplitData, val: SplitData, test: SplitData, pool: SplitData, twins: dict
) -> tuple[dict[str, SplitData], dict, SplitData]:
    """The sets the stage judges: ``train``, ``held`` (validation and test less preprocess's near-twins of training
    images) and ``synth`` (the pool), the last two cut to :data:`JUDGED_MAX` (a seeded sample, recorded in the
    second value); and the test split less its near-twins (the class fidelity yardstick)."""
    every_held = held_out_without_twins(val, test, twins)
    synthetic, held = at_most(pool, JUDGED_MAX, 0), at_most(every_held, JUDGED_MAX, 1)
    sampled = {
        name: {"judged": len(part), "of": len(whole)}
        for name, part, whole in (("synthetic", synthetic, pool), ("held_out", held, every_held))
        if len(part) < len(whole)
    }
    test_keep = np.ones(len(test), bool)
    for pair in twins.get("pairs", []):
        if pair["split"] == "test":
            test_keep[pair["index"]] = False
    return {"train": train, "held": held, "synth": synthetic}, sampled, test.select(test_keep)


def memorisation_summary(audits: dict[str, dict]) -> dict[str, dict]:
    """Per space (pixels, features): the near-copy threshold, how many synthetic images fall below it, and the
    median distances to the nearest training image of synthetic and of held-out real images."""
    return {
        space: {
            "threshold": a["threshold"],
            "flagged": int(a["flagged"].sum()),
            "flagged_fraction": float(a["flagged"].mean()),
            "median_synthetic": float(np.median(a["synthetic"])),
            "median_held_out": float(np.median(a["held_out"])),
        }
        for space, a in audits.items()
    }


def _draw(reports: Path, sets: dict[str, SplitData], spectra: dict[str, np.ndarray], audits: dict) -> None:
    """The memorisation histograms, the power spectra per class, and the synthetic images closest to a training
    image beside those training images."""
    train, synthetic = sets["train"], sets["synth"]
    distance_histograms(MEMORISATION.path(reports), audits)
    spectrum_curves(
        SPECTRA.path(reports),
        {
            name: {key: spectra[key][sets[key].labels == label] for key in ("held", "synth")}
            for label, name in enumerate(train.classes)
        },
    )
    closest = np.argsort(audits["pixels"]["synthetic"], kind="stable")[:8]
    image_grid(
        CLOSEST_PAIRS.path(reports),
        [
            ("synthetic images closest to a training image", synthetic.images[closest]),
            ("their nearest training images", train.images[audits["pixels"]["nearest"][closest]]),
        ],
    )


def _log(per_class: dict[str, dict], summary: dict[str, dict], synthetic: int) -> None:
    """Each measured class's numbers beside its yardstick's, and the near-copies."""
    keys = ("fidelity", "fd", "precision", "recall", "coverage")
    for name, q in per_class.items():
        if "too_few" not in q:
            pairs = ", ".join(f"{k} {q[k]:.2f} ({q['held_out_' + k]:.2f})" for k in keys if "held_out_" + k in q)
            logger.info("%s: %s (in brackets: held-out real images)", name, pairs)
    logger.info("near-copies (pixels): %d of %d synthetic images", summary["pixels"]["flagged"], synthetic)


if __name__ == "__main__":
    run_stage(main, "pipeline.quality")
