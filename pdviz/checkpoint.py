"""Checkpoints: atomic writes, weights-only loads, and an OS lock so that one process writes a path.

A checkpoint is one ``torch.save`` file of a plain payload (tensors, numbers, strings, None, lists, dicts)
under a small header ``{"format": FORMAT, "version": FORMAT_VERSION}``, loaded with
``torch.load(weights_only=True)``: nothing in the file can run code or choose where later writes go.

* **Atomic**: :func:`save_checkpoint` writes a temporary file beside the target, fsyncs it and
  ``os.replace``-s it over the target; a crash or a full disk mid-write leaves the previous file intact.
  The file is created with mode ``0o666`` less the umask, like any file the user writes.
* **Locked**: :func:`locked` holds ``fcntl.flock`` on ``<path>.lock`` for a run; a second process that
  wants to write the same path is refused. The OS releases the lock when its holder dies.
* **Checked**: :func:`load_checkpoint` is the one loader of every ``.pt`` file pdviz reads back. It
  refuses a missing, truncated or foreign file, another format version, a Trainer checkpoint whose fields
  have the wrong type or range (:func:`check_trainer_payload`), and (given ``expected_config``) a
  configuration that differs, naming the differing keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from pdviz.config import TrainConfig
from pdviz.errors import CheckpointError, InvalidArgumentError
from pdviz.samplers import generator_state, set_generator_state  # noqa: F401  (re-exported)

FORMAT = "pdviz-checkpoint"
FORMAT_VERSION = 2
_HEADER = ("format", "version")
TRAINER_KIND = "pdviz-trainer"  # the payload ``kind`` of :meth:`pdviz.training.Trainer.state_dict`
MAX_ITERATION = TrainConfig.__dataclass_fields__["n_iters"].metadata["range"][1]


_HELD: set[str] = set()  # the lock files this process holds


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``<path>.lock`` (created) while the block runs.

    Raises CheckpointError at once when another process holds it: two writers of one checkpoint path would
    overwrite each other's runs. Re-entrant within a process: ``pdviz train`` takes the lock before it
    writes anything in the run directory, and the Trainer's run inside takes it again.
    """
    lock_path = Path(f"{path}.lock")
    if not lock_path.parent.is_dir():
        raise InvalidArgumentError(f"checkpoint directory {str(lock_path.parent)!r} does not exist")
    key = str(lock_path.resolve())
    if key in _HELD:
        yield
        return
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is being written by another process (lock {str(lock_path)!r})"
            ) from None
        _HELD.add(key)
        try:
            yield  # closing the file releases the lock
        finally:
            _HELD.discard(key)


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
    header: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (weights only) and return its payload.

    ``header=False`` reads a plain ``torch.save`` dict (the shipped paper runs of :mod:`pdviz.bench`),
    whose caller checks its fields. A Trainer checkpoint is checked by :func:`check_trainer_payload`. With
    ``expected_config``, ``payload["config"]`` must equal it on every key outside ``ignore_config_keys``;
    otherwise CheckpointError names each differing key and both values.
    """
    path = Path(path)
    where = f"checkpoint {str(path)!r}"
    if not path.is_file():
        raise CheckpointError(f"{where} does not exist or is not a file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(
            f"{where} cannot be read (truncated, corrupt or not a torch file): {type(err).__name__}: {first}"
        ) from None
    if not isinstance(raw, dict) or (header and raw.get("format") != FORMAT):
        what = f"no '{FORMAT}' header" if header else f"a {type(raw).__name__}, not a dict"
        raise CheckpointError(f"{str(path)!r} is not a pdviz checkpoint ({what})")
    if not header:
        return raw
    if raw.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has format version {raw.get('version')!r}; this pdviz reads version {FORMAT_VERSION}"
        )
    payload = {k: v for k, v in raw.items() if k not in _HEADER}
    if payload.get("kind") == TRAINER_KIND:
        check_trainer_payload(payload, where)
    if expected_config is not None:
        saved = payload.get("config")
        if not isinstance(saved, dict):
            raise CheckpointError(f"{where} has no 'config' dict")
        keys = sorted((set(saved) | set(expected_config)) - set(ignore_config_keys))
        diffs = [
            f"{k}: checkpoint {saved.get(k, '<missing>')!r} vs expected {expected_config.get(k, '<missing>')!r}"
            for k in keys
            if saved.get(k, "<missing>") != expected_config.get(k, "<missing>")
        ]
        if diffs:
            raise CheckpointError(f"{where} was written with a different configuration: " + "; ".join(diffs))
    return payload


def check_fields(payload: Mapping[str, Any], types: Mapping[str, type | tuple], where: str) -> None:
    """Each key of ``types`` must be in ``payload`` with a value of that type (bools are not ints);
    else CheckpointError naming the key, what it holds and what it should."""
    for key, kind in types.items():
        value = payload.get(key, "<missing>")
        if key not in payload or isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise CheckpointError(f"{where}: {key!r} must be a {want}, got {reprlib.repr(value)}")


LATER_FIELDS = {"noise_levels", "n_perturb", "ed_w"}  # config fields newer than the checkpoints of 0.2


def check_trainer_payload(payload: Mapping[str, Any], where: str) -> None:
    """A Trainer checkpoint's fields: ``iteration`` an int in [0, MAX_ITERATION]; ``config`` a dict of
    exactly :class:`~pdviz.config.TrainConfig`'s fields (a field of LATER_FIELDS it lacks gets its default);
    ``history`` {frames: a list of dicts, curves:
    name -> list of numbers, meta: a dict}; model, state and aux dicts. Values inside are checked where
    they are used (TrainConfig's ranges, ``load_state_dict``'s shapes)."""
    check_fields(payload, {"iteration": int, "config": dict, "model": dict, "state": dict, "history": dict},
                 where)  # fmt: skip
    if not 0 <= payload["iteration"] <= MAX_ITERATION:
        raise CheckpointError(
            f"{where}: iteration must be in [0, {MAX_ITERATION:g}], got {payload['iteration']}"
        )
    fields, config = TrainConfig.__dataclass_fields__, payload["config"]
    for name in LATER_FIELDS - set(config):  # written before the field existed: it had the default's effect
        config[name] = fields[name].default
    missing, unknown = sorted(set(fields) - set(config)), sorted(set(config) - set(fields))
    if missing or unknown:
        raise CheckpointError(
            f"{where}: its config lacks {missing or 'nothing'} and has unknown {unknown or 'none'}"
        )
    history = payload["history"]
    check_fields(history, {"frames": list, "curves": dict, "meta": dict}, f"{where}'s history")
    for name, values in history["curves"].items():
        if not isinstance(values, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
        ):
            raise CheckpointError(
                f"{where}: history curve {name!r} must be a list of numbers, got {reprlib.repr(values)}"
            )
    if not all(isinstance(f, dict) for f in history["frames"]):
        raise CheckpointError(f"{where}: history frames must be dicts")
