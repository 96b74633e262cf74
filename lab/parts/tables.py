"""What the parts' tables share: records as DataFrames, steady-state means with ranges and samples per group
(lab.core.stats.steady), the display form, speed-up ranges, one run's epoch table, the measured peaks."""
from __future__ import annotations

import functools
import html
import json

import numpy as np
import pandas as pd

from ..core import fields, results, stats
from ..engine import flops, roofline
from ..engine.model import resnet18
from ..engine.records import read_records

TIMES = ["load_s", "train_s", "other_s", "total_s"]
SUMMARY_COLUMNS = ["total_s (all epochs)", "epochs", "steady epochs", "batches/epoch", "loss", "top1", "test top1",
                   "test images", "training images/s"]  # summarize's, after each phase's mean, range and samples


def load(results_dir, experiment: str | None = None, kind: str = "epoch") -> pd.DataFrame:
    df = read_records(results_dir, kind=kind)
    if experiment is not None and len(df):
        df = df[df["experiment"] == experiment]
    return df.reset_index(drop=True)


def summarize(df: pd.DataFrame, by) -> pd.DataFrame:
    """Per group (in order of appearance): each phase's steady mean, range and samples, the plain mean, the last
    epoch's loss and top-1s, and the training throughput of whole epochs."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    all_steady = stats.steady(df)
    for key, group in df[df["status"] == "ok"].groupby(by, sort=False):
        steady = all_steady.loc[all_steady.index.intersection(group.index)]
        last = group.sort_values("epoch").iloc[-1]
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for t in TIMES:
            values = stats.samples(steady[t]) if t in steady else []
            row[t] = stats.mean(values)
            row[f"{t} range"] = stats.spread(values)
            row[f"{t} samples"] = values
        row.update({"total_s (all epochs)": group["total_s"].mean(), "epochs": len(group),
                    "steady epochs": len(steady),
                    "batches/epoch": len(group) and group["images"].mean() / group["batch_size"].iloc[0],
                    "loss": last["loss"], "top1": last["top1"],
                    "test top1": last.get("test_top1", float("nan")),
                    "test images": last.get("test_images", float("nan")),
                    "training images/s": steady["images"].sum() / steady["total_s"].sum()})
        rows.append(row)
    # no run that ended ok (each diverged, or its device was not there): the same columns, no rows
    columns = by + [f"{t}{kind}" for t in TIMES for kind in ("", " range", " samples")] + SUMMARY_COLUMNS
    return pd.DataFrame(rows, columns=None if rows else columns).set_index(by)


def batch_wait(df: pd.DataFrame) -> pd.Series:
    """Per epoch, the wait on the loader's batches: load_s less the workers' start-up (loader_start_s)."""
    return df["load_s"] - df["loader_start_s"]


def startup_split(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per group of `by`, over its steady epochs: batch_wait and the workers' start-up (which add up to load_s), each
    as a mean, a range and its samples."""
    steady = stats.steady(df)
    rows = {}
    for key in df[by].unique():
        mine = steady[steady[by] == key]
        waits, starts = stats.samples(batch_wait(mine)), stats.samples(mine["loader_start_s"])
        rows[key] = {"batch wait s": stats.mean(waits), "batch wait s range": stats.spread(waits),
                     "batch wait samples": waits, "worker start-up s": stats.mean(starts),
                     "worker start-up range": stats.spread(starts), "worker start-up samples": starts}
    return pd.DataFrame.from_dict(rows, orient="index")


def persistent_workers(df: pd.DataFrame) -> pd.Series:
    """Per record, whether its DataLoader workers were persistent (False in records from before the field)."""
    return df.get("persistent_workers", pd.Series(False, index=df.index)).fillna(False).astype(bool)


def memory(df: pd.DataFrame, by: str, strict: bool = False) -> pd.DataFrame:
    """Per group of `by`: the largest of each memory field (bytes) over its steady epochs, the warm-up's one-off costs
    left out; a column only where a record has the field."""
    steady = stats.steady(df, strict=strict) if "status" in df else df
    out = pd.DataFrame(index=pd.Index(df[by].unique(), name=by))
    for name in fields.MEMORY:
        if name in steady and steady[name].notna().any():
            out[name] = pd.to_numeric(steady[name], errors="coerce").groupby(steady[by], sort=False).max()
    return out


LONG = 40  # characters: a longer text leaves its cell for a numbered note under the table


def style(table: pd.DataFrame):
    """The display form, the one path every table takes (docs/measuring.md): labelled and scaled by field, three
    significant figures, a long text as a note under the table; raw samples left out."""
    table = fields.shown(table[[c for c in table.columns if not str(c).endswith(" samples")]])
    # hidden, kept in the CSV: a column with nothing in it, a mean beside its "mean (min–max)" column
    hidden = [c for c in table.columns if (len(table) and table[c].isna().all()) or f"{c} range" in table.columns]
    shown = [c for c in table.columns if c not in hidden]
    long = [v for row in table[shown].itertuples(index=False) for v in row if isinstance(v, str) and len(v) > LONG]
    notes = {html.escape(text): number for number, text in enumerate(dict.fromkeys(long), 1)}  # in reading order

    def cell(value, whole: bool) -> str:
        if isinstance(value, str):  # escaped already (format's escape: ' as &#39;, where html.escape writes &#x27;)
            if not value.strip():
                return "—"
            key = html.escape(html.unescape(value))  # as the notes' keys
            if key not in notes:
                return value
            head = value.split(":")[0]
            return f"{head if len(html.unescape(head)) <= LONG else 'see note'} [{notes[key]}]"
        if isinstance(value, (bool, np.bool_)):
            return str(value)
        if isinstance(value, (int, float, np.number)):
            return "—" if pd.isna(value) else (f"{value:,.0f}" if whole else stats.sig(value))
        return "—" if value is None else str(value)

    styler = table.style
    for column in table.columns:
        whole = _whole(table[column])
        styler = styler.format(lambda v, whole=whole: cell(v, whole), subset=[column], escape="html")
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    styler = styler.hide(hidden, axis="columns") if hidden else styler
    if notes:
        styler = styler.set_caption("<br>".join(f"[{n}] {text}" for text, n in notes.items()))  # escaped above
        styler = styler.set_table_styles([{"selector": "caption", "props": "caption-side: bottom; text-align: left; "
                                           "font-size: 0.9em; padding-top: 2px;"}], overwrite=False)
    return styler


def _whole(column: pd.Series) -> bool:
    numbers = pd.to_numeric(column, errors="coerce")
    if column.dtype == bool or numbers.isna().all() or (numbers.isna() & column.notna()).any():
        return False
    return bool((numbers.dropna() % 1 == 0).all())


def ratio_range(baseline, values) -> str:
    """'×mean (×low–×high)': how many times faster than the baseline, as a range (lab.core.stats)."""
    mean, low, high = stats.speedup_range(baseline, values)
    if pd.isna(mean):
        return "—"
    return f"×{mean:.2f}" if low == high else f"×{mean:.2f} (×{low:.2f}–×{high:.2f})"


def epoch_table(records) -> pd.DataFrame:
    """The lab's per-epoch table of one run: one row per epoch, then Total and Avg rows, and, when the first
    epoch paid for warm-up (workers starting, autotuning), the steady-state average (lab.core.stats.steady)."""
    df = pd.DataFrame(records).copy()
    df[TIMES] = df[TIMES].astype(float)  # None (not measured: epoch timers) becomes NaN, shown empty
    table = df[["epoch"] + TIMES + ["loss", "top1"]].copy()
    table["epoch"] = table["epoch"].map(lambda e: str(int(e)))  # ints, even where NaN made the column float
    table.loc[df["warmup"].fillna(False).astype(bool).values, "epoch"] += " (warm-up)"
    summary = [{"epoch": "Total", **df[TIMES].sum(min_count=1).to_dict()},
               {"epoch": "Avg", **df[TIMES].mean().to_dict()}]
    steady = stats.steady(df)
    if 0 < len(steady) < len(df):
        summary.append({"epoch": "Avg (steady)", **steady[TIMES].mean().to_dict()})
    return pd.concat([table, pd.DataFrame(summary)], ignore_index=True).set_index("epoch")


PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
# each peak's unit: int8's in TOPS, tera int8 operations per second (2 per multiply-accumulate), not FLOPs
PEAK_UNITS = {**{p: "TFLOP/s" for p in PRECISIONS}, "int8": "TOPS"}
BANDWIDTHS = {"copy": "copy_GBs", "triad": "triad_GBs"}


def peak_unit(key: str) -> str:
    """A peak's unit by its key in machine_peaks' dict: 'TFLOP/s', 'TOPS' (int8) or 'GB/s'."""
    return "GB/s" if key.endswith("_GBs") else PEAK_UNITS.get(key, "TFLOP/s")


def save_peaks(rows: results.Rows, device: str, peaks: dict) -> None:
    """A device's measured peaks (roofline.machine_peaks) as rows: each precision's TFLOP/s (native or emulated),
    int8's TOPS, copy and triad GB/s, and the probe's conditions as JSON text."""
    emulated = peaks.get("emulated", [])
    out = [rows.row("peak", peaks[p], unit, device=device, precision=p,
                    instructions="emulated" if p in emulated else "native")
           for p, unit in PEAK_UNITS.items() if p in peaks]
    out += [rows.row("bandwidth", peaks[key], "GB/s", device=device, kind=kind)
            for kind, key in BANDWIDTHS.items() if key in peaks]
    out.append(rows.row("peak_conditions", text=json.dumps(peaks.get("conditions", {}), default=str), device=device))
    rows.extend(out)


def peaks_of(rows: pd.DataFrame) -> dict[str, dict]:
    """Per device, the peaks saved among `rows` (save_peaks) in machine_peaks' shape; the last saved wins."""
    out = {}
    for _, r in rows[rows["metric"].isin(["peak", "bandwidth", "peak_conditions"])].iterrows():
        peaks = out.setdefault(r["device"], {"emulated": []})
        if r["metric"] == "peak":
            peaks[r["precision"]] = r["value"]
            if r.get("instructions") == "emulated" and r["precision"] not in peaks["emulated"]:
                peaks["emulated"].append(r["precision"])
        elif r["metric"] == "bandwidth":
            peaks[BANDWIDTHS[r["kind"]]] = r["value"]
        else:
            peaks["conditions"] = json.loads(r["text"] or "{}")
    return out


def report_peaks(results_dir, device: str) -> dict | None:
    """The peaks of `device` measured at the report's start (the runner's rows, part "report"), or None."""
    if results_dir is None:
        return None
    return peaks_of(results.read(results_dir, part="report")).get(device)


@functools.lru_cache(maxsize=64)
def step_flops(batch: int, train: bool = True) -> int:
    """FLOPs of one training step (or forward) of the lab's ResNet-18 at `batch`, counted once on the meta device."""
    return flops.count(resnet18(), int(batch), train, device="meta")["total"]


def peak_share(work_flops: float, seconds: float, precision: str, peaks: dict | None, short: bool = False) -> str:
    """'0.21 TFLOP/s, 44 % of the fp32 peak' ('44 % of fp32' where `short`, for a table's cell); a rate above the
    peak says the probe underestimated it (never a share over 100 %); '—' where there is no peak or no time."""
    if not peaks or precision not in peaks or not seconds or pd.isna(seconds):
        return "—"
    rate = roofline.achieved(work_flops, seconds, peaks[precision])
    if rate["peak_underestimated"]:
        return "over the probe's peak" if short else (
            f"{rate['tflops']:.3g} {peak_unit(precision)}, above the measured {precision} peak (the probe "
            "underestimated it)")
    return f"{rate['share']:.0%} of {precision}" if short else (
        f"{rate['tflops']:.3g} {peak_unit(precision)}, {rate['share']:.0%} of the {precision} peak")
