"""CPU inference: residual blocks as two oneDNN convolutions with the ReLU and the skip add fused in.

A :class:`~mdrn.models.blocks.ResBlock` (conv, ReLU, conv, ``+ x``; no batch norm, ``res_scale`` 1) runs
on CPU as ``conv1`` with a ReLU post-op and ``conv2`` with an add post-op (oneDNN's
``mkldnn::_convolution_pointwise``, what ``torch.compile`` emits for the same pattern), on weights
reordered once into oneDNN's blocked layout. That saves the block's two elementwise passes over its map
and the per-call weight reorder: measured 8% faster per block (1x64x64x64, 2 threads; the network's
share in ``python -m mdrn.bench --only forward``). Same arithmetic: the outputs equal the unfused
block's bit for bit in the cases tested (tests/test_models.py).

The fused form is a plain attribute of the block (not a submodule: the state dict does not change) and
is used only where it computes the same thing: CPU, float32, channels-last input, no autograd, eval
mode, and the weights unchanged since it was made (their version counters); anything else runs the
module's own forward. :func:`fuse_resblocks` makes it; :func:`unfuse_resblocks` drops it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FusedResBlock", "available", "fuse_resblocks", "fused_form", "unfuse_resblocks"]

#: The input size the reordered weights' layout is chosen for: any size runs, at the same speed
#: (measured: 1x64x200x200 blocks 21.3 ms with weights laid out for 64x64 tiles, 21.5 ms for 200x200)
_TILE = (64, 64)

_ATTR = "_cpu_fused"


def available() -> bool:
    """Whether this torch build has oneDNN's fused convolution ops."""
    ops = getattr(torch.ops, "mkldnn", None)
    return (
        torch.backends.mkldnn.is_available()
        and ops is not None
        and hasattr(ops, "_convolution_pointwise")
        and hasattr(ops, "_reorder_convolution_weight")
    )


class FusedResBlock:
    """The fused form of one residual block: its two convolutions' reordered weights and biases."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, tile: tuple[int, int]) -> None:
        self._convs = (conv1, conv2)
        self._source = self._weights()
        k = conv1.kernel_size[0]
        self._pad, self._one = [k // 2, k // 2], [1, 1]
        shape = [1, conv1.in_channels, *tile]
        with torch.no_grad():
            self._w = [
                torch.ops.mkldnn._reorder_convolution_weight(
                    c.weight.detach(), self._pad, self._one, self._one, 1, shape
                )
                for c in self._convs
            ]
        self._b = [None if c.bias is None else c.bias.detach() for c in self._convs]

    def _weights(self) -> tuple[tuple[int, int, int], ...]:
        """Each parameter's identity, storage and version counter: a parameter replaced, given new data
        (``.data =``) or written in place (``load_state_dict``, an optimizer step) changes one of them."""
        return tuple(
            (id(p), p.data_ptr(), p._version)
            for c in self._convs
            for p in (c.weight, c.bias)
            if p is not None
        )

    def current(self) -> bool:
        """True while the block's weights are the ones this form was made from."""
        return self._weights() == self._source

    def __deepcopy__(self, memo: dict) -> None:
        """A copy of the network gets no fused form (its weights are new objects): it runs unfused."""
        return None

    def __reduce__(self) -> tuple:
        """Pickled (``torch.save`` of a whole module) as None: the copy runs unfused."""
        return (type(None), ())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x + conv2(relu(conv1(x)))`` with the ReLU and the add inside the convolutions."""
        ops = torch.ops.mkldnn
        p, one = self._pad, self._one
        y = ops._convolution_pointwise(x, self._w[0], self._b[0], p, one, one, 1, "relu", [None], "")
        return ops._convolution_pointwise.binary(
            y, x, self._w[1], self._b[1], p, one, one, 1, "add", None, None, [], None
        )


def _fusable(block: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d] | None:
    """The two convolutions of a conv-ReLU-conv residual block with ``res_scale`` 1, else None."""
    from mdrn.models.blocks import ResBlock

    if not isinstance(block, ResBlock) or block.res_scale != 1.0:
        return None
    layers = list(block.body)
    if len(layers) != 3 or not isinstance(layers[1], nn.ReLU):
        return None
    c1, c2 = layers[0], layers[2]
    for c in (c1, c2):
        if not (
            type(c) is nn.Conv2d
            and c.stride == (1, 1)
            and c.dilation == (1, 1)
            and c.groups == 1
            and c.padding_mode == "zeros"
            and c.kernel_size[0] == c.kernel_size[1]
            and c.padding == (c.kernel_size[0] // 2,) * 2
            and c.weight.device.type == "cpu"
            and c.weight.dtype == torch.float32
        ):
            return None
    return c1, c2


def fuse_resblocks(net: nn.Module, tile: tuple[int, int] = _TILE) -> int:
    """Give each fusable residual block of ``net`` (on CPU, float32) its fused form; return how many.

    ``tile``: the input size the weights' layout is chosen for (other sizes run correctly, as fast). A
    no-op returning 0 where this torch build lacks the ops (:func:`available`).
    """
    if not available():
        return 0
    count = 0
    for module in net.modules():
        convs = _fusable(module)
        if convs is not None:
            setattr(module, _ATTR, FusedResBlock(*convs, tile))
            count += 1
    return count


def unfuse_resblocks(net: nn.Module) -> int:
    """Drop the fused forms of ``net``'s blocks; return how many were dropped."""
    count = 0
    for module in net.modules():
        if module.__dict__.pop(_ATTR, None) is not None:
            count += 1
    return count


def fused_form(block: nn.Module, x: torch.Tensor) -> FusedResBlock | None:
    """The block's fused form if it computes this call exactly as the module would, else None."""
    fused = block.__dict__.get(_ATTR)
    if (
        fused is None
        or block.training
        or torch.jit.is_scripting()
        or torch.is_grad_enabled()
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or x.ndim != 4
        or not x.is_contiguous(memory_format=torch.channels_last)
        or torch.is_autocast_enabled("cpu")
    ):
        return None
    if not fused.current():
        del block.__dict__[_ATTR]  # the weights were changed: the module's own forward from now on
        return None
    return fused
