"""Analytic energies: fixed 2-D targets and time-dependent families, plus the one autograd helper.

Convention: ``energy_fn(x: Tensor[n, d]) -> Tensor[n]``, lower = more probable, ``p(x) ∝ exp(-E(x))``.
Time-dependent energies are ``E(x, t)`` with ``t`` a float in [0, 1]. Every energy computes in the dtype
of ``x`` (float32 or float64).

Fixed energies (``ENERGIES``, factories taking keyword arguments): ``gaussian`` (``|x|²/2``, any d),
``correlated_gaussian``, ``8gaussians`` and ``rings`` (the exact normalised densities of those datasets),
``banana``, ``funnel``, ``double_well``. Time-dependent families (``MOVING_ENERGIES``, :class:`MovingEnergy`):
``translating_gaussian``, ``scaling_gaussian``, ``interpolation``, ``mode_weights``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch

from pdviz import datasets
from pdviz.errors import InvalidArgumentError, UnknownNameError, check_energy_output, check_range

Tensor = torch.Tensor
EnergyFn = Callable[[Tensor], Tensor]


def value_and_grad(
    energy_fn: Callable[..., Tensor], x: Tensor, *args, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """Energy ``E(x)`` [n] and its gradient ``∇_x E(x)`` [n, d] at every point: one gradient evaluation.

    One batched forward and one backward of ``Σ_i E(x_i)`` (the points are independent, so the gradient
    of the sum is the per-point gradient). ``*args`` go to ``energy_fn`` (e.g. the time ``t``).
    Both results are detached, unless ``create_graph`` (then they carry the graph to ``x``, for Jacobians).
    The gradient is zero where ``E`` does not depend on ``x``. Non-finite values are returned as they are:
    inside a chain they are a divergence for the caller to report, or a proposal MALA rejects.
    """
    with torch.enable_grad():
        xg = x if create_graph and x.requires_grad else x.detach().requires_grad_(True)
        energy = check_energy_output(energy_fn(xg, *args), x.shape[0], finite=False)
        grad = None
        if energy.requires_grad:
            (grad,) = torch.autograd.grad(energy.sum(), xg, create_graph=create_graph, allow_unused=True)
    grad = torch.zeros_like(x) if grad is None else grad
    return (energy, grad) if create_graph else (energy.detach(), grad.detach())


def _check_x(x: object, dim: int | None = None) -> None:
    # shape and dtype only: NaN positions must reach the samplers' divergence checks
    matrix = isinstance(x, Tensor) and x.ndim == 2 and torch.is_floating_point(x)
    if not matrix or dim not in (None, x.shape[1]):
        got = f"{x.dtype} {list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise InvalidArgumentError(f"x must be a floating tensor of shape [n, {dim or 'd'}], got {got}")


SCALE = (1e-3, 1e3)  # the range of a width, height or position: beyond it float32 energies overflow to inf


def _scale(name: str, value: object) -> float:
    """A width or height parameter as a float in :data:`SCALE`, else InvalidArgumentError."""
    return check_range(name, value, *SCALE)


def _as_tensor(name: str, value: object, shape: tuple[int | None, ...]) -> Tensor:
    """A float64 parameter of the given shape (None = any length >= 1) with every entry of magnitude at
    most ``SCALE[1]``, else InvalidArgumentError."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64).clone()
        ok = t.ndim == len(shape) and all(w in (None, g) and g > 0 for w, g in zip(shape, t.shape))
        ok = ok and bool((t.abs() <= SCALE[1]).all())  # False for NaN and inf too
    except (TypeError, ValueError, RuntimeError):
        ok = False
    if not ok:
        want = ["k" if w is None else w for w in shape]
        raise InvalidArgumentError(
            f"{name} must have shape {want}, numbers in [-{SCALE[1]:g}, {SCALE[1]:g}], got {value!r}"
        )
    return t


class Energy:
    """Base of the fixed analytic energies: ``E(x)`` for ``x`` [n, d] -> [n] in ``x.dtype``."""

    name = "energy"
    dim = 2

    def __call__(self, x: Tensor) -> Tensor:
        _check_x(x, self.dim)
        return self.energy(x)

    def __repr__(self) -> str:
        return f"<energy {self.name}>"


class Gaussian(Energy):
    """Standard normal: ``E(x) = |x|²/2`` (normaliser (2π)^{d/2}). Any dimension ``d``."""

    name, dim = "gaussian", None

    def __init__(self) -> None:
        self.mean, self.cov = torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)

    def energy(self, x: Tensor) -> Tensor:
        return 0.5 * x.square().sum(dim=1)


class CorrelatedGaussian(Energy):
    """``E(x) = (x - μ)ᵀ Σ⁻¹ (x - μ) / 2``; unnormalised, ``log Z = log(2π) + log det Σ / 2``.

    Defaults μ = (0.5, -0.5), Σ = [[1.5, 0.9], [0.9, 1.0]] (correlation ≈ 0.73).
    """

    name = "correlated_gaussian"

    def __init__(
        self, mean: Sequence[float] = (0.5, -0.5), cov: Sequence[Sequence[float]] = ((1.5, 0.9), (0.9, 1.0))
    ):
        self.mean = _as_tensor("mean", mean, (2,))
        self.cov = _as_tensor("cov", cov, (2, 2))
        chol, info = torch.linalg.cholesky_ex(self.cov)
        low, high = SCALE[0] ** 2, SCALE[1] ** 2
        eig = torch.linalg.eigvalsh(self.cov) if torch.allclose(self.cov, self.cov.T) else None
        if eig is None or int(info) != 0 or not (low <= eig[0] and eig[-1] <= high):
            raise InvalidArgumentError(f"cov must be symmetric positive definite with eigenvalues in [{low:g}, "
                                       f"{high:g}], got {self.cov.tolist()}")  # fmt: skip
        self.precision = torch.cholesky_inverse(chol)
        self.log_z = math.log(2 * math.pi) + float(torch.log(torch.diagonal(chol)).sum())

    def energy(self, x: Tensor) -> Tensor:
        d = x - self.mean.to(x.dtype)
        return 0.5 * ((d @ self.precision.to(x.dtype)) * d).sum(dim=1)


def _mixture_energy(x: Tensor, centres: Tensor, std: float, log_w: Tensor) -> Tensor:
    """``-logsumexp_k(log w_k - |x - c_k|²/(2 s²)) + log(2π s²)``; ``log_w`` may carry autograd (in t)."""
    d2 = (x[:, None, :] - centres.to(x.dtype)[None]).square().sum(dim=2)  # [n, k]; cdist is inexact near 0
    return -torch.logsumexp(log_w.to(x.dtype) - d2 / (2 * std**2), dim=1) + math.log(2 * math.pi * std**2)


class GaussianMixture(Energy):
    """Isotropic mixture, exactly normalised: ``E(x) = -log Σ_k w_k N(x; c_k, s² I)``.

    ``centres`` [k, 2], ``std`` s, ``weights`` [k] positive (normalised here; equal by default).
    """

    name = "gaussian_mixture"

    def __init__(self, centres: Tensor, std: float, weights: Sequence[float] | None = None):
        self.centres = _as_tensor("centres", centres, (None, 2))
        self.std = float(_scale("std", std))
        k = self.centres.shape[0]
        w = torch.ones(k, dtype=torch.float64) if weights is None else _as_tensor("weights", weights, (k,))
        if (w <= 0).any():
            raise InvalidArgumentError(f"weights must all be > 0, got {w.tolist()}")
        self.weights = w / w.sum()

    def energy(self, x: Tensor) -> Tensor:
        return _mixture_energy(x, self.centres, self.std, torch.log(self.weights))


def eight_gaussians(std: float | None = None) -> GaussianMixture:
    """The exact density of the ``8gaussians`` dataset (``std`` overrides the mode width 0.5/1.414)."""
    g = GaussianMixture(datasets.EIGHT_CENTRES, datasets.EIGHT_STD if std is None else std)
    g.name = "8gaussians"
    return g


class Rings(Energy):
    """The exact density of the ``rings`` dataset: equal-weight rings of radii r_k blurred by N(0, s² I).

    A uniform angle on a circle of radius r convolved with N(0, s² I) has the density
    ``p_r(x) = exp(-(|x|² + r²)/(2 s²)) I₀(|x| r / s²) / (2π s²)``, computed stably with
    ``i0e(z) = e^{-z} I₀(z)``: ``log p_r = -(|x| - r)²/(2 s²) + log i0e(|x| r / s²) - log(2π s²)``;
    ``E = -log(mean_k p_{r_k})``. Defaults: the dataset's radii (3, 2.25, 1.5, 0.75) and s = 0.08.
    """

    name = "rings"

    def __init__(self, radii: Sequence[float] = datasets.RING_RADII, std: float = datasets.RING_STD):
        self.radii = _as_tensor("radii", radii, (None,))
        if (self.radii <= 0).any():
            raise InvalidArgumentError(f"radii must all be > 0, got {self.radii.tolist()}")
        self.std = float(_scale("std", std))

    def energy(self, x: Tensor) -> Tensor:
        s2 = self.std**2
        # a tiny floor under the sqrt: its gradient at the origin would be 0/0, the energy is smooth there
        r = torch.sqrt(x.square().sum(dim=1, keepdim=True) + torch.finfo(x.dtype).tiny)
        rk = self.radii.to(x.dtype)[None, :]
        log_pk = -(r - rk).square() / (2 * s2) + torch.log(torch.special.i0e(r * rk / s2))
        return -(torch.logsumexp(log_pk, dim=1) - math.log(len(self.radii)) - math.log(2 * math.pi * s2))


class Banana(Energy):
    """Twisted Gaussian x₁ ~ N(0, a²), x₂ | x₁ ~ N(b (x₁² - a²), s²), exactly normalised.

    ``E = x₁²/(2a²) + (x₂ - b (x₁² - a²))²/(2 s²) + log(2π a s)``; E[x] = 0, Var x₁ = a²,
    Var x₂ = s² + 2 a⁴ b². Defaults a = 1, b = 0.5, s = 0.5 (~0.1 % of the mass outside [-5, 5]²).
    """

    name = "banana"

    def __init__(self, a: float = 1.0, b: float = 0.5, s: float = 0.5):
        self.a, self.s = float(_scale("a", a)), float(_scale("s", s))
        self.b = float(_as_tensor("b", b, ()))
        self.mean = torch.zeros(2, dtype=torch.float64)
        var2 = self.s**2 + 2 * self.a**4 * self.b**2  # Var x₂
        self.cov = torch.diag(torch.tensor([self.a**2, var2], dtype=torch.float64))

    def energy(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        bend = x2 - self.b * (x1.square() - self.a**2)
        log_z = math.log(2 * math.pi * self.a * self.s)
        return x1.square() / (2 * self.a**2) + bend.square() / (2 * self.s**2) + log_z


class Funnel(Energy):
    """Neal's funnel in 2-D: v = x₂ ~ N(0, σ²), x₁ | v ~ N(0, eᵛ), exactly normalised.

    ``E = v²/(2σ²) + x₁² e^{-v}/2 + v/2 + log(2π σ)``; σ = 1 by default (~0.5 % of the mass outside
    [-5, 5]², in the wide mouth). The neck at v ≈ -2σ is what makes it hard for fixed-step samplers.
    """

    name = "funnel"

    def __init__(self, sigma: float = 1.0):
        self.sigma = float(_scale("sigma", sigma))

    def energy(self, x: Tensor) -> Tensor:
        z, v = x[:, 0], x[:, 1]
        log_z = math.log(2 * math.pi * self.sigma)
        return v.square() / (2 * self.sigma**2) + 0.5 * z.square() * torch.exp(-v) + 0.5 * v + log_z


class DoubleWell(Energy):
    """``E = h (x₁²/r² - 1)² + x₂²/2``: wells at x₁ = ±r holding half of the mass each, a barrier h at 0."""

    name = "double_well"

    def __init__(self, height: float = 3.0, r: float = 2.0):
        self.height, self.r = float(_scale("height", height)), float(_scale("r", r))

    def energy(self, x: Tensor) -> Tensor:
        return self.height * (x[:, 0].square() / self.r**2 - 1.0).square() + 0.5 * x[:, 1].square()


ENERGIES: dict[str, Callable[..., Energy]] = {
    "8gaussians": eight_gaussians,
    "rings": Rings,
    "banana": Banana,
    "funnel": Funnel,
    "double_well": DoubleWell,
    "gaussian": Gaussian,
    "correlated_gaussian": CorrelatedGaussian,
}


# --- time-dependent energies ----------------------------------------------------------------------


def _check_t(t: object) -> float:
    if isinstance(t, Tensor) and t.numel() == 1:
        t = float(t)
    # drivers compute t = k / n_steps: tolerate rounding just past the ends of [0, 1]
    if isinstance(t, (int, float)) and not isinstance(t, bool) and -1e-9 <= t <= 1 + 1e-9:
        t = min(max(float(t), 0.0), 1.0)
    return check_range("t", t, 0.0, 1.0)


def _time(t: float | Tensor) -> float | Tensor:
    """``t`` as a column broadcastable against ``x`` [n, d] when it is a per-point tensor [n]."""
    return t[:, None] if isinstance(t, Tensor) and t.ndim == 1 else t


class MovingEnergy:
    """Base of the time-dependent energies ``E(x, t)``, ``t ∈ [0, 1]``.

    Subclasses implement ``energy(x, t)`` (``t`` a float or a per-point tensor [n], so that ``∂_t E`` can
    come from autograd) and may override :meth:`dt` with the analytic form. ``exact_velocity(x, t)``
    [n, 2], where known, is a field solving ``∂_t p_t + ∇·(p_t v) = 0`` for ``p_t ∝ exp(-E_t)``.
    """

    name = "moving"
    dim = 2
    exact_velocity: Callable[[Tensor, float], Tensor] | None = None

    def __call__(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, self.dim)
        return self.energy(x, _check_t(t))

    def at(self, t: float) -> EnergyFn:
        """The fixed energy ``x -> E(x, t)``."""
        return _Frozen(self, _check_t(t))

    def dt(self, x: Tensor, t: float) -> Tensor:
        """``∂_t E(x, t)`` [n] by autograd in ``t`` (one copy of t per point), differentiable in ``x``."""
        with torch.enable_grad():
            tt = torch.full((x.shape[0],), _check_t(t), dtype=x.dtype, device=x.device, requires_grad=True)
            e = self.energy(x, tt)
            (g,) = torch.autograd.grad(e.sum(), tt, create_graph=x.requires_grad, allow_unused=True)
        return torch.zeros_like(tt.detach()) if g is None else (g if x.requires_grad else g.detach())

    def __repr__(self) -> str:
        return f"<moving energy {self.name}>"


class _Frozen:
    """``x -> E(x, t)`` at a fixed ``t`` (what :meth:`MovingEnergy.at` returns)."""

    def __init__(self, moving: MovingEnergy, t: float):
        self.moving, self.t, self.name = moving, t, f"{moving.name}@t={t:g}"

    def __call__(self, x: Tensor) -> Tensor:
        return self.moving(x, self.t)

    def __repr__(self) -> str:
        return f"<energy {self.name}>"


class TranslatingGaussian(MovingEnergy):
    """``E_t(x) = |x - m(t)|²/2``, ``m(t) = (1 - t) m0 + t m1``.

    ``∂_t E = -⟨x - m(t), m1 - m0⟩``; the exact field is the constant ``v = m1 - m0 = -∇_x ∂_t E``.
    """

    name = "translating_gaussian"

    def __init__(self, m0: Sequence[float] = (-2.0, 0.0), m1: Sequence[float] = (2.0, 0.0)):
        self.m0, self.m1 = _as_tensor("m0", m0, (2,)), _as_tensor("m1", m1, (2,))

    def mean(self, t: float | Tensor) -> Tensor:
        return (1 - t) * self.m0 + t * self.m1

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        return 0.5 * (x - self.mean(_time(t)).to(x.dtype)).square().sum(dim=1)

    def dt(self, x: Tensor, t: float) -> Tensor:
        m = self.mean(_check_t(t)).to(x.dtype)
        return -((x - m) @ (self.m1 - self.m0).to(x.dtype))

    def exact_velocity(self, x: Tensor, t: float) -> Tensor:
        return (self.m1 - self.m0).to(x.dtype).expand(x.shape[0], 2).clone()


class ScalingGaussian(MovingEnergy):
    """``E_t(x) = |x|²/(2 σ(t)²)``, ``σ(t) = (1 - t) s0 + t s1``.

    ``∂_t E = -|x|² σ'/σ³``; the exact field is ``v = (σ'/σ) x``, PD's ``-∇_x ∂_t E = 2 σ' x / σ³``
    agrees only where σ² = 2.
    """

    name = "scaling_gaussian"

    def __init__(self, s0: float = 0.5, s1: float = 1.5):
        self.s0, self.s1 = float(_scale("s0", s0)), float(_scale("s1", s1))

    def sigma(self, t: float | Tensor) -> float | Tensor:
        return (1 - t) * self.s0 + t * self.s1

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        return x.square().sum(dim=1) / (2 * self.sigma(t) ** 2)

    def dt(self, x: Tensor, t: float) -> Tensor:
        return -x.square().sum(dim=1) * (self.s1 - self.s0) / self.sigma(_check_t(t)) ** 3

    def exact_velocity(self, x: Tensor, t: float) -> Tensor:
        return x * ((self.s1 - self.s0) / self.sigma(_check_t(t)))


def _broad_gaussian(x: Tensor) -> Tensor:
    """``|x|²/(2·2²)``: a Gaussian of std 2, the default start of :class:`Interpolation`."""
    return x.square().sum(dim=1) / 8.0


class Interpolation(MovingEnergy):
    """``E_t = (1 - t) E_a + t E_b``, a geometric path between two fixed energies; ``∂_t E = E_b - E_a``.

    No closed-form exact field. Defaults: ``E_a = |x|²/8`` (std 2), ``E_b`` the exact 8-Gaussian energy.
    """

    name = "interpolation"

    def __init__(self, start: EnergyFn | str | None = None, end: EnergyFn | str | None = None):
        self.start = _broad_gaussian if start is None else (get(start) if isinstance(start, str) else start)
        self.end = eight_gaussians() if end is None else (get(end) if isinstance(end, str) else end)
        for label, fn in (("start", self.start), ("end", self.end)):
            if not callable(fn) or isinstance(fn, MovingEnergy):
                raise InvalidArgumentError(f"{label} must be a fixed energy (name or x -> [n]), got {fn!r}")

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        return (1 - t) * self.start(x) + t * self.end(x)

    def dt(self, x: Tensor, t: float) -> Tensor:
        return self.end(x) - self.start(x)


class ModeWeights(MovingEnergy):
    """A Gaussian mixture whose weights move: ``log w(t) ∝ (1 - t) log w0 + t log w1`` (normalised).

    ``E_t = -logsumexp_k(log w_k(t) - |x - c_k|²/(2 s²)) + log(2π s²)``, normalised for every t;
    ``∂_t E = -Σ_k r_k(x) ∂_t log w_k(t)`` with responsibilities r_k and
    ``∂_t log w_k = (log w1_k - log w0_k) - Σ_j w_j(t) (log w1_j - log w0_j)``. Mass must travel between
    modes. Defaults: the 8gaussians centres and width, ``w0`` equal, ``w1 ∝ (1, ..., 8)``.
    """

    name = "mode_weights"

    def __init__(self, centres: Tensor | None = None, std: float | None = None, w0=None, w1=None):
        centres = datasets.EIGHT_CENTRES if centres is None else centres
        self.centres = _as_tensor("centres", centres, (None, 2))
        k = self.centres.shape[0]
        self.std = float(_scale("std", datasets.EIGHT_STD if std is None else std))
        w0 = torch.ones(k, dtype=torch.float64) if w0 is None else _as_tensor("w0", w0, (k,))
        w1 = torch.arange(1, k + 1, dtype=torch.float64) if w1 is None else _as_tensor("w1", w1, (k,))
        if (w0 <= 0).any() or (w1 <= 0).any():
            raise InvalidArgumentError(f"w0 and w1 must all be > 0, got {w0.tolist()}, {w1.tolist()}")
        self.log_w0, self.log_w1 = torch.log(w0 / w0.sum()), torch.log(w1 / w1.sum())

    def log_weights(self, t: float | Tensor) -> Tensor:
        """``log w(t)`` [k] (or [n, k] for a per-point t), normalised."""
        tc = _time(t)
        a = (1 - tc) * self.log_w0 + tc * self.log_w1
        return a - torch.logsumexp(a, dim=-1, keepdim=True)

    def weights(self, t: float) -> Tensor:
        """The mode weights ``w(t)`` [k], summing to 1."""
        return self.log_weights(_check_t(t)).exp()

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        t = t.to(torch.float64) if isinstance(t, Tensor) else t
        return _mixture_energy(x, self.centres, self.std, self.log_weights(t).to(x.dtype))

    def dt(self, x: Tensor, t: float) -> Tensor:
        log_w = self.log_weights(_check_t(t))
        delta = self.log_w1 - self.log_w0
        dlog_w = (delta - (log_w.exp() * delta).sum()).to(x.dtype)
        d2 = (x[:, None, :] - self.centres.to(x.dtype)[None]).square().sum(dim=2)
        resp = torch.softmax(log_w.to(x.dtype) - d2 / (2 * self.std**2), dim=1)
        return -(resp * dlog_w).sum(dim=1)


MOVING_ENERGIES: dict[str, Callable[..., MovingEnergy]] = {
    "translating_gaussian": TranslatingGaussian,
    "scaling_gaussian": ScalingGaussian,
    "interpolation": Interpolation,
    "mode_weights": ModeWeights,
}


def get(name: str, **kwargs) -> Energy | MovingEnergy:
    """Build the energy ``name`` of ``ENERGIES`` or ``MOVING_ENERGIES`` with keyword arguments.

    Raises :class:`UnknownNameError` (listing the names) or :class:`InvalidArgumentError` (listing the
    keywords the factory takes).
    """
    registry = {**ENERGIES, **MOVING_ENERGIES}
    if not isinstance(name, str) or name not in registry:
        raise UnknownNameError(f"unknown energy {name!r}; valid names: {', '.join(sorted(registry))}")
    allowed = [p for p in inspect.signature(registry[name]).parameters if p != "self"]
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        raise InvalidArgumentError(
            f"energy {name!r} takes no argument {', '.join(bad)}; valid arguments: {', '.join(allowed) or 'none'}"
        )
    return registry[name](**kwargs)
