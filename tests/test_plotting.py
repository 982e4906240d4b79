"""Figures: their contents (panels, shared scales, numbers, floor lines). That every figure reads on a
projector is tests/test_pictures.py."""

import math
from collections import namedtuple

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage
from matplotlib.text import Text

from pdviz import energies, image_plots, plotting
from pdviz.errors import InvalidArgumentError
from pdviz.grid import Grid
from pdviz.samplers import History

# animations that a test only inspects are never rendered; matplotlib warns about those when they go
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


@pytest.fixture(scope="module")
def grid():
    return Grid(-4.0, 4.0, 40)


@pytest.fixture(scope="module")
def eight():
    return energies.get("8gaussians")


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    yield
    assert plt.get_fignums() == []  # figures are pyplot-free: nothing accumulates


def cloud(n=300, seed=0, shift=0.0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) + shift


def training_history(grid, eight, n_iters=50, every=10, scale=1.0):
    h = History(meta={"kind": "training", "entropy_bound": -2.84})
    for s in range(n_iters):
        h.add(step=s, loss=float(np.sin(s)) * scale, cpu_time=0.2 * s, wall_time=0.3 * s, n_grad=10 * (s + 1))
        if s % every == 0 or s == n_iters - 1:
            h.record(s, log_likelihood=-3.5 + s / 50, mmd2=0.01 / (s + 1), mode_weight_spread=0.3 - s / 500,
                     model_mode_weight_spread=0.2, position=cloud(seed=s), energy=grid.energy(eight) * scale)  # fmt: skip
    return h


def track_history(T=11, n=200, cost=10, weighted=False):
    h = History(meta={"kind": "track", "kl_floor": 0.02})
    for k in range(T):
        lw = torch.randn(n, generator=torch.Generator().manual_seed(k)) if weighted else torch.zeros(n)
        h.record(k, t=k / (T - 1), kl=0.3 - 0.02 * k, n_grad=cost * k, ess=float(n), position=cloud(n, k, k / T),
                 log_weight=lw)  # fmt: skip
    return h


def images_of(fig):
    return [a for ax in fig.axes for a in ax.get_children() if isinstance(a, AxesImage)]


def texts(fig):
    return " ".join(t.get_text() for t in fig.findobj(Text))


# --- densities -----------------------------------------------------------------------------------------


def test_log_density_is_normalised_for_functions_and_energy_values(grid, eight):
    for energy in (eight, grid.energy(eight), grid.energy(eight).numpy() + 7.0):
        lp = plotting.log_density(energy, grid)
        assert lp.shape == (40, 40)
        assert np.exp(lp).sum() * grid.cell_area == pytest.approx(1.0, rel=1e-9)
    assert np.allclose(plotting.log_density(eight, grid), plotting.log_density(grid.energy(eight), grid))


def test_plot_densities_share_one_colour_scale_and_lay_out_rows(grid, eight):
    fig = plotting.plot_densities(
        {"a": eight, "b": grid.energy(eight) * 2}, grid, metrics={"a": {"kl": 0.12}}
    )
    ims = images_of(fig)
    assert len(ims) == 2 and ims[0].norm.vmax == ims[1].norm.vmax
    assert "KL 0.12" in texts(fig)
    assert len(fig.axes) == 3  # two panels, one colour bar
    fig = plotting.plot_densities({str(k): eight for k in range(5)}, grid, ncols=3, log=True)
    assert len(images_of(fig)) == 5 and len(fig.axes) == 6  # 2 x 3 grid, one cell removed, + colour bar
    vmin, vmax = images_of(fig)[0].norm.vmin, images_of(fig)[0].norm.vmax
    assert vmax - vmin == pytest.approx(plotting.LOG_RANGE)


def test_plot_samplers_clouds_marginal_and_numbers(grid, eight):
    fig = plotting.plot_samplers({"ula": cloud(), "mala": cloud(seed=1)}, grid, eight,
                                 metrics={"ula": {"kl": 0.5, "acceptance_rate": 1.0}})  # fmt: skip
    assert len(fig.axes) == 3 and len(images_of(fig)) == 2
    assert "KL 0.5" in texts(fig) and "marginal" in texts(fig)
    assert [line.get_label() for line in fig.axes[-1].get_lines()][0] == "target"
    with pytest.raises(InvalidArgumentError):
        plotting.plot_samplers({"ula": cloud()}, grid, eight, metrics={"mala": {"kl": 1.0}})


def test_plot_comparison_paper_layout(grid, eight):
    models = {"pd-beta": eight, "pcd": grid.energy(eight), "replay": eight}
    fig = plotting.plot_comparison(models, {"pcd": cloud(), "pd-beta": cloud()}, grid, target=cloud(2000),
                                   metrics={"pcd": {"log_likelihood": -2.9}})  # fmt: skip
    titles = [ax.get_title() for ax in fig.axes[:8]]
    assert titles[:4] == ["target", "replay buffer", "PCD", "PD-β"]  # target first, then the paper's order
    assert len(images_of(fig)) == 4 and len({im.norm.vmax for im in images_of(fig)}) == 1
    assert "log-lik. -2.9" in [ax.get_title() for ax in fig.axes]  # numbers above the particles
    assert "n 300" in texts(plotting.plot_comparison(models, {"pcd": cloud()}, grid))  # no numbers: the count
    with pytest.raises(InvalidArgumentError):
        plotting.plot_comparison({}, {}, grid)


def test_plot_field_quiver_and_masked_stream(grid):
    X = grid.points[:, 0].reshape(40, 40).double()
    fig = plotting.plot_field(-X, torch.zeros_like(X), grid, background=X, title="PD field")
    assert fig.axes[0].get_title() == "PD field" and len(fig.axes) == 2
    where = (X.abs() < 2).numpy()
    fig = plotting.plot_field(-X, torch.zeros_like(X), grid, kind="stream", where=where)
    assert fig.axes[0].collections  # streamlines drawn
    with pytest.raises(InvalidArgumentError):
        plotting.plot_field(X, X, grid, kind="arrows")


# --- curves -------------------------------------------------------------------------------------------


def test_spread_floor_matches_the_normal_range():
    # shares of n samples over k equal modes are p + sqrt(p/n) (z_i - mean z) for large n, so their range
    # is sqrt(p/n) times the range of k standard normals, whose mean is 2.847 for k = 8
    expected = 2.847 * math.sqrt(0.125 / 10_000)
    assert plotting.spread_floor(10_000, 8) == pytest.approx(expected, rel=0.02)


def test_plot_training_curves_panels_bound_and_floors(grid, eight):
    hs = {"pcd": training_history(grid, eight), "pd-beta": training_history(grid, eight, scale=0.5)}
    fig = plotting.plot_training_curves(hs)
    assert [ax.get_title() for ax in fig.axes] == ["contrastive loss", "held-out log-likelihood", "MMD² to data",
                                                   "particles' spread"]  # fmt: skip
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["PCD", "PD-β"]  # the runs, named once
    labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert "data-entropy bound -2.84" in labels and "noise floor" in labels
    ll = fig.axes[1].get_lines()[0]
    assert list(ll.get_xdata()) == [0, 10, 20, 30, 40, 49]  # the frames' steps
    fig = plotting.plot_training_curves(
        hs, x="cpu_time", panels=("log_likelihood", "model_mode_weight_spread")
    )
    assert fig.axes[0].get_lines()[0].get_xdata()[-1] == pytest.approx(0.2 * 49)
    assert fig.axes[1].get_lines()[-1].get_ydata()[0] == 0.0  # the model's floor: 0
    with pytest.raises(InvalidArgumentError):
        plotting.plot_training_curves(hs, x="hours")


def test_plot_tracking_floor_and_cost_panel_only_when_costs_differ():
    same = {"langevin": track_history(), "alpha": track_history()}
    fig = plotting.plot_tracking(same)
    assert len(fig.axes) == 1  # equal cost: a "KL against cost" panel would repeat its neighbour
    assert "noise floor" in [line.get_label() for line in fig.axes[0].get_lines()]
    fig = plotting.plot_tracking(
        {"langevin": track_history(), "svgd": track_history(cost=30)}, floor=0.05, ess=True
    )
    assert [ax.get_title() for ax in fig.axes] == ["KL to the moving density", "KL against cost",
                                                   "effective sample size"]  # fmt: skip
    assert fig.axes[0].get_yscale() == "log"


def test_plot_frame_panels_readout_and_curve(grid, eight):
    hs = {"langevin": track_history(), "alpha": track_history(weighted=True)}
    fig = plotting.plot_frame(hs, grid, index=3, density=eight, curve="kl", floor=0.02)
    assert len(fig.axes) == 3 and len(images_of(fig)) == 2
    assert "step 3" in texts(fig) and "KL" in texts(fig)
    sizes = fig.axes[1].collections[0].get_sizes()
    assert sizes.min() < sizes.max()  # weighted particles: marker area ∝ weight
    marker = [line for line in fig.axes[2].get_lines() if line.get_linestyle() == ":"][0]
    assert marker.get_xdata()[0] == 3
    assert "noise floor" in [line.get_label() for line in fig.axes[2].get_lines()]
    hs = {"pcd": training_history(grid, eight)}
    fig = plotting.plot_frame(hs, grid, curve="log_likelihood", floor=-2.84)  # a bound, not a noise floor
    assert "data-entropy bound" in [line.get_label() for line in fig.axes[1].get_lines()]


# --- images -------------------------------------------------------------------------------------------


def test_tile_places_images_with_white_padding():
    x = torch.arange(4).float().repeat_interleave(4).reshape(4, 4) / 3  # four 2x2 images, values 0..1
    canvas = image_plots.tile(x, (2, 2), ncols=2)
    assert canvas.shape == (7, 7, 1)
    assert (
        canvas[0].min() == 1
        and canvas[1, 1, 0] == 0
        and canvas[4, 4, 0] == 1
        and canvas[1, 4, 0] == pytest.approx(1 / 3)
    )
    with pytest.raises(InvalidArgumentError):
        image_plots.tile(x, (3, 3))


def test_image_figures():
    x = torch.rand(20, 64, generator=torch.Generator().manual_seed(0))
    fig = image_plots.plot_image_grids({"data": x, "noise": x.flip(0)}, (1, 8, 8), notes={"data": "n=20"})
    assert [ax.get_title() for ax in fig.axes] == ["data", "noise"] and fig.axes[0].get_xlabel() == "n=20"
    lin = torch.nn.Linear(64, 1)
    fns = {"pcd": lambda z: lin(z).squeeze(1), "pd-beta": lambda z: -lin(z).squeeze(1)}
    fig = image_plots.plot_image_comparison(x, {"pcd": x, "pd-beta": x}, fns, (1, 8, 8))
    assert len(fig.axes) == 6 and "mean" in texts(fig)
    cost = namedtuple("Cost", "seconds_per_iteration negatives_share grad_evals_per_iteration")
    fig = image_plots.plot_negatives_cost({"pcd": cost(0.1, 0.8, 50), "pd-beta": cost(0.05, 0.6, 31)})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights[0] + heights[2] == pytest.approx(100.0) and "31 evals" in texts(fig)


def lag_history(lagging: bool, T=8):
    g = torch.Generator().manual_seed(3)
    model = torch.softmax(torch.randn(T + 1, 8, generator=g, dtype=torch.float64), 1)
    h = History(meta={"kind": "training", "entropy_bound": -2.84, "n_particles": 1000})
    for k in range(T):
        h.add(step=k, loss=0.0, cpu_time=0.1 * k, wall_time=0.1 * k, n_grad=k)
        h.record(k, lag=0.3 if lagging else 0.01, grad_error=0.9, grad_error_floor=0.2, model_mode_weights=model[k + 1],
                 negative_mode_weights=model[k] if lagging else model[k + 1])  # fmt: skip
    return h


def test_lag_panels_draw_their_floors_and_the_mode_lag_its_correlation():
    hs = {"pcd": lag_history(True), "pd-weighted": lag_history(False)}
    fig = plotting.plot_training_curves(hs, panels=("lag", "grad_error"))
    lag, grad = fig.axes
    assert lag.get_yscale() == "symlog" and "exact samples" in [ln.get_label() for ln in lag.get_lines()]
    dotted = [ln for ln in grad.get_lines() if ln.get_linestyle() == ":" and len(ln.get_ydata())]
    assert len(dotted) == 2 and all(list(ln.get_ydata()) == [0.2] * 8 for ln in dotted)  # each run's floor
    fig = plotting.plot_mode_lag(hs)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0] == "PCD: r = -1.00" and texts[1].startswith("PD weighted: r = ")
