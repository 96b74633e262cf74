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
from lab.core import results
from lab.engine import deploy
from lab.core.files import read_jsonl, write_jsonl
from lab.parts import display, tables
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
    c10 = results.read(folder, part="C10_deploy")
    failed = next(n for n in c10.loc[c10["metric"] == "status", "setting"]
                  if n not in ("eager fp32", "TorchScript traced"))
    timed = c10.loc[(c10["metric"] == "latency_calls") & (c10["setting"] != failed),
                    ["setting", "threads", "precision"]]
    gone = c10["setting"].notna() & c10["metric"].str.startswith(("latency_", "images_per_s", "peak_"))  # re-made
    gone |= (c10["setting"] == failed) & c10["metric"].isin(["file", "top1", "top1_low", "top1_high", "same_prediction",
                                                             "max_abs_diff", "largest_logit", "within_tolerance",
                                                             "tolerance"])  # a failed conversion is not evaluated
    kept = [json.loads(line) for line in results.to_json(c10[~gone]).splitlines()]
    for r in kept:
        r["text"] = "failed" if (r["metric"], r.get("setting")) == ("status", failed) else r.get("text")
    rows = results.Rows(folder, "C10_deploy", device="cpu")
    blocks = lambda base: {"block_medians": [base * (1 + i / 100) for i in range(6)], "n": 12,  # noqa: E731
                           "p50": None, "p90": None, "p99": None, "mean": base}
    made = [rows.row("reason", text="RuntimeError: could not convert", setting=failed, precision="fp32")]
    for s in timed.itertuples():
        made += deploy.latency_rows(rows, blocks(0.01 if s.setting == "TorchScript traced" else 0.02),
                                    setting=s.setting, threads=int(s.threads), precision=s.precision)
    one = rows.scoped(setting="TorchScript scripted", artifact="torchscript-scripted.pt", precision="fp32")
    made += [rows.row("cpp_build_s", 13.0, "s"), rows.row("cpp_build_cached", False, "bool"),
             rows.row("cpp_binary", text="deploy_bench"), one.row("within_tolerance", True, "bool"),
             one.row("tolerance", text="max |logit diff| 0"), *deploy.latency_rows(one, blocks(0.008), side="C++"),
             *deploy.latency_rows(one, blocks(0.0082), side="Python"),
             rows.row("reason", text="not loaded: no file", setting="TorchScript traced", artifact="x.pt")]
    rows.start().extend(kept + made)  # no throughput either
    parts.decide(parts.BY_ID["C10_deploy"], folder)  # its claims, from these rows
    path, account = folder / results.MEASUREMENTS, ("C8_acceleration", "compile account")  # C8's Q5 account gone
    write_jsonl(path, [r for r in read_jsonl(path) if (r["part"], r.get("kind")) != account])


def no_peaks(folder):
    """No peaks measured but fp32's: no bandwidth or bf16 among the report's rows, none at all in C11's."""
    tables.save_peaks(results.Rows(folder, "report").start(), "cpu", {"fp32": 0.3})
    path = folder / results.MEASUREMENTS
    write_jsonl(path, [r for r in read_jsonl(path) if not (r["part"] == "C11_limits" and r["metric"] in (
        "peak", "bandwidth", "peak_conditions"))])  # C11's own peaks (tables.save_peaks)


def files_missing(folder):
    """The parts ran, but every measurement row is gone: C3's sweep and C8's plan beside their records; C10, C11 and
    Q, which keep only rows, then did not run."""
    path = folder / results.MEASUREMENTS
    write_jsonl(path, [r for r in read_jsonl(path) if r["part"] == "report"])


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
    assert text.index("<h2 id='C10_deploy'>") < text.index("Not drawn:</b> C10_deploy&#39;s findings") \
        < text.index("<h2 id='C11_limits'>")


def test_a_section_that_raises_ends_in_an_error_block_and_the_next_is_drawn(tmp_path, monkeypatch):
    folder = tmp_path / "report"
    shutil.copytree(FIXTURE, folder)
    path = folder / results.MEASUREMENTS  # C10's rows without the number of test images: its words need it
    write_jsonl(path, [r for r in read_jsonl(path) if (r["part"], r["metric"]) != ("C10_deploy", "test_images")])
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
    assert errors[0].startswith("C10_deploy's findings: TypeError") and len(errors) == 2  # its findings raise too
    assert errors[1].startswith("C10_deploy's section: TypeError") and "c10_deploy.py:" in errors[1]
    text = shown.text()
    block = text.index("Not drawn:")
    assert text.index("<h2 id='C10_deploy'>") < block < text.index("<h2 id='C11_limits'>")
    assert "[table]" in text[text.index("<h2 id='C11_limits'>"):]  # the next part is drawn whole
    assert len(redrawn) == 1 and redrawn[0].count("SECTION NOT DRAWN: C10_deploy&#39;s section: TypeError") == \
        len(parts.BY_ID["C10_deploy"].questions)  # the findings above say so, in each of C10's rows
    assert "SECTION NOT DRAWN" in (folder / "tables" / "findings.csv").read_text()
