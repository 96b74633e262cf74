"""`python -m lab render REPORT`: a stored report made again from its tables and report.json alone. The lab's
source is copied, one field label and one sentence template are edited in the copy, and the copy renders the
committed fixture report: both edits reach report.html, report.pdf and the CSVs, and nothing is measured (a
guard, loaded into every Python process of the copy, refuses and logs any call of a measuring function)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "report"

# (file, text in it, what the copy says instead): a field's label, and a template of the comparison rule's sentences
LABEL = ("lab/core/fields.py", '"training images/s": Field("training images/s"',
         '"training images/s": Field("trained images per second (edited label)"')
TEMPLATE = ("lab/core/stats.py", 'no measurable difference (even the "',
            'no measurable difference (edited template: even the "')

GUARD = '''
import os
LOG = os.environ["LAB_RENDER_GUARD"]


def refuse(name):
    def refused(*args, **kwargs):
        with open(LOG, "a") as f:
            f.write(f"measured: {name}\\n")
        raise RuntimeError(f"render called {name}")
    return refused


import torch
import lab.parts
import lab.parts.base
import lab.engine.roofline
import lab.report.runner as runner

forward = torch.nn.Module.__call__


def counted_or_refused(module, *args, **kwargs):  # a FLOP count runs the model on the meta device: no arithmetic
    if any(isinstance(a, torch.Tensor) and a.device.type != "meta" for a in args):
        refuse("a model's forward on data")()
    return forward(module, *args, **kwargs)


torch.nn.Module.__call__ = counted_or_refused
lab.parts.run = refuse("lab.parts.run (a part's measure)")
for part in lab.parts.PARTS:
    if part.measure is not None:
        object.__setattr__(part, "measure", refuse(f"{part.id}'s measure"))
for name in ("interleave", "single_run", "train"):
    setattr(lab.parts.base, name, refuse(f"lab.parts.base.{name}"))
runner.measure_peaks = refuse("the peaks' measure")
for name in ("machine_peaks", "sustained_rate", "layer_points"):
    setattr(lab.engine.roofline, name, refuse(f"lab.engine.roofline.{name}"))
execute = runner.execute
runner.execute = lambda name, *a, **k: (execute(name, *a, **k) if name == runner.SUMMARY
                                        else refuse(f"the {name} notebook")())
with open(LOG, "a") as f:
    f.write(f"guarded: {os.getpid()}\\n")
'''


def edit(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert text.count(old) == 1, f"{file} no longer holds {old!r} once: update this test"
    path.write_text(text.replace(old, new))


def test_render_makes_the_report_again_from_its_tables_with_the_edits_and_measures_nothing(tmp_path):
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for folder in ("lab", "notebooks"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    (src / "sitecustomize.py").write_text(GUARD)
    for change in (LABEL, TEMPLATE):
        edit(src, *change)
    report = tmp_path / "report"
    shutil.copytree(FIXTURE, report)
    outputs = [report / "report.html", report / "report.pdf", report / "tables", report / "figures"]
    assert not any(p.exists() for p in outputs)  # the stored report: its tables and report.json only

    log = tmp_path / "guard.log"
    env = {**os.environ, "PYTHONPATH": str(src), "LAB_RENDER_GUARD": str(log)}
    done = subprocess.run([sys.executable, "-m", "lab", "render", str(report)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=540)
    guard = log.read_text() if log.exists() else ""
    assert "measured:" not in guard, guard
    assert done.returncode == 0, done.stderr[-3000:]
    assert guard.count("guarded:") >= 2, guard  # the command and the summary's kernel both ran under the guard
    assert "nothing measured" in done.stderr

    html = (report / "report.html").read_text()
    for said in ("trained images per second (edited label)", "no measurable difference (edited template: even the"):
        assert said in html, f"{said!r} is not in the rendered report"
    assert "training images/s" not in html  # the label is the field map's, wherever the column is shown
    assert any("trained images per second (edited label)" in p.read_text() for p in (report / "tables").glob("*.csv"))
    assert (report / "report.pdf").stat().st_size > 10_000
    pdf = subprocess.run(["pdftotext", "-layout", str(report / "report.pdf"), "-"], capture_output=True, text=True)
    assert "edited template" in " ".join(pdf.stdout.split())
    assert (report / "figures" / "C2_epoch_phases.png").exists()


def test_render_refuses_a_folder_that_is_not_a_report_of_this_schema_in_one_line(tmp_path, capsys):
    from lab.cli import main

    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    (broken / "report.json").write_text("{not json")
    for folder, words in ((ROOT / "tests" / "fixtures" / "report-schema0",
                           "is a report of schema 0, written at commit 5a17999599be; this lab reads schema 1"),
                          (tmp_path / "missing", "is not a report: no such folder"),
                          (tmp_path / "empty", "is not a report: no report.json in it"),
                          (broken, "/report.json is not JSON (expecting property name enclosed in double quotes at "
                                   "line 1 column 2); it is not a report this lab reads; make the report again")):
        assert main(["render", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: {folder}{words if words[0] == '/' else ' ' + words}" in err, err
    assert not (broken / "report.html").exists()
