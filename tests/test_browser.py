"""The report as a person sees it: report.html in headless Chromium, report.pdf rendered to pages."""
import os
import shutil
import subprocess

import pytest
from PIL import Image

from lab.report import find_chromium

SECTIONS = ["C1/C2", "C3", "C4", "C5", "C6", "C7", "C8", "Q1"]


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None and not os.environ.get("CI"):
        pytest.skip("Chromium not installed (make browser installs it)")
    assert path, "Chromium is required in CI"
    return path


def test_report_renders_in_chromium(tiny_report, chromium):
    from playwright.sync_api import sync_playwright

    _, out = tiny_report
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto((out / "report.html").as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent.trim())")
        tables = page.eval_on_selector_all("table", "els => els.length")
        banner = page.inner_text("body")
        page.screenshot(path=str(out / "report.png"), full_page=True)
        browser.close()
    assert len(images) >= 7 and all(ok and w > 0 and h > 0 for ok, w, h in images), images
    for section in SECTIONS:
        assert any(h.startswith(section) for h in headings), (section, headings)
    assert tables >= 10
    assert "SYNTHETIC DATA" in banner
    assert problems == []
    assert Image.open(out / "report.png").size[1] > 3000  # the whole report, not a blank first screen


def test_pdf_pages_render_and_are_not_blank(tiny_report, chromium, tmp_path):
    _, out = tiny_report
    assert shutil.which("pdftoppm"), "pdftoppm (poppler-utils) is required; make browser installs it"
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(out / "report.pdf"), str(tmp_path / "page")],
                   check=True, timeout=120)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 3
    for page in pages:
        grey = Image.open(page).convert("L")
        inked = sum(grey.histogram()[:200]) / (grey.width * grey.height)
        assert inked > 0.005, f"{page.name} is blank"
