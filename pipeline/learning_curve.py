"""Stage ``learning_curve``: the synthetic remedies' own minority learning curve.

For each share of ``train_classifier.learning_curve`` (the shares real_only's curve is trained on, the same seeded,
nested choice of each minority class's training patients: :func:`pipeline.worth.minority_share`), this stage

1. trains a generator (``generator``, its kind's section) on that share's training images alone: it never sees a
   left-out patient's image (per_class mode trains only the classes whose synthetic images the remedies take;
   conditional mode all of them, on the share);
2. draws those remedies' synthetic images from it in memory with ``generate``'s sampler and filters, the filters
   judged by a reference classifier trained on the share too;
3. trains each remedy of ``learning_curve.remedies`` over ``train_classifier.seeds`` on the share and its synthetic
   images, with real_only's validation and test splits, exactly as train_classifier trains it on the whole split.

Outputs, ``reports/classifier_curve/curve_<share>/<remedy>/`` written whole: metrics.json (with
``minority_share``, ``minority_images`` and ``generator_images``: the real images its generator learnt from),
runs.json and predictions.npz, as train_classifier's folders; the compare stage sets each beside real_only's
``curve_<share>`` (paired: the same test images) and the report shows the gain at every share. With
``learning_curve.remedies: []`` (the default, for the demo's time budget) it writes the empty folder only.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import GenerateConfig, GeneratorConfig, LearningCurveConfig, TrainClassifierConfig, load_section
from pipeline.generators import build_generator, load_generator
from pipeline.generators.base import Generator
from pipeline.generators.sampling import stream_images
from pipeline.generators.selection import filter_judges, fit_real_classifier
from pipeline.io.arrays import SplitData, load_split, write_json, write_npz
from pipeline.io.atomic import atomic_dir
from pipeline.io.records import ClassifierRun
from pipeline.planning import check_before_training
from pipeline.runtime import compute_device, run_stage
from pipeline.strategies import check_no_test_patients, pool_sizes, remedy, synthetic_take
from pipeline.trainings import summarise_strategy, train_seed
from pipeline.workers import run_tasks, worker_count
from pipeline.worth import CURVE_FOLDER, minority_images, minority_share

__all__ = ["resolve_remedies", "synthetic_for_share", "curve_point", "main"]

logger = logging.getLogger(__name__)


def resolve_remedies(remedies: tuple[str, ...], classifier: Path, strategies: tuple[str, ...]) -> list[str]:
    """``learning_curve.remedies`` with ``best_classical`` replaced by the remedy without synthetic images (real_only
    aside) of ``strategies`` whose seeds had the highest mean validation balanced accuracy in train_classifier's
    records (``classifier``: reports/classifier); no test score is read. A remedy the comparison does not train is
    refused: its full-split point would be missing."""
    resolved = []
    for name in remedies:
        if name == "best_classical":
            candidates = [s for s in strategies if s != "real_only" and remedy(s).pool == "none"]
            if not candidates:
                raise ValueError(
                    "learning_curve.remedies: best_classical needs a classical remedy in "
                    "train_classifier.strategies (e.g. classical)"
                )
            val = {
                s: np.mean([r.val["balanced_accuracy"] for r in ClassifierRun.read_all(classifier / s)])
                for s in candidates
            }
            name = max(candidates, key=lambda s: (val[s], s))
            logger.info("best_classical on validation: %s (%.3f)", name, val[name])
        elif name not in strategies:
            raise ValueError(
                f"learning_curve.remedies lists {name!r}, which train_classifier.strategies does not: "
                "add it there or remove it here"
            )
        if name not in resolved:
            resolved.append(name)
    return resolved


def _classes_subset(data: SplitData, classes: list[int]) -> SplitData:
    """The images of ``classes`` only (indices of ``data.classes``), relabelled 0.. in that order."""
    part = data.select(np.isin(data.labels, classes))
    remap = np.zeros(len(data.classes), dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    return dataclasses.replace(part, labels=remap[part.labels], classes=tuple(data.classes[k] for k in classes))


def synthetic_for_share(
    share_train: SplitData,
    val: SplitData,
    demand: dict[str, int],
    gen_cfg: GeneratorConfig,
    settings: Any,
    generate: GenerateConfig,
    clf: TrainClassifierConfig,
    device: torch.device,
    compute_workers: int = 1,
    whole: Generator | None = None,
    unchanged: frozenset[int] = frozenset(),
) -> SplitData:
    """``demand[class]`` synthetic images of each class from a generator trained on ``share_train`` alone (and
    early-stopped on ``val``), drawn with ``generate``'s sampler and filters; labels are ``share_train``'s. In
    per_class mode each class has a network of its own, trained on that class's images only: for the classes
    ``unchanged`` (the share kept all their images) that network is ``whole``'s (train_generator's, trained on
    exactly those images), used instead of being trained again."""
    needed = [k for k, name in enumerate(share_train.classes) if demand.get(name, 0) > 0]
    if not needed:
        return SplitData(
            np.zeros((0, *share_train.images.shape[1:]), np.float32),
            np.zeros(0, np.int64),
            np.array([], dtype=str),
            share_train.classes,
        )
    per_class = gen_cfg.mode == "per_class"
    reused = [k for k in needed if per_class and whole is not None and k in unchanged]
    # what the new generator learns: the needed classes not reused (per_class), or every class (conditional)
    classes = [k for k in needed if k not in reused] if per_class else list(range(len(share_train.classes)))
    sources: dict[int, tuple[Generator, int]] = {k: (whole, k) for k in reused if whole is not None}
    if classes:
        learnt = _classes_subset(share_train, classes) if per_class else share_train
        shape = tuple(share_train.images.shape[1:])
        generator = build_generator(gen_cfg.kind, shape, learnt.classes, gen_cfg.mode, settings, gen_cfg.seed)
        workers = worker_count(compute_workers, device, len(classes) if per_class else 1)  # networks trained
        generator.fit(learnt, _classes_subset(val, classes) if per_class else val, device, workers)
        sources |= {k: (generator, classes.index(k)) for k in needed if k not in reused}
    judges = {}
    if set(generate.filter) - {"consistency"}:
        judge = fit_real_classifier(share_train, val, clf, generate.seed, device, generate.judge)
        judges = filter_judges(generate, judge, share_train, val, device)
    images, labels = [], []
    for k in needed:
        name, (source, local) = share_train.classes[k], sources[k]
        real = share_train.select(share_train.labels == k).images
        made: list[np.ndarray] = []
        stream_images(
            source,
            local,
            demand[name],
            generate.seed * 1000 + k,
            generate,
            real,
            made.append,
            accept={f: judge.accept(k) for f, judge in judges.items()},
        )
        images += made
        labels.append(np.full(sum(len(m) for m in made), k, dtype=np.int64))
    # none at all when the filters kept nothing: the remedies' take then fails with the pool's own error (naming the
    # params to change), not as if no generator had run
    empty = np.zeros((0, *share_train.images.shape[1:]), np.float32)
    pool = np.concatenate(images).astype(np.float32) if images else empty
    return SplitData(pool, np.concatenate(labels), np.array(["synthetic"] * len(pool)), share_train.classes)


def curve_point(
    share: float,
    train: SplitData,
    val: SplitData,
    test: SplitData,
    remedies: list[str],
    gen_cfg: GeneratorConfig,
    settings: Any,
    generate: GenerateConfig,
    clf: TrainClassifierConfig,
    device: torch.device,
    compute_workers: int,
    whole: Generator | None = None,
) -> dict[str, tuple[dict, list[ClassifierRun], dict[str, np.ndarray]]]:
    """Every remedy of ``remedies`` trained over ``clf.seeds`` on ``share`` of the minority patients of ``train``,
    with synthetic images from a generator of that share alone (``whole``: train_generator's, whose per-class
    networks of the classes the share leaves whole are reused: :func:`synthetic_for_share`): remedy -> (summary,
    per-seed records, predictions), as :func:`pipeline.trainings.summarise_strategy` gives them."""
    part = minority_share(train, share)
    check_no_test_patients(test, train=part.patients, val=val.patients)
    counts = part.counts()
    takes = [synthetic_take(name, counts, clf.synthetic_ratio, clf.synthetic_all_classes) for name in remedies]
    # what the remedies take at most, plus generate.pool_margin: each seed takes its own random subset, as from
    # the generate stage's pool
    demand = pool_sizes({name: max(t[name] for t in takes) for name in counts}, counts, generate.pool_margin)
    full = train.counts()
    unchanged = frozenset(k for k, name in enumerate(train.classes) if counts[name] == full[name])
    synthetic = synthetic_for_share(
        part, val, demand, gen_cfg, settings, generate, clf, device, compute_workers, whole=whole, unchanged=unchanged
    )
    tasks = [(name, clf.synthetic_ratio, seed) for name in remedies for seed in clf.seeds]
    train_one = functools.partial(
        train_seed,
        train=part,
        val=val,
        test=test,
        synthetic=synthetic,
        cfg=clf,
        device=device,
    )
    workers = worker_count(compute_workers, device, len(tasks))
    results = run_tasks(train_one, tasks, workers, desc=f"trainings at share {share:g}")
    out = {}
    for k, name in enumerate(remedies):
        seeds = results[k * len(clf.seeds) : (k + 1) * len(clf.seeds)]
        summary, records, predictions = summarise_strategy(name, clf.synthetic_ratio, part, val, test, clf, seeds)
        generator_images = {c: int(n) for c, n in counts.items() if demand[c] > 0}
        summary |= {
            "minority_share": share,
            "minority_images": minority_images(counts),
            "generator_images": generator_images,
        }
        logger.info("share %g, %s: test balanced accuracy %.3f", share, name, summary["balanced_accuracy"])
        out[name] = (summary, records, predictions)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg: LearningCurveConfig = load_section("learning_curve")
    clf: TrainClassifierConfig = load_section("train_classifier")
    paths = load_section("paths")
    reports = Path(paths.reports)
    with atomic_dir(reports / CURVE_FOLDER) as staging:
        write_json(staging / "summary.json", {"remedies": list(cfg.remedies), "shares": list(clf.learning_curve)})
        if not cfg.remedies or not clf.learning_curve:
            logger.info("learning_curve.remedies or train_classifier.learning_curve is []: nothing to train")
            return
        check_before_training(paths.processed)  # refuse a dataset these settings cannot run on, before training
        remedies = resolve_remedies(cfg.remedies, reports / "classifier", clf.strategies)
        train, val, test = (load_split(paths.processed, s) for s in ("train", "val", "test"))
        gen_cfg: GeneratorConfig = load_section("generator")
        device = compute_device()
        whole = None
        if gen_cfg.mode == "per_class":  # the networks of the classes a share leaves whole: train_generator's
            whole, checkpoint = load_generator(paths.generator, device)
            if checkpoint["kind"] != gen_cfg.kind or tuple(checkpoint["classes"]) != train.classes:
                raise ValueError(f"{paths.generator} is not a {gen_cfg.kind} of classes {train.classes}: dvc repro")
        point = functools.partial(
            curve_point,
            train=train,
            val=val,
            test=test,
            remedies=remedies,
            gen_cfg=gen_cfg,
            settings=load_section(gen_cfg.kind),
            generate=load_section("generate"),
            clf=clf,
            device=device,
            compute_workers=load_section("compute").workers,
            whole=whole,
        )
        n_full = minority_images(train.counts())
        for share in tqdm(clf.learning_curve, desc="learning-curve shares", unit="share"):
            if minority_images(minority_share(train, share).counts()) >= n_full:
                logger.info("share %g keeps every minority patient (a class of one or two): no point", share)
                continue
            for name, (summary, records, predictions) in point(share).items():
                folder = staging / f"curve_{share:g}" / name
                write_npz(folder / "predictions.npz", predictions)
                ClassifierRun.write_all(folder, records)
                write_json(folder / "metrics.json", summary)
    logger.info("learning curve of %s written to %s", list(cfg.remedies), reports / CURVE_FOLDER)


if __name__ == "__main__":
    run_stage(main, "pipeline.learning_curve")
