"""The main demo job behind ``pdviz demo --out DIR``: samplers, then PCD against PD-β, in pictures and numbers.

Three parts, all on the 2-D toy data, sized for a laptop (about ``seconds`` of training plus a minute of
sampling, evaluation and drawing on 2 CPU cores):

1. **Samplers on a fixed density.** Exact grid samples of the dataset's exact energy (8 Gaussians by
   default) are run through ULA and MALA with a deliberately large step. MALA's accept/reject keeps the
   density; ULA's cloud spreads (its bias), which the binned KL to the exact density measures.
   -> ``samplers.png``.
2. **Learning with two kinds of negatives.** :class:`pdviz.training.Trainer` (the ``fast`` preset) trains
   one EBM with persistent contrastive divergence (PCD) and one with particle dynamics (PD-β), the time
   budget split equally. Snapshots of the particles and of each model's energy on a coarse grid are taken
   along the way.
3. **Pictures and numbers.** ``comparison.gif`` (both methods step by step over their learned densities),
   ``densities.png`` (the paper's layout: target, PCD, PD-β; densities above, particles below),
   ``curves.png`` (loss, held-out log-likelihood against the data-entropy bound, MMD², mode-weight spread
   against CPU time), ``metrics.json`` and ``index.html`` (a page with the pictures, a plain explanation and
   the table). A table of the final numbers is printed.

The mode-weight spread is ``max - min`` of the shares of points nearest each of the eight centres
(0 = all modes equal), of the particles and of each model's mass on the grid. The paper reports that
PCD's chains, which rarely jump between modes, end with unequal weights over long runs (10 000
iterations) while PD keeps them equal. Within a one-minute demo the measured difference is in the
particles: PD-β's stay more evenly spread than independent samples would be, PCD's about as uneven
(``mode_weight_spread_iid`` in the metrics is that reference).
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pdviz import animation, datasets, energies, metrics, plotting, samplers, training
from pdviz.errors import InvalidArgumentError, check_choice, check_positive
from pdviz.grid import Grid

__all__ = ["run_demo", "METHODS", "OUTPUT_FILES", "sampler_comparison", "train_with_snapshots"]

#: The two training strategies the demo compares, in display order.
METHODS: tuple[str, ...] = ("pcd", "pd-beta")
#: Files ``run_demo`` writes into ``out_dir``.
OUTPUT_FILES: tuple[str, ...] = (
    "samplers.png",
    "comparison.gif",
    "densities.png",
    "curves.png",
    "metrics.json",
    "index.html",
)

# Step sizes of the sampler comparison, per exact energy: about 1.6 times the variance of one mode across
# its narrow direction, where ULA's stationary variance there is s² / (1 - ε / (4 s²)) ≈ 1.7 s², a visible
# bias, while MALA still accepts about three quarters of its proposals. 8 Gaussians: s² = 0.125; rings:
# radial s² = 0.0064 (a step of 0.2 there makes ULA explode).
SAMPLER_STEP_SIZES: dict[str, float] = {"8gaussians": 0.2, "rings": 0.01}
SAMPLER_STEP_SIZE = SAMPLER_STEP_SIZES["8gaussians"]

# Settings the demo changes from the ``fast`` training preset (passed to both methods; only PD uses it).
# At the preset's learning rate (1e-3, ten times the paper's) the PD move ``-h ∇ΔE`` with the paper's
# h = 1 overshoots: PD-alpha and PD-beta diverged after ~200 iterations on 8gaussians (held-out
# log-likelihood from -3.3 to below -7), even with 10 corrections. With h = 0.3 PD-beta learned stably
# and fastest (-2.87 nats after 25 CPU seconds, PCD -3.04), so the demo keeps lr and shortens h.
TRAIN_OVERRIDES: dict[str, Any] = {}  # the fast preset as shipped


def _sizes(small: bool) -> dict[str, int]:
    if small:
        return {
            "n_samples": 500,
            "sampler_steps": 60,
            "grid": 100,
            "anim_grid": 40,
            "frames": 8,
            "n_particles": 300,
            "batch_size": 300,
            "hidden": 64,
            "n_eval": 2000,
            "eval_every": 25,
            "dpi": 60,
        }
    return {
        "n_samples": 2000,
        "sampler_steps": 200,
        "grid": 200,
        "anim_grid": 80,
        "frames": 40,
        "n_particles": 1000,
        "batch_size": 1000,
        "hidden": 128,
        "n_eval": 20000,
        "eval_every": 50,
        "dpi": 80,
    }


def iid_mode_weight_spread(n: int, k: int, *, repeats: int = 500, seed: int = 0) -> float:
    """Mean ``max - min`` of the mode shares of ``n`` independent exact samples of ``k`` equal modes.

    The reference for a particle set's mode-weight spread: independent samples do not hold equal shares
    exactly either (about 0.03 for n = 1000, k = 8), so only spreads well above this are a bias.
    """
    gen = torch.Generator().manual_seed(seed)
    modes = torch.randint(k, (repeats, n), generator=gen) + k * torch.arange(repeats)[:, None]
    shares = torch.bincount(modes.reshape(-1), minlength=repeats * k).reshape(repeats, k).double() / n
    return float((shares.max(1).values - shares.min(1).values).mean())


def _fixed_energy(dataset: str) -> tuple[str, Callable]:
    """The exact energy of ``dataset`` when pdviz has one (8gaussians, rings), else the 8 Gaussians."""
    name = dataset if dataset in SAMPLER_STEP_SIZES and dataset in energies.ENERGIES else "8gaussians"
    return name, energies.get(name)


# --- part 1: samplers --------------------------------------------------------------------------------


def sampler_comparison(
    energy_fn: Callable,
    grid: Grid,
    *,
    n: int = 2000,
    n_steps: int = 200,
    step_size: float = SAMPLER_STEP_SIZE,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Exact grid samples, and ULA and MALA run for ``n_steps`` from those same samples.

    Starting at the target isolates each sampler's stationary error: MALA stays exact, ULA drifts to its
    biased stationary law. Returns ``(samples, metrics)``: name -> [n, 2] and name -> ``{kl,
    acceptance_rate, n_grad}`` (KL: ``pdviz.metrics.kl_to_grid``; ``kl_floor`` is what exact samples of
    this size score, for reference).
    """
    gen = samplers.make_generator(seed)
    exact = grid.sample(energy_fn, n, generator=gen)
    out = {"exact": exact}
    info: dict[str, dict[str, Any]] = {
        "exact": {"kl": metrics.kl_to_grid(exact, energy_fn, grid), "acceptance_rate": None, "n_grad": 0}
    }
    for name in ("ula", "mala"):
        state, hist = samplers.run(
            name, exact, energy_fn, n_steps, step_size=step_size, generator=samplers.make_generator(seed + 1)
        )
        out[name] = state.position
        acc = hist.acceptance_rate[1:]
        info[name] = {
            "kl": metrics.kl_to_grid(state.position, energy_fn, grid),
            "acceptance_rate": float(acc.mean()) if name == "mala" else None,
            "n_grad": int(hist.n_grad[-1]),
        }
    floor = metrics.kl_floor(energy_fn, n, grid, generator=samplers.make_generator(seed + 2))
    for record in info.values():
        record["kl_floor"] = floor
    return out, info


# --- part 2: training with snapshots ------------------------------------------------------------------


def train_with_snapshots(
    config: training.TrainConfig,
    anim_grid: Grid,
    *,
    max_snapshots: int = 40,
    progress: bool = True,
) -> tuple[training.Trainer, list[tuple]]:
    """Train with ``config`` and keep about ``max_snapshots`` evenly spread snapshots for an animation.

    Each snapshot is ``(iteration, particles [n, 2], energy on anim_grid [size, size], info)`` with
    ``info = {n_grad, log_likelihood, mmd2, mode_weight_spread}`` (the latest evaluation), the format of
    :func:`pdviz.animation.animate_training`. The trainer is evaluated at its last iteration, so
    ``trainer.history.evals[-1]`` holds the final numbers. The run length is set by ``config.time_budget``, so the
    number of iterations is not known in advance: snapshots are taken every ``every`` iterations, and when
    there are twice too many, every other one is dropped and ``every`` doubles.
    """
    check_positive("max_snapshots", max_snapshots, integer=True)
    trainer = training.Trainer(config)
    snaps: list[tuple] = []
    every = 1

    def take(tr: training.Trainer) -> tuple:
        h = tr.history
        info = {
            "n_grad": h.n_grad[-1] if h.n_grad else h.init_n_grad,
            "log_likelihood": h.last_eval("log_likelihood"),
            "mmd2": h.last_eval("mmd2"),
            "mode_weight_spread": h.last_eval("mode_weight_spread"),
        }
        return (
            tr.iteration,
            tr.particles.detach().cpu().clone(),
            anim_grid.energy(tr.energy_fn).float(),
            info,
        )

    # the run is bounded by time, so the bar counts seconds of loop time, not iterations
    budget = config.time_budget
    bar = tqdm(
        total=round(budget, 1) if budget else config.n_iters,
        disable=not progress,
        desc=plotting.method_label(config.strategy),
        unit="s" if budget else "it",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} {unit} [{elapsed}{postfix}]",
        leave=True,
    )

    def callback(tr: training.Trainer, _info: dict) -> None:
        nonlocal every, snaps
        if tr.iteration % every == 0:
            snaps.append(take(tr))
            if len(snaps) >= 2 * max_snapshots:
                snaps = snaps[0::2]  # keeps the initial snapshot; the survivors are `every * 2` apart
                every *= 2
        bar.n = min(tr.loop_time(), budget) if budget else tr.iteration
        ll = tr.history.last_eval("log_likelihood")
        text = f"iteration {tr.iteration}" + ("" if ll is None else f", log-lik {ll:.3f}")
        bar.set_postfix_str(text, refresh=False)
        bar.update(0)  # redraws at most every mininterval (0.1 s), not on every iteration

    snaps.append(take(trainer))  # the initial model and particles
    try:
        trainer.run(progress=False, callback=callback)
    finally:
        bar.close()
    if not (trainer.history.evals and trainer.history.evals[-1]["iteration"] == trainer.iteration):
        trainer.evaluate()  # the final numbers belong to the last iteration
    if snaps[-1][0] != trainer.iteration:
        snaps.append(take(trainer))
    else:
        snaps[-1] = take(trainer)  # with the final evaluation in its readout
    return trainer, snaps


# --- part 3: the page ---------------------------------------------------------------------------------

_COLUMNS = (
    ("log_likelihood", "held-out log-likelihood (nats)"),
    ("mmd2", "MMD² (particles vs data)"),
    ("mode_weight_spread", "mode-weight spread, particles"),
    ("model_mode_weight_spread", "mode-weight spread, model"),
    ("iterations", "iterations"),
    ("cpu_seconds", "CPU seconds"),
    ("n_grad", "gradient evaluations"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def format_table(result: dict[str, Any]) -> str:
    """The final numbers of each method as a plain-text table."""
    header = ["method"] + [label for _, label in _COLUMNS]
    rows = [
        [plotting.method_label(m)] + [_cell(rec.get(k)) for k, _ in _COLUMNS]
        for m, rec in result["methods"].items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    iid = result.get("mode_weight_spread_iid")
    if iid is not None:
        lines.append(
            f"mode-weight spread of independent exact samples of the same size: {iid:.3f} on average"
        )
    bound = result.get("entropy_bound")
    if bound is not None:
        lines.append(
            f"data-entropy bound on the held-out log-likelihood: {bound:.3f} nats (no model can exceed it)"
        )
    return "\n".join(lines)


def _html_table(result: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _COLUMNS)
    body = ""
    for m, rec in result["methods"].items():
        cells = "".join(f"<td>{html.escape(_cell(rec.get(k)))}</td>" for k, _ in _COLUMNS)
        body += f"<tr><th>{html.escape(plotting.method_label(m))}</th>{cells}</tr>\n"
    return f"<table>\n<tr><th>method</th>{head}</tr>\n{body}</table>"


def _sampler_rows(result: dict[str, Any]) -> str:
    rows = ""
    for name, rec in result["samplers"].items():
        acc = rec.get("acceptance_rate")
        rows += (
            f"<tr><th>{html.escape(plotting.method_label(name))}</th><td>{_cell(rec['kl'])}</td>"
            f"<td>{'–' if acc is None else _cell(acc)}</td><td>{_cell(rec['n_grad'])}</td></tr>\n"
        )
    return (
        "<table>\n<tr><th>sampler</th><th>KL to the exact density (nats)</th><th>acceptance rate</th>"
        f"<th>gradient evaluations</th></tr>\n{rows}</table>"
    )


def write_index(out_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``index.html``: the pictures (relative links), a plain-language explanation and the tables."""
    pcd, pd = (result["methods"].get(m, {}) for m in METHODS)
    spread_line = ""
    if pcd.get("mode_weight_spread") is not None and pd.get("mode_weight_spread") is not None:
        spread_line = (
            "<p><b>Mode weights.</b> The paper reports that PCD, whose chains rarely jump between modes, learns "
            "visibly unequal mode weights over long runs, while PD keeps all eight equal. In this run the "
            f"mode-weight spread (0 = equal) was {pcd['mode_weight_spread']:.3f} for PCD's particles and "
            f"{pd['mode_weight_spread']:.3f} for PD-β's"
        )
        if pcd.get("model_mode_weight_spread") is not None and pd.get("model_mode_weight_spread") is not None:
            spread_line += (
                f"; for the learned densities themselves it was {pcd['model_mode_weight_spread']:.3f} (PCD) "
                f"and {pd['model_mode_weight_spread']:.3f} (PD-β)"
            )
        spread_line += "."
        iid = result.get("mode_weight_spread_iid")
        if iid is not None:
            spread_line += (
                f" For scale: {result['n_particles']:,} independent exact samples spread by {iid:.3f} on average, "
                "just by chance; only a spread well above that is a bias, and one below it means the particles "
                "are more evenly placed than random draws. A run of a minute is short: compare the curves, "
                "not one number."
            )
        spread_line += "</p>"
    bound = result.get("entropy_bound")
    bound_txt = (
        f" (the dashed line is the data-entropy bound, {bound:.2f} nats: no model can do better)"
        if bound is not None
        else ""
    )
    s = result["samplers"]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pdviz demo: {html.escape(result["dataset"])}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; line-height: 1.5; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}
tr th:first-child {{ text-align: left; }}
.note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Particle dynamics against Langevin chains</h1>
<p>An energy-based model gives every point x an energy E(x); the model's density is proportional to
exp(&minus;E(x)). It learns by lowering the energy of data points and raising the energy of samples of the
model itself (the <i>negatives</i>). Producing those negatives cheaply, and correctly, is the hard part.
This page compares two ways, on the <b>{html.escape(result["dataset"])}</b> data.</p>

<h2>1. Sampling a fixed density: ULA is biased, MALA is not</h2>
<p>Both samplers start from exact samples (left) of the {html.escape(result["sampler_energy"])} density and take
{result["sampler_steps"]} steps of size {result["sampler_step_size"]}. The unadjusted Langevin algorithm (ULA)
drifts to a cloud that is too wide; MALA adds an accept/reject test and stays on the target. The numbers
are the binned KL divergence to the exact density (exact samples of the same size score
{_cell(s["exact"]["kl_floor"])}, the floor from having finitely many points).</p>
<img src="samplers.png" alt="exact, ULA and MALA samples over the target density">
{_sampler_rows(result)}

<h2>2. Learning: PCD against particle dynamics (PD-β)</h2>
<p><b>PCD</b> keeps persistent Langevin chains and runs a few steps on them after each model update.
<b>PD-β</b> instead moves its particles along with the model: after each update it pushes them down the
gradient of the change in energy, then runs a few Langevin corrections. Both had about
{result["seconds_budget"] / 2:.0f} seconds (wall clock) of training each. The animation shows the particles over each
model's learned density as training proceeds; the highlighted particles leave short trails.</p>
<img src="comparison.gif" alt="PCD and PD-beta particles over their learned densities, step by step">
<p>The learned densities (top, one shared colour scale) and the particles (bottom) at the end:</p>
<img src="densities.png" alt="target, PCD and PD-beta densities and particles">
{spread_line}
<p>Training curves against CPU time: the contrastive loss, the held-out log-likelihood{bound_txt}, MMD² between particles and data
(smaller is closer), and the mode-weight spread.</p>
<img src="curves.png" alt="loss, log-likelihood, MMD squared and mode-weight spread curves">

<h2>Final numbers</h2>
{_html_table(result)}
<p class="note">Held-out log-likelihood: exact, by normalising exp(&minus;E) on a {result["grid_size"]}&times;{result["grid_size"]}
grid over [&minus;5, 5]&sup2;. Mode-weight spread: max &minus; min of the shares of the eight modes among the particles
(or, for the model, of its probability mass). Gradient evaluations: of the energy at every particle, summed over
training. Timings depend on the machine and on what else runs on it. Seed {result["seed"]}; total run time
{result["total_seconds"]:.0f} s. Raw numbers: <a href="metrics.json">metrics.json</a>.</p>
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the job ------------------------------------------------------------------------------------------


def run_demo(
    out_dir: str | Path,
    *,
    dataset: str = "8gaussians",
    seconds: float = 60.0,
    seed: int = 0,
    progress: bool = True,
    small: bool = False,
) -> dict[str, Any]:
    """Run the demo and write ``samplers.png``, ``comparison.gif``, ``densities.png``, ``curves.png``,
    ``metrics.json`` and ``index.html`` into ``out_dir`` (created).

    Parameters
    ----------
    out_dir : str or Path
    dataset : str
        A name in ``pdviz.datasets.DATASETS`` (the mode-weight spread needs known mode centres, as for
        ``8gaussians``; elsewhere it is reported as None).
    seconds : float
        Training budget in seconds of loop time, split equally between PCD and PD-β.
    seed : int
    progress : bool
        tqdm progress bars and the printed table.
    small : bool
        Tiny sizes (fewer particles, a smaller network and grids, few frames) for tests and smoke runs.

    Returns
    -------
    dict
        What ``metrics.json`` holds: ``dataset``, ``entropy_bound``, ``samplers`` (name -> kl,
        acceptance_rate, n_grad, kl_floor), ``methods`` (name -> log_likelihood, mmd2, mode_weight_spread,
        model_mode_weight_spread, iterations, seconds, cpu_seconds, n_grad), sizes, timings and ``files``.
    """
    check_choice("dataset", dataset, datasets.DATASETS, what="dataset")
    seconds = float(check_positive("seconds", seconds))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(out_dir, (str, Path)):
        raise InvalidArgumentError(f"out_dir must be a str or Path, got {type(out_dir).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"out_dir {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    size = _sizes(bool(small))
    grid = Grid(-5.0, 5.0, size["grid"])
    anim_grid = Grid(-5.0, 5.0, size["anim_grid"])

    # 1. samplers on the exact energy
    energy_name, energy_fn = _fixed_energy(dataset)
    step_size = SAMPLER_STEP_SIZES[energy_name]
    samples, sampler_info = sampler_comparison(
        energy_fn, grid, n=size["n_samples"], n_steps=size["sampler_steps"], step_size=step_size, seed=seed
    )
    fig = plotting.plot_samplers(
        samples,
        grid,
        energy_fn,
        metrics={
            k: {"kl": v["kl"], "acceptance_rate": v["acceptance_rate"]} for k, v in sampler_info.items()
        },
    )
    fig.suptitle(
        f"Samples of the {energy_name} density after {size['sampler_steps']} steps of size {step_size}"
    )
    fig.savefig(out / "samplers.png", dpi=size["dpi"] + 20)
    t_samplers = time.perf_counter()

    # 2. PCD and PD-beta, the budget split equally
    trainers, snapshots = {}, {}
    for k, method in enumerate(METHODS):
        overrides = {
            "dataset": dataset,
            "strategy": method,
            "seed": seed,
            "time_budget": seconds / len(METHODS),
            "n_particles": size["n_particles"],
            "batch_size": size["batch_size"],
            "hidden": size["hidden"],
            "n_eval": size["n_eval"],
            "eval_every": size["eval_every"],
            "grid_size": size["grid"],
            "snapshot_every": 0,
            **TRAIN_OVERRIDES,
        }
        config = training.make_config("fast", **overrides)
        if progress:
            print(
                f"[{k + 1}/{len(METHODS)}] training {plotting.method_label(method)} for {seconds / len(METHODS):.0f} s"
            )
        trainers[method], snapshots[method] = train_with_snapshots(
            config, anim_grid, max_snapshots=size["frames"], progress=progress
        )

    t_training = time.perf_counter()
    centres = datasets.MODE_CENTRES.get(dataset)
    spread_iid = (
        None if centres is None else iid_mode_weight_spread(size["n_particles"], len(centres), seed=seed)
    )

    # 3. pictures and numbers
    data = datasets.sample(dataset, size["n_particles"], seed=seed + 7)
    target = energy_fn if dataset in energies.ENERGIES else data
    methods: dict[str, dict[str, Any]] = {}
    for method, tr in trainers.items():
        h = tr.history
        final = h.evals[-1]
        methods[method] = {
            "log_likelihood": final.get("log_likelihood"),
            "mmd2": final.get("mmd2"),
            "mode_weight_spread": final.get("mode_weight_spread"),
            "model_mode_weight_spread": final.get("model_mode_weight_spread"),
            "iterations": tr.iteration,
            "seconds": tr.loop_time(),
            "cpu_seconds": h.cpu_time[-1] if h.cpu_time else h.init_cpu_time,
            "n_grad": int(h.n_grad[-1] if h.n_grad else h.init_n_grad),
        }
    models = {m: -grid.energy(tr.energy_fn) for m, tr in trainers.items()}
    particles = {m: tr.particles.detach().cpu() for m, tr in trainers.items()}
    panel_numbers = {
        m: {"log_likelihood": r["log_likelihood"], "mode_weight_spread": r["mode_weight_spread"]}
        for m, r in methods.items()
    }
    fig = plotting.plot_comparison(
        models, particles, grid, target=target, data=data if callable(target) else None, metrics=panel_numbers
    )
    fig.savefig(out / "densities.png", dpi=size["dpi"] + 20)
    entropy_bound = trainers[METHODS[0]].history.entropy_bound
    if entropy_bound is None and dataset in datasets.ENTROPY:
        entropy_bound = -datasets.ENTROPY[dataset]
    fig = plotting.plot_training_curves(
        {m: tr.history for m, tr in trainers.items()}, bound=entropy_bound, x="cpu_time"
    )
    fig.savefig(out / "curves.png", dpi=size["dpi"] + 20)
    anim = animation.animate_training(
        snapshots,
        anim_grid,
        target=target if callable(target) else None,
        max_frames=size["frames"],
        dpi=size["dpi"],
        max_points=500,
        trail=4,
        trail_length=4,  # frames are tens of iterations apart: longer trails become a tangle
        title=f"{dataset}: negatives of PCD and PD-β over each model's density, as training goes",
        align="progress",  # equal time, different iteration counts: show both runs at the same fraction
    )
    animation.save_gif(anim, out / "comparison.gif", fps=6)
    n_frames = anim.n_frames
    del anim

    result = {
        "dataset": dataset,
        "seed": seed,
        "seconds_budget": seconds,
        "small": bool(small),
        "entropy_bound": entropy_bound,
        "mode_weight_spread_iid": spread_iid,
        "n_particles": size["n_particles"],
        "grid_size": size["grid"],
        "sampler_energy": energy_name,
        "sampler_step_size": step_size,
        "sampler_steps": size["sampler_steps"],
        "samplers": sampler_info,
        "methods": methods,
        "animation_frames": n_frames,
        "files": list(OUTPUT_FILES),
    }
    t_end = time.perf_counter()
    # wall-clock seconds of each part (pictures: everything after training, the GIF included)
    result["timings"] = {
        "samplers": t_samplers - t_start,
        "training": t_training - t_samplers,
        "pictures": t_end - t_training,
    }
    result["total_seconds"] = t_end - t_start
    result = _jsonable(result)
    (out / "metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_index(out, result)
    if progress:
        print(format_table(result))
    return result
