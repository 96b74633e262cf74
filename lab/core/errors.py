"""Errors a user can act on, and interruptions: what the CLI turns into one line and an exit code.

SIGINT and SIGTERM during `train` become `KeyboardInterrupt` and `Terminated` (`interruptible`); the run keeps a
`RunState`, and `interruption_message` turns the two into the line that says what is saved and how to go on."""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class LabError(Exception):
    """An error the user can fix; the CLI prints its message on one line and exits with `exit_code`."""

    exit_code = 1


class ConfigError(LabError):
    """A bad value in the configuration (a usage error)."""

    exit_code = 2


class NotAReport(LabError):
    """A folder given as a report that is not one (no report.json, an unreadable one): the CLI exits 2."""

    exit_code = 2


class OtherSchema(NotAReport):
    """A report of another schema version: the lab version that wrote it reads it."""


class BadFile(LabError, ValueError):
    """A file the lab reads that is not what it should be (missing, empty, truncated, of the wrong type, a field out
    of range): one line naming the path, the field at fault and the way out. Exit 2, as for any bad input; also a
    ValueError, as the JSONDecodeError it replaces was."""

    exit_code = 2

    def __init__(self, path, problem: str, field: str | None = None, way_out: str = "delete it"):
        where = f"{path}: {field}" if field else str(path)
        super().__init__(f"{where} {problem}; {way_out}" if way_out else f"{where} {problem}")
        self.path, self.field, self.problem, self.way_out = str(path), field, problem, way_out


class Terminated(BaseException):
    """SIGTERM during `train`, as KeyboardInterrupt is SIGINT (a BaseException: no `except Exception` takes it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Interrupted(LabError):
    """Training stopped by a signal: the message says what is saved; exit 128 + the signal's number (130 for
    SIGINT, 143 for SIGTERM). `quiet`: say nothing (a rank other than 0, or the launcher, whose rank 0 speaks)."""

    def __init__(self, message: str, signum: int, quiet: bool = False):
        super().__init__(message)
        self.exit_code = 128 + int(signum)
        self.quiet = quiet


@dataclass
class RunState:
    """How far a run got: `epoch` the epoch being trained (None between epochs), `saved` the last epoch whose
    record and checkpoint are written (0: none; without a checkpoint, the last whose record is written)."""

    epoch: int | None = None
    saved: int = 0


def interruption_message(signum: int, state: RunState, checkpoint: str | None, results_dir=None) -> str:
    """One line: which signal, where it hit, what is kept and how to go on."""
    name = signal.Signals(signum).name
    where = (f"during epoch {state.epoch}" if state.epoch else f"after epoch {state.saved}" if state.saved
             else "before the first epoch")
    done = "epoch 1" if state.saved == 1 else f"epochs 1-{state.saved}"
    if not state.saved:
        tail = "no epoch finished, nothing to resume; run the command again to start over"
    elif checkpoint:
        what = "records and checkpoint" if results_dir is not None else "checkpoint"
        tail = (f"{done} {'is' if state.saved == 1 else 'are'} saved ({what}); run the same command with --resume "
                "to continue")
    elif results_dir is not None:
        tail = (f"the records of {done} are in {Path(results_dir) / 'records.jsonl'}; without a checkpoint "
                "(--checkpoint '') the run cannot be resumed")
    else:
        tail = f"{done} finished but nothing was saved (no --checkpoint, no --results)"
    return f"interrupted by {name} {where}: {tail}"


_received: list = []  # (signal number, time) of the first SIGINT/SIGTERM this process got during `train`


def _on_signal(signum, frame):
    """The first SIGINT raises KeyboardInterrupt, the first SIGTERM Terminated; another signal within 2 s (passed
    on by a launcher or to the process group) is ignored, a later one stops the process at once."""
    if _received:
        if time.monotonic() - _received[0][1] > 2:
            os._exit(128 + signum)
        return
    _received.append((signum, time.monotonic()))
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


@contextmanager
def interruptible():
    """SIGINT and SIGTERM become exceptions inside the block (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def signal_of(exc: BaseException) -> int | None:
    """The signal that caused `exc`: the signal itself, or any error raised while one was being handled (a
    DataLoader worker or a peer rank that the same signal stopped)."""
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(exc, Terminated):
        return exc.signum
    return _received[0][0] if _received else None
