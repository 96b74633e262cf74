"""The report's estimate: every part's planned work (lab.parts.plan) times the costs measured in this report,
corrected by how far the finished parts were off; and the `Watcher`, which shows the part, setting, epoch, batch
and time left from the runs' progress lines (lab.engine.progress): a tqdm bar on a terminal, else a plain line."""
from __future__ import annotations

import json
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
from ..core.files import cache_dir, read_json, read_jsonl, save_json
from ..core.stats import steady
from ..engine.records import device_name
from ..engine.resolve import compute_precision, device_type
from ..parts.base import STEP_FIELDS, Report, Work, step_setting
from ..parts.tables import peaks_of
from .publish import log

# Costs nothing in this report has measured yet (the summary is counted as this many notebooks).
ASSUMED = {"notebook_s": 8.0, "step_s": 3.0, "eval_ratio": 0.35, "run_s": 3.0, "compile_s": 60.0, "launch_s": 10.0}
SUMMARY_NOTEBOOKS = 3
COSTS = "report-costs.json"  # in the cache folder


def measured_settings(records: list[dict]) -> tuple[dict, dict]:
    """What this report's runs measured over their steady epochs: per setting (lab.parts.base.step_setting) a
    step's seconds (the epoch less its wait for data, over its batches), and per loader and worker count the
    start-up per epoch and the wait per batch. Copies of reused runs and multi-process runs (C9's: their time is
    their launch's) are left out."""
    rows = [r for r in records if r.get("status") == "ok" and r.get("total_s") is not None and r.get("images")
            and not r.get("reused_from") and (r.get("world_size") or 1) == 1]
    if not rows:
        return {}, {}
    df = steady(pd.DataFrame(rows)).copy()
    df["key"] = [step_setting(r) for r in df.to_dict("records")]
    df["batches"] = df["images"] / df["batch_size"]
    load = df["load_s"].fillna(0.0) if "load_s" in df else 0.0
    df["step_total"] = df["total_s"] - load
    steps = {k: float(g["step_total"].sum() / g["batches"].sum()) for k, g in df.groupby("key", sort=False)}
    loaders = {}
    if {"load_s", "loader_start_s"} <= set(df):
        timed = df.dropna(subset=["load_s", "loader_start_s"])
        for key, g in timed.groupby(timed["key"].map(lambda k: (dict(k)["loader"], dict(k)["workers"])), sort=False):
            loaders[key] = (float(g["loader_start_s"].mean()),
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
    """Seconds for planned work: notebook start-up, steps, test batches, run set-up, compilation, launches. Each
    cost says where it came from: 'assumed', 'last report' (this machine's cache) or 'measured' (in this report).
    Trained steps are priced by their setting as measured (`learn`), else as the nearest measured setting
    (`fallbacks`); other steps (profiled, forward-only, launched) at `step_s`. `factor` scales the remaining plan
    by how far the finished parts were off."""

    costs: dict = field(default_factory=lambda: dict(ASSUMED))
    sources: dict = field(default_factory=lambda: {k: "assumed" for k in ASSUMED})
    factor: float = 1.0
    steps: dict = field(default_factory=dict)
    loaders: dict = field(default_factory=dict)
    fallbacks: dict = field(default_factory=dict)  # wanted setting -> the measured one that priced it
    peaks: dict | None = None  # report.json's measured peaks per device: another precision's step scaled by them

    def learn(self, records: list[dict]) -> None:
        """Price steps by setting from every record this report has so far."""
        self.steps, self.loaders = measured_settings(records)

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
        cost *= self.precision_ratio(h, k)
        start, wait = self.loaders.get((k["loader"], k["workers"])) or self.loaders.get(
            (h["loader"], h["workers"]), (0.0, 0.0))
        return steps * (cost + wait) + epochs * start

    def precision_ratio(self, have: dict, want: dict) -> float:
        """How much faster `want`'s precision computes than `have`'s on this device, as the report's start
        measured their peaks (bf16 against fp32: the matmul/conv probes' ratio); 1 where either is unknown."""
        peaks = (self.peaks or {}).get(want["device_type"]) or {}
        a, b = compute_precision(want["device_type"], have["amp"]), compute_precision(want["device_type"], want["amp"])
        return peaks[a] / peaks[b] if a != b and peaks.get(a) and peaks.get(b) else 1.0

    def seconds(self, work: Work, notebooks: float = 1.0) -> float:
        c = self.costs
        priced = sum(self.step_seconds(*run) for run in work.settings)
        unpriced = work.steps - sum(run[3] for run in work.settings)  # profiled, forward-only, launched steps
        return (notebooks * c["notebook_s"] + priced + max(0.0, unpriced) * c["step_s"]
                + work.evals * c["step_s"] * c["eval_ratio"]
                + work.runs * c["run_s"] + work.compiles * c["compile_s"] + work.launches * c["launch_s"]
                + work.extra_s)

    def use(self, costs: dict, source: str) -> None:
        for key, value in costs.items():
            if key in self.costs and isinstance(value, (int, float)) and not pd.isna(value) and value >= 0:
                self.costs[key], self.sources[key] = float(value), source

    def describe(self) -> str:
        c, s = self.costs, self.sources
        text = (f"{c['step_s']:.2f} s a step ({s['step_s']}), {c['run_s']:.1f} s a run's set-up and first-epoch extra "
                f"({s['run_s']}), {c['notebook_s']:.1f} s a notebook's start ({s['notebook_s']}), "
                f"{c['compile_s']:.0f} s a compilation ({s['compile_s']}), {c['launch_s']:.0f} s a launch "
                f"({s['launch_s']})")
        if self.steps:
            text += f"; trained steps priced by setting, {len(self.steps)} measured in this report"
        if self.fallbacks:
            text += "; not measured yet, priced as the nearest measured: " + "; ".join(
                f"{setting_text(want, have)} as {setting_text(have, want)}"
                + (" (scaled by the measured peaks)" if self.precision_ratio(dict(have), dict(want)) != 1.0 else "")
                for want, have in self.fallbacks.items())
        return text


def calibrate(records: list[dict], wall_s: float, notebook_s: float) -> dict:
    """Costs measured from one training part (C2: one run): the steady step (an epoch's total over its
    batches, the warm-up epoch left out) and the run's set-up plus first-epoch extra (the notebook's wall
    time less the kernel's start and the steady cost of every epoch)."""
    ok = pd.DataFrame([r for r in records if r.get("status") == "ok" and r.get("total_s") is not None])
    if not len(ok) or not (ok["images"] > 0).all():
        return {}
    calm = steady(ok)
    step_s = calm["total_s"].sum() / (calm["images"] / calm["batch_size"]).sum()
    all_batches = (ok["images"] / ok["batch_size"]).sum()
    return {"step_s": float(step_s), "run_s": max(0.0, float(wall_s - notebook_s - step_s * all_batches))}


def cached_costs() -> dict:
    """The costs each machine's last report measured, per device and batch ({} where there is no cache)."""
    cached = read_json(cache_dir() / COSTS, {})
    return cached if isinstance(cached, dict) else {}


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
            if "done" in event:
                self.done_steps[str(event.get("run"))] = int(event["done"])
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

    def __init__(self, meta: dict, out: Path, defaults: dict, cached: bool = True):
        """`cached`: start from this machine's costs of its last report, and say the plan and the first guess
        (the runner); else from assumed costs, silently (a replay)."""
        self.meta, self.out = meta, out
        self.calibrates = calibrating(meta["parameters"])
        self.params = {name: {**defaults.get(name, {}), **params} for name, params in meta["parameters"].items()}
        self.plan: dict[str, Work] = {}
        self.replan()
        self.estimate = Estimate(peaks=peaks_of(results.read(out, part="report")))
        self.ran: list[str] = []  # the notebooks this session ran
        self.taken, self.foreseen = 0.0, 0.0  # the parts finished after calibration: seconds taken, predicted
        meta["sessions"] = meta.get("sessions", 0) + 1
        if not cached:
            return
        common = {k: v for p in meta["parameters"].values() for k, v in p.items()}
        self.key = (f"{device_name(torch.device(device_type(common.get('device', 'auto'))))} | batch "
                    f"{common.get('batch_size', 128)}")
        costs = cached_costs().get(self.key, {})
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
        report = Report(self.out)
        finder = next((p.id for p in parts.PARTS if "best_workers" in p.provides), None)
        for name, params in self.params.items():
            if name in self.meta["done"] and name in self.plan:
                continue
            first = first_count(report, finder) if finder not in self.meta["done"] else None
            if first is not None and "best_workers" in parts.BY_ID[name].needs and params.get("workers") is None:
                params = {**params, "workers": first}
            try:
                self.plan[name] = parts.plan(name, params, report)
            except Exception as exc:  # noqa: BLE001 - an estimate never stops a report
                log(f"      (no estimate for {name}: {type(exc).__name__}: {exc})")
                self.plan[name] = Work()

    def finished(self, name: str, seconds: float, predicted: float, elapsed: float, watcher) -> None:
        self.ran.append(name)
        self.estimate.learn([r for done in self.meta["done"] for r in read_jsonl(self.out / done / "records.jsonl")])
        if self.plan.get(name) == Work():  # trains nothing: its time is a notebook's start
            self.estimate.use({"notebook_s": seconds}, "measured")
        elif name == self.calibrates:
            records = read_jsonl(self.out / name / "records.jsonl")
            self.estimate.use(calibrate(records, seconds, self.estimate.costs["notebook_s"]), "measured")
        elif "estimate" in self.meta:
            self.taken += seconds
            self.foreseen += predicted
            self.estimate.factor = self.taken / self.foreseen if self.foreseen else 1.0
        self.replan()
        if name == self.calibrates:
            self.estimate.fallbacks = {}
            left = watcher.left()
            self.meta["estimate"] = {"after": name, "elapsed_s": round(elapsed, 1), "total_s": round(elapsed + left, 1),
                                     "costs": dict(self.estimate.costs)}
            log(f"estimate: about {clock(elapsed + left)} in all, {clock(left)} from now "
                f"({self.estimate.describe()})")

    def save_costs(self) -> None:
        """This machine's measured costs, for the first guess of the next report (a compilation from the parts
        that measure one, a launch from the time of the parts that launch beyond their steps)."""
        costs = {k: v for k, v in self.estimate.costs.items() if self.estimate.sources[k] == "measured"}
        compiled = results.read(self.out, metric="compile_s")["value"].dropna()  # the parts that provide it
        if len(compiled):
            costs["compile_s"] = float(compiled.iloc[-1])
        for name, work in self.plan.items():
            took = self.meta["done"].get(name)
            if work.launches and took:
                rest = self.estimate.seconds(Work(steps=work.steps, runs=work.runs))
                costs["launch_s"] = max(0.0, (took - rest) / work.launches)
        cached = cached_costs()
        try:
            save_json(cache_dir() / COSTS, {**cached, self.key: {**cached.get(self.key, {}), **costs}})
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
    temporary folder, so the plan sees only them), with assumed costs, set against the report's actual seconds:
    {"after", "parts": {name: (predicted, actual)}, "elapsed_s", "total_s", "actual_s", "error", "costs"}.
    `defaults`: each notebook's own parameters (the runner's)."""
    import shutil
    import tempfile

    folder = Path(folder)
    meta = json.loads((folder / "report.json").read_text())
    names, done = list(meta["parameters"]), meta["done"]
    after = after or calibrating(names)
    known = names[:names.index(after) + 1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name in known:
            if (folder / name).is_dir():
                shutil.copytree(folder / name, out / name)
        rows = results.read(folder)
        (out / results.MEASUREMENTS).write_text(results.to_json(rows[rows["part"].isin([*known, "report"])]))
        m = {"parameters": meta["parameters"], "done": {}}
        timing = ReportTiming(m, out, defaults or {}, cached=False)
        watcher = Watcher(out / "progress.jsonl", timing.plan, timing.estimate)
        elapsed = 0.0
        for name in known:
            predicted = timing.estimate.seconds(timing.plan.get(name, Work()))
            m["done"][name] = watcher.finished[name] = done[name]
            elapsed += done[name]
            timing.finished(name, done[name], predicted, elapsed, watcher)
        e = timing.estimate
        later = {n: e.seconds(timing.plan[n]) * e.factor for n in names if n not in known}
        summary = e.seconds(Work(), SUMMARY_NOTEBOOKS) * e.factor
    actual = meta.get("took_s") or sum(done.values())
    total = elapsed + sum(later.values()) + summary
    rows = {n: (round(s, 1), done.get(n)) for n, s in later.items()}
    rows["summary"] = (round(summary, 1), round(actual - sum(done.values()), 1))
    return {"after": after, "parts": rows, "elapsed_s": round(elapsed, 1), "total_s": round(total, 1),
            "actual_s": actual, "error": (total - actual) / actual, "costs": e.describe()}
