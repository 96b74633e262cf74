"""The report's parts, in run order: the one table that the report runner, each notebook's set-up and the
summary read (as torchvision finds its models by name in one registry).

A part's id is its notebook's name (`C6_optimizers`); the records it writes carry that id as `experiment`,
and they go to `<results>/<id>/`. `best_workers`: the part trains with C3's best worker count unless its
`workers` parameter is set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import Config, check_namespace
from .data import resolve_dataset


@dataclass(frozen=True)
class Part:
    id: str
    title: str
    best_workers: bool = False


PARTS = (
    Part("Q_model", "Q1–Q4 — the model"),
    Part("C2_timing", "C1/C2 — Per-epoch timing of the baseline run"),
    Part("C3_workers", "C3 — DataLoader workers"),
    Part("C4_workers_profile", "C4 — 1 worker vs the best count", best_workers=True),
    Part("C5_devices", "C5 — GPU vs CPU", best_workers=True),
    Part("C6_optimizers", "C6 — Optimizers", best_workers=True),
    Part("C7_batchnorm", "C7 — Batch norm on vs off", best_workers=True),
    Part("C8_acceleration", "C8 — Accelerating the training step", best_workers=True),
    Part("C9_scaling", "C9 — Scaling out (torch.distributed)", best_workers=True),
)
IDS = tuple(p.id for p in PARTS)
BY_ID = {p.id: p for p in PARTS}
SWEEP = "C3_workers"       # finds the best worker count (best_workers.json in its folder)
DEFAULT_WORKERS = 2        # the lab's baseline, where C3 has not run


def read_sweep(results_dir) -> dict | None:
    """C3's saved sweep result (best_workers.json) of a report folder, or None."""
    try:
        return json.loads((Path(results_dir) / SWEEP / "best_workers.json").read_text())
    except (OSError, ValueError):
        return None


def best_workers(results_dir, default: int = DEFAULT_WORKERS) -> int:
    """C3's best worker count from a report folder, or `default` when C3 has not run there."""
    sweep = read_sweep(results_dir)
    try:
        return int(sweep["best_workers"])
    except (TypeError, KeyError, ValueError):
        return default


def output_dir(results_dir, part: str) -> Path:
    """`results_dir/part/`, emptied of that part's earlier records so a re-run replaces them."""
    out = Path(results_dir) / part
    out.mkdir(parents=True, exist_ok=True)
    for name in ("records.jsonl", "batches.jsonl"):
        (out / name).unlink(missing_ok=True)
    return out


def config_for(part: str, params: dict) -> Config:
    """The Config of a part's runs from its parameters (those that are Config fields; no checkpoints: a
    report re-runs whole notebooks). `dataset: auto` is resolved here (lab.data.resolve_dataset)."""
    names = set(Config().to_dict())
    fields = {k: v for k, v in params.items() if k in names and v is not None}
    fields["dataset"] = resolve_dataset(fields.get("dataset", "auto"), fields.get("data", "../data"))
    return Config.from_dict({**fields, "experiment": part, "checkpoint": None})


def setup(part: str, namespace: dict) -> tuple[Config, Path]:
    """A notebook's set-up: check its parameters (lab.config), give `workers` C3's best count where the part
    uses it and the parameter is None, and return the Config of its runs and its emptied output folder."""
    params = check_namespace(namespace)
    if BY_ID[part].best_workers and params.get("workers") is None:
        params["workers"] = namespace["workers"] = best_workers(params["results_dir"])
    return config_for(part, params), output_dir(params["results_dir"], part)
