"""The lag of the negatives behind the model, and the error of the gradient they give, per strategy.

Usage (from the repository root)::

    .venv/bin/python benchmarks/lag.py                 # fast and paper presets, 3 seeds, 1,000 iterations
    .venv/bin/python benchmarks/lag.py --quick         # a few iterations of two strategies (the test runs it)

Every run records, at each evaluation, the Trainer's lag meter (``metrics.lag``: binned KL of the negatives to
the model they train, minus the floor of as many exact samples; ``metrics.gradient_error``: the relative error
of their parameter gradient against the exact one on the grid, and the same for exact samples). Writes
``benchmarks/lag.json`` and prints the Markdown table of ``benchmarks/RESULTS.md``.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from pdviz import metrics, training
from pdviz.grid import Grid

STRATEGIES = ("pcd", "replay", "short-run", "pd-alpha", "pd-beta", "pd-gamma")
SUMMARY = ("lag", "grad_error", "grad_error_floor", "grad_cosine", "model_mode_weight_spread")
KEYS = ("lag", "grad_error", "grad_error_floor", "grad_cosine", "model_mode_weight_spread", "log_likelihood")


def run_one(preset: str, strategy: str, seed: int, n_iters: int, eval_every: int, **sizes) -> dict:
    """One run's lag-meter series and what the meter cost against the iterations it measured."""
    cfg = training.make_config(preset, strategy=strategy, seed=seed, n_iters=n_iters, eval_every=eval_every,
                               snapshot_every=0, **sizes)  # fmt: skip
    trainer = training.Trainer(cfg)
    trainer.run(progress=False)
    h = trainer.history
    series = {k: h.series(k)[1] for k in KEYS}
    n_evals = len(series["lag"])
    iteration_cpu = (h.curves["cpu_time"][-1] - h.meta["init_cpu_time"]) / trainer.iteration
    lag_cpu = h.meta["lag_cpu_time"] / max(1, n_evals)
    return dict(preset=preset, strategy=strategy, seed=seed, steps=h.series("lag")[0], **series,
                iteration_cpu_s=iteration_cpu, lag_cpu_s=lag_cpu,
                lag_cost_per_iteration=lag_cpu / eval_every / iteration_cpu)  # fmt: skip


def ema_contrast(seed: int, n_iters: int = 1000, every: int = 50) -> dict:
    """PCD at the fast preset: the lag of its negatives against the trained model and against the EMA copy
    that evaluations use (a moving average of θ, which trails θ as the chains do), every ``every`` iterations."""
    grid, out = Grid(-5.0, 5.0, 100), {"raw": [], "ema": []}

    def measure(trainer, info):
        if trainer.iteration % every == 0:
            for key, model in (("raw", trainer.model), ("ema", trainer.ema_model)):
                out[key].append(metrics.lag(trainer.particles, grid.energy(model), grid))

    cfg = training.make_config(
        "fast", strategy="pcd", seed=seed, n_iters=n_iters, eval_every=0, snapshot_every=0
    )
    training.Trainer(cfg).run(progress=False, callback=measure)
    return {
        "seed": seed,
        **out,
        "raw_mean": statistics.fmean(out["raw"]),
        "ema_mean": statistics.fmean(out["ema"]),
    }


def summarise(runs: list[dict]) -> list[dict]:
    """Per preset and strategy: means over each run's evaluations, then mean and sd over seeds."""
    rows = []
    for preset in dict.fromkeys(r["preset"] for r in runs):
        for strategy in dict.fromkeys(r["strategy"] for r in runs):
            group = [r for r in runs if r["preset"] == preset and r["strategy"] == strategy]
            if not group:
                continue
            row = {"preset": preset, "strategy": strategy, "seeds": len(group)}
            for key in SUMMARY:
                means = [statistics.fmean(r[key]) for r in group]
                row[key] = statistics.fmean(means)
                row[key + "_sd"] = statistics.stdev(means) if len(means) > 1 else 0.0
            row["lag_max"] = max(max(r["lag"]) for r in group)
            row["lag_cost_per_iteration"] = max(r["lag_cost_per_iteration"] for r in group)
            row["lag_cpu_s"] = statistics.fmean(r["lag_cpu_s"] for r in group)
            row["iteration_cpu_s"] = statistics.fmean(r["iteration_cpu_s"] for r in group)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The presets side by side, a strategy a row: mean ± sd over seeds of each run's mean over evaluations."""
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    by = {(r["preset"], r["strategy"]): r for r in rows}
    cells = ("lag", "largest lag", "gradient error (exact samples)", "cosine", "meter / iteration")
    lines = ["| strategy | " + " | ".join(f"{p}: {c}" for p in presets for c in cells) + " |",
             "|---|" + "---|" * (len(cells) * len(presets))]  # fmt: skip
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        row = [strategy]
        for p in presets:
            r = by.get((p, strategy))
            row += ["–"] * len(cells) if r is None else [
                f"{r['lag']:.3f} ± {r['lag_sd']:.3f}", f"{r['lag_max']:.2f}",
                f"{r['grad_error']:.2f} ± {r['grad_error_sd']:.2f} ({r['grad_error_floor']:.2f})",
                f"{r['grad_cosine']:.2f}", f"{100 * r['lag_cost_per_iteration']:.1f} %"]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("lag.json")))
    parser.add_argument("--presets", default="fast,paper")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument(
        "--quick", action="store_true", help="2 strategies, 1 seed, 20 iterations, small sizes"
    )
    parser.add_argument(
        "--ema", action="store_true", help="only the EMA contrast, added to an existing --out"
    )
    parser.add_argument("--table", action="store_true", help="only print the table of an existing --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())["rows"]))
        return
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())["rows"]))
        return
    if args.ema:  # PCD's lag against the trained model and against its EMA copy, three seeds
        result = json.loads(Path(args.out).read_text())
        result["ema"] = [ema_contrast(seed) for seed in range(args.seeds)]
        Path(args.out).write_text(json.dumps(result) + "\n")
        print({r["seed"]: (round(r["raw_mean"], 3), round(r["ema_mean"], 3)) for r in result["ema"]})
        return
    sizes, strategies, presets = {}, args.strategies.split(","), args.presets.split(",")
    seeds, iters, every = range(args.seeds), args.iters, args.eval_every
    if args.quick:
        sizes = dict(
            hidden=16, n_particles=200, batch_size=200, n_init_steps=20, grid_size=60, field_grid_size=30
        )
        strategies, presets, seeds, iters, every = ["pcd", "pd-beta"], ["fast"], range(1), 20, 10
    started, runs = time.time(), []
    for preset in presets:
        for strategy in strategies:
            for seed in seeds:
                runs.append(run_one(preset, strategy, seed, iters, every, **sizes))
                print(
                    f"{preset} {strategy} seed {seed}: lag {statistics.fmean(runs[-1]['lag']):.3f}, "
                    f"gradient error {statistics.fmean(runs[-1]['grad_error']):.3f}",
                    flush=True,
                )
    rows = summarise(runs)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch thread, torch {torch.__version__}"
    meta = dict(command=f"benchmarks/lag.py {' '.join(f'--{k} {v}' for k, v in vars(args).items() if k != 'out')}",
                machine=machine, wall_s=time.time() - started, iters=iters, eval_every=every)  # fmt: skip
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs}) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
