"""``python -m fastbp``: the ``fastbp`` command-line tool (see :mod:`fastbp.cli`)."""

import sys

from fastbp.cli import main

if __name__ == "__main__":
    sys.exit(main())
