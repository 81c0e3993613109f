"""Networks: MDRN and the baselines, plus ``model_spec`` / ``build_model`` to record and rebuild them.

Every network is a plain ``nn.Module`` with ``forward(x, scale)``, ``scales`` and ``n_colors``; images
are float (N, C, H, W) in [0, 1] and outputs are not clamped.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mdrn.models.bicubic import Bicubic
from mdrn.models.blocks import SRNet
from mdrn.models.carn import CARNM
from mdrn.models.edsr import EDSR, edsr, edsr_baseline
from mdrn.models.imdn import IMDN
from mdrn.models.mdrn import MDRN
from mdrn.models.rlfn import RLFN
from mdrn.models.srcnn import SRCNN
from mdrn.models.srresnet import SRResNet
from mdrn.models.vdsr import VDSR
from mdrn.models.window import rule_of, set_rule

__all__ = [
    "MDRN",
    "EDSR",
    "SRResNet",
    "SRCNN",
    "VDSR",
    "Bicubic",
    "CARNM",
    "IMDN",
    "RLFN",
    "SRNet",
    "build_model",
    "edsr",
    "edsr_baseline",
    "model_spec",
]


def _jsonable(value: Any) -> Any:
    """Turn tuples into lists (recursively) so the spec survives a JSON round trip unchanged."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def model_spec(net: nn.Module) -> dict[str, Any]:
    """Return ``{"arch": class name, "args": constructor arguments}`` (JSON-able) of an mdrn network,
    plus ``"input_window"`` (:mod:`mdrn.models.window`) when the network was trained with one."""
    if not isinstance(net, SRNet):
        raise ValueError(f"model_spec expects an mdrn.models network, got {type(net).__name__}")
    spec: dict[str, Any] = {
        "arch": type(net).__name__,
        "args": {k: _jsonable(v) for k, v in net.spec_args.items()},
    }
    rule = rule_of(net)
    if rule.active:
        spec["input_window"] = rule.to_dict()
    return spec


def _architectures() -> dict[str, type[SRNet]]:
    """Return the buildable classes: the ``SRNet`` subclasses named in ``__all__``."""
    out = {}
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) and issubclass(obj, SRNet) and obj is not SRNet:
            out[name] = obj
    return out


def build_model(spec: dict[str, Any]) -> SRNet:
    """Build the network described by ``spec`` (``model_spec`` output); unknown arch or args: ValueError."""
    if not isinstance(spec, dict) or "arch" not in spec:
        raise ValueError(f"a model spec is a dict {{'arch': ..., 'args': {{...}}}}, got {spec!r}")
    archs = _architectures()
    arch = spec["arch"]
    if arch not in archs:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(archs)}")
    args = dict(spec.get("args") or {})
    for key in ("scales",):
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])
    try:
        net = archs[arch](**args)
    except TypeError as exc:
        raise ValueError(f"bad arguments for {arch}: {args!r} ({exc})") from exc
    return set_rule(net, spec.get("input_window"))
