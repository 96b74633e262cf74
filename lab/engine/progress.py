"""Progress of the runs while they run: every training step goes through `step()`. In a notebook the report
runner is not driving, that moves a `tqdm.auto` bar; under the runner, whose kernels (and C9's processes) inherit
$LAB_PROGRESS, it appends a JSON line to that file (a few a second at most), which lab.report.estimate reads."""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from types import SimpleNamespace

from tqdm.auto import tqdm

ENV = "LAB_PROGRESS"
WRITE_EVERY = 0.25   # seconds between two progress lines of one process (an epoch's last step always goes)
_state = SimpleNamespace(bar=None, last_write=0.0)


@contextmanager
def bar(desc: str, total: int, unit: str = "step"):
    """A notebook progress bar over the `total` training steps of the runs inside the block, or its phases (None
    under the report runner, whose own display shows the progress). A bar of phases ends full: a failed setting
    leaves out some of them."""
    if os.environ.get(ENV) or total <= 0:
        yield None
        return
    _state.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
    try:
        yield _state.bar
    finally:
        if unit == "phase":
            _state.bar.total = _state.bar.n
        _state.bar.close()
        _state.bar = None


def step(run: str, part: str, tag: str, epoch: int, epochs: int, batch: int, batches: int) -> None:
    """One training step done: move the notebook bar and/or tell the report runner."""
    if _state.bar is not None:
        _state.bar.update(1)
        _state.bar.set_postfix_str(f"{tag or part} · epoch {epoch}/{epochs} · batch {batch}/{batches}", refresh=False)
    _write({"run": run, "part": part, "tag": tag, "epoch": epoch, "epochs": epochs, "batch": batch,
            "batches": batches, "done": (epoch - 1) * batches + batch}, force=batch == batches)


def phase(part: str, message: str) -> None:
    """A phase of a part's work that is not a training step: named to the report runner, a step of the bar."""
    note(part, message)
    if _state.bar is not None:
        _state.bar.update(1)
        _state.bar.set_postfix_str(message)


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
