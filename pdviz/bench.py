"""The benchmarks ``pdviz bench`` runs, and the toy-suite table that notebook 06 reads.

Two measurements, each written as JSON with the machine it ran on:

* **tracking**: exact samples carried along a moving density (``flows.track``) by Langevin, PD-alpha and
  the exact grid flow at equal gradient evaluations per time step; the binned KL to the exact moving
  density minus the floor that exact samples of the same size reach.
* **toy**: every strategy on the 2-D datasets at a budget of iterations (paper preset) or of CPU seconds
  (fast preset), three seeds each, as the sweep file ``pdviz/toy_suite.json`` lists them; one JSON per
  run (:mod:`pdviz.sweep` runs them), so a killed suite resumes where it stopped.

Speed and memory against a naive loop, AIS on images and the Binder check are scripts in ``benchmarks/``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from pdviz import checkpoint, datasets, energies, flows, metrics, models, plotting, samplers, sweep, training
from pdviz.errors import CheckpointError
from pdviz.grid import Grid
from pdviz.sweep import finite_mean, machine_info, run_name, write_json  # noqa: F401  (benchmarks/ use them)

QUICK = dict(hidden=32, n_particles=200, batch_size=200, n_init_steps=20, n_eval=2000, grid_size=100, eval_every=10,
             snapshot_every=0)  # fmt: skip
SUITE_FILE = Path(__file__).with_name("toy_suite.json")  # package data: there in a wheel too
TRACK_FAMILIES = ("interpolation", "translating_gaussian", "scaling_gaussian", "mode_weights")


def _sd(values: list) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else math.nan


# --- where the time of an iteration goes -----------------------------------------------------------


class NegativesCost(NamedTuple):
    """Where an iteration's time goes: its gradient evaluations on the particles (negatives, moves,
    corrections) against one parameter-gradient pass over the data batch and the negatives (the update)."""

    iterations: int
    seconds_per_iteration: float
    grad_evals_per_iteration: float
    seconds_per_grad_eval: float
    seconds_per_update: float
    negatives_share: float  # g t_grad / (g t_grad + t_update), both timed now, so load falls on both
    images_per_second: float


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def negatives_cost(trainer: training.Trainer, timing_steps: int = 10) -> NegativesCost:
    """Split a trained run's iteration into negatives and update: counts from its History, times (medians
    of ``timing_steps``) of one ULA step at all particles and one loss-gradient pass over
    ``batch_size + n_particles`` inputs."""
    c, meta, cfg = trainer.history.curves, trainer.history.meta, trainer.config
    iters = max(trainer.iteration, 1)
    per_iter = (c["wall_time"][-1] - meta["init_wall_time"]) / iters
    grads = (c["n_grad"][-1] - meta["init_n_grad"]) / iters
    x, model = trainer.particles, trainer.model
    both = x[torch.arange(cfg.batch_size + x.shape[0], device=x.device) % x.shape[0]]
    params = [p for p in model.parameters() if p.requires_grad]
    state, gen, t_grad, t_update = samplers.init(x, model), torch.Generator(x.device).manual_seed(0), [], []
    for _ in range(timing_steps):
        _sync(x)
        t = time.perf_counter()
        state, _ = samplers.ula_step(state, model, step_size=1e-4, generator=gen)
        _sync(x)
        t_grad.append(time.perf_counter() - t)
        t = time.perf_counter()
        torch.autograd.grad(model(both).mean(), params)
        _sync(x)
        t_update.append(time.perf_counter() - t)
    g, u = statistics.median(t_grad), statistics.median(t_update)
    return NegativesCost(iters, per_iter, grads, g, u, grads * g / (grads * g + u), cfg.batch_size / per_iter)


# --- the paper's figure at its own budget ----------------------------------------------------------

PAPER_ORDER = ("replay", "pcd", "pd-alpha", "pd-beta", "pd-gamma")


PAPER_RUN_FIELDS = {"strategy": str, "seed": int, "iteration": int, "model_kind": str, "model_config": dict,
                    "model": dict, "particles": torch.Tensor, "evals": dict}  # fmt: skip


def load_paper_run(path: Path) -> dict[str, Any]:
    """One shipped paper-budget run (``benchmarks/paper_figure.py`` writes them): its energy function
    ``x [n, 2] -> [n]``, particles [n, 2], evaluation series and the iteration it reached. Read by
    :func:`pdviz.checkpoint.load_checkpoint`; a field of the wrong type, shape or range, or weights that do
    not fit the model, raise CheckpointError naming it."""
    where = f"paper run {str(path)!r}"
    run = checkpoint.load_checkpoint(path, header=False)
    checkpoint.check_fields(run, PAPER_RUN_FIELDS, where)
    x, evals = run["particles"], run["evals"]
    if not (x.ndim == 2 and x.shape[1] == 2 and x.is_floating_point() and bool(torch.isfinite(x).all())):
        raise CheckpointError(
            f"{where}: particles must be finite floats [n, 2], got {x.dtype} {list(x.shape)}"
        )
    numbers = [v for series in evals.values() for v in (series if isinstance(series, list) else [series])]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)
    if "iteration" not in evals or not numeric:
        raise CheckpointError(f"{where}: evals must map names to lists of numbers, iteration among them")
    try:
        cfg = run["model_config"]
        if run["model_kind"] == "grid":
            grid = Grid(cfg["grid_low"], cfg["grid_high"], cfg["field_grid_size"])
            model = models.GridEnergy(run["model"]["base_mean"], run["model"]["base_std"], grid)
        elif run["model_kind"] == "mlp":
            model = models.EBM(2, cfg["hidden"], cfg["depth"], cfg["activation"], seed=0)
        else:
            raise ValueError(f"model_kind must be 'grid' or 'mlp', got {run['model_kind']!r}")
        model.load_state_dict(run["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # InvalidArgumentError is a ValueError
        raise CheckpointError(
            f"{where} does not hold a model pdviz can build: {type(err).__name__}: {err}"
        ) from None
    model.requires_grad_(False)
    return {**run, "energy_fn": model}


def load_paper_runs(directory: Path, seed: int = 0, strategies=PAPER_ORDER) -> dict[str, dict[str, Any]]:
    """The shipped runs of one seed in the paper's column order, strategy -> :func:`load_paper_run`, each
    with ``"seed_evals"``: the evaluation series (lists "iteration", "log_likelihood",
    "model_mode_weight_spread") of every seed of its strategy in ``evals.json``, this seed's first.
    A folder with no run of ``seed`` raises CheckpointError naming the runs it holds."""
    directory = Path(directory)
    found = {s for s in PAPER_ORDER if s in strategies and (directory / f"{s}-s{seed}.pt").is_file()}
    if not found:
        held = sorted(p.name for p in directory.glob("*-s*.pt")) if directory.is_dir() else []
        what = f"holds {', '.join(held) or 'no paper runs'}" if directory.is_dir() else "does not exist"
        raise CheckpointError(f"no paper run of seed {seed} in {str(directory)!r}: it {what}")
    curves = {}
    if (directory / "evals.json").is_file():
        try:
            curves = json.loads((directory / "evals.json").read_text())
        except ValueError as err:
            raise CheckpointError(f"{str(directory / 'evals.json')!r} is not JSON: {err}") from None
    runs = {}
    for s in (s for s in PAPER_ORDER if s in found):
        run = load_paper_run(directory / f"{s}-s{seed}.pt")
        names = sorted((n for n in curves if n.rsplit("-s", 1)[0] == s), key=lambda n: n != f"{s}-s{seed}")
        runs[s] = {**run, "seed_evals": [curves[n] for n in names] or [run["evals"]]}
    return runs


LAST_HALF = {"log_likelihood": "log-lik.", "model_mode_weight_spread": "model spread"}  # key -> figure label


def last_half_means(run: dict[str, Any]) -> dict[str, float]:
    """A loaded paper run's held-out log-likelihood and model spread (max - min of the learned density's
    eight mode weights), each averaged over the last half of training (the evaluations at iterations >= half
    the last) and then over its seeds: the numbers ``summary.json`` gives per strategy, keyed by figure label."""
    out = {}
    for key, label in LAST_HALF.items():
        per_seed = [[v for it, v in zip(e["iteration"], e[key]) if it >= e["iteration"][-1] // 2]
                    for e in run["seed_evals"]]  # fmt: skip
        out[label] = statistics.fmean(statistics.fmean(v) for v in per_seed)
    return out


def _spread_over_training(ax, evals: list[dict[str, list]], color: str) -> float:
    """The model spread over training of every seed: the mean over seeds of each seed's running mean over a
    twentieth of its evaluations (500 iterations of the paper's 10,000) with a band of the seeds' range, the
    last half shaded and its mean (:func:`last_half_means`) drawn across it, and the first seed's last value
    (the snapshot drawn above) as a dot; returns the highest value drawn."""
    x = np.asarray(evals[0]["iteration"], float)
    y = np.array([e["model_mode_weight_spread"] for e in evals], float)  # [seeds, evaluations]
    n = max(1, len(x) // 20)  # evaluations per running mean
    box = np.ones(n) / n
    smooth, xs = np.array([np.convolve(v, box, "valid") for v in y]), np.convolve(x, box, "valid")
    mean = f"mean of seeds (over {n * (x[1] - x[0]):,.0f} iterations)"
    ax.axvspan(x[-1] / 2, x[-1], color="0.88", lw=0, label="last half of training")
    ax.fill_between(xs, smooth.min(0), smooth.max(0), color=color, alpha=0.35, lw=0, label="range of seeds")
    ax.plot(xs, smooth.mean(0), color=color, lw=1.5, label=mean)
    ax.plot([x[-1] / 2, x[-1]], [y[:, x >= x[-1] // 2].mean()] * 2, color="black", lw=2.2,
            label="last-half mean (numbers above)")  # fmt: skip
    ax.plot(x[-1], y[0, -1], "o", color=color, mec="black", ms=7, label="the snapshot drawn above")
    ax.set(xticks=[0, x[-1] / 2, x[-1]], xticklabels=["0", f"{x[-1] / 2000:g}k", f"{x[-1] / 1000:g}k"])
    ax.set_xlabel("iteration")
    ax.tick_params(labelleft=False)
    return float(max(smooth.max(), y[0, -1]))


def plot_paper_runs(runs: dict[str, dict[str, Any]]):
    """The paper's layout of :func:`load_paper_runs`' runs: the 8 Gaussians and their data, then one column
    per run: its learned density over its particles (the loaded seed at its last iteration, one snapshot),
    with :func:`last_half_means` above the particles and the model spread over training under them
    (:func:`_spread_over_training`, one y-axis for every column; the target's spread is 0)."""
    fig = plotting.plot_comparison(
        {s: r["energy_fn"] for s, r in runs.items()}, {s: r["particles"] for s, r in runs.items()},
        Grid(-5.0, 5.0, 100), target=energies.get("8gaussians"), data=datasets.sample("8gaussians", 1000, seed=0),
        metrics={s: {**last_half_means(r), "seeds": len(r["seed_evals"])} for s, r in runs.items()}, below=1,
    )  # fmt: skip
    axis, *row = fig.axes[2 * (len(runs) + 1) : 3 * (len(runs) + 1)]  # under the target: the y-axis alone
    with plotting.style():
        top = max(_spread_over_training(ax, r["seed_evals"], plotting.method_color(s, j))
                  for j, (ax, (s, r)) in enumerate(zip(row, runs.items()), start=1))  # fmt: skip
        for ax in row:
            ax.sharey(axis)
        axis.set(ylim=(0, 1.1 * top), ylabel="model spread", xticks=[])
        axis.spines[["top", "right", "bottom"]].set_visible(False)
        fig.legend(*row[0].get_legend_handles_labels(), loc="outside lower center", ncols=3)
    return fig


# --- tracking -------------------------------------------------------------------------------------


def run_tracking(
    *,
    quick: bool = False,
    methods=("langevin", "alpha", "exact"),
    evals_per_step: int = 5,
    seeds=(0, 1, 2),
    progress: bool = True,
) -> dict[str, Any]:
    """Excess binned KL over the exact-sample floor, per family and method, mean over time steps and seeds."""
    n, steps, bins = (300, 10, 30) if quick else (1000, 50, 30)
    seeds = seeds[:1] if quick else seeds
    grid, rows = Grid(-5.0, 5.0, 100 if quick else 128), []
    gen = torch.Generator().manual_seed(12345)
    for family in tqdm(TRACK_FAMILIES, disable=not progress, desc="tracking", leave=False):
        moving = energies.get(family)
        floors = [
            metrics.kl_floor(moving.at(k / steps), n, grid=grid, bins=bins, repeats=3, generator=gen)
            for k in range(steps + 1)
        ]
        for method in methods:
            excess = []
            for seed in seeds:
                h = flows.track(moving, method, n_particles=n, n_steps=steps, evals_per_step=evals_per_step,
                                seed=seed, grid=grid, bins=bins)  # fmt: skip
                kl = zip(h.series("t")[1][1:], h.series("kl")[1][1:])  # time 0 is exact samples: left out
                excess.append(finite_mean([value - floors[round(t * steps)] for t, value in kl]))
            row = {"family": family, "method": method, "mean_excess_kl": finite_mean(excess)}
            rows.append({**row, "sd": _sd(excess), "per_seed": excess})
    sizes = {"n_particles": n, "n_steps": steps, "bins": bins, "evals_per_step": evals_per_step}
    return {"benchmark": "tracking", **sizes, "rows": rows, "machine": machine_info()}


# --- the toy suite --------------------------------------------------------------------------------


def quick_suite(names=("8gaussians", "rings"), cpu_budget: float = 2.0, *, tiny: bool = True) -> list[dict]:
    """A small live toy suite: PCD against PD-beta on ``names``, seed 0, ``cpu_budget`` CPU seconds each
    (``tiny``: the small models of :data:`QUICK`). The full suite is the sweep file :data:`SUITE_FILE`."""
    grid = {"dataset": list(names), "budget": ["cpu"], "strategy": ["pcd", "pd-beta"], "seed": [0]}
    budgets = {"cpu": {"preset": "fast", "cpu_budget": cpu_budget}}
    return sweep.expand({"budgets": budgets, "grids": [grid], "overrides": QUICK if tiny else {}})


def run_toy_suite(run_dir: Path, specs: list[dict] | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Run every spec whose JSON is not in ``run_dir`` yet (:func:`pdviz.sweep.run`, one local process),
    then :func:`aggregate_toy`."""
    sweep.run(sweep.load(SUITE_FILE)[0] if specs is None else specs, run_dir, progress=progress)
    return aggregate_toy(run_dir)


def aggregate_toy(run_dir: Path) -> dict[str, Any]:
    """One row per (budget, dataset, strategy) of the run JSONs in ``run_dir``: mean ± sd over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for p in sorted(Path(run_dir).glob("*__*.json")):
        r = json.loads(p.read_text())
        s = r["spec"]
        groups.setdefault((s["budget"], s["dataset"], s["strategy"]), []).append(r)
    rows = []
    for (budget, dataset, strategy), rs in sorted(groups.items()):
        done = [r for r in rs if r["status"] == "done"]
        ll = [r.get("log_likelihood_final", r.get("ll_final")) for r in done]
        rows.append(
            {
                "budget": budget,
                "dataset": dataset,
                "strategy": strategy,
                "seeds": sorted(r["spec"]["seed"] for r in rs),
                "n_diverged": len(rs) - len(done),
                "ll_mean": finite_mean(ll),
                "ll_sd": _sd(ll),
                "ll_per_seed": ll,
                "spread_mean": finite_mean([r.get("mode_weight_spread_final") for r in done]),
                "model_spread_mean": finite_mean([r.get("model_mode_weight_spread_final") for r in done]),
                "iterations_mean": finite_mean([r.get("iterations") for r in done]),
                "cpu_s_mean": finite_mean([r.get("cpu_s") for r in done]),
                "entropy_bound": -datasets.ENTROPY[dataset] if dataset in datasets.ENTROPY else None,
            }
        )
    return {"benchmark": "toy", "n_runs": sum(len(g) for g in groups.values()), "rows": rows}


def toy_markdown(summary: dict) -> str:
    """A markdown table of :func:`aggregate_toy`'s rows, one table per budget."""

    def f(v, digits=3):
        return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"

    lines = [f"{summary['n_runs']} runs."]
    for budget in sorted({r["budget"] for r in summary["rows"]}):
        lines += [
            "",
            f"Budget `{budget}`:",
            "",
            "| dataset | strategy | seeds | held-out LL (mean ± sd) | "
            "bound | mode-weight spread (particles; model) | iters | CPU s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in (r for r in summary["rows"] if r["budget"] == budget):
            div = f" ({r['n_diverged']} diverged)" if r["n_diverged"] else ""
            lines.append(
                f"| {r['dataset']} | {r['strategy']} | {len(r['seeds'])}{div} | {f(r['ll_mean'])} ± "
                f"{f(r['ll_sd'])} | {f(r['entropy_bound'])} | {f(r['spread_mean'])}; "
                f"{f(r['model_spread_mean'])} | {f(r['iterations_mean'], 0)} | {f(r['cpu_s_mean'], 1)} |"
            )
    return "\n".join(lines)


def run(out_dir: Path, *, quick: bool = False, progress: bool = True) -> dict[str, Path]:
    """``pdviz bench``: tracking and the toy suite (:data:`SUITE_FILE`; ``quick``: :func:`quick_suite`) into
    ``out_dir``, one torch thread; returns name -> JSON path."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = Path(out_dir)
    try:
        paths = {"tracking": write_json(out / "tracking.json", run_tracking(quick=quick, progress=progress))}
        specs = quick_suite() if quick else sweep.load(SUITE_FILE)[0]
        summary = {**run_toy_suite(out / "toy_runs", specs, progress=progress), "machine": machine_info()}
        paths["toy"] = write_json(out / "toy.json", summary)
    finally:
        torch.set_num_threads(threads)
    return paths
