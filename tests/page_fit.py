"""What of a report's HTML does not fit the printed page: every table laid out by the Chromium that prints the PDF,
with print styles, at the width of an A4 page less the report's margins (lab.report.publish.print_layout). A table
wider than the page, a cell whose text overflows it (clipped) or whose words were broken to fit it, text set below
7 pt, and a number or text of the table's CSV (written beside it, named by its `data-csv`) that the printed table
does not show (a column empty everywhere, or a mean shown within its range column, is left out on purpose:
lab.parts.tables.style; a table split at print into stacked pieces is read as the pieces together): each is a line
of the answer."""
import math
import re
from pathlib import Path

import pandas as pd

from lab.core.stats import sig
from lab.report.publish import PRINT_WIDTH_PX as WIDTH
from lab.report.publish import find_chromium, print_layout

SMALLEST_PT = 7

# a word the layout broke across lines to fit its cell ("statu" / "s"): its characters lie on more than one line
BROKEN = """function brokenWords(cell) {
  const out = [], walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.data.matchAll(/[^\\s\\-–\\/_]+[\\-–\\/_]?/g)) {  // so is a hyphen, a dash, "/" or "_"
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
          left: r.left, right: r.right, text: t.innerText,  // as lab/report/templates/fit.js measures them
          within: (t.closest('.jp-OutputArea-output') || t.parentElement).getBoundingClientRect().right,
          clipped: cells.filter(c => { const range = document.createRange(); range.selectNodeContents(c);
                                       return range.getBoundingClientRect().width
                                         > c.getBoundingClientRect().width + 1; })
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
    with print_layout(html_path) as page:
        page.add_script_tag(content=BROKEN)
        return page.eval_on_selector_all("table", LAYOUT), page.evaluate("document.documentElement.scrollWidth")


def problems(html_path: Path, csv_dir: Path | None = None) -> tuple[list[str], int]:
    """(what does not fit, how many tables were laid out)."""
    tables, page_width = layout(html_path)
    found = [] if page_width <= WIDTH + 1 else [f"the page is {page_width}px wide, more than {WIDTH}px"]
    pieces: dict[str, list[str]] = {}  # a table split into stacked pieces at print is read as one
    for t in tables:
        name = t["csv"] or t["head"]
        if t["right"] > min(WIDTH, t["within"]) + 1 or t["left"] < -1:
            found.append(f"{name}: {t['left']:.0f}–{t['right']:.0f}px, wider than the {WIDTH}px page or its "
                         f"{t['within']:.0f}px output area")
        if t["clipped"]:
            found.append(f"{name}: cells overflow: {t['clipped'][:3]}")
        if t["broken"]:
            found.append(f"{name}: words broken to fit: {t['broken']}")
        if t["smallest"] < SMALLEST_PT * 96 / 72 - 0.01:
            found.append(f"{name}: text at {t['smallest'] * 72 / 96:.1f} pt")
        if t["csv"]:
            pieces.setdefault(t["csv"], []).append(_flat(t["text"]))
    for csv, texts in pieces.items():
        if csv_dir is not None and (Path(csv_dir) / csv).exists():
            text = " ".join(texts)
            table = pd.read_csv(Path(csv_dir) / csv, index_col=0)
            shown_columns = [c for c in table.columns if table[c].notna().any() and f"{c} range" not in table.columns]
            values = [*table.index, *shown_columns] + [v for column in shown_columns for v in table[column]]
            lost = [v for v in values if not any(form in text for form in shown(v))]
            if lost:
                found.append(f"{csv}: the CSV's {lost[:3]} not in the printed table")
    return found, len(tables)


def available() -> bool:
    return find_chromium() is not None
