"""A report's results as data: two tidy tables in the report's folder, documented in docs/results.md.

- `measurements.jsonl`: one row per measured value. The part, the setting as named fields (device, precision,
  threads, batch, workers, loader, setting, artifact, ...: whichever the measurement has), the metric, its unit,
  its value (a number; `text` where the measurement is words: a status, a reason, a path), the sample it is
  (`sample`: a block's or a round's index; None for a value measured once) and the run it came from.
- `verdicts.jsonl`: one row per claim the comparison rule decided (lab.core.stats.family): the two settings
  compared, the metric, the factor and its range over single samples, p, the family, the smallest difference the
  run could have seen, the samples per setting and the verdict.

Epoch records (records.jsonl in each part's folder) stay the source for training; every other number a part
measures is a row here. Both files are JSON lines, read with one pandas call (`read`, `read_verdicts`); a part's
rows are replaced whole when it runs again (`Rows.start`), each write atomic (lab.core.files) under a lock, so a
crash leaves the table as it was before the write, never half a row.
"""
from __future__ import annotations

import fcntl
import json
import math
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from . import files

SCHEMA = 1  # the version of both tables' columns; a reader refuses another (docs/results.md)
MEASUREMENTS = "measurements.jsonl"
VERDICTS = "verdicts.jsonl"

# The setting's named fields a row may carry, in the order a table shows them (others are allowed: a part's own).
SETTING_FIELDS = ("device", "setting", "precision", "threads", "batch", "workers", "loader", "artifact", "side",
                  "graph", "kind", "layer")
COLUMNS = ("schema", "part", *SETTING_FIELDS, "metric", "unit", "value", "text", "sample", "run")
VERDICT_COLUMNS = ("schema", "part", "claim", "a", "b", "metric", "factor", "low", "high", "p", "family",
                   "detectable", "noise", "to_target", "samples", "sampled", "needed", "verdict")


class SchemaError(ValueError):
    """A results table of another schema version: read by the version that wrote it, not by this one."""


@contextmanager
def _locked(path: Path):
    """One writer at a time (a notebook's kernel and the runner may both write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _plain(value):
    """A value JSON can hold as a number, or None for NaN (a measurement that is missing is not written)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _replace(path: Path, part: str | None, rows: list[dict], keep_part: bool = False) -> None:
    """The table at `path` with `rows` added: `part`'s earlier rows dropped first unless `keep_part`."""
    with _locked(path):
        old = files.read_jsonl(path) if path.exists() else []
        if part is not None and not keep_part:
            old = [r for r in old if r.get("part") != part]
        files.write_jsonl(path, old + rows)


class Rows:
    """A part's writer of measurement rows: `add` one value, `extend` many; each call lands in the table at once
    (a part stopped half-way keeps what it measured). `defaults`: setting fields every row of this writer has."""

    def __init__(self, results_dir, part: str, run: str | None = None, **defaults):
        self.path, self.part, self.run, self.defaults = Path(results_dir) / MEASUREMENTS, part, run, defaults

    def start(self) -> "Rows":
        """Drop the part's rows of an earlier run of it (a part that runs again replaces its measurements)."""
        _replace(self.path, self.part, [])
        return self

    def row(self, metric: str, value=None, unit: str = "", *, text: str | None = None, sample: int | None = None,
            **setting) -> dict:
        fields = {k: _plain(v) for k, v in {**self.defaults, **setting}.items() if v is not None}
        return {"schema": SCHEMA, "part": self.part, **fields, "metric": metric, "unit": unit,
                "value": _plain(value), "text": text, "sample": sample, "run": self.run}

    def add(self, metric: str, value=None, unit: str = "", **kw) -> None:
        self.extend([self.row(metric, value, unit, **kw)])

    def extend(self, rows: list[dict]) -> None:
        _replace(self.path, self.part, list(rows), keep_part=True)

    def scoped(self, **setting) -> "Rows":
        """The same writer with more setting fields on every row."""
        return Rows(self.path.parent, self.part, self.run, **{**self.defaults, **setting})


def _frame(rows: list[dict], columns: tuple, what: str, path: Path) -> pd.DataFrame:
    versions = {r.get("schema") for r in rows}
    if versions - {SCHEMA}:
        raise SchemaError(f"{path}: {what} of schema {sorted(map(str, versions - {SCHEMA}))}, this lab reads "
                          f"schema {SCHEMA} (docs/results.md)")
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df:
            df[c] = None
    return df[[*columns, *(c for c in df.columns if c not in columns)]]


def read(results_dir, part: str | None = None, metric: str | None = None) -> pd.DataFrame:
    """The measurements of a report (of one part, of one metric), every column present (None where a row has no
    such field); an empty table where there are none."""
    path = Path(results_dir) / MEASUREMENTS
    rows = files.read_jsonl(path) if results_dir is not None and path.exists() else []
    rows = [r for r in rows
            if (part is None or r.get("part") == part) and (metric is None or r.get("metric") == metric)]
    return _frame(rows, COLUMNS, "measurements", path)


def value(rows: pd.DataFrame, metric: str, default=None, **setting):
    """The one value of `metric` among `rows` with these setting fields (its text where it has no number)."""
    hit = rows[rows["metric"] == metric]
    for k, v in setting.items():
        hit = hit[hit[k] == v] if k in hit else hit.iloc[0:0]
    if not len(hit):
        return default
    row = hit.iloc[-1]
    return row["text"] if row["value"] is None or pd.isna(row["value"]) else row["value"]


def wide(rows: pd.DataFrame, index: list[str], metrics) -> pd.DataFrame:
    """Measurement rows of `metrics` as a table: a line per `index` fields' values, in the rows'
    order, and a column per metric: its text where it is words, else its value (missing: NaN)."""
    rows = rows[rows["metric"].isin(metrics)]
    table = pd.DataFrame(index=rows.set_index(index).index.unique())
    for metric in metrics:
        mine = rows[rows["metric"] == metric].set_index(index)
        table[metric] = mine["text"] if mine["text"].notna().any() else mine["value"]
    return table


def write_verdicts(results_dir, part: str, family: dict) -> None:
    """A part's claims (the comparison rule's Comparisons, keyed (a, b, metric)), replacing its earlier ones. An
    undecided claim keeps what its sentence says it could have seen: the run's noise, the smallest difference
    (`detectable`) and the samples per setting that would see the target (`to_target`), so that a reader gets the
    sentence back without simulating (`comparisons`)."""
    rows = []
    for (a, b, metric), c in family.items():
        noise, detectable, to_target = c.figures() or (None, None, None)
        rows.append({"schema": SCHEMA, "part": part, "claim": f"{a} vs {b}, {metric}", "a": str(a), "b": str(b),
                     "metric": str(metric), "factor": _plain(c.ratio), "low": _plain(c.low), "high": _plain(c.high),
                     "p": _plain(c.p), "family": c.scope, "detectable": _plain(detectable), "noise": _plain(noise),
                     "to_target": to_target, "samples": c.n, "sampled": c.sample, "needed": c.needed,
                     "verdict": c.verdict})
    _replace(Path(results_dir) / VERDICTS, part, rows)


def comparisons(results_dir, part: str) -> dict:
    """A part's claims as its verdicts table holds them, keyed (a, b, metric) as strings: the Comparisons its
    sentences are made from ({} where the table has none of the part's)."""
    from .stats import Comparison

    def number(v, cast=float, missing=None):
        return missing if v is None or v != v else cast(v)

    def num(v):
        return number(v, missing=math.nan)

    path = Path(results_dir or ".") / VERDICTS
    mine = [r for r in files.read_jsonl(path) if r.get("part") == part] if results_dir is not None else []
    if not mine or "to_target" not in mine[0]:
        return {}  # none, or written before undecided claims kept their figures (4553780): the reader decides again
    out = {}
    for r in _frame(mine, VERDICT_COLUMNS, "verdicts", path).to_dict("records"):
        seen = None if number(r["noise"]) is None else (r["noise"], number(r["detectable"], missing=math.inf),
                                                         number(r["to_target"], int))  # none seen: inf
        out[(r["a"], r["b"], r["metric"])] = Comparison(
            r["a"], r["b"], r["verdict"], num(r["p"]), num(r["factor"]), num(r["low"]), num(r["high"]),
            int(r["samples"]), number(r["needed"], int), r["sampled"] or "epoch", r["family"], seen=seen)
    return out


def read_verdicts(results_dir, part: str | None = None) -> pd.DataFrame:
    path = Path(results_dir) / VERDICTS
    rows = files.read_jsonl(path) if path.exists() else []
    return _frame([r for r in rows if part is None or r.get("part") == part], VERDICT_COLUMNS, "verdicts", path)


def to_json(rows: pd.DataFrame) -> str:
    """Rows back as JSON lines (tests and `compare`)."""
    return "".join(json.dumps({k: v for k, v in r.items() if v is not None and v == v}) + "\n"
                   for r in rows.to_dict("records"))
