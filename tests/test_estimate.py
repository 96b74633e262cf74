"""The estimate prices each part's trained steps by their setting (as measured so far in the report), falls back
to the nearest measured setting and says so, and replays a finished report's estimate after C2 (synthetic
records with known costs: nothing here depends on this machine's speed)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from lab.core.errors import LabError
from lab.core.files import save_json
from lab.engine.records import device_name
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
    r = estimate.replay(tmp_path, defaults={})  # the notebooks declare no more than this report sets
    assert r["after"] == c2_timing.ID and r["elapsed_s"] == 18.0
    # Q's 4 s is a notebook's start; C2: 6 steps of 1 s, so its run's set-up is 14 - 4 - 6 = 4 s
    # C6: sgd, adam and sgd without batch norm, 3 epochs x 2 batches each at 2 workers: 18 x 1 s + 3 runs x 4 s + 4 s
    assert r["parts"][c6_optimizers.ID] == (pytest.approx(18 + 12 + 4), 50.0)
    summary = estimate.SUMMARY_NOTEBOOKS * 4.0
    assert r["parts"]["summary"] == (pytest.approx(summary), pytest.approx(80 - 68))
    assert r["total_s"] == pytest.approx(18 + 34 + summary)
    assert r["error"] == pytest.approx((18 + 34 + summary - 80) / 80)


FIXTURES = Path(__file__).parent / "fixtures"
XEON, HERE = FIXTURES / "report-xeon-quick", FIXTURES / "report-here-quick"  # what the replay reads of two reports


def test_the_replay_makes_the_number_the_runner_made_and_kept(tmp_path, monkeypatch):
    """The runner's estimate after C2 from a report's Q and C2 (the HERE fixture's), with a cache's costs and the
    machine's answers, keeps its inputs in report.json; the replay of that report.json makes the same number,
    every part planned (C9's process counts are a notebook default) and nothing asked of the machine at hand."""
    out = tmp_path / "r"
    shutil.copytree(HERE, out)
    meta = json.loads((out / "report.json").read_text())
    inputs = meta["estimate"].pop("inputs")
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "cache"))
    key = f"{device_name(torch.device('cpu'))} | batch 128"
    save_json(tmp_path / "cache" / estimate.COSTS, {key: inputs["costs"]})
    live = {"parameters": meta["parameters"], "done": {}}
    timing = estimate.ReportTiming(live, out, inputs["defaults"], machine=dict(inputs["machine"]))
    watcher = estimate.Watcher(out / "progress.jsonl", timing.plan, timing.estimate)
    for name in (q_model.ID, c2_timing.ID):
        live["done"][name] = watcher.finished[name] = meta["done"][name]
        timing.finished(name, meta["done"][name], 0.0, sum(live["done"].values()), watcher)
    assert live["estimate"]["inputs"] == inputs
    save_json(out / "report.json", {**meta, "estimate": live["estimate"]})
    r = estimate.replay(out)
    assert r["total_s"] == pytest.approx(live["estimate"]["total_s"], abs=0.1) and r["asked_here"] == []
    assert r["parts"]["C9_scaling"][0] > 20  # 2 launches of 12 s, 10 steps


def test_a_replay_that_cannot_plan_a_part_says_so(tmp_path):
    shutil.copytree(HERE, tmp_path / "r")
    meta = json.loads((tmp_path / "r" / "report.json").read_text())
    del meta["estimate"]["inputs"]["defaults"]["C9_scaling"]["process_counts"]
    (tmp_path / "r" / "report.json").write_text(json.dumps(meta))
    with pytest.raises(LabError, match=r"cannot plan C9_scaling \(KeyError: 'process_counts'\)"):
        estimate.replay(tmp_path / "r")


@pytest.mark.parametrize("text, said", [
    ("{", r"report\.json is truncated.*--new"), ("[]", r"report\.json is a list, not an object.*--new"),
    ('{"parameters": [], "done": {}}', r"report\.json: parameters is \[\], not an object"),
    ('{"parameters": {"Q_model": {}}, "done": {}}', r"no part of it calibrates the estimate \(its parts: Q_model\)"),
    ('{"parameters": {"Q_model": {}, "C2_timing": {}}, "done": {"Q_model": 4}}', r"C2_timing did not finish in it")])
def test_a_replay_of_a_broken_report_json_says_so_in_one_line(tmp_path, text, said):
    (tmp_path / "report.json").write_text(text)
    with pytest.raises(LabError, match=said):
        estimate.replay(tmp_path)


def test_the_estimate_after_c2_is_within_20_percent_on_both_reports():
    """The Xeon's quick report (5a17999: its C10 planned as the 6 settings its rows name, the "deploy settings" of
    its inputs) and one made here (c3299aa), replayed after C2: each prices its parts from what it measured by
    then (C2's step less its workers' start, the --fast probe's steps where cached, the report's peaks)."""
    errors = {folder.name: estimate.replay(folder)["error"] for folder in (XEON, HERE)}
    assert all(abs(e) <= 0.20 for e in errors.values()), errors


def test_a_step_measured_with_workers_starting_is_priced_without_their_start():
    """C2's epochs: 2 batches at 2 workers, the first 1.5 s dearer (the workers start each epoch); a run without
    workers pays 1 s a step, one with workers also 1.5 s an epoch, and C2's own setting the same as measured."""
    records = [record("a", e, 2, 1.75) for e in (1, 2, 3)]
    batches = [{"run_id": "a", "epoch": e, "batch": b, "train_s": 2.5 if b == 1 else 1.0} for e in (1, 2, 3)
               for b in (1, 2)]
    e = Estimate()
    e.use({"run_s": 0.0, "notebook_s": 0.0}, "measured")
    e.learn(records, batches)
    assert e.steps[setting(2)] == pytest.approx(1.0) and e.loaders[("torch", 2)] == pytest.approx((1.5, 0.0))
    assert e.seconds(Work(steps=10, settings=((setting(0), 10, 5, 10),))) == pytest.approx(10.0)
    assert e.seconds(Work(steps=10, settings=((setting(4), 10, 5, 10),))) == pytest.approx(10 + 5 * 1.5)
    assert e.seconds(Work(steps=6, settings=((setting(2), 6, 3, 6),))) == pytest.approx(3 * 2 * 1.75)
    costs = estimate.calibrate(records, wall_s=14.0, notebook_s=2.0, batches=batches)
    assert costs == pytest.approx({"step_s": 1.0, "run_s": 14 - 2 - 3 * 3.5})


def test_a_layout_and_precision_are_scaled_by_the_fast_probe_where_it_measured_them():
    """The --fast probe measured fp32 at 2 s and bf16 at 0.8 s a step: bf16 costs 0.4 x fp32's measured step,
    not the peaks' ratio (8x); a layout the probe did not measure is not scaled."""
    probe = {"step_s": {json.dumps({"channels_last": False, "amp": a}): v for a, v in (("off", 2.0), ("bf16", 0.8))}}
    e = Estimate(peaks={"cpu": {"fp32": 0.25, "bf16": 2.0}}, machine={"fast probe": probe})
    e.use({"notebook_s": 0.0}, "measured")
    e.learn([record("a", n, 0, 1.0, loader="tensor") for n in (1, 2, 3)])
    assert e.seconds(Work(steps=10, settings=((setting(0, "bf16", "tensor"), 10, 0, 10),))) == pytest.approx(4.0)
    assert "(scaled by the --fast probe's steps)" in e.describe()
    assert Estimate(peaks=e.peaks).ratio(dict(setting(0)), dict(setting(0, "bf16"))) == (0.125, "the measured peaks")


@pytest.mark.parametrize("budget, spent", [(15.0, 12.0), (7.9, 0.0), (100.0, 20.0)])
def test_further_rounds_are_priced_as_decide_can_afford_them(budget, spent):
    """A round: an epoch of each of 2 settings at 2 s = 4 s. decide affords floor(budget / 4) - 1 rounds after a
    warm-up epoch, at most the 4 samples each has: 15 s buys 2 (12 s with the warm-up), 7.9 s none, 100 s 4."""
    e = Estimate()
    e.use({"notebook_s": 0.0}, "measured")
    e.learn([record("a", n, 0, 2.0, batches=1, loader="tensor") for n in (1, 2, 3)])
    one = (setting(0, loader="tensor"), 1, 1, 1.0)
    assert e.seconds(Work(extra_s=budget, round=(one, one), samples=4)) == pytest.approx(spent)


def test_the_watcher_reads_only_progress_events(tmp_path):
    """Lines that are not an event object with an int "done" (another writer's, cut short) are passed over."""
    path = tmp_path / "progress.jsonl"
    path.write_text('"done"\n[1]\n{"done": "x", "run": "a"}\n{"done": true, "run": "b"}\n{"done": 3, "run": "c"}\n'
                    '{"note": "still here"}\n')
    w = estimate.Watcher(path, {}, Estimate())
    w.poll()
    assert w.done_steps == {"c": 3} and w.last == {"note": "still here"}
