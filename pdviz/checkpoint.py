"""Checkpoints: atomic writes, weights-only loads, and an OS lock so that one process writes a path.

A checkpoint is one ``torch.save`` file of a plain payload (tensors, numbers, strings, None, lists, dicts)
under a small header ``{"format": FORMAT, "version": FORMAT_VERSION}``, loaded with
``torch.load(weights_only=True)``: nothing in the file can run code or choose where later writes go.

* **Atomic**: :func:`save_checkpoint` writes a temporary file beside the target, fsyncs it and
  ``os.replace``-s it over the target; a crash or a full disk mid-write leaves the previous file intact.
  The file is created with mode ``0o666`` less the umask, like any file the user writes.
* **Locked**: :func:`locked` holds ``fcntl.flock`` on ``<path>.lock`` for a run; a second process that
  wants to write the same path is refused. The OS releases the lock when its holder dies.
* **Checked**: :func:`load_checkpoint` refuses a missing, truncated or foreign file, another format
  version, and (given ``expected_config``) a configuration that differs, naming the differing keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from pdviz.errors import CheckpointError, InvalidArgumentError
from pdviz.samplers import generator_state, set_generator_state  # noqa: F401  (re-exported)

FORMAT = "pdviz-checkpoint"
FORMAT_VERSION = 2
_HEADER = ("format", "version")


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``<path>.lock`` (created) while the block runs.

    Raises CheckpointError at once when another process holds it: two writers of one checkpoint path would
    overwrite each other's runs.
    """
    lock_path = Path(f"{path}.lock")
    if not lock_path.parent.is_dir():
        raise InvalidArgumentError(f"checkpoint directory {str(lock_path.parent)!r} does not exist")
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is being written by another process (lock {str(lock_path)!r})"
            ) from None
        yield  # closing the file releases the lock


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (tensors, numbers, strings, None, lists, dicts) to ``path`` atomically.

    Steps: ``<dir>/.<name>.<pid>.tmp`` created with mode 0o666 & ~umask, ``torch.save``, flush, fsync,
    ``os.replace`` over ``path``, fsync of the directory. Returns the path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"checkpoint directory {str(path.parent)!r} does not exist")
    if set(_HEADER) & set(payload):
        raise InvalidArgumentError(
            f"payload keys {', '.join(_HEADER)} are reserved for the checkpoint header"
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the OS applies the umask
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, "version": FORMAT_VERSION, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave half a file behind, a KeyboardInterrupt included
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not every platform opens directories
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_config: Mapping[str, Any] | None = None,
    ignore_config_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (weights only) and return its payload.

    With ``expected_config``, ``payload["config"]`` must equal it on every key outside
    ``ignore_config_keys``; otherwise CheckpointError names each differing key and both values.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read (truncated, corrupt or not a torch file): "
            f"{type(err).__name__}: {first}"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a pdviz checkpoint (no '{FORMAT}' header)")
    if raw.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {raw.get('version')!r}; this pdviz reads "
            f"version {FORMAT_VERSION}"
        )
    payload = {k: v for k, v in raw.items() if k not in _HEADER}
    if expected_config is not None:
        saved = payload.get("config")
        if not isinstance(saved, dict):
            raise CheckpointError(f"checkpoint {str(path)!r} has no 'config' dict")
        keys = sorted((set(saved) | set(expected_config)) - set(ignore_config_keys))
        diffs = [
            f"{k}: checkpoint {saved.get(k, '<missing>')!r} vs expected {expected_config.get(k, '<missing>')!r}"
            for k in keys
            if saved.get(k, "<missing>") != expected_config.get(k, "<missing>")
        ]
        if diffs:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written with a different configuration: " + "; ".join(diffs)
            )
    return payload
