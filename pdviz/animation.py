"""Step-by-step animations of particles, several methods side by side, built on celluloid.

Three builders read recorded histories (they never run a sampler, flow or training step):

- :func:`animate_tracking`: flows following a moving density (``pdviz.flows.track`` histories);
- :func:`animate_training`: negatives of several training strategies over their learned densities
  (``TrainHistory.snapshots`` plus energies on the grid);
- :func:`animate_chains`: Langevin/MALA chains on a fixed density (``pdviz.samplers.run`` histories).

Each returns a :class:`ParticleAnimation` (a matplotlib ``ArtistAnimation``). Frames are drawn once, as
celluloid does: every frame adds its own artists (one ``imshow`` density per panel, the particles, the
trails of a few highlighted particles, a text readout) and the animation shows one frame's artists at a
time. Everything that does not change (axes, titles, the ONE colour bar, the figure legend built from proxy
artists) is drawn before the first frame and stays visible, so nothing accumulates from frame to frame.
Frames are subsampled evenly to ``max_frames``, which bounds memory.

Output: :func:`to_jshtml` (notebooks), :func:`save_gif`, :func:`save_mp4` (falls back to a GIF, with a
warning, when ffmpeg is missing or fails). Figures are pyplot-free, so nothing needs closing; dropping the
animation frees its figure.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib as mpl
import matplotlib.colors as mcolors
import numpy as np
import torch
from celluloid import Camera
from matplotlib.animation import ArtistAnimation, FFMpegWriter, PillowWriter
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pdviz.errors import InvalidArgumentError, check_choice, check_positive
from pdviz.plotting import (
    BACKGROUND_CMAP,
    background_norm,
    check_grid,
    check_points_2d,
    density_on_grid,
    energy_grid_to_density,
    grid_extent,
    method_color,
    method_label,
    new_figure,
)

__all__ = [
    "ParticleAnimation",
    "animate_tracking",
    "animate_training",
    "animate_chains",
    "frame_indices",
    "to_jshtml",
    "save_gif",
    "save_mp4",
]

_TRAIL_COLOR = "black"


class ParticleAnimation(ArtistAnimation):
    """A matplotlib ``ArtistAnimation`` whose frames can also be counted and rendered one at a time.

    Attributes
    ----------
    frames : list of list of Artist
        The artists of each frame (the same number in every frame).
    readouts : list of list of str
        The readout text of each frame and panel.
    """

    def __init__(self, fig: Figure, frames: list[list[Any]], readouts: list[list[str]], interval: int):
        self.frames = frames
        self.readouts = readouts
        super().__init__(fig, frames, interval=interval, blit=False, repeat=True)
        # The figure is pyplot-free: there is no event loop to play it, only save()/to_jshtml()/render_frame().
        # matplotlib starts an animation on the figure's first draw (hiding every frame's artists, then
        # redrawing); render_frame draws the figure itself, so that hook must go, and with it the warning
        # about an animation "deleted without rendering" that the hook would have prevented.
        fig.canvas.mpl_disconnect(self._first_draw_id)
        self._draw_was_started = True

    def _post_draw(self, framedata: Any, blit: bool) -> None:
        # While saving, the writer draws each frame itself (savefig); matplotlib's own flush would draw
        # every frame a second time on this Agg canvas.
        if self._fig.canvas.is_saving():
            return
        super()._post_draw(framedata, blit)

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return len(self.frames)

    @property
    def figure(self) -> Figure:
        """The figure the animation draws on."""
        return self._fig

    def render_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` rendered to an RGBA array [height, width, 4] (uint8); useful in tests and widgets."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.n_frames:
            raise InvalidArgumentError(f"index must be an integer in [0, {self.n_frames - 1}], got {index!r}")
        for k, artists in enumerate(self.frames):
            for artist in artists:
                artist.set_visible(k == index)
        canvas = self._fig.canvas
        canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()


class _Camera(Camera):
    """celluloid's camera, plus :meth:`freeze`: mark what is drawn so far as static (in no frame).

    celluloid puts every artist present at the first ``snap`` into frame 0, and an ``ArtistAnimation``
    hides a frame's artists in the other frames, so static parts (titles aside) would blink. Advancing the
    camera's offsets past them leaves them out of every frame, hence always visible.
    """

    def freeze(self) -> None:
        for i, axis in enumerate(self._figure.axes):
            for name in self._offsets:
                self._offsets[name][i] = len(getattr(axis, name))

    def animate(self, *, readouts: list[list[str]], interval: int) -> ParticleAnimation:  # type: ignore[override]
        return ParticleAnimation(self._figure, self._photos, readouts, interval)


class _PanelFrame(NamedTuple):
    density: np.ndarray | None  # [size, size] or None (the panel has a static background or none)
    points: np.ndarray  # [m, 2] particles shown
    trail: np.ndarray | None  # [k, L, 2] recent positions of k highlighted particles, oldest first
    text: str  # readout
    sizes: np.ndarray | None = None  # [m] marker areas (weighted particles), None = uniform


# --- helpers --------------------------------------------------------------------------------------


def frame_indices(n_records: int, max_frames: int) -> np.ndarray:
    """``min(n_records, max_frames)`` distinct record indices, evenly spaced, first and last included."""
    n_records = int(check_positive("n_records", n_records, integer=True))
    max_frames = int(check_positive("max_frames", max_frames, integer=True))
    m = min(n_records, max_frames)
    if m == 1:
        return np.array([n_records - 1])
    # spacing >= 1 and rounding half up keep the indices strictly increasing
    return np.floor(np.linspace(0, n_records - 1, m) + 0.5).astype(int)


def _np(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a tensor or array, got {type(value).__name__}") from None


def _get(obj: Any, key: str, name: str, *, required: bool = True) -> Any:
    value = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
    if value is None and required:
        raise InvalidArgumentError(f"{name} has no {key!r}; expected a recorded history with {key!r}")
    return value


def _positions(name: str, value: Any) -> np.ndarray:
    pos = _np(name, value)
    if pos.ndim != 3 or pos.shape[2] != 2 or pos.shape[0] == 0 or pos.shape[1] == 0:
        raise InvalidArgumentError(
            f"{name} must have shape [T, n, 2] (T >= 1, n >= 1), got {list(pos.shape)}"
        )
    return pos


def _per_record(name: str, value: Any, n_records: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = _np(name, value).astype(float).reshape(-1)
    if arr.shape[0] != n_records:
        raise InvalidArgumentError(f"{name} must hold one value per record ({n_records}), got {arr.shape[0]}")
    return arr


def _check_options(
    max_frames: Any, trail: Any, trail_length: Any, max_points: Any, interval: Any, dpi: Any
) -> None:
    check_positive("max_frames", max_frames, integer=True)
    check_positive("trail", trail, integer=True, allow_zero=True)
    check_positive("trail_length", trail_length, integer=True)
    check_positive("max_points", max_points, integer=True)
    check_positive("interval", interval, integer=True)
    check_positive("dpi", dpi)


def _shown(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.linspace(0, n - 1, max_points).round().astype(int)


def _trail(positions: np.ndarray, record_ids: Sequence[int], frame: int, k: int, length: int) -> np.ndarray:
    """Positions [k, L, 2] of particles 0..k-1 at the last ``length`` shown frames (up to ``frame``)."""
    ids = [record_ids[f] for f in range(max(0, frame - length + 1), frame + 1)]
    return np.transpose(positions[ids][:, :k, :], (1, 0, 2))


def _spread(n_records: int, n_frames: int) -> np.ndarray:
    """``n_frames`` record indices spread evenly over ``n_records`` (repeating records when there are fewer)."""
    return np.floor(np.linspace(0, n_records - 1, n_frames) + 0.5).astype(int)


def _nearest(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.abs(values[None, :] - targets[:, None]).argmin(axis=1)


def _fmt_readout(items: Sequence[tuple[str, Any]]) -> str:
    """Aligned ``label value`` lines (monospace), skipping missing values; counts get thousands separators."""
    lines = []
    for label, value in items:
        if value is None:
            continue
        if isinstance(value, str):
            text = value
        else:
            v = float(value)
            if not math.isfinite(v):
                continue
            if label in _COUNT_LABELS:
                text = f"{int(round(v)):,}"
            elif v != 0 and abs(v) < 1e-2:
                text = f"{v:.2e}"
            else:
                text = f"{v:.3f}"
        lines.append((label, text))
    width = max((len(label) for label, _ in lines), default=0) + 1
    return "\n".join(f"{label:<{width}}{text}" for label, text in lines)


_COUNT_LABELS = ("grad evals", "iteration", "step", "ESS")


# --- the frame engine -----------------------------------------------------------------------------


def _render(
    names: Sequence[str],
    n_frames: int,
    panel_frame: Callable[[int, int], _PanelFrame],
    grid: Any,
    *,
    norm: mcolors.Normalize | None,
    static: Mapping[int, np.ndarray] | None = None,
    static_panels: Mapping[str, np.ndarray] | None = None,
    cbar_label: str = "density p(x) per unit area",
    title: str | None = None,
    interval: int = 200,
    panel_size: float = 3.0,
    dpi: int = 80,
    readout: bool = True,
    trail: int = 5,
    trail_length: int = 8,
    point_size: float = 3.0,
) -> ParticleAnimation:
    """Draw all frames. ``static[j]`` is a fixed background of panel j; ``static_panels`` are extra leading
    panels (name -> density) with no particles, e.g. the target."""
    low, high = grid_extent(grid)
    extent = (low, high, low, high)
    static_panels = dict(static_panels or {})
    n_panels = len(static_panels) + len(names)
    fig = new_figure(panel_size * n_panels + 1.0, panel_size + 0.9)
    fig.set_dpi(dpi)
    axes = list(fig.subplots(1, n_panels, squeeze=False)[0])
    for ax in axes:
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$")
    cmap = BACKGROUND_CMAP
    for ax, (name, dens) in zip(axes, static_panels.items()):
        ax.imshow(dens, origin="lower", extent=extent, cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(method_label(name))
    moving_axes = axes[len(static_panels) :]
    for j, (ax, name) in enumerate(zip(moving_axes, names)):
        ax.set_title(method_label(name))
        if static is not None and j in static:
            ax.imshow(static[j], origin="lower", extent=extent, cmap=cmap, norm=norm, interpolation="nearest")
    if norm is not None:
        # one colour bar, from a free-standing mappable, created once (not one per frame)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=cbar_label, shrink=0.85)
    handles = [
        Line2D(
            [], [], ls="", marker="o", ms=4, color=method_color(n, k), label=f"{method_label(n)} particles"
        )
        for k, n in enumerate(names)
    ]
    if trail > 0:
        handles.append(
            Line2D(
                [],
                [],
                color=_TRAIL_COLOR,
                lw=1.2,
                marker="o",
                ms=6,
                mfc="white",
                mec=_TRAIL_COLOR,
                label=f"{trail} highlighted particles, last {trail_length} frames",
            )
        )
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8, frameon=False
    )
    if title:
        fig.suptitle(title)
    # Lay the figure out once, then fix it: constrained layout would otherwise rerun at every frame drawn
    # (most of the cost of writing a GIF), and the frames' artists all sit inside the axes anyway.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    camera = _Camera(fig)
    camera.freeze()
    readouts: list[list[str]] = []
    for f in range(n_frames):
        texts = []
        for j, (ax, name) in enumerate(zip(moving_axes, names)):
            pf = panel_frame(f, j)
            if pf.density is not None:
                ax.imshow(
                    pf.density.astype(np.float32),
                    origin="lower",
                    extent=extent,
                    cmap=cmap,
                    norm=norm,
                    interpolation="nearest",
                )
            color = method_color(name, j)
            sizes = point_size if pf.sizes is None else point_size * pf.sizes
            ax.scatter(pf.points[:, 0], pf.points[:, 1], s=sizes, color=color, alpha=0.65, linewidths=0)
            if pf.trail is not None and pf.trail.shape[0] > 0:
                ax.add_collection(
                    LineCollection(list(pf.trail), colors=_TRAIL_COLOR, linewidths=1.0, alpha=0.8)
                )
                head = pf.trail[:, -1, :]
                ax.scatter(
                    head[:, 0], head[:, 1], s=30, facecolors="white", edgecolors=_TRAIL_COLOR, linewidths=1.2
                )
            if readout:
                ax.text(
                    0.03,
                    0.97,
                    pf.text,
                    transform=ax.transAxes,
                    ha="left",
                    va="top",
                    fontsize=7,
                    family="monospace",
                    bbox={
                        "boxstyle": "round,pad=0.25",
                        "facecolor": "white",
                        "alpha": 0.8,
                        "edgecolor": "none",
                    },
                )
            texts.append(pf.text)
        readouts.append(texts)
        camera.snap()
    return camera.animate(readouts=readouts, interval=interval)


# --- builders -------------------------------------------------------------------------------------


def animate_tracking(
    histories: Mapping[str, Any],
    moving_energy: Any,
    grid: Any,
    *,
    max_frames: int = 60,
    trail: int = 5,
    trail_length: int = 8,
    readout: bool = True,
    max_points: int = 1000,
    interval: int = 200,
    dpi: int = 80,
    title: str | None = None,
) -> ParticleAnimation:
    """Several flows following the same moving density, side by side, step by step.

    Parameters
    ----------
    histories : dict name -> TrackHistory
        Each with ``positions`` [T, n, 2], ``times`` [T] (and optionally ``kl``, ``n_grad``, ``ess`` [T] and
        ``log_weights`` [T, n]: weighted particles are drawn with marker area ∝ weight).
        Frames follow the first history's times; the others show their record nearest in time.
    moving_energy : callable ``E(x, t)`` (e.g. a ``pdviz.energies.MovingEnergy``) or None
        The moving target, drawn as each frame's background (evaluated on the grid at the frame's time).
    grid : pdviz.grid.Grid
        Box and resolution of the background (a 100x100 grid is plenty for animations).
    max_frames : int
        Frame cap; records are subsampled evenly.
    trail, trail_length : int
        Number of highlighted particles (the first ones) and how many shown frames their trail spans.
    readout : bool
        Print time, step, gradient evaluations so far, KL and ESS inside each panel.
    max_points : int
        Particles shown per panel (an evenly spaced subset).
    interval, dpi : int
        Milliseconds per frame; resolution.
    title : str, optional
        A title over the whole figure.

    Returns
    -------
    ParticleAnimation
    """
    check_grid(grid)
    _check_options(max_frames, trail, trail_length, max_points, interval, dpi)
    hs = _histories(histories)
    data = {}
    for name, h in hs.items():
        label = f"histories[{name!r}]"
        pos = _positions(f"{label}.positions", _get(h, "positions", label))
        T = pos.shape[0]
        data[name] = {
            "positions": pos,
            "times": _per_record(f"{label}.times", _get(h, "times", label), T),
            **{
                k: _per_record(f"{label}.{k}", _get(h, k, label, required=False), T)
                for k in ("kl", "n_grad", "ess")
            },
            "log_weights": _log_weights(
                f"{label}.log_weights", _get(h, "log_weights", label, required=False), pos
            ),
        }
    names = list(data)
    first = data[names[0]]
    frames = frame_indices(len(first["times"]), max_frames)
    frame_times = first["times"][frames]
    ids = {name: _nearest(d["times"], frame_times) for name, d in data.items()}
    norm, densities = None, None
    if moving_energy is not None:
        if not callable(moving_energy):
            raise InvalidArgumentError(
                f"moving_energy must be callable E(x, t) or None, got {type(moving_energy).__name__}"
            )
        densities = [
            density_on_grid(_energy_at(moving_energy, float(t)), grid, name="moving_energy")
            for t in frame_times
        ]
        norm = background_norm(max(float(d.max()) for d in densities))
    shown = {name: _shown(d["positions"].shape[1], max_points) for name, d in data.items()}

    def panel_frame(f: int, j: int) -> _PanelFrame:
        name = names[j]
        d, i = data[name], ids[name][f]
        k = min(trail, d["positions"].shape[1])
        text = _fmt_readout(
            [
                ("t", d["times"][i]),
                ("step", i),
                ("grad evals", None if d["n_grad"] is None else d["n_grad"][i]),
                ("KL", None if d["kl"] is None else d["kl"][i]),
                ("ESS", None if d["ess"] is None else d["ess"][i]),
            ]
        )
        sizes = None
        if d["log_weights"] is not None:
            # marker area ∝ weight × n (1 = uniform), clipped so that no particle vanishes or fills a panel
            lw = d["log_weights"][i]
            w = np.exp(lw - lw.max())
            sizes = np.clip(w * len(w) / w.sum(), 0.1, 10.0)[shown[name]]
        return _PanelFrame(
            None if densities is None else densities[f],
            d["positions"][i][shown[name]],
            _trail(d["positions"], ids[name], f, k, trail_length) if k else None,
            text,
            sizes,
        )

    return _render(
        names,
        len(frames),
        panel_frame,
        grid,
        norm=norm,
        cbar_label="moving density p_t(x) per unit area",
        interval=interval,
        dpi=dpi,
        readout=readout,
        trail=trail,
        trail_length=trail_length,
        title=title,
    )


def animate_training(
    snapshots: Mapping[str, Sequence[tuple]],
    grid: Any,
    *,
    target: Any = None,
    max_frames: int = 60,
    trail: int = 5,
    trail_length: int = 8,
    readout: bool = True,
    max_points: int = 1000,
    interval: int = 200,
    dpi: int = 80,
    title: str | None = None,
    align: str = "iteration",
) -> ParticleAnimation:
    """Several training strategies side by side: each one's negatives over its learned density, over time.

    Parameters
    ----------
    snapshots : dict name -> list of ``(iteration, particles [n, 2], energy [size, size] or None[, info])``
        ``energy`` holds the model's energy VALUES on ``grid`` at that iteration (``grid.energy(model)``),
        shown as a normalised density; ``None`` draws no density in that frame. The optional ``info`` dict
        feeds the readout (keys such as ``n_grad``, ``mmd2``, ``log_likelihood``, ``ess``,
        ``mode_weight_spread``).
    grid : pdviz.grid.Grid
    target : energy function or log-density array [size, size], optional
        Drawn as a static first panel on the same colour scale.
    max_frames, trail, trail_length, readout, max_points, interval, dpi, title
        As in :func:`animate_tracking`.
    align : "iteration" or "progress"
        How methods line up in a frame. ``"iteration"``: frames follow the first method's iterations and
        the others show their snapshot nearest in iterations. ``"progress"``: each method's own snapshots
        are spread over the frames (frame f shows each run at the same fraction of its snapshots), for
        runs of equal time but different iteration counts.

    Returns
    -------
    ParticleAnimation
    """
    check_grid(grid)
    _check_options(max_frames, trail, trail_length, max_points, interval, dpi)
    check_choice("align", align, ("iteration", "progress"), what="alignment")
    if not isinstance(snapshots, Mapping) or not snapshots:
        raise InvalidArgumentError(
            f"snapshots must be a non-empty dict name -> list of (iteration, particles, energy), got {type(snapshots).__name__}"
        )
    data = {}
    for name, snaps in snapshots.items():
        data[name] = _check_snapshots(name, snaps, grid)
    names = list(data)
    first = data[names[0]]
    if align == "iteration":
        frames = frame_indices(len(first["iterations"]), max_frames)
        ids = {name: _nearest(d["iterations"], first["iterations"][frames]) for name, d in data.items()}
    else:
        n_frames = min(max_frames, max(len(d["iterations"]) for d in data.values()))
        ids = {name: _spread(len(d["iterations"]), n_frames) for name, d in data.items()}
        frames = ids[names[0]]
    # densities of the shown frames only, computed once (float32 keeps the per-frame images small)
    dens = {
        name: {
            int(i): (
                None
                if d["energies"][i] is None
                else energy_grid_to_density(d["energies"][i], grid).astype(np.float32)
            )
            for i in set(ids[name].tolist())
        }
        for name, d in data.items()
    }
    statics = {}
    if target is not None:
        statics["target"] = density_on_grid(target, grid, name="target").astype(np.float32)
    # One colour scale for all frames. A model passing through a very sharp phase would set a top that
    # washes out every other frame, so the top is the 90th percentile of the frames' peaks (the sharpest
    # frames saturate), and never below the target's peak.
    peaks = [float(v.max()) for dd in dens.values() for v in dd.values() if v is not None]
    top = float(np.percentile(peaks, 90)) if peaks else 0.0
    top = max([top] + [float(v.max()) for v in statics.values()])
    norm = background_norm(top) if top > 0 else None
    size = len(grid.xs)
    blank = np.full((size, size), np.nan, dtype=np.float32)
    any_density = {name: any(v is not None for v in dens[name].values()) for name in names}
    shown = {name: _shown(d["positions"].shape[1], max_points) for name, d in data.items()}

    def panel_frame(f: int, j: int) -> _PanelFrame:
        name = names[j]
        d, i = data[name], ids[name][f]
        k = min(trail, d["positions"].shape[1])
        info = d["infos"][i]
        img = dens[name][int(i)]
        if img is None and any_density[name]:
            img = blank  # a transparent image keeps the artist count per frame constant
        text = _fmt_readout(
            [("iteration", d["iterations"][i])]
            + [(label, _num(info.get(key))) for key, label in _INFO_KEYS if key in info]
        )
        return _PanelFrame(
            img,
            d["positions"][i][shown[name]],
            _trail(d["positions"], ids[name], f, k, trail_length) if k else None,
            text,
        )

    return _render(
        names,
        len(frames),
        panel_frame,
        grid,
        norm=norm,
        static_panels=statics,
        cbar_label="density p(x) per unit area",
        interval=interval,
        dpi=dpi,
        readout=readout,
        trail=trail,
        trail_length=trail_length,
        title=title,
    )


_INFO_KEYS = (
    ("n_grad", "grad evals"),
    ("log_likelihood", "log-lik."),
    ("mmd2", "MMD²"),
    ("mode_weight_spread", "mode spread"),
    ("ess", "ESS"),
    ("kl", "KL"),
)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _check_snapshots(name: str, snaps: Any, grid: Any) -> dict:
    label = f"snapshots[{name!r}]"
    if not isinstance(snaps, Sequence) or len(snaps) == 0:
        raise InvalidArgumentError(
            f"{label} must be a non-empty list of (iteration, particles, energy) tuples"
        )
    size = len(grid.xs)
    iterations, positions, energies, infos = [], [], [], []
    n = None
    for k, snap in enumerate(snaps):
        if not isinstance(snap, (tuple, list)) or len(snap) not in (3, 4):
            raise InvalidArgumentError(
                f"{label}[{k}] must be (iteration, particles, energy or None[, info dict]), got {type(snap).__name__}"
                + (f" of length {len(snap)}" if isinstance(snap, (tuple, list)) else "")
            )
        it, pts, energy = snap[:3]
        info = snap[3] if len(snap) == 4 else {}
        if not isinstance(info, Mapping):
            raise InvalidArgumentError(f"{label}[{k}] info must be a dict, got {type(info).__name__}")
        pts = check_points_2d(f"{label}[{k}] particles", pts)
        if n is None:
            n = pts.shape[0]
        elif pts.shape[0] != n:
            raise InvalidArgumentError(f"{label}[{k}] has {pts.shape[0]} particles, the first snapshot {n}")
        if energy is not None:
            e = _np(f"{label}[{k}] energy", energy)
            if e.shape != (size, size):
                raise InvalidArgumentError(
                    f"{label}[{k}] energy must be None or values on the grid, shape [{size}, {size}], got {list(e.shape)}"
                )
            energy = e
        iterations.append(float(it))
        positions.append(pts)
        energies.append(energy)
        infos.append(dict(info))
    return {
        "iterations": np.asarray(iterations),
        "positions": np.stack(positions).astype(np.float32),
        "energies": energies,
        "infos": infos,
    }


def animate_chains(
    history: Any,
    grid: Any,
    energy_fn: Any,
    *,
    max_frames: int = 60,
    trail: int = 5,
    trail_length: int = 8,
    readout: bool = True,
    kl: bool = False,
    max_points: int = 1000,
    interval: int = 200,
    dpi: int = 80,
    title: str | None = None,
) -> ParticleAnimation:
    """Langevin/MALA chains moving over a fixed density (one panel per history).

    Parameters
    ----------
    history : pdviz.samplers.History, or dict name -> History
        ``positions`` [T, n, 2], ``steps`` [T], and optionally ``acceptance_rate`` and ``n_grad`` [T].
    grid : pdviz.grid.Grid
    energy_fn : energy function or log-density array [size, size]
        The fixed target, drawn once as the background.
    kl : bool
        Add the binned KL of each frame's particles to the target (``pdviz.metrics.kl_to_grid``) to the
        readout (costs one histogram per frame).
    max_frames, trail, trail_length, readout, max_points, interval, dpi, title
        As in :func:`animate_tracking`.

    Returns
    -------
    ParticleAnimation
    """
    check_grid(grid)
    _check_options(max_frames, trail, trail_length, max_points, interval, dpi)
    hs = _histories(history if isinstance(history, Mapping) else {"chains": history})
    data = {}
    for name, h in hs.items():
        label = "history" if name == "chains" and not isinstance(history, Mapping) else f"history[{name!r}]"
        pos = _positions(f"{label}.positions", _get(h, "positions", label))
        T = pos.shape[0]
        steps = _per_record(f"{label}.steps", _get(h, "steps", label, required=False), T)
        data[name] = {
            "positions": pos,
            "steps": np.arange(T, dtype=float) if steps is None else steps,
            "acc": _per_record(
                f"{label}.acceptance_rate", _get(h, "acceptance_rate", label, required=False), T
            ),
            "n_grad": _per_record(f"{label}.n_grad", _get(h, "n_grad", label, required=False), T),
        }
    names = list(data)
    first = data[names[0]]
    frames = frame_indices(len(first["steps"]), max_frames)
    ids = {name: _nearest(d["steps"], first["steps"][frames]) for name, d in data.items()}
    p = density_on_grid(energy_fn, grid, name="energy_fn").astype(np.float32)
    norm = background_norm(float(p.max()))
    shown = {name: _shown(d["positions"].shape[1], max_points) for name, d in data.items()}
    kl_fn = None
    if kl:
        if not callable(energy_fn):
            raise InvalidArgumentError("kl=True needs energy_fn as a callable energy, not an array of values")
        from pdviz import metrics  # lazily: only this option needs it

        kl_fn = metrics.kl_to_grid

    def panel_frame(f: int, j: int) -> _PanelFrame:
        name = names[j]
        d, i = data[name], ids[name][f]
        k = min(trail, d["positions"].shape[1])
        kl_value = None
        if kl_fn is not None:
            kl_value = float(kl_fn(torch.as_tensor(d["positions"][i], dtype=torch.float32), energy_fn, grid))
        text = _fmt_readout(
            [
                ("step", d["steps"][i]),
                ("grad evals", None if d["n_grad"] is None else d["n_grad"][i]),
                ("acceptance", None if d["acc"] is None or i == 0 else d["acc"][i]),
                ("KL", kl_value),
            ]
        )
        return _PanelFrame(
            None,
            d["positions"][i][shown[name]],
            _trail(d["positions"], ids[name], f, k, trail_length) if k else None,
            text,
        )

    return _render(
        names,
        len(frames),
        panel_frame,
        grid,
        norm=norm,
        static={j: p for j in range(len(names))},
        cbar_label="target p(x) per unit area",
        interval=interval,
        dpi=dpi,
        readout=readout,
        trail=trail,
        trail_length=trail_length,
        title=title,
    )


def _histories(histories: Any) -> dict:
    if not isinstance(histories, Mapping) or not histories:
        raise InvalidArgumentError(
            f"histories must be a non-empty dict name -> recorded history, got {type(histories).__name__}"
        )
    for key in histories:
        if not isinstance(key, str):
            raise InvalidArgumentError(f"history names must be str, got {key!r}")
    return dict(histories)


def _log_weights(name: str, value: Any, positions: np.ndarray) -> np.ndarray | None:
    """Per-record log-weights [T, n], or None when absent or uniform in every record (unweighted flows)."""
    if value is None:
        return None
    lw = _np(name, value).astype(float)
    if lw.shape != positions.shape[:2]:
        raise InvalidArgumentError(
            f"{name} must have shape {list(positions.shape[:2])} (records x particles), got {list(lw.shape)}"
        )
    if not np.isfinite(lw).all():
        raise InvalidArgumentError(f"{name} has non-finite values")
    if np.ptp(lw, axis=1).max() < 1e-9:
        return None
    return lw


def _energy_at(moving_energy: Any, t: float) -> Callable:
    if hasattr(moving_energy, "at"):
        return moving_energy.at(t)
    return lambda x: moving_energy(x, t)


# --- output ---------------------------------------------------------------------------------------


class JSHTML(str):
    """HTML text of an animation (a ``str``) that Jupyter displays as the animation itself."""

    def _repr_html_(self) -> str:
        return str(self)


def _check_anim(anim: Any) -> ArtistAnimation:
    if not isinstance(anim, ArtistAnimation):
        raise InvalidArgumentError(
            f"anim must be an animation from pdviz.animation, got {type(anim).__name__}"
        )
    return anim


def to_jshtml(anim: ArtistAnimation, *, fps: float | None = None) -> JSHTML:
    """The animation as self-contained HTML/JavaScript with play controls (for notebooks).

    Returns a :class:`JSHTML` string: the last expression of a notebook cell shows it as the player.
    """
    _check_anim(anim)
    if fps is not None:
        check_positive("fps", fps)
    return JSHTML(anim.to_jshtml(fps=fps))


def _out_path(path: Any, suffix: str) -> Path:
    if not isinstance(path, (str, Path)):
        raise InvalidArgumentError(f"path must be a str or Path, got {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise InvalidArgumentError(f"path must end in {suffix}, got {str(p)!r}")
    if p.exists() and p.is_dir():
        raise InvalidArgumentError(f"path {str(p)!r} is a directory")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def save_gif(anim: ArtistAnimation, path: str | Path, fps: float = 8, *, dpi: int | None = None) -> Path:
    """Write the animation as an animated GIF (pillow); returns the path."""
    _check_anim(anim)
    fps = check_positive("fps", fps)
    if dpi is not None:
        check_positive("dpi", dpi)
    p = _out_path(path, ".gif")
    anim.save(str(p), writer=PillowWriter(fps=fps), dpi=dpi)
    return p


def save_mp4(anim: ArtistAnimation, path: str | Path, fps: float = 8, *, dpi: int | None = None) -> Path:
    """Write the animation as H.264 MP4 with ffmpeg; returns the path written.

    Without a working ffmpeg this never fails: it warns and writes a GIF next to ``path`` instead
    (same name, ``.gif``), returning that path.
    """
    _check_anim(anim)
    fps = check_positive("fps", fps)
    if dpi is not None:
        check_positive("dpi", dpi)
    p = _out_path(path, ".mp4")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        warnings.warn(
            f"ffmpeg not found; writing {p.with_suffix('.gif').name} instead of {p.name}",
            RuntimeWarning,
            stacklevel=2,
        )
        return save_gif(anim, p.with_suffix(".gif"), fps, dpi=dpi)
    try:
        with mpl.rc_context({"animation.ffmpeg_path": ffmpeg}):
            # yuv420p plays everywhere (browsers, phones); it needs even frame sizes, which the writer pads to
            writer = FFMpegWriter(fps=fps, codec="h264", extra_args=["-pix_fmt", "yuv420p"])
            anim.save(str(p), writer=writer, dpi=dpi)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        warnings.warn(
            f"ffmpeg failed ({exc}); writing {p.with_suffix('.gif').name} instead",
            RuntimeWarning,
            stacklevel=2,
        )
        p.unlink(missing_ok=True)
        return save_gif(anim, p.with_suffix(".gif"), fps, dpi=dpi)
    return p
