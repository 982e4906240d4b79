"""Atomic, weights-only checkpoints with a version, a digest and shape checks.

A checkpoint is one ``torch.save`` file holding a plain payload: tensors, numbers, strings, ``None``,
lists and dicts only, so it loads with ``torch.load(weights_only=True)`` and never executes code from the
file. Three promises:

* **Atomic**: :func:`save_checkpoint` writes a temporary file in the target's directory, flushes and
  fsyncs it, then ``os.replace``-s it over the target. A process killed mid-write leaves the previous
  checkpoint intact, never half a file.
* **Checked**: :func:`load_checkpoint` refuses a truncated or corrupt file, a wrong format version, missing
  keys, contents that no longer match their SHA-256 digest (an edited file), a configuration that differs
  from the expected one, and tensors whose shapes differ from the expected ones, each with a
  :class:`~pdviz.errors.CheckpointError` that says what is wrong.
* **Complete enough to resume bit for bit**: random generators are stored as their ``uint8`` state tensors
  (:func:`generator_state`, :func:`set_generator_state`).

Examples
--------
>>> save_checkpoint("run.pt", {"iteration": 10, "config": {"lr": 1e-3}, "x": torch.zeros(3)})  # doctest: +SKIP
>>> load_checkpoint("run.pt", required_keys=("iteration", "x"))["iteration"]                    # doctest: +SKIP
10
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from pdviz.errors import CheckpointError, InvalidArgumentError
from pdviz.samplers import generator_state, set_generator_state  # noqa: F401

FORMAT = "pdviz-checkpoint"
FORMAT_VERSION = 1

_RESERVED = ("format", "version", "digest")


def _check_plain(value: Any, where: str) -> None:
    """Raise if ``value`` holds anything a weights-only load would refuse (or that we cannot digest)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise InvalidArgumentError(
                    f"checkpoint payload keys must be str or int, got {key!r} at {where}"
                )
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise InvalidArgumentError(
        f"checkpoint payload may hold only tensors, numbers, strings, None, lists and dicts; "
        f"got {type(value).__name__} at {where}"
    )


def _feed(h: Any, value: Any) -> None:
    """Feed a canonical byte encoding of ``value`` into the hash ``h`` (dict keys sorted)."""
    if value is None:
        h.update(b"N")
    elif isinstance(value, bool):
        h.update(b"B1" if value else b"B0")
    elif isinstance(value, int):
        h.update(b"I" + str(value).encode())
    elif isinstance(value, float):
        h.update(b"F" + struct.pack("<d", value))
    elif isinstance(value, str):
        raw = value.encode()
        h.update(b"S" + struct.pack("<q", len(raw)) + raw)
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{list(t.shape)}".encode())
        # a byte view works for every dtype, including bool and bfloat16
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, (list, tuple)):
        h.update(b"L" + struct.pack("<q", len(value)))
        for item in value:
            _feed(h, item)
    elif isinstance(value, dict):
        keys = sorted(value, key=lambda k: (isinstance(k, str), str(k)))
        h.update(b"D" + struct.pack("<q", len(keys)))
        for key in keys:
            _feed(h, key)
            _feed(h, value[key])
    else:  # pragma: no cover - _check_plain runs first
        raise InvalidArgumentError(f"cannot digest {type(value).__name__}")


def digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of a payload's contents (tensor bytes, dtypes, shapes, numbers, keys).

    The reserved keys ``format``, ``version`` and ``digest`` are left out, so the digest describes the
    user's payload only.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k not in _RESERVED})
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically, with a format version and a content digest.

    Parameters
    ----------
    path : str or PathLike
        Target file. Its directory must exist. An existing file is replaced only once the new one is
        complete on disk.
    payload : dict
        Tensors, numbers, strings, ``None``, lists and dicts only (what ``torch.load(weights_only=True)``
        accepts). The keys ``format``, ``version`` and ``digest`` are reserved.

    Returns
    -------
    Path
        The path written.
    """
    if not isinstance(payload, Mapping):
        raise InvalidArgumentError(f"payload must be a dict, got {type(payload).__name__}")
    for key in _RESERVED:
        if key in payload:
            raise InvalidArgumentError(f"payload key {key!r} is reserved for the checkpoint header")
    _check_plain(dict(payload), "payload")
    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"checkpoint directory {str(path.parent)!r} does not exist")
    full = {"format": FORMAT, "version": FORMAT_VERSION, "digest": digest(payload), **payload}

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(full, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # never leave a half-written temporary behind (a KeyboardInterrupt included)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # make the rename itself durable; not every platform can open a directory
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def _shapes_of(value: Any, prefix: str, out: dict[str, tuple[int, ...]]) -> None:
    if isinstance(value, torch.Tensor):
        out[prefix] = tuple(value.shape)
    elif isinstance(value, dict):
        for key, item in value.items():
            _shapes_of(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _shapes_of(item, f"{prefix}[{i}]", out)


def tensor_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Map every tensor in a nested dict/list to its shape, keyed by a dotted path like ``model.w[0]``."""
    out: dict[str, tuple[int, ...]] = {}
    _shapes_of(tree, "", out)
    return out


def load_checkpoint(
    path: str | os.PathLike,
    expected_version: int = FORMAT_VERSION,
    *,
    required_keys: Iterable[str] = (),
    expected_config: Mapping[str, Any] | None = None,
    config_key: str = "config",
    ignore_config_keys: Iterable[str] = (),
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or PathLike
        The file.
    expected_version : int
        The format version this reader understands.
    required_keys : iterable of str
        Top-level payload keys that must be present.
    expected_config : dict, optional
        If given, ``payload[config_key]`` must equal it on every key not in ``ignore_config_keys``.
    expected_shapes : dict, optional
        Dotted tensor paths (as :func:`tensor_shapes` names them) and the shapes they must have.

    Returns
    -------
    dict
        The payload, without the header keys.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupt file; wrong format or version; digest mismatch; missing keys;
        configuration or shape mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read (truncated, corrupt or not a torch file): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a pdviz checkpoint (no '{FORMAT}' header)")
    version = raw.get("version")
    if version != expected_version:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version!r}; this pdviz reads version "
            f"{expected_version}"
        )
    payload = {k: v for k, v in raw.items() if k not in _RESERVED}
    try:
        actual = digest(payload)
    except InvalidArgumentError as err:
        raise CheckpointError(f"checkpoint {str(path)!r} holds an unexpected object: {err}") from None
    if raw.get("digest") != actual:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was altered after it was written: its contents do not match "
            "their SHA-256 digest"
        )
    missing = [k for k in required_keys if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks required keys: {', '.join(missing)}")
    if expected_config is not None:
        saved = payload.get(config_key)
        if not isinstance(saved, dict):
            raise CheckpointError(f"checkpoint {str(path)!r} has no '{config_key}' dict")
        ignore = set(ignore_config_keys)
        keys = (set(saved) | set(expected_config)) - ignore
        diffs = [
            f"{k}: checkpoint {saved.get(k, '<missing>')!r} vs expected {expected_config.get(k, '<missing>')!r}"
            for k in sorted(keys)
            if saved.get(k, "<missing>") != expected_config.get(k, "<missing>")
        ]
        if diffs:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written with a different configuration: " + "; ".join(diffs)
            )
    if expected_shapes is not None:
        have = tensor_shapes(payload)
        for key, shape in expected_shapes.items():
            if key not in have:
                raise CheckpointError(f"checkpoint {str(path)!r} lacks the tensor {key!r}")
            if tuple(have[key]) != tuple(shape):
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: tensor {key!r} has shape {list(have[key])}, "
                    f"expected {list(shape)}"
                )
    return payload


# generator_state / set_generator_state live in pdviz.samplers (one definition); re-exported here.
