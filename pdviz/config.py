"""The configuration of a training run: every field with its valid range, the presets, the learning rate.

:class:`TrainConfig` declares each field's default and range beside it and checks them once, on
construction; :func:`make_config` builds one from a preset (``fast``, ``paper``, ``digits``, ``mnist``) and
overrides; :func:`learning_rate` is the schedule; :func:`read_config` and :func:`to_toml` read and write config files
(TOML, or JSON), :func:`field_help` lists the fields with their ranges. :mod:`pdviz.training` runs a
configuration.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdviz import datasets, images, models
from pdviz.errors import InvalidArgumentError, UnknownNameError
from pdviz.strategies import STRATEGIES

BIG = 2**63 - 1
# keys a resumed run may change: how long it runs, where it writes, what it measures (not the trajectory)
RUN_KEYS = "n_iters time_budget checkpoint_path checkpoint_every eval_every n_eval snapshot_every".split()
DATASET_NAMES = (*datasets.DATASETS, *images.IMAGE_DATASETS, "custom")


def _f(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    choices: Any = None,
    optional: bool = False,
    open_hi: bool = False,
    text: str | None = None,
) -> Any:
    """A config field with its valid range (``lo <= v <= hi``, or ``< hi`` when open_hi) or choices; ``text``
    states the valid values of a tuple or path field (checked in ``_check_pairs``)."""
    meta = {"range": (lo, hi), "choices": choices, "optional": optional, "open_hi": open_hi, "text": text}
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a training run; build one with :func:`make_config` (preset + overrides).

    The defaults are the ``"fast"`` preset. Ranges sit beside the fields and are checked once, on
    construction: a bad value raises InvalidArgumentError naming the field, the value and its range.
    ``noise_scale`` None means ``sqrt(step_size)`` (the true Langevin chain); ``reinit_steps`` > 0 re-initialises
    ``reinit_frac`` of the PD particles each iteration (the replay buffer always re-initialises that share).
    """

    dataset: str = _f("8gaussians", choices=DATASET_NAMES)
    strategy: str = _f("pd-alpha", choices=STRATEGIES)
    preset: str = _f("fast", choices=("fast", "paper", "digits", "mnist"))
    model: str = _f("mlp", choices=("mlp", "conv"))
    image_shape: tuple | None = _f(None, optional=True, text="[C, H, W], ints in [1, 4096]")
    image_size: int | None = _f(None, 4, 256, optional=True)
    channels: tuple = _f((16, 32, 32), text="3 or 4 ints in [1, 4096]")
    image_base: bool = _f(True)
    hidden: int = _f(128, 1, 4096)
    depth: int = _f(2, 1, 16)
    activation: str = _f("swish", choices=models.ACTIVATIONS)
    dequantize: bool = _f(True)
    n_iters: int = _f(3000, 1, 10**8)
    batch_size: int = _f(1000, 1, 10**6)
    n_particles: int = _f(1000, 1, 10**6)
    lr: float = _f(1e-3, 0.0, 1e6)
    betas: tuple = _f((0.0, 0.999), text="[beta1, beta2], each in [0, 1)")
    lr_warmup: int = _f(100, 0, 10**8)
    lr_schedule: str = _f("cosine", choices=("constant", "cosine"))
    lr_final: float = _f(0.1, 0.0, 1.0)
    ema: float = _f(0.995, 0.0, 1.0, open_hi=True)
    grad_clip: float | None = _f(None, 0.0, 1e12, optional=True)
    energy_reg: float = _f(0.0, 0.0, 1e6)
    init: str = _f("base", choices=("base", "uniform", "normal"))
    n_init_steps: int = _f(100, 0, 10**6)
    n_steps: int = _f(20, 0, 10**5)
    step_size: float = _f(1e-2, 1e-12, 1e3)
    noise_scale: float | None = _f(None, 0.0, 1e3, optional=True)
    replay_step_size: float = _f(0.1, 1e-12, 1e3)
    replay_noise_scale: float | None = _f(0.1, 0.0, 1e3, optional=True)
    replay_anneal: str = _f("none", choices=("none", "linear", "geometric"))
    buffer_size: int = _f(10000, 1, 10**7)
    reinit_frac: float = _f(0.1, 0.0, 1.0)
    reinit_steps: int = _f(0, 0, 10**5)
    reinit_step_size: float = _f(1e-2, 1e-12, 1e3)
    reinit_noise: float | None = _f(None, 0.0, 1e3, optional=True)
    pd_step: float = _f(0.2, 1e-12, 1e6)
    n_corrections: int = _f(3, 0, 10**5)
    correction: str = _f("ula", choices=("ula", "mala"))
    field_grid_size: int = _f(100, 4, 1000)
    gamma_lr: float = _f(0.1, 1e-12, 1e6)
    gamma_hidden: int = _f(128, 1, 4096)
    gamma_activation: str = _f("leaky_relu", choices=models.ACTIVATIONS)
    resample_threshold: float = _f(0.5, 0.0, 1.0)
    noise_levels: tuple = _f((0.1,), text="1 to 16 numbers in (0, 100], increasing (dsm, ed: the first, drl)")
    n_perturb: int = _f(4, 1, 64)  # ED holds batch_size × n_perturb contrast points
    ed_w: float = _f(1.0, 1e-12, 1e6)
    eval_every: int = _f(50, 0, 10**8)
    n_eval: int = _f(20000, 1, 10**6)
    snapshot_every: int = _f(100, 0, 10**8)
    grid_size: int = _f(200, 4, 2000)
    grid_low: float = _f(-5.0, -1e6, 1e6)
    grid_high: float = _f(5.0, -1e6, 1e6)
    bound: float = _f(1e3, 1e-12, 1e300)
    loss_bound: float = _f(1e4, 1e-12, 1e300)
    seed: int = _f(0, 0, BIG)
    checkpoint_path: str | None = _f(None, optional=True, text="a file (pdviz train: RUN/checkpoint.pt)")
    checkpoint_every: int | None = _f(None, 1, 10**8, optional=True)
    time_budget: float | None = _f(None, 1e-3, 1e12, optional=True)
    device: str = _f("cpu", choices=("cpu", "cuda"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        self.betas, self.channels = tuple(self.betas), tuple(self.channels)
        self.noise_levels = tuple(self.noise_levels)
        self.image_shape = None if self.image_shape is None else tuple(self.image_shape)
        _check_pairs(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise UnknownNameError listing the valid ones."""
        _check_keys(values)
        return cls(**values)


def _check_field(f: dataclasses.Field, value: Any) -> None:
    """The one generic check: type from the default, then choices or range from the field's metadata."""
    m, name = f.metadata, f.name
    if value is None and m["optional"]:
        return
    if m["choices"] is not None:
        if not isinstance(value, str) or value not in m["choices"]:
            valid = ", ".join(sorted(m["choices"]))
            raise UnknownNameError(f"unknown {name} {value!r}; valid names: {valid}")
        return
    if isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
        return
    if isinstance(f.default, tuple) or name in ("image_shape", "checkpoint_path"):
        if name != "checkpoint_path" and not isinstance(value, (list, tuple)):  # a scalar: --set betas=0.5
            raise InvalidArgumentError(f"{name} must be a list: {m['text']}, got {value!r}")
        return  # the pairs and paths: _check_pairs
    integer = isinstance(f.default, int) or name in ("image_size", "checkpoint_every")
    lo, hi = m["range"]
    kind = "an integer" if integer else "a number"
    bad_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad_type or not math.isfinite(value) or not lo <= value <= hi or (m["open_hi"] and value >= hi):
        end = ")" if m["open_hi"] else "]"
        top = "2**63 - 1" if hi == BIG else f"{hi:g}"
        raise InvalidArgumentError(f"{name} must be {kind} in [{lo:g}, {top}{end}, got {value!r}")


def _check_pairs(c: TrainConfig) -> None:
    """The few rules that involve more than one field, or a tuple."""
    if len(c.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in c.betas):
        raise InvalidArgumentError(f"betas must be a pair (beta1, beta2) in [0, 1), got {c.betas!r}")
    for name, value, sizes in (
        ("image_shape", c.image_shape or (1, 4, 4), (3,)),
        ("channels", c.channels, (3, 4)),
    ):
        if len(value) not in sizes or not all(type(s) is int and 0 < s <= 4096 for s in value):
            raise InvalidArgumentError(f"{name} must be {sizes[-1]} positive ints <= 4096, got {value!r}")
    levels = c.noise_levels
    numbers = all(isinstance(v, (int, float)) and 0 < v <= 100 for v in levels)
    if not (0 < len(levels) <= 16 and numbers and list(levels) == sorted(levels)):
        raise InvalidArgumentError(
            f"noise_levels must be 1 to 16 increasing numbers in (0, 100], got {levels!r}"
        )
    if not c.grid_low < c.grid_high:
        raise InvalidArgumentError(f"grid_low must be < grid_high, got {c.grid_low!r} and {c.grid_high!r}")
    rule = STRATEGIES[c.strategy].check
    if rule is not None and (msg := rule(c)) is not None:
        raise InvalidArgumentError(msg)
    if c.checkpoint_path is not None and not isinstance(c.checkpoint_path, str):
        raise InvalidArgumentError(f"checkpoint_path must be a string or None, got {c.checkpoint_path!r}")


def _check_keys(values: dict[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        keys = f"key{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}"
        raise UnknownNameError(f"unknown config {keys}; valid keys: {', '.join(sorted(names))}")


# The presets: "fast" is the defaults; "paper" the scripts' settings (docs/method.md §6; gamma_lr and the field
# grid are ours); "digits" and "mnist" train a conv energy on images with per-strategy chain settings.
# "fast" = the most held-out log-likelihood per CPU second on 8gaussians (seeds 0-2): pd_step 0.2 (h = 1
# overshoots modes of std 0.35 eightfold), lr 1e-3 with warm-up and cosine decay, EMA 0.995, hidden 128,
# 3 corrections; -2.85 after 3000 iterations (bound -2.83), ~12 ms per iteration on one CPU thread.
# "digits": 8x8 digits on a laptop CPU in about a minute (benchmarks/RESULTS.md section 8): ε = σ² = 0.005
# (ε = 0.01 with lr 1e-3 diverged on one seed of three); pd_step · lr = 1e-4 as in the paper; energy_reg
# 1e-3 (without it both strategies diverged before 2,400 iterations, RESULTS "Issue 16").
# "mnist" (docs/method.md §6): the bare conv net; PD-beta 30 corrections ε = σ² = 1, 10 % of the particles
# re-initialised by 10 steps (ε = 1, σ = 0.005) from noise; PCD and replay 50 steps ε = σ² = 0.1.
# fmt: off
_PAPER = dict(
    hidden=300, depth=2, activation="swish", n_iters=10_000, batch_size=1000, n_particles=1000, lr=1e-4,
    betas=(0.0, 0.999), lr_warmup=0, lr_schedule="constant", lr_final=1.0, ema=0.0, grad_clip=None,
    energy_reg=0.0, n_init_steps=1000, n_steps=20, step_size=1e-2, noise_scale=None, replay_step_size=0.1,
    replay_noise_scale=0.1, buffer_size=10_000, reinit_frac=0.1, pd_step=1.0, n_corrections=10,
    correction="ula", field_grid_size=200, gamma_lr=1e-2, gamma_hidden=300, gamma_activation="leaky_relu")
_IMAGES = dict(model="conv", lr_warmup=0, lr_schedule="constant", ema=0.0, eval_every=0, snapshot_every=0,
               n_eval=1000, bound=1e4, loss_bound=1e8, n_iters=100_000, reinit_frac=0.1, reinit_steps=10)
PRESETS: dict[str, dict[str, Any]] = {
    "paper": _PAPER,
    "fast": {k: TrainConfig.__dataclass_fields__[k].default for k in _PAPER},
    "digits": dict(
        _IMAGES, dataset="digits", batch_size=64, n_particles=64, buffer_size=1000, lr=5e-4, image_base=True,
        energy_reg=1e-3, channels=(16, 32, 32), n_init_steps=50, n_steps=20, step_size=0.005, noise_scale=0.005**0.5,
        replay_step_size=0.005, replay_noise_scale=0.005**0.5, n_corrections=10, pd_step=0.2,
        reinit_step_size=0.005, reinit_noise=0.005),
    "mnist": dict(
        _IMAGES, dataset="mnist", batch_size=128, n_particles=128, buffer_size=1280, lr=1e-4, image_base=False,
        channels=(32, 64, 64), init="normal", n_init_steps=100, n_steps=50, step_size=1.0, noise_scale=1.0,
        replay_step_size=0.1, replay_noise_scale=0.1**0.5, n_corrections=30, pd_step=1.0,
        reinit_step_size=1.0, reinit_noise=0.005, strategies={"pcd": dict(step_size=0.1, noise_scale=0.1**0.5)}),
}
# fmt: on


def make_config(preset: str = "fast", **overrides: Any) -> TrainConfig:
    """A validated :class:`TrainConfig`: the preset's values, its per-strategy values, then ``overrides``.

    >>> make_config("paper", strategy="pcd").n_iters
    10000
    """
    if preset not in PRESETS:
        raise UnknownNameError(f"unknown preset {preset!r}; valid names: {', '.join(sorted(PRESETS))}")
    _check_keys(overrides)
    values = {k: v for k, v in PRESETS[preset].items() if k != "strategies"}
    strategy = overrides.get("strategy", values.get("strategy", "pd-alpha"))
    values.update((STRATEGIES[strategy].settings if strategy in STRATEGIES else None) or {})
    values.update(PRESETS[preset].get("strategies", {}).get(strategy, {}))
    return TrainConfig(**{**values, "preset": preset, **overrides})


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """The learning rate of 0-based ``iteration``: ``lr · (t+1)/warmup`` during warm-up, then constant or
    cosine from ``lr`` to ``lr · lr_final`` over the remaining ``n_iters - warmup`` iterations."""
    lr, warm = config.lr, config.lr_warmup
    if iteration < warm:
        return lr * (iteration + 1) / warm
    if config.lr_schedule == "constant":
        return lr
    progress = min(1.0, (iteration - warm) / max(1, config.n_iters - warm))
    return lr * (config.lr_final + (1.0 - config.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def field_help() -> str:
    """One line per :class:`TrainConfig` field, ``name  default  range``, read from the declared ranges
    (the text ``pdviz train --help`` shows)."""
    lines = []
    for f in dataclasses.fields(TrainConfig):
        m = f.metadata
        if m["choices"] is not None:
            valid = "one of " + ", ".join(sorted(m["choices"]))
        elif isinstance(f.default, bool):
            valid = "true or false"
        elif m["text"] is not None:
            valid = m["text"]
        else:
            lo, hi = m["range"]
            valid = f"[{lo:g}, {'2**63 - 1' if hi == BIG else f'{hi:g}'}{')' if m['open_hi'] else ']'}"
        if m["optional"]:
            valid += ' or "none"'
        lines.append(f"  {f.name:<20} {_toml_value(f.default):<16} {valid}")
    return "\n".join(lines)


def to_toml(values: dict[str, Any]) -> str:
    """A flat dict of config fields as TOML, one ``key = value`` line each; None, which TOML lacks, is
    written as the string ``"none"`` (:func:`read_config` reads it back as None)."""
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())


def _toml_value(v: Any) -> str:
    """One TOML value: a string, bool, int, float (``repr``: ``1e-05``, ``inf``), array, or ``"none"``."""
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v) if isinstance(v, str) else repr(v)


MAX_CONFIG_BYTES = 1_000_000  # a config or sweep file is a page of settings, not a data set


def read_config(path: str | Path, what: str = "--config") -> dict[str, Any]:
    """The config fields in a file: TOML when it ends in ``.toml`` (``tomllib``), else JSON (a run's old
    ``config.json``; a sweep file). ``"none"`` in an optional field is None. A file that is not a regular
    file of at most MAX_CONFIG_BYTES (a FIFO, /dev/zero), or not readable, raises InvalidArgumentError."""
    name, path = str(path), Path(path)
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        got = "is not a regular file" if path.exists() else "does not exist"
        got = f"has {path.stat().st_size:,} bytes" if path.is_file() else got
        limit = f"{MAX_CONFIG_BYTES:,} bytes"
        raise InvalidArgumentError(f"{what} {name!r} {got}; give a {kind} file of at most {limit}")
    try:
        text = path.read_text()
        values = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (OSError, ValueError, RecursionError) as err:  # TOMLDecodeError, JSONDecodeError: ValueErrors
        raise InvalidArgumentError(f"{what} {str(path)!r} is not a readable {kind} file: {err}") from None
    if not isinstance(values, dict):
        raise InvalidArgumentError(f"{what} {str(path)!r} must hold a {kind} table of config fields")
    return with_nones(values)


def with_nones(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the string ``"none"`` of an optional field (TOML has no null) replaced by None."""
    fields = TrainConfig.__dataclass_fields__
    return {k: None if v == "none" and k in fields and fields[k].metadata["optional"] else v
            for k, v in values.items()}  # fmt: skip
