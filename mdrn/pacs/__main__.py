"""``python -m mdrn.pacs``: see :mod:`mdrn.pacs.cli`."""

import sys

from mdrn.pacs.cli import main

if __name__ == "__main__":
    sys.exit(main())
