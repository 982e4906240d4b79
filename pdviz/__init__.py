"""pdviz: particle dynamics for learning energy-based models, against the Langevin chains it replaces.

The public modules, bottom layer first (see ``docs/architecture.md``)::

    errors, datasets, energies, grid          the ground: data, analytic energies, exact grids
    models, samplers, flows, metrics           EBMs, Langevin/MALA, particle flows, measurements
    images, ais                                image data and annealed importance sampling
    training, checkpoint                       the contrastive loop, its strategies, safe checkpoints
    plotting, animation                        figures and celluloid animations of recorded histories
    widgets, demo, bench, cli                  ipywidgets apps, the main job, benchmarks, the command

Modules load on first use (``pdviz.flows``, ``pdviz.widgets`` ...), so ``import pdviz`` stays light and
the optional notebook dependencies (ipywidgets) are only needed by ``pdviz.widgets``.

Examples
--------
>>> import pdviz
>>> x = pdviz.datasets.sample("8gaussians", 1000, seed=0)
>>> pdviz.metrics.log_likelihood(pdviz.energies.get("8gaussians"), x)  # doctest: +SKIP
-2.84...
"""

from __future__ import annotations

import importlib
from typing import Any

from pdviz.errors import (
    CheckpointError,
    DataError,
    DivergenceError,
    InvalidArgumentError,
    PdvizError,
    UnknownNameError,
)

__version__ = "0.1.0"

_MODULES = (
    "ais",
    "animation",
    "bench",
    "checkpoint",
    "cli",
    "datasets",
    "demo",
    "energies",
    "errors",
    "exercises",
    "flows",
    "grid",
    "images",
    "metrics",
    "models",
    "plotting",
    "samplers",
    "training",
    "widgets",
)

# the most used names, loaded from their modules on first access
_NAMES = {
    "Grid": "grid",
    "EBM": "models",
    "ConvEBM": "models",
    "Trainer": "training",
    "make_config": "training",
    "train": "training",
    "track": "flows",
}

__all__ = [
    "CheckpointError",
    "DataError",
    "DivergenceError",
    "InvalidArgumentError",
    "PdvizError",
    "UnknownNameError",
    "__version__",
    *_MODULES,
    *_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"pdviz.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"pdviz.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'pdviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
