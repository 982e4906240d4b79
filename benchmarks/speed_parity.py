"""Clean vs naive loop, per strategy, paired in one process: is any pdviz strategy slower than the scripts?

Usage (from the repository root, on an otherwise idle core)::

    taskset -c 1 .venv/bin/python benchmarks/speed_parity.py --pairs 200     # writes speed_parity.json
    .venv/bin/python benchmarks/speed_parity.py --quick --out /tmp/s.json     # tiny nets (the test runs it)

The naive loop below is written the way the authors' scripts work (a ``deepcopy`` of the model every
step, fields by double backward through ``parameters_to_vector``, a ``Normal`` rebuilt per energy call,
``.data`` updates, the global RNG, no cached gradients); it does the same arithmetic as ``Trainer.step``
from the same weights. Both loops take turns in one process (the order flipping every pair, so a slow
spell falls on both); the per-pair ratio of CPU times is summarised by its median with a bootstrap 95 %
interval, beside the peak resident memory of the process.
"""

import argparse
import copy
import math
import resource
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from pdviz import bench, datasets, training

STRATEGIES = ("short-run", "pcd", "replay", "pd-alpha", "pd-beta")


class NaiveEBM(nn.Module):
    """``E(x) = mlp(x) - log N(x; μ, diag σ²)``, the Normal rebuilt on every call; weights of an EBM."""

    def __init__(self, ebm: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(ebm.net)
        self.mean = nn.Parameter(ebm.base_mean.detach().clone())
        self.log_std = nn.Parameter(ebm.base_log_std.detach().clone())

    def forward(self, x):
        return self.net(x).squeeze(-1) - torch.distributions.Normal(self.mean, self.log_std.exp()).log_prob(
            x
        ).sum(-1)


def naive_langevin(model, x, n_steps, step_size, noise):
    """ULA the scripts' way: a leaf tensor updated in place through ``.data``."""
    x = x.clone().requires_grad_(True)
    for _ in range(n_steps):
        g = torch.autograd.grad(model(x).sum(), x)[0]
        x.data = x.data - 0.5 * step_size * g + noise * torch.randn_like(x)
    return x.detach()


def naive_pd_beta_field(model_old, model_new, x):
    """``-∇_x ⟨∇_θ E_θold(x), θ_new - θ_old⟩`` by double backward through ``parameters_to_vector``."""
    delta = (
        parameters_to_vector(model_new.parameters()) - parameters_to_vector(model_old.parameters())
    ).detach()
    x = x.detach().clone().requires_grad_(True)
    grads = torch.autograd.grad(model_old(x).sum(), list(model_old.parameters()), create_graph=True)
    return -torch.autograd.grad((parameters_to_vector(grads) * delta).sum(), x)[0]


def naive_pd_alpha_field(model_old, model_new, x):
    """``-∇_x (E_new(x) - E_old(x))``."""
    x = x.detach().clone().requires_grad_(True)
    return -torch.autograd.grad((model_new(x) - model_old(x)).sum(), x)[0]


class NaiveLoop:
    """One iteration as the scripts write it, in the order of ``Trainer.step``: negatives, loss and Adam
    step, then (PD) the move and corrections. Initial particles: base samples (set-up, not timed)."""

    def __init__(self, config, model: NaiveEBM, data_fn):
        self.c, self.model, self.data_fn, self.n_grad = config, model, data_fn, 0
        self.opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.betas))
        self.base = (model.mean.detach().clone(), model.log_std.exp().detach().clone())
        self.particles = self._base(config.n_particles)
        self.buffer = self._base(config.buffer_size) if config.strategy == "replay" else None

    def _base(self, n):
        return self.base[0] + self.base[1] * torch.randn(n, 2)

    def _langevin(self, x, n_steps, step_size, noise):
        self.n_grad += n_steps
        return naive_langevin(
            self.model, x, n_steps, step_size, math.sqrt(step_size) if noise is None else noise
        )

    def step(self) -> float:
        c, s = self.c, self.c.strategy
        if s == "short-run":
            neg = self._langevin(self._base(c.n_particles), c.n_steps, c.step_size, c.noise_scale)
        elif s == "pcd":
            neg = self.particles = self._langevin(self.particles, c.n_steps, c.step_size, c.noise_scale)
        elif s == "replay":
            idx = torch.randint(0, self.buffer.shape[0], (c.n_particles,))
            x = self.buffer[idx]
            fresh = torch.rand(c.n_particles) < c.reinit_frac
            x[fresh] = self._base(int(fresh.sum()))
            neg = self.buffer[idx] = self._langevin(x, c.n_steps, c.replay_step_size, c.replay_noise_scale)
        else:
            neg = self.particles
        old = copy.deepcopy(self.model)
        loss = self.model(self.data_fn(c.batch_size)).mean() - self.model(neg).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if s in ("pd-alpha", "pd-beta"):
            v = (naive_pd_beta_field if s == "pd-beta" else naive_pd_alpha_field)(
                old, self.model, self.particles
            )
            self.n_grad += 2  # two backward passes through the network on the particles (as pdviz counts)
            p = self.particles.clone()
            p.data = p.data + c.pd_step * v
            self.particles = self._langevin(p, c.n_corrections, c.step_size, c.noise_scale)
        return float(loss.detach())


def setup(strategy, preset="paper", seed=0, **overrides):
    """The config, a Trainer and the naive loop from the same weights, and their data stream."""
    torch.manual_seed(seed)
    config = training.make_config(preset, strategy=strategy, eval_every=0, n_init_steps=0, **overrides)
    trainer = training.Trainer(config)
    gen = torch.Generator().manual_seed(1)
    naive = NaiveLoop(
        config, NaiveEBM(trainer.model), lambda n: datasets.sample(config.dataset, n, generator=gen)
    )
    return trainer, naive


def pair(strategy, n_pairs=100, preset="paper", seed=0, **overrides):
    """Both loops stepped in turns; the median per-pair CPU ratio clean/naive with a bootstrap 95 % CI."""
    trainer, naive = setup(strategy, preset, seed, n_iters=n_pairs + 2, **overrides)
    cpu = {"clean": [], "naive": []}
    for i in range(n_pairs + 2):
        for loop, step in (("clean", trainer.step), ("naive", naive.step))[:: 1 if i % 2 == 0 else -1]:
            c0 = time.process_time()
            step()
            if i >= 2:  # two warm-up pairs
                cpu[loop].append(time.process_time() - c0)
    ratios = [a / b for a, b in zip(cpu["clean"], cpu["naive"])]
    gen = torch.Generator().manual_seed(seed)
    boot = sorted(
        statistics.median(
            ratios[j] for j in torch.randint(len(ratios), (len(ratios),), generator=gen).tolist()
        )
        for _ in range(1000)
    )
    h = trainer.history
    return {
        "strategy": strategy,
        "preset": preset,
        "pairs": n_pairs,
        "threads": torch.get_num_threads(),
        "clean_ms_cpu_median": 1e3 * statistics.median(cpu["clean"]),
        "naive_ms_cpu_median": 1e3 * statistics.median(cpu["naive"]),
        "clean_over_naive_median": statistics.median(ratios),
        "clean_over_naive_ci95": [boot[24], boot[974]],
        "grad_evals_per_iter": {
            "clean": (h.curves["n_grad"][-1] - h.meta["init_n_grad"]) / trainer.iteration,
            "naive": naive.n_grad / (n_pairs + 2),
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/speed_parity.json")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    parser.add_argument(
        "--quick", action="store_true", help="3 pairs of a 16-unit net on 32 particles; needs --out"
    )
    args = parser.parse_args()
    if args.quick and args.out is None:
        parser.error("--quick does not write over the shipped speed_parity.json; give --out")
    torch.set_num_threads(1)
    pairs, sizes = (3, dict(hidden=16, n_particles=32, batch_size=32)) if args.quick else (args.pairs, {})
    rows = []
    for strategy in args.strategies:
        rows.append(row := pair(strategy, pairs, args.preset, **sizes))
        low, high = row["clean_over_naive_ci95"]
        print(
            f"{strategy:10s} clean {row['clean_ms_cpu_median']:6.1f} ms  naive {row['naive_ms_cpu_median']:6.1f} ms"
            f"  clean/naive {row['clean_over_naive_median']:.3f} [{low:.3f}, {high:.3f}]",
            flush=True,
        )
    out = args.out or Path(__file__).with_name("speed_parity.json")
    bench.write_json(out, {"machine": bench.machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
