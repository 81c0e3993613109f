"""Training and evaluation runs: the LightningModule (``module``), the model-selection rule
(``selection``), callbacks, the run's console and log (``run_log``), its report files (``report``),
the multirun summary (``sweep``) and config helpers (``config``). The entry points are ``mdrn.train``
and ``mdrn.evaluate``."""
