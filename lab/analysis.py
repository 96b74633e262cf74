"""Tables and figures from records (a DataFrame in the lab.results schema). The C-part notebooks and the
summary call the same functions, so a number in the report is computed in one place only."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import stats
from .results import read_records

TIMES = ["load_s", "train_s", "other_s", "total_s"]
PHASE_COLORS = {"load_s": "#e4572e", "train_s": "#4c72b0", "other_s": "#aaaaaa"}
sns.set_theme(style="whitegrid", context="notebook")
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


# --- C1/C2 -----------------------------------------------------------------------------------------

def plot_epoch_phases(df: pd.DataFrame, title: str = "Where each epoch's time goes"):
    """Stacked bars of load / train / other per epoch."""
    labels = df["epoch"].map(lambda e: str(int(e))) + df["warmup"].map({True: " (warm-up)", False: ""})
    table = df.set_index(labels)
    return phase_bars(table, title, xlabel="epoch")


def plot_batches(batches: pd.DataFrame, hue: str | None = None, title: str = "Per mini-batch loss and top-1"):
    batches = batches.copy()
    batches["step"] = batches.groupby("run_id").cumcount() + 1
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    sns.lineplot(batches, x="step", y="loss", hue=hue, ax=axes[0], marker="o")
    sns.lineplot(batches, x="step", y="top1", hue=hue, ax=axes[1], marker="o")
    axes[1].set_ylabel("top-1 (fraction)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def phase_bars(table: pd.DataFrame, title: str, xlabel: str = ""):
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(table) + 2), 3.6))
    bottom = None
    for phase, color in PHASE_COLORS.items():
        ax.bar(table.index.astype(str), table[phase], bottom=bottom, color=color, label=phase[:-2])
        bottom = table[phase] if bottom is None else bottom + table[phase]
    ax.set_ylabel("seconds per epoch")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(title="phase")
    fig.tight_layout()
    return fig


# --- C3/C4 ------------------------------------------------------------------------------------------

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


def plot_workers(table: pd.DataFrame, title: str = "Wait for batches vs DataLoader workers"):
    """The per-batch wait (mean and min–max over steady epochs) and worker start-up per count; the best
    count as C3's rule chose it."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sweep = table[table["workers"].notna()]
    low = sweep["batch wait samples"].map(lambda v: min(v) if v else nan)
    high = sweep["batch wait samples"].map(lambda v: max(v) if v else nan)
    err = [(sweep["batch wait s"] - low).clip(lower=0).fillna(0), (high - sweep["batch wait s"]).clip(lower=0).fillna(0)]
    ax.errorbar(sweep["workers"], sweep["batch wait s"], yerr=err, marker="o", capsize=4,
                label="wait for batches (min–max)")
    ax.plot(sweep["workers"], sweep["worker start-up s"], marker="^", linestyle=":", label="worker start-up (iter())")
    best = sweep[sweep["rule"].str.contains("best")]
    if len(best):
        ax.scatter(best["workers"], best["batch wait s"], s=220, facecolors="none", edgecolors="red", linewidths=2,
                   label=f"best: {best.index[0]}", zorder=5)
    if "on-device batched" in table.index:
        ax.axhline(table.loc["on-device batched", "batch wait s"], color="green", linestyle="--",
                   label="wait, on-device batched loader")
    ax.set_xlabel("num_workers")
    ax.set_ylabel("seconds per epoch")
    ax.set_xticks(list(sweep["workers"]))
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def workers_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """C4's table: one row per run (1 worker, the best count), steady-state phases with ranges."""
    table = summarize(df, "tag")
    first = df.groupby("tag", sort=False).first()
    table.insert(0, "workers", first["workers"].reindex(table.index))
    table["host_cpus"] = first["host_cpus"].reindex(table.index)
    return table


def _workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def explain_workers(table: pd.DataFrame) -> str:
    """C4's explanation, written from the measured numbers of a workers_comparison table (1 worker first,
    then the best count); every 'more'/'less' goes through lab.stats.compare."""
    (name_a, a), (name_b, b) = list(table.iterrows())[:2]
    share_a, share_b = a["load_s"] / a["total_s"], b["load_s"] / b["total_s"]
    lines = [f"With **{name_a}**, the training loop waited **{a['load_s']:.3f} s** per epoch for data"
             f"{stats.range_note(a['load_s samples'])}, {share_a:.0%} of the {a['total_s']:.3f} s epoch; compute "
             f"took {a['train_s']:.3f} s{stats.range_note(a['train_s samples'])}.",
             f"With **{name_b}**, the wait was **{b['load_s']:.3f} s**{stats.range_note(b['load_s samples'])}, "
             f"{share_b:.0%} of {b['total_s']:.3f} s; compute took {b['train_s']:.3f} s"
             f"{stats.range_note(b['train_s samples'])}."]
    wa, wb, cores = int(a["workers"]), int(b["workers"]), int(b.get("host_cpus", 0) or 0)
    load = stats.compare(b["load_s samples"], a["load_s samples"], _workers(wb), _workers(wa))
    compute = stats.compare(b["train_s samples"], a["train_s samples"], _workers(wb), _workers(wa))
    if wa == wb:
        lines.append(f"C3's best count is {_workers(wb)}, the same as the baseline: the two rows measure the "
                     "same setting twice, and their difference is the noise.")
    elif load.verdict == stats.TOO_FEW:
        lines.append(f"Wait for data: {stats.TOO_FEW}.")
    elif not load.decided:
        lines.append(f"Wait for data: {load.verdict}. Loading is not what separates these settings here.")
    else:
        lines.append(f"Wait for data: {load.sentence()}")
        if load.verdict == "faster" and wb > wa:
            lines.append("Why: while the main process computes a batch, the workers decode, crop, flip and "
                         "normalize the next ones in parallel, so `next()` finds a batch ready instead of "
                         "preparing it on the spot.")
        elif load.verdict == "faster":
            lines.append("Why: handing each batch over between processes (pickling, shared memory) costs more "
                         "than the preparation a worker takes off the main process at this step time.")
    if wa != wb:
        busy = max(wa, wb) + 1  # loader processes + the training process
        if compute.decided:
            lines.append(f"Compute: {compute.sentence()}" + (
                f" With {busy} busy processes on {cores} CPU cores, the loader workers compete with the training "
                "step for the cores." if cores and busy > cores else
                f" With {cores} CPU cores for {busy} processes, core sharing does not explain it; look at the "
                "profiles below."))
        else:
            lines.append(f"Compute: {compute.verdict} between {_workers(wa)} and {_workers(wb)}.")
    bound = "data loading" if share_b > 0.5 else "computation"
    lines.append(f"At the best setting the epoch is bound by **{bound}** "
                 f"(loading {share_b:.0%}, compute {b['train_s'] / b['total_s']:.0%}).")
    return "\n\n".join(lines)


# --- C5 ----------------------------------------------------------------------------------------------

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


def explain_devices(df: pd.DataFrame) -> str:
    """C5's sentence, per batch (a capped CPU run has fewer batches), for the step and the whole epoch."""
    ok = df[df["status"] == "ok"]
    if ok["device_type"].nunique() < 2:
        missing = sorted(set(df["device_type"]) - set(ok["device_type"]))
        return ("Only one device was measured" + (f" ({', '.join(missing)} not available)" if missing else "")
                + ": nothing to compare.")
    steady = stats.steady(ok)
    per_batch = {d: (stats.samples(g["train_s"] / (g["images"] / g["batch_size"])),
                     stats.samples(g["total_s"] / (g["images"] / g["batch_size"])))
                 for d, g in steady.groupby("device_type", sort=False)}
    (d1, (s1, e1)), (d2, (s2, e2)) = list(per_batch.items())[:2]
    return "\n\n".join([stats.compare(s1, s2, d1, d2).sentence("training step, per batch"),
                         stats.compare(e1, e2, d1, d2).sentence("whole epoch, per batch")])


# --- C6/C7 ------------------------------------------------------------------------------------------

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


def plot_curves(df: pd.DataFrame, hue: str = "tag", title: str = ""):
    """Training time per epoch, training loss, and test top-1 where evaluated (else training top-1)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ok = df[df["status"] != "unavailable"]
    accuracy = "test_top1" if "test_top1" in ok and ok["test_top1"].notna().any() else "top1"
    sns.lineplot(ok, x="epoch", y="train_s", hue=hue, marker="o", ax=axes[0])
    sns.lineplot(ok, x="epoch", y="loss", hue=hue, marker="o", ax=axes[1], legend=False)
    sns.lineplot(ok, x="epoch", y=accuracy, hue=hue, marker="o", ax=axes[2], legend=False)
    axes[0].set_ylabel("train seconds per epoch")
    axes[1].set_ylabel("training loss")
    axes[2].set_ylabel(("test" if accuracy == "test_top1" else "training") + " top-1 (fraction)")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, name: str, figures_dir) -> None:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        fig.savefig(figures_dir / f"{name}.{ext}", bbox_inches="tight", dpi=110 if ext == "png" else None)


def describe_run(record: dict) -> str:
    """One line saying what a record measured, for the top of a table."""
    bn = "" if record.get("batch_norm", True) else ", no batch norm"
    loader = "on-device loader" if record.get("loader") == "tensor" else f"{record['workers']} workers"
    return (f"ResNet-18{bn}, {record['optimizer']} lr {record['lr']}, batch {record['batch_size']}, "
            f"{loader}, max_batches {record['max_batches']}, on {record['device_name']} "
            f"({record['device_type']}), {record['dataset_kind']} data, torch {record['torch_version']}, "
            f"commit {record['git_commit']}")


def explain_comparison(table: pd.DataFrame, what: str) -> str:
    """Speed: the fastest and slowest training time, named only outside the noise (lab.stats). Learning:
    test top-1 with 95 % intervals where the runs were evaluated; training losses say nothing here."""
    ok = table[table["status"] == "ok"]
    lines = []
    if len(ok):
        lines.append("Speed: " + stats.rank(ok["train_s samples"].to_dict(), f"training seconds per epoch, {what}s"))
        n = ok["test images"].min() if "test images" in ok else float("nan")
        if ok["test top1"].notna().any() and n == n:
            lines.append("Learning: " + stats.accuracy_sentence(ok["test top1"].to_dict(), int(n), what))
        else:
            lines.append("Learning: not compared (the runs were not evaluated on the test set).")
    diverged = list(table.index[table["status"] == "diverged"])
    if diverged:
        lines.append(f"Diverged (loss became NaN/inf, run stopped): {', '.join(map(str, diverged))}.")
    return "\n\n".join(lines) or "No run finished."


def header_html(epochs: pd.DataFrame, results_dir, profile: str) -> str:
    """The report's provenance block, with a loud banner when any number came from synthetic data."""
    import html
    import json

    meta_file = Path(results_dir) / "report.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    measured = epochs[epochs["status"] != "unavailable"] if len(epochs) else epochs
    def values(col):
        return ", ".join(sorted({str(v) for v in measured[col].dropna()})) if col in measured and len(measured) else "—"
    rows = {"report": meta.get("id", Path(results_dir).name), "profile": meta.get("profile", profile),
            "date": meta.get("started", values("time")), "device": values("device_name"),
            "data set": values("dataset_kind"), "torch": values("torch_version"), "commit": values("git_commit"),
            "host CPUs": values("host_cpus"), "records": f"{len(measured)} epoch records",
            "notebooks": notebook_durations(meta)}
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                   f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    banner = ""
    if "synthetic" in set(epochs.get("dataset_kind", [])):
        banner = ("<div style='border:3px solid #c0392b;background:#fdecea;color:#922b21;padding:10px;"
                  "margin:10px 0;font-size:1.15em;font-weight:bold'>SYNTHETIC DATA: CIFAR-10 was not available, so "
                  "these runs used synthetic images in the CIFAR-10 file format, through the same loading path. "
                  "Timings are real measurements of the pipeline; losses and accuracies are not CIFAR-10 results."
                  "</div>")
    return (f"<h1>ResNet-18 on CIFAR-10: where the time goes</h1>{banner}"
            f"<table class='provenance'>{body}</table>")


def notebook_durations(meta: dict) -> str:
    """Each planned notebook's duration, and the ones that did not run (a report missing a part says so)."""
    done, planned = meta.get("done", {}), list(meta.get("parameters", {}))
    if not planned:
        return "—"
    ran = ", ".join(f"{n} {done[n]:.0f} s" for n in planned if n in done)
    missing = [n for n in planned if n not in done]
    return ran + (f"; DID NOT RUN: {', '.join(missing)}" if missing else "")


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


# --- C8 ----------------------------------------------------------------------------------------------

STARVED_SHARE = 0.1  # a setting is loader-starved when this share of its batches waited (lab.train.count_starved)


def acceleration_table(df: pd.DataFrame, plan: dict | None = None) -> pd.DataFrame:
    """Per setting: the first epoch (pays for compilation and autotuning); the steady epochs: training
    time (the step) and whole epoch, each with its range, and the speed-up over eager fp32 of both (the
    step can speed up while the epoch does not: a starved step); starved batches; final loss and test
    top-1. Settings of the plan that left no record appear as 'not measured' with the reason."""
    ok = df[df["status"] == "ok"].sort_values("epoch", kind="stable")
    steady = stats.steady(ok)
    rows = []
    for tag, group in ok.groupby("tag", sort=False):
        later = steady.loc[steady.index.intersection(group.index)]
        later = later[~later["warmup"].astype(bool)]
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


def explain_acceleration(table: pd.DataFrame) -> str:
    """C8's sentences: each setting's step and epoch against eager fp32 (lab.stats), starved steps, the
    cost of per-phase timers, and whether `fast` learned as well as eager fp32 (test top-1)."""
    ok = table[table["status"] == "ok"]
    if "eager fp32" not in ok.index:
        return "Eager fp32 (the baseline) did not finish here: no speed-up can be stated."
    base = ok.loc["eager fp32"]
    lines = []
    if max(len(v) for v in ok["total_s samples"]) < stats.MIN_SAMPLES:
        lines.append(f"Speed-ups: {stats.TOO_FEW}; run at least 3 epochs per setting.")
    else:
        for tag, row in ok.drop(index="eager fp32").iterrows():
            step = stats.compare(row["train_s samples"], base["train_s samples"], tag, "eager fp32")
            epoch = stats.compare(row["total_s samples"], base["total_s samples"], tag, "eager fp32")
            text = f"**{tag}** — whole epoch: {epoch.sentence()}"
            if row["timers"] != "epoch":
                text += f" Step: {step.sentence()}"
            if row["loader"] == "starved":
                text += (f" ⚠ Starved: {row['starved batches']:.0f} of {row['batches']:.0f} batches per epoch waited "
                         "on the loader, so the step's gain does not reach the epoch.")
            lines.append(text)
        if {"fast", "fast (per-phase timers)"} <= set(ok.index):
            cost = stats.compare(ok.loc["fast (per-phase timers)", "total_s samples"],
                                 ok.loc["fast", "total_s samples"], "per-phase timers", "epoch timers")
            lines.append("**The cost of measuring** (same `fast` setting, whole epoch): " + cost.sentence())
    if "fast" in ok.index and ok["test top1"].notna().any():
        n = ok["test images"].min()
        pair = {t: ok.loc[t, "test top1"] for t in ("eager fp32", "fast")}
        lines.append("**Does fast learn as well?** " + (stats.accuracy_sentence(pair, int(n), "setting")
                                                         if n == n else "not evaluated."))
    for tag, row in table[table["status"] != "ok"].iterrows():
        lines.append(f"**{tag}**: {row['status']}.")
    return "\n\n".join(lines)


def bound_sentence(table: pd.DataFrame, results_dir) -> str:
    """C8's launch- or compute-bound sentence from the saved eager-step profile and the bf16 comparison."""
    import json

    from .profiling import bound_sentence as sentence

    path = Path(results_dir) / "C8_acceleration" / "step_eager_fp32.json"
    if not path.exists():
        return "The eager step was not profiled in this report."
    ok = table[table["status"] == "ok"]
    bf16 = None
    if "autocast bf16" in table.index and table.loc["autocast bf16", "status"] != "ok":
        bf16 = table.loc["autocast bf16", "status"]
    if {"eager fp32", "autocast bf16"} <= set(ok.index):
        bf16 = stats.compare(ok.loc["autocast bf16", "train_s samples"], ok.loc["eager fp32", "train_s samples"],
                             "autocast bf16", "eager fp32")
    return sentence(json.loads(path.read_text()), bf16)


def plot_acceleration(table: pd.DataFrame, title: str = "Epoch time by setting"):
    table = table[table["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.6))
    names = list(table.index[::-1])
    ax.barh(names, table["steady epoch s"][::-1].fillna(0), color="#c6d4e8", label="steady-state epoch")
    ax.barh(names, table["steady train s"][::-1].fillna(0), color="#4c72b0", label="of which training step")
    ax.scatter(table["first epoch s"][::-1], names, color="#e4572e", zorder=3, label="first epoch")
    for y, (name, row) in enumerate(table[::-1].iterrows()):
        label = f"epoch {row['epoch speed-up'].split()[0]}" if row["epoch speed-up"] != "—" else ""
        if row["loader"] == "starved":
            label += " ⚠ starved"
        if label and row["steady epoch s"] == row["steady epoch s"]:
            ax.annotate(label, (row["steady epoch s"], y), xytext=(4, -4), textcoords="offset points", fontsize=8)
    ax.set_xlim(0, 1.3 * max(table["first epoch s"].max(), table["steady epoch s"].max(skipna=True) or 0))
    ax.set_xlabel("seconds per epoch")
    ax.set_title(title + ("" if table["steady epoch s"].notna().any() else " (one epoch each: no steady state)"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def operators_table(path, top: int = 10) -> pd.DataFrame:
    """A saved profiler table (lab.profiling), its top rows."""
    return pd.read_csv(path, index_col=0).head(top)


def profiler_html(results_dir, top: int = 10) -> str:
    """C4's profiler tables (top operators by self CPU time) with links to the saved traces."""
    import html

    folder = Path(results_dir) / "C4_workers_profile"
    parts = []
    for label, title in (("1_worker", "1 worker"), ("best", "best worker count")):
        csv = folder / f"ops_{label}.csv"
        if not csv.exists():
            continue
        trace = f"C4_workers_profile/trace_{label}.json"
        parts.append(f"<h4>torch.profiler, {title}: top {top} operators by self CPU time per step</h4>"
                     + operators_table(csv, top).style.format(precision=2).to_html()
                     + f"<p>Trace: <a href='{html.escape(trace)}'>{html.escape(trace)}</a> "
                       "(open in chrome://tracing or ui.perfetto.dev)</p>")
    return "".join(parts) or "<p>No profiler tables in this report.</p>"


# --- C9 ----------------------------------------------------------------------------------------------

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


def explain_scaling(df: pd.DataFrame) -> str:
    """The C9 sentences: each N-process setting against 1 process, in time per image (lab.stats)."""
    ok = stats.steady(df[df["status"] == "ok"])
    if "1 process" not in set(ok["tag"]):
        return "The 1-process baseline did not run: no speed-up can be stated."
    per_image = {tag: stats.samples(g.groupby("epoch")["slowest_total_s"].max() / g.groupby("epoch")["images"].sum())
                 for tag, g in ok.groupby("tag", sort=False)}
    lines = [stats.compare(v, per_image["1 process"], tag, "1 process").sentence("time per image")
             for tag, v in per_image.items() if tag != "1 process"]
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
    return "\n\n".join(lines)


def render_c9(df: pd.DataFrame) -> None:
    from IPython.display import Markdown

    ran = df[df["status"] == "ok"]
    if len(ran):
        print(describe_run(ran.iloc[0]))
    _show(style(scaling_table(df)), Markdown(explain_scaling(df)))


# --- one render function per section: the part's own notebook and the summary call the same one --------

def _show(*objs) -> None:
    from IPython.display import display

    display(*objs)


def _figure(fig, name: str, figures_dir=None) -> None:
    if figures_dir is not None:
        save_figure(fig, name, figures_dir)
    plt.show()


def render_c3(df: pd.DataFrame, sweep: dict, figures_dir=None) -> None:
    from IPython.display import Markdown

    print(describe_run(df.iloc[0]))
    table = workers_table(df, sweep)
    _show(Markdown(f"**Best: {sweep['best_workers']} workers.** Rule: {sweep['stop_reason']}. Every count ran "
                   "interleaved by epoch; the waits are per-batch waits over steady epochs (worker start-up "
                   "apart)."), style(table))
    _figure(plot_workers(table), "C3_workers", figures_dir)


def render_c4(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    from IPython.display import HTML, Markdown

    table = workers_comparison(df)
    _show(style(table[["workers"] + [c for t in TIMES for c in (t, f"{t} range")] + ["training images/s"]]))
    _figure(phase_bars(table, "1 worker vs the best count (steady-state seconds per epoch)"), "C4_phases", figures_dir)
    _show(Markdown(explain_workers(table)))
    if results_dir is not None:
        _show(HTML(profiler_html(results_dir)))


def render_c5(df: pd.DataFrame) -> None:
    from IPython.display import Markdown

    _show(style(devices_table(df)), Markdown(explain_devices(df)))


def render_comparison(df: pd.DataFrame, what: str, title: str, name: str, figures_dir=None) -> None:
    """C6 and C7: table with ranges, curves, and the noise-aware sentences."""
    from IPython.display import Markdown

    print(describe_run(df.iloc[0]))
    table = compare_table(df)
    _show(style(table.drop(columns=["test images"])))
    _figure(plot_curves(df, title=title), name, figures_dir)
    _show(Markdown(explain_comparison(table, what)))


def render_c6(df: pd.DataFrame, figures_dir=None) -> None:
    """C6: the optimizers (SGD without batch norm, run in C6's block for C7, is C7's to show)."""
    render_comparison(df[df["batch_norm"] != False].reset_index(drop=True), "optimizer", "Optimizers",  # noqa: E712
                      "C6_optimizers", figures_dir)


def render_c7(df: pd.DataFrame, figures_dir=None) -> None:
    render_comparison(df, "setting", "Batch norm on vs off", "C7_batchnorm", figures_dir)


def render_c8(df: pd.DataFrame, results_dir, figures_dir=None) -> None:
    import json

    from IPython.display import Markdown

    plan_file = Path(results_dir) / "C8_acceleration" / "plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else None
    print(describe_run(df.iloc[0]))
    table = acceleration_table(df, plan)
    _show(style(table.drop(columns=["test images"])))
    _figure(plot_acceleration(table), "C8_acceleration", figures_dir)
    _show(Markdown(bound_sentence(table, results_dir)), Markdown(explain_acceleration(table)))
