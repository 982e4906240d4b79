"""How long one explorer step takes, drawing included, on one CPU thread.

Budget: one ``ExplorerApp`` step with 1000 particles, drawing included, <= 0.15 s. A step is what the Step
button and every Play tick do: advance each method once (``flows.flow_step`` or ``Trainer.step``), then
redraw the live panels (blitted Agg frame + PNG) and the numbers. Measured without a browser (the PNG's trip
to the browser is not included).

Usage::

    python benchmarks/widgets_bench.py [--quick] [--out benchmarks/widgets_bench.json]

Writes the JSON and prints a Markdown table. ``--quick`` runs fewer steps (a smoke test, noisier).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pdviz.bench import machine_info
from pdviz.widgets import ExplorerApp, LivePanels

BUDGET_S = 0.15


def _summary(seconds: list[float]) -> dict[str, float]:
    s = sorted(seconds)
    return {
        "n": len(s),
        "median_ms": 1000 * statistics.median(s),
        "p90_ms": 1000 * s[min(len(s) - 1, int(0.9 * len(s)))],
        "max_ms": 1000 * s[-1],
    }


def time_explorer(mode: str, methods: tuple[str, ...], n_steps: int, warmup: int, **kwargs) -> dict:
    """Time ``n_steps`` explorer steps; also the redraw alone and the methods' own time per step."""
    app = ExplorerApp(mode=mode, methods=methods, n_particles=1000, **kwargs)
    for _ in range(warmup):  # first steps pay one-off costs (autotuning of PD-beta's JVP, caches)
        app.step()
    steps, cpu, draws = [], [], []
    for _ in range(n_steps):
        if app.finished:
            app.reset()
        start, start_cpu = time.perf_counter(), time.process_time()
        app.step()
        steps.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        start = time.perf_counter()
        app.redraw()
        draws.append(time.perf_counter() - start)
    step = _summary(steps)
    step_cpu = _summary(cpu)
    return {
        "mode": mode,
        "methods": list(methods),
        "target": app.settings().target,
        "n_particles": 1000,
        "step": step,
        # CPU time of this process (one torch thread): what the step costs a core of its own, even when
        # other jobs share the machine and stretch the wall-clock time
        "step_cpu": step_cpu,
        "redraw": _summary(draws),
        "within_budget_wall": step["median_ms"] <= 1000 * BUDGET_S,
        "within_budget_cpu": step_cpu["median_ms"] <= 1000 * BUDGET_S,
        "png_bytes": len(app.image.value),
        "image_px": list(app.panels.canvas.get_width_height()),
    }


def time_panels(n_frames: int) -> dict:
    """CPU time of one frame of three panels: blitted (the apps' path) against a full Agg redraw."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = {}
    for label, full in (("blitted", False), ("full_redraw", True)):
        panels = LivePanels(["langevin", "pd"], curve="KL to target", curve_xmax=n_frames)
        panels.png()
        seconds = []
        for i in range(n_frames):
            for j in range(2):
                panels.set_panel(
                    j, density=rng.random((64, 64)), points=rng.normal(size=(1000, 2)), title=f"KL {i}"
                )
                panels.set_curve(j, list(range(i + 1)), list(0.5 + 0.01 * rng.random(i + 1)))
            if full:
                panels._background = None
            start = time.process_time()
            panels.png()
            seconds.append(time.process_time() - start)
        out[label] = _summary(seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (smoke test)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("widgets_bench.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = 10 if args.quick else 50
    info = machine_info()
    results = {
        "machine": info,
        "budget_s": BUDGET_S,
        "cases": [
            time_explorer("tracking", ("langevin", "pd"), n, warmup=2),
            time_explorer("tracking", ("langevin", "pd", "exact"), n, warmup=2),
            time_explorer("training", ("pcd", "pd-beta"), n, warmup=3),
        ],
        "panels": time_panels(n),
        "load_after": machine_info()["loadavg_1_5_15"],
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"machine: {info['cpu_model']}, {info['logical_cores']} cores, torch threads {info['torch_threads']}, "
        f"load {info['loadavg_1_5_15']} -> {results['load_after']}"
    )
    print(
        "| mode (target) | methods | step wall median (p90) ms | step CPU median ms | redraw wall ms | CPU ≤ 150 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for c in results["cases"]:
        print(
            f"| {c['mode']} ({c['target']}) | {', '.join(c['methods'])} | {c['step']['median_ms']:.0f} "
            f"({c['step']['p90_ms']:.0f}) | {c['step_cpu']['median_ms']:.0f} | {c['redraw']['median_ms']:.0f} | "
            f"{'yes' if c['within_budget_cpu'] else 'no'} |"
        )
    p = results["panels"]
    print(
        f"\npanels frame (CPU): blitted {p['blitted']['median_ms']:.1f} ms, full redraw {p['full_redraw']['median_ms']:.1f} ms"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
