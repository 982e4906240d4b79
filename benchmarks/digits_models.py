"""Notebook 07's shipped digits models: PCD and PD-beta trained on the 8x8 digits far past the notebook's
minute, each shipped at its best checkpoint by validation log-likelihood, scored on the test digits.

Each strategy trains as ``pdviz train --preset digits --strategy S --seed 0 --iters N`` would (one torch
thread), keeping a checkpoint every 500 iterations in ``--work`` (default ``runs/digits_models``; a run
found there is resumed). Every checkpoint is scored by AIS (K = 300, 64 chains) on 360 *training* digits,
the validation set; the best one is copied to ``benchmarks/digits_models/S.pt`` (a full Trainer checkpoint,
weights only, about 0.6 MB: the notebook loads it with ``Trainer.load`` and can train it further) and scored
on the 360 test digits by AIS with K = 1000, twice with independent seeds. ``summary.json`` holds the
validation curve, the choice and the test numbers. Usage (from the repository root)::

    nice -n 19 .venv/bin/python benchmarks/digits_models.py [--iters 6000] [--work runs/digits_models]
"""

import argparse
import shutil
import time
from pathlib import Path

import torch

from pdviz import ais, images, sweep, training
from pdviz.errors import DivergenceError

OUT = Path(__file__).with_name("digits_models")
STRATEGIES = ("pcd", "pd-beta")
EVERY = 500
LEVELS = images.IMAGE_DATASETS["digits"].levels


def train(strategy: str, iters: int, work: Path) -> str:
    """Train (or resume from the last kept checkpoint) to ``iters``, keeping one file every EVERY iterations."""
    kept = sorted(work.glob(f"{strategy}-*.pt"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    if kept:
        trainer = training.Trainer.load(kept[-1], n_iters=iters)
    else:
        trainer = training.Trainer(training.make_config("digits", strategy=strategy, seed=0, n_iters=iters))

    def keep(t: training.Trainer, _info: dict) -> None:
        if t.iteration % EVERY == 0:
            t.save(work / f"{strategy}-{t.iteration}.pt")

    try:
        trainer.run(progress=True, callback=keep)
    except DivergenceError as err:  # the kept checkpoints before it stay candidates
        return f"diverged: {err}"
    return "done"


def log_likelihood(trainer: training.Trainer, x: torch.Tensor, n_steps: int, seed: int) -> ais.AISLikelihood:
    gen = torch.Generator().manual_seed(seed)
    return ais.ais_log_likelihood(
        trainer.model, x, n_steps=n_steps, n_chains=64, levels=LEVELS, generator=gen
    )


def choose(strategy: str, work: Path) -> dict:
    """Validation AIS of every kept checkpoint; the best is copied to OUT and scored on the test digits."""
    x_val = images.load("digits", "train", generator=torch.Generator().manual_seed(0))[:360]
    curve = {}
    for path in sorted(work.glob(f"{strategy}-*.pt"), key=lambda p: int(p.stem.rsplit("-", 1)[1])):
        trainer = training.Trainer.load(path)
        curve[trainer.iteration] = log_likelihood(trainer, x_val, 300, seed=1).nats_per_image
        print(
            f"{strategy} {trainer.iteration}: validation {curve[trainer.iteration]:.2f} nats/image",
            flush=True,
        )
    best = max(curve, key=curve.get)
    shutil.copyfile(work / f"{strategy}-{best}.pt", OUT / f"{strategy}.pt")
    trainer = training.Trainer.load(OUT / f"{strategy}.pt")
    x_test = images.load("digits", "test", generator=torch.Generator().manual_seed(0))
    tests = [log_likelihood(trainer, x_test, 1000, seed) for seed in (1, 2)]
    c, m = trainer.history.curves, trainer.history.meta
    return {"validation_nats_per_image": curve, "shipped_iteration": best,
            "test_nats_per_image": [r.nats_per_image for r in tests], "test_bits_per_dim": [r.bits_per_dim for r in tests],
            "grad_evals": c["n_grad"][-1] - m["init_n_grad"], "cpu_s": c["cpu_time"][-1]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6000)
    parser.add_argument("--work", type=Path, default=Path("runs/digits_models"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(exist_ok=True)
    summary = {
        "command": f"python benchmarks/digits_models.py --iters {args.iters}",
        "machine": sweep.machine_info(),
    }
    for s in STRATEGIES:
        t0 = time.perf_counter()
        status = train(s, args.iters, args.work)
        summary[s] = {"status": status, **choose(s, args.work), "wall_s": time.perf_counter() - t0}
        print(s, summary[s], flush=True)
    sweep.write_json(OUT / "summary.json", summary)


if __name__ == "__main__":
    main()
