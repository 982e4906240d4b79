"""Clean vs naive loop, per strategy, paired in one process: is any pdviz strategy slower than the scripts?

Usage (from the repository root, on an otherwise idle core)::

    taskset -c 1 .venv/bin/python benchmarks/speed_parity.py              # writes benchmarks/speed_parity.json
    taskset -c 1 .venv/bin/python benchmarks/speed_parity.py --pairs 200

Each strategy runs :func:`pdviz.bench.speed_pair_worker` in a fresh subprocess (paper preset, one torch
thread, no logging): the pdviz loop and the naive loop start from the same weights and take turns, the
order flipping every pair, and the per-pair ratio of CPU times is summarised by its median with a
bootstrap 95 % interval. Separate processes per loop (``speed_memory.py``) scatter by a few per cent from
run to run on a shared machine, as much as the loops differ; pairing removes most of that.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from pdviz import bench

CODE = (
    "import json, sys; from pdviz.bench import speed_pair_worker; "
    "print(json.dumps(speed_pair_worker(sys.argv[1], int(sys.argv[2]))))"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("speed_parity.json")))
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--strategies", nargs="*", default=list(bench.NAIVE_STRATEGIES))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for strategy in args.strategies:
        proc = subprocess.run(
            [sys.executable, "-c", CODE, strategy, str(args.pairs)], capture_output=True, text=True, env=env
        )
        if proc.returncode != 0:
            raise SystemExit(f"{strategy} failed:\n{proc.stderr}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        low, high = row["clean_over_naive_ci95"]
        print(
            f"{strategy:10s} clean {row['clean_ms_cpu_median']:6.1f} ms  naive {row['naive_ms_cpu_median']:6.1f} ms"
            f"  clean/naive {row['clean_over_naive_median']:.3f} [{low:.3f}, {high:.3f}]"
            f"  evals/iter {row['grad_evals_per_iter']['clean']:.0f}; {row['grad_evals_per_iter']['naive']:.0f}",
            flush=True,
        )
    out = {
        "command": f"taskset -c 1 .venv/bin/python benchmarks/speed_parity.py --pairs {args.pairs}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "machine": bench.machine_info(),
        "rows": rows,
    }
    bench.write_json(Path(args.out), out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
