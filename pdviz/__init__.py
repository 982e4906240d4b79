"""pdviz: particle dynamics for learning energy-based models, against the Langevin chains it replaces.

The modules, bottom layer first (``docs/architecture.md``)::

    errors, datasets, energies, grid         the ground: data, analytic energies, exact grids
    config                                   the training configuration: fields, ranges, presets
    models, samplers, flows, metrics         EBMs, Langevin/MALA/SVGD, particle flows, measurements
    images, ais                              image data, annealed importance sampling
    strategies, training, checkpoint         negative-sample strategies, the training loop, safe files
    plotting, animation                      figures and animations of recorded histories
    exercises, widgets, demo, bench, cli     exercises, ipywidgets apps, the main job, benchmarks, command

``import pdviz`` is cheap (``pdviz --version`` must not load torch): the names below are imported on first
use (PEP 562), so ``pdviz.train`` or ``from pdviz import Trainer`` loads the maths then. The pictures and
front ends are imported by name (``from pdviz import plotting``), so the maths never pulls in matplotlib or
ipywidgets. The version has one source, the package metadata (``pyproject.toml``).
"""

import importlib
from importlib import metadata

try:
    __version__ = metadata.version("pdviz")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_MODULES = "ais checkpoint config datasets energies errors flows grid images metrics models objectives samplers strategies training"
_NAMES = {
    **dict.fromkeys(
        "CheckpointError DataError DivergenceError InvalidArgumentError PdvizError UnknownNameError".split(),
        "pdviz.errors",
    ),
    "track": "pdviz.flows",
    "Grid": "pdviz.grid",
    "EBM": "pdviz.models",
    "ConvEBM": "pdviz.models",
    "Trainer": "pdviz.training",
    "make_config": "pdviz.training",
    "train": "pdviz.training",
}
__all__ = sorted([*_NAMES, "__version__"])


def __getattr__(name: str):
    """The public modules and names, imported on first use."""
    if name in _MODULES.split():
        return importlib.import_module(f"pdviz.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'pdviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES.split(), *_NAMES])
