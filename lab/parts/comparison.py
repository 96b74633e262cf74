"""What the parts share beside lab.parts.base: C6's and C7's comparison of settings for speed and for learning
(a table with ranges, curves per epoch, a faster setting named only outside the noise, learning judged on test
top-1 with 95 % intervals, never on training loss), runs reused from an earlier block, and the record of a device
or process count this node does not have."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..core import fields, files, stats
from ..engine import records as rec
from . import display, plots
from .base import Runs, Work
from .tables import style, summarize

fields.define({"train_s_per_epoch": fields.Field("train s/epoch", "s"),
               "train_s_per_epoch range": fields.Field("train range", "s"),
               "total_s_per_epoch": fields.Field("total s/epoch", "s"),
               "total_s_per_epoch range": fields.Field("total range", "s")})
COLUMNS = {"train_s": "train_s_per_epoch", "train_s range": "train_s_per_epoch range", "total_s": "total_s_per_epoch",
           "total_s range": "total_s_per_epoch range", "loss": "final loss", "top1": "final top1",
           "test top1": "test top1", "test images": "test images", "epochs": "epochs",
           "train_s samples": "train_s samples", "total_s samples": "total_s samples"}  # summarize's: compare_table's


def reused(report, block: list, wanted: dict, extra: Work | None = None) -> Runs:
    """The block, taken from an earlier part's block where that has every `wanted` run (Report.reusable)."""
    source = report.reusable(wanted) if wanted else None
    return Runs(block=block, reused_from=source, wanted=wanted if source else {}, extra=extra or Work())


def unavailable(config, out, device: str, metrics: dict, prov: dict | None = None, **extra) -> dict:
    """A record with status 'unavailable' (a device or process count this node does not have), appended to `out`."""
    record = rec.make_record(config, {"status": "unavailable", **metrics},
                             {**rec.provenance(config, torch.device(device)), **(prov or {})}, rec.new_run_id(config))
    record.update(extra)
    files.append_jsonl(Path(out) / "records.jsonl", [record])
    return record


def compare_table(df: pd.DataFrame, by: str = "tag") -> pd.DataFrame:
    table = summarize(df, by)[list(COLUMNS)].rename(columns=COLUMNS)
    diverged = df[df["status"] == "diverged"][by].unique()
    for name in diverged:
        if name not in table.index:
            table.loc[name] = pd.Series(dtype=object)
        table.loc[name, "final loss"] = float("nan")
    table["status"] = ["diverged" if name in diverged else "ok" for name in table.index]
    return table


@plots.themed
def plot_curves(df: pd.DataFrame, hue: str = "tag", title: str = ""):
    """Training time per epoch, training loss, and test top-1 where evaluated (else training top-1)."""
    sns = plots.seaborn()
    fig, axes = plots.pyplot().subplots(1, 3, figsize=(13, 3.6))
    ok = df[df["status"] != "unavailable"]
    accuracy = "test_top1" if "test_top1" in ok and ok["test_top1"].notna().any() else "top1"
    for ax, y in zip(axes, ("train_s", "loss", accuracy)):
        sns.lineplot(ok, x="epoch", y=y, hue=hue, marker="o", ax=ax, legend=ax is axes[0])
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("train seconds per epoch")
    axes[1].set_ylabel("training loss")
    axes[2].set_ylabel(("test" if accuracy == "test_top1" else "training") + " top-1 (fraction)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning(ok: pd.DataFrame, what: str) -> str | None:
    """Test top-1 with 95 % intervals (lab.core.stats.accuracy_sentence); None where the runs were not evaluated."""
    n = ok["test images"].min()
    evaluated = ok["test top1"].notna().any() and not pd.isna(n)
    return stats.accuracy_sentence(ok["test top1"].to_dict(), int(n), what) if evaluated else None


def explain_comparison(table: pd.DataFrame, what: str, claims: dict) -> stats.Said:
    """Speed: the extreme pair by training time (`claims`: the part's verdicts), named only outside the noise.
    Learning: test top-1 where the runs were evaluated; training losses say nothing here."""
    ok = table[table["status"] == "ok"]
    lines, said = [], []
    if len(ok):
        measured = int((ok["train_s samples"].map(len) > 0).sum())
        speed = stats.rank(next(iter(claims.values()), None), measured, f"training seconds per epoch, {what}s")
        said = speed.claims
        lines += ["Speed: " + speed, "Learning: " + (learning(ok, what) or
                                                     "not compared (the runs were not evaluated on the test set).")]
    diverged = list(table.index[table["status"] == "diverged"])
    if diverged:
        lines.append(f"Diverged (loss became NaN/inf, run stopped): {', '.join(map(str, diverged))}.")
    return stats.Said("\n\n".join(lines) or "No run finished.", said)


def verdicts(df: pd.DataFrame, results_dir=None) -> dict:
    """The fastest against the slowest by training time (lab.core.stats.extremes: every pair of the finished
    settings a claim of one family); none where fewer than two finished."""
    c = stats.extremes(compare_table(df).query("status == 'ok'")["train_s samples"].to_dict())
    return {} if c is None else {(c.a, c.b, "train_s"): c}


def section(df: pd.DataFrame, what: str, title: str, name: str, claims: dict, figures_dir=None) -> None:
    """C6 and C7: table with ranges, curves, and the noise-aware sentences (`claims`: the part's verdicts)."""
    print(display.describe_run(df.iloc[0]))
    table = compare_table(df)
    display.show(style(table.drop(columns=["test images"])))
    display.figure(plot_curves(df, title=title), name, figures_dir)
    display.show(display.markdown(explain_comparison(table, what, claims)))


def finding(df: pd.DataFrame, question: str, label: str, part: str, claims: dict) -> display.Finding:
    """The row of C6 or C7: the extremes by training time (`claims`: the part's verdicts), and test top-1."""
    c = next(iter(claims.values()), None)
    if c is None:
        return display.Finding(question, label, "fewer than two settings finished", "—", part)
    ok, line = compare_table(df).query("status == 'ok'"), stats.verdict_line(c)
    if c.verdict == stats.NO_DIFFERENCE:  # its " (could have seen 34 %)" kept
        line = f"{stats.NO_DIFFERENCE} across {len(ok)} settings" + line.split(stats.NO_DIFFERENCE, 1)[1]
    learned = learning(ok, "setting") or "not evaluated on the test set"
    return display.Finding(question, label, f"training time: {line}", f"{stats.evidence_line(c)}; learning: {learned}",
                           part)
