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

Every grid is a product of datasets × budgets × strategies × seeds (at most MAX_RUNS runs); a run's result
is ``<runs>/<budget>__<dataset>__<strategy>__s<seed>.json``, holding :func:`spec_key`, a hash of the run's
full resolved configuration. :func:`run` skips the runs whose result exists with the same key, so a killed
sweep resumes and a changed ``overrides`` or budget reruns what it changes, and submits the others, one
torch thread each, to a ``concurrent.futures`` executor: a local process pool (whose workers die with the
sweep, and stop on SIGTERM or SIGHUP), or ``distributed.Client(scheduler).get_executor()`` (Dask) when a
scheduler address is given. A budget with ``done_elsewhere`` is never trained here: the finished run
directory there (``pdviz train --out``) enters the sweep as a done result under the same key. Every value
of a sweep file is checked when it is read, by the checks of ``pdviz train``'s config.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import reprlib
import signal
import socket
import statistics
import string
import struct
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pdviz import checkpoint, training
from pdviz.config import TrainConfig, read_config
from pdviz.errors import DivergenceError, InvalidArgumentError, UnknownNameError

GRID_KEYS = ("dataset", "strategy", "seed", "budget")
BUDGET_KEYS = ("preset", "n_iters", "cpu_budget", "done_elsewhere")
MAX_RUNS = 10_000  # runs in one sweep file: a few days of the toy suite's CPU budgets on one core
CPU_BUDGET = TrainConfig.__dataclass_fields__["time_budget"].metadata["range"]  # seconds, as time_budget
FINAL_KEYS = ("log_likelihood", "mode_weight_spread", "model_mode_weight_spread", "mmd2")
LAG_KEYS = ("lag", "grad_error", "grad_cosine", "grad_error_floor")  # the lag meter's, averaged over a run


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
    n_iters, cpu_budget, overrides[, done_elsewhere]}`` per point of each grid; paths relative to ``root``.
    Each run's configuration is built (and so checked) before any starts."""
    budgets, grids, overrides = config.get("budgets", {}), config.get("grids"), config.get("overrides", {})
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise InvalidArgumentError("a sweep file needs 'grids': a list of {dataset, strategy, seed, budget}")
    if not isinstance(budgets, dict) or not isinstance(overrides, dict):
        got = f"budgets {type(budgets).__name__}, overrides {type(overrides).__name__}"
        raise InvalidArgumentError(f"'budgets' and 'overrides' must be objects (name -> value), got {got}")
    for grid in grids:
        values = list(grid.values())
        if (
            set(grid) != set(GRID_KEYS)
            or not all(isinstance(v, list) and v for v in values)
            or not all(isinstance(x, (str, int)) for v in values for x in v)
        ):
            raise InvalidArgumentError(f"each grid maps exactly {', '.join(GRID_KEYS)} to lists of names or "
                                       f"seeds, got {reprlib.repr(grid)}")  # fmt: skip
    n_runs = sum(math.prod(len(v) for v in grid.values()) for grid in grids)
    if n_runs > MAX_RUNS:
        raise InvalidArgumentError(
            f"the grids hold {n_runs:,} runs; a sweep file may hold at most {MAX_RUNS:,}"
        )
    for name, budget in budgets.items():
        _check_budget(name, budget)
    specs, checked = [], {}
    for grid in grids:
        for d, b, s, seed in itertools.product(*(grid[k] for k in ("dataset", "budget", "strategy", "seed"))):
            if b not in budgets:
                raise UnknownNameError(
                    f"unknown budget {b!r}; defined: {', '.join(map(str, budgets)) or 'none'}"
                )
            spec = {"budget": b, "preset": "fast", "dataset": d, "strategy": s, "seed": seed, "n_iters": None,
                    "cpu_budget": None, **budgets[b], "overrides": overrides}  # fmt: skip
            if "done_elsewhere" in spec:
                spec["done_elsewhere"] = str(root / spec["done_elsewhere"].format(strategy=s, seed=seed))
            if repr(spec) not in checked:  # refuse a bad run before any starts; each distinct run once
                checked[repr(spec)] = spec_key(spec)
            specs.append(spec)
    return specs


def _check_budget(name: str, budget: Any) -> None:
    """A budget's keys and the values that are not config fields (``n_iters`` and ``preset`` are checked by
    :func:`pdviz.config.make_config`): ``cpu_budget`` in time_budget's range, ``done_elsewhere`` a path
    with no placeholders but ``{strategy}`` and ``{seed}``."""
    if not isinstance(budget, dict) or set(budget) - set(BUDGET_KEYS):
        raise InvalidArgumentError(f"budget {name!r} must be an object with keys among {', '.join(BUDGET_KEYS)}, "
                                   f"got {budget!r}")  # fmt: skip
    cpu, (low, high) = budget.get("cpu_budget"), CPU_BUDGET
    if cpu is not None and (
        isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not low <= cpu <= high
    ):
        msg = f"cpu_budget must be a number of seconds in [{low:g}, {high:g}]"  # NaN fails the range too
        raise InvalidArgumentError(f"budget {name!r}: {msg}, got {cpu!r}")
    where = budget.get("done_elsewhere")
    if where is not None:
        fields = (
            {f for _, f, _, _ in string.Formatter().parse(where)} - {None} if isinstance(where, str) else {0}
        )
        if fields - {"strategy", "seed"}:
            raise InvalidArgumentError(f"budget {name!r}: done_elsewhere must be a path with no placeholders but "
                                       f"{{strategy}} and {{seed}}, got {where!r}")  # fmt: skip


def load(path: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """A sweep file's runs (:func:`expand`) and its result directory (``"runs"``, relative to the file),
    which may not be the file's own folder or above it: the summary is written beside it (:func:`summary_path`)."""
    path = Path(path)
    config = read_config(path, what="sweep file")
    if not isinstance(config.get("runs"), str) or not config["runs"].strip():
        raise InvalidArgumentError(f"sweep file {str(path)!r} must hold an object with 'runs' (a directory)")
    runs = path.parent / config["runs"]
    if runs.resolve() in (path.parent.resolve(), *path.parent.resolve().parents):
        raise InvalidArgumentError(f"sweep file {str(path)!r}: 'runs' {config['runs']!r} is its own folder or "
                                   "above it; name a folder of its own, e.g. \"runs\"")  # fmt: skip
    if runs.with_suffix(".json").resolve() == path.resolve():
        raise InvalidArgumentError(f"sweep file {str(path)!r}: 'runs' {config['runs']!r} would put the summary "
                                   "over the sweep file itself; name the runs folder otherwise")  # fmt: skip
    return expand(config, path.parent), runs


def summary_path(runs: Path) -> Path:
    """Where a sweep's summary goes: ``<runs>.json`` beside the runs folder, written only over an earlier
    summary (a JSON object with ``"benchmark": "toy"``), never over another file."""
    out = Path(runs).with_suffix(".json")
    if out.exists():
        try:
            ok = json.loads(out.read_text()).get("benchmark") == "toy" if out.is_file() else False
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise InvalidArgumentError(f"the summary {str(out)!r} would replace a file that is not a sweep "
                                       "summary; move it, or name the runs folder otherwise")  # fmt: skip
    return out


def spec_key(spec: dict) -> str:
    """A run's identity: the sha256 (16 hex digits) of its full resolved configuration (every TrainConfig
    field, after the preset, the overrides and the budget) and its ``cpu_budget``. Builds the config, so a
    bad value raises here."""
    try:
        config = training.make_config(spec["preset"], **_overrides(spec)).to_dict()
    except TypeError as err:  # a non-string preset or key
        raise InvalidArgumentError(f"run {run_name(spec)}: {err}") from None
    text = json.dumps({"config": config, "cpu_budget": spec["cpu_budget"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_result(path: Path) -> dict[str, Any]:
    """A run's result file; a file of another kind in the runs folder raises naming it."""
    try:
        result = json.loads(Path(path).read_text())
        ok = isinstance(result, dict) and isinstance(result.get("spec"), dict) and "status" in result
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise InvalidArgumentError(f"{str(path)!r} is not a sweep result (JSON with 'spec' and 'status'); move "
                                   "it out of the runs folder")  # fmt: skip
    return result


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
    return over if spec["n_iters"] is None else {**over, "n_iters": spec["n_iters"]}


def summarise(spec: dict, history: dict[str, Any], iteration: int, cpu_s: float) -> dict[str, Any]:
    """A run's result: its evaluation frames (tensors dropped) and the means over their last 10 %."""
    evals = [
        {k: v for k, v in f.items() if not isinstance(v, torch.Tensor)}
        for f in history["frames"]
        if "log_likelihood" in f
    ]
    tail, c, meta = evals[-max(1, len(evals) // 10) :], history["curves"], history["meta"]
    out = {"spec": spec, "key": spec_key(spec), "machine": machine_info(), "status": "done", "cpu_s": cpu_s,
           "iterations": iteration,
           "evals": evals, "entropy_bound": meta.get("entropy_bound"),
           "grad_evals_per_iter": (c["n_grad"][-1] - meta["init_n_grad"]) / max(iteration, 1)}  # fmt: skip
    lag = {f"{k}_mean": finite_mean([e.get(k) for e in evals[1:]]) for k in LAG_KEYS}  # over the whole run
    return {**out, **lag, **{f"{k}_final": finite_mean([e.get(k) for e in tail]) for k in FINAL_KEYS}}


def run_one(spec: dict, *, progress: bool = False) -> dict[str, Any]:
    """Train one model as ``spec`` says (stopping at ``cpu_budget`` CPU seconds of loop time if given), on
    one torch thread; the held-out numbers are means over the last 10 % of evaluations."""
    torch.set_num_threads(1)
    cpu, c0 = spec["cpu_budget"], time.process_time()
    try:
        tr = training.Trainer(training.make_config(spec["preset"], **_overrides(spec)))
        tr.run(progress=progress, callback=lambda t, _: cpu is None or t.history.curves["cpu_time"][-1] < cpu)
    except DivergenceError as err:
        out = {"spec": spec, "key": spec_key(spec), "machine": machine_info(), "status": "diverged",
               "error": str(err)}  # fmt: skip
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


def _die_with_parent(parent: int) -> None:
    """A pool worker's start: on Linux, ask the kernel to kill this process when the sweep dies (even by
    SIGKILL), so that no run goes on unseen; exit at once if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """Refuse, within ``timeout`` seconds, an address that is not ``tcp://HOST:PORT`` (or tls://), nothing
    listening there, or a server that does not greet like a Dask scheduler (which sends its handshake, one
    small frame, as soon as a connection opens; an HTTP server waits for a request)."""
    match = re.fullmatch(r"(tcp|tls)://\[?([^\s\[\]/]+?)\]?:(\d{1,5})", address or "")
    if match is None or not 0 < int(match[3]) < 65536:
        raise InvalidArgumentError(
            f"--scheduler must be tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), got {address!r}"
        )
    try:
        with socket.create_connection((match[2], int(match[3])), timeout=timeout) as conn:
            first = conn.recv(8) if match[1] == "tcp" else b"\0" * 8
    except OSError as err:  # refused, unreachable, unknown host, or silent (socket.timeout)
        reason = (
            f"no answer within {timeout:g} s" if isinstance(err, TimeoutError) else err.strerror or repr(err)
        )
        raise InvalidArgumentError(f"no Dask scheduler at {address} ({reason})") from None
    if len(first) < 8 or struct.unpack("<Q", first)[0] > 2**20:
        raise InvalidArgumentError(
            f"the server at {address} is not a Dask scheduler (its first bytes {first!r})"
        )


def _executor(stack: contextlib.ExitStack, scheduler: str | None, workers: int):
    """A process pool of ``workers`` (spawned: no inherited threads; each dies with this process), or a Dask
    client's executor."""
    if scheduler is None:
        ctx = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_die_with_parent,
                                                      initargs=(os.getpid(),))  # fmt: skip
        stack.callback(pool.shutdown, wait=False, cancel_futures=True)
        return pool
    check_scheduler(scheduler)
    from distributed import Client  # dask is optional: imported only when a scheduler is given

    client = stack.enter_context(Client(scheduler, timeout="30s"))
    return client.get_executor(pure=False)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGHUP raise KeyboardInterrupt (naming the signal) while the block runs, like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    names = [s for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s)]
    previous = {s: signal.signal(getattr(signal, s), stop) for s in names}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(getattr(signal, s), handler)


def _todo(specs: list[dict[str, Any]], run_dir: Path) -> tuple[list[dict], int, int]:
    """(the specs to run, how many wait for a run elsewhere, how many results are stale): a result counts
    only with the spec's key (:func:`spec_key`); a foreign file in ``run_dir`` raises."""
    for path in sorted(run_dir.glob("*__*.json")):
        read_result(path)
    todo, pending, stale = [], 0, 0
    for spec in specs:
        path = run_dir / run_name(spec)
        if path.exists():
            if _key_of(read_result(path)) == spec_key(spec):
                continue
            stale += 1
        if "done_elsewhere" not in spec:
            todo.append(spec)
        elif (result := done_elsewhere(spec)) is not None:
            write_json(path, result)
        else:
            pending += 1
    return todo, pending, stale


def _key_of(result: dict[str, Any]) -> str | None:
    """The key a result was made under: stored, or (results from before keys) its spec's; None if its spec
    no longer builds a configuration."""
    try:
        return result.get("key") or spec_key(result["spec"])
    except (InvalidArgumentError, KeyError):
        return None


def run(
    specs: list[dict[str, Any]],
    run_dir: str | Path,
    *,
    scheduler: str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, int]:
    """Run every spec whose result is not in ``run_dir`` yet (or was made with another configuration) and
    write each result as it arrives.

    ``scheduler`` None: a local pool of ``workers`` processes; else a Dask scheduler address
    (``tcp://host:8786``, checked first) whose workers run the runs. SIGTERM, SIGHUP and Ctrl-C stop the
    local workers and raise KeyboardInterrupt saying what was kept. Returns ``{total, done, ran,
    elsewhere_pending, stale}``.
    """
    if not isinstance(workers, int) or not 1 <= workers <= 1024:
        raise InvalidArgumentError(f"workers must be an integer in [1, 1024], got {workers!r}")
    run_dir = Path(run_dir)
    todo, pending, stale = _todo(specs, run_dir)
    total = len(specs)
    bar = tqdm(total=total, initial=total - len(todo) - pending, disable=not progress, desc="runs done")
    with _stop_on_signals(), contextlib.ExitStack() as stack, bar:
        if todo:
            pool = _executor(stack, scheduler, workers)
            futures, kept = {pool.submit(run_one, spec): spec for spec in todo}, total - len(todo) - pending
            try:
                for future in concurrent.futures.as_completed(futures):
                    write_json(run_dir / run_name(futures[future]), future.result())
                    bar.update(1)
                    kept += 1
            except KeyboardInterrupt as err:
                for f in futures:
                    f.cancel()
                for p in getattr(pool, "_processes", {}).values():  # the local runs now under way
                    p.terminate()
                msg = f"{err or 'SIGINT'}: stopped the sweep; {kept} results of {total} are in {run_dir}"
                raise KeyboardInterrupt(f"{msg}; the same command resumes") from None
    return {
        "total": total,
        "done": total - pending,
        "ran": len(todo),
        "elsewhere_pending": pending,
        "stale": stale,
    }
