"""The baseline: one strategy in the naive loop (written the way the authors' scripts work) and in pdviz.

The naive loop itself is ``pdviz.bench.NaiveLoop`` (so ``pdviz bench`` can run it too): a ``deepcopy`` of
the model every step, PD-beta by double backward through ``parameters_to_vector``, a
``torch.distributions.Normal`` rebuilt per energy call, ``.data`` updates and the global RNG. This script
times it beside the pdviz Trainer for one strategy, each in a fresh subprocess, and prints both.

Usage::

    .venv/bin/python benchmarks/naive_scripts_loop.py --strategy pd-beta --iters 30
"""

import argparse
import json

from pdviz import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="pd-beta", choices=bench.NAIVE_STRATEGIES)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--logging", default="none", choices=("none", "published"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for loop in ("naive", "clean"):
        variant = {
            "strategy": args.strategy,
            "loop": loop,
            "logging": args.logging,
            "n_iters": args.iters,
            "preset": args.preset,
            "overrides": {},
            "threads": args.threads,
        }
        print(json.dumps(bench.run_speed_variant(variant)))


if __name__ == "__main__":
    main()
