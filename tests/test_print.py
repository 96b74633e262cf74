"""Every table of the printed report fits the page (tests/page_fit.py): the summary of the fixture report (its CUDA
rows widen C5 and C8; C8 has settings left out with long reasons) and the compare page of two reports; the tiny
report that `make test` makes is checked the same way in test_report.py."""
import json
import re
import shutil

import pytest

import page_fit
from lab.core.files import save_json
from lab.report import compare
from lab.report.publish import write_html
from lab.report.runner import execute

from test_goldens import FIXTURE

def text(page) -> str:
    """The page without its embedded images (base64 may spell anything)."""
    return re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", page.read_text())


pytestmark = pytest.mark.skipif(not page_fit.available(), reason="Chromium not installed (make browser installs it)")


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("print") / "report"
    shutil.copytree(FIXTURE, folder)
    execute("summary", folder, {"results_dir": str(folder), "figures_dir": str(folder / "figures"),
                                "profile": "fixture"}, 600)
    return write_html(folder / "summary.ipynb", folder / "report.html"), folder


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
