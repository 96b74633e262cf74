"""The report drawn from stored rows: the fixture report (its CUDA rows widen C5 and C8; C8 has settings left out
with long reasons) rendered and printed as a report is, its sections, tables, CSVs, figures and pages, and what a
person sees of it in headless Chromium; every table of it and of the compare page of two reports fits the printed
page (tests/page_fit.py), and so do tables built to be too wide for it (lab/report/templates/fit.js lays them out
again). The report made end to end: tests/test_report.py."""
import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image

import page_fit
from lab import parts
from lab.core import results
from lab.core.files import read_jsonl, save_json, write_jsonl
from lab.parts import c3_workers, c4_workers_profile, c6_optimizers, c7_batchnorm, c8_acceleration, c9_scaling, q_model
from lab.parts.tables import style
from lab.report import compare
from lab.report.publish import find_chromium, write_html, write_pdf
from lab.report.runner import render, render_problem

from test_goldens import FIXTURE


def text(page) -> str:
    """The page without its embedded images (base64 may spell anything)."""
    return re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", page.read_text())


SECTIONS = ["C1/C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "Q1"]
pytestmark = pytest.mark.skipif(not page_fit.available() and not os.environ.get("CI"),
                                reason="Chromium not installed (make browser installs it; CI requires it)")


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("print") / "report"
    shutil.copytree(FIXTURE, folder)
    html, printed, errors = render(folder, "fixture", 600)  # as a report is drawn and printed
    assert errors == [] and printed.unfit == [], (errors, printed.lines())
    return html, folder


def test_html_has_every_section_its_tables_and_embedded_images(printed):
    html, folder = printed
    html = html.read_text()
    headings = [m.start() for s in SECTIONS for m in [re.search(rf"<h2 id=[\"']\w+[\"']>{re.escape(s)}", html)] if m]
    positions = headings if len(headings) == len(SECTIONS) else [-1]
    assert all(p > 0 for p in positions) and positions == sorted(positions), positions
    findings = html.find('<h2 id="findings">Findings</h2>')
    assert 0 < findings < positions[0]  # the findings table heads the report, after the provenance
    for question in parts.questions():  # every question of the lab has its row
        assert f"<b>{question}</b>" in html, question
    # each C-section is followed by a table before the next section
    for start, end in zip(positions, positions[1:] + [len(html)]):
        assert "<table" in html[start:end]
    assert "SYNTHETIC DATA" in html and "not available" in html and "on-device batched" in html
    assert "compute-bound" in html and "step speed-up" in html
    assert "The cost of measuring" in html  # per-phase against epoch timers: the fixture's CUDA rows
    assert q_model.ID in html and "DID NOT RUN" not in html  # each notebook's duration, none missing
    assert f"{c4_workers_profile.ID}/trace_best.json" in html and "top 10 operators" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 6
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "<script src=" not in html  # renders offline
    assert ">def " not in html and "import " not in html  # code hidden
    for name in ("C2_epoch_phases", c3_workers.ID, "C4_phases", c6_optimizers.ID, c7_batchnorm.ID, c8_acceleration.ID):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 0
        assert (folder / "figures" / f"{name}.svg").stat().st_size > 0


def test_every_table_is_a_csv_file(printed):
    """The records, the findings and every part's tables, as CSV files pandas reads."""
    from lab.engine.records import read_records

    tables = printed[1] / "tables"
    records = pd.read_csv(tables / "records.csv")
    assert (len(records) == len(read_records(FIXTURE))
            and {"run_id", "epoch", "total_s", "extra.block"} <= set(records))
    assert len(pd.read_csv(tables / "findings.csv")) == len(parts.questions())
    for part in (c3_workers.ID, c8_acceleration.ID, c9_scaling.ID, q_model.ID):
        assert len(pd.read_csv(tables / f"{part}.csv")) >= 1, part
    assert pd.read_csv(tables / f"{c3_workers.ID}.csv", index_col=0)["batch wait s"].notna().all()


def test_every_table_of_the_fixture_fits_the_printed_page_and_shows_its_csv(printed):
    html, folder = printed
    found, count = page_fit.problems(html, folder / "tables")
    assert count >= 10 and found == [], found
    assert 'data-csv="C8_acceleration.csv"' in html.read_text()
    assert "[1] not measured: left out by this profile" in html.read_text()  # the long reason, under its table


def test_pdf_pages_render_and_are_not_blank(printed, tmp_path):
    pdf = printed[1] / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert shutil.which("pdftoppm"), "pdftoppm (poppler-utils) is required; make browser installs it"
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 3
    for page in pages:
        grey = Image.open(page).convert("L")
        inked = sum(grey.histogram()[:200]) / (grey.width * grey.height)
        assert inked > 0.005, f"{page.name} is blank"


def test_report_renders_in_chromium(printed, tmp_path):
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto(printed[0].as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent.trim())")
        tables = page.eval_on_selector_all("table", "els => els.length")
        banner = page.inner_text("body")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(images) >= 7 and all(ok and w > 0 and h > 0 for ok, w, h in images), images
    for section in SECTIONS:
        assert any(h.startswith(section) for h in headings), (section, headings)
    assert tables >= 10
    assert "SYNTHETIC DATA" in banner
    assert problems == []
    assert Image.open(tmp_path / "report.png").size[1] > 3000  # the whole report, not a blank first screen


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
    html, printed, errors = render(folder, "fixture", 600)
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
