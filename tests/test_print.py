"""Every table of the printed report fits the page: the summary of the fixture report (its CUDA rows widen C5
and C8) rendered to HTML as the report is, then laid out by the Chromium that prints report.pdf, with print
styles, at the width of an A4 page less the report's margins."""
import shutil

import pytest

from lab.report.publish import find_chromium, write_html
from lab.report.runner import execute

from test_goldens import FIXTURE

A4_MM, MARGIN_MM = 210, 12          # lab/report/templates/report.html.j2: @page { size: A4; margin: 12mm }
PX_PER_MM = 96 / 25.4


@pytest.fixture(scope="module")
def printed_html(tmp_path_factory):
    folder = tmp_path_factory.mktemp("print") / "report"
    shutil.copytree(FIXTURE, folder)
    execute("summary", folder, {"results_dir": str(folder), "figures_dir": str(folder / "figures"),
                                "profile": "fixture"}, 600)
    return write_html(folder / "summary.ipynb", folder / "report.html")


def test_every_table_fits_the_printed_page(printed_html):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (make browser installs it)")
    from playwright.sync_api import sync_playwright

    width = round((A4_MM - 2 * MARGIN_MM) * PX_PER_MM)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": width, "height": 1100})
        page.emulate_media(media="print")
        page.goto(printed_html.as_uri(), wait_until="load")
        tables = page.eval_on_selector_all("table", """els => els.map(e => {
            const r = e.getBoundingClientRect();
            return [e.innerText.split('\\n')[0].slice(0, 60), Math.round(r.left), Math.round(r.right)]; })""")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        browser.close()
    assert len(tables) >= 10
    too_wide = [t for t in tables if t[2] > width + 1 or t[1] < -1]
    assert too_wide == [], f"tables wider than the {width}px page: {too_wide}"
    assert page_width <= width + 1


def test_integers_print_as_integers(printed_html):
    html = printed_html.read_text()
    assert ">3.000<" not in html  # epochs, batches and workers columns
