"""Files that survive a crash: atomic writes (temporary file, fsync, rename), JSON and JSON lines, and the
check that a folder can be written before any work starts. Records, checkpoints, data and reports use them."""
from __future__ import annotations

import fcntl
import json
import math
import os
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import BadFile as BadFile  # re-exported: the error every checked read below raises
from .errors import LabError


def cache_dir() -> Path:
    """Where measurements worth keeping between runs go (the --fast choice, a report's costs): $LAB_CACHE,
    default ~/.cache/resnet-perf-lab."""
    return Path(os.environ.get("LAB_CACHE", Path.home() / ".cache" / "resnet-perf-lab"))


def check_writable(folder: Path) -> None:
    """Fail before any work when results cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise LabError(f"cannot write results to {folder}: {exc.strerror or exc}") from exc


class WriteError(LabError, OSError):
    """A file could not be written (a full disk, a read-only folder): one line naming it. Also an OSError, so code
    that tolerates a failed optional write (a cache) still does."""

    def __init__(self, path, cause: OSError, existed: bool):
        message = (f"cannot write {path}: {cause.strerror or cause}; "
                   + ("the earlier file is intact" if existed else "nothing was written"))
        super().__init__(message)
        self.errno, self.strerror, self.filename = cause.errno, cause.strerror, str(path)

    def __str__(self):
        return self.args[0]


@contextmanager
def atomic_write(path, mode: str = "w"):
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`: a crash leaves the
    old file or the new one. A failed write removes the temporary file and raises WriteError naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(path, exc, existed) from exc
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def save_json(path, obj) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=1, default=str))


def write_jsonl(path, records) -> None:
    with atomic_write(path) as f:
        for record in records:
            f.write(json.dumps(record, default=str) + "\n")


_MISSING = object()
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
               bool: "true or false", type(None): "null"}


def _kind(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _said(exc: json.JSONDecodeError) -> str:
    """json's message in lower case without its trailing "at" ("Invalid control character at")."""
    msg = exc.msg.removesuffix(" at")
    return msg[0].lower() + msg[1:]


def _decode(path: Path, text: str, way_out: str):
    """JSON text's value, or BadFile saying in one line how it is broken (empty, truncated, not JSON)."""
    if not text.strip():
        raise BadFile(path, "is empty", way_out=way_out)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            raise BadFile(path, f"is truncated (it ends at line {exc.lineno})", way_out=way_out) from None
        raise BadFile(path, f"is not JSON ({_said(exc)} at line {exc.lineno} column "
                            f"{exc.colno})", way_out=way_out) from None
    except RecursionError:
        raise BadFile(path, "is nested too deeply (not JSON this lab wrote)", way_out=way_out) from None


def load_json(path, expect: type | None = dict, way_out: str = "delete it", default=_MISSING):
    """A JSON file's value, checked: BadFile (one line naming `path` and `way_out`) where it is unreadable, empty,
    truncated, not JSON or not of type `expect`; a missing file is BadFile too unless a `default` is given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if default is not _MISSING:
            return default
        raise BadFile(path, "is missing", way_out=way_out) from None
    except UnicodeDecodeError:
        raise BadFile(path, "is not text (not JSON)", way_out=way_out) from None
    except OSError as exc:
        raise BadFile(path, f"cannot be read ({exc.strerror or exc})", way_out=way_out) from None
    value = _decode(path, text, way_out)
    if expect is not None and not isinstance(value, expect):
        raise BadFile(path, f"is {_kind(value)}, not {_TYPE_NAMES.get(expect, expect.__name__)}", way_out=way_out)
    return value


def read_json(path, default=None, expect: type | None = dict):
    """A JSON file's value, or `default` where the file is missing, unreadable, not JSON or not of type `expect`
    (for caches and optional files: a bad one counts as absent)."""
    try:
        return load_json(path, expect=expect)
    except BadFile:
        return default


def number(path, field: str, value, low: float | None = None, high: float | None = None, positive: bool = False,
           way_out: str = "delete it") -> float:
    """`value` as a float, or BadFile naming `path: field` where it is not a number, NaN or infinite, zero or
    negative where it must be `positive`, or outside [low, high] (a plausible range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadFile(path, f"is {json.dumps(value, default=str)[:40]}, not a number", field, way_out)
    try:
        value = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise BadFile(path, "is too large, not a finite number", field, way_out) from None
    if not math.isfinite(value):
        raise BadFile(path, f"is {value}, not a finite number", field, way_out)
    if positive and value <= 0:
        raise BadFile(path, f"is {value:g}, not a positive number", field, way_out)
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadFile(path, f"is {value:g}, outside the plausible range [{low:g}, {high:g}]"
                      if low is not None and high is not None else
                      f"is {value:g}, {'below' if low is not None and value < low else 'above'} the plausible "
                      f"{low if low is not None and value < low else high:g}", field, way_out)
    return value


@contextmanager
def locked(path):
    """Hold an exclusive lock on `path` (fcntl, on the sibling file `<name>.lock`) for the block: writers of a file
    that several processes update (a cache) take turns. A lock that cannot be made raises WriteError (an
    OSError: a cache's writer may ignore it)."""
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except OSError as exc:
        raise WriteError(lock, exc, lock.exists()) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_json(path, change) -> dict:
    """Read the JSON object at `path` (a bad or missing file counts as empty: it is a cache), apply `change` (a dict
    in, the dict to write out) and write it atomically, all under `locked(path)`: no update is lost to another's."""
    with locked(path):
        value = change(read_json(path, {}))
        save_json(path, value)
        return value


def read_jsonl(path, way_out: str = "delete it") -> list[dict]:
    """The objects of a JSON-lines file, [] where it is missing; BadFile naming the path and the line where one is
    not a JSON object."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFile(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc})", way_out=way_out) from None
    rows = []
    for number_, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadFile(path, f"is not JSON lines (line {number_}: {_said(exc)})",
                          way_out=way_out) from None
        except RecursionError:
            raise BadFile(path, f"is not JSON lines this lab wrote (line {number_} is nested too deeply)",
                          way_out=way_out) from None
        if not isinstance(row, dict):
            raise BadFile(path, f"is not JSON lines of objects (line {number_} is {_kind(row)})", way_out=way_out)
        rows.append(row)
    return rows


def append_jsonl(path, records) -> None:
    """Append by rewriting atomically: a crash leaves the old file or the new one, never half a line."""
    write_jsonl(path, read_jsonl(path) + list(records))
