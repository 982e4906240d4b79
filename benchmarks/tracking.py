"""Tracking benchmark at full size: PD, Langevin and the exact flow following moving densities.

Usage (from the repository root)::

    .venv/bin/python benchmarks/tracking.py                 # writes benchmarks/tracking.json
    .venv/bin/python benchmarks/tracking.py --threads 2 --families interpolation

Every method spends the same gradient evaluations per time step; Langevin's and PD's correction step
sizes are each the best of one grid, tuned on a seed not used for the reported numbers.
"""

import argparse
from pathlib import Path

import torch

from pdviz import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("tracking.json")))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", nargs="*", default=None, help="subset of MOVING_ENERGIES")
    parser.add_argument("--quick", action="store_true", help="the reduced sizes of `pdviz bench --quick`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {"families": args.families} if args.families else None
    result = bench.run_tracking(settings, quick=args.quick, progress=True)
    bench.write_json(Path(args.out), result)
    print(bench.tracking_markdown(result))
    print(f"\nwrote {args.out} ({result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU)")


if __name__ == "__main__":
    main()
