"""Progress while runs run: the runs' lines, the runner's display, the estimate and its calibration."""
import io
import json

import pytest

from lab import parts
from lab.core import results
from lab.engine import progress
from lab.engine.train import run
from lab.parts import c2_timing, c3_workers, c4_workers_profile, c5_devices, c6_optimizers, c7_batchnorm, c9_scaling
from lab.parts.base import Report, Work, planned_steps
from lab.report import estimate
from lab.report.estimate import Estimate, Watcher


def test_a_run_reports_every_epochs_last_step_to_the_runner(tiny_config, tmp_path, monkeypatch, one_thread):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    config = tiny_config.replace(epochs=2, max_batches=3, tag="sgd", experiment="C6")
    records = list(run(config))
    events = [json.loads(line) for line in path.read_text().splitlines()]
    ends = [(e["epoch"], e["batch"], e["done"]) for e in events if e["batch"] == e["batches"]]
    assert ends == [(1, 3, 3), (2, 3, 6)]  # never throttled away: the runner counts steps from them
    assert {(e["part"], e["tag"], e["epochs"], e["batches"], e["run"]) for e in events} == {
        ("C6", "sgd", 2, 3, records[0]["run_id"])}
    assert planned_steps(config) == 6 == ends[-1][2]


def test_a_notebook_gets_a_bar_unless_the_runner_shows_progress(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    with progress.bar("C6", 4) as bar:
        progress.step("r", "C6", "adam", 1, 2, 1, 2)
        assert bar is not None and bar.n == 1 and "adam" in bar.postfix
    monkeypatch.setenv(progress.ENV, str(tmp_path / "p.jsonl"))
    with progress.bar("C6", 4) as bar:
        assert bar is None


def test_a_part_of_phases_moves_its_bar_names_each_phase_and_ends_full(tmp_path, monkeypatch):
    """C10's bar: a phase is a step of the bar and a note to the runner; fewer phases than planned (a failed
    setting) end the bar full, not stuck short."""
    monkeypatch.delenv(progress.ENV, raising=False)
    with progress.bar("C10_deploy", 5, unit="phase") as bar:
        progress.phase("C10_deploy", "cpu: converting int8")
        progress.phase("C10_deploy", "cpu: batch-1 latency")
        assert (bar.n, bar.postfix) == (2, "cpu: batch-1 latency")
    assert (bar.n, bar.total) == (2, 2)
    path = tmp_path / "p.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    progress.phase("C10_deploy", "cpu: the same files from C++")
    line = json.loads(path.read_text().splitlines()[-1])
    assert (line["part"], line["note"]) == ("C10_deploy", "cpu: the same files from C++")


def test_calibration_measures_the_step_and_the_runs_overhead():
    records = [{"run_id": "a", "status": "ok", "warmup": e == 1, "total_s": t, "images": 256, "batch_size": 128}
               for e, t in ((1, 14.0), (2, 9.0), (3, 11.0))]
    costs = estimate.calibrate(records, wall_s=50.0, notebook_s=6.0)
    assert costs["step_s"] == pytest.approx(5.0)          # (9 + 11) s over 4 steady steps
    assert costs["run_s"] == pytest.approx(50 - 6 - 6 * 5.0)  # what the 6 steps and the kernel do not explain
    e = Estimate()
    e.use(costs, "measured")
    notebook = estimate.ASSUMED["notebook_s"]  # not measured by C2: Q_model measures it
    assert e.seconds(Work(steps=10, runs=2, evals=4)) == pytest.approx(notebook + 50 + 2 * 14 + 4 * 5.0 * 0.35)
    assert "5.00 s a step (measured)" in e.describe() and "a compilation (assumed)" in e.describe()


def _watcher(tmp_path, stream, **kw):
    plan = {c2_timing.ID: Work(steps=6, runs=1), c6_optimizers.ID: Work(steps=30, runs=5)}
    e = Estimate()
    e.use({"step_s": 2.0, "run_s": 1.0, "notebook_s": 4.0}, "measured")
    return Watcher(tmp_path / "p.jsonl", plan, e, stream=stream, every=0.0, **kw), e


def test_the_time_left_follows_the_steps_the_runs_report(tmp_path):
    stream = io.StringIO()
    w, e = _watcher(tmp_path, stream, tty=False)
    w.path.write_text("")
    w.finished[c2_timing.ID] = 20.0
    w.begin(c6_optimizers.ID)
    predicted = e.seconds(w.plan[c6_optimizers.ID])            # 4 + 60 + 5 = 69 s
    summary = e.seconds(Work(), estimate.SUMMARY_NOTEBOOKS)
    assert w.left() == pytest.approx(predicted + summary, abs=0.5)
    with open(w.path, "a") as f:  # 15 of 30 steps done, by two runs
        for run_id, done in (("a", 9), ("b", 6)):
            f.write(json.dumps({"run": run_id, "part": "C6", "tag": "adam", "epoch": 2, "epochs": 3, "batch": 1,
                                "batches": 3, "done": done}) + "\n")
        f.write('{"torn": ')  # a line still being written is left for the next read
    w.poll()
    assert w.left() == pytest.approx(predicted / 2 + summary, abs=0.5)
    w.part_started -= 10
    w._show()
    assert stream.getvalue() == (f"      {c6_optimizers.ID}: adam, epoch 2/3, batch 1/3 · about "
                                 f"{estimate.clock(w.left())} left\n")
    e.factor = 2.0  # the finished parts took twice their estimate: so will the rest
    assert w.left() == pytest.approx(2 * (predicted / 2 + summary), abs=1)


def test_plain_lines_are_spaced_out_and_a_terminal_gets_a_bar(tmp_path):
    stream = io.StringIO()
    w, _ = _watcher(tmp_path, stream, tty=False)
    w.every = 60.0
    w.begin(c2_timing.ID)
    w.part_started -= 10
    for _ in range(5):
        w._show()
    assert len(stream.getvalue().splitlines()) == 1
    tty = io.StringIO()
    w, _ = _watcher(tmp_path, tty, tty=True)
    w.begin(c2_timing.ID)
    w._show()
    assert "steps" in tty.getvalue() and c2_timing.ID in tty.getvalue() and "left" in tty.getvalue()
    w._bar.close()


def test_the_plan_counts_what_each_part_runs(tmp_path):
    common = {"dataset": "synthetic", "device": "cpu", "batch_size": 128, "epochs": 3, "max_batches": 2, "lr": 0.1,
              "seed": 0, "workers": 0, "evaluate": True}
    report = Report(tmp_path)  # nothing ran yet: C4, C5 and C7 are planned from C3's and C6's planned blocks
    c3 = parts.plan(c3_workers.ID, {**common, "worker_step": 4, "worker_cap": 8, "worker_counts": None}, report)
    assert (c3.runs, c3.steps) == (6, 33)  # 0, 1 (C4's baseline), 4, 8 workers, the on-device loader (3 x 2 batches
    # each) and 1 worker with persistent workers (3 x 1 batch)
    c4 = parts.plan(c4_workers_profile.ID, {**common, "profile_steps": 1}, report)
    assert (c4.runs, c4.steps) == (2, 6)  # C3's runs reused: only the two profiles (1 wait + 1 warm-up + 1)
    c4_alone = parts.plan(c4_workers_profile.ID, {**common, "profile_steps": 1}, Report(tmp_path / "alone"))
    assert c4_alone.runs == 4
    one = parts.plan(c4_workers_profile.ID, {**common, "workers": 1, "profile_steps": 1}, report)
    assert one.runs == 4  # the best count is 1: the same setting runs twice, in C4's own block
    c5 = parts.plan(c5_devices.ID, {**common, "devices": ["cuda", "cpu"], "cpu_max_batches": None}, report)
    import torch

    gpu = torch.cuda.is_available()  # CPU only: C3's run is reused, nothing runs; with a GPU both devices run
    assert (c5.runs, c5.steps) == ((2, 12) if gpu else (0, 0))
    c6 = parts.plan(c6_optimizers.ID, {**common, "optimizers": ["sgd", "adam"]}, report)
    assert (c6.runs, c6.steps, c6.evals) == (3, 18, 18)  # + SGD without batch norm (C7's): 3 epochs x 2 test batches
    assert parts.plan(c7_batchnorm.ID, common, report).runs == 0  # C7 reuses C6's block
    c9 = parts.plan(c9_scaling.ID, {**common, "process_counts": [1, 2, 64], "modes": ["strong"]}, report)
    assert (c9.launches, c9.steps) == (2, 12)  # 64 processes cannot run here; strong: 2 x 64 images a step
    both = parts.plan(c9_scaling.ID, {**common, "process_counts": [1, 2], "modes": ["strong", "weak"]}, report)
    assert (both.launches, both.steps) == (3, 24)  # weak: 2 processes of 128 images each, on this node's cores


def test_a_part_is_planned_again_from_what_earlier_parts_found(tmp_path):
    """C4 with `workers: None` takes C3's best count; where C3 found 1, C4 runs its own block of two."""
    common = {"dataset": "synthetic", "device": "cpu", "batch_size": 128, "epochs": 3, "max_batches": 2, "lr": 0.1,
              "seed": 0, "workers": None, "profile_steps": 1}
    report = Report(tmp_path)
    parts.plan(c3_workers.ID, {**common, "worker_step": 4, "worker_cap": 8, "worker_counts": None}, report)
    assert parts.plan(c4_workers_profile.ID, common, report).runs == 4  # no C3 result yet: the default, 2 workers,
    # is not in C3's planned block
    results.Rows(tmp_path, c3_workers.ID).start().add("best_workers", 4, "workers", text="C3's best")
    assert parts.plan(c4_workers_profile.ID, common, report).runs == 2  # 4 workers: in C3's block, reused
    results.Rows(tmp_path, c3_workers.ID).start().add("best_workers", 1, "workers", text="C3's best")
    assert parts.plan(c4_workers_profile.ID, common, report).runs == 4  # 1 worker: its own block, as C4 runs it


def test_clock():
    assert [estimate.clock(s) for s in (7.4, 185, 3725)] == ["7 s", "3 min 05 s", "1 h 02 min"]
