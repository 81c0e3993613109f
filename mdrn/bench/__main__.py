"""``python -m mdrn.bench``: run the benchmark (see :mod:`mdrn.bench`)."""

import sys

from mdrn.bench.cli import main

sys.exit(main())
