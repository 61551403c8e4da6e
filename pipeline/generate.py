"""Stage ``generate``: synthetic images from the trained generator (:mod:`pipeline.generators`).

Every class gets the synthetic images that the train_classifier stage's settings take at most in one training
(:func:`pipeline.strategies.synthetic_demand`: the vae strategies at every ratio, synthetic_only), plus a
``pool_margin`` share, and, with ``every_class``, at least as many images as it has real ones (the quality stage
measures every class). Latent codes come from one of the samplers of
:mod:`pipeline.generators.samplers` (``prior``, ``posterior``, ``interpolate``, ``bootstrap``) and go through the
generator's decoder for the class. A sample enters the pool only when every filter listed in ``generate.filter``
keeps it: ``consistency`` when the generator reproduces it as well as it reproduces real images of the class
(:mod:`pipeline.generators.sampling`); ``classifier`` when a classifier trained here on the real training split
(train_classifier's network, generate.seed) calls it its class as surely as it calls most real validation images
of the class; ``manifold`` when, in that classifier's features, it lies inside the ``manifold_k``-nearest-neighbour
ball of a real training image of the class (:mod:`pipeline.generators.selection`); counts per class and filter,
thresholds and radii in ``summary.json``. Images are
written as NIfTI files marked as synthetic and, when the source data was DICOM, also as DICOM Secondary Capture
files marked SYNTHETIC with new UIDs (:mod:`pipeline.io.synthetic`); all are listed with their provenance in a
manifest, and kept together in its order in ``pool_images.npy``, which the stages training on the pool read a batch
at a time. Images are made and written :data:`~pipeline.generators.sampling.CHUNK` at a time, and the real images
of a class are read from disk a batch at a time, so memory does not grow with the dataset. Pictures compare real
and synthetic images for every sampler, and interpolation strips walk between two real images of a class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydicom.uid import generate_uid
from tqdm import tqdm

from pipeline.config import GenerateConfig, TrainClassifierConfig, load_section
from pipeline.generators import load_generator
from pipeline.generators.base import Generator
from pipeline.generators.samplers import SAMPLERS
from pipeline.generators.sampling import (
    CANDIDATES_PER_IMAGE,
    interpolation_strip,
    sample_images,
    stream_images,
)
from pipeline.generators.selection import filter_judges, fit_real_classifier
from pipeline.io.arrays import load_split
from pipeline.io.atomic import atomic_dir
from pipeline.io.records import PoolSummary, ProcessedSummary
from pipeline.io.synthetic import (
    PoolWriter,
    new_synthetic_uids,
    write_manifest,
    write_synthetic_dicom,
    write_synthetic_nifti,
    write_synthetic_png,
)
from pipeline.models.classifier import REAL_CLASSIFIER
from pipeline.planning import check_before_training
from pipeline.plots import image_grid, latent_projection
from pipeline.reporting.figures import INTERPOLATION, LATENT_SYNTHETIC, REAL_VS_SYNTHETIC, SYNTHETIC_BY_SAMPLER
from pipeline.runtime import compute_device, file_sha256, run_stage
from pipeline.strategies import pool_sizes, synthetic_demand

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: GenerateConfig = load_section("generate")
    paths = load_section("paths")
    check_before_training(paths.processed)  # refuse a dataset these settings cannot run on, before training
    train = load_split(paths.processed, "train")
    generator, checkpoint = load_generator(paths.generator, compute_device())
    if tuple(checkpoint["classes"]) != train.classes:
        raise ValueError(f"{paths.generator} was trained on classes {checkpoint['classes']}, data has {train.classes}")
    # the reference classifier of the real images (train_classifier's network and budget, trained with the remedy
    # generate.judge, seeded by generate.seed): the filters' judge, and saved beside the pool for the quality stage
    clf_cfg: TrainClassifierConfig = load_section("train_classifier")
    val, device = load_split(paths.processed, "val"), compute_device()
    real_classifier = fit_real_classifier(train, val, clf_cfg, cfg.seed, device, cfg.judge)
    judges = filter_judges(cfg, real_classifier, train, val, device)
    demand = synthetic_demand(train.counts(), clf_cfg)
    counts = pool_sizes(demand, train.counts(), cfg.pool_margin, cfg.every_class)
    out_dir = Path(paths.synthetic)
    formats = output_formats(ProcessedSummary.read(paths.processed), train.images.ndim - 2)
    with atomic_dir(out_dir) as staging, PoolWriter(staging, generator.image_shape) as pool:
        files = _PoolFiles(staging, pool, cfg, file_sha256(paths.generator), *formats)
        rows, grid, by_sampler, strips, filtering, codes = files.rows, [], [], [], {}, []
        for label, name in enumerate(train.classes):
            seed = cfg.seed * 1000 + label  # one stream per class
            real = train.select(train.labels == label).images  # a view of the class's rows: read a batch at a time
            accept = {f: judge.accept(label) for f, judge in judges.items()}
            made_codes: list[np.ndarray] = [generator.encode(real[:0], label)]  # the pool's codes, for the figure
            with tqdm(total=counts[name], desc=f"write {name}", unit="image") as bar:
                write = files.class_writer(generator, label, name, seed, made_codes, bar)
                filtering[name] = stream_images(generator, label, counts[name], seed, cfg, real, write, accept=accept)
            for f, judge in judges.items():
                filtering[name]["filters"][f] |= judge.describe(label)
            # pictures: eight samples of every sampler (a separate stream, so the files above do not depend on it),
            # from at most CANDIDATES_PER_IMAGE candidates each: a sampler whose samples the filters mostly drop
            # shows fewer instead of decoding thousands in vain
            shown = {
                s: sample_images(generator, label, 8, seed + 500, cfg, real, s, accept, 8 * CANDIDATES_PER_IMAGE)[0]
                for s in SAMPLERS
            }
            grid += [(f"real {name}", real[:8]), (f"synthetic {name} ({cfg.sampler})", shown[cfg.sampler])]
            by_sampler += [(f"real {name}", real[:8])] + [(f"{s} {name}", shown[s]) for s in SAMPLERS]
            codes += [(generator.encode(real, label), np.concatenate(made_codes))]
            if len(real) >= 2:
                strips.append((f"{name}: real #0 -> real #1", interpolation_strip(generator, label, real[0], real[1])))
        write_manifest(staging, rows)
        torch.save(real_classifier.state_dict(), staging / REAL_CLASSIFIER)
        summary = PoolSummary(
            generator=checkpoint["kind"],
            mode=checkpoint["mode"],
            sampler=cfg.sampler,
            demand=demand,
            requested=counts,
            written={name: sum(r["label"] == name for r in rows) for name in train.classes},
            filter=list(cfg.filter),
            filtering=filtering,
            generator_patients=checkpoint.get("patients", []),
        )
        summary.write(staging)
    _draw(Path(paths.reports), grid, by_sampler, strips, codes, train.classes)
    logger.info("generated %s synthetic images into %s", summary.written, out_dir)


def output_formats(source: ProcessedSummary, dims: int) -> tuple[str, bool, bool, tuple[float, ...] | None]:
    """From preprocess's summary (``source``) of ``dims``-D images: the modality the synthetic DICOMs state (the
    source's most common), whether to write DICOM (DICOM came in) and PNG (image files came in, 2D) beside NIfTI,
    and the pixel size in mm when preprocess resampled to a fixed spacing on every axis (else none is claimed)."""
    as_dicom = source.formats.get("dicom", 0) > 0
    as_png = source.formats.get("image", 0) > 0 and dims == 2
    modality = max(source.modalities, key=source.modalities.__getitem__) if source.modalities else "OT"
    spacing = source.spacing_mm or []
    complete = isinstance(spacing, list) and len(spacing) >= dims and all(v > 0 for v in spacing[:dims])
    return modality, as_dicom, as_png, tuple(float(v) for v in spacing[:dims]) if complete else None


def _draw(reports: Path, grid: list, by_sampler: list, strips: list, codes: list, classes: tuple[str, ...]) -> None:
    """Real against synthetic images, every sampler, the interpolation strips, and the generator's latent space
    with the pool's codes over the training images'."""
    image_grid(REAL_VS_SYNTHETIC.path(reports), grid)
    image_grid(SYNTHETIC_BY_SAMPLER.path(reports), by_sampler)
    image_grid(INTERPOLATION.path(reports), strips)
    real_labels = np.concatenate([np.full(len(real), label) for label, (real, _) in enumerate(codes)])
    made_labels = np.concatenate([np.full(len(made), label) for label, (_, made) in enumerate(codes)])
    real_codes, made_codes = np.concatenate([c[0] for c in codes]), np.concatenate([c[1] for c in codes])
    latent_projection(
        LATENT_SYNTHETIC.path(reports),
        real_codes,
        real_labels,
        classes,
        tsne=False,
        synthetic=(made_codes, made_labels),
    )


@dataclass
class _PoolFiles:
    """The pool's files in ``staging``: every image as NIfTI (and DICOM or PNG, like the source data), its row of
    ``pool_images.npy`` and its manifest row (``rows``, in the pool's order)."""

    staging: Path
    pool: PoolWriter
    cfg: GenerateConfig
    checkpoint_sha: str
    modality: str
    as_dicom: bool
    as_png: bool
    dicom_spacing: tuple[float, ...] | None
    rows: list[dict] = field(default_factory=list)

    def class_writer(
        self, generator: Generator, label: int, name: str, seed: int, codes: list[np.ndarray], bar: tqdm
    ) -> Callable[[np.ndarray], None]:
        """The writer of class ``name``'s images, a chunk at a time, numbered from 0 in the order given; the
        generator's codes of each chunk are appended to ``codes``."""
        # new UIDs, derived from the checkpoint and seed so that a re-run writes identical files
        study_uid, series_uid = new_synthetic_uids(self.checkpoint_sha, name, str(seed), self.cfg.sampler)
        first = len(self.rows)

        def write(images: np.ndarray) -> None:
            for image in images:
                self._write_image(image, name, len(self.rows) - first, seed, study_uid, series_uid)
                bar.update()
            self.pool.append(images)
            codes.append(generator.encode(images, label))

        return write

    def _write_image(self, image: np.ndarray, name: str, k: int, seed: int, study_uid: str, series_uid: str) -> None:
        rel = f"{name}/synthetic_{name}_{k:05d}.nii.gz"
        write_synthetic_nifti(self.staging / rel, image)
        dicom_rel = f"{name}/synthetic_{name}_{k:05d}.dcm" if self.as_dicom else ""
        if self.as_dicom:
            write_synthetic_dicom(
                self.staging / dicom_rel,
                image,
                label=name,
                sampler=self.cfg.sampler,
                modality=self.modality,
                series_uid=series_uid,
                study_uid=study_uid,
                instance_number=k + 1,
                spacing=self.dicom_spacing,
                sop_instance_uid=str(generate_uid(entropy_srcs=[series_uid, str(k)])),
            )
        png = {"png_path": rel.replace(".nii.gz", ".png")} if self.as_png else {}
        if self.as_png:
            write_synthetic_png(self.staging / png["png_path"], image)
        self.rows.append(
            {
                "path": rel,
                "dicom_path": dicom_rel,
                **png,
                "label": name,
                "sampler": self.cfg.sampler,
                "seed": seed,
                "temperature": self.cfg.temperature,
                "checkpoint_sha256": self.checkpoint_sha,
            }
        )


if __name__ == "__main__":
    run_stage(main, "pipeline.generate")
