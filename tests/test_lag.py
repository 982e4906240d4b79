"""The lag meter: how far negatives sit from the model they train, and the error of the gradient they give.

Known answers: exact samples of the model lag by 0 up to the floor's spread and give a gradient error that
falls as 1/sqrt(n); a translated cloud lags clearly; a Gaussian with a linear parameter has a closed-form
maximum-likelihood gradient; a frozen model's converged chain measures like exact samples.
"""

import math

import pytest
import torch
from torch import nn

from pdviz import energies, metrics, training
from pdviz.grid import Grid

GRID = Grid(-5.0, 5.0, 100)


def _exact(energy, n, seed):
    return GRID.sample(energy, n, generator=torch.Generator().manual_seed(seed))


def test_lag_of_exact_samples_is_zero_within_the_floors_spread():
    energy = GRID.energy(energies.get("8gaussians"))
    n, bins = 1000, metrics.LAG_BINS
    lags = torch.tensor([metrics.lag(_exact(energy, n, 100 + s), energy, GRID) for s in range(30)])
    floor = metrics.kl_floor(energy, n, GRID, bins)
    occupied = int((GRID.bin_probabilities(energy, bins) > 1e-4).sum())
    spread = math.sqrt(2 * occupied) / (2 * n)  # sd of 2 n KL ≈ χ² with B - 1 degrees of freedom
    assert floor > 5 * spread  # without the floor's subtraction the test below fails
    noise = 3 * spread / math.sqrt(30) + 3 * spread / math.sqrt(
        metrics.LAG_REPEATS
    )  # the lags' and the floor's
    assert abs(float(lags.mean())) < noise
    assert float(lags.abs().max()) < 4 * spread
    # a cloud that lags behind a moved model: the same samples, shifted by 0.3 (a mode's std is 0.35)
    shifted = _exact(energy, n, 7) + torch.tensor([0.3, 0.0])
    assert metrics.lag(shifted, energy, GRID) > 20 * spread


def test_weighted_lag_uses_the_weights():
    # samples of N(0, I) weighted by exp(-E_target + E_gaussian) are samples of the target: their lag is
    # near 0 (the floor of ESS exact samples is approximate: measured 0.014-0.051 over 4 seeds, ESS 3900-5900)
    target, proposal = energies.get("correlated_gaussian"), energies.get("gaussian")
    x = _exact(GRID.energy(proposal), 20000, 3)
    w = torch.softmax(-target(x) + proposal(x), 0)
    unweighted, weighted = metrics.lag(x, target, GRID), metrics.lag(x, target, GRID, w)
    assert unweighted > 1.0 and abs(weighted) < 0.06 and abs(weighted) < unweighted / 20


class _LinearGaussian(nn.Module):
    """``E(x) = ⟨θ, x⟩ + |x|²/2``: the Gaussian N(-θ, I); ``∇θ E = x``, so the exact gradient is
    ``mean(data) + θ`` in closed form."""

    def __init__(self, theta):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta))

    def forward(self, x):
        return x @ self.theta + 0.5 * x.square().sum(1)


def test_gradient_error_against_the_closed_form_gradient():
    model = _LinearGaussian([0.5, -1.0])
    data = torch.tensor([[1.0, 1.0], [2.0, 0.0]])  # mean (1.5, 0.5): g = (2.0, -0.5)
    g = torch.tensor([2.0, -0.5])
    at_mean = torch.tensor([[-0.5, 1.0]]).repeat(10, 1)  # negatives whose mean is the model's mean
    result = metrics.gradient_error(model, data, at_mean, GRID)
    assert result.error < 2e-3 and result.cosine > 1 - 1e-5  # only the midpoint quadrature's error
    off = at_mean + torch.tensor([0.3, 0.4])  # ĝ = g - (0.3, 0.4): error 0.5 / |g|
    result = metrics.gradient_error(model, data, off, GRID)
    assert result.error == pytest.approx(0.5 / float(g.norm()), rel=5e-3)
    cosine = float((g - torch.tensor([0.3, 0.4])) @ g) / float(
        (g - torch.tensor([0.3, 0.4])).norm() * g.norm()
    )
    assert result.cosine == pytest.approx(cosine, abs=1e-3)
    # weights pick the negatives: all the weight on the point at the mean gives the exact gradient
    both = torch.cat([at_mean[:1], off[:1]])
    assert metrics.gradient_error(model, data, both, GRID, torch.tensor([1.0, 0.0])).error < 2e-3


def test_gradient_error_of_exact_samples_falls_as_one_over_root_n():
    model = training.Trainer(training.make_config(hidden=16, n_iters=1, n_init_steps=0, eval_every=0)).model
    energy = GRID.energy(model)
    data = _exact(GRID.energy(energies.get("8gaussians")), 500, 1)

    def mean_error(n):
        return sum(metrics.gradient_error(model, data, _exact(energy, n, s), GRID, energy=energy).error
                   for s in range(8)) / 8  # fmt: skip

    small, large = mean_error(250), mean_error(4000)
    assert small / large == pytest.approx(4.0, rel=0.3)  # sqrt(4000 / 250)
    assert (
        metrics.gradient_error(model, data, _exact(energy, 4000, 0), GRID, energy=energy).floor < 1.5 * large
    )


def _tiny(strategy, **kw):
    cfg = dict(hidden=16, n_particles=300, batch_size=300, n_iters=4, eval_every=2, n_init_steps=20,
               grid_size=60, field_grid_size=30, n_eval=500, snapshot_every=0)  # fmt: skip
    return training.Trainer(training.make_config(strategy=strategy, **{**cfg, **kw}))


@pytest.mark.parametrize("strategy", sorted(training.STRATEGIES))
def test_every_strategy_records_the_lag_and_the_gradient_error(strategy):
    """Every strategy whose negatives are samples of the model; the others (NCE, DSM, ED, DRL) record none."""
    trainer = _tiny(strategy)
    trainer.run(progress=False)
    for key in ("lag", "grad_error", "grad_cosine", "grad_error_floor"):
        steps, values = trainer.history.series(key)
        if not training.STRATEGIES[strategy].samples:
            assert steps == [], key
            continue
        assert steps == [2, 4] and all(math.isfinite(v) for v in values), key
    assert all(-1.0 <= c <= 1.0 for c in trainer.history.series("grad_cosine")[1])


def test_measuring_the_lag_changes_neither_the_trajectory_nor_the_training_time():
    measured, plain = _tiny("pcd"), _tiny("pcd", eval_every=0)
    measured.run(progress=False)
    plain.run(progress=False)
    assert torch.equal(measured.particles, plain.particles)
    assert measured.history.meta["eval_cpu_time"] > 0


def test_a_frozen_model_and_a_converged_chain_measure_like_exact_samples():
    # lr = 0: the model never moves, so 2000 ULA steps of size 0.01 have converged (up to ULA's small bias)
    # the box holds the untrained model (its base is the data's Gaussian, std ≈ 2): [-5, 5]² would miss 3 %
    trainer = _tiny("pcd", lr=0.0, n_init_steps=2000, n_particles=1000, batch_size=1000, n_iters=10,
                    eval_every=5, grid_low=-9.0, grid_high=9.0)  # fmt: skip
    trainer.run(progress=False)
    energy = trainer.grid.energy(trainer.model)
    spread = (
        math.sqrt(2 * int((trainer.grid.bin_probabilities(energy, metrics.LAG_BINS) > 1e-4).sum())) / 2000
    )
    _, lags = trainer.history.series("lag")
    assert all(abs(v) < 4 * spread for v in lags), (lags, spread)
    _, errors = trainer.history.series("grad_error")
    _, floors = trainer.history.series("grad_error_floor")
    assert all(e < 2.0 * f for e, f in zip(errors, floors)), (errors, floors)


def test_the_lag_benchmark_runs_quick(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "lag.py"
    out = tmp_path / "lag.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["strategy"] for r in rows} == {"pcd", "pd-beta"}
    assert all(math.isfinite(r["lag"]) and r["grad_error_floor"] > 0 for r in rows)
    assert "| pcd | " in proc.stdout and "fast: lag" in proc.stdout


def test_mode_lag_of_negatives_one_evaluation_behind_is_minus_one():
    g = torch.Generator().manual_seed(0)
    model = torch.softmax(torch.randn(12, 8, generator=g), 1)  # 12 evaluations of 8 mode weights
    excess, change, corr = metrics.mode_lag(model[1:], model[:-1])  # negatives hold the previous weights
    assert excess.shape == change.shape == (10, 8)
    torch.testing.assert_close(excess, -change)
    assert corr == pytest.approx(-1.0)
    assert abs(metrics.mode_lag(model, model + 0.01 * torch.randn(12, 8, generator=g))[2]) < 0.5  # no lag


def test_the_lag_meter_records_mode_weights_on_a_dataset_with_modes():
    trainer = _tiny("pd-weighted")
    trainer.run(progress=False)
    model, negatives = (
        trainer.history.stack("model_mode_weights"),
        trainer.history.stack("negative_mode_weights"),
    )
    assert model.shape == negatives.shape == (2, 8)
    torch.testing.assert_close(model.sum(1), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(negatives.sum(1), torch.ones(2, dtype=torch.float64))
