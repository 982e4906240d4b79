"""Langevin samplers: ULA and MALA as pairs of pure functions, a driver loop and a replay buffer.

The unadjusted Langevin algorithm (ULA) moves every particle by

    x' = x - (ε/2) ∇E(x) + σ ξ,        ξ ~ N(0, I),   σ = sqrt(ε) for the true Langevin chain,

and the Metropolis-adjusted Langevin algorithm (MALA) proposes the same move and accepts it per particle
with probability

    α = min(1, exp(-E(x') + E(x)) q(x | x') / q(x' | x)),   q(y | x) = N(y; x - (ε/2) ∇E(x), σ² I),

which keeps ``p ∝ exp(-E)`` exactly invariant for any ε and σ > 0. ULA is biased by O(ε); MALA is not.

A sampler is ``init(position, energy_fn) -> State`` and ``step(state, energy_fn, *, step_size, ...,
generator) -> (State, Info)``. The State caches the energy and its gradient, so each step costs exactly
one gradient evaluation (a batched forward and backward at the proposed points). ``run`` drives either
sampler and returns a :class:`History`; plotting and animation only read histories.

All randomness comes from an explicit ``torch.Generator``; ``generator=None`` draws a fresh,
entropy-seeded one, so the global RNG is never touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import trange

from pdviz import errors
from pdviz.errors import InvalidArgumentError

EnergyFn = Callable[[Tensor], Tensor]

__all__ = [
    "State",
    "Info",
    "Sampler",
    "History",
    "SAMPLERS",
    "ReplayBuffer",
    "get",
    "make_generator",
    "generator_state",
    "set_generator_state",
    "ula_init",
    "ula_step",
    "ula_steps",
    "anneal_schedule",
    "mala_init",
    "mala_step",
    "run",
]


class State(NamedTuple):
    """Particles of a Langevin chain with their cached energy and gradient.

    Attributes
    ----------
    position : Tensor [n, d]
        One row per particle (chain).
    energy : Tensor [n]
        ``E(position)``, detached.
    grad : Tensor [n, d]
        ``∇_x E(position)``, detached.
    """

    position: Tensor
    energy: Tensor
    grad: Tensor


class Info(NamedTuple):
    """What one sampler step did.

    Attributes
    ----------
    acceptance_rate : Tensor []
        Share of particles whose proposal was accepted (always 1 for ULA).
    is_accepted : Tensor [n], bool
        Per-particle acceptance.
    n_grad : int
        Gradient evaluations spent (one per step).
    n_energy : int
        Energy-only evaluations spent (zero: the energy comes with the gradient).
    """

    acceptance_rate: Tensor
    is_accepted: Tensor
    n_grad: int
    n_energy: int


class Sampler(NamedTuple):
    """An ``init``/``step`` pair, as stored in :data:`SAMPLERS`."""

    init: Callable[..., State]
    step: Callable[..., tuple[State, Info]]


class History(NamedTuple):
    """What :func:`run` recorded, every ``record_every`` steps, step 0 and the last step included.

    Attributes
    ----------
    positions : Tensor [T, n, d]
        Particle positions at each record.
    steps : Tensor [T], int64
        Step index of each record (0 = the initial positions).
    acceptance_rate : Tensor [T]
        Mean acceptance rate over the steps since the previous record (NaN at step 0: no step yet).
    mean_energy : Tensor [T]
        Mean energy of the particles at each record.
    n_grad : Tensor [T], int64
        Cumulative gradient evaluations, counting the one spent by ``init`` (so ``n_grad[0] == 1``).
    """

    positions: Tensor
    steps: Tensor
    acceptance_rate: Tensor
    mean_energy: Tensor
    n_grad: Tensor


# --- randomness -----------------------------------------------------------------------------------


def make_generator(seed: int | None = None, device: str | torch.device = "cpu") -> torch.Generator:
    """Return a new ``torch.Generator`` seeded with ``seed`` (entropy-seeded when ``None``).

    The global RNG is never read or advanced, so ``make_generator(s)`` gives the same stream every time.
    """
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()  # from the OS entropy source; the global generator is untouched
        return gen
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative int or None, got {seed!r}")
    gen.manual_seed(seed)
    return gen


def generator_state(generator: torch.Generator) -> Tensor:
    """Return a copy of the generator's state (a uint8 tensor, safe for ``torch.load(weights_only=True)``)."""
    if not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator.get_state().clone()


def set_generator_state(generator: torch.Generator, state: Tensor) -> torch.Generator:
    """Restore ``state`` (from :func:`generator_state`) into ``generator`` in place and return it.

    Raises :class:`~pdviz.errors.CheckpointError` if ``state`` is not a valid generator state.
    """
    if not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not isinstance(state, Tensor) or state.dtype != torch.uint8 or state.ndim != 1:
        got = (
            f"dtype {state.dtype}, shape {list(state.shape)}"
            if isinstance(state, Tensor)
            else type(state).__name__
        )
        raise errors.CheckpointError(f"generator state must be a 1-D uint8 tensor, got {got}")
    try:
        generator.set_state(state.cpu())
    except RuntimeError as exc:
        raise errors.CheckpointError(f"generator state does not fit this generator: {exc}") from exc
    return generator


def _generator_for(x: Tensor, generator: torch.Generator | None) -> torch.Generator:
    """The generator to draw with: the caller's (checked for device) or a fresh entropy-seeded one."""
    if generator is None:
        return make_generator(None, device=x.device)
    if not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    if generator.device.type != x.device.type:
        raise InvalidArgumentError(
            f"generator is on device {generator.device} but the particles are on {x.device}; "
            f"use make_generator(seed, device={str(x.device)!r})"
        )
    return generator


# --- energy and gradient --------------------------------------------------------------------------


def _value_and_grad(energy_fn: EnergyFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``E(x)`` [n] and ``∇_x E(x)`` [n, d], both detached: one gradient evaluation.

    One batched forward and one backward of ``E(x).sum()`` (particles are independent, so the gradient of
    the sum is the per-particle gradient). Only ``x`` is differentiated: parameters of a model inside
    ``energy_fn`` get no ``.grad``. Works inside ``torch.no_grad()``. The shape of the output is checked;
    non-finite values are left for the caller to judge (a sampler reports them as divergence).
    """
    # Not pdviz.energies.value_and_grad: that one rejects non-finite energies as a bad argument, while inside
    # a chain they are a divergence (run reports the iteration) or a proposal MALA must simply reject.
    if not callable(energy_fn):
        raise InvalidArgumentError(
            f"energy_fn must be a callable x [n, d] -> E(x) [n], got {type(energy_fn).__name__}"
        )
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        energy = energy_fn(xg)
        if not isinstance(energy, Tensor):
            raise InvalidArgumentError(
                f"energy_fn must return a torch.Tensor of shape [{x.shape[0]}], got {type(energy).__name__}"
            )
        if energy.shape != (x.shape[0],):
            raise InvalidArgumentError(
                f"energy_fn must return shape [{x.shape[0]}] (one energy per point), got {list(energy.shape)}"
            )
        if energy.requires_grad:
            (grad,) = torch.autograd.grad(energy.sum(), xg, allow_unused=True)
        else:
            grad = None
    if grad is None:  # the energy does not depend on x
        grad = torch.zeros_like(x)
    return energy.detach(), grad.detach()


def _check_position(position: Tensor) -> Tensor:
    errors.check_points("position", position)
    return position.detach()


def _check_state(state: State) -> None:
    if not isinstance(state, tuple) or len(state) != 3 or not isinstance(state[0], Tensor):
        raise InvalidArgumentError(
            f"state must be a samplers.State (from ula_init/mala_init), got {type(state).__name__}"
        )
    if state.position.ndim != 2:
        raise InvalidArgumentError(f"state.position must have shape [n, d], got {list(state.position.shape)}")


def _check_step(
    step_size: float, noise_scale: float | None, *, allow_zero_noise: bool
) -> tuple[float, float]:
    step_size = float(errors.check_positive("step_size", step_size))
    if noise_scale is None:
        return step_size, math.sqrt(step_size)
    noise_scale = float(errors.check_positive("noise_scale", noise_scale, allow_zero=allow_zero_noise))
    return step_size, noise_scale


# --- ULA ------------------------------------------------------------------------------------------


def ula_init(position: Tensor, energy_fn: EnergyFn) -> State:
    """Start chains at ``position`` [n, d]: evaluate and cache the energy and gradient (one evaluation)."""
    position = _check_position(position)
    energy, grad = _value_and_grad(energy_fn, position)
    errors.check_energy_output(energy, position.shape[0])
    return State(position, energy, grad)


def ula_move(
    state: State,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The ULA move alone: ``x - (step_size / 2) ∇E(x) + noise_scale ξ`` from the cached gradient, [n, d].

    It evaluates nothing. :func:`ula_step` is this move followed by one gradient evaluation at the new
    positions; a chain whose last positions are used as they are (the negatives of a training step, after
    which the model changes) ends with ``ula_move`` and saves that evaluation. Same generator, same noise.
    """
    _check_state(state)
    step_size, noise_scale = _check_step(step_size, noise_scale, allow_zero_noise=True)
    x = state.position
    new_x = x - 0.5 * step_size * state.grad
    if noise_scale > 0:
        gen = _generator_for(x, generator)
        new_x = new_x + noise_scale * torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    return new_x


def ula_step(
    state: State,
    energy_fn: EnergyFn,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[State, Info]:
    """One unadjusted Langevin step for every particle.

    ``x' = x - (step_size / 2) ∇E(x) + noise_scale ξ``, ``ξ ~ N(0, I)``, using the cached gradient.

    Parameters
    ----------
    state : State
        Positions [n, d] with cached energy [n] and gradient [n, d].
    energy_fn : callable
        ``x [n, d] -> E(x) [n]``.
    step_size : float
        ε > 0.
    noise_scale : float, optional
        σ >= 0; defaults to ``sqrt(step_size)`` (the Langevin chain). ``0`` gives gradient descent.
    generator : torch.Generator, optional
        Source of the noise; no noise is drawn when ``noise_scale == 0``.

    Returns
    -------
    (State, Info)
        The moved particles (one gradient evaluation) and ``Info`` with acceptance rate 1.
    """
    new_x = ula_move(state, step_size=step_size, noise_scale=noise_scale, generator=generator)
    x = state.position
    energy, grad = _value_and_grad(energy_fn, new_x)
    n = x.shape[0]
    accepted = torch.ones(n, dtype=torch.bool, device=x.device)
    info = Info(torch.tensor(1.0, device=x.device), accepted, n_grad=1, n_energy=0)
    return State(new_x, energy, grad), info


def ula_steps(
    state: State,
    energy_fn: EnergyFn,
    n_steps: int,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> State:
    """``n_steps`` ULA steps (``n_steps`` gradient evaluations), the arguments checked once, not per step.

    The same numbers as ``n_steps`` calls of :func:`ula_step` with the same generator, without building an
    ``Info`` per step: the inner loop of training chains, where per-step bookkeeping was measurable
    (benchmarks/RESULTS.md §3). ``n_steps = 0`` returns ``state`` unchanged. Non-finite values are left
    for the caller to judge, as in :func:`ula_step`.
    """
    _check_state(state)
    schedule = None
    if isinstance(step_size, (list, tuple)):  # an annealed chain: one step size per step
        schedule = [float(errors.check_positive("step_size", e)) for e in step_size]
        if not schedule:
            errors.check_positive("n_steps", n_steps, integer=True, allow_zero=True)
            return state
        step_size = schedule[0]
    step_size, noise_scale = _check_step(step_size, noise_scale, allow_zero_noise=True)
    n_steps = errors.check_positive("n_steps", n_steps, integer=True, allow_zero=True)
    if schedule is not None and len(schedule) != n_steps:
        raise InvalidArgumentError(f"step_size has {len(schedule)} entries for n_steps = {n_steps}")
    if n_steps == 0:
        return state
    x, energy, grad = state
    gen = _generator_for(x, generator) if noise_scale > 0 else None
    for k in range(n_steps):
        half = 0.5 * (step_size if schedule is None else schedule[k])
        x = x - half * grad
        if gen is not None:
            x = x + noise_scale * torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        energy, grad = _value_and_grad(energy_fn, x)
    return State(x, energy, grad)


ANNEALING = ("none", "linear", "geometric")


def anneal_schedule(step_size: float, noise_scale: float, n_steps: int, kind: str = "none") -> list[float]:
    """The step sizes ε_0 .. ε_{K-1} of a K-step chain annealed from ε towards σ² (method.md §4).

    ``linear``: ``ε_k = ε + (σ² - ε) k / (K - 1)``; ``geometric``: ``ε_k = ε (σ² / ε)^(k / (K - 1))``;
    ``none``: ``ε_k = ε``. The noise scale σ stays fixed, so the chain's last step is a true Langevin step
    (ε = σ²) and its first ones move further. K = 1 gives ``[ε]``.
    """
    errors.check_choice("anneal", kind, ANNEALING, what="annealing")
    if kind == "none" or n_steps == 1:
        return [float(step_size)] * n_steps
    end = float(noise_scale) ** 2
    fractions = [k / (n_steps - 1) for k in range(n_steps)]
    if kind == "linear":
        return [step_size + (end - step_size) * f for f in fractions]
    return [step_size * (end / step_size) ** f for f in fractions]


# --- MALA -----------------------------------------------------------------------------------------


def mala_init(position: Tensor, energy_fn: EnergyFn) -> State:
    """Start MALA chains at ``position`` [n, d] (same cached state as ULA; one gradient evaluation)."""
    return ula_init(position, energy_fn)


def _log_proposal(to: Tensor, frm: Tensor, grad_frm: Tensor, step_size: float, noise_scale: float) -> Tensor:
    """log q(to | frm) up to a constant: -|to - frm + (ε/2) ∇E(frm)|² / (2 σ²), shape [n]."""
    diff = to - frm + 0.5 * step_size * grad_frm
    return -(diff * diff).sum(dim=1) / (2.0 * noise_scale**2)


def mala_step(
    state: State,
    energy_fn: EnergyFn,
    *,
    step_size: float,
    noise_scale: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[State, Info]:
    """One Metropolis-adjusted Langevin step, accepted or rejected per particle.

    Proposal ``x' = x - (ε/2) ∇E(x) + σ ξ`` (σ = sqrt(ε) by default), accepted with probability
    ``min(1, exp(E(x) - E(x') + log q(x | x') - log q(x' | x)))`` where
    ``q(y | x) = N(y; x - (ε/2) ∇E(x), σ² I)``. Rejected particles keep their position, energy and
    gradient, so the step costs one gradient evaluation (at the proposals). A proposal with a non-finite
    energy or gradient is always rejected. On light-tailed energies (e.g. ``x⁴``) a chain started far in the
    tail can stay stuck there: its proposals overshoot and are all rejected. Start in the bulk or use a
    smaller step.

    Parameters
    ----------
    state : State
        Positions [n, d] with cached energy [n] and gradient [n, d].
    energy_fn : callable
        ``x [n, d] -> E(x) [n]``.
    step_size : float
        ε > 0.
    noise_scale : float, optional
        σ > 0 of the proposal; defaults to ``sqrt(step_size)`` (standard MALA). Any σ > 0 leaves
        ``exp(-E)`` invariant, because the acceptance ratio uses the same σ.
    generator : torch.Generator, optional
        Source of the proposal noise and the uniform draws (noise first, then uniforms).

    Returns
    -------
    (State, Info)
    """
    _check_state(state)
    step_size, noise_scale = _check_step(step_size, noise_scale, allow_zero_noise=False)
    x, energy, grad = state
    gen = _generator_for(x, generator)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    proposal = x - 0.5 * step_size * grad + noise_scale * noise
    new_energy, new_grad = _value_and_grad(energy_fn, proposal)

    log_forward = -0.5 * (noise * noise).sum(dim=1)  # log q(x' | x), since x' - mean = σ ξ
    log_backward = _log_proposal(x, proposal, new_grad, step_size, noise_scale)
    log_alpha = energy - new_energy + log_backward - log_forward
    log_u = torch.log(torch.rand(x.shape[0], generator=gen, dtype=x.dtype, device=x.device))
    finite = torch.isfinite(new_energy) & torch.isfinite(new_grad).all(dim=1)
    # NaN in log_alpha compares False, but the explicit mask also rejects -inf energies with +inf alpha
    accepted = (log_u < log_alpha) & finite

    keep = accepted.unsqueeze(1)
    new_state = State(
        torch.where(keep, proposal, x),
        torch.where(accepted, new_energy, energy),
        torch.where(keep, new_grad, grad),
    )
    info = Info(accepted.to(x.dtype).mean(), accepted, n_grad=1, n_energy=0)
    return new_state, info


SAMPLERS: dict[str, Sampler] = {
    "ula": Sampler(ula_init, ula_step),
    "mala": Sampler(mala_init, mala_step),
}


def get(name: str) -> Sampler:
    """Return the sampler registered as ``name`` ("ula" or "mala")."""
    errors.check_choice("sampler", name, SAMPLERS)
    return SAMPLERS[name]


# --- driver ---------------------------------------------------------------------------------------


def _suggestion(step_size: float, noise_scale: float | None) -> str:
    text = f"reduce step_size (now {step_size:g}), e.g. to {step_size / 10:g}"
    if noise_scale is not None:
        text += f", and check noise_scale (now {noise_scale:g})"
    return text + "; or start the particles closer to where the energy is low"


def _check_divergence(state: State, iteration: int, bound: float | None, suggestion: str) -> None:
    """Raise DivergenceError naming the first bad quantity; one cheap combined test on the happy path."""
    x, energy, grad = state
    if bound is None:
        ok = torch.isfinite(x).all() & torch.isfinite(energy).all() & torch.isfinite(grad).all()
    else:
        # |x| <= bound is False for NaN and Inf, so it also covers non-finite positions
        ok = (x.abs() <= bound).all() & torch.isfinite(energy).all() & torch.isfinite(grad).all()
    if bool(ok):
        return
    errors.check_finite_state("particle positions", x, iteration, bound=bound, suggestion=suggestion)
    errors.check_finite_state("energies", energy, iteration, suggestion=suggestion)
    errors.check_finite_state("energy gradients", grad, iteration, suggestion=suggestion)


def run(
    sampler: Sampler | str,
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
    """Run ``n_steps`` of a sampler from ``position`` and record a :class:`History`.

    Parameters
    ----------
    sampler : Sampler or str
        ``SAMPLERS`` entry or its name ("ula", "mala").
    position : Tensor [n, d]
        Starting particles.
    energy_fn : callable
        ``x [n, d] -> E(x) [n]``.
    n_steps : int
        Number of steps (> 0).
    step_size, noise_scale : float
        Passed to the sampler's step (noise_scale ``None`` means ``sqrt(step_size)``).
    generator : torch.Generator, optional
        One generator for the whole run (an entropy-seeded one if ``None``).
    record_every : int
        Record positions every this many steps; step 0 and the final step are always recorded.
    progress : bool
        Show a ``tqdm.auto`` progress bar.
    bound : float or None
        Raise :class:`~pdviz.errors.DivergenceError` when any |x| exceeds it (``None``: only NaN/Inf).

    Returns
    -------
    (State, History)
        The final state and the recorded history; ``History.n_grad`` counts the initial evaluation.

    Raises
    ------
    DivergenceError
        With the step index (1-based) at which positions, energies or gradients became non-finite or
        positions left ``[-bound, bound]``, and a concrete suggestion.
    """
    if isinstance(sampler, str):
        sampler = get(sampler)
    if not isinstance(sampler, Sampler):
        raise InvalidArgumentError(
            f"sampler must be a name ({', '.join(sorted(SAMPLERS))}) or a samplers.Sampler, got {sampler!r}"
        )
    n_steps = errors.check_positive("n_steps", n_steps, integer=True)
    record_every = errors.check_positive("record_every", record_every, integer=True)
    step_size, _ = _check_step(step_size, noise_scale, allow_zero_noise=sampler.step is not mala_step)
    if bound is not None:
        bound = float(errors.check_positive("bound", bound))
    position = _check_position(position)
    if not callable(energy_fn):
        raise InvalidArgumentError(f"energy_fn must be callable, got {type(energy_fn).__name__}")
    gen = _generator_for(position, generator)
    suggestion = _suggestion(step_size, noise_scale)

    state = sampler.init(position, energy_fn)
    _check_divergence(state, 0, bound, suggestion)
    n_grad = 1
    positions, steps, rates, energies, grads = [state.position], [0], [math.nan], [state.energy.mean()], [1]
    rate_sum = torch.zeros((), dtype=position.dtype, device=position.device)
    since = 0

    kwargs = {"step_size": step_size, "generator": gen}
    if noise_scale is not None:
        kwargs["noise_scale"] = noise_scale
    for it in trange(1, n_steps + 1, disable=not progress, desc="sampling", leave=False):
        state, info = sampler.step(state, energy_fn, **kwargs)
        _check_divergence(state, it, bound, suggestion)
        n_grad += info.n_grad
        rate_sum = rate_sum + info.acceptance_rate
        since += 1
        if it % record_every == 0 or it == n_steps:
            positions.append(state.position)
            steps.append(it)
            rates.append(rate_sum / since)
            energies.append(state.energy.mean())
            grads.append(n_grad)
            rate_sum = torch.zeros_like(rate_sum)
            since = 0

    history = History(
        positions=torch.stack(positions),
        steps=torch.tensor(steps, dtype=torch.int64),
        acceptance_rate=torch.stack([torch.as_tensor(r, dtype=position.dtype) for r in rates]).cpu(),
        mean_energy=torch.stack(energies).cpu(),
        n_grad=torch.tensor(grads, dtype=torch.int64),
    )
    return state, history


# --- replay buffer --------------------------------------------------------------------------------


class ReplayBuffer:
    """A buffer of past negative samples, partly re-initialised from a base sampler on every draw.

    The buffer holds ``size`` particles, first filled with ``init_fn(size, generator)``. ``sample(n)``
    picks ``n`` distinct slots uniformly at random and returns their positions, with a ``reinit_frac`` share
    (``floor(reinit_frac * n)`` or one more, so that the expected count is exactly ``reinit_frac * n``)
    replaced by fresh draws of ``init_fn``. After moving them (e.g. K Langevin steps), ``push(x, indices)``
    writes them back.

    Parameters
    ----------
    size : int
        Number of particles kept.
    init_fn : callable
        ``init_fn(n, generator) -> Tensor [n, d]``: fresh samples of the base distribution.
    reinit_frac : float
        Share in [0, 1] of each draw replaced by fresh base samples.
    generator : torch.Generator, optional
        Used for slot choice and passed to ``init_fn``; entropy-seeded if ``None``.
    """

    def __init__(
        self,
        size: int,
        init_fn: Callable[[int, torch.Generator], Tensor],
        reinit_frac: float = 0.05,
        generator: torch.Generator | None = None,
    ):
        self.size = errors.check_positive("size", size, integer=True)
        self.reinit_frac = errors.check_range("reinit_frac", reinit_frac, 0.0, 1.0)
        if not callable(init_fn):
            raise InvalidArgumentError(f"init_fn must be callable (n, generator) -> [n, d], got {init_fn!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidArgumentError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        self.init_fn = init_fn
        self.generator = generator if generator is not None else make_generator(None)
        self._positions = self._fresh(self.size).clone()

    @property
    def positions(self) -> Tensor:
        """All buffered particles, [size, d] (read-only view; use :meth:`push` to change them)."""
        return self._positions

    @property
    def dim(self) -> int:
        return self._positions.shape[1]

    def _fresh(self, n: int) -> Tensor:
        x = self.init_fn(n, self.generator)
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] != n:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidArgumentError(
                f"init_fn({n}, generator) must return a tensor of shape [{n}, d], got {got}"
            )
        if hasattr(self, "_positions") and x.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"init_fn returned dimension {x.shape[1]}, buffer holds dimension {self.dim}"
            )
        return x.detach()

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n`` distinct slots; return their positions [n, d] (a share re-initialised) and indices [n]."""
        n = errors.check_positive("n", n, integer=True)
        if n > self.size:
            raise InvalidArgumentError(f"n must be <= the buffer size {self.size}, got {n}")
        gen = self.generator
        indices = torch.randperm(self.size, generator=gen, device=gen.device)[:n].to(self._positions.device)
        x = self._positions[indices].clone()
        expected = self.reinit_frac * n
        k = math.floor(expected)
        if expected > k and float(torch.rand((), generator=gen, device=gen.device)) < expected - k:
            k += 1  # randomised rounding: the expected count is exactly reinit_frac * n
        if k > 0:
            # the indices are already in random order, so the first k rows are a uniform choice
            x[:k] = self._fresh(k).to(x)
        return x, indices

    def push(self, x: Tensor, indices: Tensor) -> None:
        """Write particles ``x`` [n, d] back into the slots ``indices`` [n] (from :meth:`sample`)."""
        errors.check_points("x", x, dim=self.dim)
        if (
            not isinstance(indices, Tensor)
            or indices.dtype not in (torch.int64, torch.int32)
            or indices.shape != (x.shape[0],)
        ):
            got = (
                f"{indices.dtype} {list(indices.shape)}"
                if isinstance(indices, Tensor)
                else type(indices).__name__
            )
            raise InvalidArgumentError(
                f"indices must be an integer tensor of shape [{x.shape[0]}], got {got}"
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.size):
            raise InvalidArgumentError(
                f"indices must lie in [0, {self.size - 1}], got {indices.min()}..{indices.max()}"
            )
        self._positions[indices.to(self._positions.device)] = x.detach().to(self._positions)

    def state_dict(self) -> dict[str, Tensor | float]:
        """Plain tensors and numbers (loadable with ``torch.load(weights_only=True)``), generator included."""
        return {
            "positions": self._positions.clone(),
            "reinit_frac": self.reinit_frac,
            "generator_state": generator_state(self.generator),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; raises :class:`~pdviz.errors.CheckpointError` on a mismatch."""
        if not isinstance(state, dict) or not {"positions", "reinit_frac", "generator_state"} <= set(state):
            raise errors.CheckpointError(
                "replay buffer state must be a dict with keys positions, reinit_frac, generator_state"
            )
        pos = state["positions"]
        if not isinstance(pos, Tensor) or pos.shape != self._positions.shape:
            got = list(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
            raise errors.CheckpointError(
                f"replay buffer positions have shape {got}, expected {list(self._positions.shape)}"
            )
        try:
            frac = errors.check_range("reinit_frac", state["reinit_frac"], 0.0, 1.0)
        except InvalidArgumentError as exc:
            raise errors.CheckpointError(f"replay buffer state: {exc}") from exc
        set_generator_state(self.generator, state["generator_state"])
        self._positions = pos.detach().clone().to(self._positions)
        self.reinit_frac = frac
