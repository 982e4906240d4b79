"""Langevin samplers as pure step functions on one particle :class:`State`, a driver and a replay buffer.

The unadjusted Langevin algorithm (ULA) moves every particle by

    x' = x - (ε/2) ∇E(x) + σ ξ,        ξ ~ N(0, I),   σ = sqrt(ε) for the true Langevin chain,

and the Metropolis-adjusted Langevin algorithm (MALA) proposes the same move and accepts it per particle
with probability

    α = min(1, exp(E(x) - E(x')) q(x | x') / q(x' | x)),   q(y | x) = N(y; x - (ε/2) ∇E(x), σ² I),

which keeps ``p ∝ exp(-E)`` exactly invariant for any ε and σ > 0. ULA is biased by O(ε); MALA is not.

``init(position, energy_fn) -> State`` and ``step(state, energy_fn, *, step_size, noise_scale, generator)
-> (State, Info)``. The State caches the energy and its gradient (and carries importance log-weights for
the flows), so a step costs one gradient evaluation. ``run`` drives either sampler and records a
:class:`History`, the one history type of pdviz (sampler runs, flow tracking, training); plotting and
animation only read histories. Randomness comes from an explicit ``torch.Generator``; ``generator=None``
draws a fresh entropy-seeded one, so the global RNG is never touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import trange

from pdviz import errors
from pdviz.energies import value_and_grad
from pdviz.errors import InvalidArgumentError

EnergyFn = Callable[[Tensor], Tensor]


class State(NamedTuple):
    """The particles, for samplers, flows and training alike.

    position [n, d]; energy [n] = ``E(position)`` and grad [n, d] = ``∇_x E(position)``, both detached, or
    both None where the positions were never evaluated (a chain that ends with a bare :func:`ula_move`:
    its next user evaluates them under a changed model anyway, so the evaluation would be wasted);
    log_weight [n], importance log-weights (zeros = unweighted; self-normalised, so constants cancel).
    """

    position: Tensor
    energy: Tensor | None
    grad: Tensor | None
    log_weight: Tensor


class Info(NamedTuple):
    """What a step did: acceptance_rate, a scalar tensor (1 for ULA); n_grad, gradient evaluations spent."""

    acceptance_rate: Tensor
    n_grad: int


@dataclass
class History:
    """The one history type: frames (snapshots), curves (per-step series) and meta.

    frames: list of dicts ``{"step": int, "position": Tensor [n, d] (cpu), ...}`` with any scalar by name
    ("t", "kl", "acceptance_rate", "log_likelihood", "ess", ...) and optional tensors ("log_weight" [n],
    "energy" [g, g]); curves: ``{name: list}`` ("step", "loss", "n_grad", ...); meta: ``{"kind": ..., ...}``.
    """

    frames: list[dict] = field(default_factory=list)
    curves: dict[str, list] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def record(self, step: int, **values: Any) -> dict:
        """Append a frame at ``step``: tensors detached and copied to the cpu, 0-d tensors as floats."""
        frame: dict[str, Any] = {"step": int(step)}
        for key, v in values.items():
            if isinstance(v, Tensor):
                v = float(v) if v.ndim == 0 else v.detach().cpu().clone()
            frame[key] = v
        self.frames.append(frame)
        return frame

    def add(self, **values: Any) -> None:
        """Append one value to each named curve."""
        for key, v in values.items():
            self.curves.setdefault(key, []).append(v)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` over the frames that hold ``key`` (a ``None`` value counts as absent)."""
        frames = [f for f in self.frames if f.get(key) is not None]
        return [f["step"] for f in frames], [float(f[key]) for f in frames]

    def mean(self, key: str) -> float:
        """The mean of :meth:`series` ``key`` over the frames that hold it (NaN when none does)."""
        values = self.series(key)[1]
        return sum(values) / len(values) if values else math.nan

    def positions(self) -> Tensor:
        """The recorded positions stacked, [T, n, d] (frames without one are skipped)."""
        return self.stack("position")

    def stack(self, key: str) -> Tensor:
        """The frames' tensors under ``key`` stacked, [T, ...] (frames without one are skipped)."""
        return torch.stack([f[key] for f in self.frames if f.get(key) is not None])

    def to_dict(self) -> dict:
        """A JSON-able dict (frame tensors as ``{"tensor": lists, "dtype": name}``); see :meth:`from_dict`.

        Curves and meta must hold plain values (numbers, strings, lists).
        """
        frames = [{k: _plain(v) for k, v in f.items()} for f in self.frames]
        return {"frames": frames, "curves": self.curves, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """The History that :meth:`to_dict` wrote."""
        frames = [{k: _tensor(v) for k, v in f.items()} for f in d["frames"]]
        return cls(frames, dict(d["curves"]), dict(d["meta"]))


def _plain(v: Any) -> Any:
    return {"tensor": v.tolist(), "dtype": str(v.dtype)[6:]} if isinstance(v, Tensor) else v


def _tensor(v: Any) -> Any:
    return torch.tensor(v["tensor"], dtype=getattr(torch, v["dtype"])) if isinstance(v, dict) else v


# --- randomness -----------------------------------------------------------------------------------


def make_generator(seed: int | None = None, device: str | torch.device = "cpu") -> torch.Generator:
    """A new ``torch.Generator`` seeded with ``seed`` (entropy-seeded when ``None``); the global RNG is untouched."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
        return gen
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InvalidArgumentError(f"seed must be an int in [0, 2**63 - 1] or None, got {seed!r}")
    return gen.manual_seed(seed)


def generator_state(generator: torch.Generator) -> Tensor:
    """A copy of the generator's state (a uint8 tensor, loadable with ``torch.load(weights_only=True)``)."""
    return generator.get_state().clone()


def set_generator_state(generator: torch.Generator, state: Tensor) -> torch.Generator:
    """Restore ``state`` (from :func:`generator_state`) into ``generator``; CheckpointError if it does not fit."""
    try:
        if not (isinstance(state, Tensor) and state.dtype == torch.uint8 and state.ndim == 1):
            raise RuntimeError(f"expected a 1-D uint8 tensor, got {type(state).__name__}")
        generator.set_state(state.cpu())
    except RuntimeError as exc:
        raise errors.CheckpointError(f"generator state does not fit this generator: {exc}") from exc
    return generator


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    gen = make_generator(None, x.device) if generator is None else generator
    return torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)


def check_divergence(state_or_x: State | Tensor, iteration: int | None, bound: float | None, suggestion: str):
    """Raise :class:`~pdviz.errors.DivergenceError` naming ``iteration`` and ``suggestion`` when positions
    leave ``[-bound, bound]`` (``None``: only NaN/Inf) or energies, gradients or log-weights are not finite.

    One combined reduction on the happy path; the quantities are told apart only when something is wrong.
    """
    s = state_or_x if isinstance(state_or_x, State) else None
    x = state_or_x.position if s is not None else state_or_x
    ok = torch.isfinite(x).all() if bound is None else (x.abs() <= bound).all()  # False for NaN too
    if s is not None:
        ok = (
            ok
            & torch.isfinite(s.energy).all()
            & torch.isfinite(s.grad).all()
            & torch.isfinite(s.log_weight).all()
        )
    if bool(ok):
        return
    errors.check_finite_state("particle positions", x, iteration, bound=bound, suggestion=suggestion)
    for quantity, values in (
        ("energies", s.energy),
        ("energy gradients", s.grad),
        ("log-weights", s.log_weight),
    ):
        errors.check_finite_state(quantity, values, iteration, suggestion=suggestion)


# --- ULA and MALA ---------------------------------------------------------------------------------


def init(position: Tensor, energy_fn: EnergyFn) -> State:
    """Particles at ``position`` [n, d] with ``E`` and ``∇E`` cached (one evaluation), log-weights zero."""
    position = errors.check_points("position", position).detach()
    energy, grad = value_and_grad(energy_fn, position)
    return State(position, energy, grad, torch.zeros_like(energy))


def ula_move(
    state: State,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The ULA move alone, ``x - (ε/2) ∇E(x) + σ ξ`` [n, d] from the cached gradient; it evaluates nothing.

    σ defaults to ``sqrt(ε)``; σ = 0 draws no noise (gradient descent). A chain whose last positions are
    used as they are (a training step's negatives) ends with ``ula_move`` and saves one evaluation.
    """
    sigma = math.sqrt(step_size) if noise_scale is None else noise_scale
    x = state.position - 0.5 * step_size * state.grad
    return x + sigma * _noise(x, generator) if sigma > 0 else x


def ula_step(
    state: State,
    energy_fn: EnergyFn,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[State, Info]:
    """One ULA step ``x' = x - (ε/2) ∇E(x) + σ ξ`` (σ = sqrt(ε) by default), then ``E``, ``∇E`` at x'.

    ``state`` [n, d] -> (State, Info) with acceptance rate 1 and one gradient evaluation.
    """
    x = ula_move(state, step_size=step_size, noise_scale=noise_scale, generator=generator)
    energy, grad = value_and_grad(energy_fn, x)
    return State(x, energy, grad, state.log_weight), Info(torch.tensor(1.0), 1)


def ula_steps(
    state: State,
    energy_fn: EnergyFn,
    n_steps: int,
    *,
    step_size: float | list[float],
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
    weighted: bool = False,
) -> State:
    """``n_steps`` ULA steps (``n_steps`` gradient evaluations), bit-identical to as many :func:`ula_step` calls.

    A list ``step_size`` is an annealed chain, ε_k for step k (see :func:`anneal_schedule`), with the noise
    fixed at ``noise_scale`` (σ = sqrt(ε_0) by default). Nothing is checked per step: a NaN stays NaN for
    the caller's :func:`check_divergence`.

    ``weighted``: each step from x to x' also adds to the log-weight the log of MALA's acceptance ratio,
    ``E(x) - E(x') + log q(x | x') - log q(x' | x)`` (Jarzynski's correction of the ULA step, Carbone et al.
    2023), so weighted particles of ``p ∝ exp(-E)`` stay exactly weighted however large ε is.
    """
    schedule = list(step_size) if isinstance(step_size, (list, tuple)) else [step_size] * n_steps
    if len(schedule) != n_steps or any(not e > 0 for e in schedule):
        raise InvalidArgumentError(f"step_size must be > 0, one per step ({n_steps}), got {step_size!r}")
    if n_steps == 0:
        return state
    sigma = math.sqrt(schedule[0]) if noise_scale is None else noise_scale
    gen = make_generator(None, state.position.device) if generator is None and sigma > 0 else generator
    x, energy, grad, log_weight = state
    for eps in schedule:
        mean = x - 0.5 * eps * grad
        x_new = mean + sigma * _noise(x, gen) if sigma > 0 else mean
        energy_new, grad_new = value_and_grad(energy_fn, x_new)
        if weighted:  # log q(x' | x) - log q(x | x') with q(y | x) = N(y; x - (ε/2) ∇E(x), σ² I)
            back = x - x_new + 0.5 * eps * grad_new
            log_q_ratio = ((x_new - mean).square().sum(1) - back.square().sum(1)) / (2.0 * sigma**2)
            log_weight = log_weight + energy - energy_new + log_q_ratio
        x, energy, grad = x_new, energy_new, grad_new
    return State(x, energy, grad, log_weight)


def anneal_schedule(step_size: float, noise_scale: float, n_steps: int, kind: str = "none") -> list[float]:
    """The step sizes ε_0 .. ε_{K-1} of a K-step chain annealed from ε towards σ² (docs/method.md §2).

    ``linear``: ``ε_k = ε + (σ² - ε) k / (K - 1)``; ``geometric``: ``ε_k = ε (σ² / ε)^(k / (K - 1))``;
    ``none``: ``ε_k = ε``. σ stays fixed, so the last step is a true Langevin step (ε = σ²).
    """
    errors.check_choice("anneal", kind, ("none", "linear", "geometric"), what="annealing")
    if kind == "none" or n_steps == 1:
        return [float(step_size)] * n_steps
    end, fractions = float(noise_scale) ** 2, [k / (n_steps - 1) for k in range(n_steps)]
    if kind == "linear":
        return [step_size + (end - step_size) * f for f in fractions]
    return [step_size * (end / step_size) ** f for f in fractions]


def mala_step(
    state: State,
    energy_fn: EnergyFn,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[State, Info]:
    """One MALA step: the ULA proposal ``x' = x - (ε/2) ∇E(x) + σ ξ``, accepted per particle with
    probability ``min(1, exp(E(x) - E(x') + log q(x | x') - log q(x' | x)))``, ``q(y | x) = N(y; x - (ε/2)
    ∇E(x), σ² I)``. Rejected particles keep position and cache; non-finite proposals are always rejected.

    One gradient evaluation (at the proposals); noise drawn first, then the uniforms. ``state`` [n, d].
    """
    sigma = math.sqrt(step_size) if noise_scale is None else noise_scale
    x, energy, grad, log_weight = state
    gen = make_generator(None, x.device) if generator is None else generator
    noise = _noise(x, gen)
    proposal = x - 0.5 * step_size * grad + sigma * noise
    new_energy, new_grad = value_and_grad(energy_fn, proposal)
    log_forward = -0.5 * (noise * noise).sum(dim=1)  # log q(x' | x): x' - mean = σ ξ
    back = x - proposal + 0.5 * step_size * new_grad
    log_backward = -(back * back).sum(dim=1) / (2.0 * sigma**2)
    log_u = torch.log(torch.rand(x.shape[0], generator=gen, dtype=x.dtype, device=x.device))
    finite = torch.isfinite(new_energy) & torch.isfinite(new_grad).all(dim=1)
    accepted = (log_u < energy - new_energy + log_backward - log_forward) & finite
    keep = accepted[:, None]
    position, new_grad = torch.where(keep, proposal, x), torch.where(keep, new_grad, grad)
    new = State(position, torch.where(accepted, new_energy, energy), new_grad, log_weight)
    return new, Info(accepted.to(x.dtype).mean(), 1)


SAMPLERS: dict[str, Callable[..., tuple[State, Info]]] = {"ula": ula_step, "mala": mala_step}


def run(
    sampler: str,
    position: Tensor,
    energy_fn: EnergyFn,
    n_steps: int,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
    record_every: int = 1,
    progress: bool = False,
    bound: float | None = 1e4,
) -> tuple[State, History]:
    """Run ``n_steps`` of ``SAMPLERS[sampler]`` from ``position`` [n, d] and record a :class:`History`.

    Frames at step 0, every ``record_every`` steps and the last, each with "position" [n, d],
    "mean_energy", "n_grad" (cumulative, counting init's evaluation) and, after step 0, "acceptance_rate"
    (mean since the previous frame). Raises :class:`~pdviz.errors.DivergenceError` with the step (1-based)
    at which positions left ``[-bound, bound]`` (``None``: only NaN/Inf) or anything turned non-finite.
    """
    errors.check_choice("sampler", sampler, SAMPLERS)
    for name, value in (("n_steps", n_steps), ("record_every", record_every)):
        errors.check_positive(name, value, integer=True)
    errors.check_positive("step_size", step_size)
    if noise_scale is not None:
        errors.check_positive("noise_scale", noise_scale, allow_zero=sampler == "ula")
    if bound is not None:
        errors.check_positive("bound", bound)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(f"generator must be a torch.Generator or None, got {generator!r}")
    errors.check_memory("the recorded history", (n_steps // record_every + 2) * position.numel())
    gen = make_generator(None, position.device) if generator is None else generator
    noise = "" if noise_scale is None else f", and check noise_scale (now {noise_scale:g})"
    suggestion = f"reduce step_size (now {step_size:g}), e.g. to {step_size / 10:g}{noise}; or start closer to low energy"

    state = init(position, energy_fn)
    check_divergence(state, 0, bound, suggestion)
    history = History(meta={"kind": "sampler", "sampler": sampler, "step_size": step_size})

    def record(it: int, **rate: Tensor) -> None:
        history.record(it, position=state.position, mean_energy=state.energy.mean(), n_grad=1 + it, **rate)

    record(0)
    rate, since = torch.zeros((), device=position.device), 0
    for it in trange(1, n_steps + 1, disable=not progress, desc="sampling", leave=False):
        kw = {"step_size": step_size, "noise_scale": noise_scale, "generator": gen}
        state, info = SAMPLERS[sampler](state, energy_fn, **kw)
        check_divergence(state, it, bound, suggestion)
        rate, since = rate + info.acceptance_rate, since + 1
        if it % record_every == 0 or it == n_steps:
            record(it, acceptance_rate=rate / since)
            rate, since = torch.zeros_like(rate), 0
    return state, history


class ReplayBuffer:
    """A buffer of ``size`` past negatives, partly re-initialised from a base sampler on every draw.

    First filled with ``init_fn(size, generator) -> [size, d]``. ``sample(n)`` picks ``n`` distinct slots
    uniformly and returns their positions with a ``reinit_frac`` share (``floor(reinit_frac · n)`` or one
    more, so that the expected count is exactly ``reinit_frac · n``) replaced by fresh draws of
    ``init_fn``; after moving them, ``push(x, indices)`` writes them back.
    """

    def __init__(self, size: int, init_fn: Callable, reinit_frac: float = 0.05, generator=None):
        self.size = errors.check_positive("size", size, integer=True)
        self.reinit_frac = errors.check_range("reinit_frac", reinit_frac, 0.0, 1.0)
        self.init_fn = init_fn
        self.generator = make_generator(None) if generator is None else generator
        self.positions = self._fresh(self.size).clone()

    def _fresh(self, n: int) -> Tensor:
        x = self.init_fn(n, self.generator)
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] != n:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidArgumentError(f"init_fn({n}, generator) must return a tensor [{n}, d], got {got}")
        return x.detach()

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n`` distinct slots: their positions [n, d] (a share re-initialised) and indices [n]."""
        if not 0 < n <= self.size:
            raise InvalidArgumentError(f"n must be in [1, buffer size {self.size}], got {n}")
        gen = self.generator
        indices = torch.randperm(self.size, generator=gen, device=gen.device)[:n].to(self.positions.device)
        x = self.positions[indices].clone()
        expected = self.reinit_frac * n
        k = math.floor(expected)
        if expected > k and float(torch.rand((), generator=gen, device=gen.device)) < expected - k:
            k += 1  # randomised rounding: the expected count is exactly reinit_frac * n
        if k > 0:  # the indices are in random order, so the first k rows are a uniform choice
            x[:k] = self._fresh(k).to(x)
        return x, indices

    def push(self, x: Tensor, indices: Tensor) -> None:
        """Write particles ``x`` [n, d] back into the slots ``indices`` [n] (from :meth:`sample`)."""
        if x.shape != (indices.shape[0], self.positions.shape[1]) or not bool(
            ((indices >= 0) & (indices < self.size)).all()
        ):
            raise InvalidArgumentError(
                f"push needs x [n, {self.positions.shape[1]}] and n indices in [0, {self.size - 1}], "
                f"got x {list(x.shape)} and indices {indices.tolist()[:5]}"
            )
        self.positions[indices.to(self.positions.device)] = x.detach().to(self.positions)

    def state_dict(self) -> dict[str, Tensor | float]:
        """Plain tensors and numbers (``torch.load(weights_only=True)``-safe), generator included."""
        gen = generator_state(self.generator)
        return {"positions": self.positions.clone(), "reinit_frac": self.reinit_frac, "generator_state": gen}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; :class:`~pdviz.errors.CheckpointError` on a mismatch."""
        pos, frac = state.get("positions"), state.get("reinit_frac")
        if not (isinstance(pos, Tensor) and pos.shape == self.positions.shape) or not (
            isinstance(frac, float) and 0.0 <= frac <= 1.0
        ):
            raise errors.CheckpointError(
                f"replay buffer state must hold positions {list(self.positions.shape)} and reinit_frac in [0, 1]"
            )
        set_generator_state(self.generator, state.get("generator_state"))
        self.positions, self.reinit_frac = pos.detach().clone().to(self.positions), frac
