"""A square 2-D grid: exact normalisation, densities, samples and interpolation of an energy.

The grid is *cell-centred*: the box ``[low, high]²`` is cut into ``size × size`` square cells of side
``h = (high - low) / size`` and each cell is represented by its centre ``low + (i + 0.5) h``. So the cells
tile the box exactly and a cell's mass is ``p(centre) · h²`` (the midpoint rule). (The paper's scripts used
a cell of 10/200 with points spaced 10/199, an off-by-one this layout avoids.)

Layout: ``values[iy, ix]`` is the value at ``(xs[ix], xs[iy])``, and ``points`` is row-major,
``points[iy * size + ix] = (xs[ix], xs[iy])``, so ``values.reshape(-1)`` lines up with ``points``.

    log Z  = log Σ_cells exp(-E(c)) h²                 (float64 logsumexp)
    log p  = -E - log Z,   Σ_cells p h² = 1

Mass outside the box is ignored: choose the box so that it holds the target (:meth:`Grid.outside_mass`
estimates what it misses).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pdviz.errors import MAX_GRID, InvalidArgumentError, check_energy_output, check_positive

Tensor = torch.Tensor


class Grid:
    """A cell-centred ``size × size`` grid over ``[low, high]²``.

    Parameters
    ----------
    low, high : float
        The box, ``low < high``.
    size : int
        Cells per side, >= 2.
    dtype : torch.dtype
        dtype of the points handed to energy functions (float32 by default, so neural energies with float32
        weights work); energies are converted to float64 before any sum.

    Attributes
    ----------
    xs : Tensor [size]
        Cell centres along each axis, float64.
    points : Tensor [size * size, 2]
        All cell centres, row-major (``index = iy * size + ix``), in ``dtype``.
    h : float
        Cell side. ``cell_area = h²``.

    Examples
    --------
    >>> g = Grid(-5.0, 5.0, 200)
    >>> round(g.log_z(lambda x: 0.5 * (x**2).sum(1)), 4)   # log 2π
    1.8379
    """

    def __init__(
        self, low: float = -5.0, high: float = 5.0, size: int = 200, dtype: torch.dtype = torch.float32
    ):
        numbers = isinstance(low, (int, float)) and isinstance(high, (int, float))
        if not (numbers and -1e6 < low < high < 1e6 and high - low >= 1e-6):
            msg = f"low < high must be numbers in (-1e6, 1e6) at least 1e-6 apart, got low={low!r}, high={high!r}"
            raise InvalidArgumentError(msg)
        if dtype not in (torch.float32, torch.float64):
            raise InvalidArgumentError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.size = check_positive("size", size, integer=True, high=MAX_GRID)
        if self.size < 2:
            raise InvalidArgumentError(f"size must be an integer >= 2, got {size!r}")
        self.low, self.high, self.dtype = float(low), float(high), dtype
        self.h = (self.high - self.low) / self.size
        self.cell_area = self.h**2
        self.xs = self.low + (torch.arange(self.size, dtype=torch.float64) + 0.5) * self.h
        X, Y = torch.meshgrid(self.xs, self.xs, indexing="xy")  # X[iy, ix] = xs[ix]
        self.points = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1).to(dtype)

    def __repr__(self) -> str:
        return f"Grid(low={self.low:g}, high={self.high:g}, size={self.size})"

    # --- evaluation -------------------------------------------------------------------------------

    def energy(self, energy_fn: Callable[[Tensor], Tensor], batch: int = 20000) -> Tensor:
        """``E`` at every cell centre, ``[size, size]`` float64 indexed ``[iy, ix]``.

        Evaluated without autograd in batches of ``batch`` points (bounded memory).

        Raises
        ------
        InvalidArgumentError
            If ``energy_fn`` returns the wrong shape, or is NaN/Inf on any cell (the message says how many).
        """
        out = []
        with torch.no_grad():
            for chunk in torch.split(self.points, batch):
                e = check_energy_output(energy_fn(chunk), chunk.shape[0], finite=False)  # counted below
                out.append(e.detach().to(torch.float64))
        values = torch.cat(out)
        bad = int((~torch.isfinite(values)).sum())
        if bad:
            raise InvalidArgumentError(
                f"energy_fn is non-finite (NaN or Inf) on {bad} of {values.numel()} grid cells of {self!r}"
            )
        return values.reshape(self.size, self.size)

    def as_energy(self, energy: Callable[[Tensor], Tensor] | Tensor) -> Tensor:
        """Grid energies [size, size] float64: ``energy(fn)``, or a precomputed tensor (metrics reuse one)."""
        if isinstance(energy, torch.Tensor):
            if energy.shape != (self.size, self.size):
                raise InvalidArgumentError(
                    f"grid energies must have shape [{self.size}, {self.size}], got {list(energy.shape)}"
                )
            return energy.to(torch.float64)
        return self.energy(energy)

    def log_z(self, energy_fn: Callable[[Tensor], Tensor] | Tensor) -> float:
        """``log Z = log Σ exp(-E(c)) h²`` over the cells, in float64.

        ``energy_fn`` may also be a precomputed ``[size, size]`` tensor from :meth:`energy` (as for the
        other density methods).
        """
        e = self.as_energy(energy_fn)
        return float(torch.logsumexp(-e.reshape(-1), dim=0)) + math.log(self.cell_area)

    def log_density(self, energy_fn: Callable[[Tensor], Tensor] | Tensor) -> Tensor:
        """Normalised ``log p = -E - log Z`` at the cell centres, ``[size, size]`` float64."""
        e = self.as_energy(energy_fn)
        return -e - self.log_z(e)

    def density(self, energy_fn: Callable[[Tensor], Tensor] | Tensor) -> Tensor:
        """Normalised density ``p`` at the cell centres, ``[size, size]`` float64; ``p.sum() * h² = 1``."""
        return self.log_density(energy_fn).exp()

    def cell_probabilities(self, energy_fn: Callable[[Tensor], Tensor] | Tensor) -> Tensor:
        """Mass of each cell, ``p h²``, ``[size, size]`` float64 summing to 1 (a softmax of ``-E``)."""
        e = self.as_energy(energy_fn)
        return torch.softmax(-e.reshape(-1), dim=0).reshape(self.size, self.size)

    def marginals(self, energy_fn: Callable[[Tensor], Tensor] | Tensor) -> tuple[Tensor, Tensor]:
        """Marginal densities ``p(x₁)`` and ``p(x₂)`` at ``xs``, each ``[size]`` float64 integrating to 1."""
        p = self.density(energy_fn)
        return p.sum(dim=0) * self.h, p.sum(dim=1) * self.h

    def outside_mass(self, energy_fn: Callable[[Tensor], Tensor], cells: int = 30) -> float:
        """Share of the mass of ``exp(-E)`` outside the box, on a grid three times as wide.

        The wide grid has ``3 · cells`` cells per side with the box exactly its middle ``cells × cells``:
        ``1 - Σ_box p h² / Σ_all p h²`` (``cells`` = 30: 8 100 evaluations). Mass beyond the wide grid is
        missed too, so this is a lower bound. The log-likelihood on this grid is ``-log(1 - share)`` too high.
        """
        width = self.high - self.low
        wide = Grid(self.low - width, self.high + width, 3 * cells, dtype=self.dtype)
        p = wide.cell_probabilities(energy_fn)
        return max(0.0, 1.0 - float(p[cells : 2 * cells, cells : 2 * cells].sum()))

    # --- sampling ---------------------------------------------------------------------------------

    def sample(
        self, energy_fn: Callable[[Tensor], Tensor] | Tensor, n: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Exact samples of the grid density: a cell by its mass, then a uniform point inside it.

        So the samples follow the piecewise-constant density that equals ``p`` on each cell.

        Returns
        -------
        Tensor [n, 2], float32.
        """
        n = check_positive("n", n, integer=True)
        probs = self.cell_probabilities(energy_fn).reshape(-1)
        idx = torch.multinomial(probs, n, replacement=True, generator=generator)
        iy, ix = idx // self.size, idx % self.size
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        cells = torch.stack([ix, iy], dim=1).to(torch.float64)
        return (self.low + (cells + u) * self.h).float()

    # --- points <-> grid --------------------------------------------------------------------------

    def interpolate(self, values: Tensor, x: Tensor) -> Tensor:
        """Bilinear interpolation of grid values at points.

        Parameters
        ----------
        values : Tensor [size, size, *rest]
            Values at the cell centres, indexed ``[iy, ix]`` (``rest`` e.g. ``(2,)`` for a vector field).
        x : Tensor [n, 2]
            Points. Outside the square spanned by the outermost centres (the box less h/2 on each side)
            coordinates are clamped to it, i.e. the edge values extend as constants.

        Returns
        -------
        Tensor [n, *rest], in the dtype of ``x`` (computed in float64).
        """
        v = values.to(torch.float64)
        # Continuous index of x in units of cells, centre i at position i.
        u = ((x.to(torch.float64) - self.low) / self.h - 0.5).clamp(0.0, self.size - 1.0)
        i0 = u.floor().clamp(max=self.size - 2).long()
        f = u - i0
        ix, iy = i0[:, 0], i0[:, 1]
        fx, fy = f[:, 0], f[:, 1]
        extra = (None,) * (v.ndim - 2)
        fx, fy = fx[(slice(None), *extra)], fy[(slice(None), *extra)]
        out = (
            (1 - fx) * (1 - fy) * v[iy, ix]
            + fx * (1 - fy) * v[iy, ix + 1]
            + (1 - fx) * fy * v[iy + 1, ix]
            + fx * fy * v[iy + 1, ix + 1]
        )
        return out.to(x.dtype)

    def bin_counts(self, x: Tensor, bins: int, weights: Tensor | None = None) -> Tensor:
        """Histogram of points on a ``bins × bins`` partition of the box: [bins, bins] float64 [iy, ix].

        Points outside the box are counted in the nearest edge bin (coordinates clamped), so the counts
        always sum to ``n`` (to ``Σ weights`` with ``weights`` [n], one per point).
        """
        width = (self.high - self.low) / bins
        b = ((x.detach().cpu().to(torch.float64) - self.low) / width).floor().clamp(0, bins - 1).long()
        flat = b[:, 1] * bins + b[:, 0]
        w = None if weights is None else weights.detach().cpu().to(torch.float64)
        return torch.bincount(flat, weights=w, minlength=bins * bins).to(torch.float64).reshape(bins, bins)

    def bin_probabilities(self, energy_fn: Callable[[Tensor], Tensor] | Tensor, bins: int) -> Tensor:
        """Grid mass of each bin of a ``bins × bins`` partition of the box, ``[bins, bins]`` float64.

        The grid density is constant on each cell, so a bin's mass is the sum over cells of the cell mass
        times the fraction of the cell inside the bin (exact, whether or not ``bins`` divides ``size``).
        """
        a = self._overlap(bins)  # [bins, size]
        return a @ self.cell_probabilities(energy_fn) @ a.T

    def _overlap(self, bins: int) -> Tensor:
        """``A[b, i]`` = fraction of cell ``i`` (along one axis) that lies in bin ``b``; columns sum to 1."""
        cell_lo = torch.arange(self.size, dtype=torch.float64) / self.size  # box scaled to [0, 1]
        bin_lo = torch.arange(bins, dtype=torch.float64) / bins
        lo = torch.maximum(cell_lo[None, :], bin_lo[:, None])
        hi = torch.minimum(cell_lo[None, :] + 1.0 / self.size, bin_lo[:, None] + 1.0 / bins)
        return (hi - lo).clamp(min=0.0) * self.size
