"""The quality stage's measures on constructed cases, against scipy/scikit-learn where they apply."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.quality import class_quality, frechet_distance, memorisation, nearest_distances, prdc


def test_identical_sets_have_zero_distance_and_full_precision_recall_coverage():
    real = np.random.default_rng(0).normal(size=(200, 6))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    scores = prdc(real, real.copy(), k=5)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0
    assert scores["density"] == pytest.approx(6 / 5)  # each point lies in its own ball and its 5 neighbours'


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (20000, 2))
    b = rng.normal(3, 2, (20000, 2))
    # |mu|^2 = 2 * 9; trace term per dimension (1 + 4 - 2 * 2) = 1
    assert frechet_distance(a, b) == pytest.approx(18 + 2, rel=0.03)


def test_a_shifted_set_loses_precision_and_a_collapsed_one_loses_recall():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 4))
    far = prdc(real, rng.normal(6, 1, (300, 4)), k=5)
    assert far["precision"] < 0.05 and far["coverage"] < 0.05
    collapsed = prdc(real, rng.normal(0, 0.05, (300, 4)), k=5)  # every fake near the mean: precise, no variety
    assert collapsed["precision"] > 0.95 and collapsed["recall"] < 0.2 and collapsed["coverage"] < 0.3


def test_copies_of_training_images_are_flagged_and_new_samples_are_not():
    rng = np.random.default_rng(3)
    train, held_out = rng.uniform(size=(100, 64)), rng.uniform(size=(40, 64))
    copies = train[:30] + rng.normal(0, 1e-3, (30, 64))
    audit = memorisation(copies, held_out, train, quantile=0.01)
    assert audit["flagged"].all() and (audit["nearest"] == np.arange(30)).all()
    fresh = memorisation(rng.uniform(size=(30, 64)), held_out, train, quantile=0.01)
    assert fresh["flagged"].mean() < 0.1


def test_nearest_distances_agree_with_brute_force():
    rng = np.random.default_rng(4)
    q, r = rng.normal(size=(7, 3)), rng.normal(size=(11, 3))
    d, idx = nearest_distances(q, r)
    brute = np.linalg.norm(q[:, None] - r[None], axis=2)
    assert np.allclose(d, brute.min(1)) and (idx == brute.argmin(1)).all()


def test_class_quality_puts_held_out_real_nearer_than_a_shifted_synthetic_set():
    rng = np.random.default_rng(5)
    train, held = rng.normal(size=(150, 5)), rng.normal(size=(60, 5))
    q = class_quality(train, held, rng.normal(1.5, 1, (80, 5)), k=5)
    assert q["held_out_fd"] < q["fd"] and q["precision"] < q["held_out_precision"]


def test_sampler_quality_scores_every_sampler_and_class_with_fresh_samples():
    import torch

    from pipeline.generators.samplers import SAMPLERS
    from pipeline.generators.selection import features
    from pipeline.io.arrays import SplitData
    from pipeline.models.classifier import build_classifier
    from pipeline.quality import sampler_quality
    from tests.generators.test_sampling import GEN, untrained

    rng = np.random.default_rng(7)
    labels = np.array([0] * 12 + [1] * 30)
    train = SplitData(rng.uniform(size=(42, 1, 16, 16)).astype(np.float32), labels, np.array(["p"] * 42), ("a", "b"))
    torch.manual_seed(0)
    model = build_classifier((1, 16, 16), 2, "resnet_small", (4, 8, 8, 8), 1).eval()
    train_f = features(model, train.images, "cpu")
    result = sampler_quality(untrained(), GEN, train, train_f, model, "cpu", k=3, most=20)
    assert set(result) == set(SAMPLERS) and all(set(by_class) == {"a", "b"} for by_class in result.values())
    assert [result["prior"][c]["images"] for c in ("a", "b")] == [12, 20]  # the class's count, at most `most`
    for q in (q for by_class in result.values() for q in by_class.values()):
        assert q["fd"] >= 0 and all(0 <= q[k] <= 1 for k in ("precision", "recall", "coverage"))
    again = sampler_quality(untrained(), GEN, train, train_f, model, "cpu", k=3, most=20)
    assert again == result  # seeded


def test_class_quality_compares_as_many_synthetic_as_held_out_images():
    """A synthetic set from the held-out images' own distribution, ten times larger, must not look better than
    them for its size alone: coverage rises and FD falls with the number of images compared."""
    rng = np.random.default_rng(8)
    train, held, synth = rng.normal(size=(200, 4)), rng.normal(size=(40, 4)), rng.normal(size=(400, 4))
    q = class_quality(train, held, synth, k=5)
    assert q["compared_images"] == 40
    assert abs(q["coverage"] - q["held_out_coverage"]) < 0.15 and abs(q["fd"] - q["held_out_fd"]) < 0.3
    unmatched = prdc(train, synth, 5)["coverage"]  # all 400: covers far more of the training set
    assert unmatched > q["coverage"] + 0.2
    assert class_quality(train, held, synth, k=5) == q  # the subset is seeded


def test_the_yardstick_leaves_out_held_out_twins_of_training_images():
    from pipeline.io.arrays import SplitData
    from pipeline.quality import held_out_without_twins

    def split(n, start):
        images = np.arange(start, start + n, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
        return SplitData(images, np.arange(n) % 2, np.array([f"p{start + i}" for i in range(n)]), ("a", "b"))

    val, test = split(3, 0), split(4, 10)
    twins = {"pairs": [{"split": "val", "index": 1}, {"split": "test", "index": 0}, {"split": "test", "index": 3}]}
    held = held_out_without_twins(val, test, twins)
    assert held.images[:, 0, 0, 0].tolist() == [0, 2, 11, 12] and held.patients.tolist() == ["p0", "p2", "p11", "p12"]
    assert held.labels.tolist() == [0, 0, 1, 0]
    assert len(held_out_without_twins(val, test, {})) == 7  # no twin check (older summary.json): all of them


def test_prdc_in_blocks_equals_prdc_of_the_whole_matrix(monkeypatch):
    from pipeline import metrics

    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(500, 6)), rng.normal(0.3, 1, (350, 6))
    whole = prdc(real, fake, k=5)  # one block each
    monkeypatch.setattr(metrics, "BLOCK_ROWS", 64)
    assert prdc(real, fake, k=5) == whole


def test_nearest_distances_in_blocks_keep_the_first_of_tied_references(monkeypatch):
    from pipeline import metrics

    monkeypatch.setattr(metrics, "BLOCK_ROWS", 4)
    references = np.repeat(np.arange(5.0), 3)[:, None]  # each value three times: in different blocks of 4 rows
    d, idx = nearest_distances(np.array([[0.1], [2.0], [4.4]]), references)
    assert idx.tolist() == [0, 6, 12] and np.allclose(d, [0.1, 0, 0.4])


def test_the_pixel_audit_reads_images_from_disk_in_blocks_with_the_numbers_of_flattened_copies(tmp_path, monkeypatch):
    from pipeline import metrics
    from pipeline.io.arrays import DiskArray
    from pipeline.quality import pixel_rows

    rng = np.random.default_rng(10)
    sets = {name: rng.uniform(size=(n, 1, 8, 8)).astype(np.float32) for name, n in (("s", 90), ("h", 40), ("t", 70))}
    sets["s"][:5] = sets["t"][10:15]  # five exact copies
    disk = {}
    for name, images in sets.items():
        np.save(tmp_path / f"{name}.npy", images)
        disk[name] = DiskArray(tmp_path / f"{name}.npy")
    flat = {name: images.reshape(len(images), -1).astype(np.float64) / 8.0 for name, images in sets.items()}
    before = memorisation(flat["s"], flat["h"], flat["t"], 0.01)  # the whole matrices, as the stage once did
    audit = memorisation(disk["s"], disk["h"], disk["t"], 0.01, pixel_rows)
    for key in ("synthetic", "nearest", "held_out", "flagged"):
        assert np.array_equal(audit[key], before[key]), key
    assert audit["threshold"] == before["threshold"] and audit["nearest"][:5].tolist() == list(range(10, 15))
    monkeypatch.setattr(metrics, "BLOCK_ROWS", 16)  # blocks of 16 x 16 images
    blocked = memorisation(disk["s"], disk["h"], disk["t"], 0.01, pixel_rows)
    assert np.array_equal(blocked["nearest"], before["nearest"])
    assert np.array_equal(blocked["flagged"], before["flagged"])
    # tiny blocks go through other BLAS kernels: the last bit of |a|^2 - 2ab + |b|^2 moves, which an exact copy's
    # distance (the square root of that rounding residue, 0 or ~1e-8) shows
    np.testing.assert_allclose(blocked["synthetic"], before["synthetic"], rtol=1e-12, atol=1e-7)


def test_nearest_distances_hold_a_block_not_the_matrix(tmp_path, monkeypatch):
    """3000 x 2000 distances would be 48 MB; blocks of 256 rows of each set stay within a few MB."""
    import tracemalloc

    from pipeline import metrics
    from pipeline.io.arrays import DiskArray

    rng = np.random.default_rng(11)
    np.save(tmp_path / "q.npy", rng.uniform(size=(3000, 1, 8, 8)).astype(np.float32))
    np.save(tmp_path / "r.npy", rng.uniform(size=(2000, 1, 8, 8)).astype(np.float32))
    q, r = DiskArray(tmp_path / "q.npy"), DiskArray(tmp_path / "r.npy")
    monkeypatch.setattr(metrics, "BLOCK_ROWS", 256)
    from pipeline.quality import pixel_rows

    tracemalloc.start()
    try:
        nearest_distances(q, r, pixel_rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20


def test_image_features_in_chunks_equal_those_of_one_call(tmp_path, monkeypatch):
    import torch

    import pipeline.quality as quality
    from pipeline.generators.selection import features
    from pipeline.io.arrays import DiskArray
    from pipeline.models.classifier import build_classifier

    images = np.random.default_rng(12).uniform(size=(600, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    torch.manual_seed(0)
    model = build_classifier((1, 16, 16), 2, "resnet_small", (4, 8, 8, 8), 1).eval()
    monkeypatch.setattr(quality, "FEATURE_ROWS", 256)  # chunks of 256, 256, 88: features' own batches
    chunked = quality.image_features(model, DiskArray(tmp_path / "images.npy"), "cpu")
    assert chunked.dtype == np.float64 and np.array_equal(chunked, features(model, images, "cpu"))


def test_at_most_judges_a_seeded_sample_in_order_and_leaves_small_sets_alone():
    from pipeline.io.arrays import SplitData
    from pipeline.quality import at_most

    data = SplitData(
        np.arange(20, dtype=np.float32).reshape(20, 1, 1, 1), np.arange(20) % 2, np.array(["p"] * 20), ("a", "b")
    )
    assert at_most(data, 20, 0) is data
    picked = at_most(data, 7, 0)
    rows = picked.images[:, 0, 0, 0].astype(int)
    assert len(picked) == 7 and list(rows) == sorted(set(rows)) and np.array_equal(picked.labels, rows % 2)
    assert np.array_equal(at_most(data, 7, 0).images, picked.images)  # seeded
    assert not np.array_equal(at_most(data, 7, 1).images, picked.images)


def test_the_spectrum_sees_a_checkerboard_and_blur_that_real_halves_do_not_show():
    """Smooth noise images (the 'real' ones), the same with a faint 2-pixel checkerboard (what strided transposed
    convolutions leave) and blurred: the checkerboard raises the highest rings, blur lowers them, and each lies
    several times further from the real spectra than one half of the real images from the other."""
    from scipy.ndimage import gaussian_filter

    from pipeline.quality import radial_spectrum, spectral_quality

    rng = np.random.default_rng(0)
    real = np.stack([gaussian_filter(rng.normal(size=(32, 32)), 1.0) for _ in range(200)])[:, None].astype(np.float32)
    board = real + 0.05 * ((np.indices((32, 32)).sum(axis=0) % 2) * 2 - 1).astype(np.float32)
    blurred = np.stack([gaussian_filter(x, 1.5) for x in real])
    spectra = {name: radial_spectrum(x) for name, x in (("real", real), ("board", board), ("blur", blurred))}
    assert spectra["real"].shape == (200, 23)  # rings 1 to 23 (the corner: 16 x sqrt(2))
    assert spectra["board"][:, -1].mean() > spectra["real"][:, -1].mean() + 1  # Nyquist: 10x the power and more
    assert spectra["blur"][:, -8:].mean() < spectra["real"][:, -8:].mean() - 0.5  # the high rings: a third the power
    for fake in ("board", "blur"):
        q = spectral_quality(spectra["real"], spectra[fake], seed=0)
        assert q["spectral"] > 3 * q["held_out_spectral"]
    same = spectral_quality(spectra["real"][:100], spectra["real"][100:], seed=0)
    assert same["spectral"] < 3 * same["held_out_spectral"]  # other real images: within the yardstick's spread
