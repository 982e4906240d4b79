"""Training strategies (docs/method.md §1-§3, §7): plain functions of the particle state and a read-only context.

==============  ==================================================================================
short-run       K ULA steps from fresh base samples
pcd             persistent chains, K ULA steps on them per iteration
replay          a replay buffer: draw, re-initialise a share from the base, K steps, push back
pd-alpha        persistent particles moved by ``-∇_x (E_new - E_old)`` after the update, then corrections
pd-beta         the same with ``-∇_x ⟨∇_θ E(x), θ_new - θ_old⟩`` (the exact linearisation)
pd-gamma        an energy on a grid changed by the NTK functional gradient; particles follow ``-∇ΔE``
pd-exact        the exact grid field ``∇φ`` of the weighted Poisson equation, in full (no ``pd_step``; 2-D only)
pd-weighted     PD-alpha moves with exact change-of-variables log-weights, self-normalised in the loss,
                systematic resampling when ESS < resample_threshold · n
jarzynski       persistent walkers, not moved with the model but reweighted by the work, then weighted ULA
nce             noise-contrastive estimation against the base, with a learned log Z (no model samples)
dsm             denoising score matching (no model samples)
ed              energy discrepancy (no samples at all)
drl             diffusion recovery likelihood: a conditional EBM over a noise ladder, short conditional chains
==============  ==================================================================================

A strategy is one :class:`Strategy` entry of :data:`STRATEGIES`: what it needs and what it does, declared,
so the trainer never reads a strategy's name. Every PD variant goes through the one composition
:func:`pdviz.flows.flow_step` (move -> weights -> corrections) with its move from ``flows.FLOWS``. A strategy
reads the trainer through a :class:`Context` and returns new values (named tuples); it never writes the
trainer. ``aux`` holds what a strategy keeps beside the particles (the replay buffer, pd-gamma's last energy
change, NCE's log Z), as a dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from pdviz import flows, metrics, models, objectives, samplers
from pdviz.energies import value_and_grad
from pdviz.grid import Grid

__all__ = [
    "Context",
    "Particles",
    "Negatives",
    "Strategy",
    "STRATEGIES",
    "contrastive_loss",
    "fresh_parameters",
    "gamma_energy_change",
    "kernel_net",
]


class Context(NamedTuple):
    """What a strategy may read of the trainer: the model ``E_θ``, the config, the generator, the base
    sampler ``n -> [n, d]`` and its log-density ``[n, d] -> [n]``, the field grid (2-D)."""

    model: nn.Module
    config: Any
    generator: torch.Generator
    sample_base: Callable[[int], Tensor]
    log_base: Callable[[Tensor], Tensor] | None = None
    grid: Grid | None = None


class Particles(NamedTuple):
    """What ``init`` and ``transport`` return: the particles (a :class:`~pdviz.samplers.State`), what the
    strategy keeps beside them, and the gradient evaluations spent."""

    state: samplers.State
    aux: dict
    n_grad: float


class Negatives(NamedTuple):
    """Before the update: the new state and aux, the negatives [n, d] the loss contrasts with the data
    (None for a loss with none), their self-normalised weights [n] (or None), the evaluations spent."""

    state: samplers.State
    aux: dict
    x: Tensor | None
    weights: Tensor | None
    n_grad: float


class Strategy(NamedTuple):
    """One way to train, declared whole; the trainer reads these fields and never a strategy's name.

    init(ctx) -> Particles; negatives(state, aux, ctx) -> Negatives, before the update;
    transport(state, aux, params_old, ctx) -> Particles, after the update (PD, Jarzynski);
    loss(energy, batch, negatives, aux, ctx) -> scalar: the objective Adam minimises (default
    :func:`contrastive_loss` of the weighted negatives, plus ``energy_reg``);
    update(state, aux, batch, negatives, ctx) -> (aux, loss): replaces the optimiser (pd-gamma);
    model(batch, base, ctx) -> nn.Module: a model of its own (pd-gamma's grid energy, drl's conditional EBM).
    needs_grid: 2-D data only (a field grid); max_dim: the largest d; one_process: why it refuses torchrun
    (None: it shards); weighted: its particles carry log-weights; samples: its negatives are samples of the
    current model (the lag meter and the particle metrics read them); knobs: the config fields a divergence
    suggests; cost: its gradient evaluations per iteration, a formula of n_steps, n_corrections and d (a test
    checks it); check(config) -> message or None: its own config rule; settings: the config values it uses
    unless the preset or the caller say otherwise (:func:`pdviz.config.make_config`).
    """

    init: Callable
    negatives: Callable
    transport: Callable | None = None
    loss: Callable | None = None
    update: Callable | None = None
    model: Callable | None = None
    needs_grid: bool = False
    max_dim: int | None = None
    one_process: str | None = None
    weighted: bool = False
    samples: bool = True
    knobs: tuple[str, ...] = ("step_size",)
    check: Callable | None = None
    settings: dict | None = None
    cost: str = ""


def contrastive_loss(e_data: Tensor, e_neg: Tensor, weights: Tensor | None = None) -> Tensor:
    """``mean E(data) - Σ_j w_j E(neg_j)`` (w = 1/n by default), a scalar: docs/method.md §1's loss.

    Its θ-gradient ``E_data[∇θ E] - E_neg[∇θ E]`` is minus the log-likelihood gradient when the negatives
    follow the model. ``e_data`` [b], ``e_neg`` [n], ``weights`` [n] (self-normalised) or None.
    """
    return e_data.mean() - (e_neg.mean() if weights is None else (weights * e_neg).sum())


def _chain(
    x: Tensor, ctx: Context, n_steps: int, step_size: float, noise_scale: float | None, anneal: str = "none"
) -> tuple[samplers.State, int]:
    """K ULA steps on the current model from ``x`` [n, d]: K gradient evaluations. The K-th step is a bare
    move (the negatives are used as they are), so the returned State caches nothing (energy, grad None)."""
    state = samplers.init(x.detach(), ctx.model)
    if n_steps == 0:
        return state, 1
    sigma, steps = noise_scale, [step_size] * n_steps
    if anneal != "none":
        sigma = math.sqrt(step_size) if noise_scale is None else noise_scale
        steps = samplers.anneal_schedule(step_size, sigma, n_steps, anneal)
    kw = {"noise_scale": sigma, "generator": ctx.generator}
    state = samplers.ula_steps(state, ctx.model, n_steps - 1, step_size=steps[:-1], **kw)
    return _bare_move(state, step_size=steps[-1], **kw), n_steps


def _bare_move(state: samplers.State, **kw: Any) -> samplers.State:
    """The last ULA move of a chain, unevaluated: a State at the new positions with no cache."""
    return samplers.State(samplers.ula_move(state, **kw).detach(), None, None, state.log_weight)


def _persistent_init(ctx: Context) -> Particles:
    """Base samples, then ``n_init_steps`` ULA steps on the initial model (energy and gradient cached)."""
    cfg = ctx.config
    state = samplers.init(ctx.sample_base(cfg.n_particles), ctx.model)
    kw = {"step_size": cfg.step_size, "noise_scale": cfg.noise_scale, "generator": ctx.generator}
    state = samplers.ula_steps(state, ctx.model, cfg.n_init_steps, **kw)
    return Particles(state, {}, cfg.n_init_steps + 1)


def _base_init(ctx: Context) -> Particles:
    """Base draws (short-run's first negatives; for the methods with no particles, a State to checkpoint)."""
    return Particles(samplers.init(ctx.sample_base(ctx.config.n_particles), ctx.model), {}, 1)


def _short_run_negatives(state, aux, ctx: Context) -> Negatives:
    cfg = ctx.config
    state, n = _chain(ctx.sample_base(cfg.n_particles), ctx, cfg.n_steps, cfg.step_size, cfg.noise_scale)
    return Negatives(state, aux, state.position, None, n)


def _pcd_negatives(state, aux, ctx: Context) -> Negatives:
    cfg = ctx.config
    state, n = _chain(state.position, ctx, cfg.n_steps, cfg.step_size, cfg.noise_scale)
    return Negatives(state, aux, state.position, None, n)


def _replay_init(ctx: Context) -> Particles:
    cfg = ctx.config
    base = lambda n, gen: ctx.sample_base(n)  # noqa: E731
    buffer = samplers.ReplayBuffer(
        cfg.buffer_size, base, reinit_frac=cfg.reinit_frac, generator=ctx.generator
    )
    state = samplers.init(buffer.positions[: cfg.n_particles].clone(), ctx.model)
    return Particles(state, {"buffer": buffer}, 1)


def _replay_negatives(state, aux, ctx: Context) -> Negatives:
    cfg = ctx.config
    x, index = aux["buffer"].sample(cfg.n_particles)
    state, n = _chain(x, ctx, cfg.n_steps, cfg.replay_step_size, cfg.replay_noise_scale, cfg.replay_anneal)
    aux["buffer"].push(state.position, index)
    return Negatives(state, aux, state.position, None, n)


def _particles(state, aux, ctx: Context) -> Negatives:
    """The persistent particles as they stand (PD: moved after the last update), unweighted."""
    return Negatives(state, aux, state.position, None, 0)


def _weighted_particles(state, aux, ctx: Context) -> Negatives:
    """The persistent particles with their self-normalised weights ``softmax(log w)``."""
    return _particles(state, aux, ctx)._replace(weights=torch.softmax(state.log_weight, 0))


def _resample_if_degenerate(state: samplers.State, ctx: Context) -> samplers.State:
    """Systematic resampling when the weights' ESS falls below ``resample_threshold · n``."""
    if metrics.ess(state.log_weight) < ctx.config.resample_threshold * state.position.shape[0]:
        return flows.systematic_resample(state, ctx.generator)
    return state


def _reinit(state: samplers.State, old: Callable, ctx: Context) -> tuple[samplers.State, float]:
    """Replace ``round(reinit_frac · n)`` random particles by ``reinit_steps`` ULA steps of the previous
    model from base draws (docs/method.md §6, images). Returns the state and the cost in full-batch evaluations."""
    cfg, n = ctx.config, state.position.shape[0]
    k = int(round(cfg.reinit_frac * n))
    if cfg.reinit_steps == 0 or k == 0:
        return state, 0.0
    gen = ctx.generator
    index = torch.randperm(n, generator=gen, device=gen.device)[:k].to(state.position.device)
    kw = {"step_size": cfg.reinit_step_size, "noise_scale": cfg.reinit_noise, "generator": gen}
    chain = samplers.ula_steps(samplers.init(ctx.sample_base(k), old), old, cfg.reinit_steps, **kw)
    fields = [None if field is None else field.clone() for field in state]
    for field, new in zip(fields, (*chain[:3], torch.zeros(k))):
        if field is not None:
            field[index] = new.to(field)  # re-initialised particles start unweighted
    return samplers.State(*fields), (cfg.reinit_steps + 1) * k / n


def _pd(move: str, weighted: bool = False) -> Callable:
    """The transport of a PD variant: re-initialise a share (if configured), then ``flows.flow_step``; the
    weighted variant resamples its particles when their ESS is low."""

    def transport(state, aux, params_old, ctx: Context) -> Particles:
        cfg, model = ctx.config, ctx.model
        params_new = {k: v.detach() for k, v in model.named_parameters()}
        delta = aux.get("delta")
        if move == "gamma":

            def old(x):
                return model(x) - ctx.grid.interpolate(delta, x)
        else:

            def old(x):
                return functional_call(model, params_old, (x,))

        state, extra = _reinit(state, old, ctx)
        params = {"params_old": params_old, "params_new": params_new}
        change = flows.Change(old, model, model=model, grid=ctx.grid, delta=delta, **params)
        # beta, gamma and exact never read the cache: their corrections end with a bare move, as a chain's
        # do, so K corrections cost K evaluations beside the move (the naive loop's count, pinned by tests)
        bare = move in ("beta", "gamma", "exact") and cfg.correction == "ula" and cfg.n_corrections > 0
        kw = {"step_size": cfg.step_size, "noise_scale": cfg.noise_scale, "generator": ctx.generator}
        step = 1.0 if move == "exact" else cfg.pd_step  # the exact flow carries p_old to p_new in full
        state, info = flows.flow_step(state, move, change, step=step, n_corrections=cfg.n_corrections - bare,
                                      correction=cfg.correction, weighted=weighted, bound=cfg.bound, **kw)  # fmt: skip
        state = _bare_move(state, **kw) if bare else state
        if weighted:
            state = _resample_if_degenerate(state, ctx)
        return Particles(state, aux, int(info.n_grad) + math.ceil(extra))

    return transport


def _jarzynski_transport(state, aux, params_old, ctx: Context) -> Particles:
    """Carbone et al.'s walkers after θ_k -> θ_k+1: each log-weight gains the work ``E_θk(x) - E_θk+1(x)``,
    then ``n_corrections`` ULA steps on ``E_θk+1`` that keep the weights exact (``ula_steps(weighted=True)``),
    then resampling at low ESS. PD-weighted with no move: 1 + n_corrections evaluations."""
    cfg = ctx.config
    energy, grad = value_and_grad(ctx.model, state.position)
    state = samplers.State(state.position, energy, grad, state.log_weight + state.energy - energy)
    kw = {"step_size": cfg.step_size, "noise_scale": cfg.noise_scale, "generator": ctx.generator}
    state = samplers.ula_steps(state, ctx.model, cfg.n_corrections, weighted=True, **kw)
    return Particles(_resample_if_degenerate(state, ctx), aux, 1 + cfg.n_corrections)


def fresh_parameters(net: nn.Module, generator: torch.Generator) -> dict[str, Tensor]:
    """PyTorch's default initialisation of every ``nn.Linear`` drawn from ``generator``:
    weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so a fresh network needs no global RNG."""
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
    weights: Tensor | None = None,
) -> Tensor:
    """The NTK functional-gradient change ``ΔE(y) = -lr ⟨∇θ E(y), g⟩`` at ``points`` [m, d] -> [m].

    ``g = mean_i ∇θ E(data_i) - Σ_j w_j ∇θ E(neg_j)`` is the loss gradient at ``params``, so
    ``ΔE(y) = -lr Σ_i K(y, data_i)/b + lr Σ_j w_j K(y, neg_j)`` with ``K(x, y) = ⟨∇θ E(x), ∇θ E(y)⟩``:
    one reverse pass (g) and one JVP at the points, no kernel matrix. data [b, d], negatives [n, d].
    """

    def energy(p, x):
        return functional_call(net, p, (x,)).reshape(x.shape[0])

    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():
        loss = contrastive_loss(energy(leaves, data), energy(leaves, negatives), weights)
        grads = torch.autograd.grad(loss, list(leaves.values()))
    tangent = {k: -lr * g.detach() for k, g in zip(leaves, grads)}
    _, change = jvp(lambda p: energy(p, points), ({k: v.detach() for k, v in params.items()},), (tangent,))
    return change.detach()


def kernel_net(config: Any) -> nn.Module:
    """pd-gamma's kernel network ``2 -> gamma_hidden -> … -> 1``, the architecture only (on the meta device):
    each update draws its parameters fresh (:func:`fresh_parameters`) and calls it with ``functional_call``."""
    with torch.device("meta"):
        return models.mlp(2, config.gamma_hidden, config.depth, config.gamma_activation)


def _gamma_init(ctx: Context) -> Particles:
    state, aux, n = _persistent_init(ctx)
    delta = torch.zeros(ctx.grid.size, ctx.grid.size, device=state.position.device)  # no change yet
    return Particles(state, {"delta": delta}, n)


def _gamma_model(batch: Tensor, base: tuple[Tensor, Tensor], ctx: Context) -> nn.Module:
    return models.GridEnergy(base[0], base[1], ctx.grid)


def _gamma_update(state, aux, batch, negatives: Negatives, ctx: Context) -> tuple[dict, Tensor]:
    """Add the NTK step of a freshly initialised network to the grid energy (its ``values``)."""
    neg, weights = negatives.x, negatives.weights
    with torch.no_grad():
        loss = contrastive_loss(ctx.model(batch), ctx.model(neg), weights)
    cfg, net = ctx.config, kernel_net(ctx.config)
    params = fresh_parameters(net, ctx.generator)
    change = gamma_energy_change(net, params, batch, neg, ctx.grid.points, cfg.gamma_lr, weights)
    change = change.reshape(ctx.grid.size, ctx.grid.size)
    with torch.no_grad():
        ctx.model.values.add_(change)
    return {**aux, "delta": change}, loss


# --- the methods that need no samples of the model (docs/method.md §7) -----------------------------------


def _no_negatives(cost: Callable[[Any], int]) -> Callable:
    """No negatives before the update (the loss makes what it contrasts); ``cost(config)``: the gradient
    evaluations its loss spends, counted here (DSM's ∇E at the noisy data, DRL's conditional chains)."""
    return lambda state, aux, ctx: Negatives(state, aux, None, None, cost(ctx.config))


def _nce_init(ctx: Context) -> Particles:
    """NCE also learns ``log Z`` (aux ``log_z``, a trainable scalar the optimiser steps with θ)."""
    state, _, n = _base_init(ctx)
    return Particles(state, {"log_z": torch.zeros((), device=state.position.device, requires_grad=True)}, n)


def _nce_negatives(state, aux, ctx: Context) -> Negatives:
    """``n_particles`` fresh draws of the noise q, the trainer's base (ν = n_particles / batch_size)."""
    return Negatives(state, aux, ctx.sample_base(ctx.config.n_particles), None, 0)


def _nce_loss(energy, batch, negatives: Negatives, aux, ctx: Context) -> Tensor:
    return objectives.nce_loss(energy, batch, negatives.x, ctx.log_base, aux["log_z"])


def _dsm_loss(energy, batch, negatives, aux, ctx: Context) -> Tensor:
    return objectives.dsm_loss(energy, batch, ctx.config.noise_levels, ctx.generator)


def _ed_loss(energy, batch, negatives, aux, ctx: Context) -> Tensor:
    cfg = ctx.config
    return objectives.ed_loss(energy, batch, cfg.noise_levels[0], cfg.n_perturb, cfg.ed_w, ctx.generator)


def _drl_model(batch: Tensor, base: tuple[Tensor, Tensor], ctx: Context) -> nn.Module:
    sizes = {k: getattr(ctx.config, k) for k in ("hidden", "depth", "activation", "seed")}
    return objectives.ConditionalEBM.from_data(batch.cpu(), **sizes)


def _drl_loss(energy, batch, negatives, aux, ctx: Context) -> Tensor:
    """Each data point at a random level of the ladder, its noisier copy ``ỹ``, K Langevin steps on the
    conditional from ``ỹ``: the contrastive loss of ``E(·, t)`` on data against those negatives."""
    cfg, model = ctx.config, ctx.model
    t, y, var = objectives.drl_pairs(batch, cfg.noise_levels, ctx.generator)
    neg = objectives.drl_chain(model, t, y, var, cfg.n_steps, cfg.step_size, ctx.generator)
    return contrastive_loss(energy(batch, t), energy(neg, t))


def _check_buffer(cfg: Any) -> str | None:
    if cfg.buffer_size < cfg.n_particles:
        return f"buffer_size must be >= n_particles ({cfg.n_particles}) for replay, got {cfg.buffer_size}"
    return None


def _check_drl(cfg: Any) -> str | None:
    if max(cfg.noise_levels) >= 1:
        return f"drl's noise_levels must be < 1 (y = sqrt(1 - σ²) x + σ ε), got {cfg.noise_levels!r}"
    if cfg.model != "mlp":
        return f"drl trains its own conditional MLP (objectives.ConditionalEBM): model must be 'mlp', got {cfg.model!r}"
    return None


# fmt: off
_PD_KNOBS = ("pd_step", "step_size")
_WEIGHTS = "self-normalises and resamples its weights over all particles"
_NO_SAMPLES = dict(samples=False, one_process="has no particles to shard", knobs=("lr",))
STRATEGIES: dict[str, Strategy] = {
    "short-run": Strategy(_base_init, _short_run_negatives, cost="n_steps"),
    "pcd": Strategy(_persistent_init, _pcd_negatives, cost="n_steps"),
    "replay": Strategy(_replay_init, _replay_negatives, check=_check_buffer, knobs=("replay_step_size",),
                       cost="n_steps"),
    "pd-alpha": Strategy(_persistent_init, _particles, _pd("alpha"), knobs=_PD_KNOBS, cost="n_corrections + 2"),
    "pd-beta": Strategy(_persistent_init, _particles, _pd("beta"), knobs=_PD_KNOBS, cost="n_corrections + 2"),
    "pd-gamma": Strategy(_gamma_init, _particles, _pd("gamma"), update=_gamma_update, model=_gamma_model,
                         needs_grid=True, one_process="updates its grid energy without the optimiser",
                         knobs=_PD_KNOBS, cost="n_corrections"),
    "pd-exact": Strategy(_persistent_init, _particles, _pd("exact"), needs_grid=True, knobs=_PD_KNOBS,
                         cost="n_corrections"),
    "pd-weighted": Strategy(_persistent_init, _weighted_particles, _pd("alpha", weighted=True), weighted=True,
                            max_dim=flows.MAX_WEIGHTED_DIM, knobs=_PD_KNOBS, one_process=_WEIGHTS,
                            cost="n_corrections + d + 3"),
    "jarzynski": Strategy(_persistent_init, _weighted_particles, _jarzynski_transport, weighted=True,
                          one_process=_WEIGHTS, cost="n_corrections + 1"),
    # set as their papers set their 2-D experiments (docs/method.md §7): NCE with ν = 10 noise points per
    # data point; DSM with one σ = 0.1; ED with √t = 1, M = 4, w = 1 (Schröder et al.'s toy notebook); DRL
    # with four levels from σ = 0.2 and 20 MALA steps of ε = 0.2 σ̃² on each level's conditional (on 8gaussians,
    # 400 iterations: -3.26 against -3.37 for Gao et al.'s ladder from 0.05; with ULA both diverged)
    "nce": Strategy(_nce_init, _nce_negatives, loss=_nce_loss, **_NO_SAMPLES, settings={"n_particles": 10_000},
                    cost="0"),
    "dsm": Strategy(_base_init, _no_negatives(lambda c: 1), loss=_dsm_loss, **_NO_SAMPLES,
                    settings={"noise_levels": (0.1,)}, cost="1"),
    "ed": Strategy(_base_init, _no_negatives(lambda c: 0), loss=_ed_loss, **_NO_SAMPLES,
                   settings={"noise_levels": (1.0,), "n_perturb": 4, "ed_w": 1.0}, cost="0"),
    "drl": Strategy(_base_init, _no_negatives(lambda c: c.n_steps + 1), loss=_drl_loss, model=_drl_model,
                    check=_check_drl, **_NO_SAMPLES, settings={"noise_levels": (0.2, 0.4, 0.6, 0.8),
                                                                  "step_size": 0.2}, cost="n_steps + 1"),
}
# fmt: on
