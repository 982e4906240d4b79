"""Tests of flow steps: cost accounting, importance weights, resampling, SVGD, divergence, bad input."""

import math

import pytest
import torch

from pdviz import config, energies, flows, metrics, samplers, strategies
from pdviz.errors import DivergenceError, InvalidArgumentError, UnknownNameError
from pdviz.flows import Change
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


def weighted_moments(x, log_weight):
    """Self-normalised weighted mean [d] and covariance [d, d] of x [n, d], float64."""
    w = torch.softmax(log_weight.to(F64), 0)
    mean = w @ x.to(F64)
    centred = x.to(F64) - mean
    return mean, (centred * w[:, None]).T @ centred


def within_standard_errors(log_weight, x, mean, std, k=5.0):
    """Weighted mean and variance of x [n, 2] within k standard errors of N(mean, diag std²), sized by ESS."""
    m, cov = weighted_moments(x, log_weight)
    n_eff = metrics.ess(log_weight)
    se_mean = std / math.sqrt(n_eff)
    se_var = std**2 * math.sqrt(2.0 / n_eff)  # Gaussian fourth moment
    ok_mean = ((m - mean).abs() <= k * se_mean).all()
    ok_var = ((cov.diagonal() - std**2).abs() <= k * se_var).all()
    return bool(ok_mean and ok_var), (m - mean, cov.diagonal() - std**2, k * se_mean, k * se_var)


# --- cost accounting and determinism --------------------------------------------------------------


@pytest.mark.parametrize(
    "move, correction, fixed",
    [
        (None, "ula", 0),
        (None, "mala", 1),
        ("alpha", "ula", 2),
        ("alpha", "mala", 2),
        ("gamma", "ula", 1),
        ("exact", "ula", 1),
        ("svgd", "ula", 2),
    ],
)
def test_flow_step_counts_gradient_evaluations(move, correction, fixed, gen):
    x = torch.randn(50, 2, generator=gen)
    state = samplers.init(x, standard)
    new, grid = gaussian([0.1, 0.0], [1.0, 1.0]), Grid(-4, 4, 32)
    change = Change(standard, new, grid=grid, delta=grid.energy(new) - grid.energy(standard))
    kw = dict(correction=correction, generator=gen)
    _, info = flows.flow_step(state, move, change, n_corrections=3, **kw)
    assert info.n_grad == fixed + 3
    _, info = flows.flow_step(state, move, change, n_corrections=0, **kw)
    assert info.n_grad == max(fixed, 1)  # the returned cache always holds E_new at the positions
    assert float(info.acceptance_rate) == 1.0


def test_flow_step_same_seed_same_result_and_cache_is_current():
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    new = gaussian([0.3, -0.1], [0.8, 1.1])
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        state, _ = flows.flow_step(
            samplers.init(x, standard), "alpha", Change(standard, new), correction="mala", generator=g
        )
        runs.append(state)
    torch.testing.assert_close(runs[0].position, runs[1].position, rtol=0, atol=0)
    # the cache holds E_new and ∇E_new at the new positions, as the next step needs
    fresh = samplers.init(runs[0].position, new)
    torch.testing.assert_close(runs[0].energy, fresh.energy)
    torch.testing.assert_close(runs[0].grad, fresh.grad)


def test_pd_and_exact_moves_on_translating_gaussian(gen):
    x = torch.randn(200, 2, generator=gen, dtype=F64)
    dm = torch.tensor([0.08, -0.04], dtype=F64)
    new = gaussian(dm, [1.0, 1.0])
    state = samplers.init(x, standard)
    pd, _ = flows.flow_step(state, "alpha", Change(standard, new), n_corrections=0)
    torch.testing.assert_close(pd.position, x + dm, atol=1e-12, rtol=0)
    grid = Grid(-5, 5, 128, dtype=F64)
    exact, _ = flows.flow_step(state, "exact", Change(standard, new, grid=grid), n_corrections=0)
    bulk = x.norm(dim=1) < 2.5
    assert float((exact.position - x - dm)[bulk].norm(dim=1).max()) < 0.01 * float(dm.norm())
    # gamma moves by the gradient of the interpolated ΔE: the translation, up to the grid's resolution
    gamma, _ = flows.flow_step(
        state,
        "gamma",
        Change(standard, new, grid=grid, delta=grid.energy(new) - grid.energy(standard)),
        n_corrections=0,
    )
    assert float((gamma.position - x - dm)[bulk].norm(dim=1).max()) < 0.01 * float(dm.norm())
    same, _ = flows.flow_step(state, None, Change(standard, new), n_corrections=0)
    torch.testing.assert_close(same.position, x, rtol=0, atol=0)
    torch.testing.assert_close(same.energy, new(x))


class Translated(torch.nn.Module):
    """E_m(x) = |x - m|² / 2 with the mean m as its one parameter."""

    def __init__(self, m):
        super().__init__()
        self.m = torch.nn.Parameter(torch.as_tensor(m, dtype=F64))

    def forward(self, x):
        return (x - self.m).square().sum(1) / 2


def test_pd_exact_strategy_carries_the_full_translation(gen):
    # issue 24: pd-exact multiplied the exact transport by pd_step (0.2 in the fast preset): on a
    # translation of 0.3 the particles moved 0.06. The exact flow carries p_old to p_new in full.
    cfg = config.make_config(strategy="pd-exact", n_corrections=0, reinit_frac=0.0, pd_step=0.2)
    model, grid = Translated([0.3, 0.0]), Grid(-5, 5, 128, dtype=F64)
    ctx = strategies.Context(model, cfg, gen, None, grid)
    x = torch.randn(500, 2, generator=gen, dtype=F64)
    state = samplers.init(x, Translated([0.0, 0.0]))
    new, _, _ = strategies.STRATEGIES["pd-exact"].transport(state, {}, {"m": torch.zeros(2, dtype=F64)}, ctx)
    bulk = x.norm(dim=1) < 2.5
    shift = (new.position - x)[bulk].mean(0)
    assert abs(float(shift[0]) - 0.3) < 0.01 and abs(float(shift[1])) < 0.01, shift


# --- importance weights ---------------------------------------------------------------------------


def test_change_of_variables_weights_exact_on_a_non_affine_move(gen):
    # N(0, I) -> p_new ∝ exp(-|x|²/2 - a Σ_j log cosh(x_j - c_j)): the PD move T(x)_j = x_j - a tanh(x_j - c_j)
    # is monotone per coordinate and not affine, so the law of T(x) is q(T x) = φ(x) / Π_j T'(x_j) and the
    # weights must equal p_new / q up to one constant. (An affine move has a constant log|det ∇T|, which
    # self-normalisation cancels: it could not catch a missing determinant; this one does.)
    a, c = 0.8, torch.tensor([0.5, -0.3], dtype=F64)

    def new_energy(x):
        return standard(x) + a * torch.log(torch.cosh(x - c)).sum(1)

    n = 20000
    x = torch.randn(n, 2, generator=gen, dtype=F64)
    new, info = flows.flow_step(
        samplers.init(x, standard), "alpha", Change(standard, new_energy), n_corrections=0, weighted=True
    )
    y = new.position
    torch.testing.assert_close(y, x - a * torch.tanh(x - c))
    log_q = -standard(x) - torch.log(1 - a / torch.cosh(x - c) ** 2).sum(1)
    diff = new.log_weight - (-new_energy(y) - log_q)
    assert float(diff.std()) < 1e-10
    assert info.n_grad == 2 + 2 + 1  # ∇E_new, ∇E_old with a graph, two Hessian rows, refresh at T(x)
    grid = Grid(-8, 8, 800, dtype=F64)  # the target's mean and variance by quadrature
    p, points = grid.cell_probabilities(new_energy).reshape(-1), grid.points
    mean = p @ points
    ok, detail = within_standard_errors(new.log_weight, y, mean, (p @ (points - mean) ** 2).sqrt())
    assert ok, detail
    assert not within_standard_errors(torch.zeros(n, dtype=F64), y, mean, (p @ (points - mean) ** 2).sqrt())[
        0
    ]


@pytest.mark.parametrize("n_corrections", [0, 5])
def test_weights_with_mala_corrections_are_unbiased(n_corrections, gen):
    # a non-affine PD move (mixture -> Gaussian): the unweighted cloud is off by ~0.2 in the mean,
    # the weighted moments must match the target within 5 standard errors (ESS-sized)
    m, s = torch.tensor([0.3, 0.2], dtype=F64), torch.tensor([1.2, 0.9], dtype=F64)
    state = samplers.init(sample_mixture(20000, gen), mixture)
    new, info = flows.flow_step(
        state, "alpha", Change(mixture, gaussian(m, s)), step=0.5, n_corrections=n_corrections,
        correction="mala", step_size=0.1, weighted=True, generator=gen,
    )  # fmt: skip
    assert 0.5 * 20000 < metrics.ess(new.log_weight) < 20000
    ok, detail = within_standard_errors(new.log_weight, new.position, m, s)
    assert ok, detail
    unweighted_ok, _ = within_standard_errors(torch.zeros(20000, dtype=F64), new.position, m, s)
    assert not unweighted_ok  # the weights are what makes it right


def test_weights_with_ula_corrections_carry_the_ula_bias(gen):
    # many ULA steps on N(m, s²) settle at variance s² / (1 - ε / (4 s²)): the weighted variance shows it
    m, s, eps = torch.tensor([0.3, 0.2], dtype=F64), torch.tensor([1.2, 0.9], dtype=F64), 0.3
    state = samplers.init(sample_mixture(20000, gen), mixture)
    new, _ = flows.flow_step(
        state, "alpha", Change(mixture, gaussian(m, s)), step=0.5, n_corrections=60,
        correction="ula", step_size=eps, weighted=True, generator=gen,
    )  # fmt: skip
    _, cov = weighted_moments(new.position, new.log_weight)
    ula_var = s**2 / (1 - eps / (4 * s**2))
    se = s**2 * math.sqrt(2.0 / metrics.ess(new.log_weight))
    assert ((cov.diagonal() - ula_var).abs() < 5 * se).all()
    assert ((cov.diagonal() - s**2) > 2 * se).all()


def test_exact_flow_weights_stay_uniform(gen):
    # the exact field transports exactly (to first order), so its weights barely spread
    x = 0.8 * torch.randn(4000, 2, generator=gen, dtype=F64)
    state = samplers.init(x, gaussian([0, 0], [0.8, 0.8]))
    change = Change(
        gaussian([0, 0], [0.8, 0.8]), gaussian([0, 0], [0.84, 0.84]), grid=Grid(-5, 5, 128, dtype=F64)
    )
    new, _ = flows.flow_step(state, "exact", change, n_corrections=0, weighted=True)
    exact_ess = metrics.ess(new.log_weight)
    assert exact_ess > 0.999 * 4000
    pd, _ = flows.flow_step(state, "alpha", change, n_corrections=0, weighted=True)
    assert metrics.ess(pd.log_weight) < exact_ess


def test_exact_move_sub_steps_across_the_gap_between_modes():
    # issue 15: two modes 4 apart whose weights change; one midpoint step of the exact field threw the
    # particles of the gap out of the box, where they froze (448 of 4000 after 50 steps; weighted, ESS 1).
    # Sub-stepped, every particle stays in the box and the cloud stays at the KL floor of exact samples.
    moving = energies.get(
        "mode_weights", centres=[[-2.0, 0.0], [2.0, 0.0]], std=0.5, w0=[1.0, 1.0], w1=[1.0, 3.0]
    )
    grid = Grid(-5, 5, 128)
    hist = flows.track(
        moving, "exact", n_particles=4000, n_steps=50, n_corrections=0, grid=grid, bins=20, record_every=50
    )
    assert hist.frames[-1]["n_outside"] == 0
    floor = metrics.kl_floor(moving.at(1.0), 4000, grid=grid, bins=20, repeats=5)
    assert hist.frames[-1]["kl"] < 2 * floor, (hist.frames[-1]["kl"], floor)
    weights = metrics.mode_weights(hist.positions()[-1], moving.centres.float())
    assert abs(float(weights[1]) - 0.75) < 5 * math.sqrt(0.75 * 0.25 / 4000)


def test_exact_move_log_det_is_the_jacobian_of_the_sub_stepped_map(gen):
    # issue 24: each particle's sub-step size dτ = min(left, h / |v(y)|) depends on where it is; treated as
    # a constant, log|det ∇T| was not the Jacobian of the map applied (347 of 2000 particles off by
    # > 0.01 nats here, up to 0.53). Against central differences of the map itself:
    moving = energies.get(
        "mode_weights", centres=[[-2.0, 0.0], [2.0, 0.0]], std=0.7, w0=[1.0, 1.0], w1=[1.0, 1.5]
    )
    grid, old, new = Grid(-5, 5, 128, dtype=F64), moving.at(0.0), moving.at(1.0)
    x = grid.sample(old, 2000, generator=gen).double()
    change, state = Change(old, new, grid=grid), samplers.init(x, old)
    out, _ = flows.flow_step(state, "exact", change, n_corrections=0, weighted=True)
    log_det = out.log_weight - state.energy + out.energy
    eps, cols = 1e-6, []
    for j in range(2):
        e = torch.zeros(2, dtype=F64)
        e[j] = eps
        cols.append((flows.exact_move(x + e, change, 1.0) - flows.exact_move(x - e, change, 1.0)) / (2 * eps))
    sign, fd = torch.linalg.slogdet(torch.stack(cols, dim=2))
    assert bool((sign > 0).all())
    crossed = (out.position - x)[:, 0] > 0.5  # the particles carried towards the growing mode, sub-stepped
    assert int(crossed.sum()) > 200
    assert float((log_det - fd).abs().max()) < 1e-3


def test_weighted_move_that_folds_space_is_redone_at_half_the_step(gen):
    # T(x₁) = x₁ (1 - 3 step): at step 0.5 it flips x₁ (det ∇T = -0.5), so log|det| would be wrong. Issue 24:
    # refusing the fold stopped the whole run; the move is redone at step 0.25 (det 0.25), with a warning
    x = torch.randn(30, 2, generator=gen, dtype=F64)
    state = samplers.init(x, standard)
    change = Change(standard, lambda x: 2 * x[:, 0] ** 2 + x[:, 1] ** 2 / 2)
    with pytest.warns(UserWarning, match=r"step 0.5 folds space \(det ∇T <= 0 at 30 of 30.*half the step"):
        new, info = flows.flow_step(state, "alpha", change, step=0.5, n_corrections=0, weighted=True)
    torch.testing.assert_close(new.position[:, 0], 0.25 * x[:, 0])
    expected = state.energy - change.new(new.position) + math.log(0.25)  # log|det ∇T| of the move made
    torch.testing.assert_close(new.log_weight, expected)
    assert info.n_grad == 2 * (1 + 2 + 1) + 1  # two tries of (move, ∇T rows, ∇E_old), refresh at T(x)
    with (
        pytest.warns(UserWarning, match="folds space"),
        pytest.raises(
            DivergenceError,
            match="Jacobian determinant.*at iteration 4.*det ∇T <= 0 at 30 of 30.*even at step",
        ) as err,
    ):  # a move that folds at every step it may halve to still stops, naming the step
        flows.flow_step(state, "alpha", change, step=1e3, n_corrections=0, weighted=True, iteration=4)
    assert "step (now 1000)" in err.value.suggestion


def test_ess_and_systematic_resample(gen):
    n = 1000
    x = torch.randn(n, 2, generator=gen)
    log_w = torch.randn(n, generator=gen)
    state = samplers.State(x, torch.zeros(n), torch.zeros(n, 2), log_w)
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
        x = flows.svgd_move(x, Change(energy, energy), 0.15)
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
    state = samplers.init(x, standard)
    by_hand = x
    for _ in range(20):
        state, info = flows.flow_step(state, "svgd", Change(target, target), step=0.2, n_corrections=0)
        by_hand = by_hand + 0.2 * flows.svgd_direction(by_hand, -samplers.init(by_hand, target).grad)
    assert info.n_grad == 2
    torch.testing.assert_close(state.position, by_hand)
    assert float(state.position[:, 0].mean()) > float(x[:, 0].mean()) + 0.2


# --- divergence and bad input ---------------------------------------------------------------------


def test_divergence_names_iteration_and_suggestion(gen):
    steep = gaussian([0, 0], [0.01, 0.01])
    state = samplers.init(torch.randn(20, 2, generator=gen, dtype=F64), standard)
    with pytest.raises(DivergenceError, match="iteration 7.*reduce step_size") as err:
        flows.flow_step(state, None, Change(standard, steep), step_size=1.0, generator=gen, iteration=7)
    assert err.value.iteration == 7
    with pytest.raises(DivergenceError, match="reduce step "):
        flows.flow_step(state, "alpha", Change(standard, steep), step=1e9, n_corrections=0)
    # finite positions where the energy is not defined (log of a negative number) also count as divergence
    walled = lambda x: standard(x) - torch.log(9.0 - x.square().sum(1))  # noqa: E731
    with pytest.raises(DivergenceError, match="energies diverged at iteration 2"):
        flows.flow_step(
            state, None, Change(standard, walled), n_corrections=1, step_size=4.0, generator=gen, iteration=2
        )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"move": "hmc"}, UnknownNameError, "valid names: alpha, beta, exact, gamma, svgd"),
        ({"correction": "hmc"}, UnknownNameError, "valid names: mala, ula"),
        ({"step": -1}, InvalidArgumentError, "step must be a number > 0, got -1"),
        ({"n_corrections": 2.5}, InvalidArgumentError, "n_corrections must be an integer"),
        ({"step_size": 0}, InvalidArgumentError, "step_size must be a number > 0"),
        ({"move": "svgd", "weighted": True}, InvalidArgumentError, "other than svgd"),
        ({"dim": 3, "move": "exact"}, InvalidArgumentError, r"\[n, 2\]"),
        ({"dim": 11, "weighted": True}, InvalidArgumentError, "d <= 10"),
    ],
)
def test_flow_step_bad_input(kwargs, error, match):
    kwargs = {"move": "alpha", **kwargs}
    energy = lambda x: x.square().sum(1)  # noqa: E731
    state = samplers.init(torch.zeros(4, kwargs.pop("dim", 2)), energy)
    with pytest.raises(error, match=match):
        flows.flow_step(state, kwargs.pop("move"), Change(energy, energy), **kwargs)
