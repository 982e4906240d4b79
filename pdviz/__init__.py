"""pdviz: particle dynamics for learning energy-based models, against the Langevin chains it replaces.

The public modules, bottom layer first (see ``docs/architecture.md``)::

    errors, datasets, energies, grid          the ground: data, analytic energies, exact grids
    models, samplers, flows, metrics           EBMs, Langevin/MALA, particle flows, measurements
    training                                   the contrastive loop and its negative-sample strategies
    plotting, animation                        figures and celluloid animations of recorded histories
    widgets, cli, bench                        ipywidgets apps, the ``pdviz`` command, benchmarks
"""

__version__ = "0.1.0"
