"""A report's results as data (docs/results.md): two tidy tables of JSON lines in the report's folder, read with
one pandas call. `measurements.jsonl`: a row per measured value (the part, the setting as named fields, the metric,
its unit, its value or `text`, the sample, the run). `verdicts.jsonl`: a row per claim the comparison rule decided
(lab.core.stats.family). A part's rows are replaced whole when it runs again (`Rows.start`), each write atomic and
locked, so a crash leaves a table as it was, never half a row. Epoch records stay the source for training.
"""
from __future__ import annotations

import fcntl
import json
import math
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from . import files, stats
from .errors import NotAReport, OtherSchema
from .fields import SETTING_FIELDS
from .stats import Comparison

SCHEMA = 1  # the version of both tables' columns; a reader refuses another (docs/results.md)
MEASUREMENTS = "measurements.jsonl"
VERDICTS = "verdicts.jsonl"
REMAKE = "make the report again (`python -m lab report --new`)"  # the way out of a report's file that is broken

COLUMNS = ("schema", "part", *SETTING_FIELDS, "metric", "unit", "value", "text", "sample", "run")
VERDICT_COLUMNS = ("schema", "part", "claim", "a", "b", "metric", "factor", "low", "high", "p", "family",
                   "detectable", "noise", "to_target", "samples", "sampled", "needed", "look", "level", "round_s",
                   "verdict")


class SchemaError(ValueError):
    """A results table of another schema version: read by the version that wrote it, not by this one."""


@contextmanager
def _locked(path: Path):
    """One writer at a time (a notebook's kernel and the runner may both write); closing the file unlocks it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _plain(value):
    """A value JSON can hold as a number, or None for NaN (a measurement that is missing is not written)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _replace(path: Path, rows: list[dict], drop: str | None = None) -> None:
    """The table at `path` with `rows` added, part `drop`'s earlier rows dropped first."""
    with _locked(path):
        kept = [r for r in files.read_jsonl(path, REMAKE) if drop is None or r.get("part") != drop]
        files.write_jsonl(path, kept + rows)


class Rows:
    """A part's writer of measurement rows: `add` one value, `extend` many; each call lands in the table at once
    (a part stopped half-way keeps what it measured). `defaults`: setting fields every row of this writer has."""

    def __init__(self, results_dir, part: str, run: str | None = None, **defaults):
        self.path, self.part, self.run, self.defaults = Path(results_dir) / MEASUREMENTS, part, run, defaults

    def start(self) -> "Rows":
        """Drop the part's rows of an earlier run of it (a part that runs again replaces its measurements)."""
        _replace(self.path, [], drop=self.part)
        return self

    def row(self, metric: str, value=None, unit: str = "", *, text: str | None = None, sample: int | None = None,
            **setting) -> dict:
        fields = {k: _plain(v) for k, v in {**self.defaults, **setting}.items() if v is not None}
        return {"schema": SCHEMA, "part": self.part, **fields, "metric": metric, "unit": unit,
                "value": _plain(value), "text": text, "sample": sample, "run": self.run}

    def add(self, metric: str, value=None, unit: str = "", **kw) -> None:
        self.extend([self.row(metric, value, unit, **kw)])

    def extend(self, rows: list[dict]) -> None:
        _replace(self.path, list(rows))

    def scoped(self, **setting) -> "Rows":
        """The same writer with more setting fields on every row."""
        return Rows(self.path.parent, self.part, self.run, **{**self.defaults, **setting})


def _rows(results_dir, name: str, **match) -> list[dict]:
    """The rows of a report's table `name` whose fields equal `match`'s values (None: any)."""
    rows = files.read_jsonl(Path(results_dir) / name, REMAKE) if results_dir is not None else []
    return [r for r in rows if all(v is None or r.get(k) == v for k, v in match.items())]


def _frame(results_dir, name: str, columns: tuple, rows: list[dict]) -> pd.DataFrame:
    """`rows` of the table `name`, every column present, `columns` first (another schema: refused)."""
    others = sorted(map(str, {r.get("schema") for r in rows} - {SCHEMA}))
    if others:
        raise SchemaError(f"{Path(results_dir) / name}: {name.split('.')[0]} of schema {others}, this lab reads "
                          f"schema {SCHEMA} (docs/results.md)")
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df:
            df[c] = None
    return df[[*columns, *(c for c in df.columns if c not in columns)]]


def read(results_dir, part: str | None = None, metric: str | None = None) -> pd.DataFrame:
    """The measurements of a report (of one part, of one metric), every column present (None where a row has no
    such field)."""
    return _frame(results_dir, MEASUREMENTS, COLUMNS, _rows(results_dir, MEASUREMENTS, part=part, metric=metric))


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
    """A part's claims (Comparisons keyed (a, b, metric)), replacing its earlier ones; an undecided claim keeps what
    it could have seen (`noise`, `detectable`, `to_target`), so that a reader words it without simulating."""
    rows = []
    for (a, b, metric), c in family.items():
        noise, detectable, to_target = c.figures() or (None,) * 3
        rows.append({"schema": SCHEMA, "part": part, "claim": f"{a} vs {b}, {metric}", "a": str(a), "b": str(b),
                     "metric": str(metric), "factor": _plain(c.ratio), "low": _plain(c.low), "high": _plain(c.high),
                     "p": _plain(c.p), "family": c.scope, "detectable": _plain(detectable), "noise": _plain(noise),
                     "to_target": to_target, "samples": c.n, "sampled": c.sample, "needed": c.needed,
                     "look": c.look, "level": stats.level(c.look), "round_s": _plain(c.round_s),
                     "verdict": c.verdict})
    _replace(Path(results_dir) / VERDICTS, rows, drop=part)


def comparisons(results_dir, part: str) -> dict:
    """A part's claims as its verdicts table holds them, keyed (a, b, metric) as strings: the Comparisons its
    sentences are made from ({} where the table has none of the part's)."""
    def number(v, cast=float, missing=None):
        return missing if v is None or v != v else cast(v)

    mine = _rows(results_dir, VERDICTS, part=part)
    if not mine or "to_target" not in mine[0]:
        return {}  # none, or written before undecided claims kept their figures (4553780): the reader decides again
    out = {}
    for r in _frame(results_dir, VERDICTS, VERDICT_COLUMNS, mine).to_dict("records"):
        seen = None if number(r["noise"]) is None else (r["noise"], number(r["detectable"], missing=math.inf),
                                                         number(r["to_target"], int))  # none seen: inf
        out[(r["a"], r["b"], r["metric"])] = Comparison(
            r["a"], r["b"], r["verdict"], *(number(r[k], missing=math.nan) for k in ("p", "factor", "low", "high")),
            int(r["samples"]), number(r["needed"], int), r["sampled"] or "epoch", r["family"], seen=seen,
            look=number(r["look"], int, missing=1), round_s=number(r["round_s"], missing=math.nan))
    return out


def read_verdicts(results_dir, part: str | None = None) -> pd.DataFrame:
    return _frame(results_dir, VERDICTS, VERDICT_COLUMNS, _rows(results_dir, VERDICTS, part=part))


def to_json(rows: pd.DataFrame) -> str:
    """Rows back as JSON lines (tests and `compare`)."""
    return "".join(json.dumps({k: v for k, v in r.items() if v is not None and v == v}) + "\n"
                   for r in rows.to_dict("records"))


def check_meta(path, meta: dict, way_out: str = REMAKE, required: tuple = ()) -> dict:
    """A report.json of this schema, its fields' types checked where present (the `required` ones always): BadFile
    naming `path: field` and `way_out`."""
    for field, kind, name in (("profile", str, "a string"), ("parameters", dict, "an object"),
                              ("done", dict, "an object")):
        if (field in meta or field in required) and not isinstance(meta.get(field), kind):
            raise files.BadFile(path, f"is {json.dumps(meta.get(field), default=str)[:40]}, not {name}", field,
                                way_out)
    for name, params in meta.get("parameters", {}).items():
        if not isinstance(params, dict):
            raise files.BadFile(path, f"is {json.dumps(params, default=str)[:40]}, not an object",
                                f"parameters.{name}", way_out)
    for name, seconds in meta.get("done", {}).items():
        files.number(path, f"done.{name}", seconds, low=0, high=1e7, way_out=way_out)
    if meta.get("finished") is not None and not isinstance(meta["finished"], str):
        raise files.BadFile(path, f"is {json.dumps(meta['finished'], default=str)[:40]}, not a time or null",
                            "finished", way_out)
    return meta


def schema_of(folder, meta: dict):
    """A report's schema version: report.json's, else its measurements' (reports of 4553780 to 417fe92 wrote it
    there only), else 0 (a report from before the two tables)."""
    if "schema" in meta:
        return meta["schema"]
    return next(iter(files.read_jsonl(Path(folder) / MEASUREMENTS, REMAKE)), {}).get("schema", 0)


def report_meta(folder) -> dict:
    """A report folder's report.json, its schema (`schema_of`) and fields checked. One line (exit 2) for a folder
    that is not a report of this schema, naming the file (and field) at fault."""
    folder = Path(folder)
    what = "(a report folder is what `python -m lab report` writes, e.g. results/latest)"
    if not folder.is_dir():
        raise NotAReport(f"{folder} is not a report: no such folder")
    if not (folder / "report.json").exists():
        raise NotAReport(f"{folder} is not a report: no report.json in it {what}")
    try:
        meta = files.load_json(folder / "report.json", way_out=f"it is not a report this lab reads; {REMAKE}")
        version = schema_of(folder, meta)
    except files.BadFile as error:
        raise NotAReport(str(error)) from None
    if not meta:
        raise NotAReport(f"{folder} is not a report: its report.json holds no report {what}")
    if version != SCHEMA:
        commit = f", written at commit {meta['commit']}" if meta.get("commit") else ""
        raise OtherSchema(f"{folder} is a report of schema {version}{commit}; this lab reads schema {SCHEMA} "
                          "(docs/results.md)")
    try:
        return check_meta(folder / "report.json", meta)
    except files.BadFile as error:
        raise NotAReport(str(error)) from None
