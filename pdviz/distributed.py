"""Data-parallel training: the same loop on ``torchrun --nproc-per-node N`` ranks, NCCL on GPUs, gloo on CPUs.

``batch_size`` and ``n_particles`` (and the replay ``buffer_size``) stay global and are split evenly: rank
``r`` of ``N`` draws its own batch share and holds its own particles, buffer and generators, seeded from
the one seed and ``r`` (:func:`rank_seed`; rank 0 of 1 is the single process). Only the contrastive loss
runs through ``DistributedDataParallel`` (:func:`wrap`): it starts every rank from rank 0's parameters and
averages the gradients of each backward pass over the ranks, so the mean of the ranks' losses over their
shares is the single-process loss and every rank takes the same Adam step: PD-beta's Δθ agrees everywhere
and the PD moves need no communication. The particles' gradients in x use the bare module (DDP's forward
would wait for a backward pass through the parameters that never comes).

State that would need more is refused at N > 1: PD-gamma updates its grid energy without the optimiser and
PD-weighted self-normalises and resamples weights over all particles. Evaluations gather the particles;
checkpoints hold the gathered (global) particles and buffer, so a run resumes on any N that divides the
sizes. Without torchrun's environment (``WORLD_SIZE`` unset) nothing here communicates.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from pdviz.errors import InvalidArgumentError, PdvizError
from pdviz.strategies import STRATEGIES

SPLIT = ("batch_size", "n_particles", "buffer_size")


class RankLostError(PdvizError, RuntimeError):
    """Another rank stopped (killed, out of memory, diverged): the run ends; its last checkpoint is intact."""


TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # what torchrun sets beside WORLD_SIZE


def world() -> tuple[int, int]:
    """``(rank, world size)``: of the process group, else of torchrun's environment, else ``(0, 1)``.
    Values that are not ``0 <= RANK < WORLD_SIZE <= 4096`` raise InvalidArgumentError naming them."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    text = {k: os.environ.get(k, d) for k, d in (("RANK", "0"), ("WORLD_SIZE", "1"))}
    try:
        rank, size = int(text["RANK"]), int(text["WORLD_SIZE"])
    except ValueError:
        rank, size = -1, -1
    if not (1 <= size <= 4096 and 0 <= rank < size):
        raise InvalidArgumentError(
            f"RANK={text['RANK']} and WORLD_SIZE={text['WORLD_SIZE']} in the environment must be integers with "
            "0 <= RANK < WORLD_SIZE <= 4096 (torchrun sets them); unset them to run one process"
        )
    return rank, size


def setup(config: Any) -> tuple[int, int]:
    """Check that ``config`` splits over torchrun's ranks, join their process group; ``(rank, size)``."""
    rank, size = world()
    if size == 1:
        return 0, 1
    why = STRATEGIES[config.strategy].one_process
    if why is not None:
        msg = f"strategy {config.strategy!r} {why}: run it on one process (world size 1)"
        raise InvalidArgumentError(f"{msg}, not {size}")
    for name in SPLIT:
        if getattr(config, name) % size:
            msg = f"{name} must be divisible by the world size {size}, got {getattr(config, name)}"
            raise InvalidArgumentError(msg)
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if not dist.is_initialized() and missing:
        raise InvalidArgumentError(
            f"WORLD_SIZE={size} is set but {', '.join(missing)} are not: start the run with torchrun "
            f"--nproc-per-node {size}, or unset WORLD_SIZE to run one process"
        )
    if not dist.is_initialized():
        if config.device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if config.device == "cuda" else "gloo")
    return rank, size


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s generators: ``seed`` on rank 0, well apart from every other seed's streams."""
    return (seed + rank * 2**40) % 2**63


def local_config(config: Any, rank: int, size: int) -> Any:
    """``rank``'s share of ``config``: batch, particles and buffer divided by ``size``, its own seed."""
    if size == 1:
        return config
    shares = {name: getattr(config, name) // size for name in SPLIT}
    return dataclasses.replace(config, **shares, seed=rank_seed(config.seed, rank))


def collective(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; a peer that is gone raises :class:`RankLostError` with what to do next."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as err:  # gloo and NCCL raise when a peer's connection closes
        first = (str(err).splitlines() or [""])[0]
        raise RankLostError(
            f"rank {dist.get_rank()} lost contact with the other ranks ({type(err).__name__}: {first}); "
            "the last checkpoint is intact: continue with --resume on any world size that divides "
            f"{', '.join(SPLIT)}"
        ) from None


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """What the loss is computed through: ``DistributedDataParallel(module)`` on N > 1 ranks (rank 0's
    parameters broadcast now; each backward pass averages the gradients in bucketed all-reduces), else
    ``module``. Buffers are not re-broadcast each forward: pdviz's models have no running statistics."""
    if world()[1] == 1:
        return module
    # "cuda" without an index is this rank's device (setup() made LOCAL_RANK's GPU the current one)
    ids = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else None
    )
    with (
        warnings.catch_warnings()
    ):  # torch's advice itself: keep broadcast_buffers=False for rank-local buffers
        warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
        return collective(DistributedDataParallel, module, device_ids=ids, broadcast_buffers=False)


def mean(value: float) -> float:
    """The mean over the ranks of a number (the loss of each rank's share)."""
    size = world()[1]
    if size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    collective(dist.all_reduce, t)
    return float(t) / size


def agree(flag: bool) -> bool:
    """True on every rank if it is true on any (a stop request, an exhausted time budget)."""
    return bool(mean(float(flag)) > 0)


def gather(x: Tensor) -> Tensor:
    """The ranks' tensors [n_r, ...] concatenated in rank order [N · n_r, ...] (every rank gets it)."""
    size = world()[1]
    if size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(size)]
    collective(dist.all_gather, parts, x.contiguous())
    return torch.cat(parts)


def shard(x: Tensor) -> Tensor:
    """This rank's share of a gathered tensor [n, ...]: rows ``rank · n/N`` to ``(rank + 1) · n/N``."""
    rank, size = world()
    return x.chunk(size)[rank] if size > 1 else x
