"""Analytic energies: fixed 2-D targets and time-dependent families, plus the one autograd helper.

Convention (``docs/architecture.md``): ``energy_fn(x: Tensor[n, d]) -> Tensor[n]``, lower = more probable,
``p(x) ∝ exp(-E(x))``. Time-dependent energies are ``E(x, t)`` with ``t`` a float in [0, 1]. Every energy
here computes in the dtype of ``x`` (float32 or float64) and returns that dtype.

Fixed energies (``ENERGIES``, factories taking keyword arguments):

- ``gaussian``: standard normal, ``E = |x|²/2`` (any dimension).
- ``correlated_gaussian``: ``E = (x-μ)ᵀ Σ⁻¹ (x-μ)/2``; attributes ``mean`` [2] and ``cov`` [2, 2].
- ``8gaussians``: minus the log of the exact, normalised density of the ``8gaussians`` dataset.
- ``rings``: minus the log of the exact, normalised density of the ``rings`` dataset (a radial mixture).
- ``banana``: a twisted Gaussian, x₁ ~ N(0, a²), x₂ | x₁ ~ N(b (x₁² - a²), s²); normalised.
- ``funnel``: Neal's funnel in 2-D, v = x₂ ~ N(0, σ²), x₁ | v ~ N(0, eᵛ); normalised.
- ``double_well``: ``E = h (x₁²/r² - 1)² + x₂²/2``: two wells at x₁ = ±r, a barrier of height h.

Time-dependent families (``MOVING_ENERGIES``), instances of :class:`MovingEnergy`:
``translating_gaussian``, ``scaling_gaussian``, ``interpolation`` and ``mode_weights``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch

from pdviz import datasets
from pdviz.errors import (
    InvalidArgumentError,
    UnknownNameError,
    check_energy_output,
    check_positive,
    check_range,
)

Tensor = torch.Tensor
EnergyFn = Callable[[Tensor], Tensor]


# --- the autograd helper --------------------------------------------------------------------------


def value_and_grad(energy_fn: Callable[..., Tensor], x: Tensor, *args) -> tuple[Tensor, Tensor]:
    """Energy and its gradient in ``x`` at every point: one *gradient evaluation*.

    Parameters
    ----------
    energy_fn : callable
        ``energy_fn(x, *args) -> Tensor[n]``.
    x : Tensor [n, d]
        Points; it may or may not require grad (it is detached first, so the caller's graph is untouched).
    *args
        Passed on, e.g. the time ``t`` of a :class:`MovingEnergy`.

    Returns
    -------
    energy : Tensor [n]
        ``E(x)``, detached.
    grad : Tensor [n, d]
        ``∇_x E(x)``, detached. Zero where ``E`` does not depend on ``x`` (e.g. a constant energy).

    Raises
    ------
    InvalidArgumentError
        If ``energy_fn`` is not callable, ``x`` is not a floating tensor of shape [n, d], or ``energy_fn``
        does not return a finite [n].
    """
    if not callable(energy_fn):
        raise InvalidArgumentError(
            f"energy_fn must be a callable x [n, d] -> Tensor[n], got {type(energy_fn).__name__}"
        )
    _check_x(x)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        energy = energy_fn(xg, *args)
        check_energy_output(energy, x.shape[0])
        if energy.requires_grad:
            (grad,) = torch.autograd.grad(energy.sum(), xg, allow_unused=True)
        else:
            grad = None
    if grad is None:
        grad = torch.zeros_like(xg)
    return energy.detach(), grad.detach()


def _check_x(x: object, dim: int | None = None) -> None:
    # Shape and dtype only: NaN positions must reach the samplers' divergence checks, not stop here.
    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(
            f"x must be a torch.Tensor of shape [n, {dim or 'd'}], got {type(x).__name__}"
        )
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim) or x.shape[0] == 0:
        raise InvalidArgumentError(f"x must have shape [n, {dim or 'd'}] with n >= 1, got {list(x.shape)}")
    if not torch.is_floating_point(x):
        raise InvalidArgumentError(f"x must be a floating-point tensor, got dtype {x.dtype}")


def _as_tensor(name: str, value: object, shape: tuple[int | None, ...]) -> Tensor:
    """A float64 parameter tensor of the given shape (None = any length >= 1), else InvalidArgumentError."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64).clone()
    except (TypeError, ValueError, RuntimeError):
        raise InvalidArgumentError(f"{name} must be numbers of shape {list(shape)}, got {value!r}") from None
    ok = t.ndim == len(shape) and all(
        (want is None and got >= 1) or got == want for want, got in zip(shape, t.shape)
    )
    if not ok:
        want = ["k" if w is None else w for w in shape]
        raise InvalidArgumentError(f"{name} must have shape {want}, got {list(t.shape)}")
    if not torch.isfinite(t).all():
        raise InvalidArgumentError(f"{name} must be finite, got {value!r}")
    return t


class Energy:
    """Base of the fixed analytic energies: ``E(x)`` for ``x`` [n, d] -> [n] in ``x.dtype``."""

    name = "energy"
    dim = 2

    def __call__(self, x: Tensor) -> Tensor:
        _check_x(x, self.dim)
        return self.energy(x)

    def energy(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<energy {self.name}>"


# --- fixed energies -------------------------------------------------------------------------------


class Gaussian(Energy):
    """Standard normal: ``E(x) = |x|²/2`` (normaliser (2π)^{d/2}). Any dimension ``d`` (``dim=None``)."""

    name = "gaussian"
    dim = None

    def __init__(self) -> None:
        self.mean = torch.zeros(2, dtype=torch.float64)
        self.cov = torch.eye(2, dtype=torch.float64)

    def energy(self, x: Tensor) -> Tensor:
        return 0.5 * x.square().sum(dim=1)


class CorrelatedGaussian(Energy):
    """``E(x) = (x - μ)ᵀ Σ⁻¹ (x - μ) / 2``; unnormalised, ``log Z = log(2π) + log det Σ / 2``.

    Parameters
    ----------
    mean : sequence of 2 floats
        μ, default (0.5, -0.5).
    cov : 2 × 2 symmetric positive-definite
        Σ, default [[1.5, 0.9], [0.9, 1.0]] (correlation ≈ 0.73).
    """

    name = "correlated_gaussian"

    def __init__(
        self, mean: Sequence[float] = (0.5, -0.5), cov: Sequence[Sequence[float]] = ((1.5, 0.9), (0.9, 1.0))
    ):
        self.mean = _as_tensor("mean", mean, (2,))
        self.cov = _as_tensor("cov", cov, (2, 2))
        if not torch.allclose(self.cov, self.cov.T):
            raise InvalidArgumentError(f"cov must be symmetric, got {self.cov.tolist()}")
        chol, info = torch.linalg.cholesky_ex(self.cov)
        if int(info) != 0:
            raise InvalidArgumentError(f"cov must be positive definite, got {self.cov.tolist()}")
        self.precision = torch.cholesky_inverse(chol)
        self.log_z = math.log(2 * math.pi) + float(torch.log(torch.diagonal(chol)).sum())

    def energy(self, x: Tensor) -> Tensor:
        d = x - self.mean.to(x.dtype)
        return 0.5 * ((d @ self.precision.to(x.dtype)) * d).sum(dim=1)


class GaussianMixture(Energy):
    """Isotropic Gaussian mixture, exactly normalised: ``E(x) = -log Σ_k w_k N(x; c_k, s² I)``.

    ``E = -logsumexp_k(log w_k - |x - c_k|²/(2 s²)) + log(2π s²)``, so ``∫ exp(-E) = 1``.

    Parameters
    ----------
    centres : [k, 2]
    std : float
        s, the standard deviation of every component.
    weights : [k], optional
        Positive, normalised here; equal by default.
    """

    name = "gaussian_mixture"

    def __init__(self, centres: Tensor, std: float, weights: Sequence[float] | None = None):
        self.centres = _as_tensor("centres", centres, (None, 2))
        self.std = float(check_positive("std", std))
        k = self.centres.shape[0]
        w = (
            torch.full((k,), 1.0 / k, dtype=torch.float64)
            if weights is None
            else _as_tensor("weights", weights, (k,))
        )
        if (w <= 0).any():
            raise InvalidArgumentError(f"weights must all be > 0, got {w.tolist()}")
        self.weights = w / w.sum()

    def energy(self, x: Tensor) -> Tensor:
        return _mixture_energy(x, self.centres, self.std, torch.log(self.weights))


def _mixture_energy(x: Tensor, centres: Tensor, std: float, log_w: Tensor) -> Tensor:
    """``-logsumexp_k(log w_k - |x - c_k|²/(2 s²)) + log(2π s²)``; ``log_w`` may carry autograd (in t)."""
    c = centres.to(x.dtype)
    d2 = (x[:, None, :] - c[None, :, :]).square().sum(dim=2)  # [n, k]; cdist is inaccurate near 0
    return -torch.logsumexp(log_w.to(x.dtype) - d2 / (2 * std**2), dim=1) + math.log(2 * math.pi * std**2)


def eight_gaussians(std: float | None = None) -> GaussianMixture:
    """The exact density of the ``8gaussians`` dataset (``std`` overrides the mode width 0.5/1.414)."""
    g = GaussianMixture(datasets.EIGHT_CENTRES, datasets.EIGHT_STD if std is None else std)
    g.name = "8gaussians"
    return g


class Rings(Energy):
    """The exact density of the ``rings`` dataset: equal-weight rings of radii r_k blurred by N(0, s² I).

    A uniform angle on a circle of radius r_k convolved with an isotropic Gaussian has the radial density

        p_k(x) = exp(-(|x|² + r_k²) / (2 s²)) I₀(|x| r_k / s²) / (2π s²),

    (I₀ the modified Bessel function). With ``i0e(z) = e^{-z} I₀(z)`` this is computed stably as
    ``log p_k = -(|x| - r_k)²/(2 s²) + log i0e(|x| r_k / s²) - log(2π s²)``; ``E = -log(mean_k p_k)``.

    Parameters
    ----------
    radii : sequence of floats
        Default (3, 2.25, 1.5, 0.75), as the dataset.
    std : float
        s, default 0.08 as the dataset; larger values give an easier, smoother target.
    """

    name = "rings"

    def __init__(self, radii: Sequence[float] = datasets.RING_RADII, std: float = datasets.RING_STD):
        self.radii = _as_tensor("radii", radii, (None,))
        if (self.radii <= 0).any():
            raise InvalidArgumentError(f"radii must all be > 0, got {self.radii.tolist()}")
        self.std = float(check_positive("std", std))

    def energy(self, x: Tensor) -> Tensor:
        s2 = self.std**2
        # sqrt with a tiny floor: its gradient at the origin would be 0/0; the energy is smooth there.
        r = torch.sqrt(x.square().sum(dim=1, keepdim=True) + torch.finfo(x.dtype).tiny)
        rk = self.radii.to(x.dtype)[None, :]
        log_pk = -(r - rk).square() / (2 * s2) + torch.log(torch.special.i0e(r * rk / s2))
        log_p = torch.logsumexp(log_pk, dim=1) - math.log(len(self.radii)) - math.log(2 * math.pi * s2)
        return -log_p


class Banana(Energy):
    """Twisted Gaussian: x₁ ~ N(0, a²), x₂ | x₁ ~ N(b (x₁² - a²), s²), exactly normalised.

    ``E = x₁²/(2a²) + (x₂ - b (x₁² - a²))²/(2 s²) + log(2π a s)``. Exact moments: E[x] = 0,
    Var x₁ = a², Var x₂ = s² + 2 a⁴ b². Defaults a = 1, b = 0.5, s = 0.5 leave ~0.1 % of the mass outside
    the [-5, 5]² box of the default grid.
    """

    name = "banana"

    def __init__(self, a: float = 1.0, b: float = 0.5, s: float = 0.5):
        self.a = float(check_positive("a", a))
        self.b = float(_as_tensor("b", b, ()))
        self.s = float(check_positive("s", s))
        self.mean = torch.zeros(2, dtype=torch.float64)
        self.cov = torch.diag(
            torch.tensor([self.a**2, self.s**2 + 2 * self.a**4 * self.b**2], dtype=torch.float64)
        )

    def energy(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        bend = x2 - self.b * (x1.square() - self.a**2)
        return (
            x1.square() / (2 * self.a**2)
            + bend.square() / (2 * self.s**2)
            + math.log(2 * math.pi * self.a * self.s)
        )


class Funnel(Energy):
    """Neal's funnel in 2-D: v = x₂ ~ N(0, σ²), x₁ | v ~ N(0, eᵛ), exactly normalised.

    ``E = v²/(2σ²) + x₁² e^{-v}/2 + v/2 + log(2π σ)``. σ defaults to 1.0 (Neal used 3, whose tails leave
    the [-5, 5]² box of the grid; with σ = 1, ~0.5 % of the mass lies outside it, in the wide mouth).
    The neck at v ≈ -2σ is what makes it hard for fixed-step samplers.
    """

    name = "funnel"

    def __init__(self, sigma: float = 1.0):
        self.sigma = float(check_positive("sigma", sigma))

    def energy(self, x: Tensor) -> Tensor:
        z, v = x[:, 0], x[:, 1]
        return (
            v.square() / (2 * self.sigma**2)
            + 0.5 * z.square() * torch.exp(-v)
            + 0.5 * v
            + math.log(2 * math.pi * self.sigma)
        )


class DoubleWell(Energy):
    """``E = h (x₁²/r² - 1)² + x₂²/2``: wells at x₁ = ±r, a barrier of height ``h`` at x₁ = 0.

    Symmetric, so each well holds half of the mass: a direct check of the mode weights a sampler finds.
    """

    name = "double_well"

    def __init__(self, height: float = 3.0, r: float = 2.0):
        self.height = float(check_positive("height", height))
        self.r = float(check_positive("r", r))

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
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        t = float(t)
    # Flow drivers compute t = k / n_steps; tolerate rounding just past the ends of [0, 1].
    if isinstance(t, (int, float)) and not isinstance(t, bool) and -1e-9 <= t <= 1 + 1e-9:
        t = min(max(float(t), 0.0), 1.0)
    return check_range("t", t, 0.0, 1.0)


class MovingEnergy:
    """Base of the time-dependent energies ``E(x, t)``, ``t ∈ [0, 1]``.

    Subclasses implement ``energy(x, t)`` with ``t`` a float or a 0-d tensor (so that ``∂_t E`` can come from
    autograd) and may override :meth:`dt` with the analytic derivative and set :attr:`exact_velocity`.

    Attributes
    ----------
    exact_velocity : callable or None
        ``exact_velocity(x, t) -> Tensor[n, 2]``, a field ``v`` solving the continuity equation
        ``∂_t p_t + ∇·(p_t v) = 0`` for ``p_t ∝ exp(-E_t)``, where known in closed form; else ``None``.
    """

    name = "moving"
    dim = 2
    exact_velocity: Callable[[Tensor, float], Tensor] | None = None

    def __call__(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, self.dim)
        return self.energy(x, _check_t(t))

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def at(self, t: float) -> EnergyFn:
        """The fixed energy ``x -> E(x, t)``."""
        t = _check_t(t)
        return _Frozen(self, t)

    def dt(self, x: Tensor, t: float) -> Tensor:
        """``∂_t E(x, t)`` [n], by autograd in ``t`` (subclasses override with the analytic form).

        ``t`` is given one copy per point, so the gradient of the summed energy is the per-point derivative.
        """
        _check_x(x, self.dim)
        t = _check_t(t)
        with torch.enable_grad():
            tt = torch.full((x.shape[0],), t, dtype=x.dtype, requires_grad=True)
            e = self.energy(x.detach(), tt)
            (g,) = torch.autograd.grad(e.sum(), tt, allow_unused=True)
        return torch.zeros(x.shape[0], dtype=x.dtype) if g is None else g.detach()

    def __repr__(self) -> str:
        return f"<moving energy {self.name}>"


class _Frozen:
    """``x -> E(x, t)`` at a fixed ``t`` (what :meth:`MovingEnergy.at` returns)."""

    def __init__(self, moving: MovingEnergy, t: float):
        self.moving, self.t = moving, t
        self.name = f"{moving.name}@t={t:g}"

    def __call__(self, x: Tensor) -> Tensor:
        return self.moving(x, self.t)

    def __repr__(self) -> str:
        return f"<energy {self.name}>"


def _time(t: float | Tensor, x: Tensor) -> float | Tensor:
    """``t`` as a column broadcastable against ``x`` [n, d] when it is a per-point tensor."""
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return t[:, None]
    return t


class TranslatingGaussian(MovingEnergy):
    """``E_t(x) = |x - m(t)|²/2`` with ``m(t) = (1 - t) m0 + t m1``.

    ``∂_t E = -⟨x - m(t), m1 - m0⟩``; the exact field is the constant ``v = m1 - m0`` (= ``-∇_x ∂_t E``).
    """

    name = "translating_gaussian"

    def __init__(self, m0: Sequence[float] = (-2.0, 0.0), m1: Sequence[float] = (2.0, 0.0)):
        self.m0 = _as_tensor("m0", m0, (2,))
        self.m1 = _as_tensor("m1", m1, (2,))

    def mean(self, t: float | Tensor) -> Tensor:
        return (1 - t) * self.m0 + t * self.m1

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        tc = _time(t, x)
        m = (1 - tc) * self.m0.to(x.dtype) + tc * self.m1.to(x.dtype)
        return 0.5 * (x - m).square().sum(dim=1)

    def dt(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, 2)
        t = _check_t(t)
        m = (1 - t) * self.m0.to(x.dtype) + t * self.m1.to(x.dtype)
        return -((x - m) @ (self.m1 - self.m0).to(x.dtype))

    def exact_velocity(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, 2)
        _check_t(t)
        return (self.m1 - self.m0).to(x.dtype).expand(x.shape[0], 2).clone()


class ScalingGaussian(MovingEnergy):
    """``E_t(x) = |x|²/(2 σ(t)²)`` with ``σ(t) = (1 - t) s0 + t s1``.

    ``∂_t E = -|x|² σ'/σ³``; the exact field is ``v = (σ'/σ) x`` (it scales the law),
    while PD's field ``-∇_x ∂_t E = 2 σ' x / σ³`` agrees only where σ² = 2.
    """

    name = "scaling_gaussian"

    def __init__(self, s0: float = 0.5, s1: float = 1.5):
        self.s0 = float(check_positive("s0", s0))
        self.s1 = float(check_positive("s1", s1))

    def sigma(self, t: float | Tensor) -> float | Tensor:
        return (1 - t) * self.s0 + t * self.s1

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        sigma = self.sigma(t)
        return x.square().sum(dim=1) / (2 * sigma**2)

    def dt(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, 2)
        sigma = self.sigma(_check_t(t))
        return -x.square().sum(dim=1) * (self.s1 - self.s0) / sigma**3

    def exact_velocity(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, 2)
        sigma = self.sigma(_check_t(t))
        return x * ((self.s1 - self.s0) / sigma)


class Interpolation(MovingEnergy):
    """``E_t = (1 - t) E_a + t E_b``: a geometric path between two fixed energies.

    ``∂_t E = E_b - E_a``. No closed-form exact field (``exact_velocity`` is None).
    Defaults: ``E_a`` a broad Gaussian ``|x|²/(2·2²)``, ``E_b`` the exact 8-Gaussian energy.
    """

    name = "interpolation"

    def __init__(self, start: EnergyFn | str | None = None, end: EnergyFn | str | None = None):
        self.start = _broad_gaussian if start is None else (get(start) if isinstance(start, str) else start)
        self.end = eight_gaussians() if end is None else (get(end) if isinstance(end, str) else end)
        for label, fn in (("start", self.start), ("end", self.end)):
            if not callable(fn) or isinstance(fn, MovingEnergy):
                raise InvalidArgumentError(
                    f"{label} must be a fixed energy (name or callable x -> [n]), got {fn!r}"
                )

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        return (1 - t) * self.start(x) + t * self.end(x)

    def dt(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, 2)
        _check_t(t)
        return self.end(x) - self.start(x)


def _broad_gaussian(x: Tensor) -> Tensor:
    """``|x|²/(2·2²)``: a Gaussian of std 2, the default start of :class:`Interpolation`."""
    return x.square().sum(dim=1) / 8.0


class ModeWeights(MovingEnergy):
    """A Gaussian mixture whose weights move: ``log w(t) ∝ (1 - t) log w0 + t log w1`` (then normalised).

    ``E_t = -logsumexp_k(log w_k(t) - |x - c_k|²/(2 s²)) + log(2π s²)``, exactly normalised for every t.
    ``∂_t E = -Σ_k r_k(x) ∂_t log w_k(t)`` with responsibilities ``r_k`` and
    ``∂_t log w_k = (log w1_k - log w0_k) - Σ_j w_j(t) (log w1_j - log w0_j)``.
    Mass must travel between modes, which Langevin chains do slowly; no closed-form exact field.

    Defaults: the 8gaussians centres and width, ``w0`` equal, ``w1 ∝ (1, 2, ..., 8)``.
    """

    name = "mode_weights"

    def __init__(
        self,
        centres: Tensor | None = None,
        std: float | None = None,
        w0: Sequence[float] | None = None,
        w1: Sequence[float] | None = None,
    ):
        centres = datasets.EIGHT_CENTRES if centres is None else centres
        self.centres = _as_tensor("centres", centres, (None, 2))
        k = self.centres.shape[0]
        self.std = float(check_positive("std", datasets.EIGHT_STD if std is None else std))
        w0 = torch.ones(k, dtype=torch.float64) if w0 is None else _as_tensor("w0", w0, (k,))
        w1 = torch.arange(1, k + 1, dtype=torch.float64) if w1 is None else _as_tensor("w1", w1, (k,))
        for label, w in (("w0", w0), ("w1", w1)):
            if (w <= 0).any():
                raise InvalidArgumentError(f"{label} must all be > 0, got {w.tolist()}")
        self.log_w0 = torch.log(w0 / w0.sum())
        self.log_w1 = torch.log(w1 / w1.sum())

    def log_weights(self, t: float | Tensor) -> Tensor:
        """``log w(t)`` [k] (or [n, k] for a per-point tensor t), normalised."""
        tc = _time(t, self.log_w0)
        a = (1 - tc) * self.log_w0 + tc * self.log_w1
        return a - torch.logsumexp(a, dim=-1, keepdim=True)

    def weights(self, t: float) -> Tensor:
        """The mode weights ``w(t)`` [k], summing to 1."""
        return self.log_weights(_check_t(t)).exp()

    def energy(self, x: Tensor, t: float | Tensor) -> Tensor:
        if isinstance(t, torch.Tensor):
            t = t.to(torch.float64)
        return _mixture_energy(x, self.centres, self.std, self.log_weights(t).to(x.dtype))

    def dt(self, x: Tensor, t: float) -> Tensor:
        _check_x(x, 2)
        t = _check_t(t)
        log_w = self.log_weights(t)
        delta = self.log_w1 - self.log_w0
        dlog_w = (delta - (log_w.exp() * delta).sum()).to(x.dtype)
        c = self.centres.to(x.dtype)
        d2 = (x[:, None, :] - c[None, :, :]).square().sum(dim=2)
        resp = torch.softmax(log_w.to(x.dtype) - d2 / (2 * self.std**2), dim=1)
        return -(resp * dlog_w).sum(dim=1)


MOVING_ENERGIES: dict[str, Callable[..., MovingEnergy]] = {
    "translating_gaussian": TranslatingGaussian,
    "scaling_gaussian": ScalingGaussian,
    "interpolation": Interpolation,
    "mode_weights": ModeWeights,
}


def get(name: str, **kwargs) -> Energy | MovingEnergy:
    """Build the energy ``name`` from ``ENERGIES`` or ``MOVING_ENERGIES`` with keyword arguments.

    Raises
    ------
    UnknownNameError
        Unknown name (the message lists every name) or
    InvalidArgumentError
        a keyword the factory does not take (the message lists those it does).
    """
    registry = {**ENERGIES, **MOVING_ENERGIES}
    if not isinstance(name, str) or name not in registry:
        raise UnknownNameError(f"unknown energy {name!r}; valid names: {', '.join(sorted(registry))}")
    factory = registry[name]
    allowed = [p for p in inspect.signature(factory).parameters if p != "self"]
    bad = sorted(set(kwargs) - set(allowed))
    if bad:
        raise InvalidArgumentError(
            f"energy {name!r} takes no argument {', '.join(bad)}; "
            f"valid arguments: {', '.join(allowed) or 'none'}"
        )
    return factory(**kwargs)
