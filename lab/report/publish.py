"""The finished report: the executed summary notebook as HTML (nbconvert, code hidden, figures embedded,
nothing fetched from the network), printed to PDF by headless Chromium."""
from __future__ import annotations

import asyncio
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import LabError
from ..core.extras import need

TEMPLATES = Path(__file__).resolve().parent / "templates"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_html(notebook: Path, target: Path) -> Path:
    """The executed summary as HTML: code hidden, figures embedded, no scripts fetched from the network."""
    exporter = need("nbconvert").HTMLExporter(
        template_name="lab", template_file="report.html.j2", extra_template_paths=[str(TEMPLATES)],
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_filename(str(notebook))
    target.write_text(body)
    return target


def find_chromium() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next(filter(None, map(shutil.which, names)), None)


A4_MM, MARGIN_MM = 210, 12  # templates/report.html.j2: @page { size: A4; margin: 12mm }
PRINT_WIDTH_PX = round((A4_MM - 2 * MARGIN_MM) * 96 / 25.4)  # what a printed line holds, in CSS pixels
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextmanager
def print_layout(html: Path):
    """A Chromium page of `html` laid out as it prints: print media, a line as wide as A4 less the margins."""
    with need("playwright.sync_api").sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": PRINT_WIDTH_PX, "height": 1100})
            page.set_default_timeout(300_000)  # a report of many MB on a busy machine loads in seconds, not 30
            page.emulate_media(media="print")
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            yield page
        finally:
            browser.close()


@dataclass
class Printed:
    """report.pdf, and the tables its printing laid out again (lab/report/templates/fit.js): each {name, how, fits}."""

    pdf: Path
    laid_out: list = field(default_factory=list)

    @property
    def unfit(self) -> list[str]:
        return [t["name"] for t in self.laid_out if not t["fits"]]

    def lines(self) -> list[str]:
        return [f"printed: {t['name']} laid out again ({', '.join(t['how'])})"
                + ("" if t["fits"] else ": STILL WIDER THAN THE PAGE") for t in self.laid_out]

    @property
    def problem(self) -> str | None:
        """The one line a run ends on where a table still does not fit (None: every table fits)."""
        return (f"{self.pdf.name} is written, but {', '.join(self.unfit)} is still wider than the printed page"
                if self.unfit else None)


def write_pdf(html: Path, target: Path) -> Printed | None:
    """Print the HTML to PDF with headless Chromium, a table wider than the page laid out again first (fit.js, named
    in the log; the HTML rewritten as printed). Without Chromium, say how to get it."""
    if find_chromium() is None:
        log("report.pdf skipped: Chromium not found. Install it (Debian/Ubuntu: `sudo apt-get install chromium`,"
            " or `make browser`) and run the report again; report.html is complete.")
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no event loop here: print in this thread
        laid_out = _fit_and_print(html, target)
    else:  # a notebook's kernel runs one, where Playwright's sync API refuses to: print in a thread of its own
        with ThreadPoolExecutor(1) as pool:
            laid_out = pool.submit(_fit_and_print, html, target).result()
    if not Path(target).exists():
        raise LabError(f"Chromium could not print {html} to PDF: no file was written")
    printed = Printed(Path(target), laid_out)
    for line in printed.lines():
        log(line)
    return printed


def _fit_and_print(html: Path, target: Path) -> list:
    try:
        with print_layout(html) as page:
            laid_out = page.evaluate(FIT)
            if laid_out:
                Path(html).write_text(page.content(), encoding="utf-8")
            page.pdf(path=str(target), prefer_css_page_size=True, print_background=True)
            return laid_out
    except need("playwright.sync_api").Error as exc:
        raise LabError(f"Chromium could not print {html} to PDF: {str(exc).splitlines()[0]}") from exc


FIT = f"(fit => fit({PRINT_WIDTH_PX}))({(TEMPLATES / 'fit.js').read_text()})"
