"""`python -m lab compare`: reports side by side. A report whose steps are slower is named slower by the rule,
identical reports name no winner, the environments and a loud label head the page, a folder that is not a
report is one line and exit 2, and the compare notebook shows the same page."""
import json
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


def fake_report(folder: Path, seconds: list[float], profile="quick", dataset="synthetic", images=256,
                env=None) -> Path:
    """A report folder with one C2 run: a warm-up epoch, then one steady epoch per entry of `seconds`."""
    folder.mkdir(parents=True)
    save_json(folder / "report.json", {"id": folder.name, "profile": profile, "started": "2026-11-30T10:00:00+00:00",
                                       "environment": env or {"cpu_model": f"CPU of {folder.name}", "cpu_flags": []}})
    rows = []
    for epoch, s in enumerate([10.0, *seconds], 1):
        rows.append({"record": "epoch", "experiment": "C2_timing", "tag": "", "run_id": f"{folder.name}-run",
                     "epoch": epoch, "warmup": epoch == 1, "status": "ok", "images": images, "total_s": s,
                     "train_s": 0.9 * s, "load_s": 0.05 * s, "dataset_kind": dataset, "device_name": "cpu",
                     "torch_version": "2.14.1", "git_commit": "abc", "host_peak_rss_bytes": 2 ** 30})
    append_jsonl(folder / "C2_timing" / "records.jsonl", rows)
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
    sentences = compare.differences(reports, groups)
    assert len(sentences) == 1 and sentences[0].startswith("b is slower than a "), sentences  # said once
    assert "(step time per image and epoch time per image): ×0.50, i.e. 100 % slower" in sentences[0]  # 7.8 vs 3.9 ms


def test_identical_reports_name_no_winner(tmp_path):
    a = fake_report(tmp_path / "a", [1.0, 1.1, 0.9, 1.05, 0.95])
    b = fake_report(tmp_path / "b", [1.0, 1.1, 0.9, 1.05, 0.95])
    sentences = compare.differences(compare.open_reports([a, b]), compare.part_table(compare.open_reports([a, b]),
                                                                                     "C2_timing")[1])
    assert sentences == ["b vs a: no measurable difference, in time per image: its run (epoch and step)."]


def test_two_tiny_reports_side_by_side_with_both_environments(tmp_path):
    """The fixture (a tiny report's records) against a copy from "another machine" and another profile: every
    part that ran is there with a column group per report, a figure per part, both environments, the label."""
    other = tmp_path / "other"
    shutil.copytree(FIXTURE, other)
    meta = json.loads((other / "report.json").read_text())
    meta.update(profile="quick", environment={"cpu_model": "Another CPU", "cpu_flags": ["avx2", "amx_bf16"],
                                              "collect_env": {"cudnn_version": "9.1"}})
    save_json(other / "report.json", meta)
    target = compare.write([FIXTURE, other], tmp_path / "cmp")
    page = target.read_text()
    assert "DIFFERENT PROFILES" in page and "Another CPU" in page and "avx2, amx_bf16" in page
    for title in ("C1/C2", "C3 — DataLoader workers", "C8 — Accelerating", "C9"):
        assert title in page, title
    own_files = [p for p in parts.PARTS if not (compare.open_report(FIXTURE).records["experiment"] == p.id).any()]
    own_files = [p for p in own_files if len(results.read(FIXTURE, part=p.id))]  # rows alone: findings, no figure
    assert page.count("<img") == page.count("<h2>") - 1 - len(own_files)  # a figure per part; the method has none
    assert "C10.4 Latency, PyTorch vs TorchScript" in page and "Q1 Convolutional layers" in page
    assert "fixture (1)</th>" in page and "fixture (2)</th>" in page  # the same report id twice: numbered
    if (tmp_path / "cmp" / "compare.pdf").exists():
        assert (tmp_path / "cmp" / "compare.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p / "missing", lambda p: (p / "f.txt").write_text("x") and p])
def test_a_folder_that_is_not_a_report_is_one_line_and_exit_2(tmp_path, make):
    (tmp_path / "stray.jsonl").write_text("{not json\n")
    target = make(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lab", "compare", str(FIXTURE), str(target), "--no-pdf"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "is not a report" in done.stderr and "Traceback" not in done.stderr


def test_the_compare_notebook_shows_the_same_page(tmp_path):
    pm = pytest.importorskip("papermill")
    out = tmp_path / "compare.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "compare.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                        parameters={"reports": [str(FIXTURE), str(FIXTURE)]}, progress_bar=False, kernel_name="python3")
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    shown = "".join(o.get("data", {}).get("text/html", "") if isinstance(o.get("data", {}).get("text/html"), str)
                    else "".join(o.get("data", {}).get("text/html", [])) for o in outputs)
    assert "Reports side by side" in shown and "C3 — DataLoader workers" in shown
    assert "is faster" not in shown and "is slower" not in shown  # a report against itself


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
