"""Metrics: held-out likelihood, binned KL and its floor, MMD² against closed forms, ESS, mode weights."""

import math

import pytest
import torch

from pdviz import datasets, energies, metrics
from pdviz.errors import InvalidArgumentError
from pdviz.grid import Grid


def test_log_likelihood_of_exact_8gaussians():
    # acceptance criterion: the exact density scores -2.84 ± 0.03 on 10 000 fresh samples
    x = datasets.sample("8gaussians", 10000, seed=21)
    ll = metrics.log_likelihood(energies.get("8gaussians"), x)
    assert abs(ll + 2.84) < 0.03
    # and it is a proper normalisation: shifting the energy by a constant changes nothing
    shifted = metrics.log_likelihood(lambda y: energies.get("8gaussians")(y) + 123.0, x)
    assert shifted == pytest.approx(ll, abs=1e-4)


def test_log_likelihood_gaussian_closed_form():
    # E_p[log p] for N(μ, Σ) is -(log det(2π e Σ))/2; the sample mean is within 5 SE (SE = sqrt(1/(2n)) · ...)
    fn = energies.get("correlated_gaussian")
    n = 20000
    x = Grid().sample(fn, n, generator=torch.Generator().manual_seed(2))
    ll = metrics.log_likelihood(fn, x)
    exact = -0.5 * (2 * math.log(2 * math.pi * math.e) + math.log(float(torch.linalg.det(fn.cov))))
    # log p is -χ²₂/2 + const, whose variance is 1 (plus a little from the in-cell jitter)
    assert abs(ll - exact) < 5 * math.sqrt(1.0 / n) + 1e-3
    # a wrong model is clearly worse
    assert metrics.log_likelihood(energies.get("gaussian"), x) < exact - 0.1


def test_kl_of_exact_samples_is_at_the_floor():
    fn = energies.get("8gaussians")
    grid = Grid()
    n = 2000
    floor = metrics.kl_floor(fn, n, grid=grid, bins=30, repeats=8, generator=torch.Generator().manual_seed(1))
    kls = [
        metrics.kl_to_grid(
            grid.sample(fn, n, generator=torch.Generator().manual_seed(100 + s)), fn, grid, bins=30
        )
        for s in range(8)
    ]
    mean = sum(kls) / len(kls)
    sd = (sum((k - mean) ** 2 for k in kls) / (len(kls) - 1)) ** 0.5
    assert abs(mean - floor) < 5 * sd / math.sqrt(len(kls)) * math.sqrt(2)  # two independent means
    # dataset samples are also exact samples of this density (the grid only adds in-cell jitter)
    x = datasets.sample("8gaussians", n, seed=5)
    assert metrics.kl_to_grid(x, fn, grid, bins=30) < floor + 5 * sd
    # a wrong law (unequal mode weights) is far above the floor
    wrong = energies.get("mode_weights").at(1.0)
    assert metrics.kl_to_grid(x, wrong, grid, bins=30) > floor + 20 * sd


def test_kl_floor_rule_of_thumb_on_a_uniform_target():
    # every one of the 10 × 10 bins holds 1 % of the mass; with n = 20 000 the χ² approximation is good:
    # E[KL] ≈ (B - 1) / (2n), sd of 2n KL ≈ sqrt(2 (B - 1)), so 20 repeats pin it to ~3 %
    n, bins, repeats = 20000, 10, 20
    floor = metrics.kl_floor(lambda x: torch.zeros(x.shape[0]), n, Grid(size=50), bins=bins, repeats=repeats)
    expect = (bins * bins - 1) / (2 * n)
    sd_mean = math.sqrt(2 * (bins * bins - 1)) / (2 * n) / math.sqrt(repeats)
    assert abs(floor - expect) < 5 * sd_mean + 0.05 * expect  # plus the O(1/n²) bias of the approximation


def test_kl_accepts_precomputed_grid_energy_and_counts_outside_points():
    grid = Grid(size=40)
    fn = energies.get("gaussian")
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(3))
    assert metrics.kl_to_grid(x, grid.energy(fn), grid, bins=10) == metrics.kl_to_grid(x, fn, grid, bins=10)
    far = torch.cat([x, torch.tensor([[50.0, 0.0]])])
    # the far point lands in an edge bin with tiny mass: KL grows, but stays finite
    assert math.isfinite(metrics.kl_to_grid(far, fn, grid, bins=10))
    assert metrics.kl_to_grid(far, fn, grid, bins=10) > metrics.kl_to_grid(x, fn, grid, bins=10)


def _naive_mmd2(x, y, hs):
    def k(a, b):
        d2 = torch.cdist(a.double(), b.double()).square()
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - kxx.diag().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diag().sum()) / (n * (n - 1))
        - 2 * k(x, y).mean()
    )


def test_mmd2_matches_naive_formula_across_chunks():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(103, 2, generator=g), torch.randn(77, 2, generator=g) + 0.3
    hs = (0.1, 0.3, 1.0, 3.0)
    ref = _naive_mmd2(x, y, hs)
    for chunk in (1, 10, 50, 4096):
        assert metrics.mmd2(x, y, chunk=chunk) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_mmd2_same_law_is_zero_on_average():
    # unbiased: the mean over independent pairs is 0 within 5 standard errors
    vals = []
    for s in range(30):
        x = datasets.sample("8gaussians", 300, seed=2 * s)
        y = datasets.sample("8gaussians", 300, seed=2 * s + 1)
        vals.append(metrics.mmd2(x, y))
    vals = torch.tensor(vals, dtype=torch.float64)
    assert abs(vals.mean()) < 5 * vals.std() / math.sqrt(len(vals))
    # different laws: far above the same-law spread
    z = datasets.sample("rings", 300, seed=99)
    assert metrics.mmd2(datasets.sample("8gaussians", 300, seed=98), z) > vals.mean() + 10 * vals.std()


def test_mmd2_closed_form_for_shifted_gaussians():
    # x ~ N(0, s² I), y ~ N(μ, s² I) in 2-D: MMD² = Σ_h 2 h²/(h² + 2s²) (1 - exp(-|μ|²/(2 (h² + 2s²))))
    s, mu, hs = 0.5, torch.tensor([0.6, 0.0]), (0.3, 1.0)
    exact = sum(
        2 * h * h / (h * h + 2 * s * s) * (1 - math.exp(-0.36 / (2 * (h * h + 2 * s * s)))) for h in hs
    )
    g = torch.Generator().manual_seed(5)
    vals = torch.tensor(
        [
            metrics.mmd2(s * torch.randn(400, 2, generator=g), mu + s * torch.randn(400, 2, generator=g), hs)
            for _ in range(12)
        ],
        dtype=torch.float64,
    )
    assert abs(vals.mean() - exact) < 5 * vals.std() / math.sqrt(len(vals))


def test_ess():
    assert metrics.ess(torch.zeros(17)) == pytest.approx(17.0)
    assert metrics.ess(torch.full((5,), 800.0)) == pytest.approx(5.0)  # no overflow
    one_hot = torch.full((9,), -math.inf)
    one_hot[3] = 0.0
    assert metrics.ess(one_hot) == 1.0
    assert metrics.ess(torch.tensor([0.0, -1000.0, -1000.0])) == pytest.approx(1.0)
    # two equal weights and two zero weights: 2
    assert metrics.ess(torch.tensor([1.0, 1.0, -math.inf, -math.inf])) == pytest.approx(2.0)
    # weights w = (1, 2, 3): (6)² / 14
    assert metrics.ess(torch.log(torch.tensor([1.0, 2.0, 3.0]))) == pytest.approx(36 / 14)


def test_mode_weights():
    c = datasets.MODE_CENTRES["8gaussians"]
    x = torch.cat([c[:1].repeat(6, 1), c[1:2].repeat(2, 1)]) + 0.01
    w = metrics.mode_weights(x, c)
    assert w.shape == (8,) and w.sum().item() == pytest.approx(1.0)
    assert w[0].item() == pytest.approx(0.75) and w[1].item() == pytest.approx(0.25)
    assert metrics.mode_weight_spread(w) == pytest.approx(0.75)
    n = 20000
    spread = metrics.mode_weight_spread(metrics.mode_weights(datasets.sample("8gaussians", n, seed=6), c))
    # equal weights: each share has SE sqrt(p(1-p)/n); the range of 8 is below ~2 · 5 SE
    assert spread < 2 * 5 * math.sqrt((1 / 8) * (7 / 8) / n)


def test_grid_mode_weights_of_a_mixture_are_its_weights():
    # the exact mixture of mode_weights at t = 1 has weights (1, ..., 8) / 36; the grid mass nearest each
    # centre matches them up to the overlap of neighbouring modes (~6 std apart) and the box (as energies test)
    moving, grid = energies.get("mode_weights"), Grid()
    w = metrics.grid_mode_weights(grid, moving.at(1.0), moving.centres)
    assert w.shape == (8,) and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(w, moving.weights(1.0), atol=5e-3)
    assert torch.equal(w, metrics.grid_mode_weights(grid, grid.energy(moving.at(1.0)), moving.centres))
    assert metrics.mode_weight_spread(metrics.grid_mode_weights(grid, moving.at(0.0), moving.centres)) < 1e-3


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda fn: metrics.log_likelihood(fn, torch.zeros(5, 3)), r"shape \[n, 2\]"),
        (lambda fn: metrics.kl_to_grid(torch.tensor([[0.0, math.nan]]), fn), "non-finite"),
        (lambda fn: metrics.kl_to_grid(torch.zeros(3, 2), fn, bins=0), "bins"),
        (lambda fn: metrics.kl_to_grid(torch.zeros(3, 2), fn, grid="fine"), "grid"),
        (lambda fn: metrics.kl_floor(fn, 10, repeats=0), "repeats"),
        (
            lambda fn: metrics.log_likelihood(
                lambda x: torch.full((x.shape[0],), math.nan), torch.zeros(3, 2)
            ),
            "non-finite",
        ),
        (lambda fn: metrics.mmd2(torch.zeros(1, 2), torch.zeros(5, 2)), "at least 2"),
        (lambda fn: metrics.mmd2(torch.zeros(4, 2), torch.zeros(5, 3)), "shape"),
        (lambda fn: metrics.mmd2(torch.zeros(4, 2), torch.zeros(5, 2), bandwidths=(1.0, -1.0)), "bandwidths"),
        (lambda fn: metrics.mmd2(torch.zeros(4, 2), torch.zeros(5, 2), bandwidths=()), "bandwidths"),
        (lambda fn: metrics.ess(torch.tensor([0.0, math.nan])), "NaN"),
        (lambda fn: metrics.ess(torch.full((3,), -math.inf)), "all -Inf"),
        (lambda fn: metrics.ess(torch.zeros(2, 2)), "1-D"),
        (lambda fn: metrics.mode_weights(torch.zeros(3, 2), torch.zeros(4, 3)), "centres"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(energies.get("gaussian"))
