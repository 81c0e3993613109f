"""The paper's tables and figures, one module per artefact (``table1``, ``table2``, ``fig8``,
``figs10_14``, ``figs15_16``, ``claims``), rendered from the recorded runs (``results``: paths and
files; ``record``: the recording machinery), with the A+ baseline (``aplus``) and figure helpers
(``viz``). Command: ``python -m mdrn.reproduce`` (``cli``)."""
