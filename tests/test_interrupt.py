"""Interrupted training keeps what it finished: a real signal to a real `python -m lab train` process (and to the
`--nproc-per-node` launcher) ends it with one line and 130 / 143, the finished epochs' records and checkpoint
intact, and `--resume` continues from there. Whether the signal lands during an epoch or between two depends on
the machine's speed; the assertions hold either way (they read the epochs from the line itself)."""
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from lab.cli import main
from lab.core.errors import RunState, interruption_message
from lab.core.files import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^interrupted by (?P<sig>SIGINT|SIGTERM) (during epoch (?P<during>\d+)|after epoch (?P<after>\d+)): "
                  r"(epoch 1 is|epochs 1-(?P<saved>\d+) are) saved \(records and checkpoint\); run the same command "
                  r"with --resume to continue$")


def train_args(data, tmp_path, *extra):
    return ["train", "--dataset", "synthetic", "--data", data.data, "--synthetic-train", str(data.synthetic_train),
            "--synthetic-test", str(data.synthetic_test), "--batch-size", "8", "--max-batches", "4", "--epoch",
            "1000", "--device", "cpu", "--json", "--no-progress", "--checkpoint", str(tmp_path / "ckpt.pt"),
            "--results", str(tmp_path / "out"), *extra]


def start(argv, new_session=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LAB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "lab", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env, start_new_session=new_session)


def wait_for_first_record(proc, timeout=400) -> dict:
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        pytest.fail("no epoch finished: " + proc.communicate()[1][-2000:])
    assert line, proc.communicate()[1][-2000:]
    return json.loads(line)


def interrupt(proc, send, timeout=300):
    time.sleep(0.5)  # usually mid-epoch by now; the assertions do not depend on it
    send()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the interrupted run did not end: " + proc.communicate()[1][-2000:])
    return proc.returncode, err


def saved_epochs(line: str, sig: str) -> int:
    match = LINE.match(line)
    assert match and match["sig"] == sig, line
    saved = int(match["saved"] or 1)
    assert (int(match["during"]) == saved + 1) if match["during"] else int(match["after"]) == saved
    return saved


def check_kept(tmp_path, saved: int, ranks: int = 1):
    records = read_jsonl(tmp_path / "out" / "records.jsonl")
    assert [r["epoch"] for r in records] == [e for e in range(1, saved + 1) for _ in range(ranks)]
    assert len({r["run_id"] for r in records}) == 1
    batches = read_jsonl(tmp_path / "out" / "batches.jsonl")
    assert sorted({b["epoch"] for b in batches}) == list(range(1, saved + 1))
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["epoch"] == saved
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def resume_continues(synthetic_data, tmp_path, saved, capsys):
    argv = train_args(synthetic_data, tmp_path, "--resume", "--workers", "0")
    argv[argv.index("1000")] = str(saved + 1)
    assert main(argv) == 0
    assert f"resumed from {tmp_path / 'ckpt.pt'} after epoch {saved}" in capsys.readouterr().err
    check_kept(tmp_path, saved + 1)


def test_sigterm_during_training_keeps_the_finished_epochs_and_resume_continues(synthetic_data, tmp_path, capsys):
    proc = start(train_args(synthetic_data, tmp_path, "--workers", "0"))
    assert wait_for_first_record(proc)["epoch"] == 1
    code, err = interrupt(proc, lambda: proc.send_signal(signal.SIGTERM))
    lines = err.strip().splitlines()
    assert code == 143 and len(lines) == 1 and "Traceback" not in err, err
    saved = saved_epochs(lines[0], "SIGTERM")
    check_kept(tmp_path, saved)
    resume_continues(synthetic_data, tmp_path, saved, capsys)


def test_ctrl_c_with_loader_workers(synthetic_data, tmp_path, capsys):
    """Ctrl-C in a terminal: SIGINT to the whole process group, the DataLoader's worker processes included."""
    proc = start(train_args(synthetic_data, tmp_path, "--workers", "2"), new_session=True)
    wait_for_first_record(proc)
    code, err = interrupt(proc, lambda: os.killpg(proc.pid, signal.SIGINT))
    lines = err.strip().splitlines()
    assert code == 130 and len(lines) == 1 and "Traceback" not in err, err
    saved = saved_epochs(lines[0], "SIGINT")
    check_kept(tmp_path, saved)
    resume_continues(synthetic_data, tmp_path, saved, capsys)


def processes_with(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_sigterm_to_the_distributed_launcher(synthetic_data, tmp_path):
    """`kill <launcher>` under --nproc-per-node 2: torchrun's agent passes SIGTERM on to both ranks; rank 0 says
    what is saved, nothing else is printed, the job exits 143 and no rank is left running."""
    argv = train_args(synthetic_data, tmp_path, "--workers", "0", "--nproc-per-node", "2")
    argv[argv.index("--batch-size") + 1] = "4"
    proc = start(argv)
    assert wait_for_first_record(proc)["world_size"] == 2
    code, err = interrupt(proc, lambda: proc.send_signal(signal.SIGTERM))
    lines = err.strip().splitlines()
    assert code == 143 and len(lines) == 1 and "Traceback" not in err, err
    saved = saved_epochs(lines[0], "SIGTERM")
    check_kept(tmp_path, saved, ranks=2)
    deadline = time.monotonic() + 60
    while processes_with(str(tmp_path / "ckpt.pt")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(str(tmp_path / "ckpt.pt")) == []


@pytest.mark.parametrize("checkpoint, results, track, line", [
    ("c.pt", "out", RunState(epoch=3, saved=2), "interrupted by SIGTERM during epoch 3: epochs 1-2 are saved (records "
     "and checkpoint); run the same command with --resume to continue"),
    ("c.pt", None, RunState(epoch=2, saved=1), "interrupted by SIGTERM during epoch 2: epoch 1 is saved (checkpoint); "
     "run the same command with --resume to continue"),
    ("c.pt", "out", RunState(epoch=1, saved=0), "interrupted by SIGTERM during epoch 1: no epoch finished, nothing to "
     "resume; run the command again to start over"),
    (None, "out", RunState(epoch=None, saved=2), "interrupted by SIGTERM after epoch 2: the records of epochs 1-2 are "
     "in out/records.jsonl; without a checkpoint (--checkpoint '') the run cannot be resumed"),
    (None, None, RunState(epoch=4, saved=3), "interrupted by SIGTERM during epoch 4: epochs 1-3 finished but nothing "
     "was saved (no --checkpoint, no --results)"),
    ("c.pt", None, RunState(), "interrupted by SIGTERM before the first epoch: no epoch finished, nothing to resume; "
     "run the command again to start over"),
])
def test_the_line_says_what_is_kept(checkpoint, results, track, line):
    assert interruption_message(signal.SIGTERM, track, checkpoint, results) == line
