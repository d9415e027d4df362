"""``python -m wavdiff_utils.evaluate``: see :mod:`wavdiff_utils.evaluate.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
