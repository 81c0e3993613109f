"""ONNX export for deployment: ``python -m mdrn.export --weights W --scale S out.onnx``.

The scale is fixed at export (the network's ``forward(x, scale)`` with ``scale`` baked in); batch,
height and width are dynamic axes. Input ``lr`` and output ``sr`` are float32 (N, C, H, W) in [0, 1]
(the output is not clamped, as in PyTorch).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim

from mdrn.io.images import atomic_write

__all__ = ["FixedScale", "export_onnx", "main"]

#: ONNX opset used for the export.
OPSET = 18


class FixedScale(nn.Module):
    """A network with its scale fixed: ``forward(x) = net(x, scale)``."""

    def __init__(self, net: nn.Module, scale: int) -> None:
        super().__init__()
        scales = tuple(getattr(net, "scales", (scale,)))
        if scale not in scales:
            raise ValueError(f"the model has no x{scale} branch; it serves scales {scales}")
        self.net = net
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``x`` (N, C, H, W) by the fixed scale."""
        return self.net(x, self.scale)


def export_onnx(
    net: nn.Module, scale: int, path: str | os.PathLike[str], *, size: int = 32, overwrite: bool = False
) -> Path:
    """Export ``net`` at ``scale`` to an ONNX file (dynamic N/H/W), written atomically; return its path."""
    model = FixedScale(net, scale).eval()
    n_colors = int(getattr(net, "n_colors", 3))
    example = torch.rand(1, n_colors, size, size)

    dims = {0: Dim("batch"), 2: Dim("height", min=2), 3: Dim("width", min=2)}

    def write(tmp: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["lr"],
                output_names=["sr"],
                dynamic_shapes={"x": dims},
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )

    return atomic_write(path, write, overwrite=overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: load weights (any format ``mdrn.upscale`` accepts) and export one scale to ONNX."""
    from mdrn.upscale import load_network

    p = argparse.ArgumentParser(prog="mdrn-export", description="Export a super-resolution network to ONNX.")
    p.add_argument("output", type=Path, help="the .onnx file to write")
    p.add_argument("--weights", required=True, help="weights file or name (see mdrn-upscale)")
    p.add_argument("--scale", type=int, required=True, help="the scale baked into the exported graph")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    args = p.parse_args(argv)
    try:
        net = load_network(args.weights, args.scale)
        dest = export_onnx(net, args.scale, args.output, overwrite=args.overwrite)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
