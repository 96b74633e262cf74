"""scripts/gpu-check.sh: its CPU dry run end to end (so the script a GPU runs cannot rot), and its budget: a
stage over its share is killed with its children, a stage with no budget left is not started."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lab import gpucheck
from lab.parts import c8_acceleration

ROOT = Path(__file__).resolve().parent.parent


def test_the_dry_run_runs_every_stage_and_writes_its_rows_as_it_goes(tmp_path):
    out = tmp_path / "out"
    script = ROOT / "scripts" / "gpu-check.sh"
    done = subprocess.run([str(script), "--dry-run", "--budget-s", "1500", "--out", str(out)],
                          capture_output=True, text=True, timeout=1700, cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    by = {(r["stage"], r["check"]): r for r in rows}
    assert [r["stage"] for r in rows] == sorted((r["stage"] for r in rows), key=gpucheck.STAGES.index)
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)  # appended as each stage ended
    assert by[("env", "device")]["status"].startswith("skipped: CUDA parts")
    assert by[("data", "synthetic data")]["status"] == "ok"
    tests = by[("tests", "pytest -m cuda")]
    assert " passed" in tests["result"] and "failed" not in tests["result"]
    assert tests["status"].startswith("ok") and "needs a CUDA device" in tests["status"]  # the real-GPU tests
    assert {"P1", "P2", "P3", "P3 best", "P5", "P5 floor"} <= {name for stage, name in by if stage == "bench"}
    assert by[("bench", "P5")]["status"].startswith("skipped: P5 is a GPU goal")
    assert by[("bench", "P2")]["status"].startswith("smoke run, not a measurement")
    eager = by[("c8", c8_acceleration.BASELINE)]
    assert eager["status"].startswith("ok (2 epochs") and "steady epoch" in eager["result"]
    assert by[("c8", "compile default")]["status"].startswith("not measured")
    progress = by[("c8", "progress lines")]
    assert progress["status"] == "ok" and int(progress["result"].split()[0]) > 0
    page = (out / "gpu-check.md").read_text()
    assert page.startswith("GPU check, ") and "(dry run)" in page.splitlines()[0]
    assert page.count("\n| ") == len(rows) + 1  # the header row and one row per result
    assert (out / "bench.json").exists() and (out / "c8-records.jsonl").exists()
    assert len(list(out.iterdir())) <= 8  # what a GPU machine's $OUT sends back


def test_a_stage_over_its_limit_is_killed_with_its_children(tmp_path):
    log = tmp_path / "log"
    ran = gpucheck.run_stage(["bash", "-c", "echo started; sleep 60 & sleep 60"], 1.0, log)
    assert ran.code is None and ran.seconds >= 1.0 and ran.seconds < 50  # the grandchild holds no pipe open
    assert gpucheck.stage_status(ran).startswith("cut by the budget after")
    assert "started" in log.read_text() and "cut by the budget" in log.read_text()


def test_a_stage_with_no_budget_left_is_not_started(tmp_path):
    rows = gpucheck.check(tmp_path / "out", gpucheck.FINAL_S + 1, dry_run=True, stages=["tests", "bench"],
                          work=tmp_path / "work")
    assert [(r["check"], r["status"].split(":")[0]) for r in rows] == [("tests", "skipped"), ("bench", "skipped")]
    assert "of the budget left" in rows[0]["status"] and not (tmp_path / "out" / "bench.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_check_asks_for_the_dry_run(capsys):
    with pytest.raises(SystemExit) as exc:
        gpucheck.main(["--budget-s", "60", "--out", "unused"])
    assert exc.value.code == 2 and "--dry-run" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["nan", "inf", "1e308", "-1"])
def test_a_budget_that_is_not_a_number_of_seconds_is_one_line(budget, capsys, tmp_path):
    """Before: nan, inf and 1e308 reached the first stage's timeout, ended in a traceback and left its child
    running. Now refused before any stage starts."""
    with pytest.raises(SystemExit) as exc:
        gpucheck.main(["--dry-run", "--budget-s", budget, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err == (f"error: --budget-s {float(budget):g}: give the seconds for the whole check, "
                                       f"a number over 5 and at most 86400\n")


def test_a_stage_limit_that_is_not_finite_still_bounds_the_stage(tmp_path):
    assert gpucheck.run_stage(["true"], float("inf"), tmp_path / "log").code == 0  # no OverflowError
    ran = gpucheck.run_stage(["sleep", "30"], float("nan"), tmp_path / "log")  # no ValueError: the shortest limit
    assert ran.code is None and ran.seconds < 20


def wheel(folder: Path) -> Path:
    """A wheel whose sitecustomize module, imported at python's start from wherever PYTHONPATH puts it, writes its own
    path to $LAB_PROBE_OUT: where the script unpacked the wheel."""
    import zipfile

    path = folder / "labprobe-1.0-py3-none-any.whl"
    info = "labprobe-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("sitecustomize.py", "import os\nif os.environ.get('LAB_PROBE_OUT'):\n"
                                       "    open(os.environ['LAB_PROBE_OUT'], 'a').write(__file__ + '\\n')\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: labprobe\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", f"sitecustomize.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


def test_carried_wheels_go_to_a_private_folder_removed_at_the_end(tmp_path):
    """Not the fixed, shared /tmp/site: a folder of this run's own under $TMPDIR, first on PYTHONPATH, gone after."""
    wheels, tmp, seen = tmp_path / "wheels", tmp_path / "tmp", tmp_path / "seen"
    wheels.mkdir()
    tmp.mkdir()
    wheel(wheels)
    done = subprocess.run([str(ROOT / "scripts" / "gpu-check.sh"), "--dry-run", "--budget-s", "nan"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable, "LAB_WHEELS": str(wheels), "TMPDIR": str(tmp),
                               "LAB_PROBE_OUT": str(seen)})
    assert done.returncode == 2 and done.stderr.endswith("a number over 5 and at most 86400\n"), done.stderr
    site = Path(seen.read_text().splitlines()[-1]).parent  # the check's python imported the wheel's module
    assert site.parent == tmp and site.name.startswith("lab-gpu-check-site.")
    assert list(tmp.iterdir()) == []  # removed at the end
