"""Figures of recorded results: densities, particle clouds, vector fields, curves, images.

One call makes one figure and returns a :class:`matplotlib.figure.Figure`. Nothing here runs a sampler, a
flow or a training step: figures read tensors and :class:`pdviz.samplers.History` objects, and only evaluate
energies on a :class:`pdviz.grid.Grid` to draw densities. An energy given as an array is the energy VALUES on
the grid (``E[iy, ix]``, e.g. a History frame's ``"energy"``); ``p ∝ exp(-E)`` is normalised here.

One style for every figure (:data:`STYLE`, applied by :func:`style` whenever a figure draws): Okabe-Ito
colours that read on white and in greyscale, no text under 10 pt, figures at most :data:`MAX_WIDTH`
inches wide (a 1000-pixel notebook column at 100 dpi shows them unscaled), constrained layout so titles
never overlap, densities in viridis (log scale with ``log=True`` where mass is faint), backgrounds
under particles in a light grey ramp, a dashed noise-floor line on every spread and KL curve.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.colors as mcolors
import numpy as np
import torch
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.ndimage import gaussian_filter

from pdviz.errors import InvalidArgumentError
from pdviz.metrics import mode_lag

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}  # fmt: skip
_O = OKABE_ITO
#: One colour per method (never yellow: it vanishes on white); grey and black for the rest.
METHOD_COLORS = {
    "exact": _O["bluish_green"], "ula": _O["vermillion"], "mala": _O["blue"], "target": "#333333",
    "data": "#333333", "short-run": "#888888", "replay": _O["orange"], "pcd": _O["vermillion"],
    "pd-alpha": _O["sky_blue"], "pd-beta": _O["blue"], "pd-gamma": _O["reddish_purple"],
    "pd-exact": _O["bluish_green"], "pd-weighted": _O["black"], "langevin": _O["vermillion"],
    "pd": _O["blue"], "alpha": _O["blue"], "svgd": _O["orange"],
}  # fmt: skip
METHOD_LABELS = {
    "exact": "exact (grid)", "ula": "ULA", "mala": "MALA", "replay": "replay buffer", "pcd": "PCD",
    "pd-alpha": "PD-α", "pd-beta": "PD-β", "pd-gamma": "PD-γ", "pd-exact": "PD exact",
    "pd-weighted": "PD weighted", "langevin": "Langevin", "pd": "PD", "alpha": "PD-α", "svgd": "SVGD",
    "jarzynski": "Jarzynski", "nce": "NCE", "dsm": "DSM", "ed": "ED", "drl": "DRL"}  # fmt: skip
#: The paper's column order for training comparisons; other names follow in the order given.
COLUMN_ORDER = ("short-run", "replay", "pcd", "pd-alpha", "pd-beta", "pd-exact", "pd-weighted", "pd-gamma")
_EXTRA = [_O[k] for k in ("sky_blue", "orange", "reddish_purple", "bluish_green", "vermillion")]
DENSITY_CMAP, BACKGROUND_CMAP, FIELD_CMAP = "viridis", "Greys", "PuOr_r"
MAX_WIDTH = 10.0  # inches: at 100 dpi a 1000-pixel notebook column shows the figure unscaled
SHOWN_PAD = 0.1  # inches a side that Jupyter adds when it crops a figure to its content (savefig.pad_inches)
MIN_FONT = 10.0  # points, at the displayed size
READOUT_CHARS = 26  # characters per line of numbers above a panel: fits a 2.2-inch panel at 10 pt
LOG_RANGE = 12.0  # nats below the peak shown on a log-density scale
STYLE = {
    "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
    "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 12, "figure.dpi": 100,
    "savefig.dpi": 100, "image.cmap": DENSITY_CMAP, "legend.frameon": False,
    "axes.prop_cycle": cycler(color=[_O[k] for k in ("blue", "vermillion", "bluish_green", "orange",
                                                      "reddish_purple", "sky_blue", "black")]),
}  # fmt: skip
_LABELS = {
    "kl": "KL", "kl_floor": "KL floor", "acceptance_rate": "acceptance", "mmd2": "MMD²",
    "log_likelihood": "log-lik.", "mode_weight_spread": "particles' spread",
    "model_mode_weight_spread": "model spread",
    "ess": "ESS", "n_grad": "grad evals", "step": "step", "t": "t",
}  # fmt: skip


def style() -> contextlib.AbstractContextManager:
    """The pdviz style as an rcParams context: ``with plotting.style(): ...`` (figures apply it themselves)."""
    return mpl.rc_context(STYLE)


def method_color(name: str, index: int = 0) -> str:
    """The colour of method ``name``: from :data:`METHOD_COLORS`, else a palette colour chosen by ``index``."""
    return METHOD_COLORS.get(name, _EXTRA[index % len(_EXTRA)])


def _curve(name: str, index: int) -> dict[str, Any]:
    """How method ``name``'s curve is drawn: its colour, and a marker per ``index`` so that curves stay
    apart in greyscale too (Okabe-Ito vermillion and bluish green are one grey)."""
    return {"color": method_color(name, index), "label": method_label(name), "lw": 1.8,
            "marker": "os^Dv"[index % 5], "ms": 5, "markevery": 0.1}  # fmt: skip


def method_label(name: str) -> str:
    """The display name of method ``name`` (from :data:`METHOD_LABELS`, else ``name`` itself)."""
    return METHOD_LABELS.get(name, name)


def format_number(value: Any) -> str:
    """A number as figures and widgets print it ("–" for None or NaN; 3 significant digits)."""
    v = math.nan if value is None else float(value)
    if not math.isfinite(v):
        return "–"
    if v == int(v) and abs(v) >= 100:
        return f"{int(v):,}"
    return f"{v:.2e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.3g}"


def _items(metrics: Mapping[str, Any] | None) -> dict[str, str]:
    """key -> "label value" for the numbers of ``metrics`` (None and non-numbers skipped)."""
    number = lambda v: isinstance(v, (int, float, np.number)) or (torch.is_tensor(v) and v.numel() == 1)  # noqa: E731
    return {k: f"{_LABELS.get(k, k)} {format_number(v)}" for k, v in (metrics or {}).items() if number(v)}


def _join(items: Sequence[str], sizes: Sequence[int], width: int) -> list[str]:
    """``items`` joined by " · " into lines of at most ``width`` characters, counting item i as
    ``sizes[i]`` characters (a longer item keeps a line of its own)."""
    lines, used = [], 0
    for item, n in zip(items, sizes):
        if lines and used + 3 + n <= width:
            lines[-1], used = f"{lines[-1]} · {item}", used + 3 + n
        else:
            lines.append(item)
            used = n
    return lines


def format_metrics(metrics: Mapping[str, Any] | None, sep: str = "\n", width: int = 0) -> str:
    """Numbers as text lines, e.g. ``"KL 0.120\\nacceptance 0.57"``; skips None and non-numbers. With
    ``width``, the items are joined by " · " into lines of at most ``width`` characters."""
    items = list(_items(metrics).values())
    return sep.join(_join(items, [len(i) for i in items], width) if width else items)


class NotebookFigure(Figure):
    """A pyplot-free Figure that draws in the pdviz style and shows itself as a PNG in Jupyter."""

    def draw(self, renderer: Any) -> None:
        with style():
            super().draw(renderer)

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(width: float, height: float) -> NotebookFigure:
    """A figure of ``width x height`` inches, scaled down (fonts keep their size) so that Jupyter shows it,
    cropped to its content plus :data:`SHOWN_PAD` a side, at most :data:`MAX_WIDTH` wide."""
    s = min(1.0, (MAX_WIDTH - 2 * SHOWN_PAD) / width)
    with style():
        fig = NotebookFigure(figsize=(width * s, height * s), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def subplots(fig: Figure, nrows: int, ncols: int) -> np.ndarray:
    """An array [nrows, ncols] of axes on ``fig``, made in the pdviz style."""
    with style():
        return fig.subplots(nrows, ncols, squeeze=False)


def _np(x: Any) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _points(x: Any) -> np.ndarray:
    """Particles [n, 2] from a tensor/array or a History (its last recorded positions)."""
    if hasattr(x, "frames"):
        x = x.positions()[-1]
    pts = _np(x)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise InvalidArgumentError(f"particles must have shape [n, 2] with n >= 1, got {list(pts.shape)}")
    return pts


def _box(grid: Any) -> tuple[float, float]:
    return float(grid.low), float(grid.high)


def log_density(energy: Callable | Any, grid: Any) -> np.ndarray:
    """Normalised ``log p`` [g, g] of ``p ∝ exp(-E)`` on the grid's box; ``energy`` a callable or E values."""
    if callable(energy):
        return _np(grid.log_density(energy))
    lp = -_np(energy)
    low, high = _box(grid)
    top = lp.max()
    return lp - top - math.log(np.exp(lp - top).sum() * ((high - low) / lp.shape[-1]) ** 2)


def xy_axes(ax: Any, box: tuple[float, float], *, outer: tuple[bool, bool] = (True, True)) -> None:
    """Make ``ax`` a square panel on the box ``(low, high)``; tick labels only where ``outer = (left, bottom)``."""
    ax.set(xlim=box, ylim=box, aspect="equal")
    ax.xaxis.set_major_locator(MaxNLocator(3))
    ax.yaxis.set_major_locator(MaxNLocator(3))
    ax.tick_params(labelleft=outer[0], labelbottom=outer[1])
    ax.set_ylabel("$x_2$" if outer[0] else "")
    ax.set_xlabel("$x_1$" if outer[1] else "")


def draw_density(ax: Any, values: np.ndarray, box: tuple[float, float], norm: Any, cmap: str) -> Any:
    """Values [g, g] (indexed [iy, ix]) as an image over the square box; returns the AxesImage."""
    return ax.imshow(values, origin="lower", extent=(*box, *box), cmap=cmap, norm=norm, interpolation="none")


def corner_text(ax: Any, text: str) -> Any:
    """``text`` in the lower left corner of ``ax`` on a pale box; returns the Text (or None)."""
    if text:
        return ax.text(0.03, 0.03, text, transform=ax.transAxes, ha="left", va="bottom", fontsize=MIN_FONT,
                       bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8, "edgecolor": "none"})  # fmt: skip


def readout_title(ax: Any, title: str, lines: int) -> None:
    """Title ``ax`` with ``title``, raised above room for ``lines`` lines of :func:`readout` numbers."""
    ax.set_title(title, pad=(10.0 + 1.2 * MIN_FONT * lines) if lines else None)


def readout(ax: Any, text: str) -> Any:
    """Numbers ``text`` (10 pt) centred between ``ax`` and its title (:func:`readout_title`): above the
    panel, so they cover no data. A new Text each call (one per animation frame); None for no text."""
    if text:
        return ax.annotate(text, (0.5, 1.0), xycoords="axes fraction", xytext=(0, 4), textcoords="offset points",
                           ha="center", va="bottom", fontsize=MIN_FONT)  # fmt: skip


def _density_scale(logps: Sequence[np.ndarray | None], log: bool) -> tuple[list, Any, str]:
    """The shown values of each log-density and ONE shared norm: log p (12 nats deep) or p."""
    tops = [float(v.max()) for v in logps if v is not None]
    if log:
        top = max(tops, default=0.0)
        shown = [None if v is None else np.maximum(v, top - LOG_RANGE) for v in logps]
        return shown, mcolors.Normalize(top - LOG_RANGE, top), "log p(x)"
    shown = [None if v is None else np.exp(v) for v in logps]
    return shown, mcolors.Normalize(0.0, math.exp(max(tops, default=0.0))), "p(x) per unit area"


def background_norm(peak: float) -> mcolors.Normalize:
    """Grey background scale: the peak maps to 70 % of the ramp, so particles on top stay visible."""
    return mcolors.Normalize(0.0, max(peak, 1e-300) / 0.7)


# --- particle panels: shared with pdviz.animation and pdviz.widgets -----------------------------------


def draw_particles(
    ax: Any, x: Any, *, color: str, log_weight: Any = None, trail: np.ndarray | None = None,
    max_points: int = 2000, size: float = 4.0,
) -> list:  # fmt: skip
    """Draw particles ``x`` [n, 2] on ``ax`` (marker area ∝ weight when ``log_weight`` [n] is given) and
    the ``trail`` [k, L, 2] of k highlighted particles; returns the artists added."""
    pts = _np(x)
    keep = np.linspace(0, len(pts) - 1, min(len(pts), max_points)).round().astype(int)
    s = size
    if log_weight is not None:
        lw = _np(log_weight)
        w = np.exp(lw - lw.max())
        s = size * np.clip(w * len(w) / w.sum(), 0.1, 10.0)[keep]  # 1 = uniform weight
    artists = [ax.scatter(pts[keep, 0], pts[keep, 1], s=s, color=color, alpha=0.7, linewidths=0)]
    if trail is not None and len(trail):
        artists.append(ax.add_collection(LineCollection(list(trail), colors="black", linewidths=1.0)))
        head = trail[:, -1]
        artists.append(ax.scatter(head[:, 0], head[:, 1], s=30, facecolors="white", edgecolors="black"))
    return artists


def frame_texts(frames: Sequence[Mapping[str, Any]]) -> list[str]:
    """The scalars of each History frame (step, t, KL, ESS, acceptance, log-lik., ...) as :func:`readout`
    lines of at most :data:`READOUT_CHARS` characters, broken at the same places in every frame (judged by
    each quantity's widest value), so that an animation's numbers hold still."""
    items = [_items({k: v for k, v in f.items() if k in _LABELS}) for f in frames]
    widest: dict[str, int] = {}
    for it in items:
        widest.update({k: max(len(text), widest.get(k, 0)) for k, text in it.items()})
    return ["\n".join(_join(list(it.values()), [widest[k] for k in it], READOUT_CHARS)) for it in items]


def frame_background(frame: Mapping[str, Any], grid: Any, density: Any) -> np.ndarray | None:
    """The density p [g, g] behind a frame: its own ``"energy"``, else ``density`` (``E(x)``, or a moving
    energy with ``.at(t)`` evaluated at the frame's ``"t"``), else None."""
    if frame.get("energy") is not None:
        return np.exp(log_density(frame["energy"], grid))
    if density is None:
        return None
    if hasattr(density, "at") and "t" in frame:
        density = density.at(float(frame["t"]))
    return np.exp(log_density(density, grid))


def plot_frame(
    histories: Mapping[str, Any], grid: Any, *, index: int = -1, density: Any = None,
    curve: str | None = None, floor: float | None = None, max_points: int = 2000,
) -> Figure:  # fmt: skip
    """One recorded moment of several runs: per History a panel with frame ``index``'s particles over its
    density (see :func:`frame_background`), and optionally a panel of the scalar ``curve`` (e.g. "kl")
    over the frames, the shown one marked, with the dashed ``floor`` (the noise floor; for
    "log_likelihood" the data-entropy bound). Returns the figure."""
    names = list(histories)
    n = len(names) + (curve is not None)
    frames = {k: [f for f in h.frames if "position" in f] for k, h in histories.items()}
    shown = {k: f[index if index < 0 else min(index, len(f) - 1)] for k, f in frames.items()}
    backs = {k: frame_background(f, grid, density) for k, f in shown.items()}
    peak = max((float(b.max()) for b in backs.values() if b is not None), default=0.0)
    texts = {k: frame_texts([f])[0] for k, f in shown.items()}
    lines = max(len(t.splitlines()) for t in texts.values())
    fig = new_figure(2.9 * n + 0.8, 3.6 + 0.17 * lines + 0.3 * (curve is not None))
    axes = subplots(fig, 1, n)[0]
    box = _box(grid)
    for j, (ax, name) in enumerate(zip(axes, names)):
        if backs[name] is not None:
            draw_density(ax, backs[name], box, background_norm(peak), BACKGROUND_CMAP)
        f = shown[name]
        draw_particles(ax, f["position"], color=method_color(name, j), log_weight=f.get("log_weight"),
                       max_points=max_points)  # fmt: skip
        xy_axes(ax, box, outer=(j == 0, True))
        readout_title(ax, method_label(name), lines)
        readout(ax, texts[name])
    if curve is not None:
        ax = axes[-1]
        for j, name in enumerate(names):
            steps, values = histories[name].series(curve)
            ax.plot(steps, values, **_curve(name, j))
        ax.axvline(int(shown[names[0]]["step"]), color="0.5", ls=":")
        _floor(ax, floor, label="data-entropy bound" if curve == "log_likelihood" else "noise floor")
        ax.set(xlabel="step")
        readout_title(ax, _PANELS.get(curve, _LABELS.get(curve, curve)), lines)  # level with its neighbours
        handles, labels = ax.get_legend_handles_labels()  # under the figure: on the curves it hides them
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return fig


def _floor(ax: Any, floor: Any, x: Any = None, label: str = "noise floor") -> None:
    """The dashed noise-floor (or bound) line: one number, or one value per ``x``."""
    if floor is None:
        return
    if np.ndim(floor) == 0:
        ax.axhline(float(floor), color="0.3", ls="--", lw=1.2, label=label)
    else:
        ax.plot(x, _np(floor), color="0.3", ls="--", lw=1.2, label=label)


# --- densities and particles -------------------------------------------------------------------------


def plot_densities(
    energies: Mapping[str, Callable | Any], grid: Any, *, log: bool = False, ncols: int | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
) -> Figure:  # fmt: skip
    """Several densities ``p ∝ exp(-E)`` on ONE shared colour scale (log p, 12 nats deep, with ``log``).

    ``energies``: name -> energy function or E values [g, g]; ``metrics``: name -> numbers printed inside
    the panel. Returns a figure with ``len(energies)`` image axes (``ncols`` per row) and one colour bar.
    """
    if not energies:
        raise InvalidArgumentError("energies must be a non-empty dict name -> energy")
    n = len(energies)
    ncols = min(n, 4) if ncols is None else int(ncols)
    nrows = math.ceil(n / ncols)
    shown, norm, label = _density_scale([log_density(e, grid) for e in energies.values()], log)
    fig = new_figure(2.6 * ncols + 1.0, 2.6 * nrows + 0.3)
    axes = subplots(fig, nrows, ncols).ravel()
    for k, (name, values) in enumerate(zip(energies, shown)):
        draw_density(axes[k], values, _box(grid), norm, DENSITY_CMAP)
        xy_axes(axes[k], _box(grid), outer=(k % ncols == 0, k // ncols == nrows - 1))
        axes[k].set_title(method_label(name))
        corner_text(axes[k], format_metrics((metrics or {}).get(name)))
    for ax in axes[n:]:
        fig.delaxes(ax)
    fig.colorbar(ScalarMappable(norm, DENSITY_CMAP), ax=list(axes[:n]), label=label, shrink=0.9)
    return fig


def plot_samplers(
    samples: Mapping[str, Any], grid: Any, energy_fn: Callable | Any, *,
    metrics: Mapping[str, Mapping[str, Any]] | None = None, marginal: bool = True, max_points: int = 3000,
) -> Figure:  # fmt: skip
    """Clouds of several samplers over the density they target, plus the ``x1`` marginal of each.

    ``samples``: name -> particles [n, 2] (or a History: its last frame); ``energy_fn``: the target
    (function or E values); ``metrics``: name -> numbers printed in its panel. A sampler's bias shows as a
    wider or shifted marginal than the target's (black).
    """
    pts = {name: _points(v) for name, v in samples.items()}
    unknown = sorted(set(metrics or {}) - set(pts))
    if not pts or unknown:
        raise InvalidArgumentError(
            f"samples must be non-empty and name every metrics key; unknown: {unknown}"
        )
    box = _box(grid)
    p = np.exp(log_density(energy_fn, grid))
    n = len(pts) + marginal
    texts = {name: format_metrics((metrics or {}).get(name), width=READOUT_CHARS) for name in pts}
    lines = max(len(t.splitlines()) for t in texts.values())
    fig = new_figure(2.9 * n + 0.8, 3.6 + 0.17 * lines)
    axes = subplots(fig, 1, n)[0]
    for k, (name, x) in enumerate(pts.items()):
        draw_density(axes[k], p, box, background_norm(float(p.max())), BACKGROUND_CMAP)
        draw_particles(axes[k], x, color=method_color(name, k), max_points=max_points)
        xy_axes(axes[k], box, outer=(k == 0, True))
        readout_title(axes[k], method_label(name), lines)
        readout(axes[k], texts[name])
    if marginal:
        ax = axes[-1]
        ax.plot(_np(grid.xs), p.sum(axis=0) * float(grid.h), color="black", lw=2.2, label="target")
        edges = np.linspace(*box, min(61, len(grid.xs) + 1))
        for k, (name, x) in enumerate(pts.items()):
            hist, _ = np.histogram(x[:, 0], bins=edges, density=True)
            ax.stairs(hist, edges, color=method_color(name, k), lw=1.6, label=method_label(name))
        ax.set(xlabel="$x_1$", xlim=box, ylim=(0, None))
        readout_title(ax, "marginal of $x_1$", lines)
        # under the panels, not on the marginals: the colours name the clouds of every panel
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(pts) + 1)
    return fig


def plot_comparison(
    models: Mapping[str, Callable | Any], particles: Mapping[str, Any], grid: Any, *,
    target: Any = None, data: Any = None, metrics: Mapping[str, Mapping[str, Any]] | None = None,
    log: bool = False, max_points: int = 3000, below: int = 0,
) -> Figure:  # fmt: skip
    """The paper's figure: one column per method, its learned density on top, its particles below.

    ``models``: name -> energy function or E values [g, g]; ``particles``: name -> [n, 2] (a name may
    have only one of the two). Columns: the target first (an energy, or data points [n, 2] shown as a
    smoothed histogram), then the paper's order. All densities share one colour scale; ``metrics`` (name
    -> numbers, key "target" for the target column) are printed above each column's particles. Up to six
    columns (the paper's) read at a projector's size in a 1000-pixel column. ``below``: rows of empty axes
    under the particles, one per column, for the caller to draw in (``fig.axes[2 * k:(2 + below) * k]`` for
    k columns).
    """
    names = [n for n in COLUMN_ORDER if n in {**models, **particles}]
    names += [n for n in {**models, **particles} if n not in names]
    box = _box(grid)
    cols: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []
    if target is not None:
        if not callable(target) and np.shape(target)[-1] == 2 and np.ndim(target) == 2:
            pts = _points(target)  # data: a coarse histogram, smoothed to share a scale with smooth models
            edges = np.linspace(*box, min(len(grid.xs), 60) + 1)
            counts = gaussian_filter(np.histogram2d(pts[:, 0], pts[:, 1], bins=[edges, edges])[0], 1.0)
            with np.errstate(divide="ignore"):
                cols.append(("target", np.log(counts.T / (counts.sum() * (edges[1] - edges[0]) ** 2)), pts))
        else:
            cols.append(("target", log_density(target, grid), None if data is None else _points(data)))
    for name in names:
        lp = log_density(models[name], grid) if name in models else None
        cols.append((name, lp, _points(particles[name]) if name in particles else None))
    if not cols:
        raise InvalidArgumentError("plot_comparison needs at least one model, particle set or target")
    shown, norm, label = _density_scale([c[1] for c in cols], log)
    lines = max([len(format_metrics((metrics or {}).get(c[0])).splitlines()) for c in cols] + [1])
    w = min(2.2, (MAX_WIDTH - 1.2) / len(cols))  # a panel's width: the text around it keeps its size
    fig = new_figure(w * len(cols) + 1.2, (2 + below) * w + 1.0 + 0.17 * lines + 0.4 * below)
    axes = subplots(fig, 2 + below, len(cols))
    for j, ((name, _, pts), values) in enumerate(zip(cols, shown)):
        top, bottom = axes[0, j], axes[1, j]
        if values is not None:
            draw_density(top, values, box, norm, DENSITY_CMAP)
        top.set_title(method_label(name))
        if pts is not None:
            draw_particles(bottom, pts, color=method_color("data" if name == "target" else name, j),
                           max_points=max_points, size=3.0)  # fmt: skip
        if metrics is None:  # the count in the corner; numbers given go above the particles, off the data
            corner_text(bottom, format_metrics({"n": len(pts)} if pts is not None else {}))
        else:
            bottom.set_title(format_metrics(metrics.get(name, {})), fontsize=MIN_FONT)
        xy_axes(top, box, outer=(j == 0, False))
        xy_axes(bottom, box, outer=(j == 0, True))
    fig.colorbar(ScalarMappable(norm, DENSITY_CMAP), ax=list(axes[0]), label=label, shrink=0.9)
    _unclash_titles(fig, axes[1], lines)
    return fig


def _unclash_titles(fig: Figure, axes: Sequence[Any], lines: int) -> None:
    """Numbers above a row of narrow panels: where neighbouring titles would overlap, the labels go once
    above the first panel if it has no numbers of its own (a table's row header), else each value goes on
    the line under its label (``lines`` more lines of height)."""
    fig.draw_without_rendering()
    boxes = [ax.title.get_window_extent().padded(4) for ax in axes if ax.get_title()]  # 8 px apart at least
    if not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:])):
        return
    rows = [[line.rsplit(" ", 1) for line in ax.get_title().splitlines()] for ax in axes]
    labels = {tuple(p[0] for p in r) for r in rows if r}
    if not rows[0] and len(labels) == 1:
        axes[0].title.set_text("\n".join(labels.pop()))
        for ax, r in zip(axes[1:], rows[1:]):
            ax.title.set_text("\n".join(p[-1] for p in r))
        return
    for ax, r in zip(axes, rows):
        ax.title.set_text("\n".join(p for pair in r for p in pair))
    fig.set_figheight(fig.get_figheight() + 0.17 * lines)


def plot_field(
    U: Any, V: Any, grid: Any, ax: Any = None, *, kind: str = "quiver", background: Any = None,
    background_label: str = "ΔE over one step", where: Any = None, arrows: int = 20,
    title: str = "velocity field",
) -> Figure:  # fmt: skip
    """A vector field (U, V) [g, g] on the grid as arrows (``kind="quiver"``) or streamlines ("stream").

    ``background`` [g, g]: a signed quantity on a diverging scale centred at 0, labelled
    ``background_label``; ``where`` [g, g] bool: draw the field only there (e.g. where p is not
    negligible, since a grid-solved field is artefact where p ≈ 0). Draws into ``ax`` if given.
    """
    if kind not in ("quiver", "stream"):
        raise InvalidArgumentError(f"kind must be 'quiver' or 'stream', got {kind!r}")
    u, v, xs, box = _np(U), _np(V), _np(grid.xs), _box(grid)
    if where is not None:
        u, v = (np.ma.masked_where(~np.asarray(where, bool), a) for a in (u, v))
    ax = subplots(new_figure(4.6, 3.8), 1, 1)[0, 0] if ax is None else ax
    fig = ax.figure
    if background is not None:
        b = _np(background)
        lim = float(np.abs(b).max()) or 1.0
        im = draw_density(ax, b, box, mcolors.Normalize(-lim, lim), FIELD_CMAP)
        fig.colorbar(im, ax=ax, label=background_label, shrink=0.9)
    if kind == "quiver":
        sl = slice(max(1, len(xs) // arrows) // 2, None, max(1, len(xs) // arrows))
        ax.quiver(xs[sl], xs[sl], u[sl, sl], v[sl, sl], angles="xy", pivot="mid", width=0.005)
    else:
        speed = np.ma.hypot(u, v).filled(0.0)
        width = 0.5 + 1.5 * speed / (speed.max() or 1)
        ax.streamplot(xs, xs, u, v, color="black", density=arrows / 20, linewidth=width)
    xy_axes(ax, box)
    ax.set_title(title)
    return fig


# --- curves ------------------------------------------------------------------------------------------

_X_AXES = {"step": "iteration", "cpu_time": "CPU time (s)", "wall_time": "wall-clock time (s)",
           "n_grad": "gradient evaluations"}  # fmt: skip
_PANELS = {
    "loss": "contrastive loss", "log_likelihood": "held-out log-likelihood", "mmd2": "MMD² to data",
    "mode_weight_spread": "particles' spread", "model_mode_weight_spread": "model spread",
    "lag": "lag: KL(negatives ‖ model) − floor", "grad_error": "gradient error |ĝ − g| / |g|",
}  # fmt: skip


def spread_floor(n: int, k: int = 8, draws: int = 2000) -> float:
    """The mode-weight spread (max - min share) that ``n`` exact samples of ``k`` equal modes show by
    chance: the mean range of multinomial(n, 1/k) shares (a fixed-seed estimate)."""
    shares = np.random.default_rng(0).multinomial(n, np.full(k, 1 / k), size=draws) / n
    return float((shares.max(1) - shares.min(1)).mean())


def _on_x(h: Any, steps: Sequence[float], x: str) -> np.ndarray:
    """Frame steps mapped onto the curve ``x`` (e.g. CPU seconds) through the per-step record."""
    if x == "step":
        return np.asarray(steps, float)
    return np.interp(steps, h.curves["step"], h.curves[x])


def plot_training_curves(
    histories: Mapping[str, Any], *, bound: float | None = None, x: str = "step",
    panels: Sequence[str] = ("loss", "log_likelihood", "mmd2", "mode_weight_spread"),
) -> Figure:  # fmt: skip
    """Training curves of several runs (Histories of kind "training"), one panel per quantity.

    ``loss`` comes from ``history.curves``; the other panels from the frames (``history.series``). The
    held-out log-likelihood carries the data-entropy ``bound`` (or ``meta["entropy_bound"]``), dashed;
    the particles' spread the noise floor of as many exact samples (:func:`spread_floor`), the model
    spread its floor 0; the lag of the negatives (already net of its floor) 0, on a symlog scale; the
    gradient error each run's exact-sample floor (``grad_error_floor``), dotted in its colour.
    ``x``: "step", "cpu_time", "wall_time" or "n_grad".
    """
    if x not in _X_AXES or not set(panels) <= set(_PANELS) or not panels or not histories:
        raise InvalidArgumentError(
            f"x must be one of {list(_X_AXES)}, panels a non-empty subset of {list(_PANELS)}"
        )
    ncols = 2 if len(panels) == 4 else min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(3.6 * ncols + 0.4, 3.0 * nrows + 0.3)
    axes = subplots(fig, nrows, ncols).ravel()
    for ax in axes[len(panels) :]:
        fig.delaxes(ax)
    for k, (name, h) in enumerate(histories.items()):
        kw = _curve(name, k)
        for ax, panel in zip(axes, panels):
            if panel == "loss" and h.curves.get("loss"):
                loss = np.asarray(h.curves["loss"], float)
                w = max(1, len(loss) // 30)
                ax.plot(h.curves[x][w - 1 :], np.convolve(loss, np.ones(w) / w, "valid"), **kw)
            elif panel != "loss":
                steps, values = h.series(panel)
                ax.plot(_on_x(h, steps, x), values, **kw)
            if panel == "grad_error":
                steps, values = h.series("grad_error_floor")
                ax.plot(_on_x(h, steps, x), values, color=kw["color"], ls=":", lw=1.2)
    first = next(iter(histories.values()))
    bound = first.meta.get("entropy_bound") if bound is None else bound
    runs, handles = {_curve(name, k)["label"] for k, name in enumerate(histories)}, {}
    for ax, panel in zip(axes, panels):
        ax.set(title=_PANELS[panel], xlabel=_X_AXES[x])
        _references(ax, panel, first, bound)
        pairs = list(zip(*ax.get_legend_handles_labels()))
        handles.update((label, h) for h, label in pairs if label in runs)
        if any(label not in runs for _, label in pairs):  # each panel names its reference line
            ax.legend(handles=[h for h, label in pairs if label not in runs])
    fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=min(len(handles), 4))
    return fig


def _references(ax: Any, panel: str, first: Any, bound: float | None) -> None:
    """A training-curve panel's reference: the data-entropy bound, a noise floor, or the exact samples."""
    if panel == "log_likelihood" and bound is not None:
        _floor(ax, bound, label=f"data-entropy bound {bound:.2f}")
    n = first.meta.get("n_particles") or (first.frames and len(first.frames[-1].get("position", ())))
    if panel == "mode_weight_spread" and n:
        _floor(ax, spread_floor(n, first.meta.get("n_modes", 8)))
    if panel in ("model_mode_weight_spread", "lag"):
        _floor(ax, 0.0, label="exact samples" if panel == "lag" else "noise floor")
    if panel == "lag":
        ax.set_yscale("symlog", linthresh=0.1)  # short-run chains lag by nats, the others by tenths
    if panel == "grad_error":
        ax.plot([], [], color="0.3", ls=":", label="exact samples (dotted)")
        ax.set_yscale("log")  # errors of 0.1 and of 5 on one axis
    if panel == "mmd2":
        ax.set_yscale("symlog", linthresh=1e-3)  # unbiased MMD² dips below 0 near convergence


def plot_tracking(histories: Mapping[str, Any], *, floor: Any = None, ess: bool = False) -> Figure:
    """How well particles track a moving density: KL to the exact ``p_t`` against t (Histories of kind
    "track": frames with ``t``, ``kl``, ``n_grad``, ``ess``).

    ``floor``: the KL that exact samples of the same size reach (one number or one per recorded t of the
    first history; default ``meta["kl_floor"]``), dashed. A "KL against gradient evaluations" panel is
    added only when the methods spend different amounts; ``ess`` adds the effective sample size.
    """
    if not histories:
        raise InvalidArgumentError("histories must be a non-empty dict name -> History")
    first = next(iter(histories.values()))
    cost = len({h.series("n_grad")[1][-1] for h in histories.values() if h.series("n_grad")[1]}) > 1
    n = 1 + cost + ess
    fig = new_figure(4.0 * n + 0.4, 3.5)
    axes = subplots(fig, 1, n)[0]
    kl_all = []
    for k, (name, h) in enumerate(histories.items()):
        kw = _curve(name, k)
        t = np.array([f["t"] for f in h.frames if "kl" in f])
        kl = np.array(h.series("kl")[1])
        kl_all.append(kl)
        axes[0].plot(t, kl, **kw)
        if cost:
            axes[1].plot(h.series("n_grad")[1], kl, **kw)
        if ess:
            axes[-1].plot(*[[f[key] for f in h.frames if "ess" in f] for key in ("t", "ess")], **kw)
    floor = first.meta.get("kl_floor") if floor is None else floor
    _floor(axes[0], floor, [f["t"] for f in first.frames if "kl" in f])
    if all((v > 0).all() for v in kl_all):
        for ax in axes[: 1 + cost]:
            ax.set_yscale("log")
    axes[0].set(title="KL to the moving density", xlabel="time t", ylabel="KL (nats)")
    if cost:
        _floor(axes[1], None if floor is None else float(np.mean(floor)))
        axes[1].set(title="KL against cost", xlabel="gradient evaluations", ylabel="KL (nats)")
    if ess:
        axes[-1].set(title="effective sample size", xlabel="time t", ylim=(0, None))
    for ax in axes:
        ax.legend()
    return fig


def plot_mode_lag(histories: Mapping[str, Any]) -> Figure:
    """Where the lagging negatives sit: for each run (lag-meter Histories with ``model_mode_weights`` and
    ``negative_mode_weights`` frames), every mode at every evaluation as a point: the change of the model's
    weight of that mode since the last evaluation (x) against the negatives' excess share there (y), with
    the correlation r of :func:`pdviz.metrics.mode_lag` in the legend. Negatives one evaluation behind lie
    on the dashed line ``y = -x``; negatives that keep up, on ``y = 0``."""
    ax = subplots(new_figure(5.6, 4.2), 1, 1)[0, 0]
    reach = 0.0
    for k, (name, h) in enumerate(histories.items()):
        excess, change, r = mode_lag(h.stack("model_mode_weights"), h.stack("negative_mode_weights"))
        ax.scatter(change.numpy(), excess.numpy(), s=12, alpha=0.6, color=method_color(name, k),
                   label=f"{method_label(name)}: r = {r:+.2f}")  # fmt: skip
        reach = max(reach, float(change.abs().max()), float(excess.abs().max()))
    ax.plot([-reach, reach], [reach, -reach], color="0.3", ls="--", lw=1.2, label="one evaluation behind")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set(xlabel="change of the model's mode weight since the last evaluation",
           ylabel="negatives' share − model's weight", title="do the negatives stay where the mass was?")  # fmt: skip
    ax.legend(loc="upper right")
    return ax.figure


def plot_dots(panels: Mapping[str, Mapping[str, Sequence[float]]], labels: Sequence[str]) -> Figure:
    """A table as a figure: per panel (title -> row -> k values, NaN for none; rows top down in the dict's
    order) a marker per value, one per ``labels`` (e.g. datasets), a black bar at their mean; log x-axes >= 2 decades."""
    fig = new_figure(3.2 * len(panels) + 2.4, 0.3 * len(next(iter(panels.values()))) + 1.9)
    for i, (ax, (title, table)) in enumerate(zip(subplots(fig, 1, len(panels))[0], panels.items())):
        v, y = np.array(list(table.values()), dtype=float).clip(0.01), -np.arange(len(table))  # floor: 0.01
        for j, label in enumerate(labels):
            ax.plot(v[:, j], y, "os^Dv<>P"[j % 8], color=method_color("", j), ms=5, label=label)
        ax.plot(np.ma.masked_invalid(v).mean(1), y, "|", color="black", ms=14, mew=2, label="mean")
        ax.set(title=title, xscale="log", xlim=(min(np.nanmin(v), np.nanmax(v) / 100) / 2, np.nanmax(v) * 2), yticks=y, yticklabels=[] if i else [method_label(r) for r in table])  # fmt: skip
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=min(len(labels) + 1, 5))
    return fig
