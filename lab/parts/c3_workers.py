"""C3: how many DataLoader workers? Every count of the lab's sweep (0, step, 2 x step, ... up to the cap), 1 worker
(C4's baseline, so that C4 can reuse it), 1 worker kept alive between epochs (persistent_workers) and the on-device
batched loader, trained interleaved by epoch. The lab's rule, made noise-aware (worker_sweep_rule), gives the best
count, saved as rows (metric "best_workers") that C4-C9 train with."""
from __future__ import annotations

import sys

import pandas as pd

from ..core import results, stats
from ..core.config import Config
from ..core.errors import LabError
from . import display, plots
from .base import COMMON, Part, Runs, claims, interleave, steady_epochs, steady_values
from .settings import ONE_WORKER, workers as tag
from .tables import batch_wait, memory, persistent_workers, startup_split, style, summarize

ID = "C3_workers"
QUESTIONS = (("C3.1", "Loading time by worker count"), ("C3.2", "Best worker count"),
             ("C3.3", "Why more workers stop helping"))
ON_DEVICE = "on-device batched"
PERSISTENT = f"{ONE_WORKER} worker, persistent"  # the same count with persistent_workers=True
PERSISTENT_BATCHES = 1  # its start-up is paid per epoch, not per batch: one batch an epoch shows it
BEST = "best"
PERSISTENT_CLAIM = (PERSISTENT, tag(ONE_WORKER), "loader_start_s")  # what persistent workers remove


def counts_of(params: dict) -> list[int]:
    """The sweep's counts: the parameter's list, else 0, step, 2 x step, ... up to the cap."""
    return params.get("worker_counts") or list(range(0, params["worker_cap"] + 1, params["worker_step"]))


def runs(config: Config, params: dict, report) -> Runs:
    counts, config = counts_of(params), config.replace(workers=0)
    block = [config.replace(workers=w, tag=tag(w)) for w in sorted({*counts, ONE_WORKER})]
    block.append(config.replace(workers=ONE_WORKER, persistent_workers=True, max_batches=PERSISTENT_BATCHES,
                                tag=PERSISTENT))
    return Runs(block=[*block, config.replace(loader="tensor", tag=ON_DEVICE)])


def speed_family(config: Config, params: dict, report) -> tuple[dict, list]:
    """Each step of the sweep, before anything runs (the docs' account of what a profile can conclude)."""
    counts = counts_of(params)
    return {k: steady_epochs(config) for k in counts}, sweep_claims(counts)


# --- the lab's rule, through the comparison rule --------------------------------------------------------

def sweep_claims(counts: list) -> list[tuple]:
    """Each step of a sweep, one claim each: is this count's wait lower than the count's before it?"""
    return [(k, prev, "wait") for prev, k in zip(counts, counts[1:])]


def sweep_family(waits: dict) -> dict:
    """The sweep's claims over `waits` (count -> per-epoch waits, in sweep order) as one family; {} under two."""
    counts = [k for k in waits if stats.samples(waits[k])]
    return stats.family({k: [{"wait": v} for v in stats.samples(waits[k])] for k in counts},
                        sweep_claims(counts)) if len(counts) > 1 else {}


def worker_sweep_rule(waits: dict) -> dict:
    """The lab's rule over `waits` (worker counts in sweep order -> per-epoch waits on batches, the start-up apart),
    each step of the sweep a claim of one family. stop: the first count not decidedly faster than the one before
    it (the counts after it were measured, but the lab's procedure stops there). best: the last count decidedly
    faster than the one before it, or the count before a decidedly slower stop (`significant`); where the sweep
    cannot tell, the lowest mean up to the stop, not significant. Never a silent 0: `reason` says which."""
    counts = [k for k in waits if stats.samples(waits[k])]
    if not counts:
        return {"best": None, "stop": None, "reason": "no count has a finite load time", "significant": False}
    result = sweep_family(waits)
    stop, best, after, reason = counts[-1], None, False, f"reached the end of the list {counts}"
    for prev, k in zip(counts, counts[1:]):
        c = result[(k, prev, "wait")]
        if c.verdict == "faster":
            best = k
            continue
        stop, after = k, c.verdict == "slower"  # after: decided, the count before it is better
        best = prev if after else best
        reason = (f"at {k} workers the wait is {stats.spread(waits[k])} s against {stats.spread(waits[prev])} s at "
                  f"{prev}: " + (stats.too_few(c.n, c.needed) if c.verdict == stats.TOO_FEW
                                 else f"not decidedly faster ({c.verdict})"))
        break
    if best is None:
        means = {k: stats.mean(waits[k]) for k in counts[:counts.index(stop) + 1]}
        best = min(means, key=means.get)
        return {"best": best, "stop": stop, "significant": False, "lowest": best,
                "reason": reason + f"; the sweep cannot tell, so the best count is the lowest mean, {tag(best)} "
                          "(not significant)"}
    why = ([f"than {tag(stop)} after it"] if after else []) + (
        [f"than {tag(counts[counts.index(best) - 1])} before it"] if best != counts[0] else [])
    return {"best": best, "stop": stop, "significant": True, "lowest": best,
            "reason": reason + f"; {tag(best)} is decidedly faster {' and '.join(why)}"}


def batch_waits(records: list[dict]) -> list[float]:
    df = stats.steady(pd.DataFrame(records))
    return stats.samples(batch_wait(df)) if len(df) else []


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """The block, interleaved; then the rule, saved once as rows (the best count, the stop and why, each count's
    per-batch waits and start-ups) that the table, the plot and C4-C9 read."""
    counts = counts_of(params)
    records = interleave(runs(config, params, report).block, out)
    by_tag = {w: [r for r in records if r["tag"] == tag(w)] for w in counts}
    waits = {w: batch_waits(by_tag[w]) for w in counts}
    for w in counts:
        print(f"workers={w}: per-batch wait {stats.spread(waits[w])} s/epoch", file=sys.stderr)
    rule = worker_sweep_rule(waits)
    if rule["best"] is None:
        raise LabError("every run of the worker sweep diverged: no best worker count (lower the lr?)")
    rows = results.Rows(report.results_dir, ID)
    rows.extend([rows.row("best_workers", rule["best"], "workers",
                          text="C3's best" + ("" if rule["significant"] else ", not significant")),
                 rows.row("sweep_significant", rule["significant"], "bool"),
                 rows.row("sweep_stop", rule["stop"], "workers", text=rule["reason"])]
                + [rows.row(metric, v, "s", sample=i, workers=w) for w in counts for metric, values in (
                    ("batch_wait_s", waits[w]), ("loader_start_s", steady_values(by_tag[w], "loader_start_s")))
                   for i, v in enumerate(values)])
    return records


def read_sweep(results_dir) -> dict:
    """The sweep's result from this part's rows (best count, stop, reason, per-count waits); {} where none."""
    rows = results.read(results_dir, part=ID) if results_dir is not None else None
    if rows is None or not len(rows):
        return {}
    best, stop = (rows[rows["metric"] == m] for m in ("best_workers", "sweep_stop"))
    sweep = {key: {str(int(w)): list(g.sort_values("sample")["value"]) for w, g in
                   rows[rows["metric"] == key].groupby("workers", sort=False)}
             for key in ("batch_wait_s", "loader_start_s")}
    if len(best):
        sweep.update(best_workers=int(best["value"].iloc[-1]), stop_reason=stop["text"].iloc[-1],
                     stop_at=int(stop["value"].iloc[-1]),
                     significant=bool(results.value(rows, "sweep_significant", True)))
    return sweep


def workers_table(df: pd.DataFrame, sweep: dict) -> pd.DataFrame:
    """One row per worker count, the persistent-workers setting and the on-device loader: the steady per-batch
    wait and the workers' start-up apart (startup_split), and the rule's marks on the sweep's counts (`sweep`)."""
    df = df.copy()
    tensor = df.get("loader", pd.Series("torch", index=df.index)) == "tensor"
    persistent = persistent_workers(df) & ~tensor
    df["setting"] = df["workers"].astype(int).map(tag)
    df.loc[persistent, "setting"] += ", persistent"
    df.loc[tensor, "setting"] = ON_DEVICE
    table = summarize(df, "setting")
    split = startup_split(df, "setting").reindex(table.index)
    table.insert(0, "workers", [float("nan") if s == ON_DEVICE else int(s.split()[0]) for s in table.index])
    table.insert(1, "persistent workers", [s.endswith(", persistent") for s in table.index])
    for column in ("batch wait s", "batch wait s range", "batch wait samples", "worker start-up s"):
        table[column] = split[column]
    stop, best = sweep.get("stop_at"), sweep.get("best_workers")
    table["rule"] = ""
    for name, w in table["workers"].items():
        if pd.isna(w) or table.loc[name, "persistent workers"]:
            continue
        marks = ([BEST if sweep.get("significant", True) else f"{BEST} (not significant)"] if w == best else []) + (
            ["stopped here"] if w == stop else []) + (["after the stop"] if stop is not None and w > stop else [])
        table.loc[name, "rule"] = ", ".join(marks)
    mem = memory(df, "setting").filter(["host_peak_rss_bytes", "workers_pss_bytes"])
    return table.join(mem)[["workers", "persistent workers", "batches/epoch", "batch wait s", "batch wait s range",
                            "worker start-up s", "load_s", "train_s", "total_s", "total_s range", "training images/s",
                            *mem.columns, "rule", "batch wait samples"]]


def sweep_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The workers_table rows of the sweep's counts (not the on-device loader, not persistent workers)."""
    return table[table["workers"].notna() & ~table["persistent workers"].astype(bool)]


def kept_and_restarted(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The epochs at ONE_WORKER workers (the DataLoader's) with persistent workers and without them."""
    torch_loader = df.get("loader", pd.Series("torch", index=df.index)) == "torch"
    at_count, persistent = torch_loader & (df["workers"] == ONE_WORKER), persistent_workers(df)
    return df[at_count & persistent], df[at_count & ~persistent]


def persistent_claim(df: pd.DataFrame) -> dict:
    """What persistent workers remove, the workers' start-up of each epoch, as one claim (a family of its own: the
    sweep is decided apart, on the per-batch wait); {} where the block has no persistent setting."""
    groups = dict(zip(PERSISTENT_CLAIM[:2], kept_and_restarted(df)))  # the setting's name: its epochs
    if not all(len(g) for g in groups.values()):
        return {}
    return stats.family({name: [{"loader_start_s": v} for v in steady_values(g, "loader_start_s")]
                         for name, g in groups.items()}, [PERSISTENT_CLAIM], scope="this claim alone")


def explain_persistent(df: pd.DataFrame, results_dir=None) -> stats.Said:
    """What persistent workers remove, as the claim was decided; '' where the block has no persistent setting."""
    c = claims(ID, verdicts, df, results_dir).get(PERSISTENT_CLAIM)
    if c is None:
        return stats.Said("")
    kept, restarted = kept_and_restarted(df)
    kept_starts, restarted_starts = (steady_values(g, "loader_start_s") for g in (kept, restarted))
    first = stats.samples(kept[kept["warmup"].fillna(False).astype(bool)]["loader_start_s"])
    text = (f"**Persistent workers.** Without them the DataLoader starts its {ONE_WORKER} worker again every epoch: "
            f"{stats.spread(restarted_starts)} s of start-up per steady epoch. With `persistent_workers=True` the "
            f"worker started once ({stats.spread(first)} s in the first epoch) and each later epoch paid "
            f"{stats.spread(kept_starts)} s to resume it. Worker start-up per epoch: {c.sentence()} (The persistent "
            f"setting ran {PERSISTENT_BATCHES} batch an epoch: its per-batch wait is not compared.)")
    return stats.Said(text, [c])


@plots.themed
def plot_workers(table: pd.DataFrame, title: str = "Wait for batches vs DataLoader workers"):
    """The per-batch wait (mean, min–max over steady epochs) and the start-up per count; the rule's best count."""
    nan = float("nan")
    fig, ax = plots.pyplot().subplots(figsize=(6.5, 3.8))
    sweep = sweep_rows(table)
    low = sweep["batch wait samples"].map(lambda v: min(v) if v else nan)
    high = sweep["batch wait samples"].map(lambda v: max(v) if v else nan)
    err = [(sweep["batch wait s"] - low).clip(lower=0).fillna(0),
           (high - sweep["batch wait s"]).clip(lower=0).fillna(0)]
    ax.errorbar(sweep["workers"], sweep["batch wait s"], yerr=err, marker="o", capsize=4,
                label="wait for batches (min–max)")
    ax.plot(sweep["workers"], sweep["worker start-up s"], marker="^", linestyle=":", label="worker start-up (iter())")
    best = sweep[sweep["rule"].str.contains(BEST)]
    if len(best):
        ax.scatter(best["workers"], best["batch wait s"], s=220, facecolors="none", edgecolors="red", linewidths=2,
                   label=f"best: {best.index[0]}", zorder=5)
    if ON_DEVICE in table.index:
        ax.axhline(table.loc[ON_DEVICE, "batch wait s"], color="green", linestyle="--",
                   label="wait, on-device batched loader")
    ax.set_xlabel("num_workers")
    ax.set_ylabel("seconds per epoch")
    ax.set_xticks(list(sweep["workers"]))
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def section(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    sweep = read_sweep(results_dir)
    print(display.describe_run(df.iloc[0]))
    table = workers_table(df, sweep)
    label = "" if sweep.get("significant", True) else " (not significant)"
    best = (f"**Best: {tag(sweep['best_workers'])}{label}.** Rule: {sweep.get('stop_reason', '—')}. "
            if "best_workers" in sweep else "**The sweep's result is missing from this report:** no best count. ")
    display.show(display.markdown(best + "Every count ran interleaved by epoch; the waits are per-batch waits over "
                                  "steady epochs (worker start-up apart)."),
                 style(table.drop(columns=["persistent workers"])))  # the setting's name says so
    persistent = explain_persistent(df, results_dir)
    if persistent:
        display.show(display.markdown(persistent))
    display.figure(plot_workers(table), "C3_workers", figures_dir)


def findings(df: pd.DataFrame, results_dir=None) -> list[display.Finding]:
    """C3.1: the per-batch wait per count; C3.2: the rule's best count; C3.3: why more workers stop helping, from
    what was measured at the best count."""
    sweep = read_sweep(results_dir)
    if "best_workers" not in sweep:
        return display.not_answered(ID, QUESTIONS, "C3's sweep result is missing from this report")
    table = workers_table(df, sweep)
    counts = sweep_rows(table)
    waits = ", ".join(f"{int(w)}: {stats.sig(s)} s" for w, s in zip(counts["workers"], counts["batch wait s"]))
    n = int(min((len(v) for v in counts["batch wait samples"]), default=0))
    best, significant = int(sweep["best_workers"]), sweep.get("significant", True)
    at_best = stats.steady(df[(df["workers"] == best) & (df.get("loader", "torch") == "torch")
                              & ~persistent_workers(df)])
    nan = float("nan")
    share = stats.mean(at_best["load_s"]) / stats.mean(at_best["total_s"]) if len(at_best) else nan
    cpu = stats.mean(at_best["cpu_s"] / at_best["total_s"]) if "cpu_s" in at_best and len(at_best) else nan
    cores = at_best["cpus_available"].max() if "cpus_available" in at_best and len(at_best) else nan
    why = (f"at {tag(best)} the loop waits {share:.0%} of each epoch for data, so more workers have little "
           "left to hide" if not pd.isna(share) else "not measured")
    if not pd.isna(cpu) and not pd.isna(cores):
        why += (f"; the training process alone keeps {cpu:.2f} of the {cores:.0f} cores busy, so workers compete "
                "for them")
    return [display.Finding("C3.1", "Loading time by worker count", f"per-batch wait per epoch: {waits}",
                            f"means over {n} steady epochs each, interleaved; worker start-up apart", ID),
            display.Finding("C3.2", "Best worker count", tag(best) + ("" if significant else
                            " (not significant)"), sweep.get("stop_reason", ""), ID),
            display.Finding("C3.3", "Why more workers stop helping", why,
                            f"measured at {tag(best)} over {stats.plural(len(at_best), 'steady epoch')}", ID)]


def verdicts(df: pd.DataFrame, results_dir) -> dict:
    """The sweep's family and the persistent workers' claim (a family of its own)."""
    waits = {int(k): v for k, v in read_sweep(results_dir).get("batch_wait_s", {}).items()}
    return {**sweep_family(waits), **persistent_claim(df)}


PART = Part(ID, "C3 — DataLoader workers", QUESTIONS, (*COMMON, "worker_step", "worker_cap", "worker_counts"), runs,
            section, findings, measure=measure, speed_family=speed_family, verdicts=verdicts,
            provides=("best_workers",))
