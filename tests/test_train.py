import math

import psutil
import pytest

import lab.core.timing
import lab.engine.train
from lab.engine.fast import c_compiler
from lab.engine.records import read_records
from lab.engine.train import run


def test_a_few_epochs_lower_the_loss(tiny_config):
    config = tiny_config.replace(optimizer="adam", lr=1e-3, batch_size=32, max_batches=4, epochs=4, seed=3)
    losses = [r["loss"] for r in run(config)]
    assert len(losses) == 4
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_matches_an_uninterrupted_run(tiny_config, tmp_path, workers):
    straight = tiny_config.replace(epochs=2, workers=workers, checkpoint=str(tmp_path / "a.pt"))
    first = tiny_config.replace(epochs=1, workers=workers, checkpoint=str(tmp_path / "b.pt"))
    a = list(run(straight))
    b = list(run(first)) + list(run(first.replace(epochs=2, resume=True)))
    assert [r["epoch"] for r in b] == [1, 2]
    assert [(r["loss"], r["top1"]) for r in a] == [(r["loss"], r["top1"]) for r in b]
    assert b[1]["warmup"] is True  # a resumed process pays its own start-up again


def test_an_interruption_between_record_and_checkpoint_leaves_no_duplicate(tiny_config, tmp_path, monkeypatch):
    config = tiny_config.replace(epochs=2)
    out = tmp_path / "out"
    list(run(config.replace(epochs=1), results_dir=out))
    real_save = lab.engine.train.save_checkpoint

    def killed_at_epoch_2(path, model, optimizer, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt  # the record of epoch 2 is written, its checkpoint is not
        real_save(path, model, optimizer, epoch, *args)

    monkeypatch.setattr(lab.engine.train, "save_checkpoint", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        list(run(config.replace(resume=True), results_dir=out))
    monkeypatch.setattr(lab.engine.train, "save_checkpoint", real_save)
    assert list(read_records(out)["epoch"]) == [1, 2]
    list(run(config.replace(resume=True), results_dir=out))  # epoch 2 again
    records, batches = read_records(out), read_records(out, kind="batch")
    assert list(records["epoch"]) == [1, 2] and records["run_id"].nunique() == 1
    assert list(batches["epoch"]) == [1, 1, 2, 2]


def test_resuming_a_finished_run_says_so(tiny_config, capsys):
    list(run(tiny_config))
    assert list(run(tiny_config.replace(resume=True), log=print)) == []
    assert "nothing to do: the checkpoint" in capsys.readouterr().out


def test_top1_is_over_all_samples_and_records_are_written(tiny_config, tmp_path):
    config = tiny_config.replace(max_batches=3, epochs=2)
    records = list(run(config, results_dir=tmp_path / "out"))
    epochs = read_records(tmp_path / "out")
    batches = read_records(tmp_path / "out", kind="batch")
    assert list(epochs["epoch"]) == [1, 2] and len(batches) == 6
    for record in records:
        rows = batches[batches["epoch"] == record["epoch"]]
        assert record["images"] == rows["images"].sum() == 3 * 16
        assert record["top1"] == pytest.approx((rows["top1"] * rows["images"]).sum() / rows["images"].sum())
        assert record["loss"] == pytest.approx((rows["loss"] * rows["images"]).sum() / rows["images"].sum())
        assert 0 <= record["top1"] <= 1 and record["other_s"] >= 0
        assert record["dataset_kind"] == "synthetic" and record["device_type"] == "cpu"
    assert records[0]["warmup"] and not records[1]["warmup"]


def test_evaluation_is_outside_the_timed_epoch(tiny_config, monkeypatch):
    """An evaluation that takes 1000 s on the timers' clock (lab.timing reads real time plus what the fake
    evaluation adds) leaves the epoch's times alone: a bound no load can reach."""
    real = lab.core.timing.perf_counter
    added = [0.0]
    monkeypatch.setattr(lab.core.timing, "perf_counter", lambda: real() + added[0])

    def slow_evaluate(*args, **kwargs):
        added[0] += 1000.0
        return {"test_loss": 1.0, "test_top1": 0.5}

    monkeypatch.setattr(lab.engine.train, "evaluate", slow_evaluate)
    records = list(run(tiny_config.replace(max_batches=1, epochs=2, evaluate=True)))
    assert [r["test_top1"] for r in records] == [0.5, 0.5] and added[0] == 2000.0
    assert all(r["total_s"] < 1000 for r in records)


def test_real_evaluation_reports_test_metrics(tiny_config):
    record = list(run(tiny_config.replace(evaluate=True)))[0]
    assert 0 <= record["test_top1"] <= 1 and math.isfinite(record["test_loss"])


def test_divergence_stops_the_run_and_says_so(tiny_config, tmp_path):
    config = tiny_config.replace(lr=1e12, optimizer="sgd", epochs=3, max_batches=4)
    records = list(run(config, results_dir=tmp_path))
    assert records[-1]["status"] == "diverged" and len(records) < 3
    assert not math.isfinite(records[-1]["loss"])
    assert read_records(tmp_path)["status"].iloc[-1] == "diverged"


@pytest.mark.skipif(c_compiler() is None, reason="no C compiler: torch.compile cannot build CPU kernels here")
def test_compiled_model_trains_like_eager(tiny_config):
    eager = list(run(tiny_config))[0]
    compiled = list(run(tiny_config.replace(compile="default")))[0]
    assert compiled["status"] == "ok" and compiled["compile"] == "default"
    assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-3)  # same math, fused kernels


def test_channels_last_and_bf16_autocast_train(tiny_config):
    config = tiny_config.replace(batch_size=8, max_batches=1)  # bf16 is emulated on CPUs without bf16 units: slow
    eager = list(run(config))[0]
    for change in ({"channels_last": True}, {"amp": "bf16"}):
        record = list(run(config.replace(**change)))[0]
        assert record["status"] == "ok"
        assert record["loss"] == pytest.approx(eager["loss"], rel=0.05)


def test_q5s_account_explains_times_and_profiles_a_compiled_step(tmp_path):
    """Q5's measurement, with the aot_eager backend (TorchDynamo and AOTAutograd without building kernels: the
    same path in seconds); inductor's own account is among a report's C8 rows. Its rows read back as measured."""
    from lab.core import results
    from lab.core.config import Config
    from lab.engine import acceleration
    from lab.parts import c8_acceleration as c8

    rows = results.Rows(tmp_path, c8.ID)
    measured = acceleration.measure_account(Config(device="cpu", batch_size=4, seed=1), rows, backend="aot_eager")
    account = acceleration.read_account(results.read(tmp_path, part=c8.ID))
    assert account["graphs"] == 1 and account["graph_breaks"] == 0 and account["forward_ops_captured"] > 50
    assert account["before"]["aten_ops"] > 100 and 0 < account["before"]["conv_share"] < 1
    assert account["step_s"] == measured["step_s"] and len(account["step_s"]["compiled"]) == 4
    assert account["compile_s"] == pytest.approx(measured["compile_s"]) and account["first_compiled_step_s"] > 0
    assert account["backend"] == "aot_eager" and account["batch_size"] == 4 and account["device_type"] == "cpu"
    text = c8.explain_compile(account, acceleration.compile_verdict(account))
    assert "TorchDynamo captured the forward as 1 graph with 0 graph breaks" in text
    assert "s of compilation**, paid in the first epoch" in text
    assert "compiled vs eager (step): " in text or "compiled is faster than eager (step)" in text or (
        "compiled is slower than eager (step)" in text)  # the rule's verdict on 4 steps each


def _children() -> set:
    return {p.pid for p in psutil.Process().children()}


@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_workers_live_through_the_run_and_others_restart_each_epoch(tiny_config, persistent):
    config = tiny_config.replace(workers=1, persistent_workers=persistent, prefetch_factor=3, max_batches=1,
                                 epochs=3)
    before, seen = _children(), []
    for record in run(config):  # between epochs, the run's DataLoader workers are this process's new children
        seen.append(_children() - before)
        assert record["persistent_workers"] is persistent and record["prefetch_factor"] == 3
        assert math.isfinite(record["loader_start_s"]) and record["load_s"] >= record["loader_start_s"]
        assert (record["workers_cpu_s"] is None) is persistent  # live workers' CPU time is not counted yet
    if persistent:
        assert len(seen[0]) == 1 and seen[0] == seen[1] == seen[2]  # one worker served all three epochs
    else:
        assert seen == [set()] * 3  # each epoch's worker ended with it (tests/test_data.py: a new one each epoch)
    assert not _children() & seen[-1]  # the run's end shuts persistent workers down


def test_persistent_workers_without_workers_are_ignored_and_recorded_off(tiny_config):
    records = list(run(tiny_config.replace(workers=0, persistent_workers=True, prefetch_factor=4, epochs=2)))
    assert [(r["persistent_workers"], r["prefetch_factor"]) for r in records] == [(False, None)] * 2
