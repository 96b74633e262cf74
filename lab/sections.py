"""One render function per section of the report: a part's own notebook and the summary call the same one
(`render`), so a section is drawn once. `show` is the summary's: a part's heading from lab.parts, then its
records rendered, or a line saying it did not run."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .narrative import (bound_sentence, describe_run, explain_acceleration, explain_comparison, explain_devices,
                        explain_scaling, explain_workers, profiler_html)
from .parts import BY_ID, read_sweep
from .plots import phase_bars, plot_acceleration, plot_batches, plot_curves, plot_epoch_phases, plot_workers, save_figure
from .tables import (TIMES, acceleration_table, answers_table, compare_table, devices_table, epoch_table, load,
                     scaling_table, style, workers_comparison, workers_table)

def _show(*objs) -> None:
    from IPython.display import display

    display(*objs)


def _figure(fig, name: str, figures_dir=None) -> None:
    if figures_dir is not None:
        save_figure(fig, name, figures_dir)
    plt.show()


def render_c2(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    """C1/C2: the baseline run's per-epoch table and phases, and its per mini-batch loss and top-1."""
    print(describe_run(df.iloc[0]))
    _show(style(epoch_table(df)))
    _figure(plot_epoch_phases(df), "C2_epoch_phases", figures_dir)
    if results_dir is not None:
        batches = load(results_dir, kind="batch")
        _figure(plot_batches(batches[batches["experiment"] == df["experiment"].iloc[0]]), "C1_batches", figures_dir)


def render_c3(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    from IPython.display import Markdown

    sweep = (read_sweep(results_dir) if results_dir is not None else None) or {}
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


def render_c5(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
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


def render_c6(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    """C6: the optimizers (SGD without batch norm, run in C6's block for C7, is C7's to show)."""
    render_comparison(df[df["batch_norm"] != False].reset_index(drop=True), "optimizer", "Optimizers",  # noqa: E712
                      "C6_optimizers", figures_dir)


def render_c7(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
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


def render_c9(df: pd.DataFrame, results_dir=None, figures_dir=None) -> None:
    from IPython.display import Markdown

    ran = df[df["status"] == "ok"]
    if len(ran):
        print(describe_run(ran.iloc[0]))
    _show(style(scaling_table(df)), Markdown(explain_scaling(df)))


def render_q(results_dir, figures_dir=None) -> None:
    """Q1-Q4, from the answers Q_model computed on the live model."""
    _show(answers_table(results_dir))


RENDER = {"C2_timing": render_c2, "C3_workers": render_c3, "C4_workers_profile": render_c4, "C5_devices": render_c5,
          "C6_optimizers": render_c6, "C7_batchnorm": render_c7, "C8_acceleration": render_c8, "C9_scaling": render_c9}


def reuse_note(df: pd.DataFrame) -> str | None:
    """Which runs a part took from an earlier part's interleaved block (lab.experiments.reuse), or None."""
    if "reused_from" not in df or not df["reused_from"].notna().any():
        return None
    taken = ", ".join(dict.fromkeys(df["reused_from"].dropna()))
    return (f"These runs were measured once, in an earlier part's interleaved block, and are reused here (same "
            f"settings; this part compares them only with each other): {taken}.")


def render(part: str, records, results_dir=None, figures_dir=None) -> None:
    """A part's section from its records (a list of records or a DataFrame)."""
    from IPython.display import Markdown

    df = pd.DataFrame(records).reset_index(drop=True)
    note = reuse_note(df)
    if note:
        _show(Markdown(f"*{note}*"))
    RENDER[part](df, results_dir, figures_dir)


def show(part: str, results_dir, figures_dir=None) -> None:
    """The summary's section of one part: its heading, then its records rendered, or a line saying that the
    part did not run in this report."""
    from IPython.display import Markdown

    _show(Markdown(f"## {BY_ID[part].title}"))
    if part == "Q_model":
        return render_q(results_dir, figures_dir)
    records = load(results_dir, experiment=part)
    if not len(records):
        print(f"{part} did not run in this report.")
        return None
    render(part, records, results_dir, figures_dir)
