"""``python -m shortinfer``: the same command line as the ``shortinfer`` script."""

import sys

from shortinfer.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
