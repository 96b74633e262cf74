"""How a part's section is drawn, in the order the reader sees it: `show` (tables, Markdown, HTML), `figure` (also
saved as PNG and SVG) and `print`; tests/test_goldens.py records them as text."""
from __future__ import annotations

import functools
import re
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core.extras import need
from ..core.stats import plural
from .plots import save_figure


LAB = Path(__file__).resolve().parent.parent  # the lab package: an error names its own line there
_csv: dict = {}  # while `tables_as_csv` is active: the folder and the part whose tables are being shown


@contextmanager
def tables_as_csv(folder, part: str):
    """Every table `show` displays inside this block is also written, unrounded, to `folder/<part>.csv` (the next
    ones `<part>-2.csv`, ...)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    _csv.update(folder=Path(folder), part=part, count=0)
    try:
        yield
    finally:
        _csv.clear()


def _save_csv(obj) -> None:
    table = getattr(obj, "data", obj)  # a Styler's table, or a DataFrame itself
    if not _csv or not hasattr(table, "to_csv"):
        return
    _csv["count"] += 1
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", _csv["part"]) + (f"-{_csv['count']}" if _csv["count"] > 1 else "")
    table.to_csv(_csv["folder"] / f"{name}.csv")
    if obj is not table:  # the HTML table names its CSV: a reader (and the page-fit test) can find the numbers
        obj.set_table_attributes(f'data-csv="{name}.csv"')


def show(*objs) -> None:
    """Display each object; a bare DataFrame takes the tables' display form first (tables.style)."""
    from .tables import style  # tables reads records; display is imported by everything
    objs = [style(obj) if hasattr(obj, "to_csv") and not hasattr(obj, "data") else obj for obj in objs]
    for obj in objs:
        _save_csv(obj)
    need("IPython.display").display(*objs)


def show_updatable(obj):
    """Display `obj`; the handle whose update() redraws it in place (None outside a kernel)."""
    return need("IPython.display").display(obj, display_id=True)


def close_figures() -> None:
    need("matplotlib.pyplot").close("all")


def markdown(text: str):
    return need("IPython.display").Markdown(text)


def html(text: str):
    return need("IPython.display").HTML(text)


def figure(fig, name: str, figures_dir=None) -> None:
    if figures_dir is not None:
        save_figure(fig, name, figures_dir)
    need("matplotlib.pyplot").show()


def describe_run(record: dict) -> str:
    """One line saying what a record measured, for the top of a table."""
    bn = "" if record.get("batch_norm", True) else ", no batch norm"
    origin = (record.get("extra") or {}).get("workers") if isinstance(record.get("extra"), dict) else None
    loader = ("on-device loader" if record.get("loader") == "tensor" else
              plural(int(record["workers"]), "worker") + (f" ({origin})" if origin else ""))
    return (f"ResNet-18{bn}, {record['optimizer']} lr {record['lr']}, batch {record['batch_size']}, "
            f"{loader}, max_batches {record['max_batches']}, on {record['device_name']} "
            f"({record['device_type']}), {record['dataset_kind']} data, torch {record['torch_version']}, "
            f"commit {record['git_commit']}")


@dataclass
class Finding:
    """One of the lab's questions answered in a line, with what the answer rests on, from one part's records."""

    question: str    # "C3.2", as ../LAB lists them
    label: str       # a short label of the question
    answer: str
    evidence: str
    part: str        # the part whose section shows the measurement


def not_answered(part: str, questions, why: str) -> list[Finding]:
    """A part's rows where it did not run (or could not answer): each question says why."""
    return [Finding(q, label, why, "—", part) for q, label in questions]


def failure(part: str, where: str, exc: BaseException) -> str:
    """What could not be drawn, in one line naming the lab's own line that raised: "C10_deploy's findings:
    TypeError: ... (c10_deploy.py:378)"."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve().is_relative_to(LAB)]
    at = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = (str(exc).splitlines() or [""])[0]
    return f"{part}'s {where}: {type(exc).__name__}: {message}{at}"


def block(name: str, *args) -> str:
    """One of the report's HTML blocks (templates/blocks.html.j2: header, appendix, heading, error, findings)."""
    return str(getattr(_blocks(), name)(*args))


@functools.cache
def _blocks():
    jinja2 = need("jinja2")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(LAB / "report" / "templates"), autoescape=True)
    return env.get_template("blocks.html.j2").module


def error_block(line: str):
    """A section's visible error: what raised, and that the rest of the report is drawn."""
    return html(block("error", line))


def heading(part: str, title: str):
    """A part's section heading, with the part's id as its anchor (the findings table links to it)."""
    return html(block("heading", part, title))
