"""C9 (beyond the lab): data-parallel scaling with DistributedDataParallel on 1, 2, ... processes of this node
(nccl, one GPU each; gloo on a CPU, the cores shared), each count its own torchrun launch, one after another.
Strong scaling keeps the global batch, weak scaling the per-process batch. The epoch time is the slowest rank's;
the exposed gradient communication is measured per rank (lab.engine.train's Trainer.measure_comm)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from ..core import fields, files, stats
from ..core.config import Config, to_argv
from ..core.errors import LabError
from ..core.fields import Field
from ..engine import progress
from ..engine.resolve import device_type
from . import comparison, display
from .base import COMMON, LOOKS, Part, Runs, Work, claims, planned_steps, steady_epochs
from .tables import memory, ratio_range, style

ID = "C9_scaling"
BASELINE = "1 process"
QUESTIONS = (("C9", "Data-parallel scaling"),)
fields.define({"batch_per_process": "batch/process", "global_batch_size": "global batch",
               "threads_per_process": "threads/process", "slowest_total_s": Field("epoch s", "s"),
               "slowest_total_s range": Field("epoch range", "s"), "images_per_s": Field("images/s", "images/s"),
               "comm_share": Field("comm share", "fraction"), "scaling_speedup": "speed-up (images/s)",
               "scaling_efficiency": "efficiency",
               # the largest process's memory per rank (every rank holds a whole model, optimizer and loader)
               **{f"{name} / rank": Field(fields.FIELDS[name].label + " / rank", "B", fields.FIELDS[name].scale)
                  for name in fields.MEMORY}})
ROOT = Path(__file__).resolve().parent.parent.parent


def launch_tag(processes: int, mode: str) -> str:
    return f"{processes} processes ({mode})"


def scaling_launches(config: Config, counts, modes=("strong", "weak")) -> list[tuple[int, Config, str | None]]:
    """C9's launches in order: (processes, the Config each process runs, why it cannot run here or None). strong:
    each of N processes takes batch_size / N; weak: each keeps batch_size. 1 process is the baseline of both."""
    kind = device_type(config.device)
    have = torch.cuda.device_count() if kind == "cuda" else (os.cpu_count() or 1)  # one GPU or core a process
    launches = []
    for n in counts:
        for mode in (("strong",) if n == 1 else [m for m in ("strong", "weak") if m in modes]):
            tag = BASELINE if n == 1 else launch_tag(n, mode)
            batch = config.batch_size // n if mode == "strong" else config.batch_size
            c = config.replace(batch_size=max(batch, 1), tag=tag, checkpoint=None)
            why = (f"{n} processes need {n} {'GPUs' if kind == 'cuda' else 'cores'}, this node has {have}"
                   if n > have else f"batch {config.batch_size} does not split into {n} equal parts"
                   if mode == "strong" and config.batch_size % n else None)
            launches.append((n, c, why))
    return launches


def speed_family(config: Config, params: dict, report) -> tuple[dict, list] | None:
    """Each count this node can run against 1 process, one claim each."""
    tags = [c.tag for _, c, why in scaling_launches(config, params["process_counts"], params["modes"]) if not why]
    if BASELINE not in tags or len(tags) < 2:
        return None
    return {t: steady_epochs(config) for t in tags}, [(t, BASELINE, "s") for t in tags if t != BASELINE]


def runs(config: Config, params: dict, report) -> Runs:
    """The launches, counted: N processes of batch b cost about N x b images of steps on a CPU's shared cores."""
    cpu = device_type(config.device) == "cpu"
    work = Work()
    for n, c, why in scaling_launches(config, params["process_counts"], params["modes"]):
        if not why:
            share = c.batch_size * (n if cpu else 1) / config.batch_size
            work += Work(steps=planned_steps(c, n) * share, runs=1, launches=1)
    return Runs(extra=work)


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """Each launch of scaling_launches, one after another; a count this node cannot run is recorded as
    'unavailable'."""
    records = []
    for n, c, why in scaling_launches(config, params["process_counts"], params["modes"]):
        if why:
            records.append(comparison.unavailable(c, out, device_type(config.device), {"world_size": n},
                                                  unavailable_reason=why))
            print(f"C9: {c.tag}: not measured: {why}", file=sys.stderr)
            continue
        records += launch(n, c, out)
    return records


def launch(n: int, c: Config, out) -> list[dict]:
    """One launch through `python -m lab train --nproc-per-node N`; the records of its setting (every launch of it)."""
    print(f"C9: {c.tag}, batch {c.batch_size} per process", file=sys.stderr)
    progress.note(c.experiment, f"launching {c.tag}")
    cmd = [sys.executable, "-m", "lab", "train", "--nproc-per-node", str(n), *to_argv(c), "--no-progress",
           "--results", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LabError(f"C9: the {c.tag} run failed: {last}")
    return [r for r in files.read_jsonl(Path(out) / "records.jsonl") if r.get("tag") == c.tag]


def more(config: Config, params: dict, out, report, still: list, rounds: int, look: int) -> list[dict]:
    """The open claims' launches and the baseline's again, `rounds` steady epochs each after a warm-up, in the
    planned order at odd looks and reversed at even ones (a launch cannot share epochs with another)."""
    names = {str(name) for claim in still for name in claim[:2]} | {BASELINE}
    todo = [(n, c.replace(epochs=rounds + 1, extra={**c.extra, "look": look}))
             for n, c, why in scaling_launches(config, params["process_counts"], params["modes"])
             if not why and c.tag in names]
    return [r for n, c in (todo[::-1] if look % 2 == 0 else todo) for r in launch(n, c, out)]


def scaling_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per launch: the epoch time (the slowest rank's), images/s over all ranks, the speed-up in images/s over 1
    process and the efficiency (speed-up / N), as ranges over steady epochs, and the exposed communication's share
    of the epoch (the mean over ranks). Counts this node could not run stay as 'not available'."""
    rows, per_epoch = [], {}
    for tag, group in df.groupby("tag", sort=False):
        first = group.iloc[0]
        if (group["status"] == "unavailable").all():
            rows.append({"setting": tag, "processes": first["world_size"], "status": "not available: "
                         + str(first.get("unavailable_reason", ""))})
            continue
        steady = stats.steady(group)
        epochs = steady.groupby(["run_id", "epoch"]).agg(seconds=("slowest_total_s", "max"), images=("images", "sum"),
                                             comm=("comm_s", "mean"))
        per_epoch[tag] = epochs
        seconds = epochs["seconds"]
        rows.append({"setting": tag, "processes": int(first["world_size"]),
                     "batch_per_process": int(first["batch_size"]),
                     "global_batch_size": int(first["global_batch_size"]), "threads_per_process": first.get("threads"),
                     "slowest_total_s": seconds.mean(), "slowest_total_s range": stats.spread(seconds),
                     "images_per_s": (epochs["images"] / seconds).mean(),
                     "comm_share": (epochs["comm"] / seconds).mean() if epochs["comm"].notna().any()
                     else float("nan"), "status": "ok"})
    table = pd.DataFrame(rows).set_index("setting")
    per_image = {tag: e["seconds"] / e["images"] for tag, e in per_epoch.items()}  # lower is better
    table["scaling_speedup"], table["scaling_efficiency"] = "—", "—"
    base = per_image.get(BASELINE)
    for tag, mine in per_image.items() if base is not None else ():
        mean, low, high = stats.speedup_range(base, mine)
        n = table.loc[tag, "processes"]
        table.loc[tag, "scaling_speedup"] = ratio_range(base, mine)
        table.loc[tag, "scaling_efficiency"] = f"{mean / n:.0%}" + (
            "" if low == high else f" ({low / n:.0%}–{high / n:.0%})")
    mem = memory(df, "tag").drop(columns=["workers_pss_bytes", "cuda_peak_above_start_bytes"], errors="ignore")
    mem.columns = [f"{c} / rank" for c in mem.columns]
    return table.join(mem)


def verdicts(df: pd.DataFrame, results_dir=None) -> dict:
    """One family: each process count against 1 process, in time per image over steady epochs."""
    ok = stats.steady(df[df["status"] == "ok"])
    per_image = {tag: stats.samples(g.groupby(["run_id", "epoch"])["slowest_total_s"].max()
                                    / g.groupby(["run_id", "epoch"])["images"].sum())
                 for tag, g in ok.groupby("tag", sort=False)}
    return stats.family({tag: [{"s": v} for v in values] for tag, values in per_image.items()},
                        [(tag, BASELINE, "s") for tag in per_image if tag != BASELINE])


def findings(df: pd.DataFrame, results_dir=None) -> list[display.Finding]:
    if BASELINE not in set(df.loc[df["status"] == "ok", "tag"]):
        return display.not_answered(ID, QUESTIONS, "the 1-process baseline did not run")
    result = claims(ID, verdicts, df, results_dir)
    if not result:
        return display.not_answered(ID, QUESTIONS, "only 1 process ran on this node")
    first = next(iter(result.values()))
    return [display.Finding("C9", QUESTIONS[0][1], "time per image: " + "; ".join(
        stats.verdict_line(c) for c in result.values()), stats.evidence_line(first), ID)]


def explain_scaling(df: pd.DataFrame, result: dict) -> stats.Said:
    """Each N-process setting against 1 process, in time per image (`result`: the part's verdicts)."""
    ok = stats.steady(df[df["status"] == "ok"])
    if BASELINE not in set(ok["tag"]):
        return stats.Said("The 1-process baseline did not run: no speed-up can be stated.")
    lines = [c.sentence("time per image") for c in result.values()]
    lines.append("Each count is its own torchrun launch, run one after another (a launch cannot share epochs "
                 "with another), so drift between launches is not cancelled as it is in the other parts. "
                 "Strong scaling keeps the global batch (each process takes a share); weak scaling keeps the "
                 "per-process batch (the global batch grows with N, which changes the optimization as well as "
                 "the speed). With plain BatchNorm each rank normalizes over its own per-process batch, so "
                 "results differ across process counts; `--sync-bn` (CUDA only in PyTorch) computes the "
                 "statistics over the global batch.")
    missing = df[df["status"] == "unavailable"]
    for tag, g in missing.groupby("tag", sort=False):
        lines.append(f"**{tag}**: not measured ({g.iloc[0].get('unavailable_reason', '')}).")
    return stats.Said("\n\n".join(lines), result.values())


def section(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    ran = df[df["status"] == "ok"]
    if len(ran):
        print(display.describe_run(ran.iloc[0]))
    said = explain_scaling(df, claims(ID, verdicts, df, results_dir))
    display.show(style(scaling_table(df)), display.markdown(said))


PART = Part(ID, "C9 — Scaling out (torch.distributed)", QUESTIONS,
            (*COMMON, *LOOKS, "workers", "process_counts", "modes"), runs, section, findings, measure=measure,
            speed_family=speed_family, verdicts=verdicts, more=more, needs=("best_workers",))
