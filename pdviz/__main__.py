"""``python -m pdviz``: the same as the ``pdviz`` command."""

import sys

from pdviz.cli import main

sys.exit(main())
