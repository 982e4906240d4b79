"""The toy suite: every strategy on every 2-D dataset, resumable, one JSON per run.

The suite itself is the sweep file ``benchmarks/toy_suite.json`` (``pdviz sweep benchmarks/toy_suite.json
[--workers N | --scheduler tcp://HOST:8786]``, which also takes in the paper-budget runs of
``benchmarks/paper_runs/`` once they finish). This script builds variants of it from flags and hands them
to the same runner (:func:`pdviz.sweep.run`). Usage (from the repository root)::

    .venv/bin/python benchmarks/toy_suite.py                        # reduced budget, benchmarks/toy_runs/
    .venv/bin/python benchmarks/toy_suite.py --aggregate             # only rebuild the table
    # PD's step on the thinnest datasets (RESULTS §2c), beside PCD re-run in the same sitting:
    .venv/bin/python benchmarks/toy_suite.py --runs benchmarks/toy_runs_sensitivity --budgets cpu \
        --datasets rings 2spirals --strategies pd-alpha --set pd_step=0.05 --tag pd_step=0.05
    .venv/bin/python benchmarks/toy_suite.py --runs benchmarks/toy_runs_sensitivity --budgets cpu \
        --datasets rings 2spirals --strategies pcd pd-beta --tag rerun

Finished runs are skipped, so a killed suite resumes. The summary goes to ``<runs>.json`` beside the run
directory and the markdown table to stdout. Budgets: ``iters`` (paper preset, 150 iterations) and ``cpu``
(fast preset, 15 CPU seconds of loop time).
"""

import argparse
import ast
from pathlib import Path

import torch

from pdviz import bench, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(Path(__file__).with_name("toy_runs")))
    parser.add_argument("--datasets", nargs="*")
    parser.add_argument("--strategies", nargs="*", default=list(bench.STRATEGIES))
    parser.add_argument("--budgets", nargs="*", default=list(bench.BUDGETS), choices=list(bench.BUDGETS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig field")
    parser.add_argument("--tag", default="", help="budget names get '+TAG' (a variant beside the original)")
    parser.add_argument("--aggregate", action="store_true", help="do not train; rebuild the table")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes")
    parser.add_argument("--scheduler", help="a Dask scheduler address, e.g. tcp://host:8786")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {
        k: ast.literal_eval(v) if v[:1].isdigit() or v in ("True", "False") else v
        for k, _, v in (s.partition("=") for s in args.set)
    }
    specs = bench.toy_specs(
        names=args.datasets,
        strategies=tuple(args.strategies),
        budgets=args.budgets,
        overrides=overrides,
        tag=args.tag,
    )
    runs = Path(args.runs)
    if not args.aggregate:
        sweep.run(specs, runs, scheduler=args.scheduler, workers=args.workers)
    summary = bench.aggregate_toy(runs)
    out = bench.write_json(runs.with_suffix(".json"), {**summary, "machine": bench.machine_info()})
    print(bench.toy_markdown(summary), f"\n\nwrote {out}")


if __name__ == "__main__":
    main()
