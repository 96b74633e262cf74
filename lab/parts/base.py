"""What the parts share: the `Part` interface, the runs a part makes (`Runs`, counted as `Work`: what trains is what
the estimate counts), training interleaved by epoch, reuse of an earlier part's block (docs/architecture.md)."""
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
from ..engine.interleave import abba
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
    builds: int = 0        # C++ programs compiled (C10's, where this machine has not built it)
    settings: tuple = ()   # per trained run: (step_setting, steps in its batches, epochs, its share of `steps`)
    extra_s: float = 0.0   # seconds of further rounds it may spend where a claim is still open (its budget)...
    round: tuple = ()      # ...a round being one epoch of each setting of its block, as `settings` counts them...
    samples: int = 0       # ...and at most as many rounds as the steady epochs each setting has (parts.decide)

    def __add__(self, other: "Work") -> "Work":
        return Work(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))


def steady_epochs(config: Config, strict: bool = False) -> int:
    """Steady epochs of a run (lab.core.stats.steady): all but the warm-up; a one-epoch run's one unless `strict`."""
    return config.epochs - 1 if strict or config.epochs > 1 else 1


def planned_steps(config: Config, world_size: int = 1, test: bool = False) -> int:
    """Training steps a run of `config` takes per process (`test`: its evaluations' batches, also capped)."""
    synthetic = config.dataset == "synthetic"
    images = (config.synthetic_test if synthetic else 10_000) if test else (
        config.synthetic_train if synthetic else 50_000)
    batches = math.ceil(math.ceil(images / world_size) / config.batch_size)
    return config.epochs * (batches if config.max_batches is None else min(batches, config.max_batches))


# What changes a training step's cost (the estimate prices steps per setting): the device, the precision, the
# batch, the memory format, compilation, the loader and its worker processes (on 2 cores they take compute).
STEP_FIELDS = ("device_type", "amp", "batch_size", "channels_last", "compile", "loader", "workers")


def step_setting(values: dict) -> tuple:
    """STEP_FIELDS' (field, value) pairs of a record or resolved configuration; the on-device loader: 0 workers."""
    values = {**values, "workers": 0 if values.get("loader") == "tensor" else values.get("workers")}
    return tuple((k, values.get(k)) for k in STEP_FIELDS)


@dataclass
class Runs:
    """A part's `block` of settings, trained interleaved, or the same runs taken from the block of part `reused_from`
    (`wanted`: tag -> Config); `extra`: the work beside them (profiled steps, launches)."""

    block: list[Config] = field(default_factory=list)
    reused_from: str | None = None
    wanted: dict[str, Config] = field(default_factory=dict)
    extra: Work = field(default_factory=Work)

    def work(self, batch_size: int) -> Work:
        """The block's work in steps of `batch_size`, plus `extra`; reused runs cost nothing."""
        work = self.extra
        if self.reused_from is None:
            for c in self.block:
                key, compiled = self._setting(c)
                steps = planned_steps(c) * c.batch_size / batch_size
                work += Work(steps=steps, runs=1, compiles=int(compiled),
                             evals=planned_steps(c, test=True) if c.evaluate else 0,
                             settings=((key, planned_steps(c), c.epochs, steps),))
        return work

    def round(self, batch_size: int) -> tuple:
        """One more interleaved round of the block (parts.more_rounds: an epoch of each setting), as Work.settings."""
        each = [(c, planned_steps(c) // c.epochs) for c in self.block]
        return tuple((self._setting(c)[0], n, 1, n * c.batch_size / batch_size) for c, n in each)

    @staticmethod
    def _setting(c: Config) -> tuple[tuple, bool]:
        """A run's step_setting as it will resolve, and whether it compiles."""
        resolved = resolve(c, log=lambda msg: None, measure=False)
        return (step_setting({**resolved.config.to_dict(), "device_type": resolved.device.type}),
                resolved.config.compile != "off")


# Fields two runs may differ in and still be the same measurement (device: compared resolved)
NOT_THE_SETTING = ("experiment", "tag", "extra", "checkpoint", "resume", "device")


def setting(config: Config) -> dict:
    """What a run measures, as its records carry it: the resolved configuration less labels, + device type, threads."""
    resolved = resolve(config, log=lambda msg: None, measure=False)
    values = {k: v for k, v in resolved.config.to_dict().items() if k not in NOT_THE_SETTING}
    return {**values, "device_type": resolved.device.type, "threads": resolved.threads}


@dataclass
class Report:
    """The report a part runs in: its folder, the Runs planned for the parts before it (`planned`), `fast_probe`:
    a --fast probe's result to plan with instead of this machine's, and `machine`: what the plans asked this
    machine (`fact`), kept so that a replay of the report plans as it did (lab.report.estimate.replay)."""

    results_dir: Path
    planned: dict[str, Runs] = field(default_factory=dict)
    fast_probe: dict | None = None
    machine: dict = field(default_factory=dict)

    def fact(self, name: str, ask):
        """`ask()`'s answer (a JSON value), asked once and kept in `machine` under `name`."""
        if name not in self.machine:
            self.machine[name] = ask()
        return self.machine[name]

    def reusable(self, wanted: dict[str, Config]) -> str | None:
        """The earlier part whose block has (or will have) every wanted run, by tags and settings alone, or None."""
        mine = next(iter(wanted.values())).experiment
        folders = sorted(p.parent.name for p in Path(self.results_dir).glob("*/records.jsonl"))
        for source in dict.fromkeys([*self.planned, *folders]):
            if source == mine:
                continue
            if source in folders:  # it ran: its records
                found = find_reusable(self.results_dir, source, wanted) is not None
            else:  # not yet run: its plan
                block = {c.tag: setting(c) for c in self.planned[source].block}
                found = self.planned[source].reused_from is None and all(
                    block.get(tag) == setting(config) for tag, config in wanted.items())
            if found:
                return source
        return None


def find_reusable(results_dir, source: str, wanted: dict[str, Config]) -> dict[str, list[dict]] | None:
    """`source`'s records of every wanted run (tag -> records) where all are of one block, complete and of the same
    setting; else None."""
    records = [r for r in files.read_jsonl(Path(results_dir) / source / "records.jsonl")
               if r.get("tag") in wanted and not r.get("extra", {}).get("look")]  # the planned block's
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
    """`source`'s runs (find_reusable) copied into `out` as this part's (its experiment and tag, `reused_from`), or
    None."""
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
    """Train several settings interleaved by epoch (lab.engine.interleave.abba); one that diverges drops out. Every
    record carries the block's id (extra["block"]), by which a later part may `reuse` them."""
    block = uuid.uuid4().hex[:12]
    configs = [c.replace(extra={**c.extra, "block": block}) for c in configs]
    with progress.bar(configs[0].experiment if configs else "", sum(map(planned_steps, configs))):
        runs, records = dict(enumerate(training_run(c, results_dir=out) for c in configs)), []
        for order in abba(list(runs)):
            for i in [j for j in order if j in runs]:  # those still running
                try:
                    records.append(next(runs[i]))
                except StopIteration:
                    del runs[i]
            if not runs:
                break
    return records


def more_rounds(block: list[Config], rounds: int, look: int, out) -> list[dict]:
    """`rounds` more steady epochs of each setting in `block`, for a further look at claims still open: new runs (a
    warm-up epoch first), trained interleaved by epoch like the planned ones, their records marked with the look."""
    return interleave([c.replace(epochs=rounds + 1, extra={**c.extra, "look": look}) for c in block], out)


def more_of_block(runs: Callable) -> Callable:
    """A part's `more` where its block trains what it compares: the settings the open claims name (by tag; where
    their names are not all tags, the whole block), for more rounds."""
    def more(config: Config, params: dict, out, report, still: list, rounds: int, look: int) -> list[dict]:
        block, names = runs(config, params, report).block, {str(n) for claim in still for n in claim[:2]}
        named = [c for c in block if c.tag in names]
        return more_rounds(named if len(named) == len(names) else block, rounds, look, out)
    return more


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
    """A part's claims keyed (a, b, metric) as strings, from the verdicts table, or decided now by `verdicts` where
    the table has none (a report from before it)."""
    stored = results.comparisons(results_dir, part_id)
    return stored or {tuple(map(str, k)): c for k, c in verdicts(records, results_dir).items()}


def device_available(name: str) -> bool:
    return name == "cpu" or (name == "cuda" and torch.cuda.is_available())


# Notebook parameters every training part has (a part's `parameters` name its own); their meaning is their Spec's.
COMMON = ("results_dir", "data", "dataset", "device", "batch_size", "epochs", "max_batches", "lr", "seed")
LOOKS = ("extra_rounds_s", "extra_rounds_target")  # a part with `more`: further rounds where a claim is still open
DEFAULT_WORKERS = 2  # the lab's baseline worker count, where no part of the report measured the best one


@dataclass(frozen=True)
class Part:
    """A part of the lab, as its module declares it (`PART = Part(...)`): the registry, the runner, the estimate,
    the summary and `compare` know a part only through these members (docs/architecture.md's table)."""

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
    more: Callable | None = None  # (config, params, out, report, open claims, rounds, look): more rounds of them
    needs: tuple = ()
    provides: tuple = ()

    def make(self, config: Config, params: dict, out, report: Report) -> list[dict]:
        """Make the part's runs into `out`: its `measure`, or train them."""
        if self.measure is not None:
            return self.measure(config, params, out, report)
        return train(self.runs(config, params, report), out, report.results_dir)


# Each member's arguments, by position (a member may name them as it likes); None: the member may be absent.
SIGNATURES = {"runs": 3, "section": 3, "findings": 2, "measure": 4, "speed_family": 3, "verdicts": 2, "more": 7}
TYPES = {"id": str, "title": str, "needs": tuple, "provides": tuple}
NEEDS = ("best_workers",)
PROVIDES = ("best_workers", "model_file", "compile_s", "calibration")


def check(part) -> list[str]:
    """What is wrong with a part's declaration (its members' types and signatures, questions, parameters): [] if
    nothing."""
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

