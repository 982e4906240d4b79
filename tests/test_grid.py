"""The cell-centred grid: layout, log Z, densities, exact samples, interpolation, bins, bad input."""

import math
import time
import warnings

import pytest
import torch

from pdviz import energies, metrics, training
from pdviz.errors import InvalidArgumentError
from pdviz.grid import Grid


def test_cell_centred_layout():
    g = Grid(-5.0, 5.0, 200)
    assert g.h == pytest.approx(0.05) and g.cell_area == pytest.approx(0.0025)
    assert g.xs[0].item() == pytest.approx(-4.975) and g.xs[-1].item() == pytest.approx(4.975)
    assert g.points.shape == (40000, 2)
    # row-major: index = iy * size + ix, point = (xs[ix], xs[iy])
    iy, ix = 17, 123
    assert torch.allclose(g.points[iy * 200 + ix].double(), torch.stack([g.xs[ix], g.xs[iy]]))
    e = g.energy(lambda x: x[:, 0] + 10 * x[:, 1])
    assert e.dtype == torch.float64 and e.shape == (200, 200)
    assert e[iy, ix].item() == pytest.approx(g.xs[ix].item() + 10 * g.xs[iy].item(), abs=1e-5)


def test_log_z_standard_gaussian():
    # acceptance criterion: log Z of |x|²/2 is log 2π to 1e-3 (the midpoint rule does much better)
    g = Grid()
    assert abs(g.log_z(energies.get("gaussian")) - math.log(2 * math.pi)) < 1e-5
    # a coarse grid is still close: the midpoint rule is spectrally accurate for Gaussians
    assert abs(Grid(size=40).log_z(energies.get("gaussian")) - math.log(2 * math.pi)) < 1e-3
    # an off-by-one layout (points spaced 10/199 with cell 10/200) would be off by ~2·log(200/199)
    assert 2 * math.log(200 / 199) > 1e-3


def test_density_normalised_and_marginals():
    g = Grid(-5.0, 5.0, 100, dtype=torch.float64)
    fn = energies.get("correlated_gaussian")
    p = g.density(fn)
    assert p.dtype == torch.float64
    assert p.sum().item() * g.cell_area == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(g.log_density(fn).exp(), p)
    assert g.cell_probabilities(fn).sum().item() == pytest.approx(1.0, abs=1e-12)
    m1, m2 = g.marginals(fn)
    # exact Gaussian marginals N(μ_i, Σ_ii)
    for m, mu, var in ((m1, 0.5, 1.5), (m2, -0.5, 1.0)):
        ref = torch.exp(-((g.xs - mu) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
        assert (m - ref).abs().max() < 1e-4
        assert m.sum().item() * g.h == pytest.approx(1.0, abs=1e-10)


def test_precomputed_energy_tensor_accepted():
    g = Grid(size=50)
    fn = energies.get("banana")
    e = g.energy(fn)
    assert g.log_z(e) == g.log_z(fn)


def test_exact_samples_match_correlated_gaussian():
    g = Grid()
    fn = energies.get("correlated_gaussian")
    n = 50000
    x = g.sample(fn, n, generator=torch.Generator().manual_seed(0))
    assert x.shape == (n, 2) and x.dtype == torch.float32
    x = x.double()
    # mean within 5 standard errors (per coordinate SE = sqrt(Σ_ii / n))
    se_mean = torch.sqrt(torch.diagonal(fn.cov) / n)
    assert torch.all((x.mean(0) - fn.mean).abs() < 5 * se_mean)
    # covariance entries within 5 SE: Var(x_i x_j) ≈ Σ_ii Σ_jj + Σ_ij² for a Gaussian; jitter adds h²/12
    cov = torch.cov(x.T)
    s = fn.cov
    se_cov = torch.sqrt((torch.outer(torch.diagonal(s), torch.diagonal(s)) + s**2) / n)
    assert torch.all((cov - s).abs() < 5 * se_cov + g.h**2 / 12)


def test_samples_reproducible_and_inside_cells():
    g = Grid(-2.0, 2.0, 4)
    fn = energies.get("gaussian")
    a = g.sample(fn, 1000, generator=torch.Generator().manual_seed(3))
    b = g.sample(fn, 1000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert (a.abs() <= 2.0).all()
    # cell frequencies match the cell masses (binomial 5 SE)
    counts = g.bin_counts(a, 4) / 1000
    p = g.cell_probabilities(fn)
    assert torch.all((counts - p).abs() < 5 * torch.sqrt(p * (1 - p) / 1000) + 1e-12)


def test_interpolate_exact_for_bilinear_functions():
    g = Grid(-3.0, 3.0, 30)
    X = g.xs[None, :].expand(30, 30)
    Y = g.xs[:, None].expand(30, 30)
    vals = 1.0 + 2.0 * X - 0.5 * Y + 0.3 * X * Y  # bilinear: reproduced exactly inside the centres
    x = 5.8 * torch.rand(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 2.9
    out = g.interpolate(vals, x)
    ref = 1.0 + 2.0 * x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 0] * x[:, 1]
    assert out.dtype == torch.float64 and torch.allclose(out, ref, atol=1e-12)
    # at the centres it returns the values
    assert torch.allclose(g.interpolate(vals, g.points.double()), vals.reshape(-1), atol=1e-5)  # f32 points
    # vector values [size, size, 2]
    field = torch.stack([X, Y], dim=-1)
    assert torch.allclose(g.interpolate(field, x), x, atol=1e-12)
    # outside the box: clamped to the edge values
    far = torch.tensor([[10.0, 0.5], [-10.0, -10.0]], dtype=torch.float32)
    clamped = torch.tensor([[2.9, 0.5], [-2.9, -2.9]], dtype=torch.float32)
    assert torch.allclose(g.interpolate(vals, far), g.interpolate(vals, clamped))
    assert g.interpolate(vals, far).dtype == torch.float32


def test_bins_partition_and_clamp():
    g = Grid(-5.0, 5.0, 200)
    fn = energies.get("gaussian")
    for bins in (50, 37, 1):  # 37 does not divide 200: fractional cell overlaps
        pb = g.bin_probabilities(fn, bins)
        assert pb.shape == (bins, bins) and pb.sum().item() == pytest.approx(1.0, abs=1e-12)
    # with bins dividing size, a bin's mass is the sum of its 4 × 4 cells
    pc = g.cell_probabilities(fn)
    assert torch.allclose(g.bin_probabilities(fn, 50), pc.reshape(50, 4, 50, 4).sum((1, 3)))
    x = torch.tensor([[0.1, 0.1], [99.0, 0.0], [-99.0, -99.0], [4.99, -4.99]])
    c = g.bin_counts(x, 10)
    assert c.sum() == 4
    assert c[5, 5] == 1 and c[5, 9] == 1 and c[0, 0] == 1 and c[0, 9] == 1  # [iy, ix]; far ones: edge bins


def wide_gaussian(x):
    """N(0, 3² I): 18.2 % of its mass lies outside [-5, 5]²."""
    return (x.double() ** 2).sum(1) / (2 * 9.0)


def test_outside_mass_of_a_wide_gaussian():
    exact = 1 - math.erf(5 / (3 * math.sqrt(2))) ** 2  # 0.1820
    assert Grid(-5, 5, 200).outside_mass(wide_gaussian) == pytest.approx(exact, abs=2e-3)
    assert Grid(-5, 5, 200).outside_mass(energies.get("8gaussians")) < 1e-6


def test_log_likelihood_warns_of_the_mass_outside_the_box():
    # issue 24: the edge-cell heuristic never fired here (18.2 % outside, log-likelihood 0.201 too high)
    x = 3 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    x = x[(x.abs() < 5).all(1)]
    with pytest.warns(
        UserWarning, match=r"18\.\d% of the model's mass lies outside .* 0\.20\d nats too high"
    ):
        metrics.log_likelihood(wide_gaussian, x, Grid(-5, 5, 100))


def test_trainer_evaluate_warns_once_of_the_mass_outside_the_box():
    # issue 24: Trainer.evaluate, which makes every curve and table, did not check at all
    cfg = training.make_config(dataset="custom", n_particles=16, batch_size=16, hidden=8, n_init_steps=0,
                               n_eval=200, grid_size=32, eval_every=0, snapshot_every=0, ema=0.0)  # fmt: skip
    model = training.models.EBM.from_data(torch.randn(64, 2), hidden=8)
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        model.base_mean.zero_()
        model.base_log_std.fill_(math.log(3.0))  # the base N(0, 3² I) alone
    trainer = training.Trainer(cfg, data=torch.randn(400, 2).clamp(-4, 4), model=model)
    trainer.iteration = 1  # at iteration 0 the model is the base fitted to the data: recorded, not warned of
    with pytest.warns(UserWarning, match=r"18\.\d% of the model's mass lies outside"):
        trainer.evaluate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per run, not at every evaluation; each frame has the share
        out = trainer.evaluate()
    assert out["outside_mass"] == pytest.approx(1 - math.erf(5 / (3 * math.sqrt(2))) ** 2, abs=2e-3)


def test_fast_evaluation():
    g = Grid()
    fn = energies.get("8gaussians")
    g.energy(fn)
    t0 = time.perf_counter()
    g.log_z(fn)
    assert time.perf_counter() - t0 < 0.5  # milliseconds in practice; loose for a loaded CI machine


def test_batched_evaluation_is_the_same():
    g = Grid(size=60)
    fn = energies.get("rings")
    assert torch.equal(g.energy(fn, batch=7), g.energy(fn))


def nan_energy(x):
    e = 0.5 * x.square().sum(1)
    return torch.where(x[:, 0] > 4.0, torch.nan, e)  # centres 4.25 and 4.75: 2 columns of 20


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g: Grid(size=1), "size"),
        (lambda g: Grid(size=2.5), "size"),
        (lambda g: Grid(size=True), "size"),
        (lambda g: Grid(low=1.0, high=1.0), "low < high"),
        (lambda g: Grid(low=float("nan")), "low"),
        (lambda g: Grid(high="5"), "high"),
        (lambda g: Grid(dtype=torch.int64), "dtype"),
        (lambda g: g.log_z(nan_energy), r"non-finite .* on 40 of 400 grid cells"),
        (lambda g: g.energy(lambda x: x), "one energy per point"),
        (lambda g: g.log_z(torch.zeros(10, 10)), r"\[20, 20\]"),
        (lambda g: g.sample(energies.get("gaussian"), 0), "n must be"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(Grid(size=20))
