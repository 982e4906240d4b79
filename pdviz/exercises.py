"""Every exercise of the notebooks, one record type and one :func:`check`.

``check(name, answer, **context)`` prints ``right: ...`` or ``not yet: ...`` with a hint and returns
True or False. It never raises: an unanswered exercise (``answer`` None or ``...``) prints the question
and its hint and returns None, so a notebook with open exercises runs top to bottom. Numbers may be
int, float, numpy or torch scalars and are right within the exercise's stated absolute tolerance ``tol``;
lists of names are compared in any order, names in any case. :func:`solution` prints the worked answer.

Some answers are measured from the notebook's own objects, passed as ``context``: the mode weights of a
learned model (``energy_fn=, grid=, centres=``, exact on the grid by ``metrics.grid_mode_weights``), which
strategy is worst or first (``spreads=``, ``histories=, bound=``), where the paper's claim fails
(``rows=``), a step size where PD beats Langevin (rerun with :func:`compare_tracking`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from pdviz import flows, metrics


class Exercise(NamedTuple):
    """One exercise. ``kind``: "number", "numbers" (a vector, in order), "name", "names" (a set) or
    "test" (``expected(answer, **context) -> (right, detail)``). ``expected``: the answer, or a function
    of the context that measures it. ``tol``: absolute tolerance of each number."""

    notebook: int
    question: str
    hint: str
    solution: str
    kind: str
    expected: Any
    tol: float = 0.0


def first_reach(history: Any, bound: float, tol: float = 0.05, x: str = "cpu_time") -> float | None:
    """The curve ``x`` (CPU seconds) at the first frame whose log-likelihood is >= bound - tol; None if never."""
    for step, ll in zip(*history.series("log_likelihood")):
        if ll >= bound - tol:
            return float(np.interp(step, history.curves["step"], history.curves[x]))
    return None


def _first_to_bound(histories: Mapping[str, Any], bound: float, tol: float = 0.05) -> str:
    times = {k: first_reach(h, bound, tol) for k, h in histories.items()}
    reached = {k: t for k, t in times.items() if t is not None}
    return min(reached, key=reached.get) if reached else "none"


def _claim_fails(rows: Sequence[Mapping], better: str = "pd-beta", worse: str = "pcd") -> set[str]:
    """Datasets where ``better``'s log-likelihood is below ``worse``'s by more than two standard errors
    of the difference over seeds (and 0.02 nats)."""
    by = {(r["dataset"], r["strategy"]): r for r in rows}
    fails = set()
    for d in {r["dataset"] for r in rows}:
        a, b = by.get((d, better)), by.get((d, worse))
        if a and b and a.get("ll_mean") is not None and b.get("ll_mean") is not None:
            n = min(len(a.get("seeds") or [0]), len(b.get("seeds") or [0]))
            se = math.sqrt(((a.get("ll_sd") or 0.0) ** 2 + (b.get("ll_sd") or 0.0) ** 2) / n) if n > 1 else 0
            if a["ll_mean"] - b["ll_mean"] < -max(2 * se, 0.02):
                fails.add(d)
    return fails


def compare_tracking(step_size: float, target: str = "translating_gaussian", **track_kwargs: Any) -> dict:
    """Mean KL over a tracking run (``flows.track``, frames 1..n_steps) of Langevin and PD with Langevin
    step ``step_size``: ``{"langevin": ..., "pd": ...}``; ``track_kwargs`` (n_particles, n_steps, seed,
    n_corrections, step, ...) go to ``track``."""
    methods = {"langevin": "langevin", "pd": "alpha"}  # "alpha": the PD field -∇ΔE
    runs = {k: flows.track(target, m, step_size=step_size, **track_kwargs) for k, m in methods.items()}
    return {k: float(np.mean(h.series("kl")[1][1:])) for k, h in runs.items()}


def _pd_vs_langevin(want_pd_better: bool) -> Callable[..., tuple[bool, str]]:
    def test(answer: Any, **settings: Any) -> tuple[bool, str]:
        kl = compare_tracking(float(answer), **settings)
        better = kl["pd"] < 0.95 * kl["langevin"]  # 5 %: at large steps both end at nearly the same cloud
        detail = f"ε = {float(answer):g}: mean KL Langevin {kl['langevin']:.4g}, PD {kl['pd']:.4g}"
        return better == want_pd_better, detail

    return test


_GRID_WEIGHTS = (
    "Exact on the grid: sum p(c) h² over the cells c nearest each centre (metrics.grid_mode_weights)."
)
EXERCISES: dict[str, Exercise] = {
    "ula_variance": Exercise(1, "ULA on E(x) = x²/2 with step ε = 0.5: the variance of its stationary law?",
        "One step is x' = (1 - ε/2) x + √ε ξ. At stationarity solve v = (1 - ε/2)² v + ε.",
        "v = 1 / (1 - ε/4); at ε = 0.5, v = 8/7 ≈ 1.143.", "number",
        lambda step_size=0.5: 1 / (1 - step_size / 4), 0.01),
    "ula_step_for_bias": Exercise(1, "For which ε is ULA's stationary variance on E = x²/2 1.1 (10 % too large)?",
        "Set 1 / (1 - ε/4) = 1.1 and solve for ε.", "ε = 4 (1 - 1/1.1) = 4/11 ≈ 0.364.", "number", 4 / 11, 0.004),
    "mala_variance": Exercise(1, "MALA on E = x²/2 with ε = 0.5: its stationary variance?",
        "The Metropolis-Hastings accept/reject makes exp(-E) itself the stationary law, for any ε.",
        "Exactly 1 for every ε > 0: MALA trades ULA's bias for rejections.", "number", 1.0, 0.001),
    "short_run_noise": Exercise(2, "K = 20 ULA steps of ε = 0.01: the noise's total standard deviation per "
        "coordinate (ignoring the drift)?", "Each step adds √ε ξ; variances of independent steps add up.",
        "√(K ε) = √0.2 ≈ 0.447: far less than the 2.8 between a mode and the centre of 8gaussians.", "number",
        lambda n_steps=20, step_size=0.01: math.sqrt(n_steps * step_size), 0.005),
    "mode_weights": Exercise(2, "The mode weights of the learned PCD model on the grid (one per centre, sum 1)?",
        "Sample the model from the grid (grid.sample) and count the share nearest each centre "
        "(metrics.mode_weights).", _GRID_WEIGHTS, "numbers",
        lambda energy_fn, grid, centres: metrics.grid_mode_weights(grid, energy_fn, centres), 0.01),
    "worst_mode_weights": Exercise(2, "Which strategy learned the most unequal mode weights (max - min)?",
        "Measure each model's mode weights on the grid and compare max - min.",
        "The strategy with the largest spread of its grid mode weights.", "name",
        lambda spreads: max(spreads, key=spreads.get)),
    "translating_field": Exercise(3, "E_t(x) = |x - m(t)|²/2, m(t) = (1 - t) m0 + t m1, m0 = (-2, 0), m1 = (2, 0): "
        "PD's field -∇_x ∂_t E_t(x), as (v1, v2)?", "∂_t E_t(x) = -⟨x - m(t), m'(t)⟩; its x-gradient is -m'(t).",
        "m'(t) = m1 - m0 = (4, 0) at every x: also the exact field.", "numbers", (4.0, 0.0), 1e-6),
    "translating_velocity": Exercise(3, "E_t(x) = |x - m(t)|²/2 with m(t) = (3t, -t): PD's field at any x, "
        "as (v1, v2)?", "∂_t E_t(x) = -⟨x - m(t), m'(t)⟩; its x-gradient is -m'(t).",
        "m'(t) = (3, -1).", "numbers", (3.0, -1.0), 1e-6),
    "scaling_sigma2": Exercise(3, "E_t(x) = |x|²/(2σ(t)²): for which σ² does PD's field 2σ'x/σ³ equal the exact "
        "(σ'/σ) x?", "Set 2σ'x/σ³ = (σ'/σ) x and cancel σ' x / σ.",
        "2/σ² = 1 ⇒ σ² = 2; below it PD moves too far, above it not far enough.", "number", 2.0, 0.02),
    "scaling_ratio": Exercise(3, "Same scaling Gaussian at σ = 0.5: how many times longer is PD's step than "
        "the exact one?", "Divide 2σ'x/σ³ by (σ'/σ) x.", "2/σ² = 8: the corrections pull the particles back.",
        "number", lambda sigma=0.5: 2 / sigma**2, 0.08),
    "first_to_bound": Exercise(4, "At equal CPU time, which strategy first gets within 0.05 nats of the "
        "data-entropy bound ('none' if none does)?", "Read the log-likelihood curves against CPU time.",
        "The smallest CPU time at a first evaluation >= bound - 0.05 (exercises.first_reach).", "name",
        _first_to_bound),
    "pd_step_translating": Exercise(4, "A Gaussian mode of std s (s² = 0.125, the 8 Gaussians') translates: for "
        "which PD step h is the move x - h ∇ΔE(x) the exact one?", "E = |x - m|²/(2s²) gives ΔE(x) = -⟨x - m, Δm⟩/s² "
        "to first order; the exact move is Δm.", "-∇ΔE = Δm/s², so h = s² = 0.125; h = 1 overshoots 8-fold.",
        "number", lambda s2=0.125: s2, 0.005),
    "beta_over_alpha": Exercise(4, "E_θ(x) = e^θ |x|²/2 and Δθ = 0.1: PD-β's ΔE divided by PD-α's (at any x)?",
        "PD-α: (e^(θ+Δθ) - e^θ)|x|²/2; PD-β: the first-order term e^θ Δθ |x|²/2.",
        "Δθ / (e^Δθ - 1) = 0.1 / 0.10517 ≈ 0.951: they agree to first order in Δθ.", "number",
        lambda d=0.1: d / math.expm1(d), 0.002),
    "svgd_one_particle": Exercise(5, "SVGD with ONE particle on E(x) = |x - (1, 2)|²/2: where does it stop, "
        "as (x1, x2)?", "With n = 1 the repulsion ∇k(x, x) is 0 and k(x, x) = 1.",
        "SVGD with one particle is gradient descent on E: it stops at the mode (1, 2), not a sample.", "numbers",
        (1.0, 2.0), 1e-3),
    "ess_weights": Exercise(6, "Four particles with weights 1, 1, 2, 4: their effective sample size?",
        "ESS = (Σ w)² / Σ w².", "8² / (1 + 1 + 4 + 16) = 64/22 ≈ 2.91 of 4.", "number", 64 / 22, 0.01),
    "blurred_spread": Exercise(6, "A model that blurs the ring evenly in angle (no modes at all): its model "
        "spread (max - min of the eight mode weights)?", "Each centre's region is the same wedge of the ring.",
        "0 (up to the grid): the best possible score, for a model with no modes. Read spread beside the "
        "log-likelihood.", "number", 0.0, 0.01),
    "pd_wins": Exercise(5, "Find a step size ε at which PD's mean KL is at least 5 % below Langevin's.",
        "With a small ε Langevin lags behind the moving target while PD's move carries the particles: try 0.001.",
        "Any small ε, e.g. 0.001 on translating_gaussian.", "test", _pd_vs_langevin(True)),
    "pd_loses": Exercise(5, "Find a step size ε at which PD does NOT beat Langevin by 5 %.",
        "When the corrections alone catch up within each step, PD's move gains nothing: try ε near 0.5.",
        "Any large ε, e.g. 0.5 on translating_gaussian.", "test", _pd_vs_langevin(False)),
    "claim_fails_on": Exercise(6, "On which datasets does the measured table contradict 'PD-β learns at least "
        "as good a model as PCD'? (a list; [] if none)", "A claim fails where PD-β is below PCD by more than "
        "two standard errors of the difference (and 0.02 nats).", "Compare the rows of every dataset.",
        "names", _claim_fails),
    "gaussian_log_z": Exercise(7, "log Z of E(x) = |x|² / (2·0.5²) in d = 64 dimensions?",
        "Z is a Gaussian integral (2π s²)^(d/2); take the log.",
        "32 log 2π + 64 log 0.5 ≈ 58.81 - 44.36 = 14.45.", "number", 32 * math.log(2 * math.pi * 0.25), 0.01),
    "ais_bias": Exercise(7, "On average, is AIS's log Ẑ below or above the true log Z?",
        "Ẑ is unbiased for Z, and log is concave.", "Below (Jensen: E log Ẑ <= log E Ẑ = log Z).", "name", "below"),
    "uniform_bits_digits": Exercise(7, "bits/dim of the uniform density on [0, 1]^64 for 17-level digits?",
        "Use bits/dim = (-log p + d log L) / (d log 2) with log p = 0.", "log2 17 ≈ 4.087.", "number",
        math.log2(17), 0.01),
    "uniform_bits_mnist": Exercise(8, "bits/dim of the uniform density on [0, 1]^784 for 256-level MNIST?",
        "Use bits/dim = (-log p + d log L) / (d log 2) with log p = 0.", "log2 256 = 8.", "number", 8.0, 0.01),
    "ais_cost": Exercise(8, "Gradient evaluations (each over all chains) of AIS with K = 500 temperatures and "
        "2 MALA steps each?", "Each MALA step costs one evaluation; count the one that starts the chains or not.",
        "K · steps = 1000, plus 1 for the start: 1001 (both count as right).", "number", 1000.5, 0.5),
    "pd_negatives_cost": Exercise(8, "Per particle and step: PD-β's Langevin evaluations (30 corrections, 10 % "
        "re-initialised by 10 steps) over PCD's (50 steps)?", "Every particle takes the corrections, one in ten "
        "also the re-initialisation.", "(30 + 0.1 · 10) / 50 = 0.62.", "number", 0.62, 0.01),
}  # fmt: skip


def _find(name: str) -> Exercise | None:
    ex = EXERCISES.get(str(name).lower().replace("-", "_"))
    if ex is None:
        print(f"unknown exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return ex


def _numbers(answer: Any) -> list[float]:
    values = np.asarray(answer, dtype=float).reshape(-1)  # int, float, numpy or torch, one or several
    if not np.isfinite(values).all():
        raise ValueError(f"expected finite numbers, got {answer!r}")
    return values.tolist()


def _names(answer: Any) -> set[str]:
    return {str(a).strip().lower() for a in ([answer] if isinstance(answer, str) else answer)}


def _judge(ex: Exercise, answer: Any, context: Mapping[str, Any]) -> tuple[bool, str]:
    if ex.kind == "test":
        return ex.expected(answer, **context)
    want = ex.expected(**context) if callable(ex.expected) else ex.expected
    if ex.kind in ("number", "numbers"):
        got, want = _numbers(answer), _numbers(want)
        if len(got) != len(want):
            raise ValueError(f"expected {len(want)} number(s), got {len(got)}")
        right = all(abs(g - w) <= ex.tol + 1e-12 for g, w in zip(got, want))
        return right, f"you answered {', '.join(f'{g:.4g}' for g in got)}"
    right = _names(answer) == _names(want) if ex.kind == "names" else _names(answer) == {str(want).lower()}
    return right, f"you answered {answer!r}"


def check(name: str, answer: Any = None, **context: Any) -> bool | None:
    """Check ``answer`` to exercise ``name``: prints right / not yet (with a hint); never raises.

    Returns True (right), False (wrong or unreadable), or None (unanswered, unknown name, or a check that
    could not run, e.g. missing ``context``). ``context`` holds the objects a measured answer is computed
    from (see the module docstring).
    """
    ex = _find(name)
    if ex is None:
        return None
    if answer is None or answer is Ellipsis:
        print(f"not answered yet. {ex.question}\nhint: {ex.hint}")
        return None
    try:
        right, detail = _judge(ex, answer, context)
    except Exception as exc:  # noqa: BLE001 - a check in a teaching notebook must not stop the notebook
        print(f"could not check this answer ({type(exc).__name__}: {exc}).\nhint: {ex.hint}")
        return False if isinstance(exc, ValueError) else None  # unreadable answer, or missing context
    print(f"right: {detail}" if right else f"not yet: {detail}\nhint: {ex.hint}")
    return bool(right)


def solution(name: str) -> None:
    """Print the question and worked solution of exercise ``name`` (the notebooks' hidden answers)."""
    ex = _find(name)
    if ex is not None:
        print(f"{ex.question}\nsolution: {ex.solution}")
