"""ONNX export for deployment: ``python -m mdrn.export --weights W --scale S out.onnx``.

The scale is fixed at export (the network's ``forward(x, scale)`` with ``scale`` baked in); batch,
height and width are dynamic axes. Input ``lr`` and output ``sr`` are float32 (N, C, H, W) in [0, 1]
(the output is not clamped, as in PyTorch). Networks with the bicubic low-frequency path export too: the
resize weights are computed inside the graph from the image size (:mod:`mdrn.protocol.resize`).

With onnxruntime installed the command then runs the file on a random image (of another size than the
export's) and on the images given with ``--check``, and prints the largest difference from PyTorch.

A network trained with an input window (:mod:`mdrn.models.window`, the shipped ``mdrn_small``) is exported
as its network alone: the graph expects the image already mapped by its window and returns the output on
that windowed scale. The file's metadata ``mdrn_input_window`` states the rule (JSON), and the command
prints what a caller must do around the graph (``(x - low) / width`` in, ``y * width + low`` out).
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

__all__ = ["FixedScale", "check_onnx", "export_onnx", "main", "window_note"]

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


def window_note(net: nn.Module) -> str | None:
    """What a caller of an exported graph must do around it for ``net``'s input window (None: nothing)."""
    from mdrn.models.window import rule_of

    rule = rule_of(net)
    if not rule.active:
        return None
    return (
        f"the network was trained with an input window ({rule.mode} {rule.low}..{rule.high}, narrowest width "
        f"{rule.min_width:g}): fit it to the whole image or series, feed (x - low) / width, map the output "
        "back with y * width + low (mdrn.models.window; metadata mdrn_input_window in the file)"
    )


def export_onnx(
    net: nn.Module, scale: int, path: str | os.PathLike[str], *, size: int = 32, overwrite: bool = False
) -> Path:
    """Export ``net`` at ``scale`` to an ONNX file (dynamic N/H/W), written atomically; return its path.

    A network's input window is not part of the graph; its rule is written to the file's metadata
    (``mdrn_input_window``, see :func:`window_note`)."""
    model = FixedScale(net, scale).eval()
    n_colors = int(getattr(net, "n_colors", 3))
    example = torch.rand(1, n_colors, size, size)

    dims = {0: Dim("batch"), 2: Dim("height", min=2), 3: Dim("width", min=2)}

    def write(tmp: Path) -> None:
        from mdrn.clinical.runtime import quiet_exporter

        with torch.no_grad(), quiet_exporter():  # the exporter's progress lines and warnings
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
        _write_window_metadata(tmp, net)

    return atomic_write(path, write, overwrite=overwrite)


def _write_window_metadata(path: Path, net: nn.Module) -> None:
    """Record ``net``'s input window rule (JSON) in the ONNX file's metadata, where it has one."""
    import dataclasses
    import json

    from mdrn.models.window import rule_of

    rule = rule_of(net)
    if not rule.active:
        return
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "mdrn_input_window", json.dumps(dataclasses.asdict(rule))
    onnx.save(model, str(path))


def check_onnx(
    path: str | os.PathLike[str], net: nn.Module, scale: int, images: Sequence[str | os.PathLike[str]] = ()
) -> list[tuple[str, float]]:
    """(input, max |ONNX Runtime - PyTorch|) for a random 1x C x 45x61 image and each image file given.

    Gray images are given to an RGB network as three equal planes (as :func:`mdrn.models.inference.upscale`
    does). Needs onnxruntime.
    """
    import numpy as np
    import onnxruntime as ort

    from mdrn.io.images import image_to_tensor, read_image

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n_colors = int(getattr(net, "n_colors", 3))
    gen = torch.Generator().manual_seed(0)
    inputs = [(f"random 1x{n_colors}x45x61", torch.rand(1, n_colors, 45, 61, generator=gen))]
    for file in images:
        x = image_to_tensor(read_image(file))[None]
        if x.shape[1] != n_colors:
            x = x.expand(-1, n_colors, -1, -1) if x.shape[1] == 1 else x.mean(dim=1, keepdim=True)
        inputs.append((f"{Path(file).name} ({x.shape[-1]}x{x.shape[-2]})", x.contiguous()))
    out = []
    was_training = net.training
    net.eval()
    try:
        for name, x in inputs:
            check = getattr(net, "check_input", None)
            try:
                if callable(check):
                    check(x, scale)  # the graph lost the network's checks (RLFN: at least 15x15 pixels)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
            got = session.run(["sr"], {"lr": x.numpy()})[0]
            with torch.inference_mode():
                ref = net(x, scale).numpy()
            out.append((name, float(np.abs(got - ref).max())))
    finally:
        net.train(was_training)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: load weights (any format ``mdrn.upscale`` accepts) and export one scale to ONNX."""
    from mdrn.clinical.inputs import error_line
    from mdrn.upscale import load_network

    p = argparse.ArgumentParser(prog="mdrn-export", description="Export a super-resolution network to ONNX.")
    p.add_argument("output", type=Path, help="the .onnx file to write")
    p.add_argument("--weights", required=True, help="weights file or name (see mdrn-upscale)")
    p.add_argument("--scale", type=int, required=True, help="the scale baked into the exported graph")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument(
        "--check", nargs="*", default=[], metavar="IMAGE", help="images to compare ONNX Runtime with PyTorch "
        "on (besides a random one; the comparison needs onnxruntime)"
    )  # fmt: skip
    args = p.parse_args(argv)
    try:
        net = load_network(args.weights, args.scale)
        dest = export_onnx(net, args.scale, args.output, overwrite=args.overwrite)
    except Exception as err:  # noqa: BLE001 - the exporter raises many kinds, with pages of text: one line
        package = (err.name or "").partition(".")[0] if isinstance(err, ImportError) else ""
        if package in ("onnx", "onnxscript"):  # the export extra is missing: not a problem of the weights
            print(f"error: the ONNX export needs {err.name}, not installed here: pip install 'mdrn[export]'",
                  file=sys.stderr)  # fmt: skip
        else:
            print(f"error: {error_line(Path(args.weights), err)}", file=sys.stderr)
        return 1
    print(f"wrote {dest}")
    note = window_note(net)
    if note:
        print(f"note: {note}")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("not compared with PyTorch: onnxruntime is not installed (pip install onnxruntime)")
        return 0
    try:
        for name, diff in check_onnx(dest, net, args.scale, args.check):
            print(f"max |ONNX Runtime - PyTorch| on {name}: {diff:.2e}")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
