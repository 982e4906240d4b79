"""The pdviz error vocabulary.

Every error pdviz raises on purpose is one of the classes below, so callers (the CLI, the widgets, the
notebooks) can tell a user's mistake from a bug with one ``except PdvizError``. Each class also derives
from the matching built-in (``ValueError`` or ``RuntimeError``), so plain ``except ValueError`` works too.

Messages name the argument, the value received and what is allowed, e.g.::

    step_size must be > 0, got -0.1
    unknown dataset 'swirl'; valid names: 2spirals, 8gaussians, checkerboard, ...
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class PdvizError(Exception):
    """Base class of every error pdviz raises deliberately."""


class InvalidArgumentError(PdvizError, ValueError):
    """An argument has a bad value, type or shape. The message names the argument and the valid range."""


class UnknownNameError(InvalidArgumentError):
    """A registry lookup failed. The message lists the valid names."""


class DataError(PdvizError, ValueError):
    """A data file is missing, truncated, corrupt or has the wrong header."""


class CheckpointError(PdvizError, ValueError):
    """A checkpoint cannot be loaded: tampered, truncated, wrong version or mismatched configuration."""


class DivergenceError(PdvizError, RuntimeError):
    """A sampler, flow or training loop produced NaN/Inf or particles escaped a bound.

    Attributes
    ----------
    iteration : int or None
        The iteration (step) at which the problem was detected.
    quantity : str
        What went bad, e.g. ``"particle positions"`` or ``"loss"``.
    suggestion : str
        A concrete thing to try, e.g. ``"reduce step_size (now 0.5), e.g. to 0.05"``.
    """

    def __init__(self, quantity: str, iteration: int | None = None, suggestion: str = "", detail: str = ""):
        self.quantity, self.iteration, self.suggestion = quantity, iteration, suggestion
        where = f" at iteration {iteration}" if iteration is not None else ""
        detail = f" ({detail})" if detail else ""
        advice = f"; try: {suggestion}" if suggestion else ""
        super().__init__(f"{quantity} diverged{where}{detail}{advice}")


# --- validation helpers ---------------------------------------------------------------------------


MAX_COUNT = 10_000_000  # the default upper bound of any count: points, particles, steps, chains
MAX_GRID = 4096  # cells per side of a grid, bins per axis, width of a network layer
SEED_MAX = 2**63 - 1
MAX_FLOATS = 250_000_000  # the most numbers one recorded history or tensor may hold (1 GB of float32)


def check_positive(
    name: str, value: Any, *, integer: bool = False, allow_zero: bool = False, high: float | None = None
) -> Any:
    """Return ``value`` if it is a finite number > 0 (>= 0 with ``allow_zero``) and <= ``high``, else raise.

    With ``integer=True`` the value must also be an int (bools are rejected) and ``high`` defaults to
    :data:`MAX_COUNT`, so that every size is bounded before anything is allocated.
    """
    kind = "an integer" if integer else "a number"
    high = MAX_COUNT if integer and high is None else high
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (integer and not isinstance(value, int)):
        if not (not integer and isinstance(value, torch.Tensor) and value.numel() == 1):
            raise InvalidArgumentError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
        value = float(value)
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or (high is not None and value > high):
        low = "0" if allow_zero else ("1" if integer else "0 (excluded)")
        span = f"in [{low}, {high:g}]" if high is not None else (">= 0" if allow_zero else "> 0")
        raise InvalidArgumentError(f"{name} must be {kind} {span}, got {value!r}")
    return value


def check_memory(what: str, n_numbers: int) -> None:
    """Refuse, before allocating it, a tensor or recorded history of more than :data:`MAX_FLOATS` numbers."""
    if n_numbers > MAX_FLOATS:
        raise InvalidArgumentError(
            f"{what} would hold {n_numbers:.3g} numbers, more than the {MAX_FLOATS:.3g} allowed (1 GB); "
            "use fewer particles or steps, or record less often"
        )


def check_range(name: str, value: Any, low: float, high: float, *, inclusive: bool = True) -> float:
    """Return ``float(value)`` if it lies in [low, high] (or (low, high) when not inclusive), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    ok = (low <= value <= high) if inclusive else (low < value < high)
    if not ok or not math.isfinite(value):
        br = ("[", "]") if inclusive else ("(", ")")
        raise InvalidArgumentError(f"{name} must be in {br[0]}{low}, {high}{br[1]}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str], *, what: str | None = None) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`UnknownNameError` listing them."""
    choices = sorted(choices)
    if not isinstance(value, str) or value not in choices:
        label = what or name
        raise UnknownNameError(f"unknown {label} {value!r}; valid names: {', '.join(choices)}")
    return value


def check_points(name: str, x: Any, dim: int | None = None) -> torch.Tensor:
    """Validate a batch of points: a floating tensor of shape [n, d] (d == ``dim`` if given), finite.

    Returns the tensor unchanged. Raises :class:`InvalidArgumentError` naming the shape or the first
    non-finite entry.
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidArgumentError(
            f"{name} must be a torch.Tensor of shape [n, {dim or 'd'}], got {type(x).__name__}"
        )
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise InvalidArgumentError(f"{name} must have shape [n, {dim or 'd'}], got {list(x.shape)}")
    if not torch.is_floating_point(x):
        raise InvalidArgumentError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise InvalidArgumentError(f"{name} must hold at least one point, got shape {list(x.shape)}")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
        raise InvalidArgumentError(f"{name} has a non-finite value (NaN or Inf) in row {bad}")
    return x


def check_energy_output(
    energy: Any, n: int, *, where: str = "energy_fn", finite: bool = True
) -> torch.Tensor:
    """Check that an energy function returned a tensor of shape [n], finite unless ``finite=False`` (inside a
    chain a non-finite energy is a divergence for the caller to report)."""
    if not isinstance(energy, torch.Tensor):
        raise InvalidArgumentError(
            f"{where} must return a torch.Tensor of shape [{n}], got {type(energy).__name__}"
        )
    if energy.shape != (n,):
        raise InvalidArgumentError(
            f"{where} must return shape [{n}] (one energy per point), got {list(energy.shape)}"
        )
    if finite and not torch.isfinite(energy).all():
        k = int((~torch.isfinite(energy)).sum())
        raise InvalidArgumentError(f"{where} returned {k} non-finite energies (NaN or Inf) out of {n}")
    return energy


def check_finite_state(
    quantity: str,
    values: torch.Tensor,
    iteration: int | None,
    *,
    bound: float | None = None,
    suggestion: str = "",
) -> None:
    """Raise :class:`DivergenceError` if ``values`` holds NaN/Inf or (with ``bound``) any |value| > bound."""
    # one reduction on the happy path (it runs every iteration); |v| <= bound is False for NaN and Inf too
    values = values.detach()
    ok = torch.isfinite(values).all() if bound is None else (values.abs() <= bound).all()
    if bool(ok):
        return
    k = int((~torch.isfinite(values)).sum())
    if k:
        raise DivergenceError(quantity, iteration, suggestion, detail=f"{k} non-finite values")
    m = float(values.abs().max())  # every value is finite, so some |value| is over the bound
    raise DivergenceError(quantity, iteration, suggestion, detail=f"max |value| {m:.3g} > bound {bound:g}")
