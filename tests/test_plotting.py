"""Figures: structure (axes, colour bars, shared scales, labels) and input validation."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage

from pdviz import energies, plotting
from pdviz.errors import InvalidArgumentError, UnknownNameError
from pdviz.grid import Grid


@pytest.fixture(scope="module")
def grid():
    return Grid(-5.0, 5.0, 40)


@pytest.fixture(scope="module")
def eight():
    return energies.get("8gaussians")


def _images(ax):
    return [a for a in ax.get_children() if isinstance(a, AxesImage)]


def _colorbar_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _plot_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _points(n=200, seed=0, scale=1.0):
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def _check_labelled(ax):
    assert ax.get_title(), "every panel has a title"
    assert ax.get_xlabel(), "every panel labels its x axis"


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    yield
    # figures are built without pyplot: nothing may be left open in pyplot's registry
    assert plt.get_fignums() == []
    plt.close("all")


def test_plot_density_normalised_with_colorbar(grid, eight):
    fig = plotting.plot_density(eight, grid)
    (ax,) = _plot_axes(fig)
    (im,) = _images(ax)
    p = np.asarray(im.get_array())
    # the image is the normalised density: mass 1 on the grid, and the colour scale spans [0, peak]
    assert p.sum() * grid.cell_area == pytest.approx(1.0, rel=1e-6)
    assert im.norm.vmin == 0.0 and im.norm.vmax == pytest.approx(p.max())
    assert len(_colorbar_axes(fig)) == 1
    _check_labelled(ax)
    assert ax.get_ylabel()


def test_plot_density_accepts_log_density_array_and_ax(grid, eight):
    fig0 = plotting.plot_density(eight, grid, colorbar=False)
    p0 = np.asarray(_images(fig0.axes[0])[0].get_array())
    fig = plotting.new_figure(3, 3)
    ax = fig.add_subplot()
    # unnormalised log-density values (-E + a constant) give the same normalised picture
    out = plotting.plot_density(-grid.energy(eight) + 7.0, grid, ax=ax, colorbar=False)
    assert out is fig
    np.testing.assert_allclose(np.asarray(_images(ax)[0].get_array()), p0, rtol=1e-6, atol=1e-12)


def test_plot_density_log_scale_range(grid, eight):
    fig = plotting.plot_density(eight, grid, log=True)
    im = _images(_plot_axes(fig)[0])[0]
    assert im.norm.vmax - im.norm.vmin == pytest.approx(12.0)


def test_plot_densities_share_one_colour_scale(grid, eight):
    sharp = energies.eight_gaussians(std=0.25)
    fig = plotting.plot_densities({"target": eight, "pcd": sharp, "pd-beta": lambda x: eight(x * 1.1)}, grid)
    axes = _plot_axes(fig)
    assert len(axes) == 3 and len(_colorbar_axes(fig)) == 1
    ims = [_images(ax)[0] for ax in axes]
    vmins = {im.norm.vmin for im in ims}
    vmaxs = {im.norm.vmax for im in ims}
    assert len(vmins) == 1 and len(vmaxs) == 1
    # the shared top is the highest peak (the sharper mixture), so the broader ones do not reach it
    peaks = [float(np.asarray(im.get_array()).max()) for im in ims]
    assert vmaxs.pop() == pytest.approx(max(peaks)) and peaks[0] < max(peaks)
    assert [ax.get_title() for ax in axes] == ["target", "PCD", "PD-β"]


def test_plot_densities_layout_in_rows(grid, eight):
    fig = plotting.plot_densities({f"m{k}": eight for k in range(5)}, grid, ncols=3)
    assert len(_plot_axes(fig)) == 5  # the sixth cell of the 2x3 layout is removed


def test_plot_particles_weights_ess_in_title(grid):
    x = _points()
    w = torch.ones(200)
    w[:100] = 0.0  # half the particles carry all the weight: ESS = 100
    fig = plotting.plot_particles(x, weights=w, grid=grid)
    ax = _plot_axes(fig)[0]
    assert "ESS 100 of 200" in ax.get_title()
    assert len(_colorbar_axes(fig)) == 1
    fig = plotting.plot_particles(x, log_weights=torch.zeros(200))
    assert "ESS 200 of 200" in fig.axes[0].get_title()


def test_plot_particles_hist2d_is_a_density(grid):
    fig = plotting.plot_particles(_points(scale=0.5), kind="hist2d", grid=grid, bins=20)
    im = _images(_plot_axes(fig)[0])[0]
    h = (grid.xs[-1] - grid.xs[0] + grid.h) / 20
    assert float(np.asarray(im.get_array()).sum() * h**2) == pytest.approx(1.0, rel=1e-6)


def test_plot_particles_scatter_subsampled(grid, eight):
    fig = plotting.plot_particles(_points(1000), grid=grid, background=eight, max_points=300)
    ax = _plot_axes(fig)[0]
    (sc,) = ax.collections
    assert sc.get_offsets().shape == (300, 2)
    assert len(_images(ax)) == 1  # the background density


@pytest.mark.parametrize("kind", ["quiver", "stream"])
def test_plot_field(grid, kind):
    X, Y = np.meshgrid(grid.xs.numpy(), grid.xs.numpy())
    fig = plotting.plot_field(-Y, X, grid, kind=kind, background=X * Y)
    ax = _plot_axes(fig)[0]
    im = _images(ax)[0]
    # a signed background is centred at zero
    assert im.norm.vmin == pytest.approx(-im.norm.vmax)
    assert len(_colorbar_axes(fig)) == 1
    assert len(ax.collections) >= 1  # arrows or stream lines
    _check_labelled(ax)


def _train_history(shift):
    it = list(range(100))
    return {
        "iteration": it,
        "loss": [0.1 * np.sin(i) for i in it],
        "cpu_time": [0.05 * i for i in it],
        "wall_time": [0.06 * i for i in it],
        "evals": [
            {
                "iteration": i,
                "log_likelihood": -3.5 + i / 200 + shift,
                "mmd2": 0.01 / (1 + i),
                "mode_weight_spread": 0.1,
            }
            for i in range(0, 100, 20)
        ],
    }


def test_plot_training_curves_panels_and_bound():
    fig = plotting.plot_training_curves(
        {"pcd": _train_history(0.0), "pd-beta": _train_history(0.1)}, x="cpu_time"
    )
    axes = _plot_axes(fig)
    assert len(axes) == 4
    for ax in axes:
        _check_labelled(ax)
        assert ax.get_xlabel() == "CPU time (s)"
    ll = axes[1]
    dashed = [ln for ln in ll.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(-2.84)
    # evals are placed on the CPU-time axis through their iterations: iteration 80 -> 4.0 s
    solid = [ln for ln in ll.get_lines() if ln.get_linestyle() != "--"]
    assert solid[0].get_xdata()[-1] == pytest.approx(4.0)
    labels = [t.get_text() for t in ll.get_legend().get_texts()]
    assert "PCD" in labels and "PD-β" in labels


def test_plot_training_curves_accepts_objects_and_panel_choice():
    class H:
        def to_dict(self):
            return _train_history(0.0)

    fig = plotting.plot_training_curves({"pcd": H()}, panels=("loss", "mmd2"), bound=None)
    assert len(_plot_axes(fig)) == 2
    with pytest.raises(UnknownNameError, match="valid names"):
        plotting.plot_training_curves({"pcd": H()}, panels=("loss", "accuracy"))
    with pytest.raises(InvalidArgumentError, match="n_grad"):
        plotting.plot_training_curves({"pcd": H()}, x="n_grad")
    with pytest.raises(InvalidArgumentError, match="histories"):
        plotting.plot_training_curves({"pcd": [1, 2, 3]})


def _track(kl, n=50):
    T = len(kl)
    return {
        "times": torch.linspace(0, 1, T),
        "kl": torch.tensor(kl),
        "n_grad": torch.arange(T) * 10,
        "ess": torch.full((T,), float(n)),
    }


def test_plot_tracking_floor_and_axes():
    hs = {"langevin": _track([0.5, 0.4, 0.3]), "pd": _track([0.1, 0.12, 0.11])}
    fig = plotting.plot_tracking(hs, floor=0.05, ess=True)
    axes = _plot_axes(fig)
    assert len(axes) == 3
    for ax in axes[:2]:
        floor = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(floor) == 1 and floor[0].get_ydata()[0] == pytest.approx(0.05)
        assert ax.get_yscale() == "log"
    for ax in axes:
        _check_labelled(ax)
    fig = plotting.plot_tracking(hs, floor=[0.05, 0.06, 0.07])
    assert len(_plot_axes(fig)) == 2
    with pytest.raises(InvalidArgumentError, match="floor"):
        plotting.plot_tracking(hs, floor=[0.05, 0.06])


def test_plot_comparison_layout(grid, eight):
    models = {"pd-beta": eight, "pcd": energies.eight_gaussians(std=0.3)}
    parts = {"pcd": _points(300), "pd-beta": _points(300, seed=1)}
    metrics = {"pcd": {"log_likelihood": -3.1, "mode_weight_spread": 0.12}}
    fig = plotting.plot_comparison(models, parts, grid, target=_points(500, seed=2), metrics=metrics)
    axes = _plot_axes(fig)
    assert len(axes) == 6 and len(_colorbar_axes(fig)) == 1
    # the paper's column order: target, PCD, PD-β (whatever order the dicts came in)
    assert [ax.get_title() for ax in axes[:3]] == ["target (data histogram)", "PCD", "PD-β"]
    tops = [_images(ax)[0] for ax in axes[:3]]
    assert len({(im.norm.vmin, im.norm.vmax) for im in tops}) == 1
    texts = [t.get_text() for t in axes[4].texts]
    assert any("-3.100" in t and "mode spread 0.120" in t for t in texts)


def test_plot_comparison_target_energy_and_missing_panels(grid, eight):
    fig = plotting.plot_comparison({"pcd": eight}, {"replay": _points()}, grid, target=eight)
    axes = _plot_axes(fig)
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes[:3]] == ["target", "replay buffer", "PCD"]
    assert any("no particles" in t.get_text() for t in axes[3].texts)  # the target has no particles


def test_plot_samplers(grid, eight):
    samples = {"exact": _points(300), "ula": _points(300, 1, 1.3), "mala": _points(300, 2)}
    metrics = {"ula": {"kl": 0.3}, "mala": {"kl": 0.05, "acceptance_rate": 0.6}}
    fig = plotting.plot_samplers(samples, grid, eight, metrics=metrics)
    axes = _plot_axes(fig)
    assert len(axes) == 4 and len(_colorbar_axes(fig)) == 1
    ims = [_images(ax)[0] for ax in axes[:3]]
    assert len({(im.norm.vmin, im.norm.vmax) for im in ims}) == 1
    assert any("acceptance 0.600" in t.get_text() for t in axes[2].texts)
    # the marginal panel: the exact curve integrates to 1
    exact = axes[3].get_lines()[0]
    assert np.trapezoid(exact.get_ydata(), exact.get_xdata()) == pytest.approx(1.0, abs=0.02)
    for ax in axes:
        _check_labelled(ax)
    with pytest.raises(UnknownNameError, match="hmc"):
        plotting.plot_samplers(samples, grid, eight, metrics={"hmc": {}})


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g, e: plotting.plot_density(e, "grid"), "grid must be a pdviz.grid.Grid"),
        (lambda g, e: plotting.plot_density(np.zeros((3, 3)), g), r"shape \[40, 40\]"),
        (lambda g, e: plotting.plot_densities({}, g), "non-empty dict"),
        (lambda g, e: plotting.plot_particles(torch.zeros(5, 3)), r"shape \[n, 2\]"),
        (lambda g, e: plotting.plot_particles(torch.tensor([[0.0, float("nan")]])), "non-finite"),
        (
            lambda g, e: plotting.plot_particles(torch.zeros(5, 2), kind="violin"),
            "valid names: hist2d, scatter",
        ),
        (
            lambda g, e: plotting.plot_particles(torch.zeros(5, 2), weights=torch.ones(4)),
            "weights must hold 5",
        ),
        (lambda g, e: plotting.plot_particles(torch.zeros(5, 2), weights=-torch.ones(5)), ">= 0"),
        (lambda g, e: plotting.plot_particles(torch.zeros(5, 2), background=e), "background needs grid"),
        (
            lambda g, e: plotting.plot_field(np.zeros((40, 40)), np.zeros((40, 40)), g, kind="x"),
            "valid names",
        ),
        (lambda g, e: plotting.plot_field(np.zeros((40, 40)), np.zeros((4, 4)), g), "V must have"),
        (lambda g, e: plotting.plot_training_curves({"a": {"iteration": []}}, bound=float("nan")), "bound"),
        (lambda g, e: plotting.plot_tracking({"pd": {"times": [0.0]}}), "TrackHistory"),
        (lambda g, e: plotting.plot_comparison([], {}, g), "models must be a dict"),
        (lambda g, e: plotting.plot_samplers({"ula": torch.zeros(4, 1)}, g, e), r"samples\['ula'\]"),
        (lambda g, e: plotting.plot_particles(torch.zeros(5, 2), color="notacolor"), "color"),
        (lambda g, e: plotting.plot_particles(torch.zeros(5, 2), ax="ax"), "ax must be a matplotlib Axes"),
        (lambda g, e: plotting.plot_density(e, g, cmap="nocmap"), "unknown colour map 'nocmap'"),
        (lambda g, e: plotting.plot_density(e, g, vmin=1.0, vmax=0.0), "vmin"),
        (lambda g, e: plotting.plot_training_curves({"a": {"iteration": [1, 2], "loss": [0.0]}}), "loss"),
        (lambda g, e: plotting.format_metrics("x"), "metrics"),
    ],
)
def test_bad_inputs_raise_pdviz_errors(grid, eight, call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(grid, eight)


def test_method_style_helpers():
    assert plotting.method_color("pcd") == plotting.METHOD_COLORS["pcd"]
    assert plotting.method_color("unheard-of", 1) != plotting.method_color("unheard-of", 2)
    assert plotting.method_label("pd-beta") == "PD-β" and plotting.method_label("new") == "new"
    assert (
        plotting.format_metrics({"kl": 0.1234, "n_grad": 12000, "x": None}) == "KL 0.123 · grad evals 12,000"
    )


def test_plot_tracking_from_real_flow_histories():
    from pdviz import flows

    g = Grid(-5.0, 5.0, 32)
    hs = {
        m: flows.track("translating_gaussian", m, n_particles=60, n_steps=4, grid=g)
        for m in ("langevin", "pd")
    }
    fig = plotting.plot_tracking(hs, floor=0.1)
    ax = _plot_axes(fig)[0]
    curves = [ln for ln in ax.get_lines() if ln.get_linestyle() != "--"]
    assert len(curves) == 2
    np.testing.assert_allclose(curves[1].get_ydata(), hs["pd"].kl.numpy())
