"""The timers attribute time to the right phase, and sync the device before every clock reading.

The attribution tests run on a fake clock (`clock`): lab.timing reads it, and the injected waits advance it
instead of sleeping, so every phase's time is exactly what was injected, however busy the machine is. The
real clock is checked with one-sided bounds only (an injected wait is measured at least that long): load
can only widen them."""
import time

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

import lab.core.timing
from lab.core.timing import PhaseTimer
from lab.engine.loop import Step, train_one_epoch

BATCHES, BATCH = 8, 4


class FakeClock:
    """lab.timing's perf_counter, advanced only by `sleep`: the compute itself takes no time on it."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(lab.core.timing, "perf_counter", fake)
    return fake


class SleepyDataset(Dataset):
    def __init__(self, delay, sleep=time.sleep):
        self.delay, self.sleep = delay, sleep

    def __len__(self):
        return BATCHES * BATCH

    def __getitem__(self, i):
        if self.delay:
            self.sleep(self.delay)
        return torch.randn(3, 8, 8), i % 10


class SleepyNet(nn.Module):
    def __init__(self, delay, sleep=time.sleep):
        super().__init__()
        self.delay, self.sleep = delay, sleep
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        if self.delay:
            self.sleep(self.delay)
        return self.fc(x.flatten(1))


class SlowStartLoader(DataLoader):
    """A DataLoader whose `iter()` (worker start-up) takes `start` seconds."""

    def __init__(self, *args, start=0.0, sleep=time.sleep, **kwargs):
        super().__init__(*args, **kwargs)
        self.start, self.sleep = start, sleep

    def __iter__(self):
        self.sleep(self.start)
        return super().__iter__()


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensor work: see conftest


def epoch(item_delay=0.0, forward_delay=0.0, device="cpu", timer=None, timers="phase", clock=None, start=0.0):
    """One epoch of 8 batches of 4; `clock`: the fake clock the injected waits advance (else real sleeps)."""
    sleep = clock.sleep if clock is not None else time.sleep
    torch.manual_seed(0)
    model = SleepyNet(forward_delay, sleep)
    loader = SlowStartLoader(SleepyDataset(item_delay, sleep), batch_size=BATCH, num_workers=0, start=start,
                             sleep=sleep)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return train_one_epoch(Step(model, optimizer, torch.device(device)), loader, timers=timers, timer=timer)


def test_slow_loading_is_load_time_not_train_time(clock):
    stats = epoch(item_delay=0.01, clock=clock)
    injected = BATCHES * BATCH * 0.01
    assert stats["load_s"] == pytest.approx(injected, abs=1e-9)
    assert stats["train_s"] == 0 and stats["other_s"] == pytest.approx(0, abs=1e-9)
    assert stats["total_s"] == pytest.approx(injected, abs=1e-9)
    assert [b["load_s"] for b in stats["batches"]] == pytest.approx([BATCH * 0.01] * BATCHES, abs=1e-9)


def test_slow_forward_is_train_time_not_load_time(clock):
    stats = epoch(forward_delay=0.04, clock=clock)
    assert stats["train_s"] == pytest.approx(BATCHES * 0.04, abs=1e-9)
    assert stats["load_s"] == 0 and stats["other_s"] == pytest.approx(0, abs=1e-9)
    assert [b["train_s"] for b in stats["batches"]] == pytest.approx([0.04] * BATCHES, abs=1e-9)


def test_real_clock_measures_at_least_the_injected_waits():
    """On the real clock, with real sleeps: each phase holds at least what was injected into it (a busy
    machine can only add to both)."""
    stats = epoch(item_delay=0.005, forward_delay=0.02)
    assert stats["load_s"] >= BATCHES * BATCH * 0.005
    assert stats["train_s"] >= BATCHES * 0.02
    assert stats["total_s"] >= stats["load_s"] + stats["train_s"] and stats["other_s"] >= 0


def test_phases_add_up_to_total():
    stats = epoch(item_delay=0.002, forward_delay=0.005)
    assert stats["load_s"] + stats["train_s"] + stats["other_s"] == pytest.approx(stats["total_s"], abs=1e-9)
    assert [b["batch"] for b in stats["batches"]] == list(range(1, BATCHES + 1))
    assert sum(b["load_s"] for b in stats["batches"]) <= stats["load_s"]


def test_nothing_else_happens_in_the_loop(clock):
    stats = epoch(item_delay=0.002, forward_delay=0.005, clock=clock, start=0.3)
    assert stats["other_s"] == pytest.approx(0, abs=1e-9)
    assert stats["total_s"] == pytest.approx(0.3 + BATCHES * (BATCH * 0.002 + 0.005), abs=1e-9)


def _fake_cuda(monkeypatch):
    """Record device syncs, clock reads and host->device copies; the 'copy' leaves tensors on the CPU."""
    events, copies = [], []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    for hook in ("reset_peak_memory_stats", "memory_allocated", "max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, hook, lambda device=None: 0)  # the epoch's memory (lab.engine.memory)
    monkeypatch.setattr(lab.core.timing, "perf_counter", lambda: events.append("clock") or time.perf_counter())
    real_to = torch.Tensor.to

    def fake_to(self, *args, **kwargs):
        if args and isinstance(args[0], torch.device):
            copies.append((args[0].type, kwargs.get("non_blocking")))
            if args[0].type == "cuda":
                return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    return events, copies


@pytest.mark.cuda
def test_cuda_syncs_before_every_clock_reading(monkeypatch):
    events, copies = _fake_cuda(monkeypatch)
    stats = epoch(device="cuda")
    clocks = [i for i, e in enumerate(events) if e == "clock"]
    # total, the loader's iter(), then load + train per batch: each phase reads the clock twice
    assert len(clocks) == 2 * (2 + 2 * BATCHES)
    assert all(i > 0 and events[i - 1] == "sync" for i in clocks)
    assert copies == [("cuda", True)] * (2 * BATCHES)  # images and labels, non_blocking on CUDA
    assert stats["images"] == BATCHES * BATCH


@pytest.mark.cuda
def test_cpu_never_syncs_and_copies_blocking(monkeypatch):
    events, copies = _fake_cuda(monkeypatch)
    epoch(device="cpu")
    assert "sync" not in events and events.count("clock") == 2 * (2 + 2 * BATCHES)
    assert copies == [("cpu", False)] * (2 * BATCHES)


def test_phase_timer_nests_and_accumulates(monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr(lab.core.timing, "perf_counter", lambda: float(next(ticks)))
    timer = PhaseTimer("cpu")
    with timer.phase("total"):        # 0 .. 9
        with timer.phase("load"):     # 1 .. 2
            pass
        with timer.phase("train"):    # 3 .. 4
            pass
        with timer.phase("load"):     # 5 .. 6
            pass
        with timer.phase("train"):    # 7 .. 8
            pass
    assert timer.split() == {"load_s": 2.0, "train_s": 2.0, "other_s": 5.0, "total_s": 9.0}


def test_worker_start_up_is_measured_apart_from_the_batch_waits(clock):
    stats = epoch(item_delay=0.002, clock=clock, start=0.3)
    assert stats["loader_start_s"] == pytest.approx(0.3, abs=1e-9)
    assert stats["load_s"] == pytest.approx(0.3 + BATCHES * BATCH * 0.002, abs=1e-9)
    assert stats["load_s"] - stats["loader_start_s"] == pytest.approx(sum(b["load_s"] for b in stats["batches"]))


def test_a_loader_slower_than_the_step_starves_it(clock):
    # each batch waits 4 x 10 ms on the loader against a 1 ms step: starved, the first batch aside
    assert epoch(item_delay=0.01, forward_delay=0.001, clock=clock)["starved_batches"] == BATCHES - 1
    # a wait of 5 % of the step is under the threshold (10 % of the median step), 15 % is over it
    assert epoch(item_delay=0.05 * 0.02 / BATCH, forward_delay=0.02, clock=clock)["starved_batches"] == 0
    assert epoch(item_delay=0.15 * 0.02 / BATCH, forward_delay=0.02, clock=clock)["starved_batches"] == BATCHES - 1


@pytest.mark.cuda
def test_epoch_timers_sync_twice_per_epoch_and_never_read_a_batch_on_the_host(monkeypatch):
    events, copies = _fake_cuda(monkeypatch)
    items = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: items.append(1) or real_item(self))
    stats = epoch(device="cuda", timers="epoch")
    assert events == ["sync", "clock", "sync", "clock"]  # one clock around the epoch, each after a sync
    # no .item() per step (metrics stay on the device): the one call is the DataLoader's own base-seed
    # draw in iter(), on a CPU tensor
    assert len(items) == 1
    assert stats["load_s"] is None and stats["train_s"] is None and stats["other_s"] is None
    assert stats["total_s"] > 0 and stats["timers"] == "epoch" and stats["images"] == BATCHES * BATCH


def test_epoch_timers_give_the_same_metrics_as_phase_timers():
    phase, whole = epoch(forward_delay=0.001), epoch(forward_delay=0.001, timers="epoch")
    assert whole["loss"] == pytest.approx(phase["loss"], rel=1e-6) and whole["top1"] == phase["top1"]
    assert [b["loss"] for b in whole["batches"]] == pytest.approx([b["loss"] for b in phase["batches"]], rel=1e-6)


@pytest.mark.parametrize("timers", ["phase", "epoch"])
def test_reading_the_workers_memory_is_left_out_of_the_epoch(clock, monkeypatch, timers):
    """The workers' memory is read while they live, inside the epoch; the 0.5 s it takes here is not in it."""
    import lab.engine.loop as loop

    class WithWorkers(SlowStartLoader):
        def __iter__(self):
            it = super().__iter__()
            it._workers = ["a worker"]  # what lab.engine.memory reads: the iterator's worker processes
            return it

    def read(loader_iter):
        clock.sleep(0.5)
        return 100

    monkeypatch.setattr(loop, "workers_pss", read)
    torch.manual_seed(0)
    loader = WithWorkers(SleepyDataset(0.01, clock.sleep), batch_size=BATCH, num_workers=0, sleep=clock.sleep)
    model = SleepyNet(0.0)
    stats = train_one_epoch(Step(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu")), loader,
                            timers=timers)
    assert stats["total_s"] == pytest.approx(BATCHES * BATCH * 0.01, abs=1e-9)
    assert stats["workers_pss_bytes"] == 100
    if timers == "phase":
        assert stats["other_s"] == pytest.approx(0, abs=1e-9)
