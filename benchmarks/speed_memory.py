"""Speed and memory: ms and gradient evaluations per iteration and peak RSS, clean vs naive loop.

Usage (from the repository root)::

    .venv/bin/python benchmarks/speed_memory.py             # writes benchmarks/speed_memory.json
    .venv/bin/python benchmarks/speed_memory.py --rss       # also the 1500-iteration peak-RSS run (slow)

Each variant runs in a fresh subprocess (one torch thread unless --threads), so peak RSS is per run.
"""

import argparse
from pathlib import Path

from pdviz import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("speed_memory.json")))
    parser.add_argument("--rss", action="store_true", help="add the 1500-iteration paper-preset RSS run")
    parser.add_argument("--rss-only", action="store_true", help="only the 1500-iteration RSS run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    variants = bench.speed_variants(quick=args.quick, threads=args.threads)
    if args.rss_only:
        variants = []
    result = bench.run_speed(variants=variants, rss_run=args.rss or args.rss_only, threads=args.threads)
    bench.write_json(Path(args.out), result)
    print(bench.speed_markdown(result))
    print(result["acceptance"])
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
