"""Tables and explanations are computed from the records they are given."""
import math

import pandas as pd

from lab import analysis
from lab.results import epoch_table


def record(tag, epoch, load, train, total, loss=2.0, top1=0.1, workers=0, status="ok", images=256, **extra):
    return {"tag": tag, "epoch": epoch, "warmup": epoch == 1, "load_s": load, "train_s": train,
            "other_s": total - load - train, "total_s": total, "loss": loss, "top1": top1, "images": images,
            "batch_size": 128, "workers": workers, "status": status, "host_cpus": 8, **extra}


def test_steady_state_leaves_out_the_warm_up_epoch():
    df = pd.DataFrame([record("a", 1, 5.0, 10.0, 16.0), record("a", 2, 1.0, 9.0, 10.5),
                       record("a", 3, 1.0, 9.0, 10.5, loss=1.5, top1=0.4)])
    row = analysis.summarize(df, "tag").loc["a"]
    assert row["load_s"] == 1.0 and row["total_s"] == 10.5 and row["total_s (all epochs)"] == 37.0 / 3
    assert row["loss"] == 1.5 and row["top1"] == 0.4 and row["batches/epoch"] == 2
    table = epoch_table(df)
    assert list(table.index) == ["1 (warm-up)", "2", "3", "Total", "Avg", "Avg (steady)"]
    assert table.loc["Total", "total_s"] == 37.0 and table.loc["Avg (steady)", "load_s"] == 1.0


def test_explanation_follows_the_numbers_in_both_directions():
    more = pd.DataFrame([record("1 worker", 2, 4.0, 10.0, 14.2, workers=1),
                         record("8 workers (best)", 2, 0.5, 10.1, 10.7, workers=8)])
    text = analysis.explain_workers(analysis.workers_comparison(more))
    assert "8 workers cut the wait for data by 88%" in text and "4.000 s" in text and "28% of the 14.200 s" in text
    assert "bound by **computation**" in text
    fewer = pd.DataFrame([record("1 worker", 2, 0.2, 3.0, 3.3, workers=1),
                          record("0 workers (best)", 2, 0.05, 1.5, 1.6, workers=0)])
    text = analysis.explain_workers(analysis.workers_comparison(fewer))
    assert "Fewer loader processes (0 workers) cut the wait for data by 75%" in text
    assert "Compute itself took 100% longer with 1 worker than with 0 workers" in text


def test_workers_table_marks_the_best_dataloader_count_not_the_tensor_loader():
    df = pd.DataFrame([record("w0", 1, 3.0, 9.0, 12.5, workers=0, loader="torch"),
                       record("w4", 1, 1.0, 9.0, 10.5, workers=4, loader="torch"),
                       record("w8", 1, 1.5, 9.0, 11.0, workers=8, loader="torch"),
                       record("t", 1, 0.1, 9.0, 9.2, workers=0, loader="tensor")])
    table = analysis.workers_table(df)
    assert table.loc["4 workers", "best"] == "best" and table.loc["on-device batched", "best"] == ""
    assert table.loc["on-device batched", "loader images/s"] == 256 / 0.1


def test_acceleration_table_has_no_steady_state_from_a_single_epoch():
    one = pd.DataFrame([record("eager fp32", 1, 0.1, 2.0, 2.2), record("compile default", 1, 0.1, 60.0, 60.2)])
    table = analysis.acceleration_table(one)
    assert table["steady epoch s"].isna().all() and table["speed-up vs eager"].isna().all()
    two = pd.DataFrame([record("compile default", 1, 0.1, 60.0, 60.2), record("compile default", 2, 3.0, 1.5, 4.6),
                        record("eager fp32", 1, 0.1, 2.0, 2.2), record("eager fp32", 2, 3.0, 2.0, 5.0)])
    table = analysis.acceleration_table(two)  # the baseline is eager fp32 by name, wherever its rows are
    assert table.loc["compile default", "first epoch s"] == 60.2
    # the speed-up of the training step, not diluted by the (equal) data-loading time
    assert table.loc["compile default", "speed-up vs eager"] == 2.0 / 1.5
    assert table.loc["eager fp32", "speed-up vs eager"] == 1.0


def test_diverged_and_unavailable_runs_are_shown_not_dropped():
    df = pd.DataFrame([record("sgd", 1, 0.1, 1.0, 1.2, loss=2.0), record("adam", 1, 0.1, 1.1, 1.3, loss=1.0),
                       record("adagrad", 1, 0.1, 1.0, 1.2, loss=float("nan"), status="diverged")])
    table = analysis.compare_table(df)
    assert table.loc["adagrad", "status"] == "diverged" and math.isnan(table.loc["adagrad", "final loss"])
    text = analysis.explain_comparison(table, "optimizer")
    assert "Learned most: **adam**" in text and "Diverged (loss became NaN/inf, run stopped): adagrad" in text
    devices = pd.DataFrame([{**record("cpu", 1, 0.1, 2.0, 2.2), "device_type": "cpu", "device_name": "x86"},
                            {**record("cuda", 1, 0, 0, 0), "device_type": "cuda", "device_name": "not available",
                             "status": "unavailable"}])
    table = analysis.devices_table(devices)
    assert table.loc["cuda", "available"] == "no" and table.loc["cpu", "available"] == "yes"
