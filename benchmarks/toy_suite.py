"""The toy suite: every strategy on every 2-D dataset, resumable, one JSON per run.

Usage (from the repository root)::

    .venv/bin/python benchmarks/toy_suite.py                       # reduced budget, benchmarks/toy_runs/
    .venv/bin/python benchmarks/toy_suite.py --max-minutes 20      # stop starting runs after 20 minutes
    .venv/bin/python benchmarks/toy_suite.py --full --runs benchmarks/toy_runs_full   # the paper's budget
    .venv/bin/python benchmarks/toy_suite.py --aggregate            # only rebuild the table
    .venv/bin/python benchmarks/toy_suite.py --runs benchmarks/toy_runs_sensitivity --budgets cpu \
        --datasets rings --strategies pd-alpha --set pd_step=0.05    # a sensitivity run: its own budget name

Finished runs are skipped, so the command can be repeated until nothing is missing. The summary goes to
``<runs>.json`` beside the run directory and the markdown table to stdout.
"""

import argparse
import ast
from pathlib import Path

import torch

from pdviz import bench, training


def _value(text: str):
    """A number, bool or None from the command line; anything else stays a string (e.g. ``mala``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    here = Path(__file__).parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(here / "toy_runs"), help="directory of per-run JSONs")
    parser.add_argument(
        "--full", action="store_true", help="the paper's budget (10 000 iterations; 180 CPU-s)"
    )
    parser.add_argument("--max-minutes", type=float, default=None, help="stop starting new runs after this")
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--strategies", nargs="*", default=None)
    parser.add_argument("--budgets", nargs="*", default=None, help="iters and/or cpu (default both)")
    parser.add_argument("--aggregate", action="store_true", help="do not train; rebuild the table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrainConfig field in every run; the budget name gets '+KEY=VALUE' (repeatable)",
    )
    parser.add_argument(
        "--tag", default=None, help="append '+TAG' to the budget names (a re-run beside the original)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budgets = bench.toy_budgets(reduced=not args.full)
    if args.budgets:
        budgets = [b for b in budgets if b["name"] in args.budgets]
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in training.TrainConfig.__dataclass_fields__:
            parser.error(f"--set wants KEY=VALUE with KEY a TrainConfig field, got {item!r}")
        for b in budgets:
            b["overrides"][key] = _value(text)
            b["name"] += f"+{key}={text}"
    if args.tag:
        for b in budgets:
            b["name"] += f"+{args.tag}"
    kw = {"budgets": budgets, "datasets": args.datasets}
    if args.strategies:
        kw.update(strategies=args.strategies, extra_strategies=())
    specs = bench.toy_specs(**kw)
    if args.aggregate:
        summary = bench.aggregate_toy(Path(args.runs), specs)
    else:
        max_s = None if args.max_minutes is None else 60 * args.max_minutes
        summary = bench.run_toy_suite(Path(args.runs), specs, max_seconds=max_s)
    summary["machine"] = bench.machine_info()
    out = Path(args.runs).with_suffix(".json")
    bench.write_json(out, summary)
    print(bench.toy_markdown(summary))
    print()
    print(bench.toy_quality_markdown(summary))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
