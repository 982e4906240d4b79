"""The sweep runner: the sweep file, results keyed by configuration, runs done elsewhere, and a sweep on a
Dask LocalCluster that is killed, resumed and equal to a serial run of the same configurations."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pdviz import cli, sweep, training
from pdviz.errors import InvalidArgumentError, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]
TINY = {"hidden": 16, "n_particles": 64, "batch_size": 64, "n_init_steps": 5, "n_eval": 500,
        "grid_size": 40, "eval_every": 5, "snapshot_every": 0}  # fmt: skip
TIMES = ("wall_time", "cpu_time")  # measured, so they differ between two runs of one configuration


def _config(n_iters=40, seeds=(0,), strategies=("pcd", "pd-beta")):
    return {
        "runs": "runs",
        "budgets": {"short": {"preset": "fast", "n_iters": n_iters}},
        "overrides": TINY,
        "grids": [
            {
                "dataset": ["8gaussians", "rings"],
                "strategy": list(strategies),
                "seed": list(seeds),
                "budget": ["short"],
            }  # fmt: skip
        ],
    }


def _deterministic(result):
    """What a run computed, without the machine, the clock or the spec's copy."""
    evals = [{k: v for k, v in e.items() if k not in TIMES} for e in result["evals"]]
    keep = {k: v for k, v in result.items() if k.endswith("_final") or k in ("status", "iterations")}
    return {**keep, "evals": evals}


def test_the_sweep_file_expands_in_order_and_refuses_mistakes(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_config(seeds=(0, 1))))
    specs, runs = sweep.load(path)
    assert runs == tmp_path / "runs" and len(specs) == 8
    assert [sweep.run_name(s) for s in specs[:3]] == [
        "short__8gaussians__pcd__s0.json", "short__8gaussians__pcd__s1.json",
        "short__8gaussians__pd-beta__s0.json"]  # fmt: skip
    assert len({sweep.run_name(s) for s in specs}) == 8
    bad = _config()
    bad["grids"][0]["budget"] = ["nope"]
    with pytest.raises(UnknownNameError, match="budget 'nope'"):
        sweep.expand(bad)
    bad = _config()
    del bad["grids"][0]["seed"]
    with pytest.raises(InvalidArgumentError, match="each grid maps exactly"):
        sweep.expand(bad)
    bad = _config()
    bad["overrides"] = {"hidden": -1}
    with pytest.raises(InvalidArgumentError, match="hidden must be"):
        sweep.expand(bad)
    with pytest.raises(InvalidArgumentError, match="workers must be"):
        sweep.run(specs, tmp_path, workers=0)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InvalidArgumentError, match="not a readable JSON"):
        sweep.load(tmp_path / "broken.json")


def test_the_shipped_toy_suite_file_names_the_shipped_runs():
    specs, runs = sweep.load(ROOT / "pdviz" / "toy_suite.json")
    names = {sweep.run_name(s) for s in specs}
    shipped = {p.name for p in runs.glob("*__*.json")}
    assert shipped == names  # the 11 paper-budget runs entered from paper_runs/ once they finished
    elsewhere = [s for s in specs if "done_elsewhere" in s]
    assert {Path(s["done_elsewhere"]).name for s in elsewhere} >= {"pcd-s0", "pd-gamma-s0"}


def test_a_run_done_elsewhere_enters_under_its_key_once_finished(tmp_path):
    run = tmp_path / "elsewhere"
    run.mkdir()
    cfg = training.make_config(
        **TINY, dataset="8gaussians", strategy="pcd", n_iters=10, checkpoint_path=str(run / "checkpoint.pt")
    )
    trainer = training.Trainer(cfg)
    trainer.run(n_iters=5, progress=False)
    spec = {"budget": "far", "preset": "fast", "dataset": "8gaussians", "strategy": "pcd", "seed": 0,
            "n_iters": 10, "cpu_budget": None, "overrides": TINY, "done_elsewhere": str(run)}  # fmt: skip
    counts = sweep.run([spec], tmp_path / "runs", progress=False)
    assert counts == {"total": 1, "done": 0, "ran": 0, "elsewhere_pending": 1, "stale": 0}  # half way
    trainer.run(progress=False)
    counts = sweep.run([spec], tmp_path / "runs", progress=False)
    assert counts == {"total": 1, "done": 1, "ran": 0, "elsewhere_pending": 0, "stale": 0}
    result = json.loads((tmp_path / "runs" / "far__8gaussians__pcd__s0.json").read_text())
    assert result["iterations"] == 10 and result["evals"][-1]["step"] == 10
    here = sweep.run_one({k: v for k, v in spec.items() if k != "done_elsewhere"})
    here = json.loads(sweep.write_json(tmp_path / "here.json", here).read_text())
    assert _deterministic(here) == _deterministic(result)  # the same numbers as a run made by the sweep


def test_importing_pdviz_and_the_cli_does_not_import_dask():
    code = "import sys, pdviz, pdviz.cli, pdviz.sweep; print('dask' in sys.modules or 'distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_dask_sweep_killed_and_resumed_equals_a_serial_run(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_config(n_iters=30, strategies=("pcd", "pd-beta", "replay"))))
    specs, runs = sweep.load(path)
    assert len(specs) == 6
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        cmd = [sys.executable, "-m", "pdviz", "sweep", str(path), "--scheduler", cluster.scheduler_address]
        proc = subprocess.Popen([*cmd, "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(list(runs.glob("*.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
        assert 1 <= len(before) < len(specs), proc.stderr.read()  # killed with some runs done, not all
        counts = sweep.run(specs, runs, scheduler=cluster.scheduler_address, progress=False)
    assert counts == {"total": 6, "done": 6, "ran": 6 - len(before), "elsewhere_pending": 0, "stale": 0}
    files = sorted(p.name for p in runs.iterdir())
    assert files == sorted(sweep.run_name(s) for s in specs)  # each once, no temporary files left
    assert all((runs / n).stat().st_mtime_ns == t for n, t in before.items())  # finished runs not redone
    torch.set_num_threads(1)
    for spec in specs:
        serial = json.loads(sweep.write_json(tmp_path / "serial" / "r.json", sweep.run_one(spec)).read_text())
        assert _deterministic(json.loads((runs / sweep.run_name(spec)).read_text())) == _deterministic(serial)


def test_the_command_refuses_a_missing_sweep_file_in_one_line(capsys):
    assert cli.main(["sweep", "/nonexistent/sweep.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pdviz sweep: error: sweep file '/nonexistent/sweep.json' does not exist")
    assert err.count("\n") == 1
