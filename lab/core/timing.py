"""Wall-clock attribution of an epoch to phases. CUDA kernels run asynchronously, so every clock read goes through
`now(device)`, which synchronizes the device first (a no-op on CPU)."""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from time import perf_counter

import torch


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on `device`; the one place a device sync happens (tests fake it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    synchronize(device)
    return perf_counter()


class PhaseTimer:
    """Adds the wall time spent inside `with timer.phase(name):` to `timer.seconds[name]`."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str):
        start = now(self.device)
        try:
            yield
        finally:
            self.seconds[name] += now(self.device) - start

    def split(self) -> dict:
        """load/train/total seconds and other = total - load - train (never negative: the load and train
        phases are disjoint intervals inside total)."""
        load, train, total = (self.seconds.get(k, 0.0) for k in ("load", "train", "total"))
        return {"load_s": load, "train_s": train, "other_s": max(0.0, total - load - train), "total_s": total}
