"""The one map from a field (a column of a part's table, a record's or a results row's field) to what a reader sees:
its label (the unit it is shown in included), the unit its values are stored in, and the factor from the one to
the other. Tables carry field names until they are shown (lab.parts.tables.style labels them here, the one place);
a table's CSV keeps what the reader sees, labelled and scaled, unrounded.

The common fields are defined here; a part defines its own columns in its module (`fields.define`), so the map is
one dict, filled as the parts are imported (lab.parts imports them all). A column may carry qualifiers after a
"|": "images_per_s|batch=1" is shown as "images/s, batch 1". A table whose columns are the values of a field (a
pivot: settings side by side) names that field as its columns' name (`table.columns.name = "setting"`); its values
are shown as they are. A column without a field is shown under its own name and kept in `MISSING`, which the
goldens test requires empty.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Field:
    """How a field is shown: `label` (with the unit it is shown in), the `unit` its values are stored in (empty:
    words, a count, a factor), and `scale`, the factor from the stored unit to the shown one."""

    label: str
    unit: str = ""
    scale: float = 1.0


FIELDS: dict[str, Field] = {}
MISSING: set[str] = set()  # columns shown without a field (a test requires none)


def define(fields: dict) -> dict[str, Field]:
    """Add fields to the map: {name: Field or label}. A name defined twice must mean the same (the map is one)."""
    out = {name: f if isinstance(f, Field) else Field(f) for name, f in fields.items()}
    for name, f in out.items():
        if FIELDS.get(name, f) != f:
            raise ValueError(f"field {name!r} is defined twice: {FIELDS[name]} and {f}")
        FIELDS[name] = f
    return out


MIB = 2 ** 20

# Setting fields (lab.core.results.SETTING_FIELDS) and the index names tables are keyed by: shown by their names.
define({name: name for name in ("device", "setting", "precision", "threads", "batch", "workers", "loader", "artifact",
                                "side", "graph", "kind", "layer", "tag", "epoch", "part", "question", "answer",
                                "operator", "limit", "what", "status", "note", "rule", "verdict", "unit", "value",
                                "epochs", "steady epochs", "batches/epoch", "processes", "timers", "device_name")})
# Epoch records' fields (lab.engine.records) and the summary of a group's epochs (lab.parts.tables.summarize).
define({"load_s": Field("load_s", "s"), "train_s": Field("train_s", "s"), "other_s": Field("other_s", "s"),
        "total_s": Field("total_s", "s"), "load_s range": Field("load_s range", "s"),
        "train_s range": Field("train_s range", "s"), "other_s range": Field("other_s range", "s"),
        "total_s range": Field("total_s range", "s"), "total_s (all epochs)": Field("total_s (all epochs)", "s"),
        "loss": "loss", "final loss": "final loss",
        "top1": Field("top1 %", "fraction", 100), "final top1": Field("final top1 %", "fraction", 100),
        "test top1": Field("test top1 %", "fraction", 100), "test images": Field("test images", "images"),
        "training images/s": Field("training images/s", "images/s"),
        # lab.engine.memory's fields, each shown as the largest over a group's epochs
        "host_peak_rss_bytes": Field("host peak RSS MiB", "B", 1 / MIB),
        "workers_pss_bytes": Field("workers PSS MiB", "B", 1 / MIB),
        "cuda_peak_allocated_bytes": Field("CUDA peak allocated MiB", "B", 1 / MIB),
        "cuda_peak_above_start_bytes": Field("CUDA peak rise MiB", "B", 1 / MIB)})
# The wait for data split (lab.parts.tables.startup_split: C3's table, C4's split of its wait)
define({name: Field(name, "s") for name in ("batch wait s", "batch wait s range", "worker start-up s",
                                           "worker start-up range")})
MEMORY = ("host_peak_rss_bytes", "workers_pss_bytes", "cuda_peak_allocated_bytes", "cuda_peak_above_start_bytes")


def field(name) -> Field | None:
    """The field of a column name (its qualifiers after "|" shown after the label), or None."""
    base, _, qualifiers = str(name).partition("|")
    f = FIELDS.get(base)
    if f is None or not qualifiers:
        return f
    return Field(", ".join([f.label, *(q.replace("=", " ") for q in qualifiers.split("|"))]), f.unit, f.scale)


def label(name) -> str:
    """What a reader sees as a column's header: its field's label, or its own name where it has no field."""
    f = field(name)
    if f is None and name is not None:
        MISSING.add(str(name))
    return f.label if f else name


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """A display copy: each column scaled to its shown unit and named by its field's label (the index names too).
    Columns that are a field's values (the columns' name is a field: a pivot) are left as they are; in a two-level
    header (`compare`'s report × column), the last level is the fields'."""
    table = table.copy()
    columns = table.columns
    if isinstance(columns, pd.MultiIndex):
        names = columns.get_level_values(-1)
    elif columns.name is not None and field(columns.name) is not None:
        names = []  # a pivot: the headers are values of the field named by the columns' name
    else:
        names = columns
    for i, name in enumerate(names):
        f = field(name)
        if f is not None and f.scale != 1:
            table.isetitem(i, pd.to_numeric(table.iloc[:, i], errors="coerce") * f.scale)
    if isinstance(columns, pd.MultiIndex):
        table.columns = pd.MultiIndex.from_tuples([(*c[:-1], label(c[-1])) for c in columns],
                                                  names=columns.names)
    elif len(names):
        table.columns = pd.Index([label(c) for c in columns], name=columns.name)
    table.index.names = [label(n) if n is not None else None for n in table.index.names]
    return table
