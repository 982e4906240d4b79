"""Figures of recorded results: densities, particle clouds, vector fields, curves and the paper's layout.

One call makes one figure and returns a :class:`matplotlib.figure.Figure`. Functions that draw a single
panel also take ``ax=`` to draw into an existing axes (then they return that axes' figure). Nothing here
runs a sampler, a flow or a training step: the functions read tensors and recorded histories, and only
evaluate energies on a :class:`pdviz.grid.Grid` to draw densities.

Figures are built without pyplot (``matplotlib.figure.Figure``), so no global figure list grows and a
notebook shows a returned figure exactly once; save one with ``fig.savefig(path)``.

Style, shared with :mod:`pdviz.animation`:

- densities use ``DENSITY_CMAP`` (viridis); backgrounds under particles use ``BACKGROUND_CMAP`` (a light
  grey ramp) so the coloured particles stay visible on top of every part of the density;
- each method has one colour from the Okabe-Ito palette (safe for the common colour-vision deficiencies)
  in :data:`METHOD_COLORS`, and a display name in :data:`METHOD_LABELS`;
- densities are per unit area on the grid's box, shown with ``imshow`` (``origin="lower"``) and one
  colour bar; panels that compare densities share one colour scale.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.colors as mcolors
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter

from pdviz.errors import InvalidArgumentError, UnknownNameError, check_choice, check_positive

# --- shared style ----------------------------------------------------------------------------------

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: One colour per method name, shared by every figure and animation.
METHOD_COLORS: dict[str, str] = {
    # samplers on a fixed energy
    "exact": OKABE_ITO["bluish_green"],
    "ula": OKABE_ITO["vermillion"],
    "mala": OKABE_ITO["blue"],
    # negative-sample strategies of training
    "target": OKABE_ITO["black"],
    "data": OKABE_ITO["black"],
    "short-run": OKABE_ITO["yellow"],
    "replay": OKABE_ITO["orange"],
    "pcd": OKABE_ITO["vermillion"],
    "pd-alpha": OKABE_ITO["sky_blue"],
    "pd-beta": OKABE_ITO["blue"],
    "pd-gamma": OKABE_ITO["reddish_purple"],
    "pd-exact": OKABE_ITO["bluish_green"],
    "pd-weighted": OKABE_ITO["reddish_purple"],
    # flows that track a moving density
    "langevin": OKABE_ITO["vermillion"],
    "pd": OKABE_ITO["blue"],
    "svgd": OKABE_ITO["orange"],
}

#: Display names; unknown names are shown as given.
METHOD_LABELS: dict[str, str] = {
    "exact": "exact (grid)",
    "ula": "ULA",
    "mala": "MALA",
    "target": "target",
    "data": "data",
    "short-run": "short-run",
    "replay": "replay buffer",
    "pcd": "PCD",
    "pd-alpha": "PD-α",
    "pd-beta": "PD-β",
    "pd-gamma": "PD-γ",
    "pd-exact": "PD (exact field)",
    "pd-weighted": "PD (weighted)",
    "langevin": "Langevin",
    "pd": "PD",
    "svgd": "SVGD",
}

#: The paper's column order for training comparisons; other names follow in the order given.
COLUMN_ORDER: tuple[str, ...] = (
    "short-run",
    "replay",
    "pcd",
    "pd-alpha",
    "pd-beta",
    "pd-exact",
    "pd-weighted",
    "pd-gamma",
)

DENSITY_CMAP = "viridis"
BACKGROUND_CMAP = "Greys"
FIELD_CMAP = "PuOr_r"  # diverging, colour-blind safe; for signed quantities such as dE/dt
# Background densities use only the light part of the grey ramp: the peak maps to this fraction of
# BACKGROUND_CMAP, so particles drawn on top stay visible everywhere.
_BACKGROUND_DEPTH = 0.7
_EXTRA_COLORS = [OKABE_ITO[k] for k in ("sky_blue", "orange", "reddish_purple", "yellow", "bluish_green")]

_METRIC_LABELS = {
    "kl": "KL",
    "acceptance_rate": "acceptance",
    "acceptance": "acceptance",
    "mmd2": "MMD²",
    "log_likelihood": "log-lik.",
    "mode_weight_spread": "mode spread",
    "ess": "ESS",
    "n_grad": "grad evals",
}


def method_color(name: str, index: int = 0) -> str:
    """The colour of method ``name``: from :data:`METHOD_COLORS`, else a palette colour chosen by ``index``."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    return _EXTRA_COLORS[index % len(_EXTRA_COLORS)]


def method_label(name: str) -> str:
    """The display name of method ``name`` (from :data:`METHOD_LABELS`, else ``name`` itself)."""
    return METHOD_LABELS.get(name, name)


def format_metrics(metrics: Mapping[str, Any] | None) -> str:
    """One line of numbers for a panel, e.g. ``"KL 0.120 · acceptance 0.57"``; skips missing values."""
    if metrics is not None and not isinstance(metrics, Mapping):
        raise InvalidArgumentError(
            f"metrics must be a dict of name -> number or None, got {type(metrics).__name__}"
        )
    if not metrics:
        return ""
    parts = []
    for key, value in metrics.items():
        if value is None:
            continue
        if isinstance(value, torch.Tensor):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            continue
        label = _METRIC_LABELS.get(key, key)
        if key == "n_grad" or (isinstance(value, int) and not isinstance(value, bool)):
            parts.append(f"{label} {int(value):,}")
        elif isinstance(value, float):
            parts.append(f"{label} {_fmt(value)}")
        else:
            parts.append(f"{label} {value}")
    return " · ".join(parts)


def _fmt(value: float) -> str:
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.3g}" if abs(value) >= 10 else f"{value:.3f}"


# --- input checks and conversions ------------------------------------------------------------------


class NotebookFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter without pyplot.

    pyplot registers Jupyter's figure formatter only once it is imported; pdviz builds figures without
    pyplot (nothing accumulates in a global figure list), so the figure renders itself instead.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        return buf.getvalue()


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with an Agg canvas and constrained layout (``width`` x ``height`` inches)."""
    fig = NotebookFigure(figsize=(width, height), layout="constrained", dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _check_ax(ax: Any) -> None:
    if ax is not None and not isinstance(ax, Axes):
        raise InvalidArgumentError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")


def _check_cmap(cmap: Any) -> None:
    if isinstance(cmap, mcolors.Colormap):
        return
    check_choice("cmap", cmap, mpl.colormaps, what="colour map")


def _check_color(name: str, color: Any) -> None:
    if not mcolors.is_color_like(color):
        raise InvalidArgumentError(
            f"{name} must be a matplotlib colour (e.g. 'C0', '#0072B2', 'black'), got {color!r}"
        )


def check_grid(grid: Any) -> Any:
    """Return ``grid`` if it looks like a :class:`pdviz.grid.Grid` (has ``xs``, ``h``, ``points``), else raise."""
    if not all(hasattr(grid, a) for a in ("xs", "h", "points")):
        raise InvalidArgumentError(
            f"grid must be a pdviz.grid.Grid (with xs, h and points), got {type(grid).__name__}"
        )
    return grid


def grid_extent(grid: Any) -> tuple[float, float]:
    """The box ``(low, high)`` covered by the cells of ``grid`` (cell-centred: ``xs[0] - h/2``...)."""
    check_grid(grid)
    h = float(grid.h)
    return float(grid.xs[0]) - h / 2, float(grid.xs[-1]) + h / 2


def _grid_size(grid: Any) -> int:
    return int(len(grid.xs))


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{name} must be a tensor or array of numbers, got {type(value).__name__}"
        ) from None


def check_points_2d(name: str, x: Any) -> np.ndarray:
    """``x`` as a float numpy array of shape [n, 2] with finite values, else an :class:`InvalidArgumentError`."""
    arr = _to_numpy(name, x)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InvalidArgumentError(f"{name} must have shape [n, 2], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise InvalidArgumentError(f"{name} must hold at least one point, got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        bad = int(np.nonzero(~np.isfinite(arr).all(axis=1))[0][0])
        raise InvalidArgumentError(f"{name} has a non-finite value (NaN or Inf) in row {bad}")
    return arr


def _check_grid_array(name: str, value: Any, grid: Any) -> np.ndarray:
    arr = _to_numpy(name, value)
    size = _grid_size(grid)
    if arr.shape != (size, size):
        raise InvalidArgumentError(
            f"{name} must have the grid's shape [{size}, {size}], got {list(arr.shape)}"
        )
    return arr


def _check_mapping(name: str, value: Any) -> dict:
    if not isinstance(value, Mapping) or len(value) == 0:
        raise InvalidArgumentError(
            f"{name} must be a non-empty dict of name -> value, got {type(value).__name__}"
            + (" (empty)" if isinstance(value, Mapping) else "")
        )
    for key in value:
        if not isinstance(key, str):
            raise InvalidArgumentError(f"{name} keys must be method names (str), got {key!r}")
    return dict(value)


def log_density_on_grid(energy: Callable | Any, grid: Any, *, name: str = "energy") -> np.ndarray:
    """The normalised log-density on ``grid`` as a float64 array [size, size] indexed [iy, ix].

    Parameters
    ----------
    energy : callable or array
        An energy function ``x [n, 2] -> E [n]`` (evaluated with ``grid.log_density``), or an array
        [size, size] of log-densities on the grid, normalised or not (e.g. ``-E`` values); it is
        normalised here so that ``sum(exp(log p)) * cell_area = 1``.
    grid : pdviz.grid.Grid
    """
    check_grid(grid)
    if callable(energy) and not isinstance(energy, (torch.Tensor, np.ndarray)):
        return _to_numpy(name, grid.log_density(energy))
    arr = _check_grid_array(name, energy, grid)
    finite = np.isfinite(arr)
    if not finite.any():
        raise InvalidArgumentError(f"{name} has no finite log-density value on the grid")
    arr = np.where(finite, arr, -np.inf)
    top = arr.max()
    log_norm = top + math.log(np.exp(arr - top).sum() * float(grid.cell_area))
    return arr - log_norm


def density_on_grid(energy: Callable | Any, grid: Any, *, name: str = "energy") -> np.ndarray:
    """The normalised density ``p`` on ``grid`` (per unit area), float64 [size, size]; see
    :func:`log_density_on_grid` for the accepted inputs."""
    return np.exp(log_density_on_grid(energy, grid, name=name))


def energy_grid_to_density(values: Any, grid: Any, *, name: str = "energy values") -> np.ndarray:
    """Density per unit area from energy VALUES [size, size] on the grid: ``exp(-E) / Z`` (normalised here)."""
    arr = _check_grid_array(name, values, grid)
    return density_on_grid(-arr, grid, name=name)


def _order_methods(names: Sequence[str]) -> list[str]:
    known = [n for n in COLUMN_ORDER if n in names]
    return known + [n for n in names if n not in known]


def _style_xy(ax: Axes, low: float, high: float) -> None:
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def _density_image(ax: Axes, p: np.ndarray, low: float, high: float, norm, cmap: str):
    return ax.imshow(
        p,
        origin="lower",
        extent=(low, high, low, high),
        cmap=cmap,
        norm=norm,
        interpolation="nearest",
        aspect="equal",
    )


def background_norm(vmax: float) -> mcolors.Normalize:
    """The colour scale of a background density of peak ``vmax`` (see ``_BACKGROUND_DEPTH``)."""
    return mcolors.Normalize(vmin=0.0, vmax=max(vmax, 1e-300) / _BACKGROUND_DEPTH)


def _corner_text(ax: Axes, text: str, *, loc: str = "upper left", fontsize: float = 8) -> None:
    if not text:
        return
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    ax.text(
        x,
        y,
        text,
        transform=ax.transAxes,
        ha=ha,
        va=va,
        fontsize=fontsize,
        bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
    )


# --- densities ------------------------------------------------------------------------------------


def plot_density(
    energy: Callable | Any,
    grid: Any,
    ax: Axes | None = None,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = DENSITY_CMAP,
    title: str | None = None,
    colorbar: bool = True,
) -> Figure:
    """One density on the grid's box, with a colour bar.

    Parameters
    ----------
    energy : callable or array [size, size]
        An energy ``E(x)`` (``p ∝ exp(-E)``) or log-density values on the grid (normalised here).
    grid : pdviz.grid.Grid
    ax : matplotlib Axes, optional
        Draw into this axes; a new figure otherwise.
    log : bool
        Show ``log p`` (floored 12 nats below its peak) instead of ``p``.
    vmin, vmax : float, optional
        Colour range (defaults: 0 and the peak, or peak - 12 and peak for ``log``).
    cmap, title, colorbar
        Colour map, panel title (default "density p(x)"), whether to add a colour bar.

    Returns
    -------
    Figure
    """
    _check_cmap(cmap)
    low, high = grid_extent(grid)
    logp = log_density_on_grid(energy, grid)
    values, label = (logp, "log p(x)") if log else (np.exp(logp), "p(x) per unit area")
    if log:
        top = float(values.max())
        vmax = top if vmax is None else vmax
        vmin = top - 12.0 if vmin is None else vmin
        values = np.maximum(values, vmin)
    else:
        vmin = 0.0 if vmin is None else vmin
        vmax = float(values.max()) if vmax is None else vmax
    if not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        raise InvalidArgumentError(f"vmin < vmax (finite) required, got vmin={vmin!r}, vmax={vmax!r}")
    _check_ax(ax)
    if ax is None:
        fig = new_figure(4.2, 3.6)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    im = _density_image(ax, values, low, high, mcolors.Normalize(vmin=vmin, vmax=vmax), cmap)
    _style_xy(ax, low, high)
    ax.set_title(title if title is not None else ("log-density" if log else "density p(x)"))
    if colorbar:
        fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    return fig


def plot_densities(
    energies: Mapping[str, Callable | Any],
    grid: Any,
    *,
    log: bool = False,
    ncols: int | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    panel_size: float = 3.0,
) -> Figure:
    """Several densities side by side on ONE shared colour scale (so brightness compares across panels).

    Parameters
    ----------
    energies : dict name -> energy function or log-density array [size, size]
    grid : pdviz.grid.Grid
    log : bool
        Show ``log p`` (range: the highest peak and 12 nats below) instead of ``p``.
    ncols : int, optional
        Panels per row (default: all in one row, at most 4).
    metrics : dict name -> dict of numbers, optional
        Printed inside each panel (e.g. ``{"log_likelihood": -2.9}``).

    Returns
    -------
    Figure with ``len(energies)`` image axes and one colour bar axes.
    """
    energies = _check_mapping("energies", energies)
    n = len(energies)
    ncols = min(n, 4) if ncols is None else int(check_positive("ncols", ncols, integer=True))
    nrows = math.ceil(n / ncols)
    low, high = grid_extent(grid)
    logps = {name: log_density_on_grid(e, grid, name=f"energies[{name!r}]") for name, e in energies.items()}
    if log:
        vmax = max(float(v.max()) for v in logps.values())
        vmin = vmax - 12.0
        values = {k: np.maximum(v, vmin) for k, v in logps.items()}
        label = "log p(x)"
    else:
        values = {k: np.exp(v) for k, v in logps.items()}
        vmin, vmax = 0.0, max(float(v.max()) for v in values.values())
        label = "p(x) per unit area"
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax)
    fig = new_figure(panel_size * ncols + 0.9, panel_size * nrows + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    im = None
    for k, (name, v) in enumerate(values.items()):
        ax = axes[k // ncols, k % ncols]
        im = _density_image(ax, v, low, high, norm, DENSITY_CMAP)
        _style_xy(ax, low, high)
        ax.set_title(method_label(name))
        if metrics and name in metrics:
            _corner_text(ax, format_metrics(metrics[name]), loc="lower left")
    for k in range(n, nrows * ncols):
        fig.delaxes(axes[k // ncols, k % ncols])
    fig.colorbar(im, ax=[a for a in axes.ravel() if a in fig.axes], label=label, shrink=0.9)
    return fig


# --- particles ------------------------------------------------------------------------------------


def ess_of_weights(weights: np.ndarray) -> float:
    """Effective sample size ``(Σw)² / Σw²`` of non-negative weights."""
    return float(weights.sum() ** 2 / (weights**2).sum())


def _check_weights(weights: Any, log_weights: Any, n: int) -> np.ndarray | None:
    if weights is not None and log_weights is not None:
        raise InvalidArgumentError("give weights or log_weights, not both")
    if log_weights is not None:
        lw = _to_numpy("log_weights", log_weights).reshape(-1)
        if lw.shape != (n,) or not np.isfinite(lw).all():
            raise InvalidArgumentError(
                f"log_weights must be {n} finite numbers (one per particle), got {list(lw.shape)}"
            )
        return np.exp(lw - lw.max())
    if weights is None:
        return None
    w = _to_numpy("weights", weights).reshape(-1)
    if w.shape != (n,):
        raise InvalidArgumentError(
            f"weights must hold {n} numbers (one per particle), got shape {list(w.shape)}"
        )
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InvalidArgumentError("weights must be finite, >= 0 and not all zero")
    return w


def plot_particles(
    x: Any,
    ax: Axes | None = None,
    *,
    kind: str = "scatter",
    weights: Any = None,
    log_weights: Any = None,
    grid: Any = None,
    background: Callable | Any | None = None,
    color: str | None = None,
    bins: int = 80,
    title: str | None = None,
    max_points: int = 5000,
    size: float = 4.0,
) -> Figure:
    """A cloud of particles as a scatter plot or a 2-D histogram.

    Parameters
    ----------
    x : tensor or array [n, 2]
    ax : matplotlib Axes, optional
    kind : "scatter" or "hist2d"
    weights, log_weights : [n], optional
        Importance weights (give one of them). In a scatter they set marker area and colour (a colour bar
        shows ``w · n``, 1 = uniform); in a histogram they weight the counts. The title shows the
        effective sample size ``ESS = (Σw)² / Σw²``.
    grid : pdviz.grid.Grid, optional
        Fixes the axes to the grid's box (otherwise the data's range) and the histogram's bins.
    background : energy function or log-density array, optional
        A density drawn under a scatter in a light grey ramp (needs ``grid``).
    color : str, optional
        Marker colour (default: Okabe-Ito blue).
    bins : int
        Histogram bins per axis.
    max_points : int
        A scatter draws at most this many particles (an evenly spaced subset), to keep figures light.

    Returns
    -------
    Figure
    """
    pts = check_points_2d("x", x)
    check_choice("kind", kind, ("scatter", "hist2d"), what="plot kind")
    w = _check_weights(weights, log_weights, pts.shape[0])
    bins = int(check_positive("bins", bins, integer=True))
    max_points = int(check_positive("max_points", max_points, integer=True))
    if color is not None:
        _check_color("color", color)
    if grid is not None:
        low, high = grid_extent(grid)
    else:
        if background is not None:
            raise InvalidArgumentError("background needs grid= (the grid the density is evaluated on)")
        low, high = float(pts.min()), float(pts.max())
        pad = 0.05 * (high - low) + 1e-3
        low, high = low - pad, high + pad
    _check_ax(ax)
    if ax is None:
        fig = new_figure(4.2, 3.6)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    color = color or OKABE_ITO["blue"]
    if kind == "hist2d":
        edges = np.linspace(low, high, bins + 1)
        counts, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=[edges, edges], weights=w)
        dens = counts.T / (counts.sum() * (edges[1] - edges[0]) ** 2)
        im = _density_image(
            ax, dens, low, high, mcolors.Normalize(0.0, float(dens.max()) or 1.0), DENSITY_CMAP
        )
        fig.colorbar(im, ax=ax, label="particle density per unit area", shrink=0.9)
    else:
        if background is not None:
            p = density_on_grid(background, grid, name="background")
            _density_image(ax, p, low, high, background_norm(float(p.max())), BACKGROUND_CMAP)
        keep = _subset(pts.shape[0], max_points)
        if w is None:
            ax.scatter(pts[keep, 0], pts[keep, 1], s=size, color=color, alpha=0.7, linewidths=0)
        else:
            rel = w[keep] * pts.shape[0] / w.sum()
            sc = ax.scatter(
                pts[keep, 0],
                pts[keep, 1],
                s=size * np.clip(rel, 0.05, 20.0),
                c=rel,
                cmap="cividis",
                norm=mcolors.LogNorm(
                    vmin=max(float(rel.min()), 1e-3), vmax=max(float(rel.max()), 1e-3 * 1.01)
                ),
                alpha=0.8,
                linewidths=0,
            )
            fig.colorbar(sc, ax=ax, label="weight × n (1 = uniform)", shrink=0.9)
    _style_xy(ax, low, high)
    base = title if title is not None else f"{pts.shape[0]:,} particles"
    if w is not None:
        base += f" (ESS {ess_of_weights(w):,.0f} of {pts.shape[0]:,})"
    ax.set_title(base)
    return fig


def _subset(n: int, cap: int) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.linspace(0, n - 1, cap).round().astype(int)


# --- vector fields --------------------------------------------------------------------------------


def plot_field(
    U: Any,
    V: Any,
    grid: Any,
    ax: Axes | None = None,
    *,
    kind: str = "quiver",
    background: Any = None,
    arrows: int = 20,
    color: str = "black",
    title: str | None = None,
    background_label: str = "∂E/∂t",
) -> Figure:
    """A vector field on the grid (arrows or streamlines), over a signed background such as ``∂_t E``.

    Parameters
    ----------
    U, V : arrays [size, size]
        The field's x1 and x2 components at the grid's cell centres, indexed [iy, ix].
    grid : pdviz.grid.Grid
    ax : matplotlib Axes, optional
    kind : "quiver" or "stream"
    background : array [size, size], optional
        Drawn with a diverging colour map centred at 0 and a colour bar labelled ``background_label``.
    arrows : int
        Arrows per axis for ``quiver`` (the grid is subsampled), density scale for ``stream``.
    color, title
        Arrow colour, panel title.

    Returns
    -------
    Figure
    """
    check_choice("kind", kind, ("quiver", "stream"), what="field kind")
    _check_color("color", color)
    arrows = int(check_positive("arrows", arrows, integer=True))
    u = _check_grid_array("U", U, grid)
    v = _check_grid_array("V", V, grid)
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise InvalidArgumentError("U and V must be finite everywhere on the grid")
    low, high = grid_extent(grid)
    xs = _to_numpy("grid.xs", grid.xs)
    _check_ax(ax)
    if ax is None:
        fig = new_figure(4.4, 3.6)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if background is not None:
        b = _check_grid_array("background", background, grid)
        lim = float(np.nanmax(np.abs(b))) or 1.0
        im = _density_image(ax, b, low, high, mcolors.Normalize(-lim, lim), FIELD_CMAP)
        fig.colorbar(im, ax=ax, label=background_label, shrink=0.9)
    if kind == "quiver":
        stride = max(1, len(xs) // arrows)
        sl = slice(stride // 2, None, stride)
        ax.quiver(xs[sl], xs[sl], u[sl, sl], v[sl, sl], color=color, angles="xy", pivot="mid", width=0.004)
    else:
        speed = np.hypot(u, v)
        lw = 0.4 + 1.6 * speed / (speed.max() or 1.0)
        ax.streamplot(xs, xs, u, v, color=color, density=arrows / 20.0, linewidth=lw, arrowsize=0.8)
    _style_xy(ax, low, high)
    ax.set_title(title if title is not None else "velocity field")
    return fig


# --- curves ---------------------------------------------------------------------------------------

_CURVE_PANELS = ("loss", "log_likelihood", "mmd2", "mode_weight_spread")
_X_AXES = {
    "iteration": "iteration",
    "cpu_time": "CPU time (s)",
    "wall_time": "wall-clock time (s)",
    "n_grad": "gradient evaluations",
}


def _history_dict(name: str, h: Any) -> dict:
    d = h.to_dict() if hasattr(h, "to_dict") else h
    if not isinstance(d, Mapping) or "iteration" not in d:
        raise InvalidArgumentError(
            f"histories[{name!r}] must be a TrainHistory or its to_dict() (with 'iteration'), got {type(h).__name__}"
        )
    return dict(d)


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    core = np.convolve(y, kernel, mode="valid")
    return np.concatenate([np.full(window - 1, np.nan), core])


def plot_training_curves(
    histories: Mapping[str, Any],
    *,
    bound: float | None = -2.84,
    x: str = "iteration",
    panels: Sequence[str] = _CURVE_PANELS,
) -> Figure:
    """Training curves of several runs: loss, held-out log-likelihood (with the bound), MMD², mode spread.

    Parameters
    ----------
    histories : dict name -> TrainHistory or its ``to_dict()``
        Per-iteration lists ``iteration``, ``loss`` (and ``cpu_time``, ``wall_time``, ``n_grad``), and
        ``evals``: dicts with ``iteration``, ``log_likelihood``, ``mmd2``, ``mode_weight_spread``.
    bound : float or None
        The data-entropy bound on the held-out log-likelihood (-2.84 nats for 8gaussians), drawn dashed.
    x : "iteration", "cpu_time", "wall_time" or "n_grad"
        The horizontal axis.
    panels : subset of ("loss", "log_likelihood", "mmd2", "mode_weight_spread")
        Which panels to draw, in order; a panel with no recorded values says so.

    Returns
    -------
    Figure with ``len(panels)`` axes.
    """
    histories = _check_mapping("histories", histories)
    check_choice("x", x, _X_AXES, what="x axis")
    panels = list(panels)
    if not panels:
        raise InvalidArgumentError(f"panels must name at least one of {', '.join(_CURVE_PANELS)}")
    for p in panels:
        check_choice("panels", p, _CURVE_PANELS, what="panel")
    if bound is not None and (
        isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound)
    ):
        raise InvalidArgumentError(f"bound must be a finite number or None, got {bound!r}")
    data = {name: _history_dict(name, h) for name, h in histories.items()}
    fig = new_figure(3.6 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    has_data = {p: False for p in panels}
    for k, (name, d) in enumerate(data.items()):
        color = method_color(name, k)
        it = np.asarray(d.get("iteration", []), dtype=float)
        if "loss" in panels and len(d.get("loss", []) or []) not in (0, len(it)):
            raise InvalidArgumentError(
                f"histories[{name!r}]: loss must have one value per iteration ({len(it)}), got {len(d['loss'])}"
            )
        if x != "iteration" and (x not in d or len(d[x]) != len(it)):
            raise InvalidArgumentError(
                f"histories[{name!r}] has no per-iteration {x!r} values to plot against"
            )
        xv = it if x == "iteration" else np.asarray(d[x], dtype=float)
        evals = list(d.get("evals", []) or [])
        e_it = np.asarray([e.get("iteration", np.nan) for e in evals], dtype=float)
        # evals carry iterations; map them onto the chosen x axis through the per-iteration record
        e_x = e_it if x == "iteration" or len(it) == 0 else np.interp(e_it, it, xv)
        for ax, panel in zip(axes, panels):
            if panel == "loss":
                loss = np.asarray(d.get("loss", []), dtype=float)
                if len(loss) == 0:
                    continue
                has_data[panel] = True
                ax.plot(xv, loss, color=color, alpha=0.25, lw=0.8)
                ax.plot(
                    xv, _smooth(loss, max(1, len(loss) // 30)), color=color, lw=1.6, label=method_label(name)
                )
            else:
                y = np.asarray([_num(e.get(panel)) for e in evals], dtype=float)
                ok = np.isfinite(y) & np.isfinite(e_x)
                if not ok.any():
                    continue
                has_data[panel] = True
                ax.plot(e_x[ok], y[ok], "o-", ms=3, color=color, lw=1.6, label=method_label(name))
    titles = {
        "loss": ("contrastive loss", "mean E(data) − mean E(negatives)"),
        "log_likelihood": ("held-out log-likelihood", "nats per point"),
        "mmd2": ("MMD² (particles vs data)", "MMD²"),
        "mode_weight_spread": ("mode-weight spread", "max − min share (0 = equal)"),
    }
    for ax, panel in zip(axes, panels):
        ax.set_title(titles[panel][0])
        ax.set_ylabel(titles[panel][1])
        ax.set_xlabel(_X_AXES[x])
        ax.grid(alpha=0.3)
        if not has_data[panel]:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center", color="0.4")
            continue
        if panel == "log_likelihood" and bound is not None:
            ax.axhline(bound, color="0.2", ls="--", lw=1.2, label=f"data-entropy bound ({bound:.2f})")
        if panel == "mmd2":
            # unbiased MMD² dips below zero near convergence; symlog keeps those points visible
            ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=8, loc="best")
    return fig


def _num(v: Any) -> float:
    if v is None:
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def plot_tracking(
    histories: Mapping[str, Any],
    *,
    floor: float | Sequence[float] | None = None,
    ess: bool = False,
) -> Figure:
    """How well particles track a moving density: KL to the exact density against time and against cost.

    Parameters
    ----------
    histories : dict name -> TrackHistory (or a dict with ``times``, ``kl``, ``n_grad``, ``ess``)
    floor : float or sequence, optional
        The KL that exact samples of the same size reach (``pdviz.metrics.kl_floor``): one number, or one
        per recorded time of the first history. Drawn dashed: no method can beat it with this many particles.
    ess : bool
        Add a third panel with the effective sample size of each method's weights.

    Returns
    -------
    Figure with 2 axes (3 with ``ess``).
    """
    histories = _check_mapping("histories", histories)
    n_panels = 3 if ess else 2
    fig = new_figure(3.8 * n_panels, 3.3)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    first_times = None
    all_kl = []
    for k, (name, h) in enumerate(histories.items()):
        times, kl, n_grad = (_field(h, key) for key in ("times", "kl", "n_grad"))
        if times is None or kl is None or n_grad is None:
            raise InvalidArgumentError(
                f"histories[{name!r}] must be a TrackHistory (times, kl, n_grad), got {type(h).__name__}"
            )
        t, kv, g = (
            _to_numpy(f"histories[{name!r}].{a}", v).reshape(-1)
            for a, v in (("times", times), ("kl", kl), ("n_grad", n_grad))
        )
        if not (len(t) == len(kv) == len(g)):
            raise InvalidArgumentError(
                f"histories[{name!r}]: times, kl and n_grad must have one value per record, got {len(t)}, {len(kv)}, {len(g)}"
            )
        first_times = t if first_times is None else first_times
        all_kl.append(kv)
        color, label = method_color(name, k), method_label(name)
        axes[0].plot(t, kv, "-", color=color, lw=1.8, label=label)
        axes[1].plot(g, kv, "-", color=color, lw=1.8, label=label)
        if ess:
            e = _field(h, "ess")
            if e is not None:
                axes[2].plot(
                    t, _to_numpy(f"histories[{name!r}].ess", e).reshape(-1), color=color, lw=1.8, label=label
                )
    if floor is not None:
        if isinstance(floor, (int, float)) and not isinstance(floor, bool):
            for ax in axes[:2]:
                ax.axhline(float(floor), color="0.2", ls="--", lw=1.2, label="exact-sample floor")
        else:
            f = _to_numpy("floor", floor).reshape(-1)
            if len(f) != len(first_times):
                raise InvalidArgumentError(
                    f"floor must be one number or {len(first_times)} (one per time of the first history), got {len(f)}"
                )
            axes[0].plot(first_times, f, ls="--", color="0.2", lw=1.2, label="exact-sample floor")
            axes[1].axhline(
                float(np.mean(f)), color="0.2", ls="--", lw=1.2, label="exact-sample floor (mean)"
            )
    if all(np.all(v > 0) for v in all_kl):
        for ax in axes[:2]:
            ax.set_yscale("log")
    axes[0].set(title="KL to the moving density", xlabel="time t", ylabel="KL(particles ‖ p_t) (nats)")
    axes[1].set(title="KL against cost", xlabel="gradient evaluations (cumulative)", ylabel="KL (nats)")
    if ess:
        axes[2].set(title="effective sample size", xlabel="time t", ylabel="ESS (of n particles)")
        axes[2].set_ylim(bottom=0)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


# --- the paper's comparison and the sampler comparison ---------------------------------------------


def plot_comparison(
    models: Mapping[str, Callable | Any],
    particles: Mapping[str, Any],
    grid: Any,
    *,
    target: Callable | Any | None = None,
    data: Any = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    log: bool = False,
    panel_size: float = 2.6,
    max_points: int = 3000,
) -> Figure:
    """The paper's figure: one column per method, learned density on top, its particles below.

    Columns: the target first (if given), then the methods in the paper's order (replay buffer, PCD,
    PD-α, PD-β, PD-γ, then any others). All densities share one colour scale and one colour bar.

    Parameters
    ----------
    models : dict name -> energy function or log-density array [size, size]
        The learned energies (a name may be missing here if it only has particles).
    particles : dict name -> [n, 2]
        Each method's negative samples (a name may be missing if it only has a model).
    grid : pdviz.grid.Grid
    target : energy function, log-density array, or data points [n, 2], optional
        The target column: a density, or data (a smoothed histogram on top, the points below).
    data : [n, 2], optional
        Data points drawn below a target given as a density (otherwise that panel says "no particles").
    metrics : dict name -> dict, optional
        Numbers printed under each method's particles, e.g. ``{"log_likelihood": -2.9,
        "mode_weight_spread": 0.03}``; the key ``"target"`` annotates the target column.
    log : bool
        Show log-densities (12 nats below the highest peak) instead of densities.

    Returns
    -------
    Figure with 2 rows of panels (one per column) and one colour bar axes.
    """
    for arg, value in (("models", models), ("particles", particles)):
        if not isinstance(value, Mapping):
            raise InvalidArgumentError(
                f"{arg} must be a dict name -> value (may be empty), got {type(value).__name__}"
            )
    names = _order_methods(list(dict.fromkeys([*models, *particles])))
    if not names and target is None:
        raise InvalidArgumentError("plot_comparison needs at least one model, particle set or target")
    low, high = grid_extent(grid)
    size = _grid_size(grid)
    max_points = int(check_positive("max_points", max_points, integer=True))
    # each column: (name, log-density image or None, particles or None)
    columns: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []
    target_is_data = False
    if target is not None:
        if (
            not callable(target)
            and np.ndim(target) == 2
            and np.shape(target)[1] == 2
            and np.shape(target) != (size, size)
        ):
            target_is_data = True
            points = check_points_2d("target", target)
            # a coarse histogram, lightly smoothed: raw counts of a few thousand points are too spiky to
            # share a colour scale with smooth model densities
            edges = np.linspace(low, high, min(size, 60) + 1)
            counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=[edges, edges])
            counts = gaussian_filter(counts, sigma=1.0, mode="constant")
            dens = counts.T / (counts.sum() * (edges[1] - edges[0]) ** 2)
            with np.errstate(divide="ignore"):
                columns.append(("target", np.log(dens), points))
        else:
            pts = None if data is None else check_points_2d("data", data)
            columns.append(("target", log_density_on_grid(target, grid, name="target"), pts))
    for name in names:
        logp = log_density_on_grid(models[name], grid, name=f"models[{name!r}]") if name in models else None
        pts = check_points_2d(f"particles[{name!r}]", particles[name]) if name in particles else None
        columns.append((name, logp, pts))
    tops = [c[1] for c in columns if c[1] is not None]
    if log:
        vmax = max(float(v.max()) for v in tops) if tops else 0.0
        vmin = vmax - 12.0
    else:
        vmin, vmax = 0.0, (max(float(np.exp(v).max()) for v in tops) if tops else 1.0)
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax)
    ncols = len(columns)
    fig = new_figure(panel_size * ncols + 1.3, 2 * panel_size + 0.4)
    axes = fig.subplots(2, ncols, squeeze=False)
    im = None
    for j, (name, logp, pts) in enumerate(columns):
        top, bottom = axes[0, j], axes[1, j]
        label = method_label(name)
        if logp is not None:
            values = np.maximum(logp, vmin) if log else np.exp(logp)
            im = _density_image(top, values, low, high, norm, DENSITY_CMAP)
        else:
            top.text(
                0.5, 0.5, "no model given", transform=top.transAxes, ha="center", va="center", color="0.4"
            )
        top.set_title(label + (" (data histogram)" if name == "target" and target_is_data else ""))
        if pts is not None:
            keep = _subset(pts.shape[0], max_points)
            color = "0.15" if name == "target" else method_color(name, j)
            bottom.scatter(pts[keep, 0], pts[keep, 1], s=2.0, color=color, alpha=0.6, linewidths=0)
            bottom.set_title(
                ("data" if name == "target" else f"{label} particles") + f" (n={pts.shape[0]:,})"
            )
        else:
            bottom.text(
                0.5, 0.5, "no particles", transform=bottom.transAxes, ha="center", va="center", color="0.4"
            )
            bottom.set_title(label)
        if metrics and name in metrics:
            _corner_text(
                bottom, format_metrics(metrics[name]).replace(" · ", "\n"), loc="lower left", fontsize=7
            )
        for ax in (top, bottom):
            _style_xy(ax, low, high)
            if j > 0:
                ax.set_ylabel("")
        top.set_xlabel("")
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), label="log p(x)" if log else "p(x) per unit area", shrink=0.9)
    return fig


def plot_samplers(
    samples: Mapping[str, Any],
    grid: Any,
    energy_fn: Callable | Any,
    *,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    marginal: bool = True,
    panel_size: float = 3.0,
    max_points: int = 3000,
) -> Figure:
    """Sample clouds of several samplers (e.g. exact, ULA, MALA) over the same density, plus a marginal.

    Parameters
    ----------
    samples : dict name -> [n, 2]
    grid : pdviz.grid.Grid
    energy_fn : energy function or log-density array [size, size]
        The density every sampler targets (drawn as the light background and in the marginal panel).
    metrics : dict name -> dict, optional
        Numbers per sampler (e.g. ``{"kl": 0.12, "acceptance_rate": 0.6}``), printed in its panel.
    marginal : bool
        Add a last panel with the ``x1`` marginal of each cloud (histogram lines) against the exact
        marginal of the density: a sampler's bias shows as a wider or shifted curve.

    Returns
    -------
    Figure with ``len(samples)`` cloud axes (+1 marginal axes), and one colour bar axes.
    """
    samples = _check_mapping("samples", samples)
    pts = {name: check_points_2d(f"samples[{name!r}]", v) for name, v in samples.items()}
    if metrics is not None and not isinstance(metrics, Mapping):
        raise InvalidArgumentError(
            f"metrics must be a dict name -> dict of numbers, got {type(metrics).__name__}"
        )
    unknown = sorted(set(metrics or {}) - set(pts))
    if unknown:
        raise UnknownNameError(
            f"metrics has names not in samples: {', '.join(unknown)}; valid names: {', '.join(pts)}"
        )
    low, high = grid_extent(grid)
    p = density_on_grid(energy_fn, grid, name="energy_fn")
    max_points = int(check_positive("max_points", max_points, integer=True))
    n = len(pts) + (1 if marginal else 0)
    fig = new_figure(panel_size * n + 0.9, panel_size + 0.5)
    axes = fig.subplots(1, n, squeeze=False)[0]
    norm = background_norm(float(p.max()))
    im = None
    for k, (name, x) in enumerate(pts.items()):
        ax = axes[k]
        im = _density_image(ax, p, low, high, norm, BACKGROUND_CMAP)
        keep = _subset(x.shape[0], max_points)
        ax.scatter(x[keep, 0], x[keep, 1], s=2.5, color=method_color(name, k), alpha=0.6, linewidths=0)
        _style_xy(ax, low, high)
        if k > 0:
            ax.set_ylabel("")
        ax.set_title(f"{method_label(name)} (n={x.shape[0]:,})")
        if metrics and name in metrics:
            _corner_text(ax, format_metrics(metrics[name]).replace(" · ", "\n"), loc="lower left")
    fig.colorbar(im, ax=list(axes[: len(pts)]), label="target p(x) per unit area", shrink=0.9)
    if marginal:
        ax = axes[-1]
        xs = _to_numpy("grid.xs", grid.xs)
        h = float(grid.h)
        ax.plot(xs, p.sum(axis=0) * h, color="0.1", lw=2.2, label="target density")
        edges = np.linspace(low, high, min(81, _grid_size(grid) + 1))
        for k, (name, x) in enumerate(pts.items()):
            hist, _ = np.histogram(x[:, 0], bins=edges, density=True)
            ax.stairs(hist, edges, color=method_color(name, k), lw=1.4, label=method_label(name))
        ax.set(title="marginal of $x_1$", xlabel="$x_1$", ylabel="density", xlim=(low, high))
        ax.grid(alpha=0.3)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # headroom above the peaks for the legend
        ax.legend(fontsize=7, loc="upper center", ncols=2, frameon=False)
    return fig
