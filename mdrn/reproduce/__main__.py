"""``python -m mdrn.reproduce``: see :mod:`mdrn.reproduce.cli`."""

from mdrn.reproduce.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
