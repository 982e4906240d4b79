"""Particle flows that follow a moving energy (method.md §2).

The model's energy changes from ``E_old`` to ``E_new``; the particles, samples of ``p_old ∝ exp(-E_old)``,
should become samples of ``p_new ∝ exp(-E_new)``. Particles moved by a field ``v`` keep the law of the
moving density exactly when the continuity equation holds; divided by ``p_t`` it reads::

    ∇·v(x) - ⟨∇E_t(x), v(x)⟩ = ∂_t E_t(x) - E_{p_t}[∂_t E_t]                      (C)

This module holds, in this order:

* the fields: ``pd_field`` (PD-alpha, ``-∇_x (E_new - E_old)``), ``pd_beta_field`` (PD-beta, the exact
  linearisation ``-∇_x ⟨∇_θ E_θ(x), θ_new - θ_old⟩``), and ``exact_field`` (the gradient field ``∇φ``
  solving the weighted Poisson equation ``∇·(p ∇φ) = p (ΔE - E_p[ΔE])`` on a 2-D grid, i.e. (C) with
  ``v = ∇φ`` and ``∂_t E ≈ ΔE``), plus their values on a grid for streamline plots;
* the grid-free diagnostic of (C): ``log_weight_rate`` and ``continuity_residual``;
* SVGD (``svgd_direction``, ``svgd_step``);
* importance weights: ``ess``, ``systematic_resample`` and the exact change of variables
  ``log w += log p_new(T x) - log p_old(x) + log|det ∇T(x)|`` inside ``flow_step``;
* the flows as an init/step pair on a ``FlowState`` (``flow_init``, ``flow_step``, registry ``FLOWS``);
* the tracking experiment ``track``: exact samples of ``p_0`` carried along ``E(·, t)`` for t in [0, 1].

Cost accounting (FlowInfo.n_grad): one gradient evaluation = ``E`` and ``∇_x E`` at every particle once.
The state caches ``E`` and ``∇E`` of the *current* target at the particles, so per ``flow_step``:

===============  ===============================================================  ====================
method           what it evaluates                                                gradient evaluations
===============  ===============================================================  ====================
langevin, ULA    K steps, each evaluating ``E_new`` where it lands; the first       K (1 if K = 0)
                 step moves with the cached ``∇E_old`` (a persistent chain's cost)
langevin, MALA   ``E_new`` at x (the accept test needs it), then K steps            1 + K
pd               ``∇E_new`` at x (``∇E_old`` is cached), move, ``E_new`` at T(x),    2 + K
                 K corrections (the last evaluation is the next step's ``∇E_old``)
exact            grid solve (energies on the grid, not on particles), move,       1 + K
                 ``E_new`` at T(x), K corrections
svgd             ``∇E_new`` at x, then K SVGD steps                                 1 + K
===============  ===============================================================  ====================

With ``weighted=True`` a PD step also differentiates ``E_old`` again at x and takes ``d`` Hessian-vector
products for the Jacobian ``∇T = I - step ∇²ΔE``: ``1 + d`` more evaluations, counted.
"""

from __future__ import annotations

import math
import time
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

from pdviz import metrics, samplers
from pdviz.errors import (
    InvalidArgumentError,
    check_choice,
    check_energy_output,
    check_finite_state,
    check_points,
    check_positive,
    check_range,
)
from pdviz.grid import Grid

EnergyFn = Callable[[Tensor], Tensor]

FLOWS: dict[str, str] = {
    "langevin": "no move; corrections (ULA or MALA) on the new energy only",
    "pd": "particle dynamics: move by step * (-∇ΔE), then corrections",
    "exact": "move by the grid-solved exact field ∇φ (2-D only), then corrections (often none)",
    "svgd": "Stein variational gradient descent steps on the new energy instead of Langevin corrections",
}
CORRECTIONS = ("ula", "mala")
BETA_METHODS = ("fwd_rev", "rev_fwd", "double_backward")

DEFAULT_GRID_SIZE = 128  # the exact solve on 128x128 over [-5, 5]^2; 200x200 is ~3x slower per solve
MAX_WEIGHTED_DIM = 10  # the weights need a d x d Jacobian per particle (d Hessian-vector products)
DENSITY_FLOOR = 1e-8  # p is floored at this fraction of its maximum in the Poisson solve


# --- small autograd helpers -----------------------------------------------------------------------


def _energy_and_grad(
    energy_fn: EnergyFn,
    x: Tensor,
    *,
    create_graph: bool = False,
    where: str = "energy_fn",
    finite: bool = True,
) -> tuple[Tensor, Tensor]:
    """``E(x)`` [n] and ``∇_x E(x)`` [n, d]; detached unless ``create_graph`` (then x must require grad).

    ``finite=False`` checks only the shape and leaves NaN/Inf to the caller (a flow reports divergence).
    """
    if not create_graph:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = energy_fn(x)
        if finite:
            check_energy_output(energy, x.shape[0], where=where)
        elif not isinstance(energy, Tensor) or energy.shape != (x.shape[0],):
            check_energy_output(energy, x.shape[0], where=where)  # raises, naming the shape
        (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph, allow_unused=True)
    if grad is None:  # the energy does not depend on x
        grad = torch.zeros_like(x)
    if create_graph:
        return energy, grad
    return energy.detach(), grad.detach()


def _jacobian_rows(field: Tensor, x: Tensor) -> Tensor:
    """Per-particle Jacobian ``∂field_i/∂x_j`` [n, d, d] of a field [n, d] built with a graph on x [n, d].

    One backward pass per output dimension; each particle's field depends on its own position only.
    """
    rows = []
    for i in range(field.shape[1]):
        (row,) = torch.autograd.grad(field[:, i].sum(), x, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(x) if row is None else row)
    return torch.stack(rows, dim=1).detach()


def _check_state(state: Any) -> FlowState:
    """A FlowState whose fields agree: position [n, d], energy [n], grad [n, d], log_weight [n]."""
    if not isinstance(state, FlowState):
        raise InvalidArgumentError(f"state must be a FlowState (from flow_init), got {type(state).__name__}")
    x = check_points("state.position", state.position)
    n = x.shape[0]
    for name, value, shape in (
        ("energy", state.energy, (n,)),
        ("grad", state.grad, tuple(x.shape)),
        ("log_weight", state.log_weight, (n,)),
    ):
        if not isinstance(value, Tensor) or tuple(value.shape) != shape:
            got = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise InvalidArgumentError(f"state.{name} must have shape {list(shape)}, got {got}")
    return state


def _check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )


def _check_energy_fn(name: str, fn: Any) -> None:
    if not callable(fn):
        raise InvalidArgumentError(
            f"{name} must be a callable x [n, d] -> energies [n], got {type(fn).__name__}"
        )


def _check_field_fns(field_fn: Any, energy_fn: Any, dt_energy_fn: Any) -> None:
    if not callable(field_fn):
        raise InvalidArgumentError(
            f"field_fn must be a callable x [n, d] -> v(x) [n, d], got {type(field_fn).__name__}"
        )
    _check_energy_fn("energy_fn", energy_fn)
    _check_energy_fn("dt_energy_fn", dt_energy_fn)


# --- PD-alpha: the finite-difference field --------------------------------------------------------


def pd_field(energy_old: EnergyFn, energy_new: EnergyFn, x: Tensor) -> Tensor:
    """The PD-alpha displacement ``v(x) = -∇_x (E_new(x) - E_old(x))``.

    At ``q = p_old`` this is the Wasserstein-gradient direction of ``KL(q ‖ p_new)`` (method.md §2); the
    particles move by ``x ← x + step · v(x)``.

    Parameters
    ----------
    energy_old, energy_new : callable
        Energies ``x [n, d] -> [n]`` before and after the change.
    x : Tensor [n, d]
        Particle positions.

    Returns
    -------
    Tensor [n, d], detached, dtype of ``x``.

    Examples
    --------
    >>> old = lambda x: ((x - 0.0) ** 2).sum(1) / 2
    >>> new = lambda x: ((x - 0.1) ** 2).sum(1) / 2
    >>> pd_field(old, new, torch.zeros(1, 2))   # the translation m_new - m_old
    tensor([[0.1000, 0.1000]])
    """
    _check_energy_fn("energy_old", energy_old)
    _check_energy_fn("energy_new", energy_new)
    check_points("x", x)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        e_new = check_energy_output(energy_new(x), x.shape[0], where="energy_new")
        e_old = check_energy_output(energy_old(x), x.shape[0], where="energy_old")
        (grad,) = torch.autograd.grad((e_new - e_old).sum(), x, allow_unused=True)
    return torch.zeros_like(x) if grad is None else -grad.detach()


def pd_field_grid(
    energy_old: EnergyFn, energy_new: EnergyFn, grid: Grid | None = None
) -> tuple[Tensor, Tensor]:
    """``pd_field`` at the grid's cell centres, as two images ``(U, V)`` [size, size] (float64, [iy, ix]).

    ``U`` is the x₁ component, ``V`` the x₂ component, laid out like ``Grid.energy`` (row = x₂).
    """
    grid = _default_grid(grid)
    field = pd_field(energy_old, energy_new, grid.points)  # in the grid's dtype, so float32 networks work
    field = field.to(torch.float64).reshape(grid.size, grid.size, 2)
    return field[..., 0], field[..., 1]


# --- PD-beta: the exact linearisation in the parameters -------------------------------------------

# fastest method per (device type, model class, parameter count, n particles), measured once
_BETA_METHOD_CACHE: dict[tuple[str, str, int, int], str] = {}


def _beta_fwd_rev(model: nn.Module, params: dict[str, Tensor], delta: dict[str, Tensor], x: Tensor) -> Tensor:
    # forward-over-reverse: the directional derivative (jvp along Δθ) of θ ↦ ∇_x Σ E_θ(x)
    def x_grad(p: dict[str, Tensor]) -> Tensor:
        return func_grad(lambda xx: functional_call(model, p, (xx,)).sum())(x)

    _, tangent = jvp(x_grad, (params,), (delta,))
    return tangent


def _beta_rev_fwd(model: nn.Module, params: dict[str, Tensor], delta: dict[str, Tensor], x: Tensor) -> Tensor:
    # reverse-over-forward: ∇_x of the jvp x ↦ Σ_i ⟨∇_θ E_θ(x_i), Δθ⟩
    def directional(xx: Tensor) -> Tensor:
        _, tangent = jvp(lambda p: functional_call(model, p, (xx,)).sum(), (params,), (delta,))
        return tangent

    return func_grad(directional)(x)


def _beta_double_backward(
    model: nn.Module, params: dict[str, Tensor], delta: dict[str, Tensor], x: Tensor
) -> Tensor:
    # g = ∇_θ Σ_i E_θ(x_i) with a graph, s = ⟨g, Δθ⟩, then ∇_x s; particles do not interact, so the
    # x_i-gradient of the sum is the x_i-gradient of particle i's own term
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = functional_call(model, leaves, (xg,)).sum()
        grads = torch.autograd.grad(energy, list(leaves.values()), create_graph=True, allow_unused=True)
        terms = [(g * delta[k]).sum() for g, k in zip(grads, leaves) if g is not None]
        s = torch.stack(terms).sum() if terms else energy * 0.0
        (gx,) = torch.autograd.grad(s, xg, allow_unused=True)
    return torch.zeros_like(x) if gx is None else gx.detach()


_BETA_IMPLS = {"fwd_rev": _beta_fwd_rev, "rev_fwd": _beta_rev_fwd, "double_backward": _beta_double_backward}


def _check_params(model: nn.Module, params_old: Any, params_new: Any) -> None:
    known = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, params in (("params_old", params_old), ("params_new", params_new)):
        if not isinstance(params, Mapping) or not params:
            raise InvalidArgumentError(
                f"{name} must be a non-empty dict name -> Tensor, as from dict(model.named_parameters()); "
                f"got {type(params).__name__}"
            )
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InvalidArgumentError(
                f"{name} has names the model does not have: {', '.join(unknown[:5])}; "
                f"valid names: {', '.join(sorted(known)[:10])}{', ...' if len(known) > 10 else ''}"
            )
        for key, value in params.items():
            if not isinstance(value, Tensor) or value.shape != known[key].shape:
                shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise InvalidArgumentError(
                    f"{name}[{key!r}] must be a Tensor of shape {list(known[key].shape)}, got {shape}"
                )
    if set(params_old) != set(params_new):
        diff = sorted(set(params_old) ^ set(params_new))
        raise InvalidArgumentError(
            f"params_old and params_new must have the same names; differ in {diff[:5]}"
        )


def best_beta_method(model: nn.Module, n: int) -> str | None:
    """The method ``pd_beta_field(..., method="auto")`` chose for this model class and n, or None."""
    return _BETA_METHOD_CACHE.get(_beta_key(model, n))


def _beta_key(model: nn.Module, n: int) -> tuple[str, str, int, int]:
    first = next(iter(model.parameters()), None)
    device = first.device.type if first is not None else "cpu"
    n_params = sum(p.numel() for p in model.parameters())
    return (device, type(model).__qualname__, n_params, int(n))


def pd_beta_field(
    model: nn.Module,
    params_old: Mapping[str, Tensor],
    params_new: Mapping[str, Tensor],
    x: Tensor,
    method: str = "auto",
) -> Tensor:
    """The PD-beta displacement ``v(x) = -∇_x ⟨∇_θ E_θ(x), θ_new - θ_old⟩`` at ``θ = θ_old``, computed exactly.

    ``⟨∇_θ E_θ(x), Δθ⟩`` is the first-order change of the energy, so ``pd_field`` with
    ``E_new = E_{θ + sΔθ}`` equals ``s · pd_beta_field + O(s²)``. Three exact ways to compute the mixed
    second derivative (all use ``torch.func.functional_call``, none a finite difference):

    * ``"fwd_rev"``: ``torch.func.jvp`` along ``Δθ`` of ``θ ↦ ∇_x Σ E_θ(x)`` (forward over reverse);
    * ``"rev_fwd"``: ``∇_x`` of the jvp ``x ↦ Σ ⟨∇_θ E_θ(x), Δθ⟩`` (reverse over forward);
    * ``"double_backward"``: ``g = ∇_θ Σ E_θ(x)`` with a graph, then ``∇_x ⟨g, Δθ⟩``;
    * ``"auto"``: on the first call per (device type, model class, parameter count, n) time each once
      and keep the fastest (on a 2-core CPU double backward wins for the paper's MLP).

    Parameters
    ----------
    model : nn.Module
        Energy network ``x [n, d] -> [n]`` (e.g. ``pdviz.models.EBM`` or the image ConvEBM).
    params_old, params_new : dict[str, Tensor]
        Parameters before and after, as from ``dict(model.named_parameters())``; names missing from the
        dicts keep the module's own values.
    x : Tensor [n, d]
        Particle positions (any d, e.g. [n, 784] images).
    method : str
        One of ``"auto"``, ``"fwd_rev"``, ``"rev_fwd"``, ``"double_backward"``.

    Returns
    -------
    Tensor [n, d], detached.
    """
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_choice("method", method, (*BETA_METHODS, "auto"), what="pd_beta_field method")
    check_points("x", x)
    _check_params(model, params_old, params_new)
    params = {k: v.detach() for k, v in params_old.items()}
    delta = {k: (params_new[k].detach() - params[k]).to(params[k].dtype) for k in params}
    x = x.detach()
    with warnings.catch_warnings():
        # torch 2.13 warns (once per process, from its own forward-AD set-up) that torch.jit.script is
        # deprecated; nothing the caller can act on
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        return _pd_beta(model, params, delta, x, method)


def _synchronize(x: Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def _pd_beta(
    model: nn.Module, params: dict[str, Tensor], delta: dict[str, Tensor], x: Tensor, method: str
) -> Tensor:
    if method != "auto":
        return -_BETA_IMPLS[method](model, params, delta, x).detach()
    key = _beta_key(model, x.shape[0])
    if key not in _BETA_METHOD_CACHE:
        # a two-particle call first, so that one-time costs (tracing, allocation) do not bias the timing
        few = x[:2]
        timings, results = {}, {}
        for name, impl in _BETA_IMPLS.items():
            impl(model, params, delta, few)
            _synchronize(x)
            start = time.perf_counter()
            results[name] = impl(model, params, delta, x)
            _synchronize(x)  # GPU kernels run asynchronously; wait before reading the clock
            timings[name] = time.perf_counter() - start
        _BETA_METHOD_CACHE[key] = min(timings, key=timings.get)
        return -results[_BETA_METHOD_CACHE[key]].detach()
    return -_BETA_IMPLS[_BETA_METHOD_CACHE[key]](model, params, delta, x).detach()


# --- the exact field: a weighted Poisson equation on the grid -------------------------------------


def _default_grid(grid: Grid | None) -> Grid:
    if grid is None:
        return Grid(-5.0, 5.0, DEFAULT_GRID_SIZE)
    if not isinstance(grid, Grid):
        raise InvalidArgumentError(f"grid must be a pdviz.grid.Grid or None, got {type(grid).__name__}")
    return grid


def solve_potential(p: np.ndarray, rhs: np.ndarray, h: float) -> np.ndarray:
    """Solve ``∇·(p ∇φ) = rhs`` on a cell-centred square grid with zero flux through the boundary.

    Finite volumes: the flux through the face between neighbouring cells i, j is
    ``p_ij (φ_j - φ_i) / h`` with ``p_ij = (p_i + p_j) / 2``; the equation at cell i is
    ``Σ_j p_ij (φ_j - φ_i) / h² = rhs_i``. The matrix is symmetric with the constants as null space;
    ``rhs`` must sum to zero (compatibility), and one node (the densest) is pinned to φ = 0.
    One sparse LU factorisation.

    Parameters
    ----------
    p : ndarray [size, size]
        Positive weights (the density, floored), [iy, ix].
    rhs : ndarray [size, size]
        Right-hand side, summing to ~0.
    h : float
        Cell width.

    Returns
    -------
    ndarray [size, size], the potential φ (float64).
    """
    ny, nx = p.shape
    index = np.arange(ny * nx).reshape(ny, nx)
    # faces between horizontal and vertical neighbours: (cell a, cell b, coefficient p_ab)
    a = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    b = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    c = np.concatenate([(p[:, :-1] + p[:, 1:]).ravel() / 2, (p[:-1, :] + p[1:, :]).ravel() / 2])
    pin = int(np.argmax(p))
    # drop every face term touching the pinned node from its row/column; its row becomes φ_pin = 0
    keep_ab = (a != pin) & (b != pin)
    rows = np.concatenate([a, b, a[keep_ab], b[keep_ab], [pin]])
    cols = np.concatenate([a, b, b[keep_ab], a[keep_ab], [pin]])
    vals = np.concatenate([c * (a != pin), c * (b != pin), -c[keep_ab], -c[keep_ab], [1.0]])
    # A = -h² ∇·(p ∇·), positive definite once pinned
    matrix = scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(ny * nx, ny * nx))
    f = -(h**2) * rhs.ravel().astype(np.float64)
    f[pin] = 0.0
    solve = scipy.sparse.linalg.factorized(matrix)
    return solve(f).reshape(ny, nx)


def _exact_potential_gradient(
    energy_old: EnergyFn, energy_new: EnergyFn, grid: Grid, at: float = 0.0
) -> np.ndarray:
    """``∇φ`` on the grid, [2, size, size] (x₁ then x₂ component), float64.

    ``φ`` solves ``∇·(p ∇φ) = p (ΔE - E_p[ΔE])`` with ``p ∝ exp(-((1 - at) E_old + at E_new))``:
    ``at = 0`` is the field at the old density, ``at = 0.5`` at the midpoint of the step.
    """
    _check_energy_fn("energy_old", energy_old)
    _check_energy_fn("energy_new", energy_new)
    e_old = grid.energy(energy_old).numpy()
    e_new = grid.energy(energy_new).numpy()
    delta = e_new - e_old
    e = e_old + at * delta
    # p up to a constant (it cancels in the equation); the floor keeps the system well conditioned
    p = np.exp(-(e - e.min()))
    p = np.maximum(p, DENSITY_FLOOR * p.max())
    # E_p[ΔE] with the same discrete weights, so that the right-hand side sums to zero exactly
    rhs = p * (delta - (p * delta).sum() / p.sum())
    phi = solve_potential(p, rhs, grid.h)
    dphi_dy, dphi_dx = np.gradient(phi, grid.h)
    return np.stack([dphi_dx, dphi_dy])


def exact_field_grid(
    energy_old: EnergyFn, energy_new: EnergyFn, grid: Grid | None = None
) -> tuple[Tensor, Tensor]:
    """The exact displacement ``∇φ`` at the grid's cell centres, as ``(U, V)`` [size, size] float64 [iy, ix].

    ``φ`` solves ``∇·(p_old ∇φ) = p_old (ΔE - E_{p_old}[ΔE])`` with ``ΔE = E_new - E_old`` (method.md
    §2, (C) with ``v = ∇φ``); see ``exact_field``.
    """
    grid = _default_grid(grid)
    field = _exact_potential_gradient(energy_old, energy_new, grid)
    return torch.from_numpy(field[0]), torch.from_numpy(field[1])


def _inside(grid: Grid, x: Tensor) -> Tensor:
    return ((x >= grid.low) & (x <= grid.high)).all(dim=1)


def _field_and_jacobian(field: np.ndarray, grid: Grid, x: Tensor) -> tuple[Tensor, Tensor]:
    """A grid field [2, size, size] and its Jacobian (central differences) bilinearly interpolated at x.

    Returns ``v`` [n, 2] and ``∂v_i/∂x_j`` [n, 2, 2], float64 on the CPU.
    """
    du_dy, du_dx = np.gradient(field[0], grid.h)  # np.gradient returns d/d(axis 0 = x₂), d/d(axis 1 = x₁)
    dv_dy, dv_dx = np.gradient(field[1], grid.h)
    stack = torch.from_numpy(np.stack([field[0], field[1], du_dx, du_dy, dv_dx, dv_dy], axis=-1))
    values = grid.interpolate(stack, x)
    return values[:, :2], values[:, 2:].reshape(-1, 2, 2)


def exact_field(
    energy_old: EnergyFn,
    energy_new: EnergyFn,
    x: Tensor,
    grid: Grid | None = None,
    *,
    return_outside: bool = False,
) -> Tensor | tuple[Tensor, int]:
    """The exact transport displacement ``∇φ(x)`` from ``p_old`` to ``p_new`` (first order in ΔE), 2-D.

    ``φ`` solves the weighted Poisson equation (method.md §2, (C) with ``v = ∇φ``, ``∂_t E ≈ ΔE``)::

        ∇·(p ∇φ) = p (ΔE - E_p[ΔE]),   ΔE = E_new - E_old,   p = p_old,   zero flux at the boundary,

    by finite volumes on the grid's cells (``solve_potential``: face coefficients = mean of p at the two
    cells, one sparse LU, the constant null space removed by pinning the densest node), with p floored
    at ``1e-8 · max p``. ``∇φ`` is taken by central differences on the grid and bilinearly interpolated
    at ``x``. Particles outside the grid's box get zero displacement and are counted.

    Parameters
    ----------
    energy_old, energy_new : callable
        Energies ``x [n, 2] -> [n]``.
    x : Tensor [n, 2]
        Particle positions.
    grid : Grid, optional
        Default ``Grid(-5, 5, 128)`` (a 128² solve takes ~0.1 s on one CPU core, 200² ~0.2 s).
    return_outside : bool
        Also return the number of particles outside the grid.

    Returns
    -------
    Tensor [n, 2] (dtype and device of x), or ``(field, n_outside)`` with ``return_outside``.
    """
    grid = _default_grid(grid)
    check_points("x", x, dim=2)
    x64 = x.detach().to(device="cpu", dtype=torch.float64)
    inside = _inside(grid, x64)
    field, _ = _field_and_jacobian(_exact_potential_gradient(energy_old, energy_new, grid), grid, x64)
    field = (field * inside[:, None]).to(device=x.device, dtype=x.dtype)
    n_outside = int((~inside).sum())
    return (field, n_outside) if return_outside else field


class ExactMove(NamedTuple):
    """The exact flow's move of the particles (``exact_move``).

    displacement: Tensor [n, 2] (zero off the grid); jacobian: Tensor [n, 2, 2], ``∂(T(x) - x)/∂x``
    (zero off the grid); n_outside: int, particles off the grid (not moved).
    """

    displacement: Tensor
    jacobian: Tensor
    n_outside: int


def exact_move(
    energy_old: EnergyFn, energy_new: EnergyFn, x: Tensor, grid: Grid | None = None, step: float = 1.0
) -> ExactMove:
    """Carry particles along the exact field over one step: ``T(x) = x + v(x + v(x)/2)`` (midpoint rule).

    ``v = step · ∇φ`` with ``φ`` solved at the *midpoint* density ``p ∝ exp(-(E_old + E_new)/2)``
    (one solve, as ``exact_field``). Moving by ``∇φ_old(x)`` alone (Euler) is exact to first order; the
    midpoint rule is exact to second order at the same cost: on the scaling Gaussian 0.5 → 1.5 in 20
    steps the cloud's scale ends ~9 % short with Euler and within ~1 % with the midpoint rule.
    The Jacobian ``∇T = I + J_v(y)(I + J_v(x)/2)``, ``y = x + v(x)/2``, comes from central differences of
    the grid field, interpolated.

    Parameters
    ----------
    energy_old, energy_new : callable
        ``x [n, 2] -> [n]``.
    x : Tensor [n, 2]
    grid : Grid, optional
        Default ``Grid(-5, 5, 128)``.
    step : float
        Scale of the field (1 = the transport from old to new).
    """
    grid = _default_grid(grid)
    check_points("x", x, dim=2)
    check_positive("step", step)
    field = _exact_potential_gradient(energy_old, energy_new, grid, at=0.5)
    x64 = x.detach().to(device="cpu", dtype=torch.float64)
    inside = _inside(grid, x64)
    v_x, jac_x = _field_and_jacobian(field, grid, x64)
    v_y, jac_y = _field_and_jacobian(field, grid, x64 + 0.5 * step * v_x)
    eye = torch.eye(2, dtype=torch.float64)
    displacement = step * v_y * inside[:, None]
    jacobian = step * (jac_y @ (eye + 0.5 * step * jac_x)) * inside[:, None, None]
    return ExactMove(
        displacement=displacement.to(device=x.device, dtype=x.dtype),
        jacobian=jacobian.to(device=x.device, dtype=x.dtype),
        n_outside=int((~inside).sum()),
    )


# --- the continuity equation, grid-free -----------------------------------------------------------


def pd_velocity(dt_energy_fn: EnergyFn) -> Callable[[Tensor], Tensor]:
    """The continuous-time PD field ``v_t(x) = -∇_x ∂_t E_t(x)`` as a differentiable callable x -> [n, d].

    ``dt_energy_fn`` is ``x -> ∂_t E_t(x)`` [n] (e.g. ``lambda x: moving.dt(x, t)``).
    """
    _check_energy_fn("dt_energy_fn", dt_energy_fn)

    def velocity(x: Tensor) -> Tensor:
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            return -torch.autograd.grad(dt_energy_fn(x).sum(), x, create_graph=True)[0]

    return velocity


def log_weight_rate(
    field_fn: Callable[[Tensor], Tensor], energy_fn: EnergyFn, dt_energy_fn: EnergyFn, x: Tensor
) -> Tensor:
    """``∇·v - ⟨∇E_t, v⟩ - ∂_t E_t`` at each particle: ``d/dt log(p_t/q_t)`` along its path, up to a constant.

    The first-order weight increment over a time step ``dt`` is ``dt · log_weight_rate(...)``
    (method.md §2, end). Divergence by autograd (one backward pass per dimension).

    Parameters
    ----------
    field_fn : callable
        ``x [n, d] -> v(x) [n, d]``, differentiable in x (e.g. ``pd_velocity(...)``).
    energy_fn, dt_energy_fn : callable
        ``x -> E_t(x)`` and ``x -> ∂_t E_t(x)``, each [n].
    x : Tensor [n, d]

    Returns
    -------
    Tensor [n], detached.
    """
    _check_field_fns(field_fn, energy_fn, dt_energy_fn)
    check_points("x", x)
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        v = field_fn(xg)
        if not isinstance(v, Tensor) or v.shape != xg.shape:
            raise InvalidArgumentError(
                f"field_fn must return shape {list(xg.shape)}, got {getattr(v, 'shape', v)}"
            )
        divergence = _jacobian_rows(v, xg).diagonal(dim1=1, dim2=2).sum(1)
        _, grad_e = _energy_and_grad(energy_fn, xg, create_graph=True)
        dt_e = dt_energy_fn(xg)
        check_energy_output(dt_e, x.shape[0], where="dt_energy_fn")
    return (divergence - (grad_e * v).sum(1) - dt_e).detach()


def continuity_residual(
    field_fn: Callable[[Tensor], Tensor],
    energy_fn: EnergyFn,
    dt_energy_fn: EnergyFn,
    x: Tensor,
    dt_mean: float | None = None,
) -> Tensor:
    """The per-particle residual of (C): ``∇·v - ⟨∇E_t, v⟩ - (∂_t E_t - E_{p_t}[∂_t E_t])`` at x [n, d].

    Zero everywhere exactly when ``v`` transports ``p_t`` (e.g. the exact field); its spread over
    particles drawn from ``p_t`` measures how far a field is from exact transport, without a grid.
    ``dt_mean`` is ``E_{p_t}[∂_t E_t]``; by default it is estimated by the particle mean (x ~ p_t).

    Returns
    -------
    Tensor [n], detached.
    """
    _check_field_fns(field_fn, energy_fn, dt_energy_fn)
    rate = log_weight_rate(field_fn, energy_fn, dt_energy_fn, x)
    if dt_mean is None:
        with torch.enable_grad():
            dt_mean = float(dt_energy_fn(x.detach()).detach().mean())
    return rate + dt_mean


# --- SVGD -----------------------------------------------------------------------------------------


def svgd_direction(x: Tensor, score: Tensor, bandwidth: float | None = None) -> Tensor:
    """The SVGD update direction ``φ(x_i) = (1/n) Σ_j [k(x_j, x_i) s(x_j) + ∇_{x_j} k(x_j, x_i)]``.

    RBF kernel ``k(x, y) = exp(-|x - y|² / h)``, so ``∇_{x_j} k(x_j, x_i) = (2/h)(x_i - x_j) k``; the
    median heuristic sets ``h = med² / log(n + 1)`` with ``med`` the median pairwise distance.

    Parameters
    ----------
    x : Tensor [n, d]
        Particles.
    score : Tensor [n, d]
        ``∇ log p = -∇E`` at the particles.
    bandwidth : float, optional
        ``h``; the median heuristic when None.

    Returns
    -------
    Tensor [n, d].
    """
    check_points("x", x)
    if not isinstance(score, Tensor) or score.shape != x.shape:
        got = list(score.shape) if isinstance(score, Tensor) else type(score).__name__
        raise InvalidArgumentError(f"score must have the shape of x, {list(x.shape)}, got {got}")
    n = x.shape[0]
    sq = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # exact, no cancellation
    if bandwidth is None:
        off_diagonal = sq[~torch.eye(n, dtype=torch.bool, device=x.device)]
        med2 = float(off_diagonal.median()) if n > 1 else 1.0
        h = max(med2, 1e-12) / math.log(n + 1)
    else:
        h = float(check_positive("bandwidth", bandwidth))
    kernel = torch.exp(-sq / h)  # symmetric [n, n]
    drive = kernel @ score
    repulsion = (2.0 / h) * (x * kernel.sum(1, keepdim=True) - kernel @ x)
    return (drive + repulsion) / n


def svgd_step(
    position: Tensor,
    energy_fn: EnergyFn,
    *,
    step_size: float,
    bandwidth: float | None = None,
    grad: Tensor | None = None,
) -> Tensor:
    """One SVGD step ``x ← x + step_size · φ(x)`` towards ``p ∝ exp(-E)`` (see ``svgd_direction``).

    ``grad`` (``∇E`` at ``position``, [n, d]) can be passed to save the gradient evaluation.
    Returns the new positions [n, d].
    """
    check_points("position", position)
    check_positive("step_size", step_size)
    if grad is None:
        _check_energy_fn("energy_fn", energy_fn)
        _, grad = _energy_and_grad(energy_fn, position)
    return position + step_size * svgd_direction(position.detach(), -grad, bandwidth)


# --- importance weights ---------------------------------------------------------------------------


def ess(log_weight: Tensor) -> float:
    """Effective sample size ``(Σ w)² / Σ w²`` of self-normalised weights ``w = exp(log_weight)``, in [1, n].

    The one definition lives in ``pdviz.metrics.ess``; flows name it here too (docs/architecture.md).
    """
    return metrics.ess(log_weight)


def weighted_moments(x: Tensor, log_weight: Tensor) -> tuple[Tensor, Tensor]:
    """Self-normalised weighted mean [d] and covariance [d, d] of particles x [n, d] (float64).

    ``log_weight`` is [n], one log-weight per particle (finite or -Inf, at least one finite).
    """
    check_points("x", x)
    if not isinstance(log_weight, Tensor) or tuple(log_weight.shape) != (x.shape[0],):
        got = list(log_weight.shape) if isinstance(log_weight, Tensor) else type(log_weight).__name__
        raise InvalidArgumentError(f"log_weight must have shape [{x.shape[0]}] (one per row of x), got {got}")
    w = torch.softmax(log_weight.detach().to(torch.float64), 0)
    x = x.detach().to(torch.float64)
    mean = w @ x
    centred = x - mean
    return mean, (centred * w[:, None]).T @ centred


class FlowState(NamedTuple):
    """Particles of a flow.

    position: Tensor [n, d]; energy: Tensor [n] and grad: Tensor [n, d], ``E`` and ``∇E`` of the current
    target at the positions (cached, so that a PD move needs only ``∇E_new``); log_weight: Tensor [n]
    (zero unless the flow is weighted; self-normalised, so constants do not matter).
    """

    position: Tensor
    energy: Tensor
    grad: Tensor
    log_weight: Tensor


class FlowInfo(NamedTuple):
    """What a flow step cost and how it went.

    n_grad, n_energy: gradient and energy evaluations on the particles (the exact flow's grid energies are
    not counted); ess: effective sample size after the step; n_outside: particles that were off the grid
    (exact flow; they did not move); acceptance_rate: mean MALA acceptance (1.0 for ULA, SVGD, none).
    """

    n_grad: int
    n_energy: int
    ess: float
    n_outside: int
    acceptance_rate: float


def systematic_resample(state: FlowState, generator: torch.Generator | None = None) -> FlowState:
    """Resample particles by their weights (systematic: one uniform, n evenly spaced points on the CDF).

    Returns a state of n particles with ``log_weight`` reset to zero (cached energy/grad carried along).
    """
    _check_state(state)
    _check_generator(generator)
    n = state.position.shape[0]
    w = torch.softmax(state.log_weight.detach().to(torch.float64), 0)
    device = generator.device if generator is not None else "cpu"
    u0 = torch.rand((), generator=generator, dtype=torch.float64, device=device).to(w.device)
    u = (u0 + torch.arange(n, dtype=torch.float64, device=w.device)) / n
    index = torch.searchsorted(torch.cumsum(w, 0), u).clamp(max=n - 1)
    return FlowState(
        state.position[index], state.energy[index], state.grad[index], torch.zeros_like(state.log_weight)
    )


# --- flows as an init/step pair -------------------------------------------------------------------


def flow_init(position: Tensor, energy_fn: EnergyFn) -> FlowState:
    """Start a flow at ``position`` [n, d] on the target ``energy_fn`` (one gradient evaluation)."""
    check_points("position", position)
    _check_energy_fn("energy_fn", energy_fn)
    energy, grad = _energy_and_grad(energy_fn, position)
    log_weight = torch.zeros(position.shape[0], dtype=position.dtype, device=position.device)
    return FlowState(position.detach(), energy, grad, log_weight)


def n_corrections_for_budget(method: str, evals_per_step: int, correction: str = "ula") -> int:
    """Number of corrections K that makes an unweighted flow step cost ``evals_per_step`` gradient evaluations.

    See the module docstring: langevin with ULA costs ``K``, with MALA ``1 + K``; exact and svgd ``1 + K``;
    pd ``2 + K``.
    """
    check_choice("method", method, FLOWS, what="flow")
    check_choice("correction", correction, CORRECTIONS, what="correction")
    check_positive("evals_per_step", evals_per_step, integer=True)
    if method == "langevin" and correction == "ula":
        return evals_per_step
    fixed = 2 if method == "pd" else 1
    if evals_per_step < fixed:
        raise InvalidArgumentError(
            f"evals_per_step must be >= {fixed} for method {method!r} (its move costs {fixed}), got {evals_per_step}"
        )
    return evals_per_step - fixed


def _suggestion(method: str, step: float, correction_step_size: float) -> str:
    if method in ("pd", "exact"):
        return f"reduce step (now {step:g}) or correction_step_size (now {correction_step_size:g}), e.g. halve them"
    return (
        f"reduce correction_step_size (now {correction_step_size:g}), e.g. to {correction_step_size / 10:g}"
    )


def flow_step(
    state: FlowState,
    energy_old: EnergyFn,
    energy_new: EnergyFn,
    *,
    method: str = "pd",
    step: float = 1.0,
    n_corrections: int = 10,
    correction: str = "ula",
    correction_step_size: float = 1e-2,
    noise_scale: float | None = None,
    weighted: bool = False,
    generator: torch.Generator | None = None,
    grid: Grid | None = None,
    bandwidth: float | None = None,
    bound: float = 1e4,
    iteration: int | None = None,
) -> tuple[FlowState, FlowInfo]:
    """Carry particles of ``p_old ∝ exp(-E_old)`` to ``p_new ∝ exp(-E_new)``: a move, then corrections.

    Moves (``method``, registry ``FLOWS``):

    * ``"langevin"``: none; ``n_corrections`` ULA/MALA steps on ``E_new`` (unweighted ULA's first step
      moves with the cached ``∇E_old``, so K steps cost K evaluations, as in a persistent chain);
    * ``"pd"``: ``x ← x + step · (-∇_x (E_new - E_old))`` (``∇E_old`` from the cache), then corrections;
    * ``"exact"``: along the grid-solved field ``∇φ`` (``exact_move``: midpoint rule, 2-D, on ``grid``),
      then corrections;
    * ``"svgd"``: ``n_corrections`` SVGD steps on ``E_new`` of size ``correction_step_size``.

    Corrections use ``pdviz.samplers`` (``ula_step`` with ``noise_scale``, or ``mala_step``).
    With ``weighted=True`` each particle carries the exact change-of-variables log-weight of the move
    ``T(x) = x + v(x)`` (method.md §2)::

        log w ← log w + [-E_new(T x)] - [-E_old(x)] + log|det ∇T(x)|

    (``∇T = I - step ∇²ΔE`` for PD by autograd, from the grid field for the exact flow (``exact_move``),
    ``I`` for langevin: annealed importance sampling). MALA corrections keep valid weights valid (they
    leave ``p_new`` invariant); ULA corrections bias them. SVGD moves are not invertible per particle,
    so they cannot be weighted.

    Parameters
    ----------
    state : FlowState
        Particles with ``E_old`` and ``∇E_old`` cached (from ``flow_init`` or the previous step).
    energy_old, energy_new : callable
        ``x [n, d] -> [n]``.
    step : float
        Scale of the move (pd, exact).
    n_corrections : int
        Correction (or SVGD) steps after the move, >= 0.
    correction : {"ula", "mala"}
    correction_step_size : float
        ε of the corrections (and the SVGD step size).
    noise_scale : float, optional
        ULA noise std; default ``sqrt(correction_step_size)``.
    weighted : bool
        Carry importance weights (d <= 10; not for svgd).
    generator : torch.Generator, optional
    grid : Grid, optional
        Grid of the exact solve (default ``Grid(-5, 5, 128)``).
    bandwidth : float, optional
        SVGD kernel bandwidth (median heuristic by default).
    bound : float
        Particles with a coordinate beyond ±bound count as diverged.
    iteration : int, optional
        Time step index, named in a DivergenceError.

    Returns
    -------
    (FlowState, FlowInfo): the state caches ``E_new``, ``∇E_new`` at the new positions.

    Raises
    ------
    DivergenceError
        NaN/Inf or particles beyond ``bound``, naming ``iteration`` and a smaller step to try.
    """
    x = _check_state(state).position
    check_choice("method", method, FLOWS, what="flow")
    check_choice("correction", correction, CORRECTIONS, what="correction")
    check_positive("step", step)
    check_positive("n_corrections", n_corrections, integer=True, allow_zero=True)
    check_positive("correction_step_size", correction_step_size)
    check_positive("bound", bound)
    if noise_scale is not None:
        check_positive("noise_scale", noise_scale, allow_zero=True)
    _check_energy_fn("energy_old", energy_old)
    _check_energy_fn("energy_new", energy_new)
    _check_generator(generator)
    if not isinstance(weighted, bool):
        raise InvalidArgumentError(f"weighted must be True or False, got {weighted!r}")
    if grid is not None:
        _default_grid(grid)
    if iteration is not None and (isinstance(iteration, bool) or not isinstance(iteration, int)):
        raise InvalidArgumentError(f"iteration must be an int or None, got {iteration!r}")
    n, d = x.shape
    if weighted and method == "svgd":
        raise InvalidArgumentError(
            "weighted=True is not available for method 'svgd' (its move has no per-particle Jacobian)"
        )
    if weighted and d > MAX_WEIGHTED_DIM:
        raise InvalidArgumentError(
            f"weighted=True needs a d x d Jacobian per particle; supported for d <= {MAX_WEIGHTED_DIM}, got d = {d}"
        )
    if method == "exact" and d != 2:
        raise InvalidArgumentError(
            f"method 'exact' solves on a 2-D grid; particles must be [n, 2], got {list(x.shape)}"
        )

    suggestion = _suggestion(method, step, correction_step_size)
    n_grad, n_energy, n_outside = 0, 0, 0
    log_weight = state.log_weight

    # 1. the move T(x) = x + v(x), its log|det ∇T| when weighted
    log_det = None
    if method == "pd":
        if weighted:
            xg = x.detach().requires_grad_(True)
            e_new, g_new = _energy_and_grad(
                energy_new, xg, create_graph=True, where="energy_new", finite=False
            )
            e_old, g_old = _energy_and_grad(
                energy_old, xg, create_graph=True, where="energy_old", finite=False
            )
            # non-finite energies in a run are a divergence at this time step, not a bad argument
            check_finite_state(
                "energies", torch.cat([e_new, e_old]).detach(), iteration, suggestion=suggestion
            )
            v_graph = -step * (g_new - g_old)
            jac = torch.eye(d, dtype=x.dtype, device=x.device) + _jacobian_rows(v_graph, xg)
            v = v_graph.detach()
            log_det = torch.linalg.slogdet(jac.to(torch.float64))[1].to(x.dtype)
            n_grad += 2 + d
        else:
            e_new, g_new = _energy_and_grad(energy_new, x, where="energy_new", finite=False)
            check_finite_state("energies", e_new, iteration, suggestion=suggestion)
            v = -step * (g_new - state.grad)
            n_grad += 1
    elif method == "exact":
        move = exact_move(energy_old, energy_new, x, grid, step)
        v, n_outside = move.displacement, move.n_outside
        if weighted:
            jac = torch.eye(2, dtype=x.dtype, device=x.device) + move.jacobian
            log_det = torch.linalg.slogdet(jac.to(torch.float64))[1].to(x.dtype)
    else:
        v = torch.zeros_like(x)
        log_det = torch.zeros(n, dtype=x.dtype, device=x.device)
    y = (x + v).detach()
    check_finite_state("particle positions", y, iteration, bound=bound, suggestion=suggestion)
    if method == "langevin" and correction == "ula" and not weighted and n_corrections > 0:
        # a persistent ULA chain spends one evaluation per step: its first step moves with the cached
        # gradient (of E_old, one time step behind, an O(ε·ΔE) drift difference) and every step then
        # evaluates E_new where it lands, so the returned cache is current
        energy, grad = state.energy, state.grad
    else:
        energy, grad = _energy_and_grad(energy_new, y, where="energy_new", finite=False)
        n_grad += 1
    if weighted:
        log_weight = log_weight + (state.energy - energy) + log_det
        check_finite_state("log-weights", log_weight, iteration, suggestion=suggestion)

    # 2. corrections on E_new (SVGD steps for method "svgd")
    accepted = []
    current = samplers.State(y, energy, grad)
    if method == "svgd":
        for _ in range(n_corrections):
            position = svgd_step(
                current.position,
                energy_new,
                step_size=correction_step_size,
                bandwidth=bandwidth,
                grad=current.grad,
            )
            check_finite_state("particle positions", position, iteration, bound=bound, suggestion=suggestion)
            energy, grad = _energy_and_grad(energy_new, position, where="energy_new", finite=False)
            current = samplers.State(position, energy, grad)
            n_grad += 1
    elif correction == "ula":
        # K steps checked once (samplers.ula_steps); the positions are judged after the K steps, within
        # the same time step: a NaN stays NaN, and bound (1e3 by default) is far beyond any K-step excursion
        current = samplers.ula_steps(
            current,
            energy_new,
            n_corrections,
            step_size=correction_step_size,
            noise_scale=noise_scale,
            generator=generator,
        )
        n_grad += n_corrections
        check_finite_state(
            "particle positions", current.position, iteration, bound=bound, suggestion=suggestion
        )
    else:
        for _ in range(n_corrections):
            current, info = samplers.mala_step(
                current,
                energy_new,
                step_size=correction_step_size,
                noise_scale=noise_scale,
                generator=generator,
            )
            n_grad += int(info.n_grad)
            n_energy += int(info.n_energy)
            accepted.append(float(info.acceptance_rate))
            check_finite_state(
                "particle positions", current.position, iteration, bound=bound, suggestion=suggestion
            )

    for quantity, values in (
        ("energies at the particles", current.energy),
        ("energy gradients", current.grad),
    ):
        check_finite_state(quantity, values, iteration, suggestion=suggestion)
    new_state = FlowState(
        current.position.detach(), current.energy.detach(), current.grad.detach(), log_weight
    )
    info = FlowInfo(
        n_grad=n_grad,
        n_energy=n_energy,
        ess=ess(log_weight),
        n_outside=n_outside,
        acceptance_rate=float(np.mean(accepted)) if accepted else 1.0,
    )
    return new_state, info


# --- the tracking experiment ----------------------------------------------------------------------

# the options of flow_step that track passes through (track sets generator, grid, iteration itself)
_FLOW_STEP_OPTIONS = (
    "step",
    "n_corrections",
    "correction",
    "correction_step_size",
    "noise_scale",
    "weighted",
    "bandwidth",
    "bound",
)


class TrackHistory(NamedTuple):
    """A recorded tracking run (``track``).

    positions: Tensor [T, n, 2]; times: Tensor [T] (t of each record, t_0 = 0); kl: Tensor [T], binned
    ``KL(q̂_t ‖ p_t)`` (``metrics.kl_to_grid``; for weighted flows of a systematic resample);
    n_grad: Tensor [T], cumulative gradient evaluations on the particles (the initial exact samples
    are free); ess: Tensor [T]; log_weights: Tensor [T, n]; n_outside: Tensor [T] (cumulative count of
    particles left unmoved off the grid by the exact flow).
    """

    positions: Tensor
    times: Tensor
    kl: Tensor
    n_grad: Tensor
    ess: Tensor
    log_weights: Tensor
    n_outside: Tensor


def _moving(moving_energy: Any) -> Any:
    from pdviz import energies

    if isinstance(moving_energy, str):
        check_choice("moving_energy", moving_energy, energies.MOVING_ENERGIES, what="moving energy")
        return energies.get(moving_energy)
    if not (callable(moving_energy) and hasattr(moving_energy, "at")):
        raise InvalidArgumentError(
            "moving_energy must be a name in pdviz.energies.MOVING_ENERGIES or a MovingEnergy, "
            f"got {type(moving_energy).__name__}"
        )
    return moving_energy


def track(
    moving_energy: Any,
    method: str,
    *,
    n_particles: int = 1000,
    n_steps: int = 50,
    evals_per_step: int | None = None,
    grad_budget_per_step: int | None = None,
    seed: int = 0,
    grid: Grid | None = None,
    record_every: int = 1,
    bins: int = 50,
    resample_below: float | None = 0.5,
    progress: bool = False,
    **flow_kwargs: Any,
) -> TrackHistory:
    """The tracking experiment: exact samples of ``p_0`` carried along ``E(·, t)``, t = 0 → 1.

    For k = 0 .. n_steps-1 the particles step from ``E(·, t_k)`` to ``E(·, t_{k+1})``, ``t_k = k / n_steps``,
    with ``flow_step(method=...)``. Every method spends the same number of gradient evaluations per time
    step: ``evals_per_step`` (default 10) sets ``n_corrections`` by ``n_corrections_for_budget`` unless
    ``n_corrections`` is given explicitly (then ``n_grad`` records what was spent; weighted PD steps also
    spend ``1 + d`` evaluations on the Jacobian, recorded in ``n_grad`` but not taken from the corrections). Records positions,
    the binned KL to the exact ``p_t`` (``metrics.kl_to_grid`` on ``grid``, ``bins`` per axis), the
    cumulative ``n_grad`` and the ESS. Weighted flows resample (systematic) when ESS < resample_below · n.

    Parameters
    ----------
    moving_energy : str or MovingEnergy
        A name in ``pdviz.energies.MOVING_ENERGIES`` or an object with ``__call__(x, t)`` and ``.at(t)``.
    method : str
        A name in ``FLOWS``.
    n_particles, n_steps : int
    evals_per_step : int, optional
        Gradient evaluations per time step (``grad_budget_per_step`` is the same argument, the name used
        in docs/architecture.md).
    seed : int
        Seeds the initial samples and every step (same seed, same result).
    grid : Grid, optional
        For the initial samples, the KL and the exact solve; default ``Grid(-5, 5, 128)``.
    record_every : int
        Record every this many steps (the first and the last step are always recorded).
    bins : int
        Bins per axis of the KL.
    resample_below : float or None
        ESS fraction below which weighted particles are resampled; None never resamples.
    progress : bool
        tqdm progress bar.
    **flow_kwargs
        Passed to ``flow_step`` (step, correction, correction_step_size, noise_scale, weighted, ...).

    Returns
    -------
    TrackHistory
    """
    from tqdm.auto import tqdm

    moving = _moving(moving_energy)
    check_choice("method", method, FLOWS, what="flow")
    check_positive("n_particles", n_particles, integer=True)
    check_positive("n_steps", n_steps, integer=True)
    check_positive("record_every", record_every, integer=True)
    check_positive("bins", bins, integer=True)
    if (
        evals_per_step is not None
        and grad_budget_per_step is not None
        and evals_per_step != grad_budget_per_step
    ):
        raise InvalidArgumentError(
            f"evals_per_step ({evals_per_step}) and grad_budget_per_step ({grad_budget_per_step}) are the same "
            "argument; give one"
        )
    budget = evals_per_step if evals_per_step is not None else grad_budget_per_step
    budget = check_positive("evals_per_step", 10 if budget is None else budget, integer=True)
    for key in ("generator", "grid", "iteration", "method", "state", "energy_old", "energy_new"):
        if key in flow_kwargs:
            raise InvalidArgumentError(f"track sets {key!r} itself; do not pass it in flow_kwargs")
    if "n_corrections" not in flow_kwargs:
        flow_kwargs["n_corrections"] = n_corrections_for_budget(
            method, budget, flow_kwargs.get("correction", "ula")
        )
    if resample_below is not None:
        check_range("resample_below", resample_below, 0.0, 1.0)
    unknown = sorted(set(flow_kwargs) - set(_FLOW_STEP_OPTIONS))
    if unknown:
        raise InvalidArgumentError(
            f"track got unknown flow_step options {', '.join(unknown)}; valid: {', '.join(_FLOW_STEP_OPTIONS)}"
        )
    grid = _default_grid(grid)
    weighted = bool(flow_kwargs.get("weighted", False))

    generator = samplers.make_generator(seed)
    x0 = grid.sample(moving.at(0.0), n_particles, generator=generator)
    state = flow_init(x0, moving.at(0.0))

    def measure(state: FlowState, t: float) -> float:
        x = state.position
        if weighted:
            x = systematic_resample(state, generator).position
        return float(metrics.kl_to_grid(x, moving.at(t), grid=grid, bins=bins))

    records: dict[str, list] = {k: [] for k in TrackHistory._fields}

    def record(state: FlowState, t: float, n_grad: int, n_outside: int) -> None:
        records["positions"].append(state.position.clone())
        records["times"].append(t)
        records["kl"].append(measure(state, t))
        records["n_grad"].append(n_grad)
        records["ess"].append(ess(state.log_weight))
        records["log_weights"].append(state.log_weight.clone())
        records["n_outside"].append(n_outside)

    total_grad, total_outside = 0, 0
    record(state, 0.0, 0, 0)
    for k in tqdm(range(n_steps), disable=not progress, desc=f"track {method}"):
        t_old, t_new = k / n_steps, (k + 1) / n_steps
        state, info = flow_step(
            state,
            moving.at(t_old),
            moving.at(t_new),
            generator=generator,
            grid=grid,
            iteration=k,
            method=method,
            **flow_kwargs,
        )
        total_grad += info.n_grad
        total_outside += info.n_outside
        if weighted and resample_below is not None and info.ess < resample_below * n_particles:
            state = systematic_resample(state, generator)
        if (k + 1) % record_every == 0 or k + 1 == n_steps:
            record(state, t_new, total_grad, total_outside)

    return TrackHistory(
        positions=torch.stack(records["positions"]),
        times=torch.tensor(records["times"], dtype=torch.float64),
        kl=torch.tensor(records["kl"], dtype=torch.float64),
        n_grad=torch.tensor(records["n_grad"], dtype=torch.int64),
        ess=torch.tensor(records["ess"], dtype=torch.float64),
        log_weights=torch.stack(records["log_weights"]),
        n_outside=torch.tensor(records["n_outside"], dtype=torch.int64),
    )
