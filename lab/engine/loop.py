"""One training step and one timed epoch: the loop every run, the bench and the profiler share.

Timed phases per epoch (see lab.core.timing): `load` is the wait on the loader (its `iter()` and every
`next()`), `train` is the move to the device + forward + backward + step (+ reading the batch's loss),
ending with a device sync, `total` is the whole epoch. Evaluation is never inside an epoch's timers.
"""
from __future__ import annotations

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
    """Batches (the first, which always waits for the pipeline to fill, left out) whose wait on the loader
    exceeded STARVED_FRACTION of the epoch's median training step. None without per-batch clocks."""
    steps = sorted(b["train_s"] for b in batches if b.get("train_s") is not None)
    if not steps:
        return None
    threshold = STARVED_FRACTION * steps[len(steps) // 2]
    return sum(1 for b in batches[1:] if b["load_s"] > threshold)


@dataclass
class Step:
    """One training step's compute: the model (compiled or not), its optimizer, the device and the
    precision. `__call__` moves a batch to the device (non_blocking and pinned only on CUDA; channels_last
    where asked) and runs forward, loss, backward and the optimizer step (through the fp16 GradScaler)."""

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
    """CPU seconds (user + system) used so far by this process (all its threads) and by its children that
    have ended (DataLoader workers, once an epoch's iterator has shut them down)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def train_one_epoch(step: Step, loader, batches: int | None = None, timers: str = "phase", on_step=None,
                    timer: PhaseTimer | None = None) -> dict:
    """Train `step` over one epoch of `loader` (or its first `batches` batches); its timings and metrics.

    timers="phase": the clock is read (after a device sync) around every wait on the loader and every
    step, so load_s, train_s, other_s and the per-batch split are measured; `loader_start_s` is the part
    of load_s spent in `iter()` (worker start-up; with persistent workers, after the first epoch, only their
    resumption), `starved_batches` counts batches the step waited for.
    timers="epoch": one clock around the whole epoch and no host sync per step: loss and accuracy stay on
    the device until the epoch ends, so load_s/train_s/other_s are None (not measured, not 0).
    `cpu_s` and `workers_cpu_s` are the CPU seconds the training process and its DataLoader workers used
    during the epoch (read outside the timed part; the workers' once they have ended with the epoch: None with
    persistent workers, which do not end).
    Memory (lab.engine.memory): the epoch's peak host RSS and CUDA peaks, reset before the clock starts and
    read after it stops; the workers' PSS is read at the last batch, while they are alive, and the
    time that takes is left out of the epoch's clocks.

    loss and top1 are sample-weighted means over all images of the epoch, not the best batch. `diverged`
    is set when the loss stops being finite (per step with phase timers, at the epoch's end otherwise).
    `on_step(batch)` is called after each batch with its record (loss None until the epoch ends with epoch
    timers): a progress bar's or a profiler's step."""
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
    """Read the loader workers' memory while they live (about 12 ms a worker: the kernel walks their page
    tables); the seconds it took, which the epoch's clocks leave out. The device is synchronized first, so
    the interval left out is host work alone (with epoch timers, that sync ends the overlap of the workers'
    shutdown with the device's last queued work). Without worker processes: nothing to read, no clock read."""
    if not getattr(loader_iter, "_workers", None):
        memory.workers = 0
        return 0.0
    start, cpu = now(device), time.process_time()
    memory.workers = workers_pss(loader_iter)
    memory.read_cpu_s = time.process_time() - cpu  # left out of cpu_s too
    return timing.perf_counter() - start


def _phase_timed(step: Step, loader, n_batches: int, on_step, timer: PhaseTimer, memory: EpochMemory) -> dict:
    loss_sum, correct, images, batches, diverged = 0.0, 0, 0, [], False
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
                batch_correct = int((out.argmax(1) == y).sum().item())
            n = y.size(0)
            loss_sum += batch_loss * n
            correct += batch_correct
            images += n
            batches.append({"batch": index + 1, "loss": batch_loss, "top1": batch_correct / n, "images": n,
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
            "timers": "phase", "loss": loss_sum / max(images, 1), "top1": correct / max(images, 1),
            "images": images, "batches": batches, "diverged": diverged}


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
    loss_list, correct_list = losses.tolist(), corrects.tolist()
    images = sum(sizes)
    batches = [{"batch": i + 1, "loss": l, "top1": c / n, "images": n, "load_s": None, "train_s": None}
               for i, (l, c, n) in enumerate(zip(loss_list, correct_list, sizes))]
    loss = sum(l * n for l, n in zip(loss_list, sizes)) / max(images, 1)
    return {"load_s": None, "train_s": None, "other_s": None, "total_s": total, "loader_start_s": None,
            "starved_batches": None, "timers": "epoch", "loss": loss, "top1": sum(correct_list) / max(images, 1),
            "images": images, "batches": batches, "diverged": not math.isfinite(loss)}


@torch.no_grad()
def evaluate(model, loader, device, max_batches=None) -> dict:
    """Test loss and top-1 over the (capped) test set; run outside the timed epoch."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss_sum, correct, images = 0.0, 0, 0
    for index, (x, y) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss_sum += criterion(out, y).item()
        correct += int((out.argmax(1) == y).sum().item())
        images += y.size(0)
    return {"test_loss": loss_sum / max(images, 1), "test_top1": correct / max(images, 1), "test_images": images}

