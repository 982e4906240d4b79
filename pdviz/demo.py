"""The main job behind ``pdviz demo --out DIR``: samplers, then PCD against PD-beta, in pictures and numbers.

1. **Samplers on a fixed density.** Exact grid samples of the 8-Gaussian density go through ULA and MALA
   with a deliberately large step: MALA's accept/reject keeps the density, ULA's cloud widens (its bias),
   and the binned KL to the exact density measures it -> ``samplers.png``.
2. **Two kinds of negatives.** One EBM trained with persistent contrastive divergence (PCD), one with
   particle dynamics (PD-beta), the ``fast`` preset, the time budget split equally.
3. **Pictures and numbers.** ``comparison.gif`` (both runs over their learned densities, frame by frame),
   ``densities.png`` (the paper's layout), ``curves.png`` (held-out log-likelihood against the
   data-entropy bound, per CPU second), ``metrics.json`` and ``index.html`` with a table.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pdviz import animation, bench, datasets, energies, metrics, plotting, samplers, training
from pdviz.grid import Grid

METHODS = ("pcd", "pd-beta")
OUTPUT_FILES = ("samplers.png", "comparison.gif", "densities.png", "curves.png", "metrics.json", "index.html")
# ULA's stationary variance on a mode of variance s² is s² / (1 - ε/(4s²)); with s² = 0.125 and ε = 0.2 that
# is 1.7 s², a visible bias, while MALA still accepts about three quarters of its proposals
SAMPLER_STEP = 0.2
SHOWN = ("log_likelihood", "mode_weight_spread", "model_mode_weight_spread")  # under each panel
SIZES = {  # False: the demo; True (small): tests and smoke runs
    False: dict(n_samples=2000, sampler_steps=200, grid=200, frames=40, n_particles=1000, hidden=128, n_eval=20000),
    True: dict(n_samples=500, sampler_steps=60, grid=100, frames=8, n_particles=300, hidden=64, n_eval=2000),
}  # fmt: skip


def sampler_comparison(energy_fn, grid: Grid, *, n: int, n_steps: int, seed: int = 0) -> tuple[dict, dict]:
    """Exact grid samples, then ULA and MALA for ``n_steps`` from those same samples (so each sampler's
    stationary error shows). Returns name -> samples [n, 2] and name -> {kl, kl_floor, acceptance_rate}."""
    exact = grid.sample(energy_fn, n, generator=samplers.make_generator(seed))
    floor = metrics.kl_floor(energy_fn, n, grid, generator=samplers.make_generator(seed + 2))
    out, info = {"exact": exact}, {"exact": {"kl": metrics.kl_to_grid(exact, energy_fn, grid)}}
    for name in ("ula", "mala"):
        gen = samplers.make_generator(seed + 1)
        state, h = samplers.run(name, exact, energy_fn, n_steps, step_size=SAMPLER_STEP, generator=gen)
        out[name] = state.position
        rate = h.series("acceptance_rate")[1][1:]
        kl = metrics.kl_to_grid(state.position, energy_fn, grid)
        info[name] = {"kl": kl, "acceptance_rate": sum(rate) / len(rate) if name == "mala" else None}
    for record in info.values():
        record["kl_floor"] = floor
    return out, info


def _train(
    method: str, dataset: str, seconds: float, seed: int, size: dict, progress: bool
) -> training.Trainer:
    """One run of the fast preset for ``seconds`` of loop time with ``size["frames"] + 1`` evaluations and
    snapshots (the animation's frames): at the start and each time the loop time passes another
    ``seconds / frames``, so a busy machine gives as many frames as a quiet one; a progress bar in seconds."""
    cfg = training.make_config(
        "fast", dataset=dataset, strategy=method, seed=seed, time_budget=seconds, n_particles=size["n_particles"],
        batch_size=size["n_particles"], hidden=size["hidden"], n_eval=size["n_eval"], eval_every=0,
        snapshot_every=0, grid_size=size["grid"])  # fmt: skip
    tr = training.Trainer(cfg)
    marks = [seconds * k / size["frames"] for k in range(1, size["frames"] + 1)]  # loop times of the frames

    def frame() -> None:
        tr.history.record(tr.iteration, **tr.evaluate(record=False), position=tr.particles.cpu())

    frame()
    bar = tqdm(total=round(seconds, 1), disable=not progress, desc=plotting.method_label(method), unit="s",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} s [{elapsed}{postfix}]")  # fmt: skip

    def show(t: training.Trainer, _info: dict) -> bool:
        if marks and t.loop_time() >= marks[0]:  # one frame however many marks this iteration passed
            while marks and t.loop_time() >= marks[0]:
                marks.pop(0)
            frame()
        bar.n = min(t.loop_time(), seconds)
        bar.set_postfix_str(f"iteration {t.iteration}", refresh=False)
        bar.update(0)  # redraws at most every 0.1 s
        return True

    with bar:
        tr.run(progress=False, callback=show)
    if tr.history.frames[-1]["step"] != tr.iteration:  # the final numbers belong to the last iteration
        frame()
    return tr


def _summary(tr: training.Trainer) -> dict[str, Any]:
    last, c = tr.history.frames[-1], tr.history.curves
    keys = ("log_likelihood", "mmd2", "mode_weight_spread", "model_mode_weight_spread")
    return {
        **{k: last.get(k) for k in keys},
        "iterations": tr.iteration,
        "seconds": tr.loop_time(),
        "cpu_seconds": c["cpu_time"][-1],
        "n_grad": int(c["n_grad"][-1]),
    }


def write_index(out: Path, result: dict[str, Any]) -> Path:
    """``index.html``: the pictures, what they show, and the table of measured numbers."""
    names = {
        "log_likelihood": "held-out log-likelihood (nats)",
        "mmd2": "MMD²",
        "mode_weight_spread": "particles' mode-weight spread",
        "model_mode_weight_spread": "learned density's mode-weight spread",
        "iterations": "iterations",
        "n_grad": "gradient evaluations",
    }
    head = "".join(f"<th>{html.escape(plotting.method_label(m))}</th>" for m in result["methods"])
    rows = "".join(
        f"<tr><td>{v}</td>"
        + "".join(f"<td>{plotting.format_metrics({k: r[k]})}</td>" for r in result["methods"].values())
        + "</tr>"
        for k, v in names.items()
    )
    bound = result["entropy_bound"]
    page = f"""<!doctype html><meta charset="utf-8"><title>pdviz demo: {html.escape(result["dataset"])}</title>
<h1>Particle dynamics against Langevin chains on {html.escape(result["dataset"])}</h1>
<p>Exact samples, then ULA and MALA with a large step: ULA's cloud widens (its bias), MALA's does not.</p>
<img src="samplers.png"><p>Two EBMs trained for {result["seconds_budget"]:.0f} s in all: PCD
moves persistent Langevin chains; PD-β moves its particles with the model, along -∇ΔE, then corrects them.
No model can beat the data-entropy bound ({"-" if bound is None else f"{bound:.3f}"} nats).</p>
<img src="comparison.gif"><img src="densities.png"><img src="curves.png">
<table border="1"><tr><th></th>{head}</tr>{rows}</table>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def run_demo(
    out_dir: str | Path,
    *,
    dataset: str = "8gaussians",
    seconds: float = 60.0,
    seed: int = 0,
    progress: bool = True,
    small: bool = False,
) -> dict[str, Any]:
    """Run the demo and write :data:`OUTPUT_FILES` into ``out_dir`` (created); returns what
    ``metrics.json`` holds. ``seconds`` of training in all, split between PCD and PD-beta; ``small``:
    tiny sizes for tests. The CLI checks the arguments."""
    out, size, t0 = Path(out_dir), SIZES[bool(small)], time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    grid, energy_fn = Grid(-5.0, 5.0, size["grid"]), energies.get("8gaussians")
    samples, sampler_info = sampler_comparison(
        energy_fn, grid, n=size["n_samples"], n_steps=size["sampler_steps"], seed=seed
    )
    fig = plotting.plot_samplers(samples, grid, energy_fn, metrics=sampler_info)
    fig.savefig(out / "samplers.png")
    trainers, share = {}, seconds / len(METHODS)
    for k, method in enumerate(METHODS):
        if progress:
            print(f"[{k + 1}/{len(METHODS)}] training {plotting.method_label(method)} for {share:.0f} s")
        trainers[method] = _train(method, dataset, share, seed, size, progress)
    t_train = time.perf_counter()
    histories = {m: tr.history for m, tr in trainers.items()}
    data = datasets.sample(dataset, size["n_particles"], seed=seed + 7)
    result = {
        "dataset": dataset,
        "seed": seed,
        "seconds_budget": seconds,
        "small": bool(small),
        "entropy_bound": trainers["pcd"].history.meta.get("entropy_bound"),
        "samplers": sampler_info,
        "methods": {m: _summary(tr) for m, tr in trainers.items()},
    }
    models = {m: tr.energy_fn for m, tr in trainers.items()}
    particles = {m: tr.particles.cpu() for m, tr in trainers.items()}
    shown = {m: {k: r[k] for k in SHOWN} for m, r in result["methods"].items()}
    fig = plotting.plot_comparison(models, particles, grid, target=data, metrics=shown)
    fig.savefig(out / "densities.png")
    plotting.plot_training_curves(histories, x="cpu_time").savefig(out / "curves.png")
    frames = size["frames"] + 1  # the page's caption says what the animation shows: no title over the panels
    anim = animation.animate(
        histories, grid=grid, max_frames=frames, max_points=500, trail=4, trail_length=4, align="progress"
    )
    animation.save(anim, out / "comparison.gif", fps=6)
    result["animation_frames"] = len(list(anim.new_frame_seq()))
    result["timings"] = {"training": t_train - t0, "total": time.perf_counter() - t0}
    result["machine"] = bench.machine_info()
    bench.write_json(out / "metrics.json", result)
    write_index(out, json.loads((out / "metrics.json").read_text()))
    if progress:
        for m, r in result["methods"].items():
            print(f"{plotting.method_label(m):8s} {plotting.format_metrics(r, sep='  ')}")
    return result
