"""Every section of the report, rendered from fixed records, character for character: the tables (as the
reader sees them: formatted), the sentences, the figures' names and labels, and the header. The records in
tests/fixtures/report are a tiny report's, made once, plus hand-made CUDA rows (C5's GPU, C8's CUDA-only
settings and a CUDA step profile). A change to a golden is a change to what the reader sees: it is made on
purpose, in the commit that changes the code, with `LAB_UPDATE_GOLDENS=1 pytest tests/test_goldens.py`."""
import contextlib
import io
import os
import re
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from lab import parts  # noqa: E402
from lab.core import fields  # noqa: E402
from lab.parts import display  # noqa: E402
from lab.parts.tables import style  # noqa: E402
from lab.report import summary  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report"
GOLDENS = Path(__file__).resolve().parent / "goldens"


def describe(obj) -> str:
    """One displayed object as text: a table formatted as shown, Markdown and HTML as written."""
    from pandas.io.formats.style import Styler

    if isinstance(obj, pd.DataFrame):
        obj = style(obj)  # as display.show shows a bare DataFrame
    if isinstance(obj, Styler):
        notes = f"[notes]\n{obj.caption.replace('<br>', chr(10))}\n" if obj.caption else ""
        return "[table]\n" + obj.to_string() + notes
    kind = type(obj).__name__
    if kind in ("Markdown", "HTML"):
        return f"[{kind.lower()}]\n" + re.sub(r"T_[0-9a-f]+_?", "T_", obj.data)  # pandas' random table ids
    raise AssertionError(f"unexpected displayed object {kind}")


def describe_figure(fig, name: str) -> str:
    lines = [f"[figure] {name}" + (f": {fig._suptitle.get_text()}" if fig._suptitle else "")]
    for ax in fig.axes:
        lines.append(f"  axes {ax.get_title()!r}, x {ax.get_xlabel()!r}, y {ax.get_ylabel()!r}: "
                     f"{len(ax.lines)} lines, {len(ax.patches)} patches, {len(ax.collections)} collections")
    return "\n".join(lines)


class Capture(io.StringIO):
    """What a section shows, in order: displayed objects, figures and printed lines."""

    def __init__(self):
        super().__init__()
        self.items = []

    def write(self, text):
        if text.strip():
            self.items.append("[text]\n" + text.rstrip("\n"))
        return len(text)

    def show(self, *objs):
        self.items.extend(describe(o) for o in objs)

    def figure(self, fig, name, figures_dir=None):
        import matplotlib.pyplot as plt

        self.items.append(describe_figure(fig, name))
        plt.close(fig)

    def text(self) -> str:
        return "\n\n".join(self.items) + "\n"


def rendered(part: str, monkeypatch) -> str:
    capture = Capture()
    monkeypatch.setattr(display, "show", capture.show)
    monkeypatch.setattr(display, "figure", capture.figure)
    with contextlib.redirect_stdout(capture):
        parts.show(part, FIXTURE)
    return capture.text()


def check(name: str, text: str) -> None:
    path = GOLDENS / f"{name}.txt"
    if os.environ.get("LAB_UPDATE_GOLDENS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path.name}: run with LAB_UPDATE_GOLDENS=1 once, on purpose"
    assert text == path.read_text(), f"{name} differs from its golden (tests/goldens/{path.name})"


@pytest.mark.parametrize("part", parts.IDS)
def test_every_section_renders_as_its_golden(part, monkeypatch):
    fields.MISSING.clear()
    check(part, rendered(part, monkeypatch))
    assert not fields.MISSING, f"columns without a field in lab.core.fields (define them): {sorted(fields.MISSING)}"


def test_the_header_renders_as_its_golden():
    check("header", summary.header_html(FIXTURE, "fixture") + "\n")


def test_the_findings_table_renders_as_its_golden():
    rows = parts.findings(FIXTURE)
    assert [r.question for r in rows] == parts.questions()  # every question of the lab, in its order
    check("findings", "".join(f"{r.question} | {r.label} | {r.answer} | {r.evidence} | {r.part}\n" for r in rows))
