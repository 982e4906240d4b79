"""PD-alpha's step h on the two thinnest datasets, beside PCD and PD-beta run at the same sitting.

Usage (from the repository root)::

    taskset -c 0 .venv/bin/python benchmarks/toy_sensitivity.py            # resumable, like toy_suite.py
    .venv/bin/python benchmarks/toy_sensitivity.py --aggregate              # only rebuild the table

The toy suite's `cpu` budget (fast preset, 15 CPU-seconds, 3 seeds) on rings and 2spirals, where the
shipped PD step h = 0.2 lost to PCD: PD-alpha with h in {0.05, 0.1, 0.2}, and PCD and PD-beta (shipped
preset) again, so that every row here ran under the same machine conditions. Runs go to
``benchmarks/toy_runs_sensitivity/`` (one JSON each; budget names ``cpu+pd_step=H`` and ``cpu+rerun``),
the summary to ``benchmarks/toy_runs_sensitivity.json``.
"""

import argparse
from pathlib import Path

import torch

from pdviz import bench

DATASETS = ("rings", "2spirals")
STEPS = (0.05, 0.1, 0.2)


def specs() -> list[dict]:
    (cpu,) = [b for b in bench.toy_budgets() if b["name"] == "cpu"]
    out = []
    for h in STEPS:
        budget = {**cpu, "name": f"cpu+pd_step={h}", "overrides": {**cpu["overrides"], "pd_step": h}}
        out += bench.toy_specs(
            datasets=DATASETS, strategies=("pd-alpha",), extra_strategies=(), budgets=[budget]
        )
    rerun = {**cpu, "name": "cpu+rerun"}
    out += bench.toy_specs(
        datasets=DATASETS, strategies=("pcd", "pd-beta"), extra_strategies=(), budgets=[rerun]
    )
    return out


def main() -> None:
    here = Path(__file__).parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(here / "toy_runs_sensitivity"))
    parser.add_argument("--aggregate", action="store_true", help="do not train; rebuild the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.aggregate:
        summary = bench.aggregate_toy(Path(args.runs), specs())
    else:
        summary = bench.run_toy_suite(Path(args.runs), specs())
    summary["machine"] = bench.machine_info()
    out = Path(args.runs).with_suffix(".json")
    bench.write_json(out, summary)
    print(bench.toy_markdown(summary))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
