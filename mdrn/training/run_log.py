"""What a run prints and what its log file keeps.

The console shows mdrn's own messages (``mdrn.*`` loggers, INFO and up) and every warning; the run's
log file (``<run>/<job>.log``, e.g. ``train.log``) keeps everything at INFO, Lightning's messages and
Python warnings included. Hydra configures this from ``conf/hydra/job_logging/mdrn.yaml``;
:func:`run_logging` does the same where ``train``/``evaluate`` are called without Hydra (tests,
notebooks). Harmless third-party noise is silenced where it starts (:func:`quiet_third_party`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["CONSOLE_FORMAT", "FILE_FORMAT", "ConsoleHandler", "quiet_third_party", "run_logging"]

CONSOLE_FORMAT = "%(message)s"
FILE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
#: libraries whose loggers have their own console handler; routed to the run's handlers instead
_ROUTED = (
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "lightning_fabric",
    "pytorch_lightning",
    "torchmetrics",
)


class ConsoleHandler(logging.StreamHandler):
    """Writes mdrn's messages (INFO and up) and everyone's warnings to the current ``sys.stdout``.

    The stream is looked up at each record, so a progress bar that redirects stdout (rich) keeps its
    place; other libraries' INFO messages go to the log file only.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter(CONSOLE_FORMAT))

    def filter(self, record: logging.LogRecord) -> bool:
        """mdrn's records from INFO, the others from WARNING."""
        mine = record.name == "mdrn" or record.name.startswith("mdrn.") or record.name == "__main__"
        return record.levelno >= (logging.INFO if mine else logging.WARNING) and super().filter(record)

    def format(self, record: logging.LogRecord) -> str:
        """The message without trailing blank lines (formatted warnings end with one)."""
        return super().format(record).rstrip()

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` to the stdout of the moment."""
        self.stream = sys.stdout
        super().emit(record)


def quiet_third_party() -> Callable[[], None]:
    """Silence known harmless third-party messages at their source (not every warning); return the undo.

    - torch's FutureWarning about ``isinstance(treespec, LeafSpec)``, raised inside Lightning's own code;
    - Lightning's hint that a loader "does not have many workers": our configs choose ``num_workers``
      on purpose (the sample data is a memory-mapped cache; evaluation loaders hold one image each);
    - Lightning's INFO messages (devices, tips, checkpoint restored) reach the run's handlers, so they
      are kept in the log file, not printed; Python warnings are logged (console and log file).
    """
    leafspec = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
    warnings.filterwarnings("ignore", message=leafspec, category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers")
    logging.captureWarnings(True)
    undo = _route_lightning()

    def restore() -> None:
        logging.captureWarnings(False)
        undo()

    return restore


def _route_lightning() -> Callable[[], None]:
    """Let Lightning's loggers reach the root handlers (console filter, log file) instead of their own."""
    if not logging.getLogger().handlers:
        return lambda: None
    saved = []
    for name in _ROUTED:
        lg = logging.getLogger(name)
        own = [
            h
            for h in lg.handlers
            if type(h) is logging.StreamHandler and h.stream in (sys.stderr, sys.stdout)
        ]
        saved.append((lg, own, lg.propagate))
        for h in own:
            lg.removeHandler(h)
        lg.propagate = True

    def undo() -> None:
        for lg, own, propagate in saved:
            for h in own:
                lg.addHandler(h)
            lg.propagate = propagate

    return undo


@contextlib.contextmanager
def run_logging(log_file: str | Path | None) -> Iterator[None]:
    """Console and log-file handlers for the run when nobody (Hydra) configured logging; then quiet noise.

    Under Hydra (``hydra/job_logging: mdrn``) the handlers exist already and only the noise is
    silenced; otherwise the handlers added here are removed on exit, and the loggers restored.
    """
    root = logging.getLogger()
    added: list[logging.Handler] = []
    old_level = root.level
    if not root.handlers:
        added = [ConsoleHandler()]
        if log_file is not None:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            added.append(logging.FileHandler(log_file))
            added[-1].setFormatter(logging.Formatter(FILE_FORMAT))
        for h in added:
            root.addHandler(h)
        root.setLevel(logging.INFO)
    restore = quiet_third_party()
    try:
        yield
    finally:
        if added:
            restore()
            for h in added:
                root.removeHandler(h)
                h.close()
            root.setLevel(old_level)
