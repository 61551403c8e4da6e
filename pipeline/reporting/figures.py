"""Every picture a stage draws into ``reports/figures``, declared once: its file, the stage that draws it and its
caption in the report. Stages draw to :meth:`Figure.path`, the report links :attr:`Figure.link`; ``dvc.yaml``
lists the same files among each stage's outputs and the report's dependencies (``tests/test_dvc_yaml.py`` holds
the two to :data:`FIGURES`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Figure",
    "FIGURES",
    "SPLIT_TWINS",
    "GENERATOR_TRAINING",
    "REAL_VS_SYNTHETIC",
    "SYNTHETIC_BY_SAMPLER",
    "INTERPOLATION",
    "LATENT_SYNTHETIC",
    "SYNTHETIC_RATIO",
    "STRATEGY_BARS",
    "ROC_PR",
    "CONFUSION_MATRICES",
    "ANOMALY_SCORES",
    "ANOMALY_MAPS",
    "LATENT_REDUCTION",
    "LATENT_PROJECTION",
    "LATENT_INTERPOLATION",
    "LATENT_TRAVERSAL",
    "LATENT_DENOISING",
    "MEMORISATION",
    "CLOSEST_PAIRS",
    "SPECTRA",
    "GENERATORS",
    "SHIFT_STRESS",
    "LEARNING_CURVE",
    "RELIABILITY",
]


@dataclass(frozen=True)
class Figure:
    file: str  # file name in reports/figures
    stage: str | None  # the dvc.yaml stage that draws it (None: a committed measurement, drawn by a bench script)
    caption: str  # its caption in the report

    @property
    def link(self) -> str:
        """The path the report (in ``reports/``) links."""
        return f"figures/{self.file}"

    def path(self, reports: str | Path) -> Path:
        """Where its stage draws it, under the reports folder ``reports``."""
        return Path(reports) / "figures" / self.file


SPLIT_TWINS = Figure("split_twins.png", "preprocess", "validation/test images closest to a training image")
GENERATOR_TRAINING = Figure("generator_training.png", "train_generator", "Generator training curves")
REAL_VS_SYNTHETIC = Figure("real_vs_synthetic.png", "generate", "Real vs synthetic images per class")
SYNTHETIC_BY_SAMPLER = Figure("synthetic_by_sampler.png", "generate", "Every sampler, per class (8 samples each)")
INTERPOLATION = Figure("interpolation.png", "generate", "Interpolation between two real images of each class")
LATENT_SYNTHETIC = Figure(
    "latent_synthetic.png",
    "generate",
    "The generator's latent space: training images (dots) and the synthetic pool (crosses), PCA",
)
SYNTHETIC_RATIO = Figure("synthetic_ratio.png", "compare", "synthetic-ratio curve")
STRATEGY_BARS = Figure(
    "strategy_bars.png",
    "compare",
    "Balanced accuracy and minority recall per strategy (95% bootstrap intervals; dashed: real_only)",
)
ROC_PR = Figure("roc_pr.png", "compare", "ROC and precision-recall curves, {target} against the rest (mean over seeds)")
CONFUSION_MATRICES = Figure("confusion_matrices.png", "compare", "Confusion matrices (test split, rows: true class)")
ANOMALY_SCORES = Figure("anomaly_scores.png", "anomaly", "anomaly scores")
ANOMALY_MAPS = Figure("anomaly_maps.png", "anomaly", "anomaly maps")
LATENT_REDUCTION = Figure("latent_reduction.png", "latent", "reconstruction error against components")
LATENT_PROJECTION = Figure("latent_projection.png", "latent", "test latents in 2D, by class")
LATENT_INTERPOLATION = Figure(
    "latent_interpolation.png", "latent", "interpolation between real test images, within and across classes"
)
LATENT_TRAVERSAL = Figure("latent_traversal.png", "latent", "traversal of the latent dimensions with the highest KL")
LATENT_DENOISING = Figure(
    "latent_denoising.png", "latent", "denoising: noisy test images and the VAE's reconstructions"
)
SHIFT_STRESS = Figure(
    "shift_stress.png",
    "compare",
    "Test balanced accuracy under acquisition shifts (95% bootstrap intervals; dashed: real_only)",
)
LEARNING_CURVE = Figure(
    "learning_curve.png",
    "compare",
    "real_only against real minority training images (log scale, 95% CI) and each remedy priced on that curve",
)
RELIABILITY = Figure(
    "reliability.png", "compare", "Reliability: accuracy against confidence on the test split (diagonal: calibrated)"
)
MEMORISATION = Figure("memorisation.png", "quality", "memorisation audit")
CLOSEST_PAIRS = Figure("closest_pairs.png", "quality", "closest pairs")
SPECTRA = Figure("spectra.png", "quality", "power spectra")
GENERATORS = Figure("generators.png", None, "generators side by side")

FIGURES: tuple[Figure, ...] = (
    SPLIT_TWINS,
    GENERATOR_TRAINING,
    REAL_VS_SYNTHETIC,
    SYNTHETIC_BY_SAMPLER,
    INTERPOLATION,
    LATENT_SYNTHETIC,
    SYNTHETIC_RATIO,
    STRATEGY_BARS,
    ROC_PR,
    CONFUSION_MATRICES,
    SHIFT_STRESS,
    LEARNING_CURVE,
    RELIABILITY,
    ANOMALY_SCORES,
    ANOMALY_MAPS,
    LATENT_REDUCTION,
    LATENT_PROJECTION,
    LATENT_INTERPOLATION,
    LATENT_TRAVERSAL,
    LATENT_DENOISING,
    MEMORISATION,
    CLOSEST_PAIRS,
    SPECTRA,
    GENERATORS,
)
