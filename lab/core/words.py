"""How the lab says things: Jinja2 templates of plain text and Markdown (nothing escaped), rendered by `say`, and
the one way each kind of number is said, as a function and as the template filter of the same name."""
from __future__ import annotations

import functools
import math

import jinja2
import pandas as pd

SMALLEST = 4  # decimals: a number below 0.0001 (a start-up of microseconds) reads '<0.0001'


def sig(x, digits: int = 3) -> str:
    """`x` to `digits` significant figures, without an exponent, thousands separated: 7.41, 0.146, 46.7, 3,319 (an
    integer from `digits` integer digits on), at most SMALLEST decimals; '—' where missing or not finite."""
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


def factor(ratio: float) -> str:
    """How many times faster (the baseline's time over this one's): '×2.72'; below 1 '×0.80, i.e. 25 % slower'."""
    if pd.isna(ratio):
        return "—"
    return f"×{ratio:.2f}" if ratio >= 1 else f"×{ratio:.2f}, i.e. {100 * (1 / ratio - 1):.0f} % slower"


def percent(fraction: float) -> str:
    """'12 %'; below 9.5 % with one decimal, '4.7 %'."""
    return f"{100 * fraction:.0f} %" if fraction >= 0.095 else f"{100 * fraction:.1f} %"


ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
ENV.filters.update(sig=sig, plural=plural, factor=factor, percent=percent, times=lambda x: f"×{x:.2f}",
                   p=lambda p: f"{p:.3g}", share=lambda x: f"{x:.1%}", count=lambda n: f"{n:,}",
                   aside=lambda what, left=" (", right=")": f"{left}{what}{right}" if what else "")
ENV.tests.update(missing=pd.isna, finite=math.isfinite)
_compiled = functools.lru_cache(maxsize=None)(ENV.from_string)  # each template compiled once


def say(template: str, **values) -> str:
    """`template` (Jinja2 source) rendered with `values`."""
    return _compiled(template).render(**values)
