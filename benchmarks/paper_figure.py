"""The paper's 8gaussians figure at its own budget: small weights-only files and their numbers.

Reads the run directories that ``benchmarks/paper_runs.sh`` writes (benchmarks/paper_runs/<run>/checkpoint.pt)
and writes, per seed-0 run (the figure's; every seed's numbers go into ``summary.json``, and its full
checkpoint stays in its run directory), ``benchmarks/paper_runs/final/<strategy>-s0.pt`` (``weights_only=True``):
the model's state_dict, the particles, the iteration reached and the evaluation series (held-out
log-likelihood, the learned density's and the particles' mode-weight spreads, every 50 iterations), plus
``summary.json``: each run's last value, and its mean and standard deviation over the last half of training
(of the iterations reached, for a run not finished; ``last_half`` says which)
(one snapshot is not enough: both wander), and per strategy the same over its seeds; ``evals.json``: every
run's held-out log-likelihood and model mode-weight spread at each evaluation (the curves under the figure);
``--png`` draws the six-column figure in the paper's layout from these files (the README's opening picture,
as a notebook shows it).
Run (from the repository root)::

    .venv/bin/python benchmarks/paper_figure.py [--runs benchmarks/paper_runs] [--png docs/gallery/paper_figure.png]
    .venv/bin/python benchmarks/paper_figure.py --quick --runs /tmp/p --png /tmp/p/figure.png   # the test

``--quick`` first trains, in ``--runs`` (not the shipped folder), what ``paper_runs.sh`` would: run directories
``pcd-s0``, ``pd-beta-s0`` and ``pd-beta-s1``, at the paper preset but 6 iterations of a 16-unit net on 100
particles, then goes the same way (final/, summary.json, evals.json, the PNG).
"""

import argparse
import json
import statistics
from pathlib import Path

import torch

KEYS = ("log_likelihood", "model_mode_weight_spread", "mode_weight_spread", "mmd2")
CURVES = ("iteration", "log_likelihood", "model_mode_weight_spread")  # what evals.json keeps of each run


def extract(path: Path, out_dir: Path) -> tuple[dict, dict]:
    """One trainer checkpoint -> one small file (seed 0); returns the run's summary numbers and its curves."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg, hist = ckpt["config"], ckpt["history"]
    evals = [{**f, "iteration": f["step"]} for f in hist["frames"] if "log_likelihood" in f]
    series = {"iteration": [e["iteration"] for e in evals]}
    series.update({k: [e.get(k) for e in evals] for k in KEYS})
    model_kind = "grid" if "values" in ckpt["model"] else "mlp"
    small = {
        "strategy": cfg["strategy"],
        "seed": cfg["seed"],
        "iteration": ckpt["iteration"],
        "n_iters": cfg["n_iters"],
        "model_kind": model_kind,
        "model_config": {
            k: cfg[k] for k in ("hidden", "depth", "activation", "field_grid_size", "grid_low", "grid_high")
        },
        "model": {k: v.clone() for k, v in ckpt["model"].items()},
        "particles": ckpt["state"]["position"].clone(),
        "evals": series,
        "cpu_time": hist["curves"]["cpu_time"][-1] if hist["curves"].get("cpu_time") else None,
    }
    name = path.parent.name
    if small["seed"] == 0:  # the figure's runs; other seeds ship their numbers (summary.json) only
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".{name}.tmp"
        torch.save(small, tmp)
        tmp.replace(out_dir / f"{name}.pt")
    # the last half of training; for a run still short of n_iters, the last half of what it has reached
    start = min(small["n_iters"], small["iteration"]) // 2
    half = [i for i, it in enumerate(series["iteration"]) if it >= start]
    summary = {"iteration": small["iteration"], "n_iters": small["n_iters"], "cpu_time": small["cpu_time"]}
    summary["last_half"] = [start, small["iteration"]]
    for k in KEYS:
        values = series[k]
        summary[k] = values[-1]
        tail = [values[i] for i in half]
        summary[f"{k}_last_half_mean"] = statistics.fmean(tail) if tail else None
        summary[f"{k}_last_half_sd"] = statistics.stdev(tail) if len(tail) > 1 else None
    return summary, {k: [round(v, 6) for v in series[k]] for k in CURVES}


def over_seeds(summaries: dict) -> dict:
    """Per strategy: the seeds' last-half means, their mean and their spread (sd over seeds)."""
    by = {}
    for name, s in summaries.items():
        by.setdefault(name.rsplit("-s", 1)[0], []).append(s)
    out = {}
    for strategy, runs in by.items():
        row = {"seeds": len(runs), "iterations": [r["iteration"] for r in runs]}
        for k in KEYS:
            means = [r[f"{k}_last_half_mean"] for r in runs if r[f"{k}_last_half_mean"] is not None]
            row[k] = statistics.fmean(means) if means else None
            row[f"{k}_sd_over_seeds"] = statistics.stdev(means) if len(means) > 1 else None
        out[strategy] = row
    return out


def draw(final: Path, png: Path) -> None:
    """The paper's layout from the small files (seed 0), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from pdviz import bench

    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(bench.plot_paper_runs(bench.load_paper_runs(final))._repr_png_())


def tiny_runs(runs: Path) -> None:
    """``--quick``: run directories as ``paper_runs.sh`` writes them, each a Trainer checkpoint of 6 iterations
    of the paper preset at tiny sizes, evaluated every 3."""
    from pdviz import training

    torch.set_num_threads(1)
    sizes = dict(hidden=16, n_particles=100, batch_size=100, n_init_steps=10, grid_size=40, field_grid_size=20,
                 n_eval=500, n_iters=6, eval_every=3, snapshot_every=0)  # fmt: skip
    for strategy, seed in (("pcd", 0), ("pd-beta", 0), ("pd-beta", 1)):
        trainer = training.Trainer(training.make_config("paper", strategy=strategy, seed=seed, **sizes))
        trainer.run(progress=False)
        (runs / f"{strategy}-s{seed}").mkdir(parents=True, exist_ok=True)
        trainer.save(runs / f"{strategy}-s{seed}" / "checkpoint.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=None, help="default: benchmarks/paper_runs")
    parser.add_argument("--png", type=Path, default=None, help="also draw the figure into this PNG file")
    parser.add_argument("--quick", action="store_true", help="train 3 tiny runs into --runs first")
    args = parser.parse_args()
    shipped = Path(__file__).with_name("paper_runs")
    if args.quick and (args.runs is None or args.runs.resolve() == shipped.resolve()):
        parser.error("--quick does not write over the shipped paper_runs/final; give another --runs")
    args.runs = args.runs or shipped
    if args.quick:
        tiny_runs(args.runs)
    found = sorted(args.runs.glob("*/checkpoint.pt"))
    if not found:  # a clone ships final/ only: keep it, draw from it
        print(
            f"no run directories under {args.runs} (benchmarks/paper_runs.sh makes them); final/ kept as it is"
        )
        if args.png:
            draw(args.runs / "final", args.png)
        return
    extracted = {p.parent.name: extract(p, args.runs / "final") for p in found}
    summaries = {name: numbers for name, (numbers, _) in extracted.items()}
    summaries["over_seeds"] = over_seeds(summaries)
    (args.runs / "final" / "summary.json").write_text(json.dumps(summaries, indent=1))
    curves = (f"{json.dumps(name)}: {json.dumps(c)}" for name, (_, c) in extracted.items())  # a line per run
    (args.runs / "final" / "evals.json").write_text("{\n" + ",\n".join(curves) + "\n}\n")
    if args.png:
        draw(args.runs / "final", args.png)
    for name, s in summaries.items():
        if name == "over_seeds":
            continue
        print(
            f"{name:14s} it {s['iteration']:5d}  LL {s['log_likelihood']:.3f}  last-half "
            f"{s['log_likelihood_last_half_mean'] or float('nan'):.3f} ± {s['log_likelihood_last_half_sd'] or 0:.3f}"
            f"  model spread {s['model_mode_weight_spread']:.3f}  particles {s['mode_weight_spread']:.3f}"
        )


if __name__ == "__main__":
    main()
