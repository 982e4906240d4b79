"""Sphinx configuration of the documentation site (``make docs``: warnings are errors).

Sphinx because the docstrings cross-reference with Sphinx roles (``:func:``, ``:class:``, ``:data:``), which
autodoc resolves natively; MyST-NB reads the Markdown pages and renders the notebooks from the executed copies
that ``make docs`` puts in ``notebooks/`` (it never executes them itself).
"""

import pdviz

project = "pdviz"
author = "pdviz developers"
release = version = pdviz.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "gallery", "notebooks/.gitignore"]

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
# the copies are executed before the build (PDVIZ_FAST=1), as CI's notebook tests run them
nb_execution_mode = "off"
nb_output_stderr = "remove"  # tqdm's progress bars and warnings of the kernel, not the teaching

autodoc_member_order = "bysource"
# `set`: the setter matplotlib generates on every Artist subclass (NotebookFigure), not ours
autodoc_default_options = {"members": True, "exclude-members": "set"}
napoleon_google_docstring = False  # the docstrings are NumPy style
napoleon_use_ivar = True  # a NamedTuple's Attributes section and its fields, documented once
autodoc_typehints = "description"

html_theme = "furo"
html_title = f"pdviz {version}"


def _plain_text(app, what, name, obj, options, lines):
    """Two docstrings write RST markup characters as plain text (``|value|`` in errors, ``*rest`` in grid)."""
    lines[:] = [line.replace(" |value| ", r" \|value\| ").replace(", *rest]", r", \*rest]") for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text)
