"""The report's estimate: every part's planned work (lab.parts.plan) times the costs measured in this report,
corrected by how far the finished parts were off; and the `Watcher`, which shows the part, setting, epoch, batch
and time left from the runs' progress lines (lab.engine.progress): a tqdm bar on a terminal, else a plain line."""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from .. import parts
from ..core import results
from ..core.errors import LabError
from ..core.files import cache_dir, load_json, read_json, read_jsonl, update_json
from ..core.stats import steady
from ..engine.records import device_name
from ..engine.resolve import compute_precision, device_type
from ..parts.base import STEP_FIELDS, Report, Work, step_setting
from ..parts.tables import peaks_of
from .publish import log

# Costs nothing in this report has measured yet (the summary is counted as this many notebooks); build_s: the C++
# program's compilation (lab.engine.cpp: ~25 s on an idle core), not torch.compile's.
ASSUMED = {"notebook_s": 8.0, "step_s": 3.0, "eval_ratio": 0.35, "run_s": 3.0, "compile_s": 60.0, "launch_s": 10.0,
           "build_s": 25.0}
SUMMARY_NOTEBOOKS = 3
COSTS = "report-costs.json"  # in the cache folder


def worker_starts(rows: pd.DataFrame, batches) -> dict:
    """Per loader and worker count of the runs whose worker processes start every epoch (not persistent): what an
    epoch's first batch took beyond the epoch's other batches, over the steady epochs of two batches or more. The
    first batch pays for the processes' start (measured: 1.2-2.6 s on 2 cores, where a step takes 2 s), so a step
    measured with them is dearer than the step a run without them takes, by that much per epoch."""
    starting = {r["run_id"]: (r["loader"], r["workers"]) for r in rows.to_dict("records")
                if r.get("loader") == "torch" and (r.get("workers") or 0) > 0 and not r.get("persistent_workers")}
    b = pd.DataFrame([x for x in batches if x.get("run_id") in starting and (x.get("rank") or 0) == 0
                      and isinstance(x.get("train_s"), (int, float)) and isinstance(x.get("batch"), int)])
    if not len(b):
        return {}
    calm = set(zip(rows["run_id"], rows["epoch"]))
    extras: dict = {}
    for (run, epoch), g in b.groupby(["run_id", "epoch"]):
        if (run, epoch) in calm and len(g) > 1:
            first = g["batch"] == g["batch"].min()
            extra = g.loc[first, "train_s"].mean() - g.loc[~first, "train_s"].mean()
            extras.setdefault(starting[run], []).append(extra)
    return {k: max(0.0, float(sum(v) / len(v))) for k, v in extras.items()}


def measured_settings(records: list[dict], batches=()) -> tuple[dict, dict]:
    """What this report's runs measured over their steady epochs: per setting (lab.parts.base.step_setting) a
    step's seconds (the epoch less its wait for data and its workers' start, over its batches), and per loader and
    worker count the start-up per epoch (with the workers' start: worker_starts, from `batches`, the runs' batch
    lines) and the wait per batch. Copies of reused runs and multi-process runs (C9's: their time is their
    launch's) are left out."""
    rows = [r for r in records if r.get("status") == "ok" and r.get("total_s") is not None and r.get("images")
            and not r.get("reused_from") and (r.get("world_size") or 1) == 1]
    if not rows:
        return {}, {}
    df = steady(pd.DataFrame(rows)).copy()
    df["key"] = [step_setting(r) for r in df.to_dict("records")]
    df["batches"] = df["images"] / df["batch_size"]
    starts = worker_starts(df, batches)
    kept = df["persistent_workers"].fillna(False) if "persistent_workers" in df else [False] * len(df)
    df["start"] = [0.0 if k else starts.get((dict(key)["loader"], dict(key)["workers"]), 0.0)
                   for key, k in zip(df["key"], kept)]
    load = df["load_s"].fillna(0.0) if "load_s" in df else 0.0
    df["step_total"] = df["total_s"] - load - df["start"]
    steps = {k: float(g["step_total"].sum() / g["batches"].sum()) for k, g in df.groupby("key", sort=False)}
    loaders = {}
    if {"load_s", "loader_start_s"} <= set(df):
        timed = df.dropna(subset=["load_s", "loader_start_s"])
        for key, g in timed.groupby(timed["key"].map(lambda k: (dict(k)["loader"], dict(k)["workers"])), sort=False):
            loaders[key] = (float((g["loader_start_s"] + g["start"]).mean()),
                            float((g["load_s"] - g["loader_start_s"]).sum() / g["batches"].sum()))
    return steps, loaders


def nearest(want: tuple, measured) -> tuple | None:
    """The measured setting nearest `want`: fewest differing fields, then the nearest worker count."""
    w = dict(want)

    def distance(key):
        k = dict(key)
        return (sum(k[f] != w[f] for f in STEP_FIELDS if f != "workers"),
                abs((k["workers"] or 0) - (w["workers"] or 0)))
    return min(measured, key=distance, default=None)


def setting_text(key: tuple, other: tuple | None = None) -> str:
    """A setting in words (only the fields where it differs from `other`)."""
    o = dict(other or ())
    return ", ".join(f"{k} {v}" for k, v in key if k not in o or o[k] != v)


@dataclass
class Estimate:
    """Seconds for planned work: notebook start-up, steps, test batches, run set-up, compilation, launches, further
    rounds. Each cost says where it came from: 'assumed', 'last report' (this machine's cache) or 'measured' (in
    this report). Trained steps are priced by their setting as measured (`learn`), else as the nearest measured
    setting (`fallbacks`), in another layout or precision scaled as the --fast probe measured the two (the plans'
    `machine` fact), else by the report's measured peaks; other steps (profiled, forward-only, launched) at
    `step_s`. `factor` scales the remaining plan by how far the finished parts were off."""

    costs: dict = field(default_factory=lambda: dict(ASSUMED))
    sources: dict = field(default_factory=lambda: {k: "assumed" for k in ASSUMED})
    factor: float = 1.0
    steps: dict = field(default_factory=dict)
    loaders: dict = field(default_factory=dict)
    fallbacks: dict = field(default_factory=dict)  # wanted setting -> the measured one that priced it
    peaks: dict | None = None  # report.json's measured peaks per device: another precision's step scaled by them
    machine: dict = field(default_factory=dict)  # the plans' facts (lab.parts.base.Report.fact): the --fast probe

    def learn(self, records: list[dict], batches=()) -> None:
        """Price steps by setting from every record (and batch line) this report has so far."""
        self.steps, self.loaders = measured_settings(records, batches)

    def step_seconds(self, key: tuple, steps: float, epochs: int, counted: float) -> float:
        """One run of setting `key`: `steps` of its batch over `epochs` epochs (`counted` in steps of the
        profile's batch): steps, waits for data and loader start-ups, as measured for the nearest setting."""
        have = key if key in self.steps else nearest(key, self.steps)
        if have is None:
            return counted * self.costs["step_s"]
        if have != key:
            self.fallbacks[key] = have
        h, k = dict(have), dict(key)
        cost = self.steps[have] * k["batch_size"] / h["batch_size"]  # another batch: the same cost per image
        cost *= self.ratio(h, k)[0]
        start, wait = self.loader(h, k)
        return steps * (cost + wait) + epochs * start

    def loader(self, have: dict, want: dict) -> tuple[float, float]:
        """`want`'s loader's start-up per epoch and wait per batch: as measured for its loader and worker count, else
        for the nearest count that also has (or also has no) worker processes to start; a loader without them
        starts nothing."""
        mine = self.loaders.get((want["loader"], want["workers"]))
        if mine:
            return mine
        workers = bool(want["workers"])
        alike = [k for k in self.loaders if k[0] == want["loader"] and bool(k[1]) == workers]
        if alike:
            return self.loaders[min(alike, key=lambda k: abs((k[1] or 0) - (want["workers"] or 0)))]
        start, wait = self.loaders.get((have["loader"], have["workers"]), (0.0, 0.0))
        return (start if workers else 0.0), (0.0 if want["loader"] == "tensor" else wait)

    def ratio(self, have: dict, want: dict) -> tuple[float, str | None]:
        """How much `want`'s step costs against `have`'s where their layout or precision differ, and from what:
        the --fast probe's eager steps of both (measured on this machine at the report's batch), else for another
        precision the ratio of the peaks the report's start measured (bf16 against fp32: the matmul/conv
        probes'); (1, None) where neither says."""
        device, probe = want["device_type"], (self.machine.get("fast probe") or {}).get("step_s") or {}
        if (have["amp"], have["channels_last"]) == (want["amp"], want["channels_last"]):
            return 1.0, None
        a, b = (probe.get(json.dumps({"channels_last": bool(x["channels_last"]), "amp": x["amp"]}))
                for x in (have, want))
        eager = have["compile"] == want["compile"] == "off" and device == "cpu"
        if eager and isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
            return b / a, "the --fast probe's steps"
        peaks = (self.peaks or {}).get(device) or {}
        p, q = compute_precision(device, have["amp"]), compute_precision(device, want["amp"])
        if p != q and peaks.get(p) and peaks.get(q):
            return peaks[p] / peaks[q], "the measured peaks"
        return 1.0, None

    def rounds_seconds(self, work: Work) -> float:
        """What parts.decide can spend of a part's budget for further rounds: a round is an epoch of each setting
        of its block (its price here); it affords floor(budget / round) - 1 rounds after a warm-up epoch, at most
        the samples each setting has, and spends nothing where that is under one."""
        each = sum(self.step_seconds(*s) for s in work.round)
        if work.extra_s <= 0 or each <= 0:
            return 0.0
        rounds = min(work.samples, math.floor(work.extra_s / each) - 1)
        return (rounds + 1) * each if rounds >= 1 else 0.0

    def seconds(self, work: Work, notebooks: float = 1.0) -> float:
        c = self.costs
        priced = sum(self.step_seconds(*run) for run in work.settings)
        unpriced = work.steps - sum(run[3] for run in work.settings)  # profiled, forward-only, launched steps
        return (notebooks * c["notebook_s"] + priced + max(0.0, unpriced) * c["step_s"]
                + work.evals * c["step_s"] * c["eval_ratio"]
                + work.runs * c["run_s"] + work.compiles * c["compile_s"] + work.launches * c["launch_s"]
                + work.builds * c["build_s"]
                + self.rounds_seconds(work))

    def use(self, costs: dict, source: str) -> None:
        for key, value in costs.items():
            if key in self.costs and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and 0 <= value < 1e9:  # NaN fails both; an int of hundreds of digits is not a cost
                self.costs[key], self.sources[key] = float(value), source

    def describe(self) -> str:
        c, s = self.costs, self.sources
        text = (f"{c['step_s']:.2f} s a step ({s['step_s']}), {c['run_s']:.1f} s a run's set-up and first-epoch extra "
                f"({s['run_s']}), {c['notebook_s']:.1f} s a notebook's start ({s['notebook_s']}), "
                f"{c['compile_s']:.0f} s a compilation ({s['compile_s']}), {c['launch_s']:.0f} s a launch "
                f"({s['launch_s']}), {c['build_s']:.0f} s the C++ program's build ({s['build_s']})")
        if self.steps:
            text += f"; trained steps priced by setting, {len(self.steps)} measured in this report"
        if self.fallbacks:
            text += "; not measured yet, priced as the nearest measured: " + "; ".join(
                f"{setting_text(want, have)} as {setting_text(have, want)}"
                + (f" (scaled by {why})" if (why := self.ratio(dict(have), dict(want))[1]) else "")
                for want, have in self.fallbacks.items())
        return text


def calibrate(records: list[dict], wall_s: float, notebook_s: float, batches=()) -> dict:
    """Costs measured from one training part (C2: one run): the steady step (measured_settings: its epochs less
    their waits and workers' start, over their batches) and the run's set-up plus first-epoch extra (the notebook's
    wall time less the kernel's start and every epoch at the steady epoch's cost)."""
    ok = pd.DataFrame([r for r in records if r.get("status") == "ok" and r.get("total_s") is not None])
    if not len(ok) or not (ok["images"] > 0).all():
        return {}
    calm = steady(ok)
    per_batch = calm["total_s"].sum() / (calm["images"] / calm["batch_size"]).sum()  # all an epoch's costs
    steps = measured_settings(records, batches)[0]
    step_s = next(iter(steps.values())) if len(steps) == 1 else per_batch
    epochs = per_batch * (ok["images"] / ok["batch_size"]).sum()
    return {"step_s": float(step_s), "run_s": max(0.0, float(wall_s - notebook_s - epochs))}


def cached_costs() -> dict:
    """The costs each machine's last report measured, per device and batch ({} where there is no cache; an entry
    that is not an object counts as absent, and Estimate.use takes only the finite, non-negative numbers)."""
    return {k: v for k, v in read_json(cache_dir() / COSTS, {}).items() if isinstance(v, dict)}


def clock(seconds: float) -> str:
    """7 s, 3 min 05 s, 1 h 02 min."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def first_count(report: Report, finder: str | None) -> int | None:
    """Before the part that finds the best worker count (C3) has run, the count the parts after it are planned
    with: the first of its planned sweep (a count its block measures, so the parts that reuse its runs are
    planned as reusing them), not the lab's default, which it may not try."""
    planned = report.planned.get(finder) if finder else None
    counts = [c.workers for c in planned.block if c.loader == "torch"] if planned else []
    return counts[0] if counts else None


# --- the runner's side ----------------------------------------------------------------------------------

class Watcher:
    """Follows $LAB_PROGRESS while the notebooks run and shows where the report is and the time left (`plan`:
    every part's Work, in run order); the runner calls `begin(name)` and `end(name, seconds)` around each one."""

    def __init__(self, path: Path, plan: dict, estimate: Estimate, stream=None, every: float = 5.0,
                 tty: bool | None = None):
        self.path, self.plan, self.estimate = Path(path), plan, estimate
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = every
        self.offset, self.current = 0, None
        self.done_steps: dict[str, int] = {}      # per run id, the steps done
        self.finished: dict[str, float] = {}      # part -> seconds taken
        self.predicted: dict[str, float] = {}     # part -> seconds predicted when it started
        self.last: dict = {}
        self.last_line, self.last_text, self.part_started = 0.0, "", time.time()
        self._bar, self._stop, self._thread, self._lock = None, threading.Event(), None, threading.Lock()

    # the runner's calls
    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        if self._bar is not None:
            self._bar.close()

    def begin(self, name: str) -> None:
        with self._lock:
            self.current, self.last, self.part_started = name, {}, time.time()
            self.done_steps.clear()
            self.predicted[name] = self.estimate.seconds(self.plan.get(name, Work()),
                                                         SUMMARY_NOTEBOOKS if name == "summary" else 1)

    def end(self, name: str, seconds: float) -> None:
        with self._lock:
            self.poll()
            self.finished[name] = seconds
            self.current = None

    def left(self) -> float:
        """Seconds left: the current part's unfinished share and every later part, scaled by `factor`."""
        e = self.estimate
        total = sum(e.seconds(w) for n, w in self.plan.items() if n not in self.finished and n != self.current)
        total += e.seconds(Work(), SUMMARY_NOTEBOOKS) if self.current != "summary" else 0.0
        if self.current is not None:
            planned = self.plan.get(self.current, Work())
            share = min(1.0, sum(self.done_steps.values()) / planned.steps) if planned.steps else 0.0
            predicted = self.predicted.get(self.current, e.seconds(planned))
            elapsed = time.time() - self.part_started
            total += max(predicted * (1 - share), (predicted - elapsed) if not share else 0.0, 0.0)
        return total * e.factor

    # reading the runs' lines
    def poll(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind("\n") + 1]
        self.offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):  # a line that is not an event (another writer's, cut short)
                continue
            if isinstance(event.get("done"), int) and not isinstance(event["done"], bool):
                self.done_steps[str(event.get("run"))] = event["done"]
            self.last = event

    def status(self) -> str:
        """The part, the setting (or the phase a note names), epoch and batch, and the time left."""
        e, where = self.last, self.current or "summary"
        if "note" in e:
            where += f": {e['note']}"
        elif "epoch" in e:
            where += (f": {e['tag'] or e['part']}, epoch {e['epoch']}/{e['epochs']}, "
                      f"batch {e['batch']}/{e['batches']}")
        return f"{where} · about {clock(self.left())} left"

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self.poll()
                self._show()

    def _show(self) -> None:
        if self.tty:
            total = sum(w.steps for w in self.plan.values())
            done = sum(w.steps for n, w in self.plan.items() if n in self.finished) + sum(self.done_steps.values())
            if self._bar is None:
                self._bar = tqdm(total=round(total), unit="step", file=self.stream, dynamic_ncols=True,
                                 bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}] {postfix}")
            self._bar.n = min(round(done), self._bar.total)
            self._bar.set_postfix_str(self.status())
            return
        now, line = time.time(), f"      {self.status()}"
        repeat = line == self.last_text and now - self.last_line < 6 * self.every  # nothing new: say it less often
        if now - self.last_line >= self.every and now - self.part_started >= 2 and not repeat:
            self.last_line, self.last_text = now, line
            print(line, file=self.stream, flush=True)


def calibrating(names) -> str | None:
    """The part among `names` whose one run calibrates the step and run costs (it provides "calibration")."""
    return next((p.id for p in parts.PARTS if "calibration" in p.provides and p.id in names), None)


class ReportTiming:
    """The report's plan (each part's Work) and estimate, and what they learn as parts finish: a part that trains
    nothing measures a notebook's start, the part `calibrates` names the step and run costs (the estimate is
    printed then), later parts correct the rest by how far they were off. After each part the parts still to run
    are planned again: their runs can depend on what the finished ones found (C3's best count, its block)."""

    def __init__(self, meta: dict, out: Path, defaults: dict, cached: bool = True, machine: dict | None = None):
        """`cached`: start from this machine's costs of its last report, and say the plan and the first guess
        (the runner); else from assumed costs, silently (a replay). `machine`: the answers the plans had from the
        machine (Report.fact; a replay's, from the report), else they ask this one. The estimate keeps these
        inputs in report.json, so that `replay` makes the same number."""
        self.meta, self.out, self.defaults = meta, out, defaults
        self.calibrates = calibrating(meta["parameters"])
        self.params = {name: {**defaults.get(name, {}), **params} for name, params in meta["parameters"].items()}
        self.plan: dict[str, Work] = {}
        self.machine = dict(machine or {})
        self.unplanned: dict[str, str] = {}  # part -> why it could not be planned (priced as a notebook's start)
        self.cached: dict = {}
        self.replan()
        self.estimate = Estimate(peaks=peaks_of(results.read(out, part="report")), machine=self.machine)
        self.ran: list[str] = []  # the notebooks this session ran
        self.taken, self.foreseen = 0.0, 0.0  # the parts finished after calibration: seconds taken, predicted
        meta["sessions"] = meta.get("sessions", 0) + 1
        if not cached:
            return
        common = {k: v for p in meta["parameters"].values() for k, v in p.items()}
        self.key = (f"{device_name(torch.device(device_type(common.get('device', 'auto'))))} | batch "
                    f"{common.get('batch_size', 128)}")
        costs = self.cached = cached_costs().get(self.key, {})
        self.estimate.use(costs, "last report")
        first = sum(self.estimate.seconds(w) for n, w in self.plan.items() if n not in meta["done"])
        total = sum(self.plan.values(), Work())
        log(f"plan: {total.steps:.0f} training steps, {total.evals} test batches, {total.runs} runs, "
            f"{total.compiles} compiled, {total.launches} launches; first guess "
            f"{clock(first + self.estimate.seconds(Work(), SUMMARY_NOTEBOOKS))} "
            f"({'costs from the last report on this machine' if costs else 'assumed costs; the estimate follows C2'})")

    def replan(self) -> None:
        """Plan every part not yet finished, in run order, from what the report folder holds now (lab.parts.plan:
        the same decision each part's run makes). The dict is updated in place: the Watcher reads it."""
        report = Report(self.out, machine=self.machine)
        finder = next((p.id for p in parts.PARTS if "best_workers" in p.provides), None)
        for name, params in self.params.items():
            if name in self.meta["done"] and name in self.plan:
                continue
            first = first_count(report, finder) if finder not in self.meta["done"] else None
            if first is not None and "best_workers" in parts.BY_ID[name].needs and params.get("workers") is None:
                params = {**params, "workers": first}
            try:
                self.plan[name] = parts.plan(name, params, report)
                self.unplanned.pop(name, None)
            except Exception as exc:  # noqa: BLE001 - an estimate never stops a report
                self.unplanned[name] = f"{type(exc).__name__}: {exc}"
                log(f"      (no estimate for {name}: {self.unplanned[name]})")
                self.plan[name] = Work()

    def finished(self, name: str, seconds: float, predicted: float, elapsed: float, watcher) -> None:
        self.ran.append(name)
        done = list(self.meta["done"])
        self.estimate.learn(self.lines(done, "records"), self.lines(done, "batches"))
        if self.plan.get(name) == Work():  # trains nothing: its time is a notebook's start
            self.estimate.use({"notebook_s": seconds}, "measured")
        elif name == self.calibrates:
            self.estimate.use(calibrate(self.lines([name], "records"), seconds, self.estimate.costs["notebook_s"],
                                        self.lines([name], "batches")), "measured")
        elif "estimate" in self.meta:
            self.taken += seconds
            self.foreseen += predicted
            self.estimate.factor = self.taken / self.foreseen if self.foreseen else 1.0
        if "compile_s" in parts.BY_ID[name].provides:  # Q5's compilation prices the later parts' ones
            self.estimate.use(self.compiled(name), "measured")
        self.replan()
        if name == self.calibrates:
            self.estimate.fallbacks = {}
            left = watcher.left()
            self.meta["estimate"] = {"after": name, "elapsed_s": round(elapsed, 1), "total_s": round(elapsed + left, 1),
                                     "costs": dict(self.estimate.costs),
                                     "inputs": {"defaults": self.defaults, "costs": self.cached,
                                                "machine": self.machine}}
            log(f"estimate: about {clock(elapsed + left)} in all, {clock(left)} from now "
                f"({self.estimate.describe()})")

    def lines(self, names, kind: str) -> list[dict]:
        """The `kind` lines (records, batches) of the parts `names` in this report folder."""
        return [r for name in names for r in read_jsonl(self.out / name / f"{kind}.jsonl")]

    def compiled(self, name: str) -> dict:
        """{"compile_s": the last compilation part `name` measured} ({} where it measured none)."""
        rows = results.read(self.out, part=name, metric="compile_s")["value"].dropna()
        return {"compile_s": float(rows.iloc[-1])} if len(rows) else {}

    def save_costs(self) -> None:
        """This machine's measured costs, for the first guess of the next report (a compilation from the parts
        that measure one, a launch from the time of the parts that launch beyond their steps, the C++ program's
        build where C10 built it)."""
        costs = {k: v for k, v in self.estimate.costs.items() if self.estimate.sources[k] == "measured"}
        compiled = results.read(self.out, metric="compile_s")["value"].dropna()  # the parts that provide it
        if len(compiled):
            costs["compile_s"] = float(compiled.iloc[-1])
        built, cached = (results.read(self.out, metric=m)["value"].dropna()
                         for m in ("cpp_build_s", "cpp_build_cached"))
        if len(built) and len(cached) and not cached.iloc[-1]:
            costs["build_s"] = float(built.iloc[-1])
        for name, work in self.plan.items():
            took = self.meta["done"].get(name)
            if work.launches and took:
                rest = self.estimate.seconds(Work(steps=work.steps, runs=work.runs))
                costs["launch_s"] = max(0.0, (took - rest) / work.launches)
        def change(cached: dict) -> dict:
            mine = cached.get(self.key)
            return {**cached, self.key: {**(mine if isinstance(mine, dict) else {}), **costs}}
        try:
            update_json(cache_dir() / COSTS, change)
        except OSError:  # a cache: a read-only home only costs the measured first guess
            pass

    def actual(self, took: float) -> float:
        """The report's duration: this session's, and for a resumed report also the notebooks that earlier
        sessions finished (the time between sessions is nobody's work)."""
        return took + sum(v for k, v in self.meta["done"].items() if k not in self.ran)

    def verdict(self, took: float) -> str:
        est, actual = self.meta.get("estimate"), self.actual(took)
        sessions = self.meta.get("sessions", 1)
        took_text = (f"took {clock(actual)}" if sessions == 1 else
                     f"took {clock(actual)} of notebooks over {sessions} sessions")
        if not est:
            return f"{took_text} (no estimate: {self.calibrates} did not run)"
        return (f"estimate vs actual: estimated {clock(est['total_s'])} after {est['after']}, {took_text} "
                f"({(actual - est['total_s']) / est['total_s']:+.0%})")


def replay(folder, after: str | None = None, defaults: dict | None = None) -> dict:
    """The estimate as it stood after part `after` (default: the part that calibrates) of the finished report in
    `folder`, made again by this code from that report's records of the parts up to `after` (copied into a
    temporary folder, so the plan sees only them) and from the inputs the report's estimate kept (each notebook's
    own parameters, the cached costs, the machine's answers; a report made before they were kept: the runner's
    defaults, the costs its estimate used, this machine's answers, named in "asked_here"), set against the report's
    actual seconds: {"after", "parts": {name: (predicted, actual)}, "elapsed_s", "total_s", "live_s", "actual_s",
    "error", "costs", "asked_here"}. A part it cannot plan is a LabError naming it."""
    import shutil
    import tempfile

    from .runner import notebook_defaults

    folder = Path(folder)
    path = folder / "report.json"
    meta = results.check_meta(path, load_json(path, way_out=results.REMAKE), required=("parameters", "done"))
    names, done = list(meta["parameters"]), meta["done"]
    after = after or calibrating(names)
    if after not in names:
        raise LabError(f"replay of {folder}: no part of it calibrates the estimate (its parts: {', '.join(names)})"
                       if after is None else f"replay of {folder}: it has no part {after}")
    known = names[:names.index(after) + 1]
    unfinished = [n for n in known if n not in done]
    if unfinished:
        raise LabError(f"replay of {folder}: {', '.join(unfinished)} did not finish in it (report.json's done)")
    estimate = meta.get("estimate") if isinstance(meta.get("estimate"), dict) else {}
    live = estimate if estimate.get("after") == after else {}
    inputs = live.get("inputs") if isinstance(live.get("inputs"), dict) else {}
    if defaults is None:
        defaults = inputs.get("defaults") or {n: notebook_defaults(n) for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name in known:
            if (folder / name).is_dir():
                shutil.copytree(folder / name, out / name)
        rows = results.read(folder)
        (out / results.MEASUREMENTS).write_text(results.to_json(rows[rows["part"].isin([*known, "report"])]))
        m = {"parameters": meta["parameters"], "done": {}}
        recorded = dict(inputs.get("machine") or {})
        timing = ReportTiming(m, out, defaults, cached=False, machine=recorded)
        if not timing.estimate.peaks and isinstance(meta.get("peaks"), dict):  # a report that kept them in report.json
            timing.estimate.peaks = meta["peaks"]
        timing.estimate.use(inputs.get("costs", live.get("costs") or {}), "last report")
        watcher = Watcher(out / "progress.jsonl", timing.plan, timing.estimate)
        elapsed = 0.0
        for name in known:
            predicted = timing.estimate.seconds(timing.plan.get(name, Work()))
            m["done"][name] = watcher.finished[name] = done[name]
            elapsed += done[name]
            timing.finished(name, done[name], predicted, elapsed, watcher)
        if timing.unplanned:
            raise LabError(f"replay of {folder}: cannot plan " + "; ".join(
                f"{n} ({why})" for n, why in timing.unplanned.items()) + ": its estimate would leave it out")
        e = timing.estimate
        later = {n: e.seconds(timing.plan[n]) * e.factor for n in names if n not in known}
        summary = e.seconds(Work(), SUMMARY_NOTEBOOKS) * e.factor
    elapsed = live.get("elapsed_s", elapsed)  # the live clock: it also counts what ran between the notebooks
    actual = meta.get("took_s") or sum(done.values())
    total = elapsed + sum(later.values()) + summary
    rows = {n: (round(s, 1), done.get(n)) for n, s in later.items()}
    rows["summary"] = (round(summary, 1), round(actual - sum(done.values()), 1))
    return {"after": after, "parts": rows, "elapsed_s": round(elapsed, 1), "total_s": round(total, 1),
            "live_s": live.get("total_s"), "actual_s": actual, "error": (total - actual) / actual,
            "costs": e.describe(), "asked_here": sorted(set(timing.machine) - set(recorded))}
