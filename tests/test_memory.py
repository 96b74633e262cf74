"""Memory per epoch (lab.engine.memory), the switches that change speed (lab.engine.resolve) and the machine's
environment (lab.engine.environment): fields present and plausible, an allocation inside the epoch caught by
its peak, CUDA's fields from faked device hooks, Adam's state measured in bytes."""
import os

import psutil
import pytest
import torch

from lab.core.config import Config
from lab.engine import acceleration, environment, memory
from lab.engine.loop import Step, train_one_epoch
from lab.engine.model import resnet18
from lab.engine.records import cpu_flags
from lab.engine.resolve import apply_speed_settings, resolve, speed_settings
from lab.engine.train import build_optimizer, run
from lab.parts import q_model

MIB = 2 ** 20


def _tiny_step():
    torch.manual_seed(0)
    model = resnet18()
    return Step(model, build_optimizer("sgd", model.parameters(), 0.01), torch.device("cpu"))


def _batches(n=2, size=4):
    return [(torch.randn(size, 3, 32, 32), torch.randint(0, 10, (size,))) for _ in range(n)]


def test_an_allocation_inside_the_epoch_is_in_its_peak_rss(one_thread):
    """300 MiB held during the epoch's first step (and freed before it ends) is in host_peak_rss_bytes: the
    peak is reset before the epoch, not the process's lifetime peak, and not its resident set at the end."""
    step, held = _tiny_step(), []
    train_one_epoch(step, _batches(), timers="phase")  # the process's own peak so far, before the reset
    before = psutil.Process().memory_info().rss

    def allocate(batch):
        if batch["batch"] == 1:
            held.append(torch.ones(300 * MIB // 4))  # touched: resident
        else:
            held.clear()

    record = train_one_epoch(step, _batches(), timers="phase", on_step=allocate)
    assert record["host_peak_rss_how"] == "VmHWM reset at the epoch's start"
    assert record["host_peak_rss_bytes"] >= before + 290 * MIB
    assert record["cuda_peak_allocated_bytes"] is None and record["cuda_peak_above_start_bytes"] is None
    assert record["workers_pss_bytes"] == 0  # no worker processes
    quiet = train_one_epoch(step, _batches(), timers="epoch")  # the next epoch's peak starts again
    assert quiet["host_peak_rss_bytes"] < record["host_peak_rss_bytes"] - 200 * MIB


def test_without_clear_refs_a_sampler_finds_the_peak(monkeypatch, tmp_path):
    """Where the kernel refuses the reset, a 10 Hz sampler takes the peak, and the record says so."""
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")
    tracker = memory.EpochMemory(torch.device("cpu")).start()
    assert tracker.sampler is not None
    block = torch.ones(200 * MIB // 4)
    while tracker.sampler.peak < psutil.Process().memory_info().rss:  # until it has sampled the block
        tracker.sampler.done.wait(0.05)
    del block
    out = tracker.stop()
    assert out["host_peak_rss_how"] == "sampled at 10 Hz" and out["host_peak_rss_bytes"] > 200 * MIB
    assert not tracker.sampler.is_alive()


class Images(torch.utils.data.Dataset):
    """32 random images; with `hoard`, each worker keeps 256 MiB of its own the first time it loads one."""

    held = None

    def __init__(self, hoard: bool):
        self.hoard = hoard

    def __len__(self):
        return 32

    def __getitem__(self, index):
        if self.hoard and Images.held is None:
            Images.held = torch.ones(256 * MIB // 4)  # written: private to this worker
        return torch.randn(3, 32, 32), index % 10


def test_what_the_loader_workers_hold_is_measured_while_they_live(one_thread):
    """Two workers that each keep 256 MiB of their own add about 512 MiB to the workers' PSS (their share of
    every page they map: all of a page only one of them maps). The hoard is large beside the noise: the
    workers' share of the parent's pages moves by tens of MiB as the parent writes to them (copy on write),
    and a CI run under load once saw the 2 × 64 MiB hoard add only 81 MiB."""
    step = _tiny_step()

    def epoch(hoard):
        loader = torch.utils.data.DataLoader(Images(hoard), batch_size=4, num_workers=2)
        return train_one_epoch(step, loader, batches=4, timers="phase")

    plain, hoarding = epoch(False), epoch(True)
    assert plain["workers_pss_bytes"] > 10 * MIB  # each worker's interpreter and its share of the parent's pages
    assert hoarding["workers_pss_bytes"] - plain["workers_pss_bytes"] > 400 * MIB


@pytest.mark.cuda
def test_cuda_peaks_come_from_the_device_hooks(monkeypatch):
    """Faked CUDA memory hooks: the peaks are reset at the start, and the rise is peak minus the start; no
    device sync (the caching allocator counts on the host as ops are queued; an epoch's syncs are its clocks')."""
    calls, fake = [], {"allocated": 1000, "peak": 5000, "reserved": 8192}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: fake["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: fake["peak"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: fake["reserved"])
    tracker = memory.EpochMemory(torch.device("cuda")).start()
    assert calls == ["reset"]
    out = tracker.stop()
    assert calls == ["reset"]
    assert (out["cuda_peak_allocated_bytes"], out["cuda_peak_reserved_bytes"], out["cuda_peak_above_start_bytes"]) \
        == (5000, 8192, 4000)


def test_records_carry_memory_and_the_speed_switches(tiny_config):
    record = list(run(tiny_config.replace(checkpoint=None)))[0]
    for field in (*memory.FIELDS, "fp32_precision_matmul", "fp32_precision_conv", "cudnn_benchmark_on",
                  "deterministic_on", "cudnn_benchmark", "deterministic"):
        assert field in record, field
    assert record["host_peak_rss_bytes"] > 100 * MIB
    assert record["cudnn_benchmark"] is False  # resolved: cuDNN does nothing on a CPU, and the record says so
    assert record["cudnn_benchmark_on"] is False and record["deterministic_on"] is False
    assert record["fp32_precision_matmul"] in ("ieee", "tf32", "bf16")
    deterministic = list(run(tiny_config.replace(checkpoint=None, deterministic=True)))[0]
    assert deterministic["deterministic"] is True and deterministic["deterministic_on"] is True
    apply_speed_settings(Config(), torch.device("cpu"))
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.cuda
def test_cuda_switches_are_set_per_run(monkeypatch):
    """On CUDA, cudnn.benchmark follows the run (on by default) and --deterministic sets cuBLAS's workspace."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # restored (unset) after the test
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    cuda = torch.device("cuda")
    try:
        apply_speed_settings(Config(), cuda)
        assert torch.backends.cudnn.benchmark and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        apply_speed_settings(Config(cudnn_benchmark=False, deterministic=True), cuda)
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and torch.are_deterministic_algorithms_enabled()
        assert speed_settings(cuda)["deterministic_on"] is True
    finally:
        apply_speed_settings(Config(), torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark  # a CPU run leaves it off


@pytest.mark.cuda
def test_c8_compares_cudnn_benchmark_off_on_cuda():
    settings, _ = acceleration.acceleration_settings("cuda")
    off = [s for s in settings if s["tag"] == "cudnn.benchmark off"]
    assert len(off) == 1 and off[0]["cudnn_benchmark"] is False
    assert all(s.get("cudnn_benchmark", True) for s in settings if s is not off[0])  # the others: on
    cpu, _ = acceleration.acceleration_settings("cpu")
    assert "cudnn.benchmark off" not in {s["tag"] for s in cpu}


def test_flags_turn_the_switches():
    from lab.cli import build_parser
    from lab.core.config import config_from_args

    args = build_parser().parse_args(["train", "--no-cudnn-benchmark", "--deterministic"])
    config = config_from_args(args)
    assert config.cudnn_benchmark is False and config.deterministic is True
    assert Config().cudnn_benchmark is True and resolve(Config(device="cpu")).config.cudnn_benchmark is False


@pytest.mark.cuda
def test_deterministic_turns_cudnn_autotuning_off(monkeypatch):
    """Autotuning could pick different (deterministic) algorithms in two processes: --deterministic resolves
    cudnn_benchmark off, so the record says what ran."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    on, off = (resolve(Config(device="cuda", deterministic=d), measure=False).config for d in (False, True))
    assert on.cudnn_benchmark is True and off.cudnn_benchmark is False


def test_adams_state_is_measured_in_bytes():
    adam = q_model.after_one_step("adam")
    assert adam["parameter_bytes"] == 11_173_962 * 4
    assert adam["optimizer_state_bytes"] == 2 * adam["parameter_bytes"]  # exp_avg + exp_avg_sq, fp32
    assert "2.00 x the parameters' 44,695,848 bytes" in q_model.state_line(adam)


def test_the_environment_names_the_cpu_its_flags_and_collect_env():
    env = environment.collect()
    assert env["cpu_flags"] == [f for f in environment.CPU_FLAGS if f in cpu_flags()]
    assert env["collect_env"]["torch_version"] == torch.__version__
    assert env["cpus_available"] >= 1 and env["cpu_model"]
    rows = environment.summary(env)
    assert rows["CPU"].startswith(env["cpu_model"]) and set(environment.SHOWN.values()) <= set(rows)
    assert "not captured" in environment.summary(None)["environment"]


def test_one_answer_to_the_precision_a_step_computes_in(monkeypatch):
    """compute_precision: an autocast dtype is the precision; anything else ("off", None, a table's NaN) is fp32, and
    on CUDA tf32 exactly where cuDNN's fp32 convolutions run as TF32 (faked here: the CUDA backend's own setting)."""
    from lab.engine import resolve

    assert [resolve.compute_precision("cpu", amp) for amp in ("bf16", "fp16", "off", None, float("nan"))] == \
        ["bf16", "fp16", "fp32", "fp32", "fp32"]
    for conv, expected in (("tf32", "tf32"), ("ieee", "fp32")):
        monkeypatch.setattr(resolve, "speed_settings", lambda device, conv=conv: {"fp32_precision_conv": conv})
        assert resolve.compute_precision("cuda", "off") == expected
        assert resolve.compute_precision("cuda", "bf16") == "bf16"
