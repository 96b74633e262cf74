"""The summary notebook's content: the report's provenance header (with a loud banner when any number came
from synthetic data), then every part's section in the lab's order of questions (lab.parts)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd

from .. import parts
from ..core import files, results, stats
from ..engine import environment
from ..parts import display, tables
from ..parts.tables import PRECISIONS, load


def measured_only(records: pd.DataFrame) -> pd.DataFrame:
    """The records of epochs that ran: a device that was not there (status "unavailable") left out."""
    return records[records["status"] != "unavailable"] if "status" in records else records


def seen(records: pd.DataFrame, col: str) -> str:
    """Every value of `col` among the measured records, sorted and joined; "—" where there is none."""
    measured = measured_only(records)
    return ", ".join(sorted({str(v) for v in measured[col].dropna()})) if col in measured and len(measured) else "—"


def header_html(results_dir, profile: str) -> str:
    """The report's provenance in a few lines (the machine's details: the appendix), with a banner when any number
    came from synthetic data."""
    epochs = load(results_dir)
    meta = files.read_json(Path(results_dir) / "report.json", {})
    env = meta.get("environment") or {}
    cores = (f", {env.get('cpus_available', '?')} of {env.get('host_cpus', '?')} cores" if env else
             f", {seen(epochs, 'host_cpus')} host CPUs")
    rows = {"report": f"{meta.get('id', Path(results_dir).name)} ({meta.get('profile', profile)} profile), "
                      f"started {started(meta.get('started')) or seen(epochs, 'time')}",
            "machine": f"{seen(epochs, 'device_name')}{cores}",
            "data set": seen(epochs, "dataset_kind"),
            "torch": f"{seen(epochs, 'torch_version')}, commit {seen(epochs, 'git_commit')}",
            "measured peaks": peaks_line(tables.peaks_of(results.read(results_dir, part="report"))),
            "took": notebooks_line(meta)}
    return display.block("header", rows, "synthetic" in set(epochs.get("dataset_kind", [])))


def started(iso: str | None) -> str | None:
    """'2026-12-03 19:25 UTC' from report.json's ISO time."""
    try:
        return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z").strip() if iso else None
    except ValueError:
        return iso


def notebooks_line(meta: dict, each: bool = False) -> str:
    """The notebooks' total time (`each`: each one's), and the ones that did not run."""
    done, planned = meta.get("done", {}), list(meta.get("parameters", {}))
    if not planned:
        return "—"
    ran, missing = [n for n in planned if n in done], [n for n in planned if n not in done]
    total = sum(done[n] for n in ran)
    line = (", ".join(f"{n} {done[n]:.0f} s" for n in ran) if each else
            f"{int(total // 60)} min {int(total % 60):02d} s over {stats.plural(len(ran), 'notebook')}")
    return line + (f"; DID NOT RUN: {', '.join(missing)}" if missing else "")


def appendix_html(results_dir) -> str:
    """The machine and the run in full: the CPU, collect_env's fields, the speed switches, each notebook's time."""
    epochs = load(results_dir)
    meta = files.read_json(Path(results_dir) / "report.json", {})
    rows = {"host CPUs": seen(epochs, "host_cpus"), **environment.summary(meta.get("environment")),
            "speed settings": speed_settings(measured_only(epochs)),
            "records": stats.plural(len(measured_only(epochs)), "epoch record"),
            "notebooks": notebooks_line(meta, each=True)}
    return display.block("appendix", rows)


def speed_settings(measured) -> str:
    """The switches that change speed, as the epochs ran with them (each value seen, over all records)."""
    names = {"cudnn_benchmark_on": "cudnn.benchmark", "deterministic_on": "deterministic",
             "fp32_precision_matmul": "fp32 matmul", "fp32_precision_conv": "fp32 conv"}
    seen = [f"{label} {'/'.join(sorted({str(v) for v in measured[col].dropna()}))}" for col, label in names.items()
            if col in measured and measured[col].notna().any()]
    return "; ".join(seen) or "not recorded"


def peaks_line(peaks: dict | None) -> str:
    """The machine's measured limits, as the report's start measured them (C11 sets every step against them), and
    whether they were measured for this report or read from the cache of an earlier one, and when."""
    if not peaks:
        return "not measured"
    return "; ".join(f"{device}: " + ", ".join(f"{p} {v[p]:.3g}" for p in PRECISIONS if p in v)
                     + " TFLOP/s" + (f", int8 {v['int8']:.3g} TOPS" if "int8" in v else "")
                     + (f", copy {v['copy_GBs']:.0f} GB/s" if "copy_GBs" in v else "")
                     + peaks_source(v.get("conditions") or {})
                     for device, v in peaks.items())


def peaks_source(conditions: dict) -> str:
    """' (measured now, <date>)' or ' (read from the cache, measured <date>)'; '' for a report from before."""
    when = conditions.get("date") or "at an unrecorded time"
    if conditions.get("source") == "cache":
        return f" (read from the cache, measured {when})"
    if conditions.get("source") == "measured":  # the note: a cached entry ignored, a load that changed
        note = conditions.get("cache_note")
        return f" (measured now, {when}" + (f"; {note}" if note else "") + ")"
    return ""


TABLES = "tables"  # the report's tables as CSV, in the report folder
ERRORS = "summary-errors.json"  # what the summary could not draw, by step: the report runner names it at the end


def save_errors(results_dir, step: str, lines: list[str]) -> None:
    """The lines (display.failure) of what `step` ("findings", "sections", "appendix") could not draw."""
    files.save_json(Path(results_dir) / ERRORS, {**_errors(results_dir), step: lines})


def read_errors(results_dir, step: str | None = None) -> list[str]:
    """Every line the summary saved (save_errors), or `step`'s; [] where it drew everything."""
    return [line for name, lines in _errors(results_dir).items() if step in (None, name) for line in lines]


def _errors(results_dir) -> dict:
    saved = files.read_json(Path(results_dir) / ERRORS, {})
    return saved if isinstance(saved, dict) else {}


def drawn(what: str, draw, errors: list):
    """`draw()`, or, where it raises, an error block naming `what` (its line added to `errors`)."""
    try:
        return draw()
    except Exception as exc:  # noqa: BLE001 - shown where it stands; the report ends naming it
        errors.append(display.failure("the report", what, exc))
        return display.error_block(errors[-1])


_findings: dict = {}  # the findings table as show_header drew it: its folder, rows and the handle that redraws it


def show_header(results_dir, profile: str = "") -> None:
    """The provenance header, then the findings table, also written as tables/findings.csv beside every epoch
    record as tables/records.csv (a row per run, rank and epoch; `extra`'s keys as `extra.<key>`)."""
    errors = []
    rows = parts.findings(results_dir, errors)
    display.show(drawn("header", lambda: display.html(header_html(results_dir, profile)), errors))
    save_errors(results_dir, "findings", errors)
    handle = display.show_updatable(display.html(display.block("findings", rows)))
    _findings.update(results_dir=str(results_dir), rows=rows, handle=handle, not_drawn={})
    (Path(results_dir) / TABLES).mkdir(parents=True, exist_ok=True)
    records = load(results_dir)
    tidy = pd.json_normalize(records.to_dict("records")) if len(records) else records
    tidy.to_csv(Path(results_dir) / TABLES / "records.csv", index=False)
    write_findings_csv(results_dir, rows)


def write_findings_csv(results_dir, rows: list[display.Finding]) -> None:
    pd.DataFrame([vars(r) for r in rows]).to_csv(Path(results_dir) / TABLES / "findings.csv", index=False)


def section_not_drawn(results_dir, part: str, line: str) -> None:
    """The findings rows of a part whose section raised say so, in the table show_header drew (redrawn in place)
    and in its CSV."""
    if _findings.get("results_dir") != str(results_dir):
        return
    _findings["not_drawn"][part] = line
    rows = [dataclasses.replace(r, evidence=f"SECTION NOT DRAWN: {_findings['not_drawn'][r.part]}; {r.evidence}")
            if r.part in _findings["not_drawn"] else r for r in _findings["rows"]]
    if _findings["handle"] is not None:
        _findings["handle"].update(display.html(display.block("findings", rows)))
    write_findings_csv(results_dir, rows)


def show_appendix(results_dir) -> None:
    errors = []
    display.show(drawn("appendix", lambda: display.html(appendix_html(results_dir)), errors))
    save_errors(results_dir, "appendix", errors)


def show_parts(results_dir, figures_dir=None) -> None:
    """Each part's section in the lab's order, its tables also as tables/<part>.csv; a section that raises ends in
    an error block and the next is drawn."""
    errors, findings = [], read_errors(results_dir, "findings")
    for part in parts.in_lab_order():
        with display.tables_as_csv(Path(results_dir) / TABLES, part.id):
            try:
                parts.show(part.id, results_dir, figures_dir)
            except Exception as exc:  # noqa: BLE001 - shown in its section; the report ends naming it
                errors.append(display.failure(part.id, "section", exc))
                display.close_figures()  # a figure the section left half drawn is not shown under the next one
                display.show(display.error_block(errors[-1]))
                said = drawn("findings' note", lambda: section_not_drawn(results_dir, part.id, errors[-1]), errors)
                if said is not None:  # the findings above could not be redrawn: said here instead
                    display.show(said)
        for line in findings:  # its findings could not be written: said in its section too
            if line.startswith(f"{part.id}'s "):
                display.show(display.error_block(line))
    save_errors(results_dir, "sections", errors)
