"""Execute one notebook for the site, as CI's notebook tests run it: ``python docs/execute.py IN.ipynb OUT.ipynb``.

Runs in the notebook's own folder with ``PDVIZ_FAST=1`` and the Agg backend and writes the executed copy to
``OUT`` (the committed notebook stays output-free). ``make docs`` calls it only for the notebooks whose copy in
``build/notebooks`` is missing or older than the notebook; CI's notebook tests leave fresh copies there.
"""

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

source, target = Path(sys.argv[1]), Path(sys.argv[2])
os.environ.update(PDVIZ_FAST="1", MPLBACKEND="Agg")
nb = nbformat.read(source, as_version=4)
NotebookClient(
    nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}
).execute()
target.parent.mkdir(parents=True, exist_ok=True)
nbformat.write(nb, target)
