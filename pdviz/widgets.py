"""Interactive apps (ipywidgets): the "try it" cells of the notebooks.

Every app is a small class over objects the library builds: a change of setting (or the Train button)
runs the library once (``samplers.run``, ``flows.track``, ``training.Trainer``) and keeps the recorded
:class:`pdviz.samplers.History` objects; the *frame* slider (and its Play button) then replays them,
drawing through :func:`pdviz.plotting.plot_frame` and never running anything. A pdviz error caused by a
setting shows in a red box inside the app, which keeps running.

- :class:`SamplerApp` (notebook 1): ULA beside MALA on a fixed energy, KL per step against its floor.
- :class:`TrackingApp` (notebook 3): flows following a moving density, KL per step against its floor.
- :class:`TrainingApp` (notebooks 2, 4): strategies learning a toy dataset; shows trainers a notebook
  already trained, and trains new ones with its lr and PD step h on the button.
- :class:`ExplorerApp` (notebook 5): the tracking and training apps in two tabs.

Each app exposes ``.widget`` (the root container), ``.figure`` (the figure shown), ``.numbers`` (method ->
the numbers in its table) and ``.error`` (the message shown, '' when none), and shows itself as the last
expression of a cell.
Guided questions are answered with :func:`pdviz.exercises.check`.
"""

from __future__ import annotations

import html
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import torch

from pdviz import datasets, energies, flows, metrics, plotting, samplers, training
from pdviz.errors import InvalidArgumentError, PdvizError, check_choice, check_positive
from pdviz.grid import Grid

BOX = (-5.0, 5.0)  # the square every 2-D toy lives in (docs/method.md §6)
METRIC_GRID = 128  # cells per side of the grid that samples, measures KL and solves the exact flow
TRACK_METHODS = flows.TRACK_METHODS  # "langevin" is no move (corrections only), "alpha" the PD field
SVGD_MAX = 5_000  # SVGD's n x n kernel: 100 MB of float32 at 5,000 particles (200,000 would take 160 GB)
MAX_ITERS = 100_000  # the Train button's iterations box


def fast_mode() -> bool:
    """True when the environment variable ``PDVIZ_FAST`` is set (CI): notebooks then use tiny sizes."""
    return os.environ.get("PDVIZ_FAST", "") not in ("", "0")


def sizes(size: str | None = None, **choices: Any) -> Any:
    """The notebooks' size switch: one of ``fast``, ``binder`` or ``paper`` from ``choices``.

    ``size`` names the one to use; ``None`` means ``"fast"`` when ``PDVIZ_FAST`` is set (CI), else
    ``PDVIZ_SIZE`` from the environment, else ``"binder"`` (one CPU, 2 GB: minutes per notebook).
    """
    size = size or ("fast" if fast_mode() else os.environ.get("PDVIZ_SIZE", "binder"))
    check_choice("size", size, tuple(choices))
    return choices[size]


def _slider(description: str, value: float, low: float, high: float, *, log: bool = False) -> W.Widget:
    """A slider that acts on release; ``log``: a base-10 float slider, else an integer slider. Its range
    [low, high] widens to hold ``value``, which must be > 0 (log) or an integer >= 0."""
    check_positive(description, value, integer=not log, allow_zero=not log)
    low, high = min(low, value), max(high, value)
    common = dict(description=description, continuous_update=False, style={"description_width": "initial"})
    if log:
        return W.FloatLogSlider(value=value, base=10, min=math.log10(low), max=math.log10(high), step=0.1,
                                readout_format=".3g", **common)  # fmt: skip
    return W.IntSlider(value=int(value), min=int(low), max=int(high), **common)


def _table(numbers: Mapping[str, Mapping[str, Any]], caption: str) -> str:
    """HTML: one row per method, one column per number, and a caption line."""
    keys = list(dict.fromkeys(k for row in numbers.values() for k in row))
    cell = '<td style="padding:1px 8px;text-align:right">{}</td>'
    head = "".join(cell.format(html.escape(k)) for k in ["method", *keys])
    rows = "".join(
        "<tr>" + cell.format(html.escape(plotting.method_label(m)))
        + "".join(cell.format(plotting.format_number(row.get(k))) for k in keys) + "</tr>"
        for m, row in numbers.items()
    )  # fmt: skip
    table = f"<table style='font-family:monospace'><tr>{head}</tr>{rows}</table>"
    return f"<div>{html.escape(caption)}</div>{table}"


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class _App:
    """What every app shares: the error box, the frame slider with Play, the picture and the numbers.

    A subclass builds its controls, then calls :meth:`_layout`; it defines ``reset()`` (run the library
    with the current settings) and ``redraw()`` (draw the recorded frame ``self.frame.value``).
    """

    def __init__(self) -> None:
        self.error_box = W.HTML(layout=W.Layout(display="none"))
        self.frame = W.IntSlider(value=0, min=0, max=0, description="frame")
        self.play = W.Play(value=0, min=0, max=0, interval=300, description="play")
        W.jslink((self.play, "value"), (self.frame, "value"))
        self.image = W.Image(format="png")
        self.readout = W.HTML()
        # class names that a browser test (and a user's CSS) can find
        for w, name in ((self.image, "plot"), (self.readout, "readout"), (self.play, "play"),
                        (self.frame, "frame"), (self.error_box, "error")):  # fmt: skip
            w.add_class(f"pdviz-{name}")
        self.numbers: dict[str, dict[str, Any]] = {}
        self._replaying = False  # the frame slider moves without redrawing each value on the way
        self.error = ""
        self.last_error: BaseException | None = None

    def _layout(self, rows: Sequence[Sequence[W.Widget]], rerun: Sequence[W.Widget] = ()) -> None:
        """Lay the control ``rows`` above the shared parts; a change of a ``rerun`` control runs again."""
        for control in rerun:
            control.observe(lambda _c: self._guarded(self.reset), names="value")
        self.frame.observe(lambda _c: self._replaying or self._guarded(self.redraw), names="value")
        controls, player = [W.HBox(list(r)) for r in rows], W.HBox([self.play, self.frame])
        self.widget = W.VBox([*controls, player, self.error_box, self.image, self.readout])
        self.widget.add_class("pdviz-app")

    def _guarded(self, fn: Callable[[], Any]) -> bool:
        """Run ``fn``; show an error in the app instead of raising. True on success."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a widget callback must not die
            self.last_error = exc
            bug = "" if isinstance(exc, PdvizError) else " (a bug in pdviz; please report it)"
            self.error = f"{type(exc).__name__}: {exc}{bug}"
            self.error_box.value = (
                f"<div style='color:#8b0000;background:#fdecea'>{html.escape(self.error)}</div>"
            )
            self.error_box.layout.display = ""
            return False
        self.error, self.error_box.value, self.error_box.layout.display = "", "", "none"
        return True

    def _replay(self, n_frames: int) -> None:
        """Point the frame slider at the last of ``n_frames`` frames, then draw."""
        self._replaying = True
        try:
            self.frame.max = self.play.max = max(n_frames - 1, 0)
            self.frame.value = self.frame.max
        finally:
            self._replaying = False
        self.redraw()

    def _show(self, fig: Any, caption: str) -> None:
        self.figure = fig
        self.image.value = _png(fig)  # the picture first: the numbers, sent last, describe it
        self.readout.value = _table(self.numbers, caption)

    def _show_kl(self, keys: Sequence[str], density: Any, caption: str) -> None:
        """Draw the recorded ``self.histories`` at the frame on the slider over ``density``, with their
        KL per frame against ``self.kl_floor`` and the numbers ``keys`` of the frame shown (nothing runs)."""
        if not self.histories:
            raise InvalidArgumentError("nothing to show: the last run failed; fix the settings above")
        j = int(self.frame.value)
        for name, h in self.histories.items():
            self.numbers[name] = {k: h.frames[min(j, len(h.frames) - 1)].get(k) for k in keys}
        kw = {"density": density, "curve": "kl", "floor": self.kl_floor, "max_points": 1000}
        fig = plotting.plot_frame(self.histories, self.grid, index=j, **kw)
        self._show(fig, f"{caption} · KL of exact samples (floor) {self.kl_floor:.3g}")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class SamplerApp(_App):
    """ULA beside MALA on a fixed energy, both started from the same exact samples (notebook 1).

    Started at exact samples an unbiased sampler stays at the KL floor (that of as many exact samples);
    ULA drifts above it by its bias, the more the larger ε. Controls: energy (a name in
    ``energies.ENERGIES``), step size ε, steps, particles; ``record``: about how many frames to keep.
    """

    SAMPLERS = ("ula", "mala")

    def __init__(self, energy: str = "8gaussians", *, step_size: float = 0.1, n_steps: int = 100,
                 n_particles: int = 1000, seed: int = 0, record: int = 25, bins: int = 25):  # fmt: skip
        super().__init__()
        check_choice("energy", energy, energies.ENERGIES)
        self.seed, self.record, self.bins = int(seed), max(int(record), 1), int(bins)
        self.grid = Grid(*BOX, size=METRIC_GRID)
        self.energy = W.Dropdown(options=sorted(energies.ENERGIES), value=energy, description="energy")
        self.step_size = _slider("step size ε", step_size, 1e-3, 2.0, log=True)
        self.n_steps = _slider("steps", n_steps, 10, 1000)
        self.n_particles = _slider("particles", n_particles, 100, 2000)
        controls = (self.energy, self.step_size, self.n_steps, self.n_particles)
        self._layout([controls[:2], controls[2:]], controls)
        self.histories: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """Run both samplers with the current settings (the heavy part), measure KL per frame, draw."""
        self.histories = {}
        self.energy_fn = energies.get(self.energy.value)
        n, n_steps = int(self.n_particles.value), int(self.n_steps.value)
        x0 = self.grid.sample(self.energy_fn, n, generator=samplers.make_generator(self.seed))
        histories = {}  # kept only when both ran: a failure leaves nothing half-drawn
        for i, name in enumerate(self.SAMPLERS):
            _, h = samplers.run(name, x0, self.energy_fn, n_steps, step_size=float(self.step_size.value),
                                generator=samplers.make_generator(self.seed + 1 + i),
                                record_every=max(1, n_steps // self.record))  # fmt: skip
            for f in h.frames:
                f["kl"] = metrics.kl_to_grid(f["position"], self.energy_fn, grid=self.grid, bins=self.bins)
            histories[name] = h
        gen = samplers.make_generator(self.seed + 7)
        self.kl_floor = metrics.kl_floor(self.energy_fn, n, grid=self.grid, bins=self.bins, generator=gen)
        self.histories = histories
        self._replay(len(histories["ula"].frames))

    def redraw(self) -> None:
        """Draw the recorded histories at the frame on the slider (no sampling here)."""
        keys = ("step", "n_grad", "kl", "acceptance_rate")
        self._show_kl(keys, self.energy_fn, f"ε = {float(self.step_size.value):.3g}")


class TrackingApp(_App):
    """Flows following a moving density side by side (notebook 3): ``flows.track`` per method on a change
    of setting, then the frame slider replays the histories. Panels: the target at the frame's t with
    each method's particles, and KL per step against the floor of as many exact samples.

    ``target``: a name in ``energies.MOVING_ENERGIES``; ``methods``: names in :data:`TRACK_METHODS`;
    ``step_size``, ``n_corrections``, ``pd_step``: correction step ε, corrections per step, PD step h.
    """

    def __init__(self, target: str = "scaling_gaussian", methods: Sequence[str] | None = None, *,
                 step_size: float = 1e-2, n_corrections: int = 10, pd_step: float = 1.0,
                 n_particles: int = 1000, n_steps: int = 50, seed: int = 0, bins: int = 25):  # fmt: skip
        super().__init__()
        check_choice("target", target, energies.MOVING_ENERGIES)
        self.methods = tuple(methods or ("langevin", "alpha", "exact"))
        for m in self.methods:  # an empty ``methods`` means the default three
            check_choice("method", m, TRACK_METHODS)
        if "svgd" in self.methods and not (isinstance(n_particles, int) and n_particles <= SVGD_MAX):
            msg = f"n_particles must be at most {SVGD_MAX:,} with 'svgd' (its n x n kernel), got {n_particles!r}"
            raise InvalidArgumentError(msg)
        self.seed, self.bins = int(seed), int(bins)
        self.grid = Grid(*BOX, size=METRIC_GRID)
        self.target = W.Dropdown(options=sorted(energies.MOVING_ENERGIES), value=target, description="target")
        self.step_size = _slider("step size ε", step_size, 1e-4, 1.0, log=True)
        self.step_size.add_class("pdviz-step-size")
        self.n_corrections = _slider("corrections", n_corrections, 0, 50)
        self.pd_step = _slider("PD step h", pd_step, 1e-2, 10.0, log=True)
        self.n_particles = _slider("particles", n_particles, 100, 2000)
        self.n_steps = _slider("target steps", n_steps, 10, 200)
        rows = [
            (self.target, self.step_size, self.n_corrections),
            (self.pd_step, self.n_particles, self.n_steps),
        ]
        self._layout(rows, [c for row in rows for c in row])
        self.histories: dict[str, Any] = {}
        self.reset()

    @property
    def settings(self) -> dict[str, Any]:
        """The current settings as ``flows.track`` keywords, step size aside: pass them to
        ``exercises.check("pd_wins", eps, **app.settings)`` to compare at these settings."""
        return {"target": self.target.value, "n_particles": int(self.n_particles.value),
                "n_steps": int(self.n_steps.value), "seed": self.seed, "grid": self.grid, "bins": self.bins,
                "n_corrections": int(self.n_corrections.value), "step": float(self.pd_step.value)}  # fmt: skip

    def reset(self) -> None:
        """Run ``flows.track`` for every method with the current settings, then draw."""
        self.histories = {}
        s = self.settings
        self.moving = energies.get(s.pop("target"))
        eps = float(self.step_size.value)
        histories = {m: flows.track(self.moving, m, step_size=eps, **s) for m in self.methods}
        gen = samplers.make_generator(self.seed + 1)
        p0 = self.moving.at(0.0)
        self.kl_floor = metrics.kl_floor(p0, s["n_particles"], grid=self.grid, bins=self.bins, generator=gen)
        self.histories = histories
        self._replay(len(next(iter(histories.values())).frames))

    def redraw(self) -> None:
        """Draw the recorded histories at the frame on the slider (no flow runs here)."""
        self._show_kl(("step", "t", "n_grad", "kl", "ess"), self.moving, self.target.value)


class TrainingApp(_App):
    """Negative-sample strategies learning one toy dataset, side by side (notebooks 2 and 4).

    ``trainers`` (strategy -> a :class:`pdviz.training.Trainer` a notebook already ran) are shown at once,
    without retraining. **Train** trains every selected strategy from scratch for ``n_iters`` iterations
    of the ``preset`` with the app's learning rate, Langevin steps per iteration (the chains' ``n_steps``)
    and PD step h. Panels: each learned density (on the drawing grid) with its particles, and the
    ``curve`` over training: the held-out log-likelihood against the data-entropy bound, or the ``"lag"``
    of the negatives against 0 (exact samples); numbers: log-likelihood, the model spread (exact on the
    grid), ESS, and the run's mean lag and gradient error (the lag meter of :class:`pdviz.training.Trainer`).
    """

    def __init__(self, dataset: str = "8gaussians", strategies: Sequence[str] = ("pcd", "pd-beta"), *,
                 trainers: Mapping[str, Any] | None = None, n_iters: int = 200, n_particles: int | None = None,
                 preset: str = "fast", seed: int = 0, grid_size: int = 64,
                 curve: str = "log_likelihood"):  # fmt: skip
        super().__init__()
        self.curve = check_choice("curve", curve, ("log_likelihood", "lag"))
        check_choice("dataset", dataset, datasets.DATASETS)
        for m in [*strategies, *(trainers or {})]:
            check_choice("strategy", m, training.STRATEGIES)
        self.preset = check_choice("preset", preset, training.PRESETS)
        self.seed, self.n_particles = int(seed), n_particles
        self.grid = Grid(*BOX, size=int(grid_size))
        config = training.make_config(preset)
        self.dataset = W.Dropdown(options=sorted(datasets.DATASETS), value=dataset, description="dataset")
        self.strategies = W.SelectMultiple(options=sorted(training.STRATEGIES), value=tuple(strategies),
                                           rows=5, description="strategies")  # fmt: skip
        check_positive("n_iters", n_iters, integer=True, high=MAX_ITERS)  # the box would clamp it silently
        self.n_iters = W.BoundedIntText(value=n_iters, min=1, max=MAX_ITERS, description="iterations")
        self.lr = _slider("learning rate", float(config.lr), 1e-5, 1e-1, log=True)
        self.pd_step = _slider("PD step h", float(config.pd_step), 1e-2, 10.0, log=True)
        self.n_steps = _slider("Langevin steps", config.n_steps, 1, 100)
        self.train_button = W.Button(description="Train", icon="play", button_style="primary")
        self.train_button.on_click(lambda _b: self._guarded(self.train))
        self._layout([(W.VBox([self.dataset, self.n_iters, self.train_button]), self.strategies),
                      (self.lr, self.n_steps, self.pd_step)])  # fmt: skip
        self.trainers: dict[str, Any] = dict(trainers or {})
        self.readout.value = "<i>press Train</i>"
        if self.trainers:
            self.reset()

    def train(self) -> None:
        """Train every selected strategy for ``n_iters`` iterations with the app's settings, then draw."""
        if not self.strategies.value:
            raise InvalidArgumentError("choose at least one strategy (ctrl/cmd-click to select several)")
        extra = {} if self.n_particles is None else {"n_particles": int(self.n_particles)}
        trainers = {}
        for m in self.strategies.value:
            self.readout.value = f"<i>training {html.escape(m)} ...</i>"  # reaches the page during the run
            config = training.make_config(self.preset, dataset=self.dataset.value, strategy=m, seed=self.seed,
                                          n_iters=int(self.n_iters.value), lr=float(self.lr.value),
                                          pd_step=float(self.pd_step.value), n_steps=int(self.n_steps.value),
                                          eval_every=max(1, int(self.n_iters.value) // 15), **extra)  # fmt: skip
            trainers[m] = training.Trainer(config)
            trainers[m].run(progress=False)
        self.trainers = trainers
        self.reset()

    def reset(self) -> None:
        """Record each trainer's current model and particles on the drawing grid, then draw."""
        self.views = {m: self._view(tr) for m, tr in self.trainers.items()}
        self._replay(1)

    def _view(self, tr: Any) -> Any:
        """A History for drawing: the run's scalar frames and curves, plus its model and particles now."""
        frames = [{k: v for k, v in f.items() if not torch.is_tensor(v)} for f in tr.history.frames]
        with torch.no_grad():
            energy = self.grid.energy(tr.energy_fn)
        frames.append({"step": int(tr.iteration), "position": tr.particles.detach().cpu(), "energy": energy})
        return samplers.History(frames=frames, curves=tr.history.curves, meta=tr.history.meta)

    def redraw(self) -> None:
        """Draw each trainer's learned density with its particles, and the log-likelihood curves."""
        centres = datasets.MODE_CENTRES.get(self.dataset.value)
        for m, tr in self.trainers.items():
            energy = self.views[m].frames[-1]["energy"]
            spread = None
            if centres is not None:
                spread = metrics.mode_weight_spread(metrics.grid_mode_weights(self.grid, energy, centres))
            lls, lags, errors = (self.views[m].series(k)[1] for k in ("log_likelihood", "lag", "grad_error"))
            self.numbers[m] = {"iteration": int(tr.iteration), "log_likelihood": lls[-1] if lls else None,
                               "model spread": spread, "ess": metrics.ess(tr.state.log_weight),
                               "mean lag": sum(lags) / len(lags) if lags else None,
                               "mean gradient error": sum(errors) / len(errors) if errors else None}  # fmt: skip
        entropy = datasets.ENTROPY.get(self.dataset.value)
        floor = 0.0 if self.curve == "lag" else None if entropy is None else -entropy
        fig = plotting.plot_frame(self.views, self.grid, curve=self.curve, floor=floor, max_points=1000)
        bound = "" if entropy is None else f" · best possible log-likelihood ≈ {-entropy:.3g}"
        dashed = "exact samples" if floor == 0 else "the bound"
        self._show(fig, f"{self.dataset.value}{bound} · dashed: {dashed}")


class ExplorerApp:
    """One app over everything (notebook 5): a :class:`TrackingApp` and a :class:`TrainingApp` in two tabs.

    ``app.tracking`` and ``app.training`` are the two apps; ``exercises.check("pd_wins", eps,
    **app.tracking.settings)`` answers a guided question at the app's tracking settings.
    """

    def __init__(self, *, n_particles: int = 1000, n_steps: int = 50, seed: int = 0,
                 trainers: Mapping[str, Any] | None = None):  # fmt: skip
        methods = ("langevin", "alpha", "exact", "svgd")
        self.tracking = TrackingApp(
            "translating_gaussian", methods, n_particles=n_particles, n_steps=n_steps, seed=seed
        )
        self.training = TrainingApp(n_particles=n_particles, seed=seed, trainers=trainers)
        apps = [self.tracking.widget, self.training.widget]
        self.widget = W.Tab(children=apps, titles=("tracking", "training"))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
