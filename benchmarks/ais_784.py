"""AIS in 784-D on a Gaussian with known log Z: widths 0.05-1 (log-spaced), 100 chains (issue 24).

Usage (from the repository root)::

    .venv/bin/python benchmarks/ais_784.py            # K = 100, 1,000, 5,000; seeds 0-1 (about 8 CPU-minutes)
    .venv/bin/python benchmarks/ais_784.py --quick --out /tmp/a.json   # K = 20, seed 0, 20 chains (the test)

Per K: plain AIS (standard-normal base, one adaptive MALA step size), and AIS with a pilot's base and frozen
diagonal preconditioner (``ais.pilot``, two rounds of 200 temperatures), forward from the base (a stochastic
lower bound) and in reverse from exact samples (a stochastic upper bound). Writes ``benchmarks/ais_784.json`` (``--out``)
and prints the Markdown table of ``benchmarks/RESULTS.md``.
"""

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import torch

from pdviz import ais

D, CHAINS, KS, SEEDS = 784, 100, (100, 1000, 5000), (0, 1)
STD = torch.exp(torch.linspace(math.log(0.05), 0.0, D))


def energy(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((x / STD) ** 2).sum(1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def markdown(rows: list[dict]) -> str:
    """The table of RESULTS.md: per K and seed, each estimate's error of log Z (nats) and its ESS."""
    lines = [
        "| K | seed | plain AIS (ESS) | pilot + preconditioner, forward (ESS) | reverse from exact samples (ESS) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['K']:,} | {r['seed']} | {r['plain']:+.2f} ({r['plain_ess']:.1f}) | {r['lower']:+.2f} "
                     f"({r['lower_ess']:.1f}) | {r['upper']:+.2f} ({r['upper_ess']:.1f}) |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/ais_784.json")
    parser.add_argument("--quick", action="store_true", help="K = 20, seed 0, 20 chains, a 20-step pilot")
    args = parser.parse_args()
    if args.quick and args.out is None:
        parser.error("--quick does not write over the shipped ais_784.json; give --out")
    chains, ks, seeds, pilot_steps = (20, (20,), (0,), 20) if args.quick else (CHAINS, KS, SEEDS, 200)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the ESS of the plain runs is ~1: that is what the table shows
    truth, rows = ais.gaussian_log_z(STD), []
    for seed in seeds:
        t = time.process_time()
        mean, scales = ais.pilot(energy, D, n_steps=pilot_steps, n_chains=chains, generator=gen(10 + seed))
        pilot_cpu = time.process_time() - t
        kw = dict(n_chains=chains, base_mean=mean, base_std=scales, scales=scales)
        for k in ks:
            plain = ais.ais_log_z(energy, D, n_steps=k, n_chains=chains, generator=gen(100 * k + seed))
            lower = ais.ais_log_z(energy, D, n_steps=k, generator=gen(100 * k + seed), **kw)
            exact = STD * torch.randn(chains, D, generator=gen(100 * k + seed + 50))
            upper = ais.ais_log_z(energy, D, n_steps=k, start=exact, generator=gen(100 * k + seed + 70), **kw)
            row = dict(seed=seed, K=k, plain=plain.log_z - truth, plain_ess=plain.ess, lower=lower.log_z - truth,
                       lower_ess=lower.ess, upper=upper.log_z - truth, upper_ess=upper.ess, pilot_cpu_s=pilot_cpu)  # fmt: skip
            rows.append(row)
            print(row, flush=True)
    out = args.out or Path(__file__).with_name("ais_784.json")
    out.write_text(json.dumps({"truth": truth, "rows": rows}, indent=1) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
