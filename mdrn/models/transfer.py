"""Transfer a trained network's weights into another of its class: x2 -> x3 / x4 (the paper's x4 from x2).

:func:`init_from_pretrained` copies every compatible tensor by name (a missing scale branch takes the
source's smallest-scale branch) and says in a :class:`TransferReport` what it copied, kept fresh or skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from mdrn.models.mdrn import branch_key

__all__ = ["TransferReport", "init_from_pretrained"]


@dataclass
class TransferReport:
    """What :func:`init_from_pretrained` did with each tensor: copied, kept fresh or skipped (why)."""

    copied: list[tuple[str, str]] = field(default_factory=list)  # (target key, source key)
    fresh: list[tuple[str, str]] = field(default_factory=list)  # (target key, why no copy)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source key, why unused)

    def __str__(self) -> str:
        lines = [
            f"copied {len(self.copied)} tensors, kept {len(self.fresh)} fresh, skipped {len(self.skipped)}"
        ]
        lines += [f"  copied  {t} <- {s}" for t, s in self.copied]
        lines += [f"  fresh   {t}: {why}" for t, why in self.fresh]
        lines += [f"  skipped {s}: {why}" for s, why in self.skipped]
        return "\n".join(lines)


def _source_candidates(key: str, source_scales: Sequence[int]) -> list[str]:
    """Source keys to try for a target key: the same name, then the branch of the source's smallest scale."""
    out = [key]
    m = re.match(r"^(pre_process|upsample)\.x(\d+)\.(.*)$", key)
    if m:
        out.append(f"{m.group(1)}.{branch_key(min(source_scales))}.{m.group(3)}")
    return out


def init_from_pretrained(target: nn.Module, source: nn.Module) -> TransferReport:
    """Copy every compatible tensor of a trained (x2) ``source`` into ``target`` (x3/x4); return the report.

    Shared tensors (head, body, tail) are copied by name; a target branch the source lacks takes the
    source's smallest-scale branch (x2) where shapes match: its pre-processing, and its upsampler stage
    into the first x4 stage. Tensors without a compatible counterpart keep their initialisation (the tail
    too where ``bicubic_skip`` differs: it makes the whole image in one, the high frequencies in the other).
    """
    if type(target) is not type(source):
        raise ValueError(f"cannot transfer {type(source).__name__} weights into a {type(target).__name__}")
    src = source.state_dict()
    tgt = target.state_dict()
    report = TransferReport()
    used: set[str] = set()
    new = dict(tgt)
    skip = getattr(source, "bicubic_skip", False), getattr(target, "bicubic_skip", False)
    for key, value in tgt.items():  # a tail makes the whole image, or with bicubic_skip the high frequencies
        tail = key.startswith("tail.") and skip[0] != skip[1]
        reasons = [f"source bicubic_skip={skip[0]}, target {skip[1]}"] if tail else []
        for cand in [] if reasons else _source_candidates(key, getattr(source, "scales", (2,))):
            if cand not in src:
                reasons.append(f"no '{cand}' in source")
            elif src[cand].shape != value.shape:
                reasons.append(f"source '{cand}' has shape {tuple(src[cand].shape)} != {tuple(value.shape)}")
            else:
                new[key] = src[cand].detach().clone().to(value.device, value.dtype)
                report.copied.append((key, cand))
                used.add(cand)
                break
        else:
            report.fresh.append((key, "; ".join(reasons)))
    for key in src:
        if key not in used:
            report.skipped.append(
                (key, "no compatible target tensor (scale branch the target lacks or shape)")
            )
    if not report.copied:
        raise ValueError(f"nothing to transfer: no source tensor fits the target\n{report}")
    target.load_state_dict(new, strict=True)
    return report
