"""Negative-sample strategies (docs/method.md §1-§3): plain functions of the particle state and a read-only context.

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
==============  ==================================================================================

Every PD variant goes through the one composition :func:`pdviz.flows.flow_step` (move -> weights ->
corrections) with its move from ``flows.FLOWS``. A strategy reads the trainer through a :class:`Context`
and returns new values; it never writes the trainer. ``aux`` holds what a strategy keeps beside the
particles (the replay buffer, pd-gamma's last energy change), as a dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from pdviz import flows, metrics, samplers
from pdviz.grid import Grid

__all__ = ["Context", "Strategy", "STRATEGIES", "contrastive_loss", "fresh_parameters", "gamma_energy_change"]


class Context(NamedTuple):
    """What a strategy may read of the trainer: the model ``E_θ``, the config, the generator, the base
    sampler ``n -> [n, d]``, the field grid (pd-exact, pd-gamma) and pd-gamma's kernel network."""

    model: nn.Module
    config: Any
    generator: torch.Generator
    sample_base: Callable[[int], Tensor]
    grid: Grid | None = None
    kernel_net: nn.Module | None = None


class Strategy(NamedTuple):
    """init(ctx) -> (State, aux, n_grad): the particles at iteration 0.
    negatives(state, aux, ctx) -> (State, aux, negatives [n, d], weights [n] | None, n_grad): before the update.
    transport(state, aux, params_old, ctx) -> (State, aux, n_grad), optional: after the update (PD).
    update(state, aux, batch, negatives, weights, ctx) -> (aux, loss), optional: replaces Adam (pd-gamma)."""

    init: Callable
    negatives: Callable
    transport: Callable | None = None
    update: Callable | None = None


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
    move: its gradient would be stale once the model changes, so the returned State's cache is the one of
    the K-1-th position (only its ``position`` is used afterwards)."""
    state = samplers.init(x.detach(), ctx.model)
    if n_steps == 0:
        return state, 1
    sigma = noise_scale
    steps: float | list[float] = step_size
    if anneal != "none":
        sigma = math.sqrt(step_size) if noise_scale is None else noise_scale
        steps = samplers.anneal_schedule(step_size, sigma, n_steps, anneal)
    head = steps[:-1] if isinstance(steps, list) else step_size
    last = steps[-1] if isinstance(steps, list) else step_size
    state = samplers.ula_steps(
        state, ctx.model, n_steps - 1, step_size=head, noise_scale=sigma, generator=ctx.generator
    )
    x_new = samplers.ula_move(state, step_size=last, noise_scale=sigma, generator=ctx.generator).detach()
    return state._replace(position=x_new), n_steps


def _persistent_init(ctx: Context) -> tuple[samplers.State, dict, int]:
    """Base samples, then ``n_init_steps`` ULA steps on the initial model (energy and gradient cached)."""
    cfg = ctx.config
    state = samplers.init(ctx.sample_base(cfg.n_particles), ctx.model)
    kw = {"step_size": cfg.step_size, "noise_scale": cfg.noise_scale, "generator": ctx.generator}
    state = samplers.ula_steps(state, ctx.model, cfg.n_init_steps, **kw)
    return state, {}, cfg.n_init_steps + 1


def _short_run_init(ctx):
    return samplers.init(ctx.sample_base(ctx.config.n_particles), ctx.model), {}, 1


def _short_run_negatives(state, aux, ctx):
    cfg = ctx.config
    state, n = _chain(ctx.sample_base(cfg.n_particles), ctx, cfg.n_steps, cfg.step_size, cfg.noise_scale)
    return state, aux, state.position, None, n


def _pcd_negatives(state, aux, ctx):
    cfg = ctx.config
    state, n = _chain(state.position, ctx, cfg.n_steps, cfg.step_size, cfg.noise_scale)
    return state, aux, state.position, None, n


def _replay_init(ctx):
    cfg = ctx.config
    base = lambda n, gen: ctx.sample_base(n)  # noqa: E731
    buffer = samplers.ReplayBuffer(
        cfg.buffer_size, base, reinit_frac=cfg.reinit_frac, generator=ctx.generator
    )
    return samplers.init(buffer.positions[: cfg.n_particles].clone(), ctx.model), {"buffer": buffer}, 1


def _replay_negatives(state, aux, ctx):
    cfg = ctx.config
    x, index = aux["buffer"].sample(cfg.n_particles)
    state, n = _chain(x, ctx, cfg.n_steps, cfg.replay_step_size, cfg.replay_noise_scale, cfg.replay_anneal)
    aux["buffer"].push(state.position, index)
    return state, aux, state.position, None, n


def _pd_negatives(state, aux, ctx):
    weights = torch.softmax(state.log_weight, 0) if ctx.config.strategy == "pd-weighted" else None
    return state, aux, state.position, weights, 0


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
    fields = [field.clone() for field in state]
    for field, new in zip(fields, (*chain[:3], torch.zeros(k))):
        field[index] = new.to(field)  # re-initialised particles start unweighted
    return samplers.State(*fields), (cfg.reinit_steps + 1) * k / n


def _pd(move: str) -> Callable:
    """The transport of a PD variant: re-initialise a share (if configured), then ``flows.flow_step``."""

    def transport(state, aux, params_old, ctx):
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
        change = flows.Change(
            old, model, model=model, params_old=params_old, params_new=params_new, grid=ctx.grid, delta=delta
        )
        weighted = cfg.strategy == "pd-weighted"
        # beta and gamma never read the cached ∇E_old: their chains end with a bare ULA move, as a chain's
        # do, so K corrections cost K evaluations beside the move (the naive loop's count, pinned by tests)
        bare = move in ("beta", "gamma") and cfg.correction == "ula" and cfg.n_corrections > 0
        kw = {"step_size": cfg.step_size, "noise_scale": cfg.noise_scale, "generator": ctx.generator}
        step = 1.0 if move == "exact" else cfg.pd_step  # the exact flow carries p_old to p_new in full
        state, info = flows.flow_step(state, move, change, step=step, n_corrections=cfg.n_corrections - bare,
                                      correction=cfg.correction, weighted=weighted, bound=cfg.bound, **kw)  # fmt: skip
        if bare:
            state = state._replace(position=samplers.ula_move(state, **kw).detach())
        if weighted and metrics.ess(state.log_weight) < cfg.resample_threshold * state.position.shape[0]:
            state = flows.systematic_resample(state, ctx.generator)
        return state, aux, int(info.n_grad) + math.ceil(extra)

    return transport


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


def _gamma_init(ctx):
    state, aux, n = _persistent_init(ctx)
    return state, {"delta": torch.zeros(ctx.grid.size, ctx.grid.size, device=state.position.device)}, n


def _gamma_update(state, aux, batch, negatives, weights, ctx):
    """Add the NTK step of a freshly initialised network to the grid energy (its ``values`` buffer)."""
    with torch.no_grad():
        loss = contrastive_loss(ctx.model(batch), ctx.model(negatives), weights)
    params = fresh_parameters(ctx.kernel_net, ctx.generator)
    change = gamma_energy_change(
        ctx.kernel_net, params, batch, negatives, ctx.grid.points, ctx.config.gamma_lr, weights
    ).reshape(ctx.grid.size, ctx.grid.size)
    with torch.no_grad():
        ctx.model.values.add_(change)
    return {**aux, "delta": change}, loss


STRATEGIES: dict[str, Strategy] = {
    "short-run": Strategy(_short_run_init, _short_run_negatives),
    "pcd": Strategy(_persistent_init, _pcd_negatives),
    "replay": Strategy(_replay_init, _replay_negatives),
    "pd-alpha": Strategy(_persistent_init, _pd_negatives, _pd("alpha")),
    "pd-beta": Strategy(_persistent_init, _pd_negatives, _pd("beta")),
    "pd-gamma": Strategy(_gamma_init, _pd_negatives, _pd("gamma"), _gamma_update),
    "pd-exact": Strategy(_persistent_init, _pd_negatives, _pd("exact")),
    "pd-weighted": Strategy(_persistent_init, _pd_negatives, _pd("alpha")),
}
