"""Annealed importance sampling (AIS) for the normaliser of an energy-based model, and log-likelihoods.

An EBM gives ``p(x) = exp(-E(x)) / Z`` with an unknown ``Z = ∫ exp(-E)``. AIS (Neal 2001) estimates ``Z`` by
moving chains from a normalised base ``q = N(μ, diag s²)`` (energy ``E_0 = -log q``, so ``Z_0 = 1``) to the
target through the geometric path

    E_β(x) = (1 - β) E_0(x) + β E(x),      0 = β_0 < β_1 < ... < β_K = 1.

Each chain starts at ``x ~ q`` with ``log w = 0``; at every temperature ``k = 1..K`` it first collects the
weight increment ``log w += -(E_{β_k}(x) - E_{β_{k-1}}(x)) = -(β_k - β_{k-1}) (E(x) - E_0(x))`` and then
makes ``mala_steps`` MALA moves that leave ``exp(-E_{β_k})`` invariant. Then

    Ẑ = (1/M) Σ_i w_i      (unbiased for Z with fixed transitions),      log Ẑ = logsumexp(log w) - log M.

By Jensen's inequality ``E[log Ẑ] <= log Z``: AIS *under*-estimates log Z on average, so a log-likelihood
``mean(-E(x)) - log Ẑ`` is, on average, an *over*-estimate; the gap shrinks as ``K`` grows.

The MALA step size of temperature ``k`` is set from the acceptance rate observed at temperature ``k - 1``
(``ε ← ε exp(acceptance - target)``). The steps adapt from the chains' own past, so the estimator is only
*approximately* unbiased (docs/method.md §5); for the guarantee, adapt in a pilot run and pass its frozen
``step_sizes`` (``step_size=`` a list, one per temperature). An ESS near 1 makes the standard error
meaningless: every result carries its ESS, and a warning says when it is below 10 % of the chains.

In many dimensions with widths that differ (0.05 to 1 in 784-D), one scalar step fits only the narrowest
coordinate: :func:`pilot` takes a base and per-coordinate scales from short runs, which, frozen, give the
real run a close base and a diagonal preconditioner (``scales=``). Run in reverse from exact samples of the
target (``start=``), AIS bounds log Z from above, so the two runs bracket it (BDMC).

Cost: ``K · mala_steps + 1`` gradient evaluations of ``E`` on ``M`` chains.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import trange

from pdviz import errors, samplers
from pdviz.errors import DivergenceError, InvalidArgumentError
from pdviz.images import bits_per_dim

__all__ = ["AISResult", "AISLikelihood", "SCHEDULES", "schedule", "ais_log_z", "ais_log_likelihood"]
__all__ += ["gaussian_log_z", "pilot"]

EnergyFn = Callable[[Tensor], Tensor]
SCHEDULES = ("sigmoid", "linear")
LOW_ESS = 0.1  # below this share of the chains, an estimate and its error bar are unreliable (a warning)


class AISResult(NamedTuple):
    """What :func:`ais_log_z` measured.

    Attributes
    ----------
    log_z : float
        ``log Ẑ = logsumexp(log w) - log M``.
    log_z_std_err : float
        Delta-method standard error of ``log Ẑ``: ``std(w) / (sqrt(M) mean(w))`` (NaN for one chain). It
        describes the spread of ``Ẑ``, not the Jensen bias; repeat runs to see both.
    log_weights : Tensor [M], float64
        Final log importance weight of every chain.
    ess : float
        Effective sample size ``(Σ w)² / Σ w²`` in [1, M].
    acceptance : Tensor [K]
        Mean MALA acceptance rate at each temperature.
    step_sizes : Tensor [K]
        MALA step size used at each temperature.
    betas : Tensor [K + 1], float64
        The temperature schedule.
    n_grad : int
        Gradient evaluations spent (each over all M chains).
    positions : Tensor [M, d]
        The chains at β = 1 (approximate samples of ``exp(-E)``; weight them by ``log_weights``).
    """

    log_z: float
    log_z_std_err: float
    log_weights: Tensor
    ess: float
    acceptance: Tensor
    step_sizes: Tensor
    betas: Tensor
    n_grad: int
    positions: Tensor


class AISLikelihood(NamedTuple):
    """What :func:`ais_log_likelihood` measured.

    Attributes
    ----------
    nats_per_image : float
        ``mean_i(-E(x_i)) - log Ẑ`` (+ the mean log-Jacobian when given): the test log-likelihood.
    bits_per_dim : float
        The same in bits per dimension on the pixel scale (see :func:`pdviz.images.bits_per_dim`).
    log_z : float
    log_z_std_err : float
        AIS standard error of ``log Ẑ`` (also the AIS error of ``nats_per_image``).
    mean_neg_energy : float
        ``mean_i(-E(x_i))`` over the test points.
    data_std_err : float
        Standard error of that mean over the test points (the test-set sampling error).
    ais : AISResult
    ess : float
        The AIS effective sample size (below 10 % of the chains a warning says the estimate is unreliable).
    """

    nats_per_image: float
    bits_per_dim: float
    log_z: float
    log_z_std_err: float
    mean_neg_energy: float
    data_std_err: float
    ais: AISResult
    ess: float


# --- pieces ---------------------------------------------------------------------------------------


def schedule(n_steps: int, kind: str = "sigmoid", *, sharpness: float = 4.0) -> Tensor:
    """The temperatures ``β_0 = 0 < β_1 < ... < β_K = 1`` (float64 [K + 1]).

    "linear": ``β_k = k / K``. "sigmoid" (Grosse et al.): ``β̃_k = σ(δ (2k/K - 1))`` rescaled to [0, 1],
    ``δ = sharpness``; it spends more temperatures near both ends, where the path changes fastest.
    """
    n_steps = errors.check_positive("n_steps", n_steps, integer=True)
    errors.check_choice("schedule", kind, SCHEDULES, what="schedule")
    k = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    if kind == "linear":
        return k
    sharpness = float(errors.check_positive("sharpness", sharpness))
    s = torch.sigmoid(sharpness * (2 * k - 1))
    betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return betas


_schedule = schedule  # ais_log_z has an argument of the same name


def gaussian_log_z(std: Tensor | float, dim: int | None = None) -> float:
    """``log ∫ exp(-Σ_j x_j² / (2 s_j²)) dx = (d/2) log 2π + Σ_j log s_j`` (known answer for tests).

    ``std`` is a tensor [d] of standard deviations, or a float together with ``dim``.
    """
    if isinstance(std, Tensor):
        if std.ndim != 1 or not bool((std > 0).all()):
            raise InvalidArgumentError(
                f"std must be a 1-D tensor of positive values, got shape {list(std.shape)}"
            )
        return 0.5 * std.numel() * math.log(2 * math.pi) + float(std.double().log().sum())
    s = float(errors.check_positive("std", std))
    d = errors.check_positive("dim", dim, integer=True)
    return 0.5 * d * math.log(2 * math.pi) + d * math.log(s)


def _as_base(name: str, value: Any, dim: int, default: float, device, dtype, *, positive: bool) -> Tensor:
    if value is None:
        return torch.full((dim,), default, device=device, dtype=dtype)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = torch.full((dim,), float(value), device=device, dtype=dtype)
    if not isinstance(value, Tensor) or value.shape != (dim,):
        got = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise InvalidArgumentError(f"{name} must be None, a number or a tensor of shape [{dim}], got {got}")
    if not bool(torch.isfinite(value).all()) or (positive and not bool((value > 0).all())):
        raise InvalidArgumentError(f"{name} must be finite{' and > 0' if positive else ''} in every entry")
    return value.detach().to(device=device, dtype=dtype)


def _log_weight_stats(log_w: Tensor) -> tuple[float, float, float]:
    """``log Ẑ``, its delta-method standard error and the ESS, from log-weights [M] (float64)."""
    m = log_w.numel()
    log_z = float(torch.logsumexp(log_w, 0) - math.log(m))
    w = torch.exp(log_w - log_w.max())  # scaled: the ratios below do not depend on the scale
    ess = float(w.sum() ** 2 / (w * w).sum())
    std_err = float(w.std(unbiased=True) / (math.sqrt(m) * w.mean())) if m > 1 else math.nan
    return log_z, std_err, ess


def _warn_low_ess(log_z: float, std_err: float, ess: float, n_chains: int) -> None:
    """Warn when the ESS is below ``LOW_ESS`` of the chains: then a few weights carry ``log Ẑ`` and the
    delta-method error bar, computed from those same weights, understates the error too."""
    if ess < LOW_ESS * n_chains:
        warnings.warn(
            f"AIS effective sample size {ess:.1f} of {n_chains} chains (< {LOW_ESS:.0%} of them): "
            f"log Z = {log_z:.2f} ± {std_err:.2f} is unreliable, and so is its error bar; use more "
            "temperatures, more chains or a base closer to the target",
            stacklevel=3,
        )


# --- AIS ------------------------------------------------------------------------------------------


def ais_log_z(
    energy_fn: EnergyFn,
    dim: int,
    *,
    n_steps: int = 1000,
    n_chains: int = 100,
    base_mean: Tensor | float | None = None,
    base_std: Tensor | float | None = None,
    mala_steps: int = 1,
    schedule: str = "sigmoid",
    step_size: float | list[float] | None = None,
    target_acceptance: float = 0.6,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    scales: Tensor | None = None,
    start: Tensor | None = None,
) -> AISResult:
    """Estimate ``log Z = log ∫ exp(-E(x)) dx`` by annealed importance sampling with MALA transitions.

    Parameters
    ----------
    energy_fn : callable
        ``x [n, dim] -> E(x) [n]``.
    dim : int
        Dimension d of x.
    n_steps : int
        Number of temperatures K (the main accuracy knob: the Jensen bias falls roughly like 1/K).
    n_chains : int
        Number of independent chains M (the variance knob).
    base_mean, base_std : Tensor [d] or float, optional
        The normalised base ``N(μ, diag s²)``; defaults 0 and 1. A base close to the target needs fewer
        temperatures; any base gives an unbiased ``Ẑ``.
    mala_steps : int
        MALA moves per temperature.
    schedule : str
        "sigmoid" (default) or "linear"; see :func:`schedule`.
    step_size : float, optional
        MALA step size at the first temperature; default ``min(s)² d^(-1/3)`` (MALA's optimal scaling on
        the base). Later temperatures adapt it toward ``target_acceptance``.
    target_acceptance : float
        Acceptance rate the step size adapts toward (0.6, near MALA's optimum 0.574).
    generator : torch.Generator, optional
        All randomness (base draws and MALA); entropy-seeded if None.
    device, dtype :
        Where and in which precision the chains live (weights are accumulated in float64).
    progress : bool
        Show a tqdm bar over temperatures.
    scales : Tensor [d], optional
        The target's per-coordinate widths, for a frozen diagonal preconditioner: at β MALA proposes
        ``x' = x - (ε/2) c_β² ∇E_β + √ε c_β ξ`` with ``c_β⁻² = (1 - β)/s² + β/c²`` (s: the base's std), so
        one step size fits coordinates of widths 0.05 and 1 alike. Take ``c`` from a pilot run
        (:func:`pilot_scales`) or from samples, never from this run, so that ``Ẑ`` stays unbiased.
    start : Tensor [M, d], optional
        Exact samples of ``exp(-E) / Z``: then AIS runs in reverse, from the target to the base, and its
        weights estimate ``1/Z``; ``log_z`` is then a stochastic *upper* bound (``E[log Ẑ] >= log Z``), so
        that forward and reverse runs bracket the truth (BDMC, Grosse et al. 2015). M replaces ``n_chains``.

    Returns
    -------
    AISResult

    Raises
    ------
    DivergenceError
        If the chains or weights become NaN/Inf (suggests a smaller ``step_size`` or a closer base).
    """
    _check_arguments(energy_fn, dim, n_steps, n_chains, mala_steps, target_acceptance, dtype, generator)
    device = torch.device(device) if device is not None else getattr(generator, "device", torch.device("cpu"))
    gen = generator if generator is not None else samplers.make_generator(None, device=device)
    mean = _as_base("base_mean", base_mean, dim, 0.0, device, dtype, positive=False)
    std = _as_base("base_std", base_std, dim, 1.0, device, dtype, positive=True)
    c = None if scales is None else _as_base("scales", scales, dim, 1.0, device, dtype, positive=True)
    width = 1.0 if c is not None else float(std.min()) ** 2  # the preconditioned chains see unit widths
    steps = _step_sizes(step_size, n_steps, width * dim ** (-1.0 / 3.0))
    if start is None:
        x = mean + std * torch.randn(n_chains, dim, generator=gen, device=device, dtype=dtype)
    else:
        errors.check_points("start", start, dim=dim)
        x, n_chains = start.detach().to(device=device, dtype=dtype), start.shape[0]
    betas = _schedule(n_steps, schedule)
    adapt = step_size is None or not isinstance(step_size, (list, tuple))
    state, log_w, acceptance, used, n_grad = _anneal(
        energy_fn, x, betas if start is None else betas.flip(0), mean, std, c, steps, adapt, mala_steps,
        target_acceptance, gen, progress,
    )  # fmt: skip
    log_z, std_err, ess = _log_weight_stats(log_w)
    log_z = log_z if start is None else -log_z  # reverse AIS: Ẑ estimates 1/Z
    _warn_low_ess(log_z, std_err, ess, n_chains)
    return AISResult(
        log_z, std_err, log_w.cpu(), ess, acceptance.to(dtype), used, betas, n_grad, state.position
    )


def _check_arguments(energy_fn, dim, n_steps, n_chains, mala_steps, target_acceptance, dtype, generator):
    """The checks of :func:`ais_log_z`'s arguments, at the public edge."""
    if not callable(energy_fn):
        raise InvalidArgumentError(
            f"energy_fn must be callable x [n, d] -> [n], got {type(energy_fn).__name__}"
        )
    sizes = {"dim": dim, "n_steps": n_steps, "n_chains": n_chains, "mala_steps": mala_steps}
    for name, value in sizes.items():
        errors.check_positive(name, value, integer=True)
    errors.check_memory("the AIS chains", n_chains * dim * 4)
    errors.check_range("target_acceptance", target_acceptance, 0.0, 1.0, inclusive=False)
    if dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InvalidArgumentError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )


def _step_sizes(step_size, n_steps: int, default: float) -> list:
    """One MALA step size per temperature: a list as given (frozen), or the first one (``default`` when
    None; MALA's optimal scaling on the base) with None for the rest (adapted)."""
    steps = list(step_size) if isinstance(step_size, (list, tuple)) else [step_size] * n_steps
    if len(steps) != n_steps:
        raise InvalidArgumentError(
            f"step_size as a list needs one value per temperature ({n_steps}), got {len(steps)}"
        )
    if steps[0] is None:
        steps[0] = default
    for eps in steps[: 1 if step_size is None else n_steps]:
        errors.check_positive("step_size", eps)
    return steps


def _anneal(energy_fn, x, betas, mean, std, scales, steps, adapt, mala_steps, target, gen, progress):
    """The AIS chains: weight increments and MALA moves over the temperatures; steps adapt when ``adapt``.
    With ``scales`` c [d], MALA at β is preconditioned by ``c_β² = 1 / ((1 - β)/s² + β/c²)``, the widths of
    the path between the base's s and the target's c, fixed in advance."""
    # the base energy is analytic and computed in float64: its normaliser is exact, so Z_0 = 1
    mean64, std64, dim, n_steps = mean.double(), std.double(), x.shape[1], len(betas) - 1
    base_const = 0.5 * dim * math.log(2 * math.pi) + float(std64.log().sum())

    def base_energy(y: Tensor) -> Tensor:
        return 0.5 * (((y.double() - mean64) / std64) ** 2).sum(dim=1) + base_const

    def tempered(beta: float) -> EnergyFn:
        def energy(y: Tensor) -> Tensor:
            e0, e = base_energy(y), errors.check_energy_output(energy_fn(y), y.shape[0], finite=False)
            return e0 + beta * (e.double() - e0)  # float64 energies keep the weight increments exact

        return energy

    log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    acceptance, used = torch.empty(n_steps, dtype=torch.float64), torch.empty(n_steps, dtype=torch.float64)
    eps, state, n_grad = steps[0], None, 0
    if float(betas[0]) > 0:  # reverse AIS: the chains start as samples of exp(-E_{β_0})
        state, n_grad = samplers.init(x, tempered(float(betas[0]))), 1
    suggestion = f"reduce step_size (the first temperature used {eps:.3g}) or use a base closer to the target"
    for k in trange(1, n_steps + 1, disable=not progress, desc="AIS", leave=False):
        beta, prev = float(betas[k]), float(betas[k - 1])
        energy_k = tempered(beta)
        if state is None:  # the chains are exact base draws: one fresh evaluation, log w = -(E_β1 - E_0)
            state, n_grad = samplers.init(x, energy_k), 1
            log_w = log_w - (state.energy - base_energy(state.position))
        else:  # E_β - E_0 = β (E - E_0) is linear in β: the cache at β_{k-1} rescales to β_k exactly
            e0, g0 = base_energy(state.position), ((state.position.double() - mean64) / std64**2).to(x.dtype)
            ratio, scaled = beta / prev, state.energy - e0  # scaled = β_{k-1} (E(x) - E_0(x))
            log_w = log_w - (ratio - 1.0) * scaled
            state = state._replace(energy=e0 + ratio * scaled, grad=g0 + ratio * (state.grad - g0))
        eps, acc = (eps if adapt else steps[k - 1]), 0.0
        c_beta = None if scales is None else ((1 - beta) / std**2 + beta / scales**2).rsqrt()
        for _ in range(mala_steps):
            state, info = _mala(state, energy_k, eps, gen, c_beta)
            acc, n_grad = acc + float(info.acceptance_rate) / mala_steps, n_grad + info.n_grad
        acceptance[k - 1], used[k - 1] = acc, eps
        if not bool(torch.isfinite(log_w).all()) or not bool(torch.isfinite(state.position).all()):
            raise DivergenceError("AIS chains", k, suggestion, detail=f"at temperature beta={beta:.4g}")
        # the next temperature's step from this one's acceptance: adapted, hence approximately unbiased
        eps = eps * math.exp(acc - target)
    return state, log_w, acceptance, used, n_grad


def pilot(
    energy_fn: EnergyFn,
    dim: int,
    *,
    rounds: int = 2,
    n_steps: int = 200,
    n_chains: int = 100,
    generator: torch.Generator | None = None,
    **ais_kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """A base and a preconditioner for :func:`ais_log_z`, from short adaptive runs: ``(mean, scales)`` [d].

    Round r runs :func:`ais_log_z` (``n_steps`` temperatures, ``n_chains`` chains) with round r-1's
    per-coordinate mean and std of the final chains as its base and ``scales`` (round 1: the given or
    standard base). Pass them frozen to the real run, ``base_mean=mean, base_std=scales, scales=scales``:
    its ``Ẑ`` stays unbiased, and a base of the target's widths shortens the path. In 784-D with widths
    0.05-1 this took the error at K = 1,000 from -99 nats to within 0.2 (benchmarks/RESULTS.md, issue 24).
    Cost: ``rounds · n_steps · mala_steps`` gradient evaluations on ``n_chains`` chains.
    """
    errors.check_positive("rounds", rounds, integer=True)
    if not isinstance(n_chains, int) or n_chains < 2:
        raise InvalidArgumentError(
            f"n_chains must be an integer >= 2 (a spread needs two chains), got {n_chains!r}"
        )
    kw = dict(ais_kwargs)
    for _ in range(rounds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a pilot's ESS does not matter: only its chains' spread does
            res = ais_log_z(energy_fn, dim, n_steps=n_steps, n_chains=n_chains, generator=generator, **kw)
        x = res.positions.double()
        mean, scales = x.mean(0), x.std(0).clamp_min(1e-6 * float(x.std(0).max()))
        kw.update(base_mean=mean.to(res.positions), base_std=scales.to(res.positions))
        kw["scales"] = kw["base_std"]
    return kw["base_mean"], kw["scales"]


def _mala(state: samplers.State, energy_fn: EnergyFn, eps: float, gen, c: Tensor | None):
    """One MALA step, preconditioned by ``diag(c²)`` when ``c`` [d] is given: the proposal
    ``x' = x - (ε/2) c² ∇E(x) + √ε c ξ`` is plain MALA in ``z = x / c`` (whose gradient is ``c ∇E``)."""
    if c is None:
        return samplers.mala_step(state, energy_fn, step_size=eps, generator=gen)
    z = samplers.State(state.position / c, state.energy, state.grad * c, state.log_weight)
    new, info = samplers.mala_step(z, lambda y: energy_fn(y * c), step_size=eps, generator=gen)
    return samplers.State(new.position * c, new.energy, new.grad / c, new.log_weight), info


def ais_log_likelihood(
    energy_fn: EnergyFn,
    x_test: Tensor,
    *,
    n_steps: int = 1000,
    n_chains: int = 100,
    base_mean: Tensor | float | None = None,
    base_std: Tensor | float | None = None,
    min_base_std: float = 0.05,
    levels: int | None = 256,
    log_det_jacobian: Tensor | None = None,
    batch_size: int = 1024,
    **ais_kwargs: Any,
) -> AISLikelihood:
    """Test log-likelihood ``mean_i(-E(x_i)) - log Ẑ`` in nats per image and bits per dimension.

    Parameters
    ----------
    energy_fn : callable
        ``x [n, d] -> [n]``.
    x_test : Tensor [n, d]
        Test points (dequantised images for image models).
    n_steps, n_chains :
        As for :func:`ais_log_z`.
    base_mean, base_std : optional
        The AIS base. Default: ``energy_fn.ais_base()`` when the model has one (e.g.
        :class:`pdviz.images.ImageEBM`: its own Gaussian base), else the mean and standard deviation of
        ``x_test`` per dimension, the std floored at ``min_base_std`` (constant border pixels would otherwise
        give a zero width). The base only changes the variance of the estimate, not what it estimates.
    levels : int or None
        Pixel levels for :func:`pdviz.images.bits_per_dim` (256 for MNIST, 17 for the digits; None: plain
        nats -> bits).
    log_det_jacobian : Tensor [n], optional
        ``log|det ∂y/∂x|`` of a transform (e.g. :func:`pdviz.images.logit_transform`) when ``energy_fn``
        models ``y`` = ``x_test``; it is added so the result is in pixel space. Then ``bits_per_dim`` uses the
        pixel-space value.
    batch_size : int
        Test points per energy evaluation.
    **ais_kwargs :
        Passed to :func:`ais_log_z` (``generator``, ``mala_steps``, ``schedule``, ``progress``, ...).

    Returns
    -------
    AISLikelihood
    """
    errors.check_points("x_test", x_test)
    batch_size = errors.check_positive("batch_size", batch_size, integer=True)
    min_base_std = float(errors.check_positive("min_base_std", min_base_std))
    n, d = x_test.shape
    if base_mean is None and base_std is None and callable(getattr(energy_fn, "ais_base", None)):
        base_mean, base_std = energy_fn.ais_base()
    if base_mean is None:
        base_mean = x_test.mean(0)
    if base_std is None:
        base_std = (x_test.std(0) if n > 1 else torch.ones(d, dtype=x_test.dtype)).clamp_min(min_base_std)
    with torch.no_grad():
        neg_e = torch.cat([-energy_fn(x_test[i : i + batch_size]).double() for i in range(0, n, batch_size)])
    errors.check_energy_output(neg_e, n, where="energy_fn")
    per_point = neg_e
    ldj = log_det_jacobian
    if ldj is not None:
        if not isinstance(ldj, Tensor) or ldj.shape != (n,):
            got = list(ldj.shape) if isinstance(ldj, Tensor) else type(ldj)
            raise InvalidArgumentError(f"log_det_jacobian must be a tensor of shape [{n}], got {got}")
        per_point = per_point + ldj.double().to(per_point.device)
    own = {"energy_fn", "dim", "n_steps", "n_chains", "base_mean", "base_std"}  # set here, not by ais_kwargs
    allowed = set(inspect.signature(ais_log_z).parameters) - own
    unknown = sorted(set(ais_kwargs) - allowed)
    if unknown:
        raise InvalidArgumentError(
            f"unknown keyword(s) {', '.join(unknown)} for ais_log_likelihood; valid: {', '.join(sorted(allowed))}"
        )
    kw = {"dtype": x_test.dtype, "device": x_test.device, **ais_kwargs}  # the test points' by default
    res = ais_log_z(
        energy_fn, d, n_steps=n_steps, n_chains=n_chains, base_mean=base_mean, base_std=base_std, **kw
    )
    nats = float(per_point.mean()) - res.log_z
    data_se = float(per_point.std() / math.sqrt(n)) if n > 1 else math.nan
    return AISLikelihood(
        nats_per_image=nats,
        bits_per_dim=bits_per_dim(nats, d, levels=levels),
        log_z=res.log_z,
        log_z_std_err=res.log_z_std_err,
        mean_neg_energy=float(neg_e.mean()),
        data_std_err=data_se,
        ais=res,
        ess=res.ess,
    )
