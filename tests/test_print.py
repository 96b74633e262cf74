"""Every table of the printed report fits the page (tests/page_fit.py): the summary of the fixture report (its CUDA
rows widen C5 and C8; C8 has settings left out with long reasons), drawn and printed as a report is, the compare page
of two reports, and tables built to be too wide for the page (lab/report/templates/fit.js lays them out again); the
tiny report that `make test` makes is checked the same way in test_report.py."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import page_fit
from lab import parts
from lab.core import results
from lab.core.files import read_jsonl, save_json, write_jsonl
from lab.parts.tables import style
from lab.report import compare
from lab.report.publish import write_html, write_pdf
from lab.report.runner import render, render_problem

from test_goldens import FIXTURE


def text(page) -> str:
    """The page without its embedded images (base64 may spell anything)."""
    return re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", page.read_text())


pytestmark = pytest.mark.skipif(not page_fit.available(), reason="Chromium not installed (make browser installs it)")


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("print") / "report"
    shutil.copytree(FIXTURE, folder)
    html, printed, errors = render(folder, "fixture", 600, folder / "figures")  # as a report is drawn and printed
    assert errors == [] and printed.unfit == [], (errors, printed.lines())
    return html, folder


def test_every_table_of_the_fixture_fits_the_printed_page_and_shows_its_csv(printed):
    html, folder = printed
    found, count = page_fit.problems(html, folder / "tables")
    assert count >= 10 and found == [], found
    assert 'data-csv="C8_acceleration.csv"' in html.read_text()
    assert "[1] not measured: left out by this profile" in html.read_text()  # the long reason, under its table


def test_the_compare_page_fits_the_printed_page(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(FIXTURE, other)
    meta = json.loads((other / "report.json").read_text())
    meta.update(environment={"cpu_model": "Another CPU", "cpu_flags": ["avx2"], "collect_env": {"os": "Linux"}})
    save_json(other / "report.json", meta)
    page = compare.write([FIXTURE, other], tmp_path / "cmp", pdf=False)
    found, count = page_fit.problems(page)
    assert count >= 5 and found == [], found
    assert "NaN" not in text(page)


def test_numbers_print_with_honest_precision(printed):
    html = text(printed[0])
    assert ">3.000<" not in html and not any(f">{n}.000<" in html for n in range(10))  # counts as integers
    assert "NaN" not in html and "…" not in html


def page_of(tmp_path, *tables) -> "Path":
    """A report page (the report's own template) whose output cells show `tables` (Stylers or HTML), each
    Styler's CSV written beside it as the report writes them."""
    outputs = []
    for i, table in enumerate(tables):
        if not isinstance(table, str):
            table.data.to_csv(tmp_path / f"wide-{i}.csv")
            table = table.set_table_attributes(f'data-csv="wide-{i}.csv"').to_html()
        outputs.append(nbformat.v4.new_output("display_data", data={"text/html": table}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    nbformat.write(nb, tmp_path / "page.ipynb")
    return write_html(tmp_path / "page.ipynb", tmp_path / "report.html")


def wide_table() -> pd.DataFrame:
    """A table built to be too wide for the page: 14 columns of ranges and factors under long headers."""
    settings = pd.Index(["1 process", "2 processes (strong)", "2 processes (weak)"], name="setting")
    columns = {f"{name}|n={i}": [f"{value} (×0.{7 + i % 3}1–×1.{40 + i})" for value in ("×1.00", "×1.17", "×0.93")]
               for i, name in enumerate(["scaling_speedup", "scaling_efficiency", "threads_per_process",
                                         "slowest_total_s range"] * 3 + ["batch_per_process", "comm_share"])}
    return pd.DataFrame(columns, index=settings)


def test_a_table_too_wide_for_the_page_is_split_into_stacked_tables_that_fit(tmp_path):
    table = wide_table()
    html = page_of(tmp_path, style(table))
    printed = write_pdf(html, tmp_path / "report.pdf")
    assert [t["name"] for t in printed.laid_out] == ["wide-0.csv"] and printed.unfit == []
    split = printed.laid_out[0]["how"][-1]
    assert split.startswith("split into") and split.endswith("stacked tables")
    found, count = page_fit.problems(html, tmp_path)  # what is printed: every piece within the page, the CSV whole
    assert found == [] and count == int(printed.laid_out[0]["how"][-1].split()[2]) >= 2, found
    page = html.read_text()
    assert page.count("2 processes (strong)") == count  # each piece repeats the setting column
    text = subprocess.run(["pdftotext", "-layout", str(printed.pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "comm share, n 13" in text and text.count("×0.93 (×0.81–×1.53)") == 1  # the last column, printed whole


def test_a_table_that_fits_is_left_as_it_is_and_one_that_cannot_fit_is_named(tmp_path):
    narrow = style(wide_table().iloc[:, :3])
    unbreakable = "<table><tr><th>setting</th><td>" + "x" * 400 + "</td></tr></table>"
    html = page_of(tmp_path, narrow, unbreakable)
    printed = write_pdf(html, tmp_path / "report.pdf")
    assert printed.pdf.read_bytes()[:5] == b"%PDF-"  # written all the same
    assert len(printed.laid_out) == 1 and printed.unfit == [printed.laid_out[0]["name"]]  # only the unbreakable one
    assert printed.unfit[0].startswith('the table "setting')
    assert 'data-piece' not in html.read_text().split("wide-0.csv")[1][:200]  # the narrow table untouched
    assert any("STILL WIDER THAN THE PAGE" in line for line in printed.lines())


def test_a_page_is_printed_from_inside_an_event_loop_as_a_notebook_would(tmp_path):
    """A notebook's kernel runs an asyncio loop, where Playwright's sync API refuses to run: write_pdf prints from
    a thread of its own there."""
    import asyncio

    html = page_of(tmp_path, style(wide_table()))

    async def in_a_kernel():
        return write_pdf(html, tmp_path / "report.pdf")

    printed = asyncio.run(in_a_kernel())
    assert printed.pdf.read_bytes()[:5] == b"%PDF-" and printed.unfit == [] and len(printed.laid_out) == 1


def test_a_report_whose_part_cannot_be_drawn_is_printed_with_the_rest_and_named(tmp_path):
    """The summary notebook as a report runs it, on the fixture's C2, C10 and C11 with a value C10's words need gone:
    C10's section ends in an error block, its findings rows say so (the table drawn above is redrawn in place), every
    other part is drawn (C11 whole, the parts that did not run saying so), report.html and report.pdf are written,
    and the runner's line names the part and the error."""
    folder = tmp_path / "report"
    shutil.copytree(FIXTURE, folder, ignore=lambda d, names: [n for n in names if Path(d) == FIXTURE and n not in (
        "report.json", "C2_timing")])
    write_jsonl(folder / results.MEASUREMENTS, [r for r in read_jsonl(FIXTURE / results.MEASUREMENTS)
                                                if r["part"] in ("C10_deploy", "C11_limits")  # the others' not run
                                                and (r["part"], r["metric"]) != ("C10_deploy", "test_images")])
    html, printed, errors = render(folder, "fixture", 600, folder / "figures")
    page = text(html)
    assert [e.split(":")[0] for e in errors] == ["C10_deploy's findings", "C10_deploy's section"]
    findings = page[page.index('id="findings"'):page.index("<h2 id=\"C2_timing\"")]
    assert findings.count("SECTION NOT DRAWN: C10_deploy") == len(parts.BY_ID["C10_deploy"].questions)
    c10 = page[page.index('<h2 id="C10_deploy"'):page.index('<h2 id="C11_limits"')]
    assert "Not drawn:" in c10 and "TypeError" in c10
    assert page.count("Not drawn:") == 2 and page.count("<h2 id=") >= len(parts.IDS) + 1  # the rest is drawn
    assert "C3_workers did not run in this report" in page
    assert "measured limits" in page[page.index('<h2 id="C11_limits"'):]  # C11 drawn whole, after C10's error
    assert printed.pdf.read_bytes()[:5] == b"%PDF-"
    line = render_problem(printed, errors)
    assert line.startswith("the report is written without C10_deploy's findings: TypeError") and "\n" not in line
