"""Animations of recorded runs side by side: ONE builder, :func:`animate`, over :class:`pdviz.samplers.History`.

Any history animates the same way: sampler chains (``samplers.run``), particles tracking a moving density
(``flows.track``) and training negatives (``Trainer.history``): every frame that holds a ``"position"``
is a picture. The density behind the particles is the frame's own ``"energy"`` (training snapshots), or
the ``density`` argument: a fixed ``E(x)`` (chains) or a moving energy evaluated at the frame's ``"t"``.
Nothing here runs a sampler.

Built with celluloid's public API only: each frame draws its own artists (background, particles, trails
of a few highlighted particles, the numbers above the panel) and ``Camera.snap()`` records them; whatever
is added after the last snap (colour bar, legend, a static target panel) belongs to no frame and so shows
in all of them.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from celluloid import Camera
from matplotlib.animation import ArtistAnimation, FFMpegWriter, PillowWriter
from matplotlib.cm import ScalarMappable
from matplotlib.lines import Line2D

from pdviz import plotting
from pdviz.errors import InvalidArgumentError


def frame_indices(n_records: int, max_frames: int) -> np.ndarray:
    """``min(n_records, max_frames)`` distinct record indices, evenly spaced, first and last included."""
    m = min(n_records, max_frames)
    if m <= 1:
        return np.array([n_records - 1])
    return np.floor(np.linspace(0, n_records - 1, m) + 0.5).astype(int)


def _aligned(histories: Mapping[str, Any], max_frames: int, align: str) -> dict[str, list[dict]]:
    """The frames shown, per history: the first history's frames subsampled evenly; the others at the
    frame nearest in ``t`` (or step), or (``align="progress"``) at the same fraction of their own frames."""
    frames = {k: [f for f in h.frames if "position" in f] for k, h in histories.items()}
    if not all(frames.values()):
        raise InvalidArgumentError("every history needs at least one frame with a 'position'")
    first = next(iter(frames.values()))
    idx = frame_indices(len(first), max_frames)
    if align == "progress":
        return {
            k: [f[int(i)] for i in np.floor(np.linspace(0, len(f) - 1, len(idx)) + 0.5)]
            for k, f in frames.items()
        }
    key = "t" if "t" in first[0] else "step"
    wanted = np.array([first[i][key] for i in idx], dtype=float)
    out = {}
    for k, f in frames.items():
        have = np.array([fr.get(key, np.nan) for fr in f], dtype=float)
        out[k] = [f[int(np.nanargmin(np.abs(have - w)))] for w in wanted]
    return out


def _backgrounds(shown: dict[str, list[dict]], grid: Any, density: Any) -> dict[str, list]:
    """The density behind each shown frame; a frame without one keeps the previous frame's."""
    cache: dict[int, Any] = {}
    out = {}
    for name, frames in shown.items():
        last, out[name] = None, []
        for f in frames:
            if id(f) not in cache:
                cache[id(f)] = plotting.frame_background(f, grid, density)
            last = cache[id(f)] if cache[id(f)] is not None else last
            out[name].append(last)
    return out


def animate(
    histories: Mapping[str, Any], *, grid: Any, density: Any = None, target: Any = None,
    max_frames: int = 60, trail: int = 5, trail_length: int = 8, max_points: int = 1000,
    interval: int = 200, title: str | None = None, align: str = "step",
) -> ArtistAnimation:  # fmt: skip
    """Several recorded runs side by side, one panel per History, frame by frame.

    Parameters
    ----------
    histories : dict name -> History
        Frames with ``"position"`` [n, 2] (and optionally ``"log_weight"`` [n]: marker area ∝ weight,
        ``"energy"`` [g, g]: the density behind that frame, and scalars shown in the readout).
    grid : pdviz.grid.Grid
        The box drawn, and where densities are evaluated.
    density : energy ``E(x)``, moving energy (with ``.at(t)``), or None
        The background of frames without their own ``"energy"``.
    target : energy ``E(x)``, optional
        A static first panel (e.g. the data density of a training run).
    max_frames, trail, trail_length, max_points, interval
        Frame cap (frames subsampled evenly), number of highlighted particles and the frames their trail
        spans, particles drawn per panel, milliseconds per frame.
    align : "step" or "progress"
        Line other runs up with the first by the nearest ``t``/step, or by the same fraction of their own
        frames (runs of equal time but different iteration counts).

    Returns
    -------
    matplotlib.animation.ArtistAnimation (count frames with ``len(list(anim.new_frame_seq()))``).
    """
    if not histories or align not in ("step", "progress") or max_frames < 1:
        raise InvalidArgumentError("histories must be non-empty, align 'step' or 'progress', max_frames >= 1")
    names = list(histories)
    shown = _aligned(histories, max_frames, align)
    backs = _backgrounds(shown, grid, density)
    target_p = None if target is None else np.exp(plotting.log_density(target, grid))
    peaks = [float(b.max()) for bs in backs.values() for b in bs if b is not None]
    # the sharpest frames of a training run saturate rather than wash out every other frame
    top = float(np.percentile(peaks, 90)) if peaks else 0.0
    norm = plotting.background_norm(top if target_p is None else max(top, float(target_p.max())))
    box = (float(grid.low), float(grid.high))
    n_static = target is not None
    texts = {name: plotting.frame_texts(frames) for name, frames in shown.items()}
    lines = max(len(t.splitlines()) for ts in texts.values() for t in ts)
    fig = plotting.new_figure(2.9 * (len(names) + n_static) + 1.0, 4.3 + 0.2 * lines)
    axes = plotting.subplots(fig, 1, len(names) + n_static)[0]
    for j, (ax, name) in enumerate(zip(axes, ["target"] * n_static + names)):
        plotting.xy_axes(ax, box, outer=(j == 0, True))
        # the frame's numbers go between the panel and its title, off the data (plotting.readout)
        plotting.readout_title(ax, plotting.method_label(name), lines)
    camera = Camera(fig)
    for f in range(len(shown[names[0]])):
        for j, name in enumerate(names):
            ax, frame = axes[j + n_static], shown[name][f]
            if backs[name][f] is not None:
                plotting.draw_density(ax, backs[name][f], box, norm, plotting.BACKGROUND_CMAP)
            recent = shown[name][max(0, f - trail_length + 1) : f + 1]
            past = np.stack([np.asarray(s["position"], dtype=float)[:trail] for s in recent])
            plotting.draw_particles(ax, frame["position"], color=plotting.method_color(name, j), log_weight=frame.get("log_weight"),
                                    trail=past.transpose(1, 0, 2) if trail else None, max_points=max_points)  # fmt: skip
            plotting.readout(ax, texts[name][f])
        camera.snap()
    # added after the last snap: in no frame, so visible in every frame
    if target_p is not None:
        plotting.draw_density(axes[0], target_p, box, norm, plotting.BACKGROUND_CMAP)
    if peaks or target_p is not None:
        mappable = ScalarMappable(norm, plotting.BACKGROUND_CMAP)
        fig.colorbar(mappable, ax=list(axes), label="p(x) per unit area", shrink=0.85)
    _legend(fig, names, trail, trail_length)
    if title:
        fig.suptitle(title)
    # lay out once, then freeze: constrained layout would otherwise rerun at every frame drawn
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    return camera.animate(interval=interval, blit=False, repeat=True)


def _legend(fig: Any, names: list[str], trail: int, trail_length: int) -> None:
    """One figure legend from proxy artists (figure-level: in no frame, so always shown)."""
    color, label = plotting.method_color, plotting.method_label
    handles = [
        Line2D([], [], ls="", marker="o", color=color(n, j), label=label(n)) for j, n in enumerate(names)
    ]
    if trail:
        text = f"{trail} particles, last {trail_length} frames"
        handles.append(Line2D([], [], color="black", marker="o", mfc="white", label=text))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))


def animate_chains(histories: Mapping[str, Any], grid: Any, energy_fn: Any, **kw: Any) -> ArtistAnimation:
    """Sampler chains over their fixed target ``energy_fn``: ``animate(histories, grid=grid, density=energy_fn)``."""
    return animate(histories, grid=grid, density=energy_fn, **kw)


def animate_tracking(
    histories: Mapping[str, Any], moving_energy: Any, grid: Any, **kw: Any
) -> ArtistAnimation:
    """Flows following ``moving_energy``: ``animate(histories, grid=grid, density=moving_energy)``."""
    return animate(histories, grid=grid, density=moving_energy, **kw)


class JSHTML(NamedTuple):
    """An animation as HTML/JavaScript with play controls; a notebook shows it once (HTML only, no
    second copy as text/plain)."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<pdviz animation: {len(self.html):,} characters of HTML>"


def to_jshtml(anim: ArtistAnimation, *, fps: float | None = None) -> JSHTML:
    """The animation as a self-contained player for a notebook (the last expression of a cell)."""
    return JSHTML(anim.to_jshtml(fps=fps))


def save(anim: ArtistAnimation, path: str | Path, fps: float = 8) -> Path:
    """Write the animation to ``path``: ``.gif`` (pillow) or ``.mp4`` (H.264 with ffmpeg; without a
    working ffmpeg it warns and writes a GIF beside ``path`` instead). Returns the path written."""
    p = Path(path)
    if p.suffix.lower() not in (".gif", ".mp4") or p.is_dir():
        raise InvalidArgumentError(f"path must be a .gif or .mp4 file, got {str(p)!r}")
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".mp4":
        try:
            if shutil.which("ffmpeg") is None:
                raise OSError("ffmpeg not found")
            # yuv420p plays everywhere (browsers, phones)
            anim.save(str(p), writer=FFMpegWriter(fps=fps, codec="h264", extra_args=["-pix_fmt", "yuv420p"]))
            return p
        except (OSError, RuntimeError) as exc:
            warnings.warn(
                f"{exc}; writing {p.with_suffix('.gif').name} instead", RuntimeWarning, stacklevel=2
            )
            p.unlink(missing_ok=True)
            p = p.with_suffix(".gif")
    anim.save(str(p), writer=PillowWriter(fps=fps))
    return p
