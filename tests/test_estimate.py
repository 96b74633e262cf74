"""The estimate prices each part's trained steps by their setting (as measured so far in the report), falls back
to the nearest measured setting and says so, and replays a finished report's estimate after C2 (synthetic
records with known costs: nothing here depends on this machine's speed)."""
import json

import pytest

from lab.core.files import save_json
from lab.parts import c2_timing, c6_optimizers, q_model
from lab.parts.base import Work, step_setting
from lab.report import estimate
from lab.report.estimate import Estimate


def record(run, epoch, workers, step_s, batches=2, amp="off", loader="torch", part=c2_timing.ID, **kw):
    return {"run_id": run, "experiment": part, "status": "ok", "epoch": epoch, "warmup": epoch == 1,
            "device_type": "cpu", "amp": amp, "batch_size": 128, "channels_last": False, "compile": "off",
            "loader": loader, "workers": workers, "images": 128 * batches, "total_s": step_s * batches,
            "load_s": 0.0, "loader_start_s": 0.0, "world_size": 1, **kw}


def setting(workers, amp="off", loader="torch"):
    return step_setting({"device_type": "cpu", "amp": amp, "batch_size": 128, "channels_last": False,
                         "compile": "off", "loader": loader, "workers": workers})


def test_steps_are_priced_by_their_setting_and_unmeasured_ones_as_the_nearest():
    records = [record("a", e, 2, 1.0) for e in (1, 2, 3)] + [record("b", e, 0, 0.5) for e in (1, 2, 3)]
    records += [record("c", 2, 0, 9.0, reused_from="C3 (0 workers)")]  # a copy of a reused run: not measured again
    e = Estimate()
    e.use({"step_s": 3.0, "run_s": 0.0, "notebook_s": 0.0}, "measured")
    e.learn(records)
    zero = Work(steps=10, settings=((setting(0), 10, 5, 10),))
    assert e.seconds(zero) == pytest.approx(5.0)  # 10 steps at 0 workers: 0.5 s each, not C2's 1.0 s
    assert e.seconds(Work(steps=10, settings=((setting(2), 10, 5, 10),))) == pytest.approx(10.0)
    assert e.seconds(Work(steps=4)) == pytest.approx(12.0)  # steps of no setting (profiled ones): step_s
    bf16 = Work(steps=10, settings=((setting(0, amp="bf16"), 10, 5, 10),))
    assert e.seconds(bf16) == pytest.approx(5.0)  # not measured: priced as the nearest, fp32 at 0 workers
    three = Work(steps=10, settings=((setting(3), 10, 5, 10),))
    assert e.seconds(three) == pytest.approx(10.0)  # 3 workers: nearest measured count, 2
    assert "amp bf16 as amp off" in e.describe() and "workers 3 as workers 2" in e.describe()


def test_another_precision_is_scaled_by_the_measured_peaks():
    """Only fp32 measured so far: a bf16 step costs fp32's × (fp32 peak / bf16 peak), as the report's start
    measured them; no peaks, no scaling."""
    records = [record("a", e, 0, 1.0) for e in (1, 2, 3)]
    e = Estimate(peaks={"cpu": {"fp32": 0.25, "bf16": 0.5}})
    e.use({"notebook_s": 0.0}, "measured")
    e.learn(records)
    bf16 = Work(steps=10, settings=((setting(0, amp="bf16"), 10, 5, 10),))
    assert e.seconds(bf16) == pytest.approx(5.0)
    assert "(scaled by the measured peaks)" in e.describe()
    plain = Estimate()
    plain.use({"notebook_s": 0.0}, "measured")
    plain.learn(records)
    assert plain.seconds(bf16) == pytest.approx(10.0)


def test_the_loader_costs_per_worker_count():
    records = [record("a", e, 2, 1.0, load_s=0.6, loader_start_s=0.2, total_s=2.6) for e in (1, 2, 3)]
    e = Estimate()
    e.learn(records)
    assert e.steps[setting(2)] == pytest.approx(1.0)  # the epoch less its wait for data, over 2 batches
    assert e.loaders[("torch", 2)] == pytest.approx((0.2, 0.2))  # start-up per epoch, wait per batch
    e.use({"run_s": 0.0, "notebook_s": 0.0}, "measured")
    assert e.seconds(Work(steps=10, settings=((setting(2), 10, 5, 10),))) == pytest.approx(10 * 1.2 + 5 * 0.2)


def test_the_replay_of_a_finished_report_after_c2(tmp_path):
    """A report of Q, C2 (2 workers, 1 s a step) and C6 (planned at the lab's default count, 2 workers, as
    C3 did not run): the replay after C2 knows only Q's and C2's records."""
    common = {"dataset": "synthetic", "device": "cpu", "batch_size": 128, "epochs": 3, "max_batches": 2,
              "lr": 0.1, "seed": 0}
    params = {q_model.ID: {}, c2_timing.ID: {**common, "workers": 2},
              c6_optimizers.ID: {**common, "optimizers": ["sgd", "adam"], "evaluate": False}}
    save_json(tmp_path / "report.json", {"parameters": params, "took_s": 80.0,
                                        "done": {q_model.ID: 4.0, c2_timing.ID: 14.0, c6_optimizers.ID: 50.0}})
    (tmp_path / c2_timing.ID).mkdir()
    rows = [record("a", e, 2, 1.0, batches=2) for e in (1, 2, 3)]
    (tmp_path / c2_timing.ID / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / c6_optimizers.ID).mkdir()  # the later part's records: the replay must not see them
    (tmp_path / c6_optimizers.ID / "records.jsonl").write_text(json.dumps(record("z", 2, 2, 99.0)) + "\n")
    r = estimate.replay(tmp_path)
    assert r["after"] == c2_timing.ID and r["elapsed_s"] == 18.0
    # Q's 4 s is a notebook's start; C2: 6 steps of 1 s, so its run's set-up is 14 - 4 - 6 = 4 s
    # C6: sgd, adam and sgd without batch norm, 3 epochs x 2 batches each at 2 workers: 18 x 1 s + 3 runs x 4 s + 4 s
    assert r["parts"][c6_optimizers.ID] == (pytest.approx(18 + 12 + 4), 50.0)
    summary = estimate.SUMMARY_NOTEBOOKS * 4.0
    assert r["parts"]["summary"] == (pytest.approx(summary), pytest.approx(80 - 68))
    assert r["total_s"] == pytest.approx(18 + 34 + summary)
    assert r["error"] == pytest.approx((18 + 34 + summary - 80) / 80)
