"""The report end to end on tiny parameters: one report, killed with SIGKILL during C8 and resumed (conftest's
tiny_report); its records and rows, what of this machine its report.html shows, its progress and estimate lines,
and the resume. One file: `pytest -n` runs a file on one worker, so the report is made once. The report's tables,
words, figures and pages, drawn from stored rows: tests/test_print.py; the runner without a report:
tests/test_runner.py."""
import json
import math
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import NOTEBOOK_COUNT, TINY, report

from lab import parts
from lab.core import results
from lab.core.files import read_jsonl
from lab.engine.records import read_records
from lab.parts import (c2_timing, c3_workers, c4_workers_profile, c5_devices, c6_optimizers, c7_batchnorm,
                       c8_acceleration, c9_scaling, c10_deploy, c11_limits, q_model)
from lab.engine.acceleration import bf16_emulated
from lab.parts.settings import BN_OFF
from lab.parts.tables import report_peaks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [*parts.IDS, "summary"]  # in run order (lab.parts)


def test_every_notebook_ran_and_wrote_records(tiny_report):
    _, out = tiny_report
    for name in NOTEBOOKS:
        nb = json.loads((out / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, name
        assert nb["metadata"]["papermill"]["parameters"]["results_dir"] == str(out)
    df = read_records(out)
    best = parts.best_workers(out)[0]  # C3's row
    counts = df.groupby("experiment")["run_id"].nunique().to_dict()
    compiles = False  # tiny.yaml leaves C8's compiled settings out (tests/test_train.py compiles)
    bf16 = bf16_emulated(None) is None  # a CPU that emulates bf16 leaves it out and says so
    c7_looked = df[(df.experiment == c7_batchnorm.ID) & df["reused_from"].isna()]["run_id"].nunique()  # below
    assert counts == {c2_timing.ID: 1, c3_workers.ID: 5, c4_workers_profile.ID: 2, c5_devices.ID: 2,
                      c6_optimizers.ID: 6, c7_batchnorm.ID: 2 + c7_looked, c8_acceleration.ID: 3 + compiles + bf16,
                      c9_scaling.ID: 2}
    # C3 measured 0, 1 (for C4) and 2 workers in one block: C4 reuses two of them
    c4 = df[df.experiment == c4_workers_profile.ID]
    assert set(c4["reused_from"]) == {f"{c3_workers.ID} (1 worker)", f"{c3_workers.ID} ({best} workers)"}
    c3_runs = df[(df.experiment == c3_workers.ID) & df["workers"].isin([1, best]) & (df["loader"] == "torch")
                 & ~df["persistent_workers"].astype(bool)]
    assert sorted(c4["total_s"]) == sorted(c3_runs["total_s"])
    c7 = df[df.experiment == c7_batchnorm.ID]  # C6's block has SGD without batch norm: C7 reuses it and C6's SGD
    reused, looked = c7[c7["reused_from"].notna()], c7[c7["reused_from"].isna()]
    assert set(zip(reused["tag"], reused["reused_from"])) == {(c7_batchnorm.ON, f"{c6_optimizers.ID} (sgd)"),
                                                              (c7_batchnorm.OFF, f"{c6_optimizers.ID} ({BN_OFF})")}
    # 1 epoch a run is too few: C7 (tiny.yaml: a 3 s budget) trains both settings again where a round, priced at
    # its mean epoch per setting, leaves room for one after its warm-up epoch; its verdict says the looks it took
    affordable = math.floor(3 / (2 * reused["total_s"].mean())) - 1 >= 1
    looks = sorted({e["look"] for e in looked["extra"]})
    assert bool(len(looked)) == affordable and looks == list(range(2, 2 + len(looks)))
    assert set(looked["tag"]) <= {c7_batchnorm.ON, c7_batchnorm.OFF} and len(looked) % 2 == 0
    assert set(results.read_verdicts(out, c7_batchnorm.ID)["look"]) == {1 + len(looks)}
    if not _has_cuda():  # the CPU alone: C5 compares nothing, so it reuses C3's run of its settings
        assert set(df[(df.experiment == c5_devices.ID) & (df.status == "ok")]["reused_from"]) == {
            f"{c3_workers.ID} ({best} workers)"}
    c9 = df[df.experiment == c9_scaling.ID]
    assert sorted(zip(c9["tag"], c9["rank"], c9["batch_size"])) == [
        (c9_scaling.BASELINE, 0, 8), (c9_scaling.launch_tag(2, "strong"), 0, 4),
        (c9_scaling.launch_tag(2, "strong"), 1, 4)]
    assert set(c9["backend"]) == {"gloo"} and c9.loc[c9["world_size"] == 2, "comm_s"].notna().all()  # 1 epoch: the last
    assert set(df[df.experiment == c3_workers.ID]["loader"]) == {"torch", "tensor"}
    c8 = df[df.experiment == c8_acceleration.ID]
    assert set(c8["tag"]) == {c8_acceleration.BASELINE, "channels_last", c8_acceleration.FAST} | (
        {"autocast bf16"} if bf16 else set()) | (
        {"compile default"} if compiles else set())  # per-phase timers vs epoch timers: CUDA only
    assert set(c8["loader"]) == {"tensor"}  # only the step changes
    steps = c8[c8["tag"] != c8_acceleration.FAST]
    assert set(zip(steps["channels_last"], steps["amp"], steps["compile"])) == {
        (False, "off", "off"), (True, "off", "off")} | ({(False, "bf16", "off")} if bf16 else set()) | (
        {(False, "off", "default")} if compiles else set())
    fast = c8[c8["tag"] == c8_acceleration.FAST].iloc[0]
    assert fast["timers"] == "epoch" and pd.isna(fast["load_s"])  # not measured: NaN, not 0
    assert (fast["channels_last"], fast["amp"], fast["compile"]) == (True, "off", "off")  # the probe's (seeded) choice
    rows = results.read(out, part=c8_acceleration.ID)
    plan = {m: dict(zip(rows.loc[rows["metric"] == m, "setting"], rows.loc[rows["metric"] == m, "text"]))
            for m in ("planned", "left_out", "note")}
    assert "no device to synchronize with" in plan["left_out"][c8_acceleration.FAST_PHASE]
    assert "left out by this profile (compile_settings: false)" in plan["left_out"]["compile default"]
    assert "among its eager candidates, channels_last" in plan["note"][c8_acceleration.FAST]  # fast measured anyway
    assert list(plan["planned"])[-1] == c8_acceleration.FAST and "wall_ms_per_step" in set(rows["metric"])
    files = {p.name for p in (out / c8_acceleration.ID).iterdir()}
    assert not files & {"plan.json", "compile.json", "step_eager_fp32.json"}  # its measurements are rows
    assert c8["test_top1"].notna().all()  # every setting evaluated: does it still learn?
    for label in ("1_worker", "best"):
        trace = json.loads((out / c4_workers_profile.ID / f"trace_{label}.json").read_text())
        assert any("DataLoader" in e.get("name", "") for e in trace["traceEvents"])
        ops = (out / c4_workers_profile.ID / f"ops_{label}.csv").read_text()
        assert "aten::" in ops
    assert set(df[df.experiment == c6_optimizers.ID]["optimizer"]) == {
        "sgd", "sgd-nesterov", "adagrad", "adadelta", "adam"}
    assert set(df[df.experiment == c7_batchnorm.ID]["batch_norm"]) == {True, False}
    assert (df["dataset_kind"] == "synthetic").all()
    c5 = df[df.experiment == c5_devices.ID].set_index("device_type")["status"].to_dict()
    assert c5["cpu"] == "ok" and c5["cuda"] == ("ok" if _has_cuda() else "unavailable")
    assert set(df[(df.experiment == c4_workers_profile.ID)]["workers"]) == {1, best}
    assert set(df[df.experiment == c6_optimizers.ID]["workers"]) == {best}
    answers = q_model.read(out)  # from the report's rows
    assert answers["conv_layers"]["total"] == 20 and answers["adam"]["optimizer_state"] == 2 * 11_173_962
    rows, verdicts = results.read(out), results.read_verdicts(out)  # schema 1, one row per value, units in the data
    assert (rows["schema"] == results.SCHEMA).all() and rows["unit"].notna().all()
    assert {"report", q_model.ID, c2_timing.ID, c3_workers.ID} <= set(rows["part"])
    assert not any((out / name / f).exists() for name in NOTEBOOKS for f in ("best_workers.json", "answers.json"))
    # every part whose sentences compare settings has its verdicts, decided by the rule
    assert {c3_workers.ID, c6_optimizers.ID, c8_acceleration.ID, c10_deploy.ID} <= set(verdicts["part"])
    assert set(verdicts["verdict"]) <= {"faster", "slower", "no measurable difference", "too few measurements"}
    # C10 deploys C2's trained weights: every CPU conversion succeeds, agrees with eager, and C++ loads the file
    assert (out / c2_timing.ID / c2_timing.MODEL_FILE).exists()
    deployed = results.read(out, part=c10_deploy.ID)
    assert results.value(deployed, "model").startswith("C2's trained ResNet-18")
    cpu = deployed[deployed["device"] == "cpu"]
    assert set(cpu.loc[cpu["metric"] == "status", "text"]) == {"ok"}
    assert (cpu.loc[(cpu["metric"] == "within_tolerance") & cpu["artifact"].isna(), "value"] == 1).all()
    assert (out / c10_deploy.ID / "cpu" / "torchscript-scripted.graph.txt").exists()
    from_cpp = cpu[cpu["artifact"].notna()]  # C++'s logits against Python's on the same file
    assert results.value(cpu, "cpp_build_reason") is None
    assert results.value(from_cpp, "within_tolerance", setting="TorchScript scripted") == 1
    # C11: the report's peaks, the FLOPs and a profile per precision
    c11 = results.read(out, part=c11_limits.ID)
    assert report_peaks(out, "cpu")["fp32"] > 0
    assert results.value(c11, "flops", kind="train", category="total") == 4 * 3_328_997_376  # batch 4
    assert set(c11.loc[c11["metric"] == "step_s", "precision"]) >= {"fp32"}


def _has_cuda():
    import torch

    return torch.cuda.is_available()


def test_the_report_shows_this_machine_and_its_memory_and_writes_its_tables(tiny_report, tmp_path):
    """What only a report measured here shows (its tables, words and figures: tests/test_print.py, on the fixture):
    every epoch record has its memory; the environment is in report.json and the header; every section is drawn,
    the records and every part's tables are CSV files pandas reads, a PDF is printed; and the report compares with
    the fixture's."""
    import torch

    from lab.engine.environment import CPU_FLAGS, cpu_flags
    from lab.report import compare

    _, out = tiny_report
    df = read_records(out)
    ok = df[df["status"] == "ok"]
    assert (ok["host_peak_rss_bytes"] > 50 * 2 ** 20).all() and ok["cuda_peak_allocated_bytes"].isna().all()
    c3 = ok[ok.experiment == c3_workers.ID]
    assert (c3.loc[c3["workers"] == 0, "workers_pss_bytes"] == 0).all()
    assert (c3.loc[(c3["workers"] > 0) & (c3["loader"] == "torch"), "workers_pss_bytes"] > 2 ** 20).all()
    env = json.loads((out / "report.json").read_text())["environment"]
    assert env["collect_env"]["torch_version"] == torch.__version__
    assert env["cpu_flags"] == [f for f in CPU_FLAGS if f in cpu_flags()]
    html = (out / "report.html").read_text().replace("<wbr>", "")  # where the print step let a header wrap
    assert env["cpu_model"] in html and "speed settings" in html and "cudnn.benchmark False" in html
    for heading in ("host peak RSS MiB", "workers PSS MiB", "host peak RSS MiB / rank", "Adam optimizer state, bytes"):
        assert heading in html, heading
    assert all(f'<h2 id="{name}">' in html for name in parts.IDS) and "Not drawn:" not in html
    assert "DID NOT RUN" not in html  # each notebook's duration, none missing
    # what measuring costs: per-phase against epoch timers on CUDA; on a CPU the row is left out, and says why
    assert ("The cost of measuring" if _has_cuda() else "no device to synchronize with") in html
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    tables = out / "tables"
    records = pd.read_csv(tables / "records.csv")
    assert (len(records) == len(df)
            and {"run_id", "epoch", "total_s", "host_peak_rss_bytes", "extra.block"} <= set(records))
    assert len(pd.read_csv(tables / "findings.csv")) == len(parts.questions())
    for part in (c3_workers.ID, c8_acceleration.ID, c9_scaling.ID, q_model.ID):
        assert len(pd.read_csv(tables / f"{part}.csv")) >= 1, part
    assert "workers PSS MiB" in pd.read_csv(tables / f"{c3_workers.ID}.csv", index_col=0)
    page = compare.write([out, ROOT / "tests" / "fixtures" / "report"], tmp_path / "cmp", pdf=False).read_text()
    assert "DIFFERENT PROFILES" in page and env["cpu_model"] in page


def test_every_table_of_the_report_fits_the_printed_page_and_shows_its_csv(tiny_report):
    """The page-fit rule (tests/page_fit.py) on the columns only a report measured here has (memory; the fixture's
    tables: tests/test_print.py): every table within an A4 page; its findings on the first page of the PDF, after a
    header (this machine's) of half a page at most."""
    import page_fit

    if not page_fit.available():
        pytest.skip("Chromium not installed (make browser installs it)")
    _, out = tiny_report
    found, count = page_fit.problems(out / "report.html", out / "tables")
    assert count >= 15 and found == [], found
    words = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-bbox", str(out / "report.pdf"), "-"],
                           capture_output=True, text=True, check=True).stdout
    height = float(re.search(r'<page width="[\d.]+" height="([\d.]+)"', words).group(1))
    heading = re.search(r'<word xMin="[\d.]+" yMin="([\d.]+)"[^>]*>Findings</word>', words)
    assert heading and float(heading.group(1)) < height / 2, words[:3000]  # the header: half a page at most
    assert ">C2.1</word>" in words


def test_progress_names_each_notebook(tiny_report):
    runs, out = tiny_report
    killed, resumed = runs.killed, runs.resumed.stderr
    for i, name in enumerate(NOTEBOOKS[:8], 1):
        assert f"[{i}/{NOTEBOOK_COUNT}] {name}" in killed
    for i, name in enumerate(NOTEBOOKS[7:], 8):
        assert f"[{i}/{NOTEBOOK_COUNT}] {name}" in resumed
    assert killed.count("done in") == 7 and resumed.count("done in") == len(NOTEBOOKS) - 8  # C8 on, less summary
    both = killed + resumed
    assert "without encryption" not in both and "USDT" not in both and "gpuGetDeviceCount" not in both
    # the runs' own progress (plain lines: stderr is no terminal here), the estimate after C2, estimate vs actual
    assert re.search(r"^      C\d_\w+: .+, epoch \d/\d, batch \d/\d · about .+ left$", killed, re.M)
    assert re.search(r"^plan: \d+ training steps, .* first guess ", killed, re.M)
    before_c3 = killed[:killed.index(f"[3/{NOTEBOOK_COUNT}] {c3_workers.ID}")]
    assert re.search(r"^estimate: about .+ in all, .+ from now \(.+ s a step \(measured\)", before_c3, re.M)
    assert re.search(r"done in [\d.]+ s \(estimated \d+ s\)", killed)
    assert re.search(r"^estimate vs actual: estimated .+ after C2_timing, took .+ of notebooks over 2 sessions "
                     r"\([+-]\d+%\)$", resumed, re.M)
    meta = json.loads((out / "report.json").read_text())
    assert meta["estimate"]["after"] == c2_timing.ID and meta["took_s"] > 0


# --- resuming, replacing, locking ------------------------------------------------------------------

def test_killed_report_resumes(tiny_report):
    runs, out = tiny_report
    meta, done = runs.left["meta"], runs.resumed
    before = [q_model.ID, c2_timing.ID, c3_workers.ID, c4_workers_profile.ID, c5_devices.ID, c6_optimizers.ID,
              c7_batchnorm.ID]
    assert list(meta["done"]) == before and not meta["finished"]  # killed during C8
    assert runs.left["partial"] and not runs.left["html"]
    assert f"resuming report {out.name}: keeping {', '.join(before)}" in done.stderr
    for i, name in enumerate(before, 1):
        assert f"[{i}/{NOTEBOOK_COUNT}] {name}: finished earlier, kept" in done.stderr
    assert f"[8/{NOTEBOOK_COUNT}] {c8_acceleration.ID} {{" in done.stderr  # re-run
    assert {name: (out / f"{name}.ipynb").stat().st_mtime_ns for name in before} == runs.left["mtimes"]
    assert (out / c2_timing.ID / "records.jsonl").read_text() == runs.left["c2_records"]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["latest", out.name])  # no second report

    for path in (p for p in out.rglob("*.jsonl") if p.name != "progress.jsonl"):  # progress: a courtesy
        for line in path.read_text().splitlines():
            json.loads(line)  # every line whole
    df = read_records(out)
    assert not df.duplicated(["experiment", "run_id", "epoch", "rank"]).any()  # C9: one record per rank
    c8 = read_jsonl(out / c8_acceleration.ID / "records.jsonl")
    planned = results.read(out, part=c8_acceleration.ID, metric="planned")
    assert len(c8) == len(planned)  # every setting's one epoch once: the killed run's are gone
    assert (out / "report.html").exists() and json.loads((out / "report.json").read_text())["finished"]


def test_a_finished_report_is_not_overwritten_without_force(tiny_report, tmp_path):
    _, out = tiny_report
    before = (out / "report.html").stat().st_mtime_ns
    done = report(TINY, tmp_path, "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {out} already holds a finished report (tiny profile); add --force to "
                                   "replace it, or choose another --out")
    assert (out / "report.html").stat().st_mtime_ns == before
