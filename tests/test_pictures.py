"""Every picture pdviz draws reads on a projector (teaching.md 9): no text under 10 pt at the size shown
in a 1000-pixel notebook column, and no two titles or axis labels on top of each other.

**The convention.** A figure ``W`` inches wide at ``D`` dpi is a PNG of ``W·D`` pixels; a 1000-pixel column
shows it at ``scale = min(1, 1000 / (W·D))`` of that size (a wider one is scaled down, its text with it).
Its text of ``s`` points is ``s·D/72`` pixels, shown at ``s·D/72·scale`` pixels. We read shown pixels
back as points at the column's reference resolution of 100 pixels per inch (matplotlib's and Jupyter's
default dpi: at it a 10-inch figure fills the column exactly and its points are true points), so

    effective_pt = s · (D / 100) · min(1, 1000 / (W · D)).

A 10 in figure at 100 dpi shows its fonts at their nominal size; a 14 in one at 100 dpi shows them at
71 % (7.6 pt labels there read as 5.4 pt); an 80 dpi widget PNG shows 10 pt as 8. ``W·D`` is the width in
pixels of the picture a notebook shows: the PNG Jupyter's inline backend makes (cropped to the figure's
content plus 0.1 in a side, so it can be wider than the figure) or the whole figure (a widget's PNG, an
animation's frames), whichever is wider; it may not exceed the column (1000 px).

Checked: every visible, non-empty ``matplotlib.text.Text`` (``fig.findobj``), and the window extents of
all axes titles (left, centre, right), axis labels and the suptitle, none of which may be cut by the
figure's edge. Figures come from every figure-making function of ``plotting`` (the paper's six-column
layout among them), the first frame of ``animation.animate``, the figure of each widget app (no
browser), the figures ``demo.run_demo`` makes at its tiny size, and notebook 06's figure from the shipped
paper runs (skipped when ``benchmarks/paper_runs/final`` holds none). That figure must also show what the
README's caption says of it (:func:`test_the_paper_figure_shows_what_its_caption_says`).
"""

import json
from collections import namedtuple
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from IPython.core.pylabtools import print_figure
from matplotlib.text import Text
from test_plotting import _no_pyplot_figures, cloud, track_history, training_history  # noqa: F401 (autouse)

from pdviz import animation, bench, demo, energies, image_plots, plotting, training
from pdviz.grid import Grid
from pdviz.widgets import SamplerApp, TrackingApp, TrainingApp

pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")
COLUMN_PX, REFERENCE_DPI, MIN_PT = 1000.0, 100.0, 10.0
ROOT = Path(__file__).resolve().parents[1]
PAPER_RUNS = ROOT / "benchmarks" / "paper_runs" / "final"


def shown_px(fig) -> int:
    """The width in pixels of the picture a notebook shows of ``fig`` (see the module docstring)."""
    png = print_figure(fig, "png", bbox_inches="tight")  # what %matplotlib inline displays
    return max(round(fig.get_figwidth() * fig.dpi), int.from_bytes(png[16:20], "big"))


def _label_boxes(fig, renderer):
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:  # titles, axis labels, and the numbers above panels (plotting.readout)
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]


def covered(fig) -> list[str]:
    """The legends and numbers drawn on a panel's data: every legend (of an axes or of the figure) and
    every text of an axes (e.g. :func:`pdviz.plotting.readout`'s numbers) that overlaps a drawn panel."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [
        ax.get_window_extent(renderer) for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"
    ]
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    readouts = [t for ax in fig.axes for t in ax.texts if t.get_visible()]
    found = [
        (f"legend {[t.get_text() for t in g.get_texts()]}", g.get_window_extent(renderer)) for g in legends
    ]
    found += [(t.get_text(), t.get_window_extent(renderer)) for t in readouts]
    return [name for name, box in found if any(box.overlaps(p) for p in panels)]


def problems(fig) -> dict:
    """Texts shown under 10 pt (text -> effective pt), overlapping title/label pairs, labels cut by the
    edge, and the width shown if over the column, of ``fig``."""
    width = shown_px(fig)  # first: Jupyter's crop draws the figure at another size
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / REFERENCE_DPI * min(1.0, COLUMN_PX / width)  # a point of fig as shown (docstring)
    small = {t.get_text(): round(t.get_fontsize() * scale, 1) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() * scale < MIN_PT - 0.01}  # fmt: skip
    boxes = _label_boxes(fig, renderer)
    overlaps = [(a, b) for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1 :] if p.overlaps(q)]
    page = fig.bbox.padded(1.0)  # a label cut by the figure's edge is not read either
    cut = [a for a, p in boxes if not (page.contains(p.x0, p.y0) and page.contains(p.x1, p.y1))]
    wide = width if width > COLUMN_PX else None
    return {k: v for k, v in {"small": small, "overlaps": overlaps, "cut": cut, "wide px": wide}.items() if v}


DOT_LABELS = ["8gaussians", "checkerboard", "circles", "moons", "pinwheel", "rings", "swissroll", "2spirals"]
DOT_PANELS = {  # notebook 07's table: gaps at two budgets (one NaN: a diverged run) and gradient evaluations
    title: {
        f"{s} ({k} / iteration)": np.geomspace(0.005, 3.0, 8) * (k + 1)
        for k, s in enumerate(training.STRATEGIES)
    }
    for title in ("gap at 15 CPU-s (nats)", "gap at 5 CPU-s (nats)", "grad evals in 15 CPU-s")
}
DOT_PANELS["gap at 5 CPU-s (nats)"]["pcd (1 / iteration)"][3] = np.nan


def test_plot_dots_draws_each_value_and_the_mean_of_each_row():
    fig = plotting.plot_dots(DOT_PANELS, DOT_LABELS)
    axes = fig.axes
    assert len(axes) == 3 and [ax.get_title() for ax in axes] == list(DOT_PANELS)
    rows = list(DOT_PANELS["gap at 5 CPU-s (nats)"])
    assert [t.get_text() for t in axes[0].get_yticklabels()] == rows  # names once, top down in order
    assert all(t.get_text() == "" for ax in axes[1:] for t in ax.get_yticklabels())
    values = np.array(list(DOT_PANELS["gap at 5 CPU-s (nats)"].values())).clip(0.01)
    *dots, mean = axes[1].get_lines()
    assert len(dots) == len(DOT_LABELS) and [d.get_label() for d in dots] == DOT_LABELS
    assert np.allclose(dots[2].get_xdata(), values[:, 2], equal_nan=True)  # floored at 0.01, NaN not drawn
    assert np.allclose(mean.get_xdata(), np.nanmean(values, 1)) and np.isfinite(mean.get_xdata()).all()
    assert np.allclose(mean.get_ydata(), -np.arange(len(rows))) and axes[1].get_xscale() == "log"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [*DOT_LABELS, "mean"]
    low, high = plotting.plot_dots({"close values": {"a": [1.41, 1.42]}}, ["x", "y"]).axes[0].get_xlim()
    # two decades at least: a log axis over less labels its minor ticks, on top of each other
    assert high / low >= 100


def first_frame(anim):
    """The animation's figure showing only its first frame (as a player shows it before Play)."""
    frames = list(anim.new_frame_seq())
    for artist in {a for f in frames for a in f}:
        artist.set_visible(False)
    for artist in frames[0]:
        artist.set_visible(True)
    return anim._fig  # matplotlib keeps the one figure of an animation here


def plotting_figures(grid, eight):
    """name -> figure, one per figure-making function of plotting (with its busiest options)."""
    hs = {"pcd": training_history(grid, eight), "pd-beta": training_history(grid, eight)}
    tracks = {"langevin": track_history(), "svgd": track_history(cost=20, weighted=True)}
    same = {"langevin": track_history(), "alpha": track_history(weighted=True)}
    models = {name: eight for name in bench.PAPER_ORDER}
    x = torch.rand(36, 64, generator=torch.Generator().manual_seed(0))
    cost = namedtuple("Cost", "seconds_per_iteration negatives_share grad_evals_per_iteration")
    X = grid.points[:, 0].reshape(40, 40)
    return {
        "plot_densities": plotting.plot_densities({n: eight for n in "abcde"}, grid, log=True),
        "plot_samplers": plotting.plot_samplers(
            {"exact": cloud(), "ula": cloud(), "mala": cloud()},
            grid,
            eight,
            metrics={"ula": {"kl": 0.1, "kl_floor": 0.02, "acceptance_rate": 1.0}},
        ),  # fmt: skip
        "plot_comparison (paper: 6 columns)": plotting.plot_comparison(
            models,
            {n: cloud() for n in models},
            grid,
            target=eight,
            data=cloud(1000),
            metrics={
                n: {"log_likelihood": -2.9512, "model spread": 0.1234, "iters": 12000, "n_grad": 1234567}
                for n in models
            },
        ),
        "plot_comparison (numbers for every column)": plotting.plot_comparison(
            models,
            {n: cloud() for n in models},
            grid,
            target=cloud(1000),
            log=True,
            metrics={
                n: {"log_likelihood": -2.9512, "mode_weight_spread": 0.0712} for n in ["target", *models]
            },
        ),  # fmt: skip
        "plot_field": plotting.plot_field(X, -X, grid, kind="stream", background=X),
        "plot_dots (13 strategies, 8 datasets)": plotting.plot_dots(DOT_PANELS, DOT_LABELS),
        "plot_training_curves": plotting.plot_training_curves(hs, x="cpu_time"),
        "plot_tracking (costs differ)": plotting.plot_tracking(tracks, ess=True),
        "plot_tracking (same cost)": plotting.plot_tracking(same),
        "plot_frame (kl)": plotting.plot_frame(tracks, grid, density=eight, curve="kl", floor=0.02),
        "plot_frame (training)": plotting.plot_frame(hs, grid, curve="log_likelihood", floor=-2.84),
        "plot_image_grids": image_plots.plot_image_grids({"data": x, "pcd": x, "pd-beta": x}, (1, 8, 8)),
        "plot_image_comparison": image_plots.plot_image_comparison(
            x, {"pcd": x, "pd-beta": x}, {"pcd": lambda z: z.sum(1), "pd-beta": lambda z: -z.sum(1)}, (8, 8)
        ),
        "plot_energy_histograms": image_plots.plot_energy_histograms(
            {"data": x.sum(1), "negatives": x.sum(1)}
        ),
        "plot_negatives_cost": image_plots.plot_negatives_cost(
            {k: cost(0.1, 0.5, 30) for k in ("pcd", "pd-beta", "pd-gamma")}
        ),
        "animate (first frame)": first_frame(
            animation.animate(hs, grid=grid, target=eight, max_frames=3, title="negatives as training goes")
        ),
        "animate_tracking (first frame)": first_frame(
            animation.animate_tracking(tracks, eight, grid, max_frames=3)
        ),
    }


def test_plotting_and_animation_figures_read_on_a_projector():
    figures = plotting_figures(Grid(-4.0, 4.0, 40), energies.get("8gaussians"))
    found = {name: problems(fig) for name, fig in figures.items()}
    assert {k: v for k, v in found.items() if v} == {}
    # no legend and no per-frame numbers on the data (issue 23: the marginals, the histograms, the modes)
    on_data = ("plot_samplers", "plot_frame (kl)", "plot_dots (13 strategies, 8 datasets)", "plot_frame (training)", "plot_image_comparison",
               "plot_energy_histograms", "animate (first frame)", "animate_tracking (first frame)")  # fmt: skip
    assert {name: covered(figures[name]) for name in on_data if covered(figures[name])} == {}


def test_widget_figures_read_on_a_projector():
    apps = {
        "SamplerApp": SamplerApp("8gaussians", n_steps=10, n_particles=100, record=3),
        "TrackingApp": TrackingApp(n_particles=100, n_steps=10),
    }
    trained = TrainingApp("8gaussians", ("pcd", "pd-beta"), n_iters=2, n_particles=100)
    trained.train_button.click()
    apps["TrainingApp"] = trained
    for name, app in apps.items():
        assert app.error == "", name
        assert app.figure.dpi >= 100 and app.figure.legends and covered(app.figure) == [], name
    found = {name: problems(app.figure) for name, app in apps.items()}
    assert {k: v for k, v in found.items() if v} == {}


def test_demo_figures_read_on_a_projector(tmp_path, monkeypatch):
    made = []
    new_figure = plotting.new_figure
    monkeypatch.setattr(plotting, "new_figure", lambda *a, **k: made.append(new_figure(*a, **k)) or made[-1])
    demo.run_demo(tmp_path, seconds=1.0, progress=False, small=True)
    assert len(made) == 4  # samplers, densities, curves, the animation
    found = {str(i): problems(fig) for i, fig in enumerate(made)}
    assert {k: v for k, v in found.items() if v} == {}
    plt.close("all")


def test_the_paper_figure_reads_on_a_projector():
    runs = bench.load_paper_runs(PAPER_RUNS)
    if not runs:
        pytest.skip(f"no shipped paper runs in {PAPER_RUNS}")
    fig = bench.plot_paper_runs(runs)  # notebooks 02, 04, 06 and the README's figure
    assert len(fig.axes) >= 3 * (len(runs) + 1)  # the target and every run: density, particles, curve
    assert problems(fig) == {}


def drawn_numbers(fig, k: int) -> list[dict[str, float]]:
    """The numbers above the particles of columns 2..k (label -> value), read off the figure's titles; the
    labels stand once above the first column when the values alone fit (plot_comparison's row header)."""
    header = fig.axes[k].get_title().splitlines()
    titles = [ax.get_title().splitlines() for ax in fig.axes[k + 1 : 2 * k]]
    pairs = [zip(header, t) if header else (line.rsplit(" ", 1) for line in t) for t in titles]
    return [{label: float(value) for label, value in p} for p in pairs]


def test_the_paper_figure_shows_what_its_caption_says():
    """What the README's caption states of the paper figure is what the figure draws: the numbers above
    the particles, the last-half levels and the curves of the model spread, and the snapshot's dots."""
    runs = bench.load_paper_runs(PAPER_RUNS)
    if set(runs) != set(bench.PAPER_ORDER):
        pytest.skip(f"not every paper run is shipped in {PAPER_RUNS}")
    fig = bench.plot_paper_runs(runs)
    k = len(runs) + 1
    numbers = dict(zip(runs, drawn_numbers(fig, k)))
    ll, spread = ({s: n[label] for s, n in numbers.items()} for label in ("log-lik.", "model spread"))
    curves, level, dot = {}, {}, {}
    for s, ax in zip(runs, fig.axes[2 * k + 1 : 3 * k]):
        lines = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
        x, y = lines["mean of seeds"].get_data()
        curves[s] = y[x >= x[-1] / 2]  # the mean of seeds over the shaded last half
        level[s] = lines["last-half mean"].get_ydata()[0]
        dot[s] = lines["the snapshot drawn above"].get_ydata()[0]
    # the caption's ordering: PCD the most unequal, PD-alpha and PD-beta about half as much, PD-gamma the
    # most even; PCD's curve above PD's through the last half; PD's log-likelihood above PCD's, replay's lowest
    assert max(spread, key=spread.get) == "pcd" and min(spread, key=spread.get) == "pd-gamma", spread
    assert all(0.4 < spread[s] / spread["pcd"] < 0.7 for s in ("pd-alpha", "pd-beta")), spread
    assert all(curves["pcd"].min() > curves[s].max() for s in ("pd-alpha", "pd-beta"))
    assert min(ll["pd-alpha"], ll["pd-beta"]) > ll["pcd"] and min(ll, key=ll.get) == "replay", ll
    assert dot["pd-beta"] > dot["pcd"], dot  # the caption's warning: this snapshot says the opposite
    # the numbers above the particles are the last-half levels drawn, and summary.json's over_seeds
    over = json.loads((PAPER_RUNS / "summary.json").read_text())["over_seeds"]
    for s in runs:
        assert spread[s] == pytest.approx(level[s], abs=1e-3), s
        assert spread[s] == pytest.approx(over[s]["model_mode_weight_spread"], abs=1e-3), s
        assert ll[s] == pytest.approx(over[s]["log_likelihood"], abs=0.01), s
    # and the caption quotes these very numbers (two decimals)
    readme = (ROOT / "README.md").read_text()
    caption = readme[readme.index("**The paper's figure") :].split("\n\n")[0]
    quoted = [spread["pcd"], spread["pd-alpha"], spread["pd-beta"], spread["pd-gamma"], ll["pcd"],
              ll["pd-alpha"], ll["pd-beta"], ll["replay"], dot["pd-beta"], dot["pcd"]]  # fmt: skip
    assert [f"{v:.2f}" for v in quoted if f"{v:.2f}" not in caption] == []


def _contrast_with_white(colour) -> float:
    """WCAG contrast ratio of ``colour`` against white (1: invisible, 21: black)."""
    rgb = np.array(mcolors.to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return 1.05 / (float(linear @ [0.2126, 0.7152, 0.0722]) + 0.05)


def test_every_method_colour_reads_on_white():
    """No pale colour (Okabe-Ito yellow has 1.3:1 on white): every method's colour and every colour of the
    cycle has at least 2:1; the density scales are viridis (dark to light in greyscale too) and greys."""
    cycle = plotting.STYLE["axes.prop_cycle"].by_key()["color"]
    names = [*plotting.METHOD_COLORS, *(f"other {i}" for i in range(5))]
    colours = {n: plotting.method_color(n, i) for i, n in enumerate(names)} | dict(enumerate(cycle))
    assert {
        n: round(_contrast_with_white(c), 2) for n, c in colours.items() if _contrast_with_white(c) < 2
    } == {}
    assert (plotting.DENSITY_CMAP, plotting.BACKGROUND_CMAP) == ("viridis", "Greys")
    # vermillion and bluish green are one grey: the curves of different methods differ in marker too
    fig = plotting.plot_tracking({"langevin": track_history(), "pd-exact": track_history()})
    assert (
        len({line.get_marker() for line in fig.axes[0].get_lines() if line.get_label() != "noise floor"}) == 2
    )
