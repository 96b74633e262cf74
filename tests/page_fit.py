"""What of a report's HTML does not fit the printed page: every table laid out by the Chromium that prints the PDF,
with print styles, at the width of an A4 page less the report's margins. A table wider than the page, a cell
whose text overflows it (clipped) or whose words were broken to fit it, text set below 7 pt, and a number or text of the table's CSV (written beside
it, named by its `data-csv`) that the printed table does not show (a column empty everywhere, or a mean shown
within its range column, is left out on purpose: lab.parts.tables.style): each is a line of the answer."""
import math
import re
from pathlib import Path

import pandas as pd

from lab.core.stats import sig
from lab.report.publish import find_chromium

A4_MM, MARGIN_MM = 210, 12          # lab/report/templates/report.html.j2: @page { size: A4; margin: 12mm }
PX_PER_MM = 96 / 25.4
WIDTH = round((A4_MM - 2 * MARGIN_MM) * PX_PER_MM)
SMALLEST_PT = 7

# a word the layout broke across lines to fit its cell ("statu" / "s"): its characters lie on more than one line
BROKEN = """function brokenWords(cell) {
  const out = [], walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.data.matchAll(/[^\\s\\-–]+[\\-–]?/g)) {  // a hyphen or dash is a place to break
      const range = document.createRange();
      range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) out.push(m[0]);
    }
  }
  return out;
}"""
LAYOUT = """els => els.map(t => {
  const r = t.getBoundingClientRect();
  const cells = [...t.querySelectorAll('td, th')];
  return {csv: t.getAttribute('data-csv'), head: t.innerText.split('\\n')[0].slice(0, 60),
          left: Math.round(r.left), right: Math.round(r.right), text: t.innerText,
          clipped: cells.filter(c => { const range = document.createRange(); range.selectNodeContents(c);
                                       return range.getBoundingClientRect().width > c.getBoundingClientRect().width + 1; })
                        .map(c => c.innerText.slice(0, 40)),
          broken: cells.flatMap(c => brokenWords(c)).slice(0, 5),
          smallest: Math.min(...cells.map(c => parseFloat(getComputedStyle(c).fontSize)))};
})"""


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def shown(value) -> list[str]:
    """The forms a CSV value may take in its printed table: text as written, a number as the tables print it."""
    if isinstance(value, str):
        return [_flat(value)]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ["—"]
    return [sig(value), f"{value:,.0f}", str(value)]


def layout(html_path: Path) -> tuple[list[dict], int]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 1100})
        page.emulate_media(media="print")
        page.goto(Path(html_path).as_uri(), wait_until="load")
        page.add_script_tag(content=BROKEN)
        tables = page.eval_on_selector_all("table", LAYOUT)
        page_width = page.evaluate("document.documentElement.scrollWidth")
        browser.close()
    return tables, page_width


def problems(html_path: Path, csv_dir: Path | None = None) -> tuple[list[str], int]:
    """(what does not fit, how many tables were laid out)."""
    tables, page_width = layout(html_path)
    found = [] if page_width <= WIDTH + 1 else [f"the page is {page_width}px wide, more than {WIDTH}px"]
    for t in tables:
        name = t["csv"] or t["head"]
        if t["right"] > WIDTH + 1 or t["left"] < -1:
            found.append(f"{name}: {t['left']}–{t['right']}px, wider than the {WIDTH}px page")
        if t["clipped"]:
            found.append(f"{name}: cells overflow: {t['clipped'][:3]}")
        if t["broken"]:
            found.append(f"{name}: words broken to fit: {t['broken']}")
        if t["smallest"] < SMALLEST_PT * 96 / 72 - 0.01:
            found.append(f"{name}: text at {t['smallest'] * 72 / 96:.1f} pt")
        if t["csv"] and csv_dir is not None and (Path(csv_dir) / t["csv"]).exists():
            text = _flat(t["text"])
            table = pd.read_csv(Path(csv_dir) / t["csv"], index_col=0)
            shown_columns = [c for c in table.columns if table[c].notna().any() and f"{c} range" not in table.columns]
            values = [*table.index, *shown_columns] + [v for column in shown_columns for v in table[column]]
            lost = [v for v in values if not any(form in text for form in shown(v))]
            if lost:
                found.append(f"{name}: the CSV's {lost[:3]} not in the printed table")
    return found, len(tables)


def available() -> bool:
    return find_chromium() is not None
