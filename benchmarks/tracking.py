"""Tracking benchmark at full size: Langevin, PD-alpha and the exact flow following moving densities.

Usage (from the repository root)::

    .venv/bin/python benchmarks/tracking.py                              # writes benchmarks/tracking.json
    .venv/bin/python benchmarks/tracking.py --quick --out /tmp/t.json    # reduced sizes (the test runs it)

Every method spends the same gradient evaluations per time step (``--evals``); the score is the binned KL
to the exact moving density minus the floor exact samples of the same size reach, averaged over time.
"""

import argparse
from pathlib import Path

import torch

from pdviz import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/tracking.json")
    parser.add_argument("--evals", type=int, default=5, help="gradient evaluations per time step")
    parser.add_argument(
        "--quick", action="store_true", help="the reduced sizes of `pdviz bench --quick`; needs --out"
    )
    args = parser.parse_args()
    if args.quick and args.out is None:
        parser.error("--quick does not write over the shipped tracking.json; give --out")
    torch.set_num_threads(1)
    result = bench.run_tracking(quick=args.quick, evals_per_step=args.evals)
    bench.write_json(args.out or Path(__file__).with_name("tracking.json"), result)
    for r in result["rows"]:
        print(f"{r['family']:22s} {r['method']:9s} excess KL {r['mean_excess_kl']:.4f} ± {r['sd']:.4f}")


if __name__ == "__main__":
    main()
