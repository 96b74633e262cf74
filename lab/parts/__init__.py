"""The report's parts, in run order: one module each (lab/parts/<id>.py), the registry that the report runner,
each notebook, the summary and the estimate iterate over (as torchvision finds its models by name).

A part's module holds its whole story, in the order a reader asks for it: what its parameters mean
(`PARAMETERS`), the runs it makes and the work they are (`runs`), how it makes them (`run`), and how its
section is drawn from records alone (`section`). Its id (`ID`) is its notebook's name, the records'
`experiment` and its folder in a report. A part with `USES_BEST_WORKERS` trains with C3's best worker count
unless its `workers` parameter is set. What the parts share lives beside them: base (runs, interleaving,
reuse, the plan), tables, plots, display and comparison (C6 and C7).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.config import Config, check_namespace
from ..data.cifar10 import resolve_dataset
from . import (
    c2_timing,
    c3_workers,
    c4_workers_profile,
    c5_devices,
    c6_optimizers,
    c7_batchnorm,
    c8_acceleration,
    c9_scaling,
    display,
    q_model,
)
from .base import Report, Work
from .tables import load

PARTS = (q_model, c2_timing, c3_workers, c4_workers_profile, c5_devices, c6_optimizers, c7_batchnorm,
         c8_acceleration, c9_scaling)
IDS = tuple(p.ID for p in PARTS)
BY_ID = {p.ID: p for p in PARTS}


def output_dir(results_dir, part: str) -> Path:
    """`results_dir/part/`, emptied of that part's earlier records so a re-run replaces them."""
    out = Path(results_dir) / part
    out.mkdir(parents=True, exist_ok=True)
    for name in ("records.jsonl", "batches.jsonl"):
        (out / name).unlink(missing_ok=True)
    return out


def config_for(part: str, params: dict) -> Config:
    """The Config of a part's runs from its parameters (those that are Config fields; no checkpoints: a
    report re-runs whole notebooks). `dataset: auto` is resolved here (lab.data.cifar10.resolve_dataset)."""
    names = set(Config().to_dict())
    fields = {k: v for k, v in params.items() if k in names and v is not None}
    fields["dataset"] = resolve_dataset(fields.get("dataset", "auto"), fields.get("data", "../data"))
    return Config.from_dict({**fields, "experiment": part, "checkpoint": None})


def with_workers(part: str, params: dict) -> dict:
    """`params` with `workers` set to C3's best count where the part uses it and the parameter is None."""
    if BY_ID[part].USES_BEST_WORKERS and params.get("workers") is None:
        return {**params, "workers": c3_workers.best_workers(params["results_dir"])}
    return params


def run(part: str, namespace: dict) -> list[dict]:
    """A notebook's work: check its parameters (lab.core.config), take C3's best worker count where it applies
    (the records say so, and whether C3 could tell: extra["workers"]), and make the part's runs into its
    emptied folder; the records."""
    checked = check_namespace(namespace)
    params = with_workers(part, checked)
    config, out = config_for(part, params), output_dir(params["results_dir"], part)
    if params is not checked:  # the count is C3's
        config = config.replace(extra={"workers": c3_workers.best_label(params["results_dir"])})
    return BY_ID[part].run(config, params, out, Report(Path(params["results_dir"])))


def plan(part: str, params: dict, report: Report) -> Work:
    """The work a part will do with `params` in `report`, from the same decision its `run` makes (`runs`);
    its Runs are kept in `report.planned` for the parts after it that reuse them."""
    params = with_workers(part, {"dataset": "synthetic", **params, "results_dir": str(report.results_dir)})
    config = config_for(part, params)  # a part without a data set (Q_model) plans as synthetic: same sizes
    runs = BY_ID[part].runs(config, params, report)
    report.planned[part] = runs
    return runs.work(config.batch_size)


def reuse_note(df: pd.DataFrame) -> str | None:
    """Which runs a part took from an earlier part's interleaved block (lab.parts.base.reuse), or None."""
    if "reused_from" not in df or not df["reused_from"].notna().any():
        return None
    taken = ", ".join(dict.fromkeys(df["reused_from"].dropna()))
    return (f"These runs were measured once, in an earlier part's interleaved block, and are reused here (same "
            f"settings; this part compares them only with each other): {taken}.")


def render(part: str, records, results_dir=None, figures_dir=None) -> None:
    """A part's section from its records (a list of records or a DataFrame)."""
    df = pd.DataFrame(records).reset_index(drop=True)
    note = reuse_note(df)
    if note:
        display.show(display.markdown(f"*{note}*"))
    BY_ID[part].section(df, results_dir, figures_dir)


ORDER = ("C2.1", "C2.2", "C2.3", "C3.1", "C3.2", "C3.3", "C4", "C5", "C6", "C7", "C8", "C9", "Q1", "Q2", "Q3", "Q4",
         "Q5")  # the lab's questions, as ../LAB lists them


def findings(results_dir) -> list[display.Finding]:
    """Every part's rows of the findings table, in the order of the lab's questions; a part that did not run
    says so in each of its rows."""
    rows = []
    for part in PARTS:
        records = load(results_dir, experiment=part.ID) if part is not q_model else None
        if records is not None and not len(records):
            rows += display.not_answered(part.ID, part.QUESTIONS, f"{part.ID} did not run in this report")
        else:
            rows += part.findings(records, results_dir)
    return sorted(rows, key=lambda r: ORDER.index(r.question))


def show(part: str, results_dir, figures_dir=None) -> None:
    """The summary's section of one part: its heading, then its records rendered, or a line saying that the
    part did not run in this report."""
    display.show(display.heading(part, BY_ID[part].TITLE))
    if part == q_model.ID:
        return q_model.section(None, results_dir, figures_dir)
    records = load(results_dir, experiment=part)
    if not len(records):
        print(f"{part} did not run in this report.")
        return None
    render(part, records, results_dir, figures_dir)
