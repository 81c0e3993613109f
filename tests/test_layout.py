"""The package layout (issue 13, docs/ARCHITECTURE.md "Layout") stays true.

- no module in ``mdrn`` is over 700 lines; at most 10 modules sit at the package's top level;
- imports only run down the layers (a part of the system never imports one above it);
- the commands users type import: every ``python -m mdrn.<cmd>`` module and every console script;
- every ``_target_`` (and logging ``()``) in ``conf/`` resolves;
- checkpoints rebuild their network from ``mdrn_arch``, never from a module path stored in the file, so
  a Lightning checkpoint written before the move (its run config names ``mdrn.lit.SRModule``) still loads.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mdrn"
MAX_LINES = 700
MAX_TOP_LEVEL = 10

#: the layers, bottom first: a module may import its own layer and the ones before it, never a later one
LAYERS: tuple[tuple[str, ...], ...] = (
    ("mdrn",),  # the package root (version)
    ("mdrn.protocol",),
    ("mdrn.io",),
    ("mdrn.perf",),
    ("mdrn.models", "mdrn.weights", "mdrn.spandrel"),
    ("mdrn.data",),
    ("mdrn.training", "mdrn.train", "mdrn.evaluate"),
    ("mdrn.clinical", "mdrn.upscale", "mdrn.app", "mdrn.export"),
    ("mdrn.reproduce",),
    ("mdrn.bench",),
)

#: what users type: ``python -m mdrn.<name>``
COMMANDS = ("train", "evaluate", "upscale", "app", "weights", "export", "reproduce", "bench", "data")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best, rank = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            inside = module == name or (name != "mdrn" and module.startswith(name + "."))
            if inside and len(name) > best:
                best, rank = len(name), i
    assert rank is not None, f"{module}: in no layer of tests/test_layout.py (add it where it belongs)"
    return rank


def _imports(path: Path) -> set[str]:
    """Every ``mdrn`` module ``path`` imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "mdrn")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "mdrn":
                # ``from mdrn.x import y`` may name a submodule y: count it as the deeper module
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.add(sub if _is_module(sub) else node.module)
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def test_no_module_over_700_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by idea): {long}"


def test_at_most_10_top_level_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, f"{len(top)} modules at the top level (at most {MAX_TOP_LEVEL}): {top}"


def test_imports_only_run_down_the_layers() -> None:
    upward = []
    for path in _modules():
        me = _name(path)
        for target in sorted(_imports(path)):
            if _layer(target) > _layer(me):
                upward.append(f"{me} imports {target}")
    assert not upward, "imports running back up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("command", COMMANDS)
def test_python_m_entry_points_import(command: str) -> None:
    spec = importlib.util.find_spec(f"mdrn.{command}")
    assert spec is not None, f"python -m mdrn.{command}: no such module"
    if spec.submodule_search_locations is not None:  # a package: python -m runs its __main__
        main = Path(next(iter(spec.submodule_search_locations))) / "__main__.py"
        assert main.is_file(), f"python -m mdrn.{command}: the package has no __main__.py"
        text = main.read_text()
        called = re.findall(r"^from (mdrn[\w.]*) import main$", text, re.M)
        if not called:  # __main__ defines main() itself, behind a __name__ guard
            assert re.search(r"^def main\(", text, re.M) and 'if __name__ == "__main__":' in text, main
            called = [f"mdrn.{command}.__main__"]
        assert callable(importlib.import_module(called[0]).main)
    else:
        assert callable(importlib.import_module(f"mdrn.{command}").main)


def test_console_scripts_import() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts = dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.:]+)"', section, re.M))
    assert {"mdrn-train", "mdrn-evaluate", "mdrn-upscale", "mdrn-app"} <= set(scripts)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), f"{name} = {target}"


def _targets(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [v for k, v in node.items() if k in ("_target_", "()") and isinstance(v, str)]
        return own + [t for v in node.values() for t in _targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in _targets(v)]
    return []


def test_config_targets_resolve() -> None:
    from hydra.utils import get_object

    found = {}
    for path in sorted((ROOT / "conf").rglob("*.yaml")):
        for target in _targets(yaml.safe_load(path.read_text())):
            if target.startswith("mdrn."):
                found[target] = path
    assert "mdrn.training.module.SRModule" in found
    for target, path in found.items():
        assert get_object(target) is not None, f"{path}: _target_ {target} does not resolve"


def test_checkpoint_from_before_the_move_loads(tmp_path: Path) -> None:
    """A Lightning checkpoint whose stored config names the old ``mdrn.lit.SRModule`` loads unchanged."""
    from mdrn.models import MDRN, model_spec
    from mdrn.weights import load_model

    net = MDRN(n_resblocks=1, n_feats=8, scales=(2,)).eval()
    old = {"_target_": "mdrn.lit.SRModule", "net": {"_target_": "mdrn.models.MDRN"}}
    ckpt = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "mdrn_arch": model_spec(net),
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 1e-4, "net_spec": model_spec(net), "config": old},
    }
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert not (PACKAGE / "lit.py").exists()  # the old path is gone, and not needed
    loaded = load_model(tmp_path / "old.ckpt")
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 2), net(x, 2), rtol=0, atol=0)


def test_recorded_run_configs_are_read_not_instantiated() -> None:
    """The recorded ``*_config.yaml`` files are records: mdrn reads their fields, never their ``_target_``."""
    from mdrn.reproduce.record import preset_summary
    from mdrn.reproduce.results import RESULTS

    configs = sorted((RESULTS / "train").glob("*_config.yaml"))
    if not configs:
        pytest.skip(f"no recorded run configs under {RESULTS / 'train'}")
    for path in configs:
        name = path.name[: -len("_config.yaml")]
        text = preset_summary(RESULTS, name)
        net = yaml.safe_load(path.read_text())["model"]["net"]["_target_"].rsplit(".", 1)[-1]
        assert text.startswith(f"`{name}`: {net} ("), text
