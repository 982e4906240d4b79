"""Animations: frame caps, constant artists per frame, real rendering, GIF/MP4 output, bounded memory."""

import gc
import shutil
import tracemalloc
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from pdviz import animation, energies, samplers
from pdviz.errors import InvalidArgumentError
from pdviz.grid import Grid


@pytest.fixture(scope="module")
def grid():
    return Grid(-4.0, 4.0, 24)


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    yield
    assert plt.get_fignums() == []  # animations build pyplot-free figures: nothing to leak
    plt.close("all")


def _moving_history(T=30, n=40, seed=0, weighted=False):
    """A cloud translated from x1 = -1.5 to +1.5, recorded T times (like flows.TrackHistory)."""
    g = torch.Generator().manual_seed(seed)
    times = torch.linspace(0, 1, T)
    x0 = torch.randn(n, 2, generator=g)
    shift = torch.stack([3 * times - 1.5, torch.zeros(T)], dim=1)
    positions = x0[None] + shift[:, None, :] + 0.05 * torch.randn(T, n, 2, generator=g)
    log_weights = torch.randn(T, n, generator=g) if weighted else torch.zeros(T, n)
    return {
        "positions": positions,
        "times": times,
        "kl": torch.linspace(0.3, 0.1, T),
        "n_grad": torch.arange(T) * 10,
        "ess": torch.full((T,), float(n)),
        "log_weights": log_weights,
    }


def _moving_energy(x, t):
    return 0.5 * ((x - torch.tensor([3 * t - 1.5, 0.0])) ** 2).sum(1)


def _tracking(grid, T=30, max_frames=8, **kw):
    hs = {"langevin": _moving_history(T, seed=1), "pd": _moving_history(T, seed=2, weighted=True)}
    kw.setdefault("dpi", 40)
    return animation.animate_tracking(hs, _moving_energy, grid, max_frames=max_frames, **kw)


def _panel_pixels(frame, anim, k):
    """The RGB pixels inside the k-th panel (axes) of a rendered frame."""
    ax = anim.figure.axes[k]
    x0, y0, x1, y1 = (int(round(v)) for v in ax.bbox.extents)
    h = frame.shape[0]
    return frame[h - y1 : h - y0, x0:x1, :3]


def test_frame_indices_cap_and_ends():
    idx = animation.frame_indices(200, 60)
    assert len(idx) == 60 and idx[0] == 0 and idx[-1] == 199
    assert np.all(np.diff(idx) >= 1)
    assert list(animation.frame_indices(5, 60)) == [0, 1, 2, 3, 4]
    for n, m in [(7, 6), (101, 100), (3, 2), (9, 1)]:
        idx = animation.frame_indices(n, m)
        assert len(set(idx.tolist())) == min(n, m) and idx.max() == n - 1


def test_tracking_frames_capped_and_constant_artists(grid):
    anim = _tracking(grid, T=30, max_frames=8)
    assert anim.n_frames == 8
    counts = {len(f) for f in anim.frames}
    # per panel: density image, particles, trail lines, trail heads, readout text
    assert counts == {2 * 5}
    # static parts are in no frame: the ONE colour bar, titles, the figure legend
    in_frames = {id(a) for f in anim.frames for a in f}
    cbars = [ax for ax in anim.figure.axes if ax.get_label() == "<colorbar>"]
    assert len(cbars) == 1
    assert not any(id(a) in in_frames for a in cbars[0].get_children())
    assert len(anim.figure.legends) == 1 and all(ax.get_legend() is None for ax in anim.figure.axes)
    # fewer records than the cap: one frame per record
    assert _tracking(grid, T=5, max_frames=8).n_frames == 5


def test_frames_render_non_blank_and_differ(grid):
    anim = _tracking(grid, T=30, max_frames=6)
    first, last = anim.render_frame(0), anim.render_frame(5)
    for frame in (first, last):
        panel = _panel_pixels(frame, anim, 1)
        # particles, trails and the density make the panel far from uniformly white
        assert (panel.min(axis=2) < 200).mean() > 0.02
    # the cloud moved from left to right: the left half of a panel darkens less at the end
    a, b = _panel_pixels(first, anim, 0), _panel_pixels(last, anim, 0)
    w = a.shape[1]
    assert a[:, : w // 2].mean() < b[:, : w // 2].mean()
    assert not np.array_equal(first, last)
    # the one colour bar is static: drawn identically in every frame, dark at its top
    cbar = _panel_pixels(first, anim, 2)
    assert np.array_equal(cbar, _panel_pixels(last, anim, 2)) and cbar.min() < 80
    # the readout is per frame text, with the step and KL of that frame
    assert "0.300" in anim.readouts[0][0] and "grad evals" in anim.readouts[-1][0]
    with pytest.raises(InvalidArgumentError, match="index"):
        anim.render_frame(6)


def test_weighted_particles_drawn_with_sizes(grid):
    anim = _tracking(grid, T=4, max_frames=4)
    # per panel the scatters are: particles, then trail heads; "pd" (panel 2) carries random log-weights
    scatters = [a for a in anim.frames[1] if type(a).__name__ == "PathCollection"]
    unweighted, weighted = scatters[0], scatters[2]
    assert len(set(unweighted.get_sizes().tolist())) == 1
    assert len(set(weighted.get_sizes().tolist())) > 1


def test_training_animation_target_panel_and_missing_energies(grid):
    g = torch.Generator().manual_seed(0)
    eight = energies.get("8gaussians")
    e_grid = grid.energy(eight)

    def snaps(shift):
        out = []
        for k in range(12):
            x = torch.randn(30, 2, generator=g) + shift
            energy = None if k % 4 == 1 else e_grid * (1 + 0.05 * k)
            out.append((k * 10, x, energy, {"n_grad": 20 * k, "mmd2": 0.1 / (k + 1)}))
        return out

    anim = animation.animate_training(
        {"pcd": snaps(0.0), "pd-beta": snaps(1.0)}, grid, target=eight, max_frames=5, dpi=40
    )
    assert anim.n_frames == 5
    assert len({len(f) for f in anim.frames}) == 1
    assert len(anim.figure.axes) == 3 + 1  # target, two methods, one colour bar
    assert anim.figure.axes[0].get_title() == "target"
    assert anim.readouts[2][0].startswith("iteration")
    assert "MMD²" in anim.readouts[2][1]
    # all density images of all frames share the colour bar's scale
    norms = {(a.norm.vmin, a.norm.vmax) for f in anim.frames for a in f if type(a).__name__ == "AxesImage"}
    assert len(norms) == 1


def test_chains_animation_from_sampler_history(grid):
    energy = energies.get("gaussian")
    x0 = 2.0 + 0.1 * torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    _, hist_ula = samplers.run("ula", x0, energy, 20, step_size=0.1, generator=samplers.make_generator(0))
    _, hist_mala = samplers.run("mala", x0, energy, 20, step_size=0.1, generator=samplers.make_generator(0))
    anim = animation.animate_chains({"ula": hist_ula, "mala": hist_mala}, grid, energy, max_frames=7, dpi=40)
    assert anim.n_frames == 7
    assert len({len(f) for f in anim.frames}) == 1
    assert "acceptance" in anim.readouts[-1][1] and "acceptance" not in anim.readouts[0][1]
    single = animation.animate_chains(hist_ula, grid, energy, max_frames=3, trail=0, readout=False, dpi=40)
    assert single.n_frames == 3 and {len(f) for f in single.frames} == {1}  # particles only


def test_gif_written_with_frame_count(grid, tmp_path):
    anim = _tracking(grid, T=10, max_frames=4)
    path = animation.save_gif(anim, tmp_path / "sub" / "track.gif", fps=5)
    with Image.open(path) as im:
        assert im.n_frames == 4
        assert im.size[0] > 50 and im.size[1] > 50


def test_mp4_falls_back_to_gif_without_ffmpeg(grid, tmp_path, monkeypatch):
    anim = _tracking(grid, T=10, max_frames=3)
    monkeypatch.setattr(animation.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="ffmpeg not found"):
        path = animation.save_mp4(anim, tmp_path / "track.mp4", fps=5)
    assert path == tmp_path / "track.gif" and not (tmp_path / "track.mp4").exists()
    with Image.open(path) as im:
        assert im.n_frames == 3


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_mp4_written_with_ffmpeg(grid, tmp_path):
    anim = _tracking(grid, T=10, max_frames=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback expected
        path = animation.save_mp4(anim, tmp_path / "track.mp4", fps=5)
    assert path.suffix == ".mp4"
    head = path.read_bytes()[:12]
    assert head[4:8] == b"ftyp"  # an MP4 container


def test_jshtml_for_notebooks(grid):
    html = animation.to_jshtml(_tracking(grid, T=6, max_frames=3))
    assert isinstance(html, str) and html._repr_html_() == html
    assert html.count("data:image/png;base64") == 3


def test_memory_bounded_by_frame_cap(grid):
    """A 200-record history animated with a cap keeps ~cap frames; memory grows with the cap, not T."""

    def retained(max_frames):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        anim = _tracking(grid, T=200, max_frames=max_frames)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert anim.n_frames == max_frames
        del anim
        return after - before

    small, large = retained(10), retained(40)
    per_frame = (large - small) / 30
    assert per_frame > 0
    # the 10-frame animation holds little beyond its frames: the histories' 200 records are not all drawn
    assert small < 10 * per_frame + 3e6
    assert large < 60e6


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g: _tracking(g, max_frames=0), "max_frames"),
        (lambda g: _tracking(g, trail=-1), "trail"),
        (lambda g: animation.animate_tracking({}, _moving_energy, g), "non-empty dict"),
        (
            lambda g: animation.animate_tracking({"pd": {"positions": torch.zeros(3, 4)}}, None, g),
            r"\[T, n, 2\]",
        ),
        (lambda g: animation.animate_tracking({"pd": _moving_history()}, 3.0, g), "moving_energy"),
        (lambda g: animation.animate_training({"pcd": [(0, torch.zeros(3, 2))]}, g), "iteration, particles"),
        (
            lambda g: animation.animate_training({"pcd": [(0, torch.zeros(3, 2), torch.zeros(5, 5))]}, g),
            r"\[24, 24\]",
        ),
        (
            lambda g: animation.animate_chains({"ula": {"steps": [0]}}, g, energies.get("gaussian")),
            "positions",
        ),
        (lambda g: animation.save_gif(object(), "x.gif"), "anim must be"),
        (lambda g: _tracking(g, dpi=0), "dpi"),
        (lambda g: animation.animate_training({"pcd": []}, g), "non-empty list"),
        (
            lambda g: animation.animate_training({"pcd": [(0, torch.zeros(3, 2), None)]}, g, align="x"),
            "align",
        ),
    ],
)
def test_bad_inputs_raise_pdviz_errors(grid, call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(grid)


def test_output_path_checks(grid, tmp_path):
    anim = _tracking(grid, T=4, max_frames=2)
    with pytest.raises(InvalidArgumentError, match=r"end in \.gif"):
        animation.save_gif(anim, tmp_path / "x.png")
    with pytest.raises(InvalidArgumentError, match="fps"):
        animation.save_gif(anim, tmp_path / "x.gif", fps=0)
    with pytest.raises(InvalidArgumentError, match="dpi"):
        animation.save_mp4(anim, tmp_path / "x.mp4", dpi=-1)
    assert not (tmp_path / "x.gif").exists() and not (tmp_path / "x.mp4").exists()


def test_tracking_animation_from_real_flow_histories():
    from pdviz import flows

    g = Grid(-5.0, 5.0, 32)
    moving = energies.get("translating_gaussian")
    hs = {m: flows.track(moving, m, n_particles=60, n_steps=6, grid=g) for m in ("langevin", "pd")}
    anim = animation.animate_tracking(hs, moving, g, max_frames=4, dpi=40)
    assert anim.n_frames == 4 and len({len(f) for f in anim.frames}) == 1
    # the readout of the last frame shows the history's last time and its cumulative gradient evaluations
    last = anim.readouts[-1][1]
    assert "1.000" in last and f"{int(hs['pd'].n_grad[-1]):,}" in last
