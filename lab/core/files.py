"""Files that survive a crash: atomic writes (temporary file, fsync, rename), JSON and JSON lines, and the
check that a folder can be written before any work starts. Records, checkpoints, data and reports use them."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager, suppress
from pathlib import Path

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


def read_json(path, default=None):
    """A JSON file's value, or `default` where the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append_jsonl(path, records) -> None:
    """Append by rewriting atomically: a crash leaves the old file or the new one, never half a line."""
    write_jsonl(path, read_jsonl(path) + list(records))
