"""`python -m lab compare REPORT [REPORT ...]`: reports side by side, one HTML page (and its PDF).

Per part, every setting's steady epochs are put side by side per image (a quick report's epochs are a few
batches, a full one's 391: seconds per epoch would compare sizes, not speed): the whole epoch's milliseconds
per image and the training step's, with their min–max, the steady epochs behind them and the peak memory,
a column group per report and a colour per report in the figure. Every difference is worded through the
comparison rule (lab.core.stats.family): each later report's settings against the first report's, a part's
claims as one family, a sample being one steady epoch. The reports ran apart, not interleaved: a difference
is the machines' and everything else that changed between the runs. Both environments head the page; reports
of different profiles or data sets carry a loud label. The `compare` notebook shows the same page.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import parts
from ..core import fields, files, results, stats
from ..core.errors import LabError
from ..engine import environment
from ..core.fields import Field
from ..parts import display, plots
from ..parts.tables import load, style
from .publish import write_pdf
from .summary import seen

fields.define({name: Field(name, "ms/image") for name in ("epoch ms/image", "epoch range", "step ms/image",
                                                          "load ms/image")})


class NotAReport(LabError):
    exit_code = 2


@dataclass
class SavedReport:
    """A report folder opened to be compared: its name, folder, report.json and epoch records."""

    name: str
    path: Path
    meta: dict
    records: pd.DataFrame


def open_report(path, name: str | None = None) -> SavedReport:
    """A report folder's report.json and epoch records; one line (exit 2) for a folder that is not a report."""
    path = Path(path)
    if not path.is_dir():
        raise NotAReport(f"{path} is not a report: no such folder")
    what = "(a report folder is what `python -m lab report` writes, e.g. results/latest)"
    try:
        meta = files.read_json(path / "report.json", {})
        records = load(path) if meta else None
    except (OSError, ValueError) as error:
        raise NotAReport(f"{path} is not a report: {type(error).__name__} reading it {what}") from error
    if not meta or not len(records):
        raise NotAReport(f"{path} is not a report: {'no epoch records' if meta else 'no report.json'} in it {what}")
    return SavedReport(name or meta.get("id") or path.resolve().name, path, meta, records)


def open_reports(paths) -> list[SavedReport]:
    if len(paths) < 2:
        raise NotAReport("compare needs two reports or more")
    reports = [open_report(p) for p in paths]
    names = [r.name for r in reports]
    for i, r in enumerate(reports):  # the same folder name twice (two machines' results/latest): number them
        if names.count(r.name) > 1:
            r.name = f"{r.name} ({i + 1})"
    return reports


# --- per image, per setting -------------------------------------------------------------------------------

def epochs_per_image(df: pd.DataFrame) -> pd.DataFrame:
    """A row per steady epoch of each setting (tag): all ranks' images, the slowest rank's epoch, step and
    loader-wait time, each in ms per image, and the largest rank's memory peaks in MiB."""
    steady = stats.steady(df)
    if not len(steady):
        return pd.DataFrame(columns=["tag", "epoch ms/image", "step ms/image"])
    steady = steady.assign(seconds=steady.get("slowest_total_s", steady["total_s"]).fillna(steady["total_s"]))
    numbers = ("train_s", "load_s", "host_peak_rss_bytes", "cuda_peak_allocated_bytes")
    steady = steady.assign(**{c: pd.to_numeric(steady[c], errors="coerce") if c in steady else float("nan")
                              for c in numbers})
    epochs = steady.groupby(["tag", "run_id", "epoch"], sort=False).agg(
        images=("images", "sum"), seconds=("seconds", "max"), train_s=("train_s", "max"), load_s=("load_s", "max"),
        rss=("host_peak_rss_bytes", "max"), cuda=("cuda_peak_allocated_bytes", "max")).reset_index()
    return pd.DataFrame({"tag": epochs["tag"], "epoch ms/image": 1000 * epochs["seconds"] / epochs["images"],
                         "step ms/image": 1000 * epochs["train_s"] / epochs["images"],
                         "load ms/image": 1000 * epochs["load_s"] / epochs["images"],
                         "host_peak_rss_bytes": epochs["rss"], "cuda_peak_allocated_bytes": epochs["cuda"]})


def part_table(reports: list[SavedReport], part: str) -> tuple[pd.DataFrame, dict]:
    """The part's settings (rows) by report (column groups): ms per image of the epoch and the step (means over
    steady epochs, the epoch's with its min–max) and of the wait on the loader, steady epochs, memory peaks.
    Also the samples per (report, setting)."""
    groups, rows = {}, {}
    for r in reports:
        per_image = epochs_per_image(r.records[r.records["experiment"] == part])
        for tag, g in per_image.groupby("tag", sort=False):
            groups[(r.name, tag)] = g
            rows.setdefault(tag, {})
    columns = {}
    for r in reports:
        for tag in rows:
            g = groups.get((r.name, tag))
            if g is None:
                continue
            epoch, step = stats.samples(g["epoch ms/image"]), stats.samples(g["step ms/image"])
            values = {"epoch ms/image": stats.mean(epoch), "epoch range": stats.spread(epoch),
                      "step ms/image": stats.mean(step), "load ms/image": stats.mean(g["load ms/image"]),
                      "steady epochs": len(epoch),
                      **{f: g[f].max() for f in ("host_peak_rss_bytes", "cuda_peak_allocated_bytes")}}
            for k, v in values.items():  # field names: labelled and scaled where the table is shown
                columns.setdefault((r.name, k), {})[tag] = v
    table = pd.DataFrame(columns, index=list(rows))
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["report", ""])
    table = table.loc[:, [c for c in table.columns if table[c].notna().any() and (table[c] != "—").any()]]
    return table, groups


def differences(reports: list[SavedReport], groups: dict) -> list[str]:
    """Each later report's settings against the first report's, in ms per image of the epoch and of the step,
    tested together (one family per part); a sentence per claim."""
    first = reports[0].name
    label = {key: f"{key[0]}: {key[1]}" if key[1] else key[0] for key in groups}  # C2's one run has no tag
    samples = {label[k]: [{"epoch": e, "step": s} for e, s in zip(g["epoch ms/image"], g["step ms/image"])]
               for k, g in groups.items()}
    claims = []
    for r in reports[1:]:
        for (name, tag) in groups:
            if name == r.name and (first, tag) in groups:
                for metric in ("epoch", "step"):
                    if stats.samples(groups[(name, tag)][f"{metric} ms/image"]) and stats.samples(
                            groups[(first, tag)][f"{metric} ms/image"]):
                        claims.append((label[(name, tag)], label[(first, tag)], metric))
    if not claims:
        return ["No setting ran in both reports: nothing to compare."]
    verdicts = stats.family(samples, claims, scope="this part's comparisons together")
    lines, undecided, said = [], {}, set()
    for (a, b, metric), c in verdicts.items():
        if c.decided and (a, b) not in said:  # the epoch's and the step's factors together, each said once
            said.add((a, b))
            lines.append(stats.together({f"{m} time per image": verdicts[(a, b, m)] for m in ("step", "epoch")
                                         if (a, b, m) in verdicts and verdicts[(a, b, m)].decided}))
        elif not c.decided:  # one line per later report and verdict, naming its settings
            report, tag = next((k[0], k[1]) for k, v in label.items() if v == a)
            text = stats.NO_DIFFERENCE if c.verdict == stats.NO_DIFFERENCE else stats.too_few(c.n, c.needed)
            undecided.setdefault((report, text), {}).setdefault(tag or "its run", []).append(metric)
    for (report, text), tags in undecided.items():
        named = ", ".join(f"{tag} ({' and '.join(metrics)})" for tag, metrics in tags.items())
        lines.append(f"{report} vs {first}: {text}, in time per image: {named}.")
    return lines


@plots.themed
def part_figure(reports: list[SavedReport], groups: dict, title: str):
    """Epoch milliseconds per image per setting, a bar per report (mean, min–max whiskers)."""
    plt = plots.pyplot()
    tags = list(dict.fromkeys(tag for _, tag in groups))
    colors = plots.seaborn().color_palette("deep", len(reports))
    fig, ax = plt.subplots(figsize=(min(9.0, max(4.5, 0.6 * len(tags) * len(reports) + 2)), 2.6))
    width = 0.8 / len(reports)
    for i, r in enumerate(reports):
        x, mean, low, high = [], [], [], []
        for j, tag in enumerate(tags):
            values = stats.samples(groups[(r.name, tag)]["epoch ms/image"]) if (r.name, tag) in groups else []
            if values:
                x.append(j + (i - (len(reports) - 1) / 2) * width)
                mean.append(stats.mean(values)), low.append(stats.mean(values) - min(values))
                high.append(max(values) - stats.mean(values))
        ax.bar(x, mean, width, yerr=[low, high], capsize=3, color=colors[i], label=r.name)
    ax.set_xticks(range(len(tags)), tags, rotation=20 if len(tags) > 3 else 0,
                  ha="right" if len(tags) > 3 else "center")
    ax.set_ylabel("epoch ms per image")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plots.pyplot().close(fig)
    return "<img alt='figure' src='data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode() + "'>"


# --- the page ---------------------------------------------------------------------------------------------

def header(reports: list[SavedReport]) -> str:
    """The reports' provenance and environments, a column each; a loud label when profiles or data sets differ."""
    rows = {}
    for r in reports:
        env = r.meta.get("environment")
        values = {"folder": str(r.path), "profile": r.meta.get("profile", "—"),
                  "data set": seen(r.records, "dataset_kind"), "date": r.meta.get("started", "—"),
                  "device": seen(r.records, "device_name"), "torch": seen(r.records, "torch_version"),
                  "commit": seen(r.records, "git_commit"), **environment.summary(env)}
        for k, v in values.items():
            rows.setdefault(k, {})[r.name] = v
    table = pd.DataFrame(rows).T[[r.name for r in reports]].fillna("not recorded")  # a field one report lacks
    warnings = []
    for what, key in (("profiles", "profile"), ("data sets", "data set")):
        if len(set(table.loc[key])) > 1:
            warnings.append(f"DIFFERENT {what.upper()}: {', '.join(f'{n}: {v}' for n, v in table.loc[key].items())}")
    label = "".join(f"<div class='loud'>{html.escape(w)}. The settings compared below may differ in more than the "
                    "machine; read every difference with that in mind.</div>" for w in warnings)
    return label + table.to_html(classes="provenance", escape=True)


CSS = """<style>
body { font-family: sans-serif; margin: 1.5em; } table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 5px; text-align: right; } th { background: #f3f3f3; }
table.provenance td { text-align: left; white-space: pre-wrap; }
.loud { border: 3px solid #c0392b; background: #fdecea; color: #922b21; padding: 8px; \
margin: 8px 0; font-weight: bold; }
img { max-width: 100%; }
@page { size: A4; margin: 12mm; }
@media print { table { font-size: 7pt; max-width: 100%; } td, th { white-space: normal; overflow-wrap: break-word; }
  table.lab-narrow td, table.lab-narrow th { padding: 0 1px; }
  table, img { break-inside: avoid; } h2 { break-after: avoid; } }
</style>"""


def page(reports: list[SavedReport]) -> str:
    """The whole comparison as one HTML document."""
    body = [f"<h1>Reports side by side: {html.escape(' | '.join(r.name for r in reports))}</h1>", header(reports)]
    for part in parts.IDS:
        if not any(len(r.records) and (r.records["experiment"] == part).any() for r in reports):
            if any(len(results.read(r.path, part=part)) for r in reports):  # measured as rows alone (C10, C11, Q)
                body.append(findings_table(reports, parts.BY_ID[part]))  # its findings side by side
            continue
        table, groups = part_table(reports, part)
        if not len(table):
            continue
        body.append(f"<h2>{html.escape(parts.BY_ID[part].title)}</h2>")
        body.append(style(table).to_html())
        body.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in differences(reports, groups)) + "</ul>")
        body.append(_png(part_figure(reports, groups, parts.BY_ID[part].title)))
    body.append(
        "<h2>How these were compared</h2><p>Times are per image (epoch sizes differ between profiles): the whole "
        "epoch's wall time (the slowest rank's) and the training step's (load and evaluation apart), over steady "
        "epochs (each run's warm-up epoch left out). Each later report's settings are compared with the first "
        "report's by the lab's comparison rule: a part's claims are tested together by permutation, and a "
        "sentence names a faster or slower report only where p is 5 % or less for the part. The reports ran "
        "apart, not interleaved, so a difference is the two machines' and anything else that changed between "
        f"the runs (load, software). Written {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.</p>")
    return "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Reports side by side</title>" + CSS + \
        "</head><body>" + "\n".join(body) + "</body></html>"


def drawn_findings(part, path) -> list:
    """A part's findings in one report; where they raise, each of its questions says so (display.failure)."""
    try:
        return part.findings(None, path)
    except Exception as exc:  # noqa: BLE001 - one report's part does not sink the page
        line = display.failure(part.id, "findings", exc)
        return [display.Finding(q, label, f"ERROR: {line}", "—", part.id) for q, label in part.questions]


def findings_table(reports: list[SavedReport], part) -> str:
    """A part that keeps its own files: each report's rows of the findings table for it, side by side."""
    rows = {r.name: {f"{f.question} {f.label}": f.answer for f in drawn_findings(part, r.path)} for r in reports}
    table = pd.DataFrame(rows)
    return f"<h2>{html.escape(part.title)}</h2>" + style(table).to_html()


def write(paths, out=None, pdf: bool = True) -> Path:
    """compare.html (and compare.pdf where Chromium is found) for the reports at `paths`, in `out`
    (default results/compare-<time>)."""
    reports = open_reports(paths)
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
    from ..parts import display
    display.show(display.html(page(open_reports(paths))))
