"""Resumes cannot mix runs (the checkpoint's data fingerprint and GradScaler state), and a full disk loses
nothing (every write is atomic, and a failed one is one line naming the file)."""
import errno
import os
import shutil

import pytest
import torch

import lab.core.files
import lab.engine.train
from lab.cli import main
from lab.core.config import to_argv
from lab.core.files import WriteError, append_jsonl, atomic_write, read_jsonl, save_json
from lab.data.cifar10 import BATCH_DIR, fingerprint
from lab.engine.checkpoint import restore_scaler, save_checkpoint
from lab.engine.train import run


def cli(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def train_args(config, *extra):
    """`train`'s flags for `config` (lab.core.config.to_argv), then `extra`."""
    return ["train", *to_argv(config), "--no-progress", *extra]


def copy_data(config, folder):
    shutil.copytree(config.data, folder)
    return config.replace(data=str(folder))


# --- the data fingerprint --------------------------------------------------------------------------------

def test_fingerprint_is_the_contents_not_the_sizes_or_the_folder(synthetic_data, tmp_path):
    here = fingerprint(synthetic_data)
    assert here["dataset"] == "synthetic"
    assert sorted(here["sha256"]) == [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    moved = copy_data(synthetic_data, tmp_path / "moved")
    assert fingerprint(moved)["sha256"] == here["sha256"]
    batch = tmp_path / "moved" / "synthetic" / BATCH_DIR / "data_batch_3"
    data = bytearray(batch.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one pixel: same size, other contents
    batch.write_bytes(bytes(data))
    changed = fingerprint(moved)["sha256"]
    assert changed["data_batch_3"] != here["sha256"]["data_batch_3"]
    assert {k: v for k, v in changed.items() if k != "data_batch_3"} == {
        k: v for k, v in here["sha256"].items() if k != "data_batch_3"}


def test_resume_on_moved_identical_data_continues(tiny_config, tmp_path, capsys):
    config = copy_data(tiny_config, tmp_path / "a")
    list(run(config))
    shutil.move(tmp_path / "a", tmp_path / "b")
    code, err = cli(train_args(config.replace(data=str(tmp_path / "b")), "--resume", "--epoch", "2"), capsys)
    assert code == 0 and "resumed from" in err


def test_resume_on_other_data_is_refused(tiny_config, tmp_path, capsys):
    config = copy_data(tiny_config, tmp_path / "a")
    list(run(config))
    batch = tmp_path / "a" / "synthetic" / BATCH_DIR / "data_batch_2"
    data = bytearray(batch.read_bytes())
    data[len(data) // 2] ^= 0xFF
    batch.write_bytes(bytes(data))
    code, err = cli(train_args(config, "--resume", "--epoch", "2"), capsys)
    assert code == 2
    assert err == (f"error: --resume: checkpoint {config.checkpoint} was trained on other data: the contents of "
                   f"data_batch_2 in {tmp_path / 'a' / 'synthetic' / BATCH_DIR} differ from the synthetic files it "
                   "was trained on; resume with that data or start again without --resume")
    assert torch.load(config.checkpoint, weights_only=True)["epoch"] == 1  # nothing trained or written


def test_a_checkpoint_without_a_fingerprint_is_refused(tiny_config, capsys):
    list(run(tiny_config))
    state = torch.load(tiny_config.checkpoint, weights_only=True)
    del state["data"]
    torch.save(state, tiny_config.checkpoint)
    code, err = cli(train_args(tiny_config, "--resume", "--epoch", "2"), capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "does not record which data it was trained on" in err


# --- the fp16 GradScaler's state ---------------------------------------------------------------------------

def test_the_scaler_state_is_saved_and_restored(tiny_config, tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    scaler.load_state_dict({**scaler.state_dict(), "scale": 2.0**20, "_growth_tracker": 5})
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, optimizer, 1, tiny_config, "run", 1, fingerprint(tiny_config), scaler)
    state = torch.load(path, weights_only=True)
    assert state["scaler"] == {"scale": 2.0**20, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 7,
                               "_growth_tracker": 5}
    fresh = torch.amp.GradScaler("cpu")
    restore_scaler(fresh, state)
    assert fresh.state_dict() == state["scaler"]
    restore_scaler(None, state)  # no scaler in this run (bf16, fp32, CPU): nothing to restore


def test_a_resumed_run_continues_with_the_saved_loss_scale(tiny_config, tmp_path, monkeypatch):
    """A scaler whose scale doubles every step (CUDA's fp16 scaler, faked on the CPU): a resumed run must end
    with the scale an uninterrupted run ends with, which it does only if the scale was restored."""
    monkeypatch.setattr(lab.engine.train, "make_scaler",
                        lambda config, device: torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1))
    straight = tiny_config.replace(epochs=2, max_batches=1, checkpoint=str(tmp_path / "a.pt"))
    halves = straight.replace(epochs=1, checkpoint=str(tmp_path / "b.pt"))
    list(run(straight))
    list(run(halves))
    assert torch.load(halves.checkpoint, weights_only=True)["scaler"]["scale"] == 2.0**11  # 1 step
    list(run(halves.replace(epochs=2, resume=True)))
    a, b = (torch.load(c.checkpoint, weights_only=True) for c in (straight, halves))
    assert a["scaler"]["scale"] == b["scaler"]["scale"] == 2.0**12
    assert a["scaler"] == b["scaler"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fp16 GradScaler)")
def test_fp16_on_cuda_resumes_with_its_scaler(tiny_config, tmp_path):
    straight = tiny_config.replace(device="cuda", amp="fp16", epochs=2, checkpoint=str(tmp_path / "a.pt"))
    halves = straight.replace(epochs=1, checkpoint=str(tmp_path / "b.pt"))
    list(run(straight))
    list(run(halves))
    list(run(halves.replace(epochs=2, resume=True)))
    a, b = (torch.load(c.checkpoint, weights_only=True) for c in (straight, halves))
    assert a["scaler"] is not None and a["scaler"] == b["scaler"]


# --- a full disk -------------------------------------------------------------------------------------------

def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullFile:
    """A file on a disk that fills up after `room` bytes."""

    def __init__(self, f, room=10):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            self.f.write(data[:self.room])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


def no_temporary_files(folder):
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("how", ["write", "fsync", "rename"])
def test_a_failed_write_keeps_the_earlier_file_and_names_it(tmp_path, monkeypatch, how):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, [{"epoch": 1}])
    before = path.read_bytes()
    if how == "write":
        monkeypatch.setattr(lab.core.files, "open", lambda *a, **k: FullFile(open(*a, **k)), raising=False)
    else:
        monkeypatch.setattr(os, {"fsync": "fsync", "rename": "replace"}[how], enospc)
    with pytest.raises(WriteError) as caught:
        append_jsonl(path, [{"epoch": 2, "loss": 1.0}])
    assert str(caught.value) == f"cannot write {path}: No space left on device; the earlier file is intact"
    assert caught.value.exit_code == 1 and isinstance(caught.value, OSError)
    assert path.read_bytes() == before and no_temporary_files(tmp_path)


def test_report_json_and_a_new_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", enospc)
    with pytest.raises(WriteError, match=r"report.json: No space left on device; nothing was written$"):
        save_json(tmp_path / "report.json", {"done": {}})
    assert not (tmp_path / "report.json").exists() and no_temporary_files(tmp_path)
    with pytest.raises(WriteError):
        with atomic_write(tmp_path / "x", "wb") as f:
            f.write(b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_training_is_one_line_and_keeps_the_finished_epoch(tiny_config, tmp_path, capsys,
                                                                               monkeypatch):
    out = tmp_path / "out"
    assert cli(train_args(tiny_config, "--results", str(out)), capsys)[0] == 0
    records, checkpoint = (out / "records.jsonl").read_bytes(), open(tiny_config.checkpoint, "rb").read()
    real_replace = os.replace

    def full_for_the_checkpoint(src, dst):
        if str(dst) == tiny_config.checkpoint:
            enospc()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_for_the_checkpoint)
    code, err = cli(train_args(tiny_config, "--results", str(out), "--resume", "--epoch", "2"), capsys)
    assert code == 1, err
    assert err.splitlines()[-1] == (f"error: cannot write {tiny_config.checkpoint}: No space left on device; the "
                                    "earlier file is intact")
    assert open(tiny_config.checkpoint, "rb").read() == checkpoint  # epoch 1's, whole
    assert [r["epoch"] for r in read_jsonl(out / "records.jsonl")] == [1, 2]  # epoch 2's record went first
    monkeypatch.setattr(os, "replace", real_replace)
    assert cli(train_args(tiny_config, "--results", str(out), "--resume", "--epoch", "2"), capsys)[0] == 0
    assert [r["epoch"] for r in read_jsonl(out / "records.jsonl")] == [1, 2]  # epoch 2 again, no duplicate
    assert records == (out / "records.jsonl").read_bytes().splitlines(keepends=True)[0]
