"""Notebook 08's shipped digits models: PCD and PD-beta trained on the 8x8 digits far past the notebook's
minute, each shipped at its best checkpoint by validation log-likelihood, scored on the test digits.

Each strategy trains as ``pdviz train --preset digits --strategy S --seed 0 --iters N`` would (one torch
thread), keeping a checkpoint every 500 iterations in ``--work`` (default ``runs/digits_models``; a run
found there is resumed). Every checkpoint is scored by AIS (K = 300, 64 chains) on 360 *training* digits,
the validation set; the best one is copied to ``benchmarks/digits_models/S.pt`` (a full Trainer checkpoint,
weights only, about 0.6 MB: the notebook loads it with ``Trainer.load`` and can train it further) and scored
on the 360 test digits by AIS with K = 1000, twice with independent seeds. Every AIS run starts from a base
and a diagonal preconditioner that a pilot (``ais.pilot``, its own seed) fixed beforehand, so the estimate
stays unbiased, and reports its effective sample size. ``summary.json`` holds the validation curve, the choice
and the test numbers with their ESS. Usage (from the repository root)::

    nice -n 19 .venv/bin/python benchmarks/digits_models.py [--iters 6000] [--work runs/digits_models]
    nice -n 19 .venv/bin/python benchmarks/digits_models.py --evaluate-only   # re-score the shipped models

``--evaluate-only`` trains nothing: it re-scores the shipped models on the test digits (about 30 CPU-s) and
rewrites only the test numbers of ``summary.json`` (``--quick``: K = 20, a smoke test; ``--out`` elsewhere).
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from pdviz import ais, images, sweep, training
from pdviz.errors import DivergenceError

OUT = Path(__file__).with_name("digits_models")
STRATEGIES = ("pcd", "pd-beta")
EVERY = 500
CHAINS, TEST_SEEDS, PILOT_STEPS = 64, (1, 2), 500
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


def log_likelihood(
    trainer: training.Trainer, x: torch.Tensor, n_steps: int, seed: int, pilot_steps: int = PILOT_STEPS
) -> ais.AISLikelihood:
    """AIS test log-likelihood of ``x`` [n, 64] with CHAINS chains and ``n_steps`` temperatures.

    A pilot (``ais.pilot``: two rounds of ``pilot_steps`` temperatures from the model's own Gaussian base,
    seed ``100 + seed``) gives a base mean and per-pixel widths; the run (seed ``seed``) starts from that base
    with those widths as a frozen diagonal preconditioner, so ``Ẑ`` stays unbiased. The result carries the ESS.
    """
    mean, std = trainer.model.ais_base()
    mean, scales = ais.pilot(trainer.model, x.shape[1], n_steps=pilot_steps, n_chains=CHAINS, base_mean=mean,
                             base_std=std, generator=torch.Generator().manual_seed(100 + seed))  # fmt: skip
    return ais.ais_log_likelihood(trainer.model, x, n_steps=n_steps, n_chains=CHAINS, levels=LEVELS,
                                  base_mean=mean, base_std=scales, scales=scales,
                                  generator=torch.Generator().manual_seed(seed))  # fmt: skip


def score_test(trainer: training.Trainer, n_steps: int, pilot_steps: int = PILOT_STEPS) -> dict:
    """The test digits scored twice (seeds 1 and 2) with :func:`log_likelihood`: the summary's test fields."""
    x_test = images.load("digits", "test", generator=torch.Generator().manual_seed(0))
    t0 = time.process_time()
    runs = [log_likelihood(trainer, x_test, n_steps, seed, pilot_steps) for seed in TEST_SEEDS]
    for seed, r in zip(TEST_SEEDS, runs):
        print(f"  test AIS seed {seed}: {r.nats_per_image:.2f} ± {r.log_z_std_err:.2f} nats/image, "
              f"{r.bits_per_dim:.3f} bits/dim, ESS {r.ess:.1f} of {CHAINS}", flush=True)  # fmt: skip
    return {"test_nats_per_image": [r.nats_per_image for r in runs], "test_bits_per_dim": [r.bits_per_dim for r in runs],
            "test_ess": [r.ess for r in runs], "test_log_z_std_err": [r.log_z_std_err for r in runs],
            "test_ais": {"n_steps": n_steps, "n_chains": CHAINS, "seeds": list(TEST_SEEDS), "pilot_steps": pilot_steps,
                         "cpu_s": time.process_time() - t0}}  # fmt: skip


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
    c, m = trainer.history.curves, trainer.history.meta
    return {"validation_nats_per_image": curve, "validation_ais": {"n_steps": 300, "n_chains": CHAINS, "pilot": True},
            "shipped_iteration": best, **score_test(trainer, 1000),
            "grad_evals": c["n_grad"][-1] - m["init_n_grad"], "cpu_s": c["cpu_time"][-1]}  # fmt: skip


def evaluate_only(out: Path, quick: bool) -> None:
    """Re-score the shipped models on the test digits; rewrite only the test fields of the summary."""
    summary = json.loads((OUT / "summary.json").read_text())
    n_steps, pilot_steps = (20, 20) if quick else (1000, PILOT_STEPS)
    summary["evaluate_command"] = "python benchmarks/digits_models.py --evaluate-only" + " --quick" * quick
    summary["evaluate_machine"] = sweep.machine_info()
    for s in STRATEGIES:
        print(s, flush=True)
        summary[s].update(score_test(training.Trainer.load(OUT / f"{s}.pt"), n_steps, pilot_steps))
    sweep.write_json(out, summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=6000)
    parser.add_argument("--work", type=Path, default=Path("runs/digits_models"))
    parser.add_argument(
        "--evaluate-only", action="store_true", help="re-score the shipped models, train nothing"
    )
    parser.add_argument("--quick", action="store_true", help="with --evaluate-only: K = 20 (a smoke test)")
    parser.add_argument("--out", type=Path, default=OUT / "summary.json", help="with --evaluate-only")
    args = parser.parse_args()
    if args.quick and (not args.evaluate_only or args.out == OUT / "summary.json"):
        parser.error(
            "--quick is a smoke test of --evaluate-only: give both, and --out away from the shipped summary"
        )
    torch.set_num_threads(1)
    if args.evaluate_only:
        return evaluate_only(args.out, args.quick)
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
