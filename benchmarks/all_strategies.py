"""Every way to train an EBM in pdviz, scored against exact densities: the table no other library has.

Every strategy of ``training.STRATEGIES`` (the paper's PD variants, the Langevin strategies they replace and
the five methods beyond the paper) on the 8 toy datasets, 3 seeds each, at the fast budget (preset ``fast``,
15 CPU-seconds of training each), through ``pdviz sweep`` (the sweep file ``benchmarks/all_strategies.json``).
Then one row per run goes to ``benchmarks/all_strategies_results.json``: the held-out log-likelihood
against the dataset's entropy bound at 5 and 15 CPU-seconds, the gradient evaluations spent, and the lag and
gradient error of the negatives where a method has negatives. ``--landscape`` also trains seed 0 of every
strategy on two datasets and keeps the learned densities (``benchmarks/all_strategies_landscape.npz``) for
notebook 07's picture. Usage (from the repository root)::

    .venv/bin/python benchmarks/all_strategies.py --workers 2            # the sweep (resumes), then the table
    .venv/bin/python benchmarks/all_strategies.py --aggregate --md       # only rebuild the table
    .venv/bin/python benchmarks/all_strategies.py --landscape            # the densities of the picture
    .venv/bin/python benchmarks/all_strategies.py --quick --out /tmp/q.json   # every strategy, tiny, in seconds

The per-run files (``benchmarks/toy_runs_all/``, 312 of them) are not shipped; the results file holds what the
table, the README and notebook 07 read.
"""

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pdviz import datasets, sweep, training
from pdviz.grid import Grid

HERE = Path(__file__).parent
SWEEP_FILE = HERE / "all_strategies.json"
RUNS = HERE / "toy_runs_all"
RESULTS = HERE / "all_strategies_results.json"
LANDSCAPE = HERE / "all_strategies_landscape.npz"
LANDSCAPE_DATASETS = ("8gaussians", "checkerboard")
EARLY_CPU = 5.0  # the second point of the quality-per-CPU-second curve, besides the budget
GRAD_BUDGET = 3000  # the quality-per-gradient-evaluation point: most strategies spend it within 15 CPU-s
QUICK = dict(n_particles=64, batch_size=64, hidden=16, eval_every=2, n_eval=500, grid_size=50, field_grid_size=24,
             gamma_hidden=16, n_init_steps=5, n_steps=3, buffer_size=256)  # fmt: skip


def ll_at(evals: list[dict], cpu: float) -> float | None:
    """The held-out log-likelihood of the last evaluation at or before ``cpu`` seconds of training."""
    before = [e["log_likelihood"] for e in evals if e.get("cpu_time", math.inf) <= cpu + 1e-9]
    return before[-1] if before else None


def ll_at_grads(evals: list[dict], per_iter: float, budget: float) -> float | None:
    """The held-out log-likelihood once ``budget`` gradient evaluations are spent (the first evaluation at or
    after it), None if the run never spent them or spends none (a method without x-gradients)."""
    after = [e["log_likelihood"] for e in evals if per_iter > 0 and e["step"] * per_iter >= budget]
    return after[0] if after else None


def row(result: dict) -> dict:
    """One run's line of the results file (the run's JSON as ``pdviz sweep`` writes it)."""
    spec, evals = result["spec"], result.get("evals", [])
    out = {k: spec[k] for k in ("dataset", "strategy", "seed")}
    out.update(status=result["status"], cpu_s=result["cpu_s"], iterations=result.get("iterations"))
    if result["status"] != "done":
        return {**out, "error": result.get("error")}
    per_iter = result["grad_evals_per_iter"]
    outside = [e.get("outside_mass") for e in evals[-max(1, len(evals) // 10) :]]
    return {**out, "ll": result["log_likelihood_final"], "ll_early": ll_at(evals, EARLY_CPU),
            "ll_grads": ll_at_grads(evals, per_iter, GRAD_BUDGET), "bound": result["entropy_bound"],
            "grad_evals_per_iter": per_iter,
            "grad_evals": per_iter * (result["iterations"] or 0), "outside_mass": sweep.finite_mean(outside),
            "lag": result.get("lag_mean"), "grad_error": result.get("grad_error_mean"),
            "grad_error_floor": result.get("grad_error_floor_mean"), "mmd2": result.get("mmd2_final")}  # fmt: skip


def by_strategy(rows: list[dict]) -> list[dict]:
    """Per strategy over all datasets and seeds: the mean gap to the entropy bound at 15 and 5 CPU-seconds,
    its mean rank among the strategies on each dataset (by the seed-mean log-likelihood), datasets won,
    diverged runs, gradient evaluations, lag and gradient error (means over the runs that have them)."""
    names = sorted({r["strategy"] for r in rows}, key=list(training.STRATEGIES).index)
    per = {(r["dataset"], r["strategy"]): [] for r in rows}
    for r in rows:
        per[(r["dataset"], r["strategy"])].append(r)
    data = sorted({r["dataset"] for r in rows})

    def mean(key, rs):
        return sweep.finite_mean([r.get(key) for r in rs])

    ranks: dict[str, list[int]] = {s: [] for s in names}
    for d in data:
        order = sorted(names, key=lambda s: -_nan_low(mean("ll", per.get((d, s), []))))
        for i, s in enumerate(order):
            ranks[s].append(i + 1)
    table = []
    for s in names:
        rs = [r for r in rows if r["strategy"] == s]
        done = [r for r in rs if r["status"] == "done"]
        gaps = [r["bound"] - r["ll"] for r in done]
        early = [r["bound"] - r["ll_early"] for r in done if r["ll_early"] is not None]
        by_grads = [r["bound"] - r["ll_grads"] for r in done if r["ll_grads"] is not None]
        table.append({"strategy": s, "runs": len(rs), "diverged": len(rs) - len(done),
                      "gap": sweep.finite_mean(gaps), "gap_early": sweep.finite_mean(early),
                      "gap_grads": sweep.finite_mean(by_grads) if len(by_grads) == len(done) else None,
                      "reached_grads": len(by_grads),
                      "mean_rank": statistics.fmean(ranks[s]), "wins": ranks[s].count(1),
                      "iterations": mean("iterations", done), "grad_evals_per_iter": mean("grad_evals_per_iter", done),
                      "grad_evals": mean("grad_evals", done), "lag": mean("lag", done),
                      "grad_error": mean("grad_error", done), "grad_error_floor": mean("grad_error_floor", done),
                      "outside_mass": mean("outside_mass", done)})  # fmt: skip
    return table


def _nan_low(v: float) -> float:
    return -math.inf if v is None or not math.isfinite(v) else v


def markdown(results: dict) -> str:
    """The summary table (one row per strategy) and the per-dataset table (mean ± sd over seeds)."""

    def f(v, digits=3):
        return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"

    lines = ["| strategy | gap to bound at 15 CPU-s (nats) | at 5 CPU-s | at 3,000 grad evals | mean rank | "
             "datasets won | diverged | iterations | grad evals / iter | lag | grad error (floor) | mass outside box |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in results["by_strategy"]:
        grads = f(r["gap_grads"]) if r["gap_grads"] is not None else f"({r['reached_grads']} runs reach it)"
        lines.append(f"| {r['strategy']} | {f(r['gap'])} | {f(r['gap_early'])} | {grads} | {f(r['mean_rank'], 1)} | "
                     f"{r['wins']} | {r['diverged']}/{r['runs']} | {f(r['iterations'], 0)} | "
                     f"{f(r['grad_evals_per_iter'], 1)} | {f(r['lag'])} | {f(r['grad_error'], 2)} "
                     f"({f(r['grad_error_floor'], 2)}) | {f(r['outside_mass'])} |")  # fmt: skip
    data = sorted({r["dataset"] for r in results["runs"]})
    names = [r["strategy"] for r in results["by_strategy"]]
    lines += ["", "| strategy | " + " | ".join(data) + " |", "| --- |" + " ---: |" * len(data)]
    for s in names:
        cells = []
        for d in data:
            ll = [r["ll"] for r in results["runs"] if (r["dataset"], r["strategy"]) == (d, s) and "ll" in r]
            sd = statistics.stdev(ll) if len(ll) > 1 else math.nan
            cells.append(f"{f(statistics.fmean(ll) if ll else math.nan)} ± {f(sd, 2)}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    bounds = {d: -datasets.ENTROPY[d] for d in data if d in datasets.ENTROPY}
    lines.append("| *entropy bound* | " + " | ".join(f(bounds.get(d, math.nan)) for d in data) + " |")
    return "\n".join(lines)


def aggregate(runs: Path, command: str) -> dict:
    """The results file's content from the run JSONs in ``runs``."""
    results = [json.loads(p.read_text()) for p in sorted(runs.glob("*__*.json"))]
    if not results:
        raise SystemExit(f"all_strategies.py: no run results in {runs}")
    rows = [row(r) for r in results]
    load = [r["machine"]["loadavg_1_5_15"][0] for r in results]
    dates = sorted(r["machine"]["date_utc"] for r in results)
    machine = {**results[0]["machine"], "loadavg_1min_range": [min(load), max(load)], "dates_utc": [dates[0], dates[-1]],
               "command": command, "runs_command": results[0]["machine"].get("command")}  # fmt: skip
    machine.pop("loadavg_1_5_15", None)
    machine.pop("date_utc", None)
    return {"benchmark": "all_strategies", "budget_cpu_s": 15.0, "early_cpu_s": EARLY_CPU,
            "grad_budget": GRAD_BUDGET, "machine": machine,
            "by_strategy": by_strategy(rows), "runs": rows}  # fmt: skip


def quick_sweep(directory: Path) -> Path:
    """A sweep file of every strategy on one dataset, one seed, tiny sizes, 4 iterations each."""
    config = json.loads(SWEEP_FILE.read_text())
    config["budgets"] = {"cpu": {"preset": "fast", "n_iters": 4}}
    config["overrides"] = QUICK
    config["grids"] = [{**config["grids"][0], "dataset": ["8gaussians"], "seed": [0]}]
    config["runs"] = "runs"
    path = directory / "quick_sweep.json"
    path.write_text(json.dumps(config))
    return path


def landscape(out: Path, quick: bool) -> None:
    """Seed 0 of every strategy on LANDSCAPE_DATASETS at the fast budget: the learned log-densities (per unit
    area, indexed [iy, ix]) on an 80 × 80 grid over [-5, 5]², float16, into one ``.npz`` (arrays only)."""
    torch.set_num_threads(1)
    grid, arrays = Grid(-5.0, 5.0, 80), {}
    budget = 0.2 if quick else 15.0
    for d in LANDSCAPE_DATASETS[:1] if quick else LANDSCAPE_DATASETS:
        for s in training.STRATEGIES:
            sizes = {**(QUICK if quick else {}), "snapshot_every": 0, "eval_every": 0}
            cfg = training.make_config("fast", dataset=d, strategy=s, seed=0, **sizes)
            trainer = training.Trainer(cfg)
            trainer.run(progress=False, callback=lambda t, _: t.history.curves["cpu_time"][-1] < budget)
            energy = grid.energy(lambda x, tr=trainer: tr.energy_fn(x)).double()
            arrays[f"{d}/{s}"] = (
                (-energy - grid.log_z(energy)).to(torch.float16).numpy()
            )  # log p per unit area
            print(f"{d} {s}: {trainer.iteration} iterations", file=sys.stderr)
    np.savez_compressed(out, low=np.float32(-5.0), high=np.float32(5.0), **arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(RUNS), help="the per-run JSONs (the sweep writes them)")
    parser.add_argument("--out", help=f"the results file (default {RESULTS.relative_to(HERE.parent)})")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--aggregate", action="store_true", help="no training: rebuild the results file")
    parser.add_argument("--md", action="store_true", help="print the markdown tables")
    parser.add_argument(
        "--landscape", action="store_true", help="train the densities of notebook 07's picture"
    )
    parser.add_argument("--quick", action="store_true", help="every strategy at tiny sizes (needs --out)")
    args = parser.parse_args()
    if args.quick and not args.out:
        parser.error("--quick writes only where --out says")
    command = " ".join(["benchmarks/all_strategies.py", *sys.argv[1:]])
    if args.landscape:
        landscape(Path(args.out) if args.out else LANDSCAPE, args.quick)
        return
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file, runs = (
            (quick_sweep(Path(tmp)), Path(tmp) / "runs") if args.quick else (SWEEP_FILE, Path(args.runs))
        )
        if not args.aggregate:
            specs, default_runs = sweep.load(sweep_file)
            t0 = time.perf_counter()
            sweep.run(
                specs, runs if args.quick else Path(args.runs), workers=args.workers, progress=not args.quick
            )
            print(f"sweep: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        results = aggregate(runs, command)
    rounded = json.loads(json.dumps(results), parse_float=lambda v: round(float(v), 5))
    Path(args.out or RESULTS).write_text(json.dumps(rounded, separators=(",", ":")) + "\n")
    if args.md:
        print(markdown(results))


if __name__ == "__main__":
    main()
