"""Run records name the weights a recorded output was made from (SHA-256), and nothing recorded is stale.

``mdrn.reproduce.record.record`` writes ``inputs`` into each ``.run.json``; ``changed_inputs`` lists every
recorded output whose weights file has changed since (Figs. 10-14 once showed the previous shipped model
under the new one's name: no check could see it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mdrn.reproduce.record import changed_inputs, record, run_info, weight_inputs
from mdrn.reproduce.results import RESULTS
from mdrn.weights import PRETRAINED_DIR


def test_shipped_names_count_only_where_a_command_takes_weights(tmp_path: Path) -> None:
    shipped = str(PRETRAINED_DIR / "mdrn_small.safetensors")
    named = weight_inputs(["python", "-m", "mdrn.evaluate", "weights=mdrn_small", "experiment=mdrn_small"])
    assert [(i["arg"], i["path"]) for i in named] == [
        ("mdrn_small", "mdrn/pretrained/mdrn_small.safetensors")
    ]
    by_option = weight_inputs(["python", "panels.py", "--weights", "mdrn_small", "--name", "mdrn_small"])
    assert [i["arg"] for i in by_option] == ["mdrn_small"]
    init = weight_inputs(["python", "x.py", "--name", "mdrn_small", "model.init_from=mdrn_small"])
    assert [i["arg"] for i in init] == ["mdrn_small"]
    # every name after --models (nargs), --weights=NAME, and the words of a `bash -c '...'` string
    shell = "python scripts/check_artefacts.py --models mdrn_small_v1 mdrn_small --scales 2 | tee out.txt"
    assert [i["arg"] for i in weight_inputs(["bash", "-o", "pipefail", "-c", shell])] == [
        "mdrn_small_v1",
        "mdrn_small",
    ]
    assert [i["arg"] for i in weight_inputs(["python", "x.py", "--weights=mdrn_small_v1", "--scale=2"])] == [
        "mdrn_small_v1"
    ]
    out = tmp_path / "net.onnx"
    out.write_bytes(b"old output")
    assert weight_inputs(["mdrn-export", "--weights", shipped, "-o", str(out)], output=out) == [
        weight_inputs(["x", shipped])[0]
    ]


def test_a_recorded_output_is_named_once_its_weights_change(tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"first weights")
    results = tmp_path / "results"
    output = results / "scores.csv"
    cmd = [
        sys.executable,
        "-c",
        "import sys; open(sys.argv[1], 'w').write('x')",
        str(output),
        f"weights={weights}",
    ]
    assert record(output, cmd, log=False) == 0
    info = run_info(output)
    assert info is not None and [i["arg"] for i in info["inputs"]] == [str(weights)]
    assert changed_inputs(results) == []
    weights.write_bytes(b"retrained weights")
    (line,) = changed_inputs(results)
    assert "scores.csv" in line and "model.pt" in line and "run it again" in line
    weights.unlink()  # an input not on this machine is not judged
    assert changed_inputs(results) == []


def test_no_recorded_output_was_made_from_weights_that_have_changed_since() -> None:
    changed = changed_inputs(RESULTS)
    assert not changed, "recorded outputs made from other weights than today's:\n" + "\n".join(changed)


def test_the_recorded_figures_of_the_shipped_model_name_its_file() -> None:
    info = json.loads((RESULTS / "figs10_14" / "panels.csv.run.json").read_text())
    assert [i["path"] for i in info.get("inputs", [])] == ["mdrn/pretrained/mdrn_small.safetensors"], (
        "Figs. 10-14 were recorded without the weights' SHA-256: make figs10_14 after removing "
        "experiments/results/figs10_14/panels.csv"
    )


def test_the_records_without_inputs_are_those_the_readme_says() -> None:
    """experiments/README's 'Records made before T carry no inputs': every record since T whose command
    names weights carries them (a record that does not is judged by nothing, whatever the README says)."""
    import re
    import shlex

    from conftest import ROOT

    text = " ".join((ROOT / "experiments" / "README.md").read_text().split())
    stated = re.search(r"Records made before (\d{4}-\d\d-\d\d(?:T[\d:]+)?)", text)
    assert stated, "experiments/README.md no longer says which records carry no inputs"
    unjudged = []
    for path in sorted(RESULTS.rglob("*.run.json")):
        info = json.loads(path.read_text())
        if info["started_utc"] >= stated.group(1) and "inputs" not in info:
            if weight_inputs(shlex.split(info["command"])):
                unjudged.append(path.relative_to(RESULTS).as_posix())
    assert not unjudged, f"made since {stated.group(1)} from weights, with no inputs recorded: {unjudged[:5]}"
