"""`python -m lab compare REPORT [REPORT ...]`: reports side by side through their tables, one HTML page (and PDF):
their environments, then per part each report's verdicts and its settings' steady epochs per image (later reports'
tested against the first's by the comparison rule) or its findings, then each report's measured peaks."""
from __future__ import annotations

import datetime as dt
import fcntl
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import parts
from ..core import fields, files, results, stats
from ..core.errors import LabError, NotAReport, OtherSchema
from ..engine import environment
from ..parts import display
from ..parts.tables import load, peak_unit, peaks_of, style
from .publish import write_pdf
from .summary import seen

fields.define({**{name: fields.Field(name, "ms/image") for name in ("epoch ms/image", "epoch range", "step ms/image",
                                                                   "load ms/image")},
               "claim": "claim", "factor [low–high]": "factor [low–high]", "report": "report"})
MEMORY = ["host_peak_rss_bytes", "cuda_peak_allocated_bytes"]
STATES = {"STILL RUNNING": "a report is writing it now (its .lock is held): parts may be missing or change",
          "UNFINISHED": "report.json has no finish time (stopped, or a part not drawn): parts may be missing"}


@dataclass
class SavedReport:
    """A report folder opened to be compared; `state` (a key of STATES) where it is not finished."""
    name: str
    path: Path
    meta: dict
    records: pd.DataFrame
    rows: pd.DataFrame
    verdicts: pd.DataFrame
    state: str | None = None


def open_report(path) -> SavedReport:
    """A report folder's report.json and tables; one line (exit 2) for a folder not a report of this schema."""
    path = Path(path)
    meta = results.report_meta(path)
    try:
        tables = (load(path), results.read(path), results.read_verdicts(path))
    except results.SchemaError as error:  # rows of another version in a report of this one
        raise OtherSchema(str(error)) from error
    except files.BadFile as error:  # a table that is not JSON lines: named, with its line
        raise NotAReport(str(error)) from None
    except (OSError, ValueError) as error:
        raise NotAReport(f"{path} is not a report: {type(error).__name__} reading its tables") from error
    if not len(tables[0]):
        raise NotAReport(f"{path} is not a report: no epoch records in it (a report folder is what `python -m lab "
                         "report` writes, e.g. results/latest)")
    state = None if meta.get("finished") else "UNFINISHED"
    if (path / ".lock").exists():  # a report runner holds its flock now (lab.report.runner._lock)
        with open(path / ".lock") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours, if free, until the file closes
            except BlockingIOError:
                state = "STILL RUNNING"
    return SavedReport(meta.get("id") or path.resolve().name, path, meta, *tables, state)


def open_reports(paths) -> list[SavedReport]:
    if len(paths) < 2:
        raise NotAReport("compare needs two reports or more")
    reports = [open_report(p) for p in paths]
    names = [r.name for r in reports]
    for i, r in enumerate(reports):  # the same folder name twice (two machines' results/latest): number them
        if names.count(r.name) > 1:
            r.name = f"{r.name} ({i + 1})"
    return reports


# --- a part's tables --------------------------------------------------------------------------------------

def part_table(reports: list[SavedReport], part: str) -> tuple[pd.DataFrame, dict]:
    """The part's settings (rows) by report (column groups): over steady epochs, the means of the slowest rank's
    epoch, step and loader wait in ms per image of all ranks (the epoch's with its min–max), the steady epochs and
    the largest memory peaks; and the epochs per (report, setting)."""
    groups, columns = {}, {}
    for r in reports:
        steady = stats.steady(r.records[r.records["experiment"] == part])
        if not len(steady):
            continue
        numbers = steady.reindex(columns=["slowest_total_s", "total_s", "train_s", "load_s", *MEMORY])
        numbers = numbers.apply(pd.to_numeric, errors="coerce").assign(images=steady["images"])
        numbers["total_s"] = numbers["slowest_total_s"].fillna(numbers["total_s"])
        epochs = numbers.groupby([steady["tag"], steady["run_id"], steady["epoch"]], sort=False).agg(
            {"images": "sum", **dict.fromkeys(["total_s", "train_s", "load_s", *MEMORY], "max")})
        ms = 1000 * epochs[["total_s", "train_s", "load_s"]].div(epochs["images"], axis=0)
        ms.columns = ["epoch ms/image", "step ms/image", "load ms/image"]
        groups.update({(r.name, tag): g for tag, g in ms.join(epochs[MEMORY]).groupby("tag", sort=False)})
    for (name, tag), g in groups.items():
        epoch, step = stats.samples(g["epoch ms/image"]), stats.samples(g["step ms/image"])
        values = {"epoch ms/image": stats.mean(epoch), "epoch range": stats.spread(epoch),
                  "step ms/image": stats.mean(step), "load ms/image": stats.mean(g["load ms/image"]),
                  "steady epochs": len(epoch), **g[MEMORY].max()}
        for k, v in values.items():  # field names: labelled and scaled where the table is shown
            columns.setdefault((name, k), {})[tag] = v
    table = pd.DataFrame(columns, index=list(dict.fromkeys(tag for _, tag in groups)))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["report", ""])
    return table, groups


def across(reports: list[SavedReport], groups: dict) -> pd.DataFrame:
    """Each later report's settings against the first's per image of the epoch and the step (one family per part)."""
    first = reports[0].name
    label = {key: f"{key[0]}: {key[1]}" if key[1] else key[0] for key in groups}  # C2's one run has no tag
    samples = {label[k]: [{"epoch": e, "step": s} for e, s in zip(g["epoch ms/image"], g["step ms/image"])]
               for k, g in groups.items()}
    claims = [(label[(name, tag)], label[(first, tag)], metric) for name, tag in groups for metric in ("epoch", "step")
              if name != first and (first, tag) in groups and stats.samples(groups[(name, tag)][f"{metric} ms/image"])
              and stats.samples(groups[(first, tag)][f"{metric} ms/image"])]
    family = stats.family(samples, claims, scope="this part's comparisons together") if claims else {}
    return claims_table(pd.DataFrame([(f"{a} vs {b}, {m} time per image", c.ratio, c.low, c.high, c.verdict)
                                      for (a, b, m), c in family.items()],
                                     columns=["claim", "factor", "low", "high", "verdict"]))


def claims_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdicts rows as shown, a row per claim: the factor with its range over single samples, and the verdict."""
    v = verdicts.drop_duplicates("claim", keep="last").set_index("claim")
    factors = ["—" if pd.isna([f, low, high]).any() else f"×{f:.2f} [×{low:.2f}–×{high:.2f}]"
               for f, low, high in zip(v["factor"], v["low"], v["high"])]
    return pd.DataFrame({"factor [low–high]": factors, "verdict": v["verdict"]}, index=v.index)


def findings_table(reports: list[SavedReport], part) -> pd.DataFrame:
    """Each report's findings for `part`; where they raise in one report, each of its questions there says so."""
    def drawn(path) -> list:
        try:
            return part.findings(None, path)
        except Exception as exc:  # noqa: BLE001 - one report's part does not sink the page
            return [display.Finding(q, label, f"ERROR: {display.failure(part.id, 'findings', exc)}", "—", part.id)
                    for q, label in part.questions]
    return pd.DataFrame({r.name: {f"{f.question} {f.label}": f.answer for f in drawn(r.path)} for r in reports})


def peaks_table(reports: list[SavedReport]) -> pd.DataFrame:
    """The peaks each report measured (at its start: part "report"; else C11's own), per device and limit."""
    columns = {}
    for r in reports:
        mine = r.rows[r.rows["part"] == "report"]
        for device, peaks in peaks_of(mine if len(mine) else r.rows).items():
            for key, value in peaks.items():
                if isinstance(value, (int, float)):  # not the emulated precisions' list nor the conditions
                    limit = key.replace("_GBs", " GB/s") if key.endswith("_GBs") else f"{key} {peak_unit(key)}"
                    columns.setdefault(r.name, {})[(device, limit)] = value
    table = pd.DataFrame(columns)
    table.index.names, table.columns.name = ["device", "limit"], "report"
    return table


def section(reports: list[SavedReport], part: str) -> list[str]:
    """A part's tables side by side ([] where no report has its results): per image or findings, then verdicts."""
    out = []
    if any((r.records["experiment"] == part).any() for r in reports):
        table, groups = part_table(reports, part)
        if len(table):
            claims = across(reports, groups)
            out += [style(table).to_html(), f"<p>Against {html.escape(reports[0].name)}, by the comparison rule:</p>"]
            none = "<p>No setting ran in both reports: nothing to compare.</p>"
            out.append(style(claims).to_html() if len(claims) else none)
    elif any((r.rows["part"] == part).any() for r in reports):  # measured as rows alone (C10, C11, Q)
        out.append(style(findings_table(reports, parts.BY_ID[part])).to_html())
    verdicts = {r.name: claims_table(mine) for r in reports if len(mine := r.verdicts[r.verdicts["part"] == part])}
    if verdicts:
        side_by_side = pd.concat(verdicts, axis=1, names=["report", ""])
        out.append("<p>Each report's verdicts:</p>" + style(side_by_side).to_html())
    return [f"<h2>{html.escape(parts.BY_ID[part].title)}</h2>", *out] if out else []


# --- the page ---------------------------------------------------------------------------------------------

def header(reports: list[SavedReport]) -> str:
    """The reports' provenance and environments, a column each; loud labels for a report not finished and for
    profiles or data sets that differ."""
    rows = {}
    for r in reports:
        values = {"folder": str(r.path), "profile": r.meta.get("profile", "—"),
                  "data set": seen(r.records, "dataset_kind"), "date": r.meta.get("started", "—"),
                  "finished": r.meta.get("finished") or r.state, "device": seen(r.records, "device_name"),
                  "torch": seen(r.records, "torch_version"), "commit": seen(r.records, "git_commit"),
                  **environment.summary(r.meta.get("environment"))}
        for k, v in values.items():
            rows.setdefault(k, {})[r.name] = v
    table = pd.DataFrame(rows).T[[r.name for r in reports]].fillna("not recorded")  # a field one report lacks
    warnings = [f"{r.name}: {r.state}, {STATES[r.state]}" for r in reports if r.state]
    for what, key in (("profiles", "profile"), ("data sets", "data set")):
        if len(set(table.loc[key])) > 1:
            warnings.append(f"DIFFERENT {what.upper()}: {', '.join(f'{n}: {v}' for n, v in table.loc[key].items())}. "
                            "The settings compared below may differ in more than the machine; read every difference "
                            "with that in mind")
    loud = "".join(f"<div class='loud'>{html.escape(w)}.</div>" for w in warnings)
    return loud + table.to_html(classes="provenance", escape=True)


CSS = """<style>
body { font-family: sans-serif; margin: 1.5em; } table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 5px; text-align: right; } th { background: #f3f3f3; }
table.provenance td { text-align: left; white-space: pre-wrap; }
.loud { border: 3px solid #c0392b; background: #fdecea; color: #922b21; padding: 8px; margin: 8px 0; \
font-weight: bold; }
@page { size: A4; margin: 12mm; }
@media print { table { font-size: 7pt; max-width: 100%; } td, th { white-space: normal; overflow-wrap: break-word; }
  table.lab-narrow td, table.lab-narrow th { padding: 0 1px; }
  table { break-inside: avoid; } h2 { break-after: avoid; } }
</style>"""


def page(reports: list[SavedReport]) -> str:
    """The whole comparison as one HTML document."""
    body = [f"<h1>Reports side by side: {html.escape(' | '.join(r.name for r in reports))}</h1>", header(reports)]
    for part in parts.IDS:
        body += section(reports, part)
    peaks = peaks_table(reports)
    if len(peaks):
        body += ["<h2>Measured peaks</h2><p>The machine's limits each report measured (at its start, else in C11), "
                 "against which C11 sets every step.</p>", style(peaks).to_html()]
    body.append(
        "<h2>How these were compared</h2><p>Times are per image (epoch sizes differ between profiles): the whole "
        "epoch's wall time (the slowest rank's) and the training step's (load and evaluation apart), over steady "
        "epochs (each run's warm-up epoch left out). Each later report's settings are compared with the first "
        "report's by the lab's comparison rule: a part's claims are tested together by permutation, and a claim "
        "is named faster or slower only where p is 5 % or less for the part. The reports ran apart, not "
        "interleaved, so a difference is the two machines' and anything else that changed between the runs (load, "
        "software). Each report's verdicts are its own. A factor is the baseline's time over the setting's, in "
        "brackets the range of single samples' ratios. "
        f"Written {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.</p>")
    return "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Reports side by side</title>" + CSS + \
        "</head><body>" + "\n".join(body) + "</body></html>"


def write(paths, out=None, pdf: bool = True) -> Path:
    """compare.html (and compare.pdf where Chromium is found) in `out` (default results/compare-<time>)."""
    reports = open_reports(paths)
    for r in reports:
        if r.state:
            print(f"{r.name} ({r.path}): {r.state}, {STATES[r.state]}")
    out = Path(out or Path("results") / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "compare.html"
    target.write_text(page(reports))
    printed = write_pdf(target, out / "compare.pdf") if pdf else None
    if printed and printed.problem:
        raise LabError(printed.problem)
    return target


def show(paths) -> None:
    """The same page in a notebook (the compare notebook)."""
    display.show(display.html(page(open_reports(paths))))
