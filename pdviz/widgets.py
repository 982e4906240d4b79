"""Interactive apps (ipywidgets) over the pdviz library: the "try it" cells of the notebooks.

Every app follows one pattern, so its logic can be tested without a browser:

1. controls (sliders, dropdowns, buttons) hold the settings; changing a setting restarts the runs;
2. a *step* advances each method through the library (``training.Trainer.step`` or ``flows.flow_step``)
   and records its state (particles, counts, metrics);
3. a *redraw* reads only that recorded state and updates a persistent matplotlib figure in place
   (``set_data`` / ``set_offsets``), rendered by Agg to PNG bytes shown in an ``ipywidgets.Image``.

The drawing never runs samplers. A pdviz error caused by a setting (an empty selection, a diverging
chain) is shown in a red box inside the app, and the app keeps running.

Apps: :class:`ExplorerApp` (notebook 5, one app over everything), :class:`SamplerApp` (ULA vs MALA on a
fixed energy), :class:`TrackingApp` (a moving target: Langevin vs PD vs exact), :class:`TrainingApp`
(negative-sample strategies on a toy dataset). Each exposes ``.widget`` (the root container) and shows
itself when it is the last expression of a cell. The guided questions of notebook 5 are answered
through :func:`check`.
"""

from __future__ import annotations

import contextlib
import html
import io
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import ipywidgets as W
import numpy as np
import PIL.Image
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pdviz import datasets, energies, flows, metrics, plotting, samplers, training
from pdviz.errors import (
    InvalidArgumentError,
    PdvizError,
    check_choice,
    check_positive,
)
from pdviz.grid import Grid

__all__ = [
    "ExplorerApp",
    "SamplerApp",
    "TrackingApp",
    "TrainingApp",
    "LivePanels",
    "QUESTIONS",
    "check",
    "compare_tracking",
    "fast_mode",
]

BOX = (-5.0, 5.0)  # the square every 2-D toy lives in (method.md §3)
POSITION_BOUND = 1e3  # particles beyond this have diverged; stop before the grid metrics see them


def fast_mode() -> bool:
    """True when the environment variable ``PDVIZ_FAST`` is set (CI): notebooks then use tiny sizes."""
    return os.environ.get("PDVIZ_FAST", "") not in ("", "0")


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


def _log_slider(description: str, value: float, low: float, high: float) -> W.FloatLogSlider:
    """A base-10 log slider. Work happens on release (``continuous_update=False``)."""
    low, high = min(low, value), max(high, value)
    return W.FloatLogSlider(
        value=value,
        base=10,
        min=math.log10(low),
        max=math.log10(high),
        step=0.1,
        description=description,
        readout_format=".3g",
        continuous_update=False,
        style={"description_width": "initial"},
    )


def _int_slider(description: str, value: int, low: int, high: int, step: int = 1) -> W.IntSlider:
    low, high = min(low, value), max(high, value)
    return W.IntSlider(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
    )


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):d}"
    value = float(value)
    if not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _error_html(message: str) -> str:
    return (
        '<div style="color:#8b0000;background:#fdecea;border:1px solid #e0a0a0;border-radius:3px;'
        f'padding:4px 8px;margin:4px 0"><b>error:</b> {html.escape(message)}</div>'
    )


def _table_html(columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    head = "".join(f'<th style="padding:1px 8px;text-align:right">{html.escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td style="padding:1px 8px;text-align:right">{html.escape(v)}</td>' for v in row)
        + "</tr>"
        for row in rows
    )
    cap = f'<div style="margin:2px 0;font-size:90%">{html.escape(caption)}</div>' if caption else ""
    return f'{cap}<table style="font-family:monospace;font-size:90%"><tr>{head}</tr>{body}</table>'


# --- the figure ------------------------------------------------------------------------------------


class LivePanels:
    """A persistent figure: per panel a density map with particles on top, plus an optional curve panel.

    Built once, then updated in place (``AxesImage.set_data``, ``PathCollection.set_offsets``,
    ``Line2D.set_data``) and rendered by Agg with *blitting*: the static parts (frames, tick labels) are
    drawn once and cached as a background; a frame restores that background and draws only the artists
    that change (maps, particles, titles, lines), then encodes PNG bytes. The background is drawn again
    only when the curve panel's limits must grow. Colours and labels come from :mod:`pdviz.plotting`,
    so the apps look like the static figures.

    Parameters
    ----------
    methods : sequence of str
        One density panel per name (method names give the colour and the title).
    curve : str or None
        Title of an extra panel holding one line per method (e.g. ``"KL to target"``), or None.
    curve_xmax : float
        Initial right end of the curve panel's x axis (it doubles when a line passes it).
    curve_xlabel : str
        x-label of the curve panel.
    grid_size : int
        Side of the density arrays passed to :meth:`set_panel`: ``[grid_size, grid_size]``, rows = x2,
        columns = x1, as :meth:`pdviz.grid.Grid.density` returns them.
    dpi, inches : float
        Resolution and side of one panel in inches.
    """

    def __init__(
        self,
        methods: Sequence[str],
        *,
        curve: str | None = None,
        curve_xmax: float = 10.0,
        curve_xlabel: str = "step",
        grid_size: int = 64,
        dpi: float = 80.0,
        inches: float = 2.6,
    ):
        n = len(methods)
        if n == 0:
            raise InvalidArgumentError("LivePanels needs at least one method")
        self.methods = list(methods)
        n_axes = n + (1 if curve else 0)
        self.figure = Figure(figsize=(inches * n_axes + (0.5 if curve else 0.0), inches + 0.35), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        axes = self.figure.subplots(1, n_axes, squeeze=False)[0]
        blank = np.zeros((grid_size, grid_size))
        norm = plotting.background_norm(1.0)
        self.colours = [plotting.method_color(m, i) for i, m in enumerate(methods)]
        self.images, self.scatters, self.titles, self.axes = [], [], [], list(axes[:n])
        for ax, method, colour in zip(axes[:n], methods, self.colours):
            self.images.append(
                ax.imshow(
                    blank,
                    extent=(*BOX, *BOX),
                    origin="lower",
                    cmap=plotting.BACKGROUND_CMAP,
                    norm=norm,
                    interpolation="bilinear",
                    aspect="equal",
                )
            )
            self.scatters.append(
                ax.scatter(np.zeros(0), np.zeros(0), s=2.5, color=colour, alpha=0.7, linewidths=0)
            )
            ax.set_xlim(*BOX)
            ax.set_ylim(*BOX)
            ax.set_xticks([])
            ax.set_yticks([])
            # a plain text at a fixed place, not set_title: titles are redrawn every frame, and an axes
            # title re-measures the whole axes to place itself
            self.titles.append(
                ax.text(
                    0.5,
                    1.02,
                    plotting.method_label(method),
                    transform=ax.transAxes,
                    ha="center",
                    va="bottom",
                    fontsize=9,
                )
            )
        self.curve_axes = None
        self.lines = []
        self.marker = None
        if curve:
            cax = axes[n]
            cax.set_title(curve, fontsize=9)
            cax.set_xlabel(curve_xlabel, fontsize=8)
            cax.tick_params(labelsize=7)
            cax.ticklabel_format(axis="y", useOffset=False)
            cax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
            # ticks on the right, so the curve sits as close to the panels as the maps sit to each other
            cax.yaxis.tick_right()
            cax.set_xlim(0.0, float(curve_xmax))
            cax.set_ylim(0.0, 1.0)
            self.lines = [cax.plot([], [], color=c, lw=1.4)[0] for c in self.colours]
            self.marker = cax.axvline(0.0, color="0.6", lw=0.8, ls=":")
            self.curve_axes = cax
            self._ylim_set = False
        self.figure.subplots_adjust(
            left=0.01, right=0.955 if curve else 0.99, bottom=0.12, top=0.88, wspace=0.08
        )
        # the frames go last so that the maps, drawn per frame, do not cover their edges
        frames = [spine for ax in self.axes for spine in ax.spines.values()]
        self._dynamic = [*self.images, *self.scatters, *self.titles, *self.lines, *frames]
        if self.marker is not None:
            self._dynamic.append(self.marker)
        for artist in self._dynamic:
            artist.set_animated(True)  # left out of canvas.draw(): drawn per frame over the cached background
        self._background = None

    def set_panel(
        self,
        i: int,
        *,
        density: np.ndarray | None = None,
        points: np.ndarray | None = None,
        title: str | None = None,
    ) -> None:
        """Update panel ``i``: density map (shown scaled to its peak), particles ``[n, 2]``, title."""
        if density is not None:
            d = np.nan_to_num(np.asarray(density, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
            top = float(d.max())
            self.images[i].set_data(d / top if top > 0 else d)
        if points is not None:
            self.scatters[i].set_offsets(np.asarray(points, dtype=float).reshape(-1, 2))
        if title is not None:
            self.titles[i].set_text(title)

    def set_curve(self, i: int, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Set line ``i`` of the curve panel (no-op without one)."""
        if self.curve_axes is not None:
            self.lines[i].set_data(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))

    def set_marker(self, x: float) -> None:
        """Move the dotted vertical line of the curve panel (the step on show)."""
        if self.marker is not None:
            self.marker.set_xdata([x, x])

    def _fit_curve(self) -> bool:
        """Grow the curve panel's limits to hold every line; True when they changed (background redraw)."""
        ax = self.curve_axes
        if ax is None:
            return False
        ys = [np.asarray(line.get_ydata(), dtype=float) for line in self.lines]
        xs = [np.asarray(line.get_xdata(), dtype=float) for line in self.lines]
        ys = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(0)
        xs = np.concatenate(xs) if xs else np.zeros(0)
        changed = False
        x0, x1 = ax.get_xlim()
        if xs.size and xs.max() > x1:
            # doubling keeps full redraws rare in an open-ended run
            while xs.max() > x1:
                x1 *= 2
            ax.set_xlim(x0, x1)
            changed = True
        if ys.size:
            lo, hi = float(ys.min()), float(ys.max())
            y0, y1 = ax.get_ylim()
            if not self._ylim_set or lo < y0 or hi > y1:
                # generous headroom: a growing curve then forces a (slow) background redraw only rarely
                span = max(hi - lo, 0.2 * max(abs(hi), abs(lo)), 1e-6)
                ax.set_ylim(lo - 0.3 * span, hi + 0.6 * span)
                self._ylim_set = True
                changed = True
        return changed

    def png(self) -> bytes:
        """Render the frame (blitting over the cached background) and return PNG bytes."""
        if self._fit_curve() or self._background is None:
            self.canvas.draw()  # the static parts only: the dynamic artists are animated
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        else:
            self.canvas.restore_region(self._background)
        for artist in self._dynamic:
            artist.axes.draw_artist(artist)
        width, height = self.canvas.get_width_height()
        frame = PIL.Image.frombuffer("RGBA", (width, height), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buf = io.BytesIO()
        # compress_level 1 halves the encoding time of the default level for ~10 % larger images
        frame.convert("RGB").save(buf, format="png", compress_level=1)
        return buf.getvalue()


# --- one method's run, stepped by the explorer ------------------------------------------------------


class Settings(NamedTuple):
    """The explorer's settings, validated (see :meth:`ExplorerApp.settings`)."""

    mode: str  # "tracking" or "training"
    target: str  # a MOVING_ENERGIES name (tracking) or a DATASETS name (training)
    methods: tuple[str, ...]  # FLOWS names (tracking) or STRATEGIES names (training)
    step_size: float  # Langevin step ε of the corrections / chains
    n_corrections: int
    pd_step: float  # h: PD moves x <- x + h v
    lr: float  # training only
    n_particles: int
    n_steps: int  # tracking only: steps from t = 0 to t = 1
    seed: int


class _TrackingRun:
    """One flow following a moving density from t = 0 to 1 in ``n_steps`` calls of ``flows.flow_step``.

    It spends its random numbers exactly as :func:`pdviz.flows.track` does (one generator seeded with
    ``seed``: the initial exact samples first, then every step), so for equal settings its numbers equal
    ``track``'s; :func:`compare_tracking` relies on that.
    """

    def __init__(self, method: str, moving: Any, s: Settings, grid: Grid, bins: int):
        self.method, self.moving, self.s, self.grid, self.bins = method, moving, s, grid, bins
        self.generator = samplers.make_generator(s.seed)
        x0 = grid.sample(moving.at(0.0), s.n_particles, generator=self.generator)
        self.state = flows.flow_init(x0, moving.at(0.0))
        self.k = 0
        self.n_grad = 0
        self.ess = float(s.n_particles)
        self.seconds = 0.0
        self.steps = [0]
        self.kl = [float(metrics.kl_to_grid(x0, moving.at(0.0), grid=grid, bins=bins))]
        # targets whose mode weights are known (mode_weights): how far the particles' weights are from them
        self.centres = getattr(moving, "centres", None) if hasattr(moving, "weights") else None

    @property
    def t(self) -> float:
        return self.k / self.s.n_steps

    @property
    def done(self) -> bool:
        return self.k >= self.s.n_steps

    def advance(self, n: int) -> None:
        for _ in range(n):
            if self.done:
                return
            start = time.perf_counter()
            t_old, t_new = self.k / self.s.n_steps, (self.k + 1) / self.s.n_steps
            self.state, info = flows.flow_step(
                self.state,
                self.moving.at(t_old),
                self.moving.at(t_new),
                method=self.method,
                step=self.s.pd_step,
                n_corrections=self.s.n_corrections,
                correction_step_size=self.s.step_size,
                generator=self.generator,
                grid=self.grid,
                iteration=self.k,
            )
            self.k += 1
            self.n_grad += int(info.n_grad)
            self.ess = float(info.ess)
            self.seconds += time.perf_counter() - start
            self.steps.append(self.k)
            self.kl.append(
                float(
                    metrics.kl_to_grid(
                        self.state.position, self.moving.at(t_new), grid=self.grid, bins=self.bins
                    )
                )
            )

    def numbers(self) -> dict[str, Any]:
        return {
            "step": self.k,
            "t": self.t,
            "grad evals": self.n_grad,
            "KL": self.kl[-1],
            "mean KL": float(np.mean(self.kl[1:])) if len(self.kl) > 1 else self.kl[0],
            "ESS": self.ess,
            "mode error": self._mode_error(),
            "ms/step": 1000 * self.seconds / self.k if self.k else None,
        }

    def _mode_error(self) -> float | None:
        """max_k |share of particles nearest centre k - w_k(t)|, where the target's weights are known."""
        if self.centres is None:
            return None
        shares = metrics.mode_weights(self.state.position, self.centres.to(self.state.position.dtype))
        return float((shares.double() - self.moving.weights(self.t).double()).abs().max())


class _TrainingRun:
    """One negative-sample strategy learning an EBM: ``training.Trainer.step`` per iteration.

    ``overrides`` go to :func:`pdviz.training.make_config` on top of the preset. The trainer's own
    evaluation and snapshots are off: the app evaluates on its coarse drawing grid after every frame
    instead, and the trainer's 20000-point evaluation would stall a frame now and then.
    """

    def __init__(
        self,
        strategy: str,
        dataset: str,
        grid: Grid,
        data_eval: torch.Tensor,
        *,
        preset: str = "fast",
        **overrides: Any,
    ):
        self.strategy, self.grid, self.data_eval = strategy, grid, data_eval
        config = training.make_config(
            preset, dataset=dataset, strategy=strategy, eval_every=0, snapshot_every=0, **overrides
        )
        self.trainer = training.Trainer(config)
        self.seconds = 0.0
        self.n_grad = 0
        self.steps: list[int] = []
        self.log_lik: list[float] = []
        self.centres = datasets.MODE_CENTRES.get(dataset)
        if self.centres is not None:
            # each grid cell belongs to its nearest mode centre; mode weights are density sums per label
            self._labels = torch.cdist(grid.points.double(), self.centres.double()).argmin(dim=1).numpy()
        self.density: np.ndarray | None = None
        self.spread: float | None = None
        self.observe()

    @property
    def iteration(self) -> int:
        return int(self.trainer.iteration)

    def advance(self, n: int) -> None:
        start = time.perf_counter()
        for _ in range(n):
            out = self.trainer.step()
            if "n_grad" in out:
                self.n_grad += int(out["n_grad"])
        self.seconds += time.perf_counter() - start
        self.observe()

    def observe(self) -> None:
        """Evaluate the current model on the drawing grid: density, log-likelihood, mode-weight spread."""
        with torch.no_grad():
            e_grid = self.grid.energy(self.trainer.energy_fn).double()
            log_z = float(torch.logsumexp(-e_grid.flatten(), 0)) + math.log(self.grid.cell_area)
            e_data = self.trainer.energy_fn(self.data_eval).double()
        self.density = torch.exp(-e_grid - log_z).numpy()
        self.steps.append(self.iteration)
        # log-likelihood of held-out data, normalised on the drawing grid (metrics.log_likelihood, coarser)
        self.log_lik.append(float(-e_data.mean()) - log_z)
        if self.centres is not None:
            w = np.bincount(
                self._labels, weights=self.density.ravel() * self.grid.cell_area, minlength=len(self.centres)
            )
            w = w / w.sum()
            self.spread = float(w.max() - w.min())

    def numbers(self) -> dict[str, Any]:
        lw = self.trainer.log_weights
        it = self.iteration
        return {
            "iteration": it,
            "grad evals": self.n_grad,
            "log-lik": self.log_lik[-1],
            "ESS": metrics.ess(lw) if lw is not None else None,
            "mode spread": self.spread,
            "ms/iter": 1000 * self.seconds / it if it else None,
        }


# --- the apps ----------------------------------------------------------------------------------------


class _App:
    """What every app shares: an error box, error handling that keeps the app alive, display."""

    widget: W.Box

    def __init__(self) -> None:
        self.error_box = W.HTML(value="", layout=W.Layout(display="none"))
        self.error_box.add_class("pdviz-error")
        self.last_error: BaseException | None = None
        self._error_text = ""
        self._quiet_depth = 0

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    @property
    def error(self) -> str:
        """The message in the error box ('' when none is shown)."""
        return self._error_text

    def _show_error(self, message: str) -> None:
        self._error_text = message
        self.error_box.value = _error_html(message)
        self.error_box.layout.display = ""

    def _clear_error(self) -> None:
        self._error_text = ""
        self.error_box.value = ""
        self.error_box.layout.display = "none"

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn``; show any error in the app instead of raising. Returns True on success."""
        try:
            fn(*args)
        except PdvizError as exc:
            self.last_error = exc
            self._show_error(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a widget callback must not die; the box names it a bug
            self.last_error = exc
            self._show_error(
                f"unexpected {type(exc).__name__}: {exc} (this is a bug in pdviz; please report it)"
            )
            return False
        self._clear_error()
        return True

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Change controls without their observers restarting the runs."""
        self._quiet_depth += 1
        try:
            yield
        finally:
            self._quiet_depth -= 1

    def _on_setting(self, change: dict) -> None:
        if self._quiet_depth == 0:
            self._guarded(self.reset)

    def reset(self) -> None:  # pragma: no cover - every app defines it
        raise NotImplementedError

    def _publish(
        self, panels: Any, columns: Sequence[str], caption: str, keys: Sequence[str] | None = None
    ) -> None:
        """Send the picture, then the table of ``self.numbers`` (one row per method, ``keys`` as columns)."""
        keys = columns[1:] if keys is None else keys
        rows = [
            [plotting.method_label(name)] + [_fmt(nums.get(k)) for k in keys]
            for name, nums in self.numbers.items()
        ]
        # the picture first: the numbers, sent last, then describe a picture already on its way
        self.image.value = panels.png()
        self.readout.value = _table_html(columns, rows, caption)

    # --- the replay apps (SamplerApp, TrackingApp): run once per setting, then replay the record ---

    def _init_replay(self, *, seed: int, bins: int, grid_size: int, dpi: float) -> None:
        """Validate the shared sizes and build the shared parts: grids, step slider, picture, readout."""
        self.seed = int(check_positive("seed", seed, integer=True, allow_zero=True))
        self.bins = int(check_positive("bins", bins, integer=True))
        self.grid = Grid(*BOX, size=int(check_positive("grid_size", grid_size, integer=True)))
        self.metric_grid = Grid(*BOX, size=flows.DEFAULT_GRID_SIZE)
        self.dpi = float(check_positive("dpi", dpi))
        self.show = W.IntSlider(value=0, min=0, max=0, description="show step", continuous_update=True)
        self.image = W.Image(format="png")
        self.image.add_class("pdviz-plot")
        self.readout = W.HTML()
        self.readout.add_class("pdviz-readout")

    def _layout_replay(self, rows: Sequence[Sequence[W.Widget]], controls: Sequence[W.Widget]) -> None:
        """Observe ``controls`` (a change re-runs), and lay out the rows above the shared parts."""
        for control in controls:
            control.observe(self._on_setting, names="value")
        self.show.observe(lambda _c: self._quiet_depth or self._guarded(self.redraw), names="value")
        self.widget = W.VBox(
            [*(W.HBox(list(row)) for row in rows), self.show, self.error_box, self.image, self.readout]
        )
        self.widget.add_class("pdviz-app")

    def redraw(self) -> None:  # pragma: no cover - every app defines it
        raise NotImplementedError


def _tracking_defaults() -> dict[str, Any]:
    return {
        "target": "translating_gaussian",
        "methods": ("langevin", "pd"),
        "step_size": 1e-2,
        "n_corrections": 10,
        "pd_step": 1.0,
    }


def _training_defaults() -> dict[str, Any]:
    c = training.make_config("fast")
    return {
        "target": "8gaussians",
        "methods": ("pcd", "pd-beta"),
        "step_size": float(c.step_size),
        "n_corrections": 10,  # the paper's PD corrections; also the K of the chain strategies here
        "pd_step": float(c.pd_step),
        "lr": float(c.lr),
    }


class ExplorerApp(_App):
    """One app over everything (notebook 5): pick a target and methods, then step, play and compare.

    Two modes share the controls:

    - ``"tracking"``: particles follow a moving density ``p_t ∝ exp(-E(x, t))`` of
      :data:`pdviz.energies.MOVING_ENERGIES` from t = 0 to 1; methods from :data:`pdviz.flows.FLOWS`
      ("langevin" = corrections only, "pd", "exact", "svgd"). Panels: the target at t with each method's
      particles; numbers: KL to the target (binned), ESS, gradient evaluations.
    - ``"training"``: an EBM learns a dataset of :data:`pdviz.datasets.DATASETS`; methods are negative-sample
      strategies of :data:`pdviz.training.STRATEGIES`. Panels: each learned density with its particles;
      numbers: held-out log-likelihood, mode-weight spread (0 = equal weights), ESS, gradient evaluations.

    Changing any setting restarts the runs from step 0 with that setting. **Step** advances every method
    by *steps per frame* steps and redraws; **Play** does so every 250 ms; **Reset** restarts.
    In training mode one K sets both the Langevin steps of the chain strategies (short-run, PCD, replay)
    and the corrections of the PD variants, and ε their step size (the replay strategy keeps its own
    ``replay_step_size``); the grad-evals column shows what each strategy spent.

    Parameters
    ----------
    mode : "tracking" or "training"
    target : str, optional
        Moving-energy name (tracking) or dataset name (training); a default per mode.
    methods : sequence of str, optional
        Flow names (tracking) or strategy names (training); a default per mode.
    step_size, n_corrections, pd_step, lr : optional
        Langevin step ε, corrections per step, PD step h, learning rate (training); defaults per mode.
    n_particles : int
        Particles per method.
    n_steps : int
        Tracking: steps from t = 0 to t = 1.
    seed : int
    grid_size : int
        Side of the drawing grid over [-5, 5]² (density maps; training: the log-likelihood's normaliser).
    bins : int
        Bins per axis of the binned KL (tracking), on the grid of :func:`pdviz.flows.track`.
    dpi : float
        Resolution of the figure.

    Examples
    --------
    >>> app = ExplorerApp(n_particles=500)      # doctest: +SKIP
    >>> app                                     # shows the app in a notebook
    >>> app.step(); app.numbers["pd"]["KL"]     # the same, without a browser
    """

    MODES = ("tracking", "training")

    def __init__(
        self,
        mode: str = "tracking",
        target: str | None = None,
        methods: Sequence[str] | None = None,
        *,
        step_size: float | None = None,
        n_corrections: int | None = None,
        pd_step: float | None = None,
        lr: float | None = None,
        n_particles: int = 1000,
        n_steps: int = 50,
        seed: int = 0,
        grid_size: int = 64,
        bins: int = 25,
        dpi: float = 80.0,
    ):
        super().__init__()
        check_choice("mode", mode, self.MODES)
        defaults = _tracking_defaults() if mode == "tracking" else _training_defaults()
        lr_default = _training_defaults()["lr"] if mode == "tracking" else defaults["lr"]
        target = defaults["target"] if target is None else target
        methods = tuple(defaults["methods"] if methods is None else methods)
        check_choice(
            "target", target, self._targets(mode), what="dataset" if mode == "training" else "moving energy"
        )
        for m in methods:
            check_choice("method", m, self._methods(mode), what="strategy" if mode == "training" else "flow")
        n_particles = int(check_positive("n_particles", n_particles, integer=True))
        n_steps = int(check_positive("n_steps", n_steps, integer=True))
        self.grid_size = int(check_positive("grid_size", grid_size, integer=True))
        self.dpi = float(check_positive("dpi", dpi))
        self.grid = Grid(*BOX, size=self.grid_size)  # drawing (and training log-likelihood)
        # KL, initial samples and the exact flow's solve use the grid and bins of flows.track
        self.metric_grid = Grid(*BOX, size=flows.DEFAULT_GRID_SIZE)
        self.bins = int(check_positive("bins", bins, integer=True))
        self.seed = int(check_positive("seed", seed, integer=True, allow_zero=True))

        self.mode = W.ToggleButtons(options=list(self.MODES), value=mode, description="mode")
        self.target = W.Dropdown(options=sorted(self._targets(mode)), value=target, description="target")
        self.methods = W.SelectMultiple(
            options=sorted(self._methods(mode)), value=methods, rows=5, description="methods"
        )

        def given(name: str, value: Any, default: Any, **kw: Any) -> Any:
            return default if value is None else check_positive(name, value, **kw)

        self.step_size = _log_slider(
            "step size ε", float(given("step_size", step_size, defaults["step_size"])), 1e-4, 1.0
        )
        self.n_corrections = _int_slider(
            "corrections",
            int(
                given(
                    "n_corrections", n_corrections, defaults["n_corrections"], integer=True, allow_zero=True
                )
            ),
            0,
            50,
        )
        self.pd_step = _log_slider(
            "PD step h", float(given("pd_step", pd_step, defaults["pd_step"])), 1e-2, 10.0
        )
        self.lr = _log_slider("learning rate", float(given("lr", lr, lr_default)), 1e-5, 1e-1)
        self.n_particles = _int_slider("particles", n_particles, 100, 2000, 100)
        self.n_steps = _int_slider("target steps", n_steps, 10, 200, 10)
        self.per_frame = W.IntSlider(
            value=1, min=1, max=20, description="steps per frame", style={"description_width": "initial"}
        )
        self.step_size.add_class("pdviz-step-size")
        self.play = W.Play(value=0, min=0, max=100_000, step=1, interval=250, description="play")
        self.play.add_class("pdviz-play")
        self.step_button = W.Button(description="Step", icon="step-forward", tooltip="advance one frame")
        self.step_button.add_class("pdviz-step")
        self.reset_button = W.Button(description="Reset", icon="undo", tooltip="restart every method")
        self.image = W.Image(format="png")
        self.image.add_class("pdviz-plot")
        self.readout = W.HTML()
        self.readout.add_class("pdviz-readout")

        for control in (
            self.target,
            self.methods,
            self.step_size,
            self.n_corrections,
            self.pd_step,
            self.lr,
            self.n_particles,
            self.n_steps,
        ):
            control.observe(self._on_setting, names="value")
        self.mode.observe(self._on_mode, names="value")
        self.play.observe(self._on_play, names="value")
        self.step_button.on_click(lambda _b: self._guarded(self.step))
        self.reset_button.on_click(lambda _b: self._guarded(self.reset))

        self.widget = W.VBox(
            [
                W.HBox([self.mode]),
                W.HBox(
                    [
                        W.VBox([self.target, self.methods]),
                        W.VBox([self.step_size, self.n_corrections, self.pd_step]),
                        W.VBox([self.lr, self.n_particles, self.n_steps]),
                    ]
                ),
                W.HBox([self.play, self.step_button, self.reset_button, self.per_frame]),
                self.error_box,
                self.image,
                self.readout,
            ]
        )
        self.widget.add_class("pdviz-app")
        self.runs: list[Any] = []
        self.panels: LivePanels | None = None
        self.numbers: dict[str, dict[str, Any]] = {}
        self._halted = ""  # the message of the error that stopped the runs, until the next reset
        self._last_tick = -math.inf
        self._show_mode_controls()
        self.reset()  # a bad constructor argument raises here, before anything is displayed

    # -- registries per mode

    @staticmethod
    def _targets(mode: str) -> Sequence[str]:
        return list(energies.MOVING_ENERGIES) if mode == "tracking" else list(datasets.DATASETS)

    @staticmethod
    def _methods(mode: str) -> Sequence[str]:
        return list(flows.FLOWS) if mode == "tracking" else list(training.STRATEGIES)

    # -- settings

    def settings(self) -> Settings:
        """The controls' values, validated; raises a pdviz error naming the bad one."""
        mode = check_choice("mode", self.mode.value, self.MODES)
        methods = tuple(self.methods.value)
        if not methods:
            raise InvalidArgumentError("choose at least one method (ctrl/cmd-click to select several)")
        for m in methods:
            check_choice("method", m, self._methods(mode))
        return Settings(
            mode=mode,
            target=check_choice("target", self.target.value, self._targets(mode)),
            methods=methods,
            step_size=float(check_positive("step size", self.step_size.value)),
            n_corrections=int(
                check_positive("corrections", self.n_corrections.value, integer=True, allow_zero=True)
            ),
            pd_step=float(check_positive("PD step h", self.pd_step.value)),
            lr=float(check_positive("learning rate", self.lr.value)),
            n_particles=int(check_positive("particles", self.n_particles.value, integer=True)),
            n_steps=int(check_positive("target steps", self.n_steps.value, integer=True)),
            seed=self.seed,
        )

    def _show_mode_controls(self) -> None:
        tracking = self.mode.value == "tracking"
        self.lr.layout.display = "none" if tracking else ""
        self.n_steps.layout.display = "" if tracking else "none"

    def _on_mode(self, change: dict) -> None:
        mode = change["new"]
        defaults = _tracking_defaults() if mode == "tracking" else _training_defaults()
        with self._quiet():
            self._stop_play()
            self.methods.value = ()
            self.target.options = sorted(self._targets(mode))
            self.target.value = defaults["target"]
            self.methods.options = sorted(self._methods(mode))
            self.methods.value = tuple(defaults["methods"])
            self.step_size.value = defaults["step_size"]
            self.n_corrections.value = defaults["n_corrections"]
            self.pd_step.value = defaults["pd_step"]
            if "lr" in defaults:
                self.lr.value = defaults["lr"]
        self._show_mode_controls()
        self._guarded(self.reset)

    # -- running

    def reset(self) -> None:
        """Restart every selected method at step 0 with the current settings, and redraw."""
        self._stop_play()
        self.runs = []  # a failed reset must not leave runs with the old settings behind
        self.numbers = {}
        self._halted = ""
        s = self.settings()
        if s.mode == "tracking":
            self.moving = energies.get(s.target)
            self.kl_floor = float(
                metrics.kl_floor(
                    self.moving.at(0.0),
                    s.n_particles,
                    grid=self.metric_grid,
                    bins=self.bins,
                    generator=samplers.make_generator(s.seed + 1),
                )
            )
            runs = [_TrackingRun(m, self.moving, s, self.metric_grid, self.bins) for m in s.methods]
        else:
            data_eval = datasets.sample(s.target, 2000, seed=s.seed + 10_000)
            overrides = {
                "n_particles": s.n_particles,
                "lr": s.lr,
                "lr_schedule": "constant",  # the slider's lr is the lr: no decay over an open-ended run
                "step_size": s.step_size,
                # one K for every strategy: chain steps of short-run/pcd/replay, corrections of PD variants
                "n_steps": max(s.n_corrections, 1),
                "n_corrections": s.n_corrections,
                "pd_step": s.pd_step,
                "seed": s.seed,
            }
            runs = [_TrainingRun(m, s.target, self.grid, data_eval, **overrides) for m in s.methods]
        self.runs = runs
        self._settings = s
        self.panels = LivePanels(
            s.methods,
            curve="KL to target" if s.mode == "tracking" else "held-out log-lik.",
            curve_xmax=s.n_steps if s.mode == "tracking" else 100,
            curve_xlabel="step" if s.mode == "tracking" else "iteration",
            grid_size=self.grid_size,
            dpi=self.dpi,
        )
        self.redraw()

    @property
    def finished(self) -> bool:
        """True when a tracking run has reached t = 1 (training never finishes)."""
        return bool(self.runs) and self._settings.mode == "tracking" and all(r.done for r in self.runs)

    def step(self, n_frames: int = 1) -> None:
        """Advance every method by ``n_frames`` frames of ``steps per frame`` steps, then redraw once.

        Raises the pdviz error of a method that diverged (the others keep the state they reached); the app
        then stays stopped until a setting changes or Reset is pressed.
        """
        if not self.runs:
            raise InvalidArgumentError(
                "nothing to run: fix the settings above (the red message), or press Reset"
            )
        if self._halted:
            raise InvalidArgumentError(f"stopped ({self._halted}); change a setting or press Reset")
        n = int(check_positive("n_frames", n_frames, integer=True)) * int(self.per_frame.value)
        try:
            for run in self.runs:
                run.advance(n)
        except PdvizError as exc:
            self._halted = str(exc)
            raise
        finally:
            # draw what was reached, also when a method diverged on the way
            self.redraw()

    def redraw(self) -> None:
        """Draw the recorded state of every run (no sampling here) and refresh the numbers."""
        s, panels = self._settings, self.panels
        if s.mode == "tracking":
            t = self.runs[0].t
            density = self.grid.density(self.moving.at(t)).numpy()
            for i, run in enumerate(self.runs):
                nums = run.numbers()
                self.numbers[run.method] = nums
                panels.set_panel(
                    i,
                    density=density,
                    points=_np(run.state.position),
                    title=f"{plotting.method_label(run.method)}  KL {_fmt(nums['KL'], 2)}",
                )
                panels.set_curve(i, run.steps, run.kl)
            panels.set_marker(self.runs[0].k)
            caption = (
                f"{s.target}: t = {t:.2f} (step {self.runs[0].k} of {s.n_steps})   ·   ε = {s.step_size:.3g}, "
                f"K = {s.n_corrections}, h = {s.pd_step:.3g}   ·   KL of exact samples (the floor) ≈ "
                f"{self.kl_floor:.3g}   ·   {s.n_particles} particles"
            )
            if self.finished:
                caption += "   ·   reached t = 1: press Reset to run again"
            columns = ["method", "step", "grad evals", "KL", "mean KL", "ESS", "ms/step"]
            if self.runs[0].centres is not None:
                columns.insert(6, "mode error")
            keys = columns[1:]
        else:
            for i, run in enumerate(self.runs):
                nums = run.numbers()
                self.numbers[run.strategy] = nums
                panels.set_panel(
                    i,
                    density=run.density,
                    points=_np(self.runs[i].trainer.particles),
                    title=f"{plotting.method_label(run.strategy)}  it {nums['iteration']}",
                )
                panels.set_curve(i, run.steps, run.log_lik)
            bound = datasets.ENTROPY.get(s.target)
            caption = (
                f"{s.target}: iteration {self.runs[0].iteration}   ·   ε = {s.step_size:.3g}, K = {s.n_corrections}, "
                f"h = {s.pd_step:.3g}, lr = {s.lr:.3g}   ·   {s.n_particles} particles"
            )
            if bound is not None:
                caption += f"   ·   best possible log-lik ≈ {-bound:.3g} (minus the data entropy)"
            columns = ["method", "iteration", "grad evals", "log-lik", "mode spread", "ESS", "ms/iter"]
            keys = columns[1:]
        self._publish(panels, columns, caption, keys)

    # -- play

    def _stop_play(self) -> None:
        with self._quiet():
            self.play.playing = False
            self.play.value = 0

    def _on_play(self, change: dict) -> None:
        # ticks still in flight after Play stopped (or sent while it was paused) are not frames
        if self._quiet_depth or change["new"] <= change["old"] or not self.play.playing:
            return
        # A frame slower than the interval lets ticks queue up in the kernel; ticks that arrive right after
        # the previous frame finished are that backlog, and skipping them keeps Play responsive.
        if time.perf_counter() - self._last_tick < 0.3 * self.play.interval / 1000:
            return
        ok = self._guarded(self.step)
        self._last_tick = time.perf_counter()
        if not ok or self.finished:
            self.play.playing = False


# --- smaller apps for notebooks 1-4 ------------------------------------------------------------------


class SamplerApp(_App):
    """ULA beside MALA on a fixed energy, both started from the same exact samples (notebook 1).

    Started at exact samples, an unbiased sampler stays at the KL floor; ULA drifts away from it by its
    bias, more the larger the step size. Controls: energy, step size, steps, particles; a *show step*
    slider replays the recorded histories without running anything.

    Parameters
    ----------
    energy : str
        A name in :data:`pdviz.energies.ENERGIES`.
    step_size : float
        ε of both samplers.
    n_steps, n_particles, seed : int
    record : int
        About how many records each history keeps (the curve's resolution).
    grid_size, bins, dpi
        Drawing grid side; KL bins per axis (on ``Grid(-5, 5, 128)``); figure resolution.
    """

    SAMPLERS = ("ula", "mala")

    def __init__(
        self,
        energy: str = "8gaussians",
        *,
        step_size: float = 0.1,
        n_steps: int = 100,
        n_particles: int = 1000,
        seed: int = 0,
        record: int = 25,
        grid_size: int = 64,
        bins: int = 25,
        dpi: float = 80.0,
    ):
        super().__init__()
        check_choice("energy", energy, energies.ENERGIES, what="energy")
        self.record = int(check_positive("record", record, integer=True))
        self._init_replay(seed=seed, bins=bins, grid_size=grid_size, dpi=dpi)
        self.energy = W.Dropdown(options=sorted(energies.ENERGIES), value=energy, description="energy")
        self.step_size = _log_slider("step size ε", float(check_positive("step_size", step_size)), 1e-3, 2.0)
        self.n_steps = _int_slider(
            "steps", int(check_positive("n_steps", n_steps, integer=True)), 10, 1000, 10
        )
        self.n_particles = _int_slider(
            "particles", int(check_positive("n_particles", n_particles, integer=True)), 100, 2000, 100
        )
        self._layout_replay(
            [(self.energy, self.step_size), (self.n_steps, self.n_particles)],
            (self.energy, self.step_size, self.n_steps, self.n_particles),
        )
        self.histories: dict[str, samplers.History] = {}
        self.kl: dict[str, list[float]] = {}
        self.numbers: dict[str, dict[str, Any]] = {}
        self.reset()

    def reset(self) -> None:
        """Run both samplers with the current settings (the heavy part), then draw."""
        self.histories, self.kl = {}, {}
        energy_fn = energies.get(self.energy.value)
        n, n_steps, eps = int(self.n_particles.value), int(self.n_steps.value), float(self.step_size.value)
        x0 = self.metric_grid.sample(energy_fn, n, generator=samplers.make_generator(self.seed))
        every = max(1, n_steps // self.record)
        histories, kls = {}, {}  # kept only when both samplers ran: a failure leaves nothing half-drawn
        for i, name in enumerate(self.SAMPLERS):
            _, hist = samplers.run(
                name,
                x0,
                energy_fn,
                n_steps,
                step_size=eps,
                generator=samplers.make_generator(self.seed + 1 + i),
                record_every=every,
            )
            histories[name] = hist
            kls[name] = [
                float(metrics.kl_to_grid(x, energy_fn, grid=self.metric_grid, bins=self.bins))
                for x in hist.positions
            ]
        self.histories, self.kl = histories, kls
        self.energy_fn = energy_fn
        self.panels = LivePanels(
            ("exact", *self.SAMPLERS),
            curve="KL to target",
            curve_xmax=n_steps,
            grid_size=self.grid.size,
            dpi=self.dpi,
        )
        self.density = self.grid.density(energy_fn).numpy()
        self.x0 = x0
        self.kl_floor = float(
            metrics.kl_floor(
                energy_fn,
                n,
                grid=self.metric_grid,
                bins=self.bins,
                generator=samplers.make_generator(self.seed + 7),
            )
        )
        with self._quiet():
            self.show.max = len(self.histories["ula"].steps) - 1
            self.show.value = self.show.max
        self.redraw()

    def redraw(self) -> None:
        """Draw the recorded histories at the *show step* record."""
        if not self.histories:
            raise InvalidArgumentError("nothing to show: the last run failed; fix the settings above")
        j = int(self.show.value)
        self.panels.set_panel(
            0, density=self.density, points=_np(self.x0), title=f"exact  KL {self.kl_floor:.2g} (floor)"
        )
        for i, name in enumerate(self.SAMPLERS, start=1):
            hist = self.histories[name]
            step = int(hist.steps[j])
            rates = hist.acceptance_rate[1 : j + 1]
            self.numbers[name] = {
                "step": step,
                "grad evals": int(hist.n_grad[j]),
                "KL": self.kl[name][j],
                "acceptance": float(rates.mean()) if len(rates) else None,
            }
            self.panels.set_panel(
                i,
                density=self.density,
                points=_np(hist.positions[j]),
                title=f"{plotting.method_label(name)}  KL {self.kl[name][j]:.2g}",
            )
            self.panels.set_curve(i, hist.steps.tolist(), self.kl[name])
        self.panels.set_curve(0, [0, int(self.histories["ula"].steps[-1])], [self.kl_floor, self.kl_floor])
        self.panels.set_marker(int(self.histories["ula"].steps[j]))
        columns = ["sampler", "step", "grad evals", "KL", "acceptance"]
        caption = f"ε = {float(self.step_size.value):.3g}   ·   KL of exact samples (the floor) ≈ {self.kl_floor:.3g}"
        self._publish(self.panels, columns, caption)


class TrackingApp(_App):
    """A moving target: Langevin, PD and the exact flow side by side (notebook 3).

    Runs :func:`pdviz.flows.track` for every method (the heavy part, on a change of setting), then a
    *show step* slider replays the recorded :class:`~pdviz.flows.TrackHistory` (cheap: drawing only).
    Panels: the target density at the shown time with each method's particles, and KL per step.

    Parameters
    ----------
    target : str
        A name in :data:`pdviz.energies.MOVING_ENERGIES`.
    methods : sequence of str
        Names in :data:`pdviz.flows.FLOWS`.
    step_size, n_corrections, pd_step : float, int, float
        Correction step ε, corrections per time step (the same for every method), PD step h.
    n_particles, n_steps, seed : int
    grid_size, bins, dpi
        Drawing grid side; KL bins per axis (on ``Grid(-5, 5, 128)``); figure resolution.
    """

    def __init__(
        self,
        target: str = "scaling_gaussian",
        methods: Sequence[str] = ("langevin", "pd", "exact"),
        *,
        step_size: float = 1e-2,
        n_corrections: int = 10,
        pd_step: float = 1.0,
        n_particles: int = 1000,
        n_steps: int = 50,
        seed: int = 0,
        grid_size: int = 64,
        bins: int = 25,
        dpi: float = 80.0,
    ):
        super().__init__()
        check_choice("target", target, energies.MOVING_ENERGIES, what="moving energy")
        methods = tuple(methods)
        if not methods:
            raise InvalidArgumentError("methods must name at least one flow")
        for m in methods:
            check_choice("method", m, flows.FLOWS, what="flow")
        self.methods = methods
        self._init_replay(seed=seed, bins=bins, grid_size=grid_size, dpi=dpi)
        self.target = W.Dropdown(options=sorted(energies.MOVING_ENERGIES), value=target, description="target")
        self.step_size = _log_slider("step size ε", float(check_positive("step_size", step_size)), 1e-4, 1.0)
        self.n_corrections = _int_slider(
            "corrections",
            int(check_positive("n_corrections", n_corrections, integer=True, allow_zero=True)),
            0,
            50,
        )
        self.pd_step = _log_slider("PD step h", float(check_positive("pd_step", pd_step)), 1e-2, 10.0)
        self.n_particles = _int_slider(
            "particles", int(check_positive("n_particles", n_particles, integer=True)), 100, 2000, 100
        )
        self.n_steps = _int_slider(
            "target steps", int(check_positive("n_steps", n_steps, integer=True)), 10, 200, 10
        )
        rows = [
            (self.target, self.step_size, self.n_corrections),
            (self.pd_step, self.n_particles, self.n_steps),
        ]
        self._layout_replay(rows, [c for row in rows for c in row])
        self.histories: dict[str, flows.TrackHistory] = {}
        self.numbers: dict[str, dict[str, Any]] = {}
        self._densities: dict[int, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        """Run :func:`pdviz.flows.track` for every method with the current settings, then draw."""
        self.histories = {}
        self._densities = {}
        self.moving = energies.get(self.target.value)
        n, n_steps = int(self.n_particles.value), int(self.n_steps.value)
        histories = {}  # kept only when every method ran: a failure leaves nothing half-drawn
        for m in self.methods:
            histories[m] = flows.track(
                self.moving,
                m,
                n_particles=n,
                n_steps=n_steps,
                seed=self.seed,
                grid=self.metric_grid,
                bins=self.bins,
                n_corrections=int(self.n_corrections.value),
                step=float(self.pd_step.value),
                correction_step_size=float(self.step_size.value),
            )
        self.kl_floor = float(
            metrics.kl_floor(
                self.moving.at(0.0),
                n,
                grid=self.metric_grid,
                bins=self.bins,
                generator=samplers.make_generator(self.seed + 1),
            )
        )
        self.histories = histories
        self.panels = LivePanels(
            self.methods, curve="KL to target", curve_xmax=n_steps, grid_size=self.grid.size, dpi=self.dpi
        )
        with self._quiet():
            self.show.max = n_steps
            self.show.value = n_steps
        self.redraw()

    def redraw(self) -> None:
        """Draw the recorded histories at the *show step* record."""
        if not self.histories:
            raise InvalidArgumentError("nothing to show: the last run failed; fix the settings above")
        j = int(self.show.value)
        first = self.histories[self.methods[0]]
        t = float(first.times[j])
        if j not in self._densities:
            self._densities[j] = self.grid.density(self.moving.at(t)).numpy()
        for i, m in enumerate(self.methods):
            h = self.histories[m]
            kl = h.kl.tolist()
            self.numbers[m] = {
                "t": t,
                "grad evals": int(h.n_grad[j]),
                "KL": kl[j],
                "mean KL": float(np.mean(kl[1:])),
                "ESS": float(h.ess[j]),
            }
            self.panels.set_panel(
                i,
                density=self._densities[j],
                points=_np(h.positions[j]),
                title=f"{plotting.method_label(m)}  KL {kl[j]:.2g}",
            )
            self.panels.set_curve(i, list(range(len(kl))), kl)
        self.panels.set_marker(j)
        columns = ["method", "t", "grad evals", "KL", "mean KL", "ESS"]
        caption = f"t = {t:.2f}   ·   KL of exact samples (the floor) ≈ {self.kl_floor:.3g}"
        self._publish(self.panels, columns, caption)


class TrainingApp(_App):
    """Negative-sample strategies learning one toy dataset, side by side (notebooks 2 and 4).

    Press **Train** (training is the heavy part, so nothing runs on a mere change of setting): every
    strategy trains ``n_iters`` iterations with :class:`pdviz.training.Trainer`. Panels: each learned
    density (normalised on the drawing grid) with its particles, and held-out log-likelihood per
    iteration; numbers: log-likelihood, mode-weight spread, gradient evaluations, seconds.

    Parameters
    ----------
    dataset : str
        A name in :data:`pdviz.datasets.DATASETS`.
    strategies : sequence of str
        Names in :data:`pdviz.training.STRATEGIES`.
    n_iters : int
        Training iterations per strategy.
    n_particles : int, optional
        Overrides the preset's particle count.
    preset : str
        A name in :data:`pdviz.training.PRESETS` (``"fast"`` suits a notebook).
    seed : int
    grid_size, dpi
        Drawing grid side and figure resolution.
    """

    def __init__(
        self,
        dataset: str = "8gaussians",
        strategies: Sequence[str] = ("pcd", "pd-beta"),
        *,
        n_iters: int = 200,
        n_particles: int | None = None,
        preset: str = "fast",
        seed: int = 0,
        grid_size: int = 64,
        dpi: float = 80.0,
    ):
        super().__init__()
        check_choice("dataset", dataset, datasets.DATASETS, what="dataset")
        strategies = tuple(strategies)
        for m in strategies:
            check_choice("strategy", m, training.STRATEGIES, what="strategy")
        self.preset = check_choice("preset", preset, training.PRESETS, what="preset")
        self.seed = int(check_positive("seed", seed, integer=True, allow_zero=True))
        self.n_particles_override = (
            None if n_particles is None else int(check_positive("n_particles", n_particles, integer=True))
        )
        self.grid = Grid(*BOX, size=int(check_positive("grid_size", grid_size, integer=True)))
        self.dpi = float(check_positive("dpi", dpi))
        self.dataset = W.Dropdown(options=sorted(datasets.DATASETS), value=dataset, description="dataset")
        self.strategies = W.SelectMultiple(
            options=sorted(training.STRATEGIES), value=strategies, rows=5, description="strategies"
        )
        self.n_iters = W.BoundedIntText(
            value=int(check_positive("n_iters", n_iters, integer=True)),
            min=1,
            max=100_000,
            description="iterations",
        )
        self.train_button = W.Button(description="Train", icon="play", button_style="primary")
        self.image = W.Image(format="png")
        self.image.add_class("pdviz-plot")
        self.readout = W.HTML(value="<i>press Train</i>")
        self.readout.add_class("pdviz-readout")
        self.train_button.on_click(lambda _b: self._guarded(self.train))
        self.widget = W.VBox(
            [
                W.HBox([W.VBox([self.dataset, self.n_iters, self.train_button]), self.strategies]),
                self.error_box,
                self.image,
                self.readout,
            ]
        )
        self.widget.add_class("pdviz-app")
        self.runs: list[_TrainingRun] = []
        self.numbers: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Nothing runs until Train is pressed; kept for the shared observer."""

    def train(self) -> None:
        """Train every selected strategy for ``n_iters`` iterations, then draw."""
        strategies = tuple(self.strategies.value)
        if not strategies:
            raise InvalidArgumentError("choose at least one strategy (ctrl/cmd-click to select several)")
        n_iters = int(check_positive("iterations", self.n_iters.value, integer=True))
        dataset = check_choice("dataset", self.dataset.value, datasets.DATASETS, what="dataset")
        # the preset's settings as they are, for a run of n_iters iterations (its lr schedule included)
        overrides: dict[str, Any] = {"n_iters": n_iters, "seed": self.seed}
        if self.n_particles_override is not None:
            overrides["n_particles"] = self.n_particles_override
        data_eval = datasets.sample(dataset, 2000, seed=self.seed + 10_000)
        self.runs, self.numbers = [], {}
        every = max(1, n_iters // 20)
        for m in strategies:
            run = _TrainingRun(m, dataset, self.grid, data_eval, preset=self.preset, **overrides)
            done = 0
            while done < n_iters:
                k = min(every, n_iters - done)
                run.advance(k)
                done += k
                # progress while the kernel is busy: widget updates reach the page during a cell's run
                self.readout.value = f"<i>training {html.escape(m)}: {done} of {n_iters} iterations</i>"
            self.runs.append(run)
        self.panels = LivePanels(
            strategies,
            curve="held-out log-lik.",
            curve_xmax=n_iters,
            curve_xlabel="iteration",
            grid_size=self.grid.size,
            dpi=self.dpi,
        )
        for i, run in enumerate(self.runs):
            nums = run.numbers()
            nums["seconds"] = run.seconds
            self.numbers[run.strategy] = nums
            self.panels.set_panel(
                i,
                density=run.density,
                points=_np(run.trainer.particles),
                title=f"{plotting.method_label(run.strategy)}  log-lik {nums['log-lik']:.3g}",
            )
            self.panels.set_curve(i, run.steps, run.log_lik)
        columns = ["strategy", "iteration", "grad evals", "log-lik", "mode spread", "ESS", "seconds"]
        bound = datasets.ENTROPY.get(dataset)
        caption = f"{dataset}, {n_iters} iterations"
        if bound is not None:
            caption += f"   ·   best possible log-lik ≈ {-bound:.3g} (minus the data entropy)"
        self._publish(self.panels, columns, caption)


# --- guided questions (notebook 5) -------------------------------------------------------------------


def compare_tracking(
    step_size: float,
    *,
    target: str = "translating_gaussian",
    methods: Sequence[str] = ("langevin", "pd"),
    n_corrections: int = 10,
    pd_step: float = 1.0,
    n_particles: int = 1000,
    n_steps: int = 50,
    seed: int = 0,
    bins: int = 25,
) -> dict[str, float]:
    """Mean binned KL over a tracking run per method, with :func:`pdviz.flows.track`.

    The explorer's tracking mode makes exactly these runs (same seed, grid and bins), so its *mean KL*
    column at the last step shows these numbers.

    Returns
    -------
    dict
        ``{method: mean over steps 1..n_steps of KL(q̂_t ‖ p_t)}``.
    """
    grid = Grid(*BOX, size=flows.DEFAULT_GRID_SIZE)
    out = {}
    for m in methods:
        h = flows.track(
            target,
            m,
            n_particles=n_particles,
            n_steps=n_steps,
            seed=seed,
            grid=grid,
            bins=bins,
            n_corrections=n_corrections,
            step=pd_step,
            correction_step_size=step_size,
        )
        out[m] = float(h.kl[1:].mean())
    return out


class Question(NamedTuple):
    """A guided question: its text, a hint, and a checker ``answer, **kwargs -> (right, explanation)``."""

    text: str
    hint: str
    checker: Callable[..., tuple[bool, str]]


def _as_float(answer: Any) -> float:
    if isinstance(answer, bool) or not isinstance(answer, (int, float, np.floating, np.integer)):
        raise InvalidArgumentError(f"expected a number, got {answer!r}")
    value = float(answer)
    if not math.isfinite(value):
        raise InvalidArgumentError(f"expected a finite number, got {answer!r}")
    return value


def _tracking_kwargs(app: Any) -> dict[str, Any]:
    """The explorer's tracking settings (except the step size) for compare_tracking."""
    if app is None:
        return {}
    if not isinstance(app, ExplorerApp):
        raise InvalidArgumentError(f"app must be an ExplorerApp, got {type(app).__name__}")
    if app.mode.value != "tracking":
        return {}
    s = app.settings()
    return {
        "target": s.target,
        "n_corrections": s.n_corrections,
        "pd_step": s.pd_step,
        "n_particles": s.n_particles,
        "n_steps": s.n_steps,
        "seed": s.seed,
        "bins": app.bins,
    }


#: PD "beats" Langevin when its mean KL is lower by at least this fraction; at large step sizes both end at
#: nearly the same particles (the corrections forget the move and share the random numbers) and tie.
WIN_MARGIN = 0.05


def _pd_vs_langevin(step_size: Any, want_pd_better: bool, app: Any = None, **kwargs: Any) -> tuple[bool, str]:
    eps = _as_float(step_size)
    if eps <= 0:
        raise InvalidArgumentError(f"a step size must be > 0, got {eps}")
    settings = {**_tracking_kwargs(app), **kwargs}
    kl = compare_tracking(eps, methods=("langevin", "pd"), **settings)
    pd_better = kl["pd"] < (1 - WIN_MARGIN) * kl["langevin"]
    verdict = "PD beats Langevin" if pd_better else "PD does not beat Langevin"
    target = settings.get("target", "translating_gaussian")
    detail = f"{target}, ε = {eps:g}: mean KL Langevin {kl['langevin']:.4g}, PD {kl['pd']:.4g} ({verdict})"
    return pd_better == want_pd_better, detail


def _scaling_sigma2(answer: Any, **_kwargs: Any) -> tuple[bool, str]:
    value = _as_float(answer)
    return abs(value - 2.0) < 0.05, f"you answered σ² = {value:g}"


def _translating_velocity(answer: Any, **_kwargs: Any) -> tuple[bool, str]:
    try:
        v = np.asarray(answer, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"expected two numbers (v1, v2), got {answer!r}") from None
    if v.shape != (2,) or not np.isfinite(v).all():
        raise InvalidArgumentError(f"expected two finite numbers (v1, v2), got {answer!r}")
    return bool(np.allclose(v, (3.0, -1.0), atol=1e-6)), f"you answered v = ({v[0]:g}, {v[1]:g})"


#: The guided questions of notebook 5, by name; answer with ``check(name, answer)``.
QUESTIONS: dict[str, Question] = {
    "pd-wins": Question(
        text="Tracking mode: find a step size ε at which PD's mean KL is at least 5 % lower than Langevin's "
        "(same corrections; the app's target and settings when you pass app=app).",
        hint="Langevin follows the moving target by its corrections alone: with a small ε its particles lag "
        "behind, while PD's move carries them along. On translating_gaussian try ε = 0.001.",
        checker=lambda answer, **kw: _pd_vs_langevin(answer, True, **kw),
    ),
    "pd-loses": Question(
        text="Tracking mode: find a step size ε at which PD does NOT beat Langevin (its mean KL is not 5 % "
        "lower).",
        hint="When the corrections alone catch up with the target within each step, PD's move gains nothing: "
        "try ε near the top of the slider. Or switch to scaling_gaussian, where PD's field is wrong at the "
        "start (question 3), and try ε = 0.01.",
        checker=lambda answer, **kw: _pd_vs_langevin(answer, False, **kw),
    ),
    "scaling-sigma2": Question(
        text="Scaling Gaussian E_t(x) = |x|² / (2 σ(t)²): for which σ² does PD's field 2σ'x/σ³ equal the "
        "exact field (σ'/σ) x?",
        hint="Set 2σ'x/σ³ = (σ'/σ) x and cancel σ' x / σ on both sides.",
        checker=_scaling_sigma2,
    ),
    "translating-velocity": Question(
        text="Translating Gaussian E_t(x) = |x - m(t)|² / 2 with m(t) = (3t, -t): what is PD's field "
        "-∇_x ∂_t E_t(x) at any x? Answer as (v1, v2).",
        hint="∂_t E_t(x) = -⟨x - m(t), m'(t)⟩; its x-gradient is -m'(t).",
        checker=_translating_velocity,
    ),
}


def check(question: str, answer: Any = None, **kwargs: Any) -> bool | None:
    """Check an answer to a guided question: prints right/wrong with an explanation or a hint.

    Never raises: an unanswered question (``answer=None``) prints the question and its hint, an answer
    that cannot be read prints why. Keyword arguments go to the checker (``app=`` an :class:`ExplorerApp`
    to use its tracking settings for the step-size questions).

    Parameters
    ----------
    question : str
        A name in :data:`QUESTIONS`.
    answer : optional
        Your answer; None when not answered yet.

    Returns
    -------
    bool or None
        True (right), False (wrong) or None (unanswered, unknown question, or unreadable answer).
    """
    q = QUESTIONS.get(question) if isinstance(question, str) else None
    if q is None:
        print(f"unknown question {question!r}; the questions are: {', '.join(QUESTIONS)}")
        return None
    if answer is None:
        print(f"not answered yet. {q.text}\nhint: {q.hint}")
        return None
    try:
        right, detail = q.checker(answer, **kwargs)
    except PdvizError as exc:
        print(f"could not check this answer: {exc}\nhint: {q.hint}")
        return None
    except Exception as exc:  # noqa: BLE001 - a check in a teaching notebook must not stop the notebook
        print(f"could not check this answer ({type(exc).__name__}: {exc})\nhint: {q.hint}")
        return None
    if right:
        print(f"right: {detail}")
    else:
        print(f"not yet: {detail}\nhint: {q.hint}")
    return right
