"""Conclusions that survive an A/A test (docs/measuring.md): the steady-state rule, spreads, and the one comparison
rule every sentence about speed goes through: a section's claims are one family, tested together by permutation
(max-T, step-down, on the Welch t of log-seconds), and a claim names a faster or slower setting only where its
p <= the level of its look; else "too few measurements" or "no measurable difference", with what the run could
have seen. Where a claim is still open, a part may measure more rounds and look again (`level`: the looks spend ALPHA).
"""
from __future__ import annotations

import contextvars
import functools
import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from . import words
from .words import factor, say, sig

plural = words.plural  # the parts count through lab.core.stats too

ALPHA = 0.05             # a family's chance of naming a winner among identical settings, every look included
PLANNED_ALPHA = 0.03     # what the planned look spends: 4 against 4 epochs can give p = 2/70 = 0.029 and still decide
MAX_LOOKS = 6            # level(6) = 0.000625: still above the 1/(DRAWS + 1) a drawn p can reach
LOOK = contextvars.ContextVar("look", default=1)  # the look a part's claims are decided at (lab.parts.decide)
NO_DIFFERENCE = "no measurable difference"
TOO_FEW = "too few measurements"
EXACT_LIMIT = 20_000     # relabelings enumerated exactly up to this many
DRAWS = 9_999            # else this many random relabelings, from a fixed seed (the same data, the same p)
SEED = 20_261_130
MOST_NEEDED = 30         # "n needed" is looked for up to this many samples per setting
FLOOR = 1e-12            # added to a statistic's variance: tied samples give a large, finite statistic
SAME = 0.03              # a step's and an epoch's factors this close are one figure, said once (the epoch's)
POWER = 0.8              # "could have seen": named in this share of runs
SEEN_TRIALS = 100        # simulated runs per difference tried
SEEN_DRAWS = 499         # relabelings per simulated run where there are more
TARGET = 0.10            # the difference the "epochs needed" count is for
MOST_SAMPLES = 1000      # "needed" beyond this is said as "more than"
SAY_SEEABLE = True       # tests of verdicts over thousands of trials switch the (simulated) figure off
MET, MISSED, CANNOT_TELL = "met", "missed", "cannot tell at this noise"
NOUNS = {"epoch": "steady epoch"}  # a sample as the sentences name it (others by their own name: step, block)

# The rule's words: one Jinja2 template per kind of sentence, rendered by lab.core.words.say (`c`: the Comparison).
# Keep each a plain string literal: a test edits one in a copy of this source and finds the edit in the report.
SENTENCES = {
    "decided": "{{ c.a }} is {{ c.verdict }} than {{ c.b }}{{ what | aside }}: {{ c.ratio | factor }} "
               "({{ c.spread() }}; p = {{ c.p | p }} for {{ c.scope }}, {{ c.rounds() }}).",
    "undecided": "{{ c.a }} vs {{ c.b }}{{ what | aside }}: {{ c.answer() }}{{ c.rounds() | aside(' ', '') }}"
                 "{{ c.seeable() }}"
                 "{% if c.round_s is finite %}; another round costs {{ c.round_s | sig }} s{% endif %}.",
    "rounds": "{% if c.look > 1 %}after {{ c.n | plural('round') }} in {{ c.look }} looks"
              "{% elif c.verdict != 'too few measurements' %}after {{ c.n | plural('round') }}{% endif %}",
    "too few": "too few measurements: {{ n | plural(noun) }} per setting, {{ needed or 'more than ' ~ most }} needed",
    "spread": "single {{ c.sample }}s {{ c.low | times }}"
              "{% if c.low | times != c.high | times %}–{{ c.high | times }}{% endif %}",
    "seeable": "; at this run's noise (±{{ '%.1f' | format(100 * noise) }} % per {{ noun }})"
               "{% if seen is finite %} it would have seen {{ seen | percent }} in {{ power | percent }} of runs"
               "{% else %} no difference is named in {{ power | percent }} of runs with {{ n | plural(noun) }} per "
               "setting{% endif %}{% if to_target is not none %}; {{ 'more than ' ~ most | count if to_target > most "
               "else to_target | count }} would see {{ target | percent }}{% endif %}",
    "verdict line": "{% if c.decided %}{{ c.a }} {{ c.verdict }} than {{ c.b }}: {{ c.ratio | factor }}{% else %}"
                    "{{ c.a }} vs {{ c.b }}: {{ c.answer() }}"
                    "{% if could is finite %} (could have seen {{ could | percent }}){% endif %}{% endif %}",
    "evidence": "{{ c.n | plural(noun) }} per setting{% if c.look > 1 %} ({{ c.look }} looks){% endif %}"
                "{% if c.p is not missing %}; p = {{ c.p | p }} for {{ c.scope }}{% endif %}"
                "{% if c.decided %}; {{ c.spread() }}{% endif %}",
    "one setting": "Only one setting was measured{{ what | aside }}: nothing to compare.",
    "across, too few": "Across {{ settings }} settings{{ what | aside }}: {{ c.answer() }} to name a faster one"
                       "{{ c.seeable() }}.",
    "across, no difference": "Across {{ settings }} settings{{ what | aside }}: no measurable difference (even the "
                             "fastest and slowest by mean, {{ c.a }} and {{ c.b }}, are within what relabeling the "
                             "epochs gives{{ c.seeable() }}).",
    "most accurate": "Highest test top-1: **{{ best }}** ({{ top1 | share }}, 95 % interval {{ low | share }}–"
                     "{{ high | share }} on {{ n | count }} test images), clear of every other {{ what }}.",
    "accuracy alike": "Test top-1: no measurable difference between {{ best }} ({{ top1 | share }}) and "
                      "{{ tied | join(', ') }} (95 % intervals on {{ n | count }} test images overlap).",
    "range": " (range {{ low | sig }}–{{ high | sig }} {{ unit }} over {{ n }} epochs)",
}


def level(look: int) -> float:
    """The share of ALPHA the look may spend: PLANNED_ALPHA at the planned rounds, then half of what is left at each
    further look (0.01, 0.005, ...). The levels sum to at most ALPHA, so by the union bound a family of identical
    settings names a winner at some look with chance <= ALPHA, however many looks are taken and whatever decides to
    take them: an alpha-spending function (Lan & DeMets 1983) with Bonferroni bounds (docs/measuring.md)."""
    return PLANNED_ALPHA if look <= 1 else (ALPHA - PLANNED_ALPHA) / 2 ** (look - 1)


def steady(df: pd.DataFrame, strict: bool = False) -> pd.DataFrame:
    """Finished ('ok') epochs without each run's warm-up epoch where that run has others (`strict`: always, so a
    one-epoch run has none: C8's first epoch compiles)."""
    if not len(df):
        return df
    ok = df[df["status"] == "ok"]
    warm = ok["warmup"].fillna(False).astype(bool)
    if strict:
        return ok[~warm]
    return ok[~warm | ~ok["run_id"].isin(set(ok.loc[~warm, "run_id"]))]


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
    """' (range 1.20–1.26 s over 3 epochs)' where there are at least two values, else ''."""
    s = samples(values)
    return say(SENTENCES["range"], low=min(s), high=max(s), unit=unit, n=len(s)) if len(s) >= 2 else ""


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
    look: int = 1               # the look that decided it (1: the planned rounds), at level(look)
    round_s: float = math.nan   # where undecided: the seconds another interleaved round of its settings takes

    def figures(self) -> tuple | None:
        """Where undecided: (noise, smallest difference seen, samples to see TARGET), as stored or simulated."""
        if self.seen is not None or self.shape is None or self.shape[0] is None or not SAY_SEEABLE:
            return self.seen
        self.seen = (self.shape[0], *seeable(self.shape, level(self.look)))
        return self.seen

    @property
    def decided(self) -> bool:
        return self.verdict in ("faster", "slower")

    def factor(self) -> str:
        return factor(self.ratio)

    def spread(self) -> str:
        """The single samples' ratios: 'single epochs ×2.14–×3.83'."""
        return say(SENTENCES["spread"], c=self)

    def answer(self) -> str:
        """An undecided claim's answer: 'no measurable difference' or 'too few measurements: …, 4 needed'."""
        return too_few(self.n, self.needed, self.sample) if self.verdict == TOO_FEW else NO_DIFFERENCE

    def rounds(self) -> str:
        """'after 8 rounds in 2 looks' (a round: one sample of each setting); '' where too few at the first look."""
        return say(SENTENCES["rounds"], c=self)

    def seeable(self) -> str:
        """What an undecided claim could have seen (seeable), '' where not measured or switched off."""
        figures = self.figures() if SAY_SEEABLE else None
        if figures is None:
            return ""
        noise, seen, to_target = figures
        return say(SENTENCES["seeable"], noise=noise, seen=seen, to_target=to_target, n=self.n,
                   noun=NOUNS.get(self.sample, self.sample), power=POWER, target=TARGET, most=MOST_SAMPLES)

    def sentence(self, what: str = "") -> str:
        return say(SENTENCES["decided" if self.decided else "undecided"], c=self, what=what)


class Said(str):
    """Sentences and the claims they rest on (`claims`): an A/A or power test reads what the rule decided."""

    claims: list

    def __new__(cls, text: str, claims=()):
        said = super().__new__(cls, text)
        said.claims = [c for c in claims if c is not None]
        return said

    def named(self) -> list[Comparison]:
        """The decided claims whose factor the text says: what the reader is told is faster or slower."""
        return [c for c in self.claims if c.decided and c.a in self and c.factor() in self]


def together(named: dict) -> str:
    """Several quantities of one comparison (the step, the whole epoch): one sentence with the last quantity's
    figures where every claim has the same verdict (decided ones within SAME of each other), else one each."""
    claims = {label: c for label, c in named.items() if c is not None}
    cs = list(claims.values())
    ratios = [math.log(c.ratio) for c in cs if c.decided]
    alike = len(cs) > 1 and len({c.verdict for c in cs}) == 1 and (
        not ratios or (len(ratios) == len(cs) and max(ratios) - min(ratios) <= math.log1p(SAME)))
    if alike:  # one figure: the last quantity's (the whole epoch's: what a user gets)
        return cs[-1].sentence(" and ".join(claims))
    return " ".join(c.sentence(label) for label, c in claims.items())


def verdict_lines(named: dict) -> str:
    """Several claims' answers in one line ('wait: …; compute: …'), or the one 'too few' they share."""
    few = {c.answer() for c in named.values() if c.verdict == TOO_FEW}
    if len(few) == 1 and all(c.verdict == TOO_FEW for c in named.values()):
        return few.pop()
    return "; ".join(f"{label}: {verdict_line(c)}" for label, c in named.items())


def verdict_line(c: Comparison) -> str:
    """The claim's answer in a few words: 'a faster than b: ×1.27', 'a vs b: no measurable difference (could have
    seen 12 %)'."""
    seen = c.figures() if c.verdict == NO_DIFFERENCE else None
    return say(SENTENCES["verdict line"], c=c, could=seen[1] if seen else math.nan)


def evidence_line(c: Comparison) -> str:
    """What the claim rests on: the samples, its p (for its family), the spread of single samples' ratios."""
    return say(SENTENCES["evidence"], c=c, noun=NOUNS.get(c.sample, c.sample))


def too_few(n: int, needed: int | None, sample: str = "epoch") -> str:
    """'too few measurements: 2 steady epochs per setting, 4 needed'."""
    return say(SENTENCES["too few"], n=n, needed=needed, noun=NOUNS.get(sample, sample), most=MOST_NEEDED)


# --- how large a difference a run could have seen ----------------------------------------------------------------

def noise_of(groups: list[list[float]]) -> float | None:
    """The pooled standard deviation of log-seconds within the groups (None where no group has two samples)."""
    logs = [np.log(np.asarray(g, dtype=float)) for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in logs)
    return float(math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in logs) / dof)) if dof else None


def seeable(shape: tuple, alpha: float = PLANNED_ALPHA) -> tuple[float, int | None]:
    """(the smallest difference, b/a - 1, the rule names with POWER probability; the samples per setting that
    would bring it to TARGET, None where it is there) for `shape` = (noise, group sizes, claims as group pairs, the
    claim's index). The count scales the figure by the 1/sqrt(n) law from the fewest samples that can decide."""
    noise, sizes, claims, index = shape
    sizes, claims = tuple(sizes), tuple(claims)
    d = _seeable(round(noise, 3), sizes, claims, index, alpha)
    n = min(sizes)
    if not math.isfinite(d):
        fewest = max(n + 1, needed(len(sizes), [(a, b, 0) for a, b in claims], 1, n, alpha) or MOST_NEEDED)
        d_at = _seeable(round(noise, 3), tuple(fewest for _ in sizes), claims, index, alpha)
        return d, (MOST_SAMPLES + 1 if not math.isfinite(d_at)
                   else max(fewest, math.ceil(fewest * (d_at / TARGET) ** 2)))
    return d, (None if d <= TARGET else math.ceil(n * (d / TARGET) ** 2))


@functools.lru_cache(maxsize=2048)
def _seeable(noise: float, sizes: tuple, claims: tuple, index: int, alpha: float) -> float:
    """SEEN_TRIALS runs of this shape with log-normal noise, the claim's `a` faster by the difference tried, each
    run's p the single-step max-T over the family (what decides its first claim); the same draws for every
    difference, bisected to the smallest named in POWER of the runs."""
    order = _relabelings(sizes, SEEN_DRAWS, 2 * SEEN_DRAWS)
    draws = np.random.default_rng(SEED + 1).normal(0.0, max(noise, 1e-6), (SEEN_TRIALS, sum(sizes))).T
    start = sum(sizes[:claims[index][0]])
    trials = [(a, b, trial) for trial in range(SEEN_TRIALS) for a, b in claims]  # each trial a metric of one family

    def power(d: float) -> float:
        logs = draws.copy()
        logs[start:start + sizes[claims[index][0]]] -= math.log1p(d)  # a faster than b by d
        t = _statistics(logs, order, sizes, trials).reshape(len(order), SEEN_TRIALS, len(claims))
        return float((_reaching(t[0, :, index], t.max(axis=2).T) <= alpha).mean())

    low, high = 0.0, 0.02
    while power(high) < POWER:
        low, high = high, 2 * high + 0.02
        if high > 50:
            return math.inf
    for _ in range(9):
        middle = math.sqrt((1 + low) * (1 + high)) - 1
        low, high = (low, middle) if power(middle) >= POWER else (middle, high)
    return high


# --- the permutation test ----------------------------------------------------------------------------------------

def _splits(n: int, sizes: tuple):
    """Every split of range(n) into groups of `sizes`, the groups' indices one after the other."""
    if not sizes:
        yield ()
        return
    for first in itertools.combinations(range(n), sizes[0]):
        others = [i for i in range(n) if i not in first]
        for tail in _splits(len(others), sizes[1:]):
            yield first + tuple(others[i] for i in tail)


@functools.lru_cache(maxsize=512)
def _relabelings(sizes: tuple, draws: int, limit: int) -> np.ndarray:
    """Relabelings of the pooled samples as rows (permutations of range(N), the groups consecutive slices): every
    one (the observed first) where there are at most `limit`, else the observed and `draws` seeded random ones."""
    n = sum(sizes)
    if math.factorial(n) // math.prod(math.factorial(s) for s in sizes) <= limit:
        order = np.array(list(_splits(n, sizes)), dtype=np.int64)
    else:
        rng = np.random.default_rng(SEED)
        order = np.vstack([np.arange(n)[None, :], rng.permuted(np.tile(np.arange(n), (draws, 1)), axis=1)])
    order.setflags(write=False)
    return order


def _statistics(logs: np.ndarray, order: np.ndarray, sizes, claims) -> np.ndarray:
    """Each claim's (group a, group b, metric) statistic under every relabeling (rows of `order`): the Welch t of
    the log-seconds (samples × metrics), studentized so that a claim between two tight, distant groups stands out
    however far apart the other groups lie. NaN (not measured) is left out; a group with none gives 0."""
    bounds, gaps = np.cumsum([0, *sizes]), np.isnan(logs).any()
    means, variances = [], []
    with np.errstate(all="ignore"):
        for g in range(len(sizes)):
            group = logs[order[:, bounds[g]:bounds[g + 1]]]                  # (relabelings, size, metrics)
            count = (~np.isnan(group)).sum(axis=1) if gaps else group.shape[1]
            average = (np.nansum(group, axis=1) if gaps else group.sum(axis=1)) / np.maximum(count, 1)
            squares = (group - average[:, None, :]) ** 2
            spread = (np.nansum(squares, axis=1) if gaps else squares.sum(axis=1)) / np.maximum(count - 1, 1)
            means.append(np.where(count > 0, average, np.nan))
            variances.append(spread / np.maximum(count, 1))
        means, variances = np.stack(means), np.stack(variances)             # (groups, relabelings, metrics)
        a, b, m = np.array(claims).T
        stats = np.abs(means[a, :, m] - means[b, :, m]) / np.sqrt(variances[a, :, m] + variances[b, :, m] + FLOOR)
    return np.nan_to_num(stats.T, nan=0.0, posinf=0.0, neginf=0.0)


def _reaching(observed: np.ndarray, largest: np.ndarray) -> np.ndarray:
    """The share of relabelings (the last axis of `largest`) whose largest statistic reaches `observed`: exact, a
    share of every labeling; drawn, (1 + b) / (B + 1), the observed labeling being the first."""
    return (largest >= observed[:, None] * (1 - 1e-9) - 1e-12).mean(axis=-1)


def _family_p(values: np.ndarray, sizes, claims, alpha: float) -> np.ndarray:
    """Each claim's family-wise p-value, step-down: the claims by decreasing statistic, each against the largest of
    the claims not yet decided, over relabelings of the groups they name (the first step is the single-step max-T
    over the family); a p is never below the one before it."""
    logs = np.log(values)
    observed = _statistics(logs, np.arange(sum(sizes))[None, :], sizes, claims)[0]
    bounds = np.cumsum([0, *sizes])
    p, floor, remaining = np.ones(len(claims)), 0.0, sorted(range(len(claims)), key=lambda j: -observed[j])
    while remaining:
        groups = sorted({g for j in remaining for g in claims[j][:2]})
        rows = np.concatenate([np.arange(bounds[g], bounds[g + 1]) for g in groups])
        local = [(groups.index(claims[j][0]), groups.index(claims[j][1]), claims[j][2]) for j in remaining]
        here = tuple(sizes[g] for g in groups)
        stats = _statistics(logs[rows], _relabelings(here, DRAWS, EXACT_LIMIT), here, local)
        floor = max(floor, _reaching(stats[0], stats.max(axis=1)[None, :])[0])
        p[remaining[0]] = floor
        remaining = remaining[1:]
        if floor > alpha:  # nothing after it can be decided: its p is at least this one
            p[remaining] = floor
            break
    return p


@functools.lru_cache(maxsize=1024)
def _smallest_p(sizes: tuple, claims: tuple, metrics: int, alpha: float) -> float:
    """The smallest p this family's shape can give: one claim's two sides as far apart as can be (one far above,
    the other far below every other sample), tried for each claim (the search stops at one <= `alpha`)."""
    best = 1.0
    for a, b, _ in claims:  # ties are exact: every relabeling that matches the extreme one counts
        values = np.repeat([1e3 if g == a else 1e-3 if g == b else 1.0 for g in range(len(sizes))], sizes)
        best = min(best, _family_p(np.repeat(values[:, None], metrics, axis=1), sizes, claims, alpha).min())
        if best <= alpha:
            break
    return best


def family(samples: dict[str, list[dict]], claims: list[tuple[str, str, str]], sample: str = "epoch",
           scope: str = "the section's claims together", look: int | None = None) -> dict[tuple, Comparison]:
    """The claims of one section tested together: `samples` maps each setting to its steady epochs ({metric: seconds}
    each); a claim (a, b, metric) asks whether a's `metric` differs from b's. A Comparison per claim, keyed by it
    (`sample` and `scope` name a sample and the family in its sentences), decided at level(`look`) (default: LOOK's)."""
    look = LOOK.get() if look is None else look
    alpha = level(look)
    names, metrics = [g for g in samples if any(g in c[:2] for c in claims)], sorted({m for _, _, m in claims})
    index = tuple((names.index(a), names.index(b), metrics.index(m)) for a, b, m in claims)
    rows = {g: [r for r in samples[g] if any(_finite(r.get(m)) for m in metrics)] for g in names}
    sizes = tuple(len(rows[g]) for g in names)
    n = min(sizes, default=0)
    if not claims or n == 0:
        more = needed(len(names), index, len(metrics), n, alpha)
        return {c: Comparison(c[0], c[1], TOO_FEW, n=n, needed=more, sample=sample, scope=scope, look=look)
                for c in claims}
    values = np.array([[_value(r.get(m)) for m in metrics] for g in names for r in rows[g]], dtype=float)
    p = _family_p(values, sizes, index, alpha)
    pairs_ = list(dict.fromkeys((x, y) for x, y, _ in index))
    out, few = {}, _smallest_p(sizes, index, len(metrics), alpha) > alpha
    for claim, p_claim, (a, b, m) in zip(claims, p, index):
        va, vb = ([v for v in (_value(r.get(metrics[m])) for r in rows[names[g]]) if v == v] for g in (a, b))
        if p_claim <= alpha and va and vb:
            ratio, low, high = speedup_range(vb, va)
            out[claim] = Comparison(claim[0], claim[1], "faster" if ratio > 1 else "slower", float(p_claim), ratio,
                                    low, high, n, sample=sample, scope=scope, look=look)
            continue
        noise = noise_of([va, vb])
        shape = (noise, sizes, tuple(pairs_), pairs_.index((a, b))) if noise is not None else None
        out[claim] = Comparison(claim[0], claim[1], TOO_FEW if few else NO_DIFFERENCE, float(p_claim), n=n,
                                needed=needed(len(names), index, len(metrics), n, alpha) if few else None,
                                sample=sample, scope=scope, shape=shape, look=look)
    return out


def needed(groups: int, claims, metrics: int, have: int, alpha: float = PLANNED_ALPHA) -> int | None:
    """The fewest samples per setting (all settings alike) at which this family could name a winner at `alpha`."""
    for n in range(max(have, 1) + 1, MOST_NEEDED + 1):
        if _smallest_p((n,) * groups, tuple(claims), metrics, alpha) <= alpha:
            return n
    return None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _value(value) -> float:
    return float(value) if _finite(value) and value > 0 else math.nan


def compare(a_values, b_values, a: str = "A", b: str = "B") -> Comparison:
    """Two samples of a lower-is-better measurement (seconds), as a family of one claim: is `a` lower?"""
    groups = {a: [{"s": v} for v in samples(a_values)], b: [{"s": v} for v in samples(b_values)]}
    return family(groups, [(a, b, "s")])[(a, b, "s")]


def pairs(names) -> list[tuple[str, str, str]]:
    """Every pair of settings, one claim each (a `rank`'s family)."""
    return [(x, y, "s") for x, y in itertools.combinations(names, 2)]


def decidable(steady: dict[str, int], claims: list[tuple[str, str, str]]) -> tuple[bool, float, int | None]:
    """Whether a family of this shape (steady epochs per setting, its claims) can name a winner: (yes or no, the
    smallest p it can give, the steady epochs per setting that could where it cannot)."""
    names, metrics = list(steady), sorted({m for _, _, m in claims})
    index = tuple((names.index(a), names.index(b), metrics.index(m)) for a, b, m in claims)
    sizes = tuple(steady.values())
    smallest = _smallest_p(sizes, index, len(metrics), PLANNED_ALPHA) if min(sizes) > 0 else 1.0
    if smallest <= PLANNED_ALPHA:
        return True, smallest, None
    return False, smallest, needed(len(sizes), index, len(metrics), min(sizes))


def extremes(groups: dict) -> Comparison | None:
    """Several settings as one family (every pair a claim): the claim between the fastest and the slowest by mean,
    the fastest first; None where fewer than two settings were measured."""
    means = {k: mean(v) for k, v in groups.items() if samples(v)}
    if len(means) < 2:
        return None
    fastest, slowest = min(means, key=means.get), max(means, key=means.get)
    result = family({k: [{"s": v} for v in samples(groups[k])] for k in means}, pairs(means))
    if (fastest, slowest, "s") in result:
        return result[(fastest, slowest, "s")]
    c = result[(slowest, fastest, "s")]  # turned round: the fastest its subject
    return replace(c, a=c.b, b=c.a, verdict={"faster": "slower", "slower": "faster"}.get(c.verdict, c.verdict),
                   ratio=1 / c.ratio, low=1 / c.high, high=1 / c.low)


def rank(c: Comparison | None, settings: int, what: str = "") -> Said:
    """One sentence for `settings` settings from their family's extreme claim (`extremes`; None: fewer than two)."""
    if c is None:
        return Said(say(SENTENCES["one setting"], what=what))
    if c.decided:
        return Said(c.sentence(what), [c])
    kind = "across, too few" if c.verdict == TOO_FEW else "across, no difference"
    return Said(say(SENTENCES[kind], c=c, settings=settings, what=what), [c])


def speedup_range(baseline_values, values) -> tuple[float, float, float]:
    """(ratio of means, lowest, highest ratio) of baseline time / this time: how many times faster."""
    sb, sv = samples(baseline_values), samples(values)
    if not sb or not sv:
        return math.nan, math.nan, math.nan
    return mean(sb) / mean(sv), min(sb) / max(sv), max(sb) / min(sv)


def goal(values, op: str, target: float) -> tuple[str, float, int | None]:
    """Whether repeated measurements of a ratio meet a goal ('<=' or '>=' `target`): a sign-flip permutation test of
    the log-distances from the target, one-sided each way. (MET, MISSED or CANNOT_TELL, the p of the verdict's
    direction, the repeats that could decide where it cannot tell: 5 where all lie on one side, else None)."""
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
    """Which setting reached the highest *test* top-1 (fractions in `accuracies`), named only when its 95 % interval
    clears every other's; else NO_DIFFERENCE."""
    acc = {k: v for k, v in accuracies.items() if v is not None and math.isfinite(v)}
    if len(acc) < 2 or not n:
        return ""
    best = max(acc, key=acc.get)
    low, high = wilson(acc[best], n)
    tied = [k for k in acc if k != best and wilson(acc[k], n)[1] >= low]
    return say(SENTENCES["accuracy alike" if tied else "most accurate"], best=best, top1=acc[best], low=low,
               high=high, n=n, what=what, tied=tied)
