"""pdviz: particle dynamics for learning energy-based models, against the Langevin chains it replaces.

The modules, bottom layer first (``docs/architecture.md``)::

    errors, datasets, energies, grid         the ground: data, analytic energies, exact grids
    models, samplers, flows, metrics         EBMs, Langevin/MALA/SVGD, particle flows, measurements
    images, ais                              image data, annealed importance sampling
    strategies, training, checkpoint         negative-sample strategies, the training loop, safe files
    plotting, animation                      figures and animations of recorded histories
    exercises, widgets, demo, bench, cli     exercises, ipywidgets apps, the main job, benchmarks, command

``import pdviz`` loads the maths; the pictures and front ends are imported by name
(``from pdviz import plotting``), so that the maths never pulls in matplotlib or ipywidgets.
"""

from pdviz import (  # noqa: F401  (the public modules, re-exported)
    ais,
    checkpoint,
    datasets,
    energies,
    flows,
    grid,
    images,
    metrics,
    models,
    samplers,
    strategies,
    training,
)
from pdviz.errors import (
    CheckpointError,
    DataError,
    DivergenceError,
    InvalidArgumentError,
    PdvizError,
    UnknownNameError,
)
from pdviz.flows import track
from pdviz.grid import Grid
from pdviz.models import EBM, ConvEBM
from pdviz.training import Trainer, make_config, train

__version__ = "0.2.0"
__all__ = [
    "CheckpointError",
    "ConvEBM",
    "DataError",
    "DivergenceError",
    "EBM",
    "Grid",
    "InvalidArgumentError",
    "PdvizError",
    "Trainer",
    "UnknownNameError",
    "__version__",
    "make_config",
    "track",
    "train",
]
