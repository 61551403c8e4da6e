"""Pictures for the report (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from pipeline.io.atomic import atomic_file  # noqa: E402

__all__ = [
    "image_grid",
    "training_curves",
    "ratio_curve",
    "strategy_bars",
    "roc_pr_curves",
    "confusion_matrices",
    "anomaly_scores",
    "anomaly_maps",
    "latent_projection",
    "reduction_curve",
    "spectrum_curves",
]


def _save(fig: plt.Figure, path: str | Path, layout: bool = True) -> None:
    """Lay out (``layout``: tight_layout), save through a temporary file renamed into place (the format from
    ``path``'s suffix, as ``savefig`` would pick it) and close."""
    if layout:
        fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=80, format=Path(path).suffix.lstrip(".") or matplotlib.rcParams["savefig.format"])
    finally:
        plt.close(fig)


def _slice(image: np.ndarray) -> np.ndarray:
    """A (C, X, Y) image, or the middle axial slice of a (C, X, Y, Z) volume, as (C, X, Y)."""
    return image if image.ndim == 3 else image[..., image.shape[-1] // 2]


def _show(ax: plt.Axes, image: np.ndarray, cmap: str = "gray", vmax: float = 1.0, **kwargs) -> None:
    """Draw a (C, X, Y[, Z]) image upright (rows = Y): grey through ``cmap`` from 0 to ``vmax``, RGB (C = 3, in
    [0, 1]) in its own colours."""
    picture = _slice(image)
    if picture.shape[0] == 3:
        ax.imshow(np.clip(np.transpose(picture, (2, 1, 0)), 0, 1), **kwargs)
    else:
        ax.imshow(picture[0].T, cmap=cmap, vmin=0, vmax=vmax, **kwargs)


def image_grid(path: str | Path, rows: Sequence[tuple[str, np.ndarray]], columns: int = 8) -> None:
    """One row per ``(title, images)`` pair; images are ``(N, C, X, Y)`` in [0, 1] (C = 1 grey, 3 RGB), shown
    radiologically; volumes ``(N, C, X, Y, Z)`` show their middle axial slice. Each row's title runs across the
    row above its images, however long (placed by hand: tight_layout would squeeze the first image to fit it)."""
    title_in, image_in = 0.3, 1.3  # inches of a row's title band and of its images
    height = max(len(rows), 1) * (title_in + image_in)
    fig = plt.figure(figsize=(1.4 * columns, height))
    for r, (title, images) in enumerate(rows):
        top = 1 - r * (title_in + image_in) / height
        fig.text(0.005, top - 0.06 / height, title, fontsize=9, ha="left", va="top")
        bottom = top - (title_in + image_in - 0.03) / height
        for k in range(columns):
            ax = fig.add_axes((k / columns + 0.004, bottom, 1 / columns - 0.008, image_in / height))
            ax.axis("off")
            if k < len(images):
                _show(ax, images[k])
    _save(fig, path, layout=False)


def training_curves(path: str | Path, history: Sequence[dict], panels: Mapping[str, Sequence[str]]) -> None:
    """One panel per ``title: keys`` entry, each key of the history records plotted against ``epoch``; one
    line per key and per ``model`` when the records name several models (per-class VAEs); a key missing from a record
    (a loss that starts after a warm-up) leaves a gap."""
    models = list(dict.fromkeys(h.get("model", "") for h in history))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels.items(), strict=True):
        for model in models:
            records = [h for h in history if h.get("model", "") == model]
            for key in keys:
                label = f"{model} {key}" if len(models) > 1 else key
                ax.plot([h["epoch"] for h in records], [h.get(key, np.nan) for h in records], label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=7)
    _save(fig, path)


def ratio_curve(path: str | Path, rows: Sequence[dict], combined: dict) -> None:
    """Balanced accuracy and each minority class's recall against the synthetic ratio (rows of
    ``compare.ratio_table``), with 95% bootstrap intervals; random oversampling as a dashed reference."""
    keys = ["balanced_accuracy"] + [f"recall_{c}" for c in combined["minority_classes"]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.5), squeeze=False)
    ratios = np.array([r["ratio"] for r in rows])
    for ax, key in zip(axes[0], keys, strict=True):
        mean = np.array([r[key] for r in rows])
        low, high = np.array([r[f"{key}_ci_low"] for r in rows]), np.array([r[f"{key}_ci_high"] for r in rows])
        ax.errorbar(ratios, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label="vae (real + synthetic)")
        if "oversample" in combined:
            ax.axhline(combined["oversample"][key], color="grey", linestyle="--", label="oversample")
        ax.set_xlabel("synthetic images / minority gap (0 = real only)")
        ax.set_title(key.replace("_", " "))
        ax.legend(fontsize=7)
    _save(fig, path)


def _bar_colour(combined: dict, name: str, synthetic: Collection[str]) -> str:
    """Green: the remedy recommended on validation; blue: synthetic images (``synthetic``); grey: the rest."""
    if combined.get("recommendation", {}).get("remedy") == name:
        return "tab:green"
    return "tab:blue" if name in synthetic else "tab:grey"


def strategy_bars(path: str | Path, combined: dict, synthetic: Collection[str] = ()) -> None:
    """Balanced accuracy and each minority class's recall per strategy (the compare stage's ``combined``
    summary): bars at the mean over seeds, error bars the 95% bootstrap interval, real_only dashed; green the
    remedy recommended on validation, blue those with synthetic images (the names in ``synthetic``), grey the
    others."""
    names = [n for n, v in combined.items() if isinstance(v, dict) and "balanced_accuracy" in v]
    keys = ["balanced_accuracy"] + [f"recall_{c}" for c in combined["minority_classes"]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 0.45 * len(names) + 1.2), squeeze=False)
    y = np.arange(len(names))
    for ax, key in zip(axes[0], keys, strict=True):
        mean = np.array([combined[n][key] for n in names])
        low = np.array([combined[n].get(f"{key}_ci_low", combined[n][key]) for n in names])
        high = np.array([combined[n].get(f"{key}_ci_high", combined[n][key]) for n in names])
        colours = [_bar_colour(combined, n, synthetic) for n in names]
        ax.barh(y, mean, xerr=[mean - low, high - mean], color=colours, capsize=3)
        if "real_only" in combined:
            ax.axvline(combined["real_only"][key], color="black", linestyle="--", linewidth=0.8)
        ax.set_yticks(y, names if ax is axes[0, 0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(key.replace("_", " ") + " (95% CI)", fontsize=9)
    _save(fig, path)


def roc_pr_curves(path: str | Path, curves: dict[str, list[dict]], combined: dict) -> None:
    """The seed-averaged ROC and precision-recall curves of each strategy (``compare.curve_tables``) for the
    class ``combined["curves_class"]`` against the rest; the legend gives the mean AUROC over seeds."""
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9.5, 4))
    names = [k for k in curves["roc"][0] if k != "fpr"]
    fpr, recall = [r["fpr"] for r in curves["roc"]], [r["recall"] for r in curves["pr"]]
    for name in names:
        auroc = combined[name]["auroc"]
        roc.plot(fpr, [r[name] for r in curves["roc"]], label=f"{name} (AUROC {auroc:.3f})", linewidth=1.2)
        pr.plot(recall, [r[name] for r in curves["pr"]], label=name, linewidth=1.2)
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    target = combined["curves_class"]
    roc.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC: {target} vs rest (test)")
    pr.set(xlabel="recall", ylabel="precision", title=f"precision-recall: {target} vs rest (test)", ylim=(0, 1.02))
    roc.legend(fontsize=7, loc="lower right")
    pr.legend(fontsize=7, loc="lower left")
    _save(fig, path)


def confusion_matrices(path: str | Path, matrices: dict[str, np.ndarray], classes: Sequence[str], seeds: int) -> None:
    """One confusion matrix per strategy (rows: true class), counts summed over ``seeds`` seeds, shaded by the
    share of each true class."""
    n = len(matrices)
    columns = min(n, 4)
    rows = -(-n // columns)
    size = 1.0 + 0.6 * len(classes)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns + 0.5, size * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, matrix) in zip(axes.flat, matrices.items(), strict=False):
        share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=8, color="white" if share[i, j] > 0.5 else "black"
            )
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, fontsize=7, rotation=30)
        ax.set_yticks(ticks, classes, fontsize=7)
        ax.set_title(f"{name} (test, {seeds} seed(s) summed)", fontsize=9)  # a suptitle overlapped these titles
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    _save(fig, path)


def anomaly_scores(
    path: str | Path,
    labels: np.ndarray,
    classes: Sequence[str],
    normal: int,
    scores: np.ndarray,
    threshold: float,
    name: str,
) -> None:
    """Histogram of the test ``scores`` per class with the validation ``threshold``, beside the ROC curve of
    abnormal (every class but ``normal``) against normal with the threshold's operating point."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, (hist, roc) = plt.subplots(1, 2, figsize=(9, 3.5))
    bins = np.histogram_bin_edges(scores, bins=30)
    for label, cls in enumerate(classes):
        if (labels == label).any():
            hist.hist(
                scores[labels == label], bins=bins, alpha=0.5, label=cls + (" (normal)" if label == normal else "")
            )
    hist.axvline(threshold, color="black", linestyle="--", label="threshold (validation)")
    hist.set_xlabel(f"{name} score")
    hist.set_ylabel("test images")
    hist.legend(fontsize=7)
    is_anomaly = labels != normal
    fpr, tpr, _ = roc_curve(is_anomaly, scores)
    roc.plot(fpr, tpr, label=f"AUROC {roc_auc_score(is_anomaly, scores):.3f}")
    called = scores >= threshold
    roc.plot(called[~is_anomaly].mean(), called[is_anomaly].mean(), "ko", label="threshold")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.set_xlabel("1 - specificity")
    roc.set_ylabel("sensitivity")
    roc.set_title("abnormal vs normal (test)")
    roc.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def anomaly_maps(
    path: str | Path, images: np.ndarray, decoded: np.ndarray, errors: np.ndarray, titles: Sequence[str]
) -> None:
    """One column per image: the image, what the normal-class VAE makes of it, and the pixel-wise error map
    (hot = far from normal; ``errors`` per channel, summed over channels); volumes show their middle axial slice.
    Colour images show the map over the image."""
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5.0), squeeze=False)
    errors = errors.sum(axis=1, keepdims=True)
    top = max(float(errors.max()), 1e-6)
    colour = images.shape[1] == 3
    for k in range(n):
        _show(axes[0, k], images[k])
        _show(axes[1, k], decoded[k])
        if colour:
            _show(axes[2, k], images[k])
        _show(axes[2, k], errors[k], cmap="hot", vmax=top, **({"alpha": 0.6} if colour else {}))
        for row in range(3):
            axes[row, k].axis("off")
        axes[0, k].set_title(titles[k], fontsize=7)
    for row, label in enumerate(["image", "reconstruction", "|error|"]):
        axes[row, 0].text(-0.1, 0.5, label, transform=axes[row, 0].transAxes, rotation=90, va="center", ha="right")
    _save(fig, path)


def latent_projection(
    path: str | Path,
    codes: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    tsne: bool,
    synthetic: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """The latent ``codes`` of real images in 2D, coloured by class: PCA (fitted on the real codes), and t-SNE
    beside it when ``tsne``. ``synthetic`` (codes, labels) are overlaid as crosses in their class's colour."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    extra_codes, extra_labels = synthetic if synthetic is not None else (codes[:0], labels[:0])
    both = np.concatenate([codes, extra_codes])
    pca = PCA(n_components=2).fit(codes) if codes.shape[1] > 2 else None
    projections = {"PCA of the latent means": pca.transform(both) if pca is not None else both[:, :2]}
    if tsne and len(both) > 5:
        perplexity = min(30.0, (len(both) - 1) / 3)
        projections["t-SNE of the latent means"] = TSNE(2, perplexity=perplexity, random_state=0).fit_transform(both)
    fig, axes = plt.subplots(1, len(projections), figsize=(4.5 * len(projections), 4), squeeze=False)
    for ax, (title, xy) in zip(axes[0], projections.items(), strict=True):
        real, made = xy[: len(codes)], xy[len(codes) :]
        for label, name in enumerate(classes):  # synthetic crosses first, the real images on top of them
            extra, colour = extra_labels == label, f"C{label}"
            if extra.any():
                ax.scatter(
                    *made[extra].T, s=10, marker="x", color=colour, alpha=0.3, label=f"{name} synthetic ({extra.sum()})"
                )
        for label, name in enumerate(classes):
            keep = labels == label
            ax.scatter(
                real[keep, 0],
                real[keep, 1],
                s=10,
                alpha=0.8,
                color=f"C{label}",
                edgecolors="black",
                linewidths=0.3,
                label=f"{name} ({int(keep.sum())})",
            )
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    _save(fig, path)


def reduction_curve(path: str | Path, rows: Sequence[dict]) -> None:
    """Test reconstruction MSE against the number of components for each ``<method>_mse`` key of ``rows``."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    components = [r["components"] for r in rows]
    for key in [k for k in rows[0] if k.endswith("_mse")]:
        ax.plot(components, [r[key] for r in rows], marker="o", label=key.removesuffix("_mse").upper())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("latent dimensions / components")
    ax.set_ylabel("test MSE per pixel")
    ax.legend(fontsize=7)
    _save(fig, path)


def distance_histograms(path: str | Path, audits: dict[str, dict]) -> None:
    """One panel per space (``audits``: name -> memorisation result): the distances of synthetic and of held-out
    real images to their nearest training image, with the near-copy threshold."""
    fig, axes = plt.subplots(1, len(audits), figsize=(4.5 * len(audits), 3.5), squeeze=False)
    for ax, (space, audit) in zip(axes[0], audits.items(), strict=True):
        both = np.concatenate([audit["synthetic"], audit["held_out"]])
        bins = np.histogram_bin_edges(both, bins=30)
        ax.hist(audit["held_out"], bins=bins, alpha=0.5, density=True, label="held-out real to train")
        ax.hist(audit["synthetic"], bins=bins, alpha=0.5, density=True, label="synthetic to train")
        flagged = int(audit["flagged"].sum())
        ax.axvline(audit["threshold"], color="black", linestyle="--", label=f"near-copy threshold ({flagged} flagged)")
        ax.set_xlabel(f"distance to the nearest training image ({space})")
        ax.legend(fontsize=7)
    _save(fig, path)


def spectrum_curves(path: str | Path, per_class: dict[str, dict[str, np.ndarray]]) -> None:
    """One panel per class: the mean log10 power spectrum (rows of ``per_class[class]["held"]`` and ``["synth"]``,
    :func:`pipeline.quality.radial_spectrum`) of held-out real and of synthetic images against the spatial
    frequency; a synthetic curve above the real one at the right end is a checkerboard, below it blur."""
    columns = min(len(per_class), 5)
    rows = -(-len(per_class) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(per_class) :]:
        ax.axis("off")
    for ax, (name, sets) in zip(axes.flat, per_class.items(), strict=False):
        for key, label in (("held", "held-out real"), ("synth", "synthetic")):
            if len(sets[key]):
                ax.plot(
                    np.arange(1, sets[key].shape[1] + 1), sets[key].mean(axis=0), label=f"{label} ({len(sets[key])})"
                )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("cycles per image", fontsize=7)
        ax.set_ylabel("log10 power", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    _save(fig, path)


def shift_curves(path: str | Path, stress: dict, combined: dict, labels: Mapping[str, str]) -> None:
    """Each remedy's test balanced accuracy without a shift and under each acquisition shift (the compare stage's
    ``shift_stress``; ``labels``: shift name -> its description), one line per remedy, with 95% bootstrap
    intervals; real_only dashed."""
    shifts = list(stress)
    names = list(stress[shifts[0]]) if shifts else []
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * (len(shifts) + 1)), 4.0))
    if not shifts:  # the stage still declares the figure: say why it is empty
        ax.text(0.5, 0.5, "shift stress test off (train_classifier.shift_stress: false)", ha="center", va="center")
        ax.set_axis_off()
        _save(fig, path)
        return
    x = np.arange(len(shifts) + 1)
    for k, name in enumerate(names):
        mean = np.array([combined[name]["balanced_accuracy"]] + [stress[s][name]["balanced_accuracy"] for s in shifts])
        low = np.array([combined[name]["balanced_accuracy_ci_low"]] + [stress[s][name]["ci_low"] for s in shifts])
        high = np.array([combined[name]["balanced_accuracy_ci_high"]] + [stress[s][name]["ci_high"] for s in shifts])
        offset = (k - (len(names) - 1) / 2) * 0.04
        style: dict[str, Any] = {"linestyle": "--", "color": "black"} if name == "real_only" else {}
        ax.errorbar(x + offset, mean, yerr=[mean - low, high - mean], marker="o", ms=3, capsize=2, label=name, **style)
    ax.set_xticks(x, ["no shift"] + [labels.get(s, s) for s in shifts], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test balanced accuracy (95% CI)")
    ax.set_title("remedies under acquisition shifts of the test images")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def reliability_diagram(
    path: str | Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    least: int = 10,
) -> None:
    """Per remedy (``curves``: name -> per-bin images, mean confidence, accuracy, pooled over seeds), accuracy
    against confidence of the bins holding at least ``least`` images (fewer make noise, not a curve); the diagonal
    is a calibrated classifier. The confidence axis starts at 1 / ``num_classes``, the least a top label has."""
    fig, ax = plt.subplots(figsize=(5.0, 4.5))
    lowest = 1.0 / num_classes
    ax.plot([lowest, 1], [lowest, 1], color="grey", linestyle=":", label="calibrated")
    for name, (counts, confidence, accuracy) in curves.items():
        used = counts >= least
        style: dict[str, Any] = {"linestyle": "--", "color": "black"} if name == "real_only" else {}
        ax.plot(confidence[used], accuracy[used], marker="o", ms=3, label=name, **style)
    ax.set_xlabel("confidence (largest predicted probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(lowest, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"reliability on the test split (bins of 1/15 with {least}+ images)")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


_COLOURS = [f"C{k}" for k in (0, 1, 2, 3, 4, 5, 6, 8, 9)]  # matplotlib's cycle without its grey


def learning_curve(
    path: str | Path,
    points: list[dict],
    remedies: Mapping[str, dict],
    worth: Mapping[str, dict],
    own: Mapping[str, list[dict]] | None = None,
) -> None:
    """real_only's test balanced accuracy against real minority training images (``points``: minority_images,
    balanced_accuracy, ci_low, ci_high; log x) and each remedy at the whole split's count (``remedies``: name ->
    the same keys); a remedy that helps (``worth``: name -> its WorthN on balanced accuracy, as JSON) gets a dotted
    line to the count of real images real_only would need (N*), open where that is extrapolated. A remedy with its
    own curve (``own``: name -> points like ``points``, from the learning_curve stage) is drawn as a solid line."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if not points:
        why = "train_classifier.learning_curve is [], or no share left out a minority patient (classes of 1-2)"
        ax.text(0.5, 0.5, f"no learning curve: {why}", ha="center", va="center", fontsize=8)
        ax.set_axis_off()
        _save(fig, path)
        return
    n = np.array([p["minority_images"] for p in points], dtype=float)
    mean, low, high = (np.array([p[k] for p in points]) for k in ("balanced_accuracy", "ci_low", "ci_high"))
    ax.errorbar(
        n,
        mean,
        yerr=[mean - low, high - mean],
        color="black",
        linestyle="--",
        marker="o",
        capsize=3,
        label="real_only (real images only)",
    )
    own = own or {}
    for k, (name, r) in enumerate(remedies.items()):
        w = worth.get(name, {})
        color = _COLOURS[k % len(_COLOURS)]
        y = r["balanced_accuracy"]
        if name in own:  # trained at every share, a generator of that share alone drawing its synthetic images
            curve = own[name]
            # nudged apart by at most a few percent, so that each point stays at its count of images
            xs = np.array([p["minority_images"] for p in curve], dtype=float) * (
                1 + 0.012 * (list(own).index(name) + 1)
            )
            ys, lows, highs = (np.array([p[key] for p in curve]) for key in ("balanced_accuracy", "ci_low", "ci_high"))
            ax.errorbar(
                xs,
                ys,
                yerr=[ys - lows, highs - ys],
                color=color,
                marker="s",
                ms=4,
                capsize=2,
                label=f"{name} (own curve)",
            )
        else:
            ax.errorbar(
                n[-1] * (1 + 0.03 * (k + 1)),
                y,
                yerr=[[y - r["ci_low"]], [r["ci_high"] - y]],
                marker="s",
                ms=4,
                capsize=2,
                color=color if w.get("helps") else "lightgrey",
                label=name if w.get("helps") else None,
            )
        if w.get("helps") and w.get("equivalent_n"):
            ax.plot([n[-1], w["equivalent_n"]], [y, y], color=color, linestyle=":")
            ax.plot(w["equivalent_n"], y, marker="o", mfc="none" if w["extrapolated"] else color, color=color)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("real minority training images (log scale)")
    ax.set_ylabel("test balanced accuracy (95% CI)")
    ax.set_title("what each remedy is worth in real minority images (grey: no help)", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path)
