"""Memory per epoch, read outside the timed phases: what the training process and its loader workers held.

Host: the process's peak resident set over the epoch (VmHWM, reset by writing "5" to /proc/self/clear_refs; where
the kernel refuses, sampled at 10 Hz by a thread, and the record says which). Workers: their summed proportional
set size (PSS: pages shared copy-on-write are split between the processes, where RSS counts them once per worker),
read at the epoch's last batch. CUDA: the epoch's peak allocated and reserved bytes, and the peak minus what was
allocated when it began (an interleaved block keeps every setting's model in one process: the rise is its own).
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import psutil
import torch

from .model import count_optimizer_state, count_trainable_parameters

FIELDS = ("host_peak_rss_bytes", "host_peak_rss_how", "workers_pss_bytes", "cuda_peak_allocated_bytes",
          "cuda_peak_reserved_bytes", "cuda_peak_above_start_bytes")
CLEAR_REFS = Path("/proc/self/clear_refs")
SAMPLE_EVERY_S = 0.1


def _peak_rss() -> int | None:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
        return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")), None)
    except (OSError, ValueError, IndexError):
        return None


class _Sampler(threading.Thread):
    """The resident set's largest value, sampled every SAMPLE_EVERY_S (where VmHWM cannot be reset)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(), 0, threading.Event()
        self.start()

    def run(self):
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            if self.done.wait(SAMPLE_EVERY_S):
                return

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, self.process.memory_info().rss)


def workers_pss(loader_iter) -> int | None:
    """The summed PSS of a DataLoader iterator's worker processes (0 without workers; None when unreadable)."""
    workers = getattr(loader_iter, "_workers", None)
    if not workers:
        return 0
    try:
        return sum(psutil.Process(w.pid).memory_full_info().pss for w in workers)
    except (psutil.Error, AttributeError, OSError):
        return None


class EpochMemory:
    """`start()` before an epoch's clock starts, `stop()` after it stops; `stop()` returns the record's fields."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.sampler, self.cuda_start, self.workers, self.read_cpu_s = None, None, None, 0.0

    def start(self) -> "EpochMemory":
        if self.device.type == "cuda":  # the allocator counts on the host, as ops are queued: no sync needed
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda_start = torch.cuda.memory_allocated(self.device)
        try:
            CLEAR_REFS.write_text("5")  # resets the kernel's peak resident set (VmHWM) of this process
        except OSError:
            self.sampler = _Sampler()
        return self

    def stop(self) -> dict:
        sampled = self.sampler is not None
        out = {**dict.fromkeys(FIELDS), "host_peak_rss_bytes": self.sampler.stop() if sampled else _peak_rss(),
               "host_peak_rss_how": "sampled at 10 Hz" if sampled else "VmHWM reset at the epoch's start",
               "workers_pss_bytes": self.workers}
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            out.update(cuda_peak_allocated_bytes=peak,
                       cuda_peak_reserved_bytes=torch.cuda.max_memory_reserved(self.device),
                       cuda_peak_above_start_bytes=peak - self.cuda_start)
        return out


state_bytes = functools.partial(count_optimizer_state, in_bytes=True)
parameter_bytes = functools.partial(count_trainable_parameters, in_bytes=True)
