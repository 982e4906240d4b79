"""Known-answer tests of ULA, MALA, the run driver and the replay buffer.

Tolerances are sized by the number of samples (5 standard errors), not tuned to a seed.
"""

import json
import math

import pytest
import torch

from pdviz import errors, samplers
from pdviz.samplers import ReplayBuffer, make_generator, run

# A correlated 2-D Gaussian N(mu, cov): E(x) = ½ (x - mu)ᵀ cov⁻¹ (x - mu)
MU = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
PREC = torch.linalg.inv(COV)


def correlated_gaussian(x):
    z = x - MU
    return 0.5 * ((z @ PREC) * z).sum(1)


def std_gaussian(x):
    return 0.5 * (x * x).sum(1)


def quartic(x):
    return (x**4).sum(1)


def _cov_se(cov, n):
    """Standard errors of the entries of a sample covariance of n Gaussian draws: sqrt((Σii Σjj + Σij²)/n)."""
    diag = torch.diagonal(cov)
    return torch.sqrt((diag[:, None] * diag[None, :] + cov**2) / n)


def _sample_cov(x):
    z = x - x.mean(0)
    return z.T @ z / (x.shape[0] - 1)


def test_mala_moments_correlated_gaussian():
    n = 4000
    gen = make_generator(0)
    x0 = 3.0 * torch.randn(n, 2, generator=gen)  # overdispersed start
    state, hist = run("mala", x0, correlated_gaussian, 300, step_size=0.3, generator=gen, record_every=100)
    x = state.position.double()
    mean_se = torch.sqrt(torch.diagonal(COV).double() / n)
    assert ((x.mean(0) - MU.double()).abs() < 5 * mean_se).all(), (x.mean(0), MU)
    assert ((_sample_cov(x) - COV.double()).abs() < 5 * _cov_se(COV.double(), n)).all(), _sample_cov(x)
    # at this step ULA would be far off (variance along the short axis 0.2 / (1 - 0.3/0.8) = 0.32, not 0.2),
    # so the moments do test the Metropolis-Hastings correction
    assert 0.3 < hist.series("acceptance_rate")[1][-1] < 1.0


def test_ula_bias_vs_mala_unbiased():
    # E = x²/2, x' = (1 - ε/2) x + sqrt(ε) ξ has stationary variance 1 / (1 - ε/4) = 4/3 at ε = 1
    n, eps = 4000, 1.0
    gen = make_generator(1)
    x0 = torch.randn(n, 2, generator=gen)
    ula, _ = run("ula", x0, std_gaussian, 60, step_size=eps, generator=gen)
    mala, _ = run("mala", x0, std_gaussian, 200, step_size=eps, generator=gen)
    m = 2 * n  # both coordinates are independent samples
    ula_var = float(ula.position.double().pow(2).mean())  # known mean 0
    mala_var = float(mala.position.double().pow(2).mean())
    expected = 1.0 / (1.0 - eps / 4.0)
    assert abs(ula_var - expected) < 5 * expected * math.sqrt(2 / m)
    assert abs(mala_var - 1.0) < 5 * math.sqrt(2 / m)
    assert abs(ula_var - mala_var) > 10 * math.sqrt(2 / m)  # the bias is clearly resolved


def test_mala_moments_non_gaussian_quartic():
    # p(x) ∝ exp(-x⁴): E[x²] = Γ(3/4)/Γ(1/4), E[x⁴] = Γ(5/4)/Γ(1/4) = 1/4
    n = 4000
    gen = make_generator(10)
    # start in the bulk: a chain started far out (|x| > 2.5 at this step) overshoots on every proposal and
    # stays stuck, a known trait of MALA on light-tailed targets that would bias this check
    x0 = 2 * torch.rand(n, 1, generator=gen) - 1
    state, _ = run("mala", x0, quartic, 300, step_size=0.2, generator=gen)
    m2 = math.gamma(0.75) / math.gamma(0.25)
    se = math.sqrt((0.25 - m2**2) / n)
    x2 = state.position.double().pow(2)
    assert abs(float(x2.mean()) - m2) < 5 * se
    assert abs(float(state.position.double().mean())) < 5 * math.sqrt(m2 / n)


def test_ula_without_noise_is_gradient_descent():
    x = torch.tensor([[1.0, 2.0], [-3.0, 0.5]])
    state = samplers.init(x, correlated_gaussian)
    new, info = samplers.ula_step(state, correlated_gaussian, step_size=0.2, noise_scale=0.0)
    grad = (x - MU) @ PREC  # analytic ∇E
    torch.testing.assert_close(new.position, x - 0.1 * grad)
    torch.testing.assert_close(new.energy, correlated_gaussian(new.position))
    torch.testing.assert_close(new.grad, (new.position - MU) @ PREC)
    assert info.n_grad == 1 and float(info.acceptance_rate) == 1.0


def test_ula_noise_scale_default_and_custom():
    x = torch.zeros(20000, 1)
    zero = lambda x: x.sum(1) * 0.0  # noqa: E731  flat energy: the step is pure noise
    s = samplers.init(x, zero)
    a, _ = samplers.ula_step(s, zero, step_size=0.25, generator=make_generator(0))
    b, _ = samplers.ula_step(s, zero, step_size=0.25, noise_scale=0.1, generator=make_generator(0))
    n = x.shape[0]
    assert abs(float(a.position.std()) - 0.5) < 5 * 0.5 / math.sqrt(2 * n)
    torch.testing.assert_close(b.position, a.position * 0.2)  # same ξ, σ = 0.1 instead of 0.5


def test_mala_acceptance_range_and_small_step_limit():
    gen = make_generator(2)
    x = torch.randn(2000, 2, generator=gen)
    state = samplers.init(x, correlated_gaussian)
    rates = []
    for eps in (1e-4, 1e-2, 0.5, 2.0):
        _, info = samplers.mala_step(state, correlated_gaussian, step_size=eps, generator=gen)
        rate = float(info.acceptance_rate)
        assert 0.0 < rate <= 1.0
        rates.append(rate)
    assert rates[0] > 0.995
    assert rates[0] >= rates[1] >= rates[2] >= rates[3]


def test_mala_one_gradient_per_step_and_rejections_keep_cache():
    calls = []

    def counted(x):
        calls.append(x.shape[0])
        return correlated_gaussian(x)

    gen = make_generator(3)
    state = samplers.init(torch.randn(500, 2, generator=gen), counted)
    for _ in range(5):
        new, info = samplers.mala_step(state, counted, step_size=1.5, generator=gen)
        rejected = (new.position == state.position).all(1)
        assert rejected.any() and not rejected.all()
        assert float(info.acceptance_rate) == pytest.approx(1 - float(rejected.float().mean()))
        # the cache always matches the position
        torch.testing.assert_close(new.energy, correlated_gaussian(new.position))
        torch.testing.assert_close(new.grad, (new.position - MU) @ PREC)
        state = new
    assert calls == [500] * 6  # init + one batched evaluation per step


def test_mala_acceptance_ratio_matches_hand_computation():
    # one particle, reproduce the MH log-ratio with the same noise and uniform draws
    x = torch.tensor([[0.3, -1.2]])
    eps = 0.7
    state = samplers.init(x, correlated_gaussian)
    gen = make_generator(4)
    _, info = samplers.mala_step(state, correlated_gaussian, step_size=eps, generator=gen)
    gen = make_generator(4)
    xi = torch.randn(1, 2, generator=gen)
    u = torch.rand(1, generator=gen)
    grad = lambda y: (y - MU) @ PREC  # noqa: E731
    prop = x - eps / 2 * grad(x) + math.sqrt(eps) * xi

    def log_q(to, frm):
        return -((to - frm + eps / 2 * grad(frm)) ** 2).sum() / (2 * eps)

    log_alpha = (
        correlated_gaussian(x) - correlated_gaussian(prop) + log_q(x, prop) - log_q(prop, x)
    ).squeeze()
    assert float(info.acceptance_rate) == float(torch.log(u)[0] < log_alpha)


def test_same_seed_same_chain_different_seed_differs():
    x0 = torch.randn(50, 2, generator=make_generator(5))
    for name in ("ula", "mala"):
        a, ha = run(name, x0, quartic, 30, step_size=0.05, generator=make_generator(7))
        b, hb = run(name, x0, quartic, 30, step_size=0.05, generator=make_generator(7))
        c, _ = run(name, x0, quartic, 30, step_size=0.05, generator=make_generator(8))
        assert torch.equal(ha.positions(), hb.positions()) and torch.equal(a.position, b.position)
        assert not torch.equal(a.position, c.position)


@pytest.mark.parametrize("noise_scale", [None, 0.3, 0.0])
def test_ula_steps_equals_repeated_ula_step(noise_scale):
    """The checked-once loop is bit-for-bit the same chain as K calls of ula_step (same generator)."""
    x0 = torch.randn(40, 2, generator=make_generator(5))
    state = samplers.init(x0, quartic)
    gen = make_generator(3)
    slow = state
    for _ in range(7):
        slow, _ = samplers.ula_step(slow, quartic, step_size=0.05, noise_scale=noise_scale, generator=gen)
    fast = samplers.ula_steps(
        state, quartic, 7, step_size=0.05, noise_scale=noise_scale, generator=make_generator(3)
    )
    for a, b in zip(slow, fast):
        assert torch.equal(a, b)
    assert samplers.ula_steps(state, quartic, 0, step_size=0.05) is state


def test_generator_state_resume_is_bit_exact():
    x0 = torch.randn(50, 2, generator=make_generator(5))
    gen = make_generator(9)
    full, _ = run("mala", x0, quartic, 20, step_size=0.05, generator=gen)
    gen = make_generator(9)
    half, _ = run("mala", x0, quartic, 10, step_size=0.05, generator=gen)
    saved = samplers.generator_state(gen)
    resumed_gen = samplers.set_generator_state(make_generator(0), saved)
    rest, _ = run("mala", half.position, quartic, 10, step_size=0.05, generator=resumed_gen)
    assert torch.equal(rest.position, full.position)
    with pytest.raises(errors.CheckpointError):
        samplers.set_generator_state(make_generator(0), torch.zeros(3))


def test_run_history_shapes_and_counts():
    x0 = torch.randn(30, 3, generator=make_generator(6))
    state, hist = run("ula", x0, std_gaussian, 10, step_size=0.1, generator=make_generator(0), record_every=3)
    steps, n_grad = hist.series("n_grad")
    assert steps == [0, 3, 6, 9, 10]
    assert hist.positions().shape == (5, 30, 3)
    assert n_grad == [1, 4, 7, 10, 11]  # init + one per step
    assert hist.series("acceptance_rate") == ([3, 6, 9, 10], [1.0] * 4)  # no rate before the first step
    assert torch.equal(hist.positions()[0], x0) and torch.equal(hist.positions()[-1], state.position)
    assert hist.frames[-1]["mean_energy"] == pytest.approx(float(std_gaussian(state.position).mean()))
    assert hist.meta["kind"] == "sampler"
    back = samplers.History.from_dict(json.loads(json.dumps(hist.to_dict())))
    assert torch.equal(back.positions(), hist.positions()) and back.series("n_grad") == hist.series("n_grad")
    _, hist = run("mala", x0, std_gaussian, 4, step_size=0.1, generator=make_generator(0))
    steps, rates = hist.series("acceptance_rate")
    assert steps == [1, 2, 3, 4] and all(0 < r <= 1 for r in rates)


def _quartic_escape(x0, eps, limit):
    """First iteration at which the noiseless ULA recursion x <- x - (ε/2) 4x³ leaves [-limit, limit]."""
    x = x0
    for it in range(1, 100):
        x = x - 2 * eps * x**3
        if abs(x) > limit:
            return it
    raise AssertionError("did not escape")


def test_divergence_error_on_exploding_step():
    x0 = torch.tensor([[2.0]])
    expected = _quartic_escape(2.0, 0.5, 1e4)  # 2 -> -6 -> 210 -> -9.3e6
    with pytest.raises(errors.DivergenceError) as exc:
        run("ula", x0, quartic, 50, step_size=0.5, noise_scale=0.0, bound=1e4)
    assert exc.value.iteration == expected == 3
    assert "step_size (now 0.5)" in str(exc.value) and "0.05" in str(exc.value)
    # without a bound, the float32 energy x⁴ overflows first (|x| > 3.4e38^(1/4) ≈ 1.4e9)
    expected = _quartic_escape(2.0, 0.5, torch.finfo(torch.float32).max ** 0.25)
    with pytest.raises(errors.DivergenceError) as exc:
        run("ula", x0, quartic, 50, step_size=0.5, noise_scale=0.0, bound=None)
    assert exc.value.iteration == expected == 4 and exc.value.quantity == "energies"


def test_mala_rejects_non_finite_proposals():
    def walled(x):  # finite only inside |x| < 3
        e = 0.5 * (x * x).sum(1)
        return torch.where(x.abs().max(1).values < 3, e, torch.full_like(e, float("inf")))

    state, hist = run("mala", torch.zeros(500, 2), walled, 50, step_size=4.0, generator=make_generator(0))
    assert (state.position.abs() < 3).all() and torch.isfinite(state.energy).all()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: run("hmc", torch.zeros(4, 2), std_gaussian, 5, step_size=0.1),
            errors.UnknownNameError,
            "mala, ula",
        ),
        (lambda: run("ula", torch.zeros(4, 2), std_gaussian, 5, step_size=0.0), None, "step_size"),
        (lambda: run("ula", torch.zeros(4, 2), std_gaussian, 5, step_size=float("nan")), None, "step_size"),
        (
            lambda: run("ula", torch.zeros(4, 2), std_gaussian, 5, step_size=0.1, noise_scale=-1.0),
            None,
            "noise_scale",
        ),
        (
            lambda: run("mala", torch.zeros(4, 2), std_gaussian, 5, step_size=0.1, noise_scale=0.0),
            None,
            "noise_scale",
        ),
        (
            lambda: run("ula", torch.zeros(4, 2), std_gaussian, 5, step_size=0.1, record_every=0),
            None,
            "record_every",
        ),
        (lambda: run("ula", torch.zeros(4, 2), std_gaussian, 2.5, step_size=0.1), None, "n_steps"),
        (lambda: run("ula", torch.zeros(4, 2), std_gaussian, 5, step_size=0.1, bound=-1.0), None, "bound"),
        (
            lambda: run("ula", torch.zeros(4, 2), std_gaussian, 5, step_size=0.1, generator=3),
            None,
            "generator",
        ),
        (lambda: samplers.init(torch.zeros(4), std_gaussian), None, "position"),
        (lambda: samplers.init(torch.tensor([[float("nan"), 0.0]]), std_gaussian), None, "non-finite"),
        (lambda: samplers.init(torch.zeros(4, 2), lambda x: x), None, r"shape \[4\]"),
        (
            lambda: samplers.ula_steps(samplers.init(torch.zeros(4, 2), quartic), quartic, 3, step_size=-1.0),
            None,
            "step_size",
        ),
        (lambda: make_generator(-1), None, "seed"),
        (lambda: ReplayBuffer(10, _base, reinit_frac=1.5), None, "reinit_frac"),
        (lambda: ReplayBuffer(0, _base), None, "size"),
        (lambda: ReplayBuffer(10, lambda n, g: torch.zeros(n)), None, "init_fn"),
        (lambda: ReplayBuffer(10, _base).sample(11), None, "buffer size 10"),
        (lambda: ReplayBuffer(10, _base).push(torch.zeros(2, 2), torch.tensor([0, 10])), None, "indices"),
        (lambda: ReplayBuffer(10, _base).push(torch.zeros(2, 3), torch.tensor([0, 1])), None, r"x \[n, 2\]"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error or errors.InvalidArgumentError, match=match):
        call()


def test_samplers_dimension_agnostic_and_no_global_rng():
    x = torch.rand(8, 784, generator=make_generator(0))
    before = torch.random.get_rng_state()
    for name in ("ula", "mala"):
        state, hist = run(name, x, std_gaussian, 3, step_size=0.01)  # generator=None: entropy-seeded
        assert state.position.shape == (8, 784) and hist.positions().shape == (4, 8, 784)
    assert torch.equal(before, torch.random.get_rng_state())


# --- replay buffer --------------------------------------------------------------------------------


def _base(n, generator):
    return torch.randn(n, 2, generator=generator)


def test_replay_buffer_reinit_fraction():
    buf = ReplayBuffer(1000, _base, reinit_frac=0.1, generator=make_generator(0))
    assert buf.positions.shape == (1000, 2)
    buf.push(torch.full((1000, 2), 100.0), torch.arange(1000))  # mark every slot
    x, idx = buf.sample(500)
    assert idx.unique().numel() == 500
    fresh = (x != 100.0).all(1)
    assert int(fresh.sum()) == 50  # 0.1 * 500 exactly
    # non-integer share: the count is floor or ceil and right on average
    buf = ReplayBuffer(100, _base, reinit_frac=0.05, generator=make_generator(1))
    buf.push(torch.full((100, 2), 100.0), torch.arange(100))
    counts = torch.tensor(
        [int((buf.sample(30)[0] != 100.0).all(1).sum()) for _ in range(400)], dtype=torch.float
    )
    assert set(counts.tolist()) <= {1.0, 2.0}
    # each count is Bernoulli(0.5) + 1: mean 1.5, std 0.5
    assert abs(float(counts.mean()) - 1.5) < 5 * 0.5 / math.sqrt(400)


def test_replay_buffer_push_and_state_round_trip(tmp_path):
    buf = ReplayBuffer(200, _base, reinit_frac=0.1, generator=make_generator(2))
    x, idx = buf.sample(64)
    buf.push(x + 1.0, idx)
    torch.testing.assert_close(buf.positions[idx], x + 1.0)
    path = tmp_path / "buf.pt"
    torch.save(buf.state_dict(), path)
    other = ReplayBuffer(200, _base, reinit_frac=0.5, generator=make_generator(99))
    other.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(other.positions, buf.positions) and other.reinit_frac == 0.1
    a, ia = buf.sample(64)
    b, ib = other.sample(64)
    assert torch.equal(a, b) and torch.equal(ia, ib)  # bit-exact continuation
    with pytest.raises(errors.CheckpointError):
        ReplayBuffer(100, _base).load_state_dict(buf.state_dict())


@pytest.mark.parametrize("kind", ["linear", "geometric"])
def test_annealed_chain_variance_on_gaussian(kind):
    """Known answer: on E = x²/(2s²) each step maps the variance v to (1 - ε_k/(2s²))² v + σ²."""
    s2, eps, sigma, k_steps, n = 0.5, 0.1, 0.1, 20, 200_000
    steps = samplers.anneal_schedule(eps, sigma, k_steps, kind)
    assert steps[0] == pytest.approx(eps) and steps[-1] == pytest.approx(sigma**2)
    mid = steps[k_steps // 2]
    assert mid < eps and mid > sigma**2
    v = 4.0
    for e in steps:
        v = (1 - e / (2 * s2)) ** 2 * v + sigma**2
    gen = torch.Generator().manual_seed(3)
    x = 2.0 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    energy = lambda y: (y**2).sum(1) / (2 * s2)  # noqa: E731
    state = samplers.ula_steps(
        samplers.init(x, energy), energy, k_steps, step_size=steps, noise_scale=sigma, generator=gen
    )
    # the sample variance's standard error is v·sqrt(2/n); allow 5 of them
    assert float(state.position.var()) == pytest.approx(v, abs=5 * v * (2 / n) ** 0.5)
    if kind == "linear":
        assert steps[1] - steps[0] == pytest.approx(steps[-1] - steps[-2])
    else:
        assert steps[1] / steps[0] == pytest.approx(steps[-1] / steps[-2])
