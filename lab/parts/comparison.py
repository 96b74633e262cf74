"""What C6 and C7 share: settings compared for speed and for learning, trained interleaved by epoch. The
table holds training and whole-epoch seconds with their ranges, final loss, training and test top-1; the
curves show training time, loss and top-1 per epoch; the sentences name a faster setting only outside the
noise (lab.core.stats) and judge learning on test top-1 with 95 % intervals, never on training loss."""
from __future__ import annotations

import pandas as pd

from ..core import fields, stats
from . import display, plots
from .tables import style, summarize

fields.define({"train_s_per_epoch": fields.Field("train s/epoch", "s"),
               "train_s_per_epoch range": fields.Field("train range", "s"),
               "total_s_per_epoch": fields.Field("total s/epoch", "s"),
               "total_s_per_epoch range": fields.Field("total range", "s")})


def compare_table(df: pd.DataFrame, by: str = "tag") -> pd.DataFrame:
    s = summarize(df, by)
    table = pd.DataFrame({"train_s_per_epoch": s["train_s"], "train_s_per_epoch range": s["train_s range"],
                          "total_s_per_epoch": s["total_s"], "total_s_per_epoch range": s["total_s range"],
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


@plots.themed
def plot_curves(df: pd.DataFrame, hue: str = "tag", title: str = ""):
    """Training time per epoch, training loss, and test top-1 where evaluated (else training top-1)."""
    sns = plots.seaborn()
    fig, axes = plots.pyplot().subplots(1, 3, figsize=(13, 3.6))
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


def explain_comparison(table: pd.DataFrame, what: str, claims: dict) -> stats.Said:
    """Speed: the fastest and slowest training time, named only outside the noise (`claims`: the part's verdicts,
    the extreme pair's claim). Learning: test top-1 with 95 % intervals where the runs were evaluated; training
    losses say nothing here."""
    ok = table[table["status"] == "ok"]
    lines, said = [], []
    if len(ok):
        measured = int((ok["train_s samples"].map(len) > 0).sum())
        speed = stats.rank(next(iter(claims.values()), None), measured, f"training seconds per epoch, {what}s")
        lines.append("Speed: " + speed)
        said += speed.claims
        n = ok["test images"].min() if "test images" in ok else float("nan")
        if ok["test top1"].notna().any() and not pd.isna(n):
            lines.append("Learning: " + stats.accuracy_sentence(ok["test top1"].to_dict(), int(n), what))
        else:
            lines.append("Learning: not compared (the runs were not evaluated on the test set).")
    diverged = list(table.index[table["status"] == "diverged"])
    if diverged:
        lines.append(f"Diverged (loss became NaN/inf, run stopped): {', '.join(map(str, diverged))}.")
    return stats.Said("\n\n".join(lines) or "No run finished.", said)


def verdicts(df: pd.DataFrame, results_dir=None) -> dict:
    """The claim the sentences make: the fastest against the slowest by training time (lab.core.stats.extremes:
    every pair of the finished settings a claim of one family), or none where fewer than two finished."""
    ok = compare_table(df).query("status == 'ok'")
    c = stats.extremes(ok["train_s samples"].to_dict())
    return {} if c is None else {(c.a, c.b, "train_s"): c}


def section(df: pd.DataFrame, what: str, title: str, name: str, claims: dict, figures_dir=None) -> None:
    """C6 and C7: table with ranges, curves, and the noise-aware sentences (`claims`: the part's verdicts)."""
    print(display.describe_run(df.iloc[0]))
    table = compare_table(df)
    display.show(style(table.drop(columns=["test images"])))
    display.figure(plot_curves(df, title=title), name, figures_dir)
    display.show(display.markdown(explain_comparison(table, what, claims)))


def finding(df: pd.DataFrame, question: str, label: str, part: str, claims: dict) -> display.Finding:
    """The row of C6 or C7: the extremes by training time (`claims`: the part's verdicts), and test top-1 where
    evaluated."""
    ok = compare_table(df).query("status == 'ok'")
    c = next(iter(claims.values()), None)
    if c is None:
        return display.Finding(question, label, "fewer than two settings finished", "—", part)
    answer = f"training time: {stats.verdict_line(c)}"
    if c.verdict == stats.NO_DIFFERENCE:
        seen = stats.verdict_line(c).split(stats.NO_DIFFERENCE, 1)[1]  # " (could have seen 34 %)"
        answer = f"training time: {stats.NO_DIFFERENCE} across {len(ok)} settings{seen}"
    n = ok["test images"].min() if "test images" in ok else float("nan")
    learning = (stats.accuracy_sentence(ok["test top1"].to_dict(), int(n), "setting") if ok["test top1"].notna().any()
                and not pd.isna(n) else "not evaluated on the test set")
    return display.Finding(question, label, answer, f"{stats.evidence_line(c)}; learning: {learning}", part)
