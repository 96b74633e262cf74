"""The parts' tables and explanations are computed from the records they are given, through the noise rule."""
import math

import pandas as pd
import pytest

from lab.core import results
from lab.engine import acceleration
from lab.engine.acceleration import save_plan
from lab.parts import c3_workers, c4_workers_profile, c5_devices, c8_acceleration, comparison, tables


def record(tag, epoch, load, train, total, loss=2.0, top1=0.1, workers=0, status="ok", images=256, **extra):
    return {"tag": tag, "run_id": tag, "epoch": epoch, "warmup": epoch == 1, "load_s": load, "train_s": train,
            "other_s": total - load - train, "total_s": total, "loss": loss, "top1": top1, "images": images,
            "batch_size": 128, "workers": workers, "status": status, "host_cpus": 8, "loader_start_s": 0.0,
            "starved_batches": 0, "timers": "phase", **extra}


def runs(tag, loads, trains, workers=0, **extra):
    """A warm-up epoch then one epoch per (load, train) pair."""
    rows = [record(tag, 1, 9.0, 9.0, 20.0, workers=workers, **extra)]
    rows += [record(tag, e, l, t, l + t + 0.1, workers=workers, **extra)
             for e, (l, t) in enumerate(zip(loads, trains), start=2)]
    return rows


def test_steady_state_leaves_out_the_warm_up_epoch():
    df = pd.DataFrame([record("a", 1, 5.0, 10.0, 16.0), record("a", 2, 1.0, 9.0, 10.5),
                       record("a", 3, 1.0, 9.0, 10.5, loss=1.5, top1=0.4)])
    row = tables.summarize(df, "tag").loc["a"]
    assert row["load_s"] == 1.0 and row["total_s"] == 10.5 and row["total_s (all epochs)"] == 37.0 / 3
    assert row["loss"] == 1.5 and row["top1"] == 0.4 and row["batches/epoch"] == 2
    assert row["total_s range"] == "10.5 (10.5–10.5)" and row["total_s samples"] == [10.5, 10.5]
    table = tables.epoch_table(df)
    assert list(table.index) == ["1 (warm-up)", "2", "3", "Total", "Avg", "Avg (steady)"]
    assert table.loc["Total", "total_s"] == 37.0 and table.loc["Avg (steady)", "load_s"] == 1.0


def test_epoch_timers_leave_the_split_empty_not_zero():
    df = pd.DataFrame([record("f", 1, 0, 0, 3.0), record("f", 2, 0, 0, 2.0)])
    df[["load_s", "train_s", "other_s"]] = None
    table = tables.epoch_table(df)
    assert table[["load_s", "train_s", "other_s"]].isna().all().all() and table.loc["Total", "total_s"] == 5.0


def with_cpu(df, tag, used, workers, cores=2, threads=2):
    """The CPU the tag's epochs used: `used` and `workers` CPU-seconds per second of each epoch."""
    rows = df["tag"] == tag
    df.loc[rows, "cpu_s"] = used * df.loc[rows, "total_s"]
    df.loc[rows, "workers_cpu_s"] = workers * df.loc[rows, "total_s"]
    df.loc[rows, ["cpus_available", "threads"]] = cores, threads
    return df


def test_explanation_follows_the_numbers_in_both_directions():
    more = pd.DataFrame(runs("1 worker", [4.0, 4.2, 4.1, 4.05], [10.0, 10.1, 10.2, 10.1], workers=1)
                        + runs("8 workers (best)", [0.5, 0.6, 0.55, 0.52], [10.1, 10.0, 10.2, 10.05], workers=8))
    with_cpu(with_cpu(more, "1 worker", 1.0, 0.5, cores=16), "8 workers (best)", 1.0, 3.5, cores=16)
    text = c4_workers_profile.explain_workers(more)
    assert "Wait for data: 8 workers is faster than 1 worker: ×" in text
    assert "Why, measured: with 8 workers, the training process used 1.00 CPU-seconds per second" in text
    assert "its workers 3.50: 4.50 of the 16 cores" in text
    assert "Compute: 8 workers vs 1 worker: no measurable difference" in text  # no blame on 8 workers
    assert "bound by **computation**" in text
    fewer = pd.DataFrame(runs("1 worker", [0.2, 0.21, 0.22, 0.2], [3.0, 3.1, 3.05, 3.02], workers=1)
                         + runs("0 workers (best)", [0.05, 0.06, 0.05, 0.055], [1.5, 1.6, 1.55, 1.52], workers=0))
    with_cpu(with_cpu(fewer, "1 worker", 1.95, 0.6), "0 workers (best)", 1.9, 0.0)
    text = c4_workers_profile.explain_workers(fewer)
    assert "Wait for data: 0 workers is faster than 1 worker" in text
    assert "Compute: 0 workers is faster than 1 worker: ×" in text
    assert "2.55 of the 2 cores" in text and "the workers used 30% of them: they compete" in text
    idle = with_cpu(with_cpu(fewer.copy(), "1 worker", 1.0, 0.3, cores=8), "0 workers (best)", 1.0, 0.0, cores=8)
    text = c4_workers_profile.explain_workers(idle)
    assert "Core sharing does not explain it" in text
    tiny = with_cpu(with_cpu(fewer.copy(), "1 worker", 1.97, 0.03), "0 workers (best)", 1.98, 0.0)  # busy cores
    text = c4_workers_profile.explain_workers(tiny)
    assert "but the workers used only 1% of them, too little to explain it" in text  # 0.03 of 2 cores
    unmeasured = fewer.drop(columns=["cpu_s", "workers_cpu_s", "cpus_available"])  # older records: no "why"
    text = c4_workers_profile.explain_workers(unmeasured)
    assert "Why" not in text and "cores" not in text and "Compute: 0 workers is faster than 1 worker: ×" in text


def test_a_difference_inside_the_noise_is_not_explained():
    # the review's case: 16 cores, compute 13 % longer by the mean, ranges overlapping
    df = pd.DataFrame(runs("1 worker", [0.30, 0.40, 0.35, 0.32], [4.0, 5.6, 4.5, 5.1], workers=1)
                      + runs("4 workers (best)", [0.29, 0.41, 0.33, 0.36], [4.4, 5.5, 4.9, 5.2], workers=4))
    df["host_cpus"] = 16
    text = c4_workers_profile.explain_workers(df)
    assert "Wait for data: 4 workers vs 1 worker: no measurable difference" in text
    assert "Compute: 4 workers vs 1 worker: no measurable difference" in text and "core" not in text


def test_workers_table_marks_the_rule_from_the_saved_sweep():
    df = pd.DataFrame(runs("w0", [3.0, 3.1], [9.0, 9.0], workers=0, loader="torch")
                      + runs("w4", [1.0, 1.1], [9.0, 9.0], workers=4, loader="torch")
                      + runs("w8", [1.05, 1.2], [9.0, 9.0], workers=8, loader="torch")
                      + runs("t", [0.1, 0.1], [9.0, 9.0], workers=0, loader="tensor"))
    df.loc[df["tag"] == "w8", "loader_start_s"] = 0.5  # start-up is apart from the per-batch wait
    table = c3_workers.workers_table(df, {"best_workers": 4, "stop_at": 8})
    assert table.loc["4 workers", "rule"] == "best" and table.loc["8 workers", "rule"] == "stopped here"
    assert table.loc["on-device batched", "rule"] == ""
    assert table.loc["8 workers", "batch wait s"] == 1.125 - 0.5 and table.loc["8 workers", "worker start-up s"] == 0.5
    assert "loader images/s" not in table.columns  # images / wait is not a throughput


def test_acceleration_table_states_step_and_epoch_speed_ups_and_flags_starvation(tmp_path):
    one = pd.DataFrame([record(c8_acceleration.BASELINE, 1, 0.1, 2.0, 2.2),
                        record("compile default", 1, 0.1, 60.0, 60.2)])
    table = c8_acceleration.acceleration_table(one)
    assert table["steady_epoch_s"].isna().all() and (table["step_speed_up"] == "—").all()
    df = pd.DataFrame(runs(c8_acceleration.BASELINE, [0.1, 0.1], [2.0, 2.0])
                      + runs("compile default", [1.0, 1.1], [1.0, 1.0]))
    df.loc[(df["tag"] == "compile default") & ~df["warmup"], "starved_batches"] = 1  # of 2 batches per epoch
    rows = results.Rows(tmp_path, c8_acceleration.ID)
    save_plan(rows, [c8_acceleration.BASELINE, "compile default", c8_acceleration.FAST],
              {"compile max-autotune": "opt-in"}, {})
    table = c8_acceleration.acceleration_table(df, results.read(tmp_path, part=c8_acceleration.ID))
    row = table.loc["compile default"]
    assert row["step_speed_up"] == "×2.00" and row["epoch_speed_up"].startswith("×1.0")
    assert row["loader"] == "starved"
    assert table.loc[c8_acceleration.FAST, "status"].startswith("not measured: planned")
    assert table.loc["compile max-autotune", "status"] == "not measured: opt-in"
    text = c8_acceleration.explain_acceleration(table, acceleration.speed_claims(table))
    assert "Starved" in text and "compile max-autotune**: not measured: opt-in" in text


def test_learning_is_judged_on_test_accuracy_not_training_loss():
    df = pd.DataFrame(runs("sgd", [0.1] * 4, [1.0, 1.01, 1.03, 0.99], loss=1e-3)
                      + runs("adadelta", [0.1] * 4, [1.0, 1.02, 0.98, 1.01], loss=9e-4)
                      + [record("adagrad", 1, 0.1, 1.0, 1.2, loss=float("nan"), status="diverged")])
    table = comparison.compare_table(df)
    assert table.loc["adagrad", "status"] == "diverged" and math.isnan(table.loc["adagrad", "final loss"])
    text = comparison.explain_comparison(table, "optimizer", comparison.verdicts(df))
    assert "Learning: not compared" in text and "adadelta" not in text.split("Learning")[1]
    assert "Speed:" in text and "no measurable difference" in text
    assert "Diverged (loss became NaN/inf, run stopped): adagrad" in text
    df["test_top1"], df["test_images"] = [0.5] * 5 + [0.9] * 5 + [None], 10_000
    text = comparison.explain_comparison(comparison.compare_table(df), "optimizer", comparison.verdicts(df))
    assert "Highest test top-1: **adadelta**" in text


def test_unavailable_devices_are_shown_not_dropped():
    devices = pd.DataFrame([{**r, "device_type": "cpu", "device_name": "x86"}
                            for r in runs("cpu", [0.1, 0.1], [2.0, 2.1])]
                           + [{**record("cuda", 1, 0, 0, 0), "device_type": "cuda", "device_name": "not available",
                               "status": "unavailable"}])
    table = c5_devices.devices_table(devices)
    assert table.loc["cuda", "available"] == "no" and table.loc["cpu", "available"] == "yes"
    assert "Only one device was measured (cuda not available)" in c5_devices.explain_devices(devices)


def _split(df, tag, starts):
    """The tag's epochs with this worker start-up inside their wait for data (load_s grows by it)."""
    rows = df["tag"] == tag
    df.loc[rows, "loader_start_s"] = starts
    df.loc[rows, "load_s"] += starts
    df.loc[rows, "total_s"] += starts
    return df


def test_c4_names_the_start_up_where_it_drives_the_wait():
    # the quick report's case: the per-batch wait alike (~0.05 s), 1 worker's start-up paid every epoch (~0.09 s)
    df = pd.DataFrame(runs("1 worker", [0.049, 0.051, 0.050, 0.048], [3.0, 3.1, 3.05, 3.02], workers=1)
                      + runs("0 workers (best)", [0.050, 0.049, 0.051, 0.050], [3.0, 3.1, 3.05, 3.02], workers=0))
    _split(df, "1 worker", [0.09, 0.085, 0.088, 0.091, 0.087])
    _split(df, "0 workers (best)", [0.0002, 0.0002, 0.00021, 0.00019, 0.0002])
    table = c4_workers_profile.workers_comparison(df)
    assert table.loc["1 worker", "worker start-up s"] == pytest.approx(0.08775)  # steady epochs: the first is left out
    text = c4_workers_profile.explain_workers(df)
    load, batch, _ = text.claims
    assert load.decided and load.verdict == "faster" and not batch.decided
    assert "What drives it is the workers' start-up, 0.0877 s per epoch with 1 worker" in text
    assert "paid every epoch because the workers are not persistent" in text
    assert "the per-batch wait alone: 0 workers vs 1 worker: no measurable difference" in text
    finding = c4_workers_profile.findings(df)[0]
    assert "per-batch wait: 0 workers vs 1 worker: no measurable difference" in finding.answer
    assert "the wait's difference is mostly the workers' start-up" in finding.answer


def test_c4_names_the_per_batch_wait_where_it_drives_the_wait():
    df = pd.DataFrame(runs("1 worker", [0.20, 0.21, 0.22, 0.20], [3.0, 3.1, 3.05, 3.02], workers=1)
                      + runs("4 workers (best)", [0.05, 0.06, 0.05, 0.055], [3.0, 3.1, 3.05, 3.02], workers=4))
    _split(df, "1 worker", [0.09, 0.085, 0.088, 0.091, 0.087])
    _split(df, "4 workers (best)", [0.10, 0.095, 0.098, 0.1, 0.097])
    text = c4_workers_profile.explain_workers(df)
    assert "What drives it is the per-batch wait (4 workers faster than 1 worker: ×" in text
    assert "the workers' start-up, 0.0877 s per epoch with 1 worker" in text


def test_c3_shows_what_persistent_workers_remove():
    df = pd.DataFrame(runs("1 worker", [0.05, 0.051, 0.049, 0.05], [3.0, 3.1, 3.05, 3.02], workers=1)
                      + runs(c3_workers.PERSISTENT, [0.05, 0.051, 0.049, 0.05], [3.0, 3.1, 3.05, 3.02], workers=1,
                             persistent_workers=True))
    _split(df, "1 worker", [0.09, 0.085, 0.088, 0.091, 0.087])
    _split(df, c3_workers.PERSISTENT, [0.09, 0.0011, 0.0009, 0.001, 0.0012])  # started once, in the first epoch
    table = c3_workers.workers_table(df, {"best_workers": 1, "stop_at": 1})
    assert list(c3_workers.sweep_rows(table).index) == ["1 worker"]  # the sweep's rule marks only its counts
    assert table.loc[c3_workers.PERSISTENT, "rule"] == "" and table.loc["1 worker", "rule"] != ""
    assert table.loc[c3_workers.PERSISTENT, "worker start-up s"] == pytest.approx(0.00105)
    text = c3_workers.explain_persistent(df)
    assert "the worker started once (0.0900 s in the first epoch)" in text
    assert f"Worker start-up per epoch: {c3_workers.PERSISTENT} is faster than 1 worker: ×" in text
    assert text.claims[0].decided
    same = df.copy()  # no persistent setting in the block (an older report): nothing to say
    assert c3_workers.explain_persistent(same[same["tag"] == "1 worker"]) == ""
