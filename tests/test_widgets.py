"""The ipywidgets apps without a browser: set a control's value or click, then check state, numbers, figure.

Sizes are tiny (100 particles, 10 target steps, 32² drawing grid, 40 dpi); the properties checked do not
depend on them: a step advances every method and changes the picture, the numbers equal the library's
own drivers (flows.track, metrics), drawing never steps a method, errors stay inside the app.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pdviz import datasets, energies, flows, metrics, samplers, training, widgets
from pdviz.errors import DivergenceError, InvalidArgumentError, UnknownNameError
from pdviz.grid import Grid
from pdviz.widgets import (
    QUESTIONS,
    ExplorerApp,
    LivePanels,
    SamplerApp,
    TrackingApp,
    TrainingApp,
    check,
    compare_tracking,
)

SMALL = {"n_particles": 100, "n_steps": 10, "grid_size": 32, "dpi": 40}


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


@pytest.fixture
def app() -> ExplorerApp:
    return ExplorerApp(**SMALL)


def _tick(app: ExplorerApp, value: int) -> None:
    """One Play tick as the front end sends it, spaced as if the interval had passed."""
    app._last_tick = -math.inf
    app.play.value = value


# --- the figure ------------------------------------------------------------------------------------


def test_live_panels_blitted_frame_equals_a_full_redraw():
    panels = LivePanels(["langevin", "pd"], curve="KL", curve_xmax=5, grid_size=16, dpi=40)
    first = panels.png()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    rng = np.random.default_rng(0)
    panels.set_panel(0, density=rng.random((16, 16)), points=rng.normal(size=(50, 2)), title="changed")
    panels.set_curve(0, [0, 1, 2], [0.5, 0.4, 0.45])
    panels.png()  # fits the curve limits: a full redraw
    panels.set_panel(1, points=rng.normal(size=(50, 2)))
    panels.set_curve(1, [0, 1], [0.42, 0.44])  # inside the limits: this frame is blitted
    blitted = panels.png()
    assert not np.array_equal(_pixels(blitted), _pixels(first))
    panels._background = None  # force the slow path: draw everything again
    full = panels.png()
    assert np.array_equal(_pixels(blitted), _pixels(full))


def test_live_panels_curve_limits_grow_to_hold_the_lines():
    panels = LivePanels(["pd"], curve="KL", curve_xmax=4, grid_size=8, dpi=30)
    panels.set_curve(0, list(range(10)), [0.1] * 9 + [7.0])
    panels.png()
    x0, x1 = panels.curve_axes.get_xlim()
    y0, y1 = panels.curve_axes.get_ylim()
    assert x1 >= 9 and y0 < 0.1 and y1 > 7.0
    with pytest.raises(InvalidArgumentError):
        LivePanels([])


# --- the explorer, tracking mode -----------------------------------------------------------------


def test_step_advances_every_method_and_changes_the_picture(app):
    assert app.error == "" and app.last_error is None
    assert set(app.numbers) == {"langevin", "pd"}
    assert all(v["step"] == 0 for v in app.numbers.values())
    picture = app.image.value
    app.step_button.click()
    assert app.error == ""
    assert all(v["step"] == 1 and v["t"] == pytest.approx(0.1) for v in app.numbers.values())
    # PD's move costs gradient evaluations on top of the corrections both methods make
    assert app.numbers["pd"]["grad evals"] > app.numbers["langevin"]["grad evals"] > 0
    assert "step 1 of 10" in app.readout.value
    assert not np.array_equal(_pixels(app.image.value), _pixels(picture))


def test_explorer_numbers_equal_flows_track(app):
    app.step(n_frames=10)
    assert app.finished
    s = app.settings()
    kl = compare_tracking(
        s.step_size,
        target=s.target,
        n_corrections=s.n_corrections,
        pd_step=s.pd_step,
        n_particles=s.n_particles,
        n_steps=s.n_steps,
        seed=s.seed,
        bins=app.bins,
    )
    for method, value in kl.items():
        assert app.numbers[method]["mean KL"] == pytest.approx(value, rel=1e-9)
    # at ε = 0.01 Langevin lags behind the translating target; PD's move (exact here) keeps up
    assert app.numbers["pd"]["mean KL"] < 0.5 * app.numbers["langevin"]["mean KL"]


def test_changing_a_setting_restarts_with_that_setting(app):
    app.step(n_frames=3)
    app.step_size.value = 0.05
    assert app.error == ""
    assert all(v["step"] == 0 for v in app.numbers.values())
    assert all(run.s.step_size == pytest.approx(0.05) for run in app.runs)
    assert "ε = 0.05" in app.readout.value
    app.target.value = "mode_weights"  # a target with known mode weights gets the mode-error column
    assert app.error == ""
    assert "mode error" in app.readout.value
    assert 0.0 <= app.numbers["pd"]["mode error"] <= 1.0


def test_redraw_reads_the_recorded_state_only(app, monkeypatch):
    app.step()
    positions = [run.state.position.clone() for run in app.runs]
    numbers = {m: dict(v) for m, v in app.numbers.items()}

    def forbidden(*args, **kwargs):
        raise AssertionError("drawing ran a sampler")

    for module, name in (
        (flows, "flow_step"),
        (samplers, "ula_step"),
        (samplers, "mala_step"),
        (samplers, "run"),
    ):
        monkeypatch.setattr(module, name, forbidden)
    app.redraw()
    assert all(torch.equal(p, run.state.position) for p, run in zip(positions, app.runs))
    assert {m: {k: v for k, v in d.items() if k != "ms/step"} for m, d in app.numbers.items()} == {
        m: {k: v for k, v in d.items() if k != "ms/step"} for m, d in numbers.items()
    }


def test_a_bad_setting_is_shown_in_the_app_which_keeps_running(app):
    app.methods.value = ()
    assert "choose at least one method" in app.error
    assert app.error_box.layout.display == "" and "error" in app.error_box.value
    app.step_button.click()  # must not raise
    assert "nothing to run" in app.error
    app.methods.value = ("pd",)
    assert app.error == "" and app.error_box.layout.display == "none"
    app.step_button.click()
    assert set(app.numbers) == {"pd"} and app.numbers["pd"]["step"] == 1


def test_divergence_stops_play_and_is_shown():
    app = ExplorerApp(target="scaling_gaussian", methods=("pd",), pd_step=10.0, **SMALL)
    app.play.playing = True
    for i in range(1, 11):
        _tick(app, i)
    assert isinstance(app.last_error, DivergenceError)
    assert "diverged" in app.error and "try:" in app.error
    assert app.play.playing is False
    app.step_button.click()  # stays stopped, says why
    assert "stopped" in app.error and "Reset" in app.error
    app.pd_step.value = 1.0  # a new setting restarts
    assert app.error == "" and app.numbers["pd"]["step"] == 0


def test_play_steps_until_t_is_one_and_reset_restarts(app):
    app.play.playing = True
    for i in range(1, 14):
        _tick(app, i)
    assert app.finished and app.play.playing is False
    assert app.numbers["pd"]["step"] == 10
    assert "reached t = 1" in app.readout.value
    app.reset_button.click()
    assert app.numbers["pd"]["step"] == 0 and app.play.value == 0


def test_play_skips_ticks_queued_behind_a_slow_frame(app):
    app.play.playing = True
    _tick(app, 1)
    app.play.value = 2  # arrives right after the previous frame ended: a backlog tick
    assert app.numbers["pd"]["step"] == 1
    _tick(app, 3)
    assert app.numbers["pd"]["step"] == 2
    app.play.playing = False
    _tick(app, 4)  # in flight when Play was paused: not a frame
    assert app.numbers["pd"]["step"] == 2


def test_bad_constructor_arguments_raise_pdviz_errors():
    with pytest.raises(UnknownNameError, match="valid names"):
        ExplorerApp(mode="bogus")
    with pytest.raises(UnknownNameError, match="translating_gaussian"):
        ExplorerApp(target="8gaussians")  # a dataset, not a moving energy
    with pytest.raises(UnknownNameError):
        ExplorerApp(methods=("pcd",))  # a training strategy, not a flow
    with pytest.raises(InvalidArgumentError):
        ExplorerApp(n_particles=0)


def test_app_displays_its_root_widget(app, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    app._ipython_display_()
    assert shown == [app.widget]
    assert "pdviz-app" in app.widget._dom_classes


# --- the explorer, training mode -----------------------------------------------------------------


def test_training_mode_steps_trainers_and_measures_on_the_grid(app):
    app.mode.value = "training"
    assert app.error == ""
    assert set(app.target.options) == set(datasets.DATASETS)
    assert set(app.methods.options) == set(training.STRATEGIES)
    assert app.methods.value == ("pcd", "pd-beta")
    app.step()
    assert app.error == ""
    run = app.runs[0]
    assert app.numbers["pcd"]["iteration"] == run.trainer.iteration == 1
    assert app.numbers["pcd"]["grad evals"] > 0
    # the held-out log-likelihood equals metrics.log_likelihood on the same grid
    ll = metrics.log_likelihood(run.trainer.energy_fn, run.data_eval, grid=app.grid)
    assert app.numbers["pcd"]["log-lik"] == pytest.approx(ll, abs=1e-4)
    # mode spread of the learned density against the spread of many exact samples of it on that grid
    x = app.grid.sample(run.trainer.energy_fn, 20_000, generator=samplers.make_generator(0))
    spread = metrics.mode_weight_spread(x, datasets.MODE_CENTRES["8gaussians"])
    assert app.numbers["pcd"]["mode spread"] == pytest.approx(spread, abs=0.03)
    app.mode.value = "tracking"
    assert set(app.target.options) == set(energies.MOVING_ENERGIES) and app.error == ""


# --- guided questions ------------------------------------------------------------------------------


def test_unanswered_and_unknown_questions_print_and_return_none(capsys):
    for name in QUESTIONS:
        assert check(name) is None
        assert "hint:" in capsys.readouterr().out
    assert check("no-such-question", 1.0) is None
    assert "the questions are" in capsys.readouterr().out
    assert check(3) is None


def test_closed_form_questions():
    assert check("scaling-sigma2", 2.0) is True
    assert check("scaling-sigma2", 1.0) is False
    assert check("scaling-sigma2", "two") is None  # unreadable: explained, not raised
    assert check("translating-velocity", (3, -1)) is True
    assert check("translating-velocity", [3.0, 1.0]) is False
    assert check("translating-velocity", (1, 2, 3)) is None
    assert check("translating-velocity", "fast") is None


def test_step_size_questions_rerun_the_apps_comparison(app, capsys):
    assert check("pd-wins", 1e-3, app=app) is True
    out = capsys.readouterr().out
    kl = compare_tracking(1e-3, n_particles=100, n_steps=10, bins=app.bins)
    assert f"{kl['pd']:.4g}" in out and f"{kl['langevin']:.4g}" in out
    # at a large step the corrections alone catch up: both end at (nearly) the same particles
    assert check("pd-loses", 1.0, app=app) is True
    assert check("pd-wins", 1.0, app=app) is False
    assert check("pd-wins", -1.0, app=app) is None


# --- the smaller apps -----------------------------------------------------------------------------


def test_sampler_app_shows_ula_bias_and_replays_without_rerunning():
    # ULA on a standard Gaussian keeps variance 1 / (1 - ε/4) = 1.6 at ε = 1.5; MALA keeps 1
    sampler_app = SamplerApp("gaussian", step_size=1.5, n_steps=100, n_particles=2000, grid_size=32, dpi=40)
    assert sampler_app.error == ""
    ula = sampler_app.histories["ula"].positions[-1]
    mala = sampler_app.histories["mala"].positions[-1]
    # sample variance of 2 x 2000 values: std ≈ var · sqrt(2 / 4000); 6 of those as tolerance
    assert float(ula.var(0).mean()) == pytest.approx(1.6, abs=6 * 1.6 * math.sqrt(2 / 4000))
    assert float(mala.var(0).mean()) == pytest.approx(1.0, abs=6 * math.sqrt(2 / 4000) + 0.05)
    nums = sampler_app.numbers
    assert nums["ula"]["KL"] > nums["mala"]["KL"]
    assert nums["ula"]["acceptance"] == 1.0 and 0.0 < nums["mala"]["acceptance"] < 1.0
    histories, picture = sampler_app.histories, sampler_app.image.value
    sampler_app.show.value = 0
    assert sampler_app.histories is histories and sampler_app.numbers["ula"]["step"] == 0
    assert sampler_app.image.value != picture
    sampler_app.step_size.value = 0.1
    assert sampler_app.histories is not histories and sampler_app.error == ""


def test_sampler_app_shows_a_diverging_chain_and_recovers():
    sampler_app = SamplerApp("8gaussians", step_size=0.1, n_steps=20, n_particles=100, grid_size=32, dpi=40)
    sampler_app.step_size.value = 2.0  # far above 2σ² of the 8gaussians modes: ULA explodes
    assert isinstance(sampler_app.last_error, DivergenceError) and "reduce step_size" in sampler_app.error
    sampler_app.show.value = 0  # nothing recorded to show: said in the box, not raised
    assert "nothing to show" in sampler_app.error
    sampler_app.step_size.value = 0.05
    assert sampler_app.error == "" and sampler_app.numbers["mala"]["step"] == 20


def test_tracking_app_replays_the_histories_of_flows_track():
    tracking_app = TrackingApp("translating_gaussian", ("langevin", "pd"), **SMALL)
    reference = flows.track(
        "translating_gaussian",
        "pd",
        n_particles=100,
        n_steps=10,
        seed=0,
        grid=Grid(-5.0, 5.0, flows.DEFAULT_GRID_SIZE),
        bins=tracking_app.bins,
        n_corrections=10,
        step=1.0,
        correction_step_size=1e-2,
    )
    assert torch.equal(tracking_app.histories["pd"].positions, reference.positions)
    histories, picture = tracking_app.histories, tracking_app.image.value
    tracking_app.show.value = 3
    assert tracking_app.histories is histories
    assert tracking_app.numbers["pd"]["t"] == pytest.approx(0.3)
    assert tracking_app.numbers["pd"]["KL"] == pytest.approx(float(reference.kl[3]))
    assert tracking_app.image.value != picture
    tracking_app.n_corrections.value = 2
    assert tracking_app.histories is not histories and tracking_app.error == ""


def test_training_app_trains_on_the_button_only():
    training_app = TrainingApp(
        "8gaussians", ("pcd", "pd-alpha"), n_iters=3, n_particles=100, grid_size=32, dpi=40
    )
    assert training_app.runs == [] and "press Train" in training_app.readout.value
    training_app.train_button.click()
    assert training_app.error == ""
    assert [r.trainer.iteration for r in training_app.runs] == [3, 3]
    assert set(training_app.numbers) == {"pcd", "pd-alpha"}
    assert training_app.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    training_app.strategies.value = ()
    training_app.train_button.click()
    assert "choose at least one strategy" in training_app.error


def test_fast_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PDVIZ_FAST", "1")
    assert widgets.fast_mode() is True
    monkeypatch.setenv("PDVIZ_FAST", "0")
    assert widgets.fast_mode() is False
