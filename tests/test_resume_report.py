"""kill -9 during a report, then the same command again: finished notebooks are kept, the unfinished one
re-runs, and no duplicate or half-written record appears."""
import json
import os
import signal
import subprocess
import time

from conftest import ROOT, TINY, report, report_command
from lab.results import read_jsonl, read_records


def test_killed_report_resumes(tmp_path):
    cmd = report_command(TINY, tmp_path)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    for line in proc.stderr:
        if "[3/10] C3_workers" in line:
            break
    out = (tmp_path / "results" / "latest").resolve()
    partial = out / "C3_workers" / "records.jsonl"
    deadline = time.time() + 300
    while not partial.exists() and time.time() < deadline:  # C3 has written some, not all, of its records
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(3)  # the orphaned kernel notices its parent is gone within a second

    meta = json.loads((out / "report.json").read_text())
    assert set(meta["done"]) == {"Q_model", "C2_timing"} and not meta["finished"]
    assert partial.exists() and not (out / "report.html").exists()
    kept = {name: (out / f"{name}.ipynb").stat().st_mtime_ns for name in meta["done"]}
    c2_records = (out / "C2_timing" / "records.jsonl").read_text()

    done = report(TINY, tmp_path)  # exactly the same command
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming report {out.name}: keeping Q_model, C2_timing" in done.stderr
    assert "[1/10] Q_model: finished earlier, kept" in done.stderr
    assert "[2/10] C2_timing: finished earlier, kept" in done.stderr
    assert "[3/10] C3_workers {" in done.stderr  # re-run
    assert {name: (out / f"{name}.ipynb").stat().st_mtime_ns for name in kept} == kept
    assert (out / "C2_timing" / "records.jsonl").read_text() == c2_records
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(["latest", out.name])  # no second report

    for path in out.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line)  # every line whole
    df = read_records(out)
    assert not df.duplicated(["run_id", "epoch", "rank"]).any()  # distributed runs: one record per rank
    assert df.groupby("experiment")["run_id"].nunique()["C3"] == 3  # two worker counts + the tensor loader
    assert (out / "report.html").exists() and json.loads((out / "report.json").read_text())["finished"]
    assert len(read_jsonl(out / "C3_workers" / "records.jsonl")) == 3 * 3  # three settings x three epochs


def test_a_finished_report_is_not_overwritten_without_force(tiny_report, tmp_path):
    _, out = tiny_report
    before = (out / "report.html").stat().st_mtime_ns
    done = report(TINY, tmp_path, "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {out} already holds a finished report (tiny profile); add --force to "
                                   "replace it, or choose another --out")
    assert (out / "report.html").stat().st_mtime_ns == before


def test_a_report_being_written_is_neither_entered_nor_replaced(tmp_path):
    import fcntl

    out = tmp_path / "results" / "r"
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps({"profile": "tiny", "finished": "yesterday"}))
    (out / "report.html").write_text("a finished report")
    with open(out / ".lock", "w") as lock:  # as a running report holds it
        lock.write(str(os.getpid()))
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = report(TINY, tmp_path, "--out", str(out), "--force")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (f"error: report {out} is being written by process "
                                                    f"{os.getpid()}; wait for it or stop it first")
    assert (out / "report.html").read_text() == "a finished report"  # nothing deleted
