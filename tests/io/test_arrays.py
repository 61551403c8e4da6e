"""The processed split on disk: DiskArray reads exactly the rows asked for, Rows views, the streaming writer,
load/save of a split, and the torch loader over them."""

import pickle
import resource

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.io.arrays import ArrayWriter, DiskArray, Rows, SplitData, batches, load_split, save_split, split_paths
from pipeline.io.loader import ImageDataset, batch_loader, image_loader

RNG = np.random.default_rng(0)
IMAGES = RNG.random((37, 2, 5, 4), dtype=np.float32)

KEYS = [
    3,
    -1,
    np.int64(7),
    slice(2, 9),
    slice(None, None, -3),
    slice(40, 50),
    [5, 1, 1, 30],
    np.array([4, 5, 6]),
    np.array([], dtype=np.int64),
    IMAGES[:, 0, 0, 0] > 0.5,
    (slice(1, 4), 0),
    ([3, 2], 1, 2),
    (4, 0, 2),
]


@pytest.fixture
def disk(tmp_path):
    with ArrayWriter(tmp_path / "a.npy", IMAGES.shape) as out:
        out.append(IMAGES[:10])
        out.append(IMAGES[10:])
    return DiskArray(tmp_path / "a.npy")


def test_the_writer_writes_a_plain_npy_file(disk):
    assert np.array_equal(np.load(disk.path), IMAGES)
    assert (disk.shape, disk.dtype, disk.ndim, len(disk), disk.nbytes) == (
        IMAGES.shape,
        IMAGES.dtype,
        4,
        37,
        IMAGES.nbytes,
    )


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_disk_array_indexes_like_numpy(disk, key):
    got = disk[key]
    assert isinstance(got, np.ndarray)
    assert np.array_equal(got, IMAGES[key])


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_rows_index_like_the_concatenation_they_stand_for(disk, key):
    index = RNG.integers(0, 37 + 37, size=37)
    view = Rows([disk, IMAGES], index)
    expected = np.concatenate([IMAGES, IMAGES])[index]
    assert np.array_equal(view[key], expected[key])
    assert np.array_equal(Rows([view])[key], expected[key])  # a view of a view


def test_out_of_range_rows_are_refused(disk):
    for key in (37, -38, [0, 37]):
        with pytest.raises(IndexError):
            disk[key]
    with pytest.raises(IndexError):
        Rows([disk], [0, 40])
    with pytest.raises(ValueError, match="row shapes"):
        Rows([disk, IMAGES[:, :1]])


def test_whole_arrays_and_batches(disk):
    assert np.array_equal(np.asarray(disk), IMAGES)
    assert np.array_equal(np.stack(list(disk)), IMAGES)
    starts = [start for start, _ in batches(disk, 10)]
    assert starts == [0, 10, 20, 30]
    assert np.array_equal(np.concatenate([b for _, b in batches(disk, 10)]), IMAGES)


def test_a_disk_array_survives_pickling(disk):
    again = pickle.loads(pickle.dumps(disk))
    assert np.array_equal(again[[2, 0]], IMAGES[[2, 0]])


def test_the_writer_refuses_wrong_rows_and_counts(tmp_path):
    with pytest.raises(ValueError, match="rows of shape"):
        with ArrayWriter(tmp_path / "b.npy", (3, 2)) as out:
            out.append(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="more than the 3 rows"):
        with ArrayWriter(tmp_path / "c.npy", (3, 2)) as out:
            out.append(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2 rows written, 3 announced"):
        with ArrayWriter(tmp_path / "d.npy", (3, 2)) as out:
            out.append(np.zeros((2, 2)))


def test_a_truncated_file_is_refused_by_name(tmp_path, disk):
    cut = tmp_path / "cut.npy"
    cut.write_bytes(disk.path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="cut.npy.*truncated"):
        DiskArray(cut)


def test_a_split_round_trips_and_selects_without_reading(tmp_path):
    data = SplitData(IMAGES, np.arange(37) % 2, np.array([f"P{i}" for i in range(37)]), ("a", "b"))
    save_split(tmp_path, "train", data)
    back = load_split(tmp_path, "train")
    assert isinstance(back.images, DiskArray)
    assert np.array_equal(np.asarray(back.images), IMAGES)
    assert (back.classes, back.counts()) == (("a", "b"), data.counts())
    odd = back.select(back.labels == 1)
    assert isinstance(odd.images, Rows) and np.array_equal(odd.images[:], IMAGES[1::2])
    assert np.array_equal(odd.patients, data.patients[1::2])
    split_paths(tmp_path, "train")[0].unlink()
    with pytest.raises(FileNotFoundError, match="train_images.npy is missing: run the preprocess stage"):
        load_split(tmp_path, "train")


def test_reading_a_large_file_in_batches_keeps_memory_flat(tmp_path):
    """A pass over 256 MiB on disk, 2 MiB at a time: the resident set grows by far less than the file (the rows are
    read, not mapped)."""
    rows, shape = 4096, (1, 128, 128)  # 64 KiB per row
    with ArrayWriter(tmp_path / "big.npy", (rows, *shape)) as out:
        for _ in range(rows // 256):
            out.append(np.ones((256, *shape), np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = 0.0
    for _, chunk in batches(DiskArray(tmp_path / "big.npy"), 32):
        total += float(chunk[:, 0, 0, 0].sum())
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert total == rows
    assert grown_mib < 64, f"the peak grew by {grown_mib:.0f} MiB for a 256 MiB file"


def test_the_loader_gives_the_batches_of_a_tensor_dataset_loader(disk):
    labels = np.arange(37) % 3
    expected = DataLoader(
        TensorDataset(torch.from_numpy(IMAGES), torch.from_numpy(labels)),
        batch_size=8,
        shuffle=True,
        generator=torch.Generator().manual_seed(5),
    )
    got = image_loader(disk, labels, 8, torch.device("cpu"), shuffle=True, seed=5)
    for _ in range(2):  # two epochs: the shuffles continue the same seeded stream
        for (x, y), (ex, ey) in zip(got, expected, strict=True):
            assert torch.equal(x, ex) and torch.equal(y, ey)


def test_the_batch_loader_reads_the_batches_asked_for_without_touching_the_global_stream(disk):
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    wanted = [[3, 1], [36], [0, 0, 5]]
    got = [x for (x,) in batch_loader(ImageDataset(disk), wanted, torch.device("cpu"))]
    assert all(torch.equal(x, torch.from_numpy(IMAGES[w])) for x, w in zip(got, wanted, strict=True))
    assert torch.equal(torch.random.get_rng_state(), before)
