"""`python -m lab compare`: reports side by side through their tables. A report whose steps are slower is named
slower by the rule, identical reports name no winner; three reports show every part's verdicts and the peaks side
by side; a report of another schema version, or a folder that is not a report, is one line and exit 2; a report
unfinished or still running is labelled; the compare notebook shows the same page."""
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import parts
from lab.core import fields, results

from lab.core.files import append_jsonl, read_jsonl, save_json, write_jsonl
from lab.report import compare

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "report"
OLD = ROOT / "tests" / "fixtures" / "report-schema0"  # a real report of before the tables (tests/fixtures/README.md)


def fake_report(folder: Path, seconds: list[float], profile="quick", dataset="synthetic", images=256,
                env=None) -> Path:
    """A report folder with one C2 run: a warm-up epoch, then one steady epoch per entry of `seconds`."""
    folder.mkdir(parents=True)
    save_json(folder / "report.json", {"id": folder.name, "profile": profile, "started": "2026-11-30T10:00:00+00:00",
                                       "finished": "2026-11-30T10:10:00+00:00", "schema": results.SCHEMA,
                                       "environment": env or {"cpu_model": f"CPU of {folder.name}", "cpu_flags": []}})
    rows = []
    for epoch, s in enumerate([10.0, *seconds], 1):
        rows.append({"record": "epoch", "experiment": "C2_timing", "tag": "", "run_id": f"{folder.name}-run",
                     "epoch": epoch, "warmup": epoch == 1, "status": "ok", "images": images, "total_s": s,
                     "train_s": 0.9 * s, "load_s": 0.05 * s, "dataset_kind": dataset, "device_name": "cpu",
                     "torch_version": "2.14.1", "git_commit": "abc", "host_peak_rss_bytes": 2 ** 30})
    append_jsonl(folder / "C2_timing" / "records.jsonl", rows)
    return folder


def copy(folder: Path, **meta) -> Path:
    """The fixture report copied to `folder`, its report.json updated with `meta`."""
    shutil.copytree(FIXTURE, folder)
    save_json(folder / "report.json", {**json.loads((folder / "report.json").read_text()), **meta})
    return folder


def test_a_slower_machine_is_named_slower_per_image(tmp_path):
    """B's epochs take twice as long per image (at twice the epoch size, four times as long): B is slower."""
    a = fake_report(tmp_path / "a", [1.0, 1.1, 0.9, 1.05, 0.95])
    b = fake_report(tmp_path / "b", [4.0, 4.2, 3.8, 4.1, 3.9], images=512)
    reports = compare.open_reports([a, b])
    table, groups = compare.part_table(reports, "C2_timing")
    assert table[("a", "epoch ms/image")].iloc[0] == pytest.approx(1000 * 1.0 / 256)
    assert table[("b", "epoch ms/image")].iloc[0] == pytest.approx(1000 * 4.0 / 512)
    assert table[("b", "host_peak_rss_bytes")].iloc[0] == 2 ** 30  # a field, in bytes, until it is shown:
    assert fields.shown(table)[("b", "host peak RSS MiB")].iloc[0] == 1024
    claims = compare.across(reports, groups)
    assert list(claims.index) == ["b vs a, epoch time per image", "b vs a, step time per image"]
    assert (claims["verdict"] == "slower").all(), claims  # 7.8 vs 3.9 ms per image: ×0.50
    assert claims["factor [low–high]"].str.startswith("×0.50 [×0.4").all(), claims


def test_identical_reports_name_no_winner(tmp_path):
    a = fake_report(tmp_path / "a", [1.0, 1.1, 0.9, 1.05, 0.95])
    b = fake_report(tmp_path / "b", [1.0, 1.1, 0.9, 1.05, 0.95])
    reports = compare.open_reports([a, b])
    claims = compare.across(reports, compare.part_table(reports, "C2_timing")[1])
    assert list(claims["verdict"]) == ["no measurable difference"] * 2


def test_three_reports_side_by_side_through_their_tables(tmp_path, capsys):
    """The fixture, a copy from "another machine" and another profile, and a third whose peaks are twice as high,
    one of whose claims is decided, and which is unfinished: each is named, every part that ran is there with
    each report's verdicts, the peaks side by side, the environments and the labels."""
    other = copy(tmp_path / "other", id="other", profile="quick", environment={
        "cpu_model": "Another CPU", "cpu_flags": ["avx2", "amx_bf16"], "collect_env": {"cudnn_version": "9.1"}})
    third = copy(tmp_path / "third", id="third", finished=None)
    rows = read_jsonl(third / results.MEASUREMENTS)
    write_jsonl(third / results.MEASUREMENTS, [{**r, "value": 2 * r["value"]} if r["metric"] == "peak" else r
                                               for r in rows])
    decided = {"factor": 1.5, "low": 1.2, "high": 1.9, "p": 0.01, "verdict": "faster"}
    write_jsonl(third / results.VERDICTS, [{**v, **decided} if v["part"] == "C6_optimizers" else v
                                           for v in read_jsonl(third / results.VERDICTS)])
    page = compare.write([FIXTURE, other, third], tmp_path / "cmp", pdf=False).read_text()
    assert capsys.readouterr().out.startswith(f"third ({third}): UNFINISHED, report.json has no finish time")
    assert "Reports side by side: fixture | other | third</h1>" in page
    assert "DIFFERENT PROFILES" in page and "Another CPU" in page and "avx2, amx_bf16" in page
    assert "<div class='loud'>third: UNFINISHED, report.json has no finish time" in page
    for title in ("C1/C2", "C3 — DataLoader workers", "C8 — Accelerating", "C9", "C11 — How far from the limit"):
        assert title in page, title
    assert "C10.4 Latency, PyTorch vs TorchScript" in page and "Q1 Convolutional layers" in page  # findings
    verdicts = set(results.read_verdicts(FIXTURE)["part"])
    assert page.count("<p>Each report's verdicts:</p>") == len(verdicts)
    assert page.count(">factor [low–high]<") == 3 * len(verdicts) + page.count(", by the comparison rule:</p>")
    assert "×1.50 [×1.20–×1.90]" in page and ">faster<" in page  # the third report's C6 claim
    peaks = compare.peaks_table(compare.open_reports([FIXTURE, other, third]))
    assert list(peaks.columns) == ["fixture", "other", "third"] and "Measured peaks" in page
    assert peaks.loc[("cpu", "fp32 TFLOP/s"), "third"] == pytest.approx(2 * peaks.loc[("cpu", "fp32 TFLOP/s"),
                                                                                        "fixture"])
    assert peaks.loc[("cpu", "copy GB/s"), "third"] == peaks.loc[("cpu", "copy GB/s"), "fixture"]


def test_a_report_of_another_schema_is_one_line_and_exit_2(tmp_path):
    """The real Xeon report of before the tables (schema 0) is refused in one line naming its folder, its version,
    this lab's and the commit that wrote it."""
    done = subprocess.run([sys.executable, "-m", "lab", "compare", str(FIXTURE), str(OLD), "--no-pdf"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert (f"{OLD} is a report of schema 0, written at commit 5a17999599be; this lab reads schema {results.SCHEMA}"
            in done.stderr)


@pytest.mark.parametrize("change", ["report.json", "rows"])
def test_a_newer_schema_is_refused_in_one_line(tmp_path, change):
    newer = copy(tmp_path / "newer", **({"schema": 99} if change == "report.json" else {}))
    if change == "rows":  # a row of another version in a report of this one
        append_jsonl(newer / results.MEASUREMENTS, [{"schema": 99, "part": "C11_limits", "metric": "x", "value": 1}])
    with pytest.raises(compare.OtherSchema, match=r"schema \S*99") as raised:
        compare.open_reports([FIXTURE, newer])
    assert raised.value.exit_code == 2 and "\n" not in str(raised.value)


def test_a_report_still_running_is_labelled_on_the_page_and_in_a_line(tmp_path, capsys):
    """A runner's flock on .lock (lab.report.runner._lock) held: the report is still running."""
    live = copy(tmp_path / "live", id="live", finished=None)
    fd = os.open(live / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        page = compare.write([FIXTURE, live], tmp_path / "cmp", pdf=False).read_text()
    finally:
        os.close(fd)
    assert capsys.readouterr().out == f"live ({live}): STILL RUNNING, {compare.STATES['STILL RUNNING']}\n"
    assert "<div class='loud'>live: STILL RUNNING, a report is writing it now" in page
    assert compare.open_report(live).state == "UNFINISHED" and compare.open_report(FIXTURE).state is None  # freed


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p / "missing", lambda p: (p / "f.txt").write_text("x") and p])
def test_a_folder_that_is_not_a_report_is_one_line_and_exit_2(tmp_path, make):
    """The CLI prints such an error as its one line with its exit code (as the schema test above runs it)."""
    (tmp_path / "stray.jsonl").write_text("{not json\n")
    with pytest.raises(compare.NotAReport, match="is not a report") as raised:
        compare.open_reports([FIXTURE, make(tmp_path)])
    assert raised.value.exit_code == 2 and "\n" not in str(raised.value)


def test_the_compare_notebook_shows_the_same_page(tmp_path):
    pm = pytest.importorskip("papermill")
    out = tmp_path / "compare.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "compare.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                        parameters={"reports": [str(FIXTURE), str(FIXTURE)]}, progress_bar=False, kernel_name="python3")
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    shown = "".join(o.get("data", {}).get("text/html", "") if isinstance(o.get("data", {}).get("text/html"), str)
                    else "".join(o.get("data", {}).get("text/html", [])) for o in outputs)
    assert "Reports side by side" in shown and "C3 — DataLoader workers" in shown
    assert "fixture (1)</th>" in shown and "fixture (2)</th>" in shown  # the same report id twice: numbered
    assert ">faster<" not in shown and ">slower<" not in shown  # a report against itself


def test_a_part_that_cannot_be_drawn_in_one_report_does_not_sink_the_page(tmp_path):
    """C10's rows in one report lack a value its words need: its column says so, the other report's and parts' are
    drawn."""
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    path = broken / results.MEASUREMENTS
    write_jsonl(path, [r for r in read_jsonl(path) if (r["part"], r["metric"]) != ("C10_deploy", "test_images")])
    page = compare.write([FIXTURE, broken], tmp_path / "cmp", pdf=False).read_text()
    assert "ERROR: C10_deploy&#x27;s findings: TypeError: " in page and "(c10_deploy.py:" in page  # a note
    assert page.count(">ERROR [") == len(parts.BY_ID["C10_deploy"].questions)  # only the broken report's C10 rows
    assert "C11 — How far from the limit" in page
