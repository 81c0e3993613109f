"""mdrn: medical-image super-resolution with deep residual networks (PyTorch Lightning + Hydra)."""

__version__ = "0.1.0"
