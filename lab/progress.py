"""Progress of the runs while they run, and the report's time left.

A run (lab.train.run) reports every training step through `step()`. In a notebook that the report runner is
not driving, that moves a `tqdm.auto` bar (a widget in JupyterLab); under the runner, whose kernels inherit
$LAB_PROGRESS, it appends a JSON line to that file (at most a few a second per process, and always an epoch's
last step), so the progress comes from the runs themselves, C9's launched processes included. The runner
reads the file with a `Watcher`, which shows the part, the setting, the epoch and batch and the time left: a
tqdm bar where stderr is a terminal, a plain line every few seconds in logs and CI. The time left comes from
`Estimate`: the report's planned work (`Work`, counted by lab.experiments.plan) times costs measured in this
report (the first training part calibrates them), corrected by how far the finished parts were off.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import cache_dir, save_json

ENV = "LAB_PROGRESS"
WRITE_EVERY = 0.25   # seconds between two progress lines of one process (an epoch's last step always goes)


# --- the runs' side -------------------------------------------------------------------------------------

class _State:
    bar = None
    last_write = 0.0


_state = _State()


@contextmanager
def bar(desc: str, total: int):
    """A notebook progress bar over `total` training steps for the runs inside the block (tqdm.auto: a widget
    in JupyterLab, text elsewhere). None under the report runner, whose own display shows the progress."""
    if os.environ.get(ENV) or total <= 0:
        yield None
        return
    from tqdm.auto import tqdm

    _state.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr)
    try:
        yield _state.bar
    finally:
        _state.bar.close()
        _state.bar = None


def step(run: str, part: str, tag: str, epoch: int, epochs: int, batch: int, batches: int) -> None:
    """One training step done: move the notebook bar and/or tell the report runner."""
    if _state.bar is not None:
        _state.bar.update(1)
        _state.bar.set_postfix_str(f"{tag or part} · epoch {epoch}/{epochs} · batch {batch}/{batches}", refresh=False)
    _write({"run": run, "part": part, "tag": tag, "epoch": epoch, "epochs": epochs, "batch": batch,
            "batches": batches, "done": (epoch - 1) * batches + batch}, force=batch == batches)


def note(part: str, message: str) -> None:
    """A one-off phase the runner should name while it lasts (profiling, launching processes, compiling)."""
    _write({"part": part, "note": message}, force=True)


def _write(event: dict, force: bool) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    now = time.time()
    if not force and now - _state.last_write < WRITE_EVERY:
        return
    _state.last_write = now
    try:  # one short line per write (O_APPEND): lines of several processes do not interleave
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"t": now, "pid": os.getpid(), **event}) + "\n")
    except OSError:
        pass  # progress is a courtesy: never the reason a run fails


# --- the plan and the estimate ------------------------------------------------------------------------------

@dataclass
class Work:
    """What a part will do, counted from its plan before it runs."""

    steps: float = 0.0     # training steps, in steps of the profile's batch on the whole node
    evals: int = 0         # test batches evaluated
    runs: int = 0          # runs set up (model, loaders; their first epoch's extra cost)
    compiles: int = 0      # runs that compile their step (torch.compile)
    launches: int = 0      # torchrun launches (process start-up, process group)

    def __add__(self, other: "Work") -> "Work":
        return Work(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))


# Costs nothing in this report has measured yet (the summary is counted as this many notebooks).
ASSUMED = {"notebook_s": 8.0, "step_s": 3.0, "eval_ratio": 0.35, "run_s": 3.0, "compile_s": 60.0, "launch_s": 10.0}
SUMMARY_NOTEBOOKS = 3


def cost_cache() -> Path:
    return cache_dir() / "report-costs.json"


def cache_key(device: str, batch_size: int) -> str:
    return f"{device} | batch {batch_size}"


@dataclass
class Estimate:
    """Seconds for planned work: notebook start-up, steps, test batches, run set-up, compilation, launches.
    Each cost says where it came from: 'assumed', 'last report' (this machine's, from the cache) or
    'measured' (in this report). `factor` scales the remaining plan by how far the finished parts were off."""

    costs: dict = field(default_factory=lambda: dict(ASSUMED))
    sources: dict = field(default_factory=lambda: {k: "assumed" for k in ASSUMED})
    factor: float = 1.0

    def seconds(self, work: Work, notebooks: float = 1.0) -> float:
        c = self.costs
        return (notebooks * c["notebook_s"] + work.steps * c["step_s"] + work.evals * c["step_s"] * c["eval_ratio"]
                + work.runs * c["run_s"] + work.compiles * c["compile_s"] + work.launches * c["launch_s"])

    def use(self, costs: dict, source: str) -> None:
        for key, value in costs.items():
            if key in self.costs and isinstance(value, (int, float)) and value == value and value >= 0:
                self.costs[key], self.sources[key] = float(value), source

    def describe(self) -> str:
        c, s = self.costs, self.sources
        return (f"{c['step_s']:.2f} s a step ({s['step_s']}), {c['run_s']:.1f} s a run's set-up and first-epoch extra "
                f"({s['run_s']}), {c['notebook_s']:.1f} s a notebook's start ({s['notebook_s']}), "
                f"{c['compile_s']:.0f} s a compilation ({s['compile_s']}), {c['launch_s']:.0f} s a launch "
                f"({s['launch_s']})")


def calibrate(records: list[dict], wall_s: float, notebook_s: float) -> dict:
    """Costs measured from one training part (C2: one run): the steady step (an epoch's total over its
    batches, the warm-up epoch left out) and the run's set-up plus first-epoch extra (the notebook's wall
    time less the kernel's start and the steady cost of every epoch)."""
    import pandas as pd

    from .stats import steady

    ok = pd.DataFrame([r for r in records if r.get("status") == "ok" and r.get("total_s") is not None])
    if not len(ok) or not (ok["images"] > 0).all():
        return {}
    calm = steady(ok)
    step_s = calm["total_s"].sum() / (calm["images"] / calm["batch_size"]).sum()
    all_batches = (ok["images"] / ok["batch_size"]).sum()
    return {"step_s": float(step_s), "run_s": max(0.0, float(wall_s - notebook_s - step_s * all_batches))}


def load_costs(key: str) -> dict:
    try:
        return json.loads(cost_cache().read_text()).get(key, {})
    except (OSError, ValueError, AttributeError):
        return {}


def save_costs(key: str, costs: dict) -> None:
    path = cost_cache()
    try:
        cached = json.loads(path.read_text()) if path.exists() else {}
        cached = cached if isinstance(cached, dict) else {}
        save_json(path, {**cached, key: {**cached.get(key, {}), **costs}})
    except (OSError, ValueError):  # a cache: a read-only home only costs the measured first guess
        pass


def clock(seconds: float) -> str:
    """7 s, 3 min 05 s, 1 h 02 min."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# --- the runner's side ----------------------------------------------------------------------------------

class Watcher:
    """Follows $LAB_PROGRESS while the notebooks run and shows where the report is and the time left.
    `plan` holds every part's Work (in run order) and `estimate` the costs; the runner calls `begin(name)`
    and `end(name, seconds)` around each notebook."""

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
        later = [n for n in self.plan if n not in self.finished and n != self.current]
        total = sum(e.seconds(self.plan[n]) for n in later)
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
            from tqdm import tqdm

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
