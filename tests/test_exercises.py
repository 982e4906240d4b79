"""The exercise checks: right answers pass, wrong ones fail, and nothing ever raises."""

import math

import pytest
import torch

from pdviz import datasets, energies, exercises, samplers
from pdviz.grid import Grid

# (check, its right answer, a wrong answer), for the checks that need no extra objects
CLOSED_FORM = [
    (exercises.ula_variance, 8 / 7, 1.0),
    (exercises.ula_variance, lambda eps: 1 / (1 - eps / 4), lambda eps: 1 + eps / 4),
    (exercises.ula_step_for_bias, 4 / 11, 0.4),
    (exercises.mala_variance, 1.0, 8 / 7),
    (exercises.short_run_noise, math.sqrt(0.2), 0.2),
    (exercises.translating_field, (4.0, 0.0), (2.0, 0.0)),
    (exercises.scaling_sigma2, 2, math.sqrt(2)),
    (exercises.scaling_ratio, 8.0, 4.0),
]
BAD_ANSWERS = [None, "two", [1.0, 2.0, 3.0], float("nan"), {"a": 1}, True, object(), lambda e: 1 / 0]


@pytest.mark.parametrize("check, right, wrong", CLOSED_FORM)
def test_closed_form_checks_tell_right_from_wrong(check, right, wrong, capsys):
    assert check(right) is True
    assert "right" in capsys.readouterr().out
    assert check(wrong) is False
    out = capsys.readouterr().out
    assert "not yet" in out and "hint" in out


@pytest.mark.parametrize("check", sorted({c for c, _, _ in CLOSED_FORM}, key=lambda c: c.__name__))
@pytest.mark.parametrize("answer", BAD_ANSWERS, ids=lambda a: type(a).__name__)
def test_unanswered_or_unreadable_never_raises(check, answer, capsys):
    assert check(answer) is False
    assert "hint" in capsys.readouterr().out


def test_ula_variance_formula_matches_a_long_chain():
    # the closed form the check uses is the stationary variance of the sampler itself
    eps = 0.5
    z = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0))
    state, _ = samplers.run(
        "ula", z, energies.get("gaussian"), 100, step_size=eps, generator=samplers.make_generator(1)
    )
    measured = float(state.position.var(0).mean())
    # sd of a variance estimate from 40 000 draws is about v * sqrt(2 / 40000) ≈ 0.008
    assert abs(measured - 1 / (1 - eps / 4)) < 0.03
    assert exercises.ula_variance(measured)


def test_grid_mode_weights_equal_for_the_exact_mixture_and_unequal_for_a_weighted_one():
    grid = Grid(-5, 5, 100)
    centres = datasets.MODE_CENTRES["8gaussians"]
    w = exercises.grid_mode_weights(energies.get("8gaussians"), grid, centres)
    assert torch.allclose(w, torch.full((8,), 1 / 8, dtype=torch.float64), atol=2e-3)
    moving = energies.get("mode_weights")
    w1 = exercises.grid_mode_weights(moving.at(1.0), grid, centres)
    assert torch.allclose(w1, moving.weights(1.0), atol=5e-3)


def test_mode_weights_check_accepts_sampled_weights_and_rejects_uniform_for_skewed_model(capsys):
    from pdviz import metrics

    grid = Grid(-5, 5, 100)
    centres = datasets.MODE_CENTRES["8gaussians"]
    skewed = energies.get("mode_weights").at(1.0)  # weights 1:2:...:8
    x = grid.sample(skewed, 20000, generator=torch.Generator().manual_seed(0))
    assert exercises.mode_weights(metrics.mode_weights(x, centres), skewed, grid, centres) is True
    assert exercises.mode_weights([1 / 8] * 8, skewed, grid, centres) is False
    for bad in (None, [0.5, 0.5], "equal"):
        assert exercises.mode_weights(bad, skewed, grid, centres) is False
    assert "hint" in capsys.readouterr().out


def test_worst_mode_weights():
    spreads = {"pcd": 0.12, "short-run": 0.03, "replay": 0.05}
    assert exercises.worst_mode_weights("pcd", spreads) is True
    assert exercises.worst_mode_weights("replay", spreads) is False
    assert exercises.worst_mode_weights(None, spreads) is False
    assert exercises.worst_mode_weights(3, spreads) is False


def _history(lls, times):
    return {"evals": [{"log_likelihood": ll, "cpu_time": t} for ll, t in zip(lls, times)]}


def test_first_to_bound_uses_cpu_time_and_knows_none():
    bound = -2.84
    h = {
        "pcd": _history([-3.5, -2.95, -2.87], [1.0, 5.0, 9.0]),  # reaches -2.89 at 9 s
        "pd-beta": _history([-3.2, -2.88], [2.0, 6.0]),  # at 6 s
        "short-run": _history([-3.0], [1.0]),
    }
    assert exercises.first_reach(h["pcd"], bound) == 9.0
    assert exercises.first_reach(h["short-run"], bound) is None
    assert exercises.first_to_bound("pd-beta", h, bound) is True
    assert exercises.first_to_bound("pcd", h, bound) is False
    assert exercises.first_to_bound("none", {"pcd": h["short-run"]}, bound) is True
    assert exercises.first_to_bound(None, h, bound) is False


def test_claim_fails_on_uses_the_noise():
    rows = [
        {"dataset": "8gaussians", "strategy": "pcd", "ll_mean": -2.95, "ll_sd": 0.01, "seeds": [0, 1, 2]},
        {"dataset": "8gaussians", "strategy": "pd-beta", "ll_mean": -2.90, "ll_sd": 0.01, "seeds": [0, 1, 2]},
        {"dataset": "rings", "strategy": "pcd", "ll_mean": -2.50, "ll_sd": 0.01, "seeds": [0, 1, 2]},
        {"dataset": "rings", "strategy": "pd-beta", "ll_mean": -2.70, "ll_sd": 0.01, "seeds": [0, 1, 2]},
        {"dataset": "moons", "strategy": "pcd", "ll_mean": -1.50, "ll_sd": 0.05, "seeds": [0, 1, 2]},
        {"dataset": "moons", "strategy": "pd-beta", "ll_mean": -1.53, "ll_sd": 0.05, "seeds": [0, 1, 2]},
    ]
    assert exercises.claim_fails_on(["rings"], rows) is True
    assert exercises.claim_fails_on("rings", rows) is True
    assert exercises.claim_fails_on([], rows) is False
    assert exercises.claim_fails_on(["rings", "moons"], rows) is False  # moons is within the noise
    assert exercises.claim_fails_on(None, rows) is False
    assert exercises.claim_fails_on(5, rows) is False


def test_solution_and_registry(capsys):
    for name in exercises.EXERCISES:
        exercises.solution(name)
        assert "solution:" in capsys.readouterr().out
    exercises.solution("nope")
    assert "unknown exercise" in capsys.readouterr().out
    assert {e.notebook for e in exercises.EXERCISES.values()} == {1, 2, 3, 4, 6}
