"""Helpers of the entry points: rich config printing, instantiation of callback/logger groups, tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["instantiate_group", "print_config", "results_table"]


def print_config(cfg: DictConfig, save_to: str | Path | None = None, show: bool = True) -> None:
    """Print the resolved config as a rich tree (one branch per top-level group) and save it as text."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key))
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    if show:
        rich.print(tree)
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as f:
            rich.print(tree, file=f)


def instantiate_group(group: Mapping[str, Any] | None) -> list[Any]:
    """Instantiate every entry with a ``_target_`` of a config group (callbacks, loggers)."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(v) for v in group.values() if isinstance(v, Mapping) and "_target_" in v]


def results_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Render rows as a rich table, print it, and return its plain text."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("set", "model") else "right")
    for r in rows:
        table.add_row(*[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns])
    console = Console(width=140, record=True)
    console.print(table)
    return console.export_text(styles=False)
