import json
import os
import subprocess
import sys

import pytest
import torch

from lab.cli import main
from lab.engine.records import METRICS


def _run_main(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("flags, words", [
    (["--optimizer", "rmsprop"], "rmsprop"),
    (["--workers", "-1"], "workers"),
    (["--lr", "0"], "lr"),
    (["--lr", "-0.1"], "lr"),
    (["--epoch", "0"], "epochs"),
    (["--max-batches", "0"], "max_batches"),
    (["--batch-size", "0"], "batch_size"),
    (["--lr", "fast"], "--lr"),
])
def test_invalid_values_exit_2_with_one_line(flags, words, capsys, tmp_path):
    code, err = _run_main(["train", "--dataset", "synthetic", "--data", str(tmp_path)] + flags, capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and words in err


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("flag", [["--gpu"], ["--device", "cuda"]])
def test_cuda_without_cuda_is_an_error_not_a_fallback(flag, capsys, tiny_config):
    code, err = _run_main(["train", "--dataset", "synthetic", "--data", tiny_config.data] + flag, capsys)
    assert code == 1 and len(err.splitlines()) == 1 and "CUDA" in err


def test_train_json_prints_one_full_record_per_epoch(tiny_config, tmp_path):
    cmd = [sys.executable, "-m", "lab", "train", "--dataset", "synthetic", "--data", tiny_config.data,
           "--synthetic-train", str(tiny_config.synthetic_train), "--synthetic-test", str(tiny_config.synthetic_test),
           "--epoch", "2", "--max-batches", "3", "--workers", "0", "--batch-size", "16", "--json",
           "--checkpoint", str(tmp_path / "ckpt.pt")]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        for field in ("optimizer", "lr", "workers", "batch_size", "batch_norm", "device", "dataset", "seed",
                      "max_batches", "torch_version", "device_name", "host_cpus", "git_commit",
                      "dataset_kind") + METRICS:
            assert field in record, field
        assert record["images"] == 48 and record["dataset_kind"] == "synthetic"
    assert "Avg" in done.stderr and "Total" in done.stderr  # the table goes to stderr with --json
