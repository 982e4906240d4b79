"""Sweeps: many training runs named by one small config file, on a local process pool or a Dask cluster.

A sweep file is JSON::

    {"runs": "../benchmarks/toy_runs",                   # one result JSON per run (relative to the file)
     "budgets": {"cpu": {"preset": "fast", "cpu_budget": 15},
                 "iters": {"preset": "paper", "n_iters": 150},
                 "paper": {"preset": "paper", "n_iters": 10000,
                           "done_elsewhere": "../benchmarks/paper_runs/{strategy}-s{seed}"}},
     "overrides": {"eval_every": 10},                    # TrainConfig fields of every run
     "grids": [{"dataset": ["8gaussians"], "strategy": ["pcd", "pd-beta"], "seed": [0, 1],
                "budget": ["cpu"]}]}

Every grid is a product of datasets × budgets × strategies × seeds; a run's result is
``<runs>/<budget>__<dataset>__<strategy>__s<seed>.json`` (its key). :func:`run` skips the runs whose result
exists, so a killed sweep resumes, and submits the others, one torch thread each, to a
``concurrent.futures`` executor: a local process pool, or ``distributed.Client(scheduler).get_executor()``
(Dask) when a scheduler address is given. A budget with ``done_elsewhere`` is never trained here: the
finished run directory there (``pdviz train --out``) enters the sweep as a done result under the same key.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pdviz import checkpoint, training
from pdviz.errors import DivergenceError, InvalidArgumentError, UnknownNameError

GRID_KEYS = ("dataset", "strategy", "seed", "budget")
BUDGET_KEYS = ("preset", "n_iters", "cpu_budget", "done_elsewhere")
FINAL_KEYS = ("log_likelihood", "mode_weight_spread", "model_mode_weight_spread", "mmd2")


def machine_info() -> dict[str, Any]:
    """The machine a measurement ran on: CPU model, cores, torch threads, load, date (UTC), command."""
    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu_model": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as JSON atomically (a temporary file, then a rename); non-finite floats become null."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, torch.Tensor):
            return plain(v.tolist())
        return None if isinstance(v, float) and not math.isfinite(v) else v

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(plain(obj), indent=1))
    os.replace(tmp, path)
    return path


def finite_mean(values: list) -> float:
    """The mean of the finite numbers in ``values`` (None and NaN skipped); NaN if there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


# --- the sweep file --------------------------------------------------------------------------------


def expand(config: dict[str, Any], root: Path = Path(".")) -> list[dict[str, Any]]:
    """The runs of a sweep file's dict, in file order: one spec ``{budget, preset, dataset, strategy, seed,
    n_iters, cpu_budget, overrides[, done_elsewhere]}`` per point of each grid; paths relative to ``root``."""
    budgets, grids = config.get("budgets", {}), config.get("grids")
    if not isinstance(grids, list) or not grids:
        raise InvalidArgumentError("a sweep file needs 'grids': a list of {dataset, strategy, seed, budget}")
    specs = []
    for grid in grids:
        if set(grid) != set(GRID_KEYS) or not all(isinstance(v, list) and v for v in grid.values()):
            raise InvalidArgumentError(
                f"each grid maps exactly {', '.join(GRID_KEYS)} to lists, got {grid!r}"
            )
        for d, b, s, seed in itertools.product(*(grid[k] for k in ("dataset", "budget", "strategy", "seed"))):
            if b not in budgets or set(budgets[b]) - set(BUDGET_KEYS):
                msg = f"budget {b!r} must be in 'budgets' with keys among {', '.join(BUDGET_KEYS)}"
                raise UnknownNameError(f"{msg}; defined: {', '.join(budgets) or 'none'}")
            spec = {"budget": b, "preset": "fast", "dataset": d, "strategy": s, "seed": seed, "n_iters": None,
                    "cpu_budget": None, **budgets[b], "overrides": config.get("overrides", {})}  # fmt: skip
            if "done_elsewhere" in spec:
                spec["done_elsewhere"] = str(root / spec["done_elsewhere"].format(strategy=s, seed=seed))
            training.make_config(spec["preset"], **_overrides(spec))  # refuse a bad run before any starts
            specs.append(spec)
    return specs


def load(path: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """A sweep file's runs (:func:`expand`) and its result directory (``"runs"``, relative to the file)."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InvalidArgumentError(f"sweep file {str(path)!r} is not a readable JSON file: {err}") from None
    if not isinstance(config, dict) or not isinstance(config.get("runs"), str):
        raise InvalidArgumentError(f"sweep file {str(path)!r} must hold an object with 'runs' (a directory)")
    return expand(config, path.parent), path.parent / config["runs"]


def run_name(spec: dict) -> str:
    """A run's key and file name, e.g. ``iters__8gaussians__pd-beta__s0.json``."""
    return f"{spec['budget']}__{spec['dataset']}__{spec['strategy']}__s{spec['seed']}.json"


# --- one run ---------------------------------------------------------------------------------------


def _overrides(spec: dict) -> dict[str, Any]:
    over = {
        **spec["overrides"],
        "dataset": spec["dataset"],
        "strategy": spec["strategy"],
        "seed": spec["seed"],
    }
    return {**over, "n_iters": spec["n_iters"]} if spec["n_iters"] else over


def summarise(spec: dict, history: dict[str, Any], iteration: int, cpu_s: float) -> dict[str, Any]:
    """A run's result: its evaluation frames (tensors dropped) and the means over their last 10 %."""
    evals = [
        {k: v for k, v in f.items() if not isinstance(v, torch.Tensor)}
        for f in history["frames"]
        if "log_likelihood" in f
    ]
    tail, c, meta = evals[-max(1, len(evals) // 10) :], history["curves"], history["meta"]
    out = {"spec": spec, "machine": machine_info(), "status": "done", "cpu_s": cpu_s, "iterations": iteration,
           "evals": evals, "entropy_bound": meta.get("entropy_bound"),
           "grad_evals_per_iter": (c["n_grad"][-1] - meta["init_n_grad"]) / max(iteration, 1)}  # fmt: skip
    return {**out, **{f"{k}_final": finite_mean([e.get(k) for e in tail]) for k in FINAL_KEYS}}


def run_one(spec: dict, *, progress: bool = False) -> dict[str, Any]:
    """Train one model as ``spec`` says (stopping at ``cpu_budget`` CPU seconds of loop time if given), on
    one torch thread; the held-out numbers are means over the last 10 % of evaluations."""
    torch.set_num_threads(1)
    cpu, c0 = spec["cpu_budget"], time.process_time()
    try:
        tr = training.Trainer(training.make_config(spec["preset"], **_overrides(spec)))
        tr.run(progress=progress, callback=lambda t, _: cpu is None or t.history.curves["cpu_time"][-1] < cpu)
    except DivergenceError as err:
        out = {"spec": spec, "machine": machine_info(), "status": "diverged", "error": str(err)}
        return {**out, "cpu_s": time.process_time() - c0}
    h = tr.history
    return summarise(spec, {"frames": h.frames, "curves": h.curves, "meta": h.meta}, tr.iteration,
                     time.process_time() - c0)  # fmt: skip


def done_elsewhere(spec: dict) -> dict[str, Any] | None:
    """The result of a run trained elsewhere (``spec["done_elsewhere"]``, a ``pdviz train --out``
    directory), read from its checkpoint once it reached ``n_iters``; None while it has not."""
    path = Path(spec["done_elsewhere"]) / "checkpoint.pt"
    if not path.is_file():
        return None
    payload = checkpoint.load_checkpoint(path)
    if payload["iteration"] < (spec["n_iters"] or payload["config"]["n_iters"]):
        return None
    h = payload["history"]
    return summarise(spec, h, payload["iteration"], h["curves"]["cpu_time"][-1])


# --- many runs -------------------------------------------------------------------------------------


def _executor(stack: contextlib.ExitStack, scheduler: str | None, workers: int):
    """A process pool of ``workers`` (spawned: no inherited threads), or a Dask client's executor."""
    if scheduler is None:
        ctx = multiprocessing.get_context("spawn")
        return stack.enter_context(concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx))
    from distributed import Client  # dask is optional: imported only when a scheduler is given

    client = stack.enter_context(Client(scheduler, timeout="30s"))
    return client.get_executor(pure=False)


def run(
    specs: list[dict[str, Any]],
    run_dir: str | Path,
    *,
    scheduler: str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, int]:
    """Run every spec whose result is not in ``run_dir`` yet and write each result as it arrives.

    ``scheduler`` None: a local pool of ``workers`` processes; else a Dask scheduler address
    (``tcp://host:8786``) whose workers run the runs. Returns ``{total, done, ran, elsewhere_pending}``.
    """
    if not isinstance(workers, int) or not 1 <= workers <= 1024:
        raise InvalidArgumentError(f"workers must be an integer in [1, 1024], got {workers!r}")
    run_dir = Path(run_dir)
    todo, pending = [], 0
    for spec in specs:
        path = run_dir / run_name(spec)
        if path.exists():
            continue
        if "done_elsewhere" not in spec:
            todo.append(spec)
        elif (result := done_elsewhere(spec)) is not None:
            write_json(path, result)
        else:
            pending += 1
    total = len(specs)
    bar = tqdm(total=total, initial=total - len(todo) - pending, disable=not progress, desc="runs done")
    with contextlib.ExitStack() as stack, bar:
        if todo:
            pool = _executor(stack, scheduler, workers)
            futures = {pool.submit(run_one, spec): spec for spec in todo}
            stack.callback(lambda: [f.cancel() for f in futures])  # interrupted: start no more runs
            for future in concurrent.futures.as_completed(futures):
                write_json(run_dir / run_name(futures[future]), future.result())
                bar.update(1)
    return {"total": total, "done": total - pending, "ran": len(todo), "elsewhere_pending": pending}
