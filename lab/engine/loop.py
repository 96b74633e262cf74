"""One training step and one timed epoch: the loop every run, the bench and the profiler share.

Timed phases per epoch (see lab.core.timing): `load` is the wait on the loader (its `iter()` and every
`next()`), `train` is the move to the device + forward + backward + step (+ reading the batch's loss),
ending with a device sync, `total` is the whole epoch. Evaluation is never inside an epoch's timers.
"""
from __future__ import annotations

import itertools
import math
import resource
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..core import timing
from ..core.timing import PhaseTimer, now
from .memory import EpochMemory, workers_pss

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """How the step computes: memory format, autocast dtype, and the fp16 GradScaler."""

    channels_last: bool = False
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None


STARVED_FRACTION = 0.1  # a batch is starved when its wait exceeds this share of the epoch's median step


def count_starved(batches: list[dict]) -> int | None:
    """Batches but the first (which always waits for the pipeline to fill) whose wait on the loader exceeded
    STARVED_FRACTION of the epoch's median training step."""
    steps = sorted(b["train_s"] for b in batches)
    return sum(1 for b in batches[1:] if b["load_s"] > STARVED_FRACTION * steps[len(steps) // 2]) if steps else None


@dataclass
class Step:
    """One training step: move a batch to the device (non_blocking only on CUDA; channels_last where asked),
    forward, loss, backward and the optimizer step (through the fp16 GradScaler where there is one)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    precision: Precision = field(default_factory=Precision)

    def __call__(self, x, y):
        cuda = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=cuda,
                 memory_format=torch.channels_last if self.precision.channels_last else torch.preserve_format)
        y = y.to(self.device, non_blocking=cuda)
        self.optimizer.zero_grad(set_to_none=True)
        dtype = self.precision.amp_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self.model(x)
            loss = nn.functional.cross_entropy(out, y)
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(self.optimizer)
            scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return out, loss, y


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its children that have ended
    (DataLoader workers, once an epoch's iterator has shut them down)."""
    return tuple(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def train_one_epoch(step: Step, loader, batches: int | None = None, timers: str = "phase", on_step=None,
                    timer: PhaseTimer | None = None) -> dict:
    """Train `step` over one epoch of `loader` (or its first `batches` batches); its timings and metrics.

    timers="phase": a synced clock read around every wait on the loader and every step (load_s, train_s,
    other_s, the per-batch split; `loader_start_s`: the part of load_s spent in `iter()`). timers="epoch": one
    clock around the epoch, no host sync per step, so load_s/train_s/other_s are None (not measured, not 0).
    `cpu_s`/`workers_cpu_s`: CPU seconds of this process and of its workers once they ended with the epoch
    (None with persistent workers). Memory (lab.engine.memory) is reset before the clock starts and read after
    it stops; the workers' PSS is read at the last batch, its time left out of the clocks. `diverged`: the loss
    stopped being finite (per step with phase timers, at the epoch's end otherwise). `on_step(batch)` gets each
    batch's record (loss None with epoch timers)."""
    n = len(loader) if batches is None else min(len(loader), batches)
    step.model.train()
    on_step = on_step or (lambda batch: None)
    memory = EpochMemory(step.device).start()
    own, children = cpu_seconds()
    if timers == "epoch":
        stats = _epoch_timed(step, loader, n, on_step, memory)
    else:
        stats = _phase_timed(step, loader, n, on_step, timer or PhaseTimer(step.device), memory)
    own_after, children_after = cpu_seconds()
    persistent = getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0
    return {**stats, "cpu_s": own_after - own - memory.read_cpu_s,
            "workers_cpu_s": None if persistent else children_after - children, **memory.stop()}


def _read_workers(memory: EpochMemory, loader_iter, device: torch.device) -> float:
    """Read the live loader workers' memory (about 12 ms a worker); the seconds it took, which the epoch's
    clocks leave out. The device is synced first, so the interval left out is host work alone."""
    if not getattr(loader_iter, "_workers", None):
        memory.workers = 0
        return 0.0
    start, cpu = now(device), time.process_time()
    memory.workers = workers_pss(loader_iter)
    memory.read_cpu_s = time.process_time() - cpu  # left out of cpu_s too
    return timing.perf_counter() - start


def _totals(batches: list[dict], corrects: list[int]) -> dict:
    """Sample-weighted means over all images of the epoch, not the best batch."""
    images = sum(b["images"] for b in batches)
    return {"loss": sum(b["loss"] * b["images"] for b in batches) / max(images, 1),
            "top1": sum(corrects) / max(images, 1), "images": images}


def _phase_timed(step: Step, loader, n_batches: int, on_step, timer: PhaseTimer, memory: EpochMemory) -> dict:
    batches, corrects, diverged = [], [], False
    with timer.phase("total"):
        with timer.phase("load"):
            it = iter(loader)
        loader_start = timer.seconds["load"]
        for index in range(n_batches):
            before = dict(timer.seconds)
            with timer.phase("load"):
                x, y = next(it)
            with timer.phase("train"):
                out, loss, y = step(x, y)
                batch_loss = loss.item()
                corrects.append(int((out.argmax(1) == y).sum().item()))
            n = y.size(0)
            batches.append({"batch": index + 1, "loss": batch_loss, "top1": corrects[-1] / n, "images": n,
                            "load_s": timer.seconds["load"] - before.get("load", 0.0),
                            "train_s": timer.seconds["train"] - before.get("train", 0.0)})
            on_step(batches[-1])
            if not math.isfinite(batch_loss):
                diverged = True
                break
        read_s = _read_workers(memory, it, step.device)
        del it  # worker shutdown belongs to this epoch ("other")
    split = timer.split()
    split.update(total_s=split["total_s"] - read_s, other_s=max(0.0, split["other_s"] - read_s))
    return {**split, "loader_start_s": loader_start, "starved_batches": count_starved(batches),
            "timers": "phase", **_totals(batches, corrects), "batches": batches, "diverged": diverged}


def _epoch_timed(step: Step, loader, n_batches: int, on_step, memory: EpochMemory) -> dict:
    device = step.device
    losses = torch.zeros(n_batches).to(device)
    corrects = torch.zeros(n_batches, dtype=torch.int64).to(device)
    sizes = []
    start = now(device)
    it = iter(loader)
    for index in range(n_batches):
        x, y = next(it)
        out, loss, y = step(x, y)
        losses[index] = loss.detach()            # copied on the device: no host sync
        corrects[index] = (out.argmax(1) == y).sum()
        sizes.append(y.size(0))                  # shape metadata, known on the host
        on_step({"batch": index + 1, "loss": None, "images": sizes[-1]})
    read_s = _read_workers(memory, it, device)
    del it
    total = now(device) - start - read_s         # now() synchronizes: the epoch's work is all done
    corrects = corrects.tolist()
    batches = [{"batch": i + 1, "loss": l, "top1": c / n, "images": n, "load_s": None, "train_s": None}
               for i, (l, c, n) in enumerate(zip(losses.tolist(), corrects, sizes))]
    totals = _totals(batches, corrects)
    return {"load_s": None, "train_s": None, "other_s": None, "total_s": total, "loader_start_s": None,
            "starved_batches": None, "timers": "epoch", **totals, "batches": batches,
            "diverged": not math.isfinite(totals["loss"])}


@torch.no_grad()
def evaluate(model, loader, device, max_batches=None) -> dict:
    """Test loss and top-1 over the (capped) test set; run outside the timed epoch."""
    model.eval()
    loss_sum, correct, images = 0.0, 0, 0
    for x, y in itertools.islice(loader, max_batches):
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").item()
        correct += int((out.argmax(1) == y).sum().item())
        images += y.size(0)
    return {"test_loss": loss_sum / max(images, 1), "test_top1": correct / max(images, 1), "test_images": images}

