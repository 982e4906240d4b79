"""Animations: one builder over any History; frames capped and counted, real rendering, GIF/MP4 output."""

import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage
from matplotlib.text import Text
from PIL import Image

from pdviz import animation, energies, flows, samplers
from pdviz.errors import InvalidArgumentError
from pdviz.grid import Grid
from pdviz.samplers import History

# animations that a test only inspects are never rendered; matplotlib warns about those when they go
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


@pytest.fixture(scope="module")
def grid():
    return Grid(-4.0, 4.0, 24)


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    yield
    assert plt.get_fignums() == []  # animations build pyplot-free figures: nothing to leak


def moving_history(T=30, n=40, seed=0, weighted=False):
    """A cloud translated from x1 = -1.5 to +1.5, recorded T times (like flows.track)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 2, generator=g)
    h = History(meta={"kind": "track"})
    for k in range(T):
        t = k / (T - 1)
        lw = torch.randn(n, generator=g) if weighted else torch.zeros(n)
        h.record(k, t=t, kl=0.3 - 0.2 * t, n_grad=10 * k, ess=float(n), position=x0 + torch.tensor([3 * t - 1.5, 0.0]),
                 log_weight=lw)  # fmt: skip
    return h


class Moving:
    """E(x, t) = |x - (3t - 1.5, 0)|² / 2, with .at(t) like energies.MovingEnergy."""

    def __call__(self, x, t):
        return 0.5 * ((x - torch.tensor([3 * t - 1.5, 0.0])) ** 2).sum(1)

    def at(self, t):
        return lambda x: self(x, t)


def frames_of(anim):
    return list(anim.new_frame_seq())


def test_frame_indices_cap_and_ends():
    assert list(animation.frame_indices(5, 10)) == [0, 1, 2, 3, 4]
    idx = animation.frame_indices(101, 11)
    assert len(idx) == 11 and idx[0] == 0 and idx[-1] == 100 and (np.diff(idx) > 0).all()
    assert list(animation.frame_indices(7, 1)) == [6]


def test_tracking_frames_capped_constant_artists_and_weighted_sizes(grid):
    hs = {"langevin": moving_history(seed=1), "alpha": moving_history(seed=2, weighted=True)}
    anim = animation.animate_tracking(hs, Moving(), grid, max_frames=8)
    frames = frames_of(anim)
    assert len(frames) == 8
    assert len({len(f) for f in frames}) == 1  # every frame draws the same artists
    images = [a for a in frames[0] if isinstance(a, AxesImage)]
    assert len(images) == 2  # the moving density behind each panel, evaluated at the frame's t
    scatters = [
        a for a in frames[0] if a.__class__.__name__ == "PathCollection" and len(a.get_offsets()) == 40
    ]
    assert (
        len(set(scatters[0].get_sizes())) == 1 and len(set(scatters[1].get_sizes())) > 1
    )  # weighted: area ∝ w


def test_frames_render_non_blank_and_differ(grid, tmp_path):
    anim = animation.animate({"langevin": moving_history()}, grid=grid, density=Moving(), max_frames=4)
    path = animation.save(anim, tmp_path / "a.gif", fps=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        pictures = []
        for k in range(gif.n_frames):
            gif.seek(k)
            pictures.append(np.asarray(gif.convert("RGB"), dtype=int))
    assert all(p.std() > 10 for p in pictures)  # not blank
    assert np.abs(pictures[0] - pictures[-1]).mean() > 1  # the cloud moved


def test_training_histories_target_panel_energy_frames_and_progress_alignment(grid):
    eight = energies.get("8gaussians")
    energy = grid.energy(eight)

    def run(n_snapshots, every):
        h = History(meta={"kind": "training"})
        for k in range(n_snapshots):
            h.record(k * every, log_likelihood=-3.0 + k / 10)  # an evaluation frame: no position, not shown
            h.record(k * every, position=torch.randn(30, 2), energy=energy * (1 + k / 10))
        return h

    hs = {"pcd": run(6, 10), "pd-beta": run(3, 30)}
    anim = animation.animate(hs, grid=grid, target=eight, max_frames=6, align="progress", trail=0)
    frames = frames_of(anim)
    assert len(frames) == 6
    assert sum(isinstance(a, AxesImage) for a in frames[0]) == 2  # each model's own density, per frame
    target_axes = anim._fig.axes[0]  # the static target panel: drawn after the last snap, in no frame
    assert target_axes.get_title() == "target" and target_axes.images
    assert not any(a in f for f in frames for a in target_axes.images)
    texts = [a.get_text() for a in frames[-1] if hasattr(a, "get_text")]
    assert any("step 50" in t for t in texts) and any(
        "step 60" in t for t in texts
    )  # progress: both at the end


def test_the_numbers_change_per_frame_above_the_panel_under_its_title(grid):
    anim = animation.animate_tracking({"langevin": moving_history()}, Moving(), grid, max_frames=4)
    readouts = [[a for a in f if isinstance(a, Text)] for f in frames_of(anim)]
    assert [len(r) for r in readouts] == [1] * 4 and len({r[0].get_text() for r in readouts}) == 4
    assert (
        len({r[0].get_text().count("\n") for r in readouts}) == 1
    )  # broken at the same places: they hold still
    fig, ax = anim._fig, anim._fig.axes[0]
    fig.canvas.draw()
    panel, title = ax.get_window_extent(), ax.title.get_window_extent()
    for (text,) in readouts:
        text.set_visible(True)  # a frame not shown has no extent
        box = text.get_window_extent()
        assert panel.y1 <= box.y0 and box.y1 <= title.y0 and text.get_fontsize() >= 10


def test_chains_from_a_sampler_run(grid):
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    _, h = samplers.run("mala", x0, energies.get("gaussian"), 20, step_size=0.1,
                        generator=samplers.make_generator(1), record_every=2)  # fmt: skip
    anim = animation.animate_chains({"mala": h}, grid, energies.get("gaussian"), max_frames=5)
    assert len(frames_of(anim)) == 5


def test_tracking_from_a_real_flow_history(grid):
    h = flows.track(
        "translating_gaussian", "alpha", n_particles=50, n_steps=4, grid=Grid(-5.0, 5.0, 32), bins=8
    )
    anim = animation.animate({"alpha": h}, grid=grid, density=energies.get("translating_gaussian"))
    assert len(frames_of(anim)) == len(h.frames) == 5


def test_jshtml_shows_once_in_a_notebook(grid):
    out = animation.to_jshtml(animation.animate({"a": moving_history(T=3)}, grid=grid))
    assert "<script" in out._repr_html_() and len(repr(out)) < 100  # no second copy as text/plain


def test_mp4_with_ffmpeg_or_a_gif_without(grid, tmp_path, monkeypatch):
    anim = animation.animate({"a": moving_history(T=3)}, grid=grid)
    if shutil.which("ffmpeg"):
        assert animation.save(anim, tmp_path / "a.mp4").stat().st_size > 0
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.warns(RuntimeWarning, match="ffmpeg"):
        path = animation.save(anim, tmp_path / "b.mp4")
    assert path.suffix == ".gif" and path.exists() and not (tmp_path / "b.mp4").exists()


def test_bad_inputs(grid, tmp_path):
    with pytest.raises(InvalidArgumentError):
        animation.animate({}, grid=grid)
    with pytest.raises(InvalidArgumentError, match="position"):
        animation.animate({"a": History(frames=[{"step": 0, "kl": 1.0}])}, grid=grid)
    anim = animation.animate({"a": moving_history(T=2)}, grid=grid)
    with pytest.raises(InvalidArgumentError, match=".gif or .mp4"):
        animation.save(anim, tmp_path / "a.png")
    anim.to_jshtml()  # rendered once: no "deleted without rendering" warning
