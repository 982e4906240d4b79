"""Image scale on a CPU: AIS against known answers, then PD-beta against PCD on the 8x8 digits.

Part 1 (``ais``): annealed importance sampling on normalisers we know exactly: a 784-D diagonal Gaussian
(std in [0.5, 2], standard-normal base) against the number of temperatures, and two 2-D energies against
the grid's log Z. Part 2 (``digits``): PD-beta and PCD train the same ImageEBM on the digits for the same
wall-clock budget, three seeds each; each model is scored by its AIS test log-likelihood (nats per image
and bits/dim, AIS repeated with independent seeds to show its spread).

Usage (from the repository root)::

    .venv/bin/python benchmarks/images_cpu.py                 # both parts, ~20 min on one thread
    .venv/bin/python benchmarks/images_cpu.py --quick --out /tmp/i.json   # tiny sizes, seconds (the test)
    .venv/bin/python benchmarks/images_cpu.py --part digits --seconds 60 --seeds 0 1 2

Writes ``benchmarks/images_cpu.json`` (``--out``; ``--quick`` needs one) and prints the markdown tables of
section 8 of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from pdviz import ais, energies, grid, images, training
from pdviz.errors import DivergenceError


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else math.nan)


# --- part 1: AIS against known answers -------------------------------------------------------------


def ais_gaussian(steps: list[int], runs: int, chains: int, dim: int = 784) -> list[dict]:
    """Error of AIS log Z on a d-D Gaussian with diagonal std in [0.5, 2] for each number of temperatures."""
    std = 0.5 + 1.5 * torch.rand(dim, generator=_gen(5))

    def energy(x):
        return 0.5 * ((x / std) ** 2).sum(1)

    truth = ais.gaussian_log_z(std)
    rows = []
    for k in steps:
        errs, ses, secs = [], [], []
        for r in range(runs):
            t = time.perf_counter()
            res = ais.ais_log_z(energy, dim, n_steps=k, n_chains=chains, generator=_gen(1000 + r))
            secs.append(time.perf_counter() - t)
            errs.append(res.log_z - truth)
            ses.append(res.log_z_std_err)
        mean, sd = _mean_sd(errs)
        rows.append(
            dict(
                dim=dim, n_steps=k, n_chains=chains, runs=runs, true_log_z=truth, errors=errs,
                error_mean=mean, error_sd=sd, std_err_mean=statistics.fmean(ses),
                seconds_per_run=statistics.fmean(secs),
            )
        )  # fmt: skip
        print(f"  gaussian d={dim} K={k}: error {mean:+.3f} ± {sd:.3f} nats", flush=True)
    return rows


def ais_grid(runs: int, chains: int, n_steps: int) -> list[dict]:
    """AIS log Z of 2-D energies (shifted by 1.7) against the exact grid value."""
    rows = []
    g = grid.Grid()
    for name, base_std in (("8gaussians", 2.0), ("banana", 1.5)):
        e = energies.get(name)

        def energy(x, e=e):
            return e(x) + 1.7

        ref = g.log_z(energy)
        errs = [
            ais.ais_log_z(
                energy, 2, n_steps=n_steps, n_chains=chains, base_std=base_std, generator=_gen(r)
            ).log_z
            - ref
            for r in range(runs)
        ]
        mean, sd = _mean_sd(errs)
        rows.append(
            dict(energy=name, n_steps=n_steps, n_chains=chains, runs=runs, grid_log_z=ref, errors=errs,
                 error_mean=mean, error_sd=sd)
        )  # fmt: skip
        print(f"  {name}: error {mean:+.4f} ± {sd:.4f} nats", flush=True)
    return rows


# --- part 2: digits, PD-beta against PCD -----------------------------------------------------------


def score(model, x_test, *, n_steps: int, n_chains: int, repeats: int, levels: int) -> dict:
    """AIS test log-likelihood, repeated with independent seeds; the base is the model's own Gaussian."""
    d = x_test.shape[1]
    mean, std = model.ais_base()
    out = []
    for r in range(repeats):
        res = ais.ais_log_likelihood(
            model, x_test, n_steps=n_steps, n_chains=n_chains, base_mean=mean, base_std=std, levels=levels,
            generator=_gen(500 + r),
        )  # fmt: skip
        out.append(res)
    nats = [r.nats_per_image for r in out]
    m, sd = _mean_sd(nats)
    return dict(
        nats_runs=nats,
        nats_per_image=m,
        ais_sd=sd,
        bits_per_dim=images.bits_per_dim(m, d, levels=levels),
        log_z_std_err=statistics.fmean(r.log_z_std_err for r in out),
        data_std_err=out[0].data_std_err,
        mean_neg_energy=out[0].mean_neg_energy,
    )


def digits(
    strategies: list[str],
    seeds: list[int],
    seconds: float | None,
    ais_steps: int,
    ais_chains: int,
    repeats: int,
):
    """Each strategy and seed trained for ``seconds`` of wall clock (None: 5 iterations, ``--quick``), then
    scored; the untrained model (its Gaussian base, exact) first."""
    x_test = images.load("digits", "test", generator=_gen(0))
    levels = images.IMAGE_DATASETS["digits"].levels
    d = x_test.shape[1]
    rows = []
    # reference: the untrained model is its Gaussian base, whose log-likelihood is exact
    tr0 = training.Trainer(training.make_config("digits", strategy="pcd", seed=0, n_init_steps=0))
    base = tr0.model
    with torch.no_grad():
        exact = float(-base.base_energy(x_test.double()).mean())
    s = score(base, x_test, n_steps=ais_steps, n_chains=ais_chains, repeats=repeats, levels=levels)
    rows.append(dict(strategy="base only (untrained)", seed=0, exact_nats_per_image=exact, **s))
    print(f"  base: exact {exact:.2f}, AIS {s['nats_per_image']:.2f} nats/image", flush=True)
    budget = dict(n_iters=5) if seconds is None else dict(time_budget=seconds)
    # interleaved (seed-major), so that a change in the machine's load falls on both strategies alike
    for seed in seeds:
        for strategy in strategies:
            tr = training.Trainer(training.make_config("digits", strategy=strategy, seed=seed, **budget))
            row = dict(strategy=strategy, seed=seed, seconds=seconds)
            try:
                tr.run(progress=False)
            except DivergenceError as err:
                row.update(diverged=str(err))
            h = tr.history
            row.update(
                iterations=tr.iteration,
                loop_seconds=tr.loop_time(),
                loop_cpu_seconds=h.curves["cpu_time"][-1]
                if h.curves.get("cpu_time")
                else h.meta["init_cpu_time"],
                n_grad=h.curves["n_grad"][-1] if h.curves.get("n_grad") else h.meta["init_n_grad"],
                final_loss=statistics.fmean(h.curves["loss"][-20:]) if h.curves.get("loss") else math.nan,
            )
            if "diverged" not in row:
                with torch.no_grad():
                    e_data = tr.model(x_test)
                    e_neg = tr.model(tr.particles)
                row.update(
                    e_data_mean=float(e_data.mean()),
                    e_neg_mean=float(e_neg.mean()),
                    **score(
                        tr.model,
                        x_test,
                        n_steps=ais_steps,
                        n_chains=ais_chains,
                        repeats=repeats,
                        levels=levels,
                    ),
                )
                print(
                    f"  {strategy} seed {seed}: {tr.iteration} iterations, "
                    f"{row['nats_per_image']:.2f} ± {row['ais_sd']:.2f} nats/image, {row['bits_per_dim']:.3f} bits/dim",
                    flush=True,
                )
            else:
                print(f"  {strategy} seed {seed}: diverged ({row['diverged']})", flush=True)
            rows.append(row)
    summary = []
    for strategy in strategies:
        mine = [r for r in rows if r["strategy"] == strategy and "nats_per_image" in r]
        m, sd = _mean_sd([r["nats_per_image"] for r in mine])
        summary.append(
            dict(
                strategy=strategy,
                runs=len(mine),
                diverged=sum(1 for r in rows if r["strategy"] == strategy and "diverged" in r),
                nats_per_image=m,
                seed_sd=sd,
                bits_per_dim=images.bits_per_dim(m, d, levels=levels) if math.isfinite(m) else math.nan,
                ais_sd=statistics.fmean(r["ais_sd"] for r in mine) if mine and repeats > 1 else math.nan,
                iterations=statistics.fmean(r["iterations"] for r in mine) if mine else math.nan,
                grad_evals=statistics.fmean(r["n_grad"] for r in mine) if mine else math.nan,
            )
        )
    return rows, summary


# --- report ---------------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    lines = []
    if result.get("ais_gaussian"):
        lines += [
            "| temperatures K | chains | runs | error of log Z (mean ± sd over runs), nats | mean AIS std err | s/run |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["ais_gaussian"]:
            lines.append(
                f"| {r['n_steps']} | {r['n_chains']} | {r['runs']} | {r['error_mean']:+.2f} ± {r['error_sd']:.2f} | "
                f"{r['std_err_mean']:.2f} | {r['seconds_per_run']:.1f} |"
            )
        lines.append("")
    if result.get("ais_grid"):
        lines += [
            "| 2-D energy | K | chains | runs | error vs grid log Z, nats |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for r in result["ais_grid"]:
            lines.append(
                f"| {r['energy']} | {r['n_steps']} | {r['n_chains']} | {r['runs']} | "
                f"{r['error_mean']:+.4f} ± {r['error_sd']:.4f} |"
            )
        lines.append("")
    if result.get("digits"):
        lines += [
            "| model | seed | iterations | grad evals | nats/image (AIS runs) | bits/dim | E data | E negatives |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["digits"]:
            if "diverged" in r:
                lines.append(
                    f"| {r['strategy']} | {r['seed']} | {r['iterations']} | {r['n_grad']} | diverged | | | |"
                )
                continue
            runs = ", ".join(f"{v:.2f}" for v in r["nats_runs"])
            extra = f" (exact {r['exact_nats_per_image']:.2f})" if "exact_nats_per_image" in r else ""
            lines.append(
                f"| {r['strategy']} | {r['seed']} | {r.get('iterations', 0)} | {r.get('n_grad', 0)} | "
                f"{r['nats_per_image']:.2f} [{runs}]{extra} | {r['bits_per_dim']:.3f} | "
                f"{r.get('e_data_mean', math.nan):.1f} | {r.get('e_neg_mean', math.nan):.1f} |"
            )
        lines += [
            "",
            "| strategy | runs (diverged) | nats/image, mean ± sd over seeds | bits/dim | AIS sd | iterations | grad evals |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in result["digits_summary"]:
            lines.append(
                f"| {s['strategy']} | {s['runs']} ({s['diverged']}) | {s['nats_per_image']:.2f} ± {s['seed_sd']:.2f} | "
                f"{s['bits_per_dim']:.3f} | {s['ais_sd']:.2f} | {s['iterations']:.0f} | {s['grad_evals']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "ais", "digits"], default="all")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (K = 20, 8 chains, 5 iterations); needs --out"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="training budget per run (60)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=["pd-beta", "pcd"])
    parser.add_argument("--ais-steps", type=int, default=1000, help="AIS temperatures for the digits models")
    parser.add_argument("--ais-chains", type=int, default=64)
    parser.add_argument("--ais-repeats", type=int, default=2, help="independent AIS runs per model")
    parser.add_argument("--out", default=None, help="default: benchmarks/images_cpu.json")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick does not write over the shipped images_cpu.json; give --out")
    args.out = args.out or str(Path(__file__).with_name("images_cpu.json"))
    torch.set_num_threads(1)
    if args.quick:
        args.seconds, args.seeds, args.ais_steps, args.ais_chains = None, [0], 20, 8
    result: dict = dict(
        command="python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        machine=dict(
            platform=platform.platform(), processor=_cpu_name(),
            cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
            python=platform.python_version(),
        ),
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
    )  # fmt: skip
    t0 = time.perf_counter()
    if args.part in ("all", "ais"):
        print("AIS against known answers", flush=True)
        steps = [20] if args.quick else [300, 1000, 3000, 10000]
        result["ais_gaussian"] = ais_gaussian(
            steps, runs=2 if args.quick else 4, chains=8 if args.quick else 64
        )
        result["ais_grid"] = ais_grid(
            runs=2 if args.quick else 4, chains=500 if args.quick else 4000, n_steps=20 if args.quick else 200
        )
    if args.part in ("all", "digits"):
        print("digits: PD-beta against PCD", flush=True)
        rows, summary = digits(
            args.strategies, args.seeds, args.seconds, args.ais_steps, args.ais_chains, args.ais_repeats
        )
        result["digits"], result["digits_summary"] = rows, summary
        result["digits_settings"] = dict(
            seconds=args.seconds, ais_steps=args.ais_steps, ais_chains=args.ais_chains, ais_repeats=args.ais_repeats,
            preset={k: list(v) if isinstance(v, tuple) else v for k, v in training.PRESETS["digits"].items()},
        )  # fmt: skip
    result["total_seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    if args.part != "all" and out.is_file():
        # one part re-run: keep the other part's results from the previous file
        previous = json.loads(out.read_text())
        keep = (
            ("ais_gaussian", "ais_grid")
            if args.part == "digits"
            else ("digits", "digits_summary", "digits_settings")
        )
        result.update({k: previous[k] for k in keep if k in previous and k not in result})
        result["command"] = f"{previous.get('command', '')}; then {result['command']}"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwrote {args.out}\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
