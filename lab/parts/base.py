"""What the parts share: the interface every part declares itself through (`Part`), the work a part will do
(`Runs`, counted as `Work`), training compared settings interleaved by epoch, reusing an earlier part's block of
runs, and the report a part runs in (`Report`).

A part decides its runs in one function (`runs`); the same decision is what it trains and what the report's
estimate counts, so the two cannot drift apart. Where the decision depends on an earlier part's result (C3's
best worker count, the runs C3 or C6 made), the runner plans again once that result exists.
"""
from __future__ import annotations

import inspect
import math
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from ..core import files, results, stats
from ..core.config import PARAMETERS, Config
from ..engine import progress
from ..engine.resolve import resolve
from ..engine.train import run as training_run


@dataclass
class Work:
    """What a part will do, counted before it runs (the report's estimate)."""

    steps: float = 0.0     # training steps, in steps of the profile's batch on the whole node
    evals: int = 0         # test batches evaluated
    runs: int = 0          # runs set up (model, loaders; their first epoch's extra cost)
    compiles: int = 0      # runs that compile their step (torch.compile)
    launches: int = 0      # torchrun launches (process start-up, process group)
    # the trained runs, priced by setting: ((step_setting, steps in the run's batches, epochs, the same steps as
    # counted in `steps`), ...)
    settings: tuple = ()

    def __add__(self, other: "Work") -> "Work":
        return Work(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))


def steady_epochs(config: Config, strict: bool = False) -> int:
    """The steady epochs a run of `config` will give (lab.core.stats.steady): all but the warm-up, and the one
    epoch of a one-epoch run unless `strict`."""
    return config.epochs - 1 if strict or config.epochs > 1 else 1


def planned_steps(config: Config, world_size: int = 1, test: bool = False) -> int:
    """Training steps a run of `config` will take (per process): epochs x batches per epoch; `test`: the
    test batches its evaluations take (evaluate() caps them at max_batches too)."""
    if test:
        images = config.synthetic_test if config.dataset == "synthetic" else 10_000
    else:
        images = config.synthetic_train if config.dataset == "synthetic" else 50_000
    batches = math.ceil(math.ceil(images / world_size) / config.batch_size)
    return config.epochs * (batches if config.max_batches is None else min(batches, config.max_batches))


# What changes a training step's cost (the estimate prices steps per setting): the device, the precision, the
# batch, the memory format, compilation, the loader and its worker processes (on 2 cores they take compute).
STEP_FIELDS = ("device_type", "amp", "batch_size", "channels_last", "compile", "loader", "workers")


def step_setting(values: dict) -> tuple:
    """The (field, value) pairs of STEP_FIELDS in a record or a resolved configuration (+ device_type); the
    on-device loader starts no workers, so it counts 0 whatever `workers` says."""
    values = {**values, "workers": 0 if values.get("loader") == "tensor" else values.get("workers")}
    return tuple((k, values.get(k)) for k in STEP_FIELDS)


@dataclass
class Runs:
    """The runs a part makes: its `block` of settings, trained interleaved by epoch, or the same runs taken
    from an earlier part's block (`reused_from`: that part's id, with `wanted` mapping its tags to the block's
    Configs); `extra`: the work beside them (profiled steps, launches)."""

    block: list[Config] = field(default_factory=list)
    reused_from: str | None = None
    wanted: dict[str, Config] = field(default_factory=dict)
    extra: Work = field(default_factory=Work)

    def work(self, batch_size: int) -> Work:
        """The block's steps (in steps of `batch_size`), test batches, run set-ups and compilations, plus
        `extra`; reused runs cost nothing."""
        work = self.extra
        if self.reused_from is None:
            for c in self.block:
                resolved = resolve(c, log=lambda msg: None, measure=False)
                compiles = resolved.config.compile != "off"
                key = step_setting({**resolved.config.to_dict(), "device_type": resolved.device.type})
                steps = planned_steps(c) * c.batch_size / batch_size
                work += Work(steps=steps, runs=1, compiles=int(compiles),
                             evals=planned_steps(c, test=True) if c.evaluate else 0,
                             settings=((key, planned_steps(c), c.epochs, steps),))
        return work


# --- the report a part runs in -------------------------------------------------------------------------------

# Fields two runs may differ in and still be the same measurement
NOT_THE_SETTING = ("experiment", "tag", "extra", "checkpoint", "resume", "device")  # device: compared resolved


def setting(config: Config) -> dict:
    """What a run measures, as its records carry it: the resolved configuration less its labels, with the
    device type and the threads it trains with."""
    resolved = resolve(config, log=lambda msg: None, measure=False)
    values = {k: v for k, v in resolved.config.to_dict().items() if k not in NOT_THE_SETTING}
    return {**values, "device_type": resolved.device.type, "threads": resolved.threads}


@dataclass
class Report:
    """The report a part runs in: its folder, where the parts that ran left their records, and, for a plan made
    before they run, what the parts before this one will run (`planned`: part id -> Runs). `fast_probe`: a
    --fast probe's result to plan with instead of this machine's (an account of another machine's report)."""

    results_dir: Path
    planned: dict[str, Runs] = field(default_factory=dict)
    fast_probe: dict | None = None

    def reusable(self, wanted: dict[str, Config]) -> str | None:
        """The earlier part whose block has (or, not yet run, will have) every wanted run with the same setting,
        found by the runs' tags and settings alone (a part never names another); None where there is none."""
        mine = next(iter(wanted.values())).experiment
        folders = sorted(p.parent.name for p in Path(self.results_dir).glob("*/records.jsonl"))
        for source in dict.fromkeys([*self.planned, *folders]):
            if source == mine:
                continue
            if (Path(self.results_dir) / source / "records.jsonl").exists():
                if find_reusable(self.results_dir, source, wanted) is not None:
                    return source
                continue
            planned = self.planned[source]
            if planned.reused_from is None:
                block = {c.tag: setting(c) for c in planned.block}
                if all(block.get(tag) == setting(config) for tag, config in wanted.items()):
                    return source
        return None


def find_reusable(results_dir, source: str, wanted: dict[str, Config]) -> dict[str, list[dict]] | None:
    """`source`'s records of every wanted run (tag -> records), when they all come from one interleaved block,
    are complete (all epochs, status ok) and have the same setting field for field; else None."""
    records = [r for r in files.read_jsonl(Path(results_dir) / source / "records.jsonl") if r.get("tag") in wanted]
    runs = {}
    for tag, config in wanted.items():
        mine = [r for r in records if r["tag"] == tag]
        same = setting(config)
        if (len(mine) != config.epochs or any(r.get("status") != "ok" for r in mine)
                or any(r.get(k) != v for r in mine for k, v in same.items())):
            return None
        runs[tag] = mine
    if len({r.get("extra", {}).get("block") for rs in runs.values() for r in rs}) != 1:
        return None
    return runs


def reuse(results_dir, source: str, wanted: dict[str, Config], out) -> list[dict] | None:
    """Copies of `source`'s runs (find_reusable) for a part that would make the same runs and compares them
    only with each other, or None. The copies carry this part's experiment and tag and `reused_from`, and
    are written to `out` like the part's own records."""
    runs = find_reusable(results_dir, source, wanted)
    if runs is None:
        return None
    batches = files.read_jsonl(Path(results_dir) / source / "batches.jsonl")
    copies, batch_copies = [], []
    for tag, config in wanted.items():
        ids = {r["run_id"] for r in runs[tag]}
        new_id = f"{next(iter(ids))}@{config.experiment}"
        for r in runs[tag]:
            copies.append({**r, "run_id": new_id, "experiment": config.experiment, "tag": config.tag,
                           "reused_from": f"{source} ({tag})"})
        batch_copies += [{**b, "run_id": new_id, "experiment": config.experiment, "tag": config.tag}
                         for b in batches if b.get("run_id") in ids]
    files.append_jsonl(Path(out) / "batches.jsonl", batch_copies)
    files.append_jsonl(Path(out) / "records.jsonl", copies)
    print(f"{wanted[next(iter(wanted))].experiment}: reusing {', '.join(wanted)} from {source}'s interleaved block "
          "(same settings; nothing here compares them with a later run)", file=sys.stderr)
    return copies


def single_run(config: Config, out, save_model=None) -> list[dict]:
    """One run's records (a part that compares nothing: C2); `save_model`: where its trained weights go."""
    with progress.bar(config.experiment, planned_steps(config)):
        return list(training_run(config, results_dir=out, save_model=save_model))


def interleave(configs: list[Config], out) -> list[dict]:
    """Train several settings round-robin by epoch: epoch 1 of each, then epoch 2 of each in the reverse
    order, and so on, so slow drift (clocks, temperature, other load) hits every setting alike instead of
    favouring the ones that ran first. A setting that diverges drops out; the others go on. Every record
    carries the block's id (extra["block"]): a later part may reuse runs of one block (see `reuse`)."""
    block = uuid.uuid4().hex[:12]
    configs = [c.replace(extra={**c.extra, "block": block}) for c in configs]
    with progress.bar(configs[0].experiment if configs else "", sum(map(planned_steps, configs))):
        runs = [training_run(c, results_dir=out) for c in configs]
        records, active, forward = [], list(range(len(runs))), True
        while active:
            for i in (active if forward else active[::-1]):
                try:
                    records.append(next(runs[i]))
                except StopIteration:
                    active = [j for j in active if j != i]
            forward = not forward
    return records


def train(runs: Runs, out, results_dir) -> list[dict]:
    """Make a part's runs: the reused ones where they are still there as planned, else the block, interleaved."""
    if runs.reused_from is not None:
        copies = reuse(results_dir, runs.reused_from, runs.wanted, out)
        if copies is not None:
            return copies
    return interleave(runs.block, out)


def steady_values(records: list[dict], key: str) -> list[float]:
    """`key` over the steady epochs of a run's records (lab.core.stats.steady)."""
    df = pd.DataFrame(records)
    return stats.samples(stats.steady(df)[key]) if len(df) else []


def claims(part_id: str, verdicts: Callable, records, results_dir) -> dict:
    """A part's claims, keyed (a, b, metric) as strings: as its verdicts table holds them (decided once, after
    its `measure`: lab.parts.run), or, where the table has none of the part's (a report from before the table),
    decided now by its `verdicts`."""
    stored = results.comparisons(results_dir, part_id)
    return stored or {tuple(map(str, k)): c for k, c in verdicts(records, results_dir).items()}


def device_available(name: str) -> bool:
    return name == "cpu" or (name == "cuda" and torch.cuda.is_available())


# --- the interface every part declares itself through ---------------------------------------------------------

# Notebook parameters every training part has (a part's `parameters` name its own); their meaning is their Spec's.
COMMON = ("results_dir", "data", "dataset", "device", "batch_size", "epochs", "max_batches", "lr", "seed")


def make_runs(part: "Part", config: Config, params: dict, out, report: Report) -> list[dict]:
    """The default `measure`: train the part's runs (reused ones where they are still there, else its block,
    interleaved by epoch) into `out`."""
    return train(part.runs(config, params, report), out, report.results_dir)


DEFAULT_WORKERS = 2  # the lab's baseline worker count, where no part of the report measured the best one


@dataclass(frozen=True)
class Part:
    """A part of the lab, as its module declares it (`PART = Part(...)`, the module's last statement). The
    registry (lab.parts), the report runner, the estimate, the summary and `compare` know a part only through
    these members, never by its name.

    - `id`: its notebook's name, the records' `experiment`, its folder in a report; `title`: its heading.
    - `questions`: the lab's questions it answers, (id as ../shared/LAB.md numbers it, short label); its
      `findings` give one row for each.
    - `parameters`: its notebook parameters besides results_dir (their meaning: lab.core.config.PARAMETERS);
      `COMMON` where it trains or reads the data set.
    - `runs(config, params, report) -> Runs`: the runs it makes (what runs is what the estimate counts).
    - `measure(config, params, out, report) -> records`: how it makes its runs and writes its measurement rows
      (lab.core.results; default: trains the runs, whose epoch records are its measurements).
    - `verdicts(records, results_dir) -> {(a, b, metric): Comparison}`: every claim its sentences make, decided by
      the comparison rule from its records and rows; written to the report's verdicts table after `measure`.
    - `section(records, results_dir, figures_dir)`: its tables, figures and sentences, from records and rows.
    - `findings(records, results_dir) -> [Finding]`: its rows of the findings table.
    - `speed_family(config, params, report) -> (steady epochs per setting, claims) | None`: the claims its
      sentences make, before anything runs (what a profile can conclude: lab.report.conclusions).
    - `needs`: what it takes from the parts before it, resolved by the runner: "best_workers" (it trains with
      the best worker count where its `workers` parameter is None).
    - `provides`: what it gives the parts after it and the estimate, as rows of these metrics or records:
      "best_workers" (a row of that metric), "model_file" (a row naming its trained weights), "compile_s" (a row:
      what one compilation cost), "calibration" (its one run calibrates the estimate's step and run costs).
    """

    id: str
    title: str
    questions: tuple
    parameters: tuple
    runs: Callable
    section: Callable
    findings: Callable
    measure: Callable | None = None
    speed_family: Callable | None = None
    verdicts: Callable | None = None
    needs: tuple = ()
    provides: tuple = ()

    def make(self, config: Config, params: dict, out, report: Report) -> list[dict]:
        """Make the part's runs into `out` (its `measure`, or the default: train them)."""
        if self.measure is not None:
            return self.measure(config, params, out, report)
        return make_runs(self, config, params, out, report)


# Each member's arguments, by position (a member may name them as it likes); None: the member may be absent.
SIGNATURES = {"runs": 3, "section": 3, "findings": 2, "measure": 4, "speed_family": 3, "verdicts": 2}
TYPES = {"id": str, "title": str, "needs": tuple, "provides": tuple}
NEEDS = ("best_workers",)
PROVIDES = ("best_workers", "model_file", "compile_s", "calibration")


def check(part) -> list[str]:
    """What is wrong with a part's declaration (an empty list: nothing): its type, each declared constant's type,
    each member's signature, its questions and parameters. tests/test_parts.py runs it over the registry."""
    if not isinstance(part, Part):
        return [f"{part!r} is not a lab.parts.base.Part"]
    problems = [f"{name} should be {kind.__name__}, got {getattr(part, name)!r}" for name, kind in TYPES.items()
                if not isinstance(getattr(part, name), kind)]
    if isinstance(part.id, str) and not part.id.isidentifier():
        problems.append(f"id {part.id!r} should be a notebook name (letters, digits, _)")
    if not (isinstance(part.questions, tuple) and part.questions and all(
            isinstance(q, tuple) and len(q) == 2 and all(isinstance(v, str) and v for v in q) for q in part.questions)):
        problems.append(f"questions should be a non-empty tuple of (question id, label), got {part.questions!r}")
    problems += [f"needs {n!r}: the runner resolves only {NEEDS}" for n in part.needs if n not in NEEDS]
    problems += [f"provides {n!r}: the runner knows only {PROVIDES}" for n in part.provides if n not in PROVIDES]
    if not isinstance(part.parameters, tuple) or not all(isinstance(p, str) for p in part.parameters):
        problems.append(f"parameters should be a tuple of names, got {part.parameters!r}")
    else:
        problems += [f"parameter {p!r} has no Spec in lab.core.config.PARAMETERS" for p in part.parameters
                     if p not in PARAMETERS]
    for name, arity in SIGNATURES.items():
        member = getattr(part, name)
        if member is None and name not in ("runs", "section", "findings"):
            continue
        if not callable(member):
            problems.append(f"{name} should be callable, got {member!r}")
            continue
        try:
            inspect.signature(member).bind(*range(arity))
        except TypeError as exc:
            problems.append(f"{name} should take {arity} arguments: {exc}")
        except ValueError:  # a builtin without a signature
            pass
    return problems

