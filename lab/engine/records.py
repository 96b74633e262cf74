"""One record schema: the run's configuration + one epoch's metrics + provenance, in JSON lines; `read_records`
turns a file or a folder of them into one pandas DataFrame."""
from __future__ import annotations

import datetime as dt
import functools
import math
import os
import platform
import subprocess
from pathlib import Path

import pandas as pd
import torch

from ..core.config import Config
from ..core.files import append_jsonl, read_jsonl, write_jsonl
from .memory import FIELDS as MEMORY_FIELDS

SPEED_FIELDS = ("fp32_precision_matmul", "fp32_precision_conv", "cudnn_benchmark_on", "deterministic_on")

METRICS = ("epoch", "load_s", "train_s", "other_s", "total_s", "loader_start_s", "starved_batches", "loss", "top1",
           "images", "test_loss", "test_top1", "test_images", "warmup", "status",
           # the CPU the epoch used: the training process's and its DataLoader workers' CPU seconds, the
           # cores this process may use (affinity and the cgroup's quota) and torch's inter-op threads
           "cpu_s", "workers_cpu_s", "cpus_available", "interop_threads",
           # distributed runs (one record per rank, written by rank 0); one process: rank 0 of 1
           "rank", "world_size", "global_batch_size", "backend", "threads", "slowest_total_s",
           "comm_s", "comm_raw_s", "comm_low_s", "comm_high_s",
           # memory over the epoch (lab.engine.memory) and the switches that change speed, as torch had them
           *MEMORY_FIELDS, *SPEED_FIELDS)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


@functools.lru_cache(maxsize=None)
def _cpuinfo(key: str) -> str | None:
    """The first `key` line's value in /proc/cpuinfo (None where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> frozenset:
    """The CPU's feature flags (/proc/cpuinfo), e.g. avx2, avx512f, avx512_bf16, amx_bf16; empty elsewhere."""
    return frozenset((_cpuinfo("flags") or "").split())


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


def cpus_available() -> int:
    """The cores this process may use: its CPU affinity, bounded by the cgroup's CPU quota (cgroup v2
    cpu.max, where one is set)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def provenance(config: Config, device: torch.device) -> dict:
    return {"dataset_kind": config.dataset, "device_type": device.type, "device_name": device_name(device),
            "torch_version": torch.__version__, "host_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "git_commit": git_commit(), "hostname": platform.node()}


def make_record(config: Config, metrics: dict, prov: dict, run_id: str) -> dict:
    return {"record": "epoch", "run_id": run_id, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **config.to_dict(), **prov, **{k: metrics.get(k) for k in METRICS}}


def new_run_id(config: Config) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return f"{config.experiment}-{config.optimizer}-w{config.workers}-{stamp}"


def read_records(path, kind: str = "epoch"):
    """All records of one kind ("epoch" or "batch") in a JSONL file, or in every `*.jsonl` under a
    folder, as one DataFrame."""
    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    rows = [r for f in files for r in read_jsonl(f) if r.get("record") == kind]
    return pd.DataFrame(rows)


def write_epoch(results_dir, ranks: list[tuple[dict, list[dict]]]) -> None:
    """Append one epoch: every rank's record (records.jsonl) and its per-batch records (batches.jsonl)."""
    batches = [{"record": "batch", "run_id": r["run_id"], "experiment": r["experiment"], "tag": r["tag"],
                "epoch": r["epoch"], "rank": r["rank"], **b} for r, bs in ranks for b in bs]
    append_jsonl(Path(results_dir) / "batches.jsonl", batches)
    append_jsonl(Path(results_dir) / "records.jsonl", [r for r, _ in ranks])


def drop_epochs(results_dir, run_id: str, start: int) -> None:
    """Before a resumed run trains epoch `start` again: remove its records of that epoch and later ones."""
    for name in ("records.jsonl", "batches.jsonl"):
        path = Path(results_dir) / name
        write_jsonl(path, [r for r in read_jsonl(path) if r.get("run_id") != run_id or r["epoch"] < start])
