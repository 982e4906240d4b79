"""What a new user meets first: TOML configs and their precedence, --resume from the run directory alone,
--help generated from the declared ranges, live metrics.csv rows, TensorBoard, a fast --version."""

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch

import pdviz
from pdviz import bench, cli, config, logs, training
from pdviz.errors import InvalidArgumentError

TINY = dict(hidden=16, n_particles=64, batch_size=64, n_init_steps=5, n_eval=500, grid_size=50)
TINY.update(field_grid_size=20, eval_every=5)


def pdviz_cmd(*argv, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "pdviz", *argv], capture_output=True, text=True, env=env, **kw
    )


def _requested(argv: list[str]) -> training.TrainConfig:
    """The config `pdviz train ARGV` would start (no training)."""
    preset, values = cli._train_config(cli.build_parser().parse_args(["train", "--out", "x", *argv]))
    return training.make_config(preset or "fast", **values)


# --- configs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(training.PRESETS))
def test_every_preset_round_trips_through_toml(preset, tmp_path):
    cfg = training.make_config(preset, strategy="pd-beta", grad_clip=None, checkpoint_every=7)
    (tmp_path / "c.toml").write_text(config.to_toml(cfg.to_dict()))
    assert training.TrainConfig(**config.read_config(tmp_path / "c.toml")) == cfg


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_flags_beat_the_file_which_beats_the_preset(suffix, tmp_path):
    path = tmp_path / f"c{suffix}"
    if suffix == ".toml":
        path.write_text('preset = "paper"\nlr = 0.5\nseed = 3\nreplay_noise_scale = "none"\n')
    else:
        path.write_text('{"preset": "paper", "lr": 0.5, "seed": 3, "replay_noise_scale": null}')
    cfg = _requested(["--config", str(path), "--seed", "7"])
    assert cfg.seed == 7, "a flag beats the file"
    assert cfg.lr == 0.5 and cfg.replay_noise_scale is None, "the file beats the preset"
    assert cfg.preset == "paper" and cfg.hidden == training.PRESETS["paper"]["hidden"], "the file's preset"
    cfg = _requested(["--config", str(path), "--preset", "fast", "--set", "lr=0.25"])
    assert cfg.preset == "fast" and cfg.hidden == 128 and cfg.lr == 0.25 and cfg.seed == 3
    assert _requested(["--set", "noise_scale=none"]).noise_scale is None


def test_unreadable_config_files_are_one_line_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("lr = = 1\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InvalidArgumentError, match="not a readable TOML file"):
        config.read_config(tmp_path / "bad.toml")
    with pytest.raises(InvalidArgumentError, match="must hold a JSON table"):
        config.read_config(tmp_path / "list.json")


def test_train_help_lists_every_field_with_its_declared_range_and_default():
    text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "flags (--set included) > the --config file > the preset" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and line.split()}
    for f in dataclasses.fields(training.TrainConfig):
        line = lines[f.name]
        assert config._toml_value(f.default) in line, f"the default of {f.name}"
        lo, hi = f.metadata["range"]
        if lo is not None and f.name != "seed":
            assert f"[{lo:g}, {hi:g}" in line, f"the range of {f.name}"
        for choice in f.metadata["choices"] or ():
            assert choice in line, f"the choices of {f.name}"


def test_ctrl_c_then_a_bare_resume_continues_bit_identically_with_live_metrics(tmp_path):
    body = config.to_toml({"strategy": "pd-beta", "n_iters": 400, **TINY, "eval_every": 10})
    (tmp_path / "c.toml").write_text(body)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    run = tmp_path / "runs" / "a"
    argv = [sys.executable, "-m", "pdviz", "train", "--config", str(tmp_path / "c.toml"), "--quiet"]
    proc = subprocess.Popen([*argv, "--out", str(run)], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not _rows(run, at_least=3):
        time.sleep(0.05)
    assert len(_rows(run, at_least=3)) >= 3, "metrics.csv has rows before the run ends"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and f"pdviz train --out {run} --resume" in err, err
    stopped_at = torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]
    assert 0 < stopped_at < 400
    assert pdviz_cmd("train", "--out", str(run), "--resume", "--quiet").returncode == 0
    assert (
        pdviz_cmd("train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "b")).returncode == 0
    )
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (run, tmp_path / "b"))
    assert a["iteration"] == 400 and torch.equal(a["state"]["position"], b["state"]["position"])
    assert torch.equal(a["model"]["net.2.weight"], b["model"]["net.2.weight"])
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == list(range(0, 401, 10)), "one row per evaluation, none repeated"
    untimed = [
        [{k: v for k, v in r.items() if not k.endswith("_time")} for r in _rows(d)]
        for d in (run, tmp_path / "b")
    ]
    assert untimed[0] == untimed[1], "the resumed run's log equals the uninterrupted run's (times aside)"


def _rows(run, at_least=0) -> list[dict]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return list(csv.DictReader(lines)) if len(lines) > at_least else []


def test_resume_keeps_old_json_run_directories_readable(tmp_path):
    run = tmp_path / "old"
    assert pdviz_cmd("train", "--iters", "5", "--out", str(run), "--quiet", *_flags(TINY)).returncode == 0
    saved = config.read_config(run / "config.toml")
    (run / "config.json").write_text(__import__("json").dumps(saved))  # a run directory of pdviz 0.2
    p = pdviz_cmd("train", "--config", str(run / "config.json"), "--out", str(tmp_path / "again"), "--quiet")
    assert p.returncode == 0, p.stderr
    assert config.read_config(tmp_path / "again" / "config.toml") == saved


def _flags(values: dict) -> list[str]:
    return [s for k, v in values.items() for s in ("--set", f"{k}={v}")]


# --- logs ------------------------------------------------------------------------------------------------


def test_metrics_log_has_one_row_per_evaluation_with_the_lag_meter_columns(tmp_path):
    trainer = training.Trainer(training.make_config(strategy="pd-beta", n_iters=10, **TINY))
    trainer.run(progress=False, log_dir=tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["0", "5", "10"]
    for key in ("log_likelihood", "mmd2", "lag", "grad_error", "grad_cosine", "grad_error_floor"):
        assert key in rows[0], key
    assert float(rows[-1]["log_likelihood"]) == trainer.history.frames[-1]["log_likelihood"]
    assert rows[-1]["lag"] != "" and rows[0]["lag"] == "", "iteration 0 has no lag yet: an empty cell"


def test_metrics_log_rebuilds_from_the_history_and_widens_for_a_new_column(tmp_path):
    frames = [{"step": 0, "log_likelihood": -3.0, "position": torch.zeros(2, 2)}, {"step": 5, "mmd2": 0.1}]
    (tmp_path / "metrics.csv").write_text("stale\n")  # a killed run's later rows are replaced on start
    logs.MetricsLog(tmp_path, frames[1:])
    assert (tmp_path / "metrics.csv").read_text() == ""
    log = logs.MetricsLog(tmp_path, frames)
    log.add({"step": 10, "log_likelihood": -2.9, "lag": 0.5})
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "step,log_likelihood,lag",
        "0,-3.0,",
        "10,-2.9,0.5",
    ]


def test_tensorboard_needs_its_package_and_writes_events(tmp_path, monkeypatch):
    frames = [{"step": 0, "log_likelihood": -3.0}]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(InvalidArgumentError, match="pdviz\\[tensorboard\\]"):
            logs.MetricsLog(tmp_path, frames, tensorboard=True)
        return
    logs.MetricsLog(tmp_path, frames, tensorboard=True).close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(InvalidArgumentError, match="pdviz\\[tensorboard\\]"):
        logs.MetricsLog(tmp_path, frames, tensorboard=True)


# --- releases --------------------------------------------------------------------------------------------


def test_one_version_source_and_a_version_that_does_not_load_torch():
    assert pdviz.__version__ == metadata.version("pdviz")
    code = "import sys; from pdviz.__main__ import main; main(['--version']); print('torch' in sys.modules)"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["pdviz", pdviz.__version__, "False"], "pdviz --version does not import torch"
    assert time.perf_counter() - t0 < 2.0  # 0.05 s measured (RESULTS.md); loose for a loaded machine


def test_lazy_names_are_the_modules_objects():
    assert pdviz.Trainer is training.Trainer and pdviz.train is training.train
    assert pdviz.training is training and "Trainer" in dir(pdviz)
    with pytest.raises(AttributeError):
        pdviz.no_such_name  # noqa: B018


# --- installs --------------------------------------------------------------------------------------------


def test_the_toy_suite_is_package_data_in_one_copy():
    root = Path(pdviz.__file__).parents[1]
    assert bench.SUITE_FILE.parent == Path(pdviz.__file__).parent and bench.SUITE_FILE.is_file()
    declared = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert bench.SUITE_FILE.name in declared["pdviz"], "shipped in the wheel"
    copies = [p for d in ("benchmarks", "pdviz", "notebooks") for p in (root / d).glob("**/toy_suite.json")]
    assert [p.relative_to(root) for p in copies] == [Path("pdviz/toy_suite.json")], "one copy"


def test_train_uses_one_torch_thread_and_restores_the_setting(monkeypatch):
    seen = []
    monkeypatch.setattr(training.Trainer, "run", lambda self, **kw: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        training.train(n_iters=1, **TINY)
        training.train(n_iters=1, threads=None, **TINY)
        assert seen == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
