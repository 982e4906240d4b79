"""What a widget user waits for: re-running the tracking app after a setting changes, and drawing a frame.

Usage (from the repository root)::

    taskset -c 1 .venv/bin/python benchmarks/widgets_bench.py              # writes widgets_bench.json
    .venv/bin/python benchmarks/widgets_bench.py --quick --out /tmp/w.json  # tiny apps (the test runs it)

The apps run the library once per setting and then replay recorded frames (Play): ``reset`` is the wait
after moving a slider, ``redraw`` the time of one frame of the replay (figure drawn and encoded as PNG).
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from pdviz import bench
from pdviz.widgets import TrackingApp


def timed(fn, repeats: int) -> dict:
    """Median and maximum wall and CPU milliseconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(1e3 * (time.perf_counter() - t))
        cpu.append(1e3 * (time.process_time() - c))
    return {
        "median_ms": statistics.median(wall),
        "max_ms": max(wall),
        "cpu_median_ms": statistics.median(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/widgets_bench.json")
    parser.add_argument("--quick", action="store_true", help="100 particles, 5 steps, 2 redraws; needs --out")
    args = parser.parse_args()
    if args.quick and args.out is None:
        parser.error("--quick does not write over the shipped widgets_bench.json; give --out")
    out = args.out or Path(__file__).with_name("widgets_bench.json")
    torch.set_num_threads(1)
    particles, steps, resets, redraws = (100, 5, 1, 2) if args.quick else (1000, 50, 5, 10)
    rows = []
    for target in ("scaling_gaussian", "mode_weights"):
        app = TrackingApp(target, n_particles=particles, n_steps=steps)
        rows.append(
            {
                "target": target,
                "n_particles": app.settings["n_particles"],
                "reset": timed(app.reset, resets),
                "redraw": timed(app.redraw, redraws),
            }
        )
        print(target, rows[-1]["reset"], rows[-1]["redraw"], flush=True)
    bench.write_json(out, {"machine": bench.machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
