"""The ipywidgets apps, driven without a browser: run once per setting, replay recorded frames, errors
shown in the app, numbers equal to the library's own."""

from __future__ import annotations

import math

import pytest
import torch

from pdviz import datasets, exercises, flows, metrics, widgets
from pdviz.errors import DivergenceError, PdvizError
from pdviz.grid import Grid
from pdviz.widgets import ExplorerApp, SamplerApp, TrackingApp, TrainingApp

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = {"n_particles": 100, "n_steps": 10, "seed": 0}


def test_sampler_app_shows_ula_bias_and_replays_without_rerunning():
    # ULA on a standard Gaussian keeps variance 1 / (1 - ε/4) = 1.6 at ε = 1.5; MALA keeps 1
    app = SamplerApp("gaussian", step_size=1.5, n_steps=100, n_particles=2000, record=10)
    assert app.error == "" and app.image.value[:8] == PNG
    ula, mala = (app.histories[k].positions()[-1] for k in ("ula", "mala"))
    # sample variance of 2 x 2000 values: std ≈ var · sqrt(2 / 4000); 6 of those as tolerance
    assert float(ula.var(0).mean()) == pytest.approx(1.6, abs=6 * 1.6 * math.sqrt(2 / 4000))
    assert float(mala.var(0).mean()) == pytest.approx(1.0, abs=6 * math.sqrt(2 / 4000) + 0.05)
    nums = app.numbers
    assert nums["ula"]["kl"] > nums["mala"]["kl"] > 0 and nums["ula"]["step"] == 100
    assert nums["ula"]["acceptance_rate"] == 1.0 and 0.0 < nums["mala"]["acceptance_rate"] < 1.0
    assert "floor" in app.readout.value
    histories, picture = app.histories, app.image.value
    app.frame.value = 0
    assert app.histories is histories and app.numbers["ula"]["step"] == 0  # replayed, not rerun
    assert app.image.value != picture
    app.step_size.value = 0.1
    assert app.histories is not histories and app.error == ""


def test_sampler_app_shows_a_diverging_chain_and_recovers():
    app = SamplerApp("8gaussians", step_size=0.1, n_steps=20, n_particles=100, record=5)
    app.step_size.value = 2.0  # far above 4σ² of the 8gaussians modes: ULA explodes
    assert isinstance(app.last_error, DivergenceError) and app.error
    app.frame.value = 0  # nothing recorded to show: said in the box, not raised
    assert "nothing to show" in app.error
    app.step_size.value = 0.05
    assert app.error == "" and app.numbers["mala"]["step"] == 20


def test_tracking_app_replays_the_histories_of_flows_track():
    app = TrackingApp("translating_gaussian", ("langevin", "alpha"), **SMALL)
    kw = {k: v for k, v in app.settings.items() if k != "target"}
    reference = flows.track("translating_gaussian", "alpha", step_size=1e-2, **kw)
    assert torch.equal(app.histories["alpha"].positions(), reference.positions())
    histories, picture = app.histories, app.image.value
    app.frame.value = 3
    assert app.histories is histories
    assert app.numbers["alpha"]["t"] == pytest.approx(0.3)
    assert app.numbers["alpha"]["kl"] == pytest.approx(reference.frames[3]["kl"])
    assert app.image.value != picture
    app.n_corrections.value = 2
    assert app.histories is not histories and app.error == ""


def test_tracking_settings_answer_the_guided_questions(capsys, monkeypatch):
    app = TrackingApp("translating_gaussian", ("langevin",), **SMALL)
    seen = {}
    monkeypatch.setattr(
        exercises, "compare_tracking", lambda eps, **kw: seen.update(kw) or {"langevin": 1, "pd": 0.5}
    )
    assert exercises.check("pd_wins", 0.001, **app.settings) is True
    assert seen["n_particles"] == 100 and seen["target"] == "translating_gaussian"
    capsys.readouterr()


def test_training_app_trains_on_the_button_only_and_shows_given_trainers():
    app = TrainingApp("8gaussians", ("pcd", "pd-alpha"), n_iters=3, n_particles=100)
    assert app.trainers == {} and "press Train" in app.readout.value
    app.train_button.click()
    assert app.error == ""
    assert {m: tr.iteration for m, tr in app.trainers.items()} == {"pcd": 3, "pd-alpha": 3}
    assert set(app.numbers) == {"pcd", "pd-alpha"} and app.image.value[:8] == PNG
    spread = app.numbers["pcd"]["model spread"]
    energy = Grid(-5.0, 5.0, 64).energy(app.trainers["pcd"].energy_fn)
    centres = datasets.MODE_CENTRES["8gaussians"]
    assert spread == pytest.approx(
        metrics.mode_weight_spread(metrics.grid_mode_weights(app.grid, energy, centres))
    )
    shown = TrainingApp(trainers=app.trainers)  # a notebook's trained runs: drawn at once, not retrained
    assert shown.trainers is not app.trainers and shown.numbers["pd-alpha"]["iteration"] == 3
    app.strategies.value = ()
    app.train_button.click()
    assert "choose at least one strategy" in app.error


def test_training_app_shows_the_lag_and_trains_with_its_langevin_steps():
    app = TrainingApp("8gaussians", ("pcd",), n_iters=4, n_particles=100, curve="lag")
    app.n_steps.value = 3
    app.train_button.click()
    assert app.error == "" and app.trainers["pcd"].config.n_steps == 3
    tr = app.trainers["pcd"]
    assert app.numbers["pcd"]["mean lag"] == pytest.approx(tr.history.mean("lag"))
    assert app.figure.axes[-1].get_title().startswith("lag")
    with pytest.raises(PdvizError):
        TrainingApp(curve="loss")


def test_explorer_has_a_tracking_and_a_training_tab():
    app = ExplorerApp(n_particles=100, n_steps=10)
    assert app.widget.children == (app.tracking.widget, app.training.widget)
    assert set(app.tracking.histories) == {"langevin", "alpha", "exact", "svgd"} and app.tracking.error == ""


def test_bad_constructor_arguments_raise_pdviz_errors():
    with pytest.raises(ValueError, match="valid names"):
        SamplerApp("no-such-energy")
    with pytest.raises(ValueError, match="valid names"):
        TrackingApp("translating_gaussian", ("pd-omega",))
    with pytest.raises(ValueError, match="valid names"):
        TrainingApp("8gaussians", ("no-such-strategy",))


def test_fast_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("PDVIZ_FAST", "1")
    assert widgets.fast_mode() is True
    monkeypatch.setenv("PDVIZ_FAST", "0")
    assert widgets.fast_mode() is False


def test_sizes_switch_reads_the_argument_then_the_environment(monkeypatch):
    choices = dict(fast=1, binder=2, paper=3)
    monkeypatch.setenv("PDVIZ_FAST", "1")
    assert widgets.sizes(**choices) == 1
    assert widgets.sizes("paper", **choices) == 3
    monkeypatch.setenv("PDVIZ_FAST", "0")
    monkeypatch.delenv("PDVIZ_SIZE", raising=False)
    assert widgets.sizes(**choices) == 2
    monkeypatch.setenv("PDVIZ_SIZE", "paper")
    assert widgets.sizes(**choices) == 3
    with pytest.raises(ValueError, match="valid names: binder, fast, paper"):
        widgets.sizes("huge", **choices)
