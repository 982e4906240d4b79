"""Learning an EBM by contrast (method.md §1): the training loop, its negative-sample strategies, presets.

Every iteration minimises

    loss(θ) = mean_i E_θ(data_i) - Σ_j w_j E_θ(neg_j)            (w_j = 1/n, or self-normalised weights)

whose gradient is minus the log-likelihood gradient when the negatives are samples of the current model
``p_θ ∝ exp(-E_θ)``. How the negatives are produced is the *strategy* (registry :data:`STRATEGIES`):

==============  ==================================================================================
short-run       K ULA steps from fresh base samples
pcd             persistent chains, K ULA steps on them per iteration
replay          a replay buffer: draw, re-initialise a share from the base, K steps, push back
pd-alpha        persistent particles moved by ``-∇_x (E_new - E_old)`` after the update, then corrections
pd-beta         the same with ``-∇_x ⟨∇_θ E(x), θ_new - θ_old⟩`` (the exact linearisation)
pd-exact        the same with the exact grid field ``∇φ`` of the weighted Poisson equation (2-D only)
pd-weighted     PD-alpha moves with exact change-of-variables log-weights; self-normalised weights in the
                loss; systematic resampling when ESS < resample_threshold · n
pd-gamma        its own model: an energy on a grid, changed each step by the functional gradient of the
                loss under the neural-tangent kernel of a freshly initialised network; particles follow
==============  ==================================================================================

A strategy is a small record of plain functions (:class:`Strategy`): ``init`` makes the particle state,
``negatives`` returns the negatives of the current model (advancing chains where it has them), and
``transport`` moves persistent particles after the parameters changed (the PD variants). pd-gamma also
replaces the Adam update with its own ``update``. The state is a dict of tensors, so checkpoints store
it as it is.

:class:`Trainer` runs the loop, records a :class:`TrainHistory` (loss, loop wall/CPU time, cumulative
gradient evaluations on the particles, periodic held-out evaluations and particle snapshots), detects
divergence, and saves/resumes checkpoints that continue bit for bit. :func:`main` is ``pdviz train``.

Dimension-agnostic: particles are ``[n, d]``; with ``model="conv"`` and an image dataset of
:mod:`pdviz.images` (or ``Trainer(config, data=...)``) the same strategies train a ConvEBM on flattened
images. Grid metrics (log-likelihood, pd-exact, pd-gamma) need d = 2.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp
from tqdm.auto import tqdm

from pdviz import checkpoint as ckpt
from pdviz import datasets, flows, metrics, models, samplers
from pdviz.errors import (
    CheckpointError,
    DivergenceError,
    InvalidArgumentError,
    PdvizError,
    UnknownNameError,
    check_choice,
    check_finite_state,
    check_positive,
    check_range,
)
from pdviz.grid import Grid

__all__ = [
    "TrainConfig",
    "PRESETS",
    "STRATEGIES",
    "Strategy",
    "TrainHistory",
    "Trainer",
    "GridEnergy",
    "make_config",
    "learning_rate",
    "contrastive_loss",
    "gamma_energy_change",
    "train",
    "main",
]

CHECKPOINT_KIND = "pdviz-trainer"
EVAL_CHUNK = 4096  # points per no-grad forward pass in evaluate()
MMD_POINTS = 256  # particles and held-out points per side of the evaluation MMD²
# config keys that may differ between a checkpoint and the run that resumes it: they change how long the
# run goes, where it writes and what it measures, not the trajectory (n_iters also sets the length of a
# decaying learning-rate schedule; resume with the same n_iters to continue bit for bit)
RUN_KEYS = (
    "n_iters",
    "time_budget",
    "checkpoint_path",
    "checkpoint_every",
    "eval_every",
    "n_eval",
    "snapshot_every",
)


# --- configuration --------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Every setting of a training run. Build one with :func:`make_config` (preset + overrides).

    The defaults are the ``"fast"`` preset; ``PRESETS["paper"]`` holds the scripts' settings (method.md §3).
    Validated on construction: a bad value raises InvalidArgumentError naming the field and its range.

    Attributes (groups)
    -------------------
    What is learned: dataset, strategy, preset, model ("mlp" | "conv"), image_shape (C, H, W) for conv,
    hidden, depth, activation, dequantize (image pixels ``x (L-1)/L + U(0, 1/L)`` per batch).
    Optimisation: n_iters, batch_size, n_particles, lr, betas, lr_warmup (linear warm-up iterations),
    lr_schedule ("constant" | "cosine" down to lr·lr_final over n_iters), ema (Polyak decay of the
    evaluation copy; 0 = off), grad_clip (max gradient norm; None = off), energy_reg (α·mean(E²) on data
    and negatives; 0 = off).
    Negatives: init ("base": the Gaussian fitted to a data batch | "uniform": the data's bounding box),
    n_init_steps (Langevin steps on the initial model), n_steps (K of short-run/pcd/replay),
    step_size / noise_scale (ULA ε and σ of chains and corrections; σ None = sqrt(ε)),
    replay_step_size / replay_noise_scale, buffer_size, reinit_frac, pd_step (h of the PD move),
    n_corrections, correction ("ula" | "mala"), beta_method (pd_beta_field method), field_grid_size
    (pd-exact and pd-gamma grids over [grid_low, grid_high]²), gamma_lr, gamma_hidden,
    gamma_activation, resample_threshold (pd-weighted resamples when ESS < threshold · n).
    Evaluation and safety: eval_every (0 = never), n_eval, snapshot_every (0 = never), grid_size,
    grid_low, grid_high, bound (max |particle coordinate|), loss_bound (max |loss|), seed,
    checkpoint_path, checkpoint_every, time_budget (seconds of loop time), device ("cpu" | "cuda").
    """

    dataset: str = "8gaussians"
    strategy: str = "pd-alpha"
    preset: str = "fast"
    model: str = "mlp"
    image_shape: tuple[int, int, int] | None = None
    hidden: int = 128
    depth: int = 2
    activation: str = "swish"
    dequantize: bool = True
    n_iters: int = 3000
    batch_size: int = 1000
    n_particles: int = 1000
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.999)
    lr_warmup: int = 100
    lr_schedule: str = "cosine"
    lr_final: float = 0.1
    ema: float = 0.995
    grad_clip: float | None = None
    energy_reg: float = 0.0
    init: str = "base"
    n_init_steps: int = 100
    n_steps: int = 20
    step_size: float = 1e-2
    noise_scale: float | None = None
    replay_step_size: float = 0.1
    replay_noise_scale: float | None = 0.1
    replay_anneal: str = "none"
    buffer_size: int = 10000
    reinit_frac: float = 0.1
    pd_step: float = 0.2
    n_corrections: int = 3
    correction: str = "ula"
    beta_method: str = "auto"
    field_grid_size: int = 100
    gamma_lr: float = 0.1
    gamma_hidden: int = 128
    gamma_activation: str = "leaky_relu"
    resample_threshold: float = 0.5
    eval_every: int = 50
    n_eval: int = 20000
    snapshot_every: int = 100
    grid_size: int = 200
    grid_low: float = -5.0
    grid_high: float = 5.0
    bound: float = 1e3
    loss_bound: float = 1e4
    seed: int = 0
    checkpoint_path: str | None = None
    checkpoint_every: int | None = None
    time_budget: float | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise UnknownNameError listing the valid ones."""
        _check_keys(values)
        values = dict(values)
        for key in ("betas", "image_shape"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _check_keys(values: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(_field_names()))
    if unknown:
        raise UnknownNameError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(_field_names()))}"
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_optional_positive(
    name: str, value: Any, *, integer: bool = False, allow_zero: bool = False
) -> None:
    if value is not None:
        check_positive(name, value, integer=integer, allow_zero=allow_zero)


def _validate(c: TrainConfig) -> None:
    """Check every field; raise InvalidArgumentError / UnknownNameError naming it, its value and the range."""
    check_choice("strategy", c.strategy, STRATEGIES, what="strategy")
    check_choice("preset", c.preset, PRESETS, what="preset")
    check_choice("model", c.model, ("mlp", "conv"), what="model")
    check_choice("lr_schedule", c.lr_schedule, ("constant", "cosine"), what="lr_schedule")
    check_choice("init", c.init, ("base", "uniform"), what="init")
    check_choice("correction", c.correction, ("ula", "mala"), what="correction")
    check_choice("replay_anneal", c.replay_anneal, samplers.ANNEALING, what="replay_anneal")
    check_choice("beta_method", c.beta_method, ("auto", *flows.BETA_METHODS), what="beta_method")
    check_choice("activation", c.activation, models.ACTIVATIONS, what="activation")
    check_choice("gamma_activation", c.gamma_activation, models.ACTIVATIONS, what="gamma_activation")
    check_choice("device", c.device, ("cpu", "cuda"), what="device")
    if not isinstance(c.dataset, str) or not c.dataset:
        raise InvalidArgumentError(f"dataset must be a dataset name, got {c.dataset!r}")
    if not isinstance(c.dequantize, bool):
        raise InvalidArgumentError(f"dequantize must be True or False, got {c.dequantize!r}")
    for name in (
        "hidden",
        "depth",
        "n_iters",
        "batch_size",
        "n_particles",
        "buffer_size",
        "n_eval",
        "gamma_hidden",
    ):
        _check_int(name, getattr(c, name), 1)
    for name in (
        "lr_warmup",
        "n_init_steps",
        "n_steps",
        "n_corrections",
        "eval_every",
        "snapshot_every",
        "seed",
    ):
        _check_int(name, getattr(c, name), 0)
    _check_int("field_grid_size", c.field_grid_size, 4)
    _check_int("grid_size", c.grid_size, 4)
    check_positive("lr", c.lr, allow_zero=True)  # lr = 0 freezes the model (tests, demos of a fixed target)
    if not isinstance(c.betas, (tuple, list)) or len(c.betas) != 2:
        raise InvalidArgumentError(f"betas must be a pair (beta1, beta2) in [0, 1), got {c.betas!r}")
    for i, b in enumerate(c.betas):
        check_range(f"betas[{i}]", b, 0.0, 1.0)
        if b >= 1.0:
            raise InvalidArgumentError(f"betas[{i}] must be < 1, got {b!r}")
    check_range("lr_final", c.lr_final, 0.0, 1.0)
    check_range("ema", c.ema, 0.0, 1.0)
    if c.ema >= 1.0:
        raise InvalidArgumentError(f"ema must be in [0, 1) (0 = off), got {c.ema!r}")
    _check_optional_positive("grad_clip", c.grad_clip)
    check_positive("energy_reg", c.energy_reg, allow_zero=True)
    check_positive("step_size", c.step_size)
    _check_optional_positive("noise_scale", c.noise_scale, allow_zero=True)
    check_positive("replay_step_size", c.replay_step_size)
    _check_optional_positive("replay_noise_scale", c.replay_noise_scale, allow_zero=True)
    check_range("reinit_frac", c.reinit_frac, 0.0, 1.0)
    check_positive("pd_step", c.pd_step)
    check_positive("gamma_lr", c.gamma_lr)
    check_range("resample_threshold", c.resample_threshold, 0.0, 1.0)
    check_positive("bound", c.bound)
    check_positive("loss_bound", c.loss_bound)
    for name in ("grid_low", "grid_high"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}")
    if not c.grid_low < c.grid_high:
        raise InvalidArgumentError(f"grid_low must be < grid_high, got {c.grid_low!r} and {c.grid_high!r}")
    if c.strategy == "replay" and c.buffer_size < c.n_particles:
        raise InvalidArgumentError(
            f"buffer_size must be >= n_particles ({c.n_particles}) for the replay strategy, got {c.buffer_size}"
        )
    if c.image_shape is not None:
        shape = c.image_shape
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        ):
            raise InvalidArgumentError(
                f"image_shape must be (C, H, W) of positive ints or None, got {shape!r}"
            )
    if c.checkpoint_path is not None and not isinstance(c.checkpoint_path, str):
        raise InvalidArgumentError(f"checkpoint_path must be a string or None, got {c.checkpoint_path!r}")
    _check_optional_positive("checkpoint_every", c.checkpoint_every, integer=True)
    _check_optional_positive("time_budget", c.time_budget)


# The paper's settings (method.md §3); gamma_lr and the field grid are ours (not in method.md).
_PAPER = dict(
    preset="paper",
    hidden=300,
    depth=2,
    activation="swish",
    n_iters=10_000,
    batch_size=1000,
    n_particles=1000,
    lr=1e-4,
    betas=(0.0, 0.999),
    lr_warmup=0,
    lr_schedule="constant",
    lr_final=1.0,
    ema=0.0,
    grad_clip=None,
    energy_reg=0.0,
    n_init_steps=1000,
    n_steps=20,
    step_size=1e-2,
    noise_scale=None,
    replay_step_size=0.1,
    replay_noise_scale=0.1,
    buffer_size=10_000,
    reinit_frac=0.1,
    pd_step=1.0,
    n_corrections=10,
    correction="ula",
    field_grid_size=200,
    gamma_lr=1e-2,
    gamma_hidden=300,
    gamma_activation="leaky_relu",
)
# "fast": the most held-out log-likelihood per CPU second on 8gaussians, tuned on iteration counts (seeds 0-2):
# * pd_step 0.2, not 1: for a translating Gaussian of std s the exact move is s² · (-∇ΔE), so h = 1 overshoots
#   the modes of std 0.35 (s² ≈ 0.125) eightfold; with h = 0.2 lr 1e-3 is stable (with h = 1 it diverges).
# * lr 1e-3 with 100 warm-up iterations and a cosine decay to 1e-4 over n_iters; Polyak average (ema 0.995)
#   as the evaluated model, which removes most of the late oscillation of the log-likelihood.
# * hidden 128 (about 5x cheaper than 300), 3 corrections, 100 initial Langevin steps.
# * pd-gamma: kernel net of width 128 and gamma_lr 0.1 (-3.27 after 1000 iterations, ~47 ms each).
# Measured: held-out log-likelihood -2.852, -2.851, -2.845 (mean of the last 10 % of evaluations; bound
# -2.832) after 3000 iterations, ~12 ms per iteration on one CPU thread (~36 s of loop CPU time).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": _PAPER,
    "fast": {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in _PAPER},
}


def make_config(preset: str = "fast", **overrides: Any) -> TrainConfig:
    """A validated :class:`TrainConfig`: the preset's values, then ``overrides``.

    Raises UnknownNameError for an unknown preset or key (listing the valid ones), InvalidArgumentError
    for a bad value.

    Examples
    --------
    >>> make_config("paper", strategy="pcd").n_iters
    10000
    """
    check_choice("preset", preset, PRESETS, what="preset")
    _check_keys(overrides)
    values = {**PRESETS[preset], "preset": preset, **overrides}
    return TrainConfig(**values)


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """The learning rate of iteration ``iteration`` (0-based): linear warm-up, then constant or cosine.

    ``lr · min(1, (t+1)/warmup)`` during warm-up; after it, cosine from ``lr`` to ``lr · lr_final`` over
    the remaining ``n_iters - warmup`` iterations (constant beyond ``n_iters``).
    """
    if not isinstance(config, TrainConfig):
        raise InvalidArgumentError(
            f"config must be a TrainConfig (see make_config), got {type(config).__name__}"
        )
    check_positive("iteration", iteration, integer=True, allow_zero=True)
    lr, warm = config.lr, config.lr_warmup
    if warm and iteration < warm:
        return lr * (iteration + 1) / warm
    if config.lr_schedule == "constant":
        return lr
    progress = min(1.0, (iteration - warm) / max(1, config.n_iters - warm))
    return lr * (config.lr_final + (1.0 - config.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def contrastive_loss(energy_data: Tensor, energy_neg: Tensor, neg_weights: Tensor | None = None) -> Tensor:
    """``mean E(data) - Σ_j w_j E(neg_j)`` (w = 1/n by default): method.md §1's loss, a scalar.

    Its θ-gradient ``E_data[∇θ E] - E_neg[∇θ E]`` is minus the log-likelihood gradient when the
    negatives follow the model. Minimising it lowers the energy of data and raises that of negatives.
    """
    for name, e in (("energy_data", energy_data), ("energy_neg", energy_neg)):
        if not isinstance(e, Tensor) or e.ndim != 1 or e.numel() == 0:
            got = list(e.shape) if isinstance(e, Tensor) else type(e).__name__
            raise InvalidArgumentError(f"{name} must be a non-empty 1-D tensor of energies [n], got {got}")
    if neg_weights is not None and (
        not isinstance(neg_weights, Tensor) or neg_weights.shape != energy_neg.shape
    ):
        got = list(neg_weights.shape) if isinstance(neg_weights, Tensor) else type(neg_weights).__name__
        raise InvalidArgumentError(
            f"neg_weights must have the shape of energy_neg {list(energy_neg.shape)}, got {got}"
        )
    if neg_weights is None:
        return energy_data.mean() - energy_neg.mean()
    return energy_data.mean() - (neg_weights * energy_neg).sum()


# --- pd-gamma: an energy on a grid moved by the NTK functional gradient -------------------------------


class GridEnergy(nn.Module):
    """``E(x) = base(x) + bilinear(values)(x)``: a Gaussian base plus an energy table on a 2-D grid.

    The base ``½ Σ ((x - μ)/s)² + Σ log s`` confines particles outside the grid's box, where the table
    extends its edge values as constants (``Grid.interpolate``). ``values`` [size, size] ([iy, ix]) is a
    buffer: pd-gamma changes it by the functional gradient step, never by an optimiser.
    """

    def __init__(self, base_mean: Tensor, base_std: Tensor, grid: Grid):
        super().__init__()
        self.grid = grid
        self.register_buffer("base_mean", base_mean.detach().clone().float())
        self.register_buffer("base_std", base_std.detach().clone().float())
        self.register_buffer("values", torch.zeros(grid.size, grid.size))

    def forward(self, x: Tensor) -> Tensor:
        """Energy ``x [n, 2] -> [n]`` (differentiable in x)."""
        z = (x - self.base_mean) / self.base_std
        base = 0.5 * (z * z).sum(-1) + self.base_std.log().sum()
        return base + self.grid.interpolate(self.values, x)


def _kernel_net(dim: int, hidden: int, depth: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), models.ACTIVATIONS[activation]()]
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def fresh_parameters(net: nn.Module, generator: torch.Generator) -> dict[str, Tensor]:
    """PyTorch's default initialisation of every ``nn.Linear``, drawn from ``generator``.

    Weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (what ``kaiming_uniform_(a=sqrt(5))`` gives),
    so a "freshly initialised network" needs no global RNG.
    """
    params = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            for pname, p in (("weight", module.weight), ("bias", module.bias)):
                u = torch.rand(p.shape, generator=generator, device=generator.device, dtype=p.dtype)
                params[f"{name}.{pname}" if name else pname] = (2.0 * u - 1.0) * bound
    return params


def gamma_energy_change(
    net: nn.Module,
    params: dict[str, Tensor],
    data: Tensor,
    negatives: Tensor,
    points: Tensor,
    lr: float,
    neg_weights: Tensor | None = None,
) -> Tensor:
    """The NTK functional-gradient change of the energy at ``points``: ``ΔE(y) = -lr ⟨∇θ E(y), g⟩``.

    ``g = mean_i ∇θ E(data_i) - Σ_j w_j ∇θ E(neg_j)`` is the loss gradient at the network ``params``, so
    ``ΔE(y) = -lr Σ_i K(y, data_i)/n + lr Σ_j w_j K(y, neg_j)`` with the neural-tangent kernel
    ``K(x, y) = ⟨∇θ E(x), ∇θ E(y)⟩``. Computed with one reverse pass (g) and one JVP at ``points`` (no
    kernel matrix is formed).

    Parameters
    ----------
    net : nn.Module
        ``x [n, d] -> [n, 1]`` or ``[n]``.
    params : dict[str, Tensor]
        The network's parameters θ (e.g. :func:`fresh_parameters`).
    data [b, d], negatives [n, d], points [m, d] : Tensor
    lr : float
    neg_weights : Tensor [n], optional
        Self-normalised weights of the negatives (default uniform).

    Returns
    -------
    Tensor [m], detached.
    """

    def energy(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(net, p, (x,)).reshape(x.shape[0])

    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():
        loss = contrastive_loss(energy(leaves, data), energy(leaves, negatives), neg_weights)
        grads = torch.autograd.grad(loss, list(leaves.values()))
    tangent = {k: -lr * g.detach() for k, g in zip(leaves, grads)}
    frozen = {k: v.detach() for k, v in params.items()}
    _, change = jvp(lambda p: energy(p, points), (frozen,), (tangent,))
    return change.detach()


# --- strategies -----------------------------------------------------------------------------------


class Strategy(NamedTuple):
    """A negative-sample strategy: plain functions of the trainer and a state dict of tensors.

    init(trainer) -> state
        The particle state at iteration 0 (always holds ``"position"`` [n, d]).
    negatives(trainer, state) -> (state, negatives [n, d], weights [n] or None, n_grad)
        Negatives of the *current* model, before the parameter update.
    transport(trainer, state, params_old) -> (state, n_grad), optional
        After the update: carry persistent particles from the old model to the new one.
    update(trainer, state, batch, negatives, weights) -> (state, loss), optional
        Replaces the loss/Adam update (pd-gamma's functional gradient step).
    description : str
    """

    init: Callable[[Trainer], dict[str, Any]]
    negatives: Callable[[Trainer, dict[str, Any]], tuple[dict[str, Any], Tensor, Tensor | None, int]]
    transport: Callable[[Trainer, dict[str, Any], dict[str, Tensor]], tuple[dict[str, Any], int]] | None = (
        None
    )
    update: Callable[..., tuple[dict[str, Any], Tensor]] | None = None
    description: str = ""


def _langevin(
    tr: Trainer,
    state: samplers.State,
    energy_fn: Callable[[Tensor], Tensor],
    n_steps: int,
    step_size: float,
    noise_scale: float | None,
    correction: str = "ula",
) -> tuple[samplers.State, int]:
    """``n_steps`` ULA (or MALA) steps from a State with cached energy/grad; returns (State, n_grad)."""
    if correction != "mala":
        state = samplers.ula_steps(
            state, energy_fn, n_steps, step_size=step_size, noise_scale=noise_scale, generator=tr.generator
        )
        return state, n_steps
    n_grad = 0
    for _ in range(n_steps):
        state, info = samplers.mala_step(
            state, energy_fn, step_size=step_size, noise_scale=noise_scale, generator=tr.generator
        )
        n_grad += int(info.n_grad)
    return state, n_grad


def _chain_from(
    tr: Trainer, x: Tensor, n_steps: int, step_size: float, noise_scale: float | None, anneal: str = "none"
) -> tuple[Tensor, int]:
    """K ULA steps on the current model from positions x: K gradient evaluations (one to start, one after
    each of the first K - 1 moves); the last move needs none, since the model changes before the next.
    ``anneal`` takes the step from ε towards σ² over the chain (samplers.anneal_schedule)."""
    if n_steps == 0:
        return x.detach(), 0
    state = samplers.ula_init(x, tr.model)
    if anneal != "none":
        sigma = math.sqrt(step_size) if noise_scale is None else noise_scale
        steps = samplers.anneal_schedule(step_size, sigma, n_steps, anneal)
        state = samplers.ula_steps(
            state, tr.model, n_steps - 1, step_size=steps[:-1], noise_scale=sigma, generator=tr.generator
        )
        x_new = samplers.ula_move(state, step_size=steps[-1], noise_scale=sigma, generator=tr.generator)
        return x_new.detach(), n_steps
    state, n = _langevin(tr, state, tr.model, n_steps - 1, step_size, noise_scale)
    x_new = samplers.ula_move(state, step_size=step_size, noise_scale=noise_scale, generator=tr.generator)
    return x_new.detach(), n + 1


def _initial_particles(tr: Trainer) -> tuple[dict[str, Any], int]:
    """Base samples, then ``n_init_steps`` Langevin steps on the initial model; energy/grad cached."""
    cfg = tr.config
    state = samplers.ula_init(tr.sample_base(cfg.n_particles), tr.model)
    state, n = _langevin(tr, state, tr.model, cfg.n_init_steps, cfg.step_size, cfg.noise_scale)
    out = {"position": state.position, "energy": state.energy, "grad": state.grad}
    return out, n + 1


# short-run: K steps from fresh base samples every iteration


def _short_run_init(tr: Trainer) -> dict[str, Any]:
    return {"position": tr.sample_base(tr.config.n_particles)}


def _short_run_negatives(tr: Trainer, state: dict[str, Any]):
    cfg = tr.config
    x, n = _chain_from(tr, tr.sample_base(cfg.n_particles), cfg.n_steps, cfg.step_size, cfg.noise_scale)
    return {"position": x}, x, None, n


# pcd: persistent chains


def _pcd_init(tr: Trainer) -> dict[str, Any]:
    state, tr._init_grads = _initial_particles(tr)
    return {"position": state["position"]}


def _pcd_negatives(tr: Trainer, state: dict[str, Any]):
    cfg = tr.config
    x, n = _chain_from(tr, state["position"], cfg.n_steps, cfg.step_size, cfg.noise_scale)
    return {"position": x}, x, None, n


# replay: a buffer with a re-initialised share


def _replay_init(tr: Trainer) -> dict[str, Any]:
    cfg = tr.config
    buffer = samplers.ReplayBuffer(
        cfg.buffer_size,
        lambda n, gen: tr.sample_base(n, gen),
        reinit_frac=cfg.reinit_frac,
        generator=tr.generator,
    )
    return {"position": buffer.positions[: cfg.n_particles].clone(), "buffer": buffer}


def _replay_negatives(tr: Trainer, state: dict[str, Any]):
    cfg = tr.config
    buffer: samplers.ReplayBuffer = state["buffer"]
    x, index = buffer.sample(cfg.n_particles)
    x, n = _chain_from(tr, x, cfg.n_steps, cfg.replay_step_size, cfg.replay_noise_scale, cfg.replay_anneal)
    check_finite_state(
        "particle positions", x, tr.iteration, bound=cfg.bound, suggestion=tr.suggestion("replay")
    )
    buffer.push(x, index)
    return {"position": x, "buffer": buffer}, x, None, n


# the PD family: persistent particles with E and ∇E of the current model cached


def _pd_init(tr: Trainer) -> dict[str, Any]:
    state, tr._init_grads = _initial_particles(tr)
    if tr.config.strategy in (
        "pd-beta",
        "pd-gamma",
    ):  # they never use the cached E, ∇E (see _move_and_correct)
        state = {"position": state["position"]}
    if tr.config.strategy == "pd-weighted":
        state["log_weight"] = torch.zeros(tr.config.n_particles, device=tr.device)
    return state


def _pd_negatives(tr: Trainer, state: dict[str, Any]):
    weights = torch.softmax(state["log_weight"], 0) if "log_weight" in state else None
    return state, state["position"], weights, 0


def _old_energy(tr: Trainer, params_old: dict[str, Tensor]) -> Callable[[Tensor], Tensor]:
    model = tr.model
    return lambda x: functional_call(model, params_old, (x,))


def _flow_transport(
    tr: Trainer, state: dict[str, Any], params_old: dict[str, Tensor], method: str, weighted: bool
):
    """pd-alpha / pd-exact / pd-weighted through ``flows.flow_step`` (∇E_old comes from the cache)."""
    cfg = tr.config
    log_weight = state.get("log_weight", torch.zeros(cfg.n_particles, device=tr.device))
    fs = flows.FlowState(state["position"], state["energy"], state["grad"], log_weight)
    fs, info = flows.flow_step(
        fs,
        _old_energy(tr, params_old),
        tr.model,
        method=method,
        step=cfg.pd_step,
        n_corrections=cfg.n_corrections,
        correction=cfg.correction,
        correction_step_size=cfg.step_size,
        noise_scale=cfg.noise_scale,
        weighted=weighted,
        generator=tr.generator,
        grid=tr.field_grid if method == "exact" else None,
        bound=cfg.bound,
        iteration=tr.iteration,
    )
    if weighted and info.ess < cfg.resample_threshold * cfg.n_particles:
        fs = flows.systematic_resample(fs, tr.generator)
        tr._n_resample += 1
    out = {"position": fs.position, "energy": fs.energy, "grad": fs.grad}
    if weighted:
        out["log_weight"] = fs.log_weight
    return out, int(info.n_grad)


def _move_and_correct(tr: Trainer, x: Tensor, displacement: Tensor) -> tuple[dict[str, Any], int]:
    """``y = x + displacement``, then ``n_corrections`` Langevin steps on the new model.

    For PD-beta and PD-gamma, whose next move does not use ∇E at the particles (the model changes first),
    ULA corrections end with a move, as the chains do: K corrections cost K gradient evaluations. MALA
    needs the energy of every proposal, so K MALA corrections cost K + 1.
    """
    cfg = tr.config
    y = (x + displacement).detach()
    check_finite_state("particle positions", y, tr.iteration, bound=cfg.bound, suggestion=tr.suggestion("pd"))
    if cfg.correction != "mala":
        position, n = _chain_from(tr, y, cfg.n_corrections, cfg.step_size, cfg.noise_scale)
        return {"position": position}, n
    state = samplers.mala_init(y, tr.model)
    state, n = _langevin(tr, state, tr.model, cfg.n_corrections, cfg.step_size, cfg.noise_scale, "mala")
    return {"position": state.position}, n + 1


def _alpha_transport(tr: Trainer, state: dict[str, Any], params_old: dict[str, Tensor]):
    return _flow_transport(tr, state, params_old, "pd", weighted=False)


def _exact_transport(tr: Trainer, state: dict[str, Any], params_old: dict[str, Tensor]):
    return _flow_transport(tr, state, params_old, "exact", weighted=False)


def _weighted_transport(tr: Trainer, state: dict[str, Any], params_old: dict[str, Tensor]):
    return _flow_transport(tr, state, params_old, "pd", weighted=True)


def _beta_transport(tr: Trainer, state: dict[str, Any], params_old: dict[str, Tensor]):
    cfg = tr.config
    params_new = {k: v.detach() for k, v in tr.model.named_parameters()}
    v = flows.pd_beta_field(tr.model, params_old, params_new, state["position"], method=cfg.beta_method)
    # the mixed derivative costs about two gradient evaluations (one double-backward pass)
    out, n = _move_and_correct(tr, state["position"], cfg.pd_step * v)
    return out, n + 2


def _gamma_update(
    tr: Trainer, state: dict[str, Any], batch: Tensor, negatives: Tensor, weights: Tensor | None
):
    """Change the grid energy by the NTK functional gradient of a freshly initialised network."""
    cfg = tr.config
    grid_energy: GridEnergy = tr.model
    with torch.no_grad():
        loss = contrastive_loss(grid_energy(batch), grid_energy(negatives), weights)
    params = fresh_parameters(tr.kernel_net, tr.generator)
    change = gamma_energy_change(
        tr.kernel_net, params, batch, negatives, tr.field_grid.points, cfg.gamma_lr, weights
    )
    change = change.reshape(grid_energy.values.shape)
    grid_energy.values.add_(change)
    return {**state, "delta": change}, loss


def _gamma_transport(tr: Trainer, state: dict[str, Any], params_old: dict[str, Tensor]):
    x = state["position"].detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(tr.field_grid.interpolate(state["delta"], x).sum(), x)
    out, n = _move_and_correct(tr, state["position"], -tr.config.pd_step * grad.detach())
    return {**out, "delta": state["delta"]}, n


def _gamma_init(tr: Trainer) -> dict[str, Any]:
    state = _pd_init(tr)
    state["delta"] = torch.zeros(tr.config.field_grid_size, tr.config.field_grid_size, device=tr.device)
    return state


STRATEGIES: dict[str, Strategy] = {
    "short-run": Strategy(
        _short_run_init, _short_run_negatives, description="K ULA steps from fresh base samples"
    ),
    "pcd": Strategy(_pcd_init, _pcd_negatives, description="persistent chains, K ULA steps per iteration"),
    "replay": Strategy(
        _replay_init, _replay_negatives, description="replay buffer, re-initialised share, K steps"
    ),
    "pd-alpha": Strategy(_pd_init, _pd_negatives, _alpha_transport, description="move by -∇(E_new - E_old)"),
    "pd-beta": Strategy(_pd_init, _pd_negatives, _beta_transport, description="move by -∇⟨∇θE, Δθ⟩"),
    "pd-exact": Strategy(
        _pd_init, _pd_negatives, _exact_transport, description="move by the exact grid field"
    ),
    "pd-weighted": Strategy(
        _pd_init, _pd_negatives, _weighted_transport, description="PD-alpha with importance weights"
    ),
    "pd-gamma": Strategy(
        _gamma_init, _pd_negatives, _gamma_transport, _gamma_update, description="grid energy, NTK step"
    ),
}


def get(name: str) -> Strategy:
    """The strategy ``name``; UnknownNameError lists the valid names."""
    check_choice("strategy", name, STRATEGIES, what="strategy")
    return STRATEGIES[name]


# --- history --------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Tensor):
        return _jsonable(value.detach().cpu().tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class TrainHistory:
    """What a training run recorded.

    Per iteration (lists of equal length): ``iteration`` (1-based count after the step), ``loss``, ``lr``,
    ``wall_time`` and ``cpu_time`` (cumulative seconds of the loop, the initial particles included and the
    evaluations excluded), ``n_grad`` (cumulative gradient evaluations on the particles).
    ``evals``: dicts ``{iteration, wall_time, cpu_time, log_likelihood, mmd2, mode_weight_spread,
    model_mode_weight_spread, ess, n_resample}`` (None where not defined, e.g. grid metrics for d != 2).
    ``snapshots``: ``(iteration, particles [n, d])`` pairs. ``entropy_bound``: minus the data entropy (the
    best achievable held-out log-likelihood) where known. ``eval_wall_time``/``eval_cpu_time``: time spent
    evaluating, excluded from the loop times.
    """

    dataset: str = ""
    strategy: str = ""
    iteration: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    cpu_time: list[float] = field(default_factory=list)
    n_grad: list[int] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[tuple[int, Tensor]] = field(default_factory=list)
    entropy_bound: float | None = None
    init_wall_time: float = 0.0
    init_cpu_time: float = 0.0
    init_n_grad: int = 0
    eval_wall_time: float = 0.0
    eval_cpu_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (snapshots as nested lists, non-finite numbers as None)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "snapshots"}
        out["snapshots"] = [{"iteration": it, "particles": x} for it, x in self.snapshots]
        return _jsonable(out)

    def state(self) -> dict[str, Any]:
        """Plain lists, numbers and tensors for a checkpoint (weights-only loadable)."""
        out = {
            f.name: copy.copy(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "snapshots"
        }
        out["evals"] = [dict(e) for e in self.evals]
        out["snapshots"] = [[it, x] for it, x in self.snapshots]
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainHistory:
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(state, dict) or not set(state) <= known:
            raise CheckpointError("checkpoint history has unexpected keys")
        values = dict(state)
        values["snapshots"] = [(int(it), x) for it, x in values.get("snapshots", [])]
        values["evals"] = [dict(e) for e in values.get("evals", [])]
        return cls(**values)

    def last_eval(self, key: str) -> float | None:
        """The most recent evaluation of ``key`` (None if never evaluated)."""
        for record in reversed(self.evals):
            if record.get(key) is not None:
                return record[key]
        return None


# --- the trainer ----------------------------------------------------------------------------------


def _parameters(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _probe_model(model: nn.Module, x: Tensor) -> None:
    """Check that a user's model maps points [n, d] to energies [n] (before any training step)."""
    try:
        with torch.no_grad():
            e = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise InvalidArgumentError(
            f"model must map points of shape [n, {x.shape[1]}] to energies [n]; on a data batch of shape "
            f"{list(x.shape)} it raised {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    if not isinstance(e, Tensor) or e.shape != (x.shape[0],):
        got = list(e.shape) if isinstance(e, Tensor) else type(e).__name__
        raise InvalidArgumentError(
            f"model must return one energy per point, shape [{x.shape[0]}] for input {list(x.shape)}, got {got}"
        )


class Trainer:
    """The contrastive training loop (method.md §1) with a negative-sample strategy from :data:`STRATEGIES`.

    Parameters
    ----------
    config : TrainConfig, optional
        Default ``make_config("fast")``.
    data : Tensor [N, d], optional
        Training data instead of ``config.dataset`` (batches are drawn without replacement within a batch);
        evaluation uses a random subset. Needed again when loading a checkpoint of such a run.
    model : nn.Module, optional
        An energy ``x [n, d] -> [n]`` instead of the one the config builds (not for pd-gamma).

    Attributes
    ----------
    model : nn.Module
        The trained energy (the GridEnergy for pd-gamma).
    energy_fn : callable
        The evaluation model ``x -> E(x)``: the EMA (Polyak) copy when ``config.ema > 0``, else ``model``.
    particles : Tensor [n, d]
        The current negatives / persistent particles.
    log_weights : Tensor [n] or None
        pd-weighted's log-weights.
    iteration : int
        Iterations done.
    history : TrainHistory

    Examples
    --------
    >>> tr = Trainer(make_config("fast", n_iters=200))
    >>> history = tr.run(progress=False)
    >>> history.last_eval("log_likelihood")                    # doctest: +SKIP
    """

    def __init__(
        self, config: TrainConfig | None = None, data: Tensor | None = None, model: nn.Module | None = None
    ):
        self._setup(config, data, model, initialise=True)

    # -- construction ------------------------------------------------------------------------------

    def _setup(
        self, config: TrainConfig | None, data: Tensor | None, model: nn.Module | None, *, initialise: bool
    ) -> None:
        cfg = make_config() if config is None else config
        if not isinstance(cfg, TrainConfig):
            raise InvalidArgumentError(
                f"config must be a TrainConfig (see make_config), got {type(cfg).__name__}"
            )
        _validate(cfg)
        self.config = cfg
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise InvalidArgumentError(
                "device 'cuda' was asked for but torch.cuda.is_available() is False; use 'cpu'"
            )
        self.device = torch.device(cfg.device)
        self.strategy = get(cfg.strategy)
        # data on the CPU from its own generator: the same data stream for every strategy and device
        self.data_generator = samplers.make_generator(cfg.seed)
        self.generator = samplers.make_generator(cfg.seed + 1, device=cfg.device)
        self._n_resample = 0
        self._init_grads = 0
        self._nearest = None
        self._load_data(data)
        self.dim = self._dim
        if cfg.strategy in ("pd-exact", "pd-gamma") and self.dim != 2:
            raise InvalidArgumentError(
                f"strategy {cfg.strategy!r} works on a 2-D grid; the data have d = {self.dim}"
            )
        if cfg.strategy == "pd-weighted" and self.dim > flows.MAX_WEIGHTED_DIM:
            raise InvalidArgumentError(
                f"strategy 'pd-weighted' needs a d x d Jacobian per particle; supported for "
                f"d <= {flows.MAX_WEIGHTED_DIM}, the data have d = {self.dim}"
            )
        self.grid = Grid(cfg.grid_low, cfg.grid_high, cfg.grid_size) if self.dim == 2 else None
        self.field_grid = Grid(cfg.grid_low, cfg.grid_high, cfg.field_grid_size) if self.dim == 2 else None

        base_batch = self._data_batch()
        self._base_mean = base_batch.mean(0)
        self._base_std = base_batch.std(0).clamp_min(1e-3)
        self._low = self._high = None
        if cfg.init == "uniform":
            ref = (
                self._train
                if self._train is not None
                else datasets.sample(cfg.dataset, 10_000, seed=cfg.seed)
            )
            self._low, self._high = ref.min(0).values.to(self.device), ref.max(0).values.to(self.device)
        self.model = self._build_model(model, base_batch).to(self.device)
        self.kernel_net = None
        if cfg.strategy == "pd-gamma":
            self.kernel_net = _kernel_net(2, cfg.gamma_hidden, cfg.depth, cfg.gamma_activation).to(
                self.device
            )
        self.ema_model = None
        if cfg.ema > 0 and cfg.strategy != "pd-gamma":
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = None
        if cfg.strategy != "pd-gamma":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))

        self.iteration = 0
        self.history = TrainHistory(dataset=cfg.dataset, strategy=cfg.strategy)
        ent = datasets.ENTROPY.get(cfg.dataset) if self._toy else None
        self.history.entropy_bound = -ent if ent is not None else None
        if not initialise:
            # load(): the state is about to be overwritten, only its shapes matter, so skip the Langevin steps
            self.config = dataclasses.replace(cfg, n_init_steps=0)
            try:
                self._state = self.strategy.init(self)
            finally:
                self.config = cfg
            return
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        with self._guard("initial particles"):
            self._state = self.strategy.init(self)
        self.history.init_wall_time = time.perf_counter() - t_wall
        self.history.init_cpu_time = time.process_time() - t_cpu
        self.history.init_n_grad = self._init_grads
        if cfg.eval_every:
            self.evaluate()
        if cfg.snapshot_every:
            self.history.snapshots.append((0, self.particles.detach().cpu().clone()))

    def _load_data(self, data: Tensor | None) -> None:
        cfg = self.config
        self._toy = data is None and cfg.dataset in datasets.DATASETS
        self._train = None
        self._levels = None
        if data is not None:
            if (
                not isinstance(data, Tensor)
                or data.ndim != 2
                or data.shape[0] < 2
                or not torch.is_floating_point(data)
            ):
                got = f"{data.dtype} {list(data.shape)}" if isinstance(data, Tensor) else type(data).__name__
                raise InvalidArgumentError(f"data must be a float tensor [N >= 2, d], got {got}")
            if not torch.isfinite(data).all():
                raise InvalidArgumentError("data holds NaN or Inf values")
            self._train = data.detach().float()
            gen = samplers.make_generator(cfg.seed + 2)
            index = torch.randperm(data.shape[0], generator=gen)[: cfg.n_eval]
            self._eval = self._train[index]
        elif self._toy:
            self._eval = datasets.sample(cfg.dataset, cfg.n_eval, seed=cfg.seed + 1_000_003)
        else:
            from pdviz import images  # the image engineer's module; only needed for image data

            if cfg.dataset not in images.IMAGE_DATASETS:
                names = sorted(datasets.DATASETS) + sorted(images.IMAGE_DATASETS)
                raise UnknownNameError(f"unknown dataset {cfg.dataset!r}; valid names: {', '.join(names)}")
            self._levels = images.IMAGE_DATASETS[cfg.dataset].levels
            self._train = images.load(cfg.dataset, "train", dequantize=False)
            test = images.load(cfg.dataset, "test", dequantize=False)
            self._eval = test[: cfg.n_eval]
        self._dim = int(self._eval.shape[1])
        if self._train is not None:
            self._train = self._train.to(self.device)
        self._eval = self._eval.to(self.device)

    def _build_model(self, model: nn.Module | None, base_batch: Tensor) -> nn.Module:
        cfg = self.config
        if cfg.strategy == "pd-gamma":
            if model is not None:
                raise InvalidArgumentError("pd-gamma trains its own grid energy; do not pass a model")
            return GridEnergy(self._base_mean, self._base_std, self.field_grid)
        if model is not None:
            if not isinstance(model, nn.Module):
                raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
            _probe_model(model, base_batch[:4].to(next(model.parameters(), base_batch).device))
            return model
        if cfg.model == "conv":
            shape = cfg.image_shape
            if shape is None and not self._toy and self._train is not None and cfg.dataset != "":
                from pdviz import images

                shape = images.image_shape(cfg.dataset) if cfg.dataset in images.IMAGE_DATASETS else None
            if shape is None or shape[0] * shape[1] * shape[2] != self.dim:
                raise InvalidArgumentError(
                    f"model 'conv' needs image_shape (C, H, W) with C*H*W = d = {self.dim}, got {shape!r}"
                )
            return models.ConvEBM(image_shape=tuple(shape), activation=cfg.activation, seed=cfg.seed)
        return models.EBM.from_data(
            base_batch.cpu(), hidden=cfg.hidden, depth=cfg.depth, activation=cfg.activation, seed=cfg.seed
        )

    # -- small pieces ------------------------------------------------------------------------------

    @property
    def energy_fn(self) -> nn.Module:
        """The evaluation model: the EMA copy when the config uses one, else the trained model."""
        return self.ema_model if self.ema_model is not None else self.model

    @property
    def particles(self) -> Tensor:
        """Current particles / negatives [n, d] (detached)."""
        return self._state["position"].detach()

    @property
    def log_weights(self) -> Tensor | None:
        """pd-weighted's log-weights [n], else None."""
        lw = self._state.get("log_weight")
        return None if lw is None else lw.detach()

    def sample_base(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of the base distribution (the Gaussian fitted to a data batch, or the data's box)."""
        gen = self.generator if generator is None else generator
        if self.config.init == "uniform":
            u = torch.rand((n, self.dim), generator=gen, device=self.device)
            return self._low + (self._high - self._low) * u
        z = torch.randn((n, self.dim), generator=gen, device=self.device)
        return self._base_mean.to(self.device) + self._base_std.to(self.device) * z

    def _data_batch(self) -> Tensor:
        cfg = self.config
        if self._toy:
            return datasets.sample(cfg.dataset, cfg.batch_size, generator=self.data_generator).to(self.device)
        n = self._train.shape[0]
        index = torch.randperm(n, generator=self.data_generator)[: cfg.batch_size]
        batch = self._train[index.to(self.device)]
        if self._levels is not None and cfg.dequantize:
            # x (L-1)/L + U(0, 1/L): the images module's dequantisation, with our data generator
            u = torch.rand(batch.shape, generator=self.data_generator).to(self.device)
            batch = batch * (self._levels - 1) / self._levels + u / self._levels
        return batch

    def suggestion(self, what: str) -> str:
        """A concrete thing to try when ``what`` ("lr", "pd", "chains", "replay") diverges."""
        c = self.config
        if what == "lr":
            return f"lower lr (now {c.lr:g}), e.g. to {c.lr / 10:g}, or set grad_clip (now {c.grad_clip})"
        if what == "replay":
            return (
                f"reduce replay_step_size (now {c.replay_step_size:g}), e.g. to {c.replay_step_size / 10:g}, "
                f"or lower lr (now {c.lr:g})"
            )
        if what == "pd":
            return (
                f"reduce pd_step (now {c.pd_step:g}) or step_size (now {c.step_size:g}), e.g. halve them, "
                f"or lower lr (now {c.lr:g})"
            )
        return f"reduce step_size (now {c.step_size:g}), e.g. to {c.step_size / 10:g}, or lower lr (now {c.lr:g})"

    @contextlib.contextmanager
    def _guard(self, where: str) -> Iterator[None]:
        """Re-raise divergence inside samplers/flows as a DivergenceError of this iteration and config."""
        what = "pd" if self.config.strategy.startswith("pd") else self.config.strategy
        try:
            yield
        except DivergenceError as err:
            # a sampler or flow names its own arguments; say which config fields to change instead
            msg = str(err)
            detail = msg[msg.find("(") + 1 : msg.find(")")] if "(" in msg and ")" in msg else ""
            raise DivergenceError(err.quantity, self.iteration, self.suggestion(what), detail=detail) from err
        except InvalidArgumentError as err:
            if "non-finite" in str(err) or "NaN" in str(err):
                raise DivergenceError(
                    f"{where} (energies)", self.iteration, self.suggestion(what), detail=str(err)
                ) from err
            raise

    # -- one iteration -----------------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        """One training iteration: negatives, loss, update, transport. Returns ``{loss, lr, n_grad, ...}``.

        Raises DivergenceError (with the iteration and a suggestion) on NaN/Inf losses, energies,
        gradients or particles, particles beyond ``config.bound`` or ``|loss| > config.loss_bound``.
        """
        cfg = self.config
        it = self.iteration
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        lr = learning_rate(cfg, it)
        batch = self._data_batch()
        chains = "pd" if cfg.strategy.startswith("pd") else "replay" if cfg.strategy == "replay" else "chains"
        with self._guard("negative samples"):
            state, neg, weights, n_grad = self.strategy.negatives(self, self._state)
        check_finite_state("negative samples", neg, it, bound=cfg.bound, suggestion=self.suggestion(chains))
        params_old: dict[str, Tensor] = {}
        if self.strategy.update is not None:
            state, loss = self.strategy.update(self, state, batch, neg, weights)
            loss_value = float(loss)
            self._check_loss(loss_value, lr)
        else:
            loss_value = self._adam_update(batch, neg, weights, lr)
            params_old = self._params_before_update
        if self.strategy.transport is not None:
            with self._guard("particle transport"):
                state, n_move = self.strategy.transport(self, state, params_old)
            n_grad += n_move
        if state["position"] is not neg:  # PCD and replay: the same tensor, checked above
            check_finite_state(
                "particle positions",
                state["position"],
                it,
                bound=cfg.bound,
                suggestion=self.suggestion(chains),
            )
        self._state = state
        self.iteration = it + 1
        h = self.history
        prev_wall = h.wall_time[-1] if h.wall_time else h.init_wall_time
        prev_cpu = h.cpu_time[-1] if h.cpu_time else h.init_cpu_time
        prev_grad = h.n_grad[-1] if h.n_grad else h.init_n_grad
        h.iteration.append(self.iteration)
        h.loss.append(loss_value)
        h.lr.append(lr)
        h.wall_time.append(prev_wall + time.perf_counter() - t_wall)
        h.cpu_time.append(prev_cpu + time.process_time() - t_cpu)
        h.n_grad.append(prev_grad + n_grad)
        if cfg.eval_every and self.iteration % cfg.eval_every == 0:
            self.evaluate()
        if cfg.snapshot_every and self.iteration % cfg.snapshot_every == 0:
            h.snapshots.append((self.iteration, self.particles.cpu().clone()))
        return {"loss": loss_value, "lr": lr, "n_grad": float(n_grad), "iteration": float(self.iteration)}

    def _check_loss(self, loss: float, lr: float) -> None:
        if not math.isfinite(loss) or abs(loss) > self.config.loss_bound:
            raise DivergenceError(
                "loss",
                self.iteration,
                self.suggestion("lr"),
                detail=f"loss {loss:.4g}, bound {self.config.loss_bound:g}, lr {lr:g}",
            )

    def _adam_update(self, batch: Tensor, neg: Tensor, weights: Tensor | None, lr: float) -> float:
        cfg = self.config
        b = batch.shape[0]
        energies = self.model(torch.cat([batch, neg.detach()]))
        check_finite_state("energies", energies.detach(), self.iteration, suggestion=self.suggestion("lr"))
        e_data, e_neg = energies[:b], energies[b:]
        loss = contrastive_loss(e_data, e_neg, weights)
        self._check_loss(float(loss.detach()), lr)
        objective = loss
        if cfg.energy_reg:
            objective = loss + cfg.energy_reg * (e_data.square().mean() + e_neg.square().mean())
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else None  # one fused norm over all tensors
        if norm is not None and not bool(torch.isfinite(norm)):
            raise DivergenceError(
                "parameter gradients", self.iteration, self.suggestion("lr"), detail="non-finite norm"
            )
        if cfg.grad_clip is not None and norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self._params_before_update = _parameters(self.model) if self.strategy.transport is not None else {}
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if self.ema_model is not None:
            # Polyak average with a short warm-up, so early evaluations are not stuck at the initial model
            decay = min(cfg.ema, (1.0 + self.iteration) / (10.0 + self.iteration))
            with torch.no_grad():
                for p_ema, p in zip(self.ema_model.parameters(), self.model.parameters()):
                    p_ema.lerp_(p.detach(), 1.0 - decay)
        return float(loss.detach())

    # -- evaluation --------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Evaluate now and append to ``history.evals`` (time excluded from the loop's times).

        Held-out exact log-likelihood of ``energy_fn`` on the grid (d = 2), MMD² between (the first
        MMD_POINTS, unweighted) particles and held-out data (Gaussian kernels of widths (0.1, 0.3, 1, 3)
        · sqrt(d/2)), the particles' mode-weight spread (and the model's, from the grid) where
        ``datasets.MODE_CENTRES`` has centres, ESS of weighted particles.
        """
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        cfg = self.config
        x = self.particles
        record: dict[str, Any] = {
            "iteration": self.iteration,
            "wall_time": self.history.wall_time[-1]
            if self.history.wall_time
            else self.history.init_wall_time,
            "cpu_time": self.history.cpu_time[-1] if self.history.cpu_time else self.history.init_cpu_time,
            "log_likelihood": None,
            "mmd2": None,
            "mode_weight_spread": None,
            "model_mode_weight_spread": None,
            "ess": None,
            "n_resample": self._n_resample,
            "entropy_bound": self.history.entropy_bound,
        }
        with torch.no_grad():
            if self.grid is not None:
                # one batched no-grad pass over grid and held-out points: log Z, log-likelihood, mode weights
                m = self.grid.points.shape[0]
                points = torch.cat([self.grid.points.to(self.device), self._eval])
                # chunks that keep the activations in cache: twice as fast on a CPU as 20 000-point batches
                e = torch.cat([self.energy_fn(c) for c in points.split(EVAL_CHUNK)]).double().cpu()
                check_finite_state("evaluation energies", e, self.iteration, suggestion=self.suggestion("lr"))
                energy, e_eval = e[:m].reshape(self.grid.size, self.grid.size), e[m:]
                log_z = self.grid.log_z(energy)
                record["log_likelihood"] = float(-e_eval.mean()) - log_z
                centres = datasets.MODE_CENTRES.get(cfg.dataset) if self._toy else None
                if centres is not None:
                    record["mode_weight_spread"] = metrics.mode_weight_spread(x.cpu(), centres)
                    probs = self.grid.cell_probabilities(energy).reshape(-1)
                    if self._nearest is None:  # each grid cell's nearest mode centre, once per run
                        self._nearest = torch.cdist(self.grid.points.double(), centres.double()).argmin(1)
                    weights = torch.zeros(len(centres), dtype=torch.float64).index_add_(
                        0, self._nearest, probs
                    )
                    record["model_mode_weight_spread"] = float(weights.max() - weights.min())
            # MMD² on MMD_POINTS points a side: unbiased at any size, and the kernel sums cost O(n²)
            n = min(x.shape[0], self._eval.shape[0], MMD_POINTS)
            scale = math.sqrt(self.dim / 2.0)
            record["mmd2"] = metrics.mmd2(
                x[:n].cpu(), self._eval[:n].cpu(), bandwidths=tuple(b * scale for b in (0.1, 0.3, 1.0, 3.0))
            )
            if self.log_weights is not None:
                record["ess"] = flows.ess(self.log_weights)
        self.history.evals.append(record)
        self.history.eval_wall_time += time.perf_counter() - t_wall
        self.history.eval_cpu_time += time.process_time() - t_cpu
        return record

    # -- the loop ----------------------------------------------------------------------------------

    def loop_time(self) -> float:
        """Cumulative wall-clock seconds of the loop (initial particles included, evaluations excluded)."""
        h = self.history
        return h.wall_time[-1] if h.wall_time else h.init_wall_time

    def run(
        self,
        n_iters: int | None = None,
        progress: bool = True,
        callback: Callable[[Trainer, dict[str, float]], Any] | None = None,
    ) -> TrainHistory:
        """Run ``n_iters`` more iterations (default: up to ``config.n_iters`` in total).

        Stops early once the loop time reaches ``config.time_budget`` seconds, or when ``callback(trainer,
        info)`` returns False. Writes a checkpoint to ``config.checkpoint_path`` every
        ``config.checkpoint_every`` iterations and at the end.
        """
        cfg = self.config
        if callback is not None and not callable(callback):
            raise InvalidArgumentError(
                f"callback must be callable (trainer, info) -> bool | None, got {type(callback).__name__}"
            )
        if n_iters is not None:
            check_positive("n_iters", n_iters, integer=True, allow_zero=True)
            target = self.iteration + n_iters
        else:
            target = cfg.n_iters
        bar = tqdm(
            total=max(0, target - self.iteration), disable=not progress, desc=cfg.strategy, leave=False
        )
        saved_at = None
        try:
            while self.iteration < target:
                if cfg.time_budget is not None and self.loop_time() >= cfg.time_budget:
                    break
                info = self.step()
                bar.update(1)
                if progress and self.history.evals and self.history.evals[-1]["iteration"] == self.iteration:
                    ll = self.history.evals[-1]["log_likelihood"]
                    bar.set_postfix(loss=f"{info['loss']:.3f}", ll="-" if ll is None else f"{ll:.3f}")
                if (
                    cfg.checkpoint_path
                    and cfg.checkpoint_every
                    and self.iteration % cfg.checkpoint_every == 0
                ):
                    self.save(cfg.checkpoint_path)
                    saved_at = self.iteration
                if callback is not None and callback(self, info) is False:
                    break
        finally:
            bar.close()
        if cfg.checkpoint_path and saved_at != self.iteration:
            self.save(cfg.checkpoint_path)
        return self.history

    # -- checkpoints -------------------------------------------------------------------------------

    def _state_payload(self) -> dict[str, Any]:
        out = {}
        for key, value in self._state.items():
            out[key] = (
                value.state_dict() if isinstance(value, samplers.ReplayBuffer) else value.detach().cpu()
            )
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit, as a weights-only-safe payload."""
        return {
            "kind": CHECKPOINT_KIND,
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": None
            if self.ema_model is None
            else {k: v.cpu() for k, v in self.ema_model.state_dict().items()},
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "strategy_state": self._state_payload(),
            "generator": samplers.generator_state(self.generator),
            "data_generator": samplers.generator_state(self.data_generator),
            "n_resample": self._n_resample,
            "history": self.history.state(),
            "data": self._data_info(),
        }

    def _data_info(self) -> dict[str, Any]:
        """What identifies the training data: the toy dataset's name, or the size and sum of custom data."""
        info: dict[str, Any] = {"dataset": self.config.dataset, "toy": self._toy, "dim": self.dim}
        if self._train is not None:
            info["n_train"] = int(self._train.shape[0])
            info["sum"] = float(self._train.double().sum())
        return info

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (temp file + fsync + rename); see :mod:`pdviz.checkpoint`."""
        return ckpt.save_checkpoint(path, self.state_dict())

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        fresh = self.state_dict()
        shapes = {}
        for key in ("model", "ema", "strategy_state"):
            shapes.update(ckpt.tensor_shapes({key: fresh[key]}))
        return shapes

    def _load_payload(self, payload: dict[str, Any], path: str | Path) -> None:
        where = f"checkpoint {str(path)!r}"
        if payload.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{where} is not a Trainer checkpoint (kind {payload.get('kind')!r})")
        if payload.get("data") != self._data_info():
            raise CheckpointError(
                f"{where} was trained on other data ({payload.get('data')}, here {self._data_info()}); "
                "pass the same data to load it"
            )
        try:
            self.model.load_state_dict(payload["model"])
            if self.ema_model is not None:
                self.ema_model.load_state_dict(payload["ema"])
            if self.optimizer is not None:
                self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{where}: model or optimiser state does not fit: {err}") from None
        saved = payload["strategy_state"]
        if set(saved) != set(self._state):
            raise CheckpointError(
                f"{where}: strategy state has keys {sorted(saved)}, expected {sorted(self._state)}"
            )
        state = {}
        for key, value in self._state.items():
            if isinstance(value, samplers.ReplayBuffer):
                value.load_state_dict(saved[key])
                state[key] = value
            else:
                state[key] = saved[key].to(self.device)
        self._state = state
        samplers.set_generator_state(self.generator, payload["generator"])
        samplers.set_generator_state(self.data_generator, payload["data_generator"])
        self._n_resample = int(payload.get("n_resample", 0))
        self.iteration = int(payload["iteration"])
        self.history = TrainHistory.from_state(payload["history"])

    _REQUIRED = (
        "kind",
        "config",
        "iteration",
        "model",
        "optimizer",
        "strategy_state",
        "generator",
        "history",
    )

    def resume(self, path: str | Path) -> Trainer:
        """Load a checkpoint into this trainer; its configuration must match (RUN_KEYS may differ)."""
        shapes = self._expected_shapes()
        payload = ckpt.load_checkpoint(
            path,
            required_keys=self._REQUIRED,
            expected_config=self.config.to_dict(),
            ignore_config_keys=RUN_KEYS,
            expected_shapes=shapes,
        )
        self._load_payload(payload, path)
        return self

    @classmethod
    def load(
        cls, path: str | Path, data: Tensor | None = None, model: nn.Module | None = None, **overrides: Any
    ) -> Trainer:
        """A trainer restored from a checkpoint, ready to continue bit for bit.

        ``overrides`` may change RUN_KEYS only (n_iters, time_budget, checkpoint_path, ...). ``data`` and
        ``model`` must be given again if the run used them.
        """
        bad = sorted(set(overrides) - set(RUN_KEYS))
        if bad:
            raise InvalidArgumentError(
                f"cannot change {', '.join(bad)} when loading a checkpoint; only {', '.join(RUN_KEYS)} may differ"
            )
        payload = ckpt.load_checkpoint(path, required_keys=cls._REQUIRED)
        try:
            config = TrainConfig.from_dict({**payload["config"], **overrides})
        except (InvalidArgumentError, TypeError) as err:
            raise CheckpointError(f"checkpoint {str(path)!r} holds an invalid configuration: {err}") from None
        self = cls.__new__(cls)
        self._setup(config, data, model, initialise=False)
        have = ckpt.tensor_shapes({k: payload[k] for k in ("model", "ema", "strategy_state")})
        for key, shape in self._expected_shapes().items():
            if have.get(key) != shape:
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: tensor {key!r} has shape "
                    f"{None if key not in have else list(have[key])}, expected {list(shape)}"
                )
        self._load_payload(payload, path)
        return self


def train(config: TrainConfig | None = None, *, progress: bool = True, **overrides: Any) -> Trainer:
    """Build a config (``make_config(**overrides)`` or ``config`` with overrides), run it, return the Trainer."""
    if config is None:
        config = make_config(**overrides)
    elif overrides:
        _check_keys(overrides)
        config = dataclasses.replace(config, **overrides)
    trainer = Trainer(config)
    trainer.run(progress=progress)
    return trainer


# --- command line ---------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``pdviz train`` / ``python -m pdviz.training``."""
    p = argparse.ArgumentParser(
        prog="pdviz train", description="Train an EBM with a negative-sample strategy."
    )
    p.add_argument("--preset", default="fast", help=f"one of {', '.join(PRESETS)} (default fast)")
    p.add_argument("--strategy", default=None, help=f"one of {', '.join(STRATEGIES)}")
    p.add_argument("--dataset", default=None, help="a 2-D toy dataset or an image dataset name")
    p.add_argument("--iters", type=int, default=None, help="total iterations (config n_iters)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument(
        "--time-budget", type=float, default=None, help="stop after this many seconds of loop time"
    )
    p.add_argument("--checkpoint", default=None, help="checkpoint file to write (atomic)")
    p.add_argument(
        "--checkpoint-every", type=int, default=None, help="write the checkpoint every N iterations"
    )
    p.add_argument("--resume", default=None, help="continue from this checkpoint")
    p.add_argument("--out", default=None, help="write the history as JSON here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config field")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``pdviz train``: train (or resume), write checkpoints and the history JSON. Returns 0 on success."""
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise InvalidArgumentError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value.strip())
    for key, value in (
        ("strategy", args.strategy),
        ("dataset", args.dataset),
        ("n_iters", args.iters),
        ("seed", args.seed),
    ):
        if value is not None:
            overrides[key] = value
    run_keys = {"time_budget": args.time_budget, "checkpoint_every": args.checkpoint_every}
    run_keys = {k: v for k, v in run_keys.items() if v is not None}
    checkpoint = args.checkpoint or args.resume
    if checkpoint is not None:
        run_keys["checkpoint_path"] = str(checkpoint)
    if args.resume:
        if "n_iters" in overrides:
            run_keys["n_iters"] = overrides.pop("n_iters")
        changed = sorted(set(overrides) - set(RUN_KEYS))
        if changed:
            raise InvalidArgumentError(
                f"--resume continues a run as it was; cannot change {', '.join(changed)}"
            )
        trainer = Trainer.load(args.resume, **{**overrides, **run_keys})
    else:
        trainer = Trainer(make_config(args.preset, **overrides, **run_keys))
    history = trainer.run(progress=not args.quiet)
    if args.out:
        Path(args.out).write_text(json.dumps(history.to_dict()))
    ll = history.last_eval("log_likelihood")
    loss = history.loss[-1] if history.loss else float("nan")
    print(
        f"{trainer.config.strategy}: iteration {trainer.iteration}, loss {loss:.4f}, "
        f"log-likelihood {'-' if ll is None else f'{ll:.4f}'}, loop {trainer.loop_time():.1f} s"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PdvizError as err:
        print(f"pdviz train: error: {err}", file=sys.stderr)
        sys.exit(2)
