"""Exercises: every checker tells two right answers from two wrong ones; unanswered never raises."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pdviz import datasets, energies, exercises, flows, metrics, objectives, samplers
from pdviz.grid import Grid
from pdviz.samplers import History

GRID = Grid(-5, 5, 100)
CENTRES = datasets.MODE_CENTRES["8gaussians"]
SKEWED = energies.get("mode_weights").at(1.0)  # mode weights 1:2:...:8 out of 36


def reach_history(first_ok_step, cpu_per_step):
    h = History(meta={"kind": "training"})
    for s in range(0, 101):
        h.add(step=s, cpu_time=cpu_per_step * s)
        if s % 10 == 0:
            h.record(s, log_likelihood=-2.84 if s >= first_ok_step else -3.5)
    return h


HISTORIES = {
    "pcd": reach_history(30, 1.0),
    "pd-beta": reach_history(60, 0.2),
    "replay": reach_history(999, 1.0),
}
ROWS = [
    {"dataset": "rings", "strategy": "pd-beta", "ll_mean": -3.5, "ll_sd": 0.01, "seeds": [0, 1, 2]},
    {"dataset": "rings", "strategy": "pcd", "ll_mean": -3.0, "ll_sd": 0.01, "seeds": [0, 1, 2]},
    {"dataset": "moons", "strategy": "pd-beta", "ll_mean": -2.0, "ll_sd": 0.01, "seeds": [0, 1, 2]},
    {"dataset": "moons", "strategy": "pcd", "ll_mean": -2.01, "ll_sd": 0.01, "seeds": [0, 1, 2]},
    {"dataset": "8gaussians", "strategy": "pd-beta", "ll_mean": -3.1, "ll_sd": 0.05, "seeds": [0, 1, 2]},
    {"dataset": "8gaussians", "strategy": "pcd", "ll_mean": -2.9, "ll_sd": 0.05, "seeds": [0, 1, 2]},
]
SKEWED_WEIGHTS = torch.arange(1, 9, dtype=torch.float64) / 36
TABLE = [  # results["by_strategy"] of benchmarks/all_strategies.py (a NaN gap: every run diverged)
    {"strategy": "pcd", "gap": 0.20, "gap_early": 0.50},
    {"strategy": "pd-beta", "gap": 0.10, "gap_early": 0.60},
    {"strategy": "nce", "gap": float("nan"), "gap_early": float("nan")},
    {"strategy": "ed", "gap": 0.15, "gap_early": 0.30},
    {"strategy": "drl", "gap": 0.30, "gap_early": 0.40},
]
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def sq(a):
    return (a * a).sum(1)


def mala_by_densities(s, t, eps):  # log N(y; m, εI) with its constant, which cancels
    log_q = lambda y, m: -sq(y - m) / (2 * eps) - y.shape[1] / 2 * math.log(2 * math.pi * eps)  # noqa: E731
    return (
        -t.energy
        + s.energy
        + log_q(s.position, t.position - eps / 2 * t.grad)
        - log_q(t.position, s.position - eps / 2 * s.grad)
    )


def mala_by_coordinates(s, t, eps):
    out = s.energy - t.energy
    for k in range(s.position.shape[1]):  # one coordinate at a time
        back = s.position[:, k] - t.position[:, k] + 0.5 * eps * t.grad[:, k]
        fwd = t.position[:, k] - s.position[:, k] + 0.5 * eps * s.grad[:, k]
        out = out + (fwd**2 - back**2) / (2 * eps)
    return out


def pd_by_slogdet(x, h, grad_delta, hess_delta, e_old, energy_new):
    y = x - h * grad_delta
    jac = torch.eye(x.shape[1], dtype=x.dtype) - h * hess_delta
    return y, e_old - energy_new(y) + torch.linalg.slogdet(jac).logabsdet


def pd_by_eigenvalues(x, h, grad_delta, hess_delta, e_old, energy_new):
    y = x + (-h) * grad_delta  # ∇²ΔE is symmetric: det(I - hH) is the product of 1 - h λ
    log_det = torch.log((1 - h * torch.linalg.eigvalsh(hess_delta)).abs()).sum(1)
    return y.numpy(), (log_det + e_old - energy_new(y)).numpy()


def pd_wrong_log_det_sign(x, h, grad_delta, hess_delta, e_old, energy_new):
    y, log_w = pd_by_slogdet(x, h, grad_delta, hess_delta, e_old, energy_new)
    return y, 2 * (e_old - energy_new(y)) - log_w


def pd_energy_at_x(x, h, grad_delta, hess_delta, e_old, energy_new):
    y, log_w = pd_by_slogdet(x, h, grad_delta, hess_delta, e_old, energy_new)
    return y, log_w + energy_new(y) - energy_new(x)


def ntk_by_kernels(j_points, j_data, j_neg, lr):
    k_data, k_neg = j_points @ j_data.T, j_points @ j_neg.T  # K(z, x_i) [m, b] and K(z, y_j) [m, n]
    return -lr * (k_data.mean(1) - k_neg.mean(1))


def ntk_by_loss_gradient(j_points, j_data, j_neg, lr):
    grad_loss = j_data.sum(0) / len(j_data) - j_neg.sum(0) / len(j_neg)  # ∇θL of the contrastive loss
    return (j_points * (-lr * grad_loss)).sum(1).numpy()


def ed_by_mean(e_data, e_contrast, w):
    return torch.log(w / e_contrast.shape[1] + (e_data[:, None] - e_contrast).exp().mean(1)).mean()


def ed_by_logsumexp(e_data, e_contrast, w):  # log((w + Σ_j e^{E(x) - E(x'_j)}) / M), stable
    terms = torch.cat([e_data[:, None] - e_contrast, torch.full_like(e_data[:, None], math.log(w))], 1)
    return (torch.logsumexp(terms, 1) - math.log(e_contrast.shape[1])).mean().item()


# the write-it-yourself exercises: (two right, (wrong function, the words its message must contain), ...)
FUNCTIONS = {
    "ula_step": (
        [lambda x, g, e, xi: x - e / 2 * g + math.sqrt(e) * xi, lambda x, g, e, xi: (x - 0.5 * e * g) + xi * e**0.5],
        [(lambda x, g, e, xi: x + e / 2 * g + e**0.5 * xi, "+ε/2·∇E"),
         (lambda x, g, e, xi: x - e / 2 * g + e * xi, "noise has std ε; it should be √ε")],
    ),
    "mala_acceptance": (
        [mala_by_densities, mala_by_coordinates],
        [(lambda s, t, e: s.energy - t.energy, "misses log q(x | x')"),
         (lambda s, t, e: mala_by_densities(s, t, e) + 2 * (t.energy - s.energy), "E(x') − E(x)")],
    ),
    "contrastive_loss": (
        [lambda ed, en, w: ed.mean() - (w * en).sum(), lambda ed, en, w: ed.sum() / len(ed) - torch.dot(w, en)],
        [(lambda ed, en, w: ed.mean() - en.mean(), "ignores the weights"),
         (lambda ed, en, w: -ed.mean() - (w * en).sum(), "data term has the wrong sign")],
    ),
    "pd_alpha_move": (
        [pd_by_slogdet, pd_by_eigenvalues],
        [(pd_wrong_log_det_sign, "log-determinant has the wrong sign"), (pd_energy_at_x, "evaluate E_new at x")],
    ),
    "ed_loss": (
        [ed_by_mean, ed_by_logsumexp],
        [(lambda ed, ec, w: ed_by_mean(-ed, -ec, w), "energy difference has the wrong sign"),
         (lambda ed, ec, w: (ed[:, None] - ec).exp().mean(1).log().mean(), "misses the stabiliser")],
    ),
    "ntk_energy_change": (
        [ntk_by_kernels, ntk_by_loss_gradient],
        [(lambda jz, jd, jn, lr: -lr * jz @ (jd.mean(0) + jn.mean(0)), "negatives' term has the wrong sign"),
         (lambda jz, jd, jn, lr: -lr * (jz @ jd.T).sum(1) + lr * (jz @ jn.T).mean(1), "data term sums K")],
    ),
}  # fmt: skip

# name: (context, two right answers, two wrong answers)
CASES = {
    "ula_variance": ({}, [8 / 7, np.float32(1.14)], [1.0, 1.125]),
    "ula_step_for_bias": ({}, [4 / 11, torch.tensor(0.365)], [0.4, 0.2]),
    "mala_variance": ({}, [1, torch.tensor(1.0, dtype=torch.float64)], [8 / 7, 0.9]),
    "short_run_noise": ({}, [math.sqrt(0.2), 0.45], [0.2, 0.1]),
    "mode_weights": (
        {"energy_fn": SKEWED, "grid": GRID, "centres": CENTRES},
        [SKEWED_WEIGHTS, (SKEWED_WEIGHTS + 0.005).numpy()],
        [[1 / 8] * 8, SKEWED_WEIGHTS.flip(0)],
    ),
    "worst_mode_weights": ({"spreads": {"pcd": 0.4, "pd-beta": 0.1}}, ["pcd", " PCD"], ["pd-beta", "replay"]),
    "translating_field": ({}, [(4, 0), np.array([4.0, 0.0])], [(-4, 0), (0, 4)]),
    "translating_velocity": ({}, [(3, -1), torch.tensor([3.0, -1.0])], [(3, 1), (-3, 1)]),
    "scaling_sigma2": ({}, [2, 2.01], [1, math.sqrt(2)]),
    "scaling_ratio": ({}, [8, 8.05], [4, 1 / 8]),
    "first_to_bound": ({"histories": HISTORIES, "bound": -2.84}, ["pd-beta", "PD-Beta"], ["pcd", "none"]),
    "pd_step_translating": ({}, [0.125, np.float32(0.128)], [1.0, 0.354]),
    "beta_over_alpha": ({}, [0.951, torch.tensor(0.1 / math.expm1(0.1))], [1.0, 1.052]),
    "svgd_one_particle": ({}, [(1, 2), torch.tensor([1.0, 2.0])], [(2, 1), (0, 0)]),
    "ess_weights": ({}, [2.91, np.float64(64 / 22)], [4, 2.5]),
    "blurred_spread": ({}, [0, 0.005], [1 / 8, 1]),
    "pd_wins": ({}, [0.001, np.float64(0.002)], [0.5, 1.0]),
    "pd_loses": ({}, [0.5, 1], [0.001, 0.0001]),
    "claim_fails_on": ({"rows": ROWS}, [["rings", "8gaussians"], ("8GAUSSIANS", "Rings")], [["rings"], []]),
    "gaussian_log_z": ({}, [14.45, 32 * math.log(2 * math.pi) + 64 * math.log(0.5)], [58.81, -14.45]),
    "ais_bias": ({}, ["below", "Below "], ["above", "equal"]),
    "uniform_bits_digits": ({}, [math.log2(17), 4.09], [4.0, 17]),
    "uniform_bits_mnist": ({}, [8, np.int64(8)], [256, 7]),
    "ais_cost": ({}, [1001, 1000], [500, 2000]),
    "pd_negatives_cost": ({}, [0.62, 31 / 50], [0.6, 1.62]),
    "closest_to_bound": ({"table": TABLE}, ["pd-beta", "PD-Beta "], ["ed", "nce"]),
    "ahead_of_pcd": ({"table": TABLE}, [["ed", "drl"], ("DRL", "ed")], [["ed"], ["ed", "drl", "pd-beta"]]),
    **{name: ({}, right, [f for f, _ in wrong]) for name, (right, wrong) in FUNCTIONS.items()},
}


@pytest.fixture
def fake_tracking(monkeypatch):
    """PD beats Langevin below ε = 0.01 (the real comparison is tested once, below)."""
    monkeypatch.setattr(
        exercises, "compare_tracking", lambda eps, **kw: {"langevin": 1.0, "pd": 0.5 if eps < 0.01 else 1.0}
    )


def test_every_exercise_has_cases():
    assert set(CASES) == set(exercises.EXERCISES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_right_and_two_wrong_answers(name, fake_tracking, capsys):
    context, right, wrong = CASES[name]
    for answer in right:
        assert exercises.check(name, answer, **context) is True, answer
        assert "right" in capsys.readouterr().out
    for answer in wrong:
        assert exercises.check(name, answer, **context) is False, answer
        out = capsys.readouterr().out
        assert "not yet" in out and "hint" in out


@pytest.mark.parametrize("answer", [None, ...])
def test_unanswered_prints_the_hint_and_returns_none(answer, capsys):
    for name in exercises.EXERCISES:
        assert exercises.check(name, answer) is None
        out = capsys.readouterr().out
        assert "not answered yet" in out and exercises.EXERCISES[name].hint in out


@pytest.mark.parametrize("answer", ["two", [1.0, 2.0, 3.0], float("nan"), {"a": 1}, object()])
def test_unreadable_answers_never_raise(answer, capsys):
    for name in ("ula_variance", "translating_field", "mode_weights"):
        assert exercises.check(name, answer, energy_fn=SKEWED, grid=GRID, centres=CENTRES) in (False, None)
        assert "hint" in capsys.readouterr().out


def test_missing_context_unknown_names_and_solutions(capsys):
    assert exercises.check("mode_weights", [1 / 8] * 8) is None  # no model given: says so, no traceback
    assert "could not check" in capsys.readouterr().out
    assert exercises.check("no such exercise", 1.0) is None
    assert "ula_variance" in capsys.readouterr().out
    assert exercises.check("PD-Wins", None) is None  # names in any case, "-" or "_"
    exercises.solution("ula_variance")
    assert "1 / (1 - ε/4)" in capsys.readouterr().out
    assert exercises.check("ula_variance", 1.6, step_size=1.5) is True  # the closed form at another ε
    capsys.readouterr()


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
    assert exercises.check("ula_variance", measured)


def test_mode_weights_of_sampled_particles_pass_the_grid_check():
    x = GRID.sample(SKEWED, 20000, generator=torch.Generator().manual_seed(0))
    w = metrics.grid_mode_weights(GRID, SKEWED, CENTRES)
    assert torch.allclose(w.double(), SKEWED_WEIGHTS, atol=5e-3)
    assert exercises.check(
        "mode_weights", metrics.mode_weights(x, CENTRES), energy_fn=SKEWED, grid=GRID, centres=CENTRES
    )


def test_first_reach_reads_cpu_time_at_the_first_frame_near_the_bound():
    assert exercises.first_reach(HISTORIES["pd-beta"], -2.84) == pytest.approx(12.0)
    assert exercises.first_reach(HISTORIES["replay"], -2.84) is None


def test_pd_beats_langevin_at_a_small_step_on_a_translating_gaussian():
    kl = exercises.compare_tracking(1e-3, n_particles=300, n_steps=10, grid=Grid(-5.0, 5.0, 64), bins=16)
    assert kl["pd"] < 0.95 * kl["langevin"]


def test_closed_forms_of_the_new_exercises_match_the_library():
    # ESS of weights 1, 1, 2, 4; SVGD with one particle is gradient descent; a blurred ring has spread ~0
    assert exercises.check("ess_weights", metrics.ess(torch.tensor([1.0, 1.0, 2.0, 4.0]).log()))
    x = torch.zeros(1, 2)
    for _ in range(200):
        x = x + 0.1 * flows.svgd_direction(x, torch.tensor([[1.0, 2.0]]) - x)  # score of |x - (1, 2)|²/2
    assert exercises.check("svgd_one_particle", x[0])
    ring = lambda y: (y.norm(dim=1) - 2.83) ** 2 / (2 * 0.5**2)  # noqa: E731
    spread = metrics.mode_weight_spread(metrics.grid_mode_weights(GRID, ring, CENTRES))
    assert exercises.check("blurred_spread", spread)
    theta, d = torch.tensor(0.3, requires_grad=True), 0.1  # E_θ(x) = e^θ |x|²/2 at |x|² = 2
    beta = torch.autograd.grad(theta.exp(), theta)[0] * d
    assert exercises.check("beta_over_alpha", beta / (math.exp(0.3 + d) - math.exp(0.3)))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_wrong_function_hears_which_term_is_wrong(name, capsys):
    for wrong, words in FUNCTIONS[name][1]:
        assert exercises.check(name, wrong) is False
        out = capsys.readouterr().out
        assert "not yet: " in out and words in out, out


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_right_terms_add_up_to_the_library(name):
    # the diagnosis starts from the right terms: they must be the library's output, at every shape
    spec = exercises.EXERCISES[name].expected
    for n, d in spec.shapes:
        v = spec.inputs(torch.Generator().manual_seed(n * 10 + d), n, d)
        for want, (_, terms) in zip(spec.library(v), spec.outputs):
            assert torch.allclose(sum(t.right(v) for t in terms).expand_as(want), want, atol=1e-10)


def test_function_exercises_placeholders_and_failures(capsys):
    assert exercises.check("ula_step", lambda x, grad, step_size, noise: ...) is None  # the placeholder
    assert "not answered yet" in capsys.readouterr().out
    assert exercises.check("pd_alpha_move", lambda *args: (..., ...)) is None
    assert "not answered yet" in capsys.readouterr().out
    assert exercises.check("ula_step", lambda x, grad: x) is False  # wrong signature: says so, no traceback
    assert "raised TypeError" in capsys.readouterr().out
    assert exercises.check("ula_step", lambda x, g, e, xi: x * 1.5) is False  # no common mistake: the size
    assert "differs from the library's by up to" in capsys.readouterr().out
    assert exercises.check("contrastive_loss", lambda ed, en, w: torch.zeros(3)) is False
    assert "shape" in capsys.readouterr().out
    assert exercises.check("ula_step", 0.5) is False  # a number, not a function
    assert "expected a function" in capsys.readouterr().out
    two_wrong = lambda x, g, e, xi: x - e * g + math.sqrt(2 * e) * xi  # noqa: E731 - both terms named, in order
    assert exercises.check("ula_step", two_wrong) is False
    out = capsys.readouterr().out
    assert out.index("−ε·∇E") < out.index("√(2ε)"), out


def test_ed_loss_exercise_is_the_loss_objectives_trains_with():
    # the check's library side feeds given energies to objectives.ed_loss; on a real energy the student's
    # formula, fed the energies at ed_loss's own perturbations (replayed from its generator), gives its loss
    energy = energies.get("8gaussians")
    x = datasets.sample("8gaussians", 50, seed=0).double()
    gen = torch.Generator().manual_seed(3)
    y = x + 0.7 * torch.randn(x.shape, generator=gen).double()
    contrast = y[:, None, :] + 0.7 * torch.randn((50, 4, 2), generator=gen).double()
    want = objectives.ed_loss(energy, x, 0.7, 4, 1.5, torch.Generator().manual_seed(3))
    got = ed_by_mean(energy(x), energy(contrast.reshape(-1, 2)).reshape(50, 4), 1.5)
    assert torch.allclose(got, want) and exercises.check("ed_loss", ed_by_mean)


def test_mala_log_acceptance_is_what_mala_step_accepts_by():
    # replay mala_step's draws (noise, then uniforms) and compare its decisions with log u < log α
    energy = energies.get("8gaussians")
    x = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state, eps = samplers.init(x, energy), 0.3
    new, _ = samplers.mala_step(state, energy, step_size=eps, generator=samplers.make_generator(5))
    gen = samplers.make_generator(5)
    proposal = x - eps / 2 * state.grad + math.sqrt(eps) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    log_u = torch.log(torch.rand(len(x), generator=gen, dtype=x.dtype))
    (log_alpha,) = exercises.mala_log_acceptance(
        {"s": state, "s_new": samplers.init(proposal, energy), "step_size": eps}
    )
    accepted = (new.position == proposal).all(1)
    assert 0.05 < accepted.double().mean() < 0.95  # both decisions occur
    assert torch.equal(accepted, log_u < log_alpha)


def test_notebook_functions_live_only_in_exercise_cells():
    """``def`` in a notebook only in cells tagged "exercise" (the write-it-yourself placeholders), and each
    function exercise has one such cell whose function returns ``...`` and is checked by name."""
    placeholders = {}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            tagged = "exercise" in cell.get("metadata", {}).get("tags", [])
            if cell["cell_type"] == "code" and any(line.startswith("def ") for line in src.splitlines()):
                assert tagged, f"{path.name} cell {cell.get('id')}: def outside an exercise cell"
            if tagged:
                name = src.split('exercises.check("')[1].split('"')[0]
                assert "return ..." in src, f"{path.name} cell {cell.get('id')}: the placeholder returns ..."
                placeholders[name] = path.name
    assert set(placeholders) == set(FUNCTIONS)
