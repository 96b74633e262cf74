"""The report runner end to end on tiny parameters, its failures, and the notebooks' entry points."""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lab.experiments import bf16_emulated, c_compiler
from lab.results import read_records

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ["C1/C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "Q1"]
NOTEBOOKS = ["Q_model", "C2_timing", "C3_workers", "C4_workers_profile", "C5_devices", "C6_optimizers",
             "C7_batchnorm", "C8_acceleration", "C9_scaling", "summary"]


from conftest import TINY, report


def test_every_notebook_ran_and_wrote_records(tiny_report):
    _, out = tiny_report
    for name in NOTEBOOKS:
        nb = json.loads((out / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, name
        assert nb["metadata"]["papermill"]["parameters"]["results_dir"] == str(out)
    df = read_records(out)
    best = json.loads((out / "C3_workers" / "best_workers.json").read_text())["best_workers"]
    counts = df.groupby("experiment")["run_id"].nunique().to_dict()
    compiles = c_compiler() is not None  # without one, C8 leaves torch.compile out and says so
    bf16 = bf16_emulated(None) is None  # a CPU that emulates bf16 leaves it out and says so
    assert counts == {"C2": 1, "C3": 4, "C4": 2, "C5": 2, "C6": 6, "C7": 2, "C8": 3 + compiles + bf16, "C9": 3}
    c4 = df[df.experiment == "C4"]  # C3 measured 0, 1 (for C4) and 2 workers in one block: C4 reuses two of them
    assert set(c4["reused_from"]) == {"C3_workers (1 workers)", f"C3_workers ({best} workers)"}
    c3_runs = df[(df.experiment == "C3") & df["workers"].isin([1, best]) & (df["loader"] == "torch")]
    assert sorted(c4["total_s"]) == sorted(c3_runs["total_s"])
    c7 = df[df.experiment == "C7"]  # C6's block has SGD without batch norm: C7 reuses it and C6's SGD
    assert set(zip(c7["tag"], c7["reused_from"])) == {("BN on", "C6_optimizers (sgd)"),
                                                      ("BN off", "C6_optimizers (sgd, BN off)")}
    if not _has_cuda():  # the CPU alone: C5 compares nothing, so it reuses C3's run of its settings
        assert set(df[(df.experiment == "C5") & (df.status == "ok")]["reused_from"]) == {f"C3_workers ({best} workers)"}
    c9 = df[df.experiment == "C9"]
    assert sorted(zip(c9["tag"], c9["rank"], c9["batch_size"])) == [
        ("1 process", 0, 16), ("2 processes (strong)", 0, 8), ("2 processes (strong)", 1, 8),
        ("2 processes (weak)", 0, 16), ("2 processes (weak)", 1, 16)]
    assert set(c9["backend"]) == {"gloo"} and c9.loc[c9["world_size"] == 2, "comm_s"].notna().all()  # 1 epoch: the last
    assert set(df[df.experiment == "C3"]["loader"]) == {"torch", "tensor"}
    c8 = df[df.experiment == "C8"]
    assert set(c8["tag"]) == {"eager fp32", "channels_last", "fast"} | ({"autocast bf16"} if bf16 else set()) | (
        {"compile default"} if compiles else set())  # per-phase timers vs epoch timers: CUDA only
    assert set(c8["loader"]) == {"tensor"}  # only the step changes
    steps = c8[~c8["fast"]]
    assert set(zip(steps["channels_last"], steps["amp"], steps["compile"])) == {
        (False, "off", "off"), (True, "off", "off")} | ({(False, "bf16", "off")} if bf16 else set()) | (
        {(False, "off", "default")} if compiles else set())
    fast = c8[c8["tag"] == "fast"].iloc[0]
    assert fast["timers"] == "epoch" and fast["load_s"] != fast["load_s"]  # not measured: NaN, not 0
    plan = json.loads((out / "C8_acceleration" / "plan.json").read_text())
    assert "no device to synchronize with" in plan["skipped"]["fast (per-phase timers)"]
    assert plan["settings"][-1] == "fast" and (out / "C8_acceleration" / "step_eager_fp32.json").exists()
    assert c8["test_top1"].notna().all()  # every setting evaluated: does it still learn?
    for label in ("1_worker", "best"):
        trace = json.loads((out / "C4_workers_profile" / f"trace_{label}.json").read_text())
        assert any("DataLoader" in e.get("name", "") for e in trace["traceEvents"])
        ops = (out / "C4_workers_profile" / f"ops_{label}.csv").read_text()
        assert "aten::" in ops
    assert set(df[df.experiment == "C6"]["optimizer"]) == {"sgd", "sgd-nesterov", "adagrad", "adadelta", "adam"}
    assert set(df[df.experiment == "C7"]["batch_norm"]) == {True, False}
    assert (df["dataset_kind"] == "synthetic").all()
    c5 = df[df.experiment == "C5"].set_index("device_type")["status"].to_dict()
    assert c5["cpu"] == "ok" and c5["cuda"] == ("ok" if _has_cuda() else "unavailable")
    assert set(df[(df.experiment == "C4")]["workers"]) == {1, best}
    assert set(df[df.experiment == "C6"]["workers"]) == {best}
    answers = json.loads((out / "Q_model" / "answers.json").read_text())
    assert answers["conv_layers"]["total"] == 20 and answers["adam"]["optimizer_state"] == 2 * 11_173_962


def _has_cuda():
    import torch

    return torch.cuda.is_available()


def test_html_has_every_section_its_tables_and_embedded_images(tiny_report):
    _, out = tiny_report
    html = (out / "report.html").read_text()
    positions = [html.find(f">{s}") for s in SECTIONS]
    assert all(p > 0 for p in positions) and positions == sorted(positions), positions
    # each C-section is followed by a table before the next section
    for start, end in zip(positions, positions[1:] + [len(html)]):
        assert "<table" in html[start:end]
    assert "SYNTHETIC DATA" in html and "not available" in html and "on-device batched" in html
    assert "compute-bound" in html and "The cost of measuring" in html and "step speed-up" in html
    assert "Q_model" in html and "DID NOT RUN" not in html  # each notebook's duration, none missing
    assert "C4_workers_profile/trace_best.json" in html and "top 10 operators" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 6
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "<script src=" not in html  # renders offline
    assert ">def " not in html and "import " not in html  # code hidden
    for name in ("C2_epoch_phases", "C3_workers", "C4_phases", "C6_optimizers", "C7_batchnorm", "C8_acceleration"):
        assert (ROOT / "figures" / f"{name}.png").stat().st_size > 0
        assert (ROOT / "figures" / f"{name}.svg").stat().st_size > 0


def test_pdf_has_pages(tiny_report, tmp_path):
    _, out = tiny_report
    if not shutil.which("chromium") and not os.environ.get("CI"):
        pytest.skip("Chromium not installed (make browser installs it)")
    pdf = out / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120)
    assert len(list(tmp_path.glob("page*.png"))) >= 3


def test_progress_names_each_notebook(tiny_report):
    done, out = tiny_report
    for i, name in enumerate(NOTEBOOKS, 1):
        assert f"[{i}/10] {name}" in done.stderr
    assert done.stderr.count("done in") == 9 and "without encryption" not in done.stderr
    # the runs' own progress (plain lines: stderr is no terminal here), the estimate after C2, estimate vs actual
    assert re.search(r"^      C\d_\w+: .+, epoch \d/\d, batch \d/\d · about .+ left$", done.stderr, re.M)
    assert re.search(r"^plan: \d+ training steps, .* first guess ", done.stderr, re.M)
    before_c3 = done.stderr[:done.stderr.index("[3/10] C3_workers")]
    assert re.search(r"^estimate: about .+ in all, .+ from now \(.+ s a step \(measured\)", before_c3, re.M)
    assert re.search(r"^estimate vs actual: estimated .+ after C2_timing, took .+ \([+-]\d+%\)$", done.stderr, re.M)
    assert re.search(r"done in [\d.]+ s \(estimated \d+ s\)", done.stderr)
    meta = json.loads((out / "report.json").read_text())
    assert meta["estimate"]["after"] == "C2_timing" and meta["took_s"] > meta["estimate"]["elapsed_s"]
    assert "USDT" not in done.stderr and "gpuGetDeviceCount" not in done.stderr  # no profiler chatter


def test_a_failing_notebook_stops_the_report_and_keeps_what_ran(tmp_path):
    # a failure at run time (the plan's checks pass): C2's kernel is made to fail when it trains
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import lab.experiments as e\n"
        "real = e.notebook_config\n"
        "def failing(experiment, *a, **k):\n"
        "    if experiment == 'C2':\n"
        "        raise RuntimeError('injected failure in C2')\n"
        "    return real(experiment, *a, **k)\n"
        "e.notebook_config = failing\n")
    env = {**os.environ, "PYTHONPATH": f"{hook}:{ROOT}"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text())
    done = report(bad, tmp_path, env=env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "notebook C2_timing failed in cell" in last and "injected failure in C2" in last
    out = (tmp_path / "results" / "latest").resolve()
    assert (out / "Q_model.ipynb").exists() and (out / "C2_timing.ipynb").exists()
    assert not (out / "C3_workers.ipynb").exists() and not (out / "report.html").exists()
    # the user edits the profile: the unfinished report is not resumed with its stale parameters
    bad.write_text(bad.read_text().replace("C2_timing: {workers: 0}", "C2_timing: {workers: 1}"))
    again = report(bad, tmp_path, env=env)
    assert again.returncode == 1 and f"changed since the unfinished report {out.name}: starting a new report" in again.stderr
    assert len([p for p in (tmp_path / "results").iterdir() if p.name != "latest"]) == 2


@pytest.mark.parametrize("change, words", [
    (None, "unknown profile"),
    (("C2_timing: {workers: 0}", "C2_timing: {workers: 0, wrokers: 3}"), "has no parameter 'wrokers'"),
    (("C2_timing: {workers: 0}", "C2_timing: {workers: two}"), "parameter workers should be int"),
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
                           "--nbval-current-env", str(ROOT / "notebooks" / "Q_model.ipynb")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "4 passed" in done.stdout


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
        assert {"C2_timing.ipynb", "C3_workers.ipynb", "Q_model.ipynb", "summary.ipynb"} <= names
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/notebooks", timeout=5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
