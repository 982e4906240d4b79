"""Analytic energies: gradients, normalisation, exact moments, time derivatives and exact transport."""

import math

import pytest
import torch

from pdviz import datasets, energies
from pdviz.errors import InvalidArgumentError, UnknownNameError
from pdviz.grid import Grid

FIXED = sorted(energies.ENERGIES)
MOVING = sorted(energies.MOVING_ENERGIES)


def _points(n=7, seed=0, dtype=torch.float64):
    return 2.0 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _fd_grad(fn, x, eps=1e-6):
    cols = []
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = eps
        cols.append((fn(x + e) - fn(x - e)) / (2 * eps))
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("name", FIXED + MOVING)
def test_value_and_grad_matches_finite_differences(name):
    fn = energies.get(name)
    x = _points()
    if name in energies.MOVING_ENERGIES:
        e, g = energies.value_and_grad(fn, x, 0.3)
        ref = _fd_grad(lambda y: fn(y, 0.3), x)
        assert torch.allclose(e, fn(x, 0.3))
    else:
        e, g = energies.value_and_grad(fn, x)
        ref = _fd_grad(fn, x)
        assert torch.allclose(e, fn(x))
    assert e.shape == (7,) and g.shape == (7, 2)
    assert not e.requires_grad and not g.requires_grad
    assert torch.allclose(g, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", FIXED + MOVING)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(name, dtype):
    fn = energies.get(name)
    x = _points(dtype=dtype)
    out = fn(x, 0.5) if name in energies.MOVING_ENERGIES else fn(x)
    assert out.dtype == dtype and out.shape == (7,) and torch.isfinite(out).all()


def test_value_and_grad_with_requires_grad_input_and_constant_energy():
    x = _points().requires_grad_(True)
    e, g = energies.value_and_grad(energies.get("gaussian"), x)
    assert torch.allclose(g, x.detach()) and x.grad is None
    e, g = energies.value_and_grad(lambda y: torch.zeros(y.shape[0]), x)
    assert torch.equal(g, torch.zeros(7, 2, dtype=torch.float64))


def test_value_and_grad_bad_output():
    # the one class of bad input left at this level: an energy that does not return one value per point
    with pytest.raises(InvalidArgumentError, match=r"shape \[7\]"):
        energies.value_and_grad(lambda y: y.sum(), _points())


def test_value_and_grad_with_a_graph_and_dt_differentiable_in_x():
    # create_graph: the gradient keeps its graph (a Hessian row of |x|²/2 is the identity)
    x = _points().requires_grad_(True)
    _, g = energies.value_and_grad(energies.get("gaussian"), x, create_graph=True)
    (row,) = torch.autograd.grad(g[:, 0].sum(), x)
    assert torch.equal(row, torch.tensor([1.0, 0.0], dtype=torch.float64).expand(7, 2))
    # the autograd ∂_t E keeps its dependence on x: ∇_x ∂_t E of the translating Gaussian is m0 - m1
    fn = energies.get("translating_gaussian")
    dt = energies.MovingEnergy.dt(fn, x, 0.3)
    (grad_dt,) = torch.autograd.grad(dt.sum(), x)
    torch.testing.assert_close(grad_dt, (fn.m0 - fn.m1).expand(7, 2))


# --- normalisation and moments against the grid ----------------------------------------------------

GRID = Grid(-5.0, 5.0, 200, dtype=torch.float64)


@pytest.mark.parametrize(
    "name, log_z, tol",
    [
        ("8gaussians", 0.0, 1e-6),  # exact normalised mixture
        ("rings", 0.0, 1e-6),  # exact normalised rings density
        ("banana", 0.0, 2e-3),  # ~0.1 % of the mass outside the box
        ("funnel", 0.0, 7e-3),  # ~0.5 % outside, in the wide mouth
        ("gaussian", math.log(2 * math.pi), 2e-6),  # 2 Φ(-5) per axis = 1.1e-6 outside the box
    ],
)
def test_log_normalisers(name, log_z, tol):
    assert abs(GRID.log_z(energies.get(name)) - log_z) < tol


def test_correlated_gaussian_moments_on_grid():
    fn = energies.get("correlated_gaussian", mean=(0.3, -0.2), cov=((1.0, 0.6), (0.6, 0.8)))
    p = GRID.cell_probabilities(fn)
    pts = GRID.points.reshape(200, 200, 2)
    mean = (p[..., None] * pts).sum((0, 1))
    d = pts - mean
    cov = torch.einsum("ij,ija,ijb->ab", p, d, d)
    assert torch.allclose(mean, fn.mean, atol=1e-4)  # tails beyond the box: ~1e-6
    assert torch.allclose(cov, fn.cov, atol=1e-3)  # midpoint rule: O(h²/12) = 2e-4
    assert abs(GRID.log_z(fn) - fn.log_z) < 1e-5  # tails beyond the box


def test_banana_and_double_well_moments():
    # The x₂ variance lives in the tails (x₂ grows like x₁²), so use a box that holds them.
    b = energies.get("banana")
    big = Grid(-12.0, 12.0, 400, dtype=torch.float64)
    p = big.cell_probabilities(b)
    pts = big.points.reshape(400, 400, 2)
    mean = torch.einsum("ij,ija->a", p, pts)
    var = torch.einsum("ij,ija->a", p, pts.square())
    assert torch.allclose(mean, b.mean, atol=1e-4)  # the |x₁| > 4.9 tail reaches x₂ > 12: ~1e-5
    assert torch.allclose(var, torch.diagonal(b.cov), rtol=2e-3)
    w = GRID.cell_probabilities(energies.get("double_well"))
    assert abs(w[:, :100].sum().item() - 0.5) < 1e-12  # symmetric wells hold equal mass


def test_8gaussians_energy_is_the_dataset_density():
    # held-out mean log-likelihood of the exact density = -entropy ≈ -2.84 (acceptance criterion)
    x = datasets.sample("8gaussians", 10000, seed=11)
    ll = -energies.get("8gaussians")(x.double())
    assert abs(ll.mean().item() + 2.84) < 0.03
    se = ll.std().item() / math.sqrt(len(ll))
    assert abs(ll.mean().item() + datasets.ENTROPY["8gaussians"]) < 5 * se


def test_rings_energy_is_the_dataset_density():
    # If p is the data law, E_data[-log p] is the entropy, and the mean of log p under the data equals the
    # grid's -∫ p log p; compare both within 5 standard errors of the Monte Carlo mean.
    fn = energies.get("rings")
    x = datasets.sample("rings", 20000, seed=12).double()
    ll = -fn(x)
    p = GRID.density(fn)  # underflows to 0 far from the rings, hence log_density below
    neg_entropy = float((p * GRID.log_density(fn)).sum() * GRID.cell_area)
    se = ll.std().item() / math.sqrt(len(ll))
    assert abs(ll.mean().item() - neg_entropy) < 5 * se
    # and a wrong width is measurably worse on the same data
    assert (-energies.get("rings", std=0.12)(x)).mean() < ll.mean() - 5 * se


# --- moving energies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MOVING)
@pytest.mark.parametrize("t", [0.0, 0.37, 1.0])
def test_dt_matches_finite_difference_in_t(name, t):
    fn = energies.get(name)
    x = _points(50, seed=1)
    eps = 1e-5
    lo, hi = max(t - eps, 0.0), min(t + eps, 1.0)
    fd = (fn(x, hi) - fn(x, lo)) / (hi - lo)
    tol = 1e-4 * (1 + fd.abs())  # one-sided differences at the ends are O(eps)
    assert torch.all((fn.dt(x, t) - fd).abs() < tol)
    # the generic autograd-in-t derivative agrees with the analytic override
    assert torch.allclose(energies.MovingEnergy.dt(fn, x, t), fn.dt(x, t), atol=1e-10)


@pytest.mark.parametrize("name", MOVING)
def test_at_freezes_time(name):
    fn = energies.get(name)
    x = _points()
    assert torch.equal(fn.at(0.25)(x), fn(x, 0.25))


def _continuity_residual(fn, t, grid, dt=1e-4):
    """∂_t p + ∇·(p v) on the grid, with p normalised on the grid, FD in t and central FD in space."""
    p = lambda s: grid.density(fn.at(s))  # noqa: E731
    dp_dt = (p(t + dt) - p(t - dt)) / (2 * dt)
    v = fn.exact_velocity(grid.points, t).reshape(grid.size, grid.size, 2)
    pt = p(t)
    flux_x, flux_y = pt * v[..., 0], pt * v[..., 1]
    div = torch.gradient(flux_x, spacing=grid.h, dim=1)[0] + torch.gradient(flux_y, spacing=grid.h, dim=0)[0]
    return dp_dt + div, dp_dt


@pytest.mark.parametrize(
    "name, kwargs",
    [("translating_gaussian", {}), ("scaling_gaussian", {}), ("scaling_gaussian", {"s0": 1.5, "s1": 0.6})],
)
def test_exact_velocity_solves_continuity_equation(name, kwargs):
    fn = energies.get(name, **kwargs)
    for t in (0.2, 0.5, 0.8):
        resid, dp_dt = _continuity_residual(fn, t, GRID)
        assert resid.abs().max() < 0.01 * dp_dt.abs().max()
    # and a wrong field fails the same check (the test can fail): PD's field for the scaling Gaussian
    if name == "scaling_gaussian":
        wrong = energies.get(name, **kwargs)
        wrong.exact_velocity = lambda x, t: -energies.value_and_grad(lambda y: fn.dt(y, t), x)[1]
        resid, dp_dt = _continuity_residual(wrong, 0.5, GRID)
        assert resid.abs().max() > 0.1 * dp_dt.abs().max()


def test_translating_velocity_is_minus_grad_dt():
    fn = energies.get("translating_gaussian", m0=(1.0, 2.0), m1=(-1.0, 0.5))
    x = _points()
    _, g = energies.value_and_grad(lambda y: fn.dt(y, 0.4), x)
    assert torch.allclose(-g, fn.exact_velocity(x, 0.4))
    assert torch.allclose(fn.exact_velocity(x, 0.4)[0], torch.tensor([-2.0, -1.5], dtype=torch.float64))


def test_no_exact_velocity_where_unknown():
    assert energies.get("interpolation").exact_velocity is None
    assert energies.get("mode_weights").exact_velocity is None


def test_interpolation_end_points_and_mode_weights():
    fn = energies.get("interpolation")
    x = _points()
    assert torch.allclose(fn(x, 1.0), energies.get("8gaussians")(x))
    assert torch.allclose(fn(x, 0.0), x.square().sum(1) / 8)
    mw = energies.get("mode_weights")
    assert torch.allclose(mw.weights(0.0), torch.full((8,), 1 / 8, dtype=torch.float64))
    assert torch.allclose(mw.weights(1.0), torch.arange(1, 9, dtype=torch.float64) / 36)
    # every frame is a normalised mixture with those weights: grid mass near each centre
    for t in (0.0, 0.5, 1.0):
        assert abs(GRID.log_z(mw.at(t))) < 1e-6
        pts = GRID.points
        k = torch.cdist(pts, mw.centres).argmin(1).reshape(200, 200)
        p = GRID.cell_probabilities(mw.at(t))
        mass = torch.zeros(8, dtype=torch.float64).index_add_(0, k.reshape(-1), p.reshape(-1))
        assert torch.allclose(mass, mw.weights(t), atol=5e-3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: energies.get("nope"), UnknownNameError, "8gaussians, banana.*translating_gaussian"),
        (
            lambda: energies.get("correlated_gaussian", sigma=2),
            InvalidArgumentError,
            "valid arguments: mean, cov",
        ),
        (
            lambda: energies.get("correlated_gaussian", cov=((1.0, 2.0), (2.0, 1.0))),
            InvalidArgumentError,
            "positive definite",
        ),
        (
            lambda: energies.get("correlated_gaussian", cov=(1.0, 2.0)),
            InvalidArgumentError,
            r"cov must have shape \[2, 2\]",
        ),
        (lambda: energies.get("rings", std=-1), InvalidArgumentError, "std"),
        (lambda: energies.get("mode_weights", w1=[1.0] * 7), InvalidArgumentError, "w1"),
        (lambda: energies.get("scaling_gaussian")(_points(), 1.5), InvalidArgumentError, "t must be in"),
        (lambda: energies.get("banana")(torch.zeros(4, 3)), InvalidArgumentError, r"shape \[n, 2\]"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_time_rounding_just_past_the_end_is_tolerated():
    assert energies.get("scaling_gaussian")(_points(), 1.0 + 1e-12).shape == (7,)
