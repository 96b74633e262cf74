"""Noise-aware conclusions: the steady-state rule, spreads, and the one comparison rule that every
generated sentence about speed goes through.

A setting is called faster or slower than another only when their measured ranges (min-max over
steady epochs or repeats) do not overlap; otherwise the answer is exactly "no measurable difference".
With fewer than two measurements per setting no winner is named at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

NO_DIFFERENCE = "no measurable difference"
TOO_FEW = "too few measurements to compare (fewer than 2 steady epochs or repeats each)"
MIN_SAMPLES = 2


def steady(df: pd.DataFrame, strict: bool = False) -> pd.DataFrame:
    """The epochs a steady-state figure is made of: finished ('ok') epochs, leaving out each run's warm-up
    epoch where that run has others. `strict`: leave it out always, so a run of one epoch has no steady
    epoch (C8, where the first epoch pays for compilation). The one place this rule lives."""
    if not len(df):
        return df
    ok = df[df["status"] == "ok"]
    warm = ok["warmup"].fillna(False).astype(bool)
    if strict:
        return ok[~warm]
    runs_with_later = set(ok.loc[~warm, "run_id"])
    return ok[~warm | ~ok["run_id"].isin(runs_with_later)]


def samples(values) -> list[float]:
    """The finite numbers among `values` (None, NaN and inf are not measurements)."""
    out = []
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def mean(values) -> float:
    """The mean of the finite numbers among `values`, NaN when there are none."""
    s = samples(values)
    return sum(s) / len(s) if s else math.nan


def range_note(values, unit: str = "s") -> str:
    """' (range 1.200–1.260 s over 3 epochs)' where there are at least two values, else ''."""
    s = samples(values)
    return f" (range {min(s):.3f}–{max(s):.3f} {unit} over {len(s)} epochs)" if len(s) >= MIN_SAMPLES else ""


def spread(values) -> str:
    """'1.234 (1.200–1.260)': the mean and the min–max range, or the one value, or '—'."""
    s = samples(values)
    if not s:
        return "—"
    return f"{mean(s):.3f}" if len(s) == 1 else f"{mean(s):.3f} ({min(s):.3f}–{max(s):.3f})"


@dataclass
class Comparison:
    """How `a` compares with `b` on a lower-is-better quantity (seconds)."""

    a: str
    b: str
    verdict: str            # "faster", "slower", NO_DIFFERENCE or TOO_FEW
    low: float = math.nan   # the speed-up range of the faster one over the other, in % (b/a - 1)
    high: float = math.nan

    @property
    def decided(self) -> bool:
        return self.verdict in ("faster", "slower")

    def sentence(self, what: str = "") -> str:
        what = f" ({what})" if what else ""
        if self.verdict == TOO_FEW:
            return f"{self.a} vs {self.b}{what}: {TOO_FEW}."
        if self.verdict == NO_DIFFERENCE:
            return f"{self.a} vs {self.b}{what}: {NO_DIFFERENCE}."
        return f"{self.a} is {self.verdict} than {self.b}{what} by {_percent_range(self.low, self.high)}."


def _percent_range(low: float, high: float) -> str:
    return f"{low:.0f} %" if round(low) == round(high) else f"{low:.0f}–{high:.0f} %"


def compare(a_values, b_values, a: str = "A", b: str = "B") -> Comparison:
    """Compare two samples of a lower-is-better measurement (seconds).

    `a` is faster when max(a) < min(b); the speed-up range is then min(b)/max(a) - 1 to max(b)/min(a) - 1
    (what the slower one costs beyond the faster one, from the most to the least favourable pairing).
    Overlapping ranges give NO_DIFFERENCE; fewer than MIN_SAMPLES finite values on either side, TOO_FEW."""
    sa, sb = samples(a_values), samples(b_values)
    if len(sa) < MIN_SAMPLES or len(sb) < MIN_SAMPLES:
        return Comparison(a, b, TOO_FEW)
    if max(sa) < min(sb):
        return Comparison(a, b, "faster", 100 * (min(sb) / max(sa) - 1), 100 * (max(sb) / min(sa) - 1))
    if max(sb) < min(sa):
        return Comparison(a, b, "slower", 100 * (min(sa) / max(sb) - 1), 100 * (max(sa) / min(sb) - 1))
    return Comparison(a, b, NO_DIFFERENCE)


def speedup_range(baseline_values, values) -> tuple[float, float, float]:
    """(ratio of means, lowest, highest ratio) of baseline time / this time: how many times faster."""
    sb, sv = samples(baseline_values), samples(values)
    if not sb or not sv:
        return math.nan, math.nan, math.nan
    return mean(sb) / mean(sv), min(sb) / max(sv), max(sb) / min(sv)


def rank(groups: dict, what: str = "") -> str:
    """One sentence for several settings: the fastest and slowest by mean, named only when their ranges
    do not overlap."""
    means = {k: mean(v) for k, v in groups.items() if samples(v)}
    if len(means) < 2:
        return f"Only one setting was measured{f' ({what})' if what else ''}: nothing to compare."
    fastest, slowest = min(means, key=means.get), max(means, key=means.get)
    c = compare(groups[fastest], groups[slowest], str(fastest), str(slowest))
    if c.verdict == TOO_FEW:
        return c.sentence(what)
    if not c.decided:
        return (f"Across {len(means)} settings{f' ({what})' if what else ''}: {NO_DIFFERENCE} "
                f"(even the fastest and slowest by mean, {fastest} and {slowest}, overlap).")
    return c.sentence(what)


# --- C3: the worker sweep's rule ------------------------------------------------------------------

def worker_sweep_rule(waits: dict) -> dict:
    """The lab's rule, made noise-aware. `waits` maps worker counts (in sweep order) to their per-epoch
    data-loading waits (per-batch waits only: worker start-up is measured apart).

    - stop: the first count whose waits are not measurably below the previous count's (ranges overlap, or
      higher); counts after it were measured but the lab's procedure would have stopped there;
    - best: the smallest count within noise of the lowest mean wait (ranges overlap with it), among the
      counts up to the stop."""
    counts = [k for k in waits if samples(waits[k])]
    if not counts:
        return {"best": None, "stop": None, "reason": "no count has a finite load time"}
    stop, reason = counts[-1], f"reached the end of the list {counts}"
    for prev, k in zip(counts, counts[1:]):
        c = compare(waits[k], waits[prev], f"{k} workers", f"{prev} workers")
        if c.verdict != "faster":
            stop = k
            reason = (f"too few steady epochs to tell whether the wait decreased at {k} workers, so the sweep "
                      f"stops there" if c.verdict == TOO_FEW else
                      f"load wait stopped decreasing at {k} workers ({spread(waits[k])} s vs "
                      f"{spread(waits[prev])} s at {prev}: {c.verdict})")
            break
    considered = counts[:counts.index(stop) + 1]
    means = {k: mean(waits[k]) for k in considered}
    lowest = min(means, key=means.get)
    within = [k for k in considered
              if k == lowest or compare(waits[lowest], waits[k]).verdict in (NO_DIFFERENCE, TOO_FEW)]
    best = min(within)
    note = "" if best == lowest else f" (lowest mean at {lowest}; {best} is within noise of it)"
    return {"best": best, "stop": stop, "reason": reason + note, "lowest": lowest}


# --- accuracy ---------------------------------------------------------------------------------------

def wilson(correct_fraction: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of an accuracy measured on n images."""
    if not n or not math.isfinite(correct_fraction):
        return math.nan, math.nan
    p = correct_fraction
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def accuracy_sentence(accuracies: dict, n: int, what: str = "setting") -> str:
    """Which setting reached the highest *test* top-1, named only when its 95 % interval clears every
    other's; else NO_DIFFERENCE. `accuracies` maps names to final test top-1 (fractions)."""
    acc = {k: v for k, v in accuracies.items() if v is not None and math.isfinite(v)}
    if len(acc) < 2 or not n:
        return ""
    best = max(acc, key=acc.get)
    lo_best = wilson(acc[best], n)[0]
    others = [k for k in acc if k != best]
    if all(wilson(acc[k], n)[1] < lo_best for k in others):
        return (f"Highest test top-1: **{best}** ({acc[best]:.1%}, 95 % interval "
                f"{lo_best:.1%}–{wilson(acc[best], n)[1]:.1%} on {n:,} test images), clear of every other {what}.")
    tied = [k for k in others if wilson(acc[k], n)[1] >= lo_best]
    return (f"Test top-1: {NO_DIFFERENCE} between {best} ({acc[best]:.1%}) and {', '.join(map(str, tied))} "
            f"(95 % intervals on {n:,} test images overlap).")
