"""The toy suite, or a variant of it: every strategy on every 2-D dataset, resumable, one JSON per run.

The suite itself is the sweep file ``pdviz/toy_suite.json`` (``pdviz sweep pdviz/toy_suite.json
[--workers N | --scheduler tcp://HOST:8786]``, which also takes in the paper-budget runs of
``benchmarks/paper_runs/`` once they finish). This script narrows that file with flags (datasets,
strategies, budgets), changes every run's settings (``--set``) under a tagged budget name, and hands the
runs to the same runner (:func:`pdviz.sweep.run`). Usage (from the repository root)::

    .venv/bin/python benchmarks/toy_suite.py --budgets cpu iters         # the reduced budgets, toy_runs/
    .venv/bin/python benchmarks/toy_suite.py --aggregate                 # only rebuild the table
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
    overrides = {
        k: ast.literal_eval(v) if v[:1].isdigit() or v in ("True", "False") else v
        for k, _, v in (s.partition("=") for s in args.set)
    }
    return {**config, "grids": grids, "budgets": budgets, "overrides": overrides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(Path(__file__).with_name("toy_runs")))
    parser.add_argument("--datasets", nargs="*", help="default: every dataset of the file")
    parser.add_argument("--strategies", nargs="*", help="default: every strategy of the file")
    parser.add_argument("--budgets", nargs="*", help="default: every budget of the file (cpu, iters, paper)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig field")
    parser.add_argument("--tag", default="", help="budget names get '+TAG' (a variant beside the original)")
    parser.add_argument("--aggregate", action="store_true", help="do not train; rebuild the table")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes")
    parser.add_argument("--scheduler", help="a Dask scheduler address, e.g. tcp://host:8786")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = Path(args.runs)
    if not args.aggregate:
        specs = sweep.expand(narrowed(json.loads(SUITE.read_text()), args), SUITE.parent)
        sweep.run(specs, runs, scheduler=args.scheduler, workers=args.workers)
    summary = bench.aggregate_toy(runs)
    out = bench.write_json(runs.with_suffix(".json"), {**summary, "machine": bench.machine_info()})
    print(bench.toy_markdown(summary), f"\n\nwrote {out}")


if __name__ == "__main__":
    main()
