"""Conclusions that survive an A/A test: the steady-state rule, spreads, and the one comparison rule that every
generated sentence about speed goes through.

A sample is one steady epoch of one run (lab.core.stats.steady). The speed claims of one section form a
family (`family`): they are tested together, by permutation. Under the null hypothesis that the settings do
not differ, their epochs are exchangeable, so every relabeling of the epochs among the settings (group sizes
kept) is as likely as the observed one. Each claim's statistic is the Welch t of the log-seconds; a claim's
p-value is the share of relabelings whose *largest* statistic over the whole family reaches the claim's own
(max-T, step-down), so the chance that any sentence of the section names a winner among identical settings
is at most ALPHA, whatever the sample counts and the number of settings. The relabelings
are enumerated where there are at most EXACT_LIMIT of them, else DRAWS seeded random ones are drawn, and
p = (1 + b) / (DRAWS + 1).

A claim names a faster or slower setting only where its p <= ALPHA. Where even the most separated samples
of this shape could not reach ALPHA, the verdict is "too few measurements", with the count that could;
otherwise it is exactly "no measurable difference", with the smallest difference the rule would have named at
the run's own noise (`seeable`). A speed-up is a factor, "×2.72", the ratio of the means (baseline over
setting), with the range of the ratios of single epochs beside it: a spread of the measurements, not a
confidence interval.
"""
from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA = 0.05
NO_DIFFERENCE = "no measurable difference"
TOO_FEW = "too few measurements"
EXACT_LIMIT = 20_000     # relabelings enumerated exactly up to this many
DRAWS = 9_999            # else this many random relabelings, from a fixed seed (the same data, the same p)
SEED = 20_261_130
MOST_NEEDED = 30         # "n needed" is looked for up to this many samples per setting
FLOOR = 1e-12            # added to a statistic's variance: tied samples give a large, finite statistic


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


SMALLEST = 4  # decimals: a number below 0.0001 (a start-up of microseconds) reads '<0.0001'


def sig(x, digits: int = 3) -> str:
    """`x` to `digits` significant figures, without an exponent and with thousands separated: 7.41, 0.146,
    46.7, 3,319 (a number with `digits` or more integer digits as an integer), at most SMALLEST decimals; '—'
    where it is missing or not finite. The one rule for measured numbers in tables and sentences."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    if abs(x) < 10 ** -SMALLEST:
        return f"<{10 ** -SMALLEST:.{SMALLEST}f}" if x > 0 else f">-{10 ** -SMALLEST:.{SMALLEST}f}"
    for _ in range(2):  # rounding may add a digit (9.996 → 10.0): place the decimals again after it
        decimals = min(SMALLEST, max(0, digits - 1 - math.floor(math.log10(abs(x)))))
        x = round(x, decimals)
    return f"{x:,.{decimals}f}"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 worker', '2 workers', '0 workers'."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def range_note(values, unit: str = "s") -> str:
    """' (range 1.20–1.26 s over 3 epochs)' where there are at least two values, else ''."""
    s = samples(values)
    return f" (range {sig(min(s))}–{sig(max(s))} {unit} over {len(s)} epochs)" if len(s) >= 2 else ""


def spread(values) -> str:
    """'1.23 (1.20–1.26)': the mean and the min–max range, or the one value, or '—'."""
    s = samples(values)
    if not s:
        return "—"
    return sig(mean(s)) if len(s) == 1 else f"{sig(mean(s))} ({sig(min(s))}–{sig(max(s))})"


# --- the comparison rule ------------------------------------------------------------------------------------

@dataclass
class Comparison:
    """How `a` compares with `b` on a lower-is-better quantity (seconds), as one claim of its family."""

    a: str
    b: str
    verdict: str              # "faster", "slower", NO_DIFFERENCE or TOO_FEW
    p: float = math.nan       # the family-wise p-value (max-T)
    ratio: float = math.nan   # mean(b) / mean(a): above 1 where a is faster
    low: float = math.nan     # the smallest and largest ratio b_j / a_i over every pair of epochs
    high: float = math.nan
    n: int = 0                # the fewest samples of a setting in the family
    needed: int | None = None  # where TOO_FEW: samples per setting that could decide, at this family's shape
    sample: str = "epoch"     # what one sample is: a steady epoch (a section) or a step (the --fast probe)
    scope: str = "the section's claims together"  # what the p-value covers
    shape: tuple | None = None  # where undecided: (noise, group sizes, claims as group pairs, this claim's index)
    seen: tuple | None = None   # where undecided and read back from a verdicts table: seen()'s figures

    def figures(self) -> tuple | None:
        """Where undecided: (the run's noise, the smallest difference it could see, the samples per setting that
        would see TARGET or None), as stored (`seen`) or simulated from `shape` (seeable); else None."""
        if self.seen is not None:
            return self.seen
        if self.shape is None or self.shape[0] is None:
            return None
        return (self.shape[0], *seeable(self.shape))

    @property
    def decided(self) -> bool:
        return self.verdict in ("faster", "slower")

    def factor(self) -> str:
        """The speed-up as a factor: '×2.72'; slower: '×0.80, i.e. 25 % slower'."""
        return factor(self.ratio)

    def spread(self) -> str:
        """The single samples' ratios: 'single epochs ×2.14–×3.83'."""
        low, high = f"×{self.low:.2f}", f"×{self.high:.2f}"
        return f"single {self.sample}s {low}" if low == high else f"single {self.sample}s {low}–{high}"

    def seeable(self) -> str:
        """What an undecided claim could have seen: the smallest difference the rule would name with 80 %
        probability at this run's noise, and the samples per setting that would bring it to 10 % (seeable)."""
        return seeable_text(self.figures(), self.n, self.sample) if SAY_SEEABLE else ""

    def sentence(self, what: str = "") -> str:
        what = f" ({what})" if what else ""
        if self.verdict == TOO_FEW:
            return f"{self.a} vs {self.b}{what}: {too_few(self.n, self.needed, self.sample)}{self.seeable()}."
        if self.verdict == NO_DIFFERENCE:
            return f"{self.a} vs {self.b}{what}: {NO_DIFFERENCE}{self.seeable()}."
        return (f"{self.a} is {self.verdict} than {self.b}{what}: {self.factor()} ({self.spread()}; "
                f"p = {self.p:.3g} for {self.scope}).")


def factor(ratio: float) -> str:
    """How many times faster (the baseline's time over this one's): '×2.72'; below 1 '×0.80, i.e. 25 % slower'."""
    if pd.isna(ratio):
        return "—"
    return f"×{ratio:.2f}" if ratio >= 1 else f"×{ratio:.2f}, i.e. {100 * (1 / ratio - 1):.0f} % slower"


class Said(str):
    """Sentences and the claims they rest on: the reader gets the words, a test the rule's verdicts
    (`claims`), so that an A/A or power test reads what the rule decided, not a phrase."""

    claims: list

    def __new__(cls, text: str, claims=()):
        said = super().__new__(cls, text)
        said.claims = [c for c in claims if c is not None]
        return said

    def named(self) -> list[Comparison]:
        """The decided claims whose factor the text says: what the reader is told is faster or slower."""
        return [c for c in self.claims if c.decided and c.a in self and c.factor() in self]


SAME = 0.03  # a step's and an epoch's factors this close are one figure, said once (the epoch's)


def together(named: dict) -> str:
    """Several quantities of one comparison (the step, the whole epoch) in as few sentences as they differ: one
    sentence with the last quantity's figures where every claim has the same verdict (decided ones within SAME
    of each other: '… (step and whole epoch): ×2.72 …'), else a sentence for each."""
    claims = {label: c for label, c in named.items() if c is not None}
    if not claims:
        return ""
    cs = list(claims.values())
    ratios = [math.log(c.ratio) for c in cs if c.decided]
    alike = len(cs) > 1 and len({c.verdict for c in cs}) == 1 and (
        not ratios or (len(ratios) == len(cs) and max(ratios) - min(ratios) <= math.log1p(SAME)))
    if alike:  # one figure: the last quantity's (the whole epoch's: what a user gets)
        return cs[-1].sentence(" and ".join(claims))
    return " ".join(c.sentence(label) for label, c in claims.items())


def verdict_lines(named: dict) -> str:
    """Several claims' answers in one line ('wait: …; compute: …'), or the one 'too few' they share."""
    few = {too_few(c.n, c.needed, c.sample) for c in named.values() if c.verdict == TOO_FEW}
    if len(few) == 1 and all(c.verdict == TOO_FEW for c in named.values()):
        return few.pop()
    return "; ".join(f"{label}: {verdict_line(c)}" for label, c in named.items())


def verdict_line(c: Comparison) -> str:
    """The claim's answer in a few words: 'a faster than b: ×1.27', 'no measurable difference (could have
    seen 12 %)', 'too few …'."""
    if c.decided:
        return f"{c.a} {c.verdict} than {c.b}: {c.factor()}"
    seen = c.figures()
    could = f" (could have seen {_percent(seen[1])})" if seen and math.isfinite(seen[1]) else ""
    return (f"{c.a} vs {c.b}: " + (NO_DIFFERENCE + could if c.verdict == NO_DIFFERENCE else
                                   too_few(c.n, c.needed, c.sample)))


def evidence_line(c: Comparison) -> str:
    """What the claim rests on: its p (for its family), the samples, the spread of single samples' ratios."""
    noun = "steady epoch" if c.sample == "epoch" else c.sample
    text = f"{c.n} {noun}{'' if c.n == 1 else 's'} per setting"
    if not pd.isna(c.p):
        text += f"; p = {c.p:.3g} for {c.scope}"
    if c.decided:
        text += f"; {c.spread()}"
    return text


def too_few(n: int, needed: int | None, sample: str = "epoch") -> str:
    """'too few measurements: 2 steady epochs per setting, 4 needed'."""
    noun = "steady epoch" if sample == "epoch" else sample
    have = f"{n} {noun}{'' if n == 1 else 's'} per setting"
    return f"{TOO_FEW}: {have}, {needed if needed else f'more than {MOST_NEEDED}'} needed"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f} %" if fraction >= 0.095 else f"{100 * fraction:.1f} %"


# --- how large a difference a run could have seen ----------------------------------------------------------------

POWER = 0.8               # "could have seen": named in this share of runs
SEEN_TRIALS = 100         # simulated runs per difference tried
SEEN_DRAWS = 499          # relabelings per simulated run where there are more
TARGET = 0.10             # the difference the "epochs needed" count is for
MOST_SAMPLES = 1000       # "needed" beyond this is said as "more than"
SAY_SEEABLE = True        # tests of verdicts over thousands of trials switch the (simulated) figure off


def noise_of(groups: list[list[float]]) -> float | None:
    """The run's own noise: the pooled standard deviation of log-seconds within the groups (None where no group
    has two samples)."""
    logs = [np.log(np.asarray(g, dtype=float)) for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in logs)
    if not dof:
        return None
    return float(math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in logs) / dof))


def seeable(shape: tuple) -> tuple[float, int | None]:
    """(the smallest difference, as b/a - 1, that the rule names with POWER probability; the samples per setting
    that would bring it to TARGET, or None where it is there already) for `shape` = (noise, group sizes, claims
    as (group a, group b) pairs, the claim's index). Simulated through the rule itself: every group drawn with
    log-normal noise of the run's measured size, this claim's `a` faster by the difference tried, the claim's p
    the single-step max-T over the family's claims (what decides a family's first claim); common random numbers
    for every difference tried, bisected on it. The count for TARGET scales the figure by the 1/sqrt(n) law,
    from the fewest samples that can decide."""
    noise, sizes, claims, index = shape
    sizes, claims = tuple(sizes), tuple(claims)
    d = _seeable(round(noise, 3), sizes, claims, index)
    n = min(sizes)
    if not math.isfinite(d):
        fewest = max(n + 1, needed(len(sizes), [(a, b, 0) for a, b in claims], 1, n) or MOST_NEEDED)
        d_at = _seeable(round(noise, 3), tuple(fewest for _ in sizes), claims, index)
        return d, (MOST_SAMPLES + 1 if not math.isfinite(d_at)
                   else max(fewest, math.ceil(fewest * (d_at / TARGET) ** 2)))
    return d, (None if d <= TARGET else math.ceil(n * (d / TARGET) ** 2))


def seeable_text(figures: tuple | None, n: int, sample: str = "epoch") -> str:
    """'; at this run's noise (±3.1 % per steady epoch) it would have seen 12 % in 80 % of runs; 15 steady epochs
    per setting would see 10 %', or '' where the noise was not measured or the figure is off. `figures`: (noise,
    the smallest difference seen, the samples that would see TARGET) (Comparison.figures); n: samples per setting."""
    if not SAY_SEEABLE or figures is None:
        return ""
    noise, d, n10 = figures
    noun = "steady epoch" if sample == "epoch" else sample
    text = f"; at this run's noise (±{100 * noise:.1f} % per {noun})"
    if math.isfinite(d):
        text += f" it would have seen {_percent(d)} in {100 * POWER:.0f} % of runs"
    else:
        text += (f" no difference is named in {100 * POWER:.0f} % of runs with {n} {noun}{'' if n == 1 else 's'}"
                 " per setting")
    if n10 is None:
        return text
    more = f"more than {MOST_SAMPLES:,}" if n10 > MOST_SAMPLES else f"{n10:,}"
    return text + f"; {more} would see {100 * TARGET:.0f} %"


@functools.lru_cache(maxsize=2048)
def _seeable(noise: float, sizes: tuple, claims: tuple, index: int) -> float:
    total, bounds = sum(sizes), np.cumsum((0,) + sizes)
    if _labelings(list(sizes)) <= 2 * SEEN_DRAWS:
        order = np.array([np.concatenate(split) for split in _splits(total, list(sizes))], dtype=np.int64)
    else:
        rng = np.random.default_rng(SEED)
        order = np.vstack([np.arange(total)[None, :], rng.permuted(np.tile(np.arange(total), (SEEN_DRAWS, 1)), axis=1)])
    noise_draws = np.random.default_rng(SEED + 1).normal(0.0, max(noise, 1e-6), (SEEN_TRIALS, total))
    a, b = claims[index]

    def power(d: float) -> float:
        logs = noise_draws.copy()
        logs[:, bounds[a]:bounds[a + 1]] -= math.log1p(d)           # a faster than b by d
        relabeled = logs[:, order]                                    # (trials, relabelings, samples)
        moments = {}
        for g in {g for pair in claims for g in pair}:
            part = relabeled[:, :, bounds[g]:bounds[g + 1]]
            var = part.var(axis=2, ddof=1) if sizes[g] > 1 else np.zeros(part.shape[:2])
            moments[g] = (part.mean(axis=2), var / sizes[g])
        t = np.stack([np.abs(moments[x][0] - moments[y][0]) / np.sqrt(moments[x][1] + moments[y][1] + FLOOR)
                      for x, y in claims], axis=2)                    # (trials, relabelings, claims)
        observed, largest = t[:, 0, index], t.max(axis=2)
        p = (largest >= observed[:, None] * (1 - 1e-9) - 1e-12).sum(axis=1) / len(order)
        return float((p <= ALPHA).mean())

    low, high = 0.0, 0.02
    while power(high) < POWER:
        low, high = high, 2 * high + 0.02
        if high > 50:
            return math.inf
    for _ in range(9):
        middle = math.sqrt((1 + low) * (1 + high)) - 1
        low, high = (low, middle) if power(middle) >= POWER else (middle, high)
    return high


def _labelings(sizes: list[int]) -> int:
    """How many ways the pooled samples split into groups of these sizes."""
    total, count = sum(sizes), 1
    for size in sizes:
        count *= math.comb(total, size)
        total -= size
    return count


def _splits(n: int, sizes: list[int]):
    """Every split of range(n) into groups of `sizes` (the groups as index tuples, in order)."""
    if not sizes:
        yield ()
        return
    rest = list(range(n))
    for first in itertools.combinations(rest, sizes[0]):
        others = [i for i in rest if i not in first]
        for tail in _splits(len(others), sizes[1:]):
            yield (first,) + tuple(tuple(others[i] for i in group) for group in tail)


def _relabelings(sizes: list[int]) -> np.ndarray:
    """Relabelings of the pooled samples as rows of a permutation of range(N), the groups as consecutive
    slices of `sizes`: every one (the observed first) where they are few, else DRAWS seeded random ones after
    the observed."""
    return _relabelings_of(tuple(sizes), DRAWS)


@functools.lru_cache(maxsize=256)
def _relabelings_of(sizes: tuple, draws: int) -> np.ndarray:
    n = sum(sizes)
    if _labelings(list(sizes)) <= EXACT_LIMIT:
        order = np.array([np.concatenate(split) for split in _splits(n, list(sizes))], dtype=np.int64)
    else:
        rng = np.random.default_rng(SEED)
        order = np.vstack([np.arange(n)[None, :], rng.permuted(np.tile(np.arange(n), (draws, 1)), axis=1)])
    order.setflags(write=False)
    return order


def _statistics(values: np.ndarray, order: np.ndarray, sizes: list[int], claims: list[tuple[int, int, int]]):
    """Each claim's statistic under every relabeling (rows of `order`): the Welch t of the log-seconds,
    |mean log a - mean log b| / sqrt(var a / n a + var b / n b), studentized so that a claim between two
    tight, distant groups stands out however far apart the other groups lie. NaN values (a metric an epoch did
    not measure) are left out; a group with none gives a statistic of 0."""
    bounds = np.cumsum([0] + sizes)
    moments = {}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a group whose values are all NaN, or a single value
        logged = np.log(values)
        gaps = np.isnan(logged).any()
        for g in {g for a, b, _ in claims for g in (a, b)}:
            logs = logged[order[:, bounds[g]:bounds[g + 1]]]                  # (relabelings, size, metrics)
            if gaps:
                have = ~np.isnan(logs)
                count = np.maximum(have.sum(axis=1), 1)
                centred = np.where(have, logs, 0.0)
                average = centred.sum(axis=1) / count
                centred = np.where(have, logs - average[:, None, :], 0.0)
                spread = (centred ** 2).sum(axis=1) / np.maximum(count - 1, 1)
                moments[g] = (np.where(have.any(axis=1), average, np.nan), spread / count)
            else:
                size = logs.shape[1]
                spread = logs.var(axis=1, ddof=1) if size > 1 else np.zeros_like(logs[:, 0])
                moments[g] = (logs.mean(axis=1), spread / size)
        stats = np.stack([np.abs(moments[a][0][:, m] - moments[b][0][:, m])
                          / np.sqrt(moments[a][1][:, m] + moments[b][1][:, m] + FLOOR) for a, b, m in claims], axis=1)
    return np.nan_to_num(stats, nan=0.0, posinf=0.0, neginf=0.0)


def _max_t(values: np.ndarray, sizes: list[int], claims: list[tuple[int, int, int]]) -> np.ndarray:
    """Each claim's single-step max-T p-value over the relabelings of these groups."""
    order = _relabelings(sizes)
    stats = _statistics(values, order, sizes, claims)
    observed, largest = stats[0], stats.max(axis=1)
    reach = (largest[None, :] >= observed[:, None] * (1 - 1e-9) - 1e-12).sum(axis=1)   # per claim
    return reach / len(order)  # exact: a share of every labeling; drawn: (1 + b) / (B + 1), the observed first


def _family_p(values: np.ndarray, sizes: list[int], claims: list[tuple[int, int, int]]) -> np.ndarray:
    """Each claim's family-wise p-value, step-down: the claims in decreasing order of their statistic, each
    against the largest statistic of the claims not yet decided, over relabelings of the groups those claims
    name (the first step is the single-step max-T over the whole family: under identical settings nothing
    goes further); a p is never below the one before it."""
    observed = _statistics(values, np.arange(sum(sizes))[None, :], sizes, claims)[0]
    bounds = np.cumsum([0] + sizes)
    p, floor, remaining = np.ones(len(claims)), 0.0, sorted(range(len(claims)), key=lambda j: -observed[j])
    while remaining:
        top = remaining[0]
        groups = sorted({g for j in remaining for g in claims[j][:2]})
        rows = np.concatenate([np.arange(bounds[g], bounds[g + 1]) for g in groups])
        local = [(groups.index(claims[j][0]), groups.index(claims[j][1]), claims[j][2]) for j in remaining]
        floor = max(floor, _max_t(values[rows], [sizes[g] for g in groups], local)[0])
        p[top] = floor
        remaining = remaining[1:]
        if floor > ALPHA:  # nothing after it can be decided: its p is at least this one
            p[remaining] = floor
            break
    return p


def _smallest_p(sizes: list[int], claims: list[tuple[int, int, int]], metrics: int) -> float:
    """The smallest p this family's shape can give: one claim's two sides as far apart as can be (one far
    above, the other far below every other sample), tried for each claim."""
    return _smallest_p_of(tuple(sizes), tuple(claims), metrics, DRAWS)


@functools.lru_cache(maxsize=1024)
def _smallest_p_of(sizes: tuple, claims: tuple, metrics: int, draws: int) -> float:
    sizes, claims, best = list(sizes), list(claims), 1.0
    for a, b, _ in claims:
        values = np.ones(sum(sizes))  # ties are exact: every relabeling that matches the extreme one counts
        for group, value in ((a, 1e3), (b, 1e-3)):
            start = sum(sizes[:group])
            values[start:start + sizes[group]] = value
        best = min(best, _family_p(np.repeat(values[:, None], metrics, axis=1), sizes, claims).min())
        if best <= ALPHA:
            break
    return best


def family(samples: dict[str, list[dict]], claims: list[tuple[str, str, str]], sample: str = "epoch",
           scope: str = "the section's claims together") -> dict[tuple, Comparison]:
    """Test the claims of one section together. `samples` maps each setting to its steady epochs (a dict of
    metric -> seconds each); a claim (a, b, metric) asks whether a's `metric` differs from b's. Returns a
    Comparison per claim, keyed by the claim (`sample` and `scope` name a sample and the family in its
    sentences)."""
    names = [g for g in samples if any(g in claim[:2] for claim in claims)]
    metrics = sorted({m for _, _, m in claims})
    rows = {g: [r for r in samples[g] if any(_finite(r.get(m)) for m in metrics)] for g in names}
    sizes = [len(rows[g]) for g in names]
    index = [(names.index(a), names.index(b), metrics.index(m)) for a, b, m in claims]
    n = min(sizes) if sizes else 0
    if not claims or n == 0:
        more = needed(len(names), index, len(metrics), n)
        return {c: Comparison(c[0], c[1], TOO_FEW, n=n, needed=more, sample=sample, scope=scope) for c in claims}
    values = np.array([[_value(r.get(m)) for m in metrics] for g in names for r in rows[g]], dtype=float)
    p = _family_p(values, sizes, index)
    out, few = {}, None
    for claim, p_claim, (a, b, m) in zip(claims, p, index):
        va, vb = _column(rows, names[a], metrics[m]), _column(rows, names[b], metrics[m])
        if p_claim <= ALPHA and va and vb:
            ratio = mean(vb) / mean(va)
            out[claim] = Comparison(claim[0], claim[1], "faster" if ratio > 1 else "slower", float(p_claim), ratio,
                                    min(vb) / max(va), max(vb) / min(va), n, sample=sample, scope=scope)
            continue
        if few is None:
            few = _smallest_p(sizes, index, len(metrics)) > ALPHA
        noise = noise_of([va, vb])
        pairs_ = list(dict.fromkeys((x, y) for x, y, _ in index))
        shape = (noise, tuple(sizes), tuple(pairs_), pairs_.index((a, b))) if noise is not None else None
        out[claim] = Comparison(claim[0], claim[1], TOO_FEW if few else NO_DIFFERENCE, float(p_claim), n=n,
                                needed=needed(len(names), index, len(metrics), n) if few else None, sample=sample,
                                scope=scope, shape=shape)
    return out


def needed(groups: int, claims: list[tuple[int, int, int]], metrics: int, have: int) -> int | None:
    """The fewest samples per setting (all settings alike) at which this family could name a winner."""
    for n in range(max(have, 1) + 1, MOST_NEEDED + 1):
        if _smallest_p([n] * groups, claims, metrics) <= ALPHA:
            return n
    return None


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _value(value) -> float:
    return float(value) if _finite(value) and value > 0 else math.nan


def _column(rows: dict, group: str, metric: str) -> list[float]:
    return [float(r[metric]) for r in rows[group] if _finite(r.get(metric)) and r[metric] > 0]


def compare(a_values, b_values, a: str = "A", b: str = "B") -> Comparison:
    """Two samples of a lower-is-better measurement (seconds), as a family of one claim: is `a` lower?"""
    groups = {a: [{"s": v} for v in samples(a_values)], b: [{"s": v} for v in samples(b_values)]}
    return family(groups, [(a, b, "s")])[(a, b, "s")]


def pairs(names) -> list[tuple[str, str, str]]:
    """Every pair of settings, one claim each (a `rank`'s family)."""
    return [(x, y, "s") for x, y in itertools.combinations(names, 2)]


def decidable(steady: dict[str, int], claims: list[tuple[str, str, str]]) -> tuple[bool, float, int | None]:
    """Whether a family of this shape (steady epochs per setting, its claims) can name a winner at all: (yes or
    no, the smallest p it can give, the steady epochs per setting that could where it cannot)."""
    names = list(steady)
    metrics = sorted({m for _, _, m in claims})
    index = [(names.index(a), names.index(b), metrics.index(m)) for a, b, m in claims]
    sizes = [steady[g] for g in names]
    smallest = _smallest_p(sizes, index, len(metrics)) if min(sizes) > 0 else 1.0
    return smallest <= ALPHA, smallest, None if smallest <= ALPHA else needed(len(names), index, len(metrics),
                                                                             min(sizes))


def extremes(groups: dict) -> Comparison | None:
    """Several settings as one family (every pair a claim): the claim between the fastest and the slowest by
    mean, worded with the fastest first; None where fewer than two settings were measured."""
    means = {k: mean(v) for k, v in groups.items() if samples(v)}
    if len(means) < 2:
        return None
    fastest, slowest = min(means, key=means.get), max(means, key=means.get)
    rows = {k: [{"s": v} for v in samples(groups[k])] for k in means}
    result = family(rows, pairs(means))
    claim = (fastest, slowest, "s") if (fastest, slowest, "s") in result else (slowest, fastest, "s")
    return oriented(result[claim], fastest)


def oriented(c: Comparison, first: str) -> Comparison:
    """`c` with `first` as its subject (a and b swapped, the verdict and ratios with them, where needed)."""
    if c.a == first:
        return c
    return Comparison(c.b, c.a, {"faster": "slower", "slower": "faster"}.get(c.verdict, c.verdict), c.p,
                      1 / c.ratio if not pd.isna(c.ratio) else c.ratio, 1 / c.high, 1 / c.low, c.n, c.needed,
                      c.sample, c.scope, c.shape, c.seen)


def rank(c: Comparison | None, settings: int, what: str = "") -> Said:
    """One sentence for several settings (`settings` of them measured) from their family's extreme claim, as
    `extremes` decided it (None: fewer than two measured): the pair is named only where the rule decided it."""
    what_ = f" ({what})" if what else ""
    if c is None:
        return Said(f"Only one setting was measured{what_}: nothing to compare.")
    if c.decided:
        return Said(c.sentence(what), [c])
    if c.verdict == TOO_FEW:
        return Said(f"Across {settings} settings{what_}: {too_few(c.n, c.needed)} to name a faster one"
                    f"{c.seeable()}.", [c])
    return Said(f"Across {settings} settings{what_}: {NO_DIFFERENCE} (even the fastest and slowest by mean, "
                f"{c.a} and {c.b}, are within what relabeling the epochs gives{c.seeable()}).", [c])


def speedup_range(baseline_values, values) -> tuple[float, float, float]:
    """(ratio of means, lowest, highest ratio) of baseline time / this time: how many times faster."""
    sb, sv = samples(baseline_values), samples(values)
    if not sb or not sv:
        return math.nan, math.nan, math.nan
    return mean(sb) / mean(sv), min(sb) / max(sv), max(sb) / min(sv)


# --- a goal: met, missed, or cannot tell ------------------------------------------------------------------------

MET, MISSED, CANNOT_TELL = "met", "missed", "cannot tell at this noise"


def goal(values, op: str, target: float) -> tuple[str, float, int | None]:
    """Whether repeated measurements of a ratio meet a goal ('<=' or '>=' `target`), by the rule's one-sample
    form: a sign-flip permutation test of the log-distances from the target (under "exactly at the target" each
    repeat is as likely above as below it), one-sided in each direction. Returns (MET, MISSED or CANNOT_TELL, the
    p of the verdict's direction, the repeats that could decide where it cannot tell: 5 when every repeat lies
    on one side (1/2^5 < ALPHA), else None)."""
    logs = np.log(np.asarray(samples(values), dtype=float) / target)
    if not len(logs):
        return CANNOT_TELL, math.nan, None
    good = -logs if op == "<=" else logs          # positive where the goal is met
    flips = np.array(list(itertools.product((1.0, -1.0), repeat=len(good)))) if len(good) <= 14 else \
        np.vstack([np.ones(len(good)), np.random.default_rng(SEED).choice((1.0, -1.0), (DRAWS, len(good)))])
    means, observed = (flips * good).mean(axis=1), good.mean()
    p_met = float((means >= observed - 1e-12).mean())
    p_missed = float((means <= observed + 1e-12).mean())
    fewest = next(n for n in range(1, 64) if 0.5 ** n <= ALPHA)
    if p_met <= ALPHA:
        return MET, p_met, None
    if p_missed <= ALPHA:
        return MISSED, p_missed, None
    return CANNOT_TELL, min(p_met, p_missed), (fewest if len(good) < fewest else None)


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
