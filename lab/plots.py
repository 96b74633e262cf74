"""Figures (matplotlib, seaborn) of lab.tables' tables and of the per-batch records. The seaborn theme is
applied when a figure is drawn, not when the module is imported."""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

PHASE_COLORS = {"load_s": "#e4572e", "train_s": "#4c72b0", "other_s": "#aaaaaa"}
nan = float("nan")


def _themed(plot):
    @functools.wraps(plot)
    def draw(*args, **kwargs):
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
            return plot(*args, **kwargs)
    return draw


@_themed
def plot_epoch_phases(df: pd.DataFrame, title: str = "Where each epoch's time goes"):
    """Stacked bars of load / train / other per epoch."""
    labels = df["epoch"].map(lambda e: str(int(e))) + df["warmup"].map({True: " (warm-up)", False: ""})
    table = df.set_index(labels)
    return phase_bars(table, title, xlabel="epoch")


@_themed
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


@_themed
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


@_themed
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


@_themed
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


@_themed
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
