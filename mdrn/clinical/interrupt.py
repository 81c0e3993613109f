"""How a clinician's run stops: Ctrl-C, and SIGTERM (``kill``, ``timeout``, systemd, a batch scheduler)
turned into the same ``KeyboardInterrupt``, so that one set of cleanups runs for both (a volume's
decompressed copy, a series fetched from a PACS, partial files); the commands exit 130 or 143.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Terminated", "sigterm_stops"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, systemd, a batch scheduler) inside :func:`sigterm_stops`."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """Within: SIGTERM stops the run as Ctrl-C does (:class:`Terminated`, a ``KeyboardInterrupt``), so that
    the same cleanups run (a volume's decompressed copy, a series fetched from a PACS, partial files) instead
    of the process ending at once. Outside the main thread, where Python takes no signal, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
