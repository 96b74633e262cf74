"""C4: 1 DataLoader worker against C3's best count: where each epoch's time goes, the wait for data split into the
workers' start-up and the per-batch wait, sentences that explain the difference from the measured numbers, and a
few steps of each under torch.profiler. Both runs come from C3's block where C3 made them with the same settings;
when the best count is 1 the same setting runs twice, and the rows' difference is the noise."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from ..core import fields, stats
from ..core.config import Config
from ..engine.profiling import profile_training
from . import base, comparison, display, plots
from .base import COMMON, LOOKS, Part, Runs, Work, more_of_block, steady_epochs, train
from .settings import ONE_WORKER, workers as workers_tag
from .tables import TIMES, persistent_workers, startup_split, style, summarize

ID = "C4_workers_profile"
QUESTIONS = (("C4", "1 worker vs the best count"),)
PROFILES = (("1_worker", ONE_WORKER), ("best", None))  # file label, workers (None: the best count)
# the profiler's tables (lab.engine.profiling) as saved: per-step times in ms, shares in %
fields.define({"calls": "calls", "self CPU %": fields.Field("self CPU %", "%"),
               "self CPU ms/step": fields.Field("self CPU ms/step", "ms"),
               "CPU total ms/step": fields.Field("CPU total ms/step", "ms"),
               "self CUDA ms/step": fields.Field("self CUDA ms/step", "ms")})


def runs(config: Config, params: dict, report) -> Runs:
    best = config.workers
    one, best_config = config.replace(workers=ONE_WORKER, tag=f"{ONE_WORKER} worker"), config.replace(
        tag=f"{workers_tag(best)} (best)")
    wanted = {workers_tag(ONE_WORKER): one, workers_tag(best): best_config} if best != ONE_WORKER else {}
    return comparison.reused(report, [one, best_config], wanted,
                             Work(steps=len(PROFILES) * (2 + params["profile_steps"]), runs=len(PROFILES)))


def claims(one: str, best: str) -> list[tuple[str, str, str]]:
    """The section's three claims, the best count against 1 worker: the wait for data, its per-batch part (the
    wait without the workers' start-up) and the compute."""
    return [(best, one, "load_s"), (best, one, "batch_wait_s"), (best, one, "train_s")]


def speed_family(config: Config, params: dict, report) -> tuple[dict, list] | None:
    if config.workers == ONE_WORKER:
        return None  # the same setting twice: nothing is compared
    one, best = workers_tag(ONE_WORKER), workers_tag(config.workers)
    return {one: steady_epochs(config), best: steady_epochs(config)}, claims(one, best)


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """Both runs (C3's where they are there), then a few steps of each under torch.profiler."""
    records = train(runs(config, params, report), out, report.results_dir)
    for label, n in PROFILES:
        workers = config.workers if n is None else n
        profile_training(config.replace(workers=workers, tag=f"profiling {label}"), out, label,
                         active=params["profile_steps"])
    return records


def workers_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (1 worker, the best count): steady phases with ranges, the wait for data split into the
    per-batch wait and the workers' start-up, each steady epoch's figures for the comparison rule, and the CPU the
    training process and its workers used per second of the epoch (NaN where not recorded)."""
    table = summarize(df, "tag")
    first = df.groupby("tag", sort=False).first()
    table.insert(0, "workers", first["workers"].reindex(table.index))
    table["persistent workers"] = persistent_workers(first).reindex(table.index)
    table = table.join(startup_split(df, "tag"))
    calm = stats.steady(df)
    table["epoch samples"] = [
        [{"load_s": r["load_s"], "batch_wait_s": r["load_s"] - r["loader_start_s"], "train_s": r["train_s"]}
         for _, r in calm[calm["tag"] == name].iterrows()] for name in table.index]
    table["host_cpus"] = first["host_cpus"].reindex(table.index)
    for column, source in (("cpu per s", "cpu_s"), ("workers cpu per s", "workers_cpu_s"),
                           ("cpus available", "cpus_available"), ("threads", "threads")):
        if source not in calm:
            table[column] = float("nan")
            continue
        by_tag = calm.groupby("tag", sort=False)
        per = (by_tag[source].sum() / by_tag["total_s"].sum()) if source.endswith("cpu_s") else by_tag[source].max()
        table[column] = pd.to_numeric(per.reindex(table.index), errors="coerce")
    return table


def _startup(row: pd.Series, name: str) -> str:
    return (f"{stats.sig(row['worker start-up s'])} s per epoch with {name}"
            f"{stats.range_note(row['worker start-up samples'])}")


def split_wait(a: pd.Series, b: pd.Series, na: str, nb: str, load: stats.Comparison, batch: stats.Comparison) -> str:
    """What the difference in the wait for data is made of, the workers' start-up and the per-batch wait measured
    apart; where the rule decided the wait, the larger difference is named as what drives it."""
    if pd.isna(a["worker start-up s"]) or pd.isna(b["worker start-up s"]):
        return ""
    once = bool(a["persistent workers"]) and bool(b["persistent workers"])
    paid = ("paid once per run: the workers are persistent" if once else
            "paid every epoch because the workers are not persistent (C3 measures persistent ones)")
    startup = f"the workers' start-up, {_startup(a, na)} against {_startup(b, nb)}, {paid}"
    alone = f"the per-batch wait alone: {stats.verdict_line(batch)}"
    if not load.decided:
        return f"Apart: {startup}; {alone}."
    if startup_drives(a, b):
        return f"What drives it is {startup}; {alone}."
    return f"What drives it is the per-batch wait ({stats.verdict_line(batch)}); {startup}."


def startup_drives(a: pd.Series, b: pd.Series) -> bool:
    """Whether the workers' start-up differs more between the two rows than the per-batch wait."""
    return abs(a["worker start-up s"] - b["worker start-up s"]) >= abs(a["batch wait s"] - b["batch wait s"])


def bound(row: pd.Series) -> str:
    return "data loading" if row["load_s"] / row["total_s"] > 0.5 else "computation"


def _cores(row: pd.Series) -> str:
    """What the training process and its workers used of the cores, measured, or ''."""
    used, workers, cores = row.get("cpu per s"), row.get("workers cpu per s"), row.get("cpus available")
    if not all(not pd.isna(v) and v is not None for v in (used, workers, cores)):
        return ""
    return (f"the training process used {used:.2f} CPU-seconds per second of the epoch ({int(row['threads'])} "
            f"intra-op threads) and its workers {workers:.2f}: {used + workers:.2f} of the {cores:.0f} cores this "
            "process may use")


SHARE = 0.1  # workers that use less than this share of the cores cannot explain a slower step


def _sharing(more: pd.Series, slower_with_more: bool) -> str:
    """Whether core sharing explains the compute difference, from what was measured with more workers: the
    step is slower there, the cores were all busy, and the workers used a real share of them."""
    workers, cores = more["workers cpu per s"], more["cpus available"]
    busy = more["cpu per s"] + workers > 0.9 * cores
    if slower_with_more and busy and workers >= SHARE * cores:
        return (f"The cores were all busy and the workers used {workers / cores:.0%} of them: they compete with "
                "the training step's threads for the cores.")
    if slower_with_more and busy:
        return (f"The cores were all busy, but the workers used only {workers / cores:.0%} of them, too little to "
                "explain it; see the profiles below.")
    return "Core sharing does not explain it (the step is not slower where the workers run, or cores were idle)."


NOT_BOTH = "only one of the two runs ended ok, or neither"


def explain_workers(df: pd.DataFrame, results_dir=None) -> stats.Said:
    """The explanation, from the workers_comparison table (1 worker, then the best count): its three claims (the
    wait for data, its per-batch part, the compute) as decided, and each "why" with the measurement behind it."""
    table = workers_comparison(df)
    if len(table) < 2:
        return stats.Said(f"{NOT_BOTH.capitalize()}: nothing to compare (each run's status is in its records).")
    (name_a, a), (name_b, b) = list(table.iterrows())[:2]
    share_a, share_b = a["load_s"] / a["total_s"], b["load_s"] / b["total_s"]
    lines = [f"With **{name_a}**, the training loop waited **{stats.sig(a['load_s'])} s** per epoch for data"
             f"{stats.range_note(a['load_s samples'])}, {share_a:.0%} of the {stats.sig(a['total_s'])} s epoch; "
             f"compute took {stats.sig(a['train_s'])} s{stats.range_note(a['train_s samples'])}.",
             f"With **{name_b}**, the wait was **{stats.sig(b['load_s'])} s**{stats.range_note(b['load_s samples'])}, "
             f"{share_b:.0%} of {stats.sig(b['total_s'])} s; compute took {stats.sig(b['train_s'])} s"
             f"{stats.range_note(b['train_s samples'])}."]
    wa, wb = int(a["workers"]), int(b["workers"])
    claims = []
    if wa == wb:
        lines.append(f"C3's best count is {workers_tag(wb)}, the same as the baseline: the two rows measure the "
                     "same setting twice, and their difference is the noise.")
    else:
        na, nb = workers_tag(wa), workers_tag(wb)
        load, batch, compute = family_of(table, base.claims(ID, verdicts, df, results_dir))
        claims = [load, batch, compute]
        lines.append(f"Wait for data: {load.sentence()} {split_wait(a, b, na, nb, load, batch)}".rstrip())
        if load.decided:
            cores = _cores(b if wb > wa else a)
            if load.verdict == "faster" and wb > wa and cores:
                lines.append(f"Why, measured: with {nb}, {cores}; the workers' CPU time is the preparation of "
                             "batches taken off the training loop, which then waits less.")
        cores_a, cores_b = _cores(a), _cores(b)
        if compute.decided and cores_a and cores_b:
            lines.append(f"Compute: {compute.sentence()} Measured: with {na}, {cores_a}; with {nb}, {cores_b}. "
                         + _sharing(a if wa > wb else b, compute.verdict == ("slower" if wb > wa else "faster")))
        else:
            lines.append(f"Compute: {compute.sentence()}")
    lines.append(f"At the best setting the epoch is bound by **{bound(b)}** "
                 f"(loading {share_b:.0%}, compute {b['train_s'] / b['total_s']:.0%}).")
    return stats.Said("\n\n".join(lines), claims)


def pair(table: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The table's two rows (1 worker, the best count), each with its worker count's name."""
    return [(workers_tag(int(row["workers"])), row) for _, row in list(table.iterrows())[:2]]


def family_of(table: pd.DataFrame, found: dict) -> tuple[stats.Comparison, stats.Comparison, stats.Comparison] | None:
    """The section's family, as `found` (the part's claims) holds it: (the wait for data, its per-batch part, the
    compute) of the best count against 1 worker; None where the two rows are the same setting."""
    (na, _), (nb, _) = pair(table)
    return None if na == nb else tuple(found[k] for k in claims(na, nb))


def findings(df: pd.DataFrame, results_dir=None) -> list[display.Finding]:
    """C4: the wait, its per-batch part and the compute (one family), what drives a decided difference in the wait,
    and what bounds the epoch."""
    table = workers_comparison(df)
    if len(table) < 2:
        return display.not_answered(ID, QUESTIONS, NOT_BOTH)
    result = family_of(table, base.claims(ID, verdicts, df, results_dir))
    a, b = table.iloc[0], table.iloc[1]
    if result is None:
        return [display.Finding("C4", QUESTIONS[0][1], "the best count is 1 worker: nothing to compare; the epoch is "
                                f"bound by {bound(b)}", "the two rows measure the same setting twice", ID)]
    load, batch, compute = result
    answer = stats.verdict_lines({"wait": load, "per-batch wait": batch, "compute": compute})
    if load.decided and not pd.isna(a["worker start-up s"]) and not pd.isna(b["worker start-up s"]):
        answer += "; the wait's difference is mostly " + ("the workers' start-up" if startup_drives(a, b)
                                                           else "the per-batch wait")
    return [display.Finding("C4", QUESTIONS[0][1], f"{answer}; the epoch is bound by {bound(b)}",
                            stats.evidence_line(load), ID)]


def profiler_html(results_dir, top: int = 10) -> str:
    """The profiler tables (top operators by self CPU time) with links to the saved traces."""
    folder = Path(results_dir) / ID
    parts = []
    for label, title in (("1_worker", "1 worker"), ("best", "best worker count")):
        csv = folder / f"ops_{label}.csv"
        if not csv.exists():
            continue
        trace = f"{ID}/trace_{label}.json"
        parts.append(f"<h4>torch.profiler, {title}: top {top} operators by self CPU time per step</h4>"
                     + style(pd.read_csv(csv, index_col=0).head(top)).to_html()
                     + f"<p>Trace: <a href='{html.escape(trace)}'>{html.escape(trace)}</a> "
                       "(open in chrome://tracing or ui.perfetto.dev)</p>")
    return "".join(parts) or "<p>No profiler tables in this report.</p>"


def section(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    table = workers_comparison(df)
    display.show(style(table[["workers", "worker start-up s", "batch wait s"]
                             + [c for t in TIMES for c in (t, f"{t} range")] + ["training images/s"]]))
    display.figure(plots.phase_bars(table, "1 worker vs the best count (steady-state seconds per epoch)"),
                   "C4_phases", figures_dir)
    display.show(display.markdown(explain_workers(df, results_dir)))
    if results_dir is not None:
        display.show(display.html(profiler_html(results_dir)))


def verdicts(df: pd.DataFrame, results_dir=None) -> dict:
    """The best count against 1 worker; {} where only one run ended ok, or the two rows are the same setting."""
    table = workers_comparison(df)
    if len(table) < 2:
        return {}
    (na, a), (nb, b) = pair(table)
    return {} if na == nb else stats.family({na: a["epoch samples"], nb: b["epoch samples"]}, claims(na, nb))


PART = Part(ID, "C4 — 1 worker vs the best count", QUESTIONS, (*COMMON, *LOOKS, "workers", "profile_steps"), runs,
            section, findings, measure=measure, speed_family=speed_family, verdicts=verdicts, more=more_of_block(runs),
            needs=("best_workers",))
