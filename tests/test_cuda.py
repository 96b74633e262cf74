"""The CUDA paths on a real GPU: what the fakes elsewhere (test_timing, test_data, test_fast) check by
construction, run for real. Skipped without a CUDA device; scripts/gpu-check.sh runs them with every other
test marked `cuda` (pytest -m cuda)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lab.core.timing
from lab.data.tensor_loader import TensorLoader, crop_flip, draw_augmentation
from lab.engine import progress
from lab.engine.records import read_records
from lab.engine.train import run

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture
def cuda_config(tiny_config):
    return tiny_config.replace(device="cuda", batch_size=32, max_batches=4, epochs=2)


def test_a_cuda_run_records_its_device_and_every_phase(cuda_config, tmp_path):
    records = list(run(cuda_config.replace(workers=2), results_dir=tmp_path))
    assert [r["status"] for r in records] == ["ok", "ok"]
    r = records[-1]
    assert r["device_type"] == "cuda" and r["device_name"] == torch.cuda.get_device_name(0)
    assert r["load_s"] >= 0 and r["train_s"] > 0 and r["other_s"] >= 0 and r["images"] == 4 * 32
    assert len(read_records(tmp_path, kind="batch")) == 8


def test_every_clock_read_on_cuda_follows_a_real_synchronize(cuda_config, monkeypatch):
    events = []
    real_sync, real_clock = torch.cuda.synchronize, lab.core.timing.perf_counter
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync") or real_sync(device))
    monkeypatch.setattr(lab.core.timing, "perf_counter", lambda: events.append("clock") or real_clock())
    list(run(cuda_config.replace(epochs=1)))
    clocks = [i for i, e in enumerate(events) if e == "clock"]
    assert len(clocks) == 2 * (2 + 2 * 4)  # total, iter(), then load + train per batch
    assert all(events[i - 1] == "sync" for i in clocks)


def test_epoch_timers_on_cuda_sync_only_around_the_epoch(cuda_config, monkeypatch):
    syncs = []
    real_sync = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: syncs.append(1) or real_sync(device))
    record = list(run(cuda_config.replace(epochs=1, timers="epoch", loader="tensor")))[0]
    assert len(syncs) == 2 and record["load_s"] is None and record["total_s"] > 0 and record["status"] == "ok"


def test_memory_on_cuda_is_measured_per_epoch(cuda_config):
    records = list(run(cuda_config.replace(loader="tensor")))
    for r in records:
        assert 0 < r["cuda_peak_above_start_bytes"] <= r["cuda_peak_allocated_bytes"] <= r["cuda_peak_reserved_bytes"]
        assert r["host_peak_rss_bytes"] > 0 and r["cudnn_benchmark"] is True and r["cudnn_benchmark_on"] is True


def test_deterministic_runs_on_cuda_repeat_exactly(cuda_config):
    """--deterministic on a GPU, in two processes (each with its own cuBLAS and cuDNN state): the same losses
    bit for bit, cudnn.benchmark resolved off, cuBLAS's workspace set before CUDA started."""
    c = cuda_config
    cmd = [sys.executable, "-m", "lab", "train", "--device", "cuda", "--deterministic", "--json", "--no-progress",
           "--dataset", "synthetic", "--data", c.data, "--synthetic-train", str(c.synthetic_train),
           "--synthetic-test", str(c.synthetic_test), "--batch-size", "32", "--max-batches", "4", "--epoch", "1",
           "--workers", "0", "--loader", "tensor", "--checkpoint", ""]
    first, second = (json.loads(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
                                .stdout.splitlines()[-1]) for _ in range(2))
    assert first["deterministic_on"] is True and first["cudnn_benchmark"] is False
    assert first["loss"] == second["loss"] and first["top1"] == second["top1"]


def test_the_on_device_loader_augments_on_the_gpu_as_on_the_cpu():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    top, left, flip = draw_augmentation(64, torch.Generator().manual_seed(0))
    on_gpu = crop_flip(images.cuda(), top.cuda(), left.cuda(), flip.cuda())
    assert torch.equal(on_gpu.cpu(), crop_flip(images, top, left, flip))
    loader = TensorLoader(images.permute(0, 2, 3, 1), torch.arange(64) % 10, 16, "cuda", seed=1)
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.float32 and x.shape == (16, 3, 32, 32)


def test_channels_last_and_autocast_train_like_eager_on_cuda(cuda_config):
    eager = list(run(cuda_config.replace(epochs=1)))[0]
    for change in ({"channels_last": True}, {"amp": "bf16"}, {"amp": "fp16"}):
        record = list(run(cuda_config.replace(epochs=1, **change)))[0]
        assert record["status"] == "ok" and record["loss"] == pytest.approx(eager["loss"], rel=0.05), change


def test_a_cuda_run_reports_its_progress(cuda_config, tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    list(run(cuda_config.replace(timers="epoch", loader="tensor", tag="cuda")))
    ends = [(e["epoch"], e["batch"]) for e in map(json.loads, path.read_text().splitlines()) if e["batch"] == 4]
    assert ends == [(1, 4), (2, 4)]


def test_one_process_with_nccl(synthetic_data, tmp_path):
    cmd = [sys.executable, "-m", "lab", "train", "--dataset", "synthetic", "--data", synthetic_data.data,
           "--synthetic-train", "640", "--synthetic-test", "128", "--device", "cuda", "--workers", "0",
           "--batch-size", "32", "--max-batches", "2", "--epoch", "1", "--nproc-per-node", "1", "--no-progress",
           "--checkpoint", "", "--results", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_records(tmp_path)
    assert list(records["backend"]) == ["nccl"] and list(records["world_size"]) == [1]
    assert list(records["device_type"]) == ["cuda"]
