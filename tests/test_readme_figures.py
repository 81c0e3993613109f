"""The figures in README.md and experiments/README.md are those of the recorded results.

Read from the READMEs and from experiments/results at test time, so the check follows both when runs are
re-recorded or the text is rewritten:
- Table 1 rows (README "What has been measured", experiments/README "Measured here"): every PSNR equals
  the mean over the recorded per-image CSVs of its method (``mdrn.reproduce.table1.TABLE1_SOURCES``), rounded
  as printed; "published"/"reference" figures equal the published/reference values;
- every other figure of those sections and of README's "For clinicians" (a decimal, a percentage or a
  count with thousands separators) is found, to its printed precision, in the recorded files its paragraph
  (or, if it names none, the one before) names: linked results (``results/x.md`` with ``x.csv`` and
  ``x/``), presets or files in backticks (``results/**/<preset>*``), scripts (``scripts/check_x.py`` ->
  ``results/checks/check_x.txt``). A weak check (a figure may match an unrelated number of those files);
  the tables are checked exactly;
- the counts of the Fig. 8 paragraph are those of ``fig8.csv``; README's quickstart output shows the test
  table of the preset's recorded run.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest
from conftest import ROOT
from protocol_data import SET5_BICUBIC

from mdrn.reproduce.results import load_published, mean_scores
from mdrn.reproduce.table1 import TABLE1_EXTRA, TABLE1_SOURCES, published_table1

RESULTS = ROOT / "experiments" / "results"
#: (file, first line of the section, first line after it)
SECTIONS = {
    "README.md": ("## What has been measured", "\n## "),
    "experiments/README.md": ("## Measured here", "\n## "),
}
#: the sections whose prose figures are checked: those above and the shipped model's paragraphs
PROSE_SECTIONS = [(doc, start) for doc, (start, _) in SECTIONS.items()] + [
    ("README.md", "## For clinicians"),
    ("README.md", "## Connect to a PACS"),
]
#: a printed figure: 12.34, 1,234,567, 3.5e-7, 0.008%; not an order of magnitude such as 1e-4 (a bound or
#: a setting), a version such as 2.13.0, nor part of a name
FIGURE = re.compile(r"(?<![\w.\-/=])(\d+(?:,\d{3})+|\d+\.\d+(?:e-?\d+)?)(%?)(?![\w.]*\d)(?!\.\w)")
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?%?")


def _section(doc: str, start: str | None = None) -> str:
    start, end = (start or SECTIONS[doc][0]), "\n## "
    text = (ROOT / doc).read_text()
    assert start in text, f"{doc}: section {start!r} not found (update SECTIONS in {Path(__file__).name})"
    body = text[text.index(start) + len(start) :]
    return body[: body.index(end)] if end in body else body


def _value(figure: str) -> float:
    """The number a printed figure stands for (percent as a fraction)."""
    return float(figure.rstrip("%").replace(",", "")) / (100 if figure.endswith("%") else 1)


def _half_unit(figure: str) -> float:
    """Half the last printed digit: the rounding a printed figure allows."""
    mantissa, _, exponent = figure.rstrip("%").replace(",", "").partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return unit / 2 / (100 if figure.endswith("%") else 1) + 1e-12


def _agrees(figure: str, value: float) -> bool:
    return abs(_value(figure) - value) <= _half_unit(figure)


# ------------------------------------------------------------------------------------------ Table 1
def _recorded_set5() -> dict[tuple[str, str], dict[int, float]]:
    """{(method, variant): {scale: mean PSNR on Set5}} from the recorded per-image CSVs."""
    out = {}
    for src in TABLE1_SOURCES + TABLE1_EXTRA:
        files = [Path(p) for p in sorted(glob.glob(str(RESULTS / src.pattern))) if p.endswith(".csv")]
        scores = mean_scores(files) if files else {}
        set5 = {s: v[0] for (name, s), v in scores.items() if name == "Set5"}
        if set5:
            out[(src.method, src.variant)] = set5
    return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9+\-]+", text.lower().replace("`", "")))


def _source_of(label: str, recorded: dict) -> tuple[str, str]:
    """The recorded (method, variant) a README row names: its method, the variant sharing most words."""
    methods = [m for m, _ in recorded if label.startswith(m)]
    assert methods, f"Table 1 row {label!r}: no recorded method {sorted({m for m, _ in recorded})}"
    method = max(methods, key=len)
    return max((k for k in recorded if k[0] == method), key=lambda k: len(_words(k[1]) & _words(label)))


def _table_rows(section: str) -> list[list[str]]:
    """Rows (cells) of the Markdown tables whose header has x2, x3 and x4 columns."""
    rows, header = [], None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(cells) <= {"---"} and {"x2", "x3", "x4"} <= set(header):
            rows.append([*(c for c, h in zip(cells, header) if h not in ("x2", "x3", "x4")),
                         *(cells[header.index(f"x{s}")] for s in (2, 3, 4))])  # fmt: skip
    return rows


@pytest.mark.parametrize("doc", sorted(SECTIONS))
def test_table1_rows_are_the_recorded_scores(doc: str) -> None:
    recorded, pub = _recorded_set5(), load_published()
    rows = _table_rows(_section(doc))
    assert rows, f"{doc}: no table with x2/x3/x4 columns in its results section"
    for row in rows:
        label, cells = " ".join(row[:-3]), row[-3:]
        method, variant = _source_of(label, recorded)
        for s, cell in zip((2, 3, 4), cells):
            ours, _, published = cell.partition(" / ")  # experiments/README: "ours / published"
            assert _agrees(ours, recorded[(method, variant)][s]), (
                doc,
                label,
                s,
                ours,
                recorded[(method, variant)][s],
            )
            if published:
                assert _agrees(published, published_table1(pub, method, "Set5", s)[0]), (doc, label, s)
        quoted = re.search(r"\((published|reference):? ([\d. /]+)\)", label)
        if quoted:  # README: "(published 36.54 / 32.58 / 30.29)" in the row's label
            for s, figure in zip((2, 3, 4), quoted.group(2).split(" / ")):
                expected = published_table1(pub, method, "Set5", s)[0]
                expected = SET5_BICUBIC[s] if quoted.group(1) == "reference" else expected
                assert _agrees(figure.strip(), expected), (doc, label, s, figure)


# ---------------------------------------------------------------------------------------- the prose
def _sources(paragraph: str, doc: str) -> list[Path]:
    """The recorded files a paragraph names (see the module docstring)."""
    base = (ROOT / doc).parent
    files: list[Path] = []
    for link in re.findall(r"\]\(([^)]*results/[^)]*)\)", paragraph):
        target = (base / link).resolve()
        if target.suffix in (".txt", ".csv", ".json"):  # a recorded output: itself and its run record
            files += [target, target.with_name(target.name + ".run.json")]
            continue
        stem = (
            target.with_suffix("") if target.suffix == ".md" and target.name != "README.md" else target.parent
        )
        files += [target, stem.with_suffix(".csv"), *stem.glob("**/*")]
    for name in set(re.findall(r"`([a-z][a-z0-9_]+)`", paragraph)):
        files += RESULTS.glob(f"**/{name}*")
    for path in re.findall(r"`(?:results/)?([\w/]+\.\w+)`", paragraph):
        files.append(RESULTS / path)
    for name in re.findall(r"scripts/(check_\w+)\.py", paragraph):
        files.append(RESULTS / "checks" / f"{name}.txt")
    return [f for f in files if f.is_file() and f.suffix in (".md", ".csv", ".txt", ".json", ".yaml")]


def _prose(doc: str, start: str | None = None) -> list[str]:
    """The section's paragraphs without its tables and images."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", _section(doc, start)):
        lines = [ln for ln in para.splitlines() if not ln.startswith(("|", "!["))]
        if lines:
            paragraphs.append("\n".join(lines))
    return paragraphs


@pytest.mark.parametrize(("doc", "start"), PROSE_SECTIONS)
def test_prose_figures_are_in_the_recorded_results(doc: str, start: str) -> None:
    missing: list[tuple[str, str]] = []
    sources: list[Path] = []
    for para in _prose(doc, start):
        # a paragraph naming no recorded file continues the previous one (e.g. a list under its heading)
        sources = _sources(para, doc) or sources
        # a step number is a position in a run, not a figure measured by it
        figures = [
            m.group(1) + m.group(2) for m in FIGURE.finditer(para) if not para[: m.start()].endswith("step ")
        ]
        if not figures:
            continue
        values = [_value(n) for f in sources for n in NUMBER.findall(f.read_text(errors="ignore"))]
        missing += [(f, para[:60]) for f in figures if not any(_agrees(f, v) for v in values)]
    assert not missing, f"{doc}: figures not found in the recorded results their paragraph names: {missing}"


# ------------------------------------------------------------------------------------------ counts
def test_fig8_counts_are_the_recorded_ones() -> None:
    """'ahead in PSNR on N of the M 8-bit (set, scale) pairs and in SSIM on K' counts fig8.csv's rows."""
    from mdrn.reproduce.results import read_csv

    para = next(p for p in _prose("experiments/README.md") if p.startswith("**Fig. 8**"))
    text = " ".join(para.split())
    counts = r"ahead in PSNR on (\d+) of the (\d+) 8-bit \(set, scale\) pairs and in SSIM on (\d+)"
    found = re.search(counts, text)
    assert found, f"experiments/README.md: the Fig. 8 paragraph states no counts the test can read: {para!r}"
    rows = [r for r in read_csv(RESULTS / "fig8.csv") if not r["image"]]  # the 8-bit sets' means
    recorded = (
        sum(float(r["diff_psnr"]) > 0 for r in rows),
        len(rows),
        sum(float(r["diff_ssim"]) > 0 for r in rows),
    )
    assert tuple(int(g) for g in found.groups()) == recorded, (found.group(0), "fig8.csv:", recorded)


# ------------------------------------------------------------------------------------------ quickstart
def test_quickstart_transcript_has_the_recorded_scores() -> None:
    """README's quickstart output shows the test table of the preset's recorded run."""
    readme = (ROOT / "README.md").read_text()
    recorded = (RESULTS / "train" / "quickstart_test_results.txt").read_text()

    def rows(text: str) -> dict[tuple[str, str], list[str]]:
        cells = (line.strip("│ ").split("│") for line in text.splitlines() if line.startswith("│ sample_"))
        return {(c[0].strip(), c[1].strip()): [v.strip() for v in c[2:]] for c in cells}

    ours, theirs = rows(readme), rows(recorded)
    assert ours and ours.keys() == theirs.keys(), (sorted(ours), sorted(theirs))
    for key, figures in ours.items():
        for figure, value in zip(figures, theirs[key], strict=True):
            # one unit of the last digit: the transcript's run rounds a mean of ...x5 the other way
            assert abs(float(figure) - float(value)) <= 2 * _half_unit(figure), (key, figure, value)
