"""The toy suite, or a variant of it: every strategy on every 2-D dataset, resumable, one JSON per run.

The suite itself is the sweep file ``pdviz/toy_suite.json`` (``pdviz sweep pdviz/toy_suite.json
[--workers N | --scheduler tcp://HOST:8786]``, which also takes in the paper-budget runs of
``benchmarks/paper_runs/`` once they finish). This script narrows that file with flags (datasets,
strategies, budgets), changes every run's settings (``--set``) under a tagged budget name, and hands the
runs to the same runner (:func:`pdviz.sweep.run`). Usage (from the repository root)::

    .venv/bin/python benchmarks/toy_suite.py --budgets cpu iters         # the reduced budgets, toy_runs/
    .venv/bin/python benchmarks/toy_suite.py --aggregate                 # only rebuild the table
    .venv/bin/python benchmarks/toy_suite.py --quick --runs /tmp/toy     # 2 tiny runs (the test runs it)
    # the fast preset at its own budget (RESULTS §2b: 3,000 iterations or 180 CPU-s; it ran on 2 threads):
    .venv/bin/python benchmarks/toy_suite.py --runs benchmarks/toy_runs_full --datasets 8gaussians \
        --strategies pd-alpha pcd pd-beta --budgets cpu --cpu-budget 180
    # PD's step on the thinnest datasets (RESULTS §2c), beside PCD re-run in the same sitting:
    .venv/bin/python benchmarks/toy_suite.py --runs benchmarks/toy_runs_sensitivity --budgets cpu \
        --datasets rings 2spirals --strategies pd-alpha --set pd_step=0.05 --tag pd_step=0.05
    .venv/bin/python benchmarks/toy_suite.py --runs benchmarks/toy_runs_sensitivity --budgets cpu \
        --datasets rings 2spirals --strategies pcd pd-beta --tag rerun

Finished runs are skipped, so a killed suite resumes. The summary goes to ``<runs>.json`` beside the run
directory and the markdown table to stdout.
"""

import argparse
import ast
import json
from pathlib import Path

import torch

from pdviz import bench, sweep

SUITE = Path(__file__).parents[1] / "pdviz" / "toy_suite.json"


def narrowed(config: dict, args: argparse.Namespace) -> dict:
    """The sweep file's dict with each grid cut to the chosen values (grids left empty dropped), the
    overrides of ``--set`` and, with ``--tag``, every budget renamed ``NAME+TAG``."""
    chosen = {"dataset": args.datasets, "strategy": args.strategies, "budget": args.budgets}
    for key, wanted in chosen.items():
        known = {v for g in config["grids"] for v in g[key]}
        if unknown := sorted(set(wanted or ()) - known):
            raise SystemExit(
                f"toy_suite.py: unknown {key} {', '.join(unknown)}; the file has {', '.join(sorted(known))}"
            )
    grids = [{k: [v for v in vals if not chosen.get(k) or v in chosen[k]] for k, vals in g.items()}
             for g in config["grids"]]  # fmt: skip
    grids = [g for g in grids if all(g.values())]
    tag = f"+{args.tag}" if args.tag else ""
    for g in grids:
        g["budget"] = [b + tag for b in g["budget"]]
    budgets = {b + tag: v for b, v in config["budgets"].items()}
    if args.cpu_budget is not None:
        budgets = {b: {**v, "cpu_budget": args.cpu_budget} for b, v in budgets.items()}
    overrides = {
        k: ast.literal_eval(v) if v[:1].isdigit() or v in ("True", "False") else v
        for k, _, v in (s.partition("=") for s in args.set)
    }
    return {**config, "grids": grids, "budgets": budgets, "overrides": overrides}


def quick(config: dict) -> dict:
    """The narrowed sweep at tiny sizes: seed 0 of each grid, 6 iterations of every budget (no CPU budget),
    a 16-unit net, 100 particles, coarse grids, an evaluation every 3 iterations."""
    grids = [{**g, "seed": g["seed"][:1]} for g in config["grids"]]
    budgets = {b: {**v, "n_iters": 6, "cpu_budget": None} for b, v in config["budgets"].items()}
    sizes = dict(hidden=16, n_particles=100, batch_size=100, n_init_steps=10, grid_size=40, field_grid_size=20,
                 n_eval=500, eval_every=3, snapshot_every=0)  # fmt: skip
    return {**config, "grids": grids, "budgets": budgets, "overrides": {**sizes, **config["overrides"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=None, help="run directory (default: benchmarks/toy_runs)")
    parser.add_argument("--datasets", nargs="*", help="default: every dataset of the file")
    parser.add_argument("--strategies", nargs="*", help="default: every strategy of the file")
    parser.add_argument("--budgets", nargs="*", help="default: every budget of the file (cpu, iters, paper)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig field")
    parser.add_argument("--tag", default="", help="budget names get '+TAG' (a variant beside the original)")
    parser.add_argument("--cpu-budget", type=float, help="every chosen budget stops at SECONDS CPU-s of loop")
    parser.add_argument(
        "--quick", action="store_true", help="seed 0 of pcd and pd-beta on 8gaussians, tiny; needs --runs"
    )
    parser.add_argument("--aggregate", action="store_true", help="do not train; rebuild the table")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes")
    parser.add_argument("--scheduler", help="a Dask scheduler address, e.g. tcp://host:8786")
    args = parser.parse_args()
    if args.quick and args.runs is None:
        parser.error("--quick does not write into the shipped toy_runs/; give --runs")
    if args.quick:
        args.datasets, args.strategies, args.budgets = ["8gaussians"], ["pcd", "pd-beta"], ["cpu"]
    torch.set_num_threads(1)
    runs = Path(args.runs or Path(__file__).with_name("toy_runs"))
    if not args.aggregate:
        config = narrowed(json.loads(SUITE.read_text()), args)
        specs = sweep.expand(quick(config) if args.quick else config, SUITE.parent)
        sweep.run(specs, runs, scheduler=args.scheduler, workers=args.workers)
    summary = bench.aggregate_toy(runs)
    out = bench.write_json(runs.with_suffix(".json"), {**summary, "machine": bench.machine_info()})
    print(bench.toy_markdown(summary), f"\n\nwrote {out}")


if __name__ == "__main__":
    main()
