"""Injected faults: samplers and flows must stop with a DivergenceError, never return NaN.

Faults: an energy that turns NaN (or +Inf) after k calls or past a time t, an exploding step size, a huge
learning rate, particles pushed past the bound. Each case checks the error's ``iteration`` against the
step where the fault was injected (computed from the injection, not read off a run) and that its
``suggestion`` names the knob to turn. (The trainer's cases live with the training tests.)
"""

from __future__ import annotations

import math

import pytest
import torch

from pdviz import energies, flows, samplers
from pdviz.errors import DivergenceError, PdvizError
from pdviz.flows import Change

GAUSS = energies.get("gaussian")


def x0(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


class PoisonAfter:
    """An energy ``|x|²/2`` whose calls after the first ``k`` return ``value`` (NaN by default) everywhere."""

    def __init__(self, k: int, value: float = math.nan):
        self.k, self.value, self.calls = k, value, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        e = 0.5 * (x**2).sum(1)
        return e * self.value if self.calls > self.k else e


def push(strength: float):
    """A linear energy ``-strength · x₁``: gradient descent moves every particle by +strength·ε/2 per step."""
    return lambda x: -strength * x[:, 0]


# --- samplers.run ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_ula_run_stops_at_the_step_whose_energy_turned_bad(k, value):
    # run calls the energy once in init and once per step: call k + 1 is step k
    energy = PoisonAfter(k, value)
    with pytest.raises(DivergenceError) as info:
        samplers.run("ula", x0(), energy, 20, step_size=0.01, generator=samplers.make_generator(0))
    err = info.value
    assert err.iteration == k
    assert "step_size" in err.suggestion and "0.01" in err.suggestion


def test_mala_rejects_bad_proposals_and_never_returns_nan():
    # MALA must reject proposals with non-finite energies: the chain stays where it was, finite
    energy = PoisonAfter(5)
    start = x0()
    state, hist = samplers.run(
        "mala", start, energy, 10, step_size=0.01, generator=samplers.make_generator(1)
    )
    assert torch.isfinite(state.position).all() and torch.isfinite(state.energy).all()
    assert torch.isfinite(hist.positions()).all()
    assert hist.series("acceptance_rate")[1][-1] == 0.0  # every proposal after the poison was rejected
    assert torch.equal(hist.positions()[-1], hist.positions()[5])


@pytest.mark.parametrize("step_size", [2.0, 5.0])
def test_exploding_step_size_is_reported_with_the_step_size(step_size):
    with pytest.raises(DivergenceError) as info:
        samplers.run(
            "ula",
            x0(),
            energies.get("double_well"),
            200,
            step_size=step_size,
            generator=samplers.make_generator(0),
        )
    err = info.value
    assert 1 <= err.iteration <= 200
    assert f"step_size (now {step_size:g})" in err.suggestion


@pytest.mark.parametrize("bound, expected", [(1200.0, 3), (2600.0, 6)])
def test_particles_pushed_past_the_bound_stop_at_the_first_step_beyond(bound, expected):
    # noise-free ULA on E = -1000 x₁ with ε = 1 moves every particle by exactly +500 per step, so the first
    # step with some x₁ > bound is the smallest k with max(x₁(0)) + 500 k > bound
    start = x0()
    step = 0.5 * 1.0 * 1000.0
    k = math.floor((bound - float(start[:, 0].max())) / step) + 1
    assert k == expected
    with pytest.raises(DivergenceError) as info:
        samplers.run("ula", start, push(1000.0), 20, step_size=1.0, noise_scale=0.0, bound=bound)
    assert info.value.iteration == k
    assert "bound" in str(info.value) and "step_size" in info.value.suggestion


# --- flows.flow_step and flows.track ----------------------------------------------------------------


def test_flow_step_nan_energy_is_a_divergence_with_the_iteration():
    state = samplers.init(x0(), GAUSS)
    with pytest.raises(PdvizError) as info:
        flows.flow_step(state, "alpha", Change(GAUSS, PoisonAfter(0)), n_corrections=2, iteration=7)
    assert isinstance(info.value, DivergenceError), f"{type(info.value).__name__}: {info.value}"
    assert info.value.iteration == 7
    assert "step" in info.value.suggestion


def test_flow_step_nan_during_corrections_is_a_divergence_with_the_iteration():
    # the move itself is fine (2 energy_new calls: the PD gradient, then the landing point); corrections turn NaN
    state = samplers.init(x0(), GAUSS)
    with pytest.raises(PdvizError) as info:
        flows.flow_step(state, "alpha", Change(GAUSS, PoisonAfter(2)), n_corrections=3, iteration=4)
    assert isinstance(info.value, DivergenceError), f"{type(info.value).__name__}: {info.value}"
    assert info.value.iteration == 4
    assert "step_size (now 0.01)" in info.value.suggestion


def test_flow_step_last_correction_nan_is_not_returned_silently():
    # NaN on the very last correction's energy: positions are still finite, the cached energy is not
    state = samplers.init(x0(), GAUSS)
    try:
        new, _ = flows.flow_step(state, "alpha", Change(GAUSS, PoisonAfter(3)), n_corrections=2, iteration=1)
    except DivergenceError as err:
        assert err.iteration == 1
    else:
        assert torch.isfinite(new.energy).all() and torch.isfinite(new.grad).all(), "NaN energies returned"


@pytest.mark.parametrize("method, knob", [("alpha", "step"), ("exact", "step")])
def test_flow_step_exploding_move_names_the_step(method, knob):
    # alpha flies past the bound; the exact move would need more sub-steps than it allows
    moving = energies.get("translating_gaussian")
    state = samplers.init(x0(), moving.at(0.0))
    with pytest.raises(DivergenceError) as info:
        flows.flow_step(
            state,
            method,
            Change(moving.at(0.0), moving.at(0.5)),
            step=1e5,
            bound=100.0,
            n_corrections=0,
            iteration=3,
        )
    assert info.value.iteration == 3
    assert f"{knob} (now 100000)" in info.value.suggestion


def test_flow_step_exploding_corrections_name_the_correction_step():
    dw = energies.get("double_well")
    state = samplers.init(x0(), dw)
    with pytest.raises(DivergenceError) as info:
        flows.flow_step(state, None, Change(dw, dw), step_size=5.0, n_corrections=50, iteration=2)
    assert info.value.iteration == 2
    assert "step_size (now 5)" in info.value.suggestion


class PoisonedTranslation(energies.TranslatingGaussian):
    """The translating Gaussian, NaN everywhere once t > t_bad."""

    def __init__(self, t_bad: float):
        super().__init__()
        self.t_bad = t_bad

    def energy(self, x, t):
        e = super().energy(x, t)
        return e * math.nan if float(t) > self.t_bad else e


@pytest.mark.parametrize("method", ["langevin", "alpha"])
def test_track_stops_at_the_time_step_where_the_energy_turned_nan(method):
    # step k moves from t_k = k/10 to t_{k+1}; the first t_{k+1} > 0.55 is 0.6, so k = 5
    with pytest.raises(PdvizError) as info:
        flows.track(PoisonedTranslation(0.55), method, n_particles=32, n_steps=10, bins=10)
    assert isinstance(info.value, DivergenceError), f"{type(info.value).__name__}: {info.value}"
    assert info.value.iteration == 5


def test_track_exploding_pd_step_names_step():
    with pytest.raises(DivergenceError) as info:
        flows.track(
            "scaling_gaussian", "alpha", n_particles=32, n_steps=5, bins=10, step=1e6, n_corrections=1
        )
    assert info.value.iteration == 0  # the first move already flies past the bound
    assert "step (now 1e+06)" in info.value.suggestion
