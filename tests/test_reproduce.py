"""mdrn.reproduce: tables rendered from recorded runs beside the published values; run records; claims."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mdrn.reproduce.claims import param_counts, render_claims, val_curve
from mdrn.reproduce.fig8 import render_fig8
from mdrn.reproduce.figs15_16 import render_figs15_16
from mdrn.reproduce.record import add_note, checkpoint_line, record, run_info
from mdrn.reproduce.results import NOT_RUN_DATA, load_published, mean_scores, write_csv
from mdrn.reproduce.table1 import TABLE1_COLUMNS, render_table1
from mdrn.reproduce.table2 import render_table2

ROOT = Path(__file__).resolve().parents[1]
SCORE_COLS = ["set", "scale", "image", "psnr", "ssim"]


def _scores(path: Path, rows: list[tuple]) -> Path:
    write_csv(path, [dict(zip(SCORE_COLS, r)) for r in rows], SCORE_COLS)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_mean_scores_per_image_and_averaged(tmp_path):
    a = _scores(tmp_path / "a.csv", [("Set5", 2, "x", 30.0, 0.9), ("Set5", 2, "y", 32.0, 0.8)])
    assert mean_scores([a]) == {("Set5", 2): pytest.approx((31.0, 0.85, 2))}
    b = tmp_path / "b.csv"
    write_csv(b, [{"set": "Set5", "scale": 3, "psnr": 30.5, "ssim": 0.9}], ["set", "scale", "psnr", "ssim"])
    assert mean_scores([a, b])[("Set5", 3)] == pytest.approx((30.5, 0.9, 0))
    c = tmp_path / "c.csv"
    write_csv(c, [{"set": "Set5", "scale": 2, "psnr": 1, "ssim": 1}], ["set", "scale", "psnr", "ssim"])
    with pytest.raises(ValueError, match="both per-image and averaged"):
        mean_scores([a, c])
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        mean_scores([bad])


def test_mean_scores_refuses_an_image_scored_twice(tmp_path):
    # e.g. table1/bicubic_Set5.csv and a later table1/bicubic_Set5_Set14.csv, both matched by the glob
    a = _scores(
        tmp_path / "bicubic_Set5.csv",
        [("Set5", 2, "baby.png", 30.0, 0.9), ("Set5", 2, "bird.png", 32.0, 0.8)],
    )
    b = _scores(tmp_path / "bicubic_Set5_Set14.csv", [("Set5", 2, "baby.png", 40.0, 0.9)])
    with pytest.raises(
        ValueError,
        match=r"Set5_Set14.csv: image baby.png of Set5 x2 is scored again \(also in .*bicubic_Set5.csv\)",
    ):
        mean_scores([a, b])
    avg = ["set", "scale", "psnr", "ssim"]
    c, d = tmp_path / "c.csv", tmp_path / "d.csv"
    write_csv(c, [{"set": "Set5", "scale": 3, "psnr": 30.5, "ssim": 0.9}], avg)
    write_csv(d, [{"set": "Set5", "scale": 3, "psnr": 31.5, "ssim": 0.9}], avg)
    with pytest.raises(ValueError, match=r"d.csv: Set5 x3 is scored again"):
        mean_scores([c, d])


def test_table1_renders_ours_beside_published(tmp_path):
    res = tmp_path / "results"
    rows = [("Set5", s, f"im{i}", 30.0 + s + i, 0.8 + 0.01 * i) for s in (2, 3, 4) for i in range(5)]
    _scores(res / "table1" / "bicubic_Set5.csv", rows)
    out = render_table1(res)
    rows = _read(out["csv"])
    assert list(rows[0])[: len(TABLE1_COLUMNS)] == TABLE1_COLUMNS
    assert {r["method"] for r in rows} == {"Bicubic", "A+", "SRCNN", "VDSR", "MDRN"}
    assert len(rows) == 5 * 4 * 3  # one row per (method, set, scale)
    pub = load_published()
    bic = {(r["set"], int(r["scale"])): r for r in rows if r["method"] == "Bicubic"}
    assert float(bic[("Set5", 3)]["psnr"]) == pytest.approx(35.0)
    assert float(bic[("Set5", 3)]["published_psnr"]) == pub["mdrn_paper_table1"]["Set5"]["3"][0][0]
    assert bic[("Set5", 3)]["status"] == "measured"
    assert bic[("Set14", 2)]["psnr"] == "" and bic[("Set14", 2)]["status"] == NOT_RUN_DATA
    assert float(bic[("Set14", 2)]["published_psnr"]) == pub["mdrn_paper_table1"]["Set14"]["2"][0][0]
    vdsr = [r for r in rows if r["method"] == "VDSR" and r["set"] == "Set5"]
    assert all(r["psnr"] == "" for r in vdsr)
    md = out["md"].read_text()
    p3 = pub["mdrn_paper_table1"]["Set5"]["3"][0][0]
    assert f"| 35.00 | {p3:.2f} | {35.0 - p3:+.2f} |" in md  # ours, pub, diff
    assert "eval.root=DIR 'eval.sets=[Set14,B100,Urban100]'" in md  # the command that fills the gaps
    assert "weights=mdsr" in md and "not yet run" in md
    assert out["png_Set5"].is_file() and "png_Set14" not in out


def test_table1_marks_a_set_scored_on_part_of_its_images(tmp_path):
    """A mean over 2 of Set5's 5 images is labelled partial, not compared with the paper, and not charted."""
    res = tmp_path / "results"
    rows = [("Set5", s, f"im{i}", 30.0 + s + i, 0.8 + 0.01 * i) for s in (2, 3, 4) for i in range(2)]
    _scores(res / "table1" / "bicubic_Set5.csv", rows)
    out = render_table1(res)
    bic = {(r["set"], int(r["scale"])): r for r in _read(out["csv"]) if r["method"] == "Bicubic"}
    assert bic[("Set5", 3)]["status"] == "partial: 2 of 5 images"
    assert float(bic[("Set5", 3)]["psnr"]) == pytest.approx(33.5)  # the figure is kept, labelled
    md = out["md"].read_text()
    p3 = load_published()["mdrn_paper_table1"]["Set5"]["3"][0][0]
    assert f"| 33.50 | {p3:.2f} | — |" in md and "partial: 2 of 5 images |" in md
    assert "png_Set5" not in out  # no bar of a part beside the paper's whole-set figure
    assert "eval.root=DIR 'eval.sets=[Set5,Set14,B100,Urban100]'" in md  # the command that completes it


def test_recorded_table1_bicubic_matches_protocol():
    """The recorded Bicubic Set5 run (float-Y protocol) gives 33.682 / 30.405 / 28.431 dB."""
    path = ROOT / "experiments" / "results" / "table1" / "bicubic_Set5.csv"
    if not path.is_file():
        pytest.skip("Bicubic Set5 run not recorded (make table1)")
    got = mean_scores([path])
    for s, expected in ((2, 33.682), (3, 30.405), (4, 28.431)):
        assert got[("Set5", s)][0] == pytest.approx(expected, abs=0.002)
    assert run_info(path)["returncode"] == 0


def test_param_counts_are_exact():
    c = param_counts(80)
    assert c["multi"] == 7_953_987  # official MDSR
    assert c["single_x2"] < c["multi"] < c["single_x2"] + c["single_x3"]


def test_record_writes_command_machine_date(tmp_path):
    out = tmp_path / "run.csv"
    code = record(out, [sys.executable, "-c", "print(6 * 7)"])
    assert code == 0
    info = run_info(out)
    assert info["returncode"] == 0 and "print(6 * 7)" in info["command"]
    assert info["machine"]["cores"] >= 1 and info["started_utc"].endswith("+00:00")
    assert (tmp_path / "run.csv.log").read_text() == "42\n"
    assert record(tmp_path / "fail.csv", [sys.executable, "-c", "raise SystemExit(3)"]) == 3


def test_fig8_mean_absolute_difference(tmp_path):
    res = tmp_path
    _scores(res / "fig8" / "mdrn_cpu.csv", [("Set5", s, "a", 30.0 + s, 0.9) for s in (2, 3, 4)])
    for s, delta in ((2, 0.1), (3, -0.3), (4, 0.2)):
        _scores(res / "fig8" / f"fig8_x{s}.csv", [("Set5", s, "a", 30.0 + s + delta, 0.9 - delta / 10)])
    out = render_fig8(res)
    rows = _read(out["csv"])
    assert [float(r["diff_psnr"]) for r in rows] == pytest.approx([-0.1, 0.3, -0.2])
    md = out["md"].read_text()
    assert "PSNR 0.200 dB, SSIM 0.0200" in md and "paper: 0.015 dB, 0.0027" in md
    assert out["png_psnr"].is_file() and out["png_ssim"].is_file() and "png_highbit" not in out


def test_fig8_reports_the_16bit_set_on_its_own(tmp_path):
    """A set of 10- to 16-bit images is listed per image and summarised apart from the 8-bit sets."""
    (tmp_path / "table2").mkdir()
    facts = {"ct": {"bit_depth": 16, "set": "Med16"}, "xr": {"bit_depth": 10, "set": "Med16"},
             "eye": {"bit_depth": 8, "set": "Med8"}}  # fmt: skip
    (tmp_path / "table2" / "images.json").write_text(json.dumps(facts))
    multi = [("Set5", s, "a", 30.0, 0.9) for s in (2, 3, 4)] + [
        ("Med8", s, "eye", 35.0, 0.9) for s in (2, 3, 4)
    ]
    multi += [("Med16", s, im, 60.0, 0.99) for s in (2, 3, 4) for im in ("ct", "xr")]
    _scores(tmp_path / "fig8" / "mdrn_cpu.csv", multi)
    for s in (2, 3, 4):
        rows = [("Set5", s, "a", 30.5, 0.9), ("Med8", s, "eye", 35.5, 0.9)]
        rows += [("Med16", s, "ct", 64.0, 0.99), ("Med16", s, "xr", 58.0, 0.99)]
        _scores(tmp_path / "fig8" / f"fig8_x{s}.csv", rows)
    out = render_fig8(tmp_path)
    rows = _read(out["csv"])
    low = [r for r in rows if r["image"] == ""]
    high = [r for r in rows if r["image"]]
    assert {r["set"] for r in low} == {"Set5", "Med8"} and len(low) == 6
    assert {(r["image"], r["bit_depth"]) for r in high} == {("ct", "16"), ("xr", "10")} and len(high) == 6
    md = out["md"].read_text()
    assert "over the 6 (set, scale) pairs of 8-bit sets: PSNR 0.500 dB" in md  # not mixed with the 16-bit set
    assert "over the 6 (image, scale) pairs: PSNR 3.000 dB" in md  # |60-64| and |60-58|
    assert out["png_highbit"].is_file()


def test_claims_curve_from_training_log(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    header = "epoch,step,train/loss,val/v8_x4/psnr\n"
    (train / "fig8_x4_metrics.csv").write_text(header + "0,99,0.1,\n0,99,,20.0\n1,199,,21.0\n")
    (train / "claim_x4_from_x2_metrics.csv").write_text(header + "0,99,,22.0\n1,199,,22.5\n")
    assert val_curve(train / "fig8_x4_metrics.csv", "val/v8_x4/psnr") == ([99, 199], [20.0, 21.0])
    out = render_claims(tmp_path)
    md = out["md"].read_text()
    assert "v8: the x2-initialised model is ahead at 2 of 2 validation points" in md
    assert json.loads(json.dumps(_read(out["x4_csv"])))[1]["x4 initialised from x2 (v8)"] == "22.5000"
    assert out["x4_png_v8"].is_file()
    assert "not yet run" in md  # the timing run is missing here


def test_checkpoint_line_follows_a_score_csv_to_its_model(tmp_path):
    """A score CSV names weights=...; their run record names the checkpoint; Table 1 shows it."""
    models = tmp_path / "models"
    models.mkdir()
    weights = models / "srcnn_cpu_x2.safetensors"
    weights.write_bytes(b"")
    line = "checkpoint: best (val/psnr 40.0000 on v x2) at step 300"
    run = {"started_utc": "2026-01-01T00:00:00+00:00", "seconds": 1.0, "machine": {}, "returncode": 0}
    (models / "srcnn_cpu_x2.safetensors.run.json").write_text(
        json.dumps({**run, "checkpoint": {"line": line}})
    )
    csv_path = _scores(tmp_path / "table1" / "srcnn_cpu_x2_Set5.csv", [("Set5", 2, "a", 36.0, 0.95)])
    cmd = f"python -m mdrn.evaluate weights=experiments/results/models/{weights.name} eval.output=x"
    (tmp_path / "table1" / "srcnn_cpu_x2_Set5.csv.run.json").write_text(json.dumps({**run, "command": cmd}))
    assert checkpoint_line(csv_path) == line
    rows = _read(render_table1(tmp_path)["csv"])
    srcnn = {(r["set"], int(r["scale"])): r for r in rows if r["method"] == "SRCNN"}
    assert srcnn[("Set5", 2)]["checkpoint"] == line and srcnn[("Set5", 3)]["checkpoint"] == ""
    md = (tmp_path / "table1.md").read_text()
    assert f"- SRCNN x2 (`srcnn_cpu_x2`): {line}" in md
    # whether the rule was stated before the run (no recorded config here) and the record's notes
    assert "its recipe had no `selection:` key before the run" in md
    add_note(weights, "recorded before the rule", kind="selection")
    render_table1(tmp_path)
    assert "  - note added 20" in (tmp_path / "table1.md").read_text()
    assert "for s in 2 3 4; do python -m mdrn.evaluate weights=experiments/results/models/srcnn_cpu_x$s" in md


def test_table2_and_figs15_16_from_medical_runs(tmp_path):
    t2 = tmp_path / "table2"
    _scores(t2 / "mdrn_cpu.csv", [("Medical", s, "ct.png", 60.0 + s, 0.99) for s in (2, 3, 4)])
    _scores(t2 / "bicubic.csv", [("Medical", s, "ct.png", 59.0 + s, 0.98) for s in (2, 3, 4)])
    (t2 / "images.json").write_text(json.dumps({"ct": {"bit_depth": 16, "about": "CT slice"}}))
    rows = _read(render_table2(tmp_path)["csv"])
    assert [(r["image"], r["bit_depth"], float(r["gain_db"])) for r in rows] == [("ct", "16", 1.0)] * 3
    out = render_figs15_16(tmp_path)
    got = {r["method"]: r for r in _read(out["csv"])}
    assert set(got) == {"Bicubic", "SRCNN", "EDSR", "MDRN"}
    assert float(got["MDRN"]["psnr"]) == 64.0 and got["EDSR"]["status"] == "not run"
    assert out["fig15_psnr"].is_file() and out["fig16_ssim"].is_file()


def test_recorded_runs_succeeded():
    """Every run recorded in experiments/results exited 0 and left its output."""
    runs = sorted((ROOT / "experiments" / "results").rglob("*.run.json"))
    if not runs:
        pytest.skip("no recorded runs yet")
    for path in runs:
        info = json.loads(path.read_text())
        assert info["returncode"] == 0, path
        assert path.with_name(info["output"]).is_file(), path


def test_notes_are_dated_and_a_selection_note_is_bound_to_its_recipe(tmp_path):
    """python -m mdrn.reproduce note: a note added to a run record afterwards; a selection note carries
    the sha256 of the recipe text (the recipe and those it builds on): a changed recipe is not covered."""
    from mdrn.reproduce.cli import main
    from mdrn.reproduce.record import notes, recipe_files, recipe_sha256

    assert [p.stem for p in recipe_files("srcnn_cpu_x3")] == ["srcnn_cpu_x3", "srcnn_cpu_x2"]
    out = tmp_path / "model.safetensors"
    with pytest.raises(FileNotFoundError):
        add_note(out, "x")
    assert record(out, ["python", "-c", "pass"]) == 0
    assert main(["note", str(out), "--selection", "srcnn_cpu_x3", "--", "why", "it", "differs"]) == 0
    assert main(["note", str(out), "--", "plain"]) == 0
    assert main(["note", str(out), "--selection"]) == 2
    (sel,) = notes(out, "selection")
    assert sel["text"] == "why it differs" and sel["recipe_sha256"] == recipe_sha256("srcnn_cpu_x3")
    assert sel["added_utc"].startswith("20") and [n["text"] for n in notes(out)] == [
        "why it differs",
        "plain",
    ]
    assert recipe_sha256("srcnn_cpu_x3") != recipe_sha256("srcnn_cpu_x4")


def test_recorded_commands_are_shown_without_machine_paths() -> None:
    from mdrn.reproduce.record import public_command

    cmd = (
        "/root/.pyenv/versions/3.11.7/bin/python -m mdrn.train experiment=mdrn_small "
        "hydra.run.dir=/work/wt-shipped/logs/x ckpt_path=/work/wt-shipped/logs/p1/step6000.ckpt"
    )
    assert public_command(cmd) == (
        "python -m mdrn.train experiment=mdrn_small hydra.run.dir=.../x ckpt_path=.../step6000.ckpt"
    )
    assert (
        public_command("python -m mdrn.evaluate 'eval.sets=[Set5]'")
        == "python -m mdrn.evaluate 'eval.sets=[Set5]'"
    )


def test_help_lists_every_command(capsys) -> None:
    """``python -m mdrn.reproduce --help`` names the commands the READMEs quote, not only the renderers."""
    from mdrn.reproduce.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("record OUT", "train PRESET", "note OUT", "peers", "inputs", "params"):
        assert f"python -m mdrn.reproduce {command}" in out, command


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_fig8_keeps_recorded_runs_whose_weights_a_clone_wrote_later(tmp_path):
    # git writes experiments/results/fig8/ before experiments/results/models/ on a fresh clone
    res = tmp_path / "results"
    for m in ("mdrn_cpu", "fig8_x2", "fig8_x3", "fig8_x4"):
        (res / "fig8").mkdir(parents=True, exist_ok=True)
        (res / "models").mkdir(parents=True, exist_ok=True)
        (res / "fig8" / f"{m}.csv").write_text("set,scale,image,psnr,ssim\n")
        (res / "models" / f"{m}.safetensors").write_bytes(b"w")
        os.utime(res / "fig8" / f"{m}.csv", (1_000_000, 1_000_000))
    medical = tmp_path / "medical"
    (medical / "Set5").mkdir(parents=True)
    (medical / "images.json").write_text("{}")
    mk = ROOT / "experiments" / "experiments.mk"
    cmd = ["make", "-n", "-f", str(mk), "fig8", f"R={res}", f"MEDICAL={medical}"]

    def dry_run() -> str:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout

    out = dry_run()
    assert "mdrn.evaluate" not in out and "mdrn.reproduce fig8" in out
    (res / "fig8" / "fig8_x3.csv").unlink()  # a missing output is still run, with its weights
    out = dry_run()
    assert out.count("mdrn.evaluate") == 1 and f"weights={res}/models/fig8_x3.safetensors" in out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_figs10_14_keeps_the_recorded_panels_whose_shipped_model_a_clone_wrote_later(tmp_path):
    # git writes experiments/results/figs10_14/ before mdrn/pretrained/ on a fresh clone
    res = tmp_path / "results"
    (res / "figs10_14").mkdir(parents=True)
    (res / "figs10_14" / "panels.csv").write_text("image,scale\n")
    os.utime(res / "figs10_14" / "panels.csv", (1_000_000, 1_000_000))
    shipped = tmp_path / "mdrn_small.safetensors"
    shipped.write_bytes(b"w")
    medical = tmp_path / "medical"
    medical.mkdir()
    (medical / "images.json").write_text("{}")
    mk = ROOT / "experiments" / "experiments.mk"
    cmd = ["make", "-n", "-f", str(mk), "figs10_14", f"R={res}", f"MEDICAL={medical}", f"SHIPPED={shipped}"]

    def dry_run() -> str:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout

    out = dry_run()
    assert "panels.py" not in out and "mdrn.reproduce figs10_14" in out
    (res / "figs10_14" / "panels.csv").unlink()  # a missing output is still made, from the shipped model
    out = dry_run()
    assert out.count("panels.py") == 1 and f"--weights {shipped}" in out
