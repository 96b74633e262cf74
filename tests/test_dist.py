"""Data-parallel training on torch.distributed (gloo, 2 processes on this CPU), launched through torchrun's
launcher by `python -m lab train --nproc-per-node N`."""
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lab.engine.records import read_records

ROOT = Path(__file__).resolve().parent.parent


def train(data, *args, timeout=600, env=None):
    cmd = [sys.executable, "-m", "lab", "train", "--dataset", "synthetic", "--data", data.data,
           "--synthetic-train", "640", "--synthetic-test", "128", "--device", "cpu", "--workers", "0",
           "--threads", "1", "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_two_ranks_of_64_train_the_same_weights_as_one_process_of_128(synthetic_data, tmp_path):
    """Without batch norm (per-rank statistics) and augmentation (per-rank draws), DDP's averaged gradients
    over two halves of each batch equal one process's gradient over the whole batch: the union of the
    ranks' shards is the one process's permutation (lab.data.make_loader)."""
    common = ["--disable_batch_norm", "--no-augment", "--lr", "0.02", "--epoch", "2", "--max-batches", "2"]
    two = train(synthetic_data, *common, "--batch-size", "8", "--nproc-per-node", "2",
                "--checkpoint", str(tmp_path / "two.pt"), "--results", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    one = train(synthetic_data, *common, "--batch-size", "16", "--checkpoint", str(tmp_path / "one.pt"))
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = weights(tmp_path / "two.pt"), weights(tmp_path / "one.pt")
    assert a.keys() == b.keys()
    moved = max((a[k] - weights_init(k, b)).abs().max().item() for k in ("linear.weight",))
    assert moved > 1e-4  # 4 steps changed the weights, so equality below means something
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    # one record per rank per epoch, all written by rank 0, with the slowest rank's time on each
    records = read_records(tmp_path / "two")
    assert sorted(zip(records["epoch"], records["rank"])) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert set(records["world_size"]) == {2} and set(records["global_batch_size"]) == {16}
    assert set(records["backend"]) == {"gloo"} and set(records["threads"]) == {1}
    for _, epoch in records.groupby("epoch"):
        assert (epoch["slowest_total_s"] == epoch["total_s"].max()).all()
    last = records[records["epoch"] == records["epoch"].max()]  # measured once a run, after its last epoch
    assert (last["comm_s"] >= 0).all() and last["comm_raw_s"].notna().all()
    assert ((last["comm_low_s"] <= last["comm_high_s"]).all()
            and records.loc[records["epoch"] == 1, "comm_s"].isna().all())
    # a 2-process checkpoint is refused by a 1-process resume: every shard, so every batch, would differ
    refused = train(synthetic_data, *common, "--batch-size", "8", "--epoch", "3", "--resume",
                    "--checkpoint", str(tmp_path / "two.pt"))
    assert refused.returncode == 2 and "world_size=2 (now 1)" in refused.stderr.strip().splitlines()[-1]
    # and resumed by 2 processes: the same run goes on, every rank from the checkpoint
    common[common.index("--epoch") + 1] = "3"
    resumed = train(synthetic_data, *common, "--batch-size", "8", "--nproc-per-node", "2", "--resume",
                    "--checkpoint", str(tmp_path / "two.pt"), "--results", str(tmp_path / "two"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = read_records(tmp_path / "two")
    assert sorted(zip(records["epoch"], records["rank"]))[-2:] == [(3, 0), (3, 1)] and records["run_id"].nunique() == 1


def weights_init(key, like):
    from lab.engine.model import resnet18

    torch.manual_seed(0)
    return resnet18(batch_norm=False).state_dict()[key]


def test_a_rank_that_dies_ends_the_job_with_one_line_naming_it(synthetic_data, tmp_path):
    # rank 1 dies hard in its first epoch (as a crashed process would); rank 0 must not hang
    (tmp_path / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import lab.engine.train\n"
        "    lab.engine.train.Trainer.train_epoch = lambda *a, **k: os._exit(3)\n")
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    start = time.monotonic()
    done = train(synthetic_data, "--batch-size", "8", "--max-batches", "2", "--epoch", "1", "--nproc-per-node", "2",
                 "--checkpoint", str(tmp_path / "c.pt"), env=env, timeout=400)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: distributed training failed: rank 1 (of 2) exited with code 3"), last
    assert "Traceback" not in done.stderr.split("error: distributed")[-1]
    assert time.monotonic() - start < 300  # ended, not hung until a collective's timeout


@pytest.mark.parametrize("args, code, words", [
    (["--nproc-per-node", "0"], 2, "--nproc-per-node must be int in [1, 1024] or None, got 0"),
    (["--nproc-per-node", "-2"], 2, "--nproc-per-node must be int in [1, 1024] or None, got -2"),
    (["--nproc-per-node", "2", "--fast"], 2, "--fast with several processes is not supported"),
    (["--sync-bn"], 2, "--sync-bn needs CUDA"),
])
def test_what_cannot_run_distributed_is_one_line(synthetic_data, tmp_path, args, code, words):
    done = train(synthetic_data, "--max-batches", "1", "--epoch", "1", "--checkpoint", str(tmp_path / "c.pt"), *args)
    assert done.returncode == code and len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr


@pytest.mark.cuda
def test_more_processes_than_gpus_with_nccl_is_refused(monkeypatch, capsys):
    from lab import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code = cli.main(["train", "--device", "cuda", "--nproc-per-node", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "needs 2 GPUs (NCCL: one GPU per process) but this node has 1" in err


def test_the_on_device_loader_shards_like_the_distributed_sampler():
    from lab.data.tensor_loader import TensorLoader

    images, labels = torch.zeros(10, 32, 32, 3, dtype=torch.uint8), torch.arange(10)
    whole = TensorLoader(images, labels, 4, "cpu", augment=False, seed=3)
    shards = [TensorLoader(images, labels, 2, "cpu", augment=False, seed=3, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat([y for _, y in loader]).tolist() for loader in [whole] + shards]
    assert len(shards[0]) == 3 and seen[1] == seen[0][0::2] and seen[2] == seen[0][1::2]
    odd = [TensorLoader(images, labels, 4, "cpu", augment=False, seed=3, rank=r, world_size=3) for r in range(3)]
    sizes = [sum(len(y) for _, y in loader) for loader in odd]
    assert sizes == [4, 4, 4]  # padded to a multiple of the world size, as DistributedSampler does
