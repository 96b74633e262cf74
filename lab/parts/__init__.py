"""The registry of the report's parts, in run order: one module each, declaring itself as `PART` (lab.parts.base.Part;
docs/architecture.md), and what the runner, the notebooks, the summary and the estimate do with a part."""
from __future__ import annotations

import math
import time
from importlib import import_module
from pathlib import Path

import pandas as pd

from ..core import results, stats
from ..core.config import PARAMETERS, Config, check_namespace
from ..data.cifar10 import resolve_dataset
from . import display
from .base import DEFAULT_WORKERS, Part, Report, Work, steady_epochs
from .tables import load

# Every part's module, in run order (C3 finds the best worker count that later parts use): the one place outside
# its own module where a part is named.
PARTS: tuple[Part, ...] = tuple(import_module(f".{name}", __name__).PART for name in (
    "q_model", "c2_timing", "c3_workers", "c4_workers_profile", "c5_devices", "c6_optimizers", "c7_batchnorm",
    "c8_acceleration", "c9_scaling", "c10_deploy", "c11_limits"))
IDS = tuple(p.id for p in PARTS)
BY_ID = {p.id: p for p in PARTS}

# The lab's questions, in ../shared/LAB.md's order: the findings table's order, and the sections' (a part's first
# question places it).
ORDER = ("C2.1", "C2.2", "C2.3", "C3.1", "C3.2", "C3.3", "C4", "C5", "C6", "C7", "C8", "C9", "Q1", "Q2", "Q3", "Q4",
         "Q5", "C10.1", "C10.2", "C10.3", "C10.4", "C10.5", "C11")


def lab_order(question: str) -> tuple:
    """Where a question sorts: the lab's order, then questions the lab does not ask (a part of your own)."""
    return (ORDER.index(question), "") if question in ORDER else (len(ORDER), question)


def questions() -> list[str]:
    """Every question the registered parts answer, in the lab's order: the findings table's rows."""
    return sorted({q for part in PARTS for q, _ in part.questions}, key=lab_order)


def in_lab_order() -> list[Part]:
    """The parts in the order of their first question (the summary's sections)."""
    return sorted(PARTS, key=lambda p: lab_order(p.questions[0][0]))


def parameters(part: Part) -> dict[str, str]:
    """What each of a part's notebook parameters means, from their Specs."""
    return {name: PARAMETERS[name].help for name in dict.fromkeys(("results_dir", *part.parameters))}


def output_dir(results_dir, part: str) -> Path:
    """`results_dir/part/`, emptied of that part's earlier records so a re-run replaces them."""
    out = Path(results_dir) / part
    out.mkdir(parents=True, exist_ok=True)
    for name in ("records.jsonl", "batches.jsonl"):
        (out / name).unlink(missing_ok=True)
    return out


def config_for(part: str, params: dict) -> Config:
    """The Config of a part's runs from its parameters that are Config fields, `dataset: auto` resolved; no
    checkpoints (a report re-runs whole notebooks)."""
    names = set(Config().to_dict())
    fields = {k: v for k, v in params.items() if k in names and v is not None}
    fields["dataset"] = resolve_dataset(fields.get("dataset", "auto"), fields.get("data", "../data"))
    return Config.from_dict({**fields, "experiment": part, "checkpoint": None})


def best_workers(results_dir) -> tuple[int, str]:
    """The best worker count in a report folder and, in words, where it came from (its row), else the default."""
    rows = results.read(results_dir, metric="best_workers")
    if len(rows) and rows["value"].notna().iloc[-1]:
        return int(rows["value"].iloc[-1]), str(rows["text"].iloc[-1])
    finder = next((p.id for p in PARTS if "best_workers" in p.provides), "no part")
    return DEFAULT_WORKERS, f"the default, {DEFAULT_WORKERS}; {finder} did not run"


def with_workers(part: str, params: dict) -> dict:
    """`params` with `workers` set to the best count where the part needs it and the parameter is None."""
    if "best_workers" in BY_ID[part].needs and params.get("workers") is None:
        return {**params, "workers": best_workers(params["results_dir"])[0]}
    return params


def run(part: str, namespace: dict) -> list[dict]:
    """A notebook's work: its parameters checked, the best worker count taken where it applies (said in
    extra["workers"]), the part's runs made into its emptied folder and its claims decided; the records."""
    checked = check_namespace(namespace)
    params = with_workers(part, checked)
    config, out = config_for(part, params), output_dir(params["results_dir"], part)
    if params is not checked:  # the count is the one found earlier in this report
        config = config.replace(extra={"workers": best_workers(params["results_dir"])[1]})
    declared = BY_ID[part]
    results.Rows(params["results_dir"], part).start()  # a part run again replaces its rows
    report = Report(Path(params["results_dir"]))
    records = declared.make(config, params, out, report)
    decide(declared, params["results_dir"], lambda *more: declared.more(config, params, out, report, *more),
           params.get("extra_rounds_s") or 0, params.get("extra_rounds_target") or 0.0)
    return records


def decide(part: Part, results_dir, more=None, budget_s: float = 0.0, target: float = 0.0) -> dict:
    """The part's claims, decided by the comparison rule from its records and rows, into the verdicts table. Where
    some are still open and could not have seen `target` (a fraction), `more(open claims, rounds, look)` measures
    their settings for further interleaved rounds, as many as the part's samples so far and `budget_s` allow, and
    the rule looks again at the next look's level (lab.core.stats.level): the looks spend the family's ALPHA."""
    if part.verdicts is None:
        return {}
    look, spent = 1, 0.0
    while True:
        records, token = load(results_dir, experiment=part.id), stats.LOOK.set(look)
        try:
            found = part.verdicts(records, results_dir)
        finally:
            stats.LOOK.reset(token)
        still = [k for k, c in found.items() if is_open(c, target)]
        round_s = round_seconds(records, {str(n) for k in still for n in k[:2]})
        for k in still:
            found[k].round_s = round_s
        rounds = min(max(c.n for c in found.values()) if found else 0,
                     math.floor((budget_s - spent) / round_s) - 1 if round_s > 0 else 0)
        if not still or part.more is None or more is None or rounds < 1 or look >= stats.MAX_LOOKS:
            break
        start = time.monotonic()
        look += 1
        more(still, rounds, look)
        spent += max(time.monotonic() - start, (rounds + 1) * round_s)  # at least what the rounds were priced at
    results.write_verdicts(results_dir, part.id, found)
    return found


def is_open(c: stats.Comparison, target: float) -> bool:
    """An undecided claim that could not have seen a difference of `target` (or whose noise is not known)."""
    if c.decided:
        return False
    figures = c.figures()
    return figures is None or not figures[1] <= target


def round_seconds(records: pd.DataFrame, names: set) -> float:
    """What one more interleaved round of the named settings costs, about: a steady epoch's mean seconds over the
    part's runs, once per setting; NaN where none ran."""
    seconds = stats.samples(stats.steady(records)["total_s"]) if len(records) and "total_s" in records else []
    return stats.mean(seconds) * len(names) if seconds else math.nan


def ran(part: Part, results_dir) -> tuple[pd.DataFrame, bool]:
    """A part's epoch records, and whether it ran in this report (it left records or measurement rows)."""
    records = load(results_dir, experiment=part.id)
    return records, bool(len(records) or len(results.read(results_dir, part=part.id)))


def plan(part: str, params: dict, report: Report) -> Work:
    """The work a part will do with `params`, from the `runs` its `run` makes, kept in `report.planned`."""
    params = with_workers(part, {"dataset": "synthetic", **params, "results_dir": str(report.results_dir)})
    config = config_for(part, params)  # a part without a data set plans as synthetic: same sizes
    runs = BY_ID[part].runs(config, params, report)
    report.planned[part] = runs
    budget = float(params.get("extra_rounds_s") or 0) if BY_ID[part].more else 0.0
    extra = Work(extra_s=budget, round=runs.round(config.batch_size),
                 samples=max((steady_epochs(c) for c in runs.block), default=0)) if budget else Work()
    return runs.work(config.batch_size) + extra


def render(part: str, records, results_dir=None, figures_dir=None) -> None:
    """A part's section from its records (a list or a DataFrame), after a note naming the runs it reused."""
    df = pd.DataFrame(records).reset_index(drop=True)
    if "reused_from" in df and df["reused_from"].notna().any():
        taken = ", ".join(dict.fromkeys(df["reused_from"].dropna()))
        display.show(display.markdown(f"*These runs were measured once, in an earlier part's interleaved block, and "
                                      "are reused here (same settings; this part compares them only with each "
                                      f"other): {taken}.*"))
    BY_ID[part].section(df, results_dir, figures_dir)


def findings(results_dir, errors: list | None = None) -> list[display.Finding]:
    """Every part's findings rows, in the lab's order; a part that did not run says so. With `errors`, a part whose
    findings raise says so in its rows and adds its line to `errors`, and the others are still written."""
    rows = []
    for part in PARTS:
        try:
            records, measured = ran(part, results_dir)
            if not measured:
                rows += display.not_answered(part.id, part.questions, f"{part.id} did not run in this report")
            else:
                rows += part.findings(records, results_dir)
        except Exception as exc:  # noqa: BLE001 - one part's error is shown in its rows, not the report's end
            if errors is None:
                raise
            errors.append(display.failure(part.id, "findings", exc))
            rows += [display.Finding(q, label, "ERROR: not written", errors[-1], part.id)
                     for q, label in part.questions]
    return sorted(rows, key=lambda r: lab_order(r.question))


def show(part: str, results_dir, figures_dir=None) -> None:
    """The summary's section of one part: its heading, then its section or a line saying it did not run."""
    declared = BY_ID[part]
    display.show(display.heading(part, declared.title))
    records, measured = ran(declared, results_dir)
    if not measured:
        print(f"{part} did not run in this report.")
        return
    render(part, records, results_dir, figures_dir)
