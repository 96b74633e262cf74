"""The file-input matrix (issue 38), as the flag matrix is for flags: every file the lab reads, planted broken
(missing, empty, truncated, not JSON, of the wrong JSON type, with a field of the wrong type, of another schema
version, with implausible values), then the user's command run in-process. Either one line naming the path (and the
field) and the way out, with a non-zero exit, or the file measured / made again; and the results folder, hashed
before and after, unchanged. A new file the lab reads is a new row. Then the checked readers themselves
(lab.core.files) and a report folder's name reserved when the report starts."""
import contextlib
import hashlib
import io
import json
import re
import shutil
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

from lab import cli
from lab.core import files, results
from lab.core.config import Config
from lab.data import cifar10
from lab.engine import checkpoint, deploy, fast, roofline
from lab.report import estimate, runner

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "report"
META = json.loads((FIXTURE / "report.json").read_text())
REMADE = "make the report again"
NEW = "start a new report with --new, or delete it"


def edit(change):
    """A report.json (or another JSON object) with `change` applied to a copy of the fixture's."""
    def text(old: str) -> str:
        value = json.loads(old)
        change(value)
        return json.dumps(value)
    return text


def unfinished(**fields):
    return edit(lambda m: m.update(finished=None, **fields))


def last_line(text: str) -> str:
    """A JSON-lines file cut in the middle of its last line (a crash mid-write of a file not written atomically)."""
    return text[:text.rstrip().rfind("\n") + 20]


# (file the lab reads, how it is broken: text, a function of its text, or None for deleted; the command; what is
# said: a regex of the one line, or None where the file is made or measured again)
ROWS = [
    # report.json, read by compare, render and the runner's resume
    ("report.json", None, "compare", r"REPORT is not a report: no report\.json in it"),
    ("report.json", "", "compare", rf"FILE is empty; it is not a report this lab reads; {REMADE}"),
    ("report.json", '{"id": "x", "profile": ', "compare", r"FILE is truncated \(it ends at line 1\)"),
    ("report.json", '{"id": "x\x01"}', "render", r"FILE is not JSON \(invalid control character at line 1 column 10\)"),
    ("report.json", "[1, 2]", "compare",
     rf"FILE is a list, not an object; it is not a report this lab reads; {REMADE}"),
    ("report.json", edit(lambda m: m.update(done=[1])), "compare", rf"FILE: done is \[1\], not an object; {REMADE}"),
    ("report.json", edit(lambda m: m.update(finished=7)), "render", r"FILE: finished is 7, not a time or null"),
    ("report.json", edit(lambda m: m["done"].update(C9_scaling=10 ** 400)), "compare",
     r"FILE: done\.C9_scaling is too large, not a finite number"),
    ("report.json", "[" * 100_000 + "]" * 100_000, "render", r"FILE is nested too deeply \(not JSON this lab wrote\)"),
    ("report.json", edit(lambda m: m["done"].update(C2_timing=-5)), "compare",
     r"FILE: done\.C2_timing is -5, outside the plausible range \[0, 1e\+07\]"),
    ("report.json", edit(lambda m: m.update(schema=7)), "compare", r"REPORT is a report of schema 7, written at "
     r"commit \S+; this lab reads schema 1"),
    ("report.json", "{\"done\": {}", "resume", rf"LATEST/report\.json is truncated .*; {NEW}"),
    ("report.json", '{"id": "x\x01"}', "resume", rf"LATEST/report\.json is not JSON \(invalid control .*; {NEW}"),
    ("report.json", "[]", "resume", rf"LATEST/report\.json is a list, not an object; {NEW}"),
    ("report.json", unfinished(done={"C2_timing": "27 s"}), "resume",
     rf"LATEST/report\.json: done\.C2_timing is \"27 s\", not a number; {NEW}"),
    ("report.json", unfinished(parameters=None), "resume", r"LATEST/report\.json: parameters is null, not an object"),
    # the results tables and the epoch records
    ("measurements.jsonl", last_line, "resume",
     rf"LATEST/measurements\.jsonl is not JSON lines \(line \d+: .*{REMADE}"),
    ("measurements.jsonl", last_line, "compare", rf"FILE is not JSON lines \(line \d+: .*; {REMADE}"),
    ("measurements.jsonl", lambda t: t.replace('"schema": 1', '"schema": 3'), "compare",
     r"REPORT is a report of schema 3, written at commit \S+; this lab reads schema 1"),
    ("verdicts.jsonl", lambda t: t + "[1]\n", "compare", r"FILE is not JSON lines of objects \(line \d+ is a list\)"),
    ("C2_timing/records.jsonl", lambda t: t + '{"epoch": 1, "total_s": 0.5\n', "compare",
     r"FILE is not JSON lines \(line \d+: expecting ',' delimiter\); delete it"),
    # profiles
    ("profile.yaml", None, "resume", r"unknown profile '/.*: choose one of"),
    ("profile.yaml", "common: [1\n", "resume", r"profile FILE is not valid YAML"),
    ("profile.yaml", "- 1\n", "resume", r"profile FILE must be a mapping of settings, got list"),
    ("profile.yaml", "common: {batch_size: -1}\n", "resume", r"profile profile: common parameter batch_size should be"),
    ("profile.yaml", "common: 3\n", "resume", r"profile profile: common should be"),
    # caches: a bad file or entry counts as absent and is measured again, never trusted
    ("cache/peaks.json", "[1]", "peaks", None),
    ("cache/peaks.json", '{"k": {"fp32": 0, "bf16": 0, "copy_GBs": 0, "triad_GBs": 0}}', "peaks", None),
    ("cache/peaks.json", '{"k": {"fp32": "1", "bf16": 1, "copy_GBs": 9, "triad_GBs": 9}}', "peaks", None),
    ("cache/peaks.json", '{"k": {"fp32": NaN, "bf16": 1, "copy_GBs": 9, "triad_GBs": 9, "conditions": {}}}',
     "peaks", None),
    ("cache/peaks.json", '{"k": {"fp32": 1e30, "bf16": 1, "copy_GBs": 9, "triad_GBs": 9, "conditions": {}}}',
     "peaks", None),
    ("cache/peaks.json", '{"k": {"fp32": 1', "peaks", None),
    ("cache/peaks.json", '{"k": {"fp32": 1' + "0" * 400 + ', "bf16": 1, "copy_GBs": 9, "triad_GBs": 9}}', "peaks",
     None),
    ("cache/peaks.json", "[" * 100_000 + "]" * 100_000, "peaks", None),
    ("cache/report-costs.json", "[1]", "costs", None),
    ("cache/report-costs.json", '{"k": "fast"}', "costs", None),
    ("cache/report-costs.json", '{"k": {"step_s": NaN, "run_s": -1, "compile_s": "x"}}', "costs", None),
    ("cache/report-costs.json", '{"k": {"step_s": 1' + "0" * 400 + ', "run_s": Infinity, "compile_s": true}}', "costs",
     None),
    ("cache/fast-choice.json", "", "fast", None),
    ("cache/fast-choice.json", '{"k": []}', "fast", None),
    ("cache/fast-choice.json", '{"k": {"choice": {"amp": "off"}, "step_s": {"x": -1}}}', "fast", None),
    ("cache/fast-choice.json", '{"k": {"choice": {"amp": []}}}', "fast", None),
    ("cache/fast-choice.json", '{"k": {"choice": {"compile": {}}}}', "fast", None),
    # checkpoints and data
    ("run.pt", None, "checkpoint", r"--resume: no checkpoint at FILE; run without --resume"),
    ("run.pt", b"PK\x03\x04 not a zip", "checkpoint",
     r"--resume: checkpoint FILE is unreadable \(\w+\); delete it and start again"),
    ("run.pt", [1, 2], "checkpoint", r"--resume: checkpoint FILE is unreadable \(TypeError\); delete it"),
    ("run.pt", {"config": [], "model": {}, "optimizer": {}, "epoch": 1}, "checkpoint",
     r"FILE: config is list, not the run's settings; delete it and start again without --resume"),
    ("run.pt", {"config": {}, "model": {}, "optimizer": {}, "epoch": "3"}, "checkpoint",
     r"FILE: epoch is '3', not an epoch number; delete it and start again without --resume"),
    ("data/synthetic/cifar-10-batches-py/data_batch_1", b"\x80\x04 truncated", "data",
     r"cannot read CIFAR-10 batch file FILE \(.*\); delete .*synthetic and run again to regenerate it"),
    # C2's trained weights, read by C10 (deploy.trained_model)
    ("C2_timing/model.pt", b"PK\x03\x04 truncated", "deploy",
     r"FILE is not the lab's ResNet-18 weights \(.*\); run C2_timing again, or make the report again"),
    ("C2_timing/model.pt", {"conv1.weight": [1]}, "deploy", r"FILE is not the lab's ResNet-18 weights \(.*Error"),
    ("data/synthetic/synthetic.json", "[1]", "data", None),
    ("data/synthetic/synthetic.json", '{"version": "2"', "data", None),
]


def plant(path: Path, broken) -> None:
    if broken is None:
        path.unlink(missing_ok=True)
    elif callable(broken):
        path.write_text(broken(path.read_text()))
    elif isinstance(broken, bytes):
        path.write_bytes(broken)
    elif isinstance(broken, (list, dict)):
        torch.save(broken, path)
    else:
        path.write_text(broken)


def digest(folder: Path) -> dict:
    """Every file under `folder` (lock files aside: they are not results) by its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith("lock")}


def command(run: str, tmp: Path, report: Path, results_root: Path, file: Path) -> int | None:
    """The user's command for `run`, in-process: its exit code (None for a reader that a report calls)."""
    if run == "compare":
        return cli.main(["compare", str(FIXTURE), str(report), "--out", str(tmp / "cmp"), "--no-pdf"])
    if run == "render":
        return cli.main(["render", str(report)])
    if run == "resume":
        return cli.main(["report", "--profile", str(tmp / "profile.yaml"), "--results", str(results_root)])
    if run == "deploy":
        try:
            deploy.trained_model(report)
        except files.LabError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        return 0
    if run == "checkpoint":
        try:
            checkpoint.load_checkpoint(file, Config())
        except files.LabError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        return 0
    if run == "peaks":
        found, why = roofline.cached_peaks(file, "k", "cpu")
        assert found is None and (why is None or str(file) in why)
    elif run == "costs":
        costs = estimate.cached_costs().get("k", {})
        assumed = estimate.Estimate()
        assumed.use(costs if isinstance(costs, dict) else {}, "last report")
        assert assumed.costs == estimate.Estimate().costs  # nothing of the bad entry used
    elif run == "fast":
        assert fast.cached_fast(file, ["k"]) is None
    elif run == "data":
        config = Config(dataset="synthetic", data=str(tmp / "data"), synthetic_train=20, synthetic_test=10)
        try:
            cifar10.load_dataset(config, train=True, log=lambda *_: None)
        except files.LabError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        assert files.load_json(tmp / "data" / "synthetic" / "synthetic.json")["version"] == cifar10.SYNTHETIC_VERSION
    return None


@pytest.mark.parametrize("name,broken,run,says", ROWS, ids=[f"{r[2]}-{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_a_broken_input_is_one_line_naming_it_and_the_way_out_or_made_again(tmp_path, monkeypatch, name, broken,
                                                                             run, says):
    results_root = tmp_path / "results"
    report = results_root / "20261130-062927-fixture"
    shutil.copytree(FIXTURE, report, ignore=shutil.ignore_patterns("*.lock"))
    (results_root / "latest").symlink_to(report.name)
    profile = {k: v for k, v in META["profile_settings"].items() if k != "name"}
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    if run == "resume" and name.endswith(".json"):  # the latest report, unfinished: the one `make report` resumes
        plant(report / "report.json", unfinished())
    if run == "checkpoint":
        torch.save({"config": Config().to_dict(), "model": {}, "optimizer": {}, "epoch": 1}, tmp_path / "run.pt")
    if run == "deploy":  # C2's row naming its saved model, and the file (planted broken below)
        results.Rows(report, "C2_timing").add("model_file", text="C2_timing/model.pt")
        (report / name).write_bytes(b"")
    if run == "data":
        cifar10.ensure_synthetic(Config(dataset="synthetic", data=str(tmp_path / "data"), synthetic_train=20,
                                        synthetic_test=10), log=lambda *_: None)
    file = (report / name) if (report / name).exists() or name.endswith(".jsonl") or name == "report.json" \
        else tmp_path / name
    if file.exists() or broken is not None:
        plant(file, broken)
    before = digest(results_root)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = command(run, tmp_path, report, results_root, file)
    assert digest(results_root) == before, "a file already written changed"
    if says is None:
        assert code is None and not err.getvalue(), err.getvalue()
        return
    named = {"FILE": file, "REPORT": report, "LATEST": results_root / "latest"}
    pattern = re.escape("error: ") + re.sub("FILE|REPORT|LATEST", lambda m: re.escape(str(named[m[0]])), says)
    line = err.getvalue()
    assert code and code != 0 and line.count("\n") == 1 and re.search(pattern, line), line


# --- the checked readers --------------------------------------------------------------------------------------

def test_load_json_says_how_a_file_is_broken_and_read_json_counts_it_as_absent(tmp_path):
    path = tmp_path / "x.json"
    for text, said in (("", "is empty"), ('{"a": [1, ', "is truncated (it ends at line 1)"),
                       ('{"a": 1} x', "is not JSON (extra data at line 1 column 10)"), ('"a"', "is a string, not an "
                                                                                         "object")):
        path.write_text(text)
        with pytest.raises(files.BadFile) as raised:
            files.load_json(path, way_out="delete it")
        assert str(raised.value) == f"{path} {said}; delete it" and raised.value.exit_code == 2
        assert files.read_json(path, {"default": 1}) == {"default": 1}
    path.write_text("[1, 2]")
    assert files.load_json(path, expect=list) == [1, 2] and files.read_json(path, expect=None) == [1, 2]
    assert files.load_json(tmp_path / "none.json", default={}) == {}


@pytest.mark.parametrize("value,kw,said", [(0, {"positive": True}, "is 0, not a positive number"),
                                           (float("nan"), {}, "is nan, not a finite number"),
                                           (float("inf"), {}, "is inf, not a finite number"),
                                           ("3", {}, 'is "3", not a number'), (True, {}, "is true, not a number"),
                                           (1e30, {"high": 1e4}, "is 1e+30, above the plausible 10000"),
                                           (-2, {"low": 0, "high": 5}, "is -2, outside the plausible range [0, 5]")])
def test_number_names_the_file_and_the_field(value, kw, said):
    with pytest.raises(files.BadFile) as raised:
        files.number("peaks.json", "['k'].fp32", value, **kw)
    assert str(raised.value) == f"peaks.json: ['k'].fp32 {said}; delete it"


def test_update_json_loses_no_update_and_starts_a_bad_file_afresh(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text("[not an object")

    def add():
        for _ in range(25):
            files.update_json(path, lambda d: {**d, "n": d.get("n", 0) + 1})

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert files.load_json(path) == {"n": 100}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", "cache.json.lock"]  # no temporary left


def test_two_reports_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    class Frozen(runner.dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 7, 10, 0, 0)

    monkeypatch.setattr(runner.dt, "datetime", Frozen)
    folders = [runner.new_report_dir("quick", tmp_path) for _ in range(3)]
    assert [f.name for f in folders] == ["20261207-100000-quick", "20261207-100000-quick-2", "20261207-100000-quick-3"]
    assert all(f.is_dir() for f in folders)  # reserved: the next report cannot take the name
