"""Tables and figures from records (a DataFrame in the lab.results schema). The C-part notebooks and the
summary call the same functions, so a number in the report is computed in one place only."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .results import read_records

TIMES = ["load_s", "train_s", "other_s", "total_s"]
PHASE_COLORS = {"load_s": "#e4572e", "train_s": "#4c72b0", "other_s": "#aaaaaa"}
sns.set_theme(style="whitegrid", context="notebook")


def load(results_dir, experiment: str | None = None, kind: str = "epoch") -> pd.DataFrame:
    df = read_records(results_dir, kind=kind)
    if experiment is not None and len(df):
        df = df[df["experiment"] == experiment]
    return df.reset_index(drop=True)


def summarize(df: pd.DataFrame, by) -> pd.DataFrame:
    """Per group (in order of first appearance): steady-state mean of each phase (the warm-up epoch left
    out where there are others), the plain mean, the last epoch's loss and top-1, and throughput."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, group in df[df["status"] == "ok"].groupby(by, sort=False):
        steady = group[~group["warmup"].astype(bool)]
        steady = steady if len(steady) else group
        last = group.sort_values("epoch").iloc[-1]
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update({t: steady[t].mean() for t in TIMES})
        row.update({"total_s (all epochs)": group["total_s"].mean(), "epochs": len(group),
                    "batches/epoch": len(group) and group["images"].mean() / group["batch_size"].iloc[0],
                    "loss": last["loss"], "top1": last["top1"],
                    "images/s": steady["images"].sum() / steady["total_s"].sum(),
                    "loader images/s": steady["images"].sum() / max(steady["load_s"].sum(), 1e-12)})
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
    """Display form: three decimals, top-1 in percent, empty cells as a dash."""
    return percent(table).style.format(precision=3, na_rep="—")


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

def workers_table(df: pd.DataFrame) -> pd.DataFrame:
    """C3: one row per worker count (the DataLoader), plus the on-device batched loader when it ran; the
    best worker count is the DataLoader row with the lowest load time."""
    df = df.copy()
    tensor = df.get("loader", pd.Series("torch", index=df.index)) == "tensor"
    df["setting"] = df["workers"].astype(str) + " workers"
    df.loc[tensor, "setting"] = "on-device batched"
    table = summarize(df, "setting")
    table.insert(0, "workers", [float("nan") if s == "on-device batched" else int(s.split()[0]) for s in table.index])
    table["best"] = ""
    table.loc[table["load_s"].where(table["workers"].notna()).idxmin(), "best"] = "best"
    return table[["workers"] + TIMES + ["loss", "top1", "images/s", "loader images/s", "best"]]


def plot_workers(table: pd.DataFrame, title: str = "Data-loading time vs DataLoader workers"):
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    sweep = table[table["workers"].notna()]
    ax.plot(sweep["workers"], sweep["load_s"], marker="o", label="load (waiting on the loader)")
    ax.plot(sweep["workers"], sweep["total_s"], marker="s", linestyle="--", label="epoch total")
    best = sweep["load_s"].idxmin()
    ax.scatter([sweep.loc[best, "workers"]], [sweep.loc[best, "load_s"]], s=220, facecolors="none",
               edgecolors="red", linewidths=2, label=f"best: {best}", zorder=5)
    if "on-device batched" in table.index:
        ax.axhline(table.loc["on-device batched", "load_s"], color="green", linestyle=":",
                   label="load, on-device batched loader")
    ax.set_xlabel("num_workers")
    ax.set_ylabel("seconds per epoch")
    ax.set_xticks(list(sweep["workers"]))
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def workers_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """C4's table: one row per run (1 worker, the best count), steady-state phases, worker count."""
    table = summarize(df, "tag")
    first = df.groupby("tag", sort=False).first()
    table.insert(0, "workers", first["workers"].reindex(table.index))
    table["host_cpus"] = first["host_cpus"].reindex(table.index)
    return table


def _workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def explain_workers(table: pd.DataFrame) -> str:
    """C4's explanation, written from the measured numbers of a workers_comparison table (1 worker first,
    then the best count)."""
    (name_a, a), (name_b, b) = list(table.iterrows())[:2]
    share_a, share_b = a["load_s"] / a["total_s"], b["load_s"] / b["total_s"]
    lines = [f"With **{name_a}**, the training loop waited **{a['load_s']:.3f} s** per epoch for data, "
             f"{share_a:.0%} of the {a['total_s']:.3f} s epoch; compute took {a['train_s']:.3f} s.",
             f"With **{name_b}**, the wait was **{b['load_s']:.3f} s** ({share_b:.0%} of {b['total_s']:.3f} s); "
             f"compute took {b['train_s']:.3f} s."]
    wa, wb, cores = int(a["workers"]), int(b["workers"]), int(b.get("host_cpus", 0) or 0)
    change = (a["load_s"] - b["load_s"]) / a["load_s"] if a["load_s"] else 0.0
    if wa == wb:
        lines.append(f"C3's best count is {wb} worker(s), the same as the baseline: nothing changes but noise.")
    elif abs(change) <= 0.05:
        lines.append(f"The wait for data barely changed ({-change:+.0%}): loading is not the bottleneck here.")
    elif wb > wa:
        verb = "cut" if change > 0 else "lengthened"
        lines.append(f"{_workers(wb)} {verb} the wait for data by {abs(change):.0%}: " + (
            "while the main process computes a batch, the workers decode, crop, flip and normalize the next "
            "ones in parallel, so `next()` finds a batch ready instead of preparing it on the spot."
            if change > 0 else
            f"with {cores} CPU cores, the extra processes compete with the training step for the cores."))
    elif change > 0:
        lines.append(f"Fewer loader processes ({_workers(wb)}) cut the wait for data by {change:.0%}: with "
                     f"only {cores} CPU cores, a worker process competes with the training step for the cores, "
                     "and handing each batch over between processes (pickling, shared memory) costs more than "
                     "the preparation it takes off the main process.")
    else:
        lines.append(f"{_workers(wb)} waited {-change:.0%} longer for data than {_workers(wa)}, yet C3 found "
                     f"{_workers(wb)} best: the two measurements disagree, a sign of noise at this run length.")
    if wa != wb:
        many, few = (a, b) if wa > wb else (b, a)
        slowdown = many["train_s"] / few["train_s"] - 1 if few["train_s"] else 0.0
        if slowdown > 0.05:
            lines.append(f"Compute itself took {slowdown:.0%} longer with {_workers(max(wa, wb))} than with "
                         f"{_workers(min(wa, wb))}: loader workers share the CPU cores with the training step.")
    bound = "data loading" if share_b > 0.5 else "computation"
    lines.append(f"At the best setting the epoch is bound by **{bound}** "
                 f"(loading {share_b:.0%}, compute {b['train_s'] / b['total_s']:.0%}).")
    return "\n\n".join(lines)


# --- C5 ----------------------------------------------------------------------------------------------

def devices_table(df: pd.DataFrame) -> pd.DataFrame:
    """Average epoch time per device, per-batch time and speed-up over the CPU; a device that was not
    there stays in the table as 'not available'."""
    rows = []
    ok = summarize(df, "device_type") if (df["status"] == "ok").any() else pd.DataFrame()
    for device, group in df.groupby("device_type", sort=False):
        if device in ok.index:
            s = ok.loc[device]
            rows.append({"device": device, "device_name": group["device_name"].iloc[0], "available": "yes",
                         "avg epoch s": s["total_s"], "batches/epoch": s["batches/epoch"],
                         "s/batch": s["total_s"] / s["batches/epoch"], "images/s": s["images/s"]})
        elif (group["status"] == "unavailable").all():
            rows.append({"device": device, "device_name": "not available", "available": "no"})
        else:
            rows.append({"device": device, "device_name": group["device_name"].iloc[0],
                         "available": "yes (run diverged)"})
    table = pd.DataFrame(rows).set_index("device")
    if "cpu" in table.index and table.loc["cpu", "available"] == "yes":
        table["speed-up vs CPU (per batch)"] = table.loc["cpu", "s/batch"] / table["s/batch"]
    return table


# --- C6/C7 ------------------------------------------------------------------------------------------

def compare_table(df: pd.DataFrame, by: str = "tag") -> pd.DataFrame:
    table = summarize(df, by)[["train_s", "total_s", "loss", "top1", "epochs"]]
    table = table.rename(columns={"train_s": "train s/epoch", "total_s": "total s/epoch",
                                  "loss": "final loss", "top1": "final top1"})
    diverged = df[df["status"] == "diverged"][by].unique()
    for name in diverged:
        table.loc[name, "final loss"] = float("nan")
    table["status"] = ["diverged" if name in diverged else "ok" for name in table.index]
    return table


def plot_curves(df: pd.DataFrame, hue: str = "tag", title: str = ""):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ok = df[df["status"] != "unavailable"]
    sns.lineplot(ok, x="epoch", y="train_s", hue=hue, marker="o", ax=axes[0])
    sns.lineplot(ok, x="epoch", y="loss", hue=hue, marker="o", ax=axes[1], legend=False)
    sns.lineplot(ok, x="epoch", y="top1", hue=hue, marker="o", ax=axes[2], legend=False)
    axes[0].set_ylabel("train seconds per epoch")
    axes[2].set_ylabel("top-1 (fraction)")
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
    return (f"ResNet-18{bn}, {record['optimizer']} lr {record['lr']}, batch {record['batch_size']}, "
            f"{record['workers']} workers, max_batches {record['max_batches']}, on {record['device_name']} "
            f"({record['device_type']}), {record['dataset_kind']} data, torch {record['torch_version']}, "
            f"commit {record['git_commit']}")


def explain_comparison(table: pd.DataFrame, what: str) -> str:
    """Which setting was fastest and which learned most, from a compare_table."""
    ok = table[table["status"] == "ok"]
    lines = []
    if len(ok):
        fastest, slowest = ok["train s/epoch"].idxmin(), ok["train s/epoch"].idxmax()
        lines.append(f"Fastest {what}: **{fastest}** ({ok.loc[fastest, 'train s/epoch']:.3f} s of training per "
                     f"epoch; slowest: {slowest}, {ok.loc[slowest, 'train s/epoch']:.3f} s).")
        best = ok["final loss"].idxmin()
        lines.append(f"Learned most: **{best}** (final loss {ok.loc[best, 'final loss']:.3f}, "
                     f"top-1 {ok.loc[best, 'final top1']:.1%}, after {int(ok.loc[best, 'epochs'])} epoch(s)).")
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
            "host CPUs": values("host_cpus"), "records": f"{len(measured)} epoch records"}
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

def acceleration_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per setting: the first epoch (pays for compilation and autotuning), the steady state (the later
    epochs; empty when only one ran): training time and whole epoch, the speed-up of the training step
    over eager fp32 (train time, as the data loading is the same for all), and the final loss, to show
    nothing broke."""
    ok = df[df["status"] == "ok"].sort_values("epoch", kind="stable")
    rows = []
    for tag, group in ok.groupby("tag", sort=False):
        later = group[~group["warmup"].astype(bool)]
        rows.append({"tag": tag, "first epoch s": group["total_s"].iloc[0],
                     "steady train s": later["train_s"].mean() if len(later) else float("nan"),
                     "steady epoch s": later["total_s"].mean() if len(later) else float("nan"),
                     "final loss": group["loss"].iloc[-1], "epochs": len(group)})
    table = pd.DataFrame(rows).set_index("tag")
    baseline = table.loc["eager fp32", "steady train s"] if "eager fp32" in table.index else float("nan")
    table.insert(3, "speed-up vs eager", baseline / table["steady train s"])
    return table


def plot_acceleration(table: pd.DataFrame, title: str = "Epoch time by setting"):
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.6))
    names = list(table.index[::-1])
    ax.barh(names, table["steady epoch s"][::-1].fillna(0), color="#c6d4e8", label="steady-state epoch")
    ax.barh(names, table["steady train s"][::-1].fillna(0), color="#4c72b0", label="of which training")
    ax.scatter(table["first epoch s"][::-1], names, color="#e4572e", zorder=3, label="first epoch")
    for y, (name, row) in enumerate(table[::-1].iterrows()):
        if pd.notna(row["speed-up vs eager"]):
            ax.annotate(f"×{row['speed-up vs eager']:.2f}", (row["steady epoch s"], y), xytext=(4, -4),
                        textcoords="offset points")
    ax.set_xlim(0, 1.15 * max(table["first epoch s"].max(), table["steady epoch s"].max(skipna=True) or 0))
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
