"""Bad input, one test per class: each ends in a pdviz error naming the value and the valid range (or a
warning with the numbers), raised at the edge before any work, never in a traceback from torch or numpy.

The first tests are the earlier classes; the rest (issue 24) the newer surfaces, one test per class: run
directories (data loss), sweep results (stale), config values from every path, sweep files, files read back
(paper runs, tampered checkpoints), outputs, numbers (energies, the environment, widgets), divergence
messages and the smaller items. Signals during ``train``, output paths and a full disk are in
``test_cli.py``; checkpoint locking and file modes in ``test_checkpoint.py``;
``benchmarks/probe_inputs.py`` counts every class before and after.
"""

import contextlib
import fcntl
import gzip
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from pdviz import (
    ais,
    bench,
    checkpoint,
    cli,
    datasets,
    demo,
    distributed,
    energies,
    flows,
    grid,
    images,
    metrics,
    models,
    plotting,
    samplers,
    sweep,
    training,
    widgets,
)
from pdviz.errors import CheckpointError, DataError, DivergenceError, InvalidArgumentError, UnknownNameError

G = energies.get("gaussian")
HUGE = 10**12

SIZES = [
    (lambda: datasets.sample("8gaussians", HUGE, seed=0), "n must be an integer in [1, 1e+07]"),
    (lambda: grid.Grid(-5, 5, 10**6), "size must be an integer in [1, 4096]"),
    (lambda: grid.Grid().sample(G, HUGE), "n must be an integer in [1, 1e+07]"),
    (lambda: models.EBM(hidden=10**9), "hidden must be an integer in [1, 4096]"),
    (lambda: models.ConvEBM((1, 8, 8), channels=(10**7, 1, 1)), "channels must be 3 or 4 ints in [1, 4096]"),
    (lambda: samplers.run("ula", torch.zeros(3, 2), G, HUGE, step_size=0.1), "n_steps must be an integer in"),
    (lambda: samplers.run("ula", torch.zeros(10**5, 2), G, 10**6, step_size=0.1), "more than the 2.5e+08"),
    (lambda: samplers.ReplayBuffer(HUGE, lambda n, g: torch.zeros(n, 2)), "size must be an integer in"),
    (
        lambda: flows.track("translating_gaussian", "alpha", n_particles=HUGE),
        "n_particles must be an integer in",
    ),
    (lambda: metrics.kl_floor(G, HUGE), "n must be an integer in [1, 1e+07]"),
    (lambda: metrics.kl_to_grid(torch.zeros(3, 2), G, bins=10**6), "bins must be an integer in [1, 4096]"),
    (lambda: ais.ais_log_z(G, 100, n_chains=10**7), "more than the 2.5e+08"),
    (lambda: training.make_config(n_particles=HUGE), "n_particles must be an integer in [1, 1e+06]"),
    (lambda: training.make_config(buffer_size=HUGE), "buffer_size must be an integer in [1, 1e+07]"),
    (lambda: training.make_config(grid_size=10**5), "grid_size must be an integer in [4, 2000]"),
    (lambda: training.make_config(hidden=10**9), "hidden must be an integer in [1, 4096]"),
    (lambda: training.make_config(n_eval=HUGE), "n_eval must be an integer in [1, 1e+06]"),
]


@pytest.mark.parametrize("call, fragment", SIZES)
def test_every_size_is_bounded_before_allocation(call, fragment):
    t0 = time.perf_counter()
    with pytest.raises(InvalidArgumentError) as info:
        call()
    assert fragment in str(info.value)
    assert time.perf_counter() - t0 < 5  # refused at once, nothing allocated or run


@pytest.mark.parametrize(
    "call",
    [
        lambda: datasets.sample("8gaussians", 3, seed=-1),
        lambda: datasets.sample("8gaussians", 3, seed=2**63),
        lambda: samplers.make_generator(2**63),
        lambda: training.make_config(seed=2**63),
        lambda: training.make_config(seed=-1),
    ],
)
def test_seeds_are_0_to_2_63_minus_1(call):
    with pytest.raises(
        InvalidArgumentError, match=r"seed must be an int.* \[0, (2\*\*63 - 1|9.22337e\+18)\]"
    ):
        call()


def test_the_largest_seed_trains():
    cfg = training.make_config(
        seed=2**63 - 1,
        n_iters=1,
        hidden=8,
        n_particles=16,
        batch_size=16,
        n_init_steps=0,
        eval_every=0,
        n_eval=100,
    )
    training.Trainer(cfg).run(progress=False)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: training.make_config(step_size=math.nan), "step_size must be a number in"),
        (lambda: training.make_config(lr=-1.0), "lr must be a number in"),
        (
            lambda: samplers.run("ula", torch.zeros(3, 2), G, 5, step_size=-0.1),
            "step_size must be a number > 0",
        ),
        (lambda: metrics.log_likelihood(G, torch.tensor([[0.0, math.nan]])), "row 0"),
        (lambda: training.make_config(strategy="pd-delta"), "pcd, pd-alpha, pd-beta"),
        (lambda: energies.get("swirl"), "valid"),
        (lambda: datasets.sample("swirl", 3), "valid names: 2spirals"),
        (lambda: images.load("nope"), "valid names: digits, mnist"),
    ],
)
def test_numbers_and_names_name_the_valid_range(call, fragment):
    with pytest.raises((InvalidArgumentError, UnknownNameError)) as info:
        call()
    assert fragment in str(info.value)


def test_a_batch_larger_than_the_data_is_said_not_shrunk():
    cfg = training.make_config(dataset="custom", batch_size=100, n_particles=16, hidden=8, n_init_steps=0)
    with pytest.raises(InvalidArgumentError, match=r"batch_size 100 is larger than the data \(10 points\)"):
        training.Trainer(cfg, data=torch.randn(10, 2))


def test_metrics_that_cannot_be_right_are_refused_or_warned():
    far = torch.full(
        (10, 2), 20.0
    )  # the old code printed a log-likelihood of +2378 for a grid away from the data
    with pytest.raises(
        InvalidArgumentError, match=r"100.0% of the points lie outside the grid's box \[-5, 5\]"
    ):
        metrics.log_likelihood(energies.get("8gaussians"), far)
    with pytest.warns(UserWarning, match=r"% of the model's mass .* outermost cells"):
        metrics.log_likelihood(G, torch.zeros(10, 2), grid=grid.Grid(-2, 2, 80))
    cfg = training.make_config(dataset="custom", n_particles=16, batch_size=16, hidden=8, n_init_steps=0)
    with pytest.raises(InvalidArgumentError, match="the grid misses the data"):
        training.Trainer(cfg, data=torch.randn(100, 2) + 30.0)


def _tiny(**kw):
    base = dict(
        n_particles=32,
        batch_size=32,
        hidden=8,
        n_init_steps=2,
        n_steps=2,
        n_corrections=1,
        eval_every=0,
        snapshot_every=0,
        grid_size=16,
        field_grid_size=16,
        n_eval=64,
        buffer_size=64,
        lr_warmup=0,
        lr_schedule="constant",
        ema=0.0,
    )
    return training.make_config("fast", **{**base, **kw})


@pytest.mark.parametrize("strategy", ["pcd", "pd-alpha"])
def test_a_diverging_run_names_the_iteration_and_a_suggestion(strategy):
    tr = training.Trainer(_tiny(strategy=strategy, lr=1e6))
    with pytest.raises(DivergenceError) as info:
        tr.run(n_iters=30, progress=False)
    assert info.value.iteration == tr.iteration  # the failing iteration was not counted as done
    assert "lr (now 1e+06)" in info.value.suggestion
    assert all(math.isfinite(v) for v in tr.history.curves.get("loss", []))
    tr = training.Trainer(_tiny(strategy="pcd", bound=0.5))  # 8gaussians needs |x| up to ~4
    with pytest.raises(DivergenceError) as info:
        tr.run(n_iters=5, progress=False)
    assert str(info.value).startswith(
        "negative samples diverged at iteration 0 (max |value|"
    )  # what _check saw
    assert info.value.suggestion


def test_checkpoints_are_data_checked_field_by_field(tmp_path):
    path = tmp_path / "run.pt"
    tr = training.Trainer(_tiny(n_iters=2, checkpoint_path=str(path)))
    tr.run(progress=False)
    payload = torch.load(path, weights_only=True)
    # nothing in a checkpoint decides where later writes go
    assert training.Trainer.load(path).config.checkpoint_path is None
    for field, value, fragment in [
        ("n_particles", 10**9, "n_particles must be an integer in"),
        ("strategy", "rm -rf", "unknown strategy"),
        ("hidden", "8", "hidden"),
    ]:
        bad = {**payload, "config": {**payload["config"], field: value}}
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=fragment):
            training.Trainer.load(tmp_path / "bad.pt")
    other = training.Trainer(_tiny(n_iters=2, lr=0.5))
    with pytest.raises(CheckpointError, match="lr"):
        other.resume(path)  # another configuration is refused, naming the differing key
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        checkpoint.load_checkpoint(tmp_path / "junk.pt")


def _idx(path, shape, payload, code=0x08):
    header = struct.pack(">BBBB", 0, 0, code, len(shape)) + b"".join(struct.pack(">I", s) for s in shape)
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


def test_image_files_are_checked_and_inflated_only_as_far_as_declared(tmp_path):
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    _idx(bomb, (2, 4, 4), bytes(200_000_000))  # declares 32 bytes, inflates to 200 MB
    t0 = time.process_time()  # CPU time: a loaded machine stretches the wall clock, not the work
    with pytest.raises(DataError, match="bomb"):
        images.read_idx(bomb)
    assert time.process_time() - t0 < 0.2  # inflating all 200 MB takes about 0.6 s of CPU
    short = tmp_path / "short-idx3-ubyte.gz"
    _idx(short, (2, 4, 4), bytes(10))
    with pytest.raises(DataError, match="short"):
        images.read_idx(short)


# --- issue 24: the newer surfaces (run directories, sweeps, files read back, outputs, numbers) ---------

SWEEP = {"runs": "runs", "budgets": {"b": {"preset": "fast", "n_iters": 2}},
         "overrides": {"hidden": 8, "n_particles": 16, "batch_size": 16, "n_init_steps": 0, "n_eval": 100,
                       "eval_every": 0, "snapshot_every": 0, "grid_size": 16},
         "grids": [{"dataset": ["8gaussians"], "strategy": ["pcd"], "seed": [0], "budget": ["b"]}]}  # fmt: skip
TRAIN_TINY = ["--quiet", *(f"--set={k}={v}" for k, v in SWEEP["overrides"].items() if k != "eval_every")]


def _refused(argv, capsys, fragment):
    """``pdviz argv`` exits 2 with one line naming ``fragment`` (from the parser or the command)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as stop:  # a flag's type: the config field's own check, at parse time
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_train_on_a_running_run_writes_nothing(tmp_path, capsys, resume):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("# the running run's\n")
    if resume:
        training.Trainer(_tiny(n_iters=1, checkpoint_path=str(run / "checkpoint.pt"))).run(progress=False)
    with open(run / "checkpoint.pt.lock", "a") as fh:  # the first run holds the lock
        fcntl.flock(fh, fcntl.LOCK_EX)
        _refused(["train", "--out", run, "--iters", 2, *(["--resume"] if resume else [])], capsys,
                 "is being written by another process")  # fmt: skip
    assert (run / "config.toml").read_text() == "# the running run's\n"


def _sweep_file(tmp_path, name="sweep.json", **changes):
    path = tmp_path / name
    path.write_text(json.dumps({**SWEEP, **changes}))
    return path


def test_a_sweep_writes_only_in_its_runs_folder_and_over_its_own_summary(tmp_path):
    with pytest.raises(InvalidArgumentError, match="over the sweep file itself"):
        sweep.load(_sweep_file(tmp_path, "own.json", runs="own"))
    for runs in (".", "..", "./"):
        with pytest.raises(InvalidArgumentError, match="its own folder or above it"):
            sweep.load(_sweep_file(tmp_path, runs=runs))
    (tmp_path / "runs.json").write_text("a user's file")
    with pytest.raises(InvalidArgumentError, match="not a sweep summary"):
        sweep.summary_path(tmp_path / "runs")
    (tmp_path / "runs.json").write_text('{"benchmark": "toy"}')  # an earlier summary may be replaced
    assert sweep.summary_path(tmp_path / "runs") == tmp_path / "runs.json"


def test_a_result_counts_only_for_the_configuration_that_made_it(tmp_path):
    (spec,), runs = sweep.load(_sweep_file(tmp_path))
    runs.mkdir()
    sweep.write_json(
        runs / sweep.run_name(spec), {"spec": spec, "key": sweep.spec_key(spec), "status": "done"}
    )
    assert sweep._todo([spec], runs) == ([], 0, 0)
    (changed,), _ = sweep.load(_sweep_file(tmp_path, overrides={**SWEEP["overrides"], "lr": 0.005}))
    assert sweep._todo([changed], runs) == ([changed], 0, 1)  # the old result is stale: rerun
    old = {k: v for k, v in spec.items()}  # a result from before keys: its spec's key
    sweep.write_json(runs / sweep.run_name(spec), {"spec": old, "status": "done"})
    assert sweep._todo([spec], runs) == ([], 0, 0)
    (runs / "notes__mine.json").write_text("[1]")
    with pytest.raises(InvalidArgumentError, match="notes__mine.json' is not a sweep result"):
        sweep._todo([spec], runs)


def _fifo(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--set", "betas=0.5"], "betas must be a list: [beta1, beta2]"),
        (["--set", "channels=8"], "channels must be a list: 3 or 4 ints"),
        (["--config", "@betas = 0.5\n"], "betas must be a list"),
        (["--set", "n_iters=0"], "n_iters must be an integer in [1, 1e+08], got 0"),
        (["--iters", "0"], "n_iters must be an integer in [1, 1e+08], got 0"),
        (["--config", '@{"time_budget": 0}'], "time_budget must be a number in [0.001, 1e+12], got 0"),
        (["--time-budget", "0"], "time_budget must be a number in [0.001, 1e+12], got 0.0"),
        (["--config", ""], "'' is not a regular file"),
        (["--config", "@" + "[" * 100_000 + "]" * 100_000], "is not a readable JSON file"),
        (["--config", "/dev/zero"], "'/dev/zero' is not a regular file"),
        (["--config", "FIFO"], "is not a regular file"),
    ],
)
def test_config_values_take_one_path_from_flags_set_and_files(tmp_path, capsys, argv, fragment):
    argv = [str(_fifo(tmp_path)) if a == "FIFO" else a for a in argv]
    if argv[-1].startswith("@"):  # a config file with this text
        path = tmp_path / ("c.toml" if "=" in argv[-1] and "{" not in argv[-1] else "c.json")
        path.write_text(argv[-1][1:])
        argv[-1] = str(path)
    t0 = time.perf_counter()
    _refused(["train", "--out", tmp_path / "run", *argv], capsys, fragment)
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "run" / "config.toml").exists()


def test_the_preset_flag_outranks_the_config_file_and_image_sets_pick_theirs(tmp_path):
    (tmp_path / "p.toml").write_text('preset = "paper"\n')
    args = cli.build_parser().parse_args(
        ["train", "--out", "x", "--config", str(tmp_path / "p.toml"), "--preset", "fast"]
    )
    assert cli._train_config(args)[0] == "fast"
    args = cli.build_parser().parse_args(["train", "--out", "x", "--dataset", "digits"])
    assert cli._train_config(args)[0] == "digits"
    with pytest.raises(
        InvalidArgumentError, match=r"the 'fast' preset trains a 2-D MLP: use make_config\('digits'\)"
    ):
        training.Trainer(training.make_config(dataset="digits"))


@pytest.mark.parametrize(
    "change, fragment",
    [
        (dict(budgets=[1]), "'budgets' and 'overrides' must be objects"),
        (dict(budgets={"b": 5}), "budget 'b' must be an object"),
        (dict(overrides=[1]), "'budgets' and 'overrides' must be objects"),
        (
            dict(budgets={"b": {"cpu_budget": "10"}}),
            "cpu_budget must be a number of seconds in [0.001, 1e+12], got '10'",
        ),
        (
            dict(budgets={"b": {"cpu_budget": -1}}),
            "cpu_budget must be a number of seconds in [0.001, 1e+12], got -1",
        ),
        (dict(budgets={"b": {"cpu_budget": math.nan}}), "cpu_budget must be a number of seconds in"),
        (dict(budgets={"b": {"n_iters": 0}}), "n_iters must be an integer in [1, 1e+08], got 0"),
        (dict(budgets={"b": {"n_iters": 2, "done_elsewhere": 5}}), "done_elsewhere must be a path"),
        (dict(budgets={"b": {"n_iters": 2, "done_elsewhere": "x/{nope}"}}), "done_elsewhere must be a path"),
        (dict(grids=["x"]), "a sweep file needs 'grids'"),
        (
            dict(grids=[{"dataset": "8gaussians", "strategy": ["pcd"], "seed": [0], "budget": ["b"]}]),
            "to lists",
        ),
        (
            dict(
                grids=[
                    {
                        "dataset": ["8gaussians"] * 10**4,
                        "strategy": ["pcd"],
                        "seed": list(range(10**4)),
                        "budget": ["b"],
                    }
                ]
            ),
            "the grids hold 100,000,000 runs; a sweep file may hold at most 10,000",
        ),
        (
            dict(grids=[{"dataset": ["8gaussians"], "strategy": [["pcd"]], "seed": [0], "budget": ["b"]}]),
            "strategy",
        ),
    ],
)
def test_a_malformed_sweep_file_is_refused_before_any_run(tmp_path, change, fragment):
    t0 = time.perf_counter()
    with pytest.raises(InvalidArgumentError) as info:
        sweep.load(_sweep_file(tmp_path, **change))
    assert fragment in str(info.value) and time.perf_counter() - t0 < 5


@pytest.mark.parametrize("name", ["/dev/zero", "FIFO", "DEEP"])
def test_a_sweep_file_that_is_not_a_small_regular_file_is_refused(tmp_path, name):
    path = {"FIFO": lambda: _fifo(tmp_path), "DEEP": lambda: tmp_path / "d.json"}.get(
        name, lambda: Path(name)
    )()
    if name == "DEEP":
        path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidArgumentError, match="not a regular file|not a readable JSON"):
        sweep.load(path)


def _serve(greeting: bytes | None):
    """A local server that sends ``greeting`` on each connection (None: waits for a request, like HTTP)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                if greeting is not None:
                    conn.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    return server, f"tcp://127.0.0.1:{server.getsockname()[1]}"


def test_a_bad_scheduler_address_is_refused_within_seconds():
    for address, fragment in [
        ("not a url", "must be tcp://HOST:PORT"),
        ("tcp://127.0.0.1:1", "no Dask scheduler"),
    ]:
        with pytest.raises(InvalidArgumentError, match=fragment):
            sweep.check_scheduler(address)
    for greeting, fragment in [
        (None, "no answer within 1 s"),
        (b"HTTP/1.1 400 Bad Request\r\n", "not a Dask"),
    ]:
        server, address = _serve(greeting)
        t0 = time.perf_counter()
        with server, pytest.raises(InvalidArgumentError, match=fragment):
            sweep.check_scheduler(address, timeout=1.0)
        assert time.perf_counter() - t0 < 3
    server, address = _serve(struct.pack("<Q", 300) + bytes(300))  # a Dask handshake frame's length
    with server:
        sweep.check_scheduler(address, timeout=1.0)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_sweep_leaves_no_worker_running(tmp_path, signum):
    path = _sweep_file(tmp_path, budgets={"b": {"preset": "fast", "cpu_budget": 120}})
    proc = subprocess.Popen([sys.executable, "-m", "pdviz", "sweep", str(path), "--quiet"], stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline, workers = time.monotonic() + 60, []
    while time.monotonic() < deadline and not workers:  # the spawned worker (and its resource tracker)
        time.sleep(0.5)
        workers = [w for w in _children(proc.pid) if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text()]
    assert workers, "no worker started"
    proc.send_signal(signum)
    err = proc.communicate(timeout=30)[1]
    time.sleep(2)
    alive = [
        w for w in workers if Path(f"/proc/{w}").exists() and ") Z" not in Path(f"/proc/{w}/stat").read_text()
    ]
    assert not alive, f"workers {alive} still running"
    if signum == signal.SIGTERM:
        assert (
            proc.returncode == 130
            and err.count("\n") == 1
            and "SIGTERM: stopped the sweep; 0 results of 1" in err
        )


PAPER = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_runs" / "final"


def _paper(tmp_path, change):
    run = torch.load(PAPER / "pcd-s0.pt", weights_only=True)
    change(run)
    torch.save(run, tmp_path / "x.pt")
    return tmp_path / "x.pt"


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: d / "none.pt", "does not exist"),
        (lambda d: (d / "e.pt").write_bytes(b"") and d / "e.pt" or d / "e.pt", "cannot be read"),
        (
            lambda d: (d / "t.pt").write_bytes((PAPER / "pcd-s0.pt").read_bytes()[:5000]) and d / "t.pt",
            "cannot be read",
        ),
        (lambda d: torch.save(torch.zeros(3), d / "x.pt") or d / "x.pt", "a Tensor, not a dict"),
        (
            lambda d: torch.save({"format": "pdviz-checkpoint"}, d / "x.pt") or d / "x.pt",
            "'strategy' must be a str",
        ),
        (lambda d: _paper(d, lambda r: r.update(model_kind="rm -rf")), "model_kind must be 'grid' or 'mlp'"),
        (
            lambda d: _paper(d, lambda r: r.pop("model_config")),
            "'model_config' must be a dict, got '<missing>'",
        ),
        (lambda d: _paper(d, lambda r: r["model_config"].update(hidden="8")), "hidden must be an integer"),
        (
            lambda d: _paper(d, lambda r: r["model_config"].update(hidden=10**9)),
            "hidden must be an integer in",
        ),
        (lambda d: _paper(d, lambda r: r["model"].pop("net.0.weight")), "Missing key(s)"),
        (
            lambda d: _paper(d, lambda r: r["model"].update({"net.0.weight": torch.zeros(3, 3)})),
            "size mismatch",
        ),
        (lambda d: _paper(d, lambda r: r.update(particles="x")), "'particles' must be a Tensor"),
        (
            lambda d: _paper(d, lambda r: r["particles"].fill_(math.nan)),
            "particles must be finite floats [n, 2]",
        ),
        (
            lambda d: _paper(d, lambda r: r["evals"].update(log_likelihood=["a"])),
            "evals must map names to lists",
        ),
        (lambda d: _paper(d, lambda r: r.update(iteration=True)), "'iteration' must be a int, got True"),
    ],
)
def test_a_paper_run_is_read_through_the_checked_loader(tmp_path, make, fragment):
    with pytest.raises(CheckpointError) as info:
        bench.load_paper_run(make(tmp_path))
    assert fragment in str(info.value)


def test_paper_runs_of_a_missing_folder_or_seed_are_said(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        bench.load_paper_runs(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no paper run of seed 7 .* holds pcd-s0.pt"):
        bench.load_paper_runs(PAPER, seed=7)
    assert list(bench.load_paper_runs(PAPER)) == list(bench.PAPER_ORDER)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda p: p.update(iteration=10**12), "iteration must be in [0, 1e+08], got 1000000000000"),
        (lambda p: p.update(iteration="7"), "'iteration' must be a int, got '7'"),
        (lambda p: p.update(iteration=2.5), "'iteration' must be a int, got 2.5"),
        (lambda p: p["config"].pop("lr"), "its config lacks ['lr']"),
        (
            lambda p: p["history"]["curves"].update(loss=["x"]),
            "history curve 'loss' must be a list of numbers",
        ),
    ],
)
def test_a_tampered_trainer_checkpoint_is_refused_by_every_reader(tmp_path, capsys, change, fragment):
    run = tmp_path / "run"
    run.mkdir()
    training.Trainer(_tiny(n_iters=1, checkpoint_path=str(run / "checkpoint.pt"))).run(progress=False)
    payload = checkpoint.load_checkpoint(run / "checkpoint.pt")
    change(payload)
    checkpoint.save_checkpoint(run / "checkpoint.pt", payload)
    with pytest.raises(CheckpointError) as info:
        training.Trainer.load(run / "checkpoint.pt")
    assert fragment in str(info.value)
    _refused(["train", "--out", run, "--resume", "--quiet"], capsys, fragment)
    _refused(["plot", run], capsys, fragment)


@pytest.mark.parametrize(
    "out, fragment", [("nodir/x.csv", "names a folder 'nodir'"), ("d.csv", "is a folder")]
)
def test_sample_refuses_an_output_it_cannot_write(tmp_path, capsys, monkeypatch, out, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    training.Trainer(_tiny(n_iters=1, checkpoint_path=str(run / "checkpoint.pt"))).run(progress=False)
    _refused(["sample", run, "--out", out], capsys, fragment)
    assert cli.main(["sample", str(run), "--n", "250001", "--out", "s.csv"]) == 0  # streamed in chunks
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert (
        lines[0] == "x,y" and len(lines) == 250_002 and all(len(v.split(",")) == 2 for v in lines[1::50_000])
    )


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: energies.get("funnel", sigma=1e-300), "sigma must be in [0.001, 1000.0], got 1e-300"),
        (lambda: energies.get("funnel", sigma=1e300), "sigma must be in [0.001, 1000.0]"),
        (lambda: energies.get("banana", s=1e-300), "s must be in [0.001, 1000.0]"),
        (lambda: energies.get("double_well", r=1e300), "r must be in [0.001, 1000.0]"),
        (
            lambda: energies.get("correlated_gaussian", cov=[[1e-300, 0], [0, 1e-300]]),
            "eigenvalues in [1e-06, 1e+06]",
        ),
        (lambda: energies.get("translating_gaussian", m0=(1e300, 0)), "numbers in [-1000, 1000]"),
        (lambda: widgets.TrackingApp("translating_gaussian", ["svgd"], n_particles=200_000), "at most 5,000"),
    ],
)
def test_parameters_beyond_float_range_are_refused(call, fragment):
    with pytest.raises(InvalidArgumentError) as info:
        call()
    assert fragment in str(info.value)
    assert bool(
        torch.isfinite(energies.get("funnel", sigma=1e-3)(torch.ones(3, 2))).all()
    )  # the range's ends hold


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not"),
        ({"WORLD_SIZE": "abc"}, "RANK=0 and WORLD_SIZE=abc in the environment must be integers"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "0 <= RANK < WORLD_SIZE"),
    ],
)
def test_a_world_size_outside_torchrun_is_said(monkeypatch, env, fragment):
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InvalidArgumentError) as info:
        training.Trainer(_tiny())
    assert fragment in str(info.value)


def test_divergence_messages_name_their_quantity_and_keep_their_advice():
    tr = training.Trainer(_tiny())
    with pytest.raises(DivergenceError) as info:
        tr._check("evaluation energies", torch.tensor([math.nan]), "lr", bound=math.inf)
    assert str(info.value).startswith("evaluation energies diverged at iteration 0 (1 non-finite values)")
    with pytest.raises(DivergenceError) as info, tr._guard():
        tr._check("energies", torch.tensor([math.nan]), "lr", bound=math.inf)
    assert info.value.suggestion.startswith("lower lr (now 0.001)")  # not the strategy's generic advice


def test_the_demo_spaces_its_frames_by_the_budget_not_the_speed(monkeypatch):
    size = {**demo.SIZES[True], "frames": 4, "n_particles": 64, "hidden": 8, "n_eval": 200, "grid": 32}
    slow = training.Trainer.step
    for delay in (0.0, 0.05):  # a quiet machine, then a loaded one (each iteration 50 ms longer)
        monkeypatch.setattr(training.Trainer, "step", lambda self, d=delay: (time.sleep(d), slow(self))[1])
        tr = demo._train("pcd", "8gaussians", 1.0, 0, size, progress=False)
        frames = [f for f in tr.history.frames if "position" in f]
        assert len(frames) == 5 and frames[-1]["step"] == tr.iteration  # the start and 4 marks, the end last


def test_the_density_picture_of_a_run_has_the_data_column(tmp_path, monkeypatch):
    seen = {}
    real = plotting.plot_comparison
    monkeypatch.setattr(plotting, "plot_comparison", lambda *a, **kw: seen.update(kw) or real(*a, **kw))
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), "--iters", "1", *TRAIN_TINY]) == 0
    assert seen["target"].shape == (5000, 2)  # the data's column, before the model's


def test_ddp_is_built_without_its_deprecation_warning(tmp_path, monkeypatch, recwarn):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/rdv", rank=0, world_size=1)
    try:
        monkeypatch.setattr(distributed, "world", lambda: (0, 2))  # wrap as on one of two ranks
        warnings.simplefilter("always")
        distributed.wrap(torch.nn.Linear(2, 1), torch.device("cpu"))
    finally:
        torch.distributed.destroy_process_group()
    assert not [w for w in recwarn if "broadcast_buffers" in str(w.message)]


def test_custom_data_checkpoints_refuse_the_same_points_in_another_order(tmp_path):
    data = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    cfg = training.make_config(dataset="custom", n_particles=16, batch_size=16, hidden=8, n_init_steps=0,
                               n_iters=1, eval_every=0, snapshot_every=0, grid_size=16, n_eval=64)  # fmt: skip
    trainer = training.Trainer(cfg, data=data)
    trainer.run(progress=False)
    trainer.save(tmp_path / "c.pt")
    assert training.Trainer.load(tmp_path / "c.pt", data=data).iteration == 1  # the same data loads
    for other in (data.flip(0), data.flip(1)):  # same size and sum: permuted rows, swapped columns
        with pytest.raises(CheckpointError, match="trained on other data"):
            training.Trainer.load(tmp_path / "c.pt", data=other)
