"""Tables from records (DataFrames in the lab.results schema), one or more per part: steady-state means
with their min-max ranges and samples (the warm-up rule is lab.stats.steady, nowhere else). pandas only: the
figures are lab.plots, the sentences lab.narrative."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import stats
from .results import read_records

TIMES = ["load_s", "train_s", "other_s", "total_s"]
STARVED_SHARE = 0.1  # a setting is loader-starved when this share of its batches waited (lab.train.count_starved)
nan = float("nan")


def load(results_dir, experiment: str | None = None, kind: str = "epoch") -> pd.DataFrame:
    df = read_records(results_dir, kind=kind)
    if experiment is not None and len(df):
        df = df[df["experiment"] == experiment]
    return df.reset_index(drop=True)


def summarize(df: pd.DataFrame, by) -> pd.DataFrame:
    """Per group (in order of first appearance): steady-state mean of each phase (lab.stats.steady: the
    warm-up epoch left out where there are others) and its min–max range, the plain mean, the last
    epoch's loss and top-1 (and test top-1 where evaluated), and the training throughput of whole epochs."""
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
    return pd.DataFrame(rows).set_index(by)


def percent(table: pd.DataFrame, columns=("top1", "final top1")) -> pd.DataFrame:
    """A display copy with top-1 as a percentage."""
    table = table.copy()
    for c in columns:
        if c in table:
            table[c] = table[c] * 100
    return table.rename(columns={c: f"{c} %" for c in columns})


def style(table: pd.DataFrame):
    """Display form: three decimals, top-1 in percent, empty cells as a dash; the raw samples behind the
    ranges are left out."""
    table = table[[c for c in table.columns if not str(c).endswith(" samples")]]
    return percent(table, ("top1", "final top1", "test top1")).style.format(precision=3, na_rep="—")


def workers_table(df: pd.DataFrame, sweep: dict) -> pd.DataFrame:
    """C3: one row per worker count (the DataLoader), plus the on-device batched loader when it ran.
    `batch wait s` is the steady per-epoch wait on batches (worker start-up, `iter()`, is its own column);
    the rule column comes from C3's saved sweep (lab.experiments.sweep_workers), computed once."""
    df = df.copy()
    df["batch_wait_s"] = df["load_s"] - df["loader_start_s"]
    tensor = df.get("loader", pd.Series("torch", index=df.index)) == "tensor"
    df["setting"] = df["workers"].astype(int).astype(str) + " workers"
    df.loc[tensor, "setting"] = "on-device batched"
    table = summarize(df, "setting")
    steady = stats.steady(df)
    waits = {k: stats.samples(g["batch_wait_s"]) for k, g in steady.groupby("setting", sort=False)}
    starts = {k: stats.samples(g["loader_start_s"]) for k, g in steady.groupby("setting", sort=False)}
    table.insert(0, "workers", [float("nan") if s == "on-device batched" else int(s.split()[0]) for s in table.index])
    table["batch wait s"] = [stats.mean(waits.get(k, [])) for k in table.index]
    table["batch wait range"] = [stats.spread(waits.get(k, [])) for k in table.index]
    table["batch wait samples"] = [waits.get(k, []) for k in table.index]
    table["worker start-up s"] = [stats.mean(starts.get(k, [])) for k in table.index]
    stop, best = sweep.get("stop_at"), sweep.get("best_workers")
    table["rule"] = ""
    for name, w in table["workers"].items():
        if pd.isna(w):
            continue
        marks = (["best"] if w == best else []) + (["stopped here"] if w == stop else []) + (
            ["after the stop"] if stop is not None and w > stop else [])
        table.loc[name, "rule"] = ", ".join(marks)
    return table[["workers", "batch wait s", "batch wait range", "worker start-up s", "load_s", "train_s",
                  "total_s", "total_s range", "training images/s", "rule", "batch wait samples"]]


def workers_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """C4's table: one row per run (1 worker, the best count), steady-state phases with ranges."""
    table = summarize(df, "tag")
    first = df.groupby("tag", sort=False).first()
    table.insert(0, "workers", first["workers"].reindex(table.index))
    table["host_cpus"] = first["host_cpus"].reindex(table.index)
    return table


def devices_table(df: pd.DataFrame) -> pd.DataFrame:
    """Average epoch time per device (with its range), per-batch step and epoch time, and the speed-up
    over the CPU for both, as a range; a device that was not there stays in the table as 'not available'."""
    rows, samples = [], {}
    ok = summarize(df, "device_type") if (df["status"] == "ok").any() else pd.DataFrame()
    for device, group in df.groupby("device_type", sort=False):
        if device in ok.index:
            s = ok.loc[device]
            per = s["batches/epoch"]
            samples[device] = ([v / per for v in s["train_s samples"]], [v / per for v in s["total_s samples"]])
            rows.append({"device": device, "device_name": group["device_name"].iloc[0], "available": "yes",
                         "avg epoch s": s["total_s"], "epoch range": s["total_s range"], "batches/epoch": per,
                         "step s/batch": s["train_s"] / per, "epoch s/batch": s["total_s"] / per,
                         "training images/s": s["training images/s"]})
        elif (group["status"] == "unavailable").all():
            rows.append({"device": device, "device_name": "not available", "available": "no"})
        else:
            rows.append({"device": device, "device_name": group["device_name"].iloc[0],
                         "available": "yes (run diverged)"})
    table = pd.DataFrame(rows).set_index("device")
    if "cpu" in samples:
        for col, i in (("step speed-up vs CPU", 0), ("epoch speed-up vs CPU", 1)):
            table[col] = [_ratio_range(samples["cpu"][i], samples[d][i]) if d in samples else "—" for d in table.index]
    return table


def _ratio_range(baseline, values) -> str:
    mean, low, high = stats.speedup_range(baseline, values)
    if mean != mean:
        return "—"
    return f"×{mean:.2f}" if low == high else f"×{mean:.2f} (×{low:.2f}–×{high:.2f})"


def compare_table(df: pd.DataFrame, by: str = "tag") -> pd.DataFrame:
    s = summarize(df, by)
    table = pd.DataFrame({"train s/epoch": s["train_s"], "train range": s["train_s range"],
                          "total s/epoch": s["total_s"], "total range": s["total_s range"],
                          "final loss": s["loss"], "final top1": s["top1"], "test top1": s["test top1"],
                          "test images": s["test images"], "epochs": s["epochs"],
                          "train_s samples": s["train_s samples"], "total_s samples": s["total_s samples"]},
                         index=s.index)
    diverged = df[df["status"] == "diverged"][by].unique()
    for name in diverged:
        if name not in table.index:
            table.loc[name] = pd.Series(dtype=object)
        table.loc[name, "final loss"] = float("nan")
    table["status"] = ["diverged" if name in diverged else "ok" for name in table.index]
    return table


def answers_table(results_dir) -> pd.DataFrame:
    """Q1-Q4 from the answers the Q_model notebook computed from the live model."""
    import json

    path = Path(results_dir) / "Q_model" / "answers.json"
    if not path.exists():
        return pd.DataFrame({"answer": ["Q_model did not run in this report"]})
    a = json.loads(path.read_text())
    conv = a["conv_layers"]
    rows = [("Q1 conv layers", f"{conv['total']} ({conv['3x3']} 3x3 + {conv['1x1']} 1x1 shortcut)"),
            ("Q2 input size of the last linear layer", f"{a['last_linear_in_features']}"),
            ("Q3 SGD: trainable parameters / gradients", f"{a['sgd']['parameters']:,} / {a['sgd']['gradients']:,}"),
            ("Q4 Adam: trainable parameters / gradients", f"{a['adam']['parameters']:,} / {a['adam']['gradients']:,}"),
            ("Q4 Adam optimizer state (not gradients)", f"{a['adam']['optimizer_state']:,} (2 x parameters)"),
            ("trainable parameters without batch norm", f"{a['parameters_without_bn']:,}")]
    return pd.DataFrame(rows, columns=["question", "answer"]).set_index("question")


def acceleration_table(df: pd.DataFrame, plan: dict | None = None) -> pd.DataFrame:
    """Per setting: the first epoch (pays for compilation and autotuning); the steady epochs: training
    time (the step) and whole epoch, each with its range, and the speed-up over eager fp32 of both (the
    step can speed up while the epoch does not: a starved step); starved batches; final loss and test
    top-1. Settings of the plan that left no record appear as 'not measured' with the reason."""
    ok = df[df["status"] == "ok"].sort_values("epoch", kind="stable")
    steady = stats.steady(ok, strict=True)  # a first epoch pays for compilation: never steady
    rows = []
    for tag, group in ok.groupby("tag", sort=False):
        later = steady.loc[steady.index.intersection(group.index)]
        last = group.iloc[-1]
        starved = stats.samples(later["starved_batches"]) if "starved_batches" in later else []
        batches = later["images"].mean() / later["batch_size"].mean() if len(later) else float("nan")
        rows.append({"tag": tag, "timers": last.get("timers", "phase"), "first epoch s": group["total_s"].iloc[0],
                     "steady train s": later["train_s"].mean() if len(later) else float("nan"),
                     "steady epoch s": later["total_s"].mean() if len(later) else float("nan"),
                     "train_s samples": stats.samples(later["train_s"]),
                     "total_s samples": stats.samples(later["total_s"]),
                     "starved batches": stats.mean(starved),
                     "batches": batches, "final loss": last["loss"],
                     "test top1": last.get("test_top1", float("nan")),
                     "test images": last.get("test_images", float("nan")), "epochs": len(group), "status": "ok"})
    table = pd.DataFrame(rows).set_index("tag") if rows else pd.DataFrame(columns=["status"])
    base = table.loc["eager fp32"] if "eager fp32" in table.index else None
    for col, key in (("step speed-up", "train_s samples"), ("epoch speed-up", "total_s samples")):
        table[col] = [_ratio_range(base[key], r[key]) if base is not None and r[key] else "—"
                      for _, r in table.iterrows()]
    table["loader"] = ["not measured (epoch timers)" if r["timers"] == "epoch" else
                       ("starved" if r["starved batches"] >= STARVED_SHARE * r["batches"] else "keeps up")
                       if r["starved batches"] == r["starved batches"] else "—" for _, r in table.iterrows()]
    for tag in _not_measured(df, plan):
        table.loc[tag, "status"] = f"not measured: {_not_measured(df, plan)[tag]}"
    return table[["timers", "first epoch s", "steady train s", "steady epoch s", "step speed-up", "epoch speed-up",
                  "starved batches", "batches", "loader", "final loss", "test top1", "epochs", "status",
                  "train_s samples", "total_s samples", "test images"]]


def _not_measured(df: pd.DataFrame, plan: dict | None) -> dict:
    if not plan:
        return {}
    measured = set(df.loc[df["status"] == "ok", "tag"]) if len(df) else set()
    missing = {t: "planned, but no finished epoch (failed or diverged)" for t in plan.get("settings", [])
               if t not in measured}
    return {**plan.get("skipped", {}), **missing}


def operators_table(path, top: int = 10) -> pd.DataFrame:
    """A saved profiler table (lab.profiling), its top rows."""
    return pd.read_csv(path, index_col=0).head(top)


def scaling_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per launch (1 process; N processes, strong or weak scaling): the epoch time (the slowest rank's),
    images per second over all ranks, the speed-up in images/s over 1 process and the scaling efficiency
    (speed-up / N), each as a range over steady epochs, and the exposed communication's share of the
    epoch (comm_s, measured per rank; the mean over ranks). Counts this node could not run stay in the
    table as 'not available'."""
    rows, per_epoch = [], {}
    for tag, group in df.groupby("tag", sort=False):
        first = group.iloc[0]
        if (group["status"] == "unavailable").all():
            rows.append({"setting": tag, "processes": first["world_size"], "status": "not available: "
                         + str(first.get("unavailable_reason", ""))})
            continue
        steady = stats.steady(group)
        epochs = steady.groupby("epoch").agg(seconds=("slowest_total_s", "max"), images=("images", "sum"),
                                             comm=("comm_s", "mean"))
        per_epoch[tag] = epochs
        rows.append({"setting": tag, "processes": int(first["world_size"]), "batch/process": int(first["batch_size"]),
                     "global batch": int(first["global_batch_size"]), "threads/process": first.get("threads"),
                     "epoch s": epochs["seconds"].mean(), "epoch range": stats.spread(epochs["seconds"]),
                     "images/s": (epochs["images"] / epochs["seconds"]).mean(),
                     "comm share": (epochs["comm"] / epochs["seconds"]).mean() if epochs["comm"].notna().any()
                     else float("nan"), "status": "ok"})
    table = pd.DataFrame(rows).set_index("setting")
    base = per_epoch.get("1 process")
    speedups, efficiencies = [], []
    for tag, row in table.iterrows():
        if base is None or tag not in per_epoch:
            speedups.append("—"), efficiencies.append("—")
            continue
        # time per image is lower-is-better: baseline s/image over this setting's s/image = speed-up
        mine = per_epoch[tag]
        mean, low, high = stats.speedup_range(base["seconds"] / base["images"], mine["seconds"] / mine["images"])
        n = row["processes"]
        speedups.append(_ratio_range(base["seconds"] / base["images"], mine["seconds"] / mine["images"]))
        efficiencies.append(f"{mean / n:.0%}" + ("" if low == high else f" ({low / n:.0%}–{high / n:.0%})"))
    table["speed-up (images/s)"] = speedups
    table["efficiency"] = efficiencies
    return table


def epoch_table(records) -> pd.DataFrame:
    """The lab's per-epoch table of one run: one row per epoch, then Total and Avg rows, and, when the first
    epoch paid for warm-up (workers starting, autotuning), the steady-state average (lab.stats.steady)."""
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


def format_epoch_table(records) -> str:
    table = epoch_table(records).copy()
    table["top1"] = table["top1"] * 100
    table = table.rename(columns={"top1": "top1_%"})
    return table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="")
