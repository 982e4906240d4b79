"""Tests of flow steps: cost accounting, importance weights, resampling, SVGD, divergence, bad input."""

import math

import pytest
import torch

from pdviz import flows
from pdviz.errors import DivergenceError, InvalidArgumentError, UnknownNameError
from pdviz.grid import Grid

F64 = torch.float64


def gaussian(mean, std):
    mean, std = torch.as_tensor(mean, dtype=F64), torch.as_tensor(std, dtype=F64)
    return lambda x: (((x - mean) / std) ** 2).sum(1) / 2


def standard(x):
    return x.square().sum(1) / 2


# old density of the weight tests: an equal mixture of N((±0.8, 0), 0.7² I), sampled exactly
CENTRES, MIX_STD = torch.tensor([[-0.8, 0.0], [0.8, 0.0]], dtype=F64), 0.7


def mixture(x):
    d2 = (x[:, None, :] - CENTRES[None]).square().sum(2)
    return -torch.logsumexp(-d2 / (2 * MIX_STD**2), 1)


def sample_mixture(n, gen):
    k = torch.randint(0, 2, (n,), generator=gen)
    return CENTRES[k] + MIX_STD * torch.randn(n, 2, generator=gen, dtype=F64)


def within_standard_errors(log_weight, x, mean, std, k=5.0):
    """Weighted mean and variance of x [n, 2] within k standard errors of N(mean, diag std²), sized by ESS."""
    m, cov = flows.weighted_moments(x, log_weight)
    n_eff = flows.ess(log_weight)
    se_mean = std / math.sqrt(n_eff)
    se_var = std**2 * math.sqrt(2.0 / n_eff)  # Gaussian fourth moment
    ok_mean = ((m - mean).abs() <= k * se_mean).all()
    ok_var = ((cov.diagonal() - std**2).abs() <= k * se_var).all()
    return bool(ok_mean and ok_var), (m - mean, cov.diagonal() - std**2, k * se_mean, k * se_var)


# --- cost accounting and determinism --------------------------------------------------------------


@pytest.mark.parametrize(
    "method, correction, fixed",
    [
        ("langevin", "ula", 0),
        ("langevin", "mala", 1),
        ("pd", "ula", 2),
        ("pd", "mala", 2),
        ("exact", "ula", 1),
        ("svgd", "ula", 1),
    ],
)
def test_flow_step_counts_gradient_evaluations(method, correction, fixed, gen):
    x = torch.randn(50, 2, generator=gen)
    state = flows.flow_init(x, standard)
    new = gaussian([0.1, 0.0], [1.0, 1.0])
    kw = dict(method=method, correction=correction, generator=gen, grid=Grid(-4, 4, 32))
    _, info = flows.flow_step(state, standard, new, n_corrections=3, **kw)
    assert info.n_grad == fixed + 3
    assert flows.n_corrections_for_budget(method, 5, correction) == 5 - fixed
    _, info = flows.flow_step(state, standard, new, n_corrections=0, **kw)
    assert info.n_grad == max(fixed, 1)  # the returned cache always holds E_new at the positions
    assert info.ess == pytest.approx(50.0) and info.n_outside == 0 and info.acceptance_rate == 1.0


def test_flow_step_same_seed_same_result_and_cache_is_current():
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    new = gaussian([0.3, -0.1], [0.8, 1.1])
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        state, _ = flows.flow_step(
            flows.flow_init(x, standard), standard, new, method="pd", correction="mala", generator=g
        )
        runs.append(state)
    torch.testing.assert_close(runs[0].position, runs[1].position, rtol=0, atol=0)
    # the cache holds E_new and ∇E_new at the new positions, as the next step needs
    fresh = flows.flow_init(runs[0].position, new)
    torch.testing.assert_close(runs[0].energy, fresh.energy)
    torch.testing.assert_close(runs[0].grad, fresh.grad)


def test_pd_and_exact_moves_on_translating_gaussian(gen):
    x = torch.randn(200, 2, generator=gen, dtype=F64)
    dm = torch.tensor([0.08, -0.04], dtype=F64)
    new = gaussian(dm, [1.0, 1.0])
    state = flows.flow_init(x, standard)
    pd, _ = flows.flow_step(state, standard, new, method="pd", n_corrections=0)
    torch.testing.assert_close(pd.position, x + dm, atol=1e-12, rtol=0)
    exact, info = flows.flow_step(
        state, standard, new, method="exact", n_corrections=0, grid=Grid(-5, 5, 128, dtype=F64)
    )
    bulk = x.norm(dim=1) < 2.5
    assert float((exact.position - x - dm)[bulk].norm(dim=1).max()) < 0.01 * float(dm.norm())
    assert info.n_outside == 0
    same, _ = flows.flow_step(state, standard, new, method="langevin", n_corrections=0)
    torch.testing.assert_close(same.position, x, rtol=0, atol=0)
    torch.testing.assert_close(same.energy, new(x))


# --- importance weights ---------------------------------------------------------------------------


def test_change_of_variables_weights_exact_on_affine_move(gen):
    # N(0, I) -> N(m, diag s²): the PD move T(x) = x (2 - 1/s²) + m/s² is affine, so the law of T(x) is the
    # Gaussian q = N(m/s², diag (2 - 1/s²)²) and the weights must equal p_new / q up to one constant
    m, s = torch.tensor([0.5, -0.3], dtype=F64), torch.tensor([1.2, 0.9], dtype=F64)
    n = 20000
    state = flows.flow_init(torch.randn(n, 2, generator=gen, dtype=F64), standard)
    new, info = flows.flow_step(state, standard, gaussian(m, s), method="pd", n_corrections=0, weighted=True)
    a = 2 - 1 / s**2
    y = new.position
    log_q = -(((y - m / s**2) / a) ** 2).sum(1) / 2 - torch.log(a).sum()
    log_p = -(((y - m) / s) ** 2).sum(1) / 2
    diff = new.log_weight - (log_p - log_q)
    assert float(diff.std()) < 1e-10
    assert info.n_grad == 2 + 2 + 1  # ∇E_new, ∇E_old with a graph, two Hessian rows, refresh at T(x)
    ok, detail = within_standard_errors(new.log_weight, y, m, s)
    assert ok, detail


@pytest.mark.parametrize("n_corrections", [0, 5])
def test_weights_with_mala_corrections_are_unbiased(n_corrections, gen):
    # a non-affine PD move (mixture -> Gaussian): the unweighted cloud is off by ~0.2 in the mean,
    # the weighted moments must match the target within 5 standard errors (ESS-sized)
    m, s = torch.tensor([0.3, 0.2], dtype=F64), torch.tensor([1.2, 0.9], dtype=F64)
    state = flows.flow_init(sample_mixture(20000, gen), mixture)
    new, info = flows.flow_step(
        state, mixture, gaussian(m, s), method="pd", step=0.5, n_corrections=n_corrections,
        correction="mala", correction_step_size=0.1, weighted=True, generator=gen,
    )  # fmt: skip
    assert 0.5 * 20000 < info.ess < 20000
    ok, detail = within_standard_errors(new.log_weight, new.position, m, s)
    assert ok, detail
    unweighted_ok, _ = within_standard_errors(torch.zeros(20000, dtype=F64), new.position, m, s)
    assert not unweighted_ok  # the weights are what makes it right


def test_weights_with_ula_corrections_carry_the_ula_bias(gen):
    # many ULA steps on N(m, s²) settle at variance s² / (1 - ε / (4 s²)): the weighted variance shows it
    m, s, eps = torch.tensor([0.3, 0.2], dtype=F64), torch.tensor([1.2, 0.9], dtype=F64), 0.3
    state = flows.flow_init(sample_mixture(20000, gen), mixture)
    new, _ = flows.flow_step(
        state, mixture, gaussian(m, s), method="pd", step=0.5, n_corrections=60,
        correction="ula", correction_step_size=eps, weighted=True, generator=gen,
    )  # fmt: skip
    _, cov = flows.weighted_moments(new.position, new.log_weight)
    ula_var = s**2 / (1 - eps / (4 * s**2))
    se = s**2 * math.sqrt(2.0 / flows.ess(new.log_weight))
    assert ((cov.diagonal() - ula_var).abs() < 5 * se).all()
    assert ((cov.diagonal() - s**2) > 2 * se).all()


def test_exact_flow_weights_stay_uniform(gen):
    # the exact field transports exactly (to first order), so its weights barely spread
    x = 0.8 * torch.randn(4000, 2, generator=gen, dtype=F64)
    state = flows.flow_init(x, gaussian([0, 0], [0.8, 0.8]))
    grid = Grid(-5, 5, 128, dtype=F64)
    new, info = flows.flow_step(
        state, gaussian([0, 0], [0.8, 0.8]), gaussian([0, 0], [0.84, 0.84]), method="exact",
        n_corrections=0, weighted=True, grid=grid,
    )  # fmt: skip
    assert info.ess > 0.999 * 4000
    pd, pd_info = flows.flow_step(
        state,
        gaussian([0, 0], [0.8, 0.8]),
        gaussian([0, 0], [0.84, 0.84]),
        method="pd",
        n_corrections=0,
        weighted=True,
    )
    assert pd_info.ess < info.ess


def test_ess_and_systematic_resample(gen):
    assert flows.ess(torch.zeros(10)) == pytest.approx(10.0)
    assert flows.ess(torch.tensor([0.0, -math.inf, -math.inf])) == pytest.approx(1.0)
    n = 1000
    x = torch.randn(n, 2, generator=gen)
    log_w = torch.randn(n, generator=gen)
    state = flows.FlowState(x, torch.zeros(n), torch.zeros(n, 2), log_w)
    out = flows.systematic_resample(state, gen)
    assert torch.all(out.log_weight == 0)
    # systematic resampling copies particle i either floor(n w_i) or ceil(n w_i) times
    w = torch.softmax(log_w.double(), 0)
    counts = torch.zeros(n, dtype=torch.int64)
    for row in out.position:
        counts[(x == row).all(1).nonzero()[0, 0]] += 1
    assert torch.all(counts >= torch.floor(n * w - 1e-9)) and torch.all(counts <= torch.ceil(n * w + 1e-9))


# --- SVGD -----------------------------------------------------------------------------------------


def test_svgd_converges_on_a_gaussian(gen):
    m, s = torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([0.5, 1.5], dtype=F64)
    energy = gaussian(m, s)
    x = torch.randn(200, 2, generator=gen, dtype=F64)
    for _ in range(800):
        x = flows.svgd_step(x, energy, step_size=0.15)
    # 200 particles: mean within 0.1, std within 10 % (SVGD's own finite-n error, not sampling noise)
    assert float((x.mean(0) - m).abs().max()) < 0.1
    assert float((x.std(0) / s - 1).abs().max()) < 0.1


def test_svgd_direction_single_particle_is_the_score():
    x = torch.tensor([[0.3, -0.2]], dtype=F64)
    score = torch.tensor([[1.0, 2.0]], dtype=F64)
    torch.testing.assert_close(flows.svgd_direction(x, score), score)


def test_svgd_as_a_flow_moves_towards_the_target(gen):
    x = torch.randn(100, 2, generator=gen, dtype=F64)
    target = gaussian([1.0, 0.0], [1.0, 1.0])
    state, info = flows.flow_step(
        flows.flow_init(x, standard),
        standard,
        target,
        method="svgd",
        n_corrections=20,
        correction_step_size=0.2,
    )
    assert info.n_grad == 21
    by_hand = x
    for _ in range(20):
        by_hand = flows.svgd_step(by_hand, target, step_size=0.2)
    torch.testing.assert_close(state.position, by_hand)
    assert float(state.position[:, 0].mean()) > float(x[:, 0].mean()) + 0.2


# --- divergence and bad input ---------------------------------------------------------------------


def test_divergence_names_iteration_and_suggestion(gen):
    steep = gaussian([0, 0], [0.01, 0.01])
    state = flows.flow_init(torch.randn(20, 2, generator=gen, dtype=F64), standard)
    with pytest.raises(DivergenceError, match="iteration 7.*reduce correction_step_size") as err:
        flows.flow_step(
            state, standard, steep, method="langevin", correction_step_size=1.0, generator=gen, iteration=7
        )
    assert err.value.iteration == 7
    with pytest.raises(DivergenceError, match="reduce step"):
        flows.flow_step(state, standard, steep, method="pd", step=1e9, n_corrections=0)
    # finite positions where the energy is not defined (log of a negative number) also count as divergence
    walled = lambda x: standard(x) - torch.log(9.0 - x.square().sum(1))  # noqa: E731
    with pytest.raises(DivergenceError, match="energies at the particles diverged at iteration 2"):
        flows.flow_step(
            state, standard, walled, method="langevin", n_corrections=1, correction_step_size=4.0,
            generator=gen, iteration=2,
        )  # fmt: skip


def test_flow_step_bad_input(gen):
    state = flows.flow_init(torch.zeros(4, 2), standard)
    with pytest.raises(UnknownNameError, match="valid names: exact, langevin, pd, svgd"):
        flows.flow_step(state, standard, standard, method="hmc")
    with pytest.raises(UnknownNameError, match="valid names: mala, ula"):
        flows.flow_step(state, standard, standard, correction="hmc")
    with pytest.raises(InvalidArgumentError, match="step must be > 0, got -1"):
        flows.flow_step(state, standard, standard, step=-1)
    with pytest.raises(InvalidArgumentError, match="n_corrections must be an integer"):
        flows.flow_step(state, standard, standard, n_corrections=2.5)
    with pytest.raises(InvalidArgumentError, match="correction_step_size must be > 0"):
        flows.flow_step(state, standard, standard, correction_step_size=0)
    with pytest.raises(InvalidArgumentError, match="not available for method 'svgd'"):
        flows.flow_step(state, standard, standard, method="svgd", weighted=True)
    with pytest.raises(InvalidArgumentError, match="state must be a FlowState"):
        flows.flow_step(torch.zeros(4, 2), standard, standard)
    with pytest.raises(InvalidArgumentError, match=r"\[n, 2\]"):
        big = flows.flow_init(torch.zeros(4, 3), lambda x: x.square().sum(1))
        flows.flow_step(big, big_e := (lambda x: x.square().sum(1)), big_e, method="exact")
    with pytest.raises(InvalidArgumentError, match="d <= 10"):
        wide = flows.flow_init(torch.zeros(4, 11), lambda x: x.square().sum(1))
        flows.flow_step(wide, lambda x: x.square().sum(1), lambda x: x.square().sum(1), weighted=True)
    with pytest.raises(InvalidArgumentError, match="evals_per_step must be >= 2"):
        flows.n_corrections_for_budget("pd", 1)
    with pytest.raises(InvalidArgumentError, match="energy_fn must return shape"):
        flows.flow_init(torch.zeros(4, 2), lambda x: x)
    with pytest.raises(InvalidArgumentError, match="bandwidth must be > 0"):
        flows.svgd_step(torch.zeros(4, 2), standard, step_size=0.1, bandwidth=-1.0)
