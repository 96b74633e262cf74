"""Memory per epoch, read outside the timed phases: what the training process and its loader workers held.

Host: the training process's peak resident set over the epoch. Linux keeps that peak (VmHWM) and lets a process
reset it by writing "5" to /proc/self/clear_refs; where the kernel refuses, a thread samples the resident set
at 10 Hz instead (it holds the GIL for microseconds a tenth of a second), and the record says which.
Workers: their proportional set size (PSS), summed, read at the epoch's last batch while they are alive. PSS,
not RSS: the pages a worker shares copy-on-write with the others and the parent are split between them,
where RSS would count them once per worker. The pages they share with the training process are split with it
too: the workers' PSS holds a share of the parent's memory (half of it with one worker), and the parent's PSS
plus the workers' is the physical memory of them all.
CUDA: the epoch's peak allocated and reserved bytes (peaks reset as it starts), and the peak minus what was
allocated when it began: an interleaved block keeps every setting's model and optimizer in one process, so
only the rise is one setting's own.
"""
from __future__ import annotations

import threading
from pathlib import Path

import psutil
import torch

FIELDS = ("host_peak_rss_bytes", "host_peak_rss_how", "workers_pss_bytes", "cuda_peak_allocated_bytes",
          "cuda_peak_reserved_bytes", "cuda_peak_above_start_bytes")
CLEAR_REFS = Path("/proc/self/clear_refs")
SAMPLE_EVERY_S = 0.1


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set (VmHWM) of this process; False where it cannot be."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
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
        if not _reset_peak_rss():
            self.sampler = _Sampler()
        return self

    def stop(self) -> dict:
        sampled = self.sampler is not None
        out = {"host_peak_rss_bytes": self.sampler.stop() if sampled else _peak_rss(),
               "host_peak_rss_how": "sampled at 10 Hz" if sampled else "VmHWM reset at the epoch's start",
               "workers_pss_bytes": self.workers, "cuda_peak_allocated_bytes": None,
               "cuda_peak_reserved_bytes": None, "cuda_peak_above_start_bytes": None}
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            out.update(cuda_peak_allocated_bytes=peak,
                       cuda_peak_reserved_bytes=torch.cuda.max_memory_reserved(self.device),
                       cuda_peak_above_start_bytes=peak - self.cuda_start)
        return out


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors an optimizer keeps as state (Adam: exp_avg and exp_avg_sq), measured from them;
    per-parameter scalar counters such as Adam's `step` are left out."""
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
               if torch.is_tensor(v) and v.dim() > 0)


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
