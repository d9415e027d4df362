"""``python -m wavdiff_utils.train``: the training command line of :mod:`wavdiff_utils.train.loop`."""
import sys

from .loop import main

if __name__ == "__main__":
    sys.exit(main())
