"""Benchmarks of particle dynamics against Langevin chains: tracking, the toy suite, speed and memory.

Three benchmarks, each a plain function that returns a JSON-able dict (and writes it as JSON):

``tracking``
    Particles follow a time-dependent energy ``E_t`` whose density ``p_t`` is known on a grid
    (``pdviz.energies.MOVING_ENERGIES``). Every method spends the same number of gradient evaluations per
    time step; Langevin's and PD's correction step sizes are each the best of one stated grid (tuned on a
    separate seed). The score is the binned ``KL(q_t ‖ p_t)`` minus the floor that exact samples of the same
    size reach on the same bins (``pdviz.metrics.kl_floor``): the *excess KL*, averaged over time and final.
``toy``
    Training runs of every negative-sample strategy on every 2-D toy dataset. One JSON per run in a
    directory, so the suite resumes where it stopped; :func:`aggregate_toy` builds the table from whatever
    runs exist and counts the missing ones.
``speed``
    Milliseconds and gradient evaluations per training iteration and peak RSS, each variant in a fresh
    subprocess, for the pdviz loop and for a *naive* loop written the way the authors' scripts work
    (deep copy of the model each step, double backward through ``parameters_to_vector``, a
    ``torch.distributions.Normal`` rebuilt per energy call, ``.data`` updates), with and without the
    scripts' logging (grid log-likelihood and MMD every iteration).

:func:`run` runs the selected benchmarks into one directory; ``pdviz bench`` calls it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pdviz.errors import DivergenceError, InvalidArgumentError, check_choice

BENCHMARKS = ("tracking", "toy", "speed")

# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Describe the machine a measurement ran on: CPU model, cores, torch threads, load, date (UTC)."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "loadavg_1_5_15": load,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as JSON atomically (temporary file, then rename), so a killed run leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=1, allow_nan=True))
    os.replace(tmp, path)
    return path


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/Inf; None reads as "no value"
    return obj


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def _std(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else math.nan


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _progress(iterable: Iterable, progress: bool, desc: str, total: int | None = None) -> Iterable:
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


# --------------------------------------------------------------------------------------------------
# 1. tracking a moving density
# --------------------------------------------------------------------------------------------------

TRACK_FAMILIES = ("interpolation", "translating_gaussian", "scaling_gaussian", "mode_weights")
TRACK_METHODS = ("langevin", "pd", "exact")
TUNED_METHODS = ("langevin", "pd", "svgd")


def tracking_settings(quick: bool = False) -> dict[str, Any]:
    """The settings of the tracking benchmark (``quick`` shrinks every size)."""
    if quick:
        return {
            "families": list(TRACK_FAMILIES),
            "methods": list(TRACK_METHODS),
            "budgets": [5],
            "seeds": [0],
            "tune_seed": 100,
            "step_grid": [0.01, 0.05],
            "n_particles": 300,
            "n_steps": 10,
            "bins": 30,
            "grid_size": 100,
            "floor_repeats": 3,
        }
    return {
        "families": list(TRACK_FAMILIES),
        "methods": list(TRACK_METHODS),
        "budgets": [2, 5, 10],
        "seeds": [0, 1, 2],
        "tune_seed": 100,
        "step_grid": [0.003, 0.01, 0.03, 0.1, 0.3],
        "n_particles": 1000,
        "n_steps": 50,
        "bins": 30,
        "grid_size": 128,
        "floor_repeats": 5,
    }


def track_score(
    moving: Any,
    method: str,
    *,
    budget: int,
    seed: int,
    settings: dict,
    grid: Any,
    floors: list[float],
    **kw: Any,
) -> dict[str, Any]:
    """Run one tracking run (``pdviz.flows.track``) and score it against the floors.

    ``floors[k]`` is the KL that exact samples reach at the k-th recorded time. Returns a dict with
    ``excess`` (KL minus floor per record, t > 0), ``mean_excess``, ``final_excess``, ``final_ratio``
    (KL / floor at t = 1), ``mean_ratio`` and ``n_grad_per_step``. A run that diverges scores ``inf``, so a
    step-size grid search simply passes over it.
    """
    from pdviz import flows

    try:
        hist = flows.track(
            moving,
            method,
            n_particles=settings["n_particles"],
            n_steps=settings["n_steps"],
            evals_per_step=budget,
            seed=seed,
            grid=grid,
            record_every=1,
            bins=settings["bins"],
            **kw,
        )
    except DivergenceError as err:
        return {"diverged": str(err), "mean_excess": math.inf, "final_excess": math.inf}
    kl = [float(v) for v in hist.kl]
    excess = [kl[k] - floors[k] for k in range(1, len(kl))]
    n_grad = [float(v) for v in hist.n_grad]
    return {
        "kl": kl,
        "excess": excess,
        "mean_excess": _mean(excess),
        "final_excess": excess[-1],
        "final_kl": kl[-1],
        "final_floor": floors[-1],
        "final_ratio": kl[-1] / floors[-1] if floors[-1] > 0 else math.nan,
        "mean_ratio": _mean([kl[k] / floors[k] for k in range(1, len(kl)) if floors[k] > 0]),
        "n_grad_per_step": (n_grad[-1] - n_grad[0]) / max(len(kl) - 1, 1),
    }


def run_tracking(
    settings: dict | None = None, *, quick: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run the tracking benchmark and return its results (see the module docstring).

    For every family, budget (gradient evaluations per time step) and method, the correction step size of
    ``langevin`` and ``pd`` is chosen from ``settings["step_grid"]`` by the mean excess KL on
    ``settings["tune_seed"]``, a seed not used for the reported numbers; the reported numbers are then the
    runs on ``settings["seeds"]`` with that step size.
    """
    from pdviz import energies, flows, metrics
    from pdviz.grid import Grid
    from pdviz.samplers import make_generator

    s = {**tracking_settings(quick), **(settings or {})}
    grid = Grid(-5.0, 5.0, s["grid_size"])
    t0, c0 = time.perf_counter(), time.process_time()
    rows, tuning = [], []
    jobs = [(f, b, m) for f in s["families"] for b in s["budgets"] for m in s["methods"]]
    floors_cache: dict[str, list[float]] = {}
    for family, budget, method in _progress(jobs, progress, "tracking"):
        moving = energies.MOVING_ENERGIES[family]()
        if family not in floors_cache:
            times = [k / s["n_steps"] for k in range(s["n_steps"] + 1)]
            gen = make_generator(12345)
            floors_cache[family] = [
                metrics.kl_floor(
                    moving.at(t),
                    s["n_particles"],
                    grid=grid,
                    bins=s["bins"],
                    repeats=s["floor_repeats"],
                    generator=gen,
                )
                for t in times
            ]
        floors = floors_cache[family]
        step = None
        # PD with a budget of 2 has no corrections left (its move costs 2), so there is nothing to tune
        if method in TUNED_METHODS and flows.n_corrections_for_budget(method, budget) > 0:
            scores = {}
            for eps in s["step_grid"]:
                r = track_score(
                    moving,
                    method,
                    budget=budget,
                    seed=s["tune_seed"],
                    settings=s,
                    grid=grid,
                    floors=floors,
                    correction_step_size=eps,
                )
                scores[eps] = r["mean_excess"]
            step = min(scores, key=lambda e: scores[e])
            tuning.append(
                {"family": family, "budget": budget, "method": method, "scores": scores, "best": step}
            )
        kw = {} if step is None else {"correction_step_size": step}
        runs = [
            track_score(moving, method, budget=budget, seed=seed, settings=s, grid=grid, floors=floors, **kw)
            for seed in s["seeds"]
        ]
        rows.append(
            {
                "family": family,
                "budget": budget,
                "method": method,
                "step_size": step,
                "mean_excess": [r["mean_excess"] for r in runs],
                "final_excess": [r["final_excess"] for r in runs],
                "final_ratio": [r.get("final_ratio", math.nan) for r in runs],
                "mean_ratio": [r.get("mean_ratio", math.nan) for r in runs],
                "n_grad_per_step": [r.get("n_grad_per_step", math.nan) for r in runs],
                "diverged": [r.get("diverged") for r in runs if r.get("diverged")],
                "excess_curve_seed0": runs[0].get("excess"),
            }
        )
    result = {
        "benchmark": "tracking",
        "settings": s,
        "machine": machine_info(),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "floors": floors_cache,
        "rows": rows,
        "tuning": tuning,
    }
    result["acceptance"] = tracking_acceptance(result)
    return result


def tracking_acceptance(result: dict) -> dict[str, Any]:
    """The acceptance checks: PD excess ≤ ½ Langevin's on ``interpolation`` per budget; exact ≤ 1.5 × floor."""
    by = {(r["family"], r["budget"], r["method"]): r for r in result["rows"]}
    out: dict[str, Any] = {"pd_vs_langevin_interpolation": [], "exact_within_1.5_floor": []}
    for (family, budget, method), r in sorted(by.items()):
        if family == "interpolation" and method == "pd" and (family, budget, "langevin") in by:
            # excess below 0 is sampling noise around the floor: clamp at 0 so that the ratio means
            # "how much of Langevin's lag PD keeps" (both at the floor counts as a pass)
            pd_ex = max(_mean(r["mean_excess"]), 0.0)
            la_ex = max(_mean(by[(family, budget, "langevin")]["mean_excess"]), 0.0)
            out["pd_vs_langevin_interpolation"].append(
                {
                    "budget": budget,
                    "pd": pd_ex,
                    "langevin": la_ex,
                    "ratio": pd_ex / la_ex if la_ex > 0 else (0.0 if pd_ex == 0 else math.inf),
                    "pass": pd_ex <= 0.5 * la_ex,
                }
            )
        if method == "exact":
            ratio = max(_mean(r["mean_ratio"]), _mean(r["final_ratio"]))
            out["exact_within_1.5_floor"].append(
                {"family": family, "budget": budget, "kl_over_floor": ratio, "pass": ratio <= 1.5}
            )
    return out


def tracking_markdown(result: dict) -> str:
    """A markdown table of a tracking result: excess KL (mean over time; final) as mean ± sd over seeds."""
    s = result["settings"]
    lines = [
        f"Binned KL(q_t ‖ p_t) on {s['bins']}×{s['bins']} bins over [-5, 5]², minus the floor of "
        f"{s['n_particles']} exact samples on the same bins; {s['n_steps']} time steps over t ∈ [0, 1]; "
        f"seeds {s['seeds']}; step sizes of langevin/pd tuned on seed {s['tune_seed']} over {s['step_grid']}.",
        "",
        "| family | grad evals / step | method | tuned ε | mean excess KL | final excess KL | KL/floor (final) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        eps = "–" if r["step_size"] is None else f"{r['step_size']:g}"
        lines.append(
            f"| {r['family']} | {r['budget']} | {r['method']} | {eps} | "
            f"{_fmt(_mean(r['mean_excess']))} ± {_fmt(_std(r['mean_excess']))} | "
            f"{_fmt(_mean(r['final_excess']))} ± {_fmt(_std(r['final_excess']))} | "
            f"{_fmt(_mean(r['final_ratio']), 2)} |"
        )
    acc = result.get("acceptance", {})
    lines += ["", "Acceptance:"]
    for a in acc.get("pd_vs_langevin_interpolation", []):
        lines.append(
            f"- interpolation, {a['budget']} evals/step: PD/Langevin mean excess = {_fmt(a['ratio'], 2)} "
            f"({'pass' if a['pass'] else 'FAIL'}, needs ≤ 0.5)"
        )
    for a in acc.get("exact_within_1.5_floor", []):
        lines.append(
            f"- exact flow, {a['family']}, {a['budget']} evals/step: KL/floor = {_fmt(a['kl_over_floor'], 2)} "
            f"({'pass' if a['pass'] else 'FAIL'}, needs ≤ 1.5)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# 2. the toy suite (resumable)
# --------------------------------------------------------------------------------------------------

TOY_STRATEGIES = ("short-run", "pcd", "replay", "pd-alpha", "pd-beta")
TOY_EXTRA_STRATEGIES = ("pd-gamma", "pd-exact", "pd-weighted")
TOY_EXTRA_DATASETS = ("8gaussians", "rings")
LL_TARGET = -3.0  # the "quality per CPU-second" threshold on 8gaussians
LL_GOOD = -2.89  # "learned": within 0.05 nats of the data-entropy bound (≈ -2.84) on 8gaussians


def toy_budgets(quick: bool = False, reduced: bool = True) -> list[dict[str, Any]]:
    """The two budgets of the toy suite: a fixed iteration count (paper preset), a fixed CPU time (fast).

    ``reduced=False`` is the paper's budget (10 000 iterations; 180 CPU-seconds), far beyond one sitting.
    """
    if quick:
        tiny = {
            "hidden": 32,
            "n_particles": 200,
            "batch_size": 200,
            "n_init_steps": 20,
            "n_eval": 2000,
            "grid_size": 100,
            "eval_every": 10,
            "snapshot_every": 0,
        }
        return [
            {"name": "cpu", "preset": "fast", "time_budget": 2.0, "overrides": dict(tiny)},
            {"name": "iters", "preset": "paper", "n_iters": 30, "overrides": dict(tiny)},
        ]
    if reduced:
        return [
            {"name": "cpu", "preset": "fast", "time_budget": 15.0, "overrides": {}},
            {"name": "iters", "preset": "paper", "n_iters": 150, "overrides": {}},
        ]
    return [
        {"name": "cpu", "preset": "fast", "time_budget": 180.0, "overrides": {}},
        {"name": "iters", "preset": "paper", "n_iters": 10_000, "overrides": {}},
    ]


def toy_specs(
    *,
    datasets: Sequence[str] | None = None,
    strategies: Sequence[str] = TOY_STRATEGIES,
    seeds: Sequence[int] = (0, 1, 2),
    extra_strategies: Sequence[str] = TOY_EXTRA_STRATEGIES,
    extra_datasets: Sequence[str] = TOY_EXTRA_DATASETS,
    budgets: Sequence[dict] | None = None,
) -> list[dict[str, Any]]:
    """Every run of the suite: ``datasets × strategies × seeds`` plus ``extra_datasets × extra_strategies``.

    Each spec is a dict ``{budget, preset, dataset, strategy, seed, n_iters | time_budget, overrides}``;
    :func:`toy_run_name` gives its file name.
    """
    from pdviz import datasets as ds

    # 8gaussians first (modes known, the paper's figure), then rings, then the rest: a suite cut short by
    # a time limit has then answered the main question first
    order = ["8gaussians", "rings"] + sorted(set(ds.DATASETS) - {"8gaussians", "rings"})
    names = list(datasets) if datasets is not None else order
    specs = []
    for d in names:
        strats = list(strategies) + [
            s for s in extra_strategies if d in extra_datasets and s not in strategies
        ]
        for b in budgets if budgets is not None else toy_budgets():
            for strat in strats:
                for seed in seeds:
                    specs.append(
                        {
                            "budget": b["name"],
                            "preset": b["preset"],
                            "dataset": d,
                            "strategy": strat,
                            "seed": seed,
                            "n_iters": b.get("n_iters"),
                            "time_budget": b.get("time_budget"),
                            "overrides": dict(b.get("overrides", {})),
                        }
                    )
    return specs


def toy_run_name(spec: dict) -> str:
    """File name of one run, e.g. ``iters__8gaussians__pd-beta__s0.json``."""
    return f"{spec['budget']}__{spec['dataset']}__{spec['strategy']}__s{spec['seed']}.json"


def _first_reach(evals: list[dict], threshold: float, key: str = "cpu_time") -> float | None:
    for e in evals:
        ll = e.get("log_likelihood")
        if ll is not None and math.isfinite(ll) and ll >= threshold:
            return e.get(key)
    return None


def toy_one(spec: dict, *, progress: bool = False) -> dict[str, Any]:
    """Train one model as ``spec`` says and summarise it (held-out log-likelihood, mode weights, costs).

    The held-out log-likelihood is the trainer's grid-normalised value on fresh data; the reported value
    is the mean of the last 10 % of the evaluations (at least one), which smooths the iteration-to-iteration
    noise of a single evaluation.
    """
    from pdviz import training

    overrides = dict(spec.get("overrides", {}))
    overrides.update(dataset=spec["dataset"], strategy=spec["strategy"], seed=spec["seed"])
    if spec.get("n_iters"):
        overrides["n_iters"] = spec["n_iters"]
    config = training.make_config(spec["preset"], **overrides)
    budget = spec.get("time_budget")

    def stop_on_cpu_budget(trainer: Any, info: dict) -> bool:
        # the budget is CPU time of the loop (process time, evaluations excluded), which a shared machine
        # disturbs far less than wall time; the preset's n_iters still ends the run if it comes first
        return budget is None or trainer.history.cpu_time[-1] < budget

    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"spec": spec, "config": config.to_dict(), "machine": machine_info()}
    try:
        trainer = training.Trainer(config)
        trainer.run(progress=progress, callback=stop_on_cpu_budget)
        out["status"] = "done"
    except DivergenceError as err:
        out["status"] = "diverged"
        out["error"] = str(err)
        trainer = None
    out["wall_s"] = time.perf_counter() - t0
    out["cpu_s"] = time.process_time() - c0
    if trainer is None:
        return out
    h = trainer.history
    evals = [{k: v for k, v in e.items()} for e in h.evals]
    tail = evals[-max(1, len(evals) // 10) :] if evals else []
    n_iter = int(trainer.iteration)
    out.update(
        iterations=n_iter,
        evals=evals,
        ll_final=_mean([e.get("log_likelihood") for e in tail]),
        mode_weight_spread_final=_mean([e.get("mode_weight_spread") for e in tail]),
        model_mode_weight_spread_final=_mean([e.get("model_mode_weight_spread") for e in tail]),
        mmd2_final=_mean([e.get("mmd2") for e in tail]),
        loop_cpu_s=h.cpu_time[-1] if h.cpu_time else None,
        eval_cpu_s=h.eval_cpu_time,
        grad_evals_per_iter=(h.n_grad[-1] - h.init_n_grad) / n_iter if n_iter else None,
        cpu_to_target=_first_reach(evals, LL_TARGET),
        cpu_to_good=_first_reach(evals, LL_GOOD),
        entropy_bound=h.entropy_bound,
    )
    return out


def run_toy_suite(
    run_dir: Path,
    specs: Sequence[dict] | None = None,
    *,
    progress: bool = True,
    max_runs: int | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Run every spec whose JSON is not yet in ``run_dir`` (resumable), then aggregate.

    Parameters
    ----------
    run_dir : Path
        One JSON per run; finished runs (``status`` done or diverged) are skipped.
    specs : list of dict, optional
        The runs (default :func:`toy_specs` with the reduced budget).
    max_runs, max_seconds : optional
        Stop starting new runs after this many runs or wall-clock seconds (to split the suite over sittings).

    Returns
    -------
    dict
        :func:`aggregate_toy` of the directory, plus ``ran`` and ``skipped`` counts.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    specs = list(specs) if specs is not None else toy_specs()
    ran = skipped = 0
    start = time.perf_counter()
    for spec in _progress(specs, progress, "toy suite"):
        path = run_dir / toy_run_name(spec)
        if _finished(path):
            skipped += 1
            continue
        if max_runs is not None and ran >= max_runs:
            break
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
        write_json(path, toy_one(spec))
        ran += 1
    summary = aggregate_toy(run_dir, specs)
    summary.update(ran=ran, skipped=skipped)
    return summary


def _finished(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("status") in ("done", "diverged")
    except (OSError, ValueError):
        return False


def aggregate_toy(run_dir: Path, specs: Sequence[dict] | None = None) -> dict[str, Any]:
    """Summarise the run JSONs in ``run_dir``: one row per (budget, dataset, strategy), mean ± sd over seeds.

    With ``specs``, also count the planned runs that have no finished JSON yet (``missing``).
    """
    from pdviz import datasets as ds

    runs = []
    for p in sorted(Path(run_dir).glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except ValueError:
            continue
        if r.get("status") in ("done", "diverged"):
            runs.append(r)
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        sp = r["spec"]
        groups.setdefault((sp["budget"], sp["dataset"], sp["strategy"]), []).append(r)
    entropy = getattr(ds, "ENTROPY", {})
    rows = []
    for (budget, dataset, strategy), rs in sorted(groups.items()):
        done = [r for r in rs if r["status"] == "done"]
        lls = [r.get("ll_final") for r in done]
        rows.append(
            {
                "budget": budget,
                "dataset": dataset,
                "strategy": strategy,
                "seeds": sorted(r["spec"]["seed"] for r in rs),
                "n_diverged": len(rs) - len(done),
                "ll_mean": _mean(lls),
                "ll_sd": _std(lls),
                "ll_per_seed": lls,
                "spread_mean": _mean([r.get("mode_weight_spread_final") for r in done]),
                "model_spread_mean": _mean([r.get("model_mode_weight_spread_final") for r in done]),
                "iterations_mean": _mean([r.get("iterations") for r in done]),
                "cpu_s_mean": _mean([r.get("cpu_s") for r in done]),
                "grad_evals_per_iter": _mean([r.get("grad_evals_per_iter") for r in done]),
                "cpu_to_target": [r.get("cpu_to_target") for r in done],
                "cpu_to_good": [r.get("cpu_to_good") for r in done],
                "entropy_bound": -entropy[dataset] if dataset in entropy else None,
            }
        )
    missing = []
    if specs is not None:
        have = {toy_run_name(r["spec"]) for r in runs}
        missing = [toy_run_name(s) for s in specs if toy_run_name(s) not in have]
    return {
        "benchmark": "toy",
        "n_runs": len(runs),
        "n_missing": len(missing),
        "missing": missing,
        "rows": rows,
    }


def toy_markdown(summary: dict) -> str:
    """A markdown table of :func:`aggregate_toy`'s summary, one table per budget."""
    lines = [f"{summary['n_runs']} runs found; {summary['n_missing']} planned runs missing."]
    for budget in sorted({r["budget"] for r in summary["rows"]}):
        lines += [
            "",
            f"Budget `{budget}`:",
            "",
            "| dataset | strategy | seeds | held-out LL (mean ± sd) | bound | mode-weight spread (particles; model) | iters | "
            "grad evals/iter | CPU s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in (r for r in summary["rows"] if r["budget"] == budget):
            div = f" ({r['n_diverged']} diverged)" if r["n_diverged"] else ""
            lines.append(
                f"| {r['dataset']} | {r['strategy']} | {len(r['seeds'])}{div} | "
                f"{_fmt(r['ll_mean'])} ± {_fmt(r['ll_sd'])} | {_fmt(r['entropy_bound'])} | "
                f"{_fmt(r['spread_mean'])}; {_fmt(r.get('model_spread_mean'))} | {_fmt(r['iterations_mean'], 0)} | "
                f"{_fmt(r['grad_evals_per_iter'], 1)} | {_fmt(r['cpu_s_mean'], 1)} |"
            )
    return "\n".join(lines)


def toy_quality_markdown(summary: dict, dataset: str = "8gaussians") -> str:
    """The "quality per CPU-second" rows: CPU seconds to a held-out LL of -3.0 and to -2.89, per seed."""
    lines = [
        f"Quality per CPU-second on {dataset}: CPU seconds (process time, one torch thread) at the first "
        f"evaluation with held-out LL ≥ {LL_TARGET} and ≥ {LL_GOOD}; '–' = not reached within the run.",
        "",
        f"| budget | strategy | seeds | CPU s to LL ≥ {LL_TARGET} (per seed) | CPU s to LL ≥ {LL_GOOD} (per seed) | "
        f"seeds reaching {LL_GOOD} |",
        "| --- | --- | ---: | --- | --- | ---: |",
    ]
    for r in summary["rows"]:
        if r["dataset"] != dataset:
            continue
        to_t = ", ".join(_fmt(v, 1) for v in r["cpu_to_target"])
        to_g = ", ".join(_fmt(v, 1) for v in r["cpu_to_good"])
        n_good = sum(v is not None for v in r["cpu_to_good"])
        lines.append(
            f"| {r['budget']} | {r['strategy']} | {len(r['seeds'])} | {to_t} | {to_g} | {n_good}/{len(r['cpu_to_good'])} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# 3. speed and memory, against a naive loop written the way the authors' scripts work
# --------------------------------------------------------------------------------------------------

NAIVE_STRATEGIES = ("short-run", "pcd", "replay", "pd-alpha", "pd-beta")


class NaiveEBM(nn.Module):
    """The energy the way the scripts write it: an MLP plus a Gaussian base rebuilt on every call.

    ``E(x) = mlp(x) - log N(x; μ, diag σ²)`` with ``σ = exp(log_std)``. Building a fresh
    ``torch.distributions.Normal`` (with its argument validation) on each call is one of the habits whose
    cost the speed benchmark measures. :meth:`from_ebm` copies the weights of a ``pdviz.models.EBM`` so that
    both compute the same energy.
    """

    def __init__(self, net: nn.Module, mean: torch.Tensor, log_std: torch.Tensor):
        super().__init__()
        self.net = net
        self.mean = nn.Parameter(mean.detach().clone())
        self.log_std = nn.Parameter(log_std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = torch.distributions.Normal(self.mean, self.log_std.exp())
        return self.net(x).squeeze(-1) - base.log_prob(x).sum(-1)

    @classmethod
    def from_ebm(cls, ebm: nn.Module) -> NaiveEBM:
        """A naive copy of a ``pdviz.models.EBM`` (same weights in the same order, same energy).

        ``EBM`` adds ``½ Σ ((x - μ)/s)² + Σ log s + (d/2) log 2π``, which is ``-log N(x; μ, s²)`` summed.
        """
        return cls(copy.deepcopy(ebm.net), ebm.base_mean, ebm.base_log_std)


def naive_langevin(
    model: nn.Module, x: torch.Tensor, n_steps: int, step_size: float, noise: float
) -> torch.Tensor:
    """ULA the scripts' way: a leaf tensor updated in place through ``.data``."""
    x = x.clone().requires_grad_(True)
    for _ in range(n_steps):
        e = model(x).sum()
        g = torch.autograd.grad(e, x)[0]
        x.data = x.data - 0.5 * step_size * g + noise * torch.randn_like(x)
    return x.detach()


def naive_pd_beta_field(model_old: nn.Module, model_new: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``-∇_x ⟨∇_θ E_θold(x), θ_new - θ_old⟩`` by double backward through ``parameters_to_vector``."""
    from torch.nn.utils import parameters_to_vector

    delta = (
        parameters_to_vector(model_new.parameters()) - parameters_to_vector(model_old.parameters())
    ).detach()
    x = x.detach().clone().requires_grad_(True)
    params = list(model_old.parameters())
    grads = torch.autograd.grad(model_old(x).sum(), params, create_graph=True)
    directional = (parameters_to_vector(grads) * delta).sum()
    return -torch.autograd.grad(directional, x)[0]


def naive_pd_alpha_field(model_old: nn.Module, model_new: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``-∇_x (E_new(x) - E_old(x))``."""
    x = x.detach().clone().requires_grad_(True)
    return -torch.autograd.grad((model_new(x) - model_old(x)).sum(), x)[0]


def naive_loss(model: nn.Module, data: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """The contrastive loss ``mean E(data) - mean E(negatives)``."""
    return model(data).mean() - model(negatives).mean()


def mmd2_naive(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> float:
    """Biased MMD² with one Gaussian kernel, the way the scripts log it."""

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * bandwidth**2))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def published_logging(
    energy_fn: Callable, particles: torch.Tensor, data: torch.Tensor, size: int = 200
) -> dict:
    """The scripts' per-iteration logging: grid log-likelihood of the data batch on 200² over [-5, 5]², MMD²."""
    with torch.no_grad():
        xs = torch.linspace(-5, 5, size)
        pts = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
        cell = (xs[1] - xs[0]) ** 2
        log_z = torch.logsumexp(-energy_fn(pts).double(), 0) + torch.log(cell.double())
        ll = float((-energy_fn(data)).double().mean() - log_z)
        return {"log_likelihood": ll, "mmd2": mmd2_naive(particles, data)}


class NaiveLoop:
    """One training loop written the way the authors' scripts work, for the speed comparison.

    Same hyper-parameters as a ``pdviz.training.TrainConfig`` (network, batch, particles, K, step sizes)
    and the same order as ``Trainer.step`` (negatives, loss and Adam step, then the PD move and
    corrections), so the two loops do the same arithmetic and differ only in how they do it: a
    ``deepcopy`` of the model every step, fields by double backward through ``parameters_to_vector``, a
    ``Normal`` rebuilt per energy call, ``.data`` updates, the global RNG, no cached gradients.
    The initial particles are base samples (``n_init_steps`` is not replayed: it is set-up, not the loop).
    """

    def __init__(self, config: Any, model: NaiveEBM, data_fn: Callable[[int], torch.Tensor]):
        self.c = config
        self.model = model
        self.data_fn = data_fn
        self.opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.betas))
        self.strategy = config.strategy
        self.n_grad = 0
        with torch.no_grad():
            self.base_mean = model.mean.detach().clone()
            self.base_std = model.log_std.exp().detach().clone()
        self.particles = self._base(config.n_particles)
        if self.strategy == "replay":
            self.buffer = self._base(config.buffer_size)

    def _base(self, n: int) -> torch.Tensor:
        return self.base_mean + self.base_std * torch.randn(n, 2)

    def _langevin(self, x: torch.Tensor, n_steps: int, step_size: float, noise: float | None) -> torch.Tensor:
        self.n_grad += n_steps
        noise = math.sqrt(step_size) if noise is None else noise
        return naive_langevin(self.model, x, n_steps, step_size, noise)

    def step(self) -> float:
        """One iteration: negatives, loss, Adam step, then (PD) move the particles toward the new model."""
        c = self.c
        if self.strategy == "short-run":
            neg = self._langevin(self._base(c.n_particles), c.n_steps, c.step_size, c.noise_scale)
        elif self.strategy == "pcd":
            self.particles = self._langevin(self.particles, c.n_steps, c.step_size, c.noise_scale)
            neg = self.particles
        elif self.strategy == "replay":
            idx = torch.randint(0, self.buffer.shape[0], (c.n_particles,))
            x = self.buffer[idx]
            fresh = torch.rand(c.n_particles) < c.reinit_frac
            x[fresh] = self._base(int(fresh.sum()))
            neg = self._langevin(x, c.n_steps, c.replay_step_size, c.replay_noise_scale)
            self.buffer[idx] = neg
        else:
            neg = self.particles
        old = copy.deepcopy(self.model)
        loss = naive_loss(self.model, self.data_fn(c.batch_size), neg)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.strategy in ("pd-alpha", "pd-beta"):
            field = naive_pd_beta_field if self.strategy == "pd-beta" else naive_pd_alpha_field
            v = field(old, self.model, self.particles)
            self.n_grad += 2  # two backward passes through the network on the particles (as pdviz counts)
            p = self.particles.clone()
            p.data = p.data + c.pd_step * v
            self.particles = self._langevin(p, c.n_corrections, c.step_size, c.noise_scale)
        return float(loss.detach())


def speed_variants(quick: bool = False, threads: int = 1) -> list[dict[str, Any]]:
    """The variants of the speed benchmark.

    Every strategy in the clean (pdviz) loop and the naive loop, no logging; then, for PD-beta, the
    clean loop without metrics, with pdviz's metrics every 50 iterations, and the clean and naive loops
    with the scripts' as-published logging every iteration (over at least 50 iterations, so the metric
    cost is amortised honestly).
    """
    n = 6 if quick else 30
    n_m = 50 if quick else 100
    preset = "fast" if quick else "paper"
    variants = []
    for strat in NAIVE_STRATEGIES:
        for loop in ("clean", "naive"):
            variants.append({"strategy": strat, "loop": loop, "logging": "none", "n_iters": n})
    for loop, logging in (
        ("clean", "none"),
        ("clean", "every50"),
        ("clean", "published"),
        ("naive", "published"),
    ):
        variants.append(
            {"strategy": "pd-beta", "loop": loop, "logging": logging, "n_iters": n_m, "tag": "metrics"}
        )
    for v in variants:
        v.update(preset=preset, overrides={}, threads=threads)
    return variants


def _speed_setup(
    preset: str, overrides: dict[str, Any], threads: int, seed: int
) -> tuple[Any, Any, Callable[[int], torch.Tensor]]:
    """Threads, seed, the config, a Trainer and the data stream that both speed workers start from."""
    from pdviz import datasets, training

    torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    config = training.make_config(preset, **overrides)
    trainer = training.Trainer(config)
    gen = torch.Generator().manual_seed(1)

    def data_fn(n: int) -> torch.Tensor:
        return datasets.sample(config.dataset, n, generator=gen)

    return config, trainer, data_fn


def speed_worker(variant: dict) -> dict[str, Any]:
    """Measure one variant in this process (call it in a fresh subprocess so that peak RSS is per run)."""
    overrides = dict(variant.get("overrides", {}))
    overrides.update(strategy=variant["strategy"], dataset=variant.get("dataset", "8gaussians"))
    overrides["n_iters"] = variant["n_iters"]
    overrides["eval_every"] = 50 if variant["logging"] == "every50" else 0  # 0: never
    # the initial Langevin steps are set-up, not the loop being timed; the long RSS run keeps them
    overrides.setdefault("n_init_steps", 0)
    config, trainer, data_fn = _speed_setup(
        variant["preset"], overrides, variant.get("threads", 1), variant.get("seed", 0)
    )
    if variant["loop"] == "naive":
        loop = NaiveLoop(config, NaiveEBM.from_ebm(_trainer_model(trainer)), data_fn)
        step, energy_fn = loop.step, loop.model
    else:
        loop = trainer
        step, energy_fn = trainer.step, None
    warmup = 2
    wall, cpu, grads = [], [], []
    log_batch = data_fn(config.batch_size)
    for i in range(warmup + variant["n_iters"]):
        g0 = _n_grad(loop)
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        if variant["logging"] == "published":
            fn = energy_fn if energy_fn is not None else trainer.energy_fn
            parts = loop.particles if variant["loop"] == "naive" else trainer.particles
            published_logging(fn, parts, log_batch)
        t1, c1 = time.perf_counter(), time.process_time()
        if i >= warmup:
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
            grads.append(_n_grad(loop) - g0)
    return {
        "variant": variant,
        "ms_per_iter_wall": 1e3 * statistics.fmean(wall),
        "ms_per_iter_wall_median": 1e3 * statistics.median(wall),
        "ms_per_iter_cpu": 1e3 * statistics.fmean(cpu),
        # standard error of the mean CPU time per iteration: how far apart two variants must be to differ
        "ms_per_iter_cpu_se": 1e3 * statistics.stdev(cpu) / math.sqrt(len(cpu)) if len(cpu) > 1 else None,
        "grad_evals_per_iter": statistics.fmean(grads) if grads and grads[0] is not None else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def speed_pair_worker(
    strategy: str, n_pairs: int = 100, preset: str = "paper", threads: int = 1, seed: int = 0
) -> dict[str, Any]:
    """Clean and naive loop of one strategy in *one* process, stepped alternately, timed pair by pair.

    Separate processes per loop (:func:`speed_worker`) differ by a few per cent from run to run on a shared
    machine, as much as the loops differ. Here both loops start from the same weights and take turns,
    the order flipping every pair, so a slow spell falls on both; the per-pair ratio of CPU times is
    then summarised by its median and a bootstrap 95 % interval of that median. Two warm-up pairs are
    not timed.
    """
    overrides = {"strategy": strategy, "n_iters": n_pairs + 2, "eval_every": 0, "n_init_steps": 0}
    config, trainer, data_fn = _speed_setup(preset, overrides, threads, seed)
    naive = NaiveLoop(config, NaiveEBM.from_ebm(_trainer_model(trainer)), data_fn)
    steps = {"clean": trainer.step, "naive": naive.step}
    cpu: dict[str, list[float]] = {"clean": [], "naive": []}
    for i in range(n_pairs + 2):
        order = ("clean", "naive") if i % 2 == 0 else ("naive", "clean")
        for loop in order:
            c0 = time.process_time()
            steps[loop]()
            if i >= 2:
                cpu[loop].append(time.process_time() - c0)
    ratios = sorted(a / b for a, b in zip(cpu["clean"], cpu["naive"]))
    rng = torch.Generator().manual_seed(seed)
    boot = sorted(
        statistics.median(
            ratios[j] for j in torch.randint(len(ratios), (len(ratios),), generator=rng).tolist()
        )
        for _ in range(1000)
    )
    return {
        "strategy": strategy,
        "preset": preset,
        "pairs": n_pairs,
        "threads": torch.get_num_threads(),
        "clean_ms_cpu_median": 1e3 * statistics.median(cpu["clean"]),
        "naive_ms_cpu_median": 1e3 * statistics.median(cpu["naive"]),
        "clean_over_naive_median": statistics.median(ratios),
        "clean_over_naive_ci95": [boot[24], boot[974]],
        "clean_over_naive_mean_of_sums": sum(cpu["clean"]) / sum(cpu["naive"]),
        "grad_evals_per_iter": {"clean": _grad_per_iter(trainer), "naive": naive.n_grad / (n_pairs + 2)},
    }


def _grad_per_iter(trainer: Any) -> float:
    h = trainer.history
    return (h.n_grad[-1] - h.init_n_grad) / len(h.n_grad)


def _trainer_model(trainer: Any) -> nn.Module:
    for name in ("model", "ebm", "energy"):
        if isinstance(getattr(trainer, name, None), nn.Module):
            return getattr(trainer, name)
    raise InvalidArgumentError("cannot find the trainer's model (expected attribute model, ebm or energy)")


def _n_grad(loop: Any) -> float | None:
    if isinstance(loop, NaiveLoop):
        return loop.n_grad
    h = loop.history
    return float(h.n_grad[-1]) if h.n_grad else float(h.init_n_grad)


def run_speed_variant(variant: dict, timeout: float | None = None) -> dict[str, Any]:
    """Run :func:`speed_worker` for ``variant`` in a fresh Python subprocess and return its result."""
    code = "import json,sys; from pdviz.bench import speed_worker; print(json.dumps(speed_worker(json.loads(sys.argv[1]))))"
    env = {**os.environ, "OMP_NUM_THREADS": str(variant.get("threads", 1))}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(variant)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        return {"variant": variant, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_speed(
    *,
    quick: bool = False,
    variants: Sequence[dict] | None = None,
    progress: bool = True,
    rss_run: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Run the speed-and-memory benchmark, each variant in a fresh subprocess, one after another.

    ``rss_run=True`` adds the long run of the acceptance check (paper preset, 1500 iterations, pdviz
    metrics every 50) whose peak RSS must stay under 1 GB.
    """
    variants = list(variants) if variants is not None else speed_variants(quick, threads)
    if rss_run:
        variants.append(
            {
                "strategy": "pd-beta",
                "loop": "clean",
                "logging": "every50",
                "n_iters": 1500,
                "preset": "paper",
                "overrides": {"n_init_steps": 1000},
                "threads": threads,
                "tag": "rss",
            }
        )
    t0 = time.perf_counter()
    results = [run_speed_variant(v) for v in _progress(variants, progress, "speed")]
    out = {
        "benchmark": "speed",
        "machine": machine_info(),
        "worker_threads": threads,
        "wall_s": time.perf_counter() - t0,
        "results": results,
    }
    out["acceptance"] = speed_acceptance(out)
    return out


def _find(results: list[dict], **match: Any) -> dict | None:
    for r in results:
        v = r["variant"]
        if "error" not in r and all(v.get(k) == m for k, m in match.items()):
            return r
    return None


def speed_acceptance(out: dict) -> dict[str, Any]:
    """Clean vs naive per strategy, the metric-cost ratios and the long run's peak RSS (when present).

    Costs are CPU milliseconds per iteration (process time), which a shared machine disturbs less than
    wall time. The metric overhead is ``every50 - none``; the as-published logging overhead is
    ``published - none`` of the same (clean) loop.
    """
    res = out["results"]
    acc: dict[str, Any] = {"clean_vs_naive": []}
    for strat in NAIVE_STRATEGIES:
        c = _find(res, strategy=strat, loop="clean", logging="none", tag=None)
        n = _find(res, strategy=strat, loop="naive", logging="none", tag=None)
        if c and n:
            acc["clean_vs_naive"].append(
                {
                    "strategy": strat,
                    "clean_ms_cpu": c["ms_per_iter_cpu"],
                    "naive_ms_cpu": n["ms_per_iter_cpu"],
                    "naive_over_clean": n["ms_per_iter_cpu"] / c["ms_per_iter_cpu"],
                    "clean_grad_evals": c["grad_evals_per_iter"],
                    "naive_grad_evals": n["grad_evals_per_iter"],
                    # per gradient evaluation, pdviz's one extra refresh of a cached gradient is factored out
                    "clean_ms_per_grad_eval": c["ms_per_iter_cpu"] / c["grad_evals_per_iter"],
                    "naive_ms_per_grad_eval": n["ms_per_iter_cpu"] / n["grad_evals_per_iter"],
                    "pass": c["ms_per_iter_cpu"] <= n["ms_per_iter_cpu"],
                }
            )
    none = _find(res, loop="clean", logging="none", tag="metrics")
    every50 = _find(res, loop="clean", logging="every50", tag="metrics")
    pub = _find(res, loop="clean", logging="published", tag="metrics")
    naive_pub = _find(res, loop="naive", logging="published", tag="metrics")
    if none and every50 and pub:
        over50 = every50["ms_per_iter_cpu"] - none["ms_per_iter_cpu"]
        over_pub = pub["ms_per_iter_cpu"] - none["ms_per_iter_cpu"]
        acc["metrics"] = {
            "none_ms": none["ms_per_iter_cpu"],
            "every50_ms": every50["ms_per_iter_cpu"],
            "published_ms": pub["ms_per_iter_cpu"],
            "naive_published_ms": naive_pub["ms_per_iter_cpu"] if naive_pub else None,
            "every50_over_none": every50["ms_per_iter_cpu"] / none["ms_per_iter_cpu"],
            "metric_overhead_ms_per_iter": over50,
            "published_overhead_ms_per_iter": over_pub,
            "pass_1.1x": every50["ms_per_iter_cpu"] <= 1.1 * none["ms_per_iter_cpu"],
            "pass_10x_less": over50 <= over_pub / 10,
        }
    rss = _find(res, tag="rss")
    if rss:
        acc["rss_run"] = {"peak_rss_mb": rss["peak_rss_mb"], "pass": rss["peak_rss_mb"] < 1024}
    return acc


def speed_markdown(out: dict) -> str:
    """A markdown table of a speed result."""
    lines = [
        "| strategy | loop | logging | iters | ms/iter (CPU) | ms/iter (wall, median) | grad evals/iter | peak RSS MB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in out["results"]:
        v = r["variant"]
        if "error" in r:
            lines.append(
                f"| {v['strategy']} | {v['loop']} | {v['logging']} | {v['n_iters']} | error: {r['error']} ||||"
            )
            continue
        lines.append(
            f"| {v['strategy']} | {v['loop']} | {v['logging']} | {v['n_iters']} | {_fmt(r['ms_per_iter_cpu'], 1)} | "
            f"{_fmt(r['ms_per_iter_wall_median'], 1)} | {_fmt(r['grad_evals_per_iter'], 1)} | "
            f"{_fmt(r['peak_rss_mb'], 0)} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# the entry point of `pdviz bench`
# --------------------------------------------------------------------------------------------------


def run(
    out_dir: Path, *, quick: bool = False, which: Sequence[str] = BENCHMARKS, progress: bool = True
) -> dict[str, Path]:
    """Run the selected benchmarks and write one JSON each into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Created if needed. Writes ``tracking.json``, ``toy.json`` (plus the per-run JSONs in ``toy_runs/``)
        and ``speed.json``.
    quick : bool
        Reduced sizes: all three together take a few minutes on 2 cores. The full sizes are the
        ``benchmarks/*.py`` scripts.
    which : sequence of str
        Any of ``"tracking"``, ``"toy"``, ``"speed"``.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        Benchmark name -> path of its JSON.
    """
    which = (which,) if isinstance(which, str) else tuple(which)
    for name in which:
        check_choice("benchmark", name, BENCHMARKS, what="benchmark")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    # one torch thread, like every timing here: comparable numbers, and no idle spinning of a second
    # thread that would count as CPU time on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_selected(out_dir, which, quick, progress, paths)
    finally:
        torch.set_num_threads(threads)
    return paths


def _run_selected(out_dir: Path, which: tuple, quick: bool, progress: bool, paths: dict[str, Path]) -> None:
    if "tracking" in which:
        paths["tracking"] = write_json(
            out_dir / "tracking.json", run_tracking(quick=quick, progress=progress)
        )
    if "toy" in which:
        specs = (
            toy_specs(
                datasets=["8gaussians", "rings"],
                strategies=("pcd", "pd-beta"),
                seeds=(0,),
                extra_strategies=(),
                budgets=toy_budgets(quick=True),
            )
            if quick
            else toy_specs()
        )
        summary = run_toy_suite(out_dir / "toy_runs", specs, progress=progress)
        summary["machine"] = machine_info()
        paths["toy"] = write_json(out_dir / "toy.json", summary)
    if "speed" in which:
        paths["speed"] = write_json(out_dir / "speed.json", run_speed(quick=quick, progress=progress))
