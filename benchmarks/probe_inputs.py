"""Hostile inputs, class by class: does each end in one clear error (or a correct result)?

    .venv/bin/python benchmarks/probe_inputs.py            # writes benchmarks/probe_inputs.json, prints a table

Every probe expects an error. It counts as *clear* when pdviz raises its own error (or the command exits 2
with one line on stderr) within 20 s; a *crash* is any other exception, a traceback or a signal; *silent*
is a result where an error was due; *slow* is an answer after 20 s. The signal, full-disk and resume
classes need a running command and live in tests/test_cli.py.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from pdviz import ais, datasets, energies, flows, grid, images, metrics, models, samplers, training
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


def main() -> None:
    TMP.mkdir(exist_ok=True)
    (TMP / "text.gz").write_text("not gzip")
    rows = [(c, name, *probe(f)) for c, probes in API.items() for name, f in probes]
    rows += [(c, "pdviz " + " ".join(a), *cli(a)) for c, probes in CLI.items() for a in probes]
    Path(__file__).with_name("probe_inputs.json").write_text(json.dumps(rows, indent=1))
    print("| class | input | verdict | message |\n| --- | --- | --- | --- |")
    for c, name, verdict, text in rows:
        print(f"| {c} | {name} | {verdict} | {text.replace('|', '/')} |")
    counts = {v: sum(r[2] == v for r in rows) for v in ("clear", "crash", "silent", "slow")}
    print(f"\n{len(rows)} probes: {counts}")


if __name__ == "__main__":
    main()
