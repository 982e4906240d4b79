"""Tests of the tracking experiment ``flows.track``: budgets, records, the exact flow at the KL floor."""

import pytest
import torch

from pdviz import energies, flows, metrics
from pdviz.errors import InvalidArgumentError, UnknownNameError
from pdviz.grid import Grid


@pytest.mark.parametrize("method", sorted(flows.FLOWS))
def test_track_spends_the_same_budget_for_every_method(method):
    grid = Grid(-5, 5, 48)
    hist = flows.track(
        "translating_gaussian",
        method,
        n_particles=60,
        n_steps=4,
        evals_per_step=4,
        grid=grid,
        record_every=2,
        bins=10,
    )
    assert hist.positions.shape == (3, 60, 2)
    torch.testing.assert_close(hist.times, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert hist.n_grad.tolist() == [0, 8, 16]
    assert hist.kl.shape == hist.ess.shape == hist.n_outside.shape == (3,)
    assert hist.log_weights.shape == (3, 60)
    assert torch.isfinite(hist.kl).all() and (hist.kl >= 0).all()


def test_track_same_seed_same_result():
    kw = dict(n_particles=50, n_steps=3, evals_per_step=3, grid=Grid(-5, 5, 32), bins=10, seed=3)
    a = flows.track("interpolation", "pd", **kw)
    b = flows.track(energies.get("interpolation"), "pd", **kw)
    torch.testing.assert_close(a.positions, b.positions, rtol=0, atol=0)
    c = flows.track("interpolation", "pd", **{**kw, "seed": 4})
    assert not torch.equal(a.positions, c.positions)


def test_exact_flow_keeps_the_kl_at_the_floor():
    # exact samples of p_0 carried by the grid-solved field alone (no corrections) stay exact samples
    grid, n, bins = Grid(-5, 5, 96), 1000, 20
    moving = energies.get("scaling_gaussian")
    hist = flows.track(
        moving, "exact", n_particles=n, n_steps=20, evals_per_step=1, grid=grid, record_every=10, bins=bins
    )
    gen = torch.Generator().manual_seed(0)
    for t, kl in zip(hist.times.tolist(), hist.kl.tolist()):
        floor = metrics.kl_floor(moving.at(t), n, grid=grid, bins=bins, repeats=5, generator=gen)
        assert kl <= 1.5 * floor, (t, kl, floor)
    # the scale of the cloud follows σ(t) (0.5 -> 1.5): the midpoint rule is second order in the step
    ratio = hist.positions[-1].std(0) / hist.positions[0].std(0)
    assert torch.allclose(ratio, torch.tensor(3.0), rtol=0.02)
    # PD alone cannot do this: its field is twice too strong at σ = 0.5 (σ² ≠ 2)
    pd = flows.track(
        moving, "pd", n_particles=n, n_steps=20, evals_per_step=2, grid=grid, record_every=10, bins=bins
    )
    assert float(pd.kl[-1]) > 2 * float(hist.kl[-1])


def test_weighted_track_records_weights_and_resamples():
    hist = flows.track(
        "scaling_gaussian", "pd", n_particles=200, n_steps=5, evals_per_step=3, grid=Grid(-5, 5, 32), bins=10,
        weighted=True, correction="mala", resample_below=0.9,
    )  # fmt: skip
    assert hist.log_weights.shape == (6, 200)
    assert (hist.ess <= 200 + 1e-6).all() and (hist.ess >= 1).all()
    assert (
        hist.n_grad[1] > 3
    )  # the Jacobian of a weighted PD move costs extra evaluations, and they are counted


def test_track_bad_input():
    with pytest.raises(UnknownNameError, match="valid names: interpolation, mode_weights"):
        flows.track("swirl", "pd")
    with pytest.raises(UnknownNameError, match="valid names: exact, langevin, pd, svgd"):
        flows.track("interpolation", "ula")
    with pytest.raises(InvalidArgumentError, match="same argument"):
        flows.track("interpolation", "pd", evals_per_step=3, grad_budget_per_step=4)
    with pytest.raises(InvalidArgumentError, match="track sets 'generator'"):
        flows.track("interpolation", "pd", generator=torch.Generator())
    with pytest.raises(InvalidArgumentError, match="n_particles must be > 0"):
        flows.track("interpolation", "pd", n_particles=0)
    with pytest.raises(InvalidArgumentError, match="evals_per_step must be >= 2"):
        flows.track("interpolation", "pd", evals_per_step=1)
    with pytest.raises(InvalidArgumentError, match="moving_energy must be"):
        flows.track(lambda x: x.sum(1), "pd")


@pytest.mark.slow
def test_pd_beats_langevin_on_interpolation_at_equal_budget():
    # measured over 3 seeds (report): mean excess KL 0.003 (PD) vs 0.015 (Langevin) at 10 evaluations
    # per step, both at ε = 0.03 (Langevin's best of 0.003 ... 0.3); asserted here with a wide margin
    grid, n, bins, n_steps, rec = Grid(-5, 5, 96), 1000, 30, 50, 10
    moving = energies.get("interpolation")
    gen = torch.Generator().manual_seed(0)
    times = [k / n_steps for k in range(rec, n_steps + 1, rec)]
    floors = torch.tensor(
        [metrics.kl_floor(moving.at(t), n, grid=grid, bins=bins, repeats=4, generator=gen) for t in times]
    )
    excess = {}
    for method in ("langevin", "pd"):
        runs = [
            flows.track(
                moving, method, n_particles=n, n_steps=n_steps, evals_per_step=10, grid=grid, bins=bins,
                record_every=rec, seed=seed, correction_step_size=0.03,
            ).kl[1:] - floors
            for seed in (0, 1)
        ]  # fmt: skip
        excess[method] = float(torch.stack(runs).mean())
    assert excess["pd"] < 0.7 * excess["langevin"], excess
