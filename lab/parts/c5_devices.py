"""C5: the GPU against the CPU with the best worker count, the devices trained interleaved by epoch: each device's
average epoch, and the speed-up per batch of the training step and of the whole epoch (a capped CPU run has fewer
batches). A device that is not there is recorded and shown as 'unavailable'; where the CPU is the only device,
nothing is compared and C3's run of the same settings is reused."""
from __future__ import annotations

import pandas as pd

from ..core import fields, stats
from ..core.config import Config
from . import base, comparison, display
from .base import COMMON, Part, Runs, device_available, steady_epochs, train
from .settings import workers as workers_tag
from .tables import ratio_range, style, summarize

ID = "C5_devices"
QUESTIONS = (("C5", "GPU vs CPU"),)
fields.define({"available": "available", "avg_epoch_s": fields.Field("avg epoch s", "s"),
               "avg_epoch_s range": fields.Field("epoch range", "s"),
               "step_s_per_batch": fields.Field("step s/batch", "s"),
               "epoch_s_per_batch": fields.Field("epoch s/batch", "s"), "step_speedup_vs_cpu": "step speed-up vs CPU",
               "epoch_speedup_vs_cpu": "epoch speed-up vs CPU"})


def runs(config: Config, params: dict, report) -> Runs:
    cap = params.get("cpu_max_batches")
    block = [config.replace(device=d, max_batches=cap if d == "cpu" and cap else config.max_batches, tag=d)
             for d in params["devices"] if device_available(d)]
    return comparison.reused(report, block, {workers_tag(block[0].workers): block[0]} if len(block) == 1 else {})


def claims(d1: str, d2: str) -> list[tuple[str, str, str]]:
    """The section's two claims, per batch: the training step and the whole epoch."""
    return [(d1, d2, "step"), (d1, d2, "epoch")]


def speed_family(config: Config, params: dict, report) -> tuple[dict, list] | None:
    block = runs(config, params, report).block
    if len(block) < 2:
        return None  # one device here: nothing to compare
    return {c.tag: steady_epochs(c) for c in block}, claims(block[0].tag, block[1].tag)


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """A record with status 'unavailable' for each device that is not there, then the runs."""
    records = [comparison.unavailable(config.replace(device="cpu", tag=d), out, "cpu", {},
                                      {"device_type": d, "device_name": "not available"})
               for d in params["devices"] if not device_available(d)]
    return records + train(runs(config, params, report), out, report.results_dir)


def devices_table(df: pd.DataFrame) -> pd.DataFrame:
    """Average epoch time per device (with its range), per-batch step and epoch time, and the speed-up over the
    CPU for both, as a range; a device that was not there stays in the table as 'not available'."""
    rows, samples = [], {}
    ok = summarize(df, "device_type") if (df["status"] == "ok").any() else pd.DataFrame()
    for device, group in df.groupby("device_type", sort=False):
        if device in ok.index:
            s = ok.loc[device]
            per = s["batches/epoch"]
            samples[device] = ([v / per for v in s["train_s samples"]], [v / per for v in s["total_s samples"]])
            rows.append({"device": device, "device_name": group["device_name"].iloc[0], "available": "yes",
                         "avg_epoch_s": s["total_s"], "avg_epoch_s range": s["total_s range"], "batches/epoch": per,
                         "step_s_per_batch": s["train_s"] / per, "epoch_s_per_batch": s["total_s"] / per,
                         "training images/s": s["training images/s"]})
        elif (group["status"] == "unavailable").all():
            rows.append({"device": device, "device_name": "not available", "available": "no"})
        else:
            rows.append({"device": device, "device_name": group["device_name"].iloc[0],
                         "available": "yes (run diverged)"})
    table = pd.DataFrame(rows).set_index("device")
    if "cpu" in samples:
        for col, i in (("step_speedup_vs_cpu", 0), ("epoch_speedup_vs_cpu", 1)):
            table[col] = [ratio_range(samples["cpu"][i], samples[d][i]) if d in samples else "—" for d in table.index]
    return table


def missing(df: pd.DataFrame) -> str:
    """The devices of the block that did not end ok, named."""
    return ", ".join(sorted(set(df["device_type"]) - set(df.loc[df["status"] == "ok", "device_type"])))


def family_of(df: pd.DataFrame, results_dir=None) -> tuple[stats.Comparison, stats.Comparison] | None:
    """The section's family as decided (the part's verdicts): (the training step, the whole epoch), per batch;
    None where fewer than two devices finished."""
    found = {metric: c for (_, _, metric), c in base.claims(ID, verdicts, df, results_dir).items()}
    return (found["step"], found["epoch"]) if found else None


def findings(df: pd.DataFrame, results_dir=None) -> list[display.Finding]:
    result = family_of(df, results_dir)
    if result is None:
        return display.not_answered(ID, QUESTIONS, "one device measured: " + (
            f"{missing(df)} not available on this node" if missing(df) else "nothing to compare"))
    step, epoch = result
    return [display.Finding("C5", QUESTIONS[0][1], "per batch, " + stats.verdict_lines(
        {"step": step, "whole epoch": epoch}), stats.evidence_line(step), ID)]


def explain_devices(df: pd.DataFrame, results_dir=None) -> stats.Said:
    """The sentences, per batch, for the step and the whole epoch: two claims of one family, as decided."""
    result = family_of(df, results_dir)
    if result is None:
        return stats.Said("Only one device was measured" + (f" ({missing(df)} not available)" if missing(df)
                                                            else "") + ": nothing to compare.")
    return stats.Said(stats.together({"training step": result[0], "whole epoch": result[1]})
                      + " (Per batch: a capped CPU run has fewer batches.)", result)


def section(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    display.show(style(devices_table(df)), display.markdown(explain_devices(df, results_dir)))


def verdicts(df: pd.DataFrame, results_dir=None) -> dict:
    """The step and the whole epoch per batch, the first device against the second ({} where fewer than two
    devices finished)."""
    ok = df[df["status"] == "ok"]
    if ok["device_type"].nunique() < 2:
        return {}
    epochs = {}
    for device, g in stats.steady(ok).groupby("device_type", sort=False):
        batches = g["images"] / g["batch_size"]
        epochs[device] = [{"step": t, "epoch": e} for t, e in zip(g["train_s"] / batches, g["total_s"] / batches)]
    return stats.family(epochs, claims(*list(epochs)[:2]))


PART = Part(ID, "C5 — GPU vs CPU", QUESTIONS, (*COMMON, "workers", "devices", "cpu_max_batches"), runs, section,
            findings, measure=measure, speed_family=speed_family, verdicts=verdicts, needs=("best_workers",))
