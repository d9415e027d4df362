"""``python -m wavdiff_utils``: the command line of :mod:`wavdiff_utils.jobs.cli`."""
import sys

from .jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
