"""The report runner without a report: a notebook that fails, bad profiles, a report folder that another run
holds, and the notebooks' other entry points (Q_model's stored answers under nbval, JupyterLab as `make lab`
starts it). The report itself, end to end: tests/test_report.py."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY, report

from lab.parts import c2_timing, c3_workers, q_model

ROOT = Path(__file__).resolve().parent.parent


def test_a_failing_notebook_stops_the_report_and_keeps_what_ran(tmp_path):
    # a failure at run time (the plan's checks pass): C2's kernel is made to fail when it trains (the second
    # report's Q_model, its first notebook, when FAIL_FIRST is set: it only has to fail)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "import lab.parts as p\n"
        "from lab.parts import q_model\n"
        "real = p.config_for\n"
        "def failing(part, *a, **k):\n"
        f"    if part == '{c2_timing.ID}':\n"
        "        raise RuntimeError('injected failure in C2')\n"
        "    return real(part, *a, **k)\n"
        "p.config_for = failing\n"
        "if os.environ.get('FAIL_FIRST'):\n"
        "    q_model.answers = lambda: 1 / 0\n")
    env = {**os.environ, "PYTHONPATH": f"{hook}:{ROOT}"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text())
    done = report(bad, tmp_path, env=env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert f"notebook {c2_timing.ID} failed in cell" in last and "injected failure in C2" in last
    out = (tmp_path / "results" / "latest").resolve()
    assert (out / f"{q_model.ID}.ipynb").exists() and (out / f"{c2_timing.ID}.ipynb").exists()
    assert not (out / f"{c3_workers.ID}.ipynb").exists() and not (out / "report.html").exists()
    # the user edits the profile: the unfinished report is not resumed with its stale parameters
    bad.write_text(bad.read_text().replace(f"{c2_timing.ID}: {{workers: 0}}", f"{c2_timing.ID}: {{workers: 1}}"))
    again = report(bad, tmp_path, env={**env, "FAIL_FIRST": "1"})
    assert (again.returncode == 1 and f"notebook {q_model.ID} failed in cell" in again.stderr
            and f"changed since the unfinished report {out.name}: starting a new report" in again.stderr)
    assert len([p for p in (tmp_path / "results").iterdir() if p.name != "latest"]) == 2


@pytest.mark.parametrize("change, words", [
    (None, "unknown profile"),
    ((f"{c2_timing.ID}: {{workers: 0}}", f"{c2_timing.ID}: {{workers: 0, wrokers: 3}}"), "has no parameter 'wrokers'"),
    ((f"{c2_timing.ID}: {{workers: 0}}", f"{c2_timing.ID}: {{workers: two}}"), "parameter workers should be int"),
])
def test_bad_profiles_are_one_line_usage_errors(tmp_path, change, words):
    profile = "nosuchprofile"
    if change:
        profile = tmp_path / "p.yaml"
        profile.write_text(TINY.read_text().replace(*change))
    done = report(profile, tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and words in done.stderr


def test_q_model_notebook_reproduces_its_stored_answers():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                           "--nbval-current-env", str(ROOT / "notebooks" / f"{q_model.ID}.ipynb")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "3 passed" in done.stdout  # the parameters cell and the two cells of answers


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyterlab_starts_as_make_lab_starts_it_and_lists_the_notebooks():
    port, token = _free_port(), "labtest-token"
    args = f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --IdentityProvider.token={token}"
    server = subprocess.Popen(["make", "-s", "lab", f"JUPYTER_ARGS={args}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}"
        deadline, listing = time.time() + 120, None
        while time.time() < deadline and listing is None:
            try:
                listing = json.load(urllib.request.urlopen(url, timeout=5))
            except OSError:
                time.sleep(1)
        assert listing is not None, "JupyterLab did not answer"
        names = {item["name"] for item in listing["content"]}
        assert {f"{c2_timing.ID}.ipynb", f"{c3_workers.ID}.ipynb", f"{q_model.ID}.ipynb", "summary.ipynb"} <= names
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/notebooks", timeout=5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


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


def test_two_reports_at_once_do_not_share_kernel_sockets(tmp_path):
    from lab.report.runner import kernel_manager

    a, b = tmp_path / "a", tmp_path / "b"
    managers = [kernel_manager(str(folder))() for folder in (a, b)]
    assert [m.transport for m in managers] == ["ipc", "ipc"]
    assert [m.ip for m in managers] == [str(a / "kernel"), str(b / "kernel")]  # not notebooks/kernel-ipc-*
