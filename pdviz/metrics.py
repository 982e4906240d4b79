"""Measurements of particles and energies: likelihood on a grid, binned KL, MMD², ESS, mode weights.

All results are Python floats (or float64 tensors for per-mode shares) computed in float64.

- ``log_likelihood``: ``mean_i(-E(x_i)) - log Z``, with ``Z`` the grid normaliser (``docs/method.md`` §6).
- ``kl_to_grid``: ``KL(q̂ ‖ p) = Σ_b q̂_b log(q̂_b / p_b)`` over a ``bins × bins`` partition of the grid box,
  ``q̂`` the particles' histogram and ``p_b`` the grid mass of bin ``b``. It is biased upwards by the finite
  sample; ``kl_floor`` measures that bias for exact samples of the same size.
- ``mmd2``: the unbiased estimator of the squared maximum mean discrepancy with a sum of Gaussian kernels.
- ``ess``: ``(Σ w)² / Σ w²`` from log-weights.
- ``mode_weights`` / ``grid_mode_weights`` / ``mode_weight_spread``: the share of points (or of the grid
  mass) nearest each mode centre, and the range of those shares.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from pdviz.errors import MAX_GRID, InvalidArgumentError, check_energy_output, check_points, check_positive
from pdviz.grid import Grid

Tensor = torch.Tensor
EnergyOrGrid = Callable[[Tensor], Tensor] | Tensor


def _grid(grid: Grid | None) -> Grid:
    # docs/method.md §6: exact likelihoods by normalising exp(-E) on a 200 × 200 grid over [-5, 5]².
    if grid is None:
        return Grid(-5.0, 5.0, 200)
    if not isinstance(grid, Grid):
        raise InvalidArgumentError(f"grid must be a pdviz.grid.Grid or None, got {type(grid).__name__}")
    return grid


def log_likelihood(energy_fn: Callable[[Tensor], Tensor], x: Tensor, grid: Grid | None = None) -> float:
    """Mean log-likelihood of points under ``p = exp(-E) / Z``, ``Z`` normalised on the grid.

    ``mean_i(-E(x_i)) - log Z``, with ``log Z = log Σ_cells exp(-E(c)) h²``.

    Parameters
    ----------
    energy_fn : callable
        ``x [n, 2] -> [n]``.
    x : Tensor [n, 2]
        Held-out points (e.g. fresh dataset samples), finite.
    grid : Grid, optional
        Default ``Grid(-5, 5, 200)``. Mass outside its box is ignored, so the box must hold the model.

    Returns
    -------
    float
        In nats per point. For the exact density of a dataset it estimates minus its entropy
        (``-ENTROPY["8gaussians"] ≈ -2.83``); no model beats that on held-out data, up to noise.
    """
    check_points("x", x, dim=2)
    grid = _grid(grid)
    with torch.no_grad():
        # check each chunk before concatenating, so a wrong output shape is named, not a torch.cat error
        energy = torch.cat([check_energy_output(energy_fn(c), c.shape[0]) for c in torch.split(x, 20000)])
    check_grid_holds(grid, x, energy_fn)
    return float(-energy.to(torch.float64).mean()) - grid.log_z(energy_fn)


def check_grid_holds(
    grid: Grid, x: Tensor | None, energy_fn: Callable[[Tensor], Tensor] | None = None
) -> float:
    """Refuse a grid whose box misses most of the points ``x`` [n, 2] (a log-likelihood there is
    meaningless) and warn when it misses more than 1 %; with ``energy_fn``, estimate the share of the
    model's mass outside the box (:meth:`Grid.outside_mass`), warn above 1 % with the number and the
    log-likelihood's excess ``-log(1 - share)``, and return it (0 without ``energy_fn``)."""
    outside = 0.0 if x is None else float(((x < grid.low) | (x > grid.high)).any(1).double().mean())
    if outside > 0.01:
        text = f"{outside:.1%} of the points lie outside the grid's box [{grid.low:g}, {grid.high:g}]²"
        if outside > 0.5:
            raise InvalidArgumentError(f"{text}: the grid misses the data; use a grid that holds it")
        warnings.warn(f"{text}: their log-likelihood uses the box's edge values", stacklevel=2)
    if energy_fn is None:
        return 0.0
    try:
        missing = grid.outside_mass(energy_fn)
    except InvalidArgumentError:  # an energy undefined outside the box: nothing to estimate there
        return 0.0
    if missing > 0.01:
        warnings.warn(
            f"{missing:.1%} of the model's mass lies outside the grid's box [{grid.low:g}, {grid.high:g}]², "
            f"beyond its outermost cells (estimated on a grid three times as wide): log Z misses it, so the "
            f"log-likelihood is about {-math.log1p(-missing):.3f} nats too high; use a larger box",
            stacklevel=2,
        )
    return missing


def _kl(counts: Tensor, p: Tensor) -> float:
    """``Σ_b q_b log(q_b / p_b)`` over bins with ``q_b > 0``; ``p_b`` floored at the smallest float64."""
    q = counts.reshape(-1) / counts.sum()
    p = p.reshape(-1).clamp_min(torch.finfo(torch.float64).tiny)
    m = q > 0
    return float((q[m] * (q[m].log() - p[m].log())).sum())


def kl_to_grid(x: Tensor, energy_fn: EnergyOrGrid, grid: Grid | None = None, bins: int = 50) -> float:
    """Binned ``KL(q̂ ‖ p)`` between particles and the grid density of an energy.

    The grid box is cut into ``bins × bins`` equal squares; ``q̂_b`` is the fraction of particles in square
    ``b`` and ``p_b`` the grid mass of that square (exact for the piecewise-constant grid density, see
    :meth:`Grid.bin_probabilities`). ``KL = Σ_{q̂_b > 0} q̂_b log(q̂_b / p_b)``.

    Particles outside the box are counted in the nearest edge square (coordinates clamped), so every
    particle counts. Squares where ``p_b`` underflows to 0 use the smallest float64 (~2e-308) instead,
    which gives a large but finite KL.

    Parameters
    ----------
    x : Tensor [n, 2]
        Particles, finite.
    energy_fn : callable or Tensor [size, size]
        The target energy, or its grid energies from ``grid.energy(energy_fn)`` (reused across calls).
    grid : Grid, optional
        Default ``Grid(-5, 5, 200)``.
    bins : int
        Squares per side, >= 1.

    Returns
    -------
    float
        >= 0. Even exact samples give about ``(occupied bins - 1) / (2 n)``: compare with :func:`kl_floor`.
    """
    grid = _grid(grid)
    check_points("x", x, dim=2)
    check_positive("bins", bins, integer=True, high=MAX_GRID)
    return _kl(grid.bin_counts(x, bins), grid.bin_probabilities(energy_fn, bins))


def kl_floor(
    energy_fn: EnergyOrGrid,
    n: int,
    grid: Grid | None = None,
    bins: int = 50,
    repeats: int = 5,
    generator: torch.Generator | None = None,
) -> float:
    """The finite-sample floor of :func:`kl_to_grid`: its mean over ``repeats`` sets of ``n`` exact samples.

    Samples come from :meth:`Grid.sample` (exact for the grid density). Rule of thumb: for ``n`` large
    against the number of occupied bins B, ``2 n KL`` is roughly χ² with ``B - 1`` degrees of freedom, so
    the floor is ``≈ (B - 1) / (2 n)`` (smaller when many bins expect fewer than one particle). A sampler
    whose KL sits at this floor is indistinguishable from exact at this ``n`` and ``bins``.

    ``generator`` defaults to a fresh one seeded with 0, so the floor is reproducible.
    """
    grid = _grid(grid)
    check_positive("bins", bins, integer=True, high=MAX_GRID)
    check_positive("n", n, integer=True)
    check_positive("repeats", repeats, integer=True, high=1000)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    energy = grid.as_energy(energy_fn)  # evaluate once, reuse for every repeat
    p = grid.bin_probabilities(energy, bins)
    kls = [_kl(grid.bin_counts(grid.sample(energy, n, generator=generator), bins), p) for _ in range(repeats)]
    return sum(kls) / repeats


def mmd2(
    x: Tensor, y: Tensor, bandwidths: Sequence[float] = (0.1, 0.3, 1.0, 3.0), *, chunk: int = 2048
) -> float:
    """Unbiased squared maximum mean discrepancy with ``k(a, b) = Σ_h exp(-|a - b|² / (2 h²))``.

        MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (n(n-1))
                 - 2 Σ_{i,j} k(x_i, y_j) / (mn)

    Its expectation is the population MMD², which is 0 exactly when the two laws agree; single values can
    be slightly negative. Kernel matrices are built in ``chunk × chunk`` blocks (memory ~``chunk²`` floats),
    so 10 000 points against 10 000 fit easily; the cost is O((m + n)² · len(bandwidths)) exponentials
    (10 000 vs 10 000: ~15 s on one busy CPU core; 1000 vs 1000: ~0.1 s).

    Parameters
    ----------
    x : Tensor [m, d], m >= 2
    y : Tensor [n, d], n >= 2
    bandwidths : sequence of float > 0
        The kernel widths ``h``.
    chunk : int
        Rows per block.
    """
    check_points("x", x)
    check_points("y", y, dim=x.shape[1])
    if min(x.shape[0], y.shape[0]) < 2:
        raise InvalidArgumentError(
            f"x and y must hold at least 2 points each, got {x.shape[0]} and {y.shape[0]}"
        )
    widths = [bandwidths] if isinstance(bandwidths, (int, float)) else bandwidths
    hs = [float(check_positive("bandwidths", h)) for h in widths]
    if not hs:
        raise InvalidArgumentError("bandwidths must hold at least one bandwidth > 0, got none")
    x, y = x.detach().to(torch.float64), y.detach().to(torch.float64)
    m, n = x.shape[0], y.shape[0]
    # k(a, a) = 1 per bandwidth: remove the diagonal from the within-sample sums.
    kxx = _kernel_sum(x, x, hs, chunk, symmetric=True) - m * len(hs)
    kyy = _kernel_sum(y, y, hs, chunk, symmetric=True) - n * len(hs)
    kxy = _kernel_sum(x, y, hs, chunk)
    return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2 * kxy / (m * n)


def _kernel_sum(a: Tensor, b: Tensor, hs: list[float], chunk: int, symmetric: bool = False) -> float:
    """``Σ_{i,j} Σ_h exp(-|a_i - b_j|² / (2 h²))`` over ``chunk × chunk`` blocks.

    With ``symmetric`` (``a is b``) only blocks on or above the diagonal are built, the others counted twice.
    """
    total = 0.0
    a_blocks = torch.split(a, chunk)
    b_blocks = a_blocks if symmetric else torch.split(b, chunk)
    for i, rows in enumerate(a_blocks):
        r2 = rows.square().sum(dim=1)[:, None]
        for j in range(i if symmetric else 0, len(b_blocks)):
            cols = b_blocks[j]
            d2 = (r2 + cols.square().sum(dim=1)[None, :] - 2 * rows @ cols.T).clamp_min_(0.0)
            block = sum(float(torch.mul(d2, -1.0 / (2 * h * h)).exp_().sum()) for h in hs)
            total += block if (not symmetric or i == j) else 2 * block
    return total


def ess(log_weights: Tensor) -> float:
    """Effective sample size ``(Σ w)² / Σ w²`` of weights ``w = exp(log_weights)`` [n], in [1, n].

    Computed as ``exp(2 logsumexp(lw) - logsumexp(2 lw))``, which never overflows. Entries of ``-inf``
    are zero weights; at least one weight must be positive.
    """
    lw = torch.as_tensor(log_weights).detach().to(torch.float64)
    empty = lw.ndim != 1 or lw.numel() == 0
    if empty or torch.isnan(lw).any() or (lw == math.inf).any() or (lw == -math.inf).all():
        raise InvalidArgumentError(
            f"log_weights must be a non-empty 1-D tensor without NaN or +Inf and not all -Inf, got {lw.tolist()[:5]}"
        )
    value = math.exp(2 * float(torch.logsumexp(lw, 0)) - float(torch.logsumexp(2 * lw, 0)))
    return min(max(value, 1.0), float(lw.numel()))  # rounding can step just outside [1, n]


def mode_weights(x: Tensor, centres: Tensor, weights: Tensor | None = None) -> Tensor:
    """Share of the points x [n, d] whose nearest centre is each of ``centres`` [k, d]: [k] float64, sum 1
    (with ``weights`` [n], the share of their total weight)."""
    check_points("x", x)
    check_points("centres", centres, dim=x.shape[1])
    x = x.detach().cpu().to(torch.float64)
    nearest = torch.cdist(x, centres.to(torch.float64)).argmin(dim=1)
    w = torch.ones(x.shape[0], dtype=torch.float64) if weights is None else weights.detach().cpu().double()
    return torch.bincount(nearest, weights=w, minlength=centres.shape[0]) / w.sum()


def grid_mode_weights(grid: Grid, energy: EnergyOrGrid, centres: Tensor) -> Tensor:
    """The model's mass nearest each centre [k, 2]: ``w_k = Σ_{cells c nearest c_k} p(c) h²``, [k] float64.

    ``energy`` is a callable or its precomputed grid energies [size, size]; each cell counts for the
    centre nearest its centre point, so ``w`` sums to 1 (mass outside the box is ignored).
    """
    nearest = torch.cdist(grid.points.double(), centres.double()).argmin(1)
    probs = grid.cell_probabilities(energy).reshape(-1)
    return torch.zeros(centres.shape[0], dtype=torch.float64).index_add_(0, nearest, probs)


def mode_weight_spread(weights: Tensor) -> float:
    """``max - min`` of mode weights [k] (from :func:`mode_weights`): 0 when every mode holds the same share."""
    return float(weights.max() - weights.min())


# --- the lag of the negatives behind the model they are used for --------------------------------------

LAG_BINS = 25  # squares per side of the lag's histogram: 0.4 wide on [-5, 5]², about a mode's width
LAG_REPEATS = 20  # exact-sample sets behind the lag's floor: its own noise is the spread / sqrt(20)
FLOOR_DRAWS = 5  # exact-sample sets behind the gradient error's floor (one backward pass over n points each)


def lag(
    x: Tensor, energy: EnergyOrGrid, grid: Grid, weights: Tensor | None = None, bins: int = LAG_BINS
) -> float:
    """How far negatives ``x`` [n, 2] lag behind the model ``p ∝ exp(-E)``: binned KL minus its floor.

    ``lag = KL(q̂ ‖ p) - floor``, with ``q̂`` the (``weights``-weighted, self-normalised) histogram of ``x`` on
    ``bins × bins`` squares of the grid box and ``floor`` = :func:`kl_floor` for ``n`` exact samples of the
    same density in the same bins (``n`` = the weights' ESS when weighted; ``LAG_REPEATS`` sets). Exact samples give 0 up to the
    floor's spread, about ``sqrt(2 B) / (2 n)`` for ``B`` occupied bins; a chain that has not caught up with
    a model that moved gives more. With weights the floor of ESS exact samples is approximate (a weighted
    histogram is noisier in the tails): importance-weighted exact samples read 0.01-0.05 above 0.
    ``energy``: a callable or its grid energies [size, size].
    """
    energy = grid.as_energy(energy)
    counts = grid.bin_counts(x, bins, weights)
    n = x.shape[0] if weights is None else round(ess(weights.detach().double().log()))
    floor = kl_floor(energy, n, grid, bins, repeats=LAG_REPEATS)
    return _kl(counts, grid.bin_probabilities(energy, bins)) - floor


def _parameter_gradient(model: Callable, params: list, x: Tensor, w: Tensor, chunk: int = 4096) -> Tensor:
    """``Σ_i w_i ∇θ E(x_i)`` as one flat float64 vector, over ``chunk``-point passes (bounded memory)."""
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64, device=x.device)
    for xs, ws in zip(x.split(chunk), w.split(chunk)):
        with torch.enable_grad():
            grads = torch.autograd.grad((ws.to(x.dtype) * model(xs)).sum(), params, allow_unused=True)
        flat = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        total += torch.cat([g.reshape(-1) for g in flat]).double()
    return total


class GradientError(NamedTuple):
    """:func:`gradient_error`'s result: relative error and cosine of the negatives' gradient, and the floor:
    the relative error that as many exact samples of the model give (fixed-seed draws)."""

    error: float
    cosine: float
    floor: float


def gradient_error(
    model: torch.nn.Module, data: Tensor, negatives: Tensor, grid: Grid,
    weights: Tensor | None = None, energy: Tensor | None = None, mass: float = 1 - 1e-9,
) -> GradientError:  # fmt: skip
    """The error of the gradient that negatives give, against the exact maximum-likelihood gradient.

    A strategy estimates ``g = E_data[∇θ E] - E_pθ[∇θ E]`` by ``ĝ = mean_i ∇θ E(data_i) - Σ_j w_j ∇θ E(neg_j)``
    (the gradient of :func:`pdviz.strategies.contrastive_loss`). On the grid the model term is a quadrature,
    ``Σ_c p_c ∇θ E(c)`` with ``p_c`` the cell masses (the cells holding all but ``1 - mass`` of it; the
    rest changes ``g`` by less than ``(1 - mass) max |∇θ E|``), on the same data batch. Returns
    ``|ĝ - g| / |g|``, ``cos(ĝ, g)`` and the floor: the root-mean-square relative error of ``FLOOR_DRAWS``
    sets of ``n`` exact samples of the grid density (``n`` = the weights' ESS when weighted), which falls as
    ``1/sqrt(n)`` (one set alone scatters by a factor of two).

    ``model`` is an ``nn.Module`` ``x [m, 2] -> [m]`` whose parameters that require grad are θ;
    ``data`` [b, 2]; ``negatives`` [n, 2]; ``weights`` [n] self-normalised or None (``1/n``);
    ``energy`` the model's grid energies [size, size] if already computed.
    """
    params, dev = [p for p in model.parameters() if p.requires_grad], negatives.device
    energy = grid.energy(model) if energy is None else energy
    p, order = grid.cell_probabilities(energy).reshape(-1).sort(descending=True)
    keep = int(torch.searchsorted(p.cumsum(0), torch.tensor(mass, dtype=p.dtype))) + 1

    def mean_gradient(x: Tensor, w: Tensor | None = None) -> Tensor:
        w = torch.full((x.shape[0],), 1.0 / x.shape[0]) if w is None else w
        return _parameter_gradient(model, params, x.detach().to(dev), w.detach().to(dev))

    g_data = mean_gradient(data)
    g_exact = g_data - mean_gradient(grid.points[order[:keep]], p[:keep] / p[:keep].sum())
    norm = float(g_exact.norm())

    def error(g: Tensor) -> float:
        return float((g - g_exact).norm()) / norm if norm > 0 else math.inf

    g_est = g_data - mean_gradient(negatives, weights)
    n = negatives.shape[0] if weights is None else round(ess(weights.detach().double().log()))
    gen = torch.Generator().manual_seed(0)
    draws = [grid.sample(energy, n, generator=gen) for _ in range(FLOOR_DRAWS)]
    floor = math.sqrt(sum(error(g_data - mean_gradient(x)) ** 2 for x in draws) / FLOOR_DRAWS)
    cosine = float(g_est @ g_exact) / max(float(g_est.norm()) * norm, torch.finfo(torch.float64).tiny)
    return GradientError(error(g_est), cosine, floor)


def mode_lag(model_weights: Tensor, negative_weights: Tensor) -> tuple[Tensor, Tensor, float]:
    """Do the negatives linger in the modes the model has been emptying? From the lag meter's mode weights.

    ``model_weights``, ``negative_weights``: [T, k], the model's and the negatives' shares of k modes at T
    successive evaluations. Returns ``excess`` [T-1, k] = negatives' share - model's share at evaluations
    1..T-1, ``change`` [T-1, k] = the model's share there minus at the evaluation before, and their Pearson
    correlation over all entries: negative when the negatives still sit where the model's mass just left.
    """
    excess = (negative_weights - model_weights)[1:].double()
    change = (model_weights[1:] - model_weights[:-1]).double()
    a, b = excess.reshape(-1) - excess.mean(), change.reshape(-1) - change.mean()
    return excess, change, float(a @ b / max(float(a.norm() * b.norm()), torch.finfo(torch.float64).tiny))
