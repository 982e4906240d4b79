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

Write-it-yourself exercises (kind "function") take the student's *function*: :class:`FunctionCheck` calls
it and the library on fresh random inputs of several shapes and, where they differ, finds which of the
output's :class:`Term` s is wrong by trying the common mistakes of each term (and pairs of them), so the
message names the first wrong term. A function that still returns ``...`` (the placeholder) is unanswered.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from pdviz import flows, metrics, objectives, samplers, strategies
from pdviz.energies import value_and_grad


class Exercise(NamedTuple):
    """One exercise. ``kind``: "number", "numbers" (a vector, in order), "name", "names" (a set),
    "test" (``expected(answer, **context) -> (right, detail)``) or "function" (``expected`` a
    :class:`FunctionCheck`). ``expected``: the answer, or a function of the context that measures it.
    ``tol``: absolute tolerance of each number."""

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


# --- write-it-yourself exercises: the student's function against the library ----------------------


class Term(NamedTuple):
    """One summand of an output: ``right(v)`` and the common mistakes ``wrong`` (what the message says ->
    the summand as that mistake computes it); ``v`` is the dict of inputs (argument name -> value)."""

    right: Callable[[dict], Tensor]
    wrong: Mapping[str, Callable[[dict], Tensor]]


class FunctionCheck(NamedTuple):
    """A function exercise. ``inputs(generator, n, d) -> dict``: the student's arguments in order (keys
    starting with "_" are for the library only); ``library(v)``: the library's outputs, a tuple of
    Tensors; ``outputs``: per output its name and its terms (their right versions sum to the library's
    output); ``shapes``: the (n, d) tried, the first the one a wrong answer is diagnosed at."""

    inputs: Callable[[torch.Generator, int, int], dict]
    library: Callable[[dict], tuple]
    outputs: Sequence[tuple[str, Sequence[Term]]]
    shapes: Sequence[tuple[int, int]] = ((5, 2), (4, 3), (1, 1))


class _Unanswered(Exception):
    """The student's function still returns the placeholder ``...`` (or None)."""


def _copy(a: Any) -> Any:
    if isinstance(a, Tensor):
        return a.clone()
    return type(a)(*map(_copy, a)) if isinstance(a, tuple) else a  # a State: fresh tensors


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6))


def _diagnose(terms: Sequence[Term], v: dict, got: Tensor, want: Tensor, name: str) -> str:
    """Which terms are wrong: the mix of right and mistaken terms (fewest mistakes first) that reproduces
    ``got``, its mistakes in the order of the terms; else the size of the difference."""
    options = [[(None, t.right(v))] + [(msg, f(v)) for msg, f in t.wrong.items()] for t in terms]
    combos = sorted(itertools.product(*options), key=lambda c: sum(m is not None for m, _ in c))
    for combo in combos[1:]:
        if _close(sum(value for _, value in combo).expand_as(got), got):
            first, *more = [m for m, _ in combo if m is not None]
            return first + "".join(f"; also, {m}" for m in more)
    diff = float((got - want).abs().max())
    return f"{name} differs from the library's by up to {diff:.3g} (none of the common mistakes explains it)"


def _check_function(spec: FunctionCheck, answer: Any) -> tuple[bool, str]:
    """Call ``answer`` and the library on fresh random inputs; the first output that differs is diagnosed."""
    if not callable(answer):
        raise ValueError(f"expected a function, got {type(answer).__name__}")
    rng = np.random.default_rng()  # fresh inputs at every check
    for n, d in spec.shapes:
        v = spec.inputs(torch.Generator().manual_seed(int(rng.integers(2**62))), n, d)
        want = spec.library(v)
        try:
            got = answer(*[_copy(a) for k, a in v.items() if not k.startswith("_")])
        except Exception as exc:  # noqa: BLE001 - the student's code may fail in any way
            return False, f"your function raised {type(exc).__name__}: {exc} (inputs with n = {n}, d = {d})"
        got = (got,) if len(want) == 1 else tuple(got) if isinstance(got, (tuple, list)) else (got,)
        if any(g is None or g is Ellipsis for g in got):
            raise _Unanswered
        if len(got) != len(want):
            return False, f"your function returns {len(got)} value(s); it should return {len(want)}"
        for g, w, (name, terms) in zip(got, want, spec.outputs):
            g = torch.as_tensor(g, dtype=w.dtype)
            if g.numel() != w.numel():
                return False, f"{name} has shape {list(g.shape)}; it should have shape {list(w.shape)}"
            if not _close(g.reshape(w.shape), w):
                return False, _diagnose(terms, v, g.reshape(w.shape), w, name)
    return True, f"your function agrees with the library on {len(spec.shapes)} sets of fresh random inputs"


def _normal(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _ula_inputs(gen: torch.Generator, n: int, d: int) -> dict:
    """x, ∇E(x), ε, and the noise ξ that ``ula_move`` draws from a generator seeded ``_seed``."""
    seed, x = int(torch.randint(2**62, (), generator=gen)), _normal(gen, n, d)
    noise = torch.randn(x.shape, generator=samplers.make_generator(seed), dtype=x.dtype)
    grad, step_size = _normal(gen, n, d), _uniform(gen, 0.05, 0.8)
    return {"x": x, "grad": grad, "step_size": step_size, "noise": noise, "_seed": seed}


def _ula_library(v: dict) -> tuple[Tensor]:
    state = samplers.State(v["x"], v["x"].sum(1), v["grad"], v["x"].new_zeros(len(v["x"])))
    gen = samplers.make_generator(v["_seed"])  # the noise the student was given
    return (samplers.ula_move(state, step_size=v["step_size"], generator=gen),)


_ULA_STEP = FunctionCheck(_ula_inputs, _ula_library, [("your x'", [
    Term(lambda v: v["x"], {"your step forgets x: x' = x + drift + noise": lambda v: 0 * v["x"]}),
    Term(lambda v: -v["step_size"] / 2 * v["grad"], {
        "your step moves by +ε/2·∇E; the drift is −ε/2·∇E (downhill)": lambda v: v["step_size"] / 2 * v["grad"],
        "your step moves by −ε·∇E; the drift is −ε/2·∇E": lambda v: -v["step_size"] * v["grad"],
        "your step has no drift; it is −ε/2·∇E": lambda v: 0 * v["grad"]}),
    Term(lambda v: v["step_size"] ** 0.5 * v["noise"], {
        "your noise has std ε; it should be √ε": lambda v: v["step_size"] * v["noise"],
        "your noise has std √(2ε); with the drift −ε/2·∇E it should be √ε": lambda v: (2 * v["step_size"]) ** 0.5 * v["noise"],
        "your noise has std √(ε/2); it should be √ε": lambda v: (v["step_size"] / 2) ** 0.5 * v["noise"],
        "your noise has std 1; it should be √ε (scale ξ)": lambda v: v["noise"],
        "your step adds no noise (that is gradient descent); it adds √ε·ξ": lambda v: 0 * v["noise"]}),
])])  # fmt: skip


def _mala_inputs(gen: torch.Generator, n: int, d: int) -> dict:
    """The current State and a ULA proposal's (energies and gradients drawn at random: the maths holds
    for any values), and ε."""
    eps, x, grad = _uniform(gen, 0.05, 0.8), _normal(gen, n, d), _normal(gen, n, d)
    x_new = x - eps / 2 * grad + eps**0.5 * _normal(gen, n, d)
    zero = x.new_zeros(n)
    return {"s": samplers.State(x, _normal(gen, n), grad, zero),
            "s_new": samplers.State(x_new, _normal(gen, n), _normal(gen, n, d), zero), "step_size": eps}  # fmt: skip


def mala_log_acceptance(v: dict) -> tuple[Tensor]:
    """MALA's ``log α`` [n] as :func:`~pdviz.samplers.mala_step` computes it: ``E(x) - E(x') + log q(x | x')
    - log q(x' | x)``, ``log q(y | x) = -|y - x + (ε/2)∇E(x)|²/(2ε)`` (σ² = ε; constants cancel)."""
    (x, e, g, _), (y, e_new, g_new, _), eps = v["s"], v["s_new"], v["step_size"]
    return (e - e_new - _sq(x - y + eps / 2 * g_new) / (2 * eps) + _sq(y - x + eps / 2 * g) / (2 * eps),)


def _sq(a: Tensor) -> Tensor:
    return (a * a).sum(1)


def _log_q(v: dict, back: bool, drift: float = 0.5, var: float = 1.0, other_grad: bool = False) -> Tensor:
    """``log q`` of the reverse (``back``: x given x') or forward proposal, with a mistake: drift factor,
    variance factor or the other point's gradient."""
    (x, _, g, _), (y, _, g_new, _), eps = v["s"], v["s_new"], v["step_size"]
    to, start, grad = (x, y, g_new) if back else (y, x, g)
    grad = (g if back else g_new) if other_grad else grad
    return -_sq(to - start + drift * eps * grad) / (2 * var * eps)


def _proposal_term(back: bool) -> Term:
    q, sign = ("q(x | x')", 1) if back else ("q(x' | x)", -1)
    at = "x'" if back else "x"
    return Term(lambda v: sign * _log_q(v, back), {
        f"your log {q} has the wrong sign: log α = ... + log q(x | x') − log q(x' | x)": lambda v: -sign * _log_q(v, back),
        f"your log α misses log {q}": lambda v: 0 * _log_q(v, back),
        f"your {q} has the mean {at} + ε/2·∇E({at}); the proposal's mean is {at} − ε/2·∇E({at})":
            lambda v: sign * _log_q(v, back, drift=-0.5),
        f"your {q} has the drift −ε·∇E; the proposal's is −ε/2·∇E": lambda v: sign * _log_q(v, back, drift=1.0),
        f"your {q} uses the gradient at the other point; the proposal from {at} uses ∇E({at})":
            lambda v: sign * _log_q(v, back, other_grad=True),
        f"your {q} has variance 2ε; the proposal's variance is ε": lambda v: sign * _log_q(v, back, var=2.0),
        f"your {q} has variance ε/2 or std ε; the proposal's variance is ε": lambda v: sign * _log_q(v, back, var=0.5),
    })  # fmt: skip


_MALA_ACCEPTANCE = FunctionCheck(_mala_inputs, mala_log_acceptance, [("your log α", [
    Term(lambda v: v["s"].energy - v["s_new"].energy, {
        "your energy term is E(x') − E(x); e^{−E(x')}/e^{−E(x)} gives E(x) − E(x')":
            lambda v: v["s_new"].energy - v["s"].energy,
        "your log α misses the energy difference E(x) − E(x')": lambda v: 0 * v["s"].energy}),
    _proposal_term(back=True),
    _proposal_term(back=False),
])])  # fmt: skip


def _loss_inputs(gen: torch.Generator, n: int, d: int) -> dict:
    """Energies of a data batch [n + 3] and of n negatives, self-normalised weights [n] (d unused)."""
    e_neg = _normal(gen, n)
    return {"e_data": _normal(gen, n + 3), "e_neg": e_neg, "weights": torch.softmax(_normal(gen, n), 0)}


def _neg(v: dict) -> Tensor:
    return (v["weights"] * v["e_neg"]).sum()


_CONTRASTIVE_LOSS = FunctionCheck(_loss_inputs, lambda v: (strategies.contrastive_loss(v["e_data"], v["e_neg"], v["weights"]),), [("your loss", [
    Term(lambda v: v["e_data"].mean(), {
        "your data term has the wrong sign: energy goes down on data, so the loss has +mean E(data)":
            lambda v: -v["e_data"].mean(),
        "your data term sums E(data); it is the mean over the batch": lambda v: v["e_data"].sum(),
        "your loss misses the data term mean E(data)": lambda v: 0 * v["e_data"].mean()}),
    Term(lambda v: -_neg(v), {
        "your negatives' term has the wrong sign: energy goes up on negatives, so the loss has −Σ w_j E(neg_j)":
            _neg,
        "your negatives' term ignores the weights: it is Σ_j w_j E(neg_j), not the plain mean":
            lambda v: -v["e_neg"].mean(),
        "your negatives' term averages w_j E(neg_j); with weights that sum to 1 it is the sum Σ_j w_j E(neg_j)":
            lambda v: -_neg(v) / len(v["e_neg"]),
        "your loss misses the negatives' term −Σ_j w_j E(neg_j)": lambda v: 0 * _neg(v)}),
])])  # fmt: skip


def _pd_inputs(gen: torch.Generator, n: int, d: int) -> dict:
    """Random smooth E_old and ΔE (quadratic plus waves, small enough that det ∇T > 0), x, h and what the
    student is given: ∇ΔE(x), ∇²ΔE(x), E_old(x) and E_new as a function."""
    a, u, c = _normal(gen, d).abs() + 0.5, _normal(gen, 3, d), _normal(gen, 3, scale=0.3)
    m, b = _normal(gen, d, d, scale=0.2), _normal(gen, d, scale=0.5)
    w, k = _normal(gen, 3, d, scale=0.6), _normal(gen, 3, scale=0.1)
    old = lambda z: 0.5 * (a * z * z).sum(-1) + torch.sin(z @ u.T) @ c  # noqa: E731
    delta = lambda z: 0.5 * ((z @ (m + m.T) / 2) * z).sum(-1) + z @ b + torch.cos(z @ w.T) @ k  # noqa: E731
    new = lambda z: old(z) + delta(z)  # noqa: E731
    x, h = _normal(gen, n, d), _uniform(gen, 0.05, 0.3)
    hess = torch.func.vmap(torch.func.hessian(lambda z: delta(z[None])[0]))(x)
    return {"x": x, "h": h, "grad_delta": value_and_grad(delta, x)[1], "hess_delta": hess, "e_old": old(x),
            "energy_new": new, "_old": old}  # fmt: skip


def _pd_library(v: dict) -> tuple[Tensor, Tensor]:
    change = flows.Change(v["_old"], v["energy_new"])
    state = samplers.init(v["x"], v["_old"])
    end, _ = flows.flow_step(state, "alpha", change, step=v["h"], n_corrections=0, weighted=True)
    return end.position, end.log_weight


def _pd_y(v: dict) -> Tensor:
    return v["x"] - v["h"] * v["grad_delta"]


def _log_det(v: dict, sign: float = -1.0) -> Tensor:
    eye = torch.eye(v["x"].shape[1], dtype=v["x"].dtype)
    return torch.linalg.slogdet(eye + sign * v["h"] * v["hess_delta"]).logabsdet


_PD_ALPHA = FunctionCheck(_pd_inputs, _pd_library, [
    ("your T(x)", [
        Term(lambda v: v["x"], {"your T(x) forgets x: T(x) = x − h∇ΔE(x)": lambda v: 0 * v["x"]}),
        Term(lambda v: -v["h"] * v["grad_delta"], {
            "your move goes up ΔE: T(x) = x − h∇ΔE(x), not x + h∇ΔE(x)": lambda v: v["h"] * v["grad_delta"],
            "your move forgets the step h: T(x) = x − h∇ΔE(x)": lambda v: -v["grad_delta"]}),
    ]),
    ("your Δlog w", [
        Term(lambda v: v["e_old"] - v["energy_new"](_pd_y(v)), {
            "your energy term has the wrong sign: log p̃_new(T x) − log p̃_old(x) = E_old(x) − E_new(T x)":
                lambda v: v["energy_new"](_pd_y(v)) - v["e_old"],
            "you evaluate E_new at x; the new density is evaluated where the particle lands, T(x)":
                lambda v: v["e_old"] - v["energy_new"](v["x"]),
            "your Δlog w misses the energy change E_old(x) − E_new(T x)": lambda v: 0 * v["e_old"]}),
        Term(_log_det, {
            "your Δlog w misses log|det ∇T(x)|, the change of volume of the move": lambda v: 0 * v["e_old"],
            "your log-determinant has the wrong sign: Δlog w gains +log|det ∇T(x)|": lambda v: -_log_det(v),
            "your Jacobian is I + h∇²ΔE; T(x) = x − h∇ΔE(x) has ∇T = I − h∇²ΔE": lambda v: _log_det(v, 1.0),
            "you used the first-order −h·tr ∇²ΔE; the exact weight is log|det(I − h∇²ΔE)|":
                lambda v: -v["h"] * v["hess_delta"].diagonal(dim1=1, dim2=2).sum(1)}),
    ]),
], shapes=((5, 2), (4, 3), (1, 1)))  # fmt: skip


def _ntk_inputs(gen: torch.Generator, n: int, d: int) -> dict:
    """A freshly initialised network on R^d, the rows ∇_θ E [·, P] of its parameter gradients at m = n + 1
    points z, b = n + 2 data points and n negatives, and η; the library gets the network itself."""
    net = torch.nn.Sequential(torch.nn.Linear(d, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    params = strategies.fresh_parameters(net, gen)
    at = {"points": _normal(gen, n + 1, d), "data": _normal(gen, n + 2, d), "negatives": _normal(gen, n, d)}
    grad = torch.func.grad(lambda p, x: torch.func.functional_call(net, p, (x[None],)).sum())
    rows = {k: torch.cat([g.reshape(len(x), -1) for g in torch.func.vmap(grad, (None, 0))(params, x).values()], 1)
            for k, x in at.items()}  # fmt: skip
    return {"j_points": rows["points"], "j_data": rows["data"], "j_neg": rows["negatives"],
            "lr": _uniform(gen, 0.05, 0.5), "_net": net, "_params": params, "_at": at}  # fmt: skip


def _ntk_library(v: dict) -> tuple[Tensor]:
    at = v["_at"]
    args = (at["data"], at["negatives"], at["points"], v["lr"])
    return (strategies.gamma_energy_change(v["_net"], v["_params"], *args),)


def _kernel_mean(v: dict, key: str, reduce: str = "mean") -> Tensor:
    """``(1/b) Σ_i K(z, ·_i)`` [m] over the rows of ``v[key]`` (``reduce="sum"``: without the 1/b)."""
    return getattr(v["j_points"] @ v[key].T, reduce)(1)


def _ntk_term(key: str, sign: float, what: str) -> Term:
    """The data (sign -1) or negatives' (sign +1) term ``sign · η · mean K(z, ·)`` with its common mistakes."""
    right = lambda v: sign * v["lr"] * _kernel_mean(v, key)  # noqa: E731
    down_up = "lowers the energy near the data" if sign < 0 else "raises the energy near the negatives"
    return Term(right, {
        f"your {what} has the wrong sign: a step down the loss {down_up}": lambda v: -right(v),
        f"your {what} sums K over the points; the loss averages it (1/b Σ_i, 1/n Σ_j)":
            lambda v: sign * v["lr"] * _kernel_mean(v, key, "sum"),
        f"your {what} forgets the learning rate η": lambda v: right(v) / v["lr"],
        f"your ΔE misses the {what}": lambda v: 0 * right(v)})  # fmt: skip


_NTK_CHANGE = FunctionCheck(_ntk_inputs, _ntk_library, [("your ΔE", [
    _ntk_term("j_data", -1.0, "data term"), _ntk_term("j_neg", 1.0, "negatives' term")])])  # fmt: skip


def _ed_inputs(gen: torch.Generator, n: int, d: int) -> dict:
    """Energies of n data points [n] and of M = d + 2 contrast points each [n, M], and the stabiliser w."""
    return {"e_data": _normal(gen, n), "e_contrast": _normal(gen, n, d + 2), "w": _uniform(gen, 0.5, 2.0)}


def _ed(v: dict, sign: float = 1.0, stabiliser: float | None = None, mean: bool = True) -> Tensor:
    """ED's loss per data point [n], ``log(w/M + mean_j exp(E(x) - E(x'_j)))``, or a common mistake: the
    other sign, another stabiliser than w/M, the sum over j instead of the mean."""
    terms = (sign * (v["e_data"][:, None] - v["e_contrast"])).exp()
    stabiliser = v["w"] / terms.shape[1] if stabiliser is None else stabiliser
    return torch.log(stabiliser + (terms.mean(1) if mean else terms.sum(1)))


def _ed_library(v: dict) -> tuple[Tensor]:
    """``objectives.ed_loss`` on an energy that returns the given energies (data first, then the contrasts)."""
    e, m = torch.cat([v["e_data"], v["e_contrast"].reshape(-1)]), v["e_contrast"].shape[1]
    return (objectives.ed_loss(lambda z: e, v["e_data"][:, None], 1.0, m, v["w"], torch.Generator()),)


_ED_LOSS = FunctionCheck(_ed_inputs, _ed_library, [("your loss", [Term(lambda v: _ed(v).mean(), {
    "your energy difference has the wrong sign: each contrast adds exp(E(x) − E(x'_j))": lambda v: _ed(v, -1.0).mean(),
    "your loss misses the stabiliser w/M inside the log": lambda v: _ed(v, stabiliser=0.0).mean(),
    "your stabiliser is w; inside the log it is w/M": lambda v: _ed(v, stabiliser=v["w"]).mean(),
    "your loss sums exp(E(x) − E(x'_j)) over j; it is the mean (1/M)Σ_j": lambda v: _ed(v, mean=False).mean(),
    "your loss sums over the data points; it is their mean": lambda v: _ed(v).sum(),
    "your loss takes the log of a batch mean; the log is per data point": lambda v: _ed(v).exp().mean().log()})])])  # fmt: skip


_FIELD_HINT = (
    "Differentiate E_t(x) in t at a fixed x (the chain rule through m(t)), then take minus its gradient in x."
)
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
    "ula_step": Exercise(1, "Write one ULA step: my_ula_step(x, grad, step_size, noise) -> x' [n, d], given the "
        "particles x [n, d], grad = ∇E(x) [n, d], the step ε and a standard normal draw noise = ξ [n, d].",
        "It is one Euler step of length ε/2 of dX = -∇E(X) dt + √2 dW: the drift is -∇E times the time step, and "
        "the noise's variance is 2 times the time step.",
        "x - step_size / 2 * grad + step_size ** 0.5 * noise (samplers.ula_move).", "function", _ULA_STEP),
    "mala_acceptance": Exercise(1, "Write MALA's log acceptance ratio: my_log_acceptance(s, s_new, step_size) -> "
        "log α [n] (before the min with 0), s the current State and s_new the ULA proposal's (each with "
        ".position [n, d], .energy [n], .grad [n, d]).", "Take the log of α's ratio. q(y | x) is the Gaussian "
        "N(x - (ε/2)∇E(x), εI): write its log density up to a constant (the constants cancel in the ratio).",
        "E(x) - E(x') - |x - x' + (ε/2)∇E(x')|²/(2ε) + |x' - x + (ε/2)∇E(x)|²/(2ε), summed over coordinates "
        "per particle (samplers.mala_step; exercises.mala_log_acceptance).", "function", _MALA_ACCEPTANCE),
    "short_run_noise": Exercise(2, "K = 20 ULA steps of ε = 0.01: the noise's total standard deviation per "
        "coordinate (ignoring the drift)?", "Each step adds √ε ξ; variances of independent steps add up.",
        "√(K ε) = √0.2 ≈ 0.447: far less than the 2.8 between a mode and the centre of 8gaussians.", "number",
        lambda n_steps=20, step_size=0.01: math.sqrt(n_steps * step_size), 0.005),
    "contrastive_loss": Exercise(2, "Write the contrastive loss: my_contrastive_loss(e_data, e_neg, weights) -> a scalar, "
        "given the energies of a data batch e_data [b], of the negatives e_neg [n] and the negatives' "
        "self-normalised weights [n] (they sum to 1).", "Gradient descent on the loss pushes energy down on data "
        "and up on the negatives; each negative counts with its weight.",
        "e_data.mean() - (weights * e_neg).sum() (strategies.contrastive_loss).", "function", _CONTRASTIVE_LOSS),
    "mode_weights": Exercise(2, "The mode weights of the learned PCD model on the grid (one per centre, sum 1)?",
        "Sample the model from the grid (grid.sample) and count the share nearest each centre "
        "(metrics.mode_weights).", _GRID_WEIGHTS, "numbers",
        lambda energy_fn, grid, centres: metrics.grid_mode_weights(grid, energy_fn, centres), 0.01),
    "worst_mode_weights": Exercise(2, "Which strategy learned the most unequal mode weights (max - min)?",
        "Measure each model's mode weights on the grid and compare max - min.",
        "The strategy with the largest spread of its grid mode weights.", "name",
        lambda spreads: max(spreads, key=spreads.get)),
    "translating_field": Exercise(3, "E_t(x) = |x - m(t)|²/2, m(t) = (1 - t) m0 + t m1, m0 = (-2, 0), m1 = (2, 0): "
        "PD's field -∇_x ∂_t E_t(x), as (v1, v2)?", _FIELD_HINT,
        "m'(t) = m1 - m0 = (4, 0) at every x: also the exact field.", "numbers", (4.0, 0.0), 1e-6),
    "translating_velocity": Exercise(3, "E_t(x) = |x - m(t)|²/2 with m(t) = (3t, -t): PD's field at any x, "
        "as (v1, v2)?", _FIELD_HINT,
        "m'(t) = (3, -1).", "numbers", (3.0, -1.0), 1e-6),
    "scaling_sigma2": Exercise(3, "E_t(x) = |x|²/(2σ(t)²): for which σ² does PD's field 2σ'x/σ³ equal the exact "
        "(σ'/σ) x?", "Set 2σ'x/σ³ = (σ'/σ) x and cancel σ' x / σ.",
        "2/σ² = 1 ⇒ σ² = 2; below it PD moves too far, above it not far enough.", "number", 2.0, 0.02),
    "scaling_ratio": Exercise(3, "Same scaling Gaussian at σ = 0.5: how many times longer is PD's step than "
        "the exact one?", "Divide 2σ'x/σ³ by (σ'/σ) x.", "2/σ² = 8: the corrections pull the particles back.",
        "number", lambda sigma=0.5: 2 / sigma**2, 0.08),
    "pd_alpha_move": Exercise(3, "Write the PD-α move with its exact weight: my_pd_alpha(x, h, grad_delta, "
        "hess_delta, e_old, energy_new) -> (T(x) [n, d], Δlog w [n]), given x [n, d], the PD step h, ∇ΔE(x) [n, d] "
        "and ∇²ΔE(x) [n, d, d] (ΔE = E_new - E_old), E_old(x) [n] and the function energy_new (y [n, d] -> [n]).",
        "Differentiate T(x) = x - h∇ΔE(x) to get ∇T(x) [n, d, d]; log p̃ = -E; torch.linalg.slogdet(A).logabsdet "
        "is log|det A| for a batch of matrices A.", "y = x - h * grad_delta; Δlog w = e_old - energy_new(y) + "
        "log|det(I - h * hess_delta)| (flows.flow_step(state, 'alpha', change, n_corrections=0, weighted=True)).",
        "function", _PD_ALPHA),
    "ntk_energy_change": Exercise(4, "Write PD-γ's energy change after one gradient step on the contrastive loss: "
        "my_ntk_change(j_points, j_data, j_neg, lr) -> ΔE [m], given the rows ∇_θ E of the parameter gradients at "
        "m points z [m, P], at b data points [b, P] and at n negatives [n, P], and the learning rate η.",
        "K(z, z') = ⟨∇_θ E(z), ∇_θ E(z')⟩ is a dot product of two rows; all the K(z, x_i) at once are one matrix "
        "product, and the bracket of the formula averages over each set.", "-lr * j_points @ (j_data.mean(0) - "
        "j_neg.mean(0)) (strategies.gamma_energy_change, without forming the Jacobians).", "function", _NTK_CHANGE),
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
        "Langevin's corrections move a particle about (ε/2)|∇E| each: when is that too little to keep up with the "
        "target, while PD's move carries the particles?", "Any small enough ε, e.g. 0.001 on translating_gaussian.",
        "test", _pd_vs_langevin(True)),
    "pd_loses": Exercise(5, "Find a step size ε at which PD does NOT beat Langevin by 5 %.",
        "When the corrections alone catch up within each step, PD's move gains nothing: which ε lets them?",
        "Any large ε, e.g. 0.5 on translating_gaussian.", "test", _pd_vs_langevin(False)),
    "claim_fails_on": Exercise(6, "On which datasets does the measured table contradict 'PD-β learns at least "
        "as good a model as PCD'? (a list; [] if none)", "A claim fails where PD-β is below PCD by more than "
        "two standard errors of the difference (and 0.02 nats).", "Compare the rows of every dataset.",
        "names", _claim_fails),
    "ed_loss": Exercise(7, "Write the energy-discrepancy loss: my_ed_loss(e_data, e_contrast, w) -> a scalar, given "
        "the energies e_data [b] of a data batch, e_contrast [b, M] of its M contrast points each, and the stabiliser w.",
        "Per data point: the log of w/M plus the mean over j of exp(E(x) − E(x'_j)); then the mean over the batch.",
        "torch.log(w / M + (e_data[:, None] - e_contrast).exp().mean(1)).mean() (objectives.ed_loss, which uses "
        "logsumexp).", "function", _ED_LOSS),
    "closest_to_bound": Exercise(7, "Which strategy is closest to the entropy bound at the budget, on average over "
        "the datasets?", "The smallest mean gap: the black bars of the first panel, or the table's 'gap' column.",
        "The row of results['by_strategy'] with the smallest 'gap'.", "name",
        lambda table: min((r for r in table if r["gap"] == r["gap"]), key=lambda r: r["gap"])["strategy"]),
    "ahead_of_pcd": Exercise(7, "Which strategies are, on average, closer to the bound than PCD after the early "
        "CPU-seconds? (a list; [] if none)", "Compare each strategy's mean gap at the early time with PCD's.",
        "The rows whose 'gap_early' is below PCD's.", "names",
        lambda table: [r["strategy"] for r in table if r["gap_early"] < {q["strategy"]: q["gap_early"] for q in table}["pcd"]]),
    "gaussian_log_z": Exercise(8, "log Z of E(x) = |x|² / (2·0.5²) in d = 64 dimensions?",
        "Z is a Gaussian integral (2π s²)^(d/2); take the log.",
        "32 log 2π + 64 log 0.5 ≈ 58.81 - 44.36 = 14.45.", "number", 32 * math.log(2 * math.pi * 0.25), 0.01),
    "ais_bias": Exercise(8, "On average, is AIS's log Ẑ below or above the true log Z?",
        "Ẑ is unbiased for Z, and log is concave.", "Below (Jensen: E log Ẑ <= log E Ẑ = log Z).", "name", "below"),
    "uniform_bits_digits": Exercise(8, "bits/dim of the uniform density on [0, 1]^64 for 17-level digits?",
        "Use bits/dim = (-log p + d log L) / (d log 2) with log p = 0.", "log2 17 ≈ 4.087.", "number",
        math.log2(17), 0.01),
    "uniform_bits_mnist": Exercise(9, "bits/dim of the uniform density on [0, 1]^784 for 256-level MNIST?",
        "Use bits/dim = (-log p + d log L) / (d log 2) with log p = 0.", "log2 256 = 8.", "number", 8.0, 0.01),
    "ais_cost": Exercise(9, "Gradient evaluations (each over all chains) of AIS with K = 500 temperatures and "
        "2 MALA steps each?", "Each MALA step costs one evaluation; count the one that starts the chains or not.",
        "K · steps = 1000, plus 1 for the start: 1001 (both count as right).", "number", 1000.5, 0.5),
    "pd_negatives_cost": Exercise(9, "Per particle and step: PD-β's Langevin evaluations (30 corrections, 10 % "
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
    if ex.kind == "function":
        return _check_function(ex.expected, answer)
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
    from (see the module docstring). For a "function" exercise ``answer`` is the student's function; one
    that returns ``...`` or None is unanswered.
    """
    ex = _find(name)
    if ex is None:
        return None
    unanswered = f"not answered yet. {ex.question}\nhint: {ex.hint}"
    if answer is None or answer is Ellipsis:
        print(unanswered)
        return None
    try:
        right, detail = _judge(ex, answer, context)
    except _Unanswered:
        print(unanswered)
        return None
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
