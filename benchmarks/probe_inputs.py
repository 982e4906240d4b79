"""Hostile inputs, class by class: does each end in one clear error (or a correct result)?

    .venv/bin/python benchmarks/probe_inputs.py            # writes benchmarks/probe_inputs.json, prints a table

    .venv/bin/python benchmarks/probe_inputs.py --only sweeps   # rerun one class, update its rows
    .venv/bin/python benchmarks/probe_inputs.py --quick --out /tmp/p.json   # a few seconds (the test runs it)

``--quick`` runs the in-process probes of the first classes, one command-line probe and the class
``error messages`` of ``NEW``: every kind of probe, none of the slow ones (sweeps, signals, big files).

Every probe expects an error (or, where it says so, a correct result). It counts as *clear* when pdviz
raises its own error (or the command exits 2 with one line on stderr) within 20 s, or gives the correct
result; a *crash* is any other exception, a traceback or a signal; *silent* is a result where an error was
due; *slow* is an answer after 20 s; *hang* no answer at all; *lost* a file overwritten or a worker left
running; *wrong* an error or picture that names the wrong thing. The first classes are the earlier
probe's; ``NEW`` holds the surfaces of issue 24 (sweeps, run directories, files read back, widgets).
"""

import argparse
import contextlib
import fcntl
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import torch

from pdviz import (
    ais,
    bench,
    datasets,
    energies,
    flows,
    grid,
    images,
    metrics,
    models,
    samplers,
    training,
    widgets,
)
from pdviz.errors import PdvizError

G, HUGE, TMP = energies.get("gaussian"), 10**12, Path("/tmp/pdviz-probe")
TINY = dict(n_particles=16, batch_size=16, hidden=8, n_init_steps=0, n_eval=100)
API = {
    "sizes": [
        ("datasets.sample n=1e12", lambda: datasets.sample("8gaussians", HUGE, seed=0)),
        ("Grid size=1e6", lambda: grid.Grid(-5, 5, 10**6)),
        ("Grid.sample n=1e12", lambda: grid.Grid().sample(G, HUGE)),
        ("EBM hidden=1e9", lambda: models.EBM(hidden=10**9)),
        ("EBM depth=1e6", lambda: models.EBM(depth=10**6)),
        ("ConvEBM channels 1e7", lambda: models.ConvEBM((1, 8, 8), channels=(10**7, 1, 1))),
        ("samplers.run n_steps=1e12", lambda: samplers.run("ula", torch.zeros(3, 2), G, HUGE, step_size=0.1)),
        (
            "samplers.run history 2e11 numbers",
            lambda: samplers.run("ula", torch.zeros(10**5, 2), G, 10**6, step_size=0.1),
        ),
        ("ReplayBuffer size=1e12", lambda: samplers.ReplayBuffer(HUGE, lambda n, g: torch.zeros(n, 2))),
        ("track n_particles=1e12", lambda: flows.track("translating_gaussian", "alpha", n_particles=HUGE)),
        ("track n_steps=1e9", lambda: flows.track("translating_gaussian", "alpha", n_steps=10**9)),
        ("kl_floor n=1e12", lambda: metrics.kl_floor(G, HUGE)),
        ("kl_to_grid bins=1e6", lambda: metrics.kl_to_grid(torch.zeros(3, 2), G, bins=10**6)),
        ("ais n_chains=1e7 dim=100", lambda: ais.ais_log_z(G, 100, n_chains=10**7)),
        ("config n_particles=1e12", lambda: training.make_config(n_particles=HUGE)),
        ("config buffer_size=1e12", lambda: training.make_config(buffer_size=HUGE)),
        ("config grid_size=1e5", lambda: training.make_config(grid_size=10**5)),
        ("config n_steps=1e9", lambda: training.make_config(n_steps=10**9)),
        ("config n_eval=1e12", lambda: training.make_config(n_eval=HUGE)),
        (
            "batch 100 > data 10",
            lambda: training.Trainer(
                training.make_config(dataset="custom", **{**TINY, "batch_size": 100}),
                data=torch.randn(10, 2),
            ),
        ),
    ],
    "seeds": [
        ("datasets.sample seed=-1", lambda: datasets.sample("8gaussians", 3, seed=-1)),
        ("datasets.sample seed=2**64", lambda: datasets.sample("8gaussians", 3, seed=2**64)),
        ("make_generator seed=2**63", lambda: samplers.make_generator(2**63)),
        ("config seed=2**63", lambda: training.make_config(seed=2**63)),
        ("config seed=1.5", lambda: training.make_config(seed=1.5)),
    ],
    "numbers and names": [
        ("config step_size=nan", lambda: training.make_config(step_size=float("nan"))),
        ("config lr=-1", lambda: training.make_config(lr=-1.0)),
        ("config strategy unknown", lambda: training.make_config(strategy="pd-delta")),
        ("config unknown key", lambda: training.make_config(stepsize=0.1)),
        ("run step_size=-0.1", lambda: samplers.run("ula", torch.zeros(3, 2), G, 5, step_size=-0.1)),
        ("log_likelihood NaN point", lambda: metrics.log_likelihood(G, torch.tensor([[0.0, float("nan")]]))),
        ("energies.get unknown", lambda: energies.get("swirl")),
        ("images.load unknown", lambda: images.load("nope")),
    ],
    "metrics": [
        (
            "log_likelihood grid away from the data",
            lambda: metrics.log_likelihood(G, torch.full((10, 2), 20.0)),
        ),
        (
            "Trainer data outside its grid",
            lambda: training.Trainer(
                training.make_config(dataset="custom", **TINY), data=torch.randn(100, 2) + 30
            ),
        ),
    ],
    "image data": [
        ("read_idx of a missing file", lambda: images.read_idx(TMP / "none-idx3-ubyte")),
        ("read_idx of a text file", lambda: images.read_idx(TMP / "text.gz")),
    ],
}
CLI = {
    "output paths": [
        ["train", "--out", "/nonexistent/dir/run"],
        ["train", "--out", "/etc/hostname"],
        ["sample", "/nonexistent", "--out", "x.pt"],
        ["plot", "/tmp"],
    ],
    "command-line values": [
        ["train", "--out", "x", "--seed", "-1"],
        ["train", "--out", "x", "--iters", "0"],
        ["demo", "--out", "x", "--seconds", "nan"],
        ["--threads", "100000", "datasets"],
        ["train", "--out", "x", "--set", "n_particles=1e12"],
        ["train", "--out", "x", "--config", "/etc/hostname"],
    ],
}


def probe(call) -> tuple[str, str]:
    t = time.perf_counter()
    try:
        call()
        verdict, text = "silent", "no error"
    except PdvizError as err:
        verdict, text = "clear", str(err)
    except Exception as err:  # noqa: BLE001 - what we are counting
        verdict, text = "crash", f"{type(err).__name__}: {err}"
    return ("slow" if time.perf_counter() - t > 20 and verdict == "clear" else verdict), text[:160]


def cli(argv) -> tuple[str, str]:
    p = subprocess.run([sys.executable, "-m", "pdviz", *argv], capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    clear = p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr
    return ("clear" if clear else "silent" if p.returncode == 0 else "crash"), (lines[-1] if lines else "")[
        :160
    ]


# --- the newer surfaces (issue 24): each case sets itself up and returns (verdict, text) -----------------

SWEEP_TINY = dict(hidden=8, n_particles=16, batch_size=16, n_init_steps=0, n_eval=100, eval_every=0,
                  snapshot_every=0, grid_size=16)  # fmt: skip
BASE_SWEEP = {"runs": "runs", "budgets": {"b": {"preset": "fast", "n_iters": 2}}, "overrides": SWEEP_TINY,
              "grids": [{"dataset": ["8gaussians"], "strategy": ["pcd"], "seed": [0], "budget": ["b"]}]}  # fmt: skip


def _cmd(argv, *, env=None, timeout=45, limit_bytes=None, cwd=None):
    """(verdict, text, process) of ``python -m pdviz argv``: clear = exit 2 and one line on stderr; a
    traceback or another status is a crash, 0 silent, no answer within ``timeout`` s a hang."""
    pre = None
    if limit_bytes:

        def pre():
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    try:
        p = subprocess.run([sys.executable, "-m", "pdviz", *map(str, argv)], capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, **(env or {})}, preexec_fn=pre, cwd=cwd)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "hang", f"no answer in {timeout} s", None
    lines = p.stderr.strip().splitlines()
    clear = p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr
    verdict = "clear" if clear else "silent" if p.returncode == 0 else "crash"
    return verdict, (lines[-1] if lines else f"rc {p.returncode}")[:160], p


def _fresh(name: str) -> Path:
    d = TMP / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _sweep(name: str, file_name: str = "sweep.json", **changes) -> Path:
    d = _fresh(name)
    (d / file_name).write_text(json.dumps({**BASE_SWEEP, **changes}))
    return d / file_name


def _tiny_run(name: str) -> Path:
    """A finished 2-iteration run directory (pdviz train) to tamper with."""
    d = _fresh(name)
    _cmd(["train", "--out", d / "run", "--iters", 2, "--quiet", "--set", "hidden=8", "--set", "n_particles=16",
          "--set", "batch_size=16", "--set", "n_init_steps=0", "--set", "n_eval=100", "--set", "grid_size=16"])  # fmt: skip
    return d / "run"


def _tampered_run(name: str, change) -> Path:
    run = _tiny_run(name)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    change(payload)
    torch.save(payload, run / "checkpoint.pt")
    return run


def _second_train(resume: bool):
    run = _fresh("second") / "run"
    run.mkdir()
    (run / "config.toml").write_text("# the running run's config\n")
    (run / "config.json").write_text("{}")
    if resume:
        torch.save({"format": "pdviz-checkpoint"}, run / "checkpoint.pt")
    with open(run / "checkpoint.pt.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # the first run holds the lock
        verdict, text, _ = _cmd(["train", "--out", run, "--iters", 2, *(["--resume"] if resume else [])])
    kept = (run / "config.toml").read_text() == "# the running run's config\n"
    return (verdict if kept else "lost"), text if kept else "config.toml overwritten: " + text


def _own_name():
    path = _sweep("own", "own.json", runs="own")
    before = path.read_text()
    verdict, text, _ = _cmd(["sweep", path, "--quiet"], timeout=120)
    return (verdict if path.read_text() == before else "lost"), text


def _dot_runs():
    path = _sweep("dot", runs=".")
    bystander = TMP / "dot.json"
    bystander.write_text("a user's file")
    verdict, text, _ = _cmd(["sweep", path, "--quiet"], timeout=120)
    return (verdict if bystander.read_text() == "a user's file" else "lost"), text


def _stale():
    path = _sweep("stale")
    _cmd(["sweep", path, "--quiet"], timeout=120)
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "overrides": {**SWEEP_TINY, "lr": 0.005}}))
    verdict, text, _ = _cmd(["sweep", path, "--quiet"], timeout=120)
    result = json.loads(next((path.parent / "runs").glob("*__*.json")).read_text())
    fresh = result["spec"]["overrides"].get("lr") == 0.005
    return ("clear" if fresh and verdict == "silent" else "silent" if not fresh else verdict), (
        f"result overrides {result['spec']['overrides'].get('lr')}; " + text
    )


def _sweep_result(path: Path, want) -> tuple[str, str]:
    """Run a sweep whose budget is wrong: an error is clear; a run that went ahead is silent."""
    verdict, text, _ = _cmd(["sweep", path, "--quiet"], timeout=120)
    if verdict == "silent":
        results = list((path.parent / "runs").glob("*__*.json"))
        it = json.loads(results[0].read_text()).get("iterations") if results else None
        text = f"ran {it} iterations; " + text
    return verdict, text


def _budget(**budget):
    return lambda: _sweep_result(_sweep("budget", budgets={"b": {"preset": "fast", **budget}}), None)


def _signal_sweep(signum):
    path = _sweep("signal", budgets={"b": {"preset": "fast", "cpu_budget": 60}})
    p = subprocess.Popen([sys.executable, "-m", "pdviz", "sweep", str(path), "--quiet"], stderr=subprocess.PIPE,
                         text=True)  # fmt: skip

    def children(pid):
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(stat.parent.name))
        return out

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(  # until the worker runs (a busy machine takes longer)
        "spawn_main" in Path(f"/proc/{w}/cmdline").read_text() for w in children(p.pid)
    ):
        time.sleep(0.5)

    workers = children(p.pid)
    p.send_signal(signum)
    try:
        err = p.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        return "hang", "the sweep did not stop in 20 s"
    time.sleep(3)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split(")")[1][:3]
    ]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    lines = err.strip().splitlines()
    if alive:
        return (
            "lost",
            f"{len(alive)} of {len(workers)} workers still running; stderr: {(lines or [''])[-1][:100]}",
        )
    said = signum == signal.SIGKILL or (len(lines) == 1 and "Traceback" not in err)
    return ("clear" if said else "crash"), (lines[-1] if lines else f"rc {p.returncode}")[:160]


def _scheduler(address):
    return lambda: _cmd(["sweep", _sweep("sched"), "--quiet", "--scheduler", address], timeout=60)[:2]


def _http_scheduler():
    server = subprocess.Popen([sys.executable, "-m", "http.server", "18786"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.5)
    try:
        return _scheduler("tcp://127.0.0.1:18786")()
    finally:
        server.kill()
        server.wait()


def _api(call):
    return lambda: probe(call)


def _named(call, name):
    """An error that must name ``name`` (the widget's own control), else it names the wrong thing."""

    def case():
        verdict, text = probe(call)
        return ("wrong" if verdict == "clear" and name not in text else verdict), text

    return case


def _load_paper(make):
    def case():
        d = _fresh("paper")
        path = make(d)
        return probe(lambda: bench.load_paper_run(path))

    return case


REAL_PAPER = Path(__file__).parent / "paper_runs" / "final"


def _crafted(change):
    def make(d):
        run = torch.load(REAL_PAPER / "pcd-s0.pt", weights_only=True)
        change(run)
        torch.save(run, d / "x.pt")
        return d / "x.pt"

    return make


def _custom_checkpoint(transform):
    def call():
        data = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
        cfg = training.make_config(dataset="custom", n_iters=1, eval_every=0, **TINY)
        tr = training.Trainer(cfg, data=data)
        path = _fresh("custom") / "c.pt"
        tr.save(path)
        training.Trainer.load(path, data=transform(data))

    return _api(call)


def _resume_with(change):
    def case():
        run = _tampered_run("resume", change)
        return _cmd(["train", "--out", run, "--resume", "--quiet"], timeout=120)[:2]

    return case


def _plot_strings():
    def change(p):
        p["history"]["curves"]["loss"] = ["x"] * len(p["history"]["curves"]["loss"])

    return _cmd(["plot", _tampered_run("plot", change)])[:2]


def _sample_to(out_name, n=100, limit=None):
    def case():
        run = _tiny_run("sample")
        out = run.parent / out_name
        if out_name.endswith("dir.csv"):
            out.mkdir()
        verdict, text, _ = _cmd(["sample", run, "--n", n, "--out", out], timeout=300, limit_bytes=limit)
        if verdict == "silent" and out.is_file():
            lines = sum(1 for _ in open(out)) - 1
            verdict = "clear" if lines == n else "silent"
            text = f"wrote {lines} rows for --n {n}"
        return verdict, text

    return case


def _finite(call):
    """A call that must either refuse or return finite numbers (inf or NaN is a silent wrong result)."""

    def case():
        verdict, text = probe(lambda: float(torch.as_tensor(call()).abs().max()))
        if verdict == "silent":
            value = call()
            if not bool(torch.isfinite(torch.as_tensor(value)).all()):
                return "silent", f"returned {value}"[:160]
            return "clear", f"a finite result {value}"[:160]
        return verdict, text

    return case


def _world_size():
    return _cmd(["train", "--out", _fresh("ws") / "run", "--iters", 2], env={"WORLD_SIZE": "2"}, timeout=45)[
        :2
    ]


def _check_names_quantity():
    tr = training.Trainer(training.make_config(n_iters=1, eval_every=0, **TINY))
    try:
        tr._check("evaluation energies", torch.tensor([float("nan")]), "lr", bound=math.inf)
    except PdvizError as err:
        return ("clear" if "evaluation energies" in str(err) else "wrong"), str(err)[:160]
    return "silent", "no error"


def _guard_keeps_suggestion():
    tr = training.Trainer(training.make_config(n_iters=1, eval_every=0, **TINY))
    try:
        with tr._guard():
            tr._check("energies", torch.tensor([float("nan")]), "lr", bound=math.inf)
    except PdvizError as err:
        return ("clear" if err.suggestion.startswith("lower lr") else "wrong"), err.suggestion[:160]
    return "silent", "no error"


def _density_has_data():
    run = _tiny_run("density")
    import matplotlib.image

    width = matplotlib.image.imread(run / "density.png").shape[1]
    verdict = "clear" if width > 450 else "wrong"  # one column (the model alone) is 340 px wide
    return verdict, f"density.png is {width} px wide"


def _images_cpu_digits():
    p = subprocess.run([sys.executable, str(Path(__file__).with_name("images_cpu.py")), "--part", "digits",
                        "--seconds", "1", "--seeds", "0", "--ais-steps", "20", "--ais-chains", "8", "--ais-repeats",
                        "1", "--out", str(_fresh("imgcpu") / "x.json")],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    tail = (p.stderr.strip().splitlines() or [f"rc {p.returncode}"])[-1]
    return ("clear" if p.returncode == 0 else "crash"), tail[:160]


def _digits_train():
    """Correct: a run of the digits preset (exit 0), or a refusal naming --preset digits."""
    verdict, text, p = _cmd(["train", "--out", _fresh("dg") / "r", "--dataset", "digits", "--iters", 2, "--quiet",
                             "--set", "n_init_steps=0", "--set", "n_steps=1"], timeout=300)  # fmt: skip
    if verdict == "silent" or (verdict == "clear" and "--preset digits" in text):
        return "clear", text if verdict == "clear" else "trained with the digits preset"
    return ("wrong" if verdict == "clear" else verdict), text


def _digits_summary():
    verdict, text, p = _cmd(["train", "--out", _fresh("dig") / "run", "--dataset", "digits", "--iters", 2, "--quiet",
                             "--set", "n_init_steps=0", "--set", "n_steps=1"], timeout=300)  # fmt: skip
    if verdict == "silent":
        out = p.stdout.strip().splitlines()[-1]
        return ("wrong" if "- nats" in out else "clear"), out[:160]
    return ("wrong" if verdict == "clear" else verdict), text


def _text(name, text):
    (TMP / name).write_text(text)
    return TMP / name


def _text_sweep(budgets_json):
    path = _sweep("nan")
    text = json.dumps({**BASE_SWEEP, "budgets": "@@"}).replace('"@@"', budgets_json)
    path.write_text(text)
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


def _save(path, obj):
    torch.save(obj, path)
    return path


def _nonempty(runs):
    if not runs:
        raise ValueError("returned no runs")


def _fifo():
    path = TMP / "fifo"
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def _preset_order():
    path = _text("p.toml", 'preset = "paper"\n')
    d = _fresh("order") / "r"
    verdict, text, p = _cmd(["train", "--out", d, "--config", path, "--preset", "fast", "--iters", 1, "--quiet",
                             "--set", "n_init_steps=0", "--set", "eval_every=0", "--set", "snapshot_every=0"], timeout=120)  # fmt: skip
    if (d / "config.toml").exists():
        preset = tomllib.loads((d / "config.toml").read_text().split("\n", 1)[1]).get("preset")
        return (
            "clear" if preset == "fast" else "wrong"
        ), f"the run used preset {preset!r} (--preset fast given)"
    return verdict, text


def _grid_without_base(d):
    run = torch.load(REAL_PAPER / "pd-gamma-s0.pt", weights_only=True)
    run["model"].pop("base_mean")
    return _save(d / "g.pt", run)


def _foreign_result():
    path = _sweep("foreign")
    (path.parent / "runs").mkdir()
    (path.parent / "runs" / "notes__mine.json").write_text('["a user\'s file"]')
    return _cmd(["sweep", path, "--quiet"], timeout=120)[:2]


NEW = {
    "data loss": [
        ("second train --out X on a running X", lambda: _second_train(False)),
        ("second train --out X --resume on a running X", lambda: _second_train(True)),
        ("sweep file whose runs is its own name", _own_name),
        ('sweep "runs": "." beside a user file', _dot_runs),
    ],
    "stale results": [("sweep overrides changed", _stale)],
    "config values": [
        ("--set betas=0.5", lambda: _cmd(["train", "--out", TMP / "cv", "--set", "betas=0.5"])[:2]),
        ("--set channels=8", lambda: _cmd(["train", "--out", TMP / "cv", "--set", "channels=8"])[:2]),
        (
            "config file betas = 0.5",
            lambda: _cmd(["train", "--out", TMP / "cv", "--config", _text("b.toml", "betas = 0.5\n")])[:2],
        ),
        ("--set n_iters=0", lambda: _cmd(["train", "--out", _fresh("cv0") / "r", "--set", "n_iters=0"])[:2]),
        (
            "config time_budget = 0",
            lambda: _cmd(
                ["train", "--out", _fresh("cv1") / "r", "--config", _text("t.json", '{"time_budget": 0}')]
            )[:2],
        ),
        (
            "--config ''",
            lambda: _cmd(["train", "--out", _fresh("cv2") / "r", "--config", "", "--iters", 2])[:2],
        ),
        ("--config F(paper) --preset fast", _preset_order),
        (
            "deeply nested JSON config",
            lambda: _cmd(
                ["train", "--out", TMP / "cv", "--config", _text("deep.json", "[" * 100000 + "]" * 100000)]
            )[:2],
        ),
        (
            "--config /dev/zero",
            lambda: _cmd(["train", "--out", TMP / "cv", "--config", "/dev/zero"], limit_bytes=2**31)[:2],
        ),
        (
            "--config a FIFO",
            lambda: _cmd(["train", "--out", TMP / "cv", "--config", _fifo()], timeout=20)[:2],
        ),
        ("sweep file /dev/zero", lambda: _cmd(["sweep", "/dev/zero"], limit_bytes=2**31)[:2]),
        ("sweep file a FIFO", lambda: _cmd(["sweep", _fifo()], timeout=20)[:2]),
        (
            "deeply nested sweep file",
            lambda: _cmd(["sweep", _text("deep-sweep.json", "[" * 100000 + "]" * 100000)])[:2],
        ),
    ],
    "train --dataset digits": [
        (
            "pdviz train --dataset digits",
            _digits_train,
        ),
        (
            "Trainer(make_config(dataset='digits'))",
            _api(lambda: training.Trainer(training.make_config(dataset="digits", n_init_steps=0))),
        ),
        ("summary line of an image run", _digits_summary),
    ],
    "sweeps": [
        ("budgets as a list", lambda: _sweep_result(_sweep("m", budgets=[1]), None)),
        ("a budget as a number", lambda: _sweep_result(_sweep("m", budgets={"b": 5}), None)),
        ("overrides as a list", lambda: _sweep_result(_sweep("m", overrides=[1]), None)),
        ("cpu_budget as a string", _budget(cpu_budget="10")),
        ("done_elsewhere a number", _budget(n_iters=2, done_elsewhere=5)),
        ("done_elsewhere with {nope}", _budget(n_iters=2, done_elsewhere="x/{nope}")),
        (
            "grid values not a list",
            lambda: _sweep_result(
                _sweep(
                    "m", grids=[{"dataset": "8gaussians", "strategy": ["pcd"], "seed": [0], "budget": ["b"]}]
                ),
                None,
            ),
        ),
        ("a grid as a string", lambda: _sweep_result(_sweep("m", grids=["x"]), None)),
        ("foreign *__*.json in the runs folder", _foreign_result),
        ("budget n_iters: 0", _budget(n_iters=0)),
        ("budget cpu_budget: -1", _budget(cpu_budget=-1)),
        (
            "budget cpu_budget: NaN",
            lambda: _sweep_result(_text_sweep('{"b": {"preset": "fast", "cpu_budget": NaN}}'), None),
        ),
        ("--scheduler 'not a url'", _scheduler("not a url")),
        ("--scheduler unreachable port", _scheduler("tcp://127.0.0.1:1")),
        ("--scheduler tcp://10.255.255.1:8786", _scheduler("tcp://10.255.255.1:8786")),
        ("--scheduler an HTTP server", _http_scheduler),
        ("SIGTERM of a sweep", lambda: _signal_sweep(signal.SIGTERM)),
        ("SIGHUP of a sweep", lambda: _signal_sweep(signal.SIGHUP)),
        ("SIGKILL of a sweep", lambda: _signal_sweep(signal.SIGKILL)),
        (
            "10^4 x 10^4 grid",
            lambda: _cmd(
                [
                    "sweep",
                    _sweep(
                        "big",
                        grids=[
                            {
                                "dataset": ["8gaussians"] * 10**4,
                                "strategy": ["pcd"],
                                "seed": list(range(10**4)),
                                "budget": ["b"],
                            }
                        ],
                    ),
                ],
                timeout=30,
            )[:2],
        ),
    ],
    "files read back": [
        ("load_paper_run missing file", _load_paper(lambda d: d / "none.pt")),
        ("load_paper_run empty file", _load_paper(lambda d: _write(d / "e.pt", b""))),
        (
            "load_paper_run truncated",
            _load_paper(lambda d: _write(d / "t.pt", (REAL_PAPER / "pcd-s0.pt").read_bytes()[:5000])),
        ),
        ("load_paper_run text file", _load_paper(lambda d: _write(d / "t.pt", b"hello"))),
        ("load_paper_run a tensor", _load_paper(lambda d: _save(d / "x.pt", torch.zeros(3)))),
        ("load_paper_run a list", _load_paper(lambda d: _save(d / "x.pt", [1, 2]))),
        (
            "load_paper_run a pdviz checkpoint",
            _load_paper(lambda d: _save(d / "x.pt", {"format": "pdviz-checkpoint", "version": 2})),
        ),
        ("load_paper_run model_kind unknown", _load_paper(_crafted(lambda r: r.update(model_kind="rm -rf")))),
        ("load_paper_run no model_config", _load_paper(_crafted(lambda r: r.pop("model_config")))),
        ("load_paper_run hidden '8'", _load_paper(_crafted(lambda r: r["model_config"].update(hidden="8")))),
        (
            "load_paper_run hidden 10^9",
            _load_paper(_crafted(lambda r: r["model_config"].update(hidden=10**9))),
        ),
        (
            "load_paper_run model weights missing",
            _load_paper(_crafted(lambda r: r["model"].pop("net.0.weight"))),
        ),
        (
            "load_paper_run weights of another shape",
            _load_paper(_crafted(lambda r: r["model"].update({"net.0.weight": torch.zeros(3, 3)}))),
        ),
        ("load_paper_run particles a string", _load_paper(_crafted(lambda r: r.update(particles="x")))),
        ("load_paper_run particles NaN", _load_paper(_crafted(lambda r: r["particles"].fill_(float("nan"))))),
        (
            "load_paper_run evals strings",
            _load_paper(_crafted(lambda r: r["evals"].update(log_likelihood=["a"]))),
        ),
        ("load_paper_run grid run without base_mean", _load_paper(_grid_without_base)),
        ("load_paper_runs wrong folder", _api(lambda: _nonempty(bench.load_paper_runs(TMP / "nowhere")))),
        ("load_paper_runs wrong seed", _api(lambda: _nonempty(bench.load_paper_runs(REAL_PAPER, seed=7)))),
        ("pdviz plot, history of strings", _plot_strings),
        ("resume at iteration 10^12", _resume_with(lambda p: p.update(iteration=10**12))),
        ("resume at iteration '7'", _resume_with(lambda p: p.update(iteration="7"))),
        ("resume at iteration 2.5", _resume_with(lambda p: p.update(iteration=2.5))),
        ("resume, config keys missing", _resume_with(lambda p: p["config"].pop("lr"))),
        ("custom data permuted", _custom_checkpoint(lambda x: x.flip(0))),
        ("custom data columns swapped", _custom_checkpoint(lambda x: x.flip(1))),
    ],
    "outputs": [
        ("sample --out nodir/x.csv", _sample_to("nodir/x.csv")),
        ("sample --out an existing directory", _sample_to("dir.csv")),
        ("sample --n 10^7 to CSV under 3 GiB", _sample_to("big.csv", n=10**7, limit=3 * 2**30)),
    ],
    "numbers": [
        ("funnel sigma=1e-300", _finite(lambda: energies.get("funnel", sigma=1e-300)(torch.ones(1, 2)))),
        ("funnel sigma=1e300", _finite(lambda: energies.get("funnel", sigma=1e300)(torch.ones(1, 2)))),
        (
            "correlated_gaussian cov 1e-300 I",
            _finite(
                lambda: energies.get("correlated_gaussian", cov=[[1e-300, 0], [0, 1e-300]])(torch.ones(1, 2))
            ),
        ),
        ("banana s=1e-300", _finite(lambda: energies.get("banana", s=1e-300)(torch.ones(1, 2)))),
        ("double_well r=1e300", _finite(lambda: energies.get("double_well", r=1e300)(torch.ones(1, 2)))),
        ("Grid(0, 1e-320, 16)", _finite(lambda: grid.Grid(0, 1e-320, 16).log_z(torch.zeros(16, 16)))),
        ("WORLD_SIZE=2 outside torchrun", _world_size),
        (
            "WORLD_SIZE=abc",
            lambda: _cmd(["train", "--out", _fresh("ws") / "run", "--iters", 2], env={"WORLD_SIZE": "abc"})[
                :2
            ],
        ),
        ("SamplerApp step_size=-1", _api(lambda: widgets.SamplerApp(step_size=-1.0))),
        ("SamplerApp step_size=0", _api(lambda: widgets.SamplerApp(step_size=0.0))),
        ("SamplerApp n_steps=10^9", _api(lambda: widgets.SamplerApp(n_steps=10**9))),
        ("SamplerApp n_particles=0", _api(lambda: widgets.SamplerApp(n_particles=0))),
        ("TrainingApp n_iters=10^6", _api(lambda: widgets.TrainingApp(n_iters=10**6))),
        ("TrainingApp n_iters=0", _api(lambda: widgets.TrainingApp(n_iters=0))),
        ("TrackingApp pd_step=nan", _api(lambda: widgets.TrackingApp(pd_step=math.nan))),
        (
            "TrackingApp n_corrections=-1",
            _named(lambda: widgets.TrackingApp(n_corrections=-1), "corrections"),
        ),
        (
            "TrackingApp 200,000 SVGD particles",
            _api(
                lambda: widgets.TrackingApp("translating_gaussian", ["svgd"], n_particles=200_000, n_steps=10)
            ),
        ),
    ],
    "error messages": [
        ("Trainer._check names its quantity", _check_names_quantity),
        ("Trainer._guard keeps the specific suggestion", _guard_keeps_suggestion),
    ],
    "smaller": [
        ("pdviz train density.png has a data column", _density_has_data),
        ("benchmarks/images_cpu.py --part digits", _images_cpu_digits),
    ],
}


def _case(fn) -> tuple[str, str]:
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - a probe that broke counts against pdviz
        return "crash", f"{type(err).__name__}: {err}"[:160]


VERDICTS = ("clear", "crash", "silent", "slow", "hang", "lost", "wrong")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(NEW), help="rerun one class of the newer surfaces")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/probe_inputs.json")
    parser.add_argument("--quick", action="store_true", help="the fast probes of every kind; needs --out")
    args = parser.parse_args()
    if args.quick and (args.out is None or args.only):
        parser.error("--quick does not write over the shipped probe_inputs.json; give --out (and no --only)")
    TMP.mkdir(exist_ok=True)
    (TMP / "text.gz").write_text("not gzip")
    cli_probes = {c: a[:1] for c, a in list(CLI.items())[:1]} if args.quick else CLI
    rows = []
    if args.only is None:
        rows += [(c, name, *probe(f)) for c, probes in API.items() for name, f in probes]
        rows += [(c, "pdviz " + " ".join(a), *cli(a)) for c, probes in cli_probes.items() for a in probes]
    for c, cases in NEW.items():
        if args.only in (None, c) and (not args.quick or c == "error messages"):
            rows += [(c, name, *_case(fn)) for name, fn in cases]
            print(f"{c}: {[r[2] for r in rows if r[0] == c]}", file=sys.stderr, flush=True)
    out = args.out or Path(__file__).with_name("probe_inputs.json")
    if args.only is not None:  # this class's rows replace its rows in the table
        rows = [r for r in json.loads(out.read_text()) if r[0] != args.only] + rows
    out.write_text(json.dumps(rows, indent=1))
    print("| class | input | verdict | message |\n| --- | --- | --- | --- |")
    for c, name, verdict, text in rows:
        print(f"| {c} | {name} | {verdict} | {text.replace('|', '/')} |")
    counts = {v: sum(r[2] == v for r in rows) for v in VERDICTS}
    print(f"\n{len(rows)} probes: {counts}")
    for c in dict.fromkeys(r[0] for r in rows):
        print(
            f"{c}: "
            + ", ".join(
                f"{v} {sum(r[2] == v for r in rows if r[0] == c)}"
                for v in VERDICTS
                if any(r[0] == c and r[2] == v for r in rows)
            )
        )


if __name__ == "__main__":
    main()
