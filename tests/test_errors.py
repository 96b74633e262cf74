"""Bad input gets one clear line and the right exit code (2 usage, 1 runtime); --debug shows the traceback."""
import json
import shutil

import pytest

import lab.engine.train
from lab.cli import main
from lab.core.config import Config, ConfigError, to_argv
from lab.core.files import read_jsonl
from lab.data.cifar10 import BATCH_DIR
from lab.engine.train import run


def cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    return code, err


def train_args(config, *extra):
    """`train`'s flags for `config` (lab.core.config.to_argv) at the CLI's default epochs, then `extra`."""
    return ["train", *to_argv(config.replace(epochs=Config().epochs)), "--no-progress", *extra]


def one_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_cifar10_missing_while_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAB_OFFLINE", "1")
    code, err = cli(["train", "--dataset", "cifar10", "--data", str(tmp_path / "nothing"), "--checkpoint",
                     str(tmp_path / "c.pt")], capsys)
    assert code == 1
    assert one_line(err) == (f"error: CIFAR-10 is not in {tmp_path / 'nothing' / BATCH_DIR} and LAB_OFFLINE is set; "
                             "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it into "
                             f"{tmp_path / 'nothing'}, or use --dataset synthetic")


def test_truncated_batch_file_is_named(synthetic_data, tmp_path, capsys):
    shutil.copytree(synthetic_data.data + "/synthetic/" + BATCH_DIR, tmp_path / BATCH_DIR)
    bad = tmp_path / BATCH_DIR / "data_batch_2"
    bad.write_bytes(bad.read_bytes()[:5000])
    code, err = cli(["train", "--dataset", "cifar10", "--data", str(tmp_path), "--checkpoint",
                     str(tmp_path / "c.pt")], capsys)
    line = one_line(err)
    assert code == 1 and f"cannot read CIFAR-10 batch file {bad} (" in line
    assert "download CIFAR-10 again" in line


def test_resume_without_checkpoint(tiny_config, capsys):
    code, err = cli(train_args(tiny_config, "--resume"), capsys)
    assert code == 2
    assert one_line(err) == (f"error: --resume: no checkpoint at {tiny_config.checkpoint}; "
                             "run without --resume to start from scratch")


def test_corrupt_checkpoint(tiny_config, capsys):
    with open(tiny_config.checkpoint, "wb") as f:
        f.write(b"PK\x03\x04 this is not a checkpoint")
    code, err = cli(train_args(tiny_config, "--resume"), capsys)
    assert code == 1
    assert one_line(err).startswith(f"error: --resume: checkpoint {tiny_config.checkpoint} is unreadable (")


@pytest.mark.parametrize("flags, difference", [
    (["--disable_batch_norm"], "batch_norm=True (now False)"),
    (["--optimizer", "adam"], "optimizer='sgd' (now 'adam')"),
    (["--lr", "0.01"], "lr=0.1 (now 0.01)"),  # the optimizer's saved state would silently keep 0.1
])
def test_checkpoint_from_another_configuration(tiny_config, capsys, flags, difference):
    list(run(tiny_config))  # epoch 1 with BN and SGD
    code, err = cli(train_args(tiny_config, "--resume", "--epoch", "2", *flags), capsys)
    assert code == 2
    assert one_line(err) == (f"error: --resume: checkpoint {tiny_config.checkpoint} was made with a different "
                             f"configuration: {difference}")


def test_checkpoints_load_without_running_pickled_code(tiny_config, tmp_path, capsys):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    with open(tiny_config.checkpoint, "wb") as f:
        pickle.dump({"model": {}, "optimizer": {}, "epoch": 1, "config": {}, "x": Evil()}, f, protocol=2)
    code, err = cli(train_args(tiny_config, "--resume"), capsys)
    assert code == 1 and "unreadable" in one_line(err) and "pickled code ran" not in capsys.readouterr().out


def test_unwritable_results_folder_fails_before_training(tiny_config, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = cli(train_args(tiny_config, "--results", str(blocker / "results")), capsys)
    assert code == 1
    assert one_line(err) == f"error: cannot write results to {blocker / 'results'}: Not a directory"
    assert not (tmp_path / "ckpt.pt").exists()  # nothing trained


def test_divergence_is_recorded_and_stops_cleanly(tiny_config, tmp_path, capsys):
    code, err = cli(train_args(tiny_config.replace(max_batches=4), "--lr", "1e12", "--epoch", "3",
                               "--results", str(tmp_path / "out")), capsys)
    assert code == 1
    assert "the run diverged and stops here (lr=1000000000000.0, optimizer=sgd)" in err
    records = read_jsonl(tmp_path / "out" / "records.jsonl")
    assert records[-1]["status"] == "diverged" and len(records) < 3
    assert all(json.loads(json.dumps(r)) == r for r in records)


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tiny_config, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(lab.engine.train, "resnet18", broken)
    code, err = cli(train_args(tiny_config), capsys)
    assert code == 1
    assert one_line(err) == "error: RuntimeError: something broke (run with --debug for the full traceback)"
    with pytest.raises(RuntimeError):
        main(train_args(tiny_config, "--debug"))
    with pytest.raises(ConfigError):
        main(["--debug", "train", "--lr", "0"])
