"""The peers table (``python -m mdrn.reproduce peers``, ``make peers``): rows from names and a folder of model
files (a refused file is a row saying why), recorded evaluate runs reused while unchanged, the rendered
scores equal to the protocol's own, multiply-adds as the papers count them."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import torch
from test_evaluate import _eval_cfg
from test_peers import authors_state, tiny

from mdrn.data.cache import make_lr
from mdrn.io.images import image_to_tensor, read_image, write_image
from mdrn.models import CARNM, IMDN, MDRN, Bicubic
from mdrn.protocol.metrics import score
from mdrn.protocol.resize import modcrop
from mdrn.reproduce import peers
from mdrn.reproduce.record import run_info_path
from mdrn.reproduce.results import read_csv
from mdrn.weights import SHIPPED_MODELS, save_model


def _images(folder, n, bits, channels, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        y, x = np.mgrid[0:40, 0:44]
        base = (np.sin(x / 3.0 + i) + np.cos(y / 5.0)) * 0.25 + 0.5 + rng.normal(0, 0.02, (40, 44))
        arr = np.clip(base, 0, 1) * (2**bits - 1)
        arr = np.repeat(arr[..., None], channels, axis=2) if channels == 3 else arr
        write_image(
            folder / f"im{i}.png", arr.round().astype(np.uint16 if bits > 8 else np.uint8), bit_depth=bits
        )


def test_macs_per_output_pixel_as_the_papers_count_them():
    # CARN-M's multiply-adds for a 1280x720 output, x2 / x3 / x4: 91.2G / 46.1G / 32.5G in the authors'
    # table (assets/table.png of nmhkahn/CARN-pytorch at the pinned commit, as in the paper)
    with torch.device("meta"):
        net = CARNM()
    got = [peers._macs(net, s) * 1280 * 720 / 1e9 for s in (2, 3, 4)]
    assert [round(g, 1) for g in got] == [91.2, 46.1, 32.5]
    assert peers._macs(Bicubic(), 2) == 0


def in_process_record(tmp_path):
    """``record(csv, [python, -m, mdrn.evaluate, overrides...])`` run in this process (no new interpreter)."""
    from mdrn.evaluate import evaluate

    def run(output, command, *, log=True):
        assert list(command[1:3]) == ["-m", "mdrn.evaluate"], command
        evaluate(_eval_cfg(tmp_path / "runs", *command[3:]))
        run_info_path(output).write_text(json.dumps({"command": shlex.join(command), "returncode": 0}))
        return 0

    return run


def test_table_rows_scores_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "record", in_process_record(tmp_path))
    natural, medical = tmp_path / "natural", tmp_path / "medical"
    _images(natural / "Set5", 2, 8, 3, 0)
    _images(medical / "Medical_8bit", 1, 8, 1, 1)
    _images(medical / "Medical_10to16bit", 1, 12, 1, 2)
    models = tmp_path / "models"
    models.mkdir()
    torch.save(authors_state(tiny("imdn_x3"), "module."), models / "imdn tiny.pth")
    torch.manual_seed(0)
    save_model(MDRN(n_resblocks=1, n_feats=8, scales=(2, 4)), models / "mdrn_tiny.safetensors")
    (models / "broken.pth").write_bytes(b"not a checkpoint")
    torch.save({"conv.weight": torch.zeros(1)}, models / "other.pt")

    rows = peers.resolve_rows([], None, models)
    assert [r.key for r in rows] == ["bicubic", "broken", "imdn_tiny", "mdrn_tiny", "other"]
    errors = {r.key: r.error for r in rows}
    assert errors["broken"].startswith("not loaded: CheckpointError: ") and "broken.pth" in errors["broken"]
    assert errors["other"].startswith("not loaded: CheckpointError: ")
    assert errors["imdn_tiny"] is None and isinstance(rows[2].net, IMDN)
    assert rows[2].scales == [3] and rows[3].scales == [2, 4] and rows[0].scales == [2, 3, 4]

    groups = [("Set5", natural, ["Set5"]), ("medical", medical, list(peers.MEDICAL_SETS))]
    out = tmp_path / "results"
    peers.score_rows(rows, groups, out / "peers", rescore=False, windows=["none", "percentile"])
    paths = peers.render_peers(rows, ["Set14", "B100", "Urban100"], "python -m mdrn.reproduce peers --x", out)
    table = read_csv(paths["csv"])
    # the rendered means are the protocol's own scores (bicubic, computed here in-process)
    for set_name, folder in (
        ("Set5", natural / "Set5"),
        ("Medical_10to16bit", medical / "Medical_10to16bit"),
    ):
        for s in (2, 3):
            expected = []
            for f in sorted(folder.iterdir()):
                img = read_image(f)
                hr = modcrop(image_to_tensor(img, torch.float64)[None], s)
                sr = Bicubic()(make_lr(hr, s, img.bit_depth).float(), s)
                expected.append(score(sr, hr, scale=s, bit_depth=img.bit_depth)[0].item())
            key = ("bicubic", set_name, str(s), "none")
            got = [r for r in table if (r["model"], r["set"], r["scale"], r["window"]) == key]
            assert float(got[0]["psnr"]) == pytest.approx(sum(expected) / len(expected), abs=1e-3)
    assert {(r["model"], r["scale"]) for r in table if (r["set"], r["window"]) == ("Set5", "percentile")} == {
        ("bicubic", "2"), ("bicubic", "3"), ("bicubic", "4"), ("imdn_tiny", "3"), ("mdrn_tiny", "2"),
        ("mdrn_tiny", "4"),
    }  # fmt: skip
    # the window changes what an RGB network sees on a 12-bit image, never bicubic (linear: it commutes)
    by = {(r["model"], r["set"], r["scale"], r["window"]): float(r["psnr"]) for r in table}
    assert (
        by[("mdrn_tiny", "Medical_10to16bit", "2", "percentile")]
        != by[("mdrn_tiny", "Medical_10to16bit", "2", "none")]
    )
    assert by[("bicubic", "Medical_10to16bit", "2", "percentile")] == pytest.approx(
        by[("bicubic", "Medical_10to16bit", "2", "none")], abs=1e-6
    )
    md = paths["md"].read_text()
    assert "## Intensity normalisation: none\n\nNone, for every row" in md
    assert (
        "## Intensity normalisation: percentile\n\nOne rule forced on every row: each LR image mapped" in md
    )
    assert "### Set5 (2 images), window percentile" in md and "python -m mdrn.reproduce peers --x" in md
    assert "| broken | — |" in md and "not loaded: CheckpointError" in md
    assert "not found in the data folders (not run): Set14, B100, Urban100" in md
    assert "### Table 2 medical, 10-16 bit (1 images), window none" in md and "**" in md
    assert (out / "peers" / "imdn_tiny_Set5_percentile.csv.run.json").is_file()

    # a second run reuses every recorded evaluation; changed weights are scored again
    def no_run(*args, **kwargs):
        raise AssertionError("a recorded evaluation was run again")

    monkeypatch.setattr(peers, "record", no_run)
    again = peers.resolve_rows([], None, models)
    peers.score_rows(again, groups, out / "peers", rescore=False, windows=["none", "percentile"])
    assert [sorted(r.files) for r in again if r.error is None] == [["none", "percentile"]] * 3
    assert [len(r.files["none"]) for r in again if r.error is None] == [2, 2, 2]
    # the checkout moved (records made in another folder): machine paths are compared by name, still reused
    import json
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.copytree(out / "peers", moved / "peers")
    for info in (moved / "peers").glob("*.run.json"):
        rec = json.loads(info.read_text())
        rec["command"] = rec["command"].replace(str(tmp_path), "/another/checkout")
        info.write_text(json.dumps(rec))
    peers.score_rows(
        peers.resolve_rows([], None, models), groups, moved / "peers", False, ["none", "percentile"]
    )
    save_model(
        MDRN(n_resblocks=1, n_feats=8, scales=(2, 4)), models / "mdrn_tiny.safetensors", overwrite=True
    )
    changed = peers.resolve_rows([], None, models)
    with pytest.raises(AssertionError, match="run again"):
        peers.score_rows(changed, groups, out / "peers", rescore=False, windows=["none", "percentile"])


@pytest.mark.slow
def test_command_scores_shipped_and_says_which_peers_did_not_load(tmp_path, monkeypatch, capsys):
    from mdrn import weights
    from mdrn.io.download import NetworkUnavailableError
    from mdrn.reproduce.cli import main

    def offline(url, dest, **kwargs):
        raise NetworkUnavailableError(url, dest, "offline (test)")

    monkeypatch.setattr(peers, "record", in_process_record(tmp_path))
    monkeypatch.setattr(weights, "download_file", offline)
    monkeypatch.setenv("MDRN_CACHE", str(tmp_path / "cache"))
    natural, medical = tmp_path / "natural", tmp_path / "medical"
    _images(natural / "Set5", 1, 8, 3, 0)
    _images(medical / "Medical_8bit", 1, 8, 3, 1)
    _images(medical / "Medical_10to16bit", 1, 16, 1, 2)
    (tmp_path / "no_peers").mkdir()
    args = ["peers", "--peer-files", str(tmp_path / "no_peers"), "--natural", str(natural)]
    args += [
        "--medical",
        str(medical),
        "--data",
        str(tmp_path / "data"),
        "--results",
        str(tmp_path / "results"),
    ]
    assert main(args) == 0
    md = (tmp_path / "results" / "peers.md").read_text()
    assert f"- Rows scored: bicubic, {', '.join(SHIPPED_MODELS)}." in md  # every shipped model
    assert (
        "- carn_m: not loaded: NetworkUnavailableError: could not download https://raw.githubusercontent"
        in md
    )
    assert "### sample test, 16 bit (2 images), window percentile" in md
    assert "### Table 2 medical, 10-16 bit (1 images), window none" in md
    assert f"`python -m mdrn.reproduce peers --peer-files {tmp_path / 'no_peers'}" in md
    assert "peers.md:" in capsys.readouterr().out
