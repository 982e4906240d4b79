"""``python -m pdviz`` and the ``pdviz`` command: ``pdviz --version`` answers without loading torch (well
under 0.5 s); every other command goes to :func:`pdviz.cli.main`."""

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pdviz`` command; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        from pdviz import __version__

        print(f"pdviz {__version__}")
        return 0
    from pdviz.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
