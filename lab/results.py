"""One record schema: the run's configuration + one epoch's metrics + provenance.

Records are JSON lines; `read_records` turns a file or a folder of them into one pandas DataFrame.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import platform
import subprocess
from contextlib import contextmanager
from pathlib import Path

import torch

from .config import Config, LabError

METRICS = ("epoch", "load_s", "train_s", "other_s", "total_s", "loader_start_s", "starved_batches", "loss", "top1",
           "images", "test_loss", "test_top1", "test_images", "warmup", "status",
           # distributed runs (one record per rank, written by rank 0); one process: rank 0 of 1
           "rank", "world_size", "global_batch_size", "backend", "threads", "slowest_total_s",
           "comm_s", "comm_raw_s", "comm_low_s", "comm_high_s")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


@functools.lru_cache(maxsize=None)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("-dirty" if dirty else "")) if commit else "unknown"


def provenance(config: Config, device: torch.device) -> dict:
    return {
        "dataset_kind": config.dataset,
        "device_type": device.type,
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "host_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "hostname": platform.node(),
    }


def make_record(config: Config, metrics: dict, prov: dict, run_id: str) -> dict:
    record = {"record": "epoch", "run_id": run_id, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    record.update(config.to_dict())
    record.update(prov)
    record.update({k: metrics.get(k) for k in METRICS})
    return record


def new_run_id(config: Config) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return f"{config.experiment}-{config.optimizer}-w{config.workers}-{stamp}"


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
    """A file could not be written (a full disk, a read-only folder): one line naming it, exit 1. Also an
    OSError, so code that tolerates a failed optional write (a cache) still does."""

    def __init__(self, path, cause: OSError, existed: bool):
        message = (f"cannot write {path}: {cause.strerror or cause}; "
                   + ("the earlier file is intact" if existed else "nothing was written"))
        super().__init__(message)
        self.errno, self.strerror, self.filename = cause.errno, cause.strerror, str(path)

    def __str__(self):
        return self.args[0]


@contextmanager
def atomic_write(path, mode: str = "w"):
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`: a crash
    leaves the old file or the new one, never half of one. Used for records, checkpoints and data files.
    A failed write (ENOSPC, EIO, EACCES, ...) removes the temporary file, leaves the earlier file whole and
    raises WriteError naming `path`."""
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
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def save_json(path, obj) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=1, default=str))


def write_jsonl(path, records) -> None:
    with atomic_write(path) as f:
        for record in records:
            f.write(json.dumps(record, default=str) + "\n")


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(path, records) -> None:
    """Append by rewriting atomically: a crash leaves the old file or the new one, never half a line."""
    write_jsonl(path, read_jsonl(path) + list(records))


def read_records(path, kind: str = "epoch"):
    """All records of one kind ("epoch" or "batch") in a JSONL file, or in every `*.jsonl` under a
    folder, as one DataFrame."""
    import pandas as pd

    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    rows = [r for f in files for r in read_jsonl(f) if r.get("record") == kind]
    return pd.DataFrame(rows)


def epoch_table(records):
    """The lab's per-epoch table: one row per epoch, then Total and Avg rows, and, when the first epoch
    paid for warm-up (workers starting, autotuning), a steady-state average without it."""
    import pandas as pd

    df = pd.DataFrame(records) if not isinstance(records, pd.DataFrame) else records
    times = ["load_s", "train_s", "other_s", "total_s"]
    df = df.copy()
    df[times] = df[times].astype(float)  # None (not measured: epoch timers) becomes NaN, shown empty
    table = df[["epoch"] + times + ["loss", "top1"]].copy()
    table["epoch"] = table["epoch"].map(lambda e: str(int(e)))  # ints, even where NaN made the column float
    table.loc[df["warmup"].fillna(False).astype(bool).values, "epoch"] += " (warm-up)"
    summary = [{"epoch": "Total", **df[times].sum(min_count=1).to_dict()},
               {"epoch": "Avg", **df[times].mean().to_dict()}]
    steady = df[~df["warmup"].fillna(False).astype(bool)]
    if 0 < len(steady) < len(df):
        summary.append({"epoch": "Avg (steady)", **steady[times].mean().to_dict()})
    return pd.concat([table, pd.DataFrame(summary)], ignore_index=True).set_index("epoch")


def format_epoch_table(records) -> str:
    table = epoch_table(records).copy()
    table["top1"] = table["top1"] * 100
    table = table.rename(columns={"top1": "top1_%"})
    return table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="")
