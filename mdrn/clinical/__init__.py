"""The clinician tools' engine: what a user opens (``inputs``: images, DICOM series, NIfTI), the one
enlarging path (``enlarge``) and display windowing (``display``). The commands built on it are
``mdrn.upscale``, ``mdrn.app`` and ``mdrn.export``."""
