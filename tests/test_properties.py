"""Property tests (Hypothesis) over the public functions: shapes, dtypes, finiteness, invariants.

Every property holds for all inputs in the stated ranges; Hypothesis draws 25-50 of them per test
(``deadline=None``: the 2-core CI machine is shared). Tolerances come from float64 rounding or from the
stated bounds (e.g. the unbiased MMD² of a set with itself lies in [-2B/m, 0] for B bandwidths, m points).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pdviz import datasets, energies, flows, metrics, samplers
from pdviz.grid import Grid

FEW = settings(max_examples=25, deadline=None, database=None)
SOME = settings(max_examples=50, deadline=None, database=None)

seeds = st.integers(min_value=0, max_value=2**31 - 1)
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


def points(seed: int, n: int, d: int = 2, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@st.composite
def gaussians(draw):
    """A random correlated Gaussian energy on R² (mean in [-2, 2]², stds in [0.3, 1.5], |ρ| <= 0.8)."""
    m = torch.tensor([draw(st.floats(-2, 2)), draw(st.floats(-2, 2))], dtype=torch.float64)
    s1, s2 = draw(st.floats(0.3, 1.5)), draw(st.floats(0.3, 1.5))
    rho = draw(st.floats(-0.8, 0.8))
    cov = torch.tensor([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]], dtype=torch.float64)
    prec = torch.linalg.inv(cov)
    log_z = math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(cov)))

    def energy(x):
        z = x.to(torch.float64) - m
        return (0.5 * ((z @ prec) * z).sum(1)).to(x.dtype)

    return energy, log_z


# --- datasets ---------------------------------------------------------------------------------------


@SOME
@given(name=st.sampled_from(sorted(datasets.DATASETS)), n=st.integers(1, 300), seed=seeds)
def test_dataset_samples_are_float32_n_by_2_finite_and_deterministic(name, n, seed):
    a = datasets.sample(name, n, seed=seed)
    b = datasets.sample(name, n, seed=seed)
    assert a.shape == (n, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)


# --- grid and energies --------------------------------------------------------------------------------


@FEW
@given(g=gaussians(), size=st.integers(16, 96))
def test_grid_density_normalises_to_one_for_random_gaussians(g, size):
    energy, _ = g
    grid = Grid(-8.0, 8.0, size)
    p = grid.density(energy)
    assert p.dtype == torch.float64 and p.shape == (size, size)
    assert float(p.sum() * grid.cell_area) == pytest.approx(1.0, abs=1e-9)
    assert float(grid.cell_probabilities(energy).sum()) == pytest.approx(1.0, abs=1e-9)
    m1, m2 = grid.marginals(energy)
    assert float(m1.sum() * grid.h) == pytest.approx(1.0, abs=1e-9)
    assert float(m2.sum() * grid.h) == pytest.approx(1.0, abs=1e-9)


@FEW
@given(g=gaussians())
def test_grid_log_z_matches_the_gaussian_normaliser(g):
    # box [-8, 8]: every mean is >= 6 from the edge, >= 4 stds, so the mass outside is < 1e-4;
    # the midpoint rule with h <= 0.42 std is accurate far below that
    energy, log_z = g
    grid = Grid(-8.0, 8.0, 128)
    assert abs(grid.log_z(energy) - log_z) < 1e-3


@FEW
@given(a=finite, b=finite, c=finite, seed=seeds)
def test_grid_interpolation_is_exact_for_affine_functions(a, b, c, seed):
    grid = Grid(-3.0, 3.0, 12)
    X, Y = torch.meshgrid(grid.xs, grid.xs, indexing="xy")
    values = a + b * X + c * Y
    lo, hi = float(grid.xs[0]), float(grid.xs[-1])  # inside the outermost centres: no clamping
    u = torch.rand(40, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = lo + (hi - lo) * u
    got = grid.interpolate(values, x)
    want = a + b * x[:, 0] + c * x[:, 1]
    assert torch.allclose(got, want, atol=1e-9 * (1 + abs(a) + abs(b) + abs(c)) * 10)


@FEW
@given(
    name=st.sampled_from(sorted(energies.ENERGIES)),
    n=st.integers(1, 64),
    seed=seeds,
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_energies_return_one_finite_value_per_point_in_the_input_dtype(name, n, seed, dtype):
    e = energies.get(name)
    x = points(seed, n, scale=2.0).to(dtype)
    out = e(x)
    assert out.shape == (n,) and out.dtype == dtype
    assert torch.isfinite(out).all()
    value, grad = energies.value_and_grad(e, x)
    assert grad.shape == (n, 2) and torch.isfinite(grad).all()


# --- metrics ------------------------------------------------------------------------------------------


@SOME
@given(lw=st.lists(finite, min_size=1, max_size=200))
def test_ess_lies_between_one_and_n_for_any_finite_log_weights(lw):
    n = len(lw)
    value = metrics.ess(torch.tensor(lw, dtype=torch.float64))
    assert 1.0 <= value <= n
    assert math.isfinite(value)


@FEW
@given(c=finite, n=st.integers(1, 200))
def test_ess_of_equal_weights_is_n(c, n):
    assert metrics.ess(torch.full((n,), c, dtype=torch.float64)) == pytest.approx(n, rel=1e-9)


@FEW
@given(sx=seeds, sy=seeds, m=st.integers(2, 60), n=st.integers(2, 60), shift=st.floats(-3, 3))
def test_mmd2_is_symmetric(sx, sy, m, n, shift):
    x, y = points(sx, m), points(sy, n) + shift
    assert metrics.mmd2(x, y) == pytest.approx(metrics.mmd2(y, x), abs=1e-9)


@FEW
@given(seed=seeds, m=st.integers(2, 80), scale=st.floats(0.01, 5.0))
def test_mmd2_of_a_set_with_itself_is_between_minus_2b_over_m_and_zero(seed, m, scale):
    # With y = x the unbiased estimator is 2S/(m²(m-1)) - 2B/m, S the off-diagonal kernel sum (0 <= S <=
    # m(m-1)B): so -2B/m <= MMD²_u(x, x) <= 0, approaching 0 only when all points coincide.
    bandwidths = (0.1, 0.3, 1.0, 3.0)
    x = points(seed, m, scale=scale)
    value = metrics.mmd2(x, x, bandwidths=bandwidths)
    bound = 2 * len(bandwidths) / m
    assert -bound - 1e-9 <= value <= 1e-9


@FEW
@given(seed=seeds, n=st.integers(1, 100), k=st.integers(1, 8))
def test_mode_weights_are_shares_summing_to_one(seed, n, k):
    w = metrics.mode_weights(points(seed, n), points(seed + 1, k, scale=2.0))
    assert w.shape == (k,) and (w >= 0).all()
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    # shares are counts / n
    assert torch.allclose(w * n, (w * n).round(), atol=1e-9)


# --- samplers --------------------------------------------------------------------------------------------


@FEW
@given(
    name=st.sampled_from(["ula", "mala"]),
    n=st.integers(1, 40),
    d=st.integers(1, 4),
    n_steps=st.integers(1, 12),
    record_every=st.integers(1, 5),
    step_size=st.floats(1e-3, 0.5),
    seed=seeds,
)
def test_samplers_keep_shapes_and_are_deterministic_per_seed(
    name, n, d, n_steps, record_every, step_size, seed
):
    energy = energies.get("gaussian")
    start = points(seed, n, d)
    runs = [
        samplers.run(
            name,
            start,
            energy,
            n_steps,
            step_size=step_size,
            record_every=record_every,
            generator=samplers.make_generator(seed),
        )
        for _ in range(2)
    ]
    (state, hist), (state2, hist2) = runs
    n_records = 1 + n_steps // record_every + (1 if n_steps % record_every else 0)
    assert state.position.shape == (n, d) and state.position.dtype == start.dtype
    assert state.energy.shape == (n,) and state.grad.shape == (n, d) and state.log_weight.shape == (n,)
    assert hist.positions().shape == (n_records, n, d)
    steps, n_grad = hist.series("n_grad")
    assert steps[0] == 0 and steps[-1] == n_steps
    assert n_grad[-1] == 1 + n_steps
    assert torch.isfinite(hist.positions()).all()
    assert torch.equal(hist.positions(), hist2.positions()) and torch.equal(state.position, state2.position)
    rates = hist.series("acceptance_rate")[1]
    if name == "ula":
        assert all(r == 1 for r in rates)
    else:
        assert all(0 <= r <= 1 for r in rates)


# --- flows --------------------------------------------------------------------------------------------


@FEW
@given(a=gaussians(), b=gaussians(), seed=seeds, n=st.integers(1, 50))
def test_pd_field_is_antisymmetric_in_old_and_new(a, b, seed, n):
    (ea, _), (eb, _) = a, b
    x = points(seed, n, scale=2.0).double()
    forward = flows.pd_field(ea, eb, x)
    backward = flows.pd_field(eb, ea, x)
    assert forward.shape == (n, 2) and forward.dtype == x.dtype
    assert torch.allclose(forward, -backward, atol=1e-12)
    assert torch.equal(flows.pd_field(ea, ea, x), torch.zeros_like(x))


@SOME
@given(lw=st.lists(st.one_of(finite, st.just(-math.inf)), min_size=1, max_size=100), seed=seeds)
def test_systematic_resampling_keeps_the_count_and_picks_only_existing_weighted_particles(lw, seed):
    log_w = torch.tensor(lw, dtype=torch.float64)
    if bool(torch.isinf(log_w).all()):
        log_w[0] = 0.0  # at least one particle must carry weight
    n = log_w.numel()
    x = torch.arange(2 * n, dtype=torch.float64).reshape(n, 2)  # row i is (2i, 2i + 1): identifiable
    state = samplers.State(x, x[:, 0].clone(), x.clone(), log_w)
    out = flows.systematic_resample(state, samplers.make_generator(seed))
    assert out.position.shape == (n, 2)
    picked = (out.position[:, 0] / 2).long()
    assert torch.equal(out.position, x[picked])  # only existing particles, rows intact
    assert torch.equal(out.energy, state.energy[picked]) and torch.equal(out.grad, state.grad[picked])
    assert bool(torch.isfinite(log_w[picked]).all())  # zero-weight particles are never picked
    assert torch.equal(out.log_weight, torch.zeros_like(log_w))
    # systematic resampling: particle i appears floor(n w_i) or ceil(n w_i) times
    w = torch.softmax(log_w, 0)
    counts = torch.bincount(picked, minlength=n).double()
    assert bool(((counts - n * w).abs() <= 1 + 1e-9).all())
