"""The one map from a field (a column of a part's table, a record's or a results row's field) to what a reader sees:
its label (with the unit it is shown in), the unit its values are stored in, and the factor between the two. Tables
carry field names until they are shown (`shown`, the one place); a part defines its own columns in its module
(`define`). A column may carry qualifiers after "|": "images_per_s|batch=1" reads "images/s, batch 1". A pivot's
columns (values of a field: settings side by side) are named by that field (`table.columns.name = "setting"`) and
shown as they are. A column without a field is shown under its own name and kept in `MISSING` (a test: none).
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

# The setting's named fields a results row may carry, in the order a table shows them (a part may add its own).
SETTING_FIELDS = ("device", "setting", "precision", "threads", "batch", "workers", "loader", "artifact", "side",
                  "graph", "kind", "layer")
# They and the index names tables are keyed by are shown by their names.
define({name: name for name in (*SETTING_FIELDS, "tag", "epoch", "part", "question", "answer", "operator", "limit",
                                "what", "status", "note", "rule", "verdict", "unit", "value", "epochs", "steady epochs",
                                "batches/epoch", "processes", "timers", "device_name")})
# Seconds: epoch records' (lab.engine.records), a group's summary (lab.parts.tables.summarize), the wait for data
# split (lab.parts.tables.startup_split: C3's table, C4's split of its wait).
define({name: Field(name, "s") for name in ("load_s", "train_s", "other_s", "total_s", "load_s range", "train_s range",
                                           "other_s range", "total_s range", "total_s (all epochs)", "batch wait s",
                                           "batch wait s range", "worker start-up s", "worker start-up range")})
define({"loss": "loss", "final loss": "final loss",
        "top1": Field("top1 %", "fraction", 100), "final top1": Field("final top1 %", "fraction", 100),
        "test top1": Field("test top1 %", "fraction", 100), "test images": Field("test images", "images"),
        "training images/s": Field("training images/s", "images/s"),
        # lab.engine.memory's fields, each shown as the largest over a group's epochs
        "host_peak_rss_bytes": Field("host peak RSS MiB", "B", 1 / MIB),
        "workers_pss_bytes": Field("workers PSS MiB", "B", 1 / MIB),
        "cuda_peak_allocated_bytes": Field("CUDA peak allocated MiB", "B", 1 / MIB),
        "cuda_peak_above_start_bytes": Field("CUDA peak rise MiB", "B", 1 / MIB)})
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
    table, columns = table.copy(), table.columns
    multi = isinstance(columns, pd.MultiIndex)
    pivot = not multi and columns.name is not None and field(columns.name) is not None  # headers: a field's values
    for i, name in enumerate([] if pivot else columns.get_level_values(-1)):
        f = field(name)
        if f is not None and f.scale != 1:
            table.isetitem(i, pd.to_numeric(table.iloc[:, i], errors="coerce") * f.scale)
    if multi:
        table.columns = pd.MultiIndex.from_tuples([(*c[:-1], label(c[-1])) for c in columns], names=columns.names)
    elif not pivot and len(columns):
        table.columns = pd.Index([label(c) for c in columns], name=columns.name)
    table.index.names = [label(n) if n is not None else None for n in table.index.names]
    return table
