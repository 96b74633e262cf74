"""Every section and findings writer holds when a value is absent: the fixture report, degraded as a tiny or an
unlucky run leaves it (a single epoch per run, so no steady epochs, ranges or verdicts; a run that diverged or a
device that was not there; too few batch-1 calls for percentiles, a conversion that failed; no measured peaks; a
part's own file missing), each part's section and findings drawn from it. None may raise: the summary would show
an error block instead of the section (lab.report.summary), which a report must not need. And where one does raise,
the summary draws every other part and names the one that failed."""
import contextlib
import dataclasses
import json
import shutil

import pytest

from lab import parts
from lab.core.files import read_jsonl, save_json, write_jsonl
from lab.parts import display
from lab.report import runner, summary

from test_goldens import FIXTURE, Capture


def records(folder):
    return sorted(folder.glob("*/records.jsonl"))


def single_epoch(folder):
    """Every run kept to its first epoch: no steady epoch, no range, no verdict anywhere."""
    for path in records(folder):
        write_jsonl(path, [r for r in read_jsonl(path) if r["epoch"] == 1])


def failed_runs(folder):
    """In every part, its first run diverged (loss NaN) and its last was on a device that was not there."""
    for path in records(folder):
        rows = read_jsonl(path)
        first, last = rows[0]["run_id"], rows[-1]["run_id"]
        for r in rows:
            if r["run_id"] == first:
                r.update(status="diverged", loss=float("nan"), top1=0.0)
            elif r["run_id"] == last and last != first:
                r.update(status="unavailable", load_s=None, train_s=None, other_s=None, total_s=None)
        write_jsonl(path, rows)


def too_few_calls(folder):
    """C10 with too few calls for any percentile (deploy.percentiles: None) in blocks that decide a claim (6 blocks,
    TorchScript traced at half eager's time), a conversion that failed, no throughput and no C++; C8 with no
    compile account."""
    path = folder / "C10_deploy" / "deploy.json"
    result = json.loads(path.read_text())
    for dev in result["devices"].values():
        for latency in dev["latency"].values():
            for name, s in latency["settings"].items():
                base = 0.01 if name == "TorchScript traced" else 0.02
                s.update(p50=None, p90=None, p99=None, n=12, block_medians=[base * (1 + i / 100) for i in range(6)])
        name = next(n for n in dev["conversions"] if n not in ("eager fp32", "TorchScript traced"))
        dev["conversions"][name].update(status="failed", reason="RuntimeError: could not convert", file=None)
        dev["accuracy"].pop(name, None)  # a failed conversion is neither evaluated nor timed
        for latency in dev["latency"].values():
            latency["settings"].pop(name, None)
            latency["order"] = [n for n in latency.get("order", []) if n != name]
        dev["throughput"] = {}
        blocks = lambda base: {"block_medians": [base * (1 + i / 100) for i in range(6)], "n": 12,  # noqa: E731
                               "p50": None, "p90": None, "p99": None, "mean": base}
        dev["cpp"] = {"build": {"binary": "deploy_bench", "seconds": 13.0, "cached": False, "reason": None},
                      "artifacts": {"TorchScript scripted": {"file": "torchscript-scripted.pt", "threads": 2,
                                                             "within": True, "tolerance": "max |logit diff| 0",
                                                             "C++": blocks(0.008), "Python": blocks(0.0082)},
                                    "TorchScript traced": {"reason": "not loaded: no file"}}}
    save_json(path, result)
    (folder / "C8_acceleration" / "compile.json").unlink()


def no_peaks(folder):
    """No peaks measured but fp32's: no bandwidth or bf16 in report.json, none at all in C11's file."""
    meta = json.loads((folder / "report.json").read_text())
    meta["peaks"] = {"cpu": {"fp32": 0.3}}
    save_json(folder / "report.json", meta)
    path = folder / "C11_limits" / "limits.json"
    limits = json.loads(path.read_text())
    limits["peaks"] = {}
    save_json(path, limits)


def files_missing(folder):
    """The parts that keep their own files ran, but their files are gone (C8's plan and step too)."""
    for name in ("C10_deploy/deploy.json", "C11_limits/limits.json", "Q_model/answers.json",
                 "C3_workers/best_workers.json", "C8_acceleration/plan.json", "C8_acceleration/step_eager_fp32.json"):
        (folder / name).unlink()


def drawn(folder, monkeypatch) -> tuple[list[str], list[display.Finding]]:
    """Every part's section and the findings, as the summary draws them: (what raised, the findings' rows)."""
    capture, errors = Capture(), []
    monkeypatch.setattr(display, "show", capture.show)
    monkeypatch.setattr(display, "figure", capture.figure)
    with contextlib.redirect_stdout(capture):
        for part in parts.in_lab_order():
            try:
                parts.show(part.id, folder)
            except Exception as exc:  # noqa: BLE001 - what the test reports
                errors.append(display.failure(part.id, "section", exc))
        rows = parts.findings(folder, errors)
        for what, draw in (("header", summary.header_html), ("appendix", summary.appendix_html)):
            try:
                draw(folder, *(("fixture",) if what == "header" else ()))
            except Exception as exc:  # noqa: BLE001 - what the test reports
                errors.append(display.failure("the report", what, exc))
    return errors, rows


@pytest.mark.parametrize("degrade", [single_epoch, failed_runs, too_few_calls, no_peaks, files_missing])
def test_every_writer_holds_when_a_value_is_absent(degrade, tmp_path, monkeypatch):
    folder = tmp_path / "report"
    shutil.copytree(FIXTURE, folder)
    degrade(folder)
    errors, rows = drawn(folder, monkeypatch)
    assert errors == []
    assert [r.question for r in rows] == parts.questions()  # every question still has its row


def test_a_part_whose_findings_raise_is_named_and_the_others_drawn(tmp_path, monkeypatch):
    folder = tmp_path / "report"
    shutil.copytree(FIXTURE, folder)
    part = parts.BY_ID["C10_deploy"]

    def broken(records, results_dir=None):
        return 1000 * None  # the p50 case: a value absent where the writer expected a number

    monkeypatch.setattr(parts, "PARTS", tuple(p if p is not part else dataclasses.replace(part, findings=broken)
                                              for p in parts.PARTS))
    shown = Capture()
    monkeypatch.setattr(display, "show", shown.show)
    monkeypatch.setattr(display, "show_updatable", shown.show)
    summary.show_header(folder, "fixture")
    errors = summary.read_errors(folder)
    assert len(errors) == 1 and errors[0].startswith("C10_deploy's findings: TypeError: unsupported operand")
    assert "test_absent.py" not in errors[0]  # the lab's own line, where there is one; none here
    table = next(item for item in shown.items if "Findings" in item)
    assert table.count("ERROR: not written") == len(part.questions)
    assert "C11" in table and "C2.1" in table and "Q5" in table  # every other part's rows are there
    line = runner.render_problem(None, errors)
    assert "C10_deploy's findings: TypeError" in line and "\n" not in line
    shown.items.clear()
    monkeypatch.setattr(display, "figure", shown.figure)
    with contextlib.redirect_stdout(shown):
        summary.show_parts(folder)
    text = shown.text()  # its section is drawn, and says that its findings could not be written
    assert text.index("<h2 id='C10_deploy'>") < text.index("Not drawn:</b> C10_deploy&#x27;s findings") \
        < text.index("<h2 id='C11_limits'>")


def test_a_section_that_raises_ends_in_an_error_block_and_the_next_is_drawn(tmp_path, monkeypatch):
    folder = tmp_path / "report"
    shutil.copytree(FIXTURE, folder)
    (folder / "C10_deploy" / "deploy.json").write_text(json.dumps({"devices": {"cpu": {}}}))  # a file of another shape
    shown, redrawn = Capture(), []

    class Handle:  # the findings table's display, redrawn in place (IPython's display id)
        def update(self, obj):
            redrawn.append(obj.data)

    monkeypatch.setattr(display, "show", shown.show)
    monkeypatch.setattr(display, "show_updatable", lambda obj: Handle())
    monkeypatch.setattr(display, "figure", shown.figure)
    with contextlib.redirect_stdout(shown):
        summary.show_header(folder, "fixture")
        summary.show_parts(folder)
    errors = summary.read_errors(folder)
    assert errors[0].startswith("C10_deploy's findings: KeyError") and len(errors) == 2  # its findings raise too
    assert errors[1].startswith("C10_deploy's section: KeyError") and "c10_deploy.py:" in errors[1]
    text = shown.text()
    block = text.index("Not drawn:")
    assert text.index("<h2 id='C10_deploy'>") < block < text.index("<h2 id='C11_limits'>")
    assert "[table]" in text[text.index("<h2 id='C11_limits'>"):]  # the next part is drawn whole
    assert len(redrawn) == 1 and redrawn[0].count("SECTION NOT DRAWN: C10_deploy&#x27;s section: KeyError") == \
        len(parts.BY_ID["C10_deploy"].questions)  # the findings above say so, in each of C10's rows
    assert "SECTION NOT DRAWN" in (folder / "tables" / "findings.csv").read_text()
