"""The finished report: the executed summary notebook as HTML (nbconvert, code hidden, figures embedded,
nothing fetched from the network), printed to PDF by headless Chromium."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
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
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def write_pdf(html: Path, target: Path) -> Path | None:
    """Print the HTML to PDF with headless Chromium; without Chromium, say how to get it and go on."""
    chromium = find_chromium()
    if chromium is None:
        log("report.pdf skipped: Chromium not found. Install it (Debian/Ubuntu: `sudo apt-get install chromium`,"
            " or `make browser`) and run the report again; report.html is complete.")
        return None
    with tempfile.TemporaryDirectory() as profile_dir:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile_dir}", "--no-pdf-header-footer", f"--print-to-pdf={target}",
               html.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not target.exists():
        raise LabError(f"Chromium could not print {html} to PDF (exit {done.returncode}): "
                       f"{(done.stderr.strip().splitlines() or [''])[-1]}")
    return target
