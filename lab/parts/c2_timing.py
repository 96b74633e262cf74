"""C1/C2: the baseline run, timed per epoch. SGD (lr 0.1, momentum 0.9, weight decay 5e-4), batch 128, the
lab's transforms and DataLoader: per epoch, the wait on the loader, the training step and the whole epoch
(lab.engine.loop says exactly what each holds), and per mini-batch loss and top-1 (C1)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import results, stats
from ..core.config import Config
from ..engine.resolve import compute_precision
from . import display, plots
from .base import COMMON, Part, Runs, single_run
from .tables import epoch_table, load, peak_share, report_peaks, step_flops, style

ID = "C2_timing"
QUESTIONS = (("C2.1", "Data-loading time per epoch"), ("C2.2", "Training time per epoch"),
             ("C2.3", "Total time per epoch"))


MODEL_FILE = "model.pt"  # the trained weights (a state_dict), which C10 deploys


def runs(config: Config, params: dict, report) -> Runs:
    return Runs(block=[config])


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """The baseline run, its trained weights saved beside its records and named by a row (metric "model_file")."""
    records = single_run(config, out, save_model=Path(out) / MODEL_FILE)
    if (Path(out) / MODEL_FILE).exists():
        results.Rows(report.results_dir, ID).add("model_file", text=f"{ID}/{MODEL_FILE}")
    return records


@plots.themed
def plot_batches(batches: pd.DataFrame):
    sns = plots.seaborn()
    batches = batches.assign(step=batches.groupby("run_id").cumcount() + 1)
    fig, axes = plots.pyplot().subplots(1, 2, figsize=(10, 3.5))
    sns.lineplot(batches, x="step", y="loss", ax=axes[0], marker="o")
    sns.lineplot(batches, x="step", y="top1", ax=axes[1], marker="o")
    axes[1].set_ylabel("top-1 (fraction)")
    fig.suptitle("Per mini-batch loss and top-1")
    fig.tight_layout()
    return fig


def section(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    """The baseline run's per-epoch table and phases, and its per mini-batch loss and top-1."""
    print(display.describe_run(df.iloc[0]))
    display.show(style(epoch_table(df)))
    first, calm = df.iloc[0], stats.steady(df)
    peaks = report_peaks(results_dir, first["device_type"])
    if peaks and len(calm) and calm["train_s"].notna().any():
        step = (calm["train_s"] / (calm["images"] / calm["batch_size"])).mean()
        work, precision = step_flops(first["batch_size"]), compute_precision(first["device_type"], first.get("amp"))
        display.show(display.markdown(
            f"Its steady training step computes {work / 1e9:.0f} GFLOP (batch {int(first['batch_size'])}) in "
            f"{step:.3g} s: {peak_share(work, step, precision, peaks)}"
            " measured at the report's start (C11 sets every step against it)."))
    labels = df["epoch"].map(lambda e: str(int(e))) + df["warmup"].map({True: " (warm-up)", False: ""})
    display.figure(plots.phase_bars(df.set_index(labels), "Where each epoch's time goes", xlabel="epoch"),
                   "C2_epoch_phases", figures_dir)
    if results_dir is not None:
        batches = load(results_dir, kind="batch")
        display.figure(plot_batches(batches[batches["experiment"] == df["experiment"].iloc[0]]), "C1_batches",
                       figures_dir)


def findings(df: pd.DataFrame, results_dir=None) -> list[display.Finding]:
    """C2.1-C2.3: each phase's steady-state seconds per epoch, its range, and its share of the epoch."""
    calm, first = stats.steady(df), df.sort_values("epoch").iloc[0]
    if not len(calm):
        status = ", ".join(sorted(set(df["status"].astype(str))))
        return display.not_answered(ID, QUESTIONS, f"not measured: no epoch of the run ended ok (status: {status})")
    if calm["load_s"].isna().all():
        return display.not_answered(ID, QUESTIONS, "not measured: epoch timers (one clock per epoch)")
    total = stats.mean(calm["total_s"])
    rows = []
    for (question, label), column in zip(QUESTIONS, ("load_s", "train_s", "total_s")):
        values = stats.samples(calm[column])
        share = "" if column == "total_s" else f", {stats.mean(values) / total:.0%} of the epoch"
        rows.append(display.Finding(
            question, label, f"{stats.sig(stats.mean(values))} s per epoch{share}",
            f"range {stats.sig(min(values))}–{stats.sig(max(values))} s over "
            f"{stats.plural(len(values), 'steady epoch')}; "
            f"the first epoch (warm-up) {stats.sig(first[column])} s; {stats.plural(int(first['workers']), 'worker')}, "
            f"batch {int(first['batch_size'])}", ID))
    return rows


PART = Part(ID, "C1/C2 — Per-epoch timing of the baseline run", QUESTIONS, (*COMMON, "workers"), runs, section,
            findings, measure=measure, provides=("model_file", "calibration"))
