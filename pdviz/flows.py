"""Particle flows that follow a moving energy (docs/method.md §3).

The energy changes from ``E_old`` to ``E_new``; particles of ``p_old ∝ exp(-E_old)`` should become
particles of ``p_new ∝ exp(-E_new)``. A field ``v`` transports ``p_t`` exactly when (C) holds::

    ∇·v(x) - ⟨∇E_t(x), v(x)⟩ = ∂_t E_t(x) - E_{p_t}[∂_t E_t]                      (C)

The PD variants differ only in how ``ΔE`` is obtained; each is a *move* ``T(x)`` in the registry
``FLOWS`` with one signature ``move(x, change, step) -> T(x)`` [n, d], ``change`` a :class:`Change`:

=====  ======================================================================  =====================
name   ``T(x)``                                                                gradient evaluations
=====  ======================================================================  =====================
alpha  ``x - step ∇(E_new - E_old)(x)`` (finite difference)                    1 (∇E_old is cached)
beta   ``x - step ∇⟨∇_θ E_θ(x), θ_new - θ_old⟩`` (exact JVP, double backward)  2
gamma  ``x - step ∇ interp(ΔE)(x)``, ΔE given on a grid (the NTK step)         0
exact  along the grid-solved ``∇φ``, ``∇·(p ∇φ) = p (ΔE - E_p[ΔE])``, 2-D       0 (grid energies)
svgd   ``x + step φ*(x)``, the SVGD direction towards ``p_new``                 1
=====  ======================================================================  =====================

:func:`flow_step` is the one composition: move (``None`` = Langevin only) -> the exact change-of-variables
log-weights ``log w += log p_new(T x) - log p_old(x) + log|det ∇T(x)|`` (``weighted``) -> corrections
(ULA or MALA on ``E_new``). It costs the move's evaluations, one at ``T(x)`` (the returned cache), and one
per correction; a weighted move also spends ``d`` Hessian rows (alpha and beta; alpha one more, as it
cannot use the cache). A persistent ULA chain (no move, unweighted) moves first with the cached gradient,
so K steps cost K. :func:`track` runs the tracking experiment: exact samples of ``p_0`` carried along
``E(·, t)``, t = 0 → 1, into a :class:`~pdviz.samplers.History`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp
from torch.func import grad as func_grad
from tqdm.auto import tqdm

from pdviz import energies, metrics, samplers
from pdviz.energies import value_and_grad
from pdviz.errors import (
    DivergenceError,
    InvalidArgumentError,
    check_choice,
    check_memory,
    check_points,
    check_positive,
)
from pdviz.grid import Grid
from pdviz.samplers import History, Info, State

EnergyFn = Callable[[Tensor], Tensor]

DEFAULT_GRID_SIZE = 128  # the exact solve on 128x128 over [-5, 5]^2; 200x200 is ~3x slower per solve
MAX_WEIGHTED_DIM = 10  # weights need a d x d Jacobian per particle (d backward passes)
DENSITY_FLOOR = 1e-8  # p is floored at this fraction of its maximum in the Poisson solve
MAX_SUBSTEPS = 1000  # the exact move moves at most one grid cell per sub-step
MAX_HALVINGS = 6  # a weighted move that folds space is redone at half the step at most this often


class Change(NamedTuple):
    """What changed between two energies, as the moves need it.

    old, new: ``x [n, d] -> E(x) [n]``; model, params_old, params_new: ``E_θ`` and θ before/after (beta,
    evaluated with ``torch.func.functional_call``); grid: the exact solve's grid (default
    ``Grid(-5, 5, 128)``) or where ``delta`` lives; delta: ``ΔE`` on the grid [g, g] (gamma).
    """

    old: EnergyFn
    new: EnergyFn
    model: nn.Module | None = None
    params_old: dict | None = None
    params_new: dict | None = None
    grid: Grid | None = None
    delta: Tensor | None = None


def _grid(grid: Grid | None) -> Grid:
    return Grid(-5.0, 5.0, DEFAULT_GRID_SIZE) if grid is None else grid


def _jacobian(y: Tensor, x: Tensor) -> Tensor:
    """Per-particle Jacobian ``∂y_i/∂x_j`` [n, d, d] of ``y`` [n, d] built from ``x``; zero where y is
    constant in x. One backward pass per output dimension (particles do not interact)."""
    if not y.requires_grad:
        return torch.zeros(*x.shape, x.shape[1], dtype=x.dtype, device=x.device)
    rows = [
        torch.autograd.grad(y[:, i].sum(), x, retain_graph=True, allow_unused=True)[0]
        for i in range(y.shape[1])
    ]
    return torch.stack([torch.zeros_like(x) if r is None else r for r in rows], dim=1).detach()


# --- the fields -----------------------------------------------------------------------------------


def pd_field(energy_old: EnergyFn, energy_new: EnergyFn, x: Tensor) -> Tensor:
    """The PD-alpha displacement ``v(x) = -∇_x (E_new(x) - E_old(x))`` [n, d], detached.

    At ``q = p_old`` it is the Wasserstein-gradient direction of ``KL(q ‖ p_new)`` (docs/method.md §3).

    >>> pd_field(lambda x: (x**2).sum(1) / 2, lambda x: ((x - 0.1)**2).sum(1) / 2, torch.zeros(1, 2))
    tensor([[0.1000, 0.1000]])
    """
    check_points("x", x)
    return value_and_grad(energy_old, x)[1] - value_and_grad(energy_new, x)[1]


def pd_field_grid(
    energy_old: EnergyFn, energy_new: EnergyFn, grid: Grid | None = None
) -> tuple[Tensor, Tensor]:
    """``pd_field`` at the grid's cell centres as images ``(U, V)`` [size, size] float64, laid out [iy, ix]."""
    grid = _grid(grid)
    field = pd_field(energy_old, energy_new, grid.points).to(torch.float64).reshape(grid.size, grid.size, 2)
    return field[..., 0], field[..., 1]


def _beta_fwd_rev(model: nn.Module, params: dict, delta: dict, x: Tensor) -> Tensor:
    # forward over reverse: the jvp along Δθ of θ ↦ ∇_x Σ E_θ(x)
    def x_grad(p: dict) -> Tensor:
        return func_grad(lambda xx: functional_call(model, p, (xx,)).sum())(x)

    return jvp(x_grad, (params,), (delta,))[1]


def _beta_rev_fwd(model: nn.Module, params: dict, delta: dict, x: Tensor) -> Tensor:
    # reverse over forward: ∇_x of the jvp x ↦ Σ_i ⟨∇_θ E_θ(x_i), Δθ⟩
    def directional(xx: Tensor) -> Tensor:
        return jvp(lambda p: functional_call(model, p, (xx,)).sum(), (params,), (delta,))[1]

    return func_grad(directional)(x)


def _beta_double_backward(model: nn.Module, params: dict, delta: dict, x: Tensor) -> Tensor:
    # g = ∇_θ Σ_i E_θ(x_i) with a graph, s = ⟨g, Δθ⟩, then ∇_x s (with a graph too when x requires grad,
    # so that a weighted move can take its Jacobian)
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    xg = x if x.requires_grad else x.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = functional_call(model, leaves, (xg,)).sum()
        grads = torch.autograd.grad(energy, list(leaves.values()), create_graph=True, allow_unused=True)
        s = sum(((g * delta[k]).sum() for g, k in zip(grads, leaves) if g is not None), energy * 0.0)
        (gx,) = torch.autograd.grad(s, xg, create_graph=x.requires_grad, allow_unused=True)
    return torch.zeros_like(x) if gx is None else gx


BETA_METHODS = {"fwd_rev": _beta_fwd_rev, "rev_fwd": _beta_rev_fwd, "double_backward": _beta_double_backward}


def _beta_grad(model: nn.Module, params_old: Mapping, params_new: Mapping, x: Tensor, method: str) -> Tensor:
    params = {k: v.detach() for k, v in params_old.items()}
    delta = {k: (params_new[k].detach() - params[k]).to(params[k].dtype) for k in params}
    return BETA_METHODS[method](model, params, delta, x)


def pd_beta_field(
    model: nn.Module, params_old: Mapping, params_new: Mapping, x: Tensor, method: str = "double_backward"
) -> Tensor:
    """The PD-beta displacement ``v(x) = -∇_x ⟨∇_θ E_θ(x), θ_new - θ_old⟩`` at θ_old, exactly, [n, d].

    ``pd_field`` with ``E_new = E_{θ + sΔθ}`` equals ``s · pd_beta_field + O(s²)``. The mixed derivative is
    taken by ``method`` (``BETA_METHODS``): double backward (``∇_θ Σ E`` with a graph, then ``∇_x`` of
    its product with Δθ; measured fastest on a 2-core CPU), forward over reverse or reverse over forward.
    ``params_old``/``params_new`` map names of ``model.named_parameters()`` (or buffers) to tensors;
    names missing from them keep the module's own values. ``x`` [n, d], any d.
    """
    check_choice("method", method, BETA_METHODS, what="pd_beta_field method")
    check_points("x", x)
    known = dict(model.named_parameters()) | dict(model.named_buffers())
    pairs = [*params_old.items(), *params_new.items()]
    bad = [k for k, v in pairs if k not in known or v.shape != known[k].shape]
    if bad or set(params_old) != set(params_new):
        raise InvalidArgumentError(
            f"params_old and params_new must map the same names of the model's parameters to tensors of their "
            f"shapes; wrong: {sorted(set(bad) | (set(params_old) ^ set(params_new)))[:5]}"
        )
    return -_beta_grad(model, params_old, params_new, x.detach(), method).detach()


def solve_potential(p: np.ndarray, rhs: np.ndarray, h: float) -> np.ndarray:
    """Solve ``∇·(p ∇φ) = rhs`` [size, size] on a cell-centred grid of cell width h, zero flux at the boundary.

    Finite volumes: the flux between neighbouring cells i, j is ``p_ij (φ_j - φ_i) / h`` with
    ``p_ij = (p_i + p_j) / 2``. The matrix is symmetric with the constants as null space: ``rhs`` must sum
    to zero, and the densest node is pinned to φ = 0. One sparse LU. Returns φ [size, size] float64.
    """
    ny, nx = p.shape
    index = np.arange(ny * nx).reshape(ny, nx)
    # faces between horizontal and vertical neighbours: (cell a, cell b, coefficient p_ab)
    a = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    b = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    c = np.concatenate([(p[:, :-1] + p[:, 1:]).ravel() / 2, (p[:-1, :] + p[1:, :]).ravel() / 2])
    pin = int(np.argmax(p))
    # drop every face term touching the pinned node from its row/column; its row becomes φ_pin = 0
    keep = (a != pin) & (b != pin)
    rows = np.concatenate([a, b, a[keep], b[keep], [pin]])
    cols = np.concatenate([a, b, b[keep], a[keep], [pin]])
    vals = np.concatenate([c * (a != pin), c * (b != pin), -c[keep], -c[keep], [1.0]])
    matrix = scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(ny * nx, ny * nx))  # -h² ∇·(p ∇·)
    f = -(h**2) * rhs.ravel().astype(np.float64)
    f[pin] = 0.0
    return scipy.sparse.linalg.factorized(matrix)(f).reshape(ny, nx)


def _exact_gradient(energy_old: EnergyFn, energy_new: EnergyFn, grid: Grid, at: float = 0.0) -> Tensor:
    """``∇φ`` on the grid, [size, size, 2] float64, with ``∇·(p ∇φ) = p (ΔE - E_p[ΔE])`` and
    ``p ∝ exp(-((1 - at) E_old + at E_new))`` (``at = 0.5``: the midpoint of the step)."""
    e_old, e_new = grid.energy(energy_old).numpy(), grid.energy(energy_new).numpy()
    delta = e_new - e_old
    e = e_old + at * delta
    p = np.exp(-(e - e.min()))  # up to a constant, which cancels; the floor keeps the system well posed
    p = np.maximum(p, DENSITY_FLOOR * p.max())
    rhs = p * (delta - (p * delta).sum() / p.sum())  # the same discrete weights: rhs sums to zero
    dphi_dy, dphi_dx = np.gradient(solve_potential(p, rhs, grid.h), grid.h)
    return torch.from_numpy(np.stack([dphi_dx, dphi_dy], axis=-1))


def exact_field_grid(
    energy_old: EnergyFn, energy_new: EnergyFn, grid: Grid | None = None
) -> tuple[Tensor, Tensor]:
    """The exact displacement ``∇φ`` (see :func:`exact_field`) at the cell centres as ``(U, V)`` [size, size]."""
    field = _exact_gradient(energy_old, energy_new, _grid(grid))
    return field[..., 0], field[..., 1]


def _inside(grid: Grid, x: Tensor) -> Tensor:
    return ((x >= grid.low) & (x <= grid.high)).all(dim=1)


def exact_field(
    energy_old: EnergyFn, energy_new: EnergyFn, x: Tensor, grid: Grid | None = None, *, return_outside=False
):
    """The exact transport displacement ``∇φ(x)`` [n, 2] from ``p_old`` to ``p_new``, first order in ΔE.

    ``∇·(p ∇φ) = p (ΔE - E_p[ΔE])``, ``ΔE = E_new - E_old``, ``p = p_old``, zero flux at the boundary
    (docs/method.md §3, (C) with ``v = ∇φ``), solved by :func:`solve_potential` on ``grid`` (default
    ``Grid(-5, 5, 128)``, p floored at ``1e-8 max p``); ``∇φ`` by central differences, bilinearly
    interpolated at x. Particles outside the box get zero; ``return_outside`` also returns their count.
    """
    grid = _grid(grid)
    check_points("x", x, dim=2)
    inside = _inside(grid, x)
    field = grid.interpolate(_exact_gradient(energy_old, energy_new, grid), x.detach()) * inside[:, None]
    return (field, int((~inside).sum())) if return_outside else field


# --- the continuity equation, grid-free -----------------------------------------------------------


def pd_velocity(dt_energy_fn: EnergyFn) -> Callable[[Tensor], Tensor]:
    """The PD field ``v_t(x) = -∇_x ∂_t E_t(x)`` as a callable x [n, d] -> [n, d], differentiable in x.

    ``dt_energy_fn`` is ``x -> ∂_t E_t(x)`` [n] (e.g. ``lambda x: moving.dt(x, t)``).
    """

    def velocity(x: Tensor) -> Tensor:
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        return -value_and_grad(dt_energy_fn, xg, create_graph=True)[1]

    return velocity


def log_weight_rate(field_fn: Callable, energy_fn: EnergyFn, dt_energy_fn: EnergyFn, x: Tensor) -> Tensor:
    """``∇·v - ⟨∇E_t, v⟩ - ∂_t E_t`` [n] at x [n, d]: ``d/dt log(p_t/q_t)`` along each path, up to a constant.

    Over a time step ``dt`` the first-order log-weight increment is ``dt · log_weight_rate``
    (docs/method.md §3). ``field_fn`` is ``x -> v(x)`` [n, d]; the divergence by autograd (d backward passes).
    """
    check_points("x", x)
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        v = field_fn(xg)
        divergence = _jacobian(v, xg).diagonal(dim1=1, dim2=2).sum(1)
        dt_e = dt_energy_fn(xg)
    return (divergence - (value_and_grad(energy_fn, x)[1] * v).sum(1) - dt_e).detach()


def continuity_residual(
    field_fn: Callable, energy_fn: EnergyFn, dt_energy_fn: EnergyFn, x: Tensor, dt_mean=None
):
    """The residual of (C) per particle, ``∇·v - ⟨∇E_t, v⟩ - (∂_t E_t - E_{p_t}[∂_t E_t])`` [n].

    Zero exactly when ``v`` transports ``p_t``. ``dt_mean = E_{p_t}[∂_t E_t]``, by default the mean
    over the particles (x ~ p_t).
    """
    rate = log_weight_rate(field_fn, energy_fn, dt_energy_fn, x)
    if dt_mean is None:
        dt_mean = float(dt_energy_fn(x.detach()).detach().mean())
    return rate + dt_mean


def svgd_direction(x: Tensor, score: Tensor, bandwidth: float | None = None) -> Tensor:
    """The SVGD direction ``φ(x_i) = (1/n) Σ_j [k(x_j, x_i) s(x_j) + ∇_{x_j} k(x_j, x_i)]`` [n, d].

    RBF kernel ``k(x, y) = exp(-|x - y|² / h)``, ``∇_{x_j} k(x_j, x_i) = (2/h)(x_i - x_j) k``; the median
    heuristic ``h = med² / log(n + 1)`` unless ``bandwidth`` is given. ``score = ∇ log p = -∇E`` [n, d].
    """
    n = x.shape[0]
    sq = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # exact, no cancellation
    if bandwidth is None:
        med2 = float(sq[~torch.eye(n, dtype=torch.bool, device=x.device)].median()) if n > 1 else 1.0
        bandwidth = max(med2, 1e-12) / math.log(n + 1)
    kernel = torch.exp(-sq / bandwidth)  # symmetric [n, n]
    repulsion = (2.0 / bandwidth) * (x * kernel.sum(1, keepdim=True) - kernel @ x)
    return (kernel @ score + repulsion) / n


# --- the moves ------------------------------------------------------------------------------------


def alpha_move(x: Tensor, change: Change, step: float, grad_old: Tensor | None = None) -> Tensor:
    """PD-alpha: ``T(x) = x - step ∇(E_new - E_old)(x)`` [n, d]; ``grad_old`` is a cached ``∇E_old(x)``."""
    graph = x.requires_grad  # a weighted step differentiates T
    if grad_old is None:
        return x - step * value_and_grad(lambda z: change.new(z) - change.old(z), x, create_graph=graph)[1]
    return x - step * (value_and_grad(change.new, x, create_graph=graph)[1] - grad_old)


def beta_move(x: Tensor, change: Change, step: float) -> Tensor:
    """PD-beta: ``T(x) = x - step ∇_x ⟨∇_θ E_θ(x), θ_new - θ_old⟩`` [n, d] (exact JVP, double backward)."""
    return x - step * _beta_grad(change.model, change.params_old, change.params_new, x, "double_backward")


def gamma_move(x: Tensor, change: Change, step: float) -> Tensor:
    """PD-gamma: ``T(x) = x - step ∇_x ΔE(x)`` [n, 2], ΔE the bilinear interpolation of ``change.delta``."""
    delta_at = lambda z: change.grid.interpolate(change.delta, z)  # noqa: E731
    return x - step * value_and_grad(delta_at, x, create_graph=x.requires_grad)[1]


def exact_move(x: Tensor, change: Change, step: float) -> Tensor:
    """The exact flow: ``dx/dτ = step ∇φ(x)`` for τ in [0, 1], φ solved once at the midpoint density.

    ``∇·(p ∇φ) = p (ΔE - E_p[ΔE])`` with ``p ∝ exp(-(E_old + E_new)/2)`` on ``change.grid``; midpoint-rule
    sub-steps ``y ← y + dτ v(y + dτ v(y)/2)``, each particle's ``dτ = min(left, h / |v(y)|)`` such that it
    moves about one grid cell at most, so particles follow the field lines across the gaps between modes
    instead of being thrown out of the box. dτ depends on y, and autograd sees it: ``∇T`` is the Jacobian
    of the map applied. ``step = 1`` carries ``p_old`` to ``p_new`` in full (the pd-exact strategy's
    step). Particles outside the box stay. [n, 2]; raises DivergenceError past ``MAX_SUBSTEPS``.
    """
    grid = _grid(change.grid)
    field = _exact_gradient(change.old, change.new, grid, at=0.5)

    def v(z: Tensor) -> Tensor:
        return step * grid.interpolate(field, z) * _inside(grid, z)[:, None]

    y = x.to(device="cpu", dtype=torch.float64)
    left = torch.ones(x.shape[0], 1, dtype=torch.float64)  # each particle's own remaining time
    for _ in range(MAX_SUBSTEPS):
        active = (left[:, 0] > 0).nonzero()[:, 0]
        if len(active) == 0:
            return y.to(x)
        ya = y[active]
        va = v(ya)
        dt = torch.minimum(left[active], grid.h / va.norm(dim=1, keepdim=True).clamp_min(1e-300))
        y = y.index_put((active,), ya + dt * v(ya + 0.5 * dt * va))
        left = left.index_put((active,), left[active] - dt)
    raise DivergenceError("exact move", detail=f"more than {MAX_SUBSTEPS} sub-steps of one grid cell")


def svgd_move(x: Tensor, change: Change, step: float) -> Tensor:
    """SVGD: ``T(x) = x + step φ*(x)`` [n, d], φ* the kernelised direction with score ``-∇E_new``."""
    return x + step * svgd_direction(x, -value_and_grad(change.new, x)[1])


FLOWS = {"alpha": alpha_move, "beta": beta_move, "gamma": gamma_move, "exact": exact_move, "svgd": svgd_move}
MOVE_COST = {"alpha": 1, "beta": 2, "gamma": 0, "exact": 0, "svgd": 1}  # gradient evaluations of a move


def systematic_resample(state: State, generator: torch.Generator | None = None) -> State:
    """Resample by the weights ``softmax(log_weight)``: one uniform u, the n points ``(u + i)/n`` on the CDF.

    Particle i is copied ``floor(n w_i)`` or ``ceil(n w_i)`` times; log-weights reset to zero, caches kept.
    """
    n = state.position.shape[0]
    w = torch.softmax(state.log_weight.detach().to(torch.float64), 0)
    device = generator.device if generator is not None else "cpu"
    u0 = torch.rand((), generator=generator, dtype=torch.float64, device=device).to(w.device)
    points = (u0 + torch.arange(n, device=w.device)) / n  # on the CDF
    index = torch.searchsorted(torch.cumsum(w, 0), points).clamp(max=n - 1)
    zero = torch.zeros_like(state.log_weight)
    return State(state.position[index], state.energy[index], state.grad[index], zero)


def _move_with_log_det(move: Callable, x: Tensor, change: Change, step: float) -> tuple[Tensor, Tensor, int]:
    """``T(x)`` [n, d], ``log|det ∇T(x)|`` [n] by autograd, and how many times the step was halved.

    Where ``det ∇T <= 0`` the move folds space and the change of variables fails, so the whole move is
    redone at half the step (a warning says so), at most ``MAX_HALVINGS`` times; then DivergenceError."""
    xg = x.detach().requires_grad_(True)
    for halvings in range(MAX_HALVINGS + 1):
        with torch.enable_grad():
            y = move(xg, change, step / 2**halvings)
            sign, log_det = torch.linalg.slogdet(_jacobian(y, xg).to(torch.float64))
        folds = int((sign <= 0).sum())
        if folds == 0:
            return y.detach(), log_det.to(x.dtype), halvings
        warnings.warn(
            f"the weighted move at step {step / 2**halvings:g} folds space (det ∇T <= 0 at {folds} of "
            f"{len(sign)} particles): redone at half the step",
            stacklevel=3,
        )
    detail = f"det ∇T <= 0 at {folds} of {len(sign)} particles, even at step {step / 2**MAX_HALVINGS:g}"
    raise DivergenceError("Jacobian determinant", detail=detail)


def flow_step(
    state: State,
    move: str | None,
    change: Change,
    *,
    step: float = 1.0,
    n_corrections: int = 10,
    correction: str = "ula",
    step_size: float = 1e-2,
    noise_scale: float | None = None,
    weighted: bool = False,
    generator: torch.Generator | None = None,
    iteration: int | None = None,
    bound: float | None = 1e4,
) -> tuple[State, Info]:
    """Carry particles of ``p_old`` to ``p_new``: ``FLOWS[move]`` (``None``: none), weights, corrections.

    ``state`` caches ``E_old``, ``∇E_old`` at its positions [n, d]. With ``weighted`` each particle's
    log-weight gains the exact change of variables of ``T``::

        log w ← log w + E_old(x) - E_new(T x) + log|det ∇T(x)|     (∇T by autograd; d <= 10; not svgd)

    then ``n_corrections`` ``correction`` steps ("ula" or "mala", ``step_size``, ``noise_scale``) on
    ``change.new``; MALA keeps valid weights valid, ULA biases them. Returns the State with ``E_new``,
    ``∇E_new`` cached and Info (mean MALA acceptance, gradient evaluations: see the module docstring).
    A weighted move that folds space (``det ∇T <= 0``) is redone at half the step, with a warning, at most
    ``MAX_HALVINGS`` times. A DivergenceError names ``iteration`` when positions leave ``[-bound, bound]``
    or turn non-finite, or the weighted move still folds.
    """
    if move is not None:
        check_choice("move", move, FLOWS, what="flow")
    check_choice("correction", correction, samplers.SAMPLERS)
    check_positive("step", step)
    check_positive("n_corrections", n_corrections, integer=True, allow_zero=True)
    check_positive("step_size", step_size)
    x, d = state.position, state.position.shape[1]
    if weighted and (move == "svgd" or d > MAX_WEIGHTED_DIM):
        raise InvalidArgumentError(f"weighted=True needs d <= {MAX_WEIGHTED_DIM} and a move other than svgd")
    if move in ("exact", "gamma") and d != 2:
        raise InvalidArgumentError(
            f"move {move!r} lives on a 2-D grid: particles must be [n, 2], got [n, {d}]"
        )
    move_hint = f"reduce step (now {step:g}), e.g. halve it"
    fix_hint = f"reduce step_size (now {step_size:g}), e.g. to {step_size / 10:g}"
    n_grad, log_det = MOVE_COST.get(move, 0) + n_corrections, 0.0
    try:
        if move is None:
            y = x
        elif weighted:
            y, log_det, halvings = _move_with_log_det(FLOWS[move], x, change, step)
            hessian = d * (move in ("alpha", "beta")) + (move == "alpha")  # rows of ∇T, ∇E_old with a graph
            n_grad += hessian + halvings * (hessian + MOVE_COST[move])
        else:
            y = FLOWS[move](x, change, step, **({"grad_old": state.grad} if move == "alpha" else {}))
    except DivergenceError as err:  # name the time step and the knob
        raise DivergenceError(err.quantity, iteration, move_hint, detail=str(err)) from None
    samplers.check_divergence(y, iteration, bound, move_hint)
    current = state  # a persistent ULA chain moves first with the cached ∇E_old: K steps cost K
    if not (move is None and correction == "ula" and not weighted and n_corrections > 0):
        current, n_grad = State(y, *value_and_grad(change.new, y), state.log_weight), n_grad + 1
    if weighted:
        current = current._replace(log_weight=state.log_weight + state.energy - current.energy + log_det)
    rates, kw = [], {"step_size": step_size, "noise_scale": noise_scale, "generator": generator}
    if correction == "ula":
        current = samplers.ula_steps(current, change.new, n_corrections, **kw)
    for _ in range(n_corrections if correction == "mala" else 0):
        current, info = samplers.mala_step(current, change.new, **kw)
        rates.append(info.acceptance_rate)
    samplers.check_divergence(current, iteration, bound, fix_hint if n_corrections else move_hint)
    return current, Info(torch.stack(rates).mean() if rates else torch.tensor(1.0), n_grad)


TRACK_METHODS = ("langevin", "alpha", "gamma", "exact", "svgd")  # beta needs a parametric model
_TRACK_OPTIONS = ("step", "n_corrections", "correction", "step_size", "noise_scale", "weighted", "bound")


def track(
    moving_energy: Any,
    method: str,
    *,
    n_particles: int = 1000,
    n_steps: int = 50,
    evals_per_step: int = 10,
    seed: int = 0,
    grid: Grid | None = None,
    record_every: int = 1,
    bins: int = 50,
    resample_below: float | None = 0.5,
    progress: bool = False,
    **flow_kwargs: Any,
) -> History:
    """The tracking experiment: exact samples of ``p_0`` carried along ``E(·, t)``, t = 0 → 1.

    Step k moves from ``E(·, t_k)`` to ``E(·, t_{k+1})``, ``t_k = k / n_steps``, by :func:`flow_step`
    with ``method`` in ``TRACK_METHODS`` ("langevin" = no move). Every method spends ``evals_per_step``
    gradient evaluations per step (the corrections take what the move leaves) unless ``n_corrections`` is
    given. ``moving_energy``: a name in ``energies.MOVING_ENERGIES`` or an object with ``at(t)``; ``grid``
    (default ``Grid(-5, 5, 128)``) gives the initial samples, the exact solve and the binned KL
    (``bins`` per axis; of a systematic resample when weighted). Weighted particles are resampled when
    ESS < ``resample_below · n``. ``flow_kwargs``: step, n_corrections, correction, step_size,
    noise_scale, weighted, bound.

    Returns a History (meta kind "track"), a frame per ``record_every`` steps (and the first and last)
    with "t", "kl", "n_grad" (cumulative), "ess", "n_outside" (particles outside the box), "position"
    [n, 2] and "log_weight" [n].
    """
    if isinstance(moving_energy, str):
        check_choice("moving_energy", moving_energy, energies.MOVING_ENERGIES, what="moving energy")
    moving = energies.get(moving_energy) if isinstance(moving_energy, str) else moving_energy
    if not hasattr(moving, "at"):
        raise InvalidArgumentError(f"moving_energy must be a MovingEnergy or its name, got {moving_energy!r}")
    check_choice("method", method, TRACK_METHODS, what="tracking method")
    for name, value in (("n_particles", n_particles), ("n_steps", n_steps), ("record_every", record_every)):
        check_positive(name, value, integer=True)
    check_memory("the recorded history", (n_steps // record_every + 2) * n_particles * 3)
    if set(flow_kwargs) - set(_TRACK_OPTIONS):
        raise InvalidArgumentError(
            f"track got {sorted(flow_kwargs)}; flow options are {', '.join(_TRACK_OPTIONS)}"
        )
    langevin_ula = method == "langevin" and flow_kwargs.get("correction", "ula") == "ula"
    fixed = 0 if langevin_ula else MOVE_COST.get(method, 0) + 1
    flow_kwargs.setdefault("n_corrections", evals_per_step - fixed)
    if flow_kwargs["n_corrections"] < 0:
        raise InvalidArgumentError(f"evals_per_step must be >= {fixed} for {method!r}, got {evals_per_step}")
    grid, generator, weighted = _grid(grid), samplers.make_generator(seed), flow_kwargs.get("weighted", False)
    resample_at = resample_below * n_particles if weighted and resample_below is not None else 0.0  # ESS
    state = samplers.init(grid.sample(moving.at(0.0), n_particles, generator=generator), moving.at(0.0))
    history = History(meta={"kind": "track", "method": method, "energy": getattr(moving, "name", "moving")})

    def record(k: int, n_grad: int) -> None:
        x = systematic_resample(state, generator).position if weighted else state.position
        kl = metrics.kl_to_grid(x, moving.at(k / n_steps), grid, bins)
        n_outside = int((~_inside(grid, state.position)).sum())
        ess = metrics.ess(state.log_weight)
        tensors = {"position": state.position, "log_weight": state.log_weight}
        history.record(k, t=k / n_steps, kl=kl, n_grad=n_grad, ess=ess, n_outside=n_outside, **tensors)

    record(0, 0)
    total = 0
    for k in tqdm(range(n_steps), disable=not progress, desc=f"track {method}"):
        old, new = moving.at(k / n_steps), moving.at((k + 1) / n_steps)
        delta = grid.energy(new) - grid.energy(old) if method == "gamma" else None
        change = Change(old, new, grid=grid, delta=delta)
        move = None if method == "langevin" else method
        state, info = flow_step(state, move, change, generator=generator, iteration=k, **flow_kwargs)
        total += info.n_grad
        if resample_at and metrics.ess(state.log_weight) < resample_at:
            state = systematic_resample(state, generator)
        if (k + 1) % record_every == 0 or k + 1 == n_steps:
            record(k + 1, total)
    return history
